"""Installing and upgrading ledgerlock in a database.

``migrate`` applies the migrations (tables, roles, views) that are pending, then installs the functions and
triggers when their text differs from what the database has (recorded by digest in
``ledgerlock.installed_code``), and finally re-runs every rule installer on the protected tables so their
guard triggers match the installed code — all in one transaction. A second run changes nothing and says so.
``ledgerlock.installed_migration`` is the record of which migrations a database has (the one-file script
keeps it too); yoyo's bookkeeping mirrors it after the commit, for yoyo's own tools.
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
from .connection import CLIENT_SETTINGS, client_session


@dataclass
class MigrationReport:
    applied: list[str] = field(default_factory=list)
    code_installed: bool = False
    guards_reinstalled: int = 0
    restored_tables: list[str] = field(default_factory=list)  # guards installed again after a restore
    ddl_guard_completed: bool = False  # event triggers a release added to the DDL guard, created

    @property
    def changed(self) -> bool:
        return bool(self.applied or self.code_installed or self.restored_tables or self.ddl_guard_completed)


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
    params.setdefault("client_encoding", CLIENT_SETTINGS["client_encoding"])  # yoyo's own connection: see _connect
    return "postgresql+psycopg://?" + urlencode(params)


def _connect(conninfo: str, **kw) -> psycopg.Connection:
    """With the manager's session settings (connection.CLIENT_SETTINGS: UTF8 whatever the database's encoding,
    or psycopg sends text to a SQL_ASCII database as bytea)."""
    return client_session(psycopg.connect(conninfo, **kw))


@contextlib.contextmanager
def _migrations():
    """yoyo reads migrations from a directory; copy them out of the package (it may be a zip)."""
    with tempfile.TemporaryDirectory(prefix="ledgerlock-migrations-") as tmp:
        for f in sqlfiles.migration_files():
            Path(tmp, f.name).write_text(f.read_text())
        yield read_migrations(tmp)


CAPABILITY_ROLES = ("ledgerlock_auditor", "ledgerlock_controller", "ledgerlock_admin")


class MigrateError(RuntimeError):
    """migrate cannot start here; the message says what is missing and who can provide it."""


def _check_roles(conn: psycopg.Connection) -> None:
    """The capability roles are cluster-wide and need CREATEROLE to create: refuse in a sentence, before
    anything is written, when they are missing and this session cannot create them."""
    missing, can_create, who = conn.execute(
        """SELECT array(SELECT r FROM unnest(%s::text[]) WITH ORDINALITY AS u(r, n)
                        WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = r) ORDER BY n),
                  (SELECT rolsuper OR rolcreaterole FROM pg_catalog.pg_roles WHERE rolname = current_user),
                  CASE WHEN session_user = current_user THEN session_user::text
                       ELSE pg_catalog.format('%%s acting as %%s', session_user, current_user) END""",
        (list(CAPABILITY_ROLES),),
    ).fetchone()
    if missing and not can_create:
        raise MigrateError(
            f"the roles {', '.join(missing)} do not exist and {who} cannot create them (no CREATEROLE): have "
            "a role with CREATEROLE run `ledgerlock sql --roles | psql` once for this cluster, then run migrate "
            "again")


def _applied(conn: psycopg.Connection) -> set[str]:
    """The migrations this database has, from ledgerlock.installed_migration (both install paths keep it)."""
    if conn.execute("SELECT to_regclass('ledgerlock.installed_migration')").fetchone()[0] is None:
        return set()
    return {r[0] for r in conn.execute("SELECT id FROM ledgerlock.installed_migration")}


def _sync_yoyo(conninfo: str) -> None:
    """Mirror installed_migration into yoyo's bookkeeping (for people who run yoyo's own tools). It follows
    the commit and decides nothing: a run it misses is caught up by the next one."""
    backend = get_backend(_yoyo_uri(conninfo))
    try:
        with _migrations() as migrations:
            with _connect(conninfo, autocommit=True) as conn:
                have = _applied(conn)
            known = [m for m in backend.to_apply(migrations) if m.id in have]
            if known:
                backend.mark_migrations(known)
    finally:
        with contextlib.suppress(Exception):
            backend.connection.close()


def migrate(conninfo: str) -> MigrationReport:
    """Migrations, code and guards in one transaction: a failure anywhere (a missing privilege, a refused
    guard refresh) rolls everything back, so the database is as it was and a re-run starts afresh."""
    report = MigrationReport()
    digest = sqlfiles.code_digest()
    with _connect(conninfo) as conn:
        _check_roles(conn)
        # one installer at a time; a gate no client can name (migration 0035), because any client could take an
        # advisory key, or hold a lock on a table of schema ledgerlock through PREPARE, and stall it. Before 0035
        # the installers met on installed_code. A first install has no table to lock: two at once collide on
        # the schema, and one fails whole.
        gate, before_0035 = conn.execute("SELECT to_regclass('ledgerlock_gate.installer'), "
                                         "to_regclass('ledgerlock.installed_code')").fetchone()
        if gate is not None:
            conn.execute("LOCK TABLE ledgerlock_gate.installer IN SHARE ROW EXCLUSIVE MODE")
        elif before_0035 is not None:
            conn.execute("LOCK TABLE ledgerlock.installed_code IN SHARE ROW EXCLUSIVE MODE")
        have = _applied(conn)
        for f in sqlfiles.migration_files():
            mig = f.name.removesuffix(".sql")
            if mig not in have:
                conn.execute(f.read_text())
                report.applied.append(mig)
        conn.cursor().executemany(
            "INSERT INTO ledgerlock.installed_migration (id, via) VALUES (%s, 'migrate') ON CONFLICT DO NOTHING",
            [(m,) for m in report.applied],
        )
        current = conn.execute("SELECT 1 FROM ledgerlock.installed_code WHERE digest = %s", (digest,)).fetchone()
        if current is None or report.applied:
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
        # a DDL guard an earlier release installed lacks the event triggers added since: completed when the
        # session may create them (a superuser's); doctor reports them missing otherwise
        if conn.execute("SELECT ledgerlock._ddl_guard_completable()").fetchone()[0]:
            conn.execute("SELECT ledgerlock.install_ddl_guard()")
            report.ddl_guard_completed = True
    _sync_yoyo(conninfo)
    return report


def status(conninfo: str) -> Status:
    """Read-only (it serves a standby too): installed_code, installed_migration and the registry, which the
    owner, ledgerlock_admin, ledgerlock_controller and ledgerlock_auditor may read."""
    names = [f.name.removesuffix(".sql") for f in sqlfiles.migration_files()]
    with _connect(conninfo, autocommit=True) as conn:
        installed = conn.execute("SELECT to_regclass('ledgerlock.installed_code') IS NOT NULL").fetchone()[0]
        if not installed:
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
        have = _applied(conn)
    return Status(
        installed_version=row[0] if row else None,
        code_current=bool(row) and row[1] == sqlfiles.code_digest(),
        applied=[n for n in names if n in have],
        pending=[n for n in names if n not in have],
        protected_tables=protected,
    )
