"""How the manager prints: aligned tables for people, JSON for scripts, one-line errors."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import click

# Exit codes, the same for every command (docs/cli.md, "Exit codes").
EXIT_OK = 0        # the command did what it was asked
EXIT_FAILED = 1    # a failed command: a database refusal, a connection failure, a bad state
EXIT_USAGE = 2     # a usage error: an unknown flag, a bad argument (click's UsageError / BadParameter)
EXIT_EVIDENCE = 3  # an evidence problem: a tampered trail or bundle, number gaps, a critical doctor finding


def color_wanted() -> bool | None:
    """False when NO_COLOR is set (https://no-color.org); else None: click colors only on a terminal."""
    return False if os.environ.get("NO_COLOR") else None


def stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def progress(text: str, *, done: bool = False) -> None:
    """A progress line on stderr: rewritten in place (\\r) on a terminal; when stderr is redirected, nothing
    until the phase is done, then one plain line, so logs never fill with carriage returns."""
    if stderr_is_tty():
        click.echo(f"\r{text}", nl=done, err=True)
    elif done:
        click.echo(text, err=True)


def error_json(sqlstate: str | None, meaning: str, message: str, hint: str | None = None) -> str:
    """The one shape of an error under --json, printed on stdout (docs/cli.md, "Errors under --json")."""
    return to_json({"error": {"sqlstate": sqlstate, "meaning": meaning, "message": message, "hint": hint}})


def _default(o: Any) -> Any:
    if isinstance(o, dt.datetime | dt.date | dt.time):
        return o.isoformat()
    if isinstance(o, decimal.Decimal):
        return str(o)
    if isinstance(o, set | frozenset | tuple):
        return list(o)
    return str(o)


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, default=_default, ensure_ascii=False)


def echo_json(data: Any) -> None:
    click.echo(to_json(data))


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, list | tuple):
        return ",".join(_cell(x) for x in v)
    if isinstance(v, dt.datetime):
        return v.strftime("%Y-%m-%d %H:%M:%S%z")
    return str(v)


def table(rows: Iterable[dict], columns: Sequence[str], *, empty: str = "(none)") -> str:
    rows = list(rows)
    if not rows:
        return empty
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    out = [line.rstrip(), "  ".join("-" * w for w in widths)]
    for row in cells:
        out.append("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(out)


def echo_rows(rows: Iterable[dict], columns: Sequence[str], *, as_json: bool, empty: str = "(none)") -> None:
    rows = list(rows)
    if as_json:
        echo_json(rows)
    else:
        click.echo(table(rows, columns, empty=empty))
