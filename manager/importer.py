"""Importing a CSV file into a protected table, respecting the period locks.

The file streams: its bytes go to PostgreSQL in chunks through ``COPY … FROM STDIN`` into a temporary
staging table of text columns (memory stays flat whatever the size), and one ``INSERT … SELECT`` converts
the values with PostgreSQL's own casts and writes the rows through every rule — in skip mode
(``ledgerlock.on_locked = 'skip'``), so rows dated in a locked window are skipped and recorded in
``ledgerlock.skipped_writes`` with the import's context label instead of failing the import. All of it is
one transaction: a malformed row (wrong number of columns, a value PostgreSQL cannot convert, a row the
table refuses) is reported with its line in the file, and nothing is loaded.

A dry run is the load itself, rolled back: it fails where the load would fail (a foreign key, NOT NULL, a
ledgerlock refusal) and otherwise reports how many rows would load and, per locked window, how many would
be skipped.

Line numbers count the header as line 1; a quoted value spanning several lines counts as one.

The file is decoded with the given encoding (UTF-8 by default; a byte it cannot decode is reported with its
line) and sent to PostgreSQL as UTF-8. Every import is recorded by the file's SHA-256: the load runs with
``ledgerlock.context = 'import:<sha256>'`` (after the label, when one is given), which the audit trail keeps
with every inserted row, and a second import of the same bytes into the same table is refused unless
``again`` — so a file cannot be loaded twice by mistake.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

CHUNK_SIZE = 1 << 20  # bytes per COPY write
STAGING = "ll_import_rows"


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
    sha256: str = ""
    encoding: str = "utf-8"
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
    oid: int = 0
    decimal_comma: bool = False      # numeric values written 1.234,56: drop '.' and spaces, ',' is the point


NUMERIC_TYPES = {"numeric", "real", "double precision", "money"}


def _value(target: _Target, i: int, col: str) -> sql.Composable:
    """The staged text of column ``col`` (staging column c<i>), cast to the column's type."""
    cell = sql.SQL("s.{}").format(sql.Identifier(f"c{i}"))
    if target.decimal_comma and target.columns[col].type in NUMERIC_TYPES:
        cell = sql.SQL("pg_catalog.replace(pg_catalog.translate({}, ' .', ''), ',', '.')").format(cell)
    return sql.SQL("{}::{}").format(cell, sql.SQL(target.columns[col].type))


def _codec(encoding: str) -> str:
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise ImportFailed(f"unknown encoding {encoding!r}: use e.g. utf-8, latin-1 or cp1252") from None
    return "utf-8-sig" if name == "utf-8" else name  # a UTF-8 byte order mark is not data


def _undecodable_line(path: Path, codec: str) -> int:
    """The first physical line of the file that ``codec`` cannot decode (1 = the header)."""
    with open(path, "rb") as f:
        for n, raw in enumerate(f, start=1):
            try:
                raw.decode(codec)
            except UnicodeDecodeError:
                return n
    return 1


def _decode_failed(path: Path, encoding: str, codec: str) -> ImportFailed:
    line = _undecodable_line(path, codec)
    hint = " (--encoding latin-1 or cp1252 reads files from most Western European spreadsheets)" \
        if codec in ("utf-8-sig", "utf-8") else ""
    return ImportFailed(f"{path.name} line {line}: this line is not valid {encoding}: give the file's encoding with "
                        f"--encoding{hint}", line=line, sqlstate="22021")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            h.update(chunk)
    return h.hexdigest()


def read_header(path: Path, *, encoding: str = "utf-8", delimiter: str = ",") -> list[str]:
    codec = _codec(encoding)
    with open(path, newline="", encoding=codec) as f:
        try:
            header = next(csv.reader(f, delimiter=delimiter))
        except StopIteration:
            raise ImportFailed(f"{path.name} is empty: the first line must name the columns") from None
        except UnicodeDecodeError:
            raise _decode_failed(path, encoding, codec) from None
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
    target = _Target(name, {r[0]: _Column(r[0], r[1], r[2]) for r in rows if not r[3]}, oid=oid)
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


def _stream(conn: psycopg.Connection, path: Path, n: int, progress: Callable[[int], None] | None, *,
            encoding: str = "utf-8", delimiter: str = ",") -> int:
    codec = _codec(encoding)
    cols = sql.SQL(", ").join(sql.Identifier(f"c{i}") for i in range(1, n + 1))
    copy_sql = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv, HEADER true, DELIMITER {}, ENCODING 'UTF8')").format(
        sql.Identifier(STAGING), cols, sql.Literal(delimiter))
    decoder = codecs.getincrementaldecoder(codec)("strict")
    with conn.cursor() as cur, open(path, "rb") as f:
        with cur.copy(copy_sql) as copy:
            while True:
                chunk = f.read(CHUNK_SIZE)
                try:
                    text = decoder.decode(chunk, final=not chunk)
                except UnicodeDecodeError:
                    raise _decode_failed(path, encoding, codec) from None
                if text:
                    copy.write(text.encode("utf-8"))
                if not chunk:
                    break
                if progress:
                    progress(len(chunk))
        return cur.rowcount


def _casts(target: _Target, mapped: list[str]) -> sql.Composable:
    return sql.SQL(", ").join(_value(target, i, c) for i, c in enumerate(mapped, start=1))


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
        stmt = sql.SQL("SELECT {} FROM {} s WHERE s.ll_line BETWEEN %(lo)s AND %(hi)s").format(
            _value(target, i, c), sql.Identifier(STAGING))
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


