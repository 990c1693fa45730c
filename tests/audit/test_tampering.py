"""The books against the trail: a superuser who switches the triggers off, changes the data or ledgerlock's
own state, and puts every trigger back exactly as it was, is reported by verify_audit(<digest kept before>)
with table and key, and `ledgerlock audit verify --digest` exits 3. Without tampering, a mixed load
verifies."""

from __future__ import annotations

import contextlib
import json

import pytest
from click.testing import CliRunner

from ledgerlock.cli import cli
from lltest import lives_ok, refused

FORMAT = "INV-{YYYY}-{SEQ:5}"


@pytest.fixture
def books(db):
    """Invoices of two companies, some final (numbered), a hard lock over 2025-01 and a soft one over 2025-02
    for company 1, the trail sealed and its digest kept outside."""
    db.protect_invoice(number_column="number", number_format=FORMAT)
    app = db.connect("app")
    app.execute("INSERT INTO invoice (id, company_id, issued_on, amount) "
                "SELECT g, 1 + g % 2, date '2025-01-01' + g, g * 10 FROM generate_series(1, 40) g")
    app.execute("UPDATE invoice SET status = 'approved' WHERE id IN (3, 5, 8, 13, 21)")
    admin = db.connect("admin")
    db.hard = admin.execute("SELECT ledgerlock.lock_period('1', '2025-01-01', '2025-01-31', 'hard')").fetchone()[0]
    db.soft = admin.execute("SELECT ledgerlock.lock_period('1', '2025-02-01', '2025-02-28')").fetchone()[0]
    db.digest = db.connect("auditor").execute("SELECT ledgerlock.audit_digest()").fetchone()[0]
    return db


@contextlib.contextmanager
def triggers_off(su, *tables):
    """What a superuser can do: switch ledgerlock's event triggers and the tables' triggers off, then put
    every one back exactly as it was (ENABLE ALWAYS where it was), and check that it is so."""
    def states():
        return (su.execute("SELECT evtname, evtenabled FROM pg_event_trigger ORDER BY 1").fetchall(),
                su.execute("SELECT tgrelid::regclass::text, tgname, tgenabled FROM pg_trigger "
                           "WHERE NOT tgisinternal AND tgrelid = ANY(%s::regclass[]) ORDER BY 1, 2",
                           (list(tables),)).fetchall())
    before = states()
    verbs = {"O": "ENABLE", "A": "ENABLE ALWAYS", "R": "ENABLE REPLICA", "D": "DISABLE"}
    for name, _ in before[0]:
        su.execute(f'ALTER EVENT TRIGGER "{name}" DISABLE')
    for t in tables:
        su.execute(f"ALTER TABLE {t} DISABLE TRIGGER USER")
    try:
        yield su
    finally:
        for rel, name, state in before[1]:
            su.execute(f'ALTER TABLE {rel} {verbs[state]} TRIGGER "{name}"')
        for name, state in before[0]:
            su.execute(f'ALTER EVENT TRIGGER "{name}" {verbs[state]}')
        assert states() == before


def discrepancies(db):
    return db.connect("auditor").execute(
        "SELECT code, table_name, row_key, column_name, seq, problem FROM ledgerlock.audit_discrepancies()"
    ).fetchall()


def verdict(db):
    return db.connect("auditor").execute(
        "SELECT ok, problems, problem FROM ledgerlock.verify_audit(%s)", (db.digest,)).fetchone()


def cli_verify(db):
    return CliRunner().invoke(cli, ["--dsn", db.conninfo("auditor"), "audit", "verify", "--digest", db.digest])


def assert_reported(db, code, table, key, problem_part, column=None):
    """verify_audit with the digest fails and names the row; the CLI exits 3 and lists the problem."""
    found = [d for d in discrepancies(db) if d[0] == code and d[1] == table and d[2] == key and d[3] == column]
    assert found, discrepancies(db)
    assert any(problem_part in d[5] for d in found), found
    ok, problems, _first = verdict(db)
    assert not ok and problems >= 1
    res = cli_verify(db)
    assert res.exit_code == 3, res.output
    assert problem_part in res.output
    return found


def event_seq(db, table, key, operation):
    return db.owner().execute(
        "SELECT max(seq) FROM ledgerlock.audit_event WHERE table_oid = %s::regclass AND row_key = %s::jsonb "
        "AND operation = %s", (table, json.dumps(key), operation)).fetchone()[0]


