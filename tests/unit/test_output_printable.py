"""How the manager shows text it read from the database (ledgerlock.output.printable, to_json): every character
a terminal acts on instead of showing becomes an escape; everything else, accents, scripts, symbols, a no-break
space, is shown as it is, and JSON keeps the exact value."""

from __future__ import annotations

import json

import pytest

from ledgerlock.output import printable, table, to_json


@pytest.mark.parametrize(("text", "shown"), [
    ("Müller & Søn – 5 €", "Müller & Søn – 5 €"),  # the neighbour: printable text as it is
    ("1\u00a0000,00", "1\u00a0000,00"),  # a no-break space in an amount
    ("日本語 العربية", "日本語 العربية"),
    ("a\x1b[2Kb", "a\\x1b[2Kb"),  # ESC: a terminal's control sequence
    ("a\rb\tc\nd", "a\\rb\\tc\\nd"),
    ("a\x7fb\x9bc", "a\\x7fb\\x9bc"),  # DEL, and CSI of the C1 controls
    ("abc\u202edef\u2066", "abc\\u202edef\\u2066"),  # bidirectional override and isolate
    ("INV\u200b-1", "INV\\u200b-1"),  # a zero-width space: two keys that look alike
    ("a\u2028b", "a\\u2028b"),  # a line separator
    ("tag\U000e0041", "tag\\U000e0041"),  # an invisible tag character
])
def test_printable_escapes_what_a_terminal_acts_on_and_nothing_else(text, shown):
    assert printable(text) == shown


def test_printable_keeps_newlines_only_for_a_text_of_several_lines():
    assert printable("one\ntwo\x1b") == "one\\ntwo\\x1b"
    assert printable("one\ntwo\x1b", lines=True) == "one\ntwo\\x1b"


def test_a_table_cell_is_one_line():
    out = table([{"actor": "a\nb", "n": 1}], ["actor", "n"])
    assert out.splitlines() == ["actor  n", "-----  -", "a\\nb   1"]


@pytest.mark.parametrize("value", ["a\u202eb", "x\x9by", "del\x7f", "tag\U000e0041", "ok é 日本", "nbsp\u00a0"])
def test_json_escapes_the_same_characters_and_keeps_the_value(value):
    text = to_json({"v": value})
    assert json.loads(text) == {"v": value}
    assert printable(text, lines=True) == text  # nothing in it a terminal acts on
