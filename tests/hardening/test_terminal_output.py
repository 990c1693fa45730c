"""What the application writes is printed to an auditor's terminal: the actor, reason and context it sets, the
values of its rows (in verification's findings, in why's labels, in refusals), and the keys it chooses. A
terminal obeys the control characters in what it prints: ESC starts a sequence that erases a line or moves the
cursor back over it (`\\x1b[1A\\x1b[2K`), CR returns to the line's start and prints over it, a newline starts
a line that looks like the tool's own, and the bidirectional overrides of Unicode (U+202E) show text in
another order than it has. An application that set such an actor erased its own row from `ledgerlock audit
log` on the auditor's screen, and one that wrote such a value into a tampered row hid the finding of `audit
verify` (measured 2026-11-29, before the manager escaped them). The manager now prints every such character of
what it reads as an escape (`\\x1b`, `\\r`, `\\n`, `\\u202e`); JSON output was already exact and escaped."""

from __future__ import annotations

import json

import psycopg
import pytest
from click.testing import CliRunner

from ledgerlock.cli import cli
from lltest import lives_ok

HOSTILE = "mallory\x1b[1A\x1b[2K\rbob\u202eevil\nforged line"
SHOWN = "mallory\\x1b[1A\\x1b[2K\\rbob\\u202eevil\\nforged line"
RAW = ("\x1b", "\r", "\u202e", "\x9b")


def run(db, *args, role="auditor"):
    return CliRunner().invoke(cli, ["--dsn", db.conninfo(role), *args])


def assert_printable(text: str) -> None:
    assert not [c for c in RAW if c in text], repr(text)


def test_the_audit_log_and_show_print_an_actor_s_control_characters_escaped(db):
    db.protect_invoice()
    app = db.connect("app")
    app.execute("SELECT set_config('ledgerlock.actor', %s, false), set_config('ledgerlock.reason', %s, false)",
                (HOSTILE, "fix\x9b2K"))
    app.execute("INSERT INTO invoice (id, company_id, amount) VALUES (1, 1, 100)")
    res = run(db, "audit", "log", "--table", "invoice")
    assert res.exit_code == 0, res.output
    assert_printable(res.output)
    lines = res.output.splitlines()
    # header, rule, PROTECT, the event: the actor's newline started no line of its own
    assert len(lines) == 4 and SHOWN in lines[3] and "fix\\x9b2K" in lines[3], lines
    events = json.loads(run(db, "audit", "log", "--table", "invoice", "--json").output)
    seq = next(e["seq"] for e in events if e["operation"] == "INSERT")
    res = run(db, "audit", "show", str(seq))
    assert res.exit_code == 0, res.output
    assert_printable(res.output)
    assert f"  actor:          {SHOWN}\n" in res.output
    # the neighbour: JSON keeps the value exactly, for scripts
    assert [e["actor"] for e in events if e["seq"] == seq] == [HOSTILE]
    assert_printable(run(db, "audit", "log", "--table", "invoice", "--json").output)


def test_verification_s_findings_print_a_tampered_value_s_control_characters_escaped(db):
    db.protect_invoice()
    db.connect("app").execute("INSERT INTO invoice (id, company_id, amount, note) VALUES (1, 1, 100, 'ok')")
    digest = db.connect("auditor").execute("SELECT ledgerlock.audit_digest()").fetchone()[0]
    su = psycopg.connect(db.conninfo(), autocommit=True)
    names = [r[0] for r in su.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = 'invoice'::regclass "
                                      "AND NOT tgisinternal AND tgenabled = 'A'")]
    su.execute("ALTER TABLE invoice DISABLE TRIGGER USER")  # a superuser's tampering, triggers put back after
    su.execute("UPDATE invoice SET note = %s WHERE id = 1", ("\x1b[1A\x1b[2K\raudit trail intact",))
    for name in names:
        su.execute(f'ALTER TABLE invoice ENABLE ALWAYS TRIGGER "{name}"')
    su.close()
    res = run(db, "audit", "verify", "--digest", digest)
    assert res.exit_code == 3, res.output
    assert_printable(res.stdout + res.stderr)
    assert "\\x1b[1A\\x1b[2K\\raudit trail intact" in res.stderr, res.stderr
    assert "audit trail BROKEN" in res.stderr
    # the SQL API, read in psql, says the same: its findings quote the value with the characters escaped
    auditor = db.connect("auditor")
    ok, problem = auditor.execute("SELECT ok, problem FROM ledgerlock.verify_audit(%s)", (digest,)).fetchone()
    assert not ok and problem.startswith("invoice id=1: note is \\x1b[1A\\x1b[2K\\raudit trail intact in the "
                                         "table, ok in event seq "), problem
    assert auditor.execute("SELECT problem FROM ledgerlock.audit_discrepancies()").fetchone()[0] == problem


