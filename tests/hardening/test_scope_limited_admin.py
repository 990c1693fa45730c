"""A tenant admin (ledgerlock_admin limited by grant_scope to scope 1) manages its own scope's locks and
nothing every scope shares: protect, unprotect, R4 rules, reinstall_guards, number formats, four-eyes and
the default fiscal year need an admin who is not scope-limited (LL005). Each refusal has its permitted
neighbour: the same call by the unrestricted admin, and the tenant's own-scope operations."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg import sql

from lltest import HOSTILE_OPTIONS, fresh_database, refused

GLOBAL = r"changes what every scope shares: (ll_tenant_\w+) is limited to scopes 1"


def login(db, user: str, dbname: str | None = None) -> psycopg.Connection:
    """A login of a role of the test's own, with the hostile session settings when the sweep runs the test so."""
    info = db.cluster.server.conninfo(dbname=dbname or db.name, user=user)
    return psycopg.connect(info + (f" options='{HOSTILE_OPTIONS}'" if db.hostile else ""), autocommit=True)


@pytest.fixture
def tenant(db):
    """A login with ledgerlock_admin and the application's DML, limited to scope 1; invoices protected
    (numbered), one final invoice in each of scopes 1 and 2."""
    name = f"ll_tenant_{uuid.uuid4().hex[:8]}"
    owner = db.owner()
    role = sql.Identifier(name)
    owner.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE ledgerlock_admin").format(role))
    owner.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {0}; "
                          "GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {0}").format(role))
    db.connect("admin").execute("SELECT ledgerlock.grant_scope(%s::regrole, '1')", (name,))
    db.protect_invoice(number_column="number", number_format="INV-{SEQ}")
    db.connect("app").execute(
        "INSERT INTO invoice (id, company_id, issued_on, status) VALUES "
        "(1, 1, '2025-03-10', 'approved'), (2, 2, '2025-03-10', 'approved'), (3, 2, '2025-03-11', 'draft')")
    conn = login(db, name)
    yield conn
    conn.close()
    db.close_all()
    owner = psycopg.connect(db.conninfo(), autocommit=True)
    owner.execute(sql.SQL("DROP OWNED BY {}").format(role))
    owner.execute(sql.SQL("DROP ROLE {}").format(role))
    owner.close()


# Every call that changes what all scopes share, refused to the tenant and run by the unrestricted admin.
GLOBAL_CALLS = [
    "SELECT ledgerlock.protect('journal_entry', 'posted_on', 'company_id')",
    "SELECT ledgerlock.protect('invoice', 'issued_on', 'company_id', $$status in ('approved','paid')$$, "
    "'number', 'INV-{SEQ}', '{paid,reconciled}', 'ar')",
    "SELECT ledgerlock.reinstall_guards()",
    "SELECT ledgerlock.protect_referenced('invoice', 'payment')",
    "SELECT ledgerlock.protect_lines('invoice_line', 'invoice')",
    "SELECT ledgerlock.set_number_format('invoice', 'F-{SEQ:4}')",
    "SELECT ledgerlock.set_four_eyes(true)",
    "SELECT ledgerlock.set_fiscal_year_start('*', 4)",
]


@pytest.mark.parametrize("call", GLOBAL_CALLS)
def test_a_tenant_admin_cannot_change_what_every_scope_shares(db, tenant, call):
    with refused("LL005", GLOBAL) as info:
        tenant.execute(call)
    assert "not scope-limited" in info.value.diag.message_hint
    db.connect("admin").execute(call)  # the permitted neighbour: an unrestricted admin


