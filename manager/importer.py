"""Importing a CSV file into a protected table, respecting the period locks.

The file streams: its bytes go to PostgreSQL in chunks through ``COPY … FROM STDIN`` into a temporary
staging table of text columns (memory stays flat whatever the size), and one ``INSERT … SELECT`` converts
the values with PostgreSQL's own casts and writes the rows through every rule — in skip mode
(``ledgerlock.on_locked = 'skip'``), so rows dated in a locked window are skipped and recorded in
``ledgerlock.skipped_writes`` with the import's context label instead of failing the import. All of it is
one transaction: a malformed row (wrong number of columns, a value PostgreSQL cannot convert, a row the
table refuses) is reported with its line in the file, and nothing is loaded.

A dry run reads and converts the whole file the same way, then reports per locked window how many rows
fall in it (``ledgerlock.period_lock_at``) and how many would load, and rolls everything back.

Line numbers count the header as line 1; a quoted value spanning several lines counts as one.
"""

from __future__ import annotations

import codecs
import csv
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

CHUNK_SIZE = 1 << 20  # bytes per COPY write
STAGING = "ll_import_rows"
TYPED = "ll_import_typed"


class ImportFailed(Exception):
    """The file cannot be imported as it is; nothing was loaded."""

    def __init__(self, message: str, *, line: int | None = None, sqlstate: str | None = None):
        super().__init__(message)
        self.message = message
        self.line = line
        self.sqlstate = sqlstate


@dataclass
class WindowCount:
    lock_id: int
    scope: str
    from_date: str   # ISO date, or '-infinity' for a window locked from the beginning (lock_through)
    to_date: str
    level: str
    rows: int

    @property
    def period(self) -> str:
        return f"up to {self.to_date}" if self.from_date == "-infinity" else f"{self.from_date}..{self.to_date}"


@dataclass
class ImportReport:
    file: str
    table: str
    columns: list[str]
    context: str
    dry_run: bool
    rows: int = 0
    inserted: int | None = None       # real run
    skipped: int | None = None        # real run: rows the rules skipped (locked windows)
    would_load: int | None = None     # dry run
    in_locked_windows: int = 0
    windows: list[WindowCount] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Column:
    name: str
    type: str          # the base type, without typmod: the INSERT's assignment cast applies the typmod
    default: str | None


@dataclass
class _Target:
    table: str                     # qualified, as PostgreSQL prints the regclass
    columns: dict[str, _Column]    # by name, every insertable column
    date_column: str | None = None
    date_kind: str | None = None
    scope_column: str | None = None
    ledger: str | None = None
    protected: bool | None = False   # None: the role may not read ledgerlock's configuration


def read_header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        try:
            header = next(csv.reader(f))
        except StopIteration:
            raise ImportFailed(f"{path.name} is empty: the first line must name the columns") from None
    return header


def _target(conn: psycopg.Connection, table: str) -> _Target:
    try:
        oid, name = conn.execute("SELECT %s::regclass::oid, %s::regclass::text", (table, table)).fetchone()
    except psycopg.errors.UndefinedTable as exc:
        raise ImportFailed(f"there is no table {table}", sqlstate=exc.sqlstate) from None
    rows = conn.execute(
        """SELECT a.attname, pg_catalog.format_type(a.atttypid, NULL), pg_catalog.pg_get_expr(d.adbin, d.adrelid),
                  a.attgenerated <> '' AS generated
           FROM pg_catalog.pg_attribute a
           LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
           WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum""",
        (oid,),
    ).fetchall()
    target = _Target(name, {r[0]: _Column(r[0], r[1], r[2]) for r in rows if not r[3]})
    try:
        with conn.transaction():
            cfg = conn.execute(
                """SELECT p.date_column, CASE a.atttypid WHEN 'date'::regtype THEN 'date'
                          WHEN 'timestamp with time zone'::regtype THEN 'timestamptz' ELSE 'timestamp' END,
                          p.scope_column, p.ledger
                   FROM ledgerlock.protected_table p
                   JOIN pg_catalog.pg_attribute a ON a.attrelid = p.tbl AND a.attname = p.date_column
                   WHERE p.tbl = %s""",
                (oid,),
            ).fetchone()
    except psycopg.errors.InsufficientPrivilege:
        # not a ledgerlock role: the import still runs under every rule; only the preview needs this
        cfg, target.protected = None, None
    if cfg:
        target.date_column, target.date_kind, target.scope_column, target.ledger = cfg
        target.protected = True
    return target


