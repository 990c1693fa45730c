"""The capture writes a statement's events with one query whatever its period context: the event of a row is
made in one place (ledgerlock._audit_event_row, inlined into that query), and the lock window a row went
into is looked up only when an override or an unlocked window may apply. These tests hold what that query
records on the paths where a lookup runs, and that the event is made once per row."""

from __future__ import annotations

import pytest

MARCH = ("2026-03-01", "2026-03-31")
COLS = "operation, row_key ->> 'id', lock_id, override_id, reason"


def events(db, where: str, params=None) -> list[tuple]:
    return db.connect("auditor").execute(
        f"SELECT {COLS} FROM ledgerlock.audit_event WHERE table_oid = 'invoice'::regclass AND row_key IS NOT NULL "
        f"AND {where} ORDER BY seq",
        params).fetchall()


@pytest.fixture
def app(db):
    db.protect_invoice()
    return db.connect("app")


def test_a_statement_takes_one_seq_per_row(db, app):
    """The row event is inlined: each field is read from its own expression and the event's seq is taken once
    per row (were it called as a function, (…).* would call it once per field and burn a seq each time)."""
    owner = db.owner()

    def seqs_taken(statement: str) -> int:
        before = owner.execute("SELECT last_value FROM ledgerlock.audit_event_seq").fetchone()[0]
        app.execute(statement)
        return owner.execute("SELECT last_value FROM ledgerlock.audit_event_seq").fetchone()[0] - before

    assert seqs_taken("INSERT INTO invoice (id, company_id, issued_on) "
                      "SELECT g, 1, date '2026-04-01' + g FROM generate_series(1, 3) g") == 3
    assert seqs_taken("UPDATE invoice SET amount = amount + 1 WHERE id <= 3") == 3
    assert seqs_taken("DELETE FROM invoice WHERE id IN (1, 2)") == 2
    assert seqs_taken("UPDATE invoice SET amount = 0 WHERE id = -1") == 0  # matched no row: no event
    rows = owner.execute("SELECT seq, operation FROM ledgerlock.audit_event "
                         "WHERE table_oid = 'invoice'::regclass AND operation <> 'PROTECT' ORDER BY seq").fetchall()
    assert [r[1] for r in rows] == ["INSERT"] * 3 + ["UPDATE"] * 3 + ["DELETE"] * 2
    assert [r[0] for r in rows] == list(range(rows[0][0], rows[0][0] + 8))


def test_under_an_override_every_row_carries_it_and_only_rows_in_a_window_carry_the_window(db, app):
    ctl = db.connect("controller")
    lock_id = ctl.execute("SELECT ledgerlock.lock_period('1', %s, %s)", MARCH).fetchone()[0]
    with ctl.transaction():
        ctl.execute("SET LOCAL ledgerlock.reason = 'client label'")
        ov = ctl.execute("SELECT ledgerlock.begin_override('bank fee booked late')").fetchone()[0]
        ctl.execute("INSERT INTO invoice (id, company_id, issued_on) VALUES (1, 1, '2026-03-10'), "
                    "(2, 1, '2026-04-10'), (3, 2, '2026-03-10')")
        ctl.execute("UPDATE invoice SET issued_on = '2026-04-11' WHERE id = 1")  # out of the window
        ctl.execute("DELETE FROM invoice WHERE id = 3")
    assert events(db, "true") == [
        ("INSERT", "1", lock_id, ov, "bank fee booked late"),
        ("INSERT", "2", None, ov, "bank fee booked late"),
        ("INSERT", "3", None, ov, "bank fee booked late"),
        ("UPDATE", "1", lock_id, ov, "bank fee booked late"),  # the window it left
        ("DELETE", "3", None, ov, "bank fee booked late")]
    # the next transaction has no override: the client's label again, no window, no override
    app.execute("SET ledgerlock.reason = 'routine entry'")
    app.execute("INSERT INTO invoice (id, company_id, issued_on) VALUES (4, 1, '2026-04-12')")
    assert events(db, "row_key ->> 'id' = '4'") == [("INSERT", "4", None, None, "routine entry")]


