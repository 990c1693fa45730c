"""R3's high-water mark under concurrent lock operations, protect and reinstall_guards.

Each ll_20 trigger carries the last day of any active window that applies to its table (its WHEN clause);
a write dated after it is never checked. So a mark computed from a snapshot that misses a concurrent window
leaves that window unenforced. Every test here races two real connections with explicit steps: A holds an
uncommitted operation, B is shown to wait, A commits, B finishes, and then the application's write into A's
window must be refused and doctor's mark check must be clean.
"""

from __future__ import annotations

import psycopg
import pytest

from lltest import Background, end_other_sessions, lives_ok, refused, sqlstate

LOCK_A = "SELECT ledgerlock.lock_period('1', '2026-02-01', '2026-04-30', 'hard')"
INSERT_APRIL = "INSERT INTO invoice (company_id, issued_on, amount) VALUES (1, '2026-04-15', 10)"


@pytest.fixture
def setup(db):
    db.protect_invoice()
    yield db
    end_other_sessions(db)


def installed_mark(conn: psycopg.Connection, table: str) -> str:
    tgdef = conn.execute("SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = %s::regclass "
                         "AND tgname = 'll_20_period_insert'", (table,)).fetchone()[0]
    return tgdef.split("<= '")[1].split("'")[0]


def race(db, second_sql: str, *, second_role: str = "admin") -> Background:
    """A: lock scope 1 through April (hard), uncommitted. B: `second_sql`, which must wait for A."""
    first = db.connect("admin", autocommit=False)
    first.execute(LOCK_A)
    step = Background(db.connect(second_role), second_sql)
    step.wait_until_blocked(db.owner())
    assert not step.done
    first.commit()
    return step.join()


def assert_april_enforced(db, table: str = "invoice", insert: str = INSERT_APRIL) -> None:
    owner = db.owner()
    assert installed_mark(owner, table) >= "2026-04-30"
    assert owner.execute("SELECT count(*) FROM ledgerlock._period_mark_problems()").fetchone()[0] == 0
    with refused("LL002", r"locked \(hard\) for scope 1"):
        db.connect("app").execute(insert)
    after_the_window = insert.replace("2026-04-15", "2026-05-15")  # the neighbour
    before = owner.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    lives_ok(db.connect("app"), after_the_window)
    assert owner.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == before + 1


def test_a_lock_in_another_scope_racing_a_higher_lock_leaves_the_mark_high(setup):
    """The outside review's repro: B locks scope 2 through March while A's April lock of scope 1 is open."""
    step = race(setup, "SELECT ledgerlock.lock_period('2', '2026-01-01', '2026-03-31')")
    assert step.error is None, step.error
    assert_april_enforced(setup)


def test_reinstall_guards_racing_a_lock_leaves_the_mark_high(setup):
    step = race(setup, "SELECT ledgerlock.reinstall_guards()")
    assert step.error is None, step.error
    assert_april_enforced(setup)


def test_protect_racing_a_lock_installs_the_mark_of_that_lock(setup):
    step = race(setup, "SELECT ledgerlock.protect('quote', date_column => 'quoted_on', scope_column => 'company_id')")
    assert step.error is None, step.error
    assert_april_enforced(setup, "quote", "INSERT INTO quote (company_id, quoted_on) VALUES (1, '2026-04-15')")


@pytest.mark.parametrize("isolation", ["REPEATABLE READ", "SERIALIZABLE"])
def test_a_lock_whose_snapshot_predates_a_concurrent_lock_fails_instead_of_lowering_the_mark(setup, isolation):
    """B's snapshot is taken before A commits: B cannot see A's window, so it must not compute a mark."""
    db = setup
    second = db.connect("admin", autocommit=False)
    second.execute(f"SET TRANSACTION ISOLATION LEVEL {isolation}")
    second.execute("SELECT 1").fetchone()  # B's snapshot
    db.connect("admin").execute(LOCK_A)  # A commits after it
    with pytest.raises(psycopg.Error) as info:
        second.execute("SELECT ledgerlock.lock_period('2', '2026-01-01', '2026-03-31')")
    assert sqlstate(info.value) == "40001"
    second.rollback()
    db.connect("admin").execute("SELECT ledgerlock.lock_period('2', '2026-01-01', '2026-03-31')")  # retried
    assert_april_enforced(db)


