"""The close from the command line: lock presets with confirmation, the open-task warning, four-eyes."""

from __future__ import annotations

import json

from click.testing import CliRunner

from ledgerlock.cli import cli


def run(*args, ok=True, input=None):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False, input=input)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def preset(db, scope, name):
    return db.owner().execute("SELECT ledgerlock.preset_through(%s, %s)", (scope, name)).fetchone()[0]


def active_locks(db):
    return db.owner().execute(
        "SELECT scope, from_date::text, to_date::text, level FROM ledgerlock.period_locks WHERE status = 'active' "
        "ORDER BY id").fetchall()


def test_preset_shows_the_window_and_asks(db):
    dsn = db.conninfo("controller")
    through = preset(db, "1", "end-of-last-month")
    res = run("--dsn", dsn, "lock", "1", "--through", "end-of-last-month", input="n\n", ok=False)
    assert res.exit_code == 1
    assert res.stdout.splitlines()[:2] == [
        f"end-of-last-month for scope 1: lock everything up to {through} (soft)",
        "Lock this window? [y/N]: n",
    ]
    assert active_locks(db) == []
    res = run("--dsn", dsn, "lock", "1", "--through", "end-of-last-month", input="y\n")
    assert active_locks(db) == [("1", "-infinity", str(through), "soft")]
    assert res.stdout.splitlines()[-1].startswith("locked lock #1: scope 1 up to ")


def test_preset_with_yes_for_scripts_advances_from_the_locked_span(db):
    owner = db.owner()
    # books locked through the end of the fiscal year before last (April fiscal year), then the preset
    owner.execute("SELECT ledgerlock.set_fiscal_year_start('1', 4)")
    last_fy_end = preset(db, "1", "end-of-last-fiscal-year")
    before = last_fy_end.replace(year=last_fy_end.year - 1)
    owner.execute("SELECT ledgerlock.lock_through('1', %s)", (before,))
    res = run("--dsn", db.conninfo("controller"), "lock", "1", "--through", "end-of-last-fiscal-year", "--hard",
              "--yes")
    start = before.replace(day=1, month=4)  # the day after 31 March
    assert res.stdout.splitlines()[0] == f"end-of-last-fiscal-year for scope 1: lock {start}..{last_fy_end} (hard)"
    assert active_locks(db)[-1] == ("1", str(start), str(last_fy_end), "hard")
    # once there, the same preset has nothing left to lock
    res = run("--dsn", db.conninfo("controller"), "lock", "1", "--through", "end-of-last-fiscal-year", "--yes",
              ok=False)
    assert res.exit_code == 1 and f"already locked through {last_fy_end}" in res.output


def test_a_date_still_locks_without_a_question(db):
    run("--dsn", db.conninfo("controller"), "lock", "2", "--through", "2025-01-31")
    assert active_locks(db) == [("2", "-infinity", "2025-01-31", "soft")]
    res = run("--dsn", db.conninfo("controller"), "lock", "2", "--through", "last-month", ok=False)
    assert res.exit_code == 2 and "neither a date (YYYY-MM-DD) nor one of end-of-last-month" in res.output


def test_locking_with_open_tasks_prints_the_warning_and_locks(db):
    dsn = db.conninfo("controller")
    run("--dsn", dsn, "close", "tasks", "1", "2025-03", "add", "Bank reconciliation")
    res = run("--dsn", dsn, "lock", "1", "--from", "2025-03-01", "--to", "2025-03-31")
    assert res.stderr.splitlines()[1:] == [
        "warning: 1 close task is still open for scope 1 in 2025-03-01..2025-03-31: #1 Bank reconciliation (2025-03)",
        "hint: the lock stands; mark a task done with: ledgerlock close tasks 1 2025-03 done ID",
    ]
    assert res.stdout.splitlines() == ["locked lock #1: scope 1 2025-03-01..2025-03-31 (soft, active)"]
    res = run("--dsn", dsn, "upgrade", "1")
    assert res.stderr.splitlines()[1].startswith("warning: 1 close task is still open")
    assert active_locks(db) == [("1", "2025-03-01", "2025-03-31", "hard")]


def test_four_eyes_from_the_command_line(db):
    admin, admin2 = db.conninfo("admin"), db.conninfo("admin2")
    run("--dsn", admin, "lock", "1", "--from", "2025-03-01", "--to", "2025-03-31", "--hard")
    out = run("--dsn", admin, "close", "four-eyes", "on", "--ttl", "4 hours").stdout
    assert out.strip() == "four-eyes unlocking of hard windows: on (requests expire after 04:00:00)"
    out = run("--dsn", admin, "unlock", "1", "--reason", "late supplier invoice").stdout
    assert out.splitlines() == ["filed unlock request #1 for lock #1; another admin approves it with:",
                                "  ledgerlock unlock approve 1", "withdraw it with: ledgerlock unlock withdraw 1"]
    pending = json.loads(run("--dsn", admin2, "unlock", "pending", "--json").output)["requests"]
    assert [(p["id"], p["lock_id"], p["requested_by"], p["reason"]) for p in pending] == [
        (1, 1, "ll_admin", "late supplier invoice")]
    res = run("--dsn", admin, "unlock", "approve", "1", ok=False)
    assert res.exit_code == 1
    assert res.stderr.splitlines()[1].startswith("error LL005 (the database user lacks the ledgerlock capability or "
                                                 "scope): request #1 (unlock lock #1) was filed by ll_admin, who")
    out = run("--dsn", admin2, "unlock", "approve", "1").stdout
    assert out.splitlines()[0] == "unlocked lock #1: scope 1 2025-03-01..2025-03-31 (hard, unlocked)"
    assert "(no pending unlock requests)" in run("--dsn", admin2, "unlock", "--pending").output  # the old spelling
    kinds = [e["kind"] for e in json.loads(run("--dsn", admin, "history", "1", "--json").output)]
    assert kinds == ["lock", "unlock_request", "unlock_refuse", "unlock_approve", "unlock"]


def test_four_eyes_off_takes_a_second_admin_from_the_command_line(db):
    admin, admin2 = db.conninfo("admin"), db.conninfo("admin2")
    run("--dsn", admin, "close", "four-eyes", "on")
    res = run("--dsn", admin, "close", "four-eyes", "off", ok=False)
    assert res.exit_code == 2 and "give --reason" in res.output
    out = run("--dsn", admin, "close", "four-eyes", "off", "--reason", "audit over").stdout
    assert out.splitlines()[:2] == ["filed request #1 to turn four-eyes off; a different admin approves it with:",
                                    "  ledgerlock unlock approve 1"]
    assert run("--dsn", admin2, "unlock", "--approve", "1").stdout.strip() == "approved request #1"  # old spelling
    assert run("--dsn", admin, "close", "four-eyes").output.strip().startswith(
        "four-eyes unlocking of hard windows: off")
