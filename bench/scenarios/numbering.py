"""R2 finalization: gapless numbers from per-series counters, against nextval() and the commit rate."""

from __future__ import annotations

from psycopg import sql

from ..harness import Bench
from ..stats import Result, Target, not_available
from ..tables import Features, protect
from .common import Variant, pgbench_group, timed_group

T_8_SERIES = Target(0.80, source="issue 4 (R2)")
T_1_SERIES = Target(0.70, source="issue 4 (R2): one counter is bounded by the commit rate")
T_STATEMENT = Target(0.50, source="issue 4 (R2)")
T_VS_FLOOR = Target(0.90, source="issue 17: single-row finalization at 0.9x of the bare-counter floor")

NOTE = "protect with number_format INV-{SCOPE}-{SEQ:5} (a series per scope), without the audit triggers"
OTHER_SERIES = 1000  # series of the many-series table that the measured writes never touch


def finalization(b: Bench, f: Features) -> list[Result]:
    c = b.profile.clients
    b.create_doc_table("f_commit")
    variants = {"commit_1": Variant(b.script("insert", table="f_commit"), variables={"scope": 1}, clients=1)}
    if f.numbering:
        for t in ("f_nextval", "f_floor", "f_floor_queued", "f_floor_settled", "f_floor_protected", "f_numbered_8",
                  "f_numbered_1", "f_numbered_many", *INDEX_FLOORS):
            b.create_doc_table(t)
        for t in ("f_floor_protected", "f_index_protected"):
            protect(b, t, audit=False)  # enforcement (R1, R3), no numbering of ledgerlock's
        b.execute("CREATE TRIGGER floor_number BEFORE INSERT ON f_floor_queued FOR EACH ROW "
                  "WHEN (NEW.status IN ('approved', 'paid')) EXECUTE FUNCTION floor_number_queued()")
        for t in INDEX_FLOORS:  # the anchor without a counter: the last number read through the table's index
            b.execute(sql.SQL('CREATE UNIQUE INDEX ON {} (number COLLATE "C")').format(sql.Identifier(t)))
            b.execute(sql.SQL(FLOOR_INDEX_FUNCTION).format(function=sql.Identifier(f"floor_index_number_{t}"),
                                                           table=sql.Identifier(t)))
            b.execute(sql.SQL("CREATE TRIGGER floor_number BEFORE INSERT ON {} FOR EACH ROW "
                              "WHEN (NEW.status IN ('approved', 'paid')) EXECUTE FUNCTION {}()")
                      .format(sql.Identifier(t), sql.Identifier(f"floor_index_number_{t}")))
        for t in ("f_numbered_8", "f_numbered_1", "f_numbered_many"):
            protect(b, t, audit=False, numbered=True)
        # a table that has numbered in many series (a series per company and year, say): one final row in
        # each of OTHER_SERIES scopes the measured writes never use
        b.execute("INSERT INTO f_numbered_many (company_id, status, issued_on, amount) "
                  "SELECT g, 'approved', CURRENT_DATE, 1 FROM generate_series(1001, 1000 + %s) g", (OTHER_SERIES,))
        for t in ("f_floor", "f_floor_settled", "f_floor_protected"):  # the bare counter; then with the proof
            b.execute(f"CREATE TRIGGER floor_number BEFORE INSERT ON {t} FOR EACH ROW "
                      "WHEN (NEW.status IN ('approved', 'paid')) EXECUTE FUNCTION floor_number()")
            if t != "f_floor":
                b.execute(f"CREATE TRIGGER floor_settle AFTER INSERT ON {t} REFERENCING NEW TABLE AS floor_new "
                          "FOR EACH STATEMENT EXECUTE FUNCTION floor_settle()")
        variants |= {
            "nextval_8": Variant(b.script("finalize_nextval", table="f_nextval"), variables={"series": 8}),
            "floor_8": Variant(b.script("finalize_insert", table="f_floor"), variables={"series": 8}),
            "floor_1": Variant(b.script("finalize_insert", table="f_floor"), variables={"series": 1}),
            "queued_8": Variant(b.script("finalize_insert", table="f_floor_queued"), variables={"series": 8}),
            "queued_1": Variant(b.script("finalize_insert", table="f_floor_queued"), variables={"series": 1}),
            "settled_8": Variant(b.script("finalize_insert", table="f_floor_settled"), variables={"series": 8}),
            "settled_1": Variant(b.script("finalize_insert", table="f_floor_settled"), variables={"series": 1}),
            "protected_8": Variant(b.script("finalize_insert", table="f_floor_protected"), variables={"series": 8}),
            "protected_1": Variant(b.script("finalize_insert", table="f_floor_protected"), variables={"series": 1}),
            "numbered_8": Variant(b.script("finalize_insert", table="f_numbered_8"), variables={"series": 8}),
            "numbered_1": Variant(b.script("finalize_insert", table="f_numbered_1"), variables={"series": 1}),
            "numbered_many": Variant(b.script("finalize_insert", table="f_numbered_many"), variables={"series": 8}),
            "index_8": Variant(b.script("finalize_insert", table="f_index"), variables={"series": 8}),
            "index_1": Variant(b.script("finalize_insert", table="f_index"), variables={"series": 1}),
            "index_protected_8": Variant(b.script("finalize_insert", table="f_index_protected"),
                                         variables={"series": 8}),
            "index_protected_1": Variant(b.script("finalize_insert", table="f_index_protected"),
                                         variables={"series": 1}),
        }
    b.prepare_for_run(*(t for t in ("f_commit", "f_nextval", "f_floor", "f_floor_queued", "f_floor_settled",
                                    "f_floor_protected",
                                    "f_numbered_8", "f_numbered_1", "f_numbered_many", *INDEX_FLOORS)
                        if b.has_relation(t)))
    s = pgbench_group(b, variants)
    out = [Result("commit_rate", "single-client commit rate (one-row INSERT, plain table)",
                  baseline_label="-", note="the ceiling of any single counter: one commit (fsync) at a time",
                  value_samples=s["commit_1"])]
    t8 = f"finalization, {c} clients on 8 series vs nextval()"
    t1 = f"finalization, {c} clients on 1 series vs single-client commit rate"
    if not f.numbering:
        return out + [not_available("finalize_8_series", t8, f.missing("numbering"), T_8_SERIES),
                      not_available("finalize_1_series", t1, f.missing("numbering"), T_1_SERIES)]
    gaps = b.scalar("SELECT count(*) FROM ledgerlock.number_gaps(NULL)")
    check = "number_gaps() empty after the runs" if gaps == 0 else f"number_gaps() reports {gaps} rows!"
    for t in INDEX_FLOORS:  # the anchor hands out gapless numbers too: each series runs 1..n, each number once
        bad = b.scalar(sql.SQL("SELECT count(*) FROM (SELECT company_id FROM {} GROUP BY company_id "
                               "HAVING max(right(number, 9)::int) <> count(DISTINCT number) "
                               "OR count(*) <> count(DISTINCT number)) s").format(sql.Identifier(t)))
        if bad:
            b.note(f"{t}: {bad} series are not numbered 1..n!")
    return out + [
        Result("finalize_8_series", t8, baseline_label="nextval() per series", target=T_8_SERIES,
               note=f"{NOTE}; {check}", baseline_samples=s["nextval_8"], value_samples=s["numbered_8"]),
        Result("finalize_1_series", t1, baseline_label="1-client commit rate", target=T_1_SERIES,
               note=f"{NOTE}; {check}", baseline_samples=s["commit_1"], value_samples=s["numbered_1"]),
        Result("finalize_8_series_many", f"finalization, {c} clients on 8 series of a table with {OTHER_SERIES:,} "
               "more", baseline_label="same, 8 series in all",
               note=f"{NOTE}; the same writes as finalize_8_series into a table holding {OTHER_SERIES:,} other "
                    "series: what the series a write does not touch cost it",
               baseline_samples=s["numbered_8"], value_samples=s["numbered_many"]),
        Result("counter_floor_8_series", f"the floor: a bare counter trigger, {c} clients on 8 series vs nextval()",
               baseline_label="nextval() per series",
               note="a BEFORE trigger that only takes the next value of a per-series counter row (bench/sql/"
                    "setup.sql): the least any same-transaction gapless numbering pays, for reading "
                    "finalize_8_series", baseline_samples=s["nextval_8"], value_samples=s["floor_8"]),
        Result("counter_floor_1_series", f"the floor: a bare counter trigger, {c} clients on 1 series vs "
               "single-client commit rate", baseline_label="1-client commit rate",
               note="the same bare counter trigger, every client on one counter: for reading finalize_1_series",
               baseline_samples=s["commit_1"], value_samples=s["floor_1"]),
        Result("queued_floor_8_series", f"the bare counter behind a series lock, {c} clients on 8 series",
               baseline_label="the bare counter floor",
               note="the bare counter trigger after locking a row of a line table that nobody updates, until commit "
                    "(floor_number_queued in bench/sql/setup.sql): finalizers of a series wait in line there, not on "
                    "the counter's row; what the line ledgerlock waits in for a transaction's first counter gains or "
                    "costs",
               baseline_samples=s["floor_8"], value_samples=s["queued_8"]),
        Result("queued_floor_1_series", f"the bare counter behind a series lock, {c} clients on 1 series",
               baseline_label="the bare counter floor",
               note="as queued_floor_8_series, every client on one series: where the line matters",
               baseline_samples=s["floor_1"], value_samples=s["queued_1"]),
        Result("settled_floor_8_series", f"the floor of a proven BEFORE-trigger numbering, {c} clients on 8 series",
               baseline_label="the bare counter floor",
               note="the bare counter trigger plus an empty-handed statement-level proof (floor_settle in bench/sql/"
                    "setup.sql: a hardened statement trigger reading the transition table once), which a number "
                    "taken in a BEFORE row trigger needs because INSERT ... ON CONFLICT DO NOTHING can skip the "
                    "row afterwards: the share of the bare floor any design of this family can reach",
               baseline_samples=s["floor_8"], value_samples=s["settled_8"]),
        Result("settled_floor_1_series", f"the floor of a proven BEFORE-trigger numbering, {c} clients on 1 series",
               baseline_label="the bare counter floor", note="as settled_floor_8_series, every client on one counter",
               baseline_samples=s["floor_1"], value_samples=s["settled_1"]),
        Result("protected_floor_8_series", f"the floor of a proven numbering on a protected table, {c} clients on 8 "
               "series", baseline_label="the bare counter floor",
               note="the proven floor above on a table protected like ledgerlock's numbered one but without its "
                    "numbering (R1 and R3 enforcement, no audit): the least a finalization that is both enforced "
                    "and proven pays; where it is below 0.9x of the bare floor, so is issue 17's target",
               baseline_samples=s["floor_8"], value_samples=s["protected_8"]),
        Result("protected_floor_1_series", f"the floor of a proven numbering on a protected table, {c} clients on 1 "
               "series", baseline_label="the bare counter floor", note="as protected_floor_8_series, one counter",
               baseline_samples=s["floor_1"], value_samples=s["protected_1"]),
        Result("index_floor_8_series", f"the counterless anchor's floor, {c} clients on 8 series",
               baseline_label="the bare counter floor",
               note="a BEFORE trigger that locks the series' row of a line table until commit (as queued_floor_*; an "
                    "advisory lock would let any role stall a series) and reads its last number through a unique "
                    "index of the table (floor_index_number_* in bench/scenarios/numbering.py; Odoo's shape): no "
                    "counter row, so no write beside the row's and no proof; the index is the design's cost, kept on "
                    "every INSERT",
               baseline_samples=s["floor_8"], value_samples=s["index_8"]),
        Result("index_floor_1_series", f"the counterless anchor's floor, {c} clients on 1 series",
               baseline_label="the bare counter floor", note="as index_floor_8_series, every client on one series",
               baseline_samples=s["floor_1"], value_samples=s["index_1"]),
        Result("index_protected_floor_8_series", f"the counterless anchor's floor on a protected table, {c} clients "
               "on 8 series", baseline_label="the bare counter floor",
               note="index_floor_8_series's trigger on a table protected like the numbered one (R1 and R3 "
                    "enforcement, no audit): the least a counterless finalization that is enforced pays",
               baseline_samples=s["floor_8"], value_samples=s["index_protected_8"]),
        Result("index_protected_floor_1_series", f"the counterless anchor's floor on a protected table, {c} clients "
               "on 1 series", baseline_label="the bare counter floor",
               note="as index_protected_floor_8_series, every client on one series",
               baseline_samples=s["floor_1"], value_samples=s["index_protected_1"]),
        Result("finalize_8_series_vs_floor", f"finalization, {c} clients on 8 series vs the bare counter floor",
               baseline_label="the bare counter floor", target=T_VS_FLOOR,
               note="issue 17's measure: ledgerlock's finalization against the floor measured in the same run",
               baseline_samples=s["floor_8"], value_samples=s["numbered_8"]),
        Result("finalize_1_series_vs_floor", f"finalization, {c} clients on 1 series vs the bare counter floor",
               baseline_label="the bare counter floor", target=T_VS_FLOOR,
               note="issue 17's measure: ledgerlock's finalization against the floor measured in the same run",
               baseline_samples=s["floor_1"], value_samples=s["numbered_1"]),
    ]


