"""R2: the settle step reads each final row back into the series of its own date and scope, once, and proves
the numbers there; a row whose number belongs to another series than its final date or scope is refused."""

from __future__ import annotations

import pytest

from lltest import lives_ok, refused


def protect(db, fmt):
    db.protect_invoice(number_column="number", number_format=fmt)


def series(db):
    return db.owner().execute("SELECT series, last_value FROM ledgerlock.number_series ORDER BY 1").fetchall()


def numbers(conn):
    return [r[0] for r in conn.execute("SELECT number FROM invoice WHERE status = 'approved' ORDER BY id")]


def gaps(db):
    return db.owner().execute("SELECT * FROM ledgerlock.number_gaps(NULL)").fetchall()


def redate_after_ll40(db):
    """The table owner adds a BEFORE trigger that fires after ll_40 and moves the row into another year."""
    owner = db.owner()
    owner.execute("""CREATE FUNCTION public.redate() RETURNS trigger LANGUAGE plpgsql AS
                     $$ BEGIN NEW.issued_on := '2025-06-01'; RETURN NEW; END $$""")
    owner.execute("CREATE TRIGGER zz_redate BEFORE INSERT OR UPDATE ON invoice FOR EACH ROW "
                  "EXECUTE FUNCTION public.redate()")
    return owner


@pytest.mark.parametrize("ids", [(1,), (1, 2)], ids=["one row", "two rows"])
def test_a_row_moved_to_another_series_after_its_number_is_refused(db, ids):
    protect(db, "INV-{YYYY}-{SEQ:5}")
    app = db.connect("app")
    app.execute("INSERT INTO invoice (id, company_id, issued_on) "
                "SELECT g, 1, '2026-02-01' FROM generate_series(1, 3) g")
    owner = redate_after_ll40(db)
    with refused("LL009", rf"{len(ids)} rows became final, 0 carry a number taken in this statement"):
        app.execute("UPDATE invoice SET status = 'approved' WHERE id = ANY(%s)", (list(ids),))
    assert series(db) == [] and numbers(app) == []
    owner.execute("DROP TRIGGER zz_redate ON invoice")
    lives_ok(app, "UPDATE invoice SET status = 'approved' WHERE id IN (1, 2)")  # the permitted neighbour
    assert numbers(app) == ["INV-2026-00001", "INV-2026-00002"] and series(db) == [("INV-2026-{SEQ}", 2)]


def test_a_row_inserted_final_and_moved_to_another_series_is_refused(db):
    protect(db, "INV-{YYYY}-{SEQ:5}")
    app = db.connect("app")
    owner = redate_after_ll40(db)
    with refused("LL009", r"1 rows became final, 0 carry a number taken in this statement"):
        app.execute("INSERT INTO invoice (id, company_id, issued_on, status) VALUES (1, 1, '2026-02-01', 'approved')")
    owner.execute("DROP TRIGGER zz_redate ON invoice")
    lives_ok(app, "INSERT INTO invoice (id, company_id, issued_on, status) VALUES (1, 1, '2026-02-01', 'approved')")
    assert numbers(app) == ["INV-2026-00001"] and series(db) == [("INV-2026-{SEQ}", 1)]


def test_a_format_with_a_suffix_numbers_one_and_many_rows_in_each_series(db):
    protect(db, "{SEQ:4}/{YYYY}")
    app = db.connect("app")
    app.execute("""INSERT INTO invoice (id, company_id, issued_on, status)
                   SELECT g, 1, make_date(2020 + g % 3, 1, 1), 'approved' FROM generate_series(1, 300) g""")
    app.execute("INSERT INTO invoice (id, company_id, issued_on, status) VALUES (301, 1, '2021-05-01', 'approved')")
    assert series(db) == [("{SEQ}/2020", 100), ("{SEQ}/2021", 101), ("{SEQ}/2022", 100)]
    assert numbers(app)[:3] == ["0001/2021", "0001/2022", "0001/2020"] and numbers(app)[-1] == "0101/2021"
    assert gaps(db) == []


