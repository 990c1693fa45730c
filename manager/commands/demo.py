"""demo — a guided tour on a fresh demo database."""

from __future__ import annotations

import contextlib

import click
import psycopg
from psycopg import sql

from .. import demo as tour
from ..connection import with_dbname
from ..context import Context, pass_context
from ..output import echo


def _refuse_without_superuser(conn: psycopg.Connection) -> None:
    """The demo creates its database and its people (roles), and plays each person with SET SESSION
    AUTHORIZATION, which only a superuser may do: refuse before creating anything."""
    superuser = conn.execute("SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = session_user").fetchone()
    if not (superuser and superuser[0]):
        raise click.ClickException(
            f"ledgerlock demo needs a superuser: it creates the database {tour.DEMO_DB} and its people's roles, "
            f"and acts as each of them (SET SESSION AUTHORIZATION); {conn.info.user} is not a superuser. Run it "
            "on the embedded PostgreSQL (no --dsn) or a test server; on a managed service follow "
            "docs/hardening.md instead")


def _drop_demo_database(server_conninfo: str) -> None:
    with psycopg.connect(with_dbname(server_conninfo, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(tour.DEMO_DB)))


@click.command()
@pass_context
def demo(ctx: Context) -> None:
    """Create the demo database (a small ERP), protect it, and show what ledgerlock refuses.

    Runs on the embedded PostgreSQL unless --dsn (or LEDGERLOCK_DSN / DATABASE_URL) names a server;
    there it creates (and replaces) a database named ledgerlock_demo, and needs a superuser.
    """
    with ctx.connect() as conn:
        _refuse_without_superuser(conn)
    echo(f"ledgerlock demo on {ctx.target.source} PostgreSQL")
    try:
        tour.play(ctx.target.conninfo)
    except BaseException:
        # a demo that stopped midway is no demo to explore: it leaves no database behind (a failed drop must
        # not hide why the demo stopped)
        with contextlib.suppress(psycopg.Error):
            _drop_demo_database(ctx.target.conninfo)
        raise


def register(cli: click.Group) -> None:
    cli.add_command(demo)