def test_an_untampered_book_verifies_with_its_digest(books):
    assert discrepancies(books) == []
    assert verdict(books)[:2] == (True, 0)
    res = cli_verify(books)
    assert res.exit_code == 0 and "the books match the trail" in res.output


def test_the_changed_amount_of_a_final_invoice_is_reported_by_key_and_column(books):
    seq = event_seq(books, "invoice", {"id": 21}, "UPDATE")
    with triggers_off(books.owner(), "invoice") as su:
        su.execute("UPDATE invoice SET amount = 1 WHERE id = 21")
    (_, _, _, _, at_seq, _), = assert_reported(
        books, "row_changed", "public.invoice", {"id": 21},
        f"invoice id=21: amount is 1.00 in the table, 210.00 in event seq {seq}", column="amount")
    assert at_seq == seq


def test_the_newest_final_row_deleted_and_its_counter_wound_back_are_both_reported(books):
    newest = books.owner().execute("SELECT id, number FROM invoice WHERE number LIKE 'INV-%' "
                                   "ORDER BY number DESC LIMIT 1").fetchone()
    with triggers_off(books.owner(), "invoice", "ledgerlock.number_counter") as su:
        su.execute("DELETE FROM invoice WHERE id = %s", (newest[0],))
        su.execute("UPDATE ledgerlock.number_counter SET last_value = last_value - 1 WHERE tbl = 'invoice'::regclass")
    assert_reported(books, "row_missing", "public.invoice", {"id": newest[0]},
                    f"invoice id={newest[0]} is missing: event seq")
    assert_reported(books, "counter_mismatch", "public.invoice", None,
                    "the counter of series INV-2025-{SEQ} is at 4, the highest number the trail shows issued in it "
                    "is 5", column="number")


def test_a_counter_left_with_an_open_range_or_below_zero_is_reported(books):
    """No finalization commits a counter with an open range or below 0 (the counter table has no CHECK
    constraints for it: they would be prepared again in every finalization)."""
    su = books.owner()
    with triggers_off(su, "ledgerlock.number_counter"):
        su.execute("UPDATE ledgerlock.number_counter SET open_from = last_value - 1, open_kind = 'insert' "
                   "WHERE tbl = 'invoice'::regclass AND prefix = 'INV-2025-'")
    assert_reported(books, "counter_state", "public.invoice", None,
                    "the counter of series INV-2025-{SEQ} is at 5 with a range open from 4 (insert), which no "
                    "finalization leaves behind", column="number")
    with triggers_off(su, "ledgerlock.number_counter"):
        su.execute("UPDATE ledgerlock.number_counter SET open_from = NULL, open_kind = NULL, last_value = -1 "
                   "WHERE tbl = 'invoice'::regclass AND prefix = 'INV-2025-'")
    assert_reported(books, "counter_state", "public.invoice", None,
                    "the counter of series INV-2025-{SEQ} is at -1, which no finalization leaves behind",
                    column="number")
    with triggers_off(su, "ledgerlock.number_counter"):  # put back as it was: the book verifies again
        su.execute("UPDATE ledgerlock.number_counter SET last_value = 5 "
                   "WHERE tbl = 'invoice'::regclass AND prefix = 'INV-2025-'")
    assert discrepancies(books) == []
    assert verdict(books)[:2] == (True, 0)
    app = books.connect("app")  # and the series numbers on from where it was
    app.execute("UPDATE invoice SET status = 'approved' WHERE id = 35")  # company 2: no lock
    assert app.execute("SELECT number FROM invoice WHERE id = 35").fetchone()[0] == "INV-2025-00006"


def test_a_hard_lock_quietly_made_soft_is_reported(books):
    with triggers_off(books.owner(), "ledgerlock.period_lock") as su:
        su.execute("UPDATE ledgerlock.period_lock SET level = 'soft' WHERE id = %s", (books.hard,))
    assert_reported(books, "row_changed", "ledgerlock.period_lock", {"id": books.hard},
                    f"period_lock id={books.hard}: level is soft in the table, hard in event seq", column="level")


