"""Issue 18 item 3: which server the manager talks to — libpq's PG* variables and service file are honoured,
an empty --dsn is a usage error, and a writing command names the server and database it acts on."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from ledgerlock.cli import cli
from ledgerlock.connection import LIBPQ_VARIABLES, embedded_server
from ledgerlock.server import LocalServer
from lltest import scratch_dir

NO_TARGET = {v: None for v in (*LIBPQ_VARIABLES, "LEDGERLOCK_DSN", "DATABASE_URL")}


def where(db) -> str:
    server = db.cluster.server
    return f"{server.socket_dir}:{server.port}/{db.name}"


def test_pg_variables_are_honoured_and_the_write_names_its_target(db):
    server = db.cluster.server
    env = {**NO_TARGET, "PGHOST": str(server.socket_dir), "PGPORT": str(server.port), "PGDATABASE": db.name,
           "PGUSER": "ll_auditor"}
    res = CliRunner().invoke(cli, ["audit", "seal"], env=env)
    assert res.exit_code == 0, res.output
    assert f"ledgerlock: acting on {where(db)} as ll_auditor" in res.stderr
    assert res.stdout.startswith("sealed ")
    assert "embedded" not in res.output


def test_a_service_file_is_honoured(db, tmp_path):
    server = db.cluster.server
    services = tmp_path / "pg_service.conf"
    services.write_text(f"[svc]\nhost={server.socket_dir}\nport={server.port}\ndbname={db.name}\nuser=ll_auditor\n")
    env = {**NO_TARGET, "PGSERVICEFILE": str(services), "PGSERVICE": "svc"}
    res = CliRunner().invoke(cli, ["audit", "seal"], env=env)
    assert res.exit_code == 0, res.output
    assert f"ledgerlock: acting on {where(db)} as ll_auditor" in res.stderr


def test_an_explicit_dsn_wins_over_the_pg_variables(db):
    env = {**NO_TARGET, "PGHOST": "/nonexistent", "PGDATABASE": "erp"}
    res = CliRunner().invoke(cli, ["--dsn", db.conninfo("auditor"), "audit", "seal"], env=env)
    assert res.exit_code == 0, res.output
    assert f"acting on {where(db)} as ll_auditor" in res.stderr


def test_an_empty_dsn_is_a_usage_error_and_starts_nothing(tmp_path):
    env = {**NO_TARGET, "LEDGERLOCK_HOME": str(tmp_path / "home")}
    res = CliRunner().invoke(cli, ["--dsn", "", "audit", "seal"], env=env)
    assert res.exit_code == 2, res.output
    assert "--dsn is empty" in res.stderr and "Traceback" not in res.output
    assert not (tmp_path / "home").exists()  # no embedded server was started behind the user's back
    # the same through the installed entry point
    ledgerlock = str(Path(sys.executable).with_name("ledgerlock"))
    proc = subprocess.run([ledgerlock, "--dsn", "", "status"], capture_output=True,
                          text=True, env={"PATH": "/usr/bin:/bin", "LEDGERLOCK_HOME": str(tmp_path / "home")},
                          timeout=60)
    assert proc.returncode == 2 and "--dsn is empty" in proc.stderr


def test_pg_variables_pointing_nowhere_fail_instead_of_falling_back(tmp_path):
    env = {**NO_TARGET, "PGHOST": str(tmp_path), "PGPORT": "1", "LEDGERLOCK_HOME": str(tmp_path / "home")}
    res = CliRunner().invoke(cli, ["audit", "seal"], env=env)
    assert res.exit_code == 1, res.output
    assert "embedded" not in res.output and not (tmp_path / "home").exists()


@pytest.fixture
def embedded_home():
    """A private embedded server (short path: the socket lives in it), stopped afterwards."""
    home = scratch_dir("llh")
    env = {**NO_TARGET, "LEDGERLOCK_HOME": str(home)}
    yield home, env
    CliRunner().invoke(cli, ["db", "stop"], env=env)
    shutil.rmtree(home, ignore_errors=True)


def test_the_embedded_server_says_so_and_prefers_the_demo_database(embedded_home):
    home, env = embedded_home
    res = CliRunner().invoke(cli, ["status"], env=env)
    assert res.exit_code == 1, res.output  # nothing installed on a brand-new embedded server: status says so
    assert "ledgerlock is not installed here" in res.output
    embedded = embedded_server()  # pg16 (pgserver), or pg18 where pgserver has no wheel
    assert (f"ledgerlock: no --dsn, LEDGERLOCK_DSN, DATABASE_URL or PG* variable set: using the embedded "
            f"PostgreSQL in {home / embedded.datadir.name}, database postgres (no demo database yet") in res.stderr
    server = LocalServer(datadir=home / embedded.datadir.name, bindir=embedded.bindir)
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE ledgerlock_demo")
    res = CliRunner().invoke(cli, ["status"], env=env)
    assert "database ledgerlock_demo (the demo database)" in res.stderr, res.output
    assert CliRunner().invoke(cli, ["db", "url"], env=env).stdout.strip().startswith("postgresql://")
    assert "/ledgerlock_demo?" in CliRunner().invoke(cli, ["db", "url"], env=env).stdout
    res = CliRunner().invoke(cli, ["db", "start"], env=env)
    assert res.exit_code == 0 and "use database ledgerlock_demo (the demo database)" in res.stdout, res.output


def test_migrate_installs_where_the_pg_variables_point(db):
    """The issue's own example: PGHOST/PGDATABASE/PGUSER and migrate, which must not go to the embedded server."""
    server = db.cluster.server
    env = {**NO_TARGET, "PGHOST": str(server.socket_dir), "PGPORT": str(server.port), "PGDATABASE": db.name,
           "PGUSER": psycopg.conninfo.conninfo_to_dict(db.conninfo())["user"]}
    res = CliRunner().invoke(cli, ["migrate"], env=env)
    assert res.exit_code == 0, res.output
    assert "ledgerlock is up to date" in res.stdout and "embedded" not in res.output


def test_the_manager_reads_its_results_whatever_styles_the_database_or_role_sets(db):
    """DateStyle, IntervalStyle and extra_float_digits set for the database and the role (as a DBA of another
    locale would): the manager's session reads dates, timestamps and amounts as they are, instead of failing to
    parse '27/11/2026 12:24:09 +14'. What a guard decides does not depend on them; what the manager shows does."""
    owner = db.owner()
    owner.execute(f"ALTER DATABASE {db.name} SET DateStyle = 'SQL, DMY'")
    owner.execute(f"ALTER DATABASE {db.name} SET IntervalStyle = 'sql_standard'")
    owner.execute("ALTER ROLE ll_controller IN DATABASE " + db.name + " SET extra_float_digits = -15")
    dsn = db.conninfo("controller")
    with psycopg.connect(dsn) as plain:  # what any client of this database gets by default
        assert plain.execute("SHOW DateStyle").fetchone()[0] == "SQL, DMY"
    res = CliRunner().invoke(cli, ["--dsn", dsn, "lock", "1", "--from", "2026-03-01", "--to", "2026-03-31"])
    assert res.exit_code == 0, res.output
    assert "scope 1 2026-03-01..2026-03-31 (soft, active)" in res.stdout
    res = CliRunner().invoke(cli, ["--dsn", dsn, "locks", "--json"])
    assert res.exit_code == 0, res.output
    assert '"2026-03-01"' in res.stdout and '"2026-03-31"' in res.stdout
    res = CliRunner().invoke(cli, ["--dsn", db.conninfo("auditor"), "audit", "log", "--limit", "5"])
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output and "can't parse" not in res.output
