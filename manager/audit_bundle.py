"""The auditor's bundle: writing it from the database, and verifying it without one.

A bundle is a zip with the events of one scope and period (CSV and JSON), the lock history of that scope
and period, the chain links from just before the first bundled event to the head, the digest of that head,
a manifest and a README for the auditor. ``verify_bundle`` recomputes every event hash and every chain
link in Python, exactly as ``ledgerlock._audit_event_hash`` and ``ledgerlock._audit_link_hash`` do in the
database, so a bundle can be checked on a machine that has no PostgreSQL at all.

The canonical forms (see sql/functions/r5_audit.sql):

- event hash: sha256 of PostgreSQL's ``json_build_array('ll1', seq, at, txid, table_name, row_key, scope,
  operation, old_row, new_row, db_user, actor, reason, context, lock_id, override_id, details)::text``,
  where ``at`` is UTC with microseconds (``2026-03-31T10:00:00.000000Z``) and jsonb values print in jsonb's
  own text form (keys ordered by byte length, then bytes; ``", "`` and ``": "`` separators);
- chain link: sha256 of ``ll1|prev_hash|chain_seq|seq|event_hash|batch|txid_floor|sealed_below``.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import errno
import hashlib
import io
import itertools
import json
import os
import re
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import psycopg

FORMAT = "ledgerlock-audit-bundle/1"
GENESIS = "0" * 64
DIGEST_RE = re.compile(r"^ll1:([0-9]{1,18}):([0-9a-f]{64})$")  # as the database reads one: ASCII, a bigint

EVENT_FIELDS = ["seq", "at", "txid", "table_name", "row_key", "scope", "operation", "old_row", "new_row",
                "db_user", "actor", "reason", "context", "lock_id", "override_id", "details", "event_hash",
                "chain_seq", "chain_hash"]
HASHED_FIELDS = EVENT_FIELDS[:16]
JSONB_FIELDS = {"row_key", "old_row", "new_row", "details"}
INT_FIELDS = {"seq", "lock_id", "override_id", "chain_seq"}
CHAIN_FIELDS = ["chain_seq", "seq", "event_hash", "batch", "txid_floor", "sealed_below", "chain_hash"]
LOCK_FIELDS = ["seq", "id", "at", "lock_id", "scope", "kind", "db_user", "actor", "reason", "context", "details"]


# -- canonical text, as PostgreSQL prints it ----------------------------------------------------------------

class RawNumber(str):
    """A JSON number kept exactly as written (jsonb prints numerics digit for digit)."""


def loads(text: str) -> Any:
    """Parse JSON keeping numbers as their text, so that jsonb's form can be reproduced exactly."""
    return json.loads(text, parse_float=RawNumber, parse_int=RawNumber)


def _json_string(s: str) -> str:
    # PostgreSQL's escape_json: \" \\ \b \f \n \r \t, other control characters as \u00xx; the rest as is.
    return json.dumps(s, ensure_ascii=False)


def jsonb_text(value: Any) -> str:
    """The text PostgreSQL's jsonb output function gives for this value."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, RawNumber):
        return str(value)
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, str):
        return _json_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(jsonb_text(v) for v in value) + "]"
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: (len(k.encode()), k.encode()))
        return "{" + ", ".join(f"{_json_string(k)}: {jsonb_text(value[k])}" for k in keys) + "}"
    raise TypeError(f"not a JSON value: {value!r}")


def _element(name: str, value: Any) -> str:
    if value is None:
        return "null"
    if name in JSONB_FIELDS:
        return jsonb_text(value)
    if name in ("seq", "lock_id", "override_id"):
        return str(int(value))
    return _json_string(str(value))


def event_hash(event: dict) -> str:
    """sha256 of an event's canonical form: what ledgerlock._audit_event_hash computes."""
    parts = ['"ll1"'] + [_element(n, event.get(n)) for n in HASHED_FIELDS]
    return hashlib.sha256(("[" + ", ".join(parts) + "]").encode()).hexdigest()


def same_seal(prev: dict, link: dict) -> bool:
    """Whether two consecutive links agree on their seals, as verify_audit checks it: a link inside a seal
    repeats its seal's fields; a link that starts a seal starts where the previous seal ended (or at 0, with
    lower transaction ids: a new cluster's id space after a restore). The first link of a bundle is taken as
    given for its hash only; this holds its other fields to the link after it."""
    if link["batch"] != link["chain_seq"]:
        return (prev["batch"], prev["txid_floor"], prev["sealed_below"]) == (
            link["batch"], link["txid_floor"], link["sealed_below"])
    return link["txid_floor"] == prev["sealed_below"] or (
        link["txid_floor"] == "0" and int(link["sealed_below"]) < int(prev["sealed_below"]))