def test_a_tenant_admin_cannot_unprotect_a_shared_table_and_edit_another_scope(db, tenant):
    """The reported escape: unprotect the shared table, then edit scope 2 inside its hard lock."""
    admin = db.connect("admin")
    admin.execute("SELECT ledgerlock.lock_period('2', '2025-03-01', '2025-03-31', 'hard')")
    with refused("LL005", r"^unprotect changes what every scope shares"):
        tenant.execute("SELECT ledgerlock.unprotect('invoice', 'tenant maintenance')")
    with refused("LL002", r"locked \(hard\) for scope 2"):
        tenant.execute("UPDATE invoice SET note = 'edited' WHERE id = 3")
    with refused("LL001"):
        tenant.execute("UPDATE invoice SET amount = 1 WHERE id = 2")
    # the unrestricted admin is refused too, but by R1 (final rows), not by the scope rule
    with refused("LL001", r"holds final rows"):
        admin.execute("SELECT ledgerlock.unprotect('invoice', 'maintenance')")


def test_a_tenant_admin_cannot_remove_r4_rules(db, tenant):
    admin = db.connect("admin")
    admin.execute("SELECT ledgerlock.protect_referenced('invoice', 'payment')")
    admin.execute("SELECT ledgerlock.protect_lines('invoice_line', 'invoice')")
    for call in ("SELECT ledgerlock.unprotect_referenced('invoice', 'payment', 'tenant')",
                 "SELECT ledgerlock.unprotect_lines('invoice_line', 'invoice', 'tenant')"):
        with refused("LL005", GLOBAL):
            tenant.execute(call)
        admin.execute(call.replace("'tenant'", "'retired'"))


def test_fiscal_year_start_only_for_granted_scopes(db, tenant):
    with refused("LL005", r"set_fiscal_year_start on scope 2 is not allowed: ll_tenant_\w+ is limited to scopes 1"):
        tenant.execute("SELECT ledgerlock.set_fiscal_year_start('2', 4)")
    tenant.execute("SELECT ledgerlock.set_fiscal_year_start('1', 4)")  # its own scope
    db.connect("admin").execute("SELECT ledgerlock.set_fiscal_year_start('2', 7)")
    assert db.owner().execute(
        "SELECT scope, start_month FROM ledgerlock.fiscal_year_start ORDER BY scope").fetchall() == [
        ("1", 4), ("2", 7)]


def test_four_eyes_global_requests_need_an_unrestricted_admin(db, tenant):
    admin, admin2 = db.connect("admin"), db.connect("admin2")
    admin.execute("SELECT ledgerlock.set_four_eyes(true)")
    with refused("LL005", r"^request_four_eyes_off changes what every scope shares"):
        tenant.execute("SELECT ledgerlock.request_four_eyes_off('tenant wants it off')")
    request = admin2.execute("SELECT ledgerlock.request_four_eyes_off('audit over')").fetchone()[0]
    with refused("LL005", r"^approving request #\d+ \(turn four-eyes off\) changes what every scope shares"):
        tenant.execute("SELECT ledgerlock.approve_unlock(%s)", (request,))
    # the refusal can be put on record, and it is the same refusal
    assert tenant.execute("SELECT ledgerlock.record_unlock_refusal(%s)", (request,)).fetchone()[0] is True
    assert db.owner().execute("SELECT four_eyes_unlock FROM ledgerlock.close_setting").fetchone()[0] is True
    admin.execute("SELECT ledgerlock.approve_unlock(%s)", (request,))  # a different, unrestricted admin
    assert db.owner().execute("SELECT four_eyes_unlock FROM ledgerlock.close_setting").fetchone()[0] is False