def test_a_write_while_a_lock_span_was_deleted_then_restored_is_reported(books):
    su = books.owner()
    span = su.execute("SELECT * FROM ledgerlock.period_lock_span WHERE lock_id = %s", (books.hard,)).fetchone()
    with triggers_off(su, "ledgerlock.period_lock_span"):
        su.execute("DELETE FROM ledgerlock.period_lock_span WHERE lock_id = %s", (books.hard,))
    app = books.connect("app")
    app.execute("INSERT INTO invoice (id, company_id, issued_on, amount) VALUES (100, 1, '2025-01-15', 5)")
    with triggers_off(su, "ledgerlock.period_lock_span"):
        su.execute("INSERT INTO ledgerlock.period_lock_span VALUES (%s, %s, %s, %s, %s)", span)
    # the guard is back: the same write is refused again
    with refused("LL002", r"is locked \(hard\)"):
        app.execute("INSERT INTO invoice (id, company_id, issued_on, amount) VALUES (101, 1, '2025-01-16', 5)")
    seq = event_seq(books, "invoice", {"id": 100}, "INSERT")
    assert_reported(books, "window_write", "public.invoice", {"id": 100},
                    f"event seq {seq} wrote invoice id=100 into 2025-01-01..2025-01-31 of scope 1 while lock "
                    f"#{books.hard} (hard) held it")


def test_writes_behind_a_lock_through_window_and_a_crowded_scope_are_reported_by_their_month(db):
    """The window check meets each write with the windows of its month: a lock-through window (from
    -infinity) still holds writes of any earlier day, an infinite day included, and one-day windows of a
    crowded scope each hold only their own day. The permitted neighbours (a day between two windows, a
    day after the lock-through) are not reported."""
    db.protect_invoice()
    admin = db.connect("admin")
    through = admin.execute("SELECT ledgerlock.lock_through('1', '2024-12-31', 'hard')").fetchone()[0]
    admin.execute("SELECT count(ledgerlock.lock_period('2', d::date, d::date, 'hard')) "
                  "FROM generate_series(date '2025-01-01', date '2025-03-31', interval '2 days') d")
    su = db.owner()
    su.execute("CREATE TEMP TABLE kept_span AS SELECT * FROM ledgerlock.period_lock_span")
    with triggers_off(su, "ledgerlock.period_lock_span"):  # the windows gone while the app writes
        su.execute("DELETE FROM ledgerlock.period_lock_span")
    db.connect("app").execute("""INSERT INTO invoice (id, company_id, issued_on, amount) VALUES
                                 (1, 1, '1999-05-01', 5), (2, 1, '-infinity', 5), (3, 1, '2025-01-02', 5),
                                 (4, 2, '2025-02-04', 5), (5, 2, '2025-02-05', 5), (6, 2, '2025-03-30', 5)""")
    with triggers_off(su, "ledgerlock.period_lock_span"):
        su.execute("INSERT INTO ledgerlock.period_lock_span SELECT * FROM kept_span")
    reported = {d[2]["id"]: d[5] for d in discrepancies(db) if d[0] == "window_write"}
    assert sorted(reported) == [1, 2, 4, 6], reported
    assert f"into up to 2024-12-31 of scope 1 while lock #{through} (hard)" in reported[1]
    assert "into up to 2024-12-31 of scope 1" in reported[2]
    assert "into 2025-02-04..2025-02-04 of scope 2" in reported[4]
    assert "into 2025-03-30..2025-03-30 of scope 2" in reported[6]


def test_an_edited_lock_history_row_is_reported(books):
    ev = books.owner().execute("SELECT id FROM ledgerlock.lock_event WHERE lock_id = %s", (books.hard,)).fetchone()[0]
    with triggers_off(books.owner(), "ledgerlock.lock_event") as su:
        su.execute("UPDATE ledgerlock.lock_event SET kind = 'unlock', reason = 'approved by CFO' WHERE id = %s",
                   (ev,))
    found = assert_reported(books, "row_changed", "ledgerlock.lock_event", {"id": ev},
                            f"lock_event id={ev}: kind is unlock in the table, lock in event seq", column="kind")
    assert len(found) == 1
    assert any(d[3] == "reason" for d in discrepancies(books) if d[2] == {"id": ev})


def test_an_inserted_scope_grant_is_reported(books):
    with triggers_off(books.owner(), "ledgerlock.scope_grant") as su:
        su.execute("INSERT INTO ledgerlock.scope_grant (grantee, scope) VALUES ('ll_controller', '2')")
    assert_reported(books, "row_unrecorded", "ledgerlock.scope_grant", {"grantee": "ll_controller", "scope": "2"},
                    "scope_grant grantee=ll_controller scope=2: the row has no audit event")


