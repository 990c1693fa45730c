"""Issue 18, the close checklist from the command line: `close tasks SCOPE PERIOD done ID` completes only a
task of that scope and period, and task errors speak of tasks, not of lock operations."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ledgerlock.cli import cli


@pytest.fixture
def ll(db):
    def run(*args: str, code: int = 0, role: str = "controller"):
        result = CliRunner().invoke(cli, ["--dsn", db.conninfo(role), *args], catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result

    return run


def add(ll, scope, period, task):
    return int(ll("close", "tasks", scope, period, "add", task).output.split("#")[1].split()[0])


def status(db, task_id):
    return db.owner().execute("SELECT done_at IS NOT NULL FROM ledgerlock.close_task WHERE id = %s",
                              (task_id,)).fetchone()[0]


def test_done_refuses_a_task_of_another_scope_or_period_and_completes_its_own(db, ll):
    mine = add(ll, "2", "2025-03", "Reconcile the bank")
    other_scope = add(ll, "3", "2025-03", "Post the accruals")
    other_period = add(ll, "2", "2025-04", "Reconcile the bank")
    for stray in (other_scope, other_period):
        out = ll("close", "tasks", "2", "2025-03", "done", str(mine), str(stray), "--note", "x", code=1).output
        assert out.splitlines()[1] == (f"error: close task #{stray} is not on the checklist of scope 2, "
                                       "2025-03; nothing was marked done")
        assert "LL004" not in out and "lock operation" not in out
        assert "ledgerlock close tasks 2 2025-03" in out
    assert (status(db, mine), status(db, other_scope), status(db, other_period)) == (False, False, False)
    out = ll("close", "tasks", "2", "2025-03", "done", str(mine), "--note", "3 lines imported").stdout
    assert out.splitlines()[0] == f"done: #{mine}"
    assert (status(db, mine), status(db, other_scope)) == (True, False)


def test_task_errors_have_their_own_wording(db, ll):
    mine = add(ll, "2", "2025-03", "Reconcile the bank")
    ll("close", "tasks", "2", "2025-03", "done", str(mine))
    out = ll("close", "tasks", "2", "2025-03", "done", str(mine), code=1).stderr
    assert out.splitlines()[1].startswith(
        f"error: close task: close task #{mine} (Reconcile the bank, 2025-03) was already done")
    assert "LL004" not in out and "lock operation" not in out
    out = ll("close", "tasks", "2", "2025-03", "done", "abc", code=2).output
    assert "'abc' is not a valid integer" in out


def test_list_is_the_default_and_subcommands_have_their_help(db, ll):
    mine = add(ll, "2", "2025-03", "Reconcile the bank")
    assert ll("close", "tasks", "2", "2025-03").output.rstrip().endswith("1 of 1 task open for scope 2, 2025-03")
    rows = json.loads(ll("close", "tasks", "2", "2025-03", "--json").output)
    assert [r["id"] for r in rows] == [mine]
    assert rows == json.loads(ll("close", "tasks", "2", "2025-03", "list", "--json").output)
    assert "Mark tasks IDS" in ll("close", "tasks", "2", "2025-03", "done", "--help").output
    out = ll("close", "tasks", "2", "2025-13", code=2).output
    assert "Invalid value for PERIOD" in out

