"""close — the month-end and year-end close: checklist, fiscal year, four-eyes, skipped generations."""

from __future__ import annotations

import click
import psycopg

from ..context import Context, pass_context, rows
from ..output import echo, echo_json, echo_rows, printable
from .locks import cli_hints

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


class TaskError(click.ClickException):
    """A refused close-task operation, in its own words (not the lock operations' LL004 label, nor the
    generic wording of a bad argument); exit 1."""

    def show(self, file=None) -> None:
        echo(self.message, err=True, lines=True)


def _task_call(conn, query: str, params: tuple, scope: str, period: str):
    """Run a close-task function; its refusals (LL004: done already; 22023: no such task) become a task error
    with a hint in CLI terms."""
    try:
        return conn.execute(query, params).fetchone()
    except (psycopg.errors.lookup("LL004"), psycopg.errors.InvalidParameterValue) as exc:
        diag = exc.diag
        # one line of the refusal, printable whatever it names, then the hint
        raise TaskError(f"error: close task: {printable(diag.message_primary or '')}\n"
                        f"hint: list the tasks with: ledgerlock close tasks {scope} {period}") from exc


class TasksGroup(click.Group):
    """`close tasks SCOPE PERIOD --json` is the list as JSON, as before the subcommands."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if len(args) == 3 and args[2] == "--json":
            args = [*args[:2], "list", "--json"]
        return super().parse_args(ctx, args)


@close.group("tasks", cls=TasksGroup, invoke_without_command=True)
@click.argument("scope")
@click.argument("period")
@click.pass_context
def tasks(click_ctx: click.Context, scope: str, period: str) -> None:
    """The close checklist of SCOPE for PERIOD: list (default), add TASK, done ID...

    PERIOD is 2026-03 (a month), 2026-Q1 (a calendar quarter), 2026 (a calendar year), FY2026 (the
    scope's fiscal year starting in 2026), 2026-01-01..2026-06-30, last-month, last-quarter or
    last-fiscal-year. Locking a window with open tasks succeeds and lists them as a warning: the
    checklist never blocks a lock.

    \b
    ledgerlock close tasks 1 2026-03 add "Reconcile the bank accounts"
    ledgerlock close tasks 1 2026-03 [list] [--json]
    ledgerlock close tasks 1 2026-03 done 4 --note "all lines matched"
    """
    click_ctx.meta["ledgerlock.tasks"] = (scope, period)
    if click_ctx.invoked_subcommand is None:
        click_ctx.invoke(task_list, as_json=False)


def _scope_period() -> tuple[str, str]:
    return click.get_current_context().meta["ledgerlock.tasks"]


@tasks.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_context
def task_list(ctx: Context, as_json: bool) -> None:
    """List the checklist (the default)."""
    scope, period = _scope_period()
    with ctx.connect() as conn:
        label = _label(conn, scope, period)
        checklist = _task_rows(conn, scope, period)
    if as_json:
        echo_json(checklist)
        return
    echo_rows(checklist, TASK_COLUMNS, as_json=False, empty=f"(no tasks for scope {scope}, {label})")
    _open_line(checklist, scope, label)


@tasks.command("add")
@click.argument("task", nargs=-1, required=True)
@pass_context
def task_add(ctx: Context, task: tuple[str, ...]) -> None:
    """Add TASK to the checklist (controller)."""
    scope, period = _scope_period()
    text = " ".join(task)
    with ctx.connect_to_write() as conn:
        label = _label(conn, scope, period)
        task_id = _task_call(conn, "SELECT ledgerlock.add_close_task(%s, %s, %s)", (scope, period, text),
                             scope, period)[0]
    echo(f"task #{task_id} on the checklist of scope {scope}, {label}: {text}")


@tasks.command("done")
@click.argument("ids", nargs=-1, required=True, type=int)
@click.option("--note", help="A note kept with the task (e.g. where the evidence is).")
@pass_context
def task_done(ctx: Context, ids: tuple[int, ...], note: str | None) -> None:
    """Mark tasks IDS of this scope and period done (controller); all or none."""
    scope, period = _scope_period()
    with ctx.connect_to_write() as conn:
        label = _label(conn, scope, period)
        known = {r["id"] for r in _task_rows(conn, scope, period)}
        stray = [i for i in ids if i not in known]
        if stray:
            which = ", ".join(f"#{i}" for i in stray)
            raise TaskError(
                f"error: close task {which} {'is' if len(stray) == 1 else 'are'} not on the checklist of scope "
                f"{scope}, {label}; nothing was marked done\n"
                f"hint: list the tasks with: ledgerlock close tasks {scope} {period}")
        with conn.transaction():
            for task_id in ids:
                _task_call(conn, "SELECT ledgerlock.complete_close_task(%s, %s)", (task_id, note), scope, period)
        checklist = _task_rows(conn, scope, period)
    echo(f"done: {', '.join(f'#{i}' for i in ids)}")
    _open_line(checklist, scope, label)


def _label(conn, scope: str, period: str) -> str:
    """The period's label, PERIOD checked (a bad one is a usage error)."""
    try:
        conn.execute("SELECT ledgerlock.period_dates(%s, %s)", (scope, period))
        return conn.execute("SELECT ledgerlock.period_label(%s, %s)", (scope, period)).fetchone()[0]
    except psycopg.Error as exc:
        if exc.sqlstate != "22023":
            raise
        hint = f" ({exc.diag.message_hint})" if exc.diag.message_hint else ""
        raise click.BadParameter(exc.diag.message_primary + hint, param_hint="PERIOD") from exc


def _open_line(checklist: list[dict], scope: str, label: str) -> None:
    still_open = sum(1 for r in checklist if r["status"] == "open")
    n = len(checklist)
    echo(f"{still_open} of {n} task{'s' if n != 1 else ''} open for scope {scope}, {label}")


def _task_rows(conn, scope: str, period: str) -> list[dict]:
    return rows(conn, "SELECT * FROM ledgerlock.close_tasks(%s, %s)", (scope, period))


MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]


