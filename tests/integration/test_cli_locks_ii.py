"""Issue 18, the CLI of period locks: the "books locked through" date after an unlock, preset windows
checked before printing, hints in CLI terms, overrides, scope grants, withdrawn requests, skipped writes,
unknown scopes and ledgers."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ledgerlock.cli import cli
from lltest import refused


@pytest.fixture
def as_role(db):
    db.protect_invoice()

    def run(role: str, *args: str, ok: bool = True, code: int | None = None):
        result = CliRunner().invoke(cli, ["--dsn", db.conninfo(role), *args], catch_exceptions=False)
        if code is not None:
            assert result.exit_code == code, result.output
        elif ok:
            assert result.exit_code == 0, result.output
        else:
            assert result.exit_code != 0, result.output
        return result

    return run


def through(conn, scope="1", ledger=None):
    return conn.execute("SELECT ledgerlock.locked_through(%s, %s)::text", (scope, ledger)).fetchone()[0]


def three_windows(ctl):
    """up to 2025-01-31, February, March of scope 1 (ids 1, 2, 3)."""
    for day in ("2025-01-31", "2025-02-28", "2025-03-31"):
        ctl.execute("SELECT ledgerlock.lock_through('1', %s::date)", (day,))


# ---------------------------------------------------------------------------------------------------
# Item 2: an unlocked window breaks the run of "books locked through"


def test_unlocking_the_earliest_window_leaves_the_books_locked_through_nothing(db, as_role):
    ctl, app = db.connect("controller"), db.connect("app")
    three_windows(ctl)
    assert through(ctl) == "2025-03-31"
    ctl.execute("SELECT ledgerlock.unlock_period(1, 'late invoice')")
    assert through(ctl) is None
    app.execute("INSERT INTO invoice (id, company_id, issued_on) VALUES (10, 1, '2025-01-15')")  # as it says
    with refused("LL002"):
        app.execute("INSERT INTO invoice (id, company_id, issued_on) VALUES (11, 1, '2025-02-15')")
    out = as_role("auditor", "locks", "1").output
    assert "books of scope 1 are not locked through any date: lock #1 (up to 2025-01-31) is unlocked" in out
    assert json.loads(as_role("auditor", "locks", "1", "--json").output)["locked_through"] is None
    ctl.execute("SELECT ledgerlock.relock(1)")
    assert through(ctl) == "2025-03-31"
    assert "books of scope 1 locked through: 2025-03-31" in as_role("auditor", "locks", "1").output


def test_lock_through_after_unlocking_the_earliest_window_fills_the_gap_only(db):
    ctl = db.connect("controller")
    three_windows(ctl)
    ctl.execute("SELECT ledgerlock.unlock_period(1, 'late invoice')")
    with refused("LL004", r"^period up to 2025-03-31 for scope 1 overlaps lock #2 "):
        ctl.execute("SELECT ledgerlock.lock_through('1', '2025-03-31')")
    new_id = ctl.execute("SELECT ledgerlock.lock_through('1', '2025-01-31')").fetchone()[0]
    assert through(ctl) == "2025-03-31"
    assert ctl.execute("SELECT from_date::text FROM ledgerlock.period_lock WHERE id = %s", (new_id,)).fetchone()[0] \
        == "-infinity"


def test_lock_through_after_unlocking_a_middle_window(db):
    ctl = db.connect("controller")
    three_windows(ctl)
    ctl.execute("SELECT ledgerlock.unlock_period(2, 'reclass')")
    assert through(ctl) == "2025-01-31"
    with refused("LL004", r"^period 2025-02-01\.\.2025-04-30 for scope 1 overlaps lock #3 "):
        ctl.execute("SELECT ledgerlock.lock_through('1', '2025-04-30')")
    new_id = ctl.execute("SELECT ledgerlock.lock_through('1', '2025-02-28')").fetchone()[0]
    assert ctl.execute("SELECT from_date::text, to_date::text FROM ledgerlock.period_lock WHERE id = %s",
                       (new_id,)).fetchone() == ("2025-02-01", "2025-02-28")
    assert through(ctl) == "2025-03-31"


def test_an_unlocked_window_covered_again_by_a_new_lock_does_not_break_the_run(db):
    ctl = db.connect("controller")
    three_windows(ctl)
    ctl.execute("SELECT ledgerlock.unlock_period(2, 'reclass')")
    ctl.execute("SELECT ledgerlock.lock_period('1', '2025-02-01', '2025-02-14')")
    assert through(ctl) == "2025-02-14"  # 15..28 February are open
    ctl.execute("SELECT ledgerlock.lock_period('1', '2025-02-15', '2025-02-28')")
    assert through(ctl) == "2025-03-31"


# ---------------------------------------------------------------------------------------------------
# Item 6: a preset before the locked-through date is one sentence, no inverted window


def test_a_preset_before_the_locked_through_date_is_refused_before_anything_is_shown(db, as_role):
    owner = db.owner()
    month_end = owner.execute("SELECT ledgerlock.preset_through('1', 'end-of-last-month')").fetchone()[0]
    fy_end = owner.execute("SELECT ledgerlock.preset_through('1', 'end-of-last-fiscal-year')").fetchone()[0]
    as_role("controller", "lock", "1", "--through", "end-of-last-month", "--yes")
    res = as_role("controller", "lock", "1", "--through", "end-of-last-fiscal-year", "--yes", code=1)
    assert res.stdout == ""  # nothing shown as if it would happen
    assert res.stderr.splitlines()[1] == (f"Error: the books of scope 1 are already locked through {month_end}, "
                                          f"after end-of-last-fiscal-year ({fy_end}); nothing to lock")
    assert owner.execute("SELECT count(*) FROM ledgerlock.period_lock").fetchone()[0] == 1


# ---------------------------------------------------------------------------------------------------
# Item 8 (part): --json on unlock, upgrade, relock; item 9: hints in CLI terms, withdrawing a request


def test_unlock_upgrade_relock_print_json(db, as_role):
    as_role("controller", "lock", "1", "--from", "2025-03-01", "--to", "2025-03-31")
    row = json.loads(as_role("controller", "upgrade", "1", "--json").stdout)
    assert (row["id"], row["level"], row["status"]) == (1, "hard", "active")
    data = json.loads(as_role("admin", "unlock", "1", "--reason", "restatement", "--json").stdout)
    assert (data["action"], data["lock"]["status"], data["request_id"], data["requests"]) == (
        "unlocked", "unlocked", None, [])
    row = json.loads(as_role("controller", "relock", "1", "--json").stdout)
    assert (row["id"], row["relock_of"], row["status"]) == (2, 1, "active")
    data = json.loads(as_role("admin", "unlock", "--pending", "--json").output)
    assert (data["action"], data["requests"]) == ("pending", [])


def test_hints_name_the_cli_command_not_the_sql(db, as_role):
    as_role("controller", "lock", "1", "--from", "2025-03-01", "--to", "2025-03-31")
    as_role("controller", "unlock", "1", "--reason", "late invoice")
    out = as_role("controller", "upgrade", "1", code=1).stderr
    assert out.splitlines()[1:] == [
        "error LL004 (invalid lock operation (overlap, future end, downgrade, unknown id)): lock #1 is unlocked; "
        "only an active lock can be upgraded",
        "hint: relock it first: ledgerlock relock 1"]
    # the SQL hint itself is unchanged for other tools
    with refused("LL004", r"^lock #1 is unlocked"):
        db.connect("controller").execute("SELECT ledgerlock.upgrade_lock(1)")


def test_a_four_eyes_request_is_withdrawn_by_its_author(db, as_role):
    as_role("admin", "lock", "1", "--from", "2025-03-01", "--to", "2025-03-31", "--hard")
    as_role("admin", "close", "four-eyes", "on")
    out = as_role("admin", "unlock", "1", "--reason", "late supplier invoice").output
    assert "ledgerlock unlock withdraw 1" in out
    out = as_role("admin", "unlock", "withdraw", "1", "--json").stdout
    assert json.loads(out) == {"action": "withdrawn", "lock": None, "request_id": 1, "requests": []}
    assert json.loads(as_role("admin", "unlock", "pending", "--json").output)["requests"] == []
    out = as_role("admin", "unlock", "--withdraw", "1", code=1).stderr  # the old spelling still works
    assert out.splitlines()[1].startswith("error LL004")
    as_role("admin", "unlock", "--withdraw", "1", "--approve", "1", code=2)


# ---------------------------------------------------------------------------------------------------
# Item 9: overrides, scope grants, skipped writes from the command line


def test_override_runs_the_sql_under_a_reason_in_one_transaction(db, as_role, tmp_path):
    app = db.connect("app")
    app.execute("INSERT INTO invoice (id, company_id, issued_on, amount) VALUES (1, 1, '2025-03-10', 100)")
    as_role("controller", "lock", "1", "--from", "2025-03-01", "--to", "2025-03-31")
    with refused("LL002"):
        app.execute("UPDATE invoice SET amount = 90 WHERE id = 1")
    out = as_role("controller", "override", "--reason", "credit note", "-c",
                  "UPDATE invoice SET amount = 90 WHERE id = 1").stdout
    assert out.splitlines() == ["UPDATE 1: 1 row touched", "override #1 committed: 1 row touched (credit note)"]
    fix = tmp_path / "fix.sql"
    fix.write_text("UPDATE invoice SET amount = 80 WHERE id = 1;\n-- and a new line\n"
                   "INSERT INTO invoice (id, company_id, issued_on, amount) VALUES (2, 1, '2025-03-11', 5);\n")
    data = json.loads(as_role("controller", "override", "--reason", "restated", "--sql", str(fix), "--json").stdout)
    assert data == {"override_id": 2, "statements": [{"status": "UPDATE 1", "rows": 1},
                                                     {"status": "INSERT 0 1", "rows": 1}]}
    # all or nothing: the second statement fails, the first is rolled back
    fix.write_text("UPDATE invoice SET amount = 70 WHERE id = 1; SELECT 1/0;")
    assert "22012" in as_role("controller", "override", "--reason", "oops", "--sql", str(fix), code=1).output
    assert app.execute("SELECT amount FROM invoice WHERE id = 1").fetchone()[0] == 80
    fix.write_text("-- nothing\n;\n")
    assert "holds no SQL statement" in as_role("controller", "override", "--reason", "x", "--sql", str(fix),
                                               code=2).output
    out = as_role("controller", "override", "--reason", " ", "-c", "SELECT 1", code=1).stderr
    assert out.splitlines()[1].startswith("error LL007")
    as_role("controller", "override", "--reason", "x", code=2)


def test_grant_and_revoke_a_scope(db, as_role):
    out = as_role("admin", "grant", "ll_controller", "1").stdout
    assert out.strip() == "granted scope 1 to ll_controller"
    as_role("controller", "lock", "1", "--from", "2025-03-01", "--to", "2025-03-31")
    assert "LL005" in as_role("controller", "lock", "2", "--from", "2025-03-01", "--to", "2025-03-31",
                              code=1).output
    assert "LL005" in as_role("controller", "grant", "ll_controller", "2", code=1).output
    assert as_role("admin", "revoke", "ll_controller", "1").stdout.strip() == "revoked scope 1 from ll_controller"
    # its last scope taken: limited to no scope, until an admin lifts the limit with a reason
    assert "limited to no scope" in as_role("controller", "lock", "2", "--from", "2025-03-01", "--to", "2025-03-31",
                                            code=1).output
    assert "has no grant on scope 1" in as_role("admin", "revoke", "ll_controller", "1", code=1).output
    assert "Missing option '--reason'" in as_role("admin", "lift-scope-limit", "ll_controller", code=2).output
    assert "LL005" in as_role("controller", "lift-scope-limit", "ll_controller", "--reason", "me", code=1).output
    out = as_role("admin", "lift-scope-limit", "ll_controller", "--reason", "controls every company").stdout
    assert out.strip() == "ll_controller is no longer limited to scopes: it may act on every scope"
    as_role("controller", "lock", "2", "--from", "2025-03-01", "--to", "2025-03-31")
    assert "is not limited to scopes" in as_role("admin", "lift-scope-limit", "ll_controller", "--reason", "again",
                                                 code=1).output
    [event] = json.loads(as_role("auditor", "audit", "log", "--operation", "lift_scope_limit", "--json").stdout)
    assert (event["reason"], event["new_row"]["details"]) == ("controls every company", {"grantee": "ll_controller"})


def test_skipped_lists_the_skipped_rows(db, as_role):
    as_role("controller", "lock", "1", "--from", "2025-03-01", "--to", "2025-03-31")
    app = db.connect("app")
    with app.transaction():
        app.execute("SET LOCAL ledgerlock.on_locked = 'skip'")
        app.execute("SET LOCAL ledgerlock.context = 'recurring:rent'")
        app.execute("INSERT INTO invoice (id, company_id, issued_on, amount) VALUES (7, 1, '2025-03-05', 12), "
                    "(8, 1, '2025-04-05', 12)")
    rows = json.loads(as_role("auditor", "skipped", "--context", "recurring:rent", "--json").output)
    assert [(r["table_name"], r["scope"], r["lock_id"], r["row_data"]["id"]) for r in rows] == [
        ("public.invoice", "1", 1, 7)]
    assert "(no skipped writes for context other)" in as_role("auditor", "skipped", "--context", "other").output


def test_an_unknown_ledger_is_refused_with_the_known_ones(db, as_role):
    db.owner().execute("SELECT ledgerlock.protect('payment', 'paid_on', 'company_id', ledger => 'ap')")
    out = as_role("controller", "lock", "1", "--through", "2025-01-31", "--ledger", "gll", code=2).output
    assert "Invalid value for --ledger: no protected table has the ledger gll; the known ledgers are: ap" in out
    assert db.owner().execute("SELECT count(*) FROM ledgerlock.period_lock").fetchone()[0] == 0
    as_role("controller", "lock", "1", "--through", "2025-01-31", "--ledger", "ap")


def test_an_unseen_scope_is_warned_about_but_locked(db, as_role):
    db.connect("app").execute("INSERT INTO invoice (id, company_id, issued_on) VALUES (1, 1, '2025-03-10')")
    result = CliRunner().invoke(cli, ["--dsn", db.conninfo("controller"), "lock", "5", "--through", "2025-01-31"])
    assert result.exit_code == 0, result.output
    assert "warning: scope 5 appears in no protected table and no lock; locking it anyway" in result.stderr
    assert result.stdout.strip() == "locked lock #1: scope 5 up to 2025-01-31 (soft, active)"
    result = CliRunner().invoke(cli, ["--dsn", db.conninfo("controller"), "lock", "1", "--through", "2025-01-31"])
    assert result.exit_code == 0 and "warning" not in result.stderr


def test_a_second_request_for_the_same_lock_gets_a_hint_in_cli_terms(db, as_role):
    as_role("admin", "lock", "1", "--from", "2025-03-01", "--to", "2025-03-31", "--hard")
    as_role("admin", "close", "four-eyes", "on")
    as_role("admin", "unlock", "1", "--reason", "late supplier invoice")
    out = as_role("admin", "unlock", "1", "--reason", "again", code=1).output
    hint = out.splitlines()[-1]
    assert hint == ("hint: another admin approves it with ledgerlock unlock approve 1, or ll_admin withdraws it "
                    "with ledgerlock unlock withdraw 1")
    out = as_role("admin", "close", "four-eyes", "off", "--reason", "x", code=0).output
    assert "ledgerlock unlock approve" in out