def test_the_latest_override_of_the_transaction_is_the_one_recorded(db, app):
    ctl = db.connect("controller")
    lock_id = ctl.execute("SELECT ledgerlock.lock_period('1', %s, %s)", MARCH).fetchone()[0]
    with ctl.transaction():
        first = ctl.execute("SELECT ledgerlock.begin_override('first reason')").fetchone()[0]
        ctl.execute("INSERT INTO invoice (id, company_id, issued_on) VALUES (1, 1, '2026-03-10')")
        second = ctl.execute("SELECT ledgerlock.begin_override('second reason')").fetchone()[0]
        ctl.execute("INSERT INTO invoice (id, company_id, issued_on) VALUES (2, 1, '2026-03-11')")
    assert first != second
    assert events(db, "true") == [("INSERT", "1", lock_id, first, "first reason"),
                                  ("INSERT", "2", lock_id, second, "second reason")]


def test_an_override_rolled_back_to_a_savepoint_is_not_recorded(db, app):
    """The override is read from the database in each statement, never remembered: one rolled back with its
    savepoint no longer marks the transaction's later writes (which the guard then lets through only outside
    locked windows)."""
    ctl = db.connect("controller")
    ctl.execute("SELECT ledgerlock.lock_period('1', %s, %s)", MARCH)
    with ctl.transaction():
        ctl.execute("SET LOCAL ledgerlock.reason = 'client label'")
        ctl.execute("SAVEPOINT s")
        ctl.execute("SELECT ledgerlock.begin_override('abandoned')")
        ctl.execute("ROLLBACK TO SAVEPOINT s")
        ctl.execute("INSERT INTO invoice (id, company_id, issued_on) VALUES (1, 1, '2026-04-10')")
    assert events(db, "true") == [("INSERT", "1", None, None, "client label")]


def test_a_window_unlocked_later_in_the_transaction_is_recorded_from_then_on(db, app):
    """Nothing about the period context is cached across statements: a window unlocked in the middle of a
    transaction marks the writes made after it."""
    admin = db.connect("admin")
    lock_id = admin.execute("SELECT ledgerlock.lock_period('1', %s, %s)", MARCH).fetchone()[0]
    with admin.transaction():
        admin.execute("INSERT INTO invoice (id, company_id, issued_on) VALUES (1, 1, '2026-04-10')")
        admin.execute("SELECT ledgerlock.unlock_period(%s, 'late supplier invoice')", (lock_id,))
        admin.execute("INSERT INTO invoice (id, company_id, issued_on) VALUES (2, 1, '2026-03-10')")
    assert events(db, "true") == [("INSERT", "1", None, None, None),
                                  ("INSERT", "2", lock_id, None, "late supplier invoice")]


def test_the_capture_query_is_planned_once_per_session_whatever_the_client_set(db, app):
    """The capture's query plan does not depend on its trigger's arguments, so it is generic from the first
    call: a session's first audited writes (a connection per web request) do not plan it again each time, and a
    client's plan_cache_mode cannot make every write re-plan it. The events of such a session are the same."""
    configs = db.owner().execute(
        "SELECT DISTINCT p.proname, p.proconfig FROM pg_proc p LEFT JOIN pg_trigger t ON t.tgfoid = p.oid "
        "WHERE p.oid = 'ledgerlock.audit_capture()'::regprocedure "
        "OR (t.tgrelid = 'invoice'::regclass AND t.tgname LIKE 'll\\_90\\_%')").fetchall()
    assert len(configs) == 2  # the shared capture, and invoice's own (ledgerlock._ll90_capture_body)
    assert all("plan_cache_mode=force_generic_plan" in config for _, config in configs), configs
    admin = db.connect("admin")
    for writer in (app, admin):
        writer.execute("SET plan_cache_mode = force_custom_plan")
    for i in (1, 2, 3):
        app.execute("INSERT INTO invoice (id, company_id, issued_on) VALUES (%s, 1, date '2026-04-01')", (i,))
    app.execute("UPDATE invoice SET amount = 5 WHERE id = 2")
    admin.execute("UPDATE invoice SET amount = 6 WHERE id = 3")
    assert events(db, "true") == [("INSERT", "1", None, None, None), ("INSERT", "2", None, None, None),
                                  ("INSERT", "3", None, None, None), ("UPDATE", "2", None, None, None),
                                  ("UPDATE", "3", None, None, None)]


