"""lock · upgrade · unlock · relock · locks · history — period locks (R3).

Every command calls the SQL API (ledgerlock.lock_period, lock_through, upgrade_lock, unlock_period, relock)
as the connecting database user: what it may do is decided by its ledgerlock role and scope grants, in the
database. Refusals come back as one line with the SQLSTATE's meaning (ManagerGroup).
"""

from __future__ import annotations

import datetime as dt
import functools
import re

import click
import psycopg
import psycopg.sql

from .. import errors as ll_errors
from ..context import Context, pass_context, rows
from ..output import echo, echo_json, echo_rows, printable

DATE = click.DateTime(formats=["%Y-%m-%d"])

LOCK_COLUMNS = """id, scope, from_date::text AS from_date, to_date::text AS to_date, level, ledgers, status, note,
    reviewer, locked_by, locked_at, upgraded_by, unlocked_by, unlock_reason, relock_of, relocked_as"""


def period_text(from_date: str, to_date: str) -> str:
    return f"up to {to_date}" if from_date == "-infinity" else f"{from_date}..{to_date}"


def _lock_row(conn, lock_id: int) -> dict:
    row = rows(conn, f"SELECT {LOCK_COLUMNS} FROM ledgerlock.period_locks WHERE id = %s", (lock_id,))[0]
    row["period"] = period_text(row["from_date"], row["to_date"])
    return row


def _describe(row: dict) -> str:
    ledgers = f", ledgers {printable(','.join(row['ledgers']))}" if row["ledgers"] else ""
    return (f"lock #{row['id']}: scope {printable(row['scope'])} {row['period']} ({row['level']}{ledgers}, "
            f"{row['status']})")


def _day(value: dt.datetime | None) -> dt.date | None:
    return value.date() if value else None


# --through presets: the date comes from ledgerlock.preset_through, so the CLI and SQL agree
PRESETS = ("end-of-last-month", "end-of-last-quarter", "end-of-last-fiscal-year")


class ThroughDate(click.ParamType):
    name = "DATE|PRESET"

    def convert(self, value, param, ctx):
        if isinstance(value, dt.datetime) or value in PRESETS:
            return value
        try:
            return dt.datetime.strptime(value, "%Y-%m-%d")
        except ValueError:
            self.fail(f"{value!r} is neither a date (YYYY-MM-DD) nor one of {', '.join(PRESETS)}", param, ctx)


# The database's hints name SQL (other tools rely on those texts); where the CLI has the command, the CLI
# prints the command instead. Placeholders: an id stays, 'reason' / '<reason>' / lock_id become words.
_SQL_HINTS = [
    (r"(?:SELECT )?ledgerlock\.unlock_period\((\w+), [^)]*\)", r'ledgerlock unlock \1 --reason "..."'),
    (r"(?:SELECT )?ledgerlock\.request_unlock\((\w+), [^)]*\)", r'ledgerlock unlock \1 --reason "..."'),
    (r"(?:SELECT )?ledgerlock\.approve_unlock\((\w+)\)", r"ledgerlock unlock approve \1"),
    (r"(?:SELECT )?ledgerlock\.withdraw_unlock\((\w+)\)", r"ledgerlock unlock withdraw \1"),
    (r"ledgerlock unlock --(approve|withdraw|pending)\b", r"ledgerlock unlock \1"),
    (r"(?:SELECT )?ledgerlock\.request_four_eyes_off\([^)]*\)", r'ledgerlock close four-eyes off --reason "..."'),
    (r"(?:SELECT )?ledgerlock\.relock\((\w+)\)", r"ledgerlock relock \1"),
    (r"(?:SELECT )?ledgerlock\.grant_scope\(role, scope\)", r"ledgerlock grant ROLE SCOPE"),
    (r"(?:SELECT )?ledgerlock\.close_tasks\(scope, period\)", r"ledgerlock close tasks SCOPE PERIOD"),
    (r"(write with |writes under )(?:SELECT )?ledgerlock\.begin_override\([^)]*\)(?: in the same transaction)?",
     r'\1ledgerlock override --reason "..." -c STATEMENT'),
]
_ID_WORDS = {"lock_id": "LOCK_ID", "request_id": "REQUEST_ID"}


def cli_hint(hint: str | None) -> str | None:
    """A database hint with the SQL calls the CLI has a command for written as that command."""
    if not hint:
        return hint
    for pattern, replacement in _SQL_HINTS:
        hint = re.sub(pattern, replacement, hint)
    hint = re.sub(r"\(CLI: ([^)]*)\)", "", hint)  # the SQL hint's own CLI aside, now redundant
    for word, upper in _ID_WORDS.items():
        hint = re.sub(rf"(ledgerlock [a-z -]*?)\b{word}\b", rf"\1{upper}", hint)
    return re.sub(r"  +", " ", hint).replace(" ;", ";")