def test_a_suffix_format_renumbered_to_a_number_outside_the_range_is_refused(db):
    protect(db, "{SEQ:4}/{YYYY}")
    app = db.connect("app")
    owner = db.owner()
    owner.execute("""CREATE FUNCTION public.renumber() RETURNS trigger LANGUAGE plpgsql AS
                     $$ BEGIN NEW.number := '0042/2026'; RETURN NEW; END $$""")
    owner.execute("CREATE TRIGGER zz_renumber BEFORE INSERT ON invoice FOR EACH ROW EXECUTE FUNCTION public.renumber()")
    with refused("LL009", r"1 rows became final, 0 carry a number taken in this statement"):
        app.execute("INSERT INTO invoice (id, company_id, issued_on, status) VALUES (1, 1, '2026-02-01', 'approved')")
    with refused("LL009", r"2 rows became final, 0 carry a number taken in this statement"):
        app.execute("""INSERT INTO invoice (id, company_id, issued_on, status) VALUES
                       (1, 1, '2026-02-01', 'approved'), (2, 1, '2026-02-01', 'approved')""")
    owner.execute("DROP TRIGGER zz_renumber ON invoice")
    lives_ok(app, """INSERT INTO invoice (id, company_id, issued_on, status) VALUES
                     (1, 1, '2026-02-01', 'approved'), (2, 1, '2026-02-01', 'approved')""")
    assert numbers(app) == ["0001/2026", "0002/2026"] and series(db) == [("{SEQ}/2026", 2)]


def test_one_statement_over_many_scopes_closes_every_range_exactly(db):
    protect(db, "INV-{SCOPE}-{SEQ:3}")
    app = db.connect("app")
    db.owner().execute("INSERT INTO company (id, name) SELECT g, 'c' || g FROM generate_series(2, 40) g "
                       "ON CONFLICT DO NOTHING")
    app.execute("""INSERT INTO invoice (id, company_id, issued_on)
                   SELECT g, 1 + g % 40, '2026-02-01' FROM generate_series(1, 400) g""")
    app.execute("UPDATE invoice SET status = 'approved'")
    got = series(db)
    assert len(got) == 40 and {v for _, v in got} == {10}
    assert app.execute("SELECT count(DISTINCT number) FROM invoice").fetchone()[0] == 400
    assert gaps(db) == []


PARENT_SCHEMA = """
CREATE TABLE entity (id integer PRIMARY KEY);
CREATE TABLE ledger (id integer PRIMARY KEY, entity_id integer REFERENCES entity);
CREATE TABLE je (id integer PRIMARY KEY, ledger_id integer REFERENCES ledger, posted_on date NOT NULL,
                 status text NOT NULL DEFAULT 'draft', number text);
INSERT INTO entity VALUES (1), (2);
INSERT INTO ledger VALUES (10, 1), (20, 2);
GRANT SELECT, INSERT, UPDATE, DELETE ON entity, ledger, je TO ll_app;
"""


@pytest.mark.parametrize("rows", [1, 3], ids=["one row", "three rows"])
def test_a_table_scoped_through_its_parent_is_numbered_by_its_date_alone(db, rows):
    """The scope column is a path (ledger_id.entity_id), no column of the row: a format without {SCOPE}
    never reads it, in the row trigger or in the settle step."""
    owner = db.owner()
    owner.execute(PARENT_SCHEMA)
    owner.execute("SELECT ledgerlock.protect('je', date_column => 'posted_on', scope_column => 'ledger_id.entity_id', "
                  "final_when => 'status = ''posted''', number_column => 'number', "
                  "number_format => 'JE-{YYYY}-{SEQ:4}')")
    app = db.connect("app")
    app.execute("INSERT INTO je (id, ledger_id, posted_on, status) "
                "SELECT g, 10 * (1 + g %% 2), '2026-03-10', 'posted' FROM generate_series(1, %s) g", (rows,))
    got = [r[0] for r in app.execute("SELECT number FROM je ORDER BY id")]
    assert got == [f"JE-2026-{i:04}" for i in range(1, rows + 1)]
    assert owner.execute("SELECT count(*) FROM ledgerlock.number_gaps('je')").fetchone()[0] == 0


