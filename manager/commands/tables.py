"""protect · unprotect — registering tables with ledgerlock."""

from __future__ import annotations

import click

from ..context import Context, pass_context
from ..output import echo, echo_json


@click.command()
@click.argument("table")
@click.option("--date-column", required=True, help="The row's accounting date (date or timestamp column).")
@click.option("--scope-column", help="Column naming the company/entity the row belongs to (text-comparable).")
@click.option("--final-when",
              help="SQL condition over the row that makes it final, e.g. \"status in ('approved','paid')\".")
@click.option("--number-column", help="Column that receives the gapless final number.")
@click.option("--number-format", help="Final number format, e.g. 'INV-{YYYY}-{SEQ:5}'.")
@click.option("--mutable-column", "mutable_columns", multiple=True,
              help="Column that may still change on final or locked rows (repeatable).")
@click.option("--ledger", help="Ledger tag (ar, ap, payroll, ...) so locks can target some ledgers only.")
@click.option("--weaken-reason",
              help="Confirm a reconfiguration that removes or loosens settings in force, and say why (audited).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_context
def protect(ctx: Context, table: str, date_column: str, scope_column: str | None, final_when: str | None,
            number_column: str | None, number_format: str | None, mutable_columns: tuple[str, ...],
            ledger: str | None, weaken_reason: str | None, as_json: bool) -> None:
    """Protect TABLE: final rows become permanent, locks and audit apply.

    Calling it again reconfigures the table: pass every setting again. A reconfiguration that would remove
    or loosen anything (final_when, numbering, mutable columns, date/scope column, ledger) is refused with
    the list of what would go, unless --weaken-reason says why. Loosening is refused outright while the table
    holds final rows, or rows in a hard-locked period. Requires an unrestricted ledgerlock_admin.
    """
    with ctx.connect_to_write() as conn:
        conn.execute(
            "SELECT ledgerlock.protect(%s::regclass, %s, %s, %s, %s, %s, %s::name[], %s, %s)",
            (table, date_column, scope_column, final_when, number_column, number_format,
             list(mutable_columns), ledger, weaken_reason),
        )
    if as_json:
        echo_json({"table": table, "protected": True})
        return
    echo(f"protected {table}")


@click.command()
@click.argument("table")
@click.option("--reason", required=True, help="Why the protection is removed (kept in the audit trail).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_context
def unprotect(ctx: Context, table: str, reason: str, as_json: bool) -> None:
    """Remove ledgerlock's protection from TABLE (admin only, audited).

    Refused while TABLE holds final rows, or rows in a hard-locked period (unlock the period first).
    """
    with ctx.connect_to_write() as conn:
        conn.execute("SELECT ledgerlock.unprotect(%s::regclass, %s)", (table, reason))
    if as_json:
        echo_json({"table": table, "protected": False})
        return
    echo(f"unprotected {table}")


def register(cli: click.Group) -> None:
    cli.add_command(protect)
    cli.add_command(unprotect)