class DatabaseRefusal(click.ClickException):
    """A database refusal printed as the manager prints it (error SQLSTATE (meaning): message), with its
    hint in CLI terms; exit 1."""

    exit_code = 1

    def __init__(self, exc: psycopg.Error):
        diag = exc.diag
        self.sqlstate = diag.sqlstate
        message = (diag.message_primary or str(exc)).strip()
        super().__init__(f"error {diag.sqlstate} ({ll_errors.describe(diag.sqlstate, message)}): {message}")
        self.hint = cli_hint(diag.message_hint)

    def show(self, file=None) -> None:
        echo(self.message, err=True)
        if self.hint:
            echo(f"hint: {self.hint}", err=True)


def cli_hints(command):
    """Decorate a command so that a database refusal's hint names the CLI command instead of the SQL."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except psycopg.Error as exc:
            if exc.diag is None or not exc.diag.sqlstate or cli_hint(exc.diag.message_hint) == exc.diag.message_hint:
                raise
            raise DatabaseRefusal(exc) from exc
    return wrapper


def _show_notices(conn) -> None:
    """The database's warnings (e.g. open close tasks when a period is locked) go to the user, on stderr."""
    def show(diag: psycopg.errors.Diagnostic) -> None:
        echo(f"warning: {diag.message_primary}", fg="yellow", err=True)
        if diag.message_hint:
            echo(f"hint: {cli_hint(diag.message_hint)}", err=True)
    conn.add_notice_handler(show)


@click.command()
@click.argument("scope")
@click.option("--through", type=ThroughDate(),
              help="Lock from the day after the current locked span through this date, or through a preset: "
              "end-of-last-month, end-of-last-quarter, end-of-last-fiscal-year (asks for confirmation).")
@click.option("--from", "from_date", type=DATE, help="First day of the window (with --to).")
@click.option("--to", "to_date", type=DATE, help="Last day of the window (with --from), inclusive.")
@click.option("--hard", is_flag=True, help="Hard (final) lock: no override; only an admin can unlock it.")
@click.option("--note", help="Why the period is locked, e.g. 'March VAT return filed'.")
@click.option("--reviewer", help="Who reviewed the period.")
@click.option("--ledger", "ledgers", multiple=True, help="Lock only tables with this ledger tag (repeatable).")
@click.option("--allow-future", is_flag=True, help="Allow a window that ends after today.")
@click.option("--json", "as_json", is_flag=True, help="Print the new lock as JSON.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation of a preset (for scripts).")
@pass_context
@cli_hints
def lock(ctx: Context, scope: str, through, from_date, to_date, hard: bool, note, reviewer,
         ledgers: tuple[str, ...], allow_future: bool, as_json: bool, yes: bool) -> None:
    """Lock a period of SCOPE (a company, entity… '*' for tables without a scope column).

    \b
    ledgerlock lock 7 --through 2026-03-31            books of scope 7 locked through March
    ledgerlock lock 7 --from 2026-03-01 --to 2026-03-31 --hard --note "VAT filed"
    ledgerlock lock 7 --through end-of-last-month     shows the window, asks (--yes for scripts)
    """
    if through and (from_date or to_date):
        raise click.UsageError("give either --through DATE or --from D --to D, not both")
    if not through and not (from_date and to_date):
        raise click.UsageError("give --through DATE, or both --from D and --to D")
    level = "hard" if hard else "soft"
    with ctx.connect_to_write() as conn:
        _show_notices(conn)
        _check_scope_and_ledgers(conn, scope, ledgers)
        if through in PRESETS:
            through = _confirm_preset(conn, scope, through, level, list(ledgers) or None, yes)
        if through:
            lock_id = conn.execute(
                "SELECT ledgerlock.lock_through(%s, %s, %s, %s, %s, %s, %s)",
                (scope, _day(through), level, note, reviewer, list(ledgers) or None, allow_future),
            ).fetchone()[0]
        else:
            lock_id = conn.execute(
                "SELECT ledgerlock.lock_period(%s, %s, %s, %s, %s, %s, %s, %s)",
                (scope, _day(from_date), _day(to_date), level, note, reviewer, list(ledgers) or None, allow_future),
            ).fetchone()[0]
        row = _lock_row(conn, lock_id)
    if as_json:
        echo_json(row)
    else:
        echo(f"locked {_describe(row)}")