def finalize_statement(b: Bench, f: Features) -> Result:
    n = b.profile.bulk_rows
    title = f"finalize {n:,} rows in one UPDATE"
    if not f.numbering:
        return not_available("finalize_statement", title, f.missing("numbering"), T_STATEMENT, unit="rows/s")
    counter = {"round": 0}
    b.execute(FLOOR_STATEMENT_FUNCTION)

    def variant(numbered: bool, floor: bool = False, index: bool = False):
        def run() -> float:
            counter["round"] += 1
            kind = "numbered" if numbered else "floor" if floor else "index" if index else "plain"
            table = f"f_stmt_{kind}_{counter['round']}"
            b.create_doc_table(table, rows=n)
            if numbered:
                protect(b, table, audit=False, numbered=True)
            if floor or index:
                function = sql.Identifier("floor_statement_number" if floor else f"floor_index_number_{table}")
                if index:
                    b.execute(sql.SQL('CREATE UNIQUE INDEX ON {} (number COLLATE "C")').format(sql.Identifier(table)))
                    b.execute(sql.SQL(FLOOR_INDEX_FUNCTION).format(function=function, table=sql.Identifier(table)))
                b.execute(sql.SQL("CREATE TRIGGER floor_statement_number BEFORE UPDATE ON {} FOR EACH ROW "
                                  "WHEN (NEW.status IN ('approved', 'paid') "
                                  "AND OLD.status NOT IN ('approved', 'paid')) "
                                  "EXECUTE FUNCTION {}()").format(sql.Identifier(table), function))
            b.prepare_for_run(table)
            seconds = b.timed(sql.SQL("UPDATE {} SET status = 'approved'").format(sql.Identifier(table)),
                              role="app")
            if numbered or index:
                numbered_rows = b.scalar(sql.SQL("SELECT count(DISTINCT number) FROM {} WHERE number LIKE 'INV-%%'")
                                         .format(sql.Identifier(table)))
                if numbered_rows != n:
                    b.note(f"{table}: {numbered_rows} distinct final numbers for {n} rows")
            if index:
                b.execute(sql.SQL("DROP FUNCTION {}() CASCADE").format(function))
            b.drop_table(table)
            return n / seconds
        return run

    s = timed_group(b, {"plain": variant(False), "floor": variant(False, floor=True), "numbered": variant(True),
                        "index": variant(False, index=True)})
    return [
        Result("finalize_statement", title, unit="rows/s", target=T_STATEMENT,
               note="the same UPDATE ... SET status = 'approved' on an identical unprotected table; " + NOTE,
               baseline_samples=s["plain"], value_samples=s["numbered"]),
        Result("statement_floor", f"the floor: a bare PL/pgSQL numbering row trigger, {n:,} rows in one UPDATE",
               unit="rows/s", baseline_label="plain table",
               note="a BEFORE row trigger that only reads a transaction-local position, writes it back and "
                    "formats the number (no counter row, no proof): the least a row trigger in PL/pgSQL that "
                    "numbers a statement's rows pays, for reading finalize_statement",
               baseline_samples=s["plain"], value_samples=s["floor"]),
        Result("index_statement_floor", f"the counterless anchor's floor, {n:,} rows in one UPDATE",
               unit="rows/s", baseline_label="plain table",
               note="index_floor_8_series's trigger (the series' lock, the last number read through the table's "
                    "unique index) numbering every row of the statement: what the counterless anchor pays for a "
                    "statement, where each row reads the number the row before it wrote",
               baseline_samples=s["plain"], value_samples=s["index"]),
    ]