def test_four_eyes_switched_off_in_the_settings_is_reported(books):
    books.connect("admin").execute("SELECT ledgerlock.set_four_eyes(true)")
    books.digest = books.connect("auditor").execute("SELECT ledgerlock.audit_digest()").fetchone()[0]
    assert verdict(books)[:2] == (True, 0)
    with triggers_off(books.owner(), "ledgerlock.close_setting") as su:
        su.execute("UPDATE ledgerlock.close_setting SET four_eyes_unlock = false")
    assert_reported(books, "row_changed", "ledgerlock.close_setting", {"id": True},
                    "close_setting id=true: four_eyes_unlock is false in the table, true in event seq",
                    column="four_eyes_unlock")


def test_a_mutable_column_added_in_the_registry_is_reported(books):
    with triggers_off(books.owner(), "ledgerlock.protected_table") as su:
        su.execute("UPDATE ledgerlock.protected_table SET mutable_columns = mutable_columns || 'amount'::name "
                   "WHERE tbl = 'invoice'::regclass")
    assert_reported(books, "row_changed", "ledgerlock.protected_table", {"tbl": "public.invoice"},
                    "protected_table tbl=public.invoice: mutable_columns is", column="mutable_columns")


def test_a_mixed_load_with_overrides_unlocks_relocks_and_rollbacks_verifies(books):
    app, ctl, admin = books.connect("app"), books.connect("controller", autocommit=False), books.connect("admin")
    # an override of the soft window
    ctl.execute("SELECT ledgerlock.begin_override('late supplier credit')")
    ctl.execute("UPDATE invoice SET amount = amount + 1 WHERE id = 32")  # 2025-02-02, company 1: soft-locked
    ctl.commit()
    # a rolled-back finalization gives its number back
    with app.transaction(force_rollback=True):
        app.execute("UPDATE invoice SET status = 'approved' WHERE id = 15")
    app.execute("UPDATE invoice SET status = 'approved' WHERE id = 17")
    # unlock the hard window, write into it, relock
    admin.execute("SELECT ledgerlock.unlock_period(%s, 'reopen for audit adjustment')", (books.hard,))
    app.execute("UPDATE invoice SET amount = 7 WHERE id = 9")
    admin.execute("SELECT ledgerlock.relock(%s)", (books.hard,))
    admin.execute("SELECT ledgerlock.upgrade_lock(%s)", (books.soft,))
    admin.execute("SELECT ledgerlock.grant_scope('ll_controller', '2')")
    admin.execute("SELECT ledgerlock.set_four_eyes(true)")
    app.execute("UPDATE invoice SET paid = true WHERE id = 5")  # a mutable column of a final, hard-locked row
    app.execute("DELETE FROM invoice WHERE id = 37")  # company 2: no lock
    app.execute("UPDATE invoice SET id = 400 WHERE id = 35")  # a row moved to another key
    # writes under hostile settings are no change
    hostile = books.connect("app")
    hostile.execute("SET TimeZone = 'Pacific/Kiritimati'; SET extra_float_digits = -15; "
                    "SET IntervalStyle = 'sql_standard'; SET DateStyle = 'SQL, DMY'")
    hostile.execute("UPDATE invoice SET note = 'x' WHERE id = 33")
    # timestamps of ledgerlock's own rows captured under another TimeZone (lock_event.at, period_lock.locked_at)
    hostile_admin = books.connect("admin")
    hostile_admin.execute("SET TimeZone = 'Pacific/Kiritimati'; SET IntervalStyle = 'sql_standard'")
    hostile_admin.execute("SELECT ledgerlock.lock_period('2', '2024-01-01', '2024-01-31')")
    assert discrepancies(books) == []
    assert verdict(books)[:2] == (True, 0)
    assert cli_verify(books).exit_code == 0


PARENT_SCOPED = """
CREATE TABLE entity (id integer PRIMARY KEY);
CREATE TABLE ledger (id integer PRIMARY KEY, entity_id integer REFERENCES entity);
CREATE TABLE je (id integer PRIMARY KEY, ledger_id integer REFERENCES ledger, posted_on date NOT NULL,
                 amount numeric NOT NULL DEFAULT 0);
INSERT INTO entity VALUES (1), (2);
INSERT INTO ledger VALUES (10, 1), (20, 2);
GRANT SELECT, INSERT, UPDATE, DELETE ON entity, ledger, je TO ll_app;
"""