def test_doctor_reports_a_mark_below_what_the_locks_require(setup):
    """The control: a mark lowered by hand (as the race did) is what _period_mark_problems and doctor see."""
    db = setup
    owner = db.owner()
    db.connect("admin").execute(LOCK_A)
    assert owner.execute("SELECT count(*) FROM ledgerlock._period_mark_problems()").fetchone()[0] == 0
    tgdef = owner.execute("SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = 'invoice'::regclass "
                          "AND tgname = 'll_20_period_insert'").fetchone()[0]
    owner.execute("SELECT ledgerlock._ddl_permit('invoice'::regclass, true)")
    owner.execute(tgdef.replace("CREATE TRIGGER", "CREATE OR REPLACE TRIGGER").replace("2026-04-30", "2026-03-31"))
    rows = owner.execute("SELECT tbl::text, installed::text, required::text "
                         "FROM ledgerlock._period_mark_problems()").fetchall()
    assert rows == [("invoice", "2026-03-31", "2026-04-30")]
    auditor = db.connect("auditor")  # the documented monitoring setup: doctor as the auditor
    findings = auditor.execute("SELECT severity, check_name, object FROM ledgerlock.doctor_findings() "
                               "WHERE check_name = 'period mark'").fetchall()
    assert findings == [("critical", "period mark", "public.invoice")]
    db.connect("admin").execute("SELECT ledgerlock.reinstall_guards()")  # the fix the finding names
    assert auditor.execute("SELECT count(*) FROM ledgerlock.doctor_findings() "
                           "WHERE check_name = 'period mark'").fetchone()[0] == 0


# --- a parent whose children take their date from it (date_column 'header_id.posted_on') ---------------------

PARENT_SCHEMA = """
CREATE TABLE header (id integer PRIMARY KEY, entity_id integer, posted_on date);
CREATE TABLE line (id integer PRIMARY KEY, header_id integer REFERENCES header ON DELETE CASCADE, entity_id integer);
INSERT INTO header VALUES (1, 1, '2026-04-10'), (2, 1, '2026-04-20'), (3, 1, '2026-05-10');
INSERT INTO line VALUES (1, 1, 1), (2, 2, 1), (3, 3, 1);
GRANT SELECT, INSERT, UPDATE, DELETE ON header, line TO ll_app;
SELECT ledgerlock.protect('line', date_column => 'header_id.posted_on', scope_column => 'entity_id');
SELECT ledgerlock.lock_period('1', '2026-01-01', '2026-01-31', 'hard');
"""


@pytest.fixture
def parent(db):
    db.owner().execute(PARENT_SCHEMA)
    yield db
    end_other_sessions(db)


def test_a_lock_waits_for_a_parent_deleted_under_the_old_mark_and_later_deletes_are_checked(parent):
    """A: the application deletes an April header (after the parent's mark: no guard ran), uncommitted. B: a
    lock of April must wait for A, since raising the parent's mark re-creates its guards; then the next April
    header cannot be deleted."""
    db = parent
    first = db.connect("app", autocommit=False)
    first.execute("DELETE FROM header WHERE id = 1")
    step = Background(db.connect("admin"), "SELECT ledgerlock.lock_period('1', '2026-04-01', '2026-04-30')")
    step.wait_until_blocked(db.owner())
    assert not step.done
    first.commit()  # deleted before the window existed
    assert step.join().error is None, step.error
    assert db.owner().execute("SELECT count(*) FROM ledgerlock._period_mark_problems()").fetchone()[0] == 0
    with refused("LL002", r"for scope 1: line id=2 cannot be taken out of 2026-04-20 by deleting header id=2"):
        db.connect("app").execute("DELETE FROM header WHERE id = 2")
    lives_ok(db.connect("app"), "DELETE FROM header WHERE id = 3")  # May: the neighbour


def test_a_parent_delete_waiting_for_a_lock_is_checked_against_it(parent):
    """A: a lock of April, uncommitted. B: deleting an April header waits for A and is then refused: it reads
    the guards A's lock re-created with the raised mark."""
    db = parent
    first = db.connect("admin", autocommit=False)
    first.execute("SELECT ledgerlock.lock_period('1', '2026-04-01', '2026-04-30')")
    step = Background(db.connect("app"), "DELETE FROM header WHERE id = 1")
    step.wait_until_blocked(db.owner())
    first.commit()
    step.join()
    assert sqlstate(step.error) == "LL002", step.error
    assert "line id=1 cannot be taken out of 2026-04-10 by deleting header id=1" in str(step.error)
    lives_ok(db.connect("app"), "DELETE FROM header WHERE id = 3")


