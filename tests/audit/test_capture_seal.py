"""Cheap capture: a write stores its event unhashed and the sealer hashes it. Each seal closes with a SEAL event
(when it was taken, the earliest start a later event may have, the code in force), so verify_audit reports an
event whose time is inconsistent with its seal order (back-dated or forward-dated), a forged seal, and a
shipped function replaced and then restored between two seals."""

from __future__ import annotations

import pytest

from lltest import lives_ok, refused

FORMAT = "INV-{YYYY}-{SEQ:5}"


def verify(db):
    return db.connect("auditor").execute(
        "SELECT ok, problems, problem FROM ledgerlock.verify_audit()").fetchone()


def problems(db) -> list[str]:
    """Every problem verify_audit reports (its NOTICEs), not only the first."""
    conn = db.connect("auditor")
    seen: list[str] = []
    conn.add_notice_handler(lambda d: seen.append(d.message_primary.removeprefix("ll-problem ")))
    conn.execute("SELECT * FROM ledgerlock.verify_audit()")
    return [p for p in seen if not p.startswith("ll-progress")]


def seal(db):
    return db.connect("auditor").execute("SELECT ledgerlock.audit_seal()").fetchone()[0]


@pytest.fixture
def trail(db):
    """Invoices written and sealed twice, so that a SEAL event precedes whatever a test writes next."""
    db.protect_invoice(number_column="number", number_format=FORMAT)
    app = db.connect("app")
    app.execute("INSERT INTO invoice (id, company_id, issued_on, amount) "
                "SELECT g, 1, date '2025-01-01' + g, g * 10 FROM generate_series(1, 5) g")
    seal(db)
    app.execute("UPDATE invoice SET status = 'approved' WHERE id = 1")
    seal(db)
    return db


def test_a_write_stores_its_event_unhashed_and_the_seal_hashes_it(trail):
    trail.connect("app").execute("INSERT INTO invoice (id, company_id, amount) VALUES (50, 1, 7)")
    su = trail.owner()
    seq, stored = su.execute("SELECT seq, event_hash FROM ledgerlock.audit_event "
                             "WHERE operation = 'INSERT' AND row_key = '{\"id\": 50}'").fetchone()
    assert stored is None
    assert seal(trail) == 1
    sealed, recomputed, shown = su.execute(
        "SELECT c.event_hash, ledgerlock._audit_event_hash(e.seq, e.at, e.txid, e.table_name, e.row_key, e.scope, "
        "e.operation, e.old_row, e.new_row, e.db_user, e.actor, e.reason, e.context, e.lock_id, e.override_id, "
        "e.details), l.event_hash FROM ledgerlock.audit_event e JOIN ledgerlock.audit_chain c ON c.seq = e.seq "
        "JOIN ledgerlock.audit_log l ON l.seq = e.seq WHERE e.seq = %s", (seq,)).fetchone()
    assert sealed == recomputed == shown
    # the seal closes with its own event, the last link of the seal
    op, details, last = su.execute(
        "SELECT e.operation, e.details, c.chain_seq = (SELECT max(chain_seq) FROM ledgerlock.audit_chain) "
        "FROM ledgerlock.audit_chain c JOIN ledgerlock.audit_event e ON e.seq = c.seq "
        "WHERE c.seq > %s ORDER BY c.chain_seq LIMIT 1", (seq,)).fetchone()
    assert op == "SEAL" and last and details["events"] == 1
    assert {"closed_at", "open_since", "code_digest", "code_xid", "code_home", "installed"} <= set(details)
    assert verify(trail)[0]


def test_a_seal_with_nothing_to_seal_writes_nothing(trail):
    head = trail.owner().execute("SELECT max(chain_seq) FROM ledgerlock.audit_chain").fetchone()[0]
    assert seal(trail) == 0
    assert trail.owner().execute("SELECT max(chain_seq) FROM ledgerlock.audit_chain").fetchone()[0] == head


