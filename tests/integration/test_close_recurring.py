"""Recurring jobs: a scheduler generating entries into possibly-locked periods, in skip mode, and the
count of skipped generations per context, so that nothing is lost silently (docs/close-recipe.md)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from click.testing import CliRunner

from ledgerlock.cli import cli
from lltest import refused


def generate_rent(conn, company: int, day: dt.date):
    """One generation of the job, as docs/close-recipe.md shows it: its own transaction, skip mode, a label.
    Returns the new id, or None when the period is locked (the skip is recorded by the database)."""
    with conn.transaction():
        conn.execute("SET LOCAL ledgerlock.on_locked = 'skip'")
        conn.execute("SET LOCAL ledgerlock.context = 'recurring:rent'")
        row = conn.execute(
            "INSERT INTO journal_entry (company_id, ledger, posted_on, memo, amount) "
            "VALUES (%s, 'gl', %s, 'rent', 1200) RETURNING id", (company, day)).fetchone()
    return row[0] if row else None


@pytest.fixture
def journal(db):
    db.owner().execute("SELECT ledgerlock.protect('journal_entry', date_column => 'posted_on', "
                       "scope_column => 'company_id', ledger => 'gl')")
    return db.connect("controller").execute("SELECT ledgerlock.lock_through('1', '2025-03-31', 'hard')").fetchone()[0]


def test_the_job_skips_locked_periods_and_every_skip_is_counted(db, journal):
    app = db.connect("app")  # the scheduler runs as the application: no ledgerlock role
    months = [dt.date(2025, m, 1) for m in range(1, 7)]
    results = {(c, d): generate_rent(app, c, d) for c in (1, 2) for d in months}
    skipped_runs = sorted((c, d.month) for (c, d), new_id in results.items() if new_id is None)
    assert skipped_runs == [(1, 1), (1, 2), (1, 3)]
    assert db.owner().execute("SELECT count(*) FROM journal_entry").fetchone()[0] == 9
    gens = db.connect("auditor").execute(
        "SELECT context, table_name, scope, skipped, lock_ids FROM ledgerlock.skipped_generations()").fetchall()
    assert gens == [("recurring:rent", "public.journal_entry", "1", 3, [journal])]
    # every skipped generation can be found again, with its whole row, to post it in an open period
    rows = db.connect("controller").execute(
        "SELECT row_data ->> 'posted_on', row_data ->> 'amount', db_user FROM ledgerlock.skipped_writes "
        "WHERE context = 'recurring:rent' ORDER BY id").fetchall()
    assert rows == [("2025-01-01", "1200.00", "ll_app"), ("2025-02-01", "1200.00", "ll_app"),
                    ("2025-03-01", "1200.00", "ll_app")]


def test_skip_mode_only_ever_skips_inserts(db, journal):
    """It can only make writes stricter: an update or delete in a locked period is still refused."""
    owner = db.owner()
    owner.execute("SELECT ledgerlock.unlock_period(%s, 'seed one entry')", (journal,))
    owner.execute("INSERT INTO journal_entry (id, company_id, posted_on) VALUES (100, 1, '2025-02-01')")
    owner.execute("SELECT ledgerlock.relock(%s)", (journal,))
    app = db.connect("app", autocommit=False)
    app.execute("SET ledgerlock.on_locked = 'skip'")
    with refused("LL002"):
        app.execute("UPDATE journal_entry SET amount = 1 WHERE id = 100")
    app.rollback()
    with refused("LL002"):
        app.execute("DELETE FROM journal_entry WHERE id = 100")


def test_counts_per_context_and_since(db, journal):
    app = db.connect("app")
    generate_rent(app, 1, dt.date(2025, 1, 1))
    with app.transaction():
        app.execute("SET LOCAL ledgerlock.on_locked = 'skip'")
        app.execute("SET LOCAL ledgerlock.context = 'recurring:depreciation'")
        app.execute("INSERT INTO journal_entry (company_id, posted_on) VALUES (1, '2025-01-31'), (1, '2025-02-28')")
    c = db.connect("controller")
    assert c.execute("SELECT context, skipped FROM ledgerlock.skipped_generations()").fetchall() == [
        ("recurring:depreciation", 2), ("recurring:rent", 1)]
    assert c.execute("SELECT skipped FROM ledgerlock.skipped_generations('recurring:rent')").fetchall() == [(1,)]
    assert c.execute("SELECT count(*) FROM ledgerlock.skipped_generations(NULL, now() + interval '1 day')"
                     ).fetchone()[0] == 0
    with refused("42501"):
        db.connect("app").execute("SELECT * FROM ledgerlock.skipped_generations()")


def test_cli_lists_skipped_generations(db, journal):
    app = db.connect("app")
    for m in (1, 2, 3, 4):
        generate_rent(app, 1, dt.date(2025, m, 1))
    dsn = db.conninfo("controller")
    out = CliRunner().invoke(cli, ["--dsn", dsn, "close", "skipped"], catch_exceptions=False).output
    assert out.startswith(f"recurring:rent: 3 skipped generations (public.journal_entry, scope 1, lock #{journal}; ")
    data = json.loads(CliRunner().invoke(cli, ["--dsn", dsn, "close", "skipped", "--context", "recurring:rent",
                                               "--json"]).output)
    assert [(d["context"], d["skipped"]) for d in data] == [("recurring:rent", 3)]
    out = CliRunner().invoke(cli, ["--dsn", dsn, "close", "skipped", "--context", "nightly"]).output
    assert out.strip() == "no skipped writes for context nightly"
