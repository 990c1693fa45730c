"""numbers check · numbers format · numbers series — gapless final numbering (R2).

Each command calls the SQL API (ledgerlock.number_gaps, set_number_format, the number_series view) as the
connecting database user: what it may do is decided by its ledgerlock role, in the database.
"""

from __future__ import annotations

import sys

import click

from ..context import Context, pass_context, rows
from ..output import EXIT_EVIDENCE, echo, echo_json, echo_rows

GAP_COLUMNS = ("table", "series", "kind", "first", "last", "detail")
SERIES_COLUMNS = ("table", "series", "last_number", "created_at")


@click.group()
def numbers() -> None:
    """Gapless final numbers: check continuity, change formats, list series."""


@numbers.command()
@click.argument("table", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def check(ctx: Context, table: str | None, as_json: bool) -> None:
    """Gaps and duplicates in the final numbers of TABLE (default: every numbered table).

    Prints nothing but a confirmation and exits 0 when every series runs 1..N; otherwise lists each gap,
    duplicate or number beyond its counter and exits 3 (an evidence problem). Requires an auditor, controller
    or admin role.
    """
    with ctx.connect() as conn:
        found = rows(
            conn,
            """SELECT table_name::text AS "table", series, kind, first_number AS "first",
                      last_number AS "last", detail
               FROM ledgerlock.number_gaps(%s::regclass)""",
            (table,),
        )
        tables = conn.execute(
            "SELECT count(*) FROM ledgerlock.protected_table WHERE number_format IS NOT NULL "
            "AND (%s::regclass IS NULL OR tbl = %s::regclass)",
            (table, table),
        ).fetchone()[0]
    if as_json:
        echo_rows(found, GAP_COLUMNS, as_json=True)
    elif found:
        echo(f"{len(found)} problem{'s' if len(found) != 1 else ''} in the final numbers:")
        echo_rows(found, GAP_COLUMNS, as_json=False)
    else:
        echo(f"final numbers are continuous: no gap and no duplicate ({tables} numbered "
                   f"table{'s' if tables != 1 else ''} checked)")
    if found:
        sys.exit(EXIT_EVIDENCE)


@numbers.command("format")
@click.argument("table")
@click.argument("number_format", metavar="FORMAT")
@click.option("--draft-format", help="Temporary-number format for drafts inserted without a number, "
              "e.g. 'DRAFT-{SEQ}'.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def format_(ctx: Context, table: str, number_format: str, draft_format: str | None, as_json: bool) -> None:
    """Set the final number FORMAT of TABLE, e.g. 'INV-{YYYY}-{SEQ:5}' (admin only).

    Only numbers handed out from now on follow it. Tokens: {SEQ} or {SEQ:n}, {YYYY}, {YY}, {MM}, {SCOPE}.
    """
    with ctx.connect_to_write() as conn:
        conn.execute("SELECT ledgerlock.set_number_format(%s::regclass, %s, %s)", (table, number_format, draft_format))
    if as_json:
        echo_json({"table": table, "number_format": number_format, "draft_format": draft_format})
        return
    echo(f"{table}: final numbers from now on follow {number_format}"
               + (f", temporary numbers {draft_format}" if draft_format else ""))


@numbers.command()
@click.argument("table", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def series(ctx: Context, table: str | None, as_json: bool) -> None:
    """Every series and its last final number (auditor, controller or admin)."""
    with ctx.connect() as conn:
        found = rows(
            conn,
            """SELECT table_name::text AS "table", series, last_value AS last_number, created_at
               FROM ledgerlock.number_series
               WHERE %s::regclass IS NULL OR table_name = %s::regclass ORDER BY 1, 2""",
            (table, table),
        )
    echo_rows(found, SERIES_COLUMNS, as_json=as_json, empty="(no final number handed out yet)")


def register(cli: click.Group) -> None:
    cli.add_command(numbers)
