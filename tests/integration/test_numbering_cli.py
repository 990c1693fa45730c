"""`ledgerlock numbers check|format|series`, run as the roles that use them."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ledgerlock.cli import cli


def run(db, role, *args):
    return CliRunner().invoke(cli, ["--dsn", db.conninfo(role), "numbers", *args], catch_exceptions=False)


@pytest.fixture
def numbered(db):
    db.protect_invoice(number_column="number", number_format="INV-{YYYY}-{SEQ:5}")
    db.connect("app").execute(
        "INSERT INTO invoice (id, company_id, status, issued_on) SELECT g, 1, 'approved', '2026-01-05' "
        "FROM generate_series(1, 4) g")
    return db


def test_check_is_quiet_and_exits_zero_when_numbers_are_continuous(numbered):
    result = run(numbered, "auditor", "check")
    assert result.exit_code == 0, result.output
    assert "final numbers are continuous: no gap and no duplicate (1 numbered table checked)" in result.output
    result = run(numbered, "auditor", "check", "invoice", "--json")
    assert result.exit_code == 0 and json.loads(result.output) == []


def test_check_lists_gaps_and_exits_non_zero(numbered):
    owner = numbered.owner()
    owner.execute("ALTER TABLE invoice DISABLE TRIGGER USER")  # a superuser removing a final invoice
    owner.execute("DELETE FROM invoice WHERE id = 2")
    owner.execute("ALTER TABLE invoice ENABLE TRIGGER USER")
    result = run(numbered, "auditor", "check")
    assert result.exit_code == 3
    assert "1 problem in the final numbers:" in result.output
    assert "INV-2026-{SEQ}  gap   2      2     number 2 is missing" in result.output
    rows = json.loads(run(numbered, "controller", "check", "--json").output)
    assert rows == [{"table": "invoice", "series": "INV-2026-{SEQ}", "kind": "gap", "first": 2, "last": 2,
                     "detail": "number 2 is missing"}]


def test_check_is_refused_to_the_application(numbered):
    result = run(numbered, "app", "check")
    assert result.exit_code == 1
    assert "error 42501" in result.output and "Traceback" not in result.output


def test_format_changes_future_numbers_for_admins_only(numbered):
    refused = run(numbered, "controller", "format", "invoice", "F-{SEQ}")
    assert refused.exit_code == 1
    assert "error LL005" in refused.output and "set_number_format requires the ledgerlock_admin role" in refused.output
    bad = run(numbered, "admin", "format", "invoice", "F-{DAY}-{SEQ}")
    assert bad.exit_code == 1 and "unknown token {DAY}" in bad.output
    ok = run(numbered, "admin", "format", "invoice", "F{YY}-{SEQ:3}", "--draft-format", "TMP-{SEQ}")
    assert ok.exit_code == 0, ok.output
    assert "invoice: final numbers from now on follow F{YY}-{SEQ:3}, temporary numbers TMP-{SEQ}" in ok.output
    app = numbered.connect("app")
    app.execute("INSERT INTO invoice (id, company_id, status, issued_on) VALUES (5, 1, 'paid', '2026-02-01')")
    assert app.execute("SELECT number FROM invoice WHERE id = 5").fetchone()[0] == "F26-001"


def test_series_lists_each_series_and_its_last_number(numbered):
    rows = json.loads(run(numbered, "auditor", "series", "--json").output)
    assert [(r["table"], r["series"], r["last_number"]) for r in rows] == [("invoice", "INV-2026-{SEQ}", 4)]
    text = run(numbered, "auditor", "series", "invoice").output
    assert "INV-2026-{SEQ}" in text and "last_number" in text
