"""No lock a client can take stalls ledgerlock (issue: denial of service by the application role).

Advisory keys are one global space that any client may take, so ledgerlock takes none: writers and lock
changes meet on the scope gates, the sealer and migrate on gates of their own, all in schema ledgerlock_gate,
which no client may use. Each test has the application hold every key ledgerlock ever used, exclusively, in an
open transaction, and shows the operation completing within lock_timeout; then the same with the strongest
relation lock a client can take without any privilege on a table it can name: PREPARE of an INSERT, whose
parse analysis locks the table ROW EXCLUSIVE until the transaction ends, before any privilege is checked. The
last tests show the gates themselves cannot be taken, by LOCK or by PREPARE, nor a slot of the line finalizers
of a series wait in (ledgerlock_gate.number_queue) by SELECT ... FOR UPDATE.
"""

from __future__ import annotations

import psycopg
import pytest

from ledgerlock import migrate
from lltest import lives_ok, refused

# every advisory key ledgerlock used: the period-lock namespace with the scopes' hashes, the sealer, migrate
HOSTILE_KEYS = [
    "SELECT pg_advisory_lock(1280049184, hashtext('1'))",
    "SELECT pg_advisory_lock(1280049184, hashtext('*'))",
    "SELECT pg_advisory_lock(1280049157)",
    "SELECT pg_advisory_lock(1280049153)",
]


def prepared_writes(db, app: psycopg.Connection) -> list[str]:
    """In app's open transaction, PREPARE an INSERT into every table of ledgerlock it can name (schema
    ledgerlock, whose functions and views clients use): each holds ROW EXCLUSIVE on its table to the end of
    the transaction, though app may write none of them. Returns the tables."""
    tables = [r[0] for r in db.owner().execute(
        "SELECT c.oid::regclass::text FROM pg_class c WHERE c.relnamespace = 'ledgerlock'::regnamespace "
        "AND c.relkind IN ('r', 'p') ORDER BY 1")]
    for i, table in enumerate(tables):
        app.execute(f"PREPARE ll_hostile_{i} AS INSERT INTO {table} DEFAULT VALUES")
    return tables


@pytest.fixture(params=["advisory keys", "prepared inserts"])
def hostile(db, request):
    db.protect_invoice()
    app = db.connect("app", autocommit=False)
    if request.param == "advisory keys":
        for stmt in HOSTILE_KEYS:
            app.execute(stmt)
    else:
        held = prepared_writes(db, app)
        assert "ledgerlock.audit_chain" in held and "ledgerlock.installed_code" in held
        locked = {r[0] for r in app.execute(
            "SELECT relation::regclass::text FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'relation' "
            "AND mode = 'RowExclusiveLock'")}
        assert set(held) <= locked  # the attack is real: every one is held
    yield db
    app.rollback()
    app.close()


def timed(db, role: str) -> psycopg.Connection:
    conn = db.connect(role)
    conn.execute("SET lock_timeout = '5s'")
    return conn


def test_lock_changes_of_a_scope_are_not_stalled_by_a_client(hostile):
    admin = timed(hostile, "admin")
    lock_id = admin.execute("SELECT ledgerlock.lock_period('1', '2025-03-01', '2025-03-31')").fetchone()[0]
    admin.execute("SELECT ledgerlock.upgrade_lock(%s)", (lock_id,))
    admin.execute("SELECT ledgerlock.unlock_period(%s, 'reopened for the test')", (lock_id,))
    admin.execute("SELECT ledgerlock.relock(%s)", (lock_id,))
    assert admin.execute("SELECT count(*) FROM ledgerlock.period_locks WHERE status = 'active'").fetchone()[0] == 1


def test_writes_of_a_scope_are_not_stalled_by_a_client(hostile):
    timed(hostile, "admin").execute("SELECT ledgerlock.lock_period('1', '2025-05-01', '2025-05-31')")
    app = timed(hostile, "app")
    app.execute("INSERT INTO invoice (company_id, issued_on) VALUES (1, '2025-03-15')")  # below the mark
    with refused("LL002"):
        app.execute("INSERT INTO invoice (company_id, issued_on) VALUES (1, '2025-05-15')")


def test_sealing_and_verification_are_not_stalled_by_a_client(hostile):
    hostile.connect("app").execute("INSERT INTO invoice (company_id) VALUES (1)")
    auditor = timed(hostile, "auditor")
    assert auditor.execute("SELECT ledgerlock.audit_digest()").fetchone()[0].startswith("ll1:")
    assert auditor.execute("SELECT ok FROM ledgerlock.verify_audit()").fetchone()[0] is True


def test_migrate_is_not_stalled_by_a_client(hostile):
    report = migrate.migrate(hostile.conninfo("owner") + " options='-c lock_timeout=5s'")
    assert report.applied == []


def test_the_gates_cannot_be_named_by_the_application(db):
    """PREPARE locks what it names before any privilege on the table is checked; the schema's USAGE is checked
    first, and no client has it."""
    gates = [r[0] for r in db.owner().execute(
        "SELECT c.oid::regclass::text FROM pg_class c WHERE c.relnamespace = 'ledgerlock_gate'::regnamespace "
        "ORDER BY 1")]
    # 64 scope gates, the sealer's, the installer's, and the numbering's line (with its key's index)
    assert len(gates) == 68 and {"ledgerlock_gate.sealer", "ledgerlock_gate.installer",
                                 "ledgerlock_gate.number_queue"} <= set(gates)
    assert db.owner().execute("SELECT ledgerlock._scope_gate('1')").fetchone()[0] in gates
    db.owner().execute("SELECT ledgerlock.grant_scope('ll_admin2', '2')")  # a tenant admin, limited to scope 2
    for role in ("app", "controller", "admin", "admin2", "auditor"):
        conn = db.connect(role)
        for gate in gates[::13] + ["ledgerlock_gate.sealer", "ledgerlock_gate.installer",
                                   "ledgerlock_gate.number_queue"]:
            for stmt in (f"PREPARE ll_gate AS INSERT INTO {gate} DEFAULT VALUES",
                         f"PREPARE ll_gate AS SELECT FROM {gate}", f"LOCK TABLE {gate} IN ROW EXCLUSIVE MODE",
                         f"SELECT FROM {gate} FOR UPDATE"):
                with refused("42501", r"permission denied for schema ledgerlock_gate"), conn.transaction():
                    conn.execute(stmt)
        assert not conn.execute("SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() "
                                "AND relation IN (SELECT oid FROM pg_class "
                                "WHERE relnamespace = 'ledgerlock_gate'::regnamespace)").fetchone()[0]
    # the permitted neighbour: a lock change of scope 1 takes its gate and goes through
    [(lock_id,)] = lives_ok(db.connect("admin"), "SELECT ledgerlock.lock_period('1', '2025-03-01', '2025-03-31')")
    assert db.owner().execute("SELECT scope, status FROM ledgerlock.period_locks WHERE id = %s",
                              (lock_id,)).fetchone() == ("1", "active")
