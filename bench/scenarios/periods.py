"""R3 period locks: the cost of the check with 1 vs 10,000 windows in a scope, and lock/unlock on an empty
vs a large table (both must not depend on size: no per-row flags, one index probe); and deleting a header whose
lines take their date from it (the parent's guard), dated after every window and before the last one."""

from __future__ import annotations

import time

from psycopg import sql

from ..harness import Bench
from ..stats import Result, Target, not_available
from ..tables import BACKDATED, Features, assert_open, audit_triggers, protect
from .common import Variant, pgbench_group, timed_group

T_WINDOWS = Target(0.95, source="issue 5 (R3)")
T_LOCK_SIZE = Target(0.50, source="issue 5 (R3): time within 2x of an empty table")

CROWDED_SCOPE = 9  # the scope with many windows; scope 1 has exactly one (2020)
BIG_SCOPE, EMPTY_SCOPE = 1000, 2000


def lock_check(b: Bench, f: Features) -> Result:
    w = b.profile.windows
    title = f"single-row INSERT, lock check with {w:,} windows vs 1 window ({b.profile.clients} clients)"
    if not f.periods:
        return not_available("lock_check_windows", title, f.missing("periods"), T_WINDOWS)
    # One-day windows every other day, all in the past: the row's date (today) lies after all of them. The
    # latest first: it sets the scope's high-water mark once, and no later window re-installs the guards.
    b.execute("SELECT count(ledgerlock.lock_period(%s, d::date, d::date, 'hard')) "
              "FROM generate_series(date '2020-12-31', date '2020-12-31' - 2 * (%s - 1), interval '-2 days') d",
              (str(CROWDED_SCOPE), w))
    have = b.scalar("SELECT count(*) FROM ledgerlock.period_locks WHERE scope = %s", (str(CROWDED_SCOPE),)) \
        if b.has_relation("ledgerlock.period_locks") else w
    b.create_doc_table("p_check")
    protect(b, "p_check", audit=False)
    b.prepare_for_run("p_check")
    for scope in ("1", str(CROWDED_SCOPE)):
        assert_open(b, scope, BACKDATED)
    script = b.script("insert_dated", table="p_check")
    s = pgbench_group(b, {"one_window": Variant(script, variables={"scope": 1, "day": BACKDATED}),
                          "many_windows": Variant(script, variables={"scope": CROWDED_SCOPE, "day": BACKDATED})})
    return Result("lock_check_windows", title, baseline_label="1 window", target=T_WINDOWS,
                  note=f"rows dated {BACKDATED}, an open day between windows and before the last locked day, so "
                       f"the check runs; scope {CROWDED_SCOPE} holds {have:,} windows, scope 1 one; enforcement only",
                  baseline_samples=s["one_window"], value_samples=s["many_windows"])


def lock_unlock(b: Bench, f: Features) -> Result:
    n = b.profile.big_table_rows
    title = f"lock_period + unlock_period, table of {n:,} rows vs empty table"
    if not f.periods:
        return not_available("lock_unlock_size", title, f.missing("periods"), T_LOCK_SIZE, unit="cycles/s")
    b.create_doc_table("p_empty")
    b.create_doc_table("p_big", rows=n, scope=BIG_SCOPE,
                       fill_sql="INSERT INTO {} (company_id, issued_on, amount, note) "
                                "SELECT %s, date '2000-01-01' + (g %% 7300), (g %% 1000)::numeric, 'history' "
                                "FROM generate_series(1, %s) g")
    for t in ("p_empty", "p_big"):
        protect(b, t, audit=True)
    b.prepare_for_run("p_empty", "p_big")
    cycles = b.profile.lock_cycles
    used = {BIG_SCOPE: 0, EMPTY_SCOPE: 0}
    unlocked: list[int] = []

    def variant(scope: int):
        def run() -> float:
            with b.connect() as conn:
                t0 = time.perf_counter()
                for _ in range(cycles):
                    month = used[scope]
                    used[scope] += 1
                    # Windows over months the big table has rows in (2000-01 onwards).
                    lock_id = conn.execute(
                        "SELECT ledgerlock.lock_period(%s, d, (d + interval '1 month - 1 day')::date, 'soft') "
                        "FROM (SELECT (date '2000-01-01' + %s * interval '1 month')::date AS d) m",
                        (str(scope), month)).fetchone()[0]
                    conn.execute("SELECT ledgerlock.unlock_period(%s, 'bench: lock/unlock cycle')", (lock_id,))
                    unlocked.append(lock_id)
                return cycles / (time.perf_counter() - t0)
        return run

    s = timed_group(b, {"empty": variant(EMPTY_SCOPE), "big": variant(BIG_SCOPE)})
    # Leave no window unlocked behind (untimed): an unlocked window anywhere changes how every later audited
    # write is captured (see insert_audited_unlocked_elsewhere), which would skew the scenarios that follow.
    for lock_id in unlocked:
        b.execute("SELECT ledgerlock.relock(%s)", (lock_id,))
    covered = b.scalar("SELECT count(*) FROM p_big WHERE issued_on < date '2000-01-01' + %s * interval '1 month'",
                       (used[BIG_SCOPE],))
    return Result("lock_unlock_size", title, unit="cycles/s", baseline_label="empty table", target=T_LOCK_SIZE,
                  note=f"each cycle locks one month and unlocks it, each in its own transaction; the windows "
                       f"covered {covered:,} rows of the large table; relocked afterwards, untimed",
                  baseline_samples=s["empty"], value_samples=s["big"])


