"""close — the month-end and year-end close: checklist, fiscal year, four-eyes, skipped generations."""

from __future__ import annotations

import click

from ..cli import Context, pass_context
from ..output import echo_json, echo_rows

TASK_COLUMNS = ["id", "period", "task", "status", "done_by", "done_at", "done_note"]


@click.group()
def close() -> None:
    """The close of a period: checklist, fiscal year, four-eyes unlocks, skipped generations.

    \b
    ledgerlock close tasks 1 2026-03 add "Reconcile the bank accounts"
    ledgerlock close tasks 1 2026-03            (list)
    ledgerlock close tasks 1 2026-03 done 4 --note "all lines matched"
    ledgerlock lock 1 --through end-of-last-month
    """


@close.command("tasks")
@click.argument("scope")
@click.argument("period")
@click.argument("action", type=click.Choice(["list", "add", "done"]), default="list", required=False)
@click.argument("args", nargs=-1)
@click.option("--note", help="With done: a note kept with the task (e.g. where the evidence is).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts (list).")
@pass_context
def tasks(ctx: Context, scope: str, period: str, action: str, args: tuple[str, ...], note: str | None,
          as_json: bool) -> None:
    """The close checklist of SCOPE for PERIOD: list (default), add TASK, done ID...

    PERIOD is 2026-03 (a month), 2026-Q1 (a calendar quarter), 2026 (a calendar year), FY2026 (the
    scope's fiscal year starting in 2026) or 2026-01-01..2026-06-30. Locking a window with open tasks
    succeeds and lists them as a warning: the checklist never blocks a lock.
    """
    with ctx.connect() as conn:
        label = conn.execute("SELECT ledgerlock.period_label(%s, %s)", (scope, period)).fetchone()[0]
        if action == "add":
            if not args:
                raise click.UsageError("add needs the task, e.g.: close tasks 1 2026-03 add \"Bank reconciliation\"")
            task_id = conn.execute("SELECT ledgerlock.add_close_task(%s, %s, %s)",
                                   (scope, period, " ".join(args))).fetchone()[0]
            click.echo(f"task #{task_id} on the checklist of scope {scope}, {label}: {' '.join(args)}")
            return
        if action == "done":
            if not args:
                raise click.UsageError("done needs task ids, e.g.: close tasks 1 2026-03 done 4")
            try:
                ids = [int(a) for a in args]
            except ValueError as exc:
                raise click.UsageError(f"done takes task ids (numbers), not {args!r}") from exc
            with conn.transaction():
                for task_id in ids:
                    conn.execute("SELECT ledgerlock.complete_close_task(%s, %s)", (task_id, note))
            click.echo(f"done: {', '.join(f'#{i}' for i in ids)}")
        rows = _task_rows(conn, scope, period)
        if as_json and action == "list":
            echo_json(rows)
            return
        if action == "list":
            echo_rows(rows, TASK_COLUMNS, as_json=False, empty=f"(no tasks for scope {scope}, {label})")
        still_open = sum(1 for r in rows if r["status"] == "open")
        click.echo(f"{still_open} of {len(rows)} task{'s' if len(rows) != 1 else ''} open for scope {scope}, "
                   f"{label}")


def _task_rows(conn, scope: str, period: str) -> list[dict]:
    cur = conn.execute("SELECT * FROM ledgerlock.close_tasks(%s, %s)", (scope, period))
    names = [d.name for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]


@close.command("fiscal-year")
@click.argument("scope")
@click.argument("start_month", type=click.IntRange(1, 12), required=False)
@pass_context
def fiscal_year(ctx: Context, scope: str, start_month: int | None) -> None:
    """Show, or set (admin), the month SCOPE's fiscal year starts in ('*': the default of every scope).

    It decides --through end-of-last-quarter / end-of-last-fiscal-year and the FY period labels.
    """
    with ctx.connect() as conn:
        if start_month is not None:
            conn.execute("SELECT ledgerlock.set_fiscal_year_start(%s, %s)", (scope, start_month))
        month = conn.execute("SELECT ledgerlock.fiscal_year_start_month(%s)", (scope,)).fetchone()[0]
    click.echo(f"the fiscal year of scope {scope} starts on 1 {MONTHS[month - 1]}")


@close.command("four-eyes")
@click.argument("state", type=click.Choice(["on", "off"]), required=False)
@click.option("--ttl", metavar="INTERVAL", help="How long a request stays valid, e.g. '4 hours' (default 24 hours).")
@click.option("--reason", help="With off, while four-eyes is on: why (the request another admin approves).")
@pass_context
def four_eyes(ctx: Context, state: str | None, ttl: str | None, reason: str | None) -> None:
    """Show or set four-eyes unlocking of hard windows (admin).

    With four-eyes on, `ledgerlock unlock ID --reason R` on a hard window files a request that a different
    admin approves (`ledgerlock unlock --approve REQUEST_ID`) before it expires. Turning it off again takes
    a second admin, too: `off --reason R` files that request.
    """
    with ctx.connect() as conn:
        on = conn.execute("SELECT four_eyes_unlock FROM ledgerlock.close_setting").fetchone()[0]
        if state == "off" and on:
            if not reason:
                raise click.UsageError("four-eyes is on: turning it off files a request; give --reason")
            request_id = conn.execute("SELECT ledgerlock.request_four_eyes_off(%s)", (reason,)).fetchone()[0]
            click.echo(f"filed request #{request_id} to turn four-eyes off; a different admin approves it with:\n"
                       f"  ledgerlock unlock --approve {request_id}")
        elif state is not None or ttl is not None:
            conn.execute("SELECT ledgerlock.set_four_eyes(%s, %s::interval)",
                         (state == "on" if state is not None else on, ttl))
        row = conn.execute(
            "SELECT four_eyes_unlock, unlock_request_ttl::text FROM ledgerlock.close_setting").fetchone()
    click.echo(f"four-eyes unlocking of hard windows: {'on' if row[0] else 'off'} (requests expire after {row[1]})")


@close.command("skipped")
@click.option("--context", "label", metavar="LABEL", help="Only this context label (e.g. recurring:rent).")
@click.option("--since", metavar="TIMESTAMP", help="Only skips recorded since, e.g. 2026-04-01.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_context
def skipped(ctx: Context, label: str | None, since: str | None, as_json: bool) -> None:
    """Writes skipped because their date lay in a locked period, per context label: "N skipped generations".

    Recurring jobs and imports write in skip mode (SET LOCAL ledgerlock.on_locked = 'skip') with a
    context label (SET LOCAL ledgerlock.context = 'recurring:rent'); this is where nothing they skipped
    goes unnoticed. The rows themselves are in the view ledgerlock.skipped_writes.
    """
    with ctx.connect() as conn:
        cur = conn.execute("SELECT * FROM ledgerlock.skipped_generations(%s, %s::timestamptz)", (label, since))
        names = [d.name for d in cur.description]
        rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("no skipped writes" + (f" for context {label}" if label else ""))
        return
    for r in rows:
        n = r["skipped"]
        locks = ", ".join(f"#{i}" for i in r["lock_ids"])
        click.echo(f"{r['context'] or '(no context)'}: {n} skipped generation{'s' if n != 1 else ''} "
                   f"({r['table_name']}, scope {r['scope']}, lock{'s' if len(r['lock_ids']) != 1 else ''} {locks}; "
                   f"{r['first_at']:%Y-%m-%d %H:%M} .. {r['last_at']:%Y-%m-%d %H:%M})")


def register(cli: click.Group) -> None:
    cli.add_command(close)