def test_an_event_keeps_who_when_txid_key_scope_images_reasons_lock_and_override(trail):
    admin, controller = trail.connect("admin"), trail.connect("controller")
    soft = admin.execute("SELECT ledgerlock.lock_period('1', '2025-01-01', '2025-01-31')").fetchone()[0]
    with controller.transaction():
        controller.execute("SET LOCAL ledgerlock.actor = 'jane'")
        override = controller.execute("SELECT ledgerlock.begin_override('late credit note')").fetchone()[0]
        txid = controller.execute("SELECT pg_current_xact_id()::text").fetchone()[0]
        controller.execute("UPDATE invoice SET amount = 99 WHERE id = 2")
    seal(trail)
    row = trail.owner().execute(
        "SELECT db_user, actor, at IS NOT NULL, txid::text, row_key, scope, old_row ->> 'amount', "
        "new_row ->> 'amount', reason, lock_id, override_id, chain_seq IS NOT NULL "
        "FROM ledgerlock.audit_log WHERE operation = 'UPDATE' AND row_key = '{\"id\": 2}'").fetchone()
    assert row == ("ll_controller", "jane", True, txid, {"id": 2}, "1", "20.00", "99.00", "late credit note", soft,
                   override, True)
    assert verify(trail)[0]


def test_a_back_dated_forged_event_is_reported_and_a_long_open_transaction_is_not(trail):
    # permitted: a transaction that started before a seal and commits after it carries its (older) start
    app = trail.connect("app")
    with app.transaction():
        app.execute("SELECT now()")
        seal(trail)  # another connection: this transaction is open, so the seal's lower bound is below it
        trail.connect("app").execute("INSERT INTO invoice (id, company_id) VALUES (60, 1)")
        seal(trail)
        app.execute("INSERT INTO invoice (id, company_id) VALUES (61, 1)")
    seal(trail)
    assert verify(trail)[:2] == (True, 0)
    # forbidden: an UNLOCK event dated a month back, written now by a superuser and sealed as genuine
    su = trail.owner()
    seq = su.execute(
        "INSERT INTO ledgerlock.audit_event (seq, at, table_name, row_key, scope, operation, new_row, db_user, reason) "
        "VALUES (nextval('ledgerlock.audit_event_seq'), now() - interval '30 days', 'ledgerlock.lock_event', "
        "'{\"id\": 9}', '1', 'UNLOCK', '{\"id\": 9}', 'll_admin', 'forged') RETURNING seq").fetchone()[0]
    seal(trail)
    ok, _n, problem = verify(trail)
    assert not ok and problem.startswith(f"event seq {seq} ") and "it was back-dated" in problem


def _sealed(db, seq: int) -> bool:
    return db.owner().execute("SELECT EXISTS (SELECT FROM ledgerlock.audit_chain WHERE seq = %s)",
                              (seq,)).fetchone()[0]


def test_an_open_writing_transaction_leaves_each_seal_reading_only_what_is_new(trail):
    """An application's transaction that wrote a row and stays open (a batch job, a session left idle in
    transaction) held every seal's lower bound below it: each seal read every event written since and compared
    it with the chain, 85 ms a seal after 200,000 events (PostgreSQL 16), more with every open hour. A seal now
    records the transactions open at its snapshot, its own, and the first id none had then; the next one reads
    the events of those transactions and of the ones that began after. What it seals is unchanged: the open
    transaction's event when it commits, and an event the sealing transaction wrote itself before it sealed."""
    open_app, app = trail.connect("app"), trail.connect("app")
    open_app.execute("BEGIN")
    open_app.execute("INSERT INTO invoice (id, company_id) VALUES (70, 1)")
    txid = open_app.execute("SELECT pg_current_xact_id()::text").fetchone()[0]
    app.execute("INSERT INTO invoice (id, company_id) SELECT g, 1 FROM generate_series(1000, 2999) g")
    assert seal(trail) == 2000
    su = trail.owner()
    names = su.execute("SELECT details -> 'open_txids' FROM ledgerlock.audit_event WHERE seq = "
                       "(SELECT max(seq) FROM ledgerlock.audit_chain)").fetchone()[0]
    assert txid in names
    app.execute("INSERT INTO invoice (id, company_id) VALUES (3000, 1)")
    su.execute("ANALYZE ledgerlock.audit_event")  # as autovacuum would have: a table of 10 rows is read whole
    auditor = trail.connect("auditor")
    with auditor.transaction():
        assert auditor.execute("SELECT ledgerlock.audit_seal()").fetchone()[0] == 1
        read = auditor.execute("SELECT seq_tup_read + coalesce(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables "
                               "WHERE relid = 'ledgerlock.audit_event'::regclass").fetchone()[0]
    assert read < 50, read  # the previous seal's own event, the new one, the open transaction's (was > 2,000)
    open_app.execute("COMMIT")
    held = su.execute("SELECT seq FROM ledgerlock.audit_event WHERE row_key = '{\"id\": 70}'").fetchone()[0]
    assert held < su.execute("SELECT max(seq) FROM ledgerlock.audit_chain").fetchone()[0]  # numbered before it
    assert not _sealed(trail, held)
    # a transaction that writes and then seals: its own event is sealed by the next seal
    controller = trail.connect("controller")
    with controller.transaction():
        controller.execute("SELECT ledgerlock.lock_period('2', '2024-01-01', '2024-01-31')")
        own = controller.execute("SELECT max(seq) FROM ledgerlock.audit_event "
                                 "WHERE txid = pg_current_xact_id()").fetchone()[0]
        controller.execute("SELECT ledgerlock.audit_seal()")
    assert not _sealed(trail, own)
    seal(trail)
    assert _sealed(trail, held) and _sealed(trail, own)
    assert verify(trail)[:2] == (True, 0)