def _check_scope_and_ledgers(conn, scope: str, ledgers: tuple[str, ...]) -> None:
    """A ledger no protected table carries binds nothing: refused (usage, exit 2) with the known ones. A scope
    seen in no row of the protected tables (which have rows) and in no lock is probably a typo: warned about
    on stderr, allowed (locking ahead of the first rows is legitimate)."""
    known = [r[0] for r in conn.execute("SELECT DISTINCT ledger FROM ledgerlock.protected_table "
                                        "WHERE ledger IS NOT NULL ORDER BY 1")]
    unknown = [g for g in ledgers if g.strip() not in known]
    if unknown:
        names = ", ".join(unknown)
        raise click.BadParameter(
            f"no protected table has the ledger {names}; the known ledgers are: "
            f"{', '.join(known) if known else '(none: no protected table has a ledger tag)'}",
            param_hint="--ledger")
    if not _scope_seen(conn, scope):
        echo(f"warning: scope {scope} appears in no protected table and no lock; locking it anyway",
                    fg="yellow", err=True)


def _scope_seen(conn, scope: str) -> bool:
    """Whether a lock, or a row of a protected table the caller may read, has this scope ('*': a table
    without a scope column). No rows at all, or a table the caller cannot read, count as seen: no evidence
    of a typo, no warning."""
    if conn.execute("SELECT EXISTS (SELECT FROM ledgerlock.period_locks WHERE scope = %s)", (scope,)).fetchone()[0]:
        return True
    tables = conn.execute("SELECT tbl::text, scope_column FROM ledgerlock.protected_table").fetchall()
    if scope == "*" and any(col is None for _, col in tables):
        return True
    any_rows = False
    for tbl, col in tables:
        if col is None:
            continue
        try:
            with conn.transaction():
                found, rows = conn.execute(
                    psycopg.sql.SQL("SELECT EXISTS (SELECT FROM {t} WHERE {c}::text = %s), EXISTS (SELECT FROM {t})")
                    .format(t=psycopg.sql.SQL(tbl), c=psycopg.sql.Identifier(col)), (scope,)).fetchone()
        except (psycopg.errors.InsufficientPrivilege, psycopg.errors.UndefinedColumn):
            return True  # unreadable, or a scope read from a parent row ('ledger_id.entity_id'): no evidence
        if found:
            return True
        any_rows = any_rows or rows
    return not any_rows


def _confirm_preset(conn, scope: str, preset: str, level: str, ledgers: list[str] | None, yes: bool) -> dt.datetime:
    """The date of the preset, after showing the window it locks and asking (unless --yes)."""
    through = conn.execute("SELECT ledgerlock.preset_through(%s, %s)", (scope, preset)).fetchone()[0]
    ends = [conn.execute("SELECT ledgerlock.locked_through(%s, %s)", (scope, ledger)).fetchone()[0]
            for ledger in (ledgers or [None])]
    start = None if None in ends else min(ends) + dt.timedelta(days=1)
    if start and start > through:  # checked before anything is shown as if it would happen
        raise click.ClickException(
            f"the books of scope {scope} are already locked through {start - dt.timedelta(1)}, after {preset} "
            f"({through}); nothing to lock")
    window = f"{start}..{through}" if start else f"everything up to {through}"
    on = f", ledgers {','.join(ledgers)}" if ledgers else ""
    echo(f"{preset} for scope {scope}: lock {window} ({level}{on})")
    if not yes:
        click.confirm("Lock this window?", abort=True)
    return dt.datetime.combine(through, dt.time())


@click.command()
@click.argument("lock_id", type=int)
@click.option("--reviewer", help="Who reviewed the period (recorded on the lock).")
@click.option("--json", "as_json", is_flag=True, help="Print the lock as JSON.")
@pass_context
@cli_hints
def upgrade(ctx: Context, lock_id: int, reviewer: str | None, as_json: bool) -> None:
    """Upgrade soft lock LOCK_ID to hard ("mark as reviewed"). One way: there is no downgrade."""
    with ctx.connect_to_write() as conn:
        _show_notices(conn)
        conn.execute("SELECT ledgerlock.upgrade_lock(%s, %s)", (lock_id, reviewer))
        row = _lock_row(conn, lock_id)
    if as_json:
        echo_json(row)
    else:
        echo(f"upgraded {_describe(row)}")


REQUEST_COLUMNS = ["id", "action", "lock_id", "scope", "reason", "requested_by", "requested_at", "expires_at"]


