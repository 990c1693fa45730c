"""console — the web console for accountants and auditors (manager/console)."""

from __future__ import annotations

import ipaddress
import os

import click
from psycopg.conninfo import conninfo_to_dict

from ..connection import resolve, with_dbname
from ..context import Context, pass_context
from ..demo import DEMO_DB
from ..output import echo


def _where(source: str, conninfo: str) -> str:
    params = conninfo_to_dict(conninfo)
    host = params.get("host") or "local socket"
    if host.startswith("/"):
        host = "local socket"
    port = f":{params['port']}" if params.get("port") else ""
    return f"{source} PostgreSQL on {host}{port}, database {params.get('dbname') or '(default)'}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but a loopback address exposes the console to the network.")
@click.option("--port", default=8470, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on.")
@click.option("--dbname", metavar="NAME",
              help=f"Database to open. Default: the one --dsn names, else the embedded demo database ({DEMO_DB}).")
@click.option("--idle-timeout", "idle_minutes", default=30, show_default=True, type=click.IntRange(1, 720),
              metavar="MINUTES", help="Log a person out after this long without a request; the console then "
              "forgets their password. No session lasts more than 12 hours.")
@pass_context
def console(ctx: Context, host: str, port: int, dbname: str | None, idle_minutes: int) -> None:
    """Serve the web console: lock calendar, history, four-eyes inbox, close checklist, audit diff, evidence.

    People log in with their database role and password (role name only on a server that trusts local
    connections, like the embedded demo). Every page and form runs as that role through the SQL API, so
    the database decides what each person may see and do. Superusers are refused. Listens on 127.0.0.1
    unless --host says otherwise.

    \b
    ledgerlock console                          the embedded demo database (run `ledgerlock demo` first)
    ledgerlock --dsn postgresql://db/erp console --port 9000
    """
    import uvicorn

    from ..console import create_app

    target = resolve(ctx.dsn, dbname=dbname or DEMO_DB)
    conninfo = with_dbname(target.conninfo, dbname) if dbname else target.conninfo
    # a password in the console's own environment must never log anybody in: people type their own
    os.environ.pop("PGPASSWORD", None)
    where = _where(target.source, conninfo)
    if not _is_loopback(host):
        echo(f"warning: listening on {host}: the console is reachable from the network; put it behind "
                    "TLS (a reverse proxy) so that passwords never cross it in clear", fg="yellow", err=True)
    echo(f"ledgerlock console for {where}")
    echo(f"open http://{'[' + host + ']' if ':' in host else host}:{port}/ and log in as your database role")
    uvicorn.run(create_app(conninfo, where=where, idle_minutes=idle_minutes), host=host, port=port,
                log_level="warning")


def register(cli: click.Group) -> None:
    cli.add_command(console)