def link_hash(prev_hash: str, link: dict) -> str:
    """sha256 of one chain link: what ledgerlock._audit_link_hash computes."""
    text = "|".join(["ll1", prev_hash, str(link["chain_seq"]), str(link["seq"]), link["event_hash"],
                     str(link["batch"]), str(link["txid_floor"]), str(link["sealed_below"])])
    return hashlib.sha256(text.encode()).hexdigest()


def parse_digest(digest: str) -> tuple[int, str]:
    m = DIGEST_RE.match(digest.strip())
    if not m:
        raise ValueError(f"{digest!r} is not a ledgerlock audit digest (ll1:<chain position>:<64 hex digits>)")
    return int(m.group(1)), m.group(2)


# -- writing ------------------------------------------------------------------------------------------------

# Every field as the text that is hashed (jsonb as jsonb text, at in UTC), as ledgerlock.audit_export gives
# it: the bundle carries exactly that. The period is an accounting period, not the time of recording: a row's
# event belongs to it when the row's date (the protected table's date_column, in the old or the new image)
# lies in it, a lock event when its lock's window overlaps it. Events that are neither (protect, grants…)
# carry no accounting date and are left out.
EVENTS_SQL = """
SELECT e.seq, ledgerlock._audit_time(e.at), e.txid::text, e.table_name, e.row_key::text, e.scope,
       e.operation, e.old_row::text, e.new_row::text, e.db_user::text, e.actor, e.reason, e.context,
       e.lock_id, e.override_id, e.details::text, coalesce(e.event_hash, c.event_hash), c.chain_seq, c.chain_hash
FROM ledgerlock.audit_event e
LEFT JOIN ledgerlock.audit_chain c ON c.seq = e.seq
LEFT JOIN ledgerlock.protected_table p ON p.tbl = e.table_oid
LEFT JOIN ledgerlock.period_lock l ON l.id = e.lock_id AND e.table_name = 'ledgerlock.lock_event'
WHERE e.scope = %(scope)s
  AND (   (p.tbl IS NOT NULL AND e.table_name <> 'ledgerlock.lock_event'
           AND (left(e.old_row ->> p.date_column::text, 10)::date BETWEEN %(from)s AND %(to)s
                OR left(e.new_row ->> p.date_column::text, 10)::date BETWEEN %(from)s AND %(to)s))
       OR (l.id IS NOT NULL AND l.from_date <= %(to)s AND l.to_date >= %(from)s))
ORDER BY c.chain_seq NULLS LAST, e.seq
"""

SCOPE_KNOWN_SQL = """
SELECT EXISTS (SELECT 1 FROM ledgerlock.audit_event e WHERE e.scope = %(scope)s AND e.table_oid IN
                   (SELECT p.tbl FROM ledgerlock.protected_table p))
    OR EXISTS (SELECT 1 FROM ledgerlock.period_lock l WHERE l.scope = %(scope)s)
"""

# Every fact of each bundled row's key, in seq order, for latest_facts to replay: each event filed under the
# key (kind 'in'; moved_in when it is an UPDATE that brought the row from another key), and each UPDATE that
# moved the row away from it (kind 'out': filed under the new key, its old image holds this key). sealed:
# linked at or before the digest's head (only those can be proven); a fact after it means the live row may
# have moved on. in_books: the books check (audit_discrepancies, which compares as typed values) finds the
# key as the trail says, in the bundle's snapshot (a problem of the whole table, row_key null: renamed, a
# column gone or holding values no event recorded, counts against each of its rows). The event's hash is
# the one its link sealed when the event itself carries none.
ROWS_SQL = """
WITH d AS MATERIALIZED (SELECT d.table_name, d.row_key FROM ledgerlock.audit_discrepancies() d)
SELECT r.table_name, r.row_key::text, e.seq, ledgerlock._audit_time(e.at), e.txid::text, e.table_name,
       e.row_key::text, e.scope, e.operation, e.old_row::text, e.new_row::text, e.db_user::text, e.actor,
       e.reason, e.context, e.lock_id, e.override_id, e.details::text, coalesce(e.event_hash, c.event_hash),
       c.chain_seq, c.chain_hash, e.kind, e.moved_in, c.chain_seq IS NOT NULL AND c.chain_seq <= %(head)s,
       NOT EXISTS (SELECT FROM d WHERE d.table_name = r.table_name AND (d.row_key = r.row_key OR d.row_key IS NULL))
FROM unnest(%(tables)s::text[], %(keys)s::jsonb[]) AS r(table_name, row_key)
CROSS JOIN LATERAL (
    SELECT x.*, 'in' AS kind, x.operation = 'UPDATE' AND NOT (x.old_row @> x.row_key) AS moved_in
    FROM ledgerlock.audit_event x
    WHERE x.table_oid = to_regclass(r.table_name) AND x.row_key = r.row_key AND x.table_name = r.table_name
      AND x.operation IN ('INSERT', 'UPDATE', 'DELETE', 'BASELINE')
    UNION ALL
    SELECT x.*, 'out', false FROM ledgerlock.audit_event x
    WHERE x.table_oid = to_regclass(r.table_name) AND x.table_name = r.table_name
      AND x.operation = 'UPDATE' AND NOT (x.old_row @> x.row_key) AND x.old_row @> r.row_key) e
LEFT JOIN ledgerlock.audit_chain c ON c.seq = e.seq
ORDER BY r.table_name, r.row_key, e.seq, e.kind DESC
"""


