"""How the manager prints: aligned tables for people, JSON for scripts, one-line errors.

What it prints comes in large part from the application: the actor, reason and context it sets, the values
of its rows (verification's findings, why's labels, refusals), the keys it chooses. A terminal acts on some
characters instead of showing them: ESC starts a sequence that moves the cursor or erases a line, CR prints
over the line's start, a newline starts a line that looks like the tool's own, the bidirectional overrides
show text in another order than it has, zero-width characters make two keys look alike. Everything meant for
people goes through ``printable`` (``echo``, table cells), which shows such a character as an escape
(``\x1b``, ``\r``, ``\n``, ``\u202e``); JSON escapes them in JSON's own form (``to_json``), so a script reads
the exact value and a terminal shows it harmlessly (tests/hardening/test_terminal_output.py).
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import os
import sys
import unicodedata
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


# Printed as they are besides what str.isprintable() accepts: the space separators (a no-break space in an
# amount), and a newline where the text is meant to hold several lines.
_SHOWN_CATEGORIES = {"Zs"}
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(c: str) -> str:
    if c in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[c]
    o = ord(c)
    return f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}"


def printable(text: str, *, lines: bool = False) -> str:
    """text as a terminal shows it harmlessly: every control, format, line or paragraph separator, private or
    unassigned character as an escape (``\\x1b``, ``\\u202e``); newlines kept when ``lines``."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or (lines and c == "\n") or unicodedata.category(c) in _SHOWN_CATEGORIES
                   else _escaped(c) for c in text)


def echo(text: str = "", *, err: bool = False, lines: bool = False, **style: Any) -> None:
    """click.secho of text made printable: one line unless ``lines`` (a text that holds several by design;
    its parts from the database are made printable first)."""
    click.secho(printable(text, lines=lines), err=err, **style)


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


def _json_escaped(c: str) -> str:
    o = ord(c)
    if o < 0x10000:
        return f"\\u{o:04x}"
    o -= 0x10000  # JSON writes a character past the BMP as its UTF-16 surrogate pair
    return f"\\u{0xD800 + (o >> 10):04x}\\u{0xDC00 + (o & 0x3FF):04x}"


def to_json(data: Any) -> str:
    """JSON text with the characters ``printable`` escapes written as JSON escapes (json.dumps escapes only
    the C0 controls when it keeps other characters as they are): the same value, shown harmlessly."""
    text = json.dumps(data, indent=2, default=_default, ensure_ascii=False)
    if text.isascii() and "\x7f" not in text:
        return text
    return "".join(c if c.isprintable() or c == "\n" or unicodedata.category(c) in _SHOWN_CATEGORIES
                   else _json_escaped(c) for c in text)


def echo_json(data: Any) -> None:
    click.echo(to_json(data))


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, list | tuple):
        return ",".join(_cell(x) for x in v)
    if isinstance(v, dt.datetime):
        return v.strftime("%Y-%m-%d %H:%M:%S%z")
    return printable(str(v))


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
        echo(table(rows, columns, empty=empty), lines=True)  # its cells are printable (_cell)
