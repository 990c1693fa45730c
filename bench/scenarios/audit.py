"""R5 audit: what capture costs with the sealer running, seal lag under load, and the manager's memory on
large inputs (verification speed: verify.py, in a clean database)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg
from psycopg import sql

from ..harness import Bench
from ..stats import Result, Target, not_available
from ..tables import SIGNATURES, Features, naive_audit, protect
from .common import Variant, pgbench_group, timed_group

T_SEAL_LAG = Target(5.0, op="<=", on="value", source="issue 6 (R5)")
T_CAPTURE_VS_NAIVE = Target(1.0, source="issue 15 (R5): capture costs no more than a naive audit trigger")
T_BULK_AUDITED = Target(0.5, source="issue 15 (R5): bulk audited INSERT")
T_FLAT = Target(2.0, op="<=", source="issue 3: flat memory (read as: within 2x of an idle manager command)")



def manager_command() -> list[str]:
    exe = Path(sys.executable).with_name("ledgerlock")
    return [str(exe)] if exe.exists() else [sys.executable, "-c", "from ledgerlock.cli import main; main()"]


def command_exists(*words: str) -> bool:
    res = subprocess.run(manager_command() + [*words, "--help"], capture_output=True, text=True)
    return res.returncode == 0


def peak_rss_mb(args: list[str], timeout: float = 900) -> tuple[float, int, str]:
    """Run a command; its peak resident memory in MB (from wait4's rusage), exit code and output tail."""
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        tail = out.read()[-2000:].decode(errors="replace")
    return usage.ru_maxrss / 1024, proc.returncode, tail  # ru_maxrss is in KiB on Linux


SEAL_EVERY = 1.0  # seconds between two seals: what docs/audit.md prescribes (`ledgerlock audit seal --every 1`)
SEAL_GRACE = 30.0  # seconds the sealer gets after the load to catch up


def _sealer_sql(b: Bench) -> str | None:
    if b.has_function("ledgerlock.audit_seal()"):
        return "SELECT ledgerlock.audit_seal()"
    if b.has_function(SIGNATURES["digest"]):
        return "SELECT ledgerlock.audit_digest()"
    return None


class _Sealer:
    """The sealer as docs/audit.md says to run it: `ledgerlock audit seal --every 1` as a service; a thread
    calling audit_seal() every second when the command does not exist."""

    def __init__(self, b: Bench, sealer_sql: str):
        self.b, self.sql = b, sealer_sql
        self.proc: subprocess.Popen | None = None
        self.thread: threading.Thread | None = None
        self.stop_event = threading.Event()
        self.errors: list[str] = []
        self.how = ""

    def start(self) -> None:
        if command_exists("audit", "seal"):
            self.how = f"`ledgerlock audit seal --every {SEAL_EVERY:g}`"
            self.proc = subprocess.Popen(manager_command() + ["--dsn", self.b.owner_conninfo, "audit", "seal",
                                                              "--every", f"{SEAL_EVERY:g}"],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            return
        self.how = f"`{self.sql}` every {SEAL_EVERY:g}s"

        def loop():
            try:
                with self.b.connect() as conn:
                    while not self.stop_event.is_set():
                        conn.execute(self.sql)
                        self.stop_event.wait(SEAL_EVERY)
            except Exception as exc:  # reported with the result
                self.errors.append(str(exc))

        self.thread = threading.Thread(target=loop, daemon=True)
        self.thread.start()

    def alive(self) -> bool:
        return self.proc.poll() is None if self.proc else bool(self.thread and self.thread.is_alive())

    def stop(self) -> None:
        if self.proc:
            if self.proc.poll() is None:
                self.proc.terminate()
            try:
                _, err = self.proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                _, err = self.proc.communicate()
            if self.proc.returncode not in (0, -15) and err.strip():
                self.errors.append(err.strip().splitlines()[-1])
        if self.thread:
            self.stop_event.set()
            self.thread.join(timeout=10)


LAG_SQL = """
SELECT count(*) AS events,
       count(c.seq) AS sealed,
       extract(epoch FROM max(c.sealed_at - e.at)) AS worst,
       extract(epoch FROM percentile_cont(0.5) WITHIN GROUP (ORDER BY c.sealed_at - e.at)) AS p50,
       extract(epoch FROM percentile_cont(0.99) WITHIN GROUP (ORDER BY c.sealed_at - e.at)) AS p99
FROM ledgerlock.audit_event e
LEFT JOIN ledgerlock.audit_chain c ON c.seq = e.seq
WHERE e.table_oid = 'a_lag'::regclass
"""


def seal_lag(b: Bench, f: Features) -> Result:
    """Audited single-row writes from every client for a while, with the sealer running as prescribed.
    Then, for every event of the load: the time from its transaction (the event's `at`) to the seal that
    put it in the chain (the link's `sealed_at`). The figure is the worst event: the target says every
    event. A digest taken at any moment covers exactly the sealed events."""
    title = "seal lag under load: event's transaction until the seal covering it (worst event)"
    if not f.audit:
        return not_available("audit_seal_lag", title, f.missing("audit"), T_SEAL_LAG, unit="s")
    sealer_sql = _sealer_sql(b)
    tables = b.has_relation("ledgerlock.audit_event") and b.has_relation("ledgerlock.audit_chain")
    if sealer_sql is None or not tables:
        return not_available("audit_seal_lag", title, "no sealer (audit_seal) or no audit_event/audit_chain tables "
                             "to read the seal times from", T_SEAL_LAG, unit="s")
    b.create_doc_table("a_lag")
    protect(b, "a_lag", audit=True)
    b.execute(sealer_sql)  # start from a sealed chain: the lag measured is the load's own
    b.prepare_for_run("a_lag")
    sealer = _Sealer(b, sealer_sql)
    sealer.start()
    try:
        tps = b.pgbench(b.script("insert", table="a_lag"), duration=b.profile.lag_seconds, variables={"scope": 1})
        deadline = time.monotonic() + SEAL_GRACE
        while time.monotonic() < deadline and sealer.alive():
            row = b.execute(LAG_SQL).fetchone()
            if row[0] == row[1]:
                break
            time.sleep(0.2)
    finally:
        sealer.stop()
    if sealer.errors:
        raise RuntimeError("the sealer failed: " + "; ".join(sealer.errors))
    events, sealed, worst, p50, p99 = b.execute(LAG_SQL).fetchone()
    unsealed = events - sealed
    worst = float(worst) if worst is not None else None
    if unsealed:
        worst = max(worst or 0.0, SEAL_GRACE)
    b.note(f"seal lag: {events:,} events, worst {worst:.2f}s, p99 {float(p99 or 0):.2f}s, load {tps:,.0f} tps")
    return Result("audit_seal_lag", title, unit="s", baseline_label="-", target=T_SEAL_LAG,
                  note=f"{b.profile.clients} clients writing audited rows for {b.profile.lag_seconds}s "
                       f"({tps:,.0f} tps) while {sealer.how} runs; {events:,} events, median lag "
                       f"{float(p50 or 0):.2f}s, p99 {float(p99 or 0):.2f}s"
                       + (f"; {unsealed:,} events still unsealed {SEAL_GRACE:g}s after the load" if unsealed else ""),
                  value_samples=[worst] if worst is not None else [])


def _memory_verify(b: Bench, f: Features, idle_mb: float) -> Result:
    events = b.profile.audit_events
    title = f"manager peak memory: audit verify on {events:,} events"
    if not f.audit or not command_exists("audit", "verify"):
        return not_available("memory_audit_verify", title, "not available yet: `ledgerlock audit verify` does not "
                             "exist in this tree", T_FLAT, unit="MB")
    # a database of its own, every row written through the capture (the verify scenario's): in the bench
    # database the enforcement-only scratch tables' rows, written with their audit triggers removed, are each
    # a problem verify must report, which made the figure that of reporting them
    from .verify import clean_database, fill

    with clean_database(b) as conninfo:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            fill(b, conn, events)
            n = conn.execute("SELECT count(*) FROM ledgerlock.audit_event").fetchone()[0]
        mb, code, tail = peak_rss_mb(manager_command() + ["--dsn", conninfo, "audit", "verify"])
    note = f"{n:,} events and {events:,} live rows in a database of their own; baseline: `ledgerlock status`"
    if code != 0:
        note += f"; audit verify exited {code}: {tail.strip().splitlines()[-1] if tail.strip() else ''}"
    return Result("memory_audit_verify", title, unit="MB", baseline_label="idle manager", target=T_FLAT,
                  note=note, baseline_samples=[idle_mb], value_samples=[mb])


def _memory_import(b: Bench, f: Features, idle_mb: float) -> Result:
    n = b.profile.audit_events
    title = f"manager peak memory: import of a {n:,}-row CSV"
    if not command_exists("import"):
        return not_available("memory_import", title, "not available yet: `ledgerlock import` (issue 8) does not "
                             "exist in this tree", T_FLAT, unit="MB")
    # The manager's memory is the point, not the load's speed: an unprotected table loads 1M rows in seconds
    # (skip mode fires a row trigger per row on a protected one); the manager streams the file the same way.
    b.create_doc_table("a_import")
    with tempfile.TemporaryDirectory(prefix="ll-bench-csv-") as tmp:
        path = Path(tmp, "rows.csv")
        with path.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["company_id", "issued_on", "amount", "note"])
            for i in range(n):
                w.writerow([1 + i % 8, "2026-01-15", f"{i % 1000}.00", "imported"])
        os.chmod(tmp, 0o755)
        t0 = time.perf_counter()
        mb, code, tail = peak_rss_mb(manager_command() + ["--dsn", b.owner_conninfo, "import", str(path),
                                                          "--table", "a_import"])
        seconds = time.perf_counter() - t0
    loaded = b.scalar(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("a_import")))
    note = f"{loaded:,} rows loaded in {seconds:.0f}s into an unprotected table; baseline: `ledgerlock status`"
    if code != 0:
        note += f"; import exited {code}: {tail.strip().splitlines()[-1] if tail.strip() else ''}"
    return Result("memory_import", title, unit="MB", baseline_label="idle manager", target=T_FLAT,
                  note=note, baseline_samples=[idle_mb], value_samples=[mb])


