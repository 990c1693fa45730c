"""``ledgerlock doctor``: what is still open in this database, and the command that closes it.

The checks over the catalog live in SQL (``ledgerlock.doctor_findings()``, sql/functions/doctor.sql), code
drift included: each function against the fingerprint ledgerlock recorded when it installed or generated it.
This module adds what only the installed package knows: whether the functions in schema ``ledgerlock`` are
the ones this package ships. A database superuser can rewrite a function and its recorded fingerprint
alike; they cannot edit the auditor's package.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import psycopg

from . import sqlfiles

SEVERITIES = ("critical", "warning", "info")


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


def code_drift(conn: psycopg.Connection) -> list[Finding]:
    """Code drift, by function signature: every function in schema ``ledgerlock`` against the fingerprint
    recorded when ledgerlock installed or generated it (``ledgerlock._doctor_code()``), and every shipped one
    against this package. Reads the catalog and ledgerlock's fingerprints only, so the auditor can run it;
    ``ledgerlock audit verify`` can call it as well as ``doctor``."""
    return _merge([Finding(*r) for r in conn.execute("SELECT * FROM ledgerlock._doctor_code()")],
                  _package_drift(conn))


def _merge(first: list[Finding], more: list[Finding]) -> list[Finding]:
    seen = {(f.check, f.object, f.finding) for f in first}
    return first + [f for f in more if (f.check, f.object, f.finding) not in seen]


def _package_drift(conn: psycopg.Connection) -> list[Finding]:
    """The shipped functions against this package's SQL files: body, SECURITY DEFINER, pinned settings.
    Functions generated per table or rule are judged in SQL, against what was recorded when generated; a
    table's own audit capture, a copy of a shipped function, against this package too (``_capture_drift``)."""
    if not _readable(conn, "ledgerlock.installed_code"):
        return [_not_this_version()]
    row = conn.execute("SELECT digest FROM ledgerlock.installed_code ORDER BY applied_at DESC LIMIT 1").fetchone()
    if row is None or row[0] != sqlfiles.code_digest():
        return [_not_this_version()]
    shipped = sqlfiles.shipped_functions()
    out = []
    for name, sig, md5, secdef, config in conn.execute(
        """SELECT p.proname, p.oid::regprocedure::text, md5(p.prosrc), p.prosecdef, p.proconfig
           FROM pg_catalog.pg_proc p
           WHERE p.pronamespace = 'ledgerlock'::regnamespace
             AND NOT EXISTS (SELECT FROM ledgerlock._rules() r WHERE starts_with(p.proname, r.generated_prefix))
           ORDER BY 2"""
    ):
        live = (md5, secdef, tuple(config) if config else None)
        if name not in shipped:
            out.append(Finding("warning", "function", sig, f"{sig} is not part of ledgerlock",
                               "an object in schema ledgerlock that ledgerlock did not install runs with its rights "
                               "if anything calls it", f"DROP FUNCTION {sig}  -- after checking who created it"))
        elif live not in {(f.body_md5, f.security_definer, f.config) for f in shipped[name]}:
            out.append(Finding("critical", "function", sig, f"{sig} differs from the shipped definition",
                               "a rule redefined by hand may no longer enforce what it says",
                               "ledgerlock migrate  (after DELETE FROM ledgerlock.installed_code, so that it "
                               "reinstalls the code)"))
    return out + _capture_drift(conn, shipped["audit_capture"][0])


def _capture_drift(conn: psycopg.Connection, capture: sqlfiles.ShippedFunction) -> list[Finding]:
    """Each table's own audit capture (sql/triggers/r5_audit_capture.sql) against the copy this package's
    ``audit_capture()`` makes for that table: the derivation is the shipped ``ledgerlock._ll90_derive``, which
    the check above holds to this package, fed this package's text. A superuser who rewrites a table's capture
    and its recorded fingerprint alike is still reported."""
    out = []
    for sig, live_md5, secdef, config, want_md5 in conn.execute(
        """SELECT DISTINCT p.oid::regprocedure::text, md5(p.prosrc), p.prosecdef, p.proconfig,
                  md5(ledgerlock._ll90_derive(%s, ledgerlock._ll90_values(t.tgrelid::regclass)))
           FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid
           WHERE p.pronamespace = 'ledgerlock'::regnamespace AND starts_with(p.proname, '_ll90_t')
             AND t.tgname IN ('ll_90_audit_insert', 'll_90_audit_update', 'll_90_audit_delete')
           ORDER BY 1""", (capture.body,)
    ):
        if (live_md5, secdef, tuple(config) if config else None) != (want_md5, capture.security_definer,
                                                                      capture.config):
            out.append(Finding("critical", "function", sig,
                               f"{sig} differs from the audit capture this package makes for its table",
                               "a table's capture redefined by hand may record other rows than were written",
                               "SELECT ledgerlock.reinstall_guards()  (it makes the table's capture again)"))
    return out


def _not_this_version() -> Finding:
    return Finding("warning", "code", "ledgerlock", "the installed functions are not this version's "
                   "(or cannot be read by this role)", "drift can only be judged against the same version",
                   "ledgerlock migrate  (as the installing role)")


def _readable(conn: psycopg.Connection, rel: str) -> bool:
    return bool(conn.execute("SELECT has_table_privilege(%s, 'SELECT')", (rel,)).fetchone()[0])


def findings(conn: psycopg.Connection) -> list[Finding]:
    """All findings, most severe first."""
    installed = conn.execute("SELECT to_regprocedure('ledgerlock.doctor_findings()') IS NOT NULL").fetchone()[0]
    if not installed:
        return [Finding("critical", "install", "ledgerlock", "ledgerlock (with its doctor) is not installed here",
                        "no rule is enforced", "ledgerlock migrate")]
    out = _merge([Finding(*r) for r in conn.execute("SELECT * FROM ledgerlock.doctor_findings()")],
                 _package_drift(conn))
    return sorted(out, key=lambda f: SEVERITIES.index(f.severity))


def exit_code(found: list[Finding]) -> int:
    """2 when anything is critical (a rule can be bypassed now), else 0."""
    return 2 if any(f.severity == "critical" for f in found) else 0