@close.command("fiscal-year")
@click.argument("scope")
@click.argument("start_month", type=click.IntRange(1, 12), required=False)
@pass_context
@cli_hints
def fiscal_year(ctx: Context, scope: str, start_month: int | None) -> None:
    """Show, or set (admin), the month SCOPE's fiscal year starts in ('*': the default of every scope).

    It decides --through end-of-last-quarter / end-of-last-fiscal-year and the FY period labels.
    """
    with ctx.connect() as conn:
        if start_month is not None:
            ctx.target.announce(conn)
            conn.execute("SELECT ledgerlock.set_fiscal_year_start(%s, %s)", (scope, start_month))
        month = conn.execute("SELECT ledgerlock.fiscal_year_start_month(%s)", (scope,)).fetchone()[0]
    echo(f"the fiscal year of scope {scope} starts on 1 {MONTHS[month - 1]}")


@close.command("four-eyes")
@click.argument("state", type=click.Choice(["on", "off"]), required=False)
@click.option("--ttl", metavar="INTERVAL", help="How long a request stays valid, e.g. '4 hours' (default 24 hours).")
@click.option("--reason", help="With off, while four-eyes is on: why (the request another admin approves).")
@pass_context
@cli_hints
def four_eyes(ctx: Context, state: str | None, ttl: str | None, reason: str | None) -> None:
    """Show or set four-eyes unlocking of hard windows (admin).

    With four-eyes on, `ledgerlock unlock ID --reason R` on a hard window files a request that a different
    admin approves (`ledgerlock unlock approve REQUEST_ID`) before it expires. Turning it off again takes
    a second admin, too: `off --reason R` files that request.
    """
    with ctx.connect() as conn:
        on = conn.execute("SELECT four_eyes_unlock FROM ledgerlock.close_setting").fetchone()[0]
        if state is not None or ttl is not None:
            ctx.target.announce(conn)
        if state == "off" and on:
            if not reason:
                raise click.UsageError("four-eyes is on: turning it off files a request; give --reason")
            request_id = conn.execute("SELECT ledgerlock.request_four_eyes_off(%s)", (reason,)).fetchone()[0]
            echo(f"filed request #{request_id} to turn four-eyes off; a different admin approves it with:\n"
                       f"  ledgerlock unlock approve {request_id}", lines=True)
        elif state is not None or ttl is not None:
            conn.execute("SELECT ledgerlock.set_four_eyes(%s, %s::interval)",
                         (state == "on" if state is not None else on, ttl))
        row = conn.execute(
            "SELECT four_eyes_unlock, unlock_request_ttl::text FROM ledgerlock.close_setting").fetchone()
    echo(f"four-eyes unlocking of hard windows: {'on' if row[0] else 'off'} (requests expire after {row[1]})")


@close.command("skipped")
@click.option("--context", "label", metavar="LABEL", help="Only this context label (e.g. recurring:rent).")
@click.option("--since", metavar="TIMESTAMP", help="Only skips recorded since, e.g. 2026-04-01.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_context
@cli_hints
def skipped(ctx: Context, label: str | None, since: str | None, as_json: bool) -> None:
    """Writes skipped because their date lay in a locked period, per context label: "N skipped generations".

    Recurring jobs and imports write in skip mode (SET LOCAL ledgerlock.on_locked = 'skip') with a
    context label (SET LOCAL ledgerlock.context = 'recurring:rent'); this is where nothing they skipped
    goes unnoticed (re-posted ones no longer count). The rows themselves: `ledgerlock skipped`; re-post one
    with `ledgerlock skipped repost ID`.
    """
    with ctx.connect() as conn:
        counts = rows(conn, "SELECT * FROM ledgerlock.skipped_generations(%s, %s::timestamptz)", (label, since))
    if as_json:
        echo_json(counts)
        return
    if not counts:
        echo("no skipped writes" + (f" for context {label}" if label else ""))
        return
    for r in counts:
        n = r["skipped"]
        locks = ", ".join(f"#{i}" for i in r["lock_ids"])
        echo(f"{r['context'] or '(no context)'}: {n} skipped generation{'s' if n != 1 else ''} "
                   f"({r['table_name']}, scope {r['scope']}, lock{'s' if len(r['lock_ids']) != 1 else ''} {locks}; "
                   f"{r['first_at']:%Y-%m-%d %H:%M} .. {r['last_at']:%Y-%m-%d %H:%M})")


def register(cli: click.Group) -> None:
    cli.add_command(close)
