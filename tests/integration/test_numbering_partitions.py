"""R2 on a partitioned table: rows that land in different partitions share the protected table's series
(row triggers run with TG_RELID = the partition; counters and configuration are the protected table's)."""

from __future__ import annotations

import pytest

from lltest import lives_ok, refused

SCHEMA = """
CREATE TABLE bill (
    id bigint NOT NULL, issued_on date NOT NULL, status text NOT NULL DEFAULT 'draft', number text,
    amount numeric NOT NULL DEFAULT 0, PRIMARY KEY (id, issued_on)
) PARTITION BY RANGE (issued_on);
CREATE TABLE bill_h1 PARTITION OF bill FOR VALUES FROM ('2026-01-01') TO ('2026-07-01');
CREATE TABLE bill_h2 PARTITION OF bill FOR VALUES FROM ('2026-07-01') TO ('2027-01-01');
GRANT SELECT, INSERT, UPDATE, DELETE ON bill, bill_h1, bill_h2 TO ll_app;
SELECT ledgerlock.protect('bill', 'issued_on', final_when => $$status = 'final'$$,
                          number_column => 'number', number_format => 'B-{YYYY}-{SEQ:3}');
"""


@pytest.fixture
def bills(db):
    db.owner().execute(SCHEMA)
    return db.connect("app")


def rows(conn):
    return conn.execute("SELECT tableoid::regclass::text, id, number FROM bill ORDER BY id").fetchall()


def test_rows_in_two_partitions_share_one_gapless_series(db, bills):
    bills.execute("INSERT INTO bill (id, issued_on, status) VALUES (1, '2026-02-01', 'final'), "
                  "(2, '2026-08-01', 'final'), (3, '2026-03-01', 'draft'), (4, '2026-09-01', 'draft')")
    bills.execute("UPDATE bill SET status = 'final' WHERE id IN (3, 4)")       # through the parent
    bills.execute("INSERT INTO bill_h2 (id, issued_on, status) VALUES (5, '2026-10-01', 'final')")  # a partition
    bills.execute("INSERT INTO bill_h1 (id, issued_on) VALUES (6, '2026-04-01')")
    bills.execute("UPDATE bill_h1 SET status = 'final' WHERE id = 6")
    got = rows(bills)
    assert [(t, i) for t, i, _ in got] == [("bill_h1", 1), ("bill_h2", 2), ("bill_h1", 3), ("bill_h2", 4),
                                           ("bill_h2", 5), ("bill_h1", 6)]
    assert sorted(n for _, _, n in got) == [f"B-2026-{i:03}" for i in range(1, 7)]
    owner = db.owner()
    assert owner.execute("SELECT table_name::text, series, last_value FROM ledgerlock.number_series").fetchall() == [
        ("bill", "B-2026-{SEQ}", 6)]
    assert owner.execute("SELECT * FROM ledgerlock.number_gaps('bill')").fetchall() == []


def test_a_draft_in_a_partition_gets_a_temporary_number_and_final_rows_stay_frozen(db, bills):
    bills.execute("INSERT INTO bill (id, issued_on) VALUES (1, '2026-08-01')")
    (draft,) = bills.execute("SELECT number FROM bill_h2").fetchone()
    assert draft.startswith("DRAFT-")
    bills.execute("UPDATE bill SET status = 'final' WHERE id = 1")
    with refused("LL001", r"^bill(_h2)? id=1 issued_on=2026-08-01 \(B-2026-001\) is final and cannot be updated"):
        bills.execute("UPDATE bill_h2 SET number = 'B-2026-002' WHERE id = 1")
    lives_ok(bills, "INSERT INTO bill (id, issued_on, status) VALUES (2, '2026-01-02', 'final')")  # the neighbour
    assert [n for _, _, n in rows(bills)] == ["B-2026-001", "B-2026-002"]