def latest_facts(facts: list[tuple]) -> list[tuple]:
    """The fact that decides each key (rows of ROWS_SQL, grouped by key in seq order, 'out' before 'in' of
    one event), as the books check replays them (ledgerlock._audit_moved_keys): one UPDATE statement can move
    a row onto a key that another row of the same statement leaves later, and the trail does not say where
    a statement ends; but a row can only arrive at an occupied key when the occupant leaves within the same
    statement, so such an arrival marks the key's next departure as the occupant's. Each result is the
    deciding event's row with live_matches last (no fact after the digest, and the books agree)."""
    out = []
    for _key, group in itertools.groupby(facts, key=lambda f: (f[0], f[1])):
        group = list(group)
        decided, present, pending = None, False, 0
        for f in group:
            kind, moved_in, sealed = f[21], f[22], f[23]
            if not sealed:
                continue
            if kind == "out" and pending > 0:
                pending -= 1  # the occupant left: the newcomer stays
                continue
            if moved_in and present:
                pending += 1
            decided, present = f, kind == "in" and f[8] != "DELETE"
        if decided is not None:
            out.append(decided[:21] + (decided[21], all(f[23] for f in group) and decided[24]))
    return out


FISCAL_YEAR_SQL = """
SELECT lower(d), upper(d) - 1 FROM ledgerlock.period_dates(%(scope)s, 'FY' || %(year)s) AS d
"""


class NothingToBundle(Exception):
    """The selection holds no event: an empty bundle would look like evidence of a quiet period."""


def scope_known(conn: psycopg.Connection, scope: str) -> bool:
    """Whether the scope has a protected row (an audited write) or a lock: else it is most likely a typo."""
    return conn.execute(SCOPE_KNOWN_SQL, {"scope": scope}).fetchone()[0]


def fiscal_year_dates(conn: psycopg.Connection, scope: str, year: int) -> tuple[dt.date, dt.date]:
    """First and last day of the scope's fiscal year that starts in ``year`` (ledgerlock.period_dates)."""
    first, last = conn.execute(FISCAL_YEAR_SQL, {"scope": scope, "year": str(year)}).fetchone()
    return first, last


CHAIN_SQL = """
SELECT c.chain_seq, c.seq, c.event_hash, c.batch, c.txid_floor::text, c.sealed_below::text, c.chain_hash
FROM ledgerlock.audit_chain c
WHERE c.chain_seq BETWEEN %s AND %s
ORDER BY c.chain_seq
"""


@dataclass
class BundleSummary:
    path: str
    events: int
    lock_events: int
    links: int
    digest: str
    rows: int = 0           # distinct rows of protected tables the events touch
    date_from: str = ""
    date_to: str = ""


# A cell a spreadsheet would read as a formula (OWASP, CSV injection) starts with one of these. Such a cell
# gets one leading single quote, and so does a cell that starts with a quote, so the escape stays reversible
# and the check below compares exactly.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")


