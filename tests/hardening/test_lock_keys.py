"""No lock a client can take stalls ledgerlock (issue: denial of service by the application role).

Advisory keys are one global space that any client may take, so ledgerlock takes none: writers and lock
changes meet on the scope gates (ledgerlock tables clients hold no privilege on), the sealer on
ledgerlock.audit_chain and migrate on ledgerlock.installed_code. Each test has the application hold every
key ledgerlock ever used, exclusively, in an open transaction, and shows the operation completing within
lock_timeout; the last shows the gates themselves cannot be taken.
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


@pytest.fixture
def hostile(db):
    db.protect_invoice()
    app = db.connect("app", autocommit=False)
    for stmt in HOSTILE_KEYS:
        app.execute(stmt)
    yield db
    app.rollback()
    app.close()


def timed(db, role: str) -> psycopg.Connection:
    conn = db.connect(role)
    conn.execute("SET lock_timeout = '5s'")
    return conn


def test_lock_changes_of_a_scope_are_not_stalled_by_an_advisory_key(hostile):
    admin = timed(hostile, "admin")
    lock_id = admin.execute("SELECT ledgerlock.lock_period('1', '2025-03-01', '2025-03-31')").fetchone()[0]
    admin.execute("SELECT ledgerlock.upgrade_lock(%s)", (lock_id,))
    admin.execute("SELECT ledgerlock.unlock_period(%s, 'reopened for the test')", (lock_id,))
    admin.execute("SELECT ledgerlock.relock(%s)", (lock_id,))
    assert admin.execute("SELECT count(*) FROM ledgerlock.period_locks WHERE status = 'active'").fetchone()[0] == 1


def test_writes_of_a_scope_are_not_stalled_by_an_advisory_key(hostile):
    hostile.connect("admin").execute("SELECT ledgerlock.lock_period('1', '2025-05-01', '2025-05-31')")
    app = timed(hostile, "app")
    app.execute("INSERT INTO invoice (company_id, issued_on) VALUES (1, '2025-03-15')")  # below the mark
    with refused("LL002"):
        app.execute("INSERT INTO invoice (company_id, issued_on) VALUES (1, '2025-05-15')")


def test_sealing_and_verification_are_not_stalled_by_an_advisory_key(hostile):
    hostile.connect("app").execute("INSERT INTO invoice (company_id) VALUES (1)")
    auditor = timed(hostile, "auditor")
    assert auditor.execute("SELECT ledgerlock.audit_digest()").fetchone()[0].startswith("ll1:")
    assert auditor.execute("SELECT ok FROM ledgerlock.verify_audit()").fetchone()[0] is True


def test_migrate_is_not_stalled_by_an_advisory_key(hostile):
    report = migrate.migrate(hostile.conninfo("owner") + " options='-c lock_timeout=5s'")
    assert report.applied == []


def test_the_scope_gates_cannot_be_locked_by_the_application(db):
    app = db.connect("app")
    gate = db.owner().execute("SELECT ledgerlock._scope_gate('1')").fetchone()[0]
    for mode in ("ROW EXCLUSIVE", "SHARE ROW EXCLUSIVE", "ACCESS EXCLUSIVE"):
        with refused("42501"), app.transaction():
            app.execute(f"LOCK TABLE {gate} IN {mode} MODE")
    # the permitted neighbour: a lock change of scope 1 goes through
    [(lock_id,)] = lives_ok(db.connect("admin"), "SELECT ledgerlock.lock_period('1', '2025-03-01', '2025-03-31')")
    assert db.owner().execute("SELECT scope, status FROM ledgerlock.period_locks WHERE id = %s",
                              (lock_id,)).fetchone() == ("1", "active")
