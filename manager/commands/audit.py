"""audit log|show|verify|record-columns|digest|seal|bundle — the evidence (R5)."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import select
import shlex
import signal
import sys

import click
import psycopg
from psycopg.types.json import Jsonb

from .. import audit_bundle
from ..context import Context, pass_context
from ..doctor import code_drift
from ..output import EXIT_EVIDENCE, EXIT_OK, _cell, echo, echo_json, echo_rows
from ..output import progress as show_progress
from .locks import cli_hints

# Every operation the trail records: row writes, protect/unprotect, rules and number formats, and the lock
# history's kinds upper-cased (sql/triggers/r5_audit_capture.sql, sql/functions/r3_*.sql, r4_referential.sql).
OPERATIONS = ("INSERT", "UPDATE", "DELETE", "PROTECT", "UNPROTECT", "NUMBER_FORMAT", "PROTECT_REFERENCED",
              "PROTECT_LINES", "UNPROTECT_REFERENCED", "UNPROTECT_LINES", "LOCK", "ADVANCE", "UPGRADE", "UNLOCK",
              "RELOCK", "OVERRIDE", "SKIP", "GRANT_SCOPE", "REVOKE_SCOPE", "LIFT_SCOPE_LIMIT", "FISCAL_YEAR_START",
              "FOUR_EYES_SETTING", "CLOSE_TASK_ADD", "CLOSE_TASK_DONE", "UNLOCK_REQUEST", "UNLOCK_APPROVE",
              "UNLOCK_REFUSE", "UNLOCK_REQUEST_EXPIRE", "UNLOCK_REQUEST_WITHDRAW", "REPOST")


def _operation(ctx, param, value: str | None) -> str | None:
    if value is not None and value.upper() not in OPERATIONS:
        raise click.BadParameter(f"{value!r} is not an operation of the trail; one of: {', '.join(OPERATIONS)}")
    return value


# verify's fix for a column added since rows were recorded names the SQL; the CLI names its own command
_RECORD_COLUMNS_SQL = re.compile(r"SELECT ledgerlock\.record_added_columns\('((?:[^']|'')*)', <reason>\)$")


def _cli_problem(problem: str) -> str:
    def command(m: re.Match) -> str:
        table = shlex.quote(m.group(1).replace("''", "'"))
        return f'ledgerlock audit record-columns {table} --reason "..."'
    return _RECORD_COLUMNS_SQL.sub(command, problem)


LOG_COLUMNS = ["seq", "at", "table", "key", "scope", "operation", "changed", "db_user", "actor", "reason", "chain"]


def _key_filter(key: str) -> str:
    """A key as JSON ({"id": 42}) or a bare value, matched against single-column keys."""
    try:
        value = json.loads(key)
    except ValueError:
        value = key
    return json.dumps(value)


@click.group()
def audit() -> None:
    """The audit trail: every change and lock event, hash-chained (R5)."""


@audit.command("log")
@click.option("--table", "table", help="Only events of this table.")
@click.option("--key", help='Only events of this row: its key as JSON ({"id": 42}) or a bare value (42).')
@click.option("--scope", help="Only events of this scope.")
@click.option("--actor", help="Only events declared with this ledgerlock.actor.")
@click.option("--db-user", help="Only events of this database user.")
@click.option("--operation", callback=_operation,
              help="Only this operation (INSERT, UPDATE, DELETE, LOCK, UNLOCK, PROTECT...).")
@click.option("--since", type=click.DateTime(), help="Events at or after this time.")
@click.option("--until", type=click.DateTime(), help="Events before this time.")
@click.option("--limit", default=100, show_default=True, help="At most this many events (the latest).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts (full rows).")
@pass_context
def log(ctx: Context, table: str | None, key: str | None, scope: str | None, actor: str | None,
        db_user: str | None, operation: str | None, since: dt.datetime | None, until: dt.datetime | None,
        limit: int, as_json: bool) -> None:
    """List audit events, newest last."""
    where, params = [], []
    for col, val in (("a.scope", scope), ("a.actor", actor), ("a.db_user", db_user)):
        if val is not None:
            where.append(f"{col} = %s")
            params.append(val)
    if operation:
        where.append("a.operation = upper(%s)")
        params.append(operation)
    if since:
        where.append("a.at >= %s")
        params.append(since)
    if until:
        where.append("a.at < %s")
        params.append(until)
    with ctx.connect() as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        zoned = None
        if table:
            # the table's events under every oid the trail files them under (ledgerlock._audit_oids_of: a restored
            # dump's carry the old cluster's), found first and passed as values, for the index
            where.append("a.table_oid = ANY (%s::oid[])")
            params.append(conn.execute("SELECT ledgerlock._audit_oids_of(%s::regclass)", [table]).fetchone()[0])
            zoned = conn.execute("SELECT ledgerlock._audit_zoned_key_columns(%s::regclass)", [table]).fetchone()[0]
        if key:
            value = _key_filter(key)
            if zoned is not None and value.startswith("{"):
                # a key with a timestamptz (or tstzrange) column, matched in UTC as verification reads it: any
                # spelling of the instant finds the row, and so do its events recorded in another zone
                where.append("ledgerlock._audit_utc_key(a.row_key, %s) = ledgerlock._audit_utc_key(%s::jsonb, %s)")
                params += [Jsonb(zoned), value, Jsonb(zoned)]
            else:
                where.append("(a.row_key = %s::jsonb OR (SELECT count(*) FROM jsonb_object_keys(a.row_key)) = 1 "
                             "AND (SELECT v FROM jsonb_each(a.row_key) AS x(k, v)) = %s::jsonb)")
                params += [value, value]
        query = ("SELECT * FROM (SELECT a.* FROM ledgerlock.audit_log a "
                 + (("WHERE " + " AND ".join(where)) if where else "")
                 + " ORDER BY a.seq DESC LIMIT %s) a ORDER BY a.seq")
        rows = cur.execute(query, [*params, limit]).fetchall()
    if as_json:
        echo_json([{**r, "txid": str(r["txid"]), "table_name": str(r["table_name"]) if r["table_name"] else None}
                   for r in rows])
        return
    echo_rows([{
        "seq": r["seq"], "at": r["at"], "table": r["table_name"],
        "key": json.dumps(r["row_key"]) if r["row_key"] is not None else None, "scope": r["scope"],
        "operation": r["operation"], "changed": r["changed_columns"], "db_user": r["db_user"],
        "actor": r["actor"], "reason": r["reason"], "chain": r["chain_seq"],
    } for r in rows], LOG_COLUMNS, as_json=False, empty="(no events)")


def _render_diff(old: dict | None, new: dict | None) -> list[str]:
    keys = sorted(set(old or {}) | set(new or {}))
    width = max((len(k) for k in keys), default=0)
    lines = []
    for k in keys:
        a = audit_bundle.jsonb_text(old[k]) if old is not None and k in old else None
        b = audit_bundle.jsonb_text(new[k]) if new is not None and k in new else None
        if old is None:
            lines.append(f"+ {k.ljust(width)}  {b}")
        elif new is None:
            lines.append(f"- {k.ljust(width)}  {a}")
        elif a != b:
            lines.append(f"~ {k.ljust(width)}  {a} -> {b}")
        else:
            lines.append(f"  {k.ljust(width)}  {a}")
    return lines


@audit.command()
@click.argument("seq", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_context
def show(ctx: Context, seq: int, as_json: bool) -> None:
    """Show event SEQ: who, when, why, and the row before and after as a diff."""
    with ctx.connect() as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        r = cur.execute("SELECT *, old_row::text AS old_text, new_row::text AS new_text "
                        "FROM ledgerlock.audit_log WHERE seq = %s", (seq,)).fetchone()
    if r is None:
        raise click.ClickException(f"no audit event {seq} (or you may not read it)")
    if as_json:
        r.pop("old_text"), r.pop("new_text")
        echo_json({**r, "txid": str(r["txid"]), "table_name": str(r["table_name"]) if r["table_name"] else None})
        return
    echo(f"event {r['seq']}: {r['operation']} {r['table_name'] or ''} "
               f"{json.dumps(r['row_key']) if r['row_key'] is not None else ''}".rstrip())
    for label, value in (("at", _cell(r["at"])), ("transaction", r["txid"]), ("scope", r["scope"]),
                         ("database user", r["db_user"]), ("actor", r["actor"]), ("reason", r["reason"]),
                         ("context", r["context"]), ("lock", r["lock_id"]), ("override", r["override_id"]),
                         ("details", json.dumps(r["details"]) if r["details"] else None),
                         ("hash", r["event_hash"]),
                         ("chain", f"link {r['chain_seq']} {r['chain_hash']}" if r["chain_seq"] else "not sealed yet")):
        if value is not None:
            echo(f"  {label + ':':15} {value}")
    if r["old_row"] is not None or r["new_row"] is not None:
        echo("  row (- before only, + after only, ~ changed):")
        # rendered from jsonb's own text, so numbers read exactly as stored (120.00, not 120.0)
        old = audit_bundle.loads(r["old_text"]) if r["old_text"] is not None else None
        new = audit_bundle.loads(r["new_text"]) if r["new_text"] is not None else None
        for line in _render_diff(old, new):
            echo("    " + line)


@audit.command()
@click.option("--digest", help="A digest kept earlier (ll1:N:HASH): prove the chain still passes through it.")
@click.option("--from-digest", "from_digest", is_flag=True,
              help="With --digest: read the chain only from the digest on (a daily check of a long trail; the "
                   "links up to it were proven when the digest was verified). The books are checked in full.")
@click.option("--bundle", "bundle", type=click.Path(exists=True, dir_okay=False),
              help="Check this bundle offline (no database needed).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_context
def verify(ctx: Context, digest: str | None, from_digest: bool, bundle: str | None, as_json: bool) -> None:
    """Recompute every event hash and chain link, and check the books against the trail; exit 3 when
    anything was altered.

    Without --bundle it seals (unless the server is read-only, as a standby is: then it verifies what is
    sealed and says how many events are not), then checks the database's whole trail, every row of every
    protected table, and ledgerlock's own state (progress on stderr for large chains). With --bundle it
    checks an auditor's bundle without connecting to any database.
    """
    if from_digest and not digest:
        raise click.UsageError("--from-digest needs --digest: the digest to start from")
    if bundle:
        try:
            rep = audit_bundle.verify_bundle(bundle, digest)
        except audit_bundle.UnsafeBundleError as exc:  # bad input (exit 2), not broken evidence (exit 3)
            raise click.BadParameter(f"{bundle}: {exc}; nothing was checked", param_hint="--bundle") from None
        if as_json:
            echo_json({"ok": rep.ok, "digest": rep.digest, "events": rep.events, "links": rep.links,
                       "rows": rep.rows, "problems": rep.problems})
        elif rep.ok:
            echo(f"bundle intact: {rep.events} events, {rep.links} chain links, {rep.rows} row images "
                       f"proven, up to {rep.digest}")
            if digest:
                echo(f"the chain passes through {digest}")
        else:
            echo(f"bundle BROKEN: {len(rep.problems)} problem(s)", err=True)
            for p in rep.problems[:20]:
                echo(f"  {p}", err=True)
        sys.exit(EXIT_OK if rep.ok else EXIT_EVIDENCE)

    listed: list[str] = []

    def progress(diag: psycopg.errors.Diagnostic) -> None:
        msg = diag.message_primary or ""
        if msg.startswith("ll-progress "):
            done, total = (int(n) for n in msg.split()[1:3])
            show_progress(f"verified {done:,} of {total:,} chain links", done=done >= total)
        elif msg.startswith("ll-problem "):
            listed.append(msg.removeprefix("ll-problem "))

    with ctx.connect() as conn:
        conn.add_notice_handler(progress)
        with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
            function = "verify_audit_from" if from_digest else "verify_audit"
            r = cur.execute(f"SELECT * FROM ledgerlock.{function}(%s)", (digest,)).fetchone()
        # the guards the trail relies on: a function replaced (even if restored later) is evidence too
        drift = [f.finding for f in code_drift(conn) if f.severity == "critical"]
    ok = r["ok"] and not drift
    if as_json:
        echo_json(r | {"ok": ok, "problem_list": listed, "code_drift": drift})
    elif ok:
        echo(f"audit trail intact: {r['events']:,} events, {r['sealed']:,} sealed, "
                   f"{r['unsealed']:,} not yet sealed; head {r['head']}")
        echo("the books match the trail: every row of every protected table, the locks, grants, "
                   "settings, registry and number counters")
        if digest:
            echo(f"the chain passes through {digest}"
                       + (f"; read from it on ({r['sealed']:,} links after it)" if from_digest else ""))
        if r["unsealed"]:
            echo(f"{r['unsealed']:,} event(s) are not sealed yet and are covered by no digest: this "
                       "session could not seal them (a standby, a read-only session, or one whose transactions are "
                       "not READ COMMITTED); `ledgerlock audit seal` on the primary seals them")
    else:
        if not r["ok"]:
            echo(f"audit trail BROKEN: {r['problems']} problem(s); first: {_cli_problem(r['problem'])}",
                       err=True)
            for p in listed[1:]:
                echo(f"  {_cli_problem(p)}", err=True)
            if r["problems"] > len(listed):
                echo(f"  ... and {r['problems'] - len(listed)} more "
                           "(SELECT * FROM ledgerlock.audit_discrepancies())", err=True)
        if drift:
            echo(f"installed code DRIFTED from this package: {len(drift)} function(s)", err=True)
            for d in drift:
                echo(f"  {d}", err=True)
    sys.exit(EXIT_OK if ok else EXIT_EVIDENCE)


@audit.command("record-columns")
@click.argument("table")
@click.option("--reason", required=True, help="Why these are the values the columns were added with (required; "
                                              "kept in each event).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: {table, rows}.")
@pass_context
@cli_hints
def record_columns(ctx: Context, table: str, reason: str, as_json: bool) -> None:
    """Record the values older rows of TABLE hold in columns added since (ledgerlock.record_added_columns).

    After ALTER TABLE ... ADD COLUMN ... DEFAULT on a protected table, `audit verify` reports the column once
    (column_unrecorded) until its values are recorded: one BASELINE event per row that lacks them, with the
    row as it is and the reason. An admin who is not scope-limited, once sure they are the values the column
    was added with. A row that differs from the trail in a recorded column is never recorded, and nothing is
    while a recorded column is gone (verify lists both).

    \b
    ledgerlock audit record-columns public.invoice --reason "channel added, web for all (change 4711)"
    """
    with ctx.connect_to_write() as conn:
        n = conn.execute("SELECT ledgerlock.record_added_columns(%s::regclass, %s)", (table, reason)).fetchone()[0]
        name = conn.execute("SELECT format('%%I.%%I', n.nspname, c.relname) FROM pg_class c "
                            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = %s::regclass",
                            (table,)).fetchone()[0]
    if as_json:
        echo_json({"table": name, "rows": n})
    elif n:
        echo(f"recorded the added columns of {n:,} row(s) of {name}")
    else:
        echo(f"nothing to record: no row of {name} lacks only added columns in the trail "
                   "(`ledgerlock audit verify` lists any other difference)")


@audit.command()
@pass_context
def digest(ctx: Context) -> None:
    """Seal and print the chain head (ll1:N:HASH): keep it outside the database."""
    with ctx.connect() as conn:
        echo(conn.execute("SELECT ledgerlock.audit_digest()").fetchone()[0])


@audit.command()
@click.option("--every", "every", type=click.FloatRange(0.1, 3600), metavar="SECONDS",
              help="Keep sealing every SECONDS (e.g. 1) until SIGINT or SIGTERM, which stop it once the seal in "
                   "progress is done (a second one: at once); a lost connection (a restart, a failover) is "
                   "retried, waiting up to 30 s between tries.")
@pass_context
def seal(ctx: Context, every: float | None) -> None:
    """Link committed events into the chain. Run with --every 1 as a service so digests stay fresh."""
    if every is None:
        with ctx.connect() as conn:
            ctx.target.announce(conn)
            echo(f"sealed {conn.execute('SELECT ledgerlock.audit_seal()').fetchone()[0]} event(s)")
        return
    conn: psycopg.Connection | None = ctx.connect()  # a first connection that fails is an error: exit 1
    ctx.target.announce(conn)
    with _Stop() as stop:
        wait = every
        try:
            while not stop.requested:
                try:
                    if conn is None:
                        conn = ctx.connect()
                        echo(f"{_now()} sealer: connected again", err=True)
                    n = conn.execute("SELECT ledgerlock.audit_seal()").fetchone()[0]
                    wait = every
                    if n:
                        echo(f"{_now()} sealed {n} event(s)")
                except (psycopg.OperationalError, psycopg.errors.ReadOnlySqlTransaction) as exc:
                    # the server restarted, the connection broke, or (after a failover) it now reaches a standby
                    reason = (str(exc).strip().splitlines() or ["connection lost"])[-1]
                    echo(f"{_now()} sealer: {reason}; trying again in {wait:g} s", err=True)
                    if conn is not None:
                        conn.close()
                    conn = None
                    stop.wait(wait)
                    wait = min(wait * 2, 30.0)
                    continue
                stop.wait(every)
        except KeyboardInterrupt:  # a second signal: stop now (a seal cut short commits nothing)
            echo(f"{_now()} sealer: stopped at once; a seal cut short commits nothing", err=True)
        finally:
            if conn is not None:
                conn.close()


class _Stop:
    """SIGINT and SIGTERM (what a service manager sends) end the sealer once the seal in progress has
    committed and been reported, so a seal that happened is never missing from its output; a second signal
    stops it at once (KeyboardInterrupt: a seal cut short commits nothing). The handler only writes to a
    pipe, which the sealer's waits watch: it may run while the main thread is inside click.echo or a wait."""

    def __init__(self) -> None:
        self.requested = False
        self._read, self._write = os.pipe()
        self._before: dict = {}

    def __enter__(self) -> _Stop:
        self._before = {s: signal.signal(s, self._signalled) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._before.items():
            signal.signal(s, handler)
        os.close(self._read)
        os.close(self._write)

    def _signalled(self, signum, frame) -> None:
        # One handler that decides by `requested`, set before anything is said: Python runs a handler with no
        # signal blocked, so a second signal may arrive while this one runs (a handler swapped in afterwards
        # would miss it, and the sealer would never stop). Whoever has read the message can stop it now.
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        os.write(self._write, b"x")
        os.write(2, f"{_now()} sealer: stopping after the seal in progress "
                    f"(a second {signal.Signals(signum).name} stops it now)\n".encode())

    def wait(self, seconds: float) -> None:
        """Sleep SECONDS, or less if a stop is requested."""
        if not self.requested:
            select.select([self._read], [], [], seconds)


def _now() -> str:
    """The service's log time: local, with its UTC offset (a log read on another machine stays unambiguous)."""
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


@audit.command()
@click.option("--scope", required=True, help="The scope (company, entity...) to hand over.")
@click.option("--fiscal-year", "fiscal_year", type=click.IntRange(1900, 2199), metavar="YYYY",
              help="The scope's fiscal year that starts in YYYY (its fiscal_year_start_month).")
@click.option("--from", "date_from", type=click.DateTime(["%Y-%m-%d"]),
              help="First day of the accounting period (the rows' dates, not when events were recorded).")
@click.option("--to", "date_to", type=click.DateTime(["%Y-%m-%d"]), help="Last day, inclusive.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="The zip file to write.")
@click.option("--force", is_flag=True, help="Replace OUTPUT if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@pass_context
def bundle(ctx: Context, scope: str, fiscal_year: int | None, date_from: dt.datetime | None,
           date_to: dt.datetime | None, output: str, force: bool, as_json: bool) -> None:
    """Write an auditor's bundle: events and lock history of a scope and accounting period, the chain, the digest.

    An event belongs to the period when the row it changed is dated in it (the protected table's date
    column, before or after the change), a lock event when its window overlaps it — whenever it was recorded.

    \b
    ledgerlock audit bundle --scope 2 --fiscal-year 2026 -o globex-FY2026.zip
    ledgerlock audit bundle --scope 2 --from 2026-10-01 --to 2026-10-31 -o globex-2026-10.zip
    """
    if fiscal_year is not None and (date_from or date_to):
        raise click.UsageError("give either --fiscal-year or --from/--to, not both")
    if fiscal_year is None and not (date_from and date_to):
        raise click.UsageError("give the period: --fiscal-year YYYY, or both --from and --to")
    if date_from and date_to and date_from > date_to:
        raise click.UsageError(f"--from {date_from.date()} is after --to {date_to.date()}: the period is empty")
    with ctx.connect() as conn:
        if not audit_bundle.scope_known(conn, scope):
            raise click.UsageError(f"scope {scope!r} has no protected row and no lock: nothing of it can be "
                                   "bundled (check the scope; `ledgerlock locks` lists the scopes with locks)")
        if fiscal_year is not None:
            first, last = audit_bundle.fiscal_year_dates(conn, scope, fiscal_year)
        else:
            first, last = date_from.date(), date_to.date()
        try:
            s = audit_bundle.write_bundle(conn, scope, first, last, output, force=force, allow_empty=False)
        except audit_bundle.NothingToBundle as exc:
            echo(f"nothing to bundle: {exc}; no file written", err=True)
            sys.exit(1)
        except FileExistsError:
            echo(f"error: {output} exists; choose another name, or --force to replace it", err=True)
            sys.exit(1)
        except OSError as exc:
            echo(f"error: cannot write {output}: {exc.strerror or exc}", err=True)
            sys.exit(1)
    if as_json:
        echo_json({"file": s.path, "scope": scope, "from": s.date_from, "to": s.date_to, "events": s.events,
                   "lock_events": s.lock_events, "rows": s.rows, "links": s.links, "digest": s.digest})
        return
    echo(f"wrote {s.path}: scope {scope}, {s.date_from}..{s.date_to}: {s.events} events "
               f"({s.lock_events} lock events, {s.rows} rows), {s.links} chain links, digest {s.digest}")


def register(cli: click.Group) -> None:
    cli.add_command(audit)
