"""Targeted attacks through session settings (issue 13 item 4): what the sweep of tests/conftest.py does not
build by itself, because the demo schema has neither a float8 nor a json column.

A client controls how values are printed (extra_float_digits, DateStyle…). A guard that compares rows through
their text (to_jsonb(row)::text, jsonb equality of text-converted values) can be made to see no change where
there is one: `SET extra_float_digits = -15` prints 1.2 and 1.3 alike, and a json value rewritten with a
duplicate key converts to the same jsonb. Every attack runs as the application; every refusal is shown with
its permitted neighbour.
"""

from __future__ import annotations

import pytest

from lltest import HOSTILE_SETTINGS, fresh_database, lives_ok, refused

FX = """
CREATE TABLE fx_invoice (
    id          integer PRIMARY KEY,
    company_id  integer NOT NULL,
    issued_on   date NOT NULL,
    status      text NOT NULL DEFAULT 'draft',
    fx_rate     float8 NOT NULL,
    payload     json,
    paid        boolean NOT NULL DEFAULT false
);
GRANT SELECT, INSERT, UPDATE, DELETE ON fx_invoice TO ll_app, ll_controller, ll_admin, ll_admin2;
SELECT ledgerlock.protect('fx_invoice', 'issued_on', 'company_id', $$status = 'final'$$,
                          mutable_columns => '{paid}');
"""


@pytest.fixture
def fx(db):
    """fx_invoice protected: id 1 final, id 2 draft, id 3 draft in a hard window (2025-03); the app's connection."""
    owner = db.owner()
    owner.execute(FX)
    app = db.connect("app")
    app.execute("""INSERT INTO fx_invoice (id, company_id, issued_on, status, fx_rate, payload) VALUES
                   (1, 1, '2025-06-10', 'final', 1.2, '{"a": 1}'),
                   (2, 1, '2025-06-11', 'draft', 1.2, '{"a": 1}'),
                   (3, 1, '2025-03-10', 'draft', 1.2, '{"a": 1}')""")
    db.connect("controller").execute("SELECT ledgerlock.lock_period('1', '2025-03-01', '2025-03-31', 'hard')")
    return app


def stored(db, rid):
    return db.owner().execute("SELECT fx_rate, payload::text FROM fx_invoice WHERE id = %s", (rid,)).fetchone()


def test_a_float_change_is_a_change_under_normal_settings(db, fx):
    """The neighbours: with default settings both refusals hold, and a draft's rate changes."""
    with refused("LL001", r"^fx_invoice id=1 is final and cannot be updated"):
        fx.execute("UPDATE fx_invoice SET fx_rate = 1.3 WHERE id = 1")
    with refused("LL002", r"^Period 2025-03-01\.\.2025-03-31 is locked \(hard\) for scope 1: fx_invoice id=3 "):
        fx.execute("UPDATE fx_invoice SET fx_rate = 1.3 WHERE id = 3")
    fx.execute("SET extra_float_digits = -15")
    lives_ok(fx, "UPDATE fx_invoice SET fx_rate = 1.3 WHERE id = 2")  # a draft outside any window: permitted
    lives_ok(fx, "UPDATE fx_invoice SET paid = true WHERE id IN (1, 3)")  # the mutable column: permitted
    assert stored(db, 2)[0] == 1.3
    assert stored(db, 1)[0] == stored(db, 3)[0] == 1.2
    assert db.owner().execute("SELECT bool_and(paid) FROM fx_invoice WHERE id IN (1, 3)").fetchone()[0] is True


def test_extra_float_digits_cannot_change_a_float_of_a_final_row(db, fx):
    fx.execute("SET extra_float_digits = -15")
    with refused("LL001", r"^fx_invoice id=1 is final and cannot be updated"):
        fx.execute("UPDATE fx_invoice SET fx_rate = 1.3 WHERE id = 1")
    assert stored(db, 1)[0] == 1.2


def test_extra_float_digits_cannot_change_a_float_of_a_row_in_a_hard_window(db, fx):
    fx.execute("SET extra_float_digits = -15")
    with refused("LL002", r"^Period 2025-03-01\.\.2025-03-31 is locked \(hard\) for scope 1: fx_invoice id=3 "):
        fx.execute("UPDATE fx_invoice SET fx_rate = 1.3 WHERE id = 3")
    assert stored(db, 3)[0] == 1.2


