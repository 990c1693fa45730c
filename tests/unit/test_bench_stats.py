"""The arithmetic of the bench report: medians, ratios, verdicts, round order, results.json entries.
No database, no timings: fixed samples in, fixed figures out."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, where bench/ lives

from bench import report  # noqa: E402
from bench.harness import BenchError, parse_pgbench  # noqa: E402
from bench.stats import (  # noqa: E402
    FAIL,
    INFO,
    NA,
    NOT_AVAILABLE,
    PASS,
    Result,
    Target,
    alternate,
    median,
    not_available,
    ratio,
    rotation,
    spread,
)


def test_median_of_odd_and_even_counts_and_none_when_empty():
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5
    assert median([]) is None
    assert median([None, 5.0]) == 5.0


def test_median_ignores_one_outlier_round():
    assert median([1000.0, 1010.0, 10.0]) == 1000.0


def test_ratio_is_value_over_baseline_and_none_without_a_positive_baseline():
    assert ratio(90.0, 100.0) == pytest.approx(0.9)
    assert ratio(90.0, None) is None
    assert ratio(None, 100.0) is None
    assert ratio(90.0, 0.0) is None


def test_spread_is_range_over_median():
    assert spread([90.0, 100.0, 110.0]) == pytest.approx(0.2)
    assert spread([]) is None


def test_ratio_target_verdicts_on_both_sides_of_the_threshold():
    t = Target(0.9, source="issue 5")
    assert Result("a", "a", target=t, baseline_samples=[100, 100, 100], value_samples=[95, 91, 99]).verdict == PASS
    assert Result("b", "b", target=t, baseline_samples=[100, 100, 100], value_samples=[80, 89, 99]).verdict == FAIL
    exactly = Result("c", "c", target=t, baseline_samples=[100.0], value_samples=[90.0])
    assert exactly.verdict == PASS


def test_verdict_uses_the_medians_not_the_best_round():
    t = Target(0.9)
    r = Result("x", "x", target=t, baseline_samples=[100, 100, 100], value_samples=[50, 60, 99])
    assert r.value == 60 and r.ratio == pytest.approx(0.6)
    assert r.verdict == FAIL


def test_value_target_with_upper_bound_for_lag_and_lower_bound_for_rates():
    lag = Target(5.0, op="<=", on="value")
    assert Result("lag", "lag", unit="s", target=lag, value_samples=[1.2, 4.9, 3.0]).verdict == PASS
    assert Result("lag", "lag", unit="s", target=lag, value_samples=[6.0, 7.0, 5.5]).verdict == FAIL
    rate = Target(100_000, on="value")
    assert Result("v", "v", unit="events/s", target=rate, value_samples=[150_000]).verdict == PASS
    assert Result("v", "v", unit="events/s", target=rate, value_samples=[99_999]).verdict == FAIL


def test_a_ratio_target_without_a_baseline_cannot_be_judged():
    r = Result("x", "x", target=Target(0.9), value_samples=[100.0])
    assert r.ratio is None and r.verdict == NA


def test_no_target_is_information_and_missing_api_is_not_available():
    assert Result("commit_rate", "c", value_samples=[2000.0]).verdict == INFO
    na = not_available("lock_check_windows", "t", "R3 is not in this tree", Target(0.95))
    assert na.status == NOT_AVAILABLE and na.verdict == NA
    assert na.as_json()["target"] == 0.95 and na.as_json()["value"] is None


def test_target_rejects_unknown_operators():
    with pytest.raises(ValueError):
        Target(1.0, op=">")
    with pytest.raises(ValueError):
        Target(1.0, on="median")


def test_target_descriptions():
    assert Target(0.9, goal=0.95).describe() == ">= 0.9x (goal 0.95x)"
    assert Target(5.0, op="<=", on="value").describe("s") == "<= 5 s"
    assert Target(100_000, on="value").describe("events/s") == ">= 100,000 events/s"


def test_results_json_entry_has_the_documented_keys_first():
    r = Result("insert_audited", "t", target=Target(0.8, source="issue 6"),
               baseline_samples=[1000.0, 1100.0, 900.0], value_samples=[850.0, 800.0, 900.0])
    entry = report.results_json([r])["insert_audited"]
    assert list(entry)[:4] == ["ratio", "target", "baseline", "value"]
    assert entry["ratio"] == 0.85 and entry["target"] == 0.8
    assert entry["baseline"] == 1000.0 and entry["value"] == 850.0
    assert entry["verdict"] == PASS and entry["target_source"] == "issue 6"
    assert entry["value_samples"] == [850.0, 800.0, 900.0]


def test_rotation_changes_the_first_variant_every_round():
    names = ["plain", "enforced", "audited"]
    assert rotation(names, 0) == names
    assert rotation(names, 1) == ["enforced", "audited", "plain"]
    assert rotation(names, 2) == ["audited", "plain", "enforced"]
    assert rotation(names, 3) == names
    assert rotation([], 4) == []


def test_alternate_interleaves_variants_round_by_round():
    calls = []

    def variant(name, value):
        def run():
            calls.append(name)
            return value
        return run

    samples = alternate({"plain": variant("plain", 1.0), "ll": variant("ll", 2.0)}, reps=3)
    assert samples == {"plain": [1.0, 1.0, 1.0], "ll": [2.0, 2.0, 2.0]}
    assert calls == ["plain", "ll", "ll", "plain", "plain", "ll"]


PGBENCH_OUTPUT = """\
pgbench (16.2)
transaction type: /tmp/insert.sql
scaling factor: 1
query mode: prepared
number of clients: 8
number of threads: 2
maximum number of tries: 1
duration: 5 s
number of transactions actually processed: 41234
number of failed transactions: 0 (0.000%)
latency average = 0.969 ms
initial connection time = 12.345 ms
tps = 8246.800000 (without initial connection time)
"""


def test_parse_pgbench_reads_tps_transactions_and_failures():
    run = parse_pgbench(PGBENCH_OUTPUT)
    assert run.tps == pytest.approx(8246.8)
    assert run.transactions == 41234 and run.failed == 0
    failed = parse_pgbench(PGBENCH_OUTPUT.replace("failed transactions: 0 (", "failed transactions: 7 ("))
    assert failed.failed == 7


def test_parse_pgbench_refuses_output_without_figures():
    with pytest.raises(BenchError):
        parse_pgbench("pgbench: error: connection to server failed")


def test_text_report_lists_every_scenario_with_its_verdict():
    results = [
        Result("insert_enforced", "t", target=Target(0.9), baseline_samples=[100.0], value_samples=[95.0]),
        not_available("seal", "t", "R5 missing", Target(5.0, op="<=", on="value"), unit="s"),
    ]
    text = report.text_report(results)
    header = text.splitlines()[0].split()
    assert header == ["scenario", "baseline", "ledgerlock", "ratio", "target", "verdict"]
    assert "insert_enforced" in text and "0.950x" in text and PASS in text
    assert "seal" in text and "R5 missing" in text


def test_docs_block_is_replaced_between_the_markers_only(tmp_path):
    doc = tmp_path / "performance.md"
    doc.write_text(f"# Performance\nintro\n{report.DOCS_BEGIN}\nold figures\n{report.DOCS_END}\noutro\n")
    assert report.update_docs(doc, "new figures")
    text = doc.read_text()
    assert "old figures" not in text and "new figures" in text
    assert text.startswith("# Performance\nintro\n") and text.endswith("outro\n")
    plain = tmp_path / "other.md"
    plain.write_text("no markers\n")
    assert not report.update_docs(plain, "x") and plain.read_text() == "no markers\n"