def _unlock_result(as_json: bool, action: str, text: str, lock: dict | None = None, request_id: int | None = None,
                   requests: list | None = None) -> None:
    """unlock's one JSON shape: {action, lock, request_id, requests}; text for people."""
    if as_json:
        echo_json({"action": action, "lock": lock, "request_id": request_id, "requests": requests or []})
    elif text:
        echo(text, lines=True)  # its parts from the database are printable (_describe)


class UnlockGroup(click.Group):
    """`unlock LOCK_ID --reason R` (anything that names no subcommand) runs the hidden subcommand `window`;
    the flag spellings `--approve N`, `--withdraw N` and `--pending` name the subcommands of the same name."""

    FLAGS = {"--approve": "approve", "--withdraw": "withdraw", "--pending": "pending"}

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        flags = [a for a in args if a in self.FLAGS]
        if len(flags) > 1:
            raise click.UsageError("give one of approve, withdraw, pending", ctx)
        if flags:
            at = args.index(flags[0])
            args = [self.FLAGS[flags[0]], *args[:at], *args[at + 1:]]
        elif args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["window", *args]
        return super().parse_args(ctx, args)


@click.group(cls=UnlockGroup)
def unlock() -> None:
    """Unlock a window, or handle four-eyes unlock requests.

    \b
    ledgerlock unlock LOCK_ID --reason R     the window opens, its row stays (marked unlocked)
    ledgerlock unlock pending                requests waiting for a second admin
    ledgerlock unlock approve REQUEST_ID     a second admin approves a request
    ledgerlock unlock withdraw REQUEST_ID    the admin who filed a request withdraws it

    A controller unlocks soft locks; a hard lock needs an admin — and, with four-eyes on
    (ledgerlock close four-eyes), a request that a second admin approves. Every form takes --json:
    {action, lock, request_id, requests}.
    """


@unlock.command("window", hidden=True)
@click.argument("lock_id", type=int)
@click.option("--reason", required=True, help="Why the period is reopened (required; kept in the lock history).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts: {action, lock, request_id, requests}.")
@pass_context
@cli_hints
def unlock_window(ctx: Context, lock_id: int, reason: str, as_json: bool) -> None:
    """Unlock LOCK_ID: the window opens, its row stays (marked unlocked) and the reason is recorded."""
    with ctx.connect_to_write() as conn:
        if conn.execute("SELECT ledgerlock.four_eyes_required(%s)", (lock_id,)).fetchone()[0]:
            req = conn.execute("SELECT ledgerlock.request_unlock(%s, %s)", (lock_id, reason)).fetchone()[0]
            _unlock_result(as_json, "requested",
                           f"filed unlock request #{req} for lock #{lock_id}; another admin approves it with:\n"
                           f"  ledgerlock unlock approve {req}\n"
                           f"withdraw it with: ledgerlock unlock withdraw {req}",
                           lock=_lock_row(conn, lock_id), request_id=req)
            return
        conn.execute("SELECT ledgerlock.unlock_period(%s, %s)", (lock_id, reason))
        row = _lock_row(conn, lock_id)
    _unlock_result(as_json, "unlocked", f"unlocked {_describe(row)}\nlock it again with: ledgerlock relock {lock_id}",
                   lock=row)


@unlock.command("approve")
@click.argument("request_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts: {action, lock, request_id, requests}.")
@pass_context
@cli_hints
def unlock_approve(ctx: Context, request_id: int, as_json: bool) -> None:
    """Approve another admin's request REQUEST_ID: the window unlocks with the request's reason (or four-eyes
    turns off). A refused approval is recorded in the lock history."""
    with ctx.connect_to_write() as conn:
        try:
            lock_id = conn.execute("SELECT ledgerlock.approve_unlock(%s)", (request_id,)).fetchone()[0]
        except (psycopg.errors.lookup("LL004"), psycopg.errors.lookup("LL005")):
            # the refusal rolled back; record it in a transaction of its own (the function re-checks it)
            conn.execute("SELECT ledgerlock.record_unlock_refusal(%s)", (request_id,))
            raise
        if lock_id is None:
            _unlock_result(as_json, "approved", f"approved request #{request_id}", request_id=request_id)
            return
        row = _lock_row(conn, lock_id)
    _unlock_result(as_json, "unlocked", f"unlocked {_describe(row)}\nlock it again with: ledgerlock relock {lock_id}",
                   lock=row, request_id=request_id)


