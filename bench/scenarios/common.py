"""Running a group of pgbench variants side by side."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..harness import Bench
from ..stats import alternate


@dataclass
class Variant:
    script: Path
    tables: tuple[str, ...] = ()
    variables: dict[str, object] = field(default_factory=dict)
    clients: int | None = None
    before: Callable[[], None] | None = None  # untimed state change for this variant's run...
    after: Callable[[], None] | None = None  # ...and its undoing, so the other variants never see it


def pgbench_group(b: Bench, variants: dict[str, Variant]) -> dict[str, list[float]]:
    """Run the variants in rotating order, ``reps`` rounds. A CHECKPOINT before each run: every run starts
    with clean buffers and pays the same full-page writes. No warm-up run: a cold first round is one
    sample among several and the median drops it."""

    def runner(name: str, duration: int | None = None):
        v = variants[name]

        def run() -> float:
            if v.before:
                v.before()
            try:
                b.execute("CHECKPOINT")
                return b.pgbench(v.script, clients=v.clients, duration=duration, variables=v.variables)
            finally:
                if v.after:
                    v.after()

        return run

    samples = alternate({name: runner(name) for name in variants}, b.profile.reps)
    for name, s in samples.items():
        b.note(f"{name}: " + ", ".join(f"{x:,.0f}" for x in s) + " tps")
    return samples


def timed_group(b: Bench, variants: dict[str, Callable[[], float]]) -> dict[str, list[float]]:
    """Like pgbench_group for callables that return a rate (rows/s, ops/s)."""
    samples = alternate(variants, b.profile.reps)
    for name, s in samples.items():
        b.note(f"{name}: " + ", ".join(f"{x:,.0f}" for x in s) + "/s")
    return samples