def _map_header(header: list[str], target: _Target, file: str) -> list[str]:
    by_lower: dict[str, list[str]] = {}
    for name in target.columns:
        by_lower.setdefault(name.lower(), []).append(name)
    mapped: list[str] = []
    for i, h in enumerate(header, start=1):
        name = h.strip()
        if name in target.columns:
            col = name
        elif len(by_lower.get(name.lower(), [])) == 1:
            col = by_lower[name.lower()][0]
        elif not name:
            raise ImportFailed(f"{file} line 1: column {i} of the header has no name", line=1)
        else:
            raise ImportFailed(
                f"{file} line 1: {name!r} is not a column of {target.table} "
                f"(its columns: {', '.join(target.columns)})", line=1)
        if col in mapped:
            raise ImportFailed(f"{file} line 1: column {col!r} appears twice in the header", line=1)
        mapped.append(col)
    return mapped


def _copy_line(exc: psycopg.Error) -> int | None:
    m = re.search(r"\bline (\d+)", exc.diag.context or "")
    return int(m.group(1)) if m else None


def _stream(conn: psycopg.Connection, path: Path, n: int, progress: Callable[[int], None] | None) -> int:
    cols = sql.SQL(", ").join(sql.Identifier(f"c{i}") for i in range(1, n + 1))
    copy_sql = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv, HEADER true, ENCODING 'UTF8')").format(
        sql.Identifier(STAGING), cols)
    with conn.cursor() as cur, open(path, "rb") as f:
        with cur.copy(copy_sql) as copy:
            first = True
            while chunk := f.read(CHUNK_SIZE):
                if first and chunk.startswith(codecs.BOM_UTF8):
                    chunk = chunk[len(codecs.BOM_UTF8):]
                first = False
                copy.write(chunk)
                if progress:
                    progress(len(chunk))
        return cur.rowcount


def _casts(target: _Target, mapped: list[str]) -> sql.Composable:
    return sql.SQL(", ").join(
        sql.SQL("s.{}::{}").format(sql.Identifier(f"c{i}"), sql.SQL(target.columns[c].type))
        for i, c in enumerate(mapped, start=1))


def _probe(conn: psycopg.Connection, stmt: sql.Composable, lo: int, hi: int) -> psycopg.Error | None:
    """Run stmt over staging lines lo..hi in a savepoint that is always rolled back; its error, if any."""
    try:
        with conn.transaction():
            conn.execute(stmt, {"lo": lo, "hi": hi})
            raise psycopg.Rollback()
    except psycopg.Error as exc:
        return exc
    return None


def _locate(conn: psycopg.Connection, stmt: sql.Composable, rows: int) -> tuple[int, psycopg.Error] | None:
    """The first staged row on which stmt fails, by bisection: about two passes over the rows (more when
    the failure needs two rows together, e.g. a key repeated within the file)."""
    lo, hi = 1, rows
    err = _probe(conn, stmt, lo, hi)
    if err is None:
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        e = _probe(conn, stmt, lo, mid)
        if e is not None:
            hi, err = mid, e
            continue
        e = _probe(conn, stmt, mid + 1, hi)
        if e is not None:
            lo, err = mid + 1, e
            continue
        # The halves fail only together (a duplicate key within the file): the first line L of the second
        # half such that lo..L fails is the row that clashes with an earlier one.
        a, b = mid + 1, hi
        while a < b:
            m = (a + b) // 2
            e = _probe(conn, stmt, lo, m)
            if e is not None:
                b, err = m, e
            else:
                a = m + 1
        return a, err
    return lo, err


