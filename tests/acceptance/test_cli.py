"""The manager end to end, as a DBA runs it against an existing server (--dsn)."""

from __future__ import annotations

import json

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql

from ledgerlock.cli import cli


def run(*args, ok=True):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def empty_db(cluster):
    """An existing database without ledgerlock, as a DBA finds it."""
    name = "ll_cli_empty"
    with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield cluster.conninfo(name)
    with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_migrate_installs_into_an_existing_database_and_a_second_run_changes_nothing(empty_db):
    status = run("--dsn", empty_db, "status", ok=False)
    assert status.exit_code == 1 and "ledgerlock is not installed here" in status.output
    first = run("--dsn", empty_db, "migrate")
    assert "applied migration 0001_foundation" in first.output
    assert "installed functions and triggers" in first.output
    second = run("--dsn", empty_db, "migrate")
    assert second.output.strip() == "ledgerlock is up to date; nothing to apply"
    st = json.loads(run("--dsn", empty_db, "status", "--json").output)
    assert st["pending"] == [] and st["code_current"] is True and st["installed_version"]


def test_protect_from_the_cli_then_the_rule_holds(db):
    out = run("--dsn", db.conninfo(), "protect", "invoice", "--date-column", "issued_on",
              "--final-when", "status = 'paid'", "--mutable-column", "reconciled")
    assert out.stdout.strip() == "protected invoice"
    st = json.loads(run("--dsn", db.conninfo(), "status", "--json").output)
    assert [t["table"] for t in st["protected_tables"]] == ["invoice"]
    assert st["protected_tables"][0]["mutable_columns"] == ["reconciled"]
    app = db.connect("app")
    app.execute("INSERT INTO invoice (id, company_id, status) VALUES (1, 1, 'paid')")
    with pytest.raises(psycopg.Error) as info:
        app.execute("UPDATE invoice SET amount = 3 WHERE id = 1")
    assert info.value.diag.sqlstate == "LL001"


def test_refusals_print_one_line_with_the_sqlstate_and_exit_1(db):
    res = run("--dsn", db.conninfo("admin"), "unprotect", "invoice", "--reason", " ", ok=False)
    assert res.exit_code == 1
    assert "Traceback" not in res.output
    db.protect_invoice()
    res = run("--dsn", db.conninfo("admin"), "unprotect", "invoice", "--reason", " ", ok=False)
    assert res.exit_code == 1
    assert res.stderr.splitlines()[1] == "error LL007 (a non-blank reason is required): unprotect requires a reason"
    res = run("--dsn", db.conninfo("controller"), "protect", "invoice", "--date-column", "issued_on", ok=False)
    assert "error LL005 (the database user lacks the ledgerlock capability or scope)" in res.output


def test_protect_with_a_bad_column_explains_itself(db):
    res = run("--dsn", db.conninfo(), "protect", "invoice", "--date-column", "nope", ok=False)
    assert res.exit_code == 1
    assert "date_column: table public.invoice has no column nope" in res.output


def test_sql_prints_an_install_script_that_psql_can_apply(cluster):
    out = run("sql").output
    assert out.startswith("-- ledgerlock ")
    assert "CREATE TABLE ledgerlock.protected_table" in out
    assert "CREATE OR REPLACE FUNCTION ledgerlock.protect(" in out


def test_demo_runs_on_a_server_and_shows_the_refusal(cluster):
    res = run("--dsn", cluster.conninfo(), "demo")
    assert "refused: ERROR LL001" in res.output
    assert "invoice id=1 is final and cannot be updated; issue a correcting document instead" in res.output
    assert "ledgerlock.errors.FinalizedRowError" in res.output


def test_help_lists_every_command():
    out = run("--help").output
    for command in ("migrate", "status", "sql", "protect", "unprotect", "db", "demo"):
        assert f"  {command} " in out


def test_dsn_precedence(monkeypatch):
    from ledgerlock.connection import resolve

    monkeypatch.setenv("DATABASE_URL", "postgresql:///from_database_url")
    monkeypatch.setenv("LEDGERLOCK_DSN", "postgresql:///from_ledgerlock_dsn")
    assert resolve("postgresql:///explicit").source == "--dsn"
    assert resolve(None).conninfo.endswith("from_ledgerlock_dsn")
    monkeypatch.delenv("LEDGERLOCK_DSN")
    assert resolve(None).source == "DATABASE_URL"


def test_demo_runs_on_a_brand_new_server(tmp_path):
    """The README's first command meets a server where ledgerlock never ran (no ledgerlock_* roles yet)."""
    import shutil

    from ledgerlock.connection import embedded_server
    from ledgerlock.server import THROWAWAY_SETTINGS, LocalServer
    from lltest import scratch_dir

    root = scratch_dir("ll-demo-")  # short path: the socket lives in it
    server = LocalServer(datadir=root / "data", bindir=embedded_server().bindir,
                         settings=dict(THROWAWAY_SETTINGS))
    try:
        server.start()
        res = run("--dsn", server.conninfo(), "demo")
        assert "refused: ERROR LL001" in res.output
        assert "erp_demo_controller" in res.output  # the lock history names the controller, not the superuser
    finally:
        server.destroy()
        shutil.rmtree(root, ignore_errors=True)
