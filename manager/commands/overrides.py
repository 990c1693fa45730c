"""override · skipped · skipped repost — writing into a soft-locked window with a reason, and the writes skipped
by locks, listed and re-posted."""

from __future__ import annotations

import click

from ..context import Context, pass_context, rows
from ..output import echo, echo_json, echo_rows
from .locks import _show_notices, cli_hints


@click.command()
@click.option("--reason", required=True, help="Why the locked period is changed (required; kept with the changes).")
@click.option("--sql", "sql_file", type=click.File("r", encoding="utf-8"), metavar="FILE",
              help="Run the statements of FILE ('-': standard input).")
@click.option("-c", "--command", "statement", metavar="STATEMENT", help="Run this statement.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: {override_id, statements: [{status, rows}]}.")
@pass_context
@cli_hints
def override(ctx: Context, reason: str, sql_file, statement: str | None, as_json: bool) -> None:
    """Run SQL in one transaction under ledgerlock.begin_override(REASON): a controller's write into a
    soft-locked window, recorded with its reason. All or nothing; hard windows admit no override.

    \b
    ledgerlock override --reason "supplier credit note" -c "UPDATE invoice SET amount = 90 WHERE id = 4"
    ledgerlock override --reason "restated March" --sql fix.sql
    """
    if (sql_file is None) == (statement is None):
        raise click.UsageError("give either --sql FILE or -c STATEMENT")
    text = sql_file.read() if sql_file is not None else statement
    if not text.strip() or not _has_statement(text):
        raise click.UsageError(f"{'the file ' + sql_file.name if sql_file is not None else 'the statement'} "
                               "holds no SQL statement; nothing was run")
    with ctx.connect_to_write() as conn:
        _show_notices(conn)
        with conn.transaction():
            override_id = conn.execute("SELECT ledgerlock.begin_override(%s)", (reason,)).fetchone()[0]
            cur = conn.cursor()
            cur.execute(text.encode())  # bytes: no parameter parsing, several statements allowed
            results = []
            while True:
                results.append({"status": cur.statusmessage, "rows": cur.rowcount})
                if not cur.nextset():
                    break
    if as_json:
        echo_json({"override_id": override_id, "statements": results})
        return
    for r in results:
        rows = r["rows"]
        echo(f"{r['status']}: {rows} row{'s' if rows != 1 else ''} touched" if rows >= 0 else r["status"])
    touched = sum(max(r["rows"], 0) for r in results)
    echo(f"override #{override_id} committed: {touched} row{'s' if touched != 1 else ''} touched "
               f"({reason})")


def _has_statement(text: str) -> bool:
    """Anything but comments, blanks and semicolons."""
    lines = [ln.split("--", 1)[0] for ln in text.splitlines()]
    return bool("".join(lines).replace(";", "").strip())


SKIP_COLUMNS = ["id", "at", "context", "table_name", "scope", "lock_id", "row_key", "db_user", "reposted"]


@click.group(invoke_without_command=True)
@click.option("--context", "label", metavar="LABEL", help="Only this context label (e.g. recurring:rent).")
@click.option("--since", metavar="TIMESTAMP", help="Only skips recorded since, e.g. 2026-04-01.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts (the rows, with their data).")
@click.pass_context
def skipped(click_ctx: click.Context, label: str | None, since: str | None, as_json: bool) -> None:
    """The writes skipped because their date lay in a locked period, one per row (ledgerlock.skipped_writes),
    with whether each was re-posted; `skipped repost ID` re-posts one.

    `ledgerlock close skipped` counts them per context.

    \b
    ledgerlock skipped --context recurring:rent
    ledgerlock skipped repost 12 --date 2026-04-01
    """
    if click_ctx.invoked_subcommand is not None:
        return
    ctx = click_ctx.find_object(Context)
    with ctx.connect() as conn:
        found = rows(conn, """SELECT id, at, context, table_name, scope, lock_id, row_key, row_data, db_user, actor,
                                     reposted_at, reposted_by, reposted_key
                              FROM ledgerlock.skipped_writes
                              WHERE (%(c)s::text IS NULL OR context = %(c)s)
                                AND (%(s)s::timestamptz IS NULL OR at >= %(s)s::timestamptz)
                              ORDER BY id""", {"c": label, "s": since})
    for r in found:
        r["reposted"] = (f"re-posted {r['reposted_at']:%Y-%m-%d} by {r['reposted_by']}" if r["reposted_at"]
                         else "")
    echo_rows([{k: v for k, v in r.items() if k != "reposted"} for r in found] if as_json else found,
              SKIP_COLUMNS, as_json=as_json, empty="(no skipped writes" + (f" for context {label})" if label else ")"))


@skipped.command("repost")
@click.argument("skip_id", type=int, metavar="ID")
@click.option("--date", "new_date", type=click.DateTime(formats=["%Y-%m-%d"]),
              help="Date the row in an open period instead (default: its own date, once its window is unlocked).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: {skip_id, table, key, date}.")
@pass_context
@cli_hints
def repost(ctx: Context, skip_id: int, new_date, as_json: bool) -> None:
    """Insert skipped write ID again (ledgerlock.repost_skipped), once: as you, through every rule.

    A controller or admin of the row's scope, with INSERT on its table. The row keeps its date when its
    window has been unlocked; --date moves it into an open period. A date still locked is refused (the row
    is not skipped again).
    """
    day = new_date.date() if new_date else None
    with ctx.connect_to_write() as conn:
        _show_notices(conn)
        key = conn.execute("SELECT ledgerlock.repost_skipped(%s, %s)", (skip_id, day)).fetchone()[0]
        table = conn.execute("SELECT table_name FROM ledgerlock.skipped_writes WHERE id = %s", (skip_id,)).fetchone()[0]
    if as_json:
        echo_json({"skip_id": skip_id, "table": table, "key": key, "date": day})
        return
    names = " ".join(f"{k}={v}" for k, v in key.items())
    echo(f"re-posted skipped write #{skip_id} as {table} {names} ("
               + (f"dated {day})" if day else "dated as recorded)"))


def register(cli: click.Group) -> None:
    cli.add_command(override)
    cli.add_command(skipped)