def csv_cell(value: Any) -> str:
    """The CSV cell of a value: its text, with a leading single quote when it could start a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def _csv_text(header: list[str], rows: Iterable[list]) -> str:
    buf = io.StringIO()
    # CRLF rows (RFC 4180): a cell holding a lone CR or LF is then quoted, so it cannot split its row
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(header)
    for r in rows:
        w.writerow([csv_cell(v) for v in r])
    return buf.getvalue()


def _events_json(rows: list[tuple]) -> str:
    """The events as a JSON array, jsonb fields embedded verbatim (their exact jsonb text)."""
    out = []
    for r in rows:
        items = []
        for name, v in zip(EVENT_FIELDS, r, strict=True):
            if v is None:
                val = "null"
            elif name in JSONB_FIELDS:
                val = v
            elif name in INT_FIELDS:
                val = str(v)
            else:
                val = _json_string(str(v))
            items.append(f"    {_json_string(name)}: {val}")
        out.append("  {\n" + ",\n".join(items) + "\n  }")
    return "[\n" + ",\n".join(out) + "\n]\n"


def _rows_json(rows: list[tuple]) -> str:
    """The bundled rows' latest images: per row its table, key, the image (null: deleted), whether the live
    row was that image when bundled, and the event that recorded it, every field as hashed."""
    out = []
    for r in rows:
        table, key, event, kind, matches = r[0], r[1], r[2:21], r[21], r[22]
        ev = _events_json([event]).strip()[1:-1].strip()  # the event object, jsonb fields verbatim
        image = dict(zip(EVENT_FIELDS, event, strict=True))
        # no image: deleted, or moved to another key (the UPDATE is filed under that key)
        recorded = "null" if image["operation"] == "DELETE" or kind == "out" else (image["new_row"] or "null")
        out.append("  {\n" + ",\n".join([f'    "table_name": {_json_string(table)}', f'    "row_key": {key}',
                                         f'    "image": {recorded}',
                                         f'    "live_matches": {"true" if matches else "false"}',
                                         '    "event": ' + ev.replace("\n", "\n  ")]) + "\n  }")
    return "[\n" + ",\n".join(out) + "\n]\n"


def _lock_rows(rows: list[tuple]) -> list[dict]:
    """Lock history entries: the lock_event rows the bundled lock events carry, with the event's seq."""
    out = []
    for r in rows:
        ev = dict(zip(EVENT_FIELDS, r, strict=True))
        if ev["table_name"] != "ledgerlock.lock_event" or ev["new_row"] is None:
            continue
        row = loads(ev["new_row"])
        out.append({"seq": RawNumber(str(ev["seq"])), **{k: row.get(k) for k in LOCK_FIELDS if k != "seq"}})
    return out


def write_bundle(conn: psycopg.Connection, scope: str, date_from: dt.date, date_to: dt.date, path: str,
                 progress: Callable[[str], None] | None = None, *, force: bool = False,
                 allow_empty: bool = True) -> BundleSummary:
    """Seal, then write the bundle of one scope and accounting period (the rows' dates, inclusive) to ``path``.

    The zip is written next to ``path`` and moved into place only when complete; an existing file is kept
    (FileExistsError) unless ``force``. With ``allow_empty=False`` an empty selection raises NothingToBundle
    and nothing is written."""
    say = progress or (lambda _m: None)
    with conn.transaction():
        digest = conn.execute("SELECT ledgerlock.audit_digest()").fetchone()[0]
    head_seq, _ = parse_digest(digest)
    # one snapshot for everything below: the chain up to the digest, the events it covers
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        rows = conn.execute(EVENTS_SQL, {"scope": scope, "from": date_from, "to": date_to}).fetchall()
        rows = [r for r in rows if r[17] is not None and r[17] <= head_seq]
        if not rows and not allow_empty:
            raise NothingToBundle(f"no audit event of scope {scope} concerns a row dated {date_from} to "
                                  f"{date_to} or a lock overlapping it")
        first = min((r[17] for r in rows), default=head_seq + 1)
        with conn.cursor() as cur:
            cur.execute(CHAIN_SQL, (max(first - 1, 1), head_seq))
            links = cur.fetchall()
        touched = sorted({(r[3], r[4]) for r in rows if r[3] != "ledgerlock.lock_event" and r[4] is not None
                          and r[6] in ("INSERT", "UPDATE", "DELETE", "BASELINE")})
        row_images = latest_facts(conn.execute(ROWS_SQL, {
            "tables": [t for t, _ in touched], "keys": [k for _, k in touched], "head": head_seq}).fetchall()
            if touched else [])
    say(f"{len(rows)} events, {len(links)} chain links")
    locks = _lock_rows(rows)
    manifest = {
        "format": FORMAT,
        "scope": scope,
        "from": date_from.isoformat(),
        "to": date_to.isoformat(),
        "selection": "accounting dates: rows dated from..to (old or new image), locks overlapping from..to",
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "database": conn.info.dbname,
        "digest": digest,
        "events": len(rows),
        "lock_events": len(locks),
        "rows": len(touched),
        "row_images": len(row_images),
        "chain_from": links[0][0] if links else None,
        "chain_to": head_seq,
    }
    target = os.path.abspath(path)
    if not force and os.path.lexists(target):
        raise FileExistsError(errno.EEXIST, "the file exists", path)
    part = f"{target}.{os.getpid()}.part"
    try:
        with zipfile.ZipFile(part, "x", compression=zipfile.ZIP_DEFLATED) as z:
            z.writestr("README.txt", README.format(**manifest))
            z.writestr("manifest.json", json.dumps(manifest, indent=2) + "\n")
            z.writestr("digest.txt", digest + "\n")
            z.writestr("events.csv", _csv_text(EVENT_FIELDS, rows))
            z.writestr("events.json", _events_json(rows))
            z.writestr("lock_history.csv", _csv_text(LOCK_FIELDS, (
                [jsonb_text(v) if isinstance(v, dict | list) else v for v in (r[k] for k in LOCK_FIELDS)]
                for r in locks)))
            z.writestr("lock_history.json", "[" + ",\n ".join(jsonb_text(r) for r in locks) + "]\n")
            z.writestr("chain.csv", _csv_text(CHAIN_FIELDS, links))
            z.writestr("rows.json", _rows_json(row_images))
        if force:
            os.replace(part, target)
        else:
            os.link(part, target)  # fails if the file appeared meanwhile: never overwrite without force
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(part)
    return BundleSummary(path, len(rows), len(locks), len(links), digest, len(touched), date_from.isoformat(),
                         date_to.isoformat())


