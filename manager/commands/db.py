"""db start|status|url|stop — the embedded PostgreSQL server."""

from __future__ import annotations

import click

from ..connection import embedded_default_db, embedded_server
from ..output import echo, echo_json


@click.group()
def db() -> None:
    """Manage the embedded PostgreSQL (used when no --dsn, LEDGERLOCK_DSN, DATABASE_URL or PG* variable is set)."""


@db.command()
def start() -> None:
    """Start the embedded server (initialising it on first use)."""
    server = embedded_server()
    server.start()
    dbname, why = embedded_default_db(server)
    echo(f"embedded PostgreSQL running (pid {server.pid()}) in {server.datadir}; commands without --dsn "
               f"use database {dbname} ({why})")


@db.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def db_status(as_json: bool) -> None:
    """Say whether the embedded server is running, where, and which version."""
    server = embedded_server()
    info = {
        "datadir": str(server.datadir),
        "initialised": server.is_initialised(),
        "running": server.is_running(),
        "pid": server.pid(),
        "version": server.version(),
        "url": server.url(embedded_default_db(server)[0] if server.is_running() else "postgres"),
    }
    if as_json:
        echo_json(info)
        return
    state = f"running (pid {info['pid']})" if info["running"] else "stopped"
    echo(f"embedded PostgreSQL: {state}\n  {info['version']}\n  data: {info['datadir']}\n  url:  {info['url']}",
         lines=True)


@db.command()
@click.option("--dbname", help="Database name to put in the URL. Default: the one commands use without --dsn "
              "(ledgerlock_demo if `ledgerlock demo` created it, else postgres).")
def url(dbname: str | None) -> None:
    """Print the embedded server's connection URL (for psql or LEDGERLOCK_DSN).

    \b
    psql "$(ledgerlock db url)"
    """
    server = embedded_server()
    if dbname is None:
        server.start()
        dbname, _ = embedded_default_db(server)
    echo(server.url(dbname))


@db.command()
def stop() -> None:
    """Stop the embedded server."""
    if embedded_server().stop():
        echo("embedded PostgreSQL stopped")
    else:
        echo("embedded PostgreSQL was not running")


def register(cli: click.Group) -> None:
    cli.add_command(db)
