"""docs/close-recipe.md run as written: every command of its ```sh blocks, in order, on a fresh demo database."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from ledgerlock.cli import cli

RECIPE = Path(__file__).resolve().parents[2] / "docs" / "close-recipe.md"
# the task titles of the recipe and the word that stands for each one's number
TASKS = {"Reconcile the bank account": "BANK_TASK", "Import the card statement": "IMPORT_TASK",
         "Review open invoices": "REVIEW_TASK", "Inventory count": "INVENTORY_TASK",
         "Depreciation run": "DEPRECIATION_TASK", "Auditor sign-off": "SIGNOFF_TASK"}
# step 0 sets these; the test computes them the same way (the shell's `date`, the embedded server's URL)
SET_BY_STEP_0 = ("ledgerlock demo", "export LEDGERLOCK_DSN=", "M=", "LAST_DAY=", "ADMIN1=", "ADMIN2=")


def sh_commands(markdown: str) -> list[str]:
    """The commands of the ```sh blocks, in order; a heredoc stays one command with its body."""
    out: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", markdown, re.S):
        lines = block.splitlines()
        while lines:
            line = lines.pop(0)
            if not line.strip():
                continue
            if "<<EOF" in line:
                body = []
                while lines[0] != "EOF":
                    body.append(lines.pop(0))
                lines.pop(0)
                line += "\n" + "\n".join(body)
            out.append(line)
    return out


@pytest.fixture
def demo_db(cluster):
    res = CliRunner().invoke(cli, ["--dsn", cluster.conninfo(), "demo"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return cluster.conninfo("ledgerlock_demo")


def test_the_close_recipe_runs_as_written(cluster, demo_db, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    psql = psycopg.connect(demo_db, autocommit=True)
    month, last_day = psql.execute(
        """SELECT to_char(date_trunc('month', current_date) - interval '1 day', 'YYYY-MM'),
                  (date_trunc('month', current_date) - interval '1 day')::date::text""").fetchone()
    server = cluster.server
    env = {"LEDGERLOCK_DSN": demo_db, "M": month, "LAST_DAY": last_day,
           "ADMIN1": server.conninfo(dbname="ledgerlock_demo", user="erp_demo_admin"),
           "ADMIN2": server.conninfo(dbname="ledgerlock_demo", user="erp_demo_admin2")}
    words: dict[str, str] = {}
    commands = sh_commands(RECIPE.read_text())
    ran = 0
    for command in commands:
        if command.startswith(SET_BY_STEP_0):
            continue
        line, _, comment = command.partition("   #")
        expected = int(m.group(1)) if (m := re.search(r"exits (\d)", comment)) else 0
        if "FY_FIRST_DAY" in line:
            fy_first, fy_last = psql.execute(
                """SELECT (ledgerlock.preset_through('2', 'end-of-last-fiscal-year') + 1
                           - interval '1 year')::date::text,
                          ledgerlock.preset_through('2', 'end-of-last-fiscal-year')::text""").fetchone()
            words.update(FY_FIRST_DAY=fy_first, FY_LAST_DAY=fy_last)
        text = re.sub(r"\$\(cat \"([^\"]+)\"\)", lambda m: (tmp_path / m.group(1).replace("$M", month))
                      .read_text().strip(), line)
        for name, value in sorted(env.items(), key=lambda kv: -len(kv[0])):
            text = text.replace("${" + name + "}", value).replace("$" + name, value)
        for word, value in sorted(words.items(), key=lambda kv: -len(kv[0])):
            text = re.sub(rf"\b{word}\b", value, text)
        if text.startswith("cat > "):
            head, body = text.split("\n", 1)
            (tmp_path / head.split()[2]).write_text(body + "\n")
            continue
        argv = shlex.split(text, comments=True)
        if not argv:
            continue
        if argv[0] == "psql":
            psql.execute(argv[argv.index("-c") + 1])
            ran += 1
            continue
        dsn = env["LEDGERLOCK_DSN"]
        if argv[0].startswith("LEDGERLOCK_DSN="):
            dsn = argv.pop(0).split("=", 1)[1]
        redirect = None
        if ">" in argv:
            redirect = argv[argv.index(">") + 1]
            argv = argv[: argv.index(">")]
        assert argv[0] == "ledgerlock", command
        res = CliRunner(env={"LEDGERLOCK_DSN": dsn}).invoke(cli, argv[1:], catch_exceptions=False)
        assert res.exit_code == expected, f"{command}\n{res.output}"
        ran += 1
        if redirect:
            (tmp_path / redirect).write_text(res.stdout)
        # the numbers the recipe refers to by name
        if argv[1:4] == ["close", "tasks", "2"] and "add" in argv:
            words[TASKS[argv[-1]]] = re.search(r"task #(\d+)", res.output).group(1)
        if m := re.search(r"^locked lock #(\d+)", res.output, re.M):
            words["LOCK_ID"] = m.group(1)
        if m := re.search(r"filed unlock request #(\d+)", res.output):
            words["N"] = m.group(1)
        if m := re.search(r"filed request #(\d+)", res.output):
            words["OFF_N"] = m.group(1)
        # key outputs
        if argv[1:3] == ["lock", "2"] and expected == 0:
            assert f"locked lock #{words['LOCK_ID']}: scope 2 up to {last_day} (soft, active)" in res.output
            with pytest.raises(psycopg.Error) as info:  # the month is closed for every client now
                psql.execute("INSERT INTO journal_entry (company_id, posted_on) VALUES (2, %s)", (f"{month}-05",))
            assert info.value.diag.sqlstate == "LL002"
        if argv[1:3] == ["lock", "2"] and expected == 1:
            assert f"already locked through {last_day}" in res.output
        if argv[1:3] == ["locks", "2"] and "--active" not in argv:
            assert f"books of scope 2 locked through: {last_day}" in res.output
        if argv[1] == "upgrade":
            assert res.stdout.startswith(f"upgraded lock #{words['LOCK_ID']}: scope 2 up to {last_day} (hard")
        if argv[1:3] == ["import", "card-statement.csv"]:
            assert ("would load: 3" if "--dry-run" in argv else "3 rows read, inserted 3, skipped 0") in res.output
        if argv[1:3] == ["audit", "bundle"]:
            # bundles select by accounting period: the month's (and the year's) rows and lock events are in it
            m = re.search(r"^wrote \S+\.zip: scope 2, \S+: (\d+) events", res.output, re.M)
            assert m and int(m.group(1)) > 0, res.output
        if argv[1:3] == ["audit", "verify"]:
            assert "intact" in res.output
        if argv[1:3] == ["unlock", "approve"] and "N" in words and argv[3] == words["N"]:
            assert res.stdout.startswith(f"unlocked lock #{words['LOCK_ID']}: scope 2 up to {last_day}")
    assert ran >= 30 and {"BANK_TASK", "LOCK_ID", "N", "OFF_N", "SIGNOFF_TASK"} <= set(words)
    assert (tmp_path / f"digest-{month}.txt").read_text().startswith("ll1:")
    # every task of the recipe is done
    open_tasks = psql.execute("SELECT count(*) FROM ledgerlock.close_tasks('2', 'last-month') "
                              "WHERE status <> 'done'").fetchone()[0]
    assert open_tasks == 0
    psql.close()


def test_step_0_defines_what_the_test_stands_in_for():
    text = RECIPE.read_text()
    for needle in SET_BY_STEP_0:
        assert any(c.startswith(needle) for c in sh_commands(text)), needle