def forge_dated_event(db, at: str) -> int:
    """A NOTE event dated `at` (an SQL expression), written now by a superuser and sealed as genuine."""
    seq = db.owner().execute(
        f"INSERT INTO ledgerlock.audit_event (seq, at, table_name, operation, db_user) "
        f"VALUES (nextval('ledgerlock.audit_event_seq'), {at}, 'public.invoice', 'NOTE', 'll_admin') "
        f"RETURNING seq").fetchone()[0]
    seal(db)
    return seq


HOSTILE = ("SET TimeZone = 'Pacific/Kiritimati'", "SET DateStyle = 'SQL, DMY'", "SET extra_float_digits = -15",
           "SET IntervalStyle = 'sql_standard'", "SET search_path = pg_temp, public", "SET work_mem = '64kB'",
           "SET parallel_tuple_cost = 1000000", "SET max_parallel_workers_per_gather = 0")


def test_the_auditors_session_settings_change_no_time_verdict(trail):
    """The seals' times are read back by the verifying session (the chain check compares each event's time
    with its seal's): its TimeZone, DateStyle or planner settings must neither invent nor hide a problem."""
    hostile = trail.connect("auditor")
    for setting in HOSTILE:
        hostile.execute(setting)
    statement = "SELECT ok, problems, problem FROM ledgerlock.verify_audit()"
    assert hostile.execute(statement).fetchone()[:2] == (True, 0)  # permitted: a clean trail stays clean
    seq = forge_dated_event(trail, "now() - interval '30 days'")
    plain = verify(trail)
    assert not plain[0] and plain[2].startswith(f"event seq {seq} ") and "it was back-dated" in plain[2]
    assert hostile.execute(statement).fetchone() == plain


def test_a_forward_dated_forged_event_is_reported(trail):
    seq = forge_dated_event(trail, "now() + interval '1 day'")
    ok, _n, problem = verify(trail)
    assert not ok and problem.startswith(f"event seq {seq} ")
    assert "after the seal that contains it was closed" in problem


def test_a_forged_seal_event_is_reported(trail):
    su = trail.owner()
    seq = su.execute(
        "INSERT INTO ledgerlock.audit_event (seq, operation, db_user, details) "
        "VALUES (nextval('ledgerlock.audit_event_seq'), 'SEAL', 'll_auditor', '{\"batch\": 1}') "
        "RETURNING seq").fetchone()[0]
    trail.connect("app").execute("INSERT INTO invoice (id, company_id) VALUES (70, 1)")
    seal(trail)
    ok, _n, problem = verify(trail)
    assert not ok and problem == (f"event seq {seq} (chain link {seq_link(trail, seq)}) claims to close a seal "
                                  "but does not: it was forged")


def seq_link(db, seq):
    return db.owner().execute("SELECT chain_seq FROM ledgerlock.audit_chain WHERE seq = %s", (seq,)).fetchone()[0]


NO_OP = """CREATE OR REPLACE FUNCTION ledgerlock.guard_final_row() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$ BEGIN RETURN NEW; END $$"""


def test_a_guard_replaced_and_restored_between_seals_is_reported(trail):
    su = trail.owner()
    original = su.execute("SELECT pg_get_functiondef('ledgerlock.guard_final_row()'::regprocedure)").fetchone()[0]
    app = trail.connect("app")
    with refused("LL001", r"is final and cannot be updated"):
        app.execute("UPDATE invoice SET amount = 1 WHERE id = 1")
    su.execute(NO_OP)
    lives_ok(app, "UPDATE invoice SET amount = 1 WHERE id = 1")  # the guard is gone
    su.execute(original)
    with refused("LL001", r"is final and cannot be updated"):
        app.execute("UPDATE invoice SET amount = 2 WHERE id = 1")
    assert su.execute("SELECT md5(pg_get_functiondef('ledgerlock.guard_final_row()'::regprocedure)) = md5(%s)",
                      (original,)).fetchone()[0]
    seal(trail)
    found = problems(trail)
    assert any(p.startswith("a shipped ledgerlock function was rewritten between the seals") for p in found), found