# --- a second child unprotected while the parent is written ------------------------------------------------

TWO_CHILDREN = """
CREATE TABLE note_line (id integer PRIMARY KEY, header_id integer REFERENCES header ON DELETE CASCADE,
                        entity_id integer);
INSERT INTO header VALUES (4, 1, '2026-01-15'), (5, 1, '2026-06-20');
INSERT INTO line VALUES (4, 4, 1);
INSERT INTO note_line VALUES (5, 5, 1), (6, 3, 1);
GRANT SELECT, INSERT, UPDATE, DELETE ON note_line TO ll_app;
SELECT ledgerlock.protect('note_line', date_column => 'header_id.posted_on', scope_column => 'entity_id');
"""
UNPROTECT_NOTES = "SELECT ledgerlock.unprotect('note_line', 'notes are not kept')"


@pytest.fixture
def two_children(db):
    """Header 4 (January, hard-locked) holds a line; headers 3 and 5 (May, June) hold note lines; both children
    protected."""
    lock = "SELECT ledgerlock.lock_period('1', '2026-01-01', '2026-01-31', 'hard');"
    assert PARENT_SCHEMA.strip().endswith(lock)
    db.owner().execute(PARENT_SCHEMA.strip()[:-len(lock)] + TWO_CHILDREN + lock)
    assert "note_line" in parent_guard_source(db)
    yield db
    end_other_sessions(db)


def parent_guard_source(db) -> str:
    return db.owner().execute("SELECT DISTINCT p.prosrc FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid "
                              "WHERE t.tgrelid = 'header'::regclass AND t.tgname LIKE 'll_20_scope_parent_%'"
                              ).fetchone()[0]


def assert_only_the_line_guards_the_header(db):
    assert "note_line" not in parent_guard_source(db)
    with refused("LL002", r"line id=4 cannot be taken out of 2026-01-15 by deleting header id=4"):
        db.connect("app").execute("DELETE FROM header WHERE id = 4")
    lives_ok(db.connect("app"), "DELETE FROM header WHERE id = 5")  # the neighbour: June
    assert db.owner().execute("SELECT count(*) FROM line WHERE id = 4").fetchone() == (1,)
    assert db.connect("auditor").execute("SELECT count(*) FROM ledgerlock.doctor_findings() "
                                         "WHERE severity = 'critical'").fetchone() == (0,)


def test_unprotecting_a_child_waits_for_a_parent_write_in_flight_whose_deletes_stay_checked(two_children):
    """A: the application moves a May header (after the mark: no guard runs), uncommitted. B: unprotecting the note line
    re-creates the parent's guard, so it waits for A. A's delete of the hard-locked header is refused under
    the guard it began with; once A ends, B finishes and the line alone guards the header."""
    db = two_children
    first = db.connect("app", autocommit=False)
    first.execute("UPDATE header SET posted_on = '2026-05-11' WHERE id = 3")
    step = Background(db.connect("admin"), UNPROTECT_NOTES)
    step.wait_until_blocked(db.owner())
    assert not step.done
    with refused("LL002", r"line id=4 cannot be taken out of 2026-01-15 by deleting header id=4"):
        first.execute("DELETE FROM header WHERE id = 4")
    first.rollback()
    assert step.join().error is None, step.error
    assert_only_the_line_guards_the_header(db)


def test_a_parent_delete_waiting_for_an_unprotect_is_checked_by_the_guard_it_leaves(two_children):
    """A: unprotecting the note line, uncommitted. B: deleting the hard-locked header waits for A and is then
    refused by the guard A re-created, which keeps the line's block."""
    db = two_children
    first = db.connect("admin", autocommit=False)
    first.execute(UNPROTECT_NOTES)
    step = Background(db.connect("app"), "DELETE FROM header WHERE id = 4")
    step.wait_until_blocked(db.owner())
    assert not step.done
    first.commit()
    step.join()
    assert sqlstate(step.error) == "LL002", step.error
    assert_only_the_line_guards_the_header(db)
