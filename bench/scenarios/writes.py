"""Single-row INSERT and UPDATE, with enforcement only and with audit, against a plain table and against
the naive baselines; bulk INSERT ... SELECT."""

from __future__ import annotations

from psycopg import sql

from ..harness import Bench
from ..stats import Result, Target, not_available
from ..tables import BACKDATED, FINAL_WHEN, LOCKED_YEAR, Features, assert_open, naive_audit, naive_period_check, protect
from .common import Variant, pgbench_group, timed_group

T_INSERT_ENFORCED = Target(0.90, source="issue 5 (R3)", goal=0.95)
T_ENFORCED_ONLY = Target(0.95, source="issue 17: enforcement only")
T_BULK_ENFORCED = Target(0.85, source="issue 5 (R3)")
T_WRITE_AUDITED = Target(0.80, source="issue 6 (R5)")
T_AUDIT_VS_NAIVE = Target(1.0, source="issue 6 (R5): faster than the naive trigger")


def _enforced_note(f: Features) -> str:
    rules = ["R1 final rows"] + (["R3 period check"] if f.periods else [])
    return "enforcement = " + " + ".join(rules) + " (protect without the audit triggers)"


def _setup_tables(b: Bench, prefix: str, f: Features, rows: int) -> dict[str, str]:
    names = {v: f"{prefix}_{v}"
             for v in ("plain", "enforced", "when_floor", "when_floor_2", "audited", "audit_floor", "naive_audit",
                       "naive_lock")}
    if not f.audit:
        del names["audited"]
    if prefix == "w_insert":
        names["check_floor"] = f"{prefix}_check_floor"
        names["probe_floor"] = f"{prefix}_probe_floor"
    else:
        names["rules_when_floor"] = f"{prefix}_rules_when_floor"
    for variant, table in names.items():
        b.create_doc_table(table, rows=rows)
        if variant == "enforced":
            protect(b, table, audit=False)
        elif variant == "audit_floor":
            protect(b, table, audit=False)
            b.execute(sql.SQL("CREATE TRIGGER floor_audit AFTER INSERT OR UPDATE OR DELETE ON {} "
                              "FOR EACH ROW EXECUTE FUNCTION floor_audit()").format(sql.Identifier(table)))
        elif variant == "audited":
            protect(b, table, audit=True)
        elif variant == "naive_audit":
            naive_audit(b, table)
        elif variant == "naive_lock":
            naive_period_check(b, table)
        elif variant in ("when_floor", "when_floor_2"):
            # the least any trigger-made rule costs a write it lets by: one row trigger whose WHEN is false;
            # when_floor_2 adds a BEFORE one, as enforcement has (R1 and R3 on UPDATE, R3's skip and check on
            # INSERT)
            b.execute(sql.SQL("CREATE TRIGGER floor_when AFTER INSERT OR UPDATE ON {} FOR EACH ROW "
                              "WHEN (NEW.issued_on < date '1900-01-01') EXECUTE FUNCTION floor_check()")
                      .format(sql.Identifier(table)))
            if variant == "when_floor_2":
                b.execute(sql.SQL("CREATE TRIGGER floor_when_before BEFORE INSERT OR UPDATE ON {} FOR EACH ROW "
                                  "WHEN (NEW.issued_on < date '1900-01-01') EXECUTE FUNCTION floor_before()")
                          .format(sql.Identifier(table)))
        elif variant == "rules_when_floor":
            # what R1 and R3 must test of every UPDATE, whatever their triggers: was the row final, and does its
            # old or new date reach the locked windows; in one trigger, false for the row (a draft dated today)
            b.execute(sql.SQL("CREATE TRIGGER floor_rules_when AFTER UPDATE ON {table} FOR EACH ROW WHEN "
                              "({final} OR OLD.issued_on <= {mark}::date OR NEW.issued_on <= {mark}::date) "
                              "EXECUTE FUNCTION floor_check()")
                      .format(table=sql.Identifier(table), final=sql.SQL(FINAL_WHEN.replace("status", "OLD.status")),
                              mark=sql.Literal(LOCKED_YEAR[1])))
        elif variant == "check_floor":
            b.execute(sql.SQL("CREATE TRIGGER floor_check AFTER INSERT OR UPDATE OR DELETE ON {} "
                              "FOR EACH ROW EXECUTE FUNCTION floor_check()").format(sql.Identifier(table)))
        elif variant == "probe_floor":
            b.execute(sql.SQL("CREATE TRIGGER floor_check_probe AFTER INSERT ON {} "
                              "FOR EACH ROW EXECUTE FUNCTION floor_check_probe()").format(sql.Identifier(table)))
    b.prepare_for_run(*names.values())
    return names


UNLOCKED_SCOPE = 777


