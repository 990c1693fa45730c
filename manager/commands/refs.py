"""refs add · refs remove · refs list — referential rules (R4): a parent row is frozen while dependent rows
reference it (ledgerlock.protect_referenced), and lines follow their header (ledgerlock.protect_lines)."""

from __future__ import annotations

import click

from ..context import Context, pass_context, rows
from ..output import echo, echo_json, echo_rows
from .locks import _show_notices

RULE_COLUMNS = ["id", "kind", "parent", "child", "fk", "child_condition", "operations", "created_by"]
RULE_QUERY = """SELECT id, kind, parent::text AS parent, child::text AS child, fk_name,
                       child_columns::text[] AS child_columns, parent_columns::text[] AS parent_columns,
                       child_condition, operations, created_at, created_by
                FROM ledgerlock.reference_rule"""


def _fk_columns(value: str | None) -> list[str] | None:
    if value is None:
        return None
    columns = [c.strip() for c in value.split(",")]
    if not all(columns):
        raise click.BadParameter(f"{value!r} is not a comma-separated list of column names", param_hint="--fk")
    return columns


def _rule(conn, kind: str, parent: str, child: str) -> dict:
    return rows(conn, RULE_QUERY + " WHERE kind = %s AND parent = %s::regclass AND child = %s::regclass "
                "ORDER BY id DESC LIMIT 1", (kind, parent, child))[0]


def _said(rule: dict) -> str:
    fk = f"{rule['child']} ({', '.join(rule['child_columns'])}) -> {rule['parent']}"
    if rule["kind"] == "lines":
        return f"lines: rows of {rule['child']} follow their header in {rule['parent']} ({fk})"
    when = f" when {rule['child_condition']}" if rule["child_condition"] else ""
    return (f"referenced: a row of {rule['parent']} is frozen ({', '.join(rule['operations'])}) while a row of "
            f"{rule['child']} references it{when} ({fk})")


@click.group()
def refs() -> None:
    """Referential rules (R4): referenced rows are frozen, lines follow their header.

    \b
    ledgerlock refs add invoice payment                  an invoice with a payment cannot change
    ledgerlock refs add invoice payment --when "amount > 0" --fk invoice_id
    ledgerlock refs add invoice invoice_line --lines     lines follow their invoice
    ledgerlock refs remove invoice payment --reason "payments move to their own ledger"
    ledgerlock refs list
    """


@refs.command("add")
@click.argument("parent")
@click.argument("child")
@click.option("--fk", "fk", metavar="COL,...",
              help="The foreign key's columns on CHILD, when it has more than one foreign key to PARENT.")
@click.option("--when", "condition", metavar="CONDITION",
              help="Only child rows matching this SQL condition freeze the parent, e.g. \"status <> 'void'\".")
@click.option("--operations", metavar="OPS", default="update,delete", show_default=True,
              help="What a referenced parent row may not do: update, delete, or both.")
@click.option("--lines", is_flag=True,
              help="CHILD holds the lines of PARENT: while the header is frozen (final, locked, referenced) its "
              "lines cannot be inserted, updated, deleted or moved.")
@click.option("--json", "as_json", is_flag=True, help="Print the rule as JSON.")
@pass_context
def add(ctx: Context, parent: str, child: str, fk: str | None, condition: str | None, operations: str,
        lines: bool, as_json: bool) -> None:
    """Freeze rows of PARENT while rows of CHILD reference them (or, with --lines, CHILD follows PARENT).

    An unrestricted admin only. The foreign key is found in the catalog; calling it again reconfigures the
    rule. Neither table needs to be protected itself.
    """
    columns = _fk_columns(fk)
    ops = [o.strip() for o in operations.split(",") if o.strip()]
    if lines and (condition is not None or operations != "update,delete"):
        raise click.UsageError("--lines takes no --when and no --operations: lines follow every change of their "
                               "header")
    with ctx.connect_to_write() as conn:
        _show_notices(conn)
        if lines:
            conn.execute("SELECT ledgerlock.protect_lines(%s::regclass, %s::regclass, %s::name[])",
                         (child, parent, columns))
        else:
            conn.execute("SELECT ledgerlock.protect_referenced(%s::regclass, %s::regclass, %s::name[], %s, %s)",
                         (parent, child, columns, condition, ops))
        rule = _rule(conn, "lines" if lines else "referenced", parent, child)
    if as_json:
        echo_json(rule)
    else:
        echo(f"rule #{rule['id']} {_said(rule)}")


@refs.command("remove")
@click.argument("parent")
@click.argument("child")
@click.option("--reason", required=True, help="Why the rule goes (required; kept in the audit trail).")
@click.option("--lines", is_flag=True, help="Remove the lines rule (CHILD follows PARENT) instead.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: {parent, child, kind, removed}.")
@pass_context
def remove(ctx: Context, parent: str, child: str, reason: str, lines: bool, as_json: bool) -> None:
    """Remove the rule between PARENT and CHILD (an unrestricted admin, with a reason; audited)."""
    with ctx.connect_to_write() as conn:
        if lines:
            conn.execute("SELECT ledgerlock.unprotect_lines(%s::regclass, %s::regclass, %s)", (child, parent, reason))
        else:
            conn.execute("SELECT ledgerlock.unprotect_referenced(%s::regclass, %s::regclass, %s)",
                         (parent, child, reason))
    kind = "lines" if lines else "referenced"
    if as_json:
        echo_json({"parent": parent, "child": child, "kind": kind, "removed": True})
    else:
        echo(f"removed the {kind} rule between {parent} and {child} ({reason})")


@refs.command("list")
@click.argument("table", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_context
def list_(ctx: Context, table: str | None, as_json: bool) -> None:
    """The referential rules (of TABLE, as parent or child)."""
    with ctx.connect() as conn:
        found = rows(conn, RULE_QUERY + " WHERE %(t)s::regclass IS NULL OR %(t)s::regclass IN (parent, child) "
                     "ORDER BY id", {"t": table})
    for r in found:
        r["fk"] = f"{r['fk_name']} ({','.join(r['child_columns'])})"
    if as_json:
        echo_json([{k: v for k, v in r.items() if k != "fk"} for r in found])
        return
    echo_rows(found, RULE_COLUMNS, as_json=False, empty="(no referential rules)")


def register(cli: click.Group) -> None:
    cli.add_command(refs)
