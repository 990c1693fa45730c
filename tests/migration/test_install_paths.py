"""The two ways to install — yoyo migrations and the one-file script — give the same schema, and
re-running migrate changes nothing."""

from __future__ import annotations

import subprocess

import psycopg
from psycopg import sql

from ledgerlock import migrate, sqlfiles
from lltest import refused

# Everything in schema ledgerlock that a user could observe, as comparable text (yoyo's own tables,
# which only the migration path has, left out).
SNAPSHOT = """
SELECT 'relation', c.relname || ':' || c.relkind::text || ':' || coalesce(array_to_string(c.relacl, ','), '')
FROM pg_class c WHERE c.relnamespace = 'ledgerlock'::regnamespace AND c.relname !~ '^_?yoyo'
UNION ALL
SELECT 'column', c.relname || '.' || a.attname || ':' || format_type(a.atttypid, a.atttypmod) || ':'
       || a.attnotnull || ':' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE c.relnamespace = 'ledgerlock'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
  AND c.relname !~ '^_?yoyo'
UNION ALL
SELECT 'constraint', conrelid::regclass || ':' || conname || ':' || pg_get_constraintdef(oid)
FROM pg_constraint WHERE connamespace = 'ledgerlock'::regnamespace
  AND NOT (conrelid::regclass::text LIKE ANY (ARRAY['ledgerlock._yoyo%', 'ledgerlock.yoyo%']))
UNION ALL
SELECT 'index', pg_get_indexdef(indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
WHERE c.relnamespace = 'ledgerlock'::regnamespace AND c.relname !~ '^_?yoyo'
UNION ALL
SELECT 'view', c.relname || ':' || pg_get_viewdef(c.oid) FROM pg_class c
WHERE c.relnamespace = 'ledgerlock'::regnamespace AND c.relkind IN ('v', 'm')
UNION ALL
SELECT 'function', pg_get_functiondef(p.oid) || coalesce(array_to_string(p.proacl, ','), '<default acl>')
FROM pg_proc p WHERE p.pronamespace = 'ledgerlock'::regnamespace AND p.prokind IN ('f', 'p')
UNION ALL
SELECT 'trigger', pg_get_triggerdef(t.oid) || ':' || t.tgenabled::text FROM pg_trigger t
JOIN pg_class c ON c.oid = t.tgrelid WHERE c.relnamespace = 'ledgerlock'::regnamespace AND NOT t.tgisinternal
UNION ALL
SELECT 'policy', polrelid::regclass || ':' || polname || ':' || coalesce(pg_get_expr(polqual, polrelid), '')
FROM pg_policy WHERE polrelid::regclass::text LIKE 'ledgerlock.%'
UNION ALL
SELECT 'schema acl', coalesce(array_to_string(nspacl, ','), '') FROM pg_namespace WHERE nspname = 'ledgerlock'
UNION ALL
SELECT 'event trigger', evtname || ':' || evtevent::text FROM pg_event_trigger
ORDER BY 1, 2
"""


def snapshot(conninfo: str) -> list[tuple[str, str]]:
    with psycopg.connect(conninfo) as conn:
        return conn.execute(SNAPSHOT).fetchall()


def new_database(cluster, name: str) -> str:
    with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return cluster.conninfo(name)


def drop_database(cluster, name: str) -> None:
    with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_migrations_and_one_file_script_install_the_same_schema(cluster, tmp_path):
    try:
        migrated = new_database(cluster, "ll_via_migrations")
        scripted = new_database(cluster, "ll_via_script")
        migrate.migrate(migrated)
        script = tmp_path / "ledgerlock.sql"
        script.write_text(sqlfiles.install_script())
        psql = cluster.server.bindir / "psql"
        res = subprocess.run(
            [str(psql), "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-f", str(script),
             cluster.conninfo("ll_via_script")],
            capture_output=True, text=True,
        )
        assert res.returncode == 0, res.stderr
        a, b = snapshot(migrated), snapshot(scripted)
        assert len(a) > 20
        only_migrated = sorted(set(a) - set(b))
        only_scripted = sorted(set(b) - set(a))
        assert only_migrated == [] and only_scripted == [], (only_migrated, only_scripted)
        # `migrate` takes over a script-installed database: nothing to apply, code already current
        report = migrate.migrate(scripted)
        assert report.applied == [] and report.code_installed is False
    finally:
        drop_database(cluster, "ll_via_migrations")
        drop_database(cluster, "ll_via_script")


def test_second_migrate_changes_nothing(db):
    report = migrate.migrate(db.conninfo())
    assert report.applied == []
    assert report.code_installed is False
    assert not report.changed


def test_migrate_reinstalls_guards_when_code_changes(db):
    """A guard trigger that drifted (or was dropped by a superuser) is restored by migrate."""
    owner = db.owner()
    db.protect_invoice(owner)
    owner.execute("DROP TRIGGER ll_10_final_update ON invoice")
    owner.execute("DELETE FROM ledgerlock.installed_code")  # as after an upgrade: the digest is new
    report = migrate.migrate(db.conninfo())
    assert report.code_installed and report.guards_reinstalled == 1
    assert owner.execute(
        "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'invoice'::regclass AND tgname = 'll_10_final_update'"
    ).fetchone()[0] == 1