def test_a_json_value_rewritten_with_a_duplicate_key_on_a_final_row_is_refused(db, fx):
    with refused("LL001", r"^fx_invoice id=1 is final and cannot be updated"):
        fx.execute("""UPDATE fx_invoice SET payload = '{"a": 2, "a": 1}' WHERE id = 1""")
    assert stored(db, 1)[1] == '{"a": 1}'


def test_a_json_value_rewritten_with_a_duplicate_key_on_a_draft_is_written(db, fx):
    """The neighbour: a draft takes the new json text."""
    fx.execute("""UPDATE fx_invoice SET payload = '{"a": 2, "a": 1}' WHERE id = 2""")
    assert stored(db, 2)[1] == '{"a": 2, "a": 1}'


def test_a_json_value_rewritten_with_a_duplicate_key_on_a_draft_is_audited_as_a_change(db, fx):
    fx.execute("""UPDATE fx_invoice SET payload = '{"a": 2, "a": 1}' WHERE id = 2""")
    changed = db.connect("auditor").execute(
        "SELECT changed_columns FROM ledgerlock.audit_log WHERE table_name = 'fx_invoice'::regclass "
        "AND operation = 'UPDATE' AND row_key = '{\"id\": 2}' ORDER BY seq DESC LIMIT 1").fetchone()
    assert changed is not None and "payload" in changed[0]


def test_extra_float_digits_changes_nothing_a_draft_records(db, fx):
    """A float written under extra_float_digits = -15 is stored exactly (the guards must not round it)."""
    fx.execute("SET extra_float_digits = -15")
    fx.execute("UPDATE fx_invoice SET fx_rate = 1.3 WHERE id = 2")
    fx.execute("RESET extra_float_digits")
    assert fx.execute("SELECT fx_rate FROM fx_invoice WHERE id = 2").fetchone()[0] == 1.3


def test_the_sweep_opens_every_connection_but_the_owners_with_the_hostile_settings(cluster):
    """The harness of the sweep (tests/conftest.py) does what it says: each setting is in force for a role."""
    show = "SELECT " + ", ".join(f"current_setting('{name}')" for name in HOSTILE_SETTINGS)
    with fresh_database(cluster, hostile=True) as hostile:
        for role in ("app", "controller", "admin", "auditor"):
            assert hostile.connect(role).execute(show).fetchone() == tuple(
                v.replace(",", ", ") if n == "DateStyle" else v for n, v in HOSTILE_SETTINGS.items())
        assert hostile.owner().execute("SELECT current_setting('extra_float_digits')").fetchone() == ("1",)


R4 = """
CREATE TABLE fx_payment (
    id          integer PRIMARY KEY,
    invoice_id  integer NOT NULL REFERENCES fx_invoice,
    amount      float8 NOT NULL
);
CREATE TABLE fx_line (
    id          integer PRIMARY KEY,
    invoice_id  integer NOT NULL REFERENCES fx_invoice,
    qty         float8 NOT NULL
);
GRANT SELECT, INSERT, UPDATE, DELETE ON fx_payment, fx_line TO ll_app, ll_controller, ll_admin, ll_admin2;
INSERT INTO fx_invoice (id, company_id, issued_on, status, fx_rate) VALUES (4, 1, '2025-06-12', 'draft', 1.2);
INSERT INTO fx_line (id, invoice_id, qty) VALUES (1, 2, 1.2), (2, 1, 1.2), (3, 4, 1.2);
INSERT INTO fx_payment (id, invoice_id, amount) VALUES (1, 2, 1.2);
SELECT ledgerlock.protect_referenced('fx_invoice', 'fx_payment');
SELECT ledgerlock.protect_lines('fx_line', 'fx_invoice');
"""


@pytest.fixture
def fx_r4(db, fx):
    """R4 on fx_invoice: draft id 2 has a payment and line 1; final id 1 has line 2; draft id 4 has line 3."""
    db.owner().execute(R4)
    return fx


def test_extra_float_digits_cannot_change_a_float_of_a_referenced_row(db, fx_r4):
    fx_r4.execute("SET extra_float_digits = -15")
    with refused("LL003", r"^fx_invoice id=2 is referenced by fx_payment id=1 and cannot be updated"):
        fx_r4.execute("UPDATE fx_invoice SET fx_rate = 1.3 WHERE id = 2")
    lives_ok(fx_r4, "UPDATE fx_invoice SET paid = true WHERE id = 2")  # the neighbour: a mutable column
    assert stored(db, 2)[0] == 1.2
    assert db.owner().execute("SELECT paid FROM fx_invoice WHERE id = 2").fetchone()[0] is True