def test_a_tenant_admin_still_manages_its_own_scope(db, tenant):
    """Locks, hard unlocks and four-eyes approvals of scope 1 stay the tenant's business."""
    admin2 = db.connect("admin2")
    lock = tenant.execute("SELECT ledgerlock.lock_period('1', '2025-03-01', '2025-03-31', 'hard')").fetchone()[0]
    with refused("LL005", r"lock_period on scope 2 is not allowed"):
        tenant.execute("SELECT ledgerlock.lock_period('2', '2025-03-01', '2025-03-31', 'hard')")
    tenant.execute("SELECT ledgerlock.unlock_period(%s, 'late supplier invoice')", (lock,))
    lock = tenant.execute("SELECT ledgerlock.relock(%s)", (lock,)).fetchone()[0]
    db.connect("admin").execute("SELECT ledgerlock.set_four_eyes(true)")
    request = admin2.execute("SELECT ledgerlock.request_unlock(%s, 'correction')", (lock,)).fetchone()[0]
    tenant.execute("SELECT ledgerlock.approve_unlock(%s)", (request,))
    assert db.owner().execute(
        "SELECT status FROM ledgerlock.period_locks WHERE id = %s", (lock,)).fetchone()[0] == "unlocked"


def test_a_tenant_admin_cannot_retire_a_protected_table_dropped_behind_ledgerlock(db, tenant):
    """unprotect by the oid of a table dropped while protected (no DDL guard) retires it from every scope's
    books: the unrestricted admin's call, as any unprotect."""
    owner = db.owner()
    owner.execute("CREATE TABLE scratch_doc (id int PRIMARY KEY, issued_on date NOT NULL)")
    owner.execute("SELECT ledgerlock.protect('scratch_doc', 'issued_on')")
    oid = owner.execute("SELECT 'scratch_doc'::regclass::oid").fetchone()[0]
    owner.execute("DROP TABLE scratch_doc")
    with refused("LL005", r"^unprotect changes what every scope shares"):
        tenant.execute("SELECT ledgerlock.unprotect(%s, 'tenant cleanup')", (oid,))
    db.connect("admin").execute("SELECT ledgerlock.unprotect(%s, 'a scratch table dropped by the DBA')", (oid,))
    assert owner.execute("SELECT count(*) FROM ledgerlock.protected_table WHERE tbl = %s", (oid,)).fetchone() == (0,)


def test_revoking_a_tenant_admins_last_scope_leaves_it_limited_to_no_scope(db, tenant):
    """A role no grant names is not limited at all: taking a tenant admin's only company away
    (revoke_scope) made it the admin of every company, able to unprotect, unlock any scope's hard locks and
    grant itself scopes. It now stays limited, to no scope, until an unrestricted admin lifts the limit on
    purpose and with a reason."""
    admin = db.connect("admin")
    [name] = tenant.execute("SELECT session_user::text").fetchone()
    admin.execute("SELECT ledgerlock.revoke_scope(%s::regrole, '1')", (name,))
    with refused("LL005", r"^protect changes what every scope shares: ll_tenant_\w+ is limited to no scope$"):
        tenant.execute(GLOBAL_CALLS[0])
    for scope in ("1", "2"):
        with refused("LL005", rf"^lock_period on scope {scope} is not allowed: ll_tenant_\w+ is limited to no scope$"):
            tenant.execute("SELECT ledgerlock.lock_period(%s, '2025-01-01', '2025-01-31')", (scope,))
    with refused("LL005", r"^grant_scope: ll_tenant_\w+ is itself limited to some scopes$"):
        tenant.execute("SELECT ledgerlock.grant_scope(%s::regrole, '2')", (name,))
    assert tenant.execute("SELECT count(*) FROM ledgerlock.period_locks").fetchone()[0] == 0  # RLS: none of them
    assert admin.execute("SELECT count(*) FROM ledgerlock.period_locks").fetchone()[0] == 0
    # only an unrestricted admin lifts the limit, and only with a reason and no scope held
    with refused("22023", "lift_scope_limit requires a reason"):
        admin.execute("SELECT ledgerlock.lift_scope_limit(%s::regrole, ' ')", (name,))
    with refused("LL005", r"^lift_scope_limit changes what every scope shares"):
        tenant.execute("SELECT ledgerlock.lift_scope_limit(%s::regrole, 'me')", (name,))
    with refused("LL004", r"^ll_admin is not limited to scopes$"):
        admin.execute("SELECT ledgerlock.lift_scope_limit('ll_admin', 'nothing to lift')")
    with refused("22023", r"^revoke_scope requires a role and a scope$"):  # the mark of no scope is no scope
        admin.execute("SELECT ledgerlock.revoke_scope(%s::regrole, '')", (name,))
    # a grant replaces the limit to no scope; the limit comes back with the last revoke
    admin.execute("SELECT ledgerlock.grant_scope(%s::regrole, '2')", (name,))
    with refused("LL004", rf"^{name} still holds scopes 2$"):
        admin.execute("SELECT ledgerlock.lift_scope_limit(%s::regrole, 'too early')", (name,))
    lock_id = tenant.execute("SELECT ledgerlock.lock_period('2', '2025-01-01', '2025-01-31')").fetchone()[0]
    assert lock_id is not None  # the permitted neighbour: the granted scope
    admin.execute("SELECT ledgerlock.revoke_scope(%s::regrole, '2')", (name,))
    with refused("LL005", r"is limited to no scope$"):
        tenant.execute("SELECT ledgerlock.lock_period('2', '2025-02-01', '2025-02-28')")
    admin.execute("SELECT ledgerlock.lift_scope_limit(%s::regrole, 'promoted to chief accountant')", (name,))
    tenant.execute("SELECT ledgerlock.lock_period('1', '2025-02-01', '2025-02-28')")  # every scope now
    assert admin.execute("SELECT kind, scope, reason, details ->> 'grantee' FROM ledgerlock.lock_history "
                         "WHERE kind LIKE '%scope%' ORDER BY id").fetchall() == [
        ("grant_scope", "1", None, name), ("revoke_scope", "1", None, name), ("grant_scope", "2", None, name),
        ("revoke_scope", "2", None, name), ("lift_scope_limit", None, "promoted to chief accountant", name)]
    assert db.connect("auditor").execute("SELECT ok, problems FROM ledgerlock.verify_audit()").fetchone() == (True, 0)