# -- verifying, without a database ----------------------------------------------------------------------------

@dataclass
class BundleReport:
    ok: bool
    digest: str | None = None
    events: int = 0
    links: int = 0
    rows: int = 0
    problems: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        self.ok = False
        self.problems.append(message)


class UnsafeBundleError(Exception):
    """The zip is not one ledgerlock would write and cannot be read safely (bad input, not evidence)."""


# Limits of what verify_bundle inflates. A bundle's members hold two SHA-256 hashes per event, so real ones
# compress by far less than 100:1; a zip bomb (deflate reaches ~1000:1) is refused after 1 MiB.
MAX_MEMBER_BYTES = 512 << 20
MAX_RATIO = 100
RATIO_FLOOR = 1 << 20
MAX_MEMBERS = 64
_CHUNK = 1 << 16


def _limit(env: str, given: int | None, default: int) -> int:
    if given is not None:
        return given
    text = os.environ.get(env)
    try:
        return int(text) if text else default
    except ValueError:
        raise UnsafeBundleError(f"{env} must be a whole number of bytes, not {text!r}") from None


def _unsafe_name(name: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    return (name.startswith(("/", "\\")) or "\0" in name or re.match(r"^[A-Za-z]:", name) is not None
            or any(p in ("..", ".") for p in parts) or "\\" in name)


class _Members:
    """The members of a bundle, read with limits: no duplicate or unsafe names, each member inflated as a
    stream and refused as soon as it passes the size limit or the compression ratio (the header's sizes
    are not trusted)."""

    def __init__(self, z: zipfile.ZipFile, max_member_bytes: int, max_ratio: int) -> None:
        self.z = z
        self.max_bytes = max_member_bytes
        self.max_ratio = max_ratio
        infos = z.infolist()
        if len(infos) > MAX_MEMBERS:
            raise UnsafeBundleError(f"the bundle has {len(infos)} members; a ledgerlock bundle has a handful")
        seen: set[str] = set()
        for info in infos:
            if _unsafe_name(info.filename):
                raise UnsafeBundleError(f"unsafe member name {info.filename!r}: a bundle's members are plain "
                                        "file names (no absolute path, drive, backslash or '..')")
            if info.filename in seen:
                raise UnsafeBundleError(f"member {info.filename} appears twice: which one is the evidence?")
            seen.add(info.filename)
        self.names = seen

    def read(self, name: str) -> bytes:
        info = self.z.getinfo(name)
        if info.file_size > self.max_bytes:
            raise self._too_big(name)
        out = bytearray()
        with self.z.open(info) as f:
            while chunk := f.read(_CHUNK):
                out += chunk
                if len(out) > self.max_bytes:
                    raise self._too_big(name)
                if len(out) > RATIO_FLOOR and len(out) > self.max_ratio * max(info.compress_size, 1):
                    raise UnsafeBundleError(
                        f"member {name} inflates beyond a compression ratio of {self.max_ratio}:1 "
                        f"({info.compress_size} compressed bytes): a zip bomb, not a bundle "
                        "(LEDGERLOCK_BUNDLE_MAX_RATIO raises the limit)")
        return bytes(out)

    def _too_big(self, name: str) -> UnsafeBundleError:
        return UnsafeBundleError(f"member {name} holds more than {self.max_bytes} bytes "
                                 "(LEDGERLOCK_BUNDLE_MAX_MEMBER_BYTES raises the limit)")


def _read_csv(z: _Members, name: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(z.read(name).decode())))


