"""grant · revoke — which scopes a ledgerlock role member may act on (ledgerlock.grant_scope / revoke_scope)."""

from __future__ import annotations

import click

from ..context import Context, pass_context
from ..output import echo_json
from .locks import cli_hints


def _change_grant(ctx: Context, function: str, role: str, scope: str, said: str, as_json: bool) -> None:
    """One call of grant_scope or revoke_scope (an unrestricted admin), and what it did."""
    with ctx.connect_to_write() as conn:
        conn.execute(f"SELECT ledgerlock.{function}(%s::regrole, %s)", (role, scope))
    if as_json:
        echo_json({"role": role, "scope": scope, "granted": function == "grant_scope"})
    else:
        click.echo(said)


@click.command()
@click.argument("role")
@click.argument("scope")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: {role, scope, granted}.")
@pass_context
@cli_hints
def grant(ctx: Context, role: str, scope: str, as_json: bool) -> None:
    """Let database ROLE act on SCOPE only (a tenant admin or controller limited to its scopes; admin)."""
    _change_grant(ctx, "grant_scope", role, scope, f"granted scope {scope} to {role}", as_json)


@click.command()
@click.argument("role")
@click.argument("scope")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: {role, scope, granted}.")
@pass_context
@cli_hints
def revoke(ctx: Context, role: str, scope: str, as_json: bool) -> None:
    """Take SCOPE back from database ROLE (admin)."""
    _change_grant(ctx, "revoke_scope", role, scope, f"revoked scope {scope} from {role}", as_json)


def register(cli: click.Group) -> None:
    cli.add_command(grant)
    cli.add_command(revoke)
