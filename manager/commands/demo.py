"""demo — a guided tour on a fresh demo database."""

from __future__ import annotations

import click

from .. import demo as tour
from ..context import Context, pass_context


@click.command()
@pass_context
def demo(ctx: Context) -> None:
    """Create the demo database (a small ERP), protect it, and show what ledgerlock refuses.

    Runs on the embedded PostgreSQL unless --dsn (or LEDGERLOCK_DSN / DATABASE_URL) names a server;
    there it creates (and replaces) a database named ledgerlock_demo.
    """
    click.echo(f"ledgerlock demo on {ctx.target.source} PostgreSQL")
    tour.play(ctx.target.conninfo)


def register(cli: click.Group) -> None:
    cli.add_command(demo)