def _csv_matches(value: Any, cell: str, name: str) -> bool:
    if value is None:
        return cell == ""
    if name in JSONB_FIELDS:
        return cell == csv_cell(jsonb_text(value))
    return cell == csv_cell(value)


def verify_bundle(path: str, digest: str | None = None, *, max_member_bytes: int | None = None,
                  max_ratio: int | None = None) -> BundleReport:
    """Check a bundle offline: every event hash, every link up to the bundle's digest, the CSV and JSON
    copies against each other, the lock history against its events, and (given one) an external digest.

    Raises UnsafeBundleError, before inflating anything beyond the limits, for a zip that cannot be read
    safely (duplicate or unsafe member names, a member over ``max_member_bytes`` or inflating beyond
    ``max_ratio``:1; defaults from LEDGERLOCK_BUNDLE_MAX_MEMBER_BYTES / LEDGERLOCK_BUNDLE_MAX_RATIO)."""
    report = BundleReport(ok=True)
    max_member_bytes = _limit("LEDGERLOCK_BUNDLE_MAX_MEMBER_BYTES", max_member_bytes, MAX_MEMBER_BYTES)
    max_ratio = _limit("LEDGERLOCK_BUNDLE_MAX_RATIO", max_ratio, MAX_RATIO)
    try:
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        report.fail(f"cannot read the bundle: {exc}")
        return report
    with zf:
        z = _Members(zf, max_member_bytes, max_ratio)
        names = z.names
        needed = {"manifest.json", "digest.txt", "events.csv", "events.json", "chain.csv", "lock_history.json",
                  "lock_history.csv"}
        if needed - names:
            report.fail(f"the bundle lacks {', '.join(sorted(needed - names))}")
            return report
        try:
            manifest = json.loads(z.read("manifest.json"))
            bundle_digest = z.read("digest.txt").decode().strip()
            head_seq, head_hash = parse_digest(bundle_digest)
            events = loads(z.read("events.json").decode())
            events_csv = _read_csv(z, "events.csv")
            chain = _read_csv(z, "chain.csv")
            locks = loads(z.read("lock_history.json").decode())
            locks_csv = _read_csv(z, "lock_history.csv")
        except (ValueError, KeyError, UnicodeDecodeError, zipfile.BadZipFile) as exc:
            report.fail(f"the bundle is malformed: {exc}")
            return report
        report.digest = bundle_digest
        report.events = len(events)
        report.links = len(chain)
        if manifest.get("format") != FORMAT:
            report.fail(f"unknown bundle format {manifest.get('format')!r}")
        if manifest.get("digest") != bundle_digest:
            report.fail("manifest.json and digest.txt name different digests")

        # 1. the chain: every link follows from the previous one and the last one is the digest
        links: dict[int, dict] = {}
        prev: dict | None = None
        for row in chain:
            try:
                link = {k: int(row[k]) if k in ("chain_seq", "seq", "batch") else row[k] for k in CHAIN_FIELDS}
            except (KeyError, ValueError):
                report.fail(f"chain.csv: unreadable row {row}")
                return report
            if prev is not None:
                if link["chain_seq"] != prev["chain_seq"] + 1:
                    report.fail(f"chain link {prev['chain_seq'] + 1} is missing from chain.csv")
                elif link_hash(prev["chain_hash"], link) != link["chain_hash"]:
                    report.fail(f"chain link {link['chain_seq']} (event seq {link['seq']}) does not follow from "
                                f"link {prev['chain_seq']}")
                elif not same_seal(prev, link):
                    report.fail(f"chain link {link['chain_seq']} (event seq {link['seq']}) does not follow from "
                                f"link {prev['chain_seq']}: they disagree on the seal they belong to")
            elif link["chain_seq"] == 1 and link_hash(GENESIS, link) != link["chain_hash"]:
                report.fail("chain link 1 does not follow from the genesis hash")
            links[link["chain_seq"]] = link
            prev = link
        if prev is None:
            if head_seq != 0 and events:
                report.fail("chain.csv is empty")
        elif prev["chain_seq"] != head_seq or prev["chain_hash"] != head_hash:
            report.fail(f"the chain ends at link {prev['chain_seq']}, not at the digest's link {head_seq}")

        # 2. every event: its hash, and its place in the chain
        by_seq: dict[int, dict] = {}
        for ev in events:
            try:
                seq = int(ev["seq"])
            except (KeyError, TypeError, ValueError):
                report.fail(f"events.json: an event without a seq: {str(ev)[:80]}")
                continue
            by_seq[seq] = ev
            if event_hash(ev) != ev.get("event_hash"):
                report.fail(f"event seq {seq} was modified: its content does not match its hash")
                continue
            cs = ev.get("chain_seq")
            link = links.get(int(cs)) if cs is not None else None
            if link is None:
                report.fail(f"event seq {seq} is not in the bundle's chain")
            elif link["seq"] != seq or link["event_hash"] != ev["event_hash"]:
                report.fail(f"event seq {seq} differs from chain link {cs}")

        # 3. the CSV copy says the same as the JSON one
        csv_seqs = []
        for row in events_csv:
            try:
                seq = int(row["seq"])
            except (KeyError, ValueError):
                report.fail("events.csv: a row without a seq")
                continue
            csv_seqs.append(seq)
            ev = by_seq.get(seq)
            if ev is None:
                report.fail(f"events.csv has event seq {seq}, events.json does not")
                continue
            bad = [n for n in EVENT_FIELDS if not _csv_matches(ev.get(n), row.get(n, ""), n)]
            if bad:
                report.fail(f"events.csv differs from events.json for event seq {seq}: {', '.join(bad)}")
        if sorted(csv_seqs) != sorted(by_seq):
            report.fail("events.csv and events.json do not hold the same events")

        # 4. the lock history is the lock events' rows
        lock_events = {seq: ev for seq, ev in by_seq.items() if ev.get("table_name") == "ledgerlock.lock_event"}
        if len(locks) != len(lock_events) or len(locks_csv) != len(lock_events):
            report.fail("the lock history does not match the bundled lock events")
        for entry, row in zip(locks, locks_csv, strict=False):
            ev = lock_events.get(int(entry.get("seq", -1)))
            expected = {k: (ev or {}).get("new_row", {}).get(k) for k in LOCK_FIELDS if k != "seq"}
            if ev is None or {k: entry.get(k) for k in expected} != expected:
                report.fail(f"lock history entry {entry.get('id')} differs from its audit event")
                continue
            cells = [csv_cell(jsonb_text(v) if isinstance(v, dict | list) else v)
                     for v in (entry.get(k) for k in LOCK_FIELDS)]
            if cells != [row.get(k, "") for k in LOCK_FIELDS]:
                report.fail(f"lock_history.csv differs from lock_history.json for entry {entry.get('id')}")

        # 5. the rows' latest images: each is its event's image, the event is intact and chained, no bundled
        # event of the row is later, and the database found the live row equal to it when bundling
        if "rows.json" in names:
            try:
                row_images = loads(z.read("rows.json").decode())
            except (ValueError, UnicodeDecodeError) as exc:
                report.fail(f"rows.json is malformed: {exc}")
                row_images = []
            report.rows = len(row_images)
            _check_rows(report, row_images, by_seq, links)
        elif manifest.get("row_images"):
            report.fail(f"the bundle lacks rows.json, which its manifest says holds {manifest['row_images']} rows")
        if "row_images" in manifest and manifest["row_images"] != report.rows:
            report.fail(f"manifest.json says {manifest['row_images']} row images, rows.json holds {report.rows}")

        # 6. an external digest, kept by the auditor
        if digest:
            try:
                d_seq, d_hash = parse_digest(digest)
            except ValueError as exc:
                report.fail(str(exc))
            else:
                link = links.get(d_seq)
                if d_seq == 0:
                    pass  # the empty chain precedes everything
                elif link is None:
                    report.fail(f"the digest names chain link {d_seq}, outside this bundle's chain "
                                f"({min(links, default=0)}..{head_seq}): it cannot be checked here")
                elif link["chain_hash"] != d_hash:
                    report.fail(f"chain link {d_seq} differs from the digest: the chain was rewritten at or "
                                "before it")
    return report