def test_making_a_draft_final_while_moving_it_to_another_partition_is_refused_by_name(db, bills):
    """PostgreSQL runs an UPDATE that moves a row to another partition as an update of the old partition's row
    and an insert into the new one, so a draft made final and given a date of another half-year took a number as
    an update and another as an insert. Refused whole (LL009), with a message and a hint that name the move; no
    number is lost. The neighbours: the same move and finalization in two statements, and a finalization that
    stays in its partition."""
    bills.execute("INSERT INTO bill (id, issued_on) VALUES (1, '2026-02-01'), (2, '2026-03-01')")
    with refused("LL009", r"^one statement on public\.bill made rows final both by inserting and by updating "
                          r"them \(.*, or an UPDATE that moves rows to another partition\)") as info:
        bills.execute("UPDATE bill SET status = 'final', issued_on = '2026-08-01' WHERE id = 1")
    assert info.value.diag.message_hint.endswith(
        "give a draft its new date (its partition) in one UPDATE and make it final in the next")
    assert [n for _, _, n in rows(bills)] == ["DRAFT-1", "DRAFT-2"]
    bills.execute("UPDATE bill SET issued_on = '2026-08-01' WHERE id = 1")
    bills.execute("UPDATE bill SET status = 'final' WHERE id = 1")
    bills.execute("UPDATE bill SET status = 'final', issued_on = '2026-03-02' WHERE id = 2")  # the same partition
    assert rows(bills) == [("bill_h2", 1, "B-2026-001"), ("bill_h1", 2, "B-2026-002")]
    assert db.owner().execute("SELECT * FROM ledgerlock.number_gaps('bill')").fetchall() == []


def test_a_rolled_back_finalization_across_partitions_gives_its_numbers_back(db, bills):
    bills.execute("INSERT INTO bill (id, issued_on) VALUES (1, '2026-02-01'), (2, '2026-08-01'), (3, '2026-05-01')")
    with bills.transaction(force_rollback=True):
        bills.execute("UPDATE bill SET status = 'final' WHERE id IN (1, 2)")
        assert sorted(n for _, _, n in rows(bills) if n.startswith("B-")) == ["B-2026-001", "B-2026-002"]
    bills.execute("UPDATE bill SET status = 'final' WHERE id = 3")
    assert [n for _, i, n in rows(bills) if i == 3] == ["B-2026-001"]
    assert db.owner().execute("SELECT * FROM ledgerlock.number_gaps('bill')").fetchall() == []


def test_a_partition_added_later_numbers_only_once_its_guards_are_reinstalled(db, bills):
    owner = db.owner()
    bills.execute("INSERT INTO bill (id, issued_on, status) VALUES (1, '2026-02-01', 'final')")
    owner.execute("CREATE TABLE bill_2027 PARTITION OF bill FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')")
    owner.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON bill_2027 TO ll_app")
    for stmt in ("INSERT INTO bill_2027 (id, issued_on, status) VALUES (2, '2027-02-01', 'final')",
                 "INSERT INTO bill (id, issued_on, status) VALUES (2, '2027-02-01', 'final')"):
        with refused("LL009", r"^partition public\.bill_2027 of public\.bill was added after its numbering triggers"):
            bills.execute(stmt)
    bills.execute("INSERT INTO bill (id, issued_on, status) VALUES (3, '2026-03-01', 'final')")  # old partitions
    owner.execute("SELECT ledgerlock.reinstall_guards()")
    bills.execute("INSERT INTO bill_2027 (id, issued_on, status) VALUES (2, '2027-02-01', 'final')")
    bills.execute("INSERT INTO bill (id, issued_on, status) VALUES (4, '2027-03-01', 'final')")
    assert [(t, n) for t, _, n in rows(bills)] == [("bill_h1", "B-2026-001"), ("bill_2027", "B-2027-001"),
                                                   ("bill_h1", "B-2026-002"), ("bill_2027", "B-2027-002")]
    open_ranges = "SELECT count(*) FROM ledgerlock.number_counter WHERE open_from IS NOT NULL"
    assert owner.execute(open_ranges).fetchone() == (0,)
    assert owner.execute("SELECT * FROM ledgerlock.number_gaps('bill')").fetchall() == []