def test_extra_float_digits_cannot_change_a_float_of_a_line_of_a_final_header(db, fx_r4):
    fx_r4.execute("SET extra_float_digits = -15")
    with refused("LL001", r"^fx_line id=2 cannot be updated: its header fx_invoice id=1 is final"):
        fx_r4.execute("UPDATE fx_line SET qty = 1.3 WHERE id = 2")
    lives_ok(fx_r4, "UPDATE fx_line SET qty = 1.3 WHERE id = 3")  # the neighbour: a line of a free draft
    assert db.owner().execute("SELECT qty FROM fx_line ORDER BY id").fetchall() == [(1.2,), (1.2,), (1.3,)]


def test_a_float_written_under_extra_float_digits_is_audited_exactly(db, fx):
    """The trail records the stored value, not the client's rounding of it."""
    fx.execute("SET extra_float_digits = -15")
    fx.execute("UPDATE fx_invoice SET fx_rate = 1.3000000000000003 WHERE id = 2")
    new_rate = db.connect("auditor").execute(
        "SELECT new_row -> 'fx_rate' FROM ledgerlock.audit_log WHERE table_name = 'fx_invoice'::regclass "
        "AND operation = 'UPDATE' ORDER BY seq DESC LIMIT 1").fetchone()[0]
    assert new_rate == 1.3000000000000003


# gin_fuzzy_search_limit: a GIN index scan returns a random subset of its rows, at most about the limit, once
# every key it searches matches more. A probe ledgerlock runs on a user's table that the planner serves from a
# GIN index (R4's child_condition, an operator of the index) then saw no referencing row: the application
# changed a referenced parent (measured on 16, 2026-11-29, before the pin).
GIN = """
CREATE TABLE fx_note (
    id          integer PRIMARY KEY,
    invoice_id  integer NOT NULL REFERENCES fx_invoice,
    tags        text[] NOT NULL
);
CREATE INDEX fx_note_tags ON fx_note USING gin (tags) WITH (fastupdate = off);
GRANT SELECT, INSERT, UPDATE, DELETE ON fx_note TO ll_app;
INSERT INTO fx_invoice (id, company_id, issued_on, status, fx_rate)
    SELECT g, 1, '2025-06-01', 'draft', 1 FROM generate_series(10, 59) g;
INSERT INTO fx_note SELECT g, 11 + g % 49, '{posted}' FROM generate_series(1, 3000) g;
INSERT INTO fx_note VALUES (5000, 10, '{posted}'), (5001, 4, '{draft}');
INSERT INTO fx_note SELECT 6000 + g, 10 + g % 50, '{draft}' FROM generate_series(1, 30000) g;
ANALYZE fx_note;
SELECT ledgerlock.protect_referenced('fx_invoice', 'fx_note', child_condition => $$tags @> '{posted}'$$);
"""


def test_gin_fuzzy_search_limit_cannot_hide_a_referencing_row(db, fx):
    owner = db.owner()
    owner.execute("INSERT INTO fx_invoice (id, company_id, issued_on, status, fx_rate) "
                  "VALUES (4, 1, '2025-06-12', 'draft', 1.2)")
    owner.execute(GIN)
    owner.execute("VACUUM fx_note")  # the index's pending entries merged: its scans are the ones reduced
    # the attacker's session: the planner may only use the GIN index, and its scans return a handful of rows
    fx.execute("SET enable_seqscan = off; SET enable_indexscan = off; SET gin_fuzzy_search_limit = 1")
    probe = "SELECT count(*) FROM fx_note WHERE invoice_id = 10 AND tags @> '{posted}'"
    assert "Bitmap Index Scan on fx_note_tags" in "\n".join(r[0] for r in fx.execute("EXPLAIN " + probe))
    assert fx.execute(probe).fetchone()[0] == 0  # what the session's own query sees: not the row that is there
    with refused("LL003", r"^fx_invoice id=10 is referenced by fx_note id=5000 and cannot be updated"):
        fx.execute("UPDATE fx_invoice SET fx_rate = 2 WHERE id = 10")
    with refused("LL003", r"^fx_invoice id=10 is referenced by fx_note id=5000 and cannot be deleted"):
        fx.execute("DELETE FROM fx_invoice WHERE id = 10")
    # the neighbour: an invoice whose only note does not match the condition
    lives_ok(fx, "UPDATE fx_invoice SET fx_rate = 2 WHERE id = 4")
    assert owner.execute("SELECT fx_rate FROM fx_invoice WHERE id IN (4, 10) ORDER BY id").fetchall() == [
        (2.0,), (1.0,)]
    # and an admin asking why, in a session set the same way (ALTER ROLE ... SET can do that to every session of
    # the role), is told what any session is told, not that nothing holds the row
    why = "SELECT depth, rule, summary, details ->> 'child_table' FROM ledgerlock.why_locked('fx_invoice', '10')"
    told = db.connect("admin").execute(why).fetchall()
    assert told == [(0, "referenced", "referenced by a row of fx_note", "public.fx_note")]
    admin = db.connect("admin")
    admin.execute("SET enable_seqscan = off; SET enable_indexscan = off; SET gin_fuzzy_search_limit = 1")
    assert admin.execute(why).fetchall() == told