def _with_unlocked_window_elsewhere(b: Bench, audited: Variant) -> Variant:
    """The audited variant, run while one window of an unrelated scope is unlocked (an admin reopened a
    month somewhere to fix something): a state every database meets, and one the capture may react to."""
    state = {"month": 0, "lock": None}

    def before() -> None:
        month = state["month"]
        state["month"] += 1
        lock_id = b.scalar("SELECT ledgerlock.lock_period(%s, d, (d + interval '1 month - 1 day')::date, 'soft') "
                           "FROM (SELECT (date '2010-01-01' + %s * interval '1 month')::date AS d) m",
                           (str(UNLOCKED_SCOPE), month))
        b.execute("SELECT ledgerlock.unlock_period(%s, 'bench: a month reopened elsewhere')", (lock_id,))
        state["lock"] = lock_id

    def after() -> None:
        b.execute("SELECT ledgerlock.relock(%s)", (state["lock"],))

    return Variant(audited.script, tables=audited.tables, variables=audited.variables, before=before, after=after)


def _single_row(b: Bench, f: Features, verb: str) -> list[Result]:
    rows = b.profile.prefill_rows if verb == "update" else 0
    tables = _setup_tables(b, f"w_{verb}", f, rows)
    script = "insert" if verb == "insert" else "update"
    variants = {
        v: Variant(b.script(script, table=t), tables=(t,), variables={"scope": 1, "rows": rows})
        for v, t in tables.items()
    }
    if verb == "insert" and f.periods:
        assert_open(b, "1", BACKDATED)
        variants["enforced_backdated"] = Variant(b.script("insert_dated", table=tables["enforced"]),
                                                 variables={"scope": 1, "day": BACKDATED})
    if "probe_floor" in tables:
        variants["probe_floor"] = Variant(b.script("insert_dated", table=tables["probe_floor"]),
                                          tables=(tables["probe_floor"],), variables={"scope": 1, "day": BACKDATED})
    if verb == "insert" and f.audit and f.periods:
        variants["audited_unlocked"] = _with_unlocked_window_elsewhere(b, variants["audited"])
    s = pgbench_group(b, variants)
    c = b.profile.clients
    verb_up = verb.upper()
    out = []
    enforced = Result(f"{verb}_enforced", f"single-row {verb_up}, enforcement only ({c} clients)",
                      target=T_ENFORCED_ONLY, note=_enforced_note(f),
                      baseline_samples=s["plain"], value_samples=s["enforced"])
    if verb == "insert" and not f.periods:
        enforced.status = "not available"
        enforced.note = f.missing("periods") + "; measured: R1 only, whose guards do not fire on INSERT"
    out.append(enforced)
    out.append(Result(f"{verb}_when_floor", f"single-row {verb_up}: the floor of a rule that lets the write by",
                      note="a plain table with one AFTER ROW trigger whose WHEN clause is false for the row "
                           "(floor_when): PostgreSQL prepares a trigger's WHEN for every statement that fires it, "
                           f"so no trigger-made rule costs less; for reading {verb}_enforced, which needs two "
                           "(R1 and R3 on UPDATE, R3's skip and check on INSERT)",
                      baseline_samples=s["plain"], value_samples=s["when_floor"]))
    out.append(Result(f"{verb}_two_when_floor",
                      f"single-row {verb_up}: the floor of enforcement's two triggers that let the write by",
                      note="a plain table with a BEFORE and an AFTER ROW trigger whose WHEN clauses are false for "
                           f"the row (floor_when_before, floor_when): the least {verb}_enforced can cost with the "
                           "two triggers each rule path has",
                      baseline_samples=s["plain"], value_samples=s["when_floor_2"]))
    if "rules_when_floor" in s:
        out.append(Result(f"{verb}_rules_when_floor",
                          f"single-row {verb_up}: the floor of R1's and R3's tests in one trigger",
                          note="a plain table with one AFTER ROW trigger whose WHEN holds what R1 and R3 must test "
                               "of every UPDATE (the old row final, the old or the new date on or before the last "
                               "locked day), false for the row (floor_rules_when): the least update_enforced can "
                               "cost with its rules made by triggers, however they are arranged",
                          baseline_samples=s["plain"], value_samples=s["rules_when_floor"]))
    if "enforced_backdated" in s:
        out.append(Result(f"{verb}_enforced_backdated", f"single-row {verb_up}, enforcement only, dated {BACKDATED}",
                          target=T_INSERT_ENFORCED,
                          note="an open day before the last locked day (2020-12-31): the period check runs in full; "
                               "rows dated after every window (insert_enforced, dated today) may skip it",
                          baseline_samples=s["plain"], value_samples=s["enforced_backdated"]))
    if "check_floor" in s:
        out.append(Result(f"{verb}_check_floor", f"single-row {verb_up}: the floor of a period check that runs",
                          note="a plain table with an AFTER ROW trigger calling an empty SECURITY DEFINER function "
                               "with a pinned search_path (floor_check in bench/sql/setup.sql): the least a check "
                               f"made by a hardened trigger costs; for reading {verb}_enforced_backdated",
                          baseline_samples=s["plain"], value_samples=s["check_floor"]))
    if "probe_floor" in s:
        out.append(Result(f"{verb}_probe_floor",
                          f"single-row {verb_up}: the floor of a period check that reads the windows",
                          note=f"{verb}_check_floor's trigger plus one backward index probe of a table of windows "
                               "(floor_check_probe in bench/sql/setup.sql), dated like "
                               f"{verb}_enforced_backdated: the least a check that looks the row's windows up "
                               "costs, before anything that makes the lookup safe against a concurrent lock",
                          baseline_samples=s["plain"], value_samples=s["probe_floor"]))
    if f.audit:
        out.append(Result(f"{verb}_audited", f"single-row {verb_up} with audit ({c} clients)",
                          target=T_WRITE_AUDITED, note="enforcement + audit capture (full protect)",
                          baseline_samples=s["plain"], value_samples=s["audited"]))
        out.append(Result(f"{verb}_audited_vs_naive", f"single-row {verb_up}: ledgerlock audit vs naive trigger",
                          baseline_label="naive to_jsonb trigger", target=T_AUDIT_VS_NAIVE,
                          note="baseline: AFTER ROW trigger inserting to_jsonb(OLD/NEW) into one table",
                          baseline_samples=s["naive_audit"], value_samples=s["audited"]))
    else:
        out.append(not_available(f"{verb}_audited", f"single-row {verb_up} with audit ({c} clients)",
                                 f.missing("audit"), T_WRITE_AUDITED))
        out.append(not_available(f"{verb}_audited_vs_naive",
                                 f"single-row {verb_up}: ledgerlock audit vs naive trigger",
                                 f.missing("audit"), T_AUDIT_VS_NAIVE))
    if "audited_unlocked" in s:
        out.append(Result(f"{verb}_audited_unlocked_elsewhere",
                          f"single-row {verb_up} with audit while a window of another scope is unlocked",
                          baseline_label="same, no window unlocked",
                          note=f"scope {UNLOCKED_SCOPE} (which these writes never touch) has one unlocked window "
                               "during this variant's runs; relocked after each run",
                          baseline_samples=s["audited"], value_samples=s["audited_unlocked"]))
    out.append(Result(f"{verb}_audit_floor", f"single-row {verb_up}: the floor of a tamper-evident audit write",
                      note="enforcement + a bare row trigger storing one unhashed event like ledgerlock's (floor_audit "
                           "in bench/sql/setup.sql): the least an audited write costs; for reading "
                           f"{verb}_audited",
                      baseline_samples=s["plain"], value_samples=s["audit_floor"]))
    out.append(Result(f"{verb}_audit_floor_vs_naive", f"single-row {verb_up}: the audit floor vs the naive trigger",
                      baseline_label="naive to_jsonb trigger",
                      note=f"for reading {verb}_audited_vs_naive: the floor does everything the naive trigger does, "
                           "and indexes its event by key and transaction, and runs the checks",
                      baseline_samples=s["naive_audit"], value_samples=s["audit_floor"]))
    out.append(Result(f"{verb}_naive_audit", f"single-row {verb_up}, naive to_jsonb audit trigger (reference)",
                      note="what the naive audit costs against a plain table",
                      baseline_samples=s["plain"], value_samples=s["naive_audit"]))
    out.append(Result(f"{verb}_enforced_vs_naive_lock",
                      f"single-row {verb_up}: ledgerlock enforcement vs naive FOR SHARE lock check",
                      baseline_label="naive FOR SHARE check",
                      note="baseline: BEFORE ROW trigger reading the company's lock date FOR SHARE",
                      baseline_samples=s["naive_lock"], value_samples=s["enforced"]))
    return out