ROW_OPERATIONS = ("INSERT", "UPDATE", "DELETE", "BASELINE")


def _moved_from(ev: dict) -> str | None:
    """The key (as jsonb text) an UPDATE moved its row away from, or None when it is no such move."""
    key, old = ev.get("row_key"), ev.get("old_row")
    if ev.get("operation") != "UPDATE" or not isinstance(key, dict) or not isinstance(old, dict):
        return None
    before = {k: old.get(k) for k in key}
    return None if jsonb_text(before) == jsonb_text(key) else jsonb_text(before)


def _check_rows(report: BundleReport, row_images: list, by_seq: dict[int, dict], links: dict[int, dict]) -> None:
    """Each entry of rows.json against its event, the chain and the bundled events."""
    later: dict[tuple[str, str], int] = {}  # the latest bundled event filed under each key
    left: dict[tuple[str, str], int] = {}  # the latest bundled move of a row away from each key
    for seq, ev in by_seq.items():
        if ev.get("operation") in ROW_OPERATIONS and ev.get("row_key") is not None:
            k = (str(ev.get("table_name")), jsonb_text(ev["row_key"]))
            later[k] = max(later.get(k, seq), seq)
            gone = _moved_from(ev)
            if gone is not None:
                k = (str(ev.get("table_name")), gone)
                left[k] = max(left.get(k, seq), seq)
    for entry in row_images:
        try:
            table, key, ev = entry["table_name"], jsonb_text(entry["row_key"]), entry["event"]
            seq = int(ev["seq"])
        except (KeyError, TypeError, ValueError):
            report.fail(f"rows.json: an unreadable entry {str(entry)[:80]}")
            continue
        row = f"{table} {key}"
        link = links.get(int(ev["chain_seq"])) if ev.get("chain_seq") is not None else None
        moved_away = jsonb_text(ev.get("row_key")) != key and _moved_from(ev) == key
        recorded = None if ev.get("operation") == "DELETE" or moved_away else ev.get("new_row")
        # a departure after the claimed event supersedes it, unless that event moved a row onto an occupied
        # key, whose occupant's departure follows within the statement (the books check's replay)
        departed = left.get((table, key), seq) if _moved_from(ev) is None or moved_away else seq
        if event_hash(ev) != ev.get("event_hash"):
            report.fail(f"row {row}: its event seq {seq} was modified: its content does not match its hash")
        elif link is None or link["seq"] != seq or link["event_hash"] != ev["event_hash"]:
            report.fail(f"row {row}: its event seq {seq} is not in the bundle's chain")
        elif ev.get("table_name") != table or (jsonb_text(ev.get("row_key")) != key and not moved_away):
            report.fail(f"row {row}: event seq {seq} records another row")
        elif jsonb_text(entry.get("image")) != jsonb_text(recorded):
            report.fail(f"row {row}: its image differs from the one event seq {seq} recorded")
        elif max(later.get((table, key), seq), departed) > seq:
            report.fail(f"row {row}: bundled event seq {max(later.get((table, key), seq), departed)} is later "
                        f"than event seq {seq}, whose image it claims as the latest")
        elif entry.get("live_matches") is not True:
            report.fail(f"row {row}: the live row differed from event seq {seq} when the bundle was written "
                        "(the books did not match the trail)")


