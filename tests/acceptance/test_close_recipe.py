"""docs/close-recipe.md followed command by command on the demo database, as a new user would."""

from __future__ import annotations

import json
import re

import psycopg
import pytest
from click.testing import CliRunner

from ledgerlock.cli import cli


class Shell:
    """The recipe's shell: LEDGERLOCK_DSN exported, commands run one by one."""

    def __init__(self, dsn: str):
        self.dsn = dsn

    def __call__(self, *args, ok=True, dsn=None):
        result = CliRunner(env={"LEDGERLOCK_DSN": dsn or self.dsn}).invoke(cli, list(args), catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, f"ledgerlock {' '.join(args)}\n{result.output}"
        return result


@pytest.fixture
def demo_db(cluster):
    res = CliRunner().invoke(cli, ["--dsn", cluster.conninfo(), "demo"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return cluster.conninfo("ledgerlock_demo")


def test_the_close_recipe_works_command_by_command(cluster, demo_db, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ll = Shell(demo_db)
    psql = psycopg.connect(demo_db, autocommit=True)
    month, month_end = psql.execute(
        """SELECT to_char(date_trunc('month', current_date) - interval '1 day', 'YYYY-MM'),
                  (date_trunc('month', current_date) - interval '1 day')::date::text""").fetchone()

    # 0. once per company
    assert ll("close", "fiscal-year", "2", "4").output.strip() == "the fiscal year of scope 2 starts on 1 April"
    fy_start, fy_end = psql.execute(
        """SELECT (ledgerlock.preset_through('2', 'end-of-last-fiscal-year') + 1 - interval '1 year')::date::text,
                  ledgerlock.preset_through('2', 'end-of-last-fiscal-year')::text""").fetchone()
    assert fy_start.endswith("-04-01") and fy_end.endswith("-03-31")
    ll("protect", "journal_entry", "--date-column", "posted_on", "--scope-column", "company_id", "--ledger", "gl")

    # 1. the checklist
    for task in ("Reconcile the bank account", "Import the card statement", "Review open invoices"):
        assert f"on the checklist of scope 2, {month}: {task}" in ll("close", "tasks", "2", "last-month", "add",
                                                                         task).output
    listing = ll("close", "tasks", "2", "last-month").output
    assert listing.count(month) == 4 and listing.rstrip().endswith(f"3 of 3 tasks open for scope 2, {month}")
    ids = [t["id"] for t in json.loads(ll("close", "tasks", "2", "last-month", "list", "--json").output)]
    assert len(ids) == 3

    # 2. import what is still missing
    (tmp_path / "card-statement.csv").write_text(
        "company_id,ledger,posted_on,memo,amount\n"
        f"2,gl,{month}-03,Card: office supplies,-84.20\n"
        f"2,gl,{month}-17,Card: train tickets,-212.00\n"
        f"2,gl,{month}-28,Card: software subscription,-49.00\n")
    out = ll("import", "card-statement.csv", "--table", "journal_entry", "--dry-run").output
    assert "in locked windows (would be skipped): 0" in out and "would load: 3" in out
    out = ll("import", "card-statement.csv", "--table", "journal_entry", "--context", f"card-statement {month}").output
    assert "3 rows read, inserted 3, skipped 0" in out
    ll("close", "tasks", "2", "last-month", "done", str(ids[1]), "--note", "3 lines imported")

    # 3. reconcile (in the ERP: a mutable column)
    psql.execute("UPDATE invoice SET reconciled = true WHERE company_id = 2 AND paid")
    ll("close", "tasks", "2", "last-month", "done", str(ids[0]), "--note", "statement of the last day matched")

    # 4. lock the month (soft): the open task is a warning, not a refusal
    res = ll("lock", "2", "--through", "end-of-last-month", "--note", "month-end close", "--yes")
    lines = res.output.splitlines()
    assert lines[0] == f"end-of-last-month for scope 2: lock everything up to {month_end} (soft)"
    assert lines[1] == (f"warning: 1 close task is still open for scope 2 in up to {month_end}: "
                        f"#{ids[2]} Review open invoices ({month})")
    assert re.fullmatch(rf"locked lock #\d+: scope 2 up to {month_end} \(soft, active\)", lines[-1])
    lock_id = int(re.search(r"#(\d+)", lines[-1]).group(1))
    with pytest.raises(psycopg.Error) as info:  # the month is closed for every client now
        psql.execute("INSERT INTO journal_entry (company_id, posted_on) VALUES (2, %s)", (f"{month}-05",))
    assert info.value.diag.sqlstate == "LL002"

    # 5. the reviewer marks it reviewed
    ll("close", "tasks", "2", "last-month", "done", str(ids[2]), "--note", "nothing open above 30 days")
    active = json.loads(ll("locks", "2", "--active", "--json").output)
    assert [(lk["id"], lk["level"]) for lk in active["locks"]] == [(lock_id, "soft")]
    out = ll("upgrade", str(lock_id), "--reviewer", "Jane Reviewer").output
    assert out.startswith(f"upgraded lock #{lock_id}: scope 2 up to {month_end} (hard, active)")

    # 6. nothing lost by the recurring jobs (the SQL block of the recipe, as the job runs it)
    with psql.transaction():
        psql.execute("SET LOCAL ledgerlock.on_locked = 'skip'")
        psql.execute("SET LOCAL ledgerlock.context = 'recurring:rent'")
        row = psql.execute("INSERT INTO journal_entry (company_id, posted_on, memo, amount) "
                           "VALUES (2, %s, 'rent', -1200) RETURNING id", (f"{month}-01",)).fetchone()
    assert row is None
    assert any(line.startswith(f"recurring:rent: 1 skipped generation (public.journal_entry, scope 2, "
                               f"lock #{lock_id}; ") for line in ll("close", "skipped").output.splitlines())

    # 7. bundle for the auditor, and the digest kept outside
    bundle = f"globex-{month}.zip"
    ll("audit", "bundle", "--scope", "2", "--from", f"{month}-01", "--to", month_end, "-o", bundle)
    assert (tmp_path / bundle).stat().st_size > 0
    ll("audit", "verify", "--bundle", bundle)
    (tmp_path / f"digest-{month}.txt").write_text(ll("audit", "digest").output)
    ll("audit", "verify", "--digest", (tmp_path / f"digest-{month}.txt").read_text().strip())

    # year-end: the checklist of the fiscal year
    for task in ("Inventory count", "Depreciation run", "Auditor sign-off"):
        ll("close", "tasks", "2", "last-fiscal-year", "add", task)
    year = json.loads(ll("close", "tasks", "2", "last-fiscal-year", "list", "--json").output)
    fy_ids = [t["id"] for t in year if t["period"].startswith("FY")]
    assert len(fy_ids) == 3 and all(t["from_date"] == fy_start for t in year if t["id"] in fy_ids)

    # the monthly close already locked past the year's end: ledgerlock says so and changes nothing
    res = ll("lock", "2", "--through", "end-of-last-fiscal-year", "--yes", ok=False)
    assert res.exit_code == 1 and f"already locked through {month_end}" in res.output
    assert f"books of scope 2 locked through: {month_end}" in ll("locks", "2").output

    # four-eyes: two admins (the test logins of this cluster) reopen the hard window
    admin1, admin2 = cluster.conninfo("ledgerlock_demo", "admin"), cluster.conninfo("ledgerlock_demo", "admin2")
    assert ll("close", "four-eyes", "on", "--ttl", "24 hours").output.strip() == (
        "four-eyes unlocking of hard windows: on (requests expire after 24:00:00)")
    out = ll("unlock", str(lock_id), "--reason", "auditor adjustment 12", dsn=admin1).output
    request_id = int(re.search(r"filed unlock request #(\d+)", out).group(1))
    assert "auditor adjustment 12" in ll("unlock", "--pending", dsn=admin2).output
    assert ll("unlock", "--approve", str(request_id), dsn=admin2).output.startswith(
        f"unlocked lock #{lock_id}: scope 2 up to {month_end} (hard, unlocked)")
    assert ll("relock", str(lock_id)).output.startswith(f"relocked lock #{lock_id} as lock #")
    # turning four-eyes off takes two admins too
    out = ll("close", "four-eyes", "off", "--reason", "demo over", dsn=admin1).output
    off_id = int(re.search(r"filed request #(\d+)", out).group(1))
    assert ll("unlock", "--approve", str(off_id), dsn=admin2).output.strip() == f"approved request #{off_id}"

    # the auditor signed off: tick the list, bundle the year, keep its digest
    ll("close", "tasks", "2", "last-fiscal-year", "done", *map(str, fy_ids))
    year = json.loads(ll("close", "tasks", "2", "last-fiscal-year", "list", "--json").output)
    assert [t["status"] for t in year if t["id"] in fy_ids] == ["done"] * 3
    ll("audit", "bundle", "--scope", "2", "--from", fy_start, "--to", fy_end, "-o", "globex-FY.zip")
    (tmp_path / "digest-FY.txt").write_text(ll("audit", "digest").output)
    psql.close()
