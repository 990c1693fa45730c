"""replication status|tables|subscribe|promote — logical replication of protected books (docs/replication.md)."""

from __future__ import annotations

import sys

import click
import psycopg

from ..context import Context, pass_context, rows
from ..output import EXIT_EVIDENCE, EXIT_FAILED, EXIT_OK, echo, echo_json

NOT_INSTALLED = ("ledgerlock is not installed in database {db}: a subscriber needs ledgerlock's tables to receive "
                 "the publisher's counters, locks, events and chain. Create the schema there, run `ledgerlock "
                 "migrate`, then `ledgerlock replication subscribe`, then CREATE SUBSCRIPTION "
                 "(docs/replication.md).")


def _installed(conn: psycopg.Connection) -> bool:
    return conn.execute("SELECT to_regclass('ledgerlock.replication_role') IS NOT NULL").fetchone()[0]


def _require_installed(conn: psycopg.Connection) -> None:
    if not _installed(conn):
        echo(NOT_INSTALLED.format(db=conn.info.dbname), err=True)
        sys.exit(EXIT_FAILED)


@click.group()
def replication() -> None:
    """Logical replication: a subscriber applies the publisher's books verbatim until cut-over."""


@replication.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_context
def status(ctx: Context, as_json: bool) -> None:
    """This database's role (primary or subscriber), its subscriptions, and what is wrong with them.

    Exit code 3 when a subscription lacks ledgerlock's tables or applies into a database not marked as
    subscriber; 1 when ledgerlock is not installed here."""
    with ctx.connect() as conn:
        _require_installed(conn)
        subscriber = conn.execute("SELECT ledgerlock._is_subscriber()").fetchone()[0]
        subs = rows(conn, "SELECT s.subname::text AS name, s.subenabled AS enabled, "
                          "(SELECT count(*) FROM pg_subscription_rel r WHERE r.srsubid = s.oid) AS tables, "
                          "(SELECT count(*) FROM pg_subscription_rel r WHERE r.srsubid = s.oid "
                          " AND r.srsubstate <> 'r') AS copying "
                          "FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid "
                          "WHERE d.datname = current_database() ORDER BY 1")
        found = rows(conn, "SELECT severity, object, finding, fix FROM ledgerlock._doctor_replication() "
                           "WHERE severity <> 'info'")
    role = "subscriber" if subscriber else "primary"
    if as_json:
        echo_json({"role": role, "subscriptions": subs, "problems": found})
    else:
        echo(f"this database is a {role}" + (" (guards fire for local sessions only; local writes to "
                                                    "replicated tables are refused until promote)" if subscriber
                                                    else ""))
        for s in subs:
            echo(f"subscription {s['name']}: {'enabled' if s['enabled'] else 'disabled'}, "
                       f"{s['tables']} table(s)" + (f", {s['copying']} still in their initial copy (install the "
                                                   "guards and promote once none is)" if s['copying'] else ""))
        for f in found:
            echo(f"[{f['severity']}] {f['finding']}")
            echo(f"    fix: {f['fix']}")
    sys.exit(EXIT_EVIDENCE if any(f["severity"] == "critical" for f in found) else EXIT_OK)


@replication.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_context
def tables(ctx: Context, as_json: bool) -> None:
    """The tables a publication of these books must carry, and the statement that creates it."""
    with ctx.connect() as conn:
        _require_installed(conn)
        names = [r[0] for r in conn.execute("SELECT t::text FROM ledgerlock.publication_tables() t")]
    if as_json:
        echo_json(names)
    else:
        echo(f"CREATE PUBLICATION books FOR TABLE {', '.join(names)};")


@replication.command()
@pass_context
def subscribe(ctx: Context) -> None:
    """Mark this (new) database as a subscriber, before CREATE SUBSCRIPTION (ledgerlock.become_subscriber)."""
    with ctx.connect_to_write() as conn:
        _require_installed(conn)
        conn.execute("SELECT ledgerlock.become_subscriber()")
    echo("this database is now a ledgerlock subscriber: create the subscription, then run "
               "`ledgerlock migrate` once the initial copy is done")


@replication.command()
@pass_context
def promote(ctx: Context) -> None:
    """Cut-over: make this subscriber the primary (ledgerlock.promote_subscriber), once its subscription is
    disabled or dropped."""
    with ctx.connect_to_write() as conn:
        _require_installed(conn)
        advanced = conn.execute("SELECT ledgerlock.promote_subscriber()").fetchone()[0]
    echo("promoted: guards are ENABLE ALWAYS again; sequences continue after the replicated rows")
    for seq, value in sorted(advanced.items()):
        echo(f"  {seq}: {value}")


def register(cli: click.Group) -> None:
    cli.add_command(replication)
