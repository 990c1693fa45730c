"""grant · revoke · lift-scope-limit — which scopes a ledgerlock role member may act on (ledgerlock.grant_scope,
revoke_scope, lift_scope_limit)."""

from __future__ import annotations

import click

from ..context import Context, pass_context
from ..output import echo, echo_json
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
            echo(said.format(role=role, scope=scope))

    return command


grant = _scope_grant_command(
    "grant", "grant_scope", "granted scope {scope} to {role}",
    "Let database ROLE act on SCOPE only (a tenant admin or controller limited to its scopes; admin).")
revoke = _scope_grant_command(
    "revoke", "revoke_scope", "revoked scope {scope} from {role}",
    "Take SCOPE back from database ROLE (admin); its last scope taken, ROLE acts on no scope (lift-scope-limit).")


@click.command("lift-scope-limit")
@click.argument("role")
@click.option("--reason", required=True, help="Why ROLE may now act on every scope (kept in the lock history).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: {role, limited}.")
@pass_context
@cli_hints
def lift_scope_limit(ctx: Context, role: str, reason: str, as_json: bool) -> None:
    """Let database ROLE act on every scope again, after its last scope was revoked (admin).

    Revoking a role's last scope leaves it limited to no scope, not unlimited: making it an admin or
    controller of every scope is a decision of its own, with a reason."""
    with ctx.connect_to_write() as conn:
        conn.execute("SELECT ledgerlock.lift_scope_limit(%s::regrole, %s)", (role, reason))
    if as_json:
        echo_json({"role": role, "limited": False})
    else:
        echo(f"{role} is no longer limited to scopes: it may act on every scope")


def register(cli: click.Group) -> None:
    cli.add_command(grant)
    cli.add_command(revoke)
    cli.add_command(lift_scope_limit)
