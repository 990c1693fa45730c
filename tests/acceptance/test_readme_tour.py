"""The README's "A five-minute tour in psql", statement by statement, on a database prepared as it says.

A statement followed by a `-- ERROR:  message` line (or with an inline `-- refused … (LLnnn)` comment) must fail
with that message (or SQLSTATE); every other statement must succeed, and a `RETURNING number` with a comment
must return the number the comment shows (the year is today's)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql

from ledgerlock.cli import cli

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


@dataclass
class Statement:
    text: str
    comment: str = ""
    error: str | None = None  # the message after `-- ERROR:`
    sqlstate: str | None = None  # from an inline `refused … (LLnnn)`


def tour_statements(markdown: str) -> list[Statement]:
    section = markdown.split("## A five-minute tour in psql", 1)[1].split("\n## ", 1)[0]
    out: list[Statement] = []
    for block in re.findall(r"```sql\n(.*?)```", section, re.S):
        buf: list[str] = []
        for line in block.splitlines():
            if m := re.match(r"\s*-- ERROR:\s+(.*)", line):
                out[-1].error = m.group(1).strip()
                continue
            code, _, comment = line.partition(" -- ") if " -- " in line else (line, "", "")
            buf.append(code)
            if code.rstrip().endswith(";"):
                st = Statement("\n".join(buf).strip(), comment.strip())
                if m := re.search(r"refused.*\((LL\d{3}|\d{5})\)", st.comment):
                    st.sqlstate = m.group(1)
                out.append(st)
                buf = []
        assert not "".join(buf).strip(), f"unterminated statement in the tour: {buf}"
    return out


def pattern(expected: str) -> str:
    """The message as a regex where years and dates are today's, whatever they read in the README."""
    return re.sub(r"20\d\d", r"\\d{4}", re.escape(expected).replace(r"\-", "-"))


@pytest.fixture
def tour_db(cluster):
    name = "ll_readme_tour"
    with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = cluster.conninfo(name)
    res = CliRunner().invoke(cli, ["--dsn", dsn, "migrate"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute((ROOT / "sql" / "demo" / "erp.sql").read_text())
    yield dsn
    with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_the_readme_prepares_the_tour_with_migrate_and_the_erp_schema():
    section = README.read_text().split("## A five-minute tour in psql", 1)[1].split("\n## ", 1)[0]
    assert "migrate" in section and "-f sql/demo/erp.sql" in section


def test_the_readme_tour_runs_as_written(tour_db):
    statements = tour_statements(README.read_text())
    assert len(statements) >= 25
    failures = 0
    with psycopg.connect(tour_db, autocommit=True) as conn:
        for st in statements:
            if st.error or st.sqlstate:
                with pytest.raises(psycopg.Error) as info:
                    conn.execute(st.text)
                diag = info.value.diag
                if st.error:
                    assert re.fullmatch(pattern(st.error), diag.message_primary), (st.text, diag.message_primary)
                if st.sqlstate:
                    assert diag.sqlstate == st.sqlstate, (st.text, diag.sqlstate, diag.message_primary)
                failures += 1
                if conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
                    conn.execute("ROLLBACK")
                continue
            cur = conn.execute(st.text)
            if "RETURNING number" in st.text and st.comment:
                expected = st.comment.split(":")[0].split()[0]
                got = cur.fetchone()[0]
                assert re.fullmatch(pattern(expected), got), (st.text, got)
            if "number_gaps()" in st.text and "empty" in st.comment:
                assert cur.fetchall() == []
            if "verify_audit()" in st.text:
                ok, events = cur.fetchone()
                assert ok is True and events > 0
    assert failures == 5
    # what the tour set up is sound: doctor finds nothing critical in it, and nothing about its R4 rule (the
    # warnings left are the tour's shortcuts: tables owned by the superuser, no DDL guard)
    res = CliRunner().invoke(cli, ["--dsn", tour_db, "doctor", "--json"], catch_exceptions=False)
    found = json.loads(res.stdout)
    assert res.exit_code == 0 and not [f for f in found if f["severity"] == "critical"], found
    assert not [f for f in found if "payment" in f["finding"] or "refer" in f["check"]], found