def test_migrate_replaces_the_previous_releases_comparisons_in_place(db):
    """Until 2026-11-28 R1's comparisons put the exempt columns back through jsonb and pinned search_path. An
    upgrade replaces each in place (same name and signature: the triggers that call it keep it), with its
    fingerprint, so doctor sees no drift and the rule still tells a mutable-only update from a change."""
    owner = db.owner()
    db.protect_invoice(owner)
    fn, oid = owner.execute("SELECT p.oid::regprocedure::text, p.oid FROM pg_proc p "
                            "WHERE p.proname LIKE '\\_ll10\\_x%'").fetchone()
    old_body = ("\nBEGIN\n    RETURN NOT pg_catalog.record_image_eq(o, pg_catalog.jsonb_populate_record(n, "
                "pg_catalog.jsonb_build_object('paid', o.paid, 'reconciled', o.reconciled)));\nEND\n")
    owner.execute(sql.SQL("CREATE OR REPLACE FUNCTION {}(o anyelement, n anyelement) RETURNS boolean LANGUAGE plpgsql "
                          "STABLE SET search_path = pg_catalog, pg_temp AS {}").format(
        sql.SQL(fn.split("(")[0]), sql.Literal(old_body)))
    owner.execute("UPDATE ledgerlock.code_fingerprint SET body_md5 = md5(%s), "
                  "config = '{\"search_path=pg_catalog, pg_temp\"}' WHERE fn = %s", (old_body, fn))
    owner.execute("DELETE FROM ledgerlock.installed_code")  # as after an upgrade: the digest is new
    assert migrate.migrate(db.conninfo()).code_installed
    assert owner.execute("SELECT p.oid, p.proconfig, p.prosrc LIKE '%%n.paid := o.paid;%%' FROM pg_proc p "
                         "WHERE p.oid = %s::regprocedure", (fn,)).fetchone() == (oid, None, True)
    assert owner.execute("SELECT count(*) FROM ledgerlock.doctor_findings() WHERE object LIKE 'ledgerlock._ll10%%'"
                         ).fetchone() == (0,)
    app = db.connect("app")
    app.execute("INSERT INTO invoice (id, company_id, amount, status) VALUES (1, 1, 10, 'approved')")
    app.execute("UPDATE invoice SET paid = true WHERE id = 1")
    with refused("LL001", "^invoice id=1 is final and cannot be updated"):
        app.execute("UPDATE invoice SET amount = 11 WHERE id = 1")


def test_roles_are_nologin_and_public_has_no_table_privileges(db):
    owner = db.owner()
    roles = owner.execute(
        "SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname LIKE 'ledgerlock\\_%' ORDER BY 1"
    ).fetchall()
    assert roles == [("ledgerlock_admin", False), ("ledgerlock_auditor", False), ("ledgerlock_controller", False),
                     ("ledgerlock_scoped", False)]
    public_tables = owner.execute(
        """SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'ledgerlock'::regnamespace
           AND c.relkind IN ('r', 'p', 'v') AND has_table_privilege('public', c.oid, 'INSERT,UPDATE,DELETE')"""
    ).fetchall()
    assert public_tables == []


def test_public_can_execute_only_the_documented_functions(db):
    """Every function in schema ledgerlock is either not executable by PUBLIC or on this list."""
    public_api = {
        "has_capability",
        "locked_through",
        "period_lock_at",
        "why_locked",
        "begin_override",
        "audit_digest",
    }
    rows = db.owner().execute(
        """SELECT p.proname FROM pg_proc p WHERE p.pronamespace = 'ledgerlock'::regnamespace
           AND has_function_privilege('public', p.oid, 'EXECUTE')"""
    ).fetchall()
    assert {r[0] for r in rows} <= public_api


def test_migrate_restores_the_guards_of_a_rule_between_unprotected_tables(db):
    """reinstall_guards also refreshes guards kept outside the registry (a referential rule's parent)."""
    owner = db.owner()
    owner.execute("SELECT ledgerlock.protect_referenced('customer', 'invoice', operations => '{delete}')")
    guards = "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'customer'::regclass AND tgname LIKE 'll\\_30\\_%'"
    installed = owner.execute(guards).fetchone()[0]
    assert installed >= 1
    owner.execute("SELECT ledgerlock._drop_guard_triggers('customer', 'll_30_')")
    assert owner.execute(guards).fetchone()[0] == 0
    owner.execute("DELETE FROM ledgerlock.installed_code")  # as after an upgrade
    migrate.migrate(db.conninfo())
    assert owner.execute(guards).fetchone()[0] == installed
    app = db.connect("app")
    app.execute("INSERT INTO invoice (id, company_id, customer_id) VALUES (1, 1, 1)")
    with refused("LL003"):
        app.execute("DELETE FROM customer WHERE id = 1")