def test_a_tenant_admin_of_one_database_is_limited_in_every_database_once_it_is_scoped(db, tenant):
    """Roles are the cluster's and scope grants each database's: the tenant limited to scope 1 here was the
    unrestricted admin of another database of the cluster with ledgerlock installed, where no grant names it
    (there it could unprotect, lift hard locks, grant itself every scope). doctor says so here; a member of
    ledgerlock_scoped is limited in every database, to the scopes granted there and to none elsewhere."""
    owner = db.owner()
    [name] = tenant.execute("SELECT session_user::text").fetchone()
    findings = ("SELECT severity, object, finding, fix FROM ledgerlock.doctor_findings() "
                "WHERE check_name = 'ledgerlock role' AND finding LIKE '%in this database only%'")
    finding = [f for f in owner.execute(findings).fetchall() if f[1] == name]
    assert len(finding) == 1 and finding[0][0] == "warning", finding
    assert finding[0][2].startswith(f"{name} is limited to scopes in this database only; it may connect to ")
    assert finding[0][3].startswith(f"GRANT ledgerlock_scoped TO {name}")
    with fresh_database(db.cluster, hostile=db.hostile) as other:
        def connect():
            return login(db, name, other.name)

        other.connect("admin").execute("SELECT ledgerlock.lock_period('2', '2025-01-01', '2025-01-31', 'hard')")
        with connect() as there:  # the hazard, as documented: no grant names it there
            there.execute("SELECT ledgerlock.set_four_eyes(true)")
        owner.execute(sql.SQL("GRANT ledgerlock_scoped TO {}").format(sql.Identifier(name)))
        with refused("42501"):  # the tenant cannot take the mark off itself (no ADMIN on ledgerlock_scoped)
            tenant.execute(sql.SQL("REVOKE ledgerlock_scoped FROM {}").format(sql.Identifier(name)))
        with connect() as there:
            with refused("LL005", rf"^set_four_eyes changes what every scope shares: {name} is limited to no scope$"):
                there.execute("SELECT ledgerlock.set_four_eyes(false)")
            with refused("LL005", rf"^lock_period on scope 3 is not allowed: {name} is limited to no scope$"):
                there.execute("SELECT ledgerlock.lock_period('3', '2025-01-01', '2025-01-31')")
            with refused("LL005", rf"^grant_scope: {name} is itself limited to some scopes$"):
                there.execute("SELECT ledgerlock.grant_scope(%s::regrole, '3')", (name,))
            assert there.execute("SELECT count(*) FROM ledgerlock.period_locks").fetchone()[0] == 0  # RLS
            assert there.execute("SELECT count(*) FROM ledgerlock.lock_history").fetchone()[0] == 0
            # lifting a limit that is the cluster's is the DBA's REVOKE, not a database's function
            with refused("LL004", rf"^{name} is limited in every database of the cluster"):
                other.connect("admin").execute("SELECT ledgerlock.lift_scope_limit(%s::regrole, 'x')", (name,))
            # the permitted neighbours: a scope granted there; the unrestricted admin there
            other.connect("admin").execute("SELECT ledgerlock.grant_scope(%s::regrole, '3')", (name,))
            there.execute("SELECT ledgerlock.lock_period('3', '2025-01-01', '2025-01-31')")
            assert [r[0] for r in there.execute("SELECT scope FROM ledgerlock.period_locks")] == ["3"]
            other.connect("admin").execute("SELECT ledgerlock.lock_period('4', '2025-01-01', '2025-01-31')")
    # here, its own scope as before, and doctor has nothing to say about it any more
    tenant.execute("SELECT ledgerlock.lock_period('1', '2025-01-01', '2025-01-31')")
    with refused("LL005", r"lock_period on scope 2 is not allowed"):
        tenant.execute("SELECT ledgerlock.lock_period('2', '2025-01-01', '2025-01-31')")
    assert [f for f in owner.execute(findings).fetchall() if f[1] == name] == []


