"""Issue 18 item 4: an auditor's bundle selects events by accounting period (the rows' dates, the locks'
windows), not by when they were recorded, and refuses inverted, unknown or empty selections, existing files
and unwritable paths with a sentence."""

from __future__ import annotations

import json
import zipfile

import pytest
from click.testing import CliRunner

from ledgerlock import audit_bundle
from ledgerlock.cli import cli


def run(db, *args, role="auditor"):
    return CliRunner().invoke(cli, ["--dsn", db.conninfo(role), "audit", "bundle", *args])


def bundled(path) -> list[dict]:
    with zipfile.ZipFile(path) as z:
        return audit_bundle.loads(z.read("events.json").decode())


def keys(events) -> set[int]:
    return {int(json.loads(e["row_key"])["id"]) if isinstance(e["row_key"], str) else int(e["row_key"]["id"])
            for e in events if e["table_name"] != "ledgerlock.lock_event"}


@pytest.fixture
def books(db):
    """Scope 1, fiscal years starting in April: rows dated across 2019 and 2020, all recorded today."""
    db.protect_invoice()
    db.connect("admin").execute("SELECT ledgerlock.set_fiscal_year_start('1', 4)")
    app = db.connect("app")
    app.execute("INSERT INTO invoice (id, company_id, issued_on, amount) VALUES "
                "(1, 1, '2019-03-31', 1), (2, 1, '2019-04-01', 2), (3, 1, '2019-10-05', 3), "
                "(4, 1, '2019-11-10', 4), (5, 1, '2020-03-31', 5), (6, 1, '2020-04-01', 6), "
                "(7, 1, '2019-10-20', 7), (8, 2, '2019-10-06', 8)")
    app.execute("UPDATE invoice SET issued_on = '2021-01-01' WHERE id = 7")  # moved out of October: old image
    db.connect("controller").execute("SELECT ledgerlock.lock_period('1', '2019-10-01', '2019-10-31')")
    return db


def test_a_month_bundle_holds_the_rows_dated_in_it_whenever_recorded(books, tmp_path):
    path = tmp_path / "oct.zip"
    res = run(books, "--scope", "1", "--from", "2019-10-01", "--to", "2019-10-31", "-o", str(path))
    assert res.exit_code == 0, res.output
    events = bundled(path)
    assert keys(events) == {3, 7}  # 7 by its old date; 8 is another scope's, 4 is November's
    assert [e["operation"] for e in events if e["table_name"] == "ledgerlock.lock_event"] == ["LOCK"]
    assert "1 lock events" in res.stdout or "(1 lock events" in res.stdout
    res = CliRunner().invoke(cli, ["audit", "verify", "--bundle", str(path)])
    assert res.exit_code == 0 and "bundle intact" in res.output, res.output


def test_a_fiscal_year_bundle_follows_the_scopes_fiscal_calendar(books, tmp_path):
    path = tmp_path / "fy.zip"
    res = run(books, "--scope", "1", "--fiscal-year", "2019", "-o", str(path), "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["from"] == "2019-04-01" and summary["to"] == "2020-03-31"
    assert keys(bundled(path)) == {2, 3, 4, 5, 7}
    assert set(summary) == {"file", "scope", "from", "to", "events", "lock_events", "rows", "links", "digest"}
    assert summary["rows"] == 5 and summary["lock_events"] == 1 and summary["file"] == str(path)
    assert CliRunner().invoke(cli, ["audit", "verify", "--bundle", str(path)]).exit_code == 0


def test_inverted_unknown_and_empty_selections_are_refused(books, tmp_path):
    path = tmp_path / "x.zip"
    res = run(books, "--scope", "1", "--from", "2019-10-31", "--to", "2019-10-01", "-o", str(path))
    assert res.exit_code == 2 and "is after --to" in res.output, res.output
    res = run(books, "--scope", "99", "--from", "2019-10-01", "--to", "2019-10-31", "-o", str(path))
    assert res.exit_code == 2 and "scope '99' has no protected row and no lock" in res.output, res.output
    res = run(books, "--scope", "1", "--from", "2015-01-01", "--to", "2015-12-31", "-o", str(path))
    assert res.exit_code == 1 and "nothing to bundle: " in res.output, res.output
    res = run(books, "--scope", "1", "-o", str(path))
    assert res.exit_code == 2 and "give the period" in res.output
    assert not path.exists()
    # the neighbour: scope 2 has a row and no lock, and is bundled
    res = run(books, "--scope", "2", "--from", "2019-10-01", "--to", "2019-10-31", "-o", str(path))
    assert res.exit_code == 0 and keys(bundled(path)) == {8}, res.output


def test_an_existing_file_is_kept_unless_forced(books, tmp_path):
    path = tmp_path / "oct.zip"
    path.write_bytes(b"the auditor's own file")
    args = ["--scope", "1", "--from", "2019-10-01", "--to", "2019-10-31", "-o", str(path)]
    res = run(books, *args)
    assert res.exit_code == 1 and "exists" in res.output and "--force" in res.output, res.output
    assert path.read_bytes() == b"the auditor's own file"
    assert not list(tmp_path.glob("*.part"))
    res = run(books, *args, "--force")
    assert res.exit_code == 0, res.output
    assert keys(bundled(path)) == {3, 7}


def test_an_unwritable_path_is_a_sentence_not_a_traceback(books):
    res = run(books, "--scope", "1", "--from", "2019-10-01", "--to", "2019-10-31", "-o", "/nonexistent/x.zip")
    assert res.exit_code == 1, res.output
    assert "cannot write /nonexistent/x.zip" in res.output and "Traceback" not in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
