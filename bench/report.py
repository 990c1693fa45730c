"""The report: a table for people, results.json for scripts, and the figures block of docs/performance.md."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

from ledgerlock.output import table

from .stats import Result

DOCS_BEGIN = "<!-- bench:figures:begin -->"
DOCS_END = "<!-- bench:figures:end -->"


def fmt(x: float | None, unit: str = "") -> str:
    if x is None:
        return "-"
    if unit == "MB" or abs(x) < 100:
        text = f"{x:,.2f}" if abs(x) < 100 else f"{x:,.0f}"
    else:
        text = f"{x:,.0f}"
    return f"{text} {unit}".strip()


def fmt_ratio(r: float | None) -> str:
    return "-" if r is None else f"{r:.3f}x"


def rows(results: Sequence[Result]) -> list[dict]:
    out = []
    for r in results:
        out.append({
            "scenario": r.name,
            "baseline": "-" if not r.baseline_samples else f"{fmt(r.baseline, r.unit)} ({r.baseline_label})",
            "ledgerlock": fmt(r.value, r.unit),
            "ratio": fmt_ratio(r.ratio),
            "target": r.target.describe(r.unit) if r.target else "-",
            "verdict": r.verdict,
        })
    return out


COLUMNS = ["scenario", "baseline", "ledgerlock", "ratio", "target", "verdict"]


def text_report(results: Sequence[Result]) -> str:
    lines = [table(rows(results), COLUMNS), ""]
    for r in results:
        if r.note:
            lines.append(f"  {r.name}: {r.title}. {r.note}")
    return "\n".join(lines)


def results_json(results: Sequence[Result]) -> dict:
    return {r.name: r.as_json() for r in results}


def write_results(results: Sequence[Result], path: Path) -> None:
    path.write_text(json.dumps(results_json(results), indent=2) + "\n")


def markdown_figures(results: Sequence[Result], machine: dict, profile: str, elapsed: float) -> str:
    def cell(s: str) -> str:
        return s.replace("|", "\\|")

    head = "| scenario | baseline | ledgerlock | ratio | target | verdict |\n|---|---|---|---|---|---|\n"
    body = "".join(
        "| " + " | ".join(cell(row[c]) if c != "scenario" else f"`{row[c]}`" for c in COLUMNS) + " |\n"
        for row in rows(results))
    settings = ", ".join(f"{k}={v}" for k, v in machine.get("settings", {}).items())
    load = machine.get("load_average")
    about = (
        f"Run: `{'make bench' if profile == 'standard' else 'make bench-quick'}` ({profile} profile), "
        f"{elapsed / 60:.1f} min. Machine: {machine.get('cpus')} CPUs ({machine.get('cpu', '?')}), "
        f"{machine.get('memory_gb', '?')} GB RAM, {machine.get('platform', '?')}"
        + (f", load average before the run {load[0]:.2f}" if load else "") + ". "
        f"Server: {machine.get('server', '?').split(',')[0]}; {settings}.\n\n"
    )
    notes = "".join(f"- `{r.name}`: {r.note}\n" for r in results if r.note)
    return about + head + body + "\nNotes from the run:\n\n" + notes


def update_docs(path: Path, block: str, server: str = "pg16") -> bool:
    """Replace the figures block of docs/performance.md (between the markers of that server: the pg16 block
    is bench:figures, another server's bench:figures-<server>); False when there are none."""
    if not path.exists():
        return False
    begin, end = DOCS_BEGIN, DOCS_END
    if server != "pg16":
        begin, end = (m.replace("bench:figures", f"bench:figures-{server}") for m in (DOCS_BEGIN, DOCS_END))
    text = path.read_text()
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        return False
    path.write_text(pattern.sub(lambda _: f"{begin}\n{block}\n{end}", text))
    return True