def nested_credit_note(db, hint: str | None = None):
    """The table owner's AFTER ROW trigger: every final invoice of company 1 gets a final twin in company 2,
    inserted by a statement that runs inside the first one's, before the first one settles. With `hint`, the
    trigger first writes that position hint for series INV-1- (a client forging where company 1 stands)."""
    owner = db.owner()
    forge = "" if hint is None else (
        f"PERFORM set_config(name, '{hint}', true) FROM pg_settings WHERE name LIKE 'ledgerlock.numbering\\_%' "
        "AND name <> 'ledgerlock.numbering_counters_held';")
    owner.execute(f"""CREATE FUNCTION public.twin() RETURNS trigger LANGUAGE plpgsql AS
                      $$ BEGIN {forge}
                         INSERT INTO invoice (id, company_id, status) VALUES (NEW.id + 100, {1 if hint else 2},
                                                                              'approved');
                         RETURN NULL; END $$""")
    owner.execute("CREATE TRIGGER zz_twin AFTER INSERT ON invoice FOR EACH ROW WHEN (NEW.company_id = 1 "
                  "AND NEW.id < 100) EXECUTE FUNCTION public.twin()")
    return owner


def test_a_final_row_inserted_by_a_trigger_while_its_statement_finalizes_another_is_numbered_too(db):
    """Each statement settles its own range: the nested one closes its series' range, the outer one then its
    own, and both series stay gapless (it used to be refused: the nested settle closed the outer range)."""
    protect(db, "INV-{SCOPE}-{SEQ:3}")
    nested_credit_note(db)
    app = db.connect("app")
    for i in (1, 2):
        lives_ok(app, "INSERT INTO invoice (id, company_id, status) VALUES (%s, 1, 'approved')", (i,))
    assert dict(app.execute("SELECT id, number FROM invoice ORDER BY id").fetchall()) == {
        1: "INV-1-001", 2: "INV-1-002", 101: "INV-2-001", 102: "INV-2-002"}
    assert series(db) == [("INV-1-{SEQ}", 2), ("INV-2-{SEQ}", 2)] and gaps(db) == []


def test_a_nested_statement_given_a_forged_position_in_the_outer_range_is_refused(db):
    """The nested statement writes a company-1 row after forging the position hint so that it reuses the
    number its enclosing statement took: the nested settle accepts its one row in that one-wide range and
    closes it, and the enclosing statement's settle then finds its row's number in no range: refused whole."""
    protect(db, "INV-{SCOPE}-{SEQ:3}")
    lives_ok(db.connect("app"), "INSERT INTO invoice (id, company_id, status) VALUES (50, 1, 'approved')")
    nested_credit_note(db, hint="2,2,1")
    app = db.connect("app")
    with refused("LL009"):
        app.execute("INSERT INTO invoice (id, company_id, status) VALUES (1, 1, 'approved')")
    assert numbers(app) == ["INV-1-001"] and series(db) == [("INV-1-{SEQ}", 1)] and gaps(db) == []


