"""Which database the manager talks to: --dsn, else LEDGERLOCK_DSN, else DATABASE_URL, else the embedded
PostgreSQL in a per-user data directory, started on demand and left running for the next call."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from . import errors as _errors  # noqa: F401  (registers the LLxxx exception classes with psycopg)
from .server import LocalServer, pgserver_bindir

EMBEDDED_DBNAME = "ledgerlock"


def data_home() -> Path:
    base = os.environ.get("LEDGERLOCK_HOME")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "share") / "ledgerlock"


def embedded_server() -> LocalServer:
    return LocalServer(datadir=data_home() / "pg16", bindir=pgserver_bindir())


@dataclass(frozen=True)
class Target:
    conninfo: str
    source: str  # "--dsn", "LEDGERLOCK_DSN", "DATABASE_URL" or "embedded"

    def connect(self, **kw) -> psycopg.Connection:
        kw.setdefault("autocommit", True)
        return psycopg.connect(self.conninfo, **kw)


def resolve(dsn: str | None, *, dbname: str = EMBEDDED_DBNAME) -> Target:
    if dsn:
        return Target(dsn, "--dsn")
    for var in ("LEDGERLOCK_DSN", "DATABASE_URL"):
        if os.environ.get(var):
            return Target(os.environ[var], var)
    server = embedded_server()
    server.start()
    ensure_database(server.conninfo(), dbname)
    return Target(server.conninfo(dbname=dbname), "embedded")


def ensure_database(admin_conninfo: str, dbname: str) -> None:
    with psycopg.connect(admin_conninfo, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))


def with_dbname(conninfo: str, dbname: str) -> str:
    """The same server and credentials, another database."""
    params = psycopg.conninfo.conninfo_to_dict(conninfo)
    params["dbname"] = dbname
    return psycopg.conninfo.make_conninfo(**params)