@pytest.mark.parametrize("rows", [9_000, 20_000])  # below and above the rows the capture pairs without a join
def test_a_bulk_update_after_a_one_row_update_in_the_same_session_pairs_every_row_in_one_pass(db, app, rows):
    """A session's first UPDATE plans the capture's query for the rows it had, and the plan is kept for the
    session: when the old and new rows were paired by a join, a one-row UPDATE first made a later bulk UPDATE
    pair its rows by a nested loop, N x N steps (8,000 rows: 82 s instead of 0.1 s; 9,000 would take ~100 s).
    The same session now pairs them in one pass, by position, also when the update moves every key; and
    verification, which replays moved keys apart, reads them in one pass too (12,000 keys moved by one UPDATE
    took 16 s on 16 before, 0.6 s now)."""
    app.execute("INSERT INTO invoice (id, company_id, issued_on) "
                "SELECT g, 1 + g %% 2, date '2026-04-01' FROM generate_series(1, %s) g", (rows,))
    app.execute("UPDATE invoice SET amount = amount + 1 WHERE id = 1")
    app.execute("SET statement_timeout = '60s'")  # a wait with a bound, not a timing: one pass takes well under 1 s
    app.execute("UPDATE invoice SET amount = amount + 1")
    app.execute("UPDATE invoice SET id = id + 100000, amount = amount + 1")
    app.execute("RESET statement_timeout")
    auditor = db.connect("auditor")
    paired = auditor.execute(
        "SELECT (new_row ->> 'id')::bigint - (old_row ->> 'id')::bigint AS moved, "
        "       pg_catalog.count(*) AS events, "
        "       pg_catalog.count(*) FILTER (WHERE (new_row ->> 'amount')::numeric "
        "                                         = (old_row ->> 'amount')::numeric + 1) AS one_more, "
        "       pg_catalog.count(DISTINCT old_row ->> 'id') AS rows_seen "
        "FROM ledgerlock.audit_event WHERE table_oid = 'invoice'::regclass AND operation = 'UPDATE' "
        "GROUP BY 1 ORDER BY 1").fetchall()
    # the one-row update and the first bulk one keep their keys, the second moves each by 100000: every event
    # pairs a row with its own new version
    assert paired == [(0, rows + 1, rows + 1, rows), (100000, rows, rows, rows)]
    auditor.execute("SET statement_timeout = '20s'")  # 12,000 moved keys took 16.6 s before on 16, 0.6 s now
    assert auditor.execute("SELECT ok, problems FROM ledgerlock.verify_audit()").fetchone() == (True, 0)
    # a moved row changed behind the trail is still found under its new key
    db.owner().execute("ALTER TABLE invoice DISABLE TRIGGER USER")
    db.owner().execute("UPDATE invoice SET amount = 0 WHERE id = 100007")
    db.owner().execute("ALTER TABLE invoice ENABLE TRIGGER USER")
    assert auditor.execute("SELECT ok, problems FROM ledgerlock.verify_audit()").fetchone() == (False, 1)



