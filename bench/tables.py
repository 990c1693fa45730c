"""What the tree provides (each rule detected by its SQL API) and how the bench protects its tables.

Every scenario asks ``features`` first and reports "not available" for a rule whose API is not installed,
so the bench runs on any state of the tree.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from .harness import Bench

FINAL_WHEN = "status in ('approved','paid')"
NUMBER_FORMAT = "INV-{SCOPE}-{SEQ:5}"
LOCKED_YEAR = ("2020-01-01", "2020-12-31")  # every scope the writes use has this hard-locked window
# An open day before the last locked day: a write dated so must be checked against the windows (dates after
# every window may be let through by a cheaper filter). Outside the 2020 window of scopes 1-8, and a gap
# between two one-day windows of the crowded scope (windows every other day back from 2020-12-31).
BACKDATED = "2019-12-30"

SIGNATURES = {
    "periods": "ledgerlock.lock_period(text,date,date,text,text,text,text[],boolean)",
    "unlock": "ledgerlock.unlock_period(bigint,text)",
    "numbering": "ledgerlock.number_gaps(regclass)",
    "referential": "ledgerlock.protect_referenced(regclass,regclass,name[],text,text[])",
    "verify": "ledgerlock.verify_audit(text)",
    "digest": "ledgerlock.audit_digest()",
}


@dataclass
class Features:
    periods: bool
    numbering: bool
    referential: bool
    audit: bool

    def missing(self, rule: str) -> str:
        return {
            "periods": f"R3 period locks are not in this tree ({SIGNATURES['periods']} does not exist)",
            "numbering": f"R2 numbering is not in this tree ({SIGNATURES['numbering']} does not exist)",
            "referential": f"R4 referential locks are not in this tree ({SIGNATURES['referential']} does not exist)",
            "audit": "R5 audit is not in this tree (ledgerlock.audit_log / verify_audit(text) do not exist)",
        }[rule]


def detect(b: Bench) -> Features:
    return Features(
        periods=b.has_function(SIGNATURES["periods"]) and b.has_function(SIGNATURES["unlock"]),
        numbering=b.has_function(SIGNATURES["numbering"]),
        referential=b.has_function(SIGNATURES["referential"]),
        audit=b.has_relation("ledgerlock.audit_log") and b.has_function(SIGNATURES["verify"]),
    )


def audit_triggers(b: Bench, table: str) -> list[str]:
    return [r[0] for r in b.execute(
        "SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass AND tgname LIKE 'll\\_90\\_%%' "
        "AND NOT tgisinternal ORDER BY 1", (table,)).fetchall()]


def protect(b: Bench, table: str, *, audit: bool, numbered: bool = False) -> None:
    """Protect a bench table the way an ERP's invoices are: final once approved or paid, ``paid`` mutable,
    scoped by company, dated by issued_on; numbered when asked. ``audit=False`` measures enforcement alone:
    the audit capture triggers (ll_90_*) are removed from this scratch table after protect."""
    args = {
        "date_column": "issued_on",
        "scope_column": "company_id",
        "final_when": FINAL_WHEN,
        "mutable_columns": ["paid"],
    }
    if numbered:
        args |= {"number_column": "number", "number_format": NUMBER_FORMAT}
    stmt = sql.SQL("SELECT ledgerlock.protect({}, {})").format(
        sql.Literal(table),
        sql.SQL(", ").join(sql.SQL("{} => {}").format(sql.Identifier(k), sql.Placeholder()) for k in args))
    b.execute(stmt, list(args.values()))
    if not audit:
        for tg in audit_triggers(b, table):
            b.execute(sql.SQL("DROP TRIGGER {} ON {}").format(sql.Identifier(tg), sql.Identifier(table)))


def naive_audit(b: Bench, table: str) -> None:
    b.execute(sql.SQL("CREATE TRIGGER naive_audit AFTER INSERT OR UPDATE OR DELETE ON {} "
                      "FOR EACH ROW EXECUTE FUNCTION naive_audit()").format(sql.Identifier(table)))


def naive_period_check(b: Bench, table: str) -> None:
    b.execute(sql.SQL("CREATE TRIGGER naive_period_check BEFORE INSERT OR UPDATE ON {} "
                      "FOR EACH ROW EXECUTE FUNCTION naive_period_check()").format(sql.Identifier(table)))


def lock_window(b: Bench, scope: str, from_date: str, to_date: str, level: str = "hard") -> int:
    return b.scalar("SELECT ledgerlock.lock_period(%s, %s::date, %s::date, %s)", (scope, from_date, to_date, level))


def assert_open(b: Bench, scope: str, day: str) -> None:
    """A write dated ``day`` in ``scope`` must be allowed, or the scenario measures refusals."""
    if b.has_function("ledgerlock.period_lock_at(text,date,text)"):
        hit = b.execute("SELECT * FROM ledgerlock.period_lock_at(%s, %s::date)", (scope, day)).fetchall()
        if hit:
            raise RuntimeError(f"{day} is locked in scope {scope}: {hit[0]}")


def lock_write_scopes(b: Bench, scopes=range(1, 9)) -> None:
    """One hard-locked window (the year 2020) in each scope the writes use, so that the check finds a
    window to compare against (an empty lock table would flatter it)."""
    for s in scopes:
        lock_window(b, str(s), *LOCKED_YEAR)