def _bad_column(conn: psycopg.Connection, target: _Target, mapped: list[str], staged_line: int) -> str | None:
    for i, c in enumerate(mapped, start=1):
        stmt = sql.SQL("SELECT s.{}::{} FROM {} s WHERE s.ll_line BETWEEN %(lo)s AND %(hi)s").format(
            sql.Identifier(f"c{i}"), sql.SQL(target.columns[c].type), sql.Identifier(STAGING))
        if _probe(conn, stmt, staged_line, staged_line) is not None:
            return c
    return None


def _fail_at_row(conn, target, mapped, file, stmt, rows, original: psycopg.Error) -> ImportFailed:
    found = _locate(conn, stmt, rows)
    if found is None:  # not reproducible on any part of the file
        d = original.diag
        detail = f" ({d.message_detail})" if d.message_detail else ""
        return ImportFailed(f"{file}: {d.message_primary}{detail}", sqlstate=d.sqlstate)
    staged, err = found
    line = staged + 1  # the header is line 1
    d = err.diag
    where = f"{file} line {line}"
    if (d.sqlstate or "").startswith("22"):
        col = _bad_column(conn, target, mapped, staged)
        if col:
            where += f", column {col}"
    detail = f" ({d.message_detail})" if d.message_detail and not d.message_detail.startswith("Failing row") else ""
    return ImportFailed(f"{where}: {d.message_primary}{detail}", line=line, sqlstate=d.sqlstate)


def _default_or_null(target: _Target, col: str | None) -> sql.Composable:
    default = target.columns[col].default if col and col in target.columns else None
    return sql.SQL(f"({default})") if default else sql.SQL("NULL")


def _windows(conn: psycopg.Connection, target: _Target, mapped: list[str]) -> list[WindowCount]:
    """Per active window, how many typed rows fall in it: one period_lock_at per distinct (scope, day)."""
    if not target.date_column:
        return []
    date_ref = (sql.SQL("t.{}").format(sql.Identifier(target.date_column)) if target.date_column in mapped
                else _default_or_null(target, target.date_column))
    day = {"date": sql.SQL("({})::date"), "timestamp": sql.SQL("({})::date"),
           "timestamptz": sql.SQL("(({}) AT TIME ZONE 'UTC')::date")}[target.date_kind or "date"].format(date_ref)
    if target.scope_column is None:
        scope = sql.SQL("'*'")
    elif target.scope_column in mapped:
        scope = sql.SQL("coalesce(t.{}::text, '*')").format(sql.Identifier(target.scope_column))
    else:
        scope = sql.SQL("coalesce({}::text, '*')").format(_default_or_null(target, target.scope_column))
    query = sql.SQL(
        """SELECT w.lock_id, g.scope, w.from_date::text, w.to_date::text, w.level, sum(g.n)::bigint
           FROM (SELECT {scope} AS scope, {day} AS day, count(*) AS n FROM {typed} t GROUP BY 1, 2) g
           CROSS JOIN LATERAL ledgerlock.period_lock_at(g.scope, g.day, %(ledger)s) w
           WHERE g.day IS NOT NULL
           GROUP BY 1, 2, 3, 4, 5 ORDER BY 2, min(w.from_date)""").format(
        scope=scope, day=day, typed=sql.Identifier(TYPED))
    return [WindowCount(*r) for r in conn.execute(query, {"ledger": target.ledger}).fetchall()]


def _skipped_windows(conn: psycopg.Connection, context: str) -> list[WindowCount] | None:
    """The rows this transaction skipped, per window (None when the role may not read the lock history)."""
    try:
        with conn.transaction():
            rows = conn.execute(
                """SELECT s.lock_id, s.scope, l.from_date::text, l.to_date::text, l.level, count(*)
                   FROM ledgerlock.skipped_writes s JOIN ledgerlock.period_locks l ON l.id = s.lock_id
                   WHERE s.at = now() AND s.context = %s AND s.db_user = session_user
                   GROUP BY 1, 2, 3, 4, 5 ORDER BY 2, min(l.from_date)""", (context,)).fetchall()
    except psycopg.errors.InsufficientPrivilege:
        return None
    return [WindowCount(*r) for r in rows]


