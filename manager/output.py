"""How the manager prints: aligned tables for people, JSON for scripts, one-line errors."""

from __future__ import annotations

import datetime as dt
import decimal
import json
from collections.abc import Iterable, Sequence
from typing import Any

import click


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