def test_final_rows_marked_paid_keep_their_numbers_and_the_series_numbers_on(db):
    """An UPDATE whose rows were all final before (marking invoices paid, one or several) has nothing to settle:
    no number moves and no counter moves; a finalization after it in the same transaction numbers on, and one
    that marks paid and finalizes at once is still numbered and proven."""
    protect(db, "INV-{YYYY}-{SEQ:5}")
    app = db.connect("app")
    app.execute("INSERT INTO invoice (id, company_id, issued_on) "
                "SELECT g, 1, '2026-03-01' FROM generate_series(1, 6) g")
    app.execute("UPDATE invoice SET status = 'approved' WHERE id IN (1, 2, 3)")
    app.execute("BEGIN")
    lives_ok(app, "UPDATE invoice SET paid = true WHERE id = 2")
    lives_ok(app, "UPDATE invoice SET paid = true WHERE id IN (1, 3)")
    assert series(db) == [("INV-2026-{SEQ}", 3)]
    app.execute("UPDATE invoice SET status = 'approved' WHERE id = 4")
    app.execute("UPDATE invoice SET paid = NOT paid, status = 'approved' WHERE id IN (1, 5)")  # one was final
    app.execute("COMMIT")
    assert app.execute("SELECT id, number, paid FROM invoice WHERE status = 'approved' ORDER BY id").fetchall() == [
        (1, "INV-2026-00001", False), (2, "INV-2026-00002", True), (3, "INV-2026-00003", True),
        (4, "INV-2026-00004", False), (5, "INV-2026-00005", True)]
    assert series(db) == [("INV-2026-{SEQ}", 5)] and gaps(db) == []
    open_ranges = "SELECT count(*) FROM ledgerlock.number_counter WHERE open_from IS NOT NULL"
    assert db.owner().execute(open_ranges).fetchone()[0] == 0


def test_a_bulk_update_of_final_and_draft_rows_after_a_small_one_is_one_pass(db):
    """Marking every invoice of the book reconciled touches final rows and drafts alike; the settle step then
    looks for rows that stopped being final. It used to pair the old and new rows by a join, planned once per
    session for the rows of the first statement that got there: after a two-row update, a 30,000-row one would
    have compared every old row with every new one. The bound is a wait with a limit: one pass takes about a
    second."""
    protect(db, "INV-{YYYY}-{SEQ:5}")
    app = db.connect("app")
    app.execute("INSERT INTO invoice (id, company_id, issued_on) "
                "SELECT g, 1 + g %% 2, '2026-03-01' FROM generate_series(1, %s) g", (30_000,))
    app.execute("UPDATE invoice SET status = 'approved' WHERE id % 3 = 0")  # 10,000 final, numbered
    app.execute("UPDATE invoice SET reconciled = true WHERE id IN (2, 3)")  # a draft and a final row
    app.execute("SET statement_timeout = '10s'")
    app.execute("UPDATE invoice SET reconciled = true")
    app.execute("RESET statement_timeout")
    assert app.execute("SELECT count(*) FILTER (WHERE reconciled), count(number) FILTER (WHERE status = 'approved'), "
                       "max(number) FILTER (WHERE status = 'approved') FROM invoice").fetchone() == (
        30_000, 10_000, "INV-2026-10000")
    assert series(db) == [("INV-2026-{SEQ}", 10_000)] and gaps(db) == []
    # and a statement that finalizes drafts while it marks final rows numbers on from there
    app.execute("UPDATE invoice SET reconciled = false, status = 'approved' WHERE id IN (1, 3, 4)")
    assert app.execute("SELECT id, number FROM invoice WHERE id IN (1, 3, 4) ORDER BY id").fetchall() == [
        (1, "INV-2026-10001"), (3, "INV-2026-00001"), (4, "INV-2026-10002")]



# The counter rows this transaction has read: by a scan of the table, or through one of its indexes (PostgreSQL
# counts an index scan's rows on the index).
COUNTER_READS = ("SELECT sum(pg_stat_get_xact_tuples_fetched(r.oid) + pg_stat_get_xact_tuples_returned(r.oid)) "
                 "FROM (SELECT 'ledgerlock.number_counter'::regclass::oid UNION ALL SELECT i.indexrelid "
                 "FROM pg_index i WHERE i.indrelid = 'ledgerlock.number_counter'::regclass) AS r(oid)")
OPEN_RANGES = "SELECT count(*) FROM ledgerlock.number_counter WHERE open_from IS NOT NULL"