def memory(b: Bench, f: Features) -> list[Result]:
    idle_mb, _, _ = peak_rss_mb(manager_command() + ["--dsn", b.owner_conninfo, "status"])
    return [_memory_verify(b, f, idle_mb), _memory_import(b, f, idle_mb)]


def _capture_single_row(b: Bench, verb: str) -> list[Result]:
    rows = b.profile.prefill_rows if verb == "update" else 0
    tables = {v: f"a_capture_{verb}_{v}" for v in ("plain", "naive", "audited")}
    for variant, table in tables.items():
        b.create_doc_table(table, rows=rows)
        if variant == "naive":
            naive_audit(b, table)
        elif variant == "audited":
            protect(b, table, audit=True)
    b.prepare_for_run(*tables.values())
    s = pgbench_group(b, {v: Variant(b.script(verb, table=t), tables=(t,), variables={"scope": 1, "rows": rows})
                          for v, t in tables.items()})
    up = verb.upper()
    return [
        Result(f"capture_{verb}_vs_naive", f"single-row {up}: ledgerlock audit vs naive trigger, sealer running",
               baseline_label="naive to_jsonb trigger", target=T_CAPTURE_VS_NAIVE,
               note="full protect (R1 + R3 + capture) against an AFTER ROW trigger inserting to_jsonb(OLD/NEW) "
                    "into one table, both measured while the sealer runs as docs/audit.md prescribes",
               baseline_samples=s["naive"], value_samples=s["audited"]),
        Result(f"capture_{verb}_vs_plain", f"single-row {up}: ledgerlock audit vs plain table, sealer running",
               note="for context", baseline_samples=s["plain"], value_samples=s["audited"]),
    ]


