"""The month-end close: checklist, an import that respects the locks, a lock preset, review, four-eyes."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import click
import psycopg
from psycopg import sql

from .. import importer

TITLE = "Month-end close: checklist, imports, presets, four-eyes"

SCOPE = "3"  # a company of its own, so this chapter never meets another chapter's locks
ADMINS = ("demo_alice", "demo_bob")  # cluster-wide roles: outside the ledgerlock_ prefix


@contextlib.contextmanager
def as_user(demo, role: str):
    """A connection whose session user is `role` (four-eyes compares database users, not SET ROLE)."""
    conn = psycopg.connect(demo.conninfo, autocommit=True)
    try:
        conn.execute(sql.SQL("SET SESSION AUTHORIZATION {}").format(sql.Identifier(role)))
        yield conn
    finally:
        conn.close()


def _show_notice(diag: psycopg.errors.Diagnostic) -> None:
    click.secho(f"    NOTICE: {diag.message_primary}", fg="yellow")


def run(demo) -> None:
    admin = demo.admin
    for role in ADMINS:
        if admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is None:
            admin.execute(sql.SQL("CREATE ROLE {} NOLOGIN IN ROLE ledgerlock_admin").format(sql.Identifier(role)))
    admin.execute("INSERT INTO company (id, name) VALUES (3, 'Initrode SA') ON CONFLICT DO NOTHING")
    admin.execute("INSERT INTO customer (company_id, name) VALUES (3, 'Vandelay Industries')")
    demo.say("Initrode SA (company 3) closes its books every month; its fiscal year starts in April.\n"
             "The books are already locked through the end of the month before last:")
    demo.run(admin, "SELECT ledgerlock.set_fiscal_year_start('3', 4)", who="admin")
    demo.run(admin, """SELECT ledgerlock.lock_through('3',
                 date_trunc('month', ledgerlock.preset_through('3', 'end-of-last-month'))::date - 1,
                 note => 'previous close') AS lock_id""", who="admin")
    closed_through, last_month_end = admin.execute(
        "SELECT ledgerlock.locked_through('3'), ledgerlock.preset_through('3', 'end-of-last-month')").fetchone()

    demo.say("\nThe close checklist of last month:")
    demo.run(admin, "SELECT ledgerlock.add_close_task('3', 'last-month', 'Reconcile the bank account')", who="admin")
    demo.run(admin, "SELECT ledgerlock.add_close_task('3', 'last-month', 'Post the accruals')", who="admin")
    demo.run(admin, "SELECT ledgerlock.complete_close_task(id, 'statement matched') FROM ledgerlock.close_tasks('3') "
                    "WHERE task = 'Reconcile the bank account'", who="admin")
    demo.run(admin, "SELECT id, period, task, status, done_by FROM ledgerlock.close_tasks('3', 'last-month')",
             who="admin")

    demo.say("\nA late batch of invoices arrives as CSV: one is dated in the closed month, two in last month.")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "late-invoices.csv")
        path.write_text("id,company_id,issued_on,amount,note\n"
                        f"301,3,{closed_through},15.00,dated in the closed month\n"
                        f"302,3,{last_month_end},25.00,last month\n"
                        f"303,3,{last_month_end},35.00,last month\n")
        demo.say("  $ ledgerlock import late-invoices.csv --table invoice --dry-run")
        report = importer.import_csv(admin, path, "invoice", dry_run=True)
        for w in report.windows:
            demo.say(f"    lock #{w.lock_id} ({w.level}, {w.period}): {w.rows} row(s) would be skipped")
        demo.say(f"    would load: {report.would_load}")
        demo.say("  $ ledgerlock import late-invoices.csv --table invoice --context late-batch")
        report = importer.import_csv(admin, path, "invoice", context="late-batch")
        demo.say(f"    inserted {report.inserted}, skipped {report.skipped}")
    demo.say("The skipped row is not lost: it waits in skipped_writes with its label, to be re-dated and posted.")
    demo.run(admin, "SELECT table_name, row_key, lock_id, context FROM ledgerlock.skipped_writes "
                    "WHERE context = 'late-batch'", who="admin")

    demo.say("\nLock last month with the preset (`ledgerlock lock 3 --through end-of-last-month`). A task is\n"
             "still open: the lock warns, and stands.")
    admin.add_notice_handler(_show_notice)
    try:
        rows = demo.run(admin, "SELECT ledgerlock.lock_through('3', ledgerlock.preset_through('3', "
                               "'end-of-last-month'), note => 'month-end close') AS lock_id", who="admin")
        lock_id = rows[0][0]
        demo.say("The reviewer marks it reviewed: the window becomes hard.")
        demo.run(admin, f"SELECT ledgerlock.upgrade_lock({lock_id}, reviewer => 'J. Reviewer')", who="admin")
    finally:
        admin.remove_notice_handler(_show_notice)

    demo.say("\nFour-eyes: reopening a hard window now takes two admins. Alice asks, with a reason:")
    demo.run(admin, "SELECT ledgerlock.set_four_eyes(true, '24 hours')", who="admin")
    with as_user(demo, ADMINS[0]) as alice, as_user(demo, ADMINS[1]) as bob:
        rows = demo.run(alice, f"SELECT ledgerlock.request_unlock({lock_id}, 'supplier credit note for last month')",
                        who="alice")
        request_id = rows[0][0]
        demo.say("Alice cannot approve her own request:")
        demo.refused(alice, f"SELECT ledgerlock.approve_unlock({request_id})", who="alice")
        alice.execute("SELECT ledgerlock.record_unlock_refusal(%s)", (request_id,))
        demo.say("Bob approves it: the window opens, with Alice's reason.")
        demo.run(bob, f"SELECT ledgerlock.approve_unlock({request_id})", who="bob")
        demo.run(bob, "SELECT id, status, unlocked_by, unlock_reason FROM ledgerlock.period_locks "
                      f"WHERE id = {lock_id}", who="bob")
        demo.run(bob, f"SELECT ledgerlock.relock({lock_id})", who="bob")
    demo.say("Every step is in the lock history (and so in the audit trail):")
    demo.run(admin, "SELECT kind, db_user, reason FROM ledgerlock.lock_history WHERE scope = '3' AND kind LIKE "
                    "'unlock%' ORDER BY id", who="admin")
    # leave the demo database as most people run it: four-eyes off again (it takes two admins, too)
    with as_user(demo, ADMINS[0]) as alice, as_user(demo, ADMINS[1]) as bob:
        off = alice.execute("SELECT ledgerlock.request_four_eyes_off('end of the demo chapter')").fetchone()[0]
        bob.execute("SELECT ledgerlock.approve_unlock(%s)", (off,))