def test_protecting_a_table_between_seals_is_no_code_change(trail):
    # permitted neighbour: protect generates functions and installs guards, and says so in the trail
    trail.owner().execute("SELECT ledgerlock.protect('payment', 'paid_on')")
    trail.connect("app").execute("INSERT INTO invoice (id, company_id) VALUES (80, 1)")
    seal(trail)
    assert verify(trail)[:2] == (True, 0)


def test_no_client_can_hold_the_sealers_lock(trail):
    app = trail.connect("app")
    with refused("42501", r"permission denied for table audit_chain"), app.transaction():
        app.execute("LOCK TABLE ledgerlock.audit_chain IN ACCESS SHARE MODE")
    with refused("42501", r"permission denied for function audit_seal"):
        app.execute("SELECT ledgerlock.audit_seal()")
    # an auditor's read of the chain in an open transaction does not stop a seal
    auditor = trail.connect("auditor")
    with auditor.transaction():
        auditor.execute("SELECT count(*) FROM ledgerlock.audit_chain")
        trail.connect("app").execute("INSERT INTO invoice (id, company_id) VALUES (90, 1)")
        controller = trail.connect("controller")
        controller.execute("SET lock_timeout = '5s'")
        assert controller.execute("SELECT ledgerlock.audit_seal()").fetchone()[0] == 1


def test_an_event_is_the_same_whether_or_not_a_window_is_reopened_somewhere(trail):
    """A statement looks windows up only when some window is unlocked or it runs under an override: the events
    it writes otherwise carry exactly the fields they carry when the lookup runs and finds nothing."""
    app, admin = trail.connect("app"), trail.connect("admin")
    cols = ("table_name, row_key, scope, operation, old_row - '{id,number}'::text[], "
            "new_row - '{id,number}'::text[], db_user, actor, reason, context, lock_id, override_id, details")

    def write(first_id: int) -> list[tuple]:
        with app.transaction():
            app.execute("SET LOCAL ledgerlock.actor = 'jane'")
            app.execute("SET LOCAL ledgerlock.reason = 'month end'")
            app.execute("INSERT INTO invoice (id, company_id, issued_on, amount) VALUES (%s, 2, '2025-03-02', 5), "
                        "(%s, 2, '2025-03-03', 6)", (first_id, first_id + 1))
            app.execute("UPDATE invoice SET amount = amount + 1 WHERE id IN (%s, %s)", (first_id, first_id + 1))
            app.execute("DELETE FROM invoice WHERE id = %s", (first_id + 1,))
        return [(r[0], {"id": r[1]["id"] - first_id}, *r[2:]) for r in trail.owner().execute(
            f"SELECT {cols} FROM ledgerlock.audit_event WHERE table_oid = 'invoice'::regclass "
            "AND (row_key ->> 'id')::int IN (%s, %s) ORDER BY seq", (first_id, first_id + 1)).fetchall()]

    quiet = write(100)
    lock = admin.execute("SELECT ledgerlock.lock_period('1', '2025-02-01', '2025-02-28')").fetchone()[0]
    admin.execute("SELECT ledgerlock.unlock_period(%s, 'late supplier invoice')", (lock,))
    assert trail.owner().execute("SELECT count(*) FROM ledgerlock.period_lock WHERE status = 'unlocked'"
                                 ).fetchone()[0] == 1
    looked_up = write(200)
    assert quiet == looked_up
    assert [r[3] for r in quiet] == ["INSERT", "INSERT", "UPDATE", "UPDATE", "DELETE"]
    assert {(r[2], r[6], r[7], r[8], r[10], r[11]) for r in quiet} == {("2", "ll_app", "jane", "month end", None,
                                                                        None)}
    # a write into the unlocked window of scope 1 still carries the window and its unlock reason
    app.execute("INSERT INTO invoice (id, company_id, issued_on, amount) VALUES (300, 1, '2025-02-10', 1)")
    assert trail.owner().execute("SELECT lock_id, reason FROM ledgerlock.audit_event "
                                 "WHERE row_key = '{\"id\": 300}'").fetchone() == (lock, "late supplier invoice")
    assert verify(trail)[0]