def test_every_guard_that_queries_a_users_table_pins_gin_fuzzy_search_limit_and_extra_float_digits(db, fx):
    """The rule over the installed code: the generated guards of R3 (a parent's included) and R4 and the capture,
    and the shipped trigger functions that query a user's table (R3's generic guard, the capture's template) pin
    what ledgerlock._row_reading_settings() says (extra_float_digits: the keys they record)."""
    db.owner().execute(R4)
    db.owner().execute("SELECT ledgerlock.protect('fx_line', 'invoice_id.issued_on', 'invoice_id.company_id')")
    db.protect_invoice(number_column="number", number_format="INV-{SEQ}")
    rows = db.owner().execute(
        """SELECT p.proname::text, coalesce(p.proconfig @> '{gin_fuzzy_search_limit=0,extra_float_digits=1}', false)
           FROM pg_proc p
           WHERE p.pronamespace = 'ledgerlock'::regnamespace AND p.prorettype = 'trigger'::regtype
             AND (p.proname IN ('guard_period_row', 'audit_capture')
                  OR p.oid::regprocedure::text IN (SELECT fn FROM ledgerlock.code_fingerprint
                                                   WHERE origin = 'generated'))
           ORDER BY 1""").fetchall()
    kinds = {n.split("_")[1] if n.startswith("_ll") else n for n, _ in rows}
    assert kinds >= {"guard_period_row", "audit_capture", "ll20", "ll30", "ll40", "ll90"}, kinds
    assert [n for n, _ in rows if n.startswith("_ll20_") and n.endswith("_parent")], rows  # fx_invoice's guard
    reads_rows = [(n, pinned) for n, pinned in rows if not n.startswith("_ll40") and not n.endswith("_mark")]
    assert [n for n, pinned in reads_rows if not pinned] == []
    # R2's guards and R4's mark of a header made final read only the row and ledgerlock's own tables
    assert sorted(n.rsplit("_", 1)[-1] for n, pinned in rows if not pinned) == ["draft", "final", "mark", "settle"]


FLOAT_KEYED = """
CREATE TABLE fx_rate_doc (id float8 PRIMARY KEY, company_id integer NOT NULL, on_day date NOT NULL);
GRANT SELECT, INSERT, UPDATE, DELETE ON fx_rate_doc TO ll_app, ll_controller;
SELECT ledgerlock.protect('fx_rate_doc', 'on_day', 'company_id');
"""


