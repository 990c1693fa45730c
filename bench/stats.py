"""Medians, ratios and verdicts: the arithmetic of a benchmark report, kept apart so it can be tested.

Conventions (docs/performance.md):
- every ratio is ``value / baseline`` of a throughput (higher is better), so ``0.92`` means ledgerlock keeps
  92 % of the baseline's rate; a target "time within 2x" is written as a throughput ratio >= 0.5;
- a target is a threshold on the ratio or on the value itself (events/s, seconds of lag), with a direction;
- a scenario whose API does not exist yet is "not available", never a failure of the harness.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

MEASURED = "measured"
NOT_AVAILABLE = "not available"
ERROR = "error"

PASS = "pass"
FAIL = "FAIL"
INFO = "info"  # measured, no target: shown for context (naive baselines, commit rate)
NA = "n/a"


def median(samples: Sequence[float]) -> float | None:
    """The median of the samples, or None when there are none."""
    clean = [s for s in samples if s is not None]
    return statistics.median(clean) if clean else None


def ratio(value: float | None, baseline: float | None) -> float | None:
    """value / baseline, or None when either is missing or the baseline is not positive."""
    if value is None or baseline is None or baseline <= 0:
        return None
    return value / baseline


def spread(samples: Sequence[float]) -> float | None:
    """(max - min) / median of the samples: how much one repetition can be trusted."""
    clean = [s for s in samples if s is not None]
    m = median(clean)
    if not clean or not m:
        return None
    return (max(clean) - min(clean)) / m


@dataclass(frozen=True)
class Target:
    """A threshold from a rule issue: ``on`` ('ratio' or 'value') ``op`` ('>=' or '<=') ``threshold``."""

    threshold: float
    op: str = ">="
    on: str = "ratio"
    source: str = ""  # where the target comes from, e.g. "issue 5"
    goal: float | None = None  # a stretch goal, reported but not judged

    def __post_init__(self) -> None:
        if self.op not in (">=", "<="):
            raise ValueError(f"op must be '>=' or '<=', not {self.op!r}")
        if self.on not in ("ratio", "value"):
            raise ValueError(f"on must be 'ratio' or 'value', not {self.on!r}")

    def met(self, measured: float) -> bool:
        return measured >= self.threshold if self.op == ">=" else measured <= self.threshold

    def describe(self, unit: str = "") -> str:
        if self.on == "ratio":
            text = f"{self.op} {self.threshold:g}x"
        else:
            text = f"{self.op} {self.threshold:,.10g}{(' ' + unit) if unit else ''}"
        if self.goal is not None:
            text += f" (goal {self.goal:g}{'x' if self.on == 'ratio' else ''})"
        return text


@dataclass
class Result:
    """One line of the report: a scenario's medians, its ratio and its verdict."""

    name: str
    title: str
    unit: str = "tps"
    baseline_label: str = "plain table"
    target: Target | None = None
    status: str = MEASURED
    note: str = ""
    baseline_samples: list[float] = field(default_factory=list)
    value_samples: list[float] = field(default_factory=list)

    @property
    def baseline(self) -> float | None:
        return median(self.baseline_samples)

    @property
    def value(self) -> float | None:
        return median(self.value_samples)

    @property
    def ratio(self) -> float | None:
        return ratio(self.value, self.baseline)

    @property
    def verdict(self) -> str:
        if self.status != MEASURED:
            return NA
        if self.target is None:
            return INFO
        measured = self.ratio if self.target.on == "ratio" else self.value
        if measured is None:
            return NA
        return PASS if self.target.met(measured) else FAIL

    def as_json(self) -> dict:
        """The results.json entry: ratio, target, baseline, value, then the details."""
        return {
            "ratio": _round(self.ratio, 4),
            "target": self.target.threshold if self.target else None,
            "baseline": _round(self.baseline, 3),
            "value": _round(self.value, 3),
            "target_on": self.target.on if self.target else None,
            "target_op": self.target.op if self.target else None,
            "target_source": self.target.source if self.target else None,
            "goal": self.target.goal if self.target else None,
            "verdict": self.verdict,
            "status": self.status,
            "unit": self.unit,
            "baseline_label": self.baseline_label,
            "title": self.title,
            "note": self.note,
            "baseline_samples": [_round(s, 3) for s in self.baseline_samples],
            "value_samples": [_round(s, 3) for s in self.value_samples],
        }


def _round(x: float | None, digits: int) -> float | None:
    return None if x is None else round(float(x), digits)


def not_available(name: str, title: str, why: str, target: Target | None = None, unit: str = "tps") -> Result:
    return Result(name=name, title=title, unit=unit, target=target, status=NOT_AVAILABLE, note=why)


def rotation(names: Sequence[str], rep: int) -> list[str]:
    """The order of the variants in repetition ``rep``: rotated each round, so that no variant always
    runs first (cold) or last (after the others warmed the caches or filled the WAL)."""
    n = len(names)
    if n == 0:
        return []
    k = rep % n
    return list(names[k:]) + list(names[:k])


def alternate(variants: dict[str, Callable[[], float]], reps: int) -> dict[str, list[float]]:
    """Run every variant once per round, ``reps`` rounds, in rotating order; the samples of each."""
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for rep in range(reps):
        for name in rotation(list(variants), rep):
            samples[name].append(variants[name]())
    return samples
