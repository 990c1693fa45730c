"""``ledgerlock doctor``: what is still open in this database, and the command that closes it.

The checks over the catalog live in SQL (``ledgerlock.doctor_findings()``, sql/functions/doctor.sql). This
module adds what only the installed package knows: whether the functions in schema ``ledgerlock`` are the
ones this version ships (a function redefined by hand is reported as drifted).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import psycopg

from . import sqlfiles

SEVERITIES = ("critical", "warning", "info")

_FUNCTION = re.compile(r"CREATE\s+OR\s+REPLACE\s+FUNCTION\s+ledgerlock\.(\w+)\s*\(", re.IGNORECASE)
_BODY = re.compile(r"\bAS\s+(\$\w*\$)", re.IGNORECASE)


@dataclass(frozen=True)
class Finding:
    severity: str
    check: str
    object: str
    finding: str
    why: str
    fix: str

    def as_dict(self) -> dict:
        return asdict(self)


def shipped_function_bodies() -> dict[str, set[str]]:
    """Every ``ledgerlock.*`` function body in the shipped SQL files, by function name."""
    bodies: dict[str, set[str]] = {}
    for f in sqlfiles.code_files():
        text = f.read_text()
        for m in _FUNCTION.finditer(text):
            body = _BODY.search(text, m.end())
            if body is None:
                continue
            tag = body.group(1)
            start = body.end()
            end = text.find(tag, start)
            if end >= 0:
                bodies.setdefault(m.group(1), set()).add(text[start:end])
    return bodies


def _code_findings(conn: psycopg.Connection) -> list[Finding]:
    row = conn.execute(
        "SELECT digest FROM ledgerlock.installed_code ORDER BY applied_at DESC LIMIT 1"
    ).fetchone() if _readable(conn, "ledgerlock.installed_code") else None
    if row is None or row[0] != sqlfiles.code_digest():
        return [Finding("warning", "code", "ledgerlock", "the installed functions are not this version's "
                        "(or cannot be read by this role)", "drift can only be judged against the same version",
                        "ledgerlock migrate  (as the installing role)")]
    shipped = shipped_function_bodies()
    live = _live_generated_owners(conn)
    out = []
    for name, sig, src in conn.execute(
        "SELECT proname, oid::regprocedure::text, prosrc FROM pg_proc "
        "WHERE pronamespace = 'ledgerlock'::regnamespace ORDER BY 2"
    ):
        generated = _GENERATED.match(name)
        if generated:
            if generated.group(1) not in live:
                out.append(Finding("warning", "function", sig, f"{sig} was generated for a rule that no longer exists",
                                   "a leftover guard function is dead code with the owner's rights",
                                   "SELECT ledgerlock.reinstall_guards()  (then drop it if it stays)"))
        elif name not in shipped:
            out.append(Finding("warning", "function", sig, f"{sig} is not part of ledgerlock",
                               "an object in schema ledgerlock that ledgerlock did not install runs with its rights "
                               "if anything calls it", f"DROP FUNCTION {sig}  -- after checking who created it"))
        elif src not in shipped[name]:
            out.append(Finding("critical", "function", sig, f"{sig} differs from the shipped definition",
                               "a rule redefined by hand may no longer enforce what it says",
                               "ledgerlock migrate  (after SELECT ledgerlock.reinstall_guards() is not enough: "
                               "DELETE FROM ledgerlock.installed_code first, so migrate reinstalls the code)"))
    return out


# Installers generate per-table or per-rule trigger functions (R4: _ll30_r<rule id>_*, R2: _ll40_<table key>_*,
# the key from ledgerlock._table_key): their bodies come from templates, not from the shipped files, and
# reinstall_guards() recreates them.
_GENERATED = re.compile(r"^_ll\d{2}_([rt][0-9a-f]+)_")


def _live_generated_owners(conn: psycopg.Connection) -> set[str]:
    """The rule ids (r<id>) and protected tables (their _table_key) generated functions may belong to."""
    owners = {key for (key,) in conn.execute("SELECT ledgerlock._table_key(tbl) FROM ledgerlock.protected_table")}
    if conn.execute("SELECT to_regclass('ledgerlock.reference_rule') IS NOT NULL").fetchone()[0]:
        owners |= {f"r{rid}" for (rid,) in conn.execute("SELECT id FROM ledgerlock.reference_rule")}
    return owners


def _readable(conn: psycopg.Connection, rel: str) -> bool:
    return bool(conn.execute("SELECT has_table_privilege(%s, 'SELECT')", (rel,)).fetchone()[0])


def findings(conn: psycopg.Connection) -> list[Finding]:
    """All findings, most severe first."""
    installed = conn.execute("SELECT to_regprocedure('ledgerlock.doctor_findings()') IS NOT NULL").fetchone()[0]
    if not installed:
        return [Finding("critical", "install", "ledgerlock", "ledgerlock (with its doctor) is not installed here",
                        "no rule is enforced", "ledgerlock migrate")]
    out = [Finding(*r) for r in conn.execute("SELECT * FROM ledgerlock.doctor_findings()")]
    out += _code_findings(conn)
    return sorted(out, key=lambda f: SEVERITIES.index(f.severity))


def exit_code(found: list[Finding]) -> int:
    """2 when anything is critical (a rule can be bypassed now), else 0."""
    return 2 if any(f.severity == "critical" for f in found) else 0