def import_csv(
    conn: psycopg.Connection,
    path: str | os.PathLike,
    table: str,
    *,
    dry_run: bool = False,
    context: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import (or preview) a CSV file into ``table``; raises ImportFailed, having loaded nothing."""
    path = Path(path)
    file = path.name
    header = read_header(path)
    target = _target(conn, table)
    mapped = _map_header(header, target, file)
    label = context or f"import:{file}"
    report = ImportReport(file=str(path), table=target.table, columns=mapped, context=label, dry_run=dry_run)
    if dry_run and target.protected is None:
        raise ImportFailed(f"the preview reads ledgerlock's configuration of {target.table}, which "
                           f"{conn.info.user} may not read: run it as a member of a ledgerlock role", sqlstate="42501")

    staging_cols = sql.SQL(", ").join(sql.SQL("{} text").format(sql.Identifier(f"c{i}"))
                                      for i in range(1, len(mapped) + 1))
    with conn.transaction():
        conn.execute("SELECT pg_catalog.set_config('ledgerlock.on_locked', 'skip', true), "
                     "pg_catalog.set_config('ledgerlock.context', %s, true)", (label,))
        conn.execute(sql.SQL("CREATE TEMP TABLE {} (ll_line bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, {}) "
                             "ON COMMIT DROP").format(sql.Identifier(STAGING), staging_cols))
        try:
            with conn.transaction():
                report.rows = _stream(conn, path, len(mapped), progress)
        except psycopg.Error as exc:
            line = _copy_line(exc)
            where = f"{file} line {line}" if line else file
            raise ImportFailed(f"{where}: {exc.diag.message_primary}", line=line, sqlstate=exc.diag.sqlstate) from None

        casts = _casts(target, mapped)
        staged = sql.Identifier(STAGING)
        if dry_run:
            make_typed = sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT s.ll_line, {} FROM {} s "
                                 "WHERE s.ll_line BETWEEN %(lo)s AND %(hi)s").format(
                sql.Identifier(TYPED),
                sql.SQL(", ").join(sql.SQL("{}::{} AS {}").format(sql.SQL(f"s.c{i}"),
                                                                  sql.SQL(target.columns[c].type), sql.Identifier(c))
                                   for i, c in enumerate(mapped, start=1)),
                staged)
            try:
                with conn.transaction():
                    conn.execute(make_typed, {"lo": 1, "hi": report.rows})
            except psycopg.Error as exc:
                raise _fail_at_row(conn, target, mapped, file, make_typed, report.rows, exc) from None
            report.windows = _windows(conn, target, mapped)
            report.in_locked_windows = sum(w.rows for w in report.windows)
            report.would_load = report.rows - report.in_locked_windows
            raise_rollback = True
        else:
            insert = sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} s WHERE s.ll_line BETWEEN %(lo)s AND %(hi)s "
                             "ORDER BY s.ll_line").format(
                sql.SQL(target.table), sql.SQL(", ").join(sql.Identifier(c) for c in mapped), casts, staged)
            try:
                with conn.transaction(), conn.cursor() as cur:
                    cur.execute(insert, {"lo": 1, "hi": report.rows})
                    report.inserted = cur.rowcount
            except psycopg.Error as exc:
                raise _fail_at_row(conn, target, mapped, file, insert, report.rows, exc) from None
            report.skipped = report.rows - report.inserted
            windows = _skipped_windows(conn, label) if report.skipped else []
            report.windows = windows or []
            report.in_locked_windows = sum(w.rows for w in report.windows) if windows is not None else report.skipped
            raise_rollback = False
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}, {}").format(staged, sql.Identifier(TYPED)))
        if raise_rollback:
            raise psycopg.Rollback()  # a dry run leaves nothing behind
    return report


def file_size(path: str | os.PathLike) -> int:
    return os.stat(path).st_size


__all__ = ["ImportFailed", "ImportReport", "WindowCount", "file_size", "import_csv", "read_header"]