def _header_and_lines(b: Bench, name: str, *, protected: bool) -> tuple[str, str]:
    """A header table made like bench_doc and a line table whose rows take their date from their header
    (date_column 'parent_id.issued_on') and carry their own scope; protected alike or not at all."""
    header, lines = f"p_header_{name}", f"p_lines_{name}"
    b.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(sql.Identifier(lines)))
    b.create_doc_table(header)
    b.execute(sql.SQL("CREATE TABLE {lines} (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, "
                      "parent_id bigint NOT NULL REFERENCES {header} ON DELETE CASCADE, company_id integer NOT NULL, "
                      "amount numeric(12, 2) NOT NULL)").format(lines=sql.Identifier(lines),
                                                                   header=sql.Identifier(header)))
    b.execute(sql.SQL("CREATE INDEX ON {} (parent_id)").format(sql.Identifier(lines)))
    b.grant_app(lines)
    if protected:
        b.execute("SELECT ledgerlock.protect(%s, date_column => 'parent_id.issued_on', scope_column => 'company_id')",
                  (lines,))
        for tg in audit_triggers(b, lines):
            b.execute(sql.SQL("DROP TRIGGER {} ON {}").format(sql.Identifier(tg), sql.Identifier(lines)))
    return header, lines


def parent_delete(b: Bench, f: Features) -> list[Result]:
    c = b.profile.clients
    title = f"INSERT of a header and its line, then DELETE of the header, lines dated by it ({c} clients)"
    if not f.periods:
        return [not_available("parent_delete", title, f.missing("periods"), None)]
    plain = _header_and_lines(b, "plain", protected=False)
    guarded = _header_and_lines(b, "guarded", protected=True)
    b.prepare_for_run(*plain, *guarded)
    assert_open(b, "1", BACKDATED)
    today = b.scalar("SELECT current_date::text")

    def variant(tables: tuple[str, str], day: str) -> Variant:
        return Variant(b.script("parent_delete", table=tables[0], lines=tables[1]), variables={"scope": 1, "day": day})

    s = pgbench_group(b, {"plain": variant(plain, today), "today": variant(guarded, today),
                          "backdated": variant(guarded, BACKDATED)})
    note = ("the lines' table protected without audit triggers, its date its header's; scope 1 holds one hard window "
            "(2020); the plain tables alike without ledgerlock; each transaction inserts a header and a line and "
            "deletes the header")
    return [Result("parent_delete", title, baseline_label="plain tables",
                   note=note + "; dated today, after every window: the header's guards' WHEN clauses let it by",
                   baseline_samples=s["plain"], value_samples=s["today"]),
            Result("parent_delete_backdated", f"the same, the header dated {BACKDATED} ({c} clients)",
                   baseline_label="plain tables, dated today",
                   note=note + f"; dated {BACKDATED}, an open day before the last locked day: the line's insert "
                               "check and the header's guard run in full",
                   baseline_samples=s["plain"], value_samples=s["backdated"])]


SCENARIOS = (lock_check, lock_unlock, parent_delete)
