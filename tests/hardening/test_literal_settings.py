"""A backslash in a plain string literal means what the session's standard_conforming_strings says: with it off,
'\\d' reads as 'd' and '\\x00' as a zero byte. PostgreSQL compiles a function's body under the settings it runs
with, so a client who turns the setting off changes what such a literal holds in ledgerlock's own code: before
the fix, an admin session with it off had every protect refused as "not a single condition" (the comment check's
'/\\*' became '/*', which matches anywhere), and every lock_period failed on the zero byte of _trigger_args. The
hostile sweep (tests/lltest.py, HOSTILE_SETTINGS) now runs the rule tests with it off; this holds the rule."""

from __future__ import annotations

import re

PINNED = "standard_conforming_strings=on"
_DOLLAR = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")


def plain_literals_with_a_backslash(src: str) -> list[str]:
    """The plain ('...', not E'...') string literals of a function body that hold a backslash. Comments and
    dollar-quoted strings (where a backslash is always itself) are skipped."""
    found, i, n = [], 0, len(src)
    while i < n:
        if src.startswith("--", i):
            i = src.find("\n", i)
            i = n if i < 0 else i
        elif src.startswith("/*", i):
            i = src.find("*/", i + 2)
            i = n if i < 0 else i + 2
        elif src[i] == "$" and (m := _DOLLAR.match(src, i)) and not (i and (src[i - 1].isalnum() or src[i - 1] == "_")):
            end = src.find(m.group(0), m.end())
            i = n if end < 0 else end + len(m.group(0))
        elif src[i] == "'":
            escaped = i > 0 and src[i - 1] in "Ee" and not (i > 1 and (src[i - 2].isalnum() or src[i - 2] == "_"))
            j = i + 1
            while j < n:
                if escaped and src[j] == "\\":
                    j += 2
                elif src[j] == "'" and src.startswith("''", j):
                    j += 2
                elif src[j] == "'":
                    break
                else:
                    j += 1
            if not escaped and "\\" in src[i:j + 1]:
                found.append(src[i:j + 1])
            i = j + 1
        else:
            i += 1
    return found


def test_the_scanner_finds_what_it_must_and_nothing_else():
    body = ("x ~ '\\d+' -- it's a comment with 'a\\b'\n"
            "AND y = E'\\n' AND z = $q$\\w$q$ AND w = 'it''s \\M' AND v = 'plain'")
    assert plain_literals_with_a_backslash(body) == ["'\\d+'", "'it''s \\M'"]


def test_every_function_whose_literals_hold_a_backslash_pins_standard_conforming_strings(db):
    db.protect_invoice(number_column="number", number_format="INV-{YYYY}-{SEQ:5}")  # generated functions too
    owner = db.owner()
    rows = owner.execute("SELECT p.oid::regprocedure::text, p.prosrc, coalesce(p.proconfig, '{}') FROM pg_proc p "
                         "WHERE p.pronamespace = 'ledgerlock'::regnamespace ORDER BY 1").fetchall()
    holding = {sig: config for sig, src, config in rows if plain_literals_with_a_backslash(src)}
    assert "ledgerlock._trigger_args(bytea)" in holding and "ledgerlock._template(text,jsonb)" in holding
    assert [sig for sig, config in holding.items() if PINNED not in config] == []
    # the generated guards write their literals with quote_literal (E'...' when a backslash is in them)
    assert not [sig for sig in holding if sig.startswith(("ledgerlock._ll10_", "ledgerlock._ll20_", "ledgerlock._ll30_",
                                                          "ledgerlock._ll40_t", "ledgerlock._ll90_t"))]


def test_an_admin_who_turns_standard_conforming_strings_off_gets_the_same_answers(db):
    admin = db.connect("admin")
    admin.execute("SET standard_conforming_strings = off")
    admin.execute("SELECT ledgerlock.protect('invoice', date_column => 'issued_on', scope_column => 'company_id', "
                  "final_when => $$status in ('approved','paid')$$, number_column => 'number', "
                  "number_format => 'INV-{YYYY}-{SEQ:5}')")
    lock_id = admin.execute("SELECT ledgerlock.lock_period('1', '2026-01-01', '2026-01-31')").fetchone()[0]
    assert admin.execute("SELECT level, status FROM ledgerlock.period_lock WHERE id = %s",
                         (lock_id,)).fetchone() == ("soft", "active")
    app = db.connect("app")
    app.execute("INSERT INTO invoice (id, company_id, issued_on, status) VALUES (1, 1, '2026-02-01', 'approved')")
    assert app.execute("SELECT number FROM invoice WHERE id = 1").fetchone()[0] == "INV-2026-00001"
