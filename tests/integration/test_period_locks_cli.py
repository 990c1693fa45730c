"""R3 from the command line: lock, upgrade, unlock, relock, locks, history — run as the controller and
admin database users, with one-line errors that carry the SQLSTATE's meaning."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ledgerlock.cli import cli


@pytest.fixture
def as_role(db):
    db.protect_invoice()

    def run(role: str, *args: str, ok: bool = True):
        result = CliRunner().invoke(cli, ["--dsn", db.conninfo(role), *args], catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        else:
            assert result.exit_code != 0, result.output
        return result

    return run


def test_lock_upgrade_unlock_relock_and_list(as_role):
    out = as_role("controller", "lock", "1", "--from", "2025-03-01", "--to", "2025-03-31", "--note", "VAT filed")
    assert out.stdout.strip() == "locked lock #1: scope 1 2025-03-01..2025-03-31 (soft, active)"
    out = as_role("controller", "upgrade", "1", "--reviewer", "Jane")
    assert out.stdout.strip() == "upgraded lock #1: scope 1 2025-03-01..2025-03-31 (hard, active)"
    out = as_role("admin", "unlock", "1", "--reason", "restatement")
    assert out.stdout.splitlines()[0] == "unlocked lock #1: scope 1 2025-03-01..2025-03-31 (hard, unlocked)"
    out = as_role("controller", "relock", "1")
    assert out.stdout.strip() == "relocked lock #1 as lock #2: scope 1 2025-03-01..2025-03-31 (hard, active)"
    listing = as_role("auditor", "locks", "1").output
    assert "VAT filed" in listing and "restatement" in listing and "relocked" in listing
    assert "books of scope 1 locked through: 2025-03-31" in listing
    data = json.loads(as_role("auditor", "locks", "--json", "--active").output)
    assert data["scope"] is None and data["locked_through"] is None  # one shape, with or without a scope
    assert [(r["id"], r["status"], r["reviewer"]) for r in data["locks"]] == [(2, "active", "Jane")]
    one = json.loads(as_role("auditor", "locks", "1", "--json").output)
    assert (one["scope"], one["locked_through"]) == ("1", "2025-03-31") and len(one["locks"]) == 2
    kinds = [e["kind"] for e in json.loads(as_role("auditor", "history", "1", "--json").output)]
    assert kinds == ["lock", "upgrade", "unlock", "relock"]
    assert "restatement" in as_role("auditor", "history").output


def test_lock_through_and_ledgers(db, as_role):
    out = as_role("controller", "lock", "1", "--through", "2025-01-31", "--json")
    row = json.loads(out.stdout)
    assert (row["from_date"], row["to_date"], row["period"]) == ("-infinity", "2025-01-31", "up to 2025-01-31")
    db.owner().execute("SELECT ledgerlock.protect('payment', 'paid_on', 'company_id', ledger => 'ap')")
    db.owner().execute("CREATE TABLE receipt (id int PRIMARY KEY, company_id int, received_on date)")
    db.owner().execute("SELECT ledgerlock.protect('receipt', 'received_on', 'company_id', ledger => 'ar')")
    out = as_role("controller", "lock", "1", "--through", "2025-02-28", "--hard", "--ledger", "ar", "--ledger", "ap")
    assert out.stdout.strip() == "locked lock #2: scope 1 2025-02-01..2025-02-28 (hard, ledgers ap,ar, active)"


def test_errors_are_one_line_with_the_sqlstate_meaning(as_role):
    as_role("controller", "lock", "1", "--from", "2025-03-01", "--to", "2025-03-31")
    out = as_role("controller", "lock", "1", "--from", "2025-03-10", "--to", "2025-04-10", ok=False)
    assert out.stderr.splitlines()[1] == (
        "error LL004 (invalid lock operation (overlap, future end, downgrade, unknown id)): "
        "period 2025-03-10..2025-04-10 for scope 1 overlaps lock #1 (2025-03-01..2025-03-31, soft)")
    assert "Traceback" not in out.output
    out = as_role("controller", "unlock", "1", "--reason", " ", ok=False)
    assert out.stderr.splitlines()[1].startswith(
        "error LL007 (a non-blank reason is required): unlock_period requires a reason")
    out = as_role("auditor", "lock", "1", "--through", "2025-05-31", ok=False)
    assert out.stderr.splitlines()[1].startswith("error LL005 (the database user lacks the ledgerlock capability or "
                                                 "scope): lock_through requires the ledgerlock_controller role")
    out = as_role("controller", "upgrade", "99", ok=False)
    assert "there is no lock #99" in out.output
    out = as_role("controller", "lock", "1", ok=False)
    assert "give --through DATE, or both --from D and --to D" in out.output
    out = as_role("controller", "lock", "1", "--through", "2025-05-31", "--from", "2025-05-01", ok=False)
    assert "not both" in out.output


def test_a_lock_of_a_scope_no_protected_table_prints_says_it_covers_no_row(db, as_role):
    """invoice.company_id is an integer: it prints 1, never '01', so a lock of '01' covers none of its rows. The
    lock stands (scopes are free text), and the controller is told, with the scope that was probably meant."""
    out = as_role("controller", "lock", "01", "--from", "2025-03-01", "--to", "2025-03-31")
    assert out.stdout.strip() == "locked lock #1: scope 01 2025-03-01..2025-03-31 (soft, active)"
    assert ("warning: scope '01' is not a scope any protected table prints (their scope columns are integer), "
            "so this lock covers no row") in out.stderr
    assert "hint: did you mean scope '1'? A scope is compared as text" in out.stderr
    app = db.connect("app")
    app.execute("INSERT INTO invoice (company_id, issued_on) VALUES (1, '2025-03-15')")  # not covered, as said
    # the permitted neighbours: scope 1, and '*' (rows without a scope), say nothing
    for scope in ("1", "*"):
        out = as_role("controller", "lock", scope, "--from", "2025-04-01", "--to", "2025-04-30")
        assert "covers no row" not in out.stderr, out.stderr
    # a table scoped by text can print any scope: nothing to say once there is one
    owner = db.owner()
    owner.execute("CREATE TABLE memo (id int PRIMARY KEY, office text, on_day date NOT NULL)")
    owner.execute("SELECT ledgerlock.protect('memo', 'on_day', 'office')")
    out = as_role("controller", "lock", "08", "--from", "2025-05-01", "--to", "2025-05-31")
    assert "covers no row" not in out.stderr, out.stderr
