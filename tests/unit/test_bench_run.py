"""`python -m bench` end to end on a tiny run against the test server: the table is printed and
results.json has the documented shape. Nothing about speed is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[2]


def run_bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


def test_tiny_run_prints_the_table_and_writes_results_json(cluster, tmp_path):
    out = tmp_path / "results.json"
    res = run_bench("--dsn", cluster.conninfo(), "--quick", "--reps", "1", "--only", "writes.bulk_insert",
                    "--results", str(out))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    header = next(line for line in res.stdout.splitlines() if line.startswith("scenario"))
    assert header.split() == ["scenario", "baseline", "ledgerlock", "ratio", "target", "verdict"]

    results = json.loads(out.read_text())
    assert "bulk_insert_enforced" in results
    for name, entry in results.items():
        assert {"ratio", "target", "baseline", "value", "verdict", "status", "unit"} <= set(entry), name
        assert entry["verdict"] in ("pass", "FAIL", "info", "n/a"), name
    bulk = results["bulk_insert_enforced"]
    assert bulk["unit"] == "rows/s" and bulk["target"] == 0.85
    assert bulk["baseline"] > 0 and bulk["value"] > 0
    assert abs(bulk["ratio"] - bulk["value"] / bulk["baseline"]) < 0.01
    assert len(bulk["baseline_samples"]) == 1 and len(bulk["value_samples"]) == 1

    with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:  # the bench cleans up after itself
        left = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'ledgerlock_bench%'").fetchall()
    assert left == []


def test_unknown_scenario_is_refused_before_anything_starts():
    res = run_bench("--only", "writes.no_such_thing")
    assert res.returncode == 2
    assert "unknown scenario" in res.stderr and "writes.bulk_insert" in res.stderr
