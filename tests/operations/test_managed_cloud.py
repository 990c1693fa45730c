"""A managed cloud: no superuser, a cloud admin with CREATEROLE and CREATEDB. docs/hardening.md's section
"Managed services without a superuser" is run as written (its ```sh blocks, with only the host rewritten to
the test server), then the rules are shown to hold for the roles it created. PostgreSQL 16 changed what
CREATEROLE may grant (the creator keeps ADMIN on what it created): run on 15, 16 and 18."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql

from ledgerlock import sqlfiles
from ledgerlock.server import THROWAWAY_SETTINGS, LocalServer
from lltest import known_servers, refused, scratch_dir, selected_servers

DOC = Path(__file__).resolve().parents[2] / "docs" / "hardening.md"
SECTION = "## Managed services without a superuser"
DOC_HOST = "db.example.com"
VENV_BIN = Path(sys.executable).parent


@pytest.fixture(params=selected_servers())
def cloud(request):
    """A fresh server (roles are cluster-wide: the shared test cluster already has ledgerlock's, made by a
    superuser) where a superuser has done only what a cloud provider does: a CREATEROLE CREATEDB admin login."""
    root = scratch_dir(f"ll-cloud-{request.param}-")
    server = LocalServer(datadir=root / "data", bindir=known_servers()[request.param],
                         settings=dict(THROWAWAY_SETTINGS))
    try:
        server.start()
        with psycopg.connect(server.conninfo(), autocommit=True) as su:
            su.execute("CREATE ROLE cloud_admin LOGIN CREATEROLE CREATEDB")
        yield server
    finally:
        server.destroy()
        shutil.rmtree(root, ignore_errors=True)


def doc_blocks() -> list[str]:
    text = DOC.read_text()
    section = text[text.index(SECTION):]
    section = section[: section.index("\n## ", 1)]
    return [re.sub(r"^   ", "", b, flags=re.M) for b in re.findall(r"```sh\n(.*?)```", section, re.S)]


def on_server(script: str, server: LocalServer) -> str:
    """The doc's URLs, pointed at the test server's socket (the only change made to the doc's commands)."""
    where = f"host={quote(str(server.socket_dir), safe='')}&port={server.port}"

    def local(m: re.Match) -> str:
        return f"@/{m.group(1)}?{where}" + ("&" if m.group(2) else "")

    return re.sub(rf"@{re.escape(DOC_HOST)}/(\w+)(\?)?", local, script)


def shell(script: str, cwd: Path, server: LocalServer) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PG") and k not in ("LEDGERLOCK_DSN", "DATABASE_URL")}
    env["PATH"] = f"{VENV_BIN}:{server.bindir}:{env['PATH']}"
    return subprocess.run(["bash", "-e", "-o", "pipefail", "-c", on_server(script, server)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def ledgerlock_cli(dsn: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "ledgerlock"), "--dsn", dsn, *args], capture_output=True, text=True,
                          timeout=300)


def ledgerlock(server: LocalServer, user: str, *args: str, dbname: str = "erp") -> subprocess.CompletedProcess:
    return ledgerlock_cli(server.conninfo(dbname, user), *args)


def test_the_documented_managed_cloud_path_installs_and_holds(cloud, tmp_path):
    (tmp_path / "erp_schema.sql").write_text(sqlfiles.demo_schema())
    blocks = doc_blocks()
    assert len(blocks) == 5
    for block in blocks:
        res = shell(block, tmp_path, cloud)
        assert res.returncode == 0, f"{block}\n{res.stdout}\n{res.stderr}"
        assert "Traceback" not in res.stderr
    # the last block: status as the auditor, then as the admin, then doctor as the auditor and as the admin
    assert res.stdout.count("(functions and triggers current)") == 2 and res.stdout.count("\ninvoice ") == 2
    # what degrades, said by doctor (to either)
    assert res.stdout.count("the DDL guard is not installed in this database") == 2
    assert res.stdout.count("clean: 0 critical, 0 warning") == 2

    owner = psycopg.connect(cloud.conninfo("erp"), autocommit=True)
    assert owner.execute(
        """SELECT (SELECT rolsuper FROM pg_roles WHERE rolname = 'cloud_admin'),
                  (SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'ledgerlock'),
                  (SELECT relowner::regrole::text FROM pg_class WHERE oid = 'invoice'::regclass)""").fetchone() == (
        False, "erp_owner", "erp_owner")
    # finalize: the application's final row is permanent, its mutable column is not
    app = psycopg.connect(cloud.conninfo("erp", "erp_app"), autocommit=True)
    inv = app.execute("INSERT INTO invoice (company_id, issued_on, status) VALUES (1, '2025-03-15', 'approved') "
                      "RETURNING id").fetchone()[0]
    with refused("LL001"):
        app.execute("UPDATE invoice SET amount = 1 WHERE id = %s", (inv,))
    app.execute("UPDATE invoice SET paid = true WHERE id = %s", (inv,))
    # lock, as the admin of the doc
    res = ledgerlock(cloud, "alice", "lock", "1", "--through", "2025-03-31")
    assert res.returncode == 0, res.stderr
    with refused("LL002"):
        app.execute("INSERT INTO invoice (company_id, issued_on) VALUES (1, '2025-03-20')")
    app.execute("INSERT INTO invoice (company_id, issued_on) VALUES (1, '2025-04-02')")
    # verify, as the auditor of the doc
    res = ledgerlock(cloud, "audrey", "audit", "verify")
    assert res.returncode == 0, res.stdout + res.stderr
    app.close()
    owner.close()


def test_demo_refuses_a_non_superuser_up_front_and_leaves_no_database(cloud):
    res = ledgerlock(cloud, "cloud_admin", "demo", dbname="postgres")
    assert res.returncode == 1
    assert "ledgerlock demo needs a superuser" in res.stderr and "cloud_admin is not a superuser" in res.stderr
    assert "Traceback" not in res.stderr
    with psycopg.connect(cloud.conninfo(), autocommit=True) as su:
        assert su.execute("SELECT count(*) FROM pg_database WHERE datname = 'ledgerlock_demo'").fetchone()[0] == 0
        assert su.execute("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'erp\\_demo%'").fetchone()[0] == 0
    # the permitted neighbour: a superuser plays it through
    res = ledgerlock(cloud, "postgres", "demo", dbname="postgres")
    assert res.returncode == 0, res.stderr


def test_a_demo_that_fails_midway_leaves_no_database(cloud):
    """New databases copy template1: an event trigger there refuses the demo's first table, after the demo
    database was created."""
    with psycopg.connect(cloud.conninfo("template1"), autocommit=True) as t1:
        t1.execute("""CREATE FUNCTION refuse_tables() RETURNS event_trigger LANGUAGE plpgsql AS
                      $$ BEGIN RAISE EXCEPTION 'no tables here' USING ERRCODE = '42501'; END $$""")
        t1.execute("CREATE EVENT TRIGGER refuse_tables ON ddl_command_start WHEN TAG IN ('CREATE TABLE') "
                   "EXECUTE FUNCTION refuse_tables()")
    res = ledgerlock(cloud, "postgres", "demo", dbname="postgres")
    assert res.returncode == 1 and "no tables here" in res.stderr and "Traceback" not in res.stderr
    with psycopg.connect(cloud.conninfo(), autocommit=True) as su:
        assert su.execute("SELECT count(*) FROM pg_database WHERE datname = 'ledgerlock_demo'").fetchone()[0] == 0


def snapshot(conn: psycopg.Connection) -> dict:
    """What a migrate run could change: ledgerlock's relations and functions (by row version: a rolled-back
    CREATE OR REPLACE leaves the old one), its records of migrations and code, and yoyo's bookkeeping."""
    snap = {
        "schema": conn.execute("SELECT to_regnamespace('ledgerlock') IS NOT NULL").fetchone()[0],
        "relations": conn.execute("""SELECT relname, xmin::text FROM pg_class
                                     WHERE relnamespace = to_regnamespace('ledgerlock') ORDER BY 1""").fetchall(),
        "functions": conn.execute("""SELECT oid::regprocedure::text, xmin::text FROM pg_proc
                                     WHERE pronamespace = to_regnamespace('ledgerlock') ORDER BY 1""").fetchall(),
        "triggers": conn.execute("SELECT tgname, xmin::text FROM pg_trigger WHERE tgname LIKE 'll\\_%' ORDER BY 1")
        .fetchall(),
    }
    for table in ("installed_migration", "installed_code", "_yoyo_migration", "_yoyo_log"):
        if snap["schema"] and conn.execute("SELECT to_regclass(%s)", (f"ledgerlock.{table}",)).fetchone()[0]:
            snap[table] = conn.execute(sql.SQL("SELECT * FROM ledgerlock.{} ORDER BY 1")
                                       .format(sql.Identifier(table))).fetchall()
    return snap


def test_a_migrate_that_fails_midway_leaves_nothing_recorded(cloud):
    as_owner = "?options=-c%20role%3Derp_owner"
    with psycopg.connect(cloud.conninfo(user="cloud_admin"), autocommit=True) as admin:
        admin.execute("CREATE ROLE erp_owner NOLOGIN")
        admin.execute("GRANT erp_owner TO cloud_admin")
        # a deployment login that may act as the owner but is no ledgerlock admin (migrate refreshes guards)
        admin.execute("CREATE ROLE deployer LOGIN IN ROLE erp_owner")
        admin.execute("CREATE DATABASE erp OWNER erp_owner")
    db_url = cloud.url("erp", "deployer") + as_owner.replace("?", "&")
    su = psycopg.connect(cloud.conninfo("erp"), autocommit=True)

    # the roles are missing and the owner cannot create them: a sentence, nothing written
    before = snapshot(su)
    res = subprocess.run([str(VENV_BIN / "ledgerlock"), "--dsn", db_url, "migrate"], capture_output=True, text=True)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert ("the roles ledgerlock_auditor, ledgerlock_controller, ledgerlock_admin do not exist and deployer acting "
            "as erp_owner cannot create them") in res.stderr
    assert "ledgerlock sql --roles" in res.stderr
    assert snapshot(su) == before and before["schema"] is False

    with psycopg.connect(cloud.conninfo(user="cloud_admin"), autocommit=True) as admin:
        admin.execute((sqlfiles.sql_root() / "roles.sql").read_text())
    # a first install that fails at its last step (the guard refresh needs ledgerlock_admin)
    res = subprocess.run([str(VENV_BIN / "ledgerlock"), "--dsn", db_url, "migrate"], capture_output=True, text=True)
    assert res.returncode == 1 and "LL005" in res.stderr and "reinstall_guards" in res.stderr
    assert snapshot(su) == before  # no schema, no migration recorded
    res = subprocess.run([str(VENV_BIN / "ledgerlock"), "--dsn", db_url, "status"], capture_output=True, text=True)
    assert res.returncode == 1 and "not installed" in res.stderr

    # installed by the cloud admin (a ledgerlock admin), then an upgrade by the deployer fails midway
    with psycopg.connect(cloud.conninfo(user="cloud_admin"), autocommit=True) as admin:
        admin.execute("GRANT ledgerlock_admin TO cloud_admin")
    cloud_url = cloud.url("erp", "cloud_admin") + as_owner.replace("?", "&")
    res = subprocess.run([str(VENV_BIN / "ledgerlock"), "--dsn", cloud_url, "migrate"], capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stderr
    with psycopg.connect(cloud_url, autocommit=True) as owner:  # as an upgrade finds it: new code, a new migration
        last = sqlfiles.migration_files()[-1].name.removesuffix(".sql")
        owner.execute("DELETE FROM ledgerlock.installed_code")
        owner.execute("DELETE FROM ledgerlock.installed_migration WHERE id = %s", (last,))
    before = snapshot(su)
    assert before["schema"] and before["installed_code"] == []
    assert len(before["_yoyo_migration"]) == len(sqlfiles.migration_files())
    res = subprocess.run([str(VENV_BIN / "ledgerlock"), "--dsn", db_url, "migrate"], capture_output=True, text=True)
    assert res.returncode == 1 and "LL005" in res.stderr
    assert snapshot(su) == before
    # the permitted neighbour: the cloud admin's run applies both
    res = subprocess.run([str(VENV_BIN / "ledgerlock"), "--dsn", cloud_url, "migrate"], capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stderr
    assert f"applied migration {last}" in res.stdout and "installed functions and triggers" in res.stdout
    su.close()


@pytest.mark.parametrize("role", ["admin", "controller", "auditor"])
def test_status_runs_for_every_ledgerlock_role(db, role):
    res = ledgerlock_cli(db.conninfo(role), "status")
    assert res.returncode == 0, res.stderr
    assert "(functions and triggers current)" in res.stdout and "pending: none" in res.stdout
    # the application, member of no ledgerlock role, is told so by PostgreSQL
    res = ledgerlock_cli(db.conninfo("app"), "status")
    assert res.returncode == 1 and "error 42501" in res.stderr and "Traceback" not in res.stderr


def test_roles_made_before_ledgerlock_scoped_still_migrate_and_doctor_says_what_to_add(cloud):
    """An install whose capability roles a DBA made with an older `ledgerlock sql --roles`: the owner cannot
    create ledgerlock_scoped, so migrate leaves it out, and scope grants then limit roles in their own
    database only. doctor says so, then which limited role to make a member once the role exists."""
    with psycopg.connect(cloud.conninfo("postgres", "cloud_admin"), autocommit=True) as dba:
        for role in ("ledgerlock_auditor", "ledgerlock_controller", "ledgerlock_admin"):
            dba.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
        dba.execute("CREATE ROLE erp_owner NOLOGIN; GRANT erp_owner TO cloud_admin; "
                    "GRANT ledgerlock_admin TO cloud_admin; CREATE ROLE tenant LOGIN IN ROLE ledgerlock_admin")
        dba.execute("CREATE DATABASE erp OWNER erp_owner")
    res = ledgerlock_cli(cloud.conninfo("erp", "cloud_admin") + " options='-c role=erp_owner'", "migrate")
    assert res.returncode == 0, res.stdout + res.stderr
    admin = psycopg.connect(cloud.conninfo("erp", "cloud_admin"), autocommit=True)
    assert admin.execute("SELECT to_regrole('ledgerlock_scoped')").fetchone()[0] is None
    admin.execute("SELECT ledgerlock.grant_scope('tenant', '1')")
    # the cloud admin created the tenant's role (on 16 and later it holds ADMIN on it, a membership of its own
    # kind): the tenant's grant does not limit it
    admin.execute("SELECT ledgerlock.reinstall_guards()")
    assert admin.execute("SELECT ledgerlock._granted_scopes()").fetchone()[0] is None

    def warnings():
        return [r[0] for r in admin.execute("SELECT finding FROM ledgerlock.doctor_findings() "
                                            "WHERE check_name = 'ledgerlock role' AND severity = 'warning'")]

    assert warnings() == ["ledgerlock_scoped does not exist: scope grants limit roles in this database only"]
    res = subprocess.run(f"{VENV_BIN / 'ledgerlock'} sql --roles | psql -v ON_ERROR_STOP=1 -q "
                         f"'{cloud.conninfo('postgres', 'cloud_admin')}'", shell=True, capture_output=True,
                         text=True, timeout=120, env={**os.environ, "PATH": f"{cloud.bindir}:{os.environ['PATH']}"})
    assert res.returncode == 0, res.stderr
    [finding] = warnings()
    assert finding.startswith("tenant is limited to scopes in this database only; it may connect to postgres")
    admin.execute("GRANT ledgerlock_scoped TO tenant")  # the cloud admin created it: it may grant it
    assert warnings() == []
    admin.execute("SELECT ledgerlock.reinstall_guards()")  # nor does creating ledgerlock_scoped limit it
    with psycopg.connect(cloud.conninfo("postgres", "tenant"), autocommit=True) as elsewhere:
        assert elsewhere.execute("SELECT pg_has_role('ledgerlock_scoped', 'MEMBER')").fetchone()[0]
    admin.close()