def test_a_write_into_a_window_of_a_table_scoped_by_its_parent_is_reported_in_the_parents_scope(db):
    """A table whose scope is its parent's (scope_column 'ledger_id.entity_id'): a write made while the span of
    entity 1's lock was deleted is reported in scope 1 (the scope the capture recorded), and the same write
    for entity 2, which no lock holds, is not."""
    su = db.owner()
    su.execute(PARENT_SCOPED)
    su.execute("SELECT ledgerlock.protect('je', date_column => 'posted_on', scope_column => 'ledger_id.entity_id')")
    lock = db.connect("admin").execute(
        "SELECT ledgerlock.lock_period('1', '2025-03-01', '2025-03-31', 'hard')").fetchone()[0]
    db.digest = db.connect("auditor").execute("SELECT ledgerlock.audit_digest()").fetchone()[0]
    app = db.connect("app")
    span = su.execute("SELECT * FROM ledgerlock.period_lock_span WHERE lock_id = %s", (lock,)).fetchone()
    with triggers_off(su, "ledgerlock.period_lock_span"):
        su.execute("DELETE FROM ledgerlock.period_lock_span WHERE lock_id = %s", (lock,))
    app.execute("INSERT INTO je (id, ledger_id, posted_on) VALUES (1, 10, '2025-03-15'), (2, 20, '2025-03-15')")
    with triggers_off(su, "ledgerlock.period_lock_span"):
        su.execute("INSERT INTO ledgerlock.period_lock_span VALUES (%s, %s, %s, %s, %s)", span)
    with refused("LL002", r"is locked \(hard\)"):
        app.execute("INSERT INTO je (id, ledger_id, posted_on) VALUES (3, 10, '2025-03-16')")
    lives_ok(app, "INSERT INTO je (id, ledger_id, posted_on) VALUES (4, 20, '2025-03-16')")
    seq = event_seq(db, "je", {"id": 1}, "INSERT")
    assert_reported(db, "window_write", "public.je", {"id": 1},
                    f"event seq {seq} wrote je id=1 into 2025-03-01..2025-03-31 of scope 1 while lock #{lock} "
                    f"(hard) held it")
    assert [d for d in discrepancies(db) if d[0] == "window_write"] == [
        d for d in discrepancies(db) if d[0] == "window_write" and d[2] == {"id": 1}]


PARENT_DATED = """
CREATE TABLE entry (id integer PRIMARY KEY, entity_id integer NOT NULL, posted_on date NOT NULL);
CREATE TABLE entry_line (id integer PRIMARY KEY, entry_id integer NOT NULL REFERENCES entry,
                         entity_id integer NOT NULL, amount numeric NOT NULL DEFAULT 0);
INSERT INTO entry VALUES (1, 1, '2025-03-15'), (2, 1, '2025-04-15');
GRANT SELECT, INSERT, UPDATE, DELETE ON entry, entry_line TO ll_app;
"""


def test_a_write_into_a_window_of_a_table_dated_by_its_parent_is_reported_by_the_parents_date(db):
    """A table whose date is its parent's (date_column 'entry_id.posted_on'): a line written into entry 1
    (dated in the locked March) while the lock's span was deleted is reported; a line of entry 2 (April), the
    permitted neighbour, is not."""
    su = db.owner()
    su.execute(PARENT_DATED)
    su.execute("SELECT ledgerlock.protect('entry_line', date_column => 'entry_id.posted_on', "
                "scope_column => 'entity_id')")
    lock = db.connect("admin").execute(
        "SELECT ledgerlock.lock_period('1', '2025-03-01', '2025-03-31', 'hard')").fetchone()[0]
    db.digest = db.connect("auditor").execute("SELECT ledgerlock.audit_digest()").fetchone()[0]
    app = db.connect("app")
    su.execute("CREATE TEMP TABLE kept_span AS SELECT * FROM ledgerlock.period_lock_span")
    with triggers_off(su, "ledgerlock.period_lock_span"):
        su.execute("DELETE FROM ledgerlock.period_lock_span")
    app.execute("INSERT INTO entry_line (id, entry_id, entity_id) VALUES (1, 1, 1), (2, 2, 1)")
    with triggers_off(su, "ledgerlock.period_lock_span"):
        su.execute("INSERT INTO ledgerlock.period_lock_span SELECT * FROM kept_span")
    with refused("LL002", r"is locked \(hard\)"):
        app.execute("INSERT INTO entry_line (id, entry_id, entity_id) VALUES (3, 1, 1)")
    seq = event_seq(db, "entry_line", {"id": 1}, "INSERT")
    assert_reported(db, "window_write", "public.entry_line", {"id": 1},
                    f"event seq {seq} wrote entry_line id=1 into 2025-03-01..2025-03-31 of scope 1 while lock "
                    f"#{lock} (hard) held it")
    assert [d[2] for d in discrepancies(db) if d[0] == "window_write"] == [{"id": 1}]
