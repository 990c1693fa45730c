"""A capability is the ledgerlock role a login acts as: a membership that inherits the role's privileges or lets
it SET ROLE to it. PostgreSQL 16 added grants that withhold both (`WITH ADMIN TRUE, INHERIT FALSE, SET FALSE`:
"may hand the role out, may not use it"), and gives one of them to every CREATEROLE role over each role it
creates; `pg_has_role(..., 'MEMBER')` counts such a grant. PostgreSQL itself does not let its holder act as the
role, and neither does ledgerlock (ledgerlock._acts_as, the rule the scope limit asks too)."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg import sql

from lltest import HOSTILE_OPTIONS, refused

LOCK = "SELECT ledgerlock.lock_period('1', '2025-01-01', '2025-01-31')"


@pytest.fixture
def person(db):
    """A fresh login role, and a function that connects as it (with the hostile settings under the sweep)."""
    name = f"ll_person_{uuid.uuid4().hex[:8]}"
    owner = db.owner()
    owner.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
    db.protect_invoice()
    conns = []

    def connect() -> psycopg.Connection:
        info = db.cluster.server.conninfo(dbname=db.name, user=name)
        conns.append(psycopg.connect(info + (f" options='{HOSTILE_OPTIONS}'" if db.hostile else ""),
                                     autocommit=True))
        return conns[-1]

    yield name, connect
    for c in conns:
        c.close()
    db.close_all()
    owner = psycopg.connect(db.conninfo(), autocommit=True)
    owner.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
    owner.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))
    owner.close()


def capabilities(conn: psycopg.Connection) -> tuple[bool, bool, bool]:
    return conn.execute("SELECT ledgerlock.has_capability('admin'), ledgerlock.has_capability('controller'), "
                        "ledgerlock.has_capability('auditor')").fetchone()


def lock_details(conn: psycopg.Connection) -> tuple:
    """What period_lock_at (PUBLIC) shows of the lock on 2025-01-15: notes and who locked are for the roles."""
    return conn.execute("SELECT level, note, locked_by FROM ledgerlock.period_lock_at('1', '2025-01-15')").fetchone()


def pg16(db) -> bool:
    return int(db.owner().execute("SHOW server_version_num").fetchone()[0]) >= 160000


def test_a_grant_that_withholds_inherit_and_set_gives_no_capability(db, person):
    if not pg16(db):
        pytest.skip("PostgreSQL 16 added grants that withhold INHERIT and SET (on 15 every member may SET ROLE)")
    name, connect = person
    who = sql.Identifier(name)
    owner = db.owner()
    db.connect("admin").execute("SELECT ledgerlock.lock_period('1', '2025-01-01', '2025-01-31', 'hard', "
                                "'January closed')")
    owner.execute(sql.SQL("GRANT ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor TO {} "
                          "WITH ADMIN TRUE, INHERIT FALSE, SET FALSE").format(who))
    hr = connect()
    # PostgreSQL's word on it (no privilege, no SET ROLE), and pg_has_role's, which counted it before
    with refused("42501", "permission denied to set role"):
        hr.execute("SET ROLE ledgerlock_admin")
    with refused("42501", "permission denied for function lock_period"):
        hr.execute(LOCK)
    assert hr.execute("SELECT pg_has_role('ledgerlock_admin', 'MEMBER')").fetchone()[0] is True
    assert capabilities(hr) == (False, False, False)
    assert lock_details(hr) == ("hard", None, None)
    # what the grant does give: handing the role to someone, who then acts as it and sees the details
    colleague = f"{name}_c"
    owner.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(colleague)))
    try:
        hr.execute(sql.SQL("GRANT ledgerlock_controller TO {}").format(sql.Identifier(colleague)))
        with psycopg.connect(db.cluster.server.conninfo(dbname=db.name, user=colleague), autocommit=True) as c:
            assert capabilities(c) == (False, True, False)
            assert lock_details(c) == ("hard", "January closed", "ll_admin")
    finally:
        db.close_all()
        owner = db.owner()
        owner.execute(sql.SQL("DROP OWNED BY {0}; DROP ROLE {0}").format(sql.Identifier(colleague)))


@pytest.mark.parametrize("options", ["INHERIT TRUE, SET FALSE", "INHERIT FALSE, SET TRUE"])
def test_a_grant_that_inherits_or_allows_set_role_is_the_permitted_neighbour(db, person, options):
    if not pg16(db):
        pytest.skip("PostgreSQL 16 added the INHERIT and SET options of a grant")
    name, connect = person
    db.owner().execute(sql.SQL("GRANT ledgerlock_controller TO {} WITH " + options).format(sql.Identifier(name)))
    conn = connect()
    assert capabilities(conn) == (False, True, False)
    if options.startswith("INHERIT FALSE"):
        with refused("42501", "permission denied for function lock_period"):
            conn.execute(LOCK)
        conn.execute("SET ROLE ledgerlock_controller")
    conn.execute(LOCK)
    assert lock_details(conn) == ("soft", None, name)


def test_a_noinherit_member_acts_as_the_role_it_may_set(db, person):
    """On every server: a NOINHERIT login holds none of the role's privileges but may SET ROLE to it, so it acts
    as the role (once it has set it: PostgreSQL checks the privilege to call)."""
    name, connect = person
    owner = db.owner()
    owner.execute(sql.SQL("ALTER ROLE {} NOINHERIT").format(sql.Identifier(name)))
    owner.execute(sql.SQL("GRANT ledgerlock_auditor TO {}").format(sql.Identifier(name)))
    conn = connect()
    assert capabilities(conn) == (False, False, True)
    conn.execute("SET ROLE ledgerlock_auditor")
    assert conn.execute("SELECT ok FROM ledgerlock.verify_audit()").fetchone()[0] is True
    # and the role it was not granted stays out of reach
    with refused("LL005", "lock_period requires the ledgerlock_controller role"):
        conn.execute(LOCK)