# The first event of the table that carries the file's mark: who wrote it, and when. The mark is a context
# label, which any session may set (ledgerlock.context is recorded, never trusted), so the refusal names the
# login that wrote it: an application that set another file's mark is told apart from an import.
IMPORTED_SQL = """
SELECT e.db_user, e.at FROM ledgerlock.audit_event e
WHERE e.table_oid = %(oid)s AND e.context LIKE '%%' || %(mark)s
ORDER BY e.seq LIMIT 1
"""


class AlreadyImported(ImportFailed):
    """The same file (by its SHA-256) was imported into the same table before."""


def _check_not_imported(conn: psycopg.Connection, target: _Target, file: str, sha: str) -> None:
    """Refuse a second import of the same bytes into the same table: the audit trail keeps the first one."""
    try:
        with conn.transaction():
            seen = conn.execute(IMPORTED_SQL, {"oid": target.oid, "mark": f"import:{sha}"}).fetchone()
    except psycopg.errors.InsufficientPrivilege:
        raise AlreadyImported(
            f"cannot tell whether {file} was imported into {target.table} already: imports are recorded in the "
            f"audit trail, which {conn.info.user} may not read. Run the import as a role that may (a member of "
            "ledgerlock_auditor, ledgerlock_controller or ledgerlock_admin), or pass --again if you know "
            "this file was not loaded", sqlstate="42501") from None
    if seen:
        db_user, at = seen
        raise AlreadyImported(
            f"{file} (sha256 {sha[:12]}…) was already imported into {target.table}: its rows carry the audit "
            f"context 'import:{sha}', first written by {db_user} at {at.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S} UTC "
            f"(ledgerlock audit log --table {target.table}). Pass --again to load it a second time",
            sqlstate="23505")


def import_csv(
    conn: psycopg.Connection,
    path: str | os.PathLike,
    table: str,
    *,
    dry_run: bool = False,
    context: str | None = None,
    progress: Callable[[int], None] | None = None,
    encoding: str = "utf-8",
    delimiter: str = ",",
    decimal_comma: bool = False,
    again: bool = False,
    phase: Callable[[str], None] | None = None,
) -> ImportReport:
    """Import (or, rolled back, try) a CSV file into ``table``; raises ImportFailed, having loaded nothing."""
    say = phase or (lambda _m: None)
    path = Path(path)
    file = path.name
    if len(delimiter) != 1 or delimiter in "\"\r\n":
        raise ImportFailed(f"the delimiter must be one character other than a quote or a line break, not "
                           f"{delimiter!r}")
    header = read_header(path, encoding=encoding, delimiter=delimiter)
    target = _target(conn, table)
    target.decimal_comma = decimal_comma
    mapped = _map_header(header, target, file)
    sha = file_sha256(path)
    mark = f"import:{sha}"
    label = f"{context} {mark}" if context else mark
    report = ImportReport(file=str(path), table=target.table, columns=mapped, context=label, dry_run=dry_run,
                          sha256=sha, encoding=encoding)
    if not again:
        _check_not_imported(conn, target, file, sha)

    staging_cols = sql.SQL(", ").join(sql.SQL("{} text").format(sql.Identifier(f"c{i}"))
                                      for i in range(1, len(mapped) + 1))
    with conn.transaction():
        conn.execute("SELECT pg_catalog.set_config('ledgerlock.on_locked', 'skip', true), "
                     "pg_catalog.set_config('ledgerlock.context', %s, true)", (label,))
        conn.execute(sql.SQL("CREATE TEMP TABLE {} (ll_line bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, {}) "
                             "ON COMMIT DROP").format(sql.Identifier(STAGING), staging_cols))
        say(f"uploading {file}")
        try:
            with conn.transaction():
                report.rows = _stream(conn, path, len(mapped), progress, encoding=encoding, delimiter=delimiter)
        except psycopg.Error as exc:
            line = _copy_line(exc)
            where = f"{file} line {line}" if line else file
            raise ImportFailed(f"{where}: {exc.diag.message_primary}", line=line, sqlstate=exc.diag.sqlstate) from None

        staged = sql.Identifier(STAGING)
        # the dry run is this same load, rolled back: it meets every foreign key, NOT NULL and ledgerlock rule
        say(f"loading {report.rows} rows into {target.table} through every rule")
        insert = sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} s WHERE s.ll_line BETWEEN %(lo)s AND %(hi)s "
                         "ORDER BY s.ll_line").format(
            sql.SQL(target.table), sql.SQL(", ").join(sql.Identifier(c) for c in mapped), _casts(target, mapped),
            staged)
        try:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(insert, {"lo": 1, "hi": report.rows})
                inserted = cur.rowcount
        except psycopg.Error as exc:
            say("finding the first row that fails")
            raise _fail_at_row(conn, target, mapped, file, insert, report.rows, exc) from None
        skipped = report.rows - inserted
        windows = _skipped_windows(conn, label) if skipped else []
        report.windows = windows or []
        report.in_locked_windows = sum(w.rows for w in report.windows) if windows is not None else skipped
        if dry_run:
            report.would_load = inserted
        else:
            report.inserted, report.skipped = inserted, skipped
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(staged))
        if dry_run:
            raise psycopg.Rollback()  # a dry run leaves nothing behind
    say("done")
    return report


def file_size(path: str | os.PathLike) -> int:
    return os.stat(path).st_size


__all__ = ["AlreadyImported", "ImportFailed", "ImportReport", "WindowCount", "file_sha256", "file_size", "import_csv",
           "read_header"]
