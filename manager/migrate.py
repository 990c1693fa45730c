"""Installing and upgrading ledgerlock in a database.

``migrate`` applies the yoyo migrations (tables, roles, views) that are pending, then installs the
functions and triggers when their text differs from what the database has (recorded by digest in
``ledgerlock.installed_code``), and finally re-runs every rule installer on the protected tables so their
guard triggers match the installed code. A second run changes nothing and says so.
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import psycopg
from yoyo import get_backend, read_migrations

from . import __version__, sqlfiles


@dataclass
class MigrationReport:
    applied: list[str] = field(default_factory=list)
    code_installed: bool = False
    guards_reinstalled: int = 0
    restored_tables: list[str] = field(default_factory=list)  # guards installed again after a restore

    @property
    def changed(self) -> bool:
        return bool(self.applied or self.code_installed or self.restored_tables)


@dataclass
class Status:
    installed_version: str | None
    code_current: bool
    applied: list[str]
    pending: list[str]
    protected_tables: list[dict]


def _yoyo_uri(conninfo: str) -> str:
    params = {k: v for k, v in psycopg.conninfo.conninfo_to_dict(conninfo).items() if v is not None}
    params["schema"] = "ledgerlock"
    return "postgresql+psycopg://?" + urlencode(params)


@contextlib.contextmanager
def _migrations():
    """yoyo reads migrations from a directory; copy them out of the package (it may be a zip)."""
    with tempfile.TemporaryDirectory(prefix="ledgerlock-migrations-") as tmp:
        for f in sqlfiles.migration_files():
            Path(tmp, f.name).write_text(f.read_text())
        yield read_migrations(tmp)


def _ensure_schema(conn: psycopg.Connection) -> None:
    conn.execute("CREATE SCHEMA IF NOT EXISTS ledgerlock")


def _adopt_script_install(conninfo: str, backend, migrations) -> None:
    """A database installed with `ledgerlock sql` has migrations yoyo never saw: mark them applied."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('ledgerlock.installed_migration')").fetchone()[0] is None:
            return
        have = {r[0] for r in conn.execute("SELECT id FROM ledgerlock.installed_migration")}
    known = [m for m in backend.to_apply(migrations) if m.id in have]
    if known:
        backend.mark_migrations(known)


def migrate(conninfo: str) -> MigrationReport:
    report = MigrationReport()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        _ensure_schema(conn)
    backend = get_backend(_yoyo_uri(conninfo))
    try:
        with _migrations() as migrations, backend.lock():
            _adopt_script_install(conninfo, backend, migrations)
            pending = backend.to_apply(migrations)
            backend.apply_migrations(pending)
            report.applied = [m.id for m in pending]
    finally:
        with contextlib.suppress(Exception):
            backend.connection.close()

    digest = sqlfiles.code_digest()
    with psycopg.connect(conninfo) as conn:  # one transaction: code and guards move together
        # one installer at a time; a table lock, because any client could take an advisory key and stall it
        conn.execute("LOCK TABLE ledgerlock.installed_code IN SHARE ROW EXCLUSIVE MODE")
        conn.cursor().executemany(
            "INSERT INTO ledgerlock.installed_migration (id, via) VALUES (%s, 'migrate') ON CONFLICT DO NOTHING",
            [(m,) for m in report.applied],
        )
        have = conn.execute("SELECT 1 FROM ledgerlock.installed_code WHERE digest = %s", (digest,)).fetchone()
        if have is None or report.applied:
            conn.execute(sqlfiles.code_script())
            conn.execute(
                "INSERT INTO ledgerlock.installed_code (digest, version) VALUES (%s, %s) "
                "ON CONFLICT (digest) DO UPDATE SET applied_at = now(), applied_by = session_user",
                (digest, __version__),
            )
            report.code_installed = True
            report.guards_reinstalled = conn.execute(
                "SELECT count(*) FROM ledgerlock.protected_table"
            ).fetchone()[0]
            conn.execute("SELECT ledgerlock.reinstall_guards()")
        else:
            # a database restored from a dump: its tables have new oids, which guards may carry
            report.restored_tables = [r[0] for r in conn.execute("SELECT t::text FROM ledgerlock._restored_tables() t")]
            if report.restored_tables:
                report.guards_reinstalled = conn.execute("SELECT ledgerlock.reinstall_guards()").fetchone()[0]
    return report


def status(conninfo: str) -> Status:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        installed = conn.execute("SELECT to_regclass('ledgerlock.installed_code') IS NOT NULL").fetchone()[0]
        if not installed:
            names = [f.name.removesuffix(".sql") for f in sqlfiles.migration_files()]
            return Status(None, False, [], names, [])
        row = conn.execute(
            "SELECT version, digest FROM ledgerlock.installed_code ORDER BY applied_at DESC LIMIT 1"
        ).fetchone()
        tables = conn.execute(
            """SELECT tbl::text AS "table", date_column, scope_column, final_when, number_column,
                      number_format, mutable_columns::text[] AS mutable_columns, ledger
               FROM ledgerlock.protected_table ORDER BY 1"""
        ).fetchall()
        cols = ["table", "date_column", "scope_column", "final_when", "number_column", "number_format",
                "mutable_columns", "ledger"]
        protected = [dict(zip(cols, t, strict=True)) for t in tables]
    try:
        applied, pending = _yoyo_status(conninfo)
    except psycopg.errors.InsufficientPrivilege:  # an admin or auditor: yoyo's own tables are the owner's
        applied, pending = _recorded_status(conninfo)
    return Status(
        installed_version=row[0] if row else None,
        code_current=bool(row) and row[1] == sqlfiles.code_digest(),
        applied=applied,
        pending=pending,
        protected_tables=protected,
    )


def _yoyo_status(conninfo: str) -> tuple[list[str], list[str]]:
    backend = get_backend(_yoyo_uri(conninfo))
    try:
        with _migrations() as migrations:
            pending = [m.id for m in backend.to_apply(migrations)]
            return [m.id for m in migrations if m.id not in pending], pending
    finally:
        with contextlib.suppress(Exception):
            backend.connection.close()


def _recorded_status(conninfo: str) -> tuple[list[str], list[str]]:
    """Applied and pending migrations from ledgerlock.installed_migration, which both install paths keep."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        have = {r[0] for r in conn.execute("SELECT id FROM ledgerlock.installed_migration")}
    names = [f.name.removesuffix(".sql") for f in sqlfiles.migration_files()]
    return [n for n in names if n in have], [n for n in names if n not in have]