def test_a_reader_of_every_table_still_reads_the_trail_under_its_row_level_security(db, tenant):
    """The row-level security of the lock tables and the trail asks ledgerlock._acts_as as the reading role: a
    member of pg_read_all_data (a backup or reporting login) reads them, every scope (no grant names it), and a
    limited role through it still only its own."""
    owner = db.owner()
    db.connect("admin").execute("SELECT ledgerlock.lock_period('2', '2025-01-01', '2025-01-31')")
    reader = f"ll_reader_{uuid.uuid4().hex[:8]}"
    owner.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE pg_read_all_data").format(sql.Identifier(reader)))
    try:
        with login(db, reader) as conn:
            assert conn.execute("SELECT scope FROM ledgerlock.period_lock").fetchall() == [("2",)]
            assert conn.execute("SELECT count(*) > 0 FROM ledgerlock.audit_event WHERE scope = '2'").fetchone()[0]
        assert tenant.execute("SELECT count(*) FROM ledgerlock.period_lock").fetchone()[0] == 0
        assert tenant.execute("SELECT count(*) FROM ledgerlock.audit_event WHERE scope = '2'").fetchone()[0] == 0
    finally:
        owner.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(reader)))


def test_doctor_names_a_role_an_earlier_release_left_unlimited_by_revoking_its_last_scope(db, tenant):
    """Before migration 0044, revoke_scope of a role's last scope deleted its last grant row, which left it
    unlimited. doctor finds such a role in the lock history until an admin decides: limited to none, or
    unlimited on purpose (lift_scope_limit, with a reason)."""
    owner, admin = db.owner(), db.connect("admin")
    [name] = tenant.execute("SELECT session_user::text").fetchone()
    findings = ("SELECT object, finding, fix FROM ledgerlock.doctor_findings() "
                "WHERE check_name = 'ledgerlock role' AND finding LIKE '%before migration 0044%'")
    admin.execute("SELECT ledgerlock.revoke_scope(%s::regrole, '1')", (name,))
    assert owner.execute(findings).fetchall() == []  # limited to none: nothing to decide
    owner.execute("DELETE FROM ledgerlock.scope_grant WHERE grantee = %s::regrole", (name,))  # as 0043 left it
    [(role, finding, fix)] = owner.execute(findings).fetchall()
    assert role == name and finding.startswith(f"{name} acts on every scope: its last scope was revoked on ")
    assert fix.startswith(f"to limit it to no scope: SELECT ledgerlock.grant_scope('{name}', 'x'); ")
    tenant.execute("SELECT ledgerlock.lock_period('2', '2025-01-01', '2025-01-31')")  # what doctor warns of
    admin.execute("SELECT ledgerlock.grant_scope(%s::regrole, 'x')", (name,))
    admin.execute("SELECT ledgerlock.revoke_scope(%s::regrole, 'x')", (name,))
    assert owner.execute(findings).fetchall() == []
    with refused("LL005", r"is limited to no scope$"):
        tenant.execute("SELECT ledgerlock.lock_period('2', '2025-02-01', '2025-02-28')")
    admin.execute("SELECT ledgerlock.lift_scope_limit(%s::regrole, 'group controller, on purpose')", (name,))
    assert owner.execute(findings).fetchall() == []
    tenant.execute("SELECT ledgerlock.lock_period('2', '2025-02-01', '2025-02-28')")