# The statement floor's row trigger: per row, what any PL/pgSQL numbering of a statement's rows must do at
# least (keep its position between rows, format the number), and nothing else.
FLOOR_STATEMENT_FUNCTION = """
CREATE OR REPLACE FUNCTION floor_statement_number() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
DECLARE
    n bigint := coalesce(nullif(current_setting('bench.floor_position', true), ''), '0')::bigint + 1;
BEGIN
    PERFORM set_config('bench.floor_position', n::text, true);
    NEW.number := 'INV-' || NEW.company_id || '-' || lpad(n::text, 5, '0');
    RETURN NEW;
END
$$"""


# The counterless anchor (Odoo's shape): per series, a lock held until commit (the row of floor_queue that
# floor_number_queued locks: no client may take it, unlike an advisory lock), then the last number read through
# the table's unique index (nine digits: numbers of one series sort as text). Rows written before by the same
# statement are visible to a BEFORE row trigger's query, and the lock is released after the commit is
# visible, so READ COMMITTED never reads a stale last number. A row skipped after the trigger (ON CONFLICT DO
# NOTHING) leaves no gap: nothing was taken that the table does not show.
INDEX_FLOORS = ("f_index", "f_index_protected")
FLOOR_INDEX_FUNCTION = """
CREATE FUNCTION {function}() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    this_series text := 'INV-' || NEW.company_id || '-';
    last_number text;
BEGIN
    PERFORM FROM public.floor_queue q WHERE q.slot = hashtext(this_series) & 4095 FOR UPDATE;
    SELECT d.number INTO last_number FROM {table} d
    WHERE d.number COLLATE "C" > this_series AND d.number COLLATE "C" < this_series || '~'
    ORDER BY d.number COLLATE "C" DESC LIMIT 1;
    NEW.number := this_series || lpad((coalesce(right(last_number, 9)::bigint, 0) + 1)::text, 9, '0');
    RETURN NEW;
END
$$"""


SCENARIOS = (finalization, finalize_statement)
