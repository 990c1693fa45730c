"""R5 audit: verification speed, seal lag under load, and the manager's memory on large inputs."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from psycopg import sql

from ..harness import Bench
from ..stats import Result, Target, not_available
from ..tables import SIGNATURES, Features, protect

T_VERIFY = Target(100_000, on="value", source="issue 6 (R5)")
T_SEAL_LAG = Target(5.0, op="<=", on="value", source="issue 6 (R5)")
T_FLAT = Target(2.0, op="<=", source="issue 3: flat memory (read as: within 2x of an idle manager command)")

EVENT_CHUNK = 100_000


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


def count_events(b: Bench) -> int:
    return b.scalar("SELECT count(*) FROM ledgerlock.audit_log")


def fill_chain(b: Bench, events: int) -> int:
    """Top the chain up to ``events`` events with audited inserts, EVENT_CHUNK rows per statement (one event
    per row); the slowest chunk is noted, since a chain that grows slower as it grows would matter."""
    have = count_events(b)
    if have >= events:
        return have
    b.create_doc_table("a_events")
    protect(b, "a_events", audit=True)
    t0 = time.perf_counter()
    chunks = []
    while have < events:
        n = min(EVENT_CHUNK, events - have)
        c0 = time.perf_counter()
        b.execute("INSERT INTO a_events (company_id, issued_on, amount, note) "
                  "SELECT 1 + g %% 8, current_date, (g %% 1000)::numeric, 'audit-volume' "
                  "FROM generate_series(1, %s) g", (n,))
        chunks.append(time.perf_counter() - c0)
        have += n
    have = count_events(b)
    b.note(f"audit chain filled to {have:,} events in {time.perf_counter() - t0:.1f}s "
           f"({len(chunks)} statements of up to {EVENT_CHUNK:,} rows, first {chunks[0]:.1f}s, slowest "
           f"{max(chunks):.1f}s)")
    return have


def verify(b: Bench, f: Features) -> Result:
    title = "audit verification speed (verify_audit over the whole chain)"
    if not f.audit:
        return not_available("audit_verify_rate", title, f.missing("audit"), T_VERIFY, unit="events/s")
    events = fill_chain(b, b.profile.audit_events)
    sealer_sql = _sealer_sql(b)
    seal_note = ""
    if sealer_sql:  # seal everything first, untimed: verification is what is measured
        t0 = time.perf_counter()
        b.execute(sealer_sql)
        seal_note = f"; sealing them took {time.perf_counter() - t0:.1f}s before the runs"
    samples = []
    outcome = None
    for _ in range(b.profile.reps):
        b.execute("CHECKPOINT")
        with b.connect() as conn:
            t0 = time.perf_counter()
            cur = conn.execute("SELECT * FROM ledgerlock.verify_audit()")
            rows = cur.fetchall()
            samples.append(events / (time.perf_counter() - t0))
            names = [c.name for c in cur.description or []]
            outcome = [dict(zip(names, r, strict=True)) for r in rows]
    b.note("verify_audit: " + ", ".join(f"{x:,.0f}" for x in samples) + " events/s")
    first = outcome[0] if outcome else {}
    verdict = ", ".join(f"{k}={first[k]}" for k in ("ok", "events", "sealed", "problems") if k in first) or str(first)
    return Result("audit_verify_rate", title, unit="events/s", baseline_label="-", target=T_VERIFY,
                  note=f"{events:,} events{seal_note}; verify_audit: {verdict[:160]}",
                  value_samples=samples)


SEAL_EVERY = 1.0  # seconds between two seals: the cadence R5 recommends ("every second or so")
PROBE_EVERY = 0.5  # seconds between two probe events
POLL_EVERY = 0.1


def _sealer_sql(b: Bench) -> str | None:
    if b.has_function("ledgerlock.audit_seal()"):
        return "SELECT ledgerlock.audit_seal()"
    if b.has_function(SIGNATURES["digest"]):
        return "SELECT ledgerlock.audit_digest()"
    return None


def seal_lag(b: Bench, f: Features) -> Result:
    """Audited writes from every client while a sealer runs every second; probe events are committed every
    half second, and the time until the audit_log shows each of them in the chain (chain_seq set) is its
    lag. The figure is the worst probe: the target says every event."""
    title = "seal lag under load: commit of an event until the chain covers it (worst probe)"
    if not f.audit:
        return not_available("audit_seal_lag", title, f.missing("audit"), T_SEAL_LAG, unit="s")
    sealer_sql = _sealer_sql(b)
    if sealer_sql is None:
        return not_available("audit_seal_lag", title, "neither ledgerlock.audit_seal() nor audit_digest() exists",
                             T_SEAL_LAG, unit="s")
    for t in ("a_lag", "a_lag_probe"):
        b.create_doc_table(t)
        protect(b, t, audit=True)
    b.prepare_for_run("a_lag", "a_lag_probe")
    load_seconds = b.profile.lag_seconds
    stop_probes, stop_all = threading.Event(), threading.Event()
    committed: dict[int, float] = {}
    lags: dict[int, float] = {}
    seal_times: list[float] = []
    errors: list[str] = []

    def guarded(fn):
        def run():
            try:
                fn()
            except Exception as exc:  # reported in the result, never swallowed
                errors.append(f"{fn.__name__}: {exc}")
                stop_all.set()
        return run

    def sealer():
        with b.connect() as conn:
            while not stop_all.is_set():
                t0 = time.monotonic()
                conn.execute(sealer_sql)
                seal_times.append(time.monotonic() - t0)
                stop_all.wait(max(0.0, SEAL_EVERY - (time.monotonic() - t0)))

    def prober():
        with b.connect() as conn:
            while not stop_probes.is_set():
                row_id = conn.execute("INSERT INTO a_lag_probe (company_id, note) VALUES (1, 'lag probe') "
                                      "RETURNING id").fetchone()[0]
                committed[row_id] = time.monotonic()  # autocommit: committed when execute returns
                stop_probes.wait(PROBE_EVERY)

    def poller():
        with b.connect() as conn:
            while not stop_all.is_set():
                sealed = conn.execute(
                    "SELECT (row_key ->> 'id')::bigint FROM ledgerlock.audit_log "
                    "WHERE table_name = 'a_lag_probe'::regclass AND chain_seq IS NOT NULL").fetchall()
                now = time.monotonic()
                for (row_id,) in sealed:
                    if row_id in committed and row_id not in lags:
                        lags[row_id] = now - committed[row_id]
                if stop_probes.is_set() and len(lags) >= len(committed):
                    stop_all.set()
                stop_all.wait(POLL_EVERY)

    threads = [threading.Thread(target=guarded(fn), daemon=True) for fn in (sealer, prober, poller)]
    for t in threads:
        t.start()
    try:
        tps = b.pgbench(b.script("insert", table="a_lag"), duration=load_seconds, variables={"scope": 1})
    finally:
        stop_probes.set()
        deadline = time.monotonic() + 30  # the sealer keeps running: late probes get their chance
        while not stop_all.is_set() and time.monotonic() < deadline:
            time.sleep(POLL_EVERY)
        stop_all.set()
        for t in threads:
            t.join(timeout=10)
    if errors:
        raise RuntimeError("; ".join(errors))
    unsealed = len(committed) - len(lags)
    worst = max(lags.values(), default=None)
    if unsealed:
        worst = max(worst or 0.0, 30.0)
    ordered = sorted(lags.values())
    p50 = ordered[len(ordered) // 2] if ordered else None
    b.note(f"seal lag: {len(committed)} probes, worst {worst:.2f}s, median {p50:.2f}s, load {tps:,.0f} tps")
    return Result("audit_seal_lag", title, unit="s", baseline_label="-", target=T_SEAL_LAG,
                  note=f"{b.profile.clients} clients writing audited rows for {load_seconds}s ({tps:,.0f} tps) "
                       f"while `{sealer_sql}` runs every {SEAL_EVERY:g}s (longest seal "
                       f"{max(seal_times, default=0):.2f}s); {len(committed)} probes, median lag "
                       f"{p50 if p50 is not None else float('nan'):.2f}s"
                       + (f"; {unsealed} probes not sealed after 30s" if unsealed else ""),
                  value_samples=[worst] if worst is not None else [])


def _memory_verify(b: Bench, f: Features, idle_mb: float) -> Result:
    events = b.profile.audit_events
    title = f"manager peak memory: audit verify on {events:,} events"
    if not f.audit or not command_exists("audit", "verify"):
        return not_available("memory_audit_verify", title, "not available yet: `ledgerlock audit verify` does not "
                             "exist in this tree", T_FLAT, unit="MB")
    fill_chain(b, events)
    mb, code, tail = peak_rss_mb(manager_command() + ["--dsn", b.owner_conninfo, "audit", "verify"])
    note = f"{count_events(b):,} events; baseline: `ledgerlock status`"
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


SCENARIOS = (seal_lag, verify, memory)