def test_verification_shows_a_tenant_admin_the_problems_of_its_scopes_only(db, tenant):
    """Verification reads every scope as its owner: a tenant admin of scope 1 read, in its problems, the amount
    of scope 2's invoice changed behind the trail, which the row-level security of the trail hides from it.
    It now reads its own scope's problems, how many others there are, and a whole table's problem without the
    row of another scope it names; verification still covers every scope (ok is false), and an auditor of
    every scope reads them all."""
    from click.testing import CliRunner

    from ledgerlock.cli import cli

    db.connect("app").execute("UPDATE invoice SET paid = true WHERE id = 1")  # scope 2's row is now the oldest
    su = db.owner()
    guards = [r[0] for r in su.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = 'invoice'::regclass "
                                       "AND NOT tgisinternal").fetchall()]
    su.execute("ALTER TABLE invoice DISABLE TRIGGER USER; UPDATE invoice SET amount = 999 WHERE id = 2; "
               "UPDATE invoice SET amount = 777 WHERE id = 1")
    for guard in guards:  # put back as they were
        su.execute(sql.SQL("ALTER TABLE invoice ENABLE ALWAYS TRIGGER {}").format(sql.Identifier(guard)))
    su.execute("ALTER TABLE invoice ADD COLUMN channel text NOT NULL DEFAULT 'web'")
    every = db.connect("auditor").execute("SELECT code, row_key, problem FROM ledgerlock.audit_discrepancies() "
                                          "ORDER BY code, problem").fetchall()
    assert [(c, k) for c, k, _ in every] == [("column_unrecorded", None), ("row_changed", {"id": 1}),
                                             ("row_changed", {"id": 2})], every
    assert "999.00" in every[2][2] and "the oldest: invoice id=2" in every[0][2]
    mine = tenant.execute("SELECT code, row_key, problem FROM ledgerlock.audit_discrepancies() "
                          "ORDER BY code, problem").fetchall()
    name = tenant.execute("SELECT session_user").fetchone()[0]
    assert mine == [
        ("column_unrecorded", None, f"public.invoice.channel: column_unrecorded (the details name a row outside "
                                    f"scopes 1, to which {name} is limited: an auditor of every scope reads them)"),
        ("row_changed", {"id": 1}, mine[1][2]),
        ("withheld", None, f"1 more problem(s) concern rows outside scopes 1, to which {name} is limited: an "
                           f"auditor of every scope reads them")], mine
    assert mine[1][2].startswith("invoice id=1: amount is 777.00 in the table, 0.00 in event seq ")
    ok, problem, problems = tenant.execute("SELECT ok, problem, problems FROM ledgerlock.verify_audit()").fetchone()
    assert (ok, problems) == (False, 3) and "id=2" not in problem and "999" not in problem, problem
    info = db.cluster.server.conninfo(dbname=db.name, user=name)
    res = CliRunner().invoke(cli, ["--dsn", info, "audit", "verify"])
    assert res.exit_code != 0 and "777.00" in res.output, res.output
    assert "999" not in res.output and "id=2" not in res.output and "1 more problem(s)" in res.output, res.output


