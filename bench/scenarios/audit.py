"""R5 audit: verification speed, seal lag under load, and the manager's memory on large inputs."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from psycopg import sql

from ..harness import Bench
from ..stats import Result, Target, not_available
from ..tables import Features, protect

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
    """Top the chain up to ``events`` events with audited single-table inserts, EVENT_CHUNK per transaction."""
    have = count_events(b)
    if have >= events:
        return have
    b.create_doc_table("a_events")
    protect(b, "a_events", audit=True)
    t0 = time.perf_counter()
    while have < events:
        n = min(EVENT_CHUNK, events - have)
        b.execute("INSERT INTO a_events (company_id, issued_on, amount, note) "
                  "SELECT 1 + g %% 8, current_date, (g %% 1000)::numeric, 'audit-volume' FROM generate_series(1, %s) g",
                  (n,))
        have = count_events(b)
    b.note(f"audit chain filled to {have:,} events in {time.perf_counter() - t0:.1f}s")
    return have


def verify(b: Bench, f: Features) -> Result:
    title = "audit verification speed (verify_audit over the whole chain)"
    if not f.audit:
        return not_available("audit_verify_rate", title, f.missing("audit"), T_VERIFY, unit="events/s")
    events = fill_chain(b, b.profile.audit_events)
    samples = []
    for _ in range(b.profile.reps):
        b.execute("CHECKPOINT")
        seconds = b.timed("SELECT * FROM ledgerlock.verify_audit()")
        samples.append(events / seconds)
    b.note("verify_audit: " + ", ".join(f"{x:,.0f}" for x in samples) + " events/s")
    return Result("audit_verify_rate", title, unit="events/s", baseline_label="-", target=T_VERIFY,
                  note=f"{events:,} events", value_samples=samples)


def seal_lag(b: Bench, f: Features) -> Result:
    title = "seal lag under load: commit of an event to a digest covering it"
    if not f.audit:
        return not_available("audit_seal_lag", title, f.missing("audit"), T_SEAL_LAG, unit="s")
    return not_available("audit_seal_lag", title, "the seal-lag probe is not written yet", T_SEAL_LAG, unit="s")


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
    b.create_doc_table("a_import")
    protect(b, "a_import", audit=True)
    with tempfile.TemporaryDirectory(prefix="ll-bench-csv-") as tmp:
        path = Path(tmp, "rows.csv")
        with path.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["company_id", "issued_on", "amount", "note"])
            for i in range(n):
                w.writerow([1 + i % 8, "2026-01-15", f"{i % 1000}.00", "imported"])
        os.chmod(tmp, 0o755)
        mb, code, tail = peak_rss_mb(manager_command() + ["--dsn", b.owner_conninfo, "import", str(path),
                                                          "--table", "a_import"])
    loaded = b.scalar(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("a_import")))
    note = f"{loaded:,} rows loaded; baseline: `ledgerlock status`"
    if code != 0:
        note += f"; import exited {code}: {tail.strip().splitlines()[-1] if tail.strip() else ''}"
    return Result("memory_import", title, unit="MB", baseline_label="idle manager", target=T_FLAT,
                  note=note, baseline_samples=[idle_mb], value_samples=[mb])


def memory(b: Bench, f: Features) -> list[Result]:
    idle_mb, _, _ = peak_rss_mb(manager_command() + ["--dsn", b.owner_conninfo, "status"])
    return [_memory_verify(b, f, idle_mb), _memory_import(b, f, idle_mb)]


SCENARIOS = (verify, seal_lag, memory)