def test_the_sql_escape_shows_what_a_terminal_acts_on_and_nothing_else(db):
    """ledgerlock._shown, which verification's findings pass through: the characters the manager escapes
    (tests/unit/test_output_printable.py), in a UTF8 database; printable text, accents and a no-break space as
    they are."""
    owner = psycopg.connect(db.conninfo(), autocommit=True)
    cases = {
        "Müller & Søn – 5 €\u00a0000": "Müller & Søn – 5 €\u00a0000",
        "a\x1b[2Kb\rc\td\ne": "a\\x1b[2Kb\\rc\\td\\ne",
        "del\x7f csi\x9b": "del\\x7f csi\\x9b",
        "abc\u202edef\u2066 INV\u200b-1 a\u2028b": "abc\\u202edef\\u2066 INV\\u200b-1 a\\u2028b",
        "tag\U000e0041": "tag\\U000e0041",
    }
    for text, shown in cases.items():
        assert owner.execute("SELECT ledgerlock._shown(%s)", (text,)).fetchone()[0] == shown, text
    owner.close()


def test_why_and_an_error_print_a_key_s_control_characters_escaped(db):
    owner = db.owner()
    owner.execute("""CREATE TABLE doc (code text PRIMARY KEY, on_day date NOT NULL DEFAULT current_date,
                                       status text NOT NULL DEFAULT 'draft');
                     GRANT SELECT, INSERT, UPDATE, DELETE ON doc TO ll_app; GRANT SELECT ON doc TO ll_admin;
                     SELECT ledgerlock.protect('doc', 'on_day', final_when => $$status = 'final'$$);""")
    lives_ok(db.connect("app"), "INSERT INTO doc (code, status) VALUES (%s, 'final')", (HOSTILE,))
    res = run(db, "why", "doc", json.dumps(HOSTILE), role="admin")
    assert res.exit_code == 0, res.output
    assert_printable(res.output)
    assert res.output.startswith(f"doc code={SHOWN} is frozen:\n"), res.output
    res = run(db, "why", "doc", json.dumps(HOSTILE + "!"), role="admin")  # no such row: the error names the key
    assert res.exit_code == 1
    assert_printable(res.stderr)
    assert res.stderr.count("\n") == 1 and "forged line!" in res.stderr, res.stderr


def test_a_refusal_names_a_row_on_one_line_whatever_its_key_holds(db):
    """A refusal is one line: an application logs it, a person reads it in psql. A key the application chose
    (ESC, CR, a newline, U+202E) is named with those characters escaped, in the message and in why_locked's
    label; the row itself keeps its key, and a printable key is named as it is (the neighbour)."""
    owner = db.owner()
    owner.execute("""CREATE TABLE doc (code text PRIMARY KEY, on_day date NOT NULL DEFAULT current_date,
                                       status text NOT NULL DEFAULT 'draft');
                     GRANT SELECT, INSERT, UPDATE, DELETE ON doc TO ll_app;
                     SELECT ledgerlock.protect('doc', 'on_day', final_when => $$status = 'final'$$);""")
    app = db.connect("app")
    app.execute("INSERT INTO doc (code, status) VALUES (%s, 'final'), ('Müller-1', 'final')", (HOSTILE,))
    with pytest.raises(psycopg.Error) as info:
        app.execute("UPDATE doc SET on_day = on_day + 1 WHERE code = %s", (HOSTILE,))
    message = info.value.diag.message_primary
    assert info.value.diag.sqlstate == "LL001"
    assert message.startswith(f"doc code={SHOWN} is final and cannot be updated") and "\n" not in message, message
    assert_printable(message)
    label = app.execute("SELECT row_label FROM ledgerlock.why_locked('doc', %s)", (json.dumps(HOSTILE),)).fetchone()
    assert label == (f"doc code={SHOWN}",)
    with pytest.raises(psycopg.Error, match=r"^doc code=Müller-1 is final and cannot be updated"):
        app.execute("UPDATE doc SET on_day = on_day + 1 WHERE code = 'Müller-1'")
    assert owner.execute("SELECT count(*) FROM doc WHERE code = %s", (HOSTILE,)).fetchone() == (1,)


def test_a_usage_error_prints_what_it_quotes_escaped(db):
    """click prints a usage error itself; one that quotes a value the database returned (a period that does not
    read as one, in PostgreSQL's words) prints it escaped like every other line. The neighbour: a good period."""
    res = run(db, "close", "tasks", "1", "2026-03\rok\u202e", role="admin")
    assert res.exit_code == 2, res.output
    assert_printable(res.stderr)
    assert "2026-03\\rok\\u202e" in res.stderr, res.stderr
    assert run(db, "close", "tasks", "1", "2026-03", role="admin").exit_code == 0