def test_a_tenant_admin_sees_the_number_series_of_its_scopes_only(db, tenant):
    """A format with {SCOPE} gives each company a series of its own, whose counter says how many invoices that
    company finalized: number_series and number_gaps showed a tenant admin of scope 1 every company's. It now
    sees its scopes' series and those every scope shares; an admin of every scope sees them all."""
    owner = db.owner()
    owner.execute("""CREATE TABLE bill (id integer PRIMARY KEY, company_id text NOT NULL, issued_on date NOT NULL,
                                        status text NOT NULL, number text);
        GRANT SELECT, INSERT, UPDATE, DELETE ON bill TO ll_app;
        SELECT ledgerlock.protect('bill', 'issued_on', 'company_id', $$status = 'final'$$, 'number',
                                  '{SCOPE}/B-{YYYY}-{SEQ:3}')""")
    db.connect("app").execute("INSERT INTO bill VALUES (1, '1', '2026-01-05', 'final'), "
                              "(2, '2', '2026-01-05', 'final'), (3, '2', '2026-01-06', 'final'), "
                              "(4, '1.5', '2026-01-05', 'final'), (5, '12', '2025-01-05', 'final')")
    owner.execute("ALTER TABLE bill DISABLE TRIGGER USER; DELETE FROM bill WHERE id = 2")  # a hole in scope 2's
    query = ("SELECT c.relname::text, s.series, s.last_value FROM ledgerlock.number_series s "
             "JOIN pg_class c ON c.oid = s.table_name ORDER BY 1, 2")
    every = db.connect("admin").execute(query).fetchall()
    assert every == [("bill", "1.5/B-2026-{SEQ}", 1), ("bill", "1/B-2026-{SEQ}", 1), ("bill", "12/B-2025-{SEQ}", 1),
                     ("bill", "2/B-2026-{SEQ}", 2), ("invoice", "INV-{SEQ}", 2)], every
    assert tenant.execute(query).fetchall() == [("bill", "1/B-2026-{SEQ}", 1), ("invoice", "INV-{SEQ}", 2)]
    # a scope right next to a year: scope 1's 12026- and scope 12's 122026- are told apart by the year's width
    owner.execute("""CREATE TABLE slip (id integer PRIMARY KEY, company_id text NOT NULL, issued_on date NOT NULL,
                                        status text NOT NULL, number text);
        SELECT ledgerlock.protect('slip', 'issued_on', 'company_id', $$status = 'final'$$, 'number',
                                  '{SCOPE}{YYYY}-{SEQ}');
        INSERT INTO slip VALUES (1, '1', '2026-01-05', 'final'), (2, '12', '2026-01-05', 'final')""")
    slips = "SELECT series FROM ledgerlock.number_series WHERE table_name = 'slip'::regclass ORDER BY 1"
    assert db.connect("admin").execute(slips).fetchall() == [("12026-{SEQ}",), ("122026-{SEQ}",)]
    assert tenant.execute(slips).fetchall() == [("12026-{SEQ}",)]
    gaps = "SELECT series, kind, first_number FROM ledgerlock.number_gaps('bill')"
    assert db.connect("admin").execute(gaps).fetchall() == [("2/B-2026-{SEQ}", "gap", 1)]
    assert tenant.execute(gaps).fetchall() == []