def bulk_insert(b: Bench, f: Features) -> list[Result]:
    n = b.profile.bulk_rows
    kinds = ["plain", "enforced"] + (["audited"] if f.audit else [])
    stmt = ("INSERT INTO {} (company_id, issued_on, amount, note) "
            "SELECT 1, current_date, (g %% 1000)::numeric, 'bulk' FROM generate_series(1, %s) g")
    counter = {"round": 0}

    def variant(kind: str):
        def run() -> float:
            counter["round"] += 1
            table = f"w_bulk_{kind}_{counter['round']}"
            b.create_doc_table(table)
            if kind != "plain":
                protect(b, table, audit=kind == "audited")
            b.execute("CHECKPOINT")
            seconds = b.timed(sql.SQL(stmt).format(sql.Identifier(table)), (n,), role="app")
            b.drop_table(table)
            return n / seconds
        return run

    s = timed_group(b, {k: variant(k) for k in kinds})
    out = [Result("bulk_insert_enforced", f"bulk INSERT ... SELECT of {n:,} rows, enforcement only",
                  unit="rows/s", target=T_BULK_ENFORCED, note=_enforced_note(f),
                  baseline_samples=s["plain"], value_samples=s["enforced"])]
    if not f.periods:
        out[0].status = "not available"
        out[0].note = f.missing("periods") + "; measured: R1 only"
    if f.audit:
        out.append(Result("bulk_insert_audited", f"bulk INSERT ... SELECT of {n:,} rows with audit",
                          unit="rows/s", baseline_samples=s["plain"], value_samples=s["audited"],
                          note="no target in the issues; for context"))
    return out


def single_row_insert(b: Bench, f: Features) -> list[Result]:
    return _single_row(b, f, "insert")


def single_row_update(b: Bench, f: Features) -> list[Result]:
    return _single_row(b, f, "update")


SCENARIOS = (single_row_insert, single_row_update, bulk_insert)