def _capture_bulk(b: Bench) -> list[Result]:
    n = b.profile.bulk_rows
    stmt = ("INSERT INTO {} (company_id, issued_on, amount, note) "
            "SELECT 1, current_date, (g %% 1000)::numeric, 'bulk' FROM generate_series(1, %s) g")
    counter = {"round": 0}

    def variant(kind: str):
        def run() -> float:
            counter["round"] += 1
            table = f"a_capture_bulk_{kind}_{counter['round']}"
            ident = sql.Identifier(table)
            b.create_doc_table(table)
            if kind == "audited":
                protect(b, table, audit=True)
            elif kind == "floor":
                protect(b, table, audit=False)
                b.execute(sql.SQL("CREATE TRIGGER floor_bulk_audit AFTER INSERT ON {} REFERENCING NEW TABLE AS "
                                  "floor_new FOR EACH STATEMENT EXECUTE FUNCTION floor_bulk_audit()").format(ident))
            elif kind == "naive":
                naive_audit(b, table)
            b.execute("CHECKPOINT")
            seconds = b.timed(sql.SQL(stmt).format(ident), (n,), role="app")
            b.drop_table(table)
            return n / seconds
        return run

    s = timed_group(b, {k: variant(k) for k in ("plain", "audited", "floor", "naive")})
    return [
        Result("capture_bulk_vs_plain", f"bulk INSERT ... SELECT of {n:,} rows with audit, sealer running",
               unit="rows/s", target=T_BULK_AUDITED, note="full protect against a plain table",
               baseline_samples=s["plain"], value_samples=s["audited"]),
        Result("capture_bulk_floor", f"the floor of an audited bulk INSERT ... SELECT of {n:,} rows",
               unit="rows/s",
               note="enforcement + a bare statement trigger writing one unhashed event per row from the transition "
                    "table (floor_bulk_audit in bench/sql/setup.sql: the same columns and indexes as the single-row "
                    "floor's events): the least any design keeping one indexed event with the row's image pays; "
                    "for reading capture_bulk_vs_plain",
               baseline_samples=s["plain"], value_samples=s["floor"]),
        Result("capture_bulk_naive", f"bulk INSERT ... SELECT of {n:,} rows, naive to_jsonb row trigger (reference)",
               unit="rows/s", note="the naive audit trigger of capture_insert_vs_naive on the same statement",
               baseline_samples=s["plain"], value_samples=s["naive"]),
    ]


def capture(b: Bench, f: Features) -> list[Result]:
    """What an audited write costs, with the sealer running as docs/audit.md prescribes during every
    measurement (the sealer hashes the events: its work belongs to the price of capture)."""
    names = [("capture_insert_vs_naive", T_CAPTURE_VS_NAIVE), ("capture_update_vs_naive", T_CAPTURE_VS_NAIVE),
             ("capture_bulk_vs_plain", T_BULK_AUDITED)]
    sealer_sql = _sealer_sql(b)
    if not f.audit or sealer_sql is None:
        return [not_available(n, n.replace("_", " "), f.missing("audit"), t) for n, t in names]
    b.execute(sealer_sql)
    sealer = _Sealer(b, sealer_sql)
    sealer.start()
    try:
        out = _capture_single_row(b, "insert") + _capture_single_row(b, "update") + _capture_bulk(b)
    finally:
        sealer.stop()
    if sealer.errors:
        raise RuntimeError("the sealer failed: " + "; ".join(sealer.errors))
    for r in out:
        r.note += f"; sealer: {sealer.how}"
    return out


SCENARIOS = (capture, seal_lag, memory)  # verification speed: scenarios/verify.py, in a clean database