README = """ledgerlock audit bundle
=======================

Scope {scope}, accounting period {from} to {to} (events of rows dated in it, old or new image, and of locks
overlapping it), written {generated_at} from database {database}.
It holds {events} events ({lock_events} of them lock events), and the audit chain up to link {chain_to},
whose digest is:

    {digest}

Files
-----
events.csv, events.json   every recorded change and event of the scope and period: when (UTC), which
                          transaction, table and row, the operation, the row before and after, the database
                          user (authoritative), the actor/reason/context the application declared
                          (informational), the lock or override involved, and the event's hash and chain link.
lock_history.csv, .json   the lock events of the period (lock, advance, upgrade, unlock, relock, override...),
                          as the lock history recorded them; each is also an event above.
                          In the CSV files, a cell that would start with = + - @ (a spreadsheet formula),
                          a tab, a carriage return or a quote carries one extra leading quote (').
chain.csv                 the hash chain from just before the first event of this bundle to the digest:
                          every link, including events of other scopes (as hashes only).
rows.json                 the latest image of every row the events touch, with the event that recorded it
                          (its hash and chain link), and whether the database found the live row equal to
                          it when the bundle was written.
digest.txt                the chain head this bundle ends at.
manifest.json             what was asked for, and counts.

Checking it
-----------
    ledgerlock audit verify --bundle THIS.zip [--digest DIGEST]

needs no database. It recomputes the SHA-256 of every event from its content and every chain link from the
previous one, up to the digest, checks that the CSV and JSON copies agree, and that each row's image is the
one its latest event recorded in the chain. Any edit to an event, a
link, or the order of either is reported.

What it proves: every event in this bundle is, unchanged, in the chain that ends at the digest above. Keep
that digest, or better, compare it with a digest you obtained independently at the time (for instance the
one the company sends you or files every day): `--digest` proves that the chain still passes through it,
so nothing recorded before it was rewritten. A bundle whose digest nobody kept can only prove that it is
consistent with itself. Completeness of the selection (that no event of the scope was left out) is proven
against the database with `ledgerlock audit verify`, not from the bundle alone.
"""