def test_a_one_row_update_pairs_its_own_old_and_new_rows_whoever_writes_and_whatever_it_changes(db, app):
    """A one-row UPDATE, the common write, pairs its old and new images by a cross join of its two one-row
    transition tables, not through the arrays a bulk UPDATE is zipped from (81 -> 77 us of server CPU, PG 16).
    Its event is the same: a moved key, a write into an unlocked window (with the window and its reason), the
    application's and an admin's; an UPDATE that matched no row records nothing; two rows are still paired
    each with its own."""
    app.execute("INSERT INTO invoice (id, company_id, issued_on, amount) VALUES "
                "(1, 1, '2026-04-10', 1), (2, 1, '2026-03-10', 2), (3, 1, '2026-04-12', 3)")
    admin = db.connect("admin")
    lock_id = admin.execute("SELECT ledgerlock.lock_period('1', %s, %s)", MARCH).fetchone()[0]
    admin.execute("SELECT ledgerlock.unlock_period(%s, 'late supplier invoice')", (lock_id,))
    app.execute("UPDATE invoice SET id = 10, amount = 7 WHERE id = 1")
    app.execute("UPDATE invoice SET amount = 8 WHERE id = 2")
    admin.execute("UPDATE invoice SET note = 'checked' WHERE id = 3")
    app.execute("UPDATE invoice SET amount = 0 WHERE id = -1")
    app.execute("UPDATE invoice SET amount = amount + 1 WHERE id IN (3, 10)")
    updates = db.connect("auditor").execute(
        "SELECT row_key ->> 'id', old_row ->> 'id', new_row ->> 'id', old_row ->> 'amount', new_row ->> 'amount', "
        "       new_row ->> 'note', lock_id, reason, db_user = 'll_admin' "
        "FROM ledgerlock.audit_event WHERE table_oid = 'invoice'::regclass AND operation = 'UPDATE' "
        "ORDER BY seq").fetchall()
    assert updates[:3] == [("10", "1", "10", "1.00", "7.00", None, None, None, False),
                           ("2", "2", "2", "2.00", "8.00", None, lock_id, "late supplier invoice", False),
                           ("3", "3", "3", "3.00", "3.00", "checked", None, None, True)]
    assert sorted(updates[3:]) == [("10", "10", "10", "7.00", "8.00", None, None, None, False),
                                   ("3", "3", "3", "3.00", "4.00", "checked", None, None, False)]
    assert db.connect("auditor").execute("SELECT ok, problems FROM ledgerlock.verify_audit()").fetchone() == (True, 0)


def test_while_a_window_of_another_company_is_unlocked_the_capture_calls_no_sql_helper(db, app):
    """The capture's SQL helpers are inlined into its one query, also when a window is unlocked somewhere and
    the capture tests every row's scope against the unlocked ones. ledgerlock._scope_in_image, which makes that
    test, was STABLE while its body calls the volatile _row_scope, and PostgreSQL does not inline such a
    function: two SQL function calls per row as soon as any company had a window unlocked (an audited one-row
    INSERT of another company 49 -> 80 us of server CPU on 16). Counted by pg_stat_xact_user_functions."""
    owner = db.owner()
    owner.execute(f"ALTER DATABASE {db.name} SET track_functions = 'all'")
    admin = db.connect("admin")
    lock_id = admin.execute("SELECT ledgerlock.lock_period('2', %s, %s)", MARCH).fetchone()[0]
    admin.execute("SELECT ledgerlock.unlock_period(%s, 'late supplier invoice')", (lock_id,))
    writer = db.connect("app", autocommit=False)  # a session opened after track_functions was set
    writer.execute("INSERT INTO invoice (id, company_id, issued_on) VALUES (1, 1, '2026-03-10'), (2, 1, '2026-04-10')")
    writer.execute("UPDATE invoice SET amount = 5")
    writer.execute("DELETE FROM invoice WHERE id = 1")
    calls = writer.execute(
        "SELECT f.funcname, p.prolang = (SELECT oid FROM pg_language WHERE lanname = 'sql'), f.calls "
        "FROM pg_stat_xact_user_functions f JOIN pg_proc p ON p.oid = f.funcid "
        "WHERE f.schemaname = 'ledgerlock' ORDER BY 1").fetchall()
    writer.commit()
    assert [c for c in calls if c[1]] == []  # no SQL function was called: each one was inlined
    capture = owner.execute("SELECT ledgerlock._generated_name('invoice', 'll90', 'capture')").fetchone()[0]
    assert (capture, False, 3) in calls  # invoice's own capture (ledgerlock._ll90_capture_body), once per statement
    # the permitted neighbour: a row of the company whose window is unlocked, written into it, is looked up,
    # once for each window kind: an INSERT has no old image to look up
    writer.execute("INSERT INTO invoice (id, company_id, issued_on) VALUES (3, 2, '2026-03-10')")
    lookups = writer.execute("SELECT funcname, calls FROM pg_stat_xact_user_functions WHERE schemaname = 'ledgerlock' "
                             "AND funcname IN ('_locking_window', '_unlocked_window') ORDER BY 1").fetchall()
    writer.commit()
    assert lookups == [("_locking_window", 1), ("_unlocked_window", 1)]
    assert events(db, "row_key ->> 'id' = '3'") == [("INSERT", "3", lock_id, None, "late supplier invoice")]
    assert events(db, "row_key ->> 'id' IN ('1', '2')") == [
        ("INSERT", "1", None, None, None), ("INSERT", "2", None, None, None), ("UPDATE", "1", None, None, None),
        ("UPDATE", "2", None, None, None), ("DELETE", "1", None, None, None)]