@unlock.command("withdraw")
@click.argument("request_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts: {action, lock, request_id, requests}.")
@pass_context
@cli_hints
def unlock_withdraw(ctx: Context, request_id: int, as_json: bool) -> None:
    """Withdraw your pending request REQUEST_ID."""
    with ctx.connect_to_write() as conn:
        conn.execute("SELECT ledgerlock.withdraw_unlock(%s)", (request_id,))
    _unlock_result(as_json, "withdrawn", f"withdrew unlock request #{request_id}", request_id=request_id)


@unlock.command("pending")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts: {action, lock, request_id, requests}.")
@pass_context
def unlock_pending(ctx: Context, as_json: bool) -> None:
    """The unlock requests waiting for a second admin."""
    with ctx.connect() as conn:
        found = rows(conn, "SELECT * FROM ledgerlock.unlock_requests()")
    if as_json:
        _unlock_result(True, "pending", "", requests=found)
    else:
        echo_rows(found, REQUEST_COLUMNS, as_json=False, empty="(no pending unlock requests)")


@click.command()
@click.argument("lock_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the new lock as JSON.")
@pass_context
@cli_hints
def relock(ctx: Context, lock_id: int, as_json: bool) -> None:
    """Lock again the window of unlocked LOCK_ID (same dates, level, ledgers, note and reviewer)."""
    with ctx.connect_to_write() as conn:
        new_id = conn.execute("SELECT ledgerlock.relock(%s)", (lock_id,)).fetchone()[0]
        row = _lock_row(conn, new_id)
    if as_json:
        echo_json(row)
    else:
        echo(f"relocked lock #{lock_id} as {_describe(row)}")


@click.command()
@click.argument("scope", required=False)
@click.option("--active", is_flag=True, help="Only active windows.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_context
def locks(ctx: Context, scope: str | None, active: bool, as_json: bool) -> None:
    """List lock windows (of SCOPE), and the date the books are locked through."""
    with ctx.connect() as conn:
        found = rows(conn, f"""SELECT {LOCK_COLUMNS} FROM ledgerlock.period_locks
                               WHERE (%(scope)s::text IS NULL OR scope = %(scope)s)
                                 AND (NOT %(active)s OR status = 'active')
                               ORDER BY scope, from_date, id""", {"scope": scope, "active": active})
        through = conn.execute("SELECT ledgerlock.locked_through(%s)::text", (scope,)).fetchone()[0] \
            if scope is not None else None
    for r in found:
        r["period"] = period_text(r["from_date"], r["to_date"])
    if as_json:
        # one shape with or without SCOPE (without one, scope and locked_through are null)
        echo_json({"scope": scope, "locked_through": through, "locks": found})
        return
    echo_rows(found, ["id", "scope", "period", "level", "ledgers", "status", "note", "reviewer", "locked_by",
                     "unlock_reason"], as_json=False, empty="(no locks)")
    if scope is not None:
        echo()
        echo(_through_line(scope, through, found))


def _through_line(scope: str, through: str | None, rows: list[dict]) -> str:
    """The report banner; with no date, why: nothing locked, or the earliest window is unlocked."""
    if through:
        return f"books of scope {scope} locked through: {through}"
    unlocked = [r for r in rows if r["status"] == "unlocked" and r["relocked_as"] is None]
    if not unlocked:
        return f"books of scope {scope} locked through: (nothing locked)"
    first = unlocked[0]  # rows are ordered by from_date
    return (f"books of scope {scope} are not locked through any date: lock #{first['id']} ({first['period']}) "
            f"is unlocked")


@click.command()
@click.argument("scope", required=False)
@click.option("--limit", type=int, default=100, show_default=True, help="Most recent events only.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_context
def history(ctx: Context, scope: str | None, limit: int, as_json: bool) -> None:
    """The lock history (of SCOPE): lock, advance, upgrade, unlock, relock, override… oldest first."""
    with ctx.connect() as conn:
        found = rows(conn, """SELECT * FROM (
                                  SELECT id, at, kind, lock_id, scope, db_user, actor, reason, context, details
                                  FROM ledgerlock.lock_history
                                  WHERE %(scope)s::text IS NULL OR scope = %(scope)s
                                  ORDER BY id DESC LIMIT %(limit)s) h
                              ORDER BY id""", {"scope": scope, "limit": limit})
    echo_rows(found, ["id", "at", "kind", "lock_id", "scope", "db_user", "actor", "reason"], as_json=as_json,
              empty="(no lock events)")


def register(cli: click.Group) -> None:
    for command in (lock, upgrade, unlock, relock, locks, history):
        cli.add_command(command)
