"""``ledgerlock demo``: a small ERP in its own database, protected, and shown refusing what it must.

The demo is told in chapters: every module ``chNN_*.py`` in this package defines ``TITLE`` and
``run(demo)`` and is played in NN order, so each rule adds its own chapter.
"""

from __future__ import annotations

import contextlib
import importlib
import pkgutil
from collections.abc import Iterator
from typing import Any

import click
import psycopg
from psycopg import sql

from .. import errors as ll_errors
from .. import migrate as migration
from .. import sqlfiles
from ..connection import with_dbname

DEMO_DB = "ledgerlock_demo"
APP_ROLE = "erp_demo_app"  # not ledgerlock_*: that prefix is for the capability roles
# The people of the demo: each `who` label is a real database user (the demo's superuser connection takes it
# on with SET SESSION AUTHORIZATION), so capabilities and the audit trail's db_user are theirs. They are
# LOGIN roles without a password, so that they can log in to `ledgerlock console` on the embedded server
# (trust, Unix socket only); on a server that asks for passwords they cannot log in until given one.
# admin2 is the second pair of eyes of a four-eyes unlock.
PEOPLE = {
    "app": (APP_ROLE, None),
    "controller": ("erp_demo_controller", "ledgerlock_controller"),
    "admin": ("erp_demo_admin", "ledgerlock_admin"),
    "admin2": ("erp_demo_admin2", "ledgerlock_admin"),
    "auditor": ("erp_demo_auditor", "ledgerlock_auditor"),
}


class Demo:
    """What a chapter works with: the admin connection, the application's, and a narrator."""

    def __init__(self, conninfo: str):
        self.conninfo = conninfo
        self.admin = psycopg.connect(conninfo, autocommit=True)  # the installing superuser: setup, "owner"
        self.people = {who: self._as(role) for who, (role, _) in PEOPLE.items()}
        self.app = self.people["app"]

    def _as(self, role: str) -> psycopg.Connection:
        conn = psycopg.connect(self.conninfo, autocommit=True)
        conn.execute(sql.SQL("SET SESSION AUTHORIZATION {}").format(sql.Identifier(role)))
        return conn

    def close(self) -> None:
        for conn in self.people.values():
            conn.close()
        self.admin.close()

    def _connection(self, conn: psycopg.Connection, who: str) -> psycopg.Connection:
        """A statement shown as run by one of the demo's people (app, controller, admin, auditor) but handed the
        superuser connection runs as that person. Other connections are used as given (a chapter that groups
        statements in one transaction passes the person's own connection, demo.people[who])."""
        return self.people.get(who, conn) if conn is self.admin else conn

    # -- narration ------------------------------------------------------------------------------
    def chapter(self, title: str) -> None:
        click.echo()
        click.secho(f"== {title}", bold=True)

    def say(self, text: str) -> None:
        click.echo(text)

    def _show(self, who: str, statement: str) -> None:
        click.secho(f"  {who}=> {' '.join(statement.split())}", fg="cyan")

    def run(self, conn: psycopg.Connection, statement: str, params: Any = None, *, who: str = "app") -> list:
        """Run and show a statement that is expected to succeed; returns its rows."""
        self._show(who, statement)
        cur = self._connection(conn, who).execute(statement, params)
        rows = cur.fetchall() if cur.description else []
        for r in rows:
            click.echo("    " + " | ".join("" if v is None else str(v) for v in r))
        if not rows:
            click.echo(f"    ok ({cur.rowcount} row{'s' if cur.rowcount != 1 else ''})")
        return rows

    def refused(self, conn: psycopg.Connection, statement: str, params: Any = None, *, who: str = "app") -> str:
        """Run and show a statement that ledgerlock must refuse; returns the SQLSTATE."""
        self._show(who, statement)
        conn = self._connection(conn, who)
        try:
            with conn.transaction():
                conn.execute(statement, params)
        except psycopg.Error as exc:
            d = exc.diag
            click.secho(f"    refused: ERROR {d.sqlstate} ({ll_errors.describe(d.sqlstate)})", fg="red")
            click.secho(f"    {d.message_primary}", fg="red")
            if d.message_hint:
                click.echo(f"    HINT: {d.message_hint}")
            click.echo(f"    the application receives {type(exc).__module__}.{type(exc).__name__}")
            return d.sqlstate
        raise click.ClickException(f"the demo expected a refusal, but this succeeded: {statement}")


def chapters() -> list[Any]:
    mods = [m.name for m in pkgutil.iter_modules(__path__) if m.name.startswith("ch")]
    return [importlib.import_module(f"{__name__}.{name}") for name in sorted(mods)]


@contextlib.contextmanager
def demo_database(server_conninfo: str) -> Iterator[str]:
    """A fresh demo database on the server, migrated and loaded with the ERP schema."""
    admin_info = with_dbname(server_conninfo, "postgres")
    ident = sql.Identifier(DEMO_DB)
    with psycopg.connect(admin_info, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(ident))
    conninfo = with_dbname(server_conninfo, DEMO_DB)
    migration.migrate(conninfo)  # creates the ledgerlock_* roles on a new server: the people join them below
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for role, group in PEOPLE.values():  # roles are cluster-wide: a second run finds them
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is None:
                conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("ALTER ROLE {} LOGIN").format(sql.Identifier(role)))
            if group:
                conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(role)))
        conn.execute(sqlfiles.demo_schema())
        writers = sql.SQL(", ").join(sql.Identifier(role) for role, _ in PEOPLE.values())
        conn.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}")
                     .format(writers))
        conn.execute(sql.SQL("GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {}").format(writers))
    yield conninfo


def play(server_conninfo: str) -> None:
    with demo_database(server_conninfo) as conninfo:
        demo = Demo(conninfo)
        try:
            for ch in chapters():
                demo.chapter(ch.TITLE)
                ch.run(demo)
        finally:
            demo.close()
    click.echo()
    click.echo(f"The demo database '{DEMO_DB}' stays for you to explore:")
    click.echo(f"  psql \"{with_dbname(server_conninfo, DEMO_DB)}\"")
