"""The close checklist: tasks per scope and period, the SQL functions and `ledgerlock close tasks`."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from click.testing import CliRunner

from ledgerlock.cli import cli
from lltest import refused

D = dt.date


def run(*args, ok=True):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def tasks(conn, scope=None, period=None):
    return conn.execute(
        "SELECT id, period, from_date, to_date, task, status, done_by FROM ledgerlock.close_tasks(%s, %s)",
        (scope, period),
    ).fetchall()


@pytest.mark.parametrize(
    ("period", "dates"),
    [
        ("2026-03", (D(2026, 3, 1), D(2026, 3, 31))),
        ("2024-02", (D(2024, 2, 1), D(2024, 2, 29))),
        ("2026-q4", (D(2026, 10, 1), D(2026, 12, 31))),
        ("2026", (D(2026, 1, 1), D(2026, 12, 31))),
        ("FY2026", (D(2026, 4, 1), D(2027, 3, 31))),  # scope 1 starts its fiscal year in April
        ("2026-01-15..2026-02-14", (D(2026, 1, 15), D(2026, 2, 14))),
    ],
)
def test_period_labels(db, period, dates):
    db.connect("admin").execute("SELECT ledgerlock.set_fiscal_year_start('1', 4)")
    c = db.connect("controller")
    got = c.execute("SELECT lower(d), upper(d) - 1 FROM ledgerlock.period_dates('1', %s) d", (period,)).fetchone()
    assert got == dates


@pytest.mark.parametrize(
    ("period", "today", "label", "dates"),
    [
        ("last-month", D(2026, 4, 15), "2026-03", (D(2026, 3, 1), D(2026, 3, 31))),
        ("Last-Month", D(2024, 3, 1), "2024-02", (D(2024, 2, 1), D(2024, 2, 29))),
        ("last-quarter", D(2026, 5, 15), "2026-01-01..2026-03-31", (D(2026, 1, 1), D(2026, 3, 31))),
        ("last-fiscal-year", D(2026, 5, 15), "FY2025", (D(2025, 4, 1), D(2026, 3, 31))),
        ("last-fiscal-year", D(2026, 3, 31), "FY2024", (D(2024, 4, 1), D(2025, 3, 31))),
    ],
)
def test_relative_period_labels_resolve_like_the_lock_presets(db, period, today, label, dates):
    db.connect("admin").execute("SELECT ledgerlock.set_fiscal_year_start('1', 4)")
    c = db.connect("controller")
    assert c.execute("SELECT ledgerlock.period_label('1', %s, %s)", (period, today)).fetchone()[0] == label
    got = c.execute("SELECT lower(d), upper(d) - 1 FROM ledgerlock.period_dates('1', %s) d", (label,)).fetchone()
    assert got == dates


def test_a_task_added_for_last_month_is_stored_under_the_month(db):
    c = db.connect("controller")
    expected = c.execute("SELECT to_char(date_trunc('month', current_date) - interval '1 day', 'YYYY-MM')"
                         ).fetchone()[0]
    c.execute("SELECT ledgerlock.add_close_task('1', 'last-month', 'Accruals')")
    assert [r[1] for r in tasks(c, "1", expected)] == [expected]


@pytest.mark.parametrize(
    "period", ["2026-13", "March", "2026-Q5", "2026-03-31..2026-03-01", "2026-02-30..2026-03-01", ""])
def test_bad_period_labels_are_refused_with_the_accepted_forms(db, period):
    c = db.connect("controller")
    with refused("22023", rf"^'{period}' is not a close period$") as info:
        c.execute("SELECT ledgerlock.add_close_task('1', %s, 'x')", (period,))
    assert "2026-Q1 (quarter)" in info.value.diag.message_hint and "last-month" in info.value.diag.message_hint
    assert tasks(c) == []


def test_add_done_and_list(db):
    c = db.connect("controller")
    t1 = c.execute("SELECT ledgerlock.add_close_task('1', '2026-03', 'Reconcile the bank accounts')").fetchone()[0]
    t2 = c.execute("SELECT ledgerlock.add_close_task('1', '2026-03', 'Accruals')").fetchone()[0]
    c.execute("SELECT ledgerlock.add_close_task('2', '2026-03', 'Other company')")
    # adding the same task again is harmless: same id
    assert c.execute("SELECT ledgerlock.add_close_task('1', '2026-03', ' Accruals ')").fetchone()[0] == t2
    c.execute("SELECT ledgerlock.complete_close_task(%s, 'statement of 31 March matched')", (t1,))
    rows = tasks(c, "1", "2026-03")
    assert [(r[0], r[4], r[5], r[6]) for r in rows] == [
        (t1, "Reconcile the bank accounts", "done", "ll_controller"),
        (t2, "Accruals", "open", None),
    ]
    assert c.execute("SELECT done_note FROM ledgerlock.close_task WHERE id = %s", (t1,)).fetchone()[0] == (
        "statement of 31 March matched")
    # a period overlapping the month finds its tasks; another month does not
    assert len(tasks(c, "1", "2026-Q1")) == 2
    assert tasks(c, "1", "2026-04") == []
    assert len(tasks(c)) == 3


def test_completing_twice_or_an_unknown_task_is_refused(db):
    c = db.connect("controller")
    t = c.execute("SELECT ledgerlock.add_close_task('1', '2026-03', 'Accruals')").fetchone()[0]
    c.execute("SELECT ledgerlock.complete_close_task(%s)", (t,))
    with refused("LL004", rf"^close task #{t} \(Accruals, 2026-03\) was already done by ll_controller at "):
        db.connect("admin").execute("SELECT ledgerlock.complete_close_task(%s)", (t,))
    with refused("22023", r"^close task #999 does not exist$"):
        c.execute("SELECT ledgerlock.complete_close_task(999)")


def test_who_may_keep_the_checklist(db):
    with refused("42501"):  # the application has no business here at all
        db.connect("app").execute("SELECT ledgerlock.add_close_task('1', '2026-03', 'x')")
    with refused("LL005", r"^add_close_task requires the ledgerlock_controller role; ll_auditor"):
        db.connect("auditor").execute("SELECT ledgerlock.add_close_task('1', '2026-03', 'x')")
    with refused("42501"):  # no direct writes, not even for admins
        db.connect("admin").execute(
            "INSERT INTO ledgerlock.close_task (scope, period, dates, task) "
            "VALUES ('1', 'x', '[2026-01-01,2026-02-01)', 'x')")
    t = db.connect("admin").execute("SELECT ledgerlock.add_close_task('1', '2026-03', 'x')").fetchone()[0]
    assert [r[0] for r in tasks(db.connect("auditor"), "1")] == [t]  # the auditor reads the checklist
    with refused("LL005"):
        db.connect("auditor").execute("SELECT ledgerlock.complete_close_task(%s)", (t,))
    db.connect("controller").execute("SELECT ledgerlock.complete_close_task(%s)", (t,))


def test_scope_grants_limit_the_checklist_to_the_granted_scopes(db):
    owner = db.owner()
    owner.execute("CREATE ROLE ll_tenant_admins NOLOGIN")
    owner.execute("GRANT ll_tenant_admins TO ll_controller")
    db.connect("admin").execute("SELECT ledgerlock.grant_scope('ll_tenant_admins', '1')")
    c = db.connect("controller")
    c.execute("SELECT ledgerlock.add_close_task('1', '2026-03', 'mine')")
    with refused("LL005", r"^add_close_task on scope 2 is not allowed: ll_controller is limited to scopes 1$"):
        c.execute("SELECT ledgerlock.add_close_task('2', '2026-03', 'theirs')")
    other = db.connect("admin").execute("SELECT ledgerlock.add_close_task('2', '2026-03', 'theirs')").fetchone()[0]
    assert [r[4] for r in tasks(c)] == ["mine"]
    with refused("LL005"):
        c.execute("SELECT ledgerlock.complete_close_task(%s)", (other,))
    # reading the table directly shows no more (row-level security); an unlimited role sees both
    assert c.execute("SELECT task FROM ledgerlock.close_task").fetchall() == [("mine",)]
    assert len(db.connect("auditor").execute("SELECT task FROM ledgerlock.close_task").fetchall()) == 2


def test_checklist_changes_are_in_the_lock_history(db):
    c = db.connect("controller")
    t = c.execute("SELECT ledgerlock.add_close_task('1', '2026-03', 'Accruals')").fetchone()[0]
    c.execute("SELECT ledgerlock.complete_close_task(%s, 'posted')", (t,))
    rows = db.connect("auditor").execute(
        "SELECT kind, scope, db_user, reason, details ->> 'task_id' FROM ledgerlock.lock_history "
        "WHERE kind LIKE 'close_task%' ORDER BY id").fetchall()
    assert rows == [("close_task_add", "1", "ll_controller", None, str(t)),
                    ("close_task_done", "1", "ll_controller", "posted", str(t))]


def test_cli_add_list_done(db):
    dsn = db.conninfo("controller")
    out = run("--dsn", dsn, "close", "tasks", "1", "2026-03", "add", "Reconcile", "the", "bank").stdout
    assert out.startswith("task #1 on the checklist of scope 1, 2026-03: Reconcile the bank")
    run("--dsn", dsn, "close", "tasks", "1", "2026-03", "add", "Accruals")
    listing = run("--dsn", dsn, "close", "tasks", "1", "2026-03").output
    assert "Reconcile the bank" in listing and "Accruals" in listing
    assert listing.rstrip().endswith("2 of 2 tasks open for scope 1, 2026-03")
    done = run("--dsn", dsn, "close", "tasks", "1", "2026-03", "done", "1", "--note", "matched").stdout
    assert done.splitlines() == ["done: #1", "1 of 2 tasks open for scope 1, 2026-03"]
    data = json.loads(run("--dsn", dsn, "close", "tasks", "1", "2026-03", "list", "--json").output)
    assert [(t["id"], t["status"], t["done_note"]) for t in data] == [(1, "done", "matched"), (2, "open", None)]
    assert data[0]["from_date"] == "2026-03-01" and data[0]["to_date"] == "2026-03-31"


def test_cli_errors_are_one_line(db):
    res = run("--dsn", db.conninfo("controller"), "close", "tasks", "1", "2026-03", "done", "7", ok=False)
    assert res.exit_code == 1
    assert res.stderr.splitlines()[1] == (
        "error: close task #7 is not on the checklist of scope 1, 2026-03; nothing was marked done")
    res = run("--dsn", db.conninfo("controller"), "close", "tasks", "1", "March", ok=False)
    assert res.exit_code == 2 and "Invalid value for PERIOD: 'March' is not a close period" in res.output
    assert "Traceback" not in res.output


def test_cli_fiscal_year(db):
    assert run("--dsn", db.conninfo("admin"), "close", "fiscal-year", "1", "4").stdout.strip() == (
        "the fiscal year of scope 1 starts on 1 April")
    assert run("--dsn", db.conninfo("controller"), "close", "fiscal-year", "2").output.strip() == (
        "the fiscal year of scope 2 starts on 1 January")
    res = run("--dsn", db.conninfo("controller"), "close", "fiscal-year", "2", "7", ok=False)
    assert "error LL005" in res.output


def collect_notices(conn):
    notices = []
    conn.add_notice_handler(lambda d: notices.append((d.severity_nonlocalized, d.message_primary, d.message_hint)))
    return notices


def test_locking_with_open_tasks_warns_and_succeeds(db):
    c = db.connect("controller")
    t1 = c.execute("SELECT ledgerlock.add_close_task('1', '2025-03', 'Reconcile the bank')").fetchone()[0]
    t2 = c.execute("SELECT ledgerlock.add_close_task('1', '2025-Q1', 'VAT return')").fetchone()[0]
    done = c.execute("SELECT ledgerlock.add_close_task('1', '2025-03', 'Payroll')").fetchone()[0]
    c.execute("SELECT ledgerlock.complete_close_task(%s)", (done,))
    c.execute("SELECT ledgerlock.add_close_task('1', '2025-04', 'April, not this window')")
    c.execute("SELECT ledgerlock.add_close_task('2', '2025-03', 'Other scope')")
    notices = collect_notices(c)
    lock_id = c.execute("SELECT ledgerlock.lock_period('1', '2025-03-01', '2025-03-31')").fetchone()[0]
    assert notices == [(
        "NOTICE",
        f"2 close tasks are still open for scope 1 in 2025-03-01..2025-03-31: #{t2} VAT return (2025-Q1); "
        f"#{t1} Reconcile the bank (2025-03)",
        "the lock stands; mark a task done with: ledgerlock close tasks 1 2025-03 done ID",
    )]
    # the lock stands, and the period is closed for the application
    assert c.execute("SELECT status FROM ledgerlock.period_locks WHERE id = %s", (lock_id,)).fetchone()[0] == "active"
    db.protect_invoice()
    with refused("LL002"):
        db.connect("app").execute("INSERT INTO invoice (company_id, issued_on) VALUES (1, '2025-03-15')")
    # marking it reviewed (hard) warns again while tasks are open
    notices.clear()
    c.execute("SELECT ledgerlock.upgrade_lock(%s)", (lock_id,))
    assert len(notices) == 1 and notices[0][1].startswith("2 close tasks are still open for scope 1")


def test_locking_with_every_task_done_is_silent(db):
    c = db.connect("controller")
    t = c.execute("SELECT ledgerlock.add_close_task('1', '2025-03', 'Reconcile the bank')").fetchone()[0]
    c.execute("SELECT ledgerlock.complete_close_task(%s)", (t,))
    notices = collect_notices(c)
    c.execute("SELECT ledgerlock.lock_through('1', '2025-03-31')")
    assert notices == []


def test_lock_through_from_the_beginning_of_time_names_the_open_span(db):
    c = db.connect("controller")
    t = c.execute("SELECT ledgerlock.add_close_task('1', '2024', 'Year-end inventory')").fetchone()[0]
    notices = collect_notices(c)
    c.execute("SELECT ledgerlock.lock_through('1', '2025-01-31')")
    assert [n[1] for n in notices] == [
        f"1 close task is still open for scope 1 in up to 2025-01-31: #{t} Year-end inventory (2024)"]