def test_a_float_key_is_recorded_and_named_exactly_under_extra_float_digits(db):
    """R3's guard records the key of the first row an override lets into a window and of a row skipped under
    on_locked = 'skip' (lock_event, and the trail's copy), and names the row in its refusal: from an image of
    the row it makes itself. Under the writer's extra_float_digits = -15 the key 0.30000000000000004 was
    recorded and named as 0.3, another row's key (measured on 16, 2026-11-29); the guard pins the setting."""
    owner = db.owner()
    owner.execute(FLOAT_KEYED)
    ctl = db.connect("controller")
    ctl.execute("SELECT ledgerlock.lock_period('1', '2025-03-01', '2025-03-31', 'soft')")
    app = db.connect("app")
    app.execute("SET extra_float_digits = -15")
    with refused("LL002", r": fx_rate_doc id=0\.30000000000000004 cannot be inserted$"):
        app.execute("INSERT INTO fx_rate_doc VALUES (0.30000000000000004, 1, '2025-03-05')")
    ctl.execute("SET extra_float_digits = -15")
    with ctl.transaction():
        ctl.execute("SELECT ledgerlock.begin_override('rate correction')")
        lives_ok(ctl, "INSERT INTO fx_rate_doc VALUES (0.30000000000000004, 1, '2025-03-05')")
    with app.transaction():
        app.execute("SET LOCAL ledgerlock.on_locked = 'skip'")
        lives_ok(app, "INSERT INTO fx_rate_doc VALUES (0.10000000000000002, 1, '2025-03-06'), (2, 1, '2025-06-01')")
    auditor = db.connect("auditor")
    events = ("SELECT kind, details -> 'key' FROM ledgerlock.lock_event WHERE kind IN ('override', 'skip') "
              "ORDER BY id")
    assert auditor.execute(events).fetchall() == [("override", {"id": 0.30000000000000004}),
                                                  ("skip", {"id": 0.10000000000000002})]
    trail = ("SELECT operation, row_key FROM ledgerlock.audit_log WHERE table_name = 'fx_rate_doc'::regclass "
             "AND operation <> 'PROTECT' ORDER BY seq")
    assert auditor.execute(trail).fetchall() == [
        ("INSERT", {"id": 0.30000000000000004}), ("SKIP", {"id": 0.10000000000000002}), ("INSERT", {"id": 2})]
    assert owner.execute("SELECT array_agg(id ORDER BY id) FROM fx_rate_doc").fetchone() == ([0.30000000000000004, 2],)


def test_a_final_row_s_float_key_is_named_exactly_under_extra_float_digits(db):
    """R1's refusal names the final row by its key: from the pinned image its guard makes on the refusal only
    (the guard runs when a final row changes, never for a write that passes). Under -15 the key
    0.30000000000000004 was named 0.3, another row's key. The neighbour: a draft changes."""
    owner = db.owner()
    owner.execute("""
        CREATE TABLE fx_final (id float8 PRIMARY KEY, on_day date NOT NULL, status text NOT NULL DEFAULT 'draft');
        GRANT SELECT, INSERT, UPDATE, DELETE ON fx_final TO ll_app;
        SELECT ledgerlock.protect('fx_final', 'on_day', final_when => $$status = 'final'$$);""")
    app = db.connect("app")
    app.execute("INSERT INTO fx_final VALUES (0.30000000000000004, '2026-01-05', 'final'), "
                "(0.3, '2026-01-05', 'draft')")
    app.execute("SET extra_float_digits = -15")
    with refused("LL001", r"^fx_final id=0\.30000000000000004 is final and cannot be updated"):
        app.execute("UPDATE fx_final SET on_day = '2026-01-06' WHERE id = 0.30000000000000004")
    with refused("LL001", r"^fx_final id=0\.30000000000000004 is final and cannot be deleted"):
        app.execute("DELETE FROM fx_final WHERE id = 0.30000000000000004")
    lives_ok(app, "UPDATE fx_final SET on_day = '2026-01-06' WHERE id = 0.3")


def test_an_unnumberable_row_s_float_key_is_named_exactly_under_extra_float_digits(db):
    """R2's refusal of a row that cannot get a final number (its format needs the date the row lacks) names
    the row from the pinned image, made on the refusal only. The neighbour: a dated row is numbered."""
    owner = db.owner()
    owner.execute("""
        CREATE TABLE fx_numbered (id float8 PRIMARY KEY, on_day date, status text NOT NULL DEFAULT 'draft',
                                  number text);
        GRANT SELECT, INSERT, UPDATE, DELETE ON fx_numbered TO ll_app;
        SELECT ledgerlock.protect('fx_numbered', 'on_day', final_when => $$status = 'final'$$,
                                  number_column => 'number', number_format => 'FX-{YYYY}-{SEQ}');""")
    app = db.connect("app")
    app.execute("SET extra_float_digits = -15")
    with refused("LL009", r"^fx_numbered id=0\.30000000000000004 cannot get a final number: its on_day is empty"):
        app.execute("INSERT INTO fx_numbered (id, status) VALUES (0.30000000000000004, 'final')")
    lives_ok(app, "INSERT INTO fx_numbered (id, on_day, status) VALUES (0.30000000000000004, '2026-01-05', 'final')")
    assert owner.execute("SELECT number FROM fx_numbered").fetchall() == [("FX-2026-1",)]
