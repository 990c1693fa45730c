"""grant · revoke — which scopes a ledgerlock role member may act on (ledgerlock.grant_scope / revoke_scope)."""

from __future__ import annotations

import click

from ..context import Context, pass_context
from ..output import echo_json
from .locks import cli_hints


def _scope_grant_command(name: str, function: str, said: str, doc: str) -> click.Command:
    """grant and revoke: one call of grant_scope or revoke_scope (an unrestricted admin), and what it did."""

    @click.command(name, help=doc)
    @click.argument("role")
    @click.argument("scope")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON: {role, scope, granted}.")
    @pass_context
    @cli_hints
    def command(ctx: Context, role: str, scope: str, as_json: bool) -> None:
        with ctx.connect_to_write() as conn:
            conn.execute(f"SELECT ledgerlock.{function}(%s::regrole, %s)", (role, scope))
        if as_json:
            echo_json({"role": role, "scope": scope, "granted": function == "grant_scope"})
        else:
            click.echo(said.format(role=role, scope=scope))

    return command


grant = _scope_grant_command(
    "grant", "grant_scope", "granted scope {scope} to {role}",
    "Let database ROLE act on SCOPE only (a tenant admin or controller limited to its scopes; admin).")
revoke = _scope_grant_command(
    "revoke", "revoke_scope", "revoked scope {scope} from {role}", "Take SCOPE back from database ROLE (admin).")


def register(cli: click.Group) -> None:
    cli.add_command(grant)
    cli.add_command(revoke)