WINDOWS = 4_000  # companies with a reopened March (unlocked, not locked again)
ROWS = 60_000


def test_with_thousands_of_windows_unlocked_a_bulk_statement_is_one_pass_and_marks_only_their_rows(db, app):
    """Admins may leave many months reopened, one per company of a multi-tenant book. The capture looks each
    row's scope up among the scopes with an unlocked window; searched element by element, that cost rows x
    windows, whatever company the statement wrote (1,000 windows: a 100k-row UPDATE of a company with none,
    1.4 -> 2.7 s; these 4,000 windows: ~10 s for the UPDATE below). It is one lookup per row now. The bound is
    a wait with a limit, not a timing: both statements take ~1 s on every server."""
    owner = db.owner()
    owner.execute("INSERT INTO company (id, name) SELECT g, 'company ' || g FROM generate_series(1, %s) g "
                  "ON CONFLICT DO NOTHING", (WINDOWS + 10,))
    admin = db.connect("admin")
    admin.execute("SELECT ledgerlock.lock_period(g::text, %s, %s) FROM generate_series(1, %s) g", (*MARCH, WINDOWS))
    admin.execute("SELECT ledgerlock.unlock_period(id, 'reopened for company ' || scope) "
                  "FROM ledgerlock.period_lock WHERE status = 'active'")
    app.execute("SET statement_timeout = '4s'")
    app.execute("INSERT INTO invoice (id, company_id, issued_on) VALUES (0, 1, '2026-03-02')")  # one row first
    # most rows in ten companies with no window; every 100th in a reopened one, half of those dated in March
    app.execute("INSERT INTO invoice (id, company_id, issued_on) "
                "SELECT g, CASE WHEN g %% 100 = 0 THEN 1 + g %% %s ELSE %s + g %% 10 END, "
                "       CASE WHEN g %% 200 = 0 THEN date '2026-03-15' ELSE date '2026-04-15' END "
                "FROM generate_series(1, %s) g", (WINDOWS, WINDOWS + 1, ROWS))
    app.execute("UPDATE invoice SET amount = amount + 1")
    # each event carries the window its row was written into, with the window's unlock reason, and no other
    marks = owner.execute(
        "SELECT e.operation, count(*), count(w.id), "
        "       count(*) FILTER (WHERE e.lock_id IS NOT DISTINCT FROM w.id "
        "                          AND e.reason IS NOT DISTINCT FROM w.unlock_reason) "
        "FROM ledgerlock.audit_event e JOIN invoice i ON i.id = (e.row_key ->> 'id')::int "
        "LEFT JOIN ledgerlock.period_lock w ON w.scope = i.company_id::text AND w.status = 'unlocked' "
        "                                  AND i.issued_on BETWEEN w.from_date AND w.to_date "
        "WHERE e.table_oid = 'invoice'::regclass GROUP BY 1 ORDER BY 1").fetchall()
    in_windows = 1 + ROWS // 200
    assert marks == [("INSERT", ROWS + 1, in_windows, ROWS + 1), ("UPDATE", ROWS + 1, in_windows, ROWS + 1)]
    assert events(db, "row_key ->> 'id' = '200' AND operation = 'UPDATE'") == [
        ("UPDATE", "200", owner.execute("SELECT id FROM ledgerlock.period_lock WHERE scope = '201'").fetchone()[0],
         None, "reopened for company 201")]