def test_a_write_that_makes_no_row_final_reads_no_counter_however_many_series_the_table_has(db):
    """A table numbered per company has a counter per company and year. A draft saved, a draft edited, a final
    invoice marked paid: the settle step asks whether a range is open, and used to read every counter of the
    table to answer (2,000 series: 2,000 rows read by every such write). A transaction that has updated no
    counter holds no open range; it reads none. The permitted neighbours: once the transaction has taken a
    number, the same writes look at the counters again, and a statement that numbers rows and then writes none
    of them (an import run twice) still gives its numbers back."""
    protect(db, "INV-{SCOPE}-{SEQ:5}")
    owner = db.owner()
    owner.execute("INSERT INTO company (id, name) SELECT g, 'company ' || g FROM generate_series(3, 2000) g")
    owner.execute("INSERT INTO invoice (id, company_id, status) "
                  "SELECT g, g, 'approved' FROM generate_series(1, 2000) g")
    app = db.connect("app")  # a session of its own: it has updated no counter yet
    app.execute("BEGIN")
    before = app.execute(COUNTER_READS).fetchone()[0]
    app.execute("INSERT INTO invoice (id, company_id) VALUES (3001, 7)")
    app.execute("UPDATE invoice SET note = 'checked' WHERE id = 3001")
    app.execute("UPDATE invoice SET paid = true WHERE id = 7")
    assert app.execute(COUNTER_READS).fetchone()[0] - before == 0
    app.execute("UPDATE invoice SET status = 'approved' WHERE id = 3001")  # takes INV-7-00002
    middle = app.execute(COUNTER_READS).fetchone()[0]
    app.execute("UPDATE invoice SET paid = false WHERE id = 7")
    assert app.execute(COUNTER_READS).fetchone()[0] - middle >= 2000  # this transaction could hold a range now
    app.execute("INSERT INTO invoice (id, company_id, status) VALUES (3001, 7, 'approved'), (7, 7, 'approved') "
                "ON CONFLICT (id) DO NOTHING")  # both numbered by ll_40, neither written
    app.execute("COMMIT")
    assert owner.execute("SELECT number FROM invoice WHERE id IN (7, 3001) ORDER BY id").fetchall() == [
        ("INV-7-00001",), ("INV-7-00002",)]
    assert owner.execute("SELECT last_value FROM ledgerlock.number_series "
                         "WHERE series = 'INV-7-{SEQ}'").fetchone() == (2,)
    assert owner.execute(OPEN_RANGES).fetchone() == (0,) and gaps(db) == []


def test_a_session_that_counts_nothing_still_has_its_open_ranges_found(db):
    """The count of a transaction's counter updates exists only while track_counts is on, a setting no client
    may change. A superuser's session with it off: a statement that numbers two rows and writes neither (ON
    CONFLICT DO NOTHING) must still give both numbers back, so the settle step reads the counters whenever the
    count is not kept."""
    protect(db, "INV-{YYYY}-{SEQ:5}")
    with refused("42501", r'permission denied to set parameter "track_counts"'):
        db.connect("app").execute("SET track_counts = off")  # no client can stop the count
    owner = db.owner()
    rows = "(1, 1, '2026-02-01', 'approved'), (2, 1, '2026-02-01', 'approved')"
    owner.execute(f"INSERT INTO invoice (id, company_id, issued_on, status) VALUES {rows}")
    session = db.connect()  # the superuser, in a fresh session that has updated no counter
    session.execute("SET track_counts = off")
    session.execute(f"INSERT INTO invoice (id, company_id, issued_on, status) VALUES {rows} "
                    "ON CONFLICT (id) DO NOTHING")
    assert series(db) == [("INV-2026-{SEQ}", 2)] and owner.execute(OPEN_RANGES).fetchone() == (0,)
    lives_ok(session, "INSERT INTO invoice (id, company_id, issued_on, status) VALUES (3, 1, '2026-02-01', 'approved')")
    assert numbers(owner) == ["INV-2026-00001", "INV-2026-00002", "INV-2026-00003"] and gaps(db) == []
