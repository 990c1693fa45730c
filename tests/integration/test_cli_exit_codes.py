"""The manager's exit codes (0 ok, 1 failed command, 2 usage, 3 evidence problem), errors as JSON under --json,
NO_COLOR, and `audit log --operation` checked against the operations the trail records."""

from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner

from ledgerlock.cli import cli
from ledgerlock.commands.audit import OPERATIONS
from ledgerlock.output import EXIT_EVIDENCE, EXIT_FAILED, EXIT_OK, EXIT_USAGE

NOWHERE = "host=/nonexistent-ledgerlock-socket-dir dbname=x connect_timeout=2"


def run(*args, env=None, color=False):
    return CliRunner(env=env).invoke(cli, list(args), catch_exceptions=False, color=color)


def test_the_codes_are_distinct():
    assert (EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_EVIDENCE) == (0, 1, 2, 3)


def test_a_failed_connection_is_a_failed_command_and_a_json_error_under_json():
    res = run("--dsn", NOWHERE, "locks")
    assert res.exit_code == EXIT_FAILED and res.output.startswith("error: ") and "Traceback" not in res.output
    res = run("--dsn", NOWHERE, "locks", "--json")
    assert res.exit_code == EXIT_FAILED
    err = json.loads(res.stdout)["error"]
    assert err["sqlstate"] is None and err["meaning"] == "could not connect" and "nonexistent" in err["message"]


def test_a_usage_typo_exits_2_and_is_json_under_json(db):
    res = run("--dsn", db.conninfo("admin"), "locks", "--bogus")
    assert res.exit_code == EXIT_USAGE and "No such option '--bogus'" in res.output
    res = run("--dsn", db.conninfo("admin"), "locks", "--json", "--bogus")
    assert res.exit_code == EXIT_USAGE
    assert json.loads(res.stdout) == {"error": {"sqlstate": None, "meaning": "usage error",
                                                "message": "No such option '--bogus'.",
                                                "hint": "ledgerlock locks --help"}}


def test_a_refusal_is_one_json_object_under_json_and_one_line_without(db):
    db.protect_invoice()
    res = run("--dsn", db.conninfo("admin"), "unprotect", "invoice", "--reason", " ", "--json")
    assert res.exit_code == EXIT_FAILED
    err = json.loads(res.stdout)["error"]
    assert err["sqlstate"] == "LL007" and err["meaning"] == "a non-blank reason is required"
    assert err["message"] == "unprotect requires a reason"
    res = run("--dsn", db.conninfo("admin"), "unprotect", "invoice", "--reason", " ")
    assert res.exit_code == EXIT_FAILED and res.stdout == ""
    assert res.stderr.splitlines()[1] == "error LL007 (a non-blank reason is required): unprotect requires a reason"
    # the permitted neighbour: with a reason it succeeds, and --json prints the result
    res = run("--dsn", db.conninfo("admin"), "unprotect", "invoice", "--reason", "test over", "--json")
    assert res.exit_code == EXIT_OK and json.loads(res.stdout) == {"table": "invoice", "protected": False}


def test_audit_log_refuses_an_unknown_operation_with_the_list(db):
    db.protect_invoice()
    res = run("--dsn", db.conninfo("admin"), "audit", "log", "--operation", "updte")
    assert res.exit_code == EXIT_USAGE
    assert "'updte' is not an operation of the trail; one of: INSERT, UPDATE, DELETE" in res.output
    assert "GRANT_SCOPE" in res.output and "UNLOCK_REQUEST" in res.output
    res = run("--dsn", db.conninfo("admin"), "audit", "log", "--operation", "protect")
    assert res.exit_code == EXIT_OK and "PROTECT" in res.output


def test_audit_log_knows_every_kind_the_lock_history_records():
    """`audit log --operation` takes the lock history's kinds upper-cased: every kind ledgerlock's SQL names in
    a call of ledgerlock._lock_event is one of its operations (LIFT_SCOPE_LIMIT was not, when it was added)."""
    kinds = set()
    for f in (Path(__file__).resolve().parents[2] / "sql").rglob("*.sql"):
        kinds |= set(re.findall(r"_lock_event\(\s*'([a-z_]+)'", f.read_text()))
    assert len(kinds) > 10, kinds
    assert {k.upper() for k in kinds} - set(OPERATIONS) == set()


def test_status_without_ledgerlock_fails_and_migrate_speaks_json(cluster):
    import psycopg
    from psycopg import sql

    name = "ll_exit_codes_empty"
    with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        dsn = cluster.conninfo(name)
        res = run("--dsn", dsn, "status")
        assert res.exit_code == EXIT_FAILED
        assert "ledgerlock is not installed here; run: ledgerlock migrate" in res.stderr
        assert json.loads(run("--dsn", dsn, "status", "--json").stdout)["installed_version"] is None
        res = run("--dsn", dsn, "migrate", "--json")
        assert res.exit_code == EXIT_OK
        report = json.loads(res.stdout)
        assert report["changed"] is True and "0001_foundation" in report["applied"]
        again = json.loads(run("--dsn", dsn, "migrate", "--json").stdout)
        assert again["changed"] is False and again["applied"] == []
        assert run("--dsn", dsn, "status").exit_code == EXIT_OK
    finally:
        with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_no_color_is_honoured(db):
    dsn = db.conninfo("controller")
    assert run("--dsn", dsn, "close", "tasks", "1", "2025-03", "add", "Bank reconciliation").exit_code == 0
    colored = run("--dsn", dsn, "lock", "1", "--from", "2025-03-01", "--to", "2025-03-15", color=True)
    assert colored.exit_code == 0 and "\x1b[33mwarning:" in colored.output
    plain = run("--dsn", dsn, "lock", "1", "--from", "2025-03-16", "--to", "2025-03-31", color=True,
                env={"NO_COLOR": "1"})
    assert plain.exit_code == 0 and "warning: 1 close task" in plain.output and "\x1b[" not in plain.output
