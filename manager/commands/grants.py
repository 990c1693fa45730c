"""grant · revoke — which scopes a ledgerlock role member may act on (ledgerlock.grant_scope / revoke_scope)."""

from __future__ import annotations

import click

from ..cli import Context, pass_context
from .locks import cli_hints


@click.command()
@click.argument("role")
@click.argument("scope")
@pass_context
@cli_hints
def grant(ctx: Context, role: str, scope: str) -> None:
    """Let database ROLE act on SCOPE only (a tenant admin or controller limited to its scopes; admin)."""
    with ctx.connect() as conn:
        conn.execute("SELECT ledgerlock.grant_scope(%s::regrole, %s)", (role, scope))
    click.echo(f"granted scope {scope} to {role}")


@click.command()
@click.argument("role")
@click.argument("scope")
@pass_context
@cli_hints
def revoke(ctx: Context, role: str, scope: str) -> None:
    """Take SCOPE back from database ROLE (admin)."""
    with ctx.connect() as conn:
        conn.execute("SELECT ledgerlock.revoke_scope(%s::regrole, %s)", (role, scope))
    click.echo(f"revoked scope {scope} from {role}")


def register(cli: click.Group) -> None:
    cli.add_command(grant)
    cli.add_command(revoke)
