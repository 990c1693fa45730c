"""The functions ledgerlock generates for a table are named after the table's name (so a restored dump runs them
as they are). Without the DDL guard a table owner may rename a table: its guards keep running the functions of
its old name. A new table given that name, once protected (or a parent of a protected table), must not replace
them: the renamed table's guards would check the new table's rows. The refusal says which table still runs
them, and the way out; the renamed table stays guarded throughout."""

from __future__ import annotations

from lltest import lives_ok, refused

HEADERS = """
CREATE TABLE header (id integer PRIMARY KEY, entity_id integer, posted_on date);
CREATE TABLE line (id integer PRIMARY KEY, header_id integer REFERENCES header ON DELETE CASCADE,
                   entity_id integer);
INSERT INTO header VALUES (1, 1, '2026-03-10'), (2, 1, '2026-04-10');
INSERT INTO line VALUES (101, 1, 1), (102, 2, 1);
GRANT SELECT, INSERT, UPDATE, DELETE ON header, line TO ll_app;
"""

NEW_HEADERS = """
CREATE TABLE header (id integer PRIMARY KEY, entity_id integer, posted_on date);
CREATE TABLE line2 (id integer PRIMARY KEY, header_id integer REFERENCES header ON DELETE CASCADE,
                    entity_id integer);
GRANT SELECT, INSERT, UPDATE, DELETE ON header, line2 TO ll_app;
"""


def _protect(owner, child):
    owner.execute(f"SELECT ledgerlock.protect('{child}', date_column => 'header_id.posted_on', "
                  "scope_column => 'entity_id')")


def _parent_guard(conn, table):
    return conn.execute("SELECT DISTINCT tgfoid::regproc::text FROM pg_trigger "
                        "WHERE tgrelid = %s::regclass AND tgname LIKE 'll_20_scope_parent_%%'", [table]).fetchall()


def test_a_new_parent_under_a_renamed_parents_name_does_not_take_its_guard(db):
    owner = db.owner()
    owner.execute(HEADERS)
    _protect(owner, "line")
    db.connect("admin").execute("SELECT ledgerlock.lock_period('1', '2026-03-01', '2026-03-31', 'hard')")
    app = db.connect("app")

    owner.execute("ALTER TABLE header RENAME TO header_2025")  # no DDL guard here: the owner may
    guard = _parent_guard(owner, "header_2025")
    owner.execute(NEW_HEADERS)
    with refused("55000", r"ledgerlock\._ll20_t[0-9a-f]{16}_parent is generated for a table of this name, and the "
                          r"guards of (public\.)?header_2025, renamed since, still run it") as info:
        _protect(owner, "line2")
    assert "ledgerlock.reinstall_guards()" in info.value.diag.message_hint
    assert _parent_guard(owner, "header_2025") == guard
    # the renamed parent still guards its child in the locked month; its open month is writable
    with refused("LL002", r"March|2026-03"):
        app.execute("DELETE FROM header_2025 WHERE id = 1")
    lives_ok(app, "DELETE FROM header_2025 WHERE id = 2")

    # the way out the hint gives: the renamed parent's guard is named after its new name, the new one's free
    lives_ok(db.connect("admin"), "SELECT ledgerlock.reinstall_guards()")
    assert _parent_guard(owner, "header_2025") != guard
    owner.execute("INSERT INTO header VALUES (7, 1, '2026-03-12'), (8, 1, '2026-04-12');"
                  "INSERT INTO line2 VALUES (701, 7, 1), (801, 8, 1)")
    lives_ok(owner, "SELECT ledgerlock.protect('line2', date_column => 'header_id.posted_on', "
                    "scope_column => 'entity_id')")
    assert _parent_guard(owner, "header") == guard
    for table, day in (("header_2025", "1"), ("header", "7")):
        with refused("LL002", "."):
            app.execute(f"DELETE FROM {table} WHERE id = {day}")
    lives_ok(app, "DELETE FROM header WHERE id = 8")
    findings = db.connect("auditor").execute(
        "SELECT check_name, object FROM ledgerlock.doctor_findings() WHERE severity = 'critical'").fetchall()
    assert findings == []


def test_a_new_table_under_a_renamed_protected_tables_name_cannot_be_protected(db):
    owner = db.owner()
    db.protect_invoice(number_column="number", number_format="INV-{SEQ}")
    app = db.connect("app")
    app.execute("INSERT INTO invoice (company_id, status, issued_on, amount) VALUES (1, 'approved', '2026-05-02', 10)")

    owner.execute("ALTER TABLE invoice RENAME TO invoice_2025")
    functions = owner.execute("SELECT tgname, tgfoid::regproc::text FROM pg_trigger WHERE tgrelid = "
                              "'invoice_2025'::regclass AND tgname LIKE 'll_%' ORDER BY 1").fetchall()
    assert any("_ll90_" in f for _, f in functions) and any("_ll40_" in f for _, f in functions)
    owner.execute("CREATE TABLE invoice (LIKE invoice_2025 INCLUDING ALL)")
    owner.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON invoice TO ll_app")
    with refused("55000", r"the guards of (public\.)?invoice_2025, renamed since, still run it") as info:
        db.protect_invoice(number_column="number", number_format="INV-{SEQ}")
    assert "rename invoice_2025 back" in info.value.diag.message_hint.replace("public.", "")
    assert owner.execute("SELECT tgname, tgfoid::regproc::text FROM pg_trigger WHERE tgrelid = "
                         "'invoice_2025'::regclass AND tgname LIKE 'll_%' ORDER BY 1").fetchall() == functions
    assert owner.execute("SELECT count(*) FROM ledgerlock.protected_table WHERE tbl = 'invoice'::regclass"
                         ).fetchone() == (0,)

    # renamed back, as the hint says: the table numbers its rows where it left off, and the new table
    # protects under a name of its own
    owner.execute("ALTER TABLE invoice RENAME TO invoice_new; ALTER TABLE invoice_2025 RENAME TO invoice")
    app.execute("INSERT INTO invoice (company_id, status, issued_on, amount) VALUES (1, 'approved', '2026-05-03', 20)")
    assert [n for (n,) in app.execute("SELECT number FROM invoice ORDER BY id")] == ["INV-1", "INV-2"]
    lives_ok(owner, "SELECT ledgerlock.protect('invoice_new', 'issued_on', scope_column => 'company_id', "
                    "final_when => $$status in ('approved','paid')$$, number_column => 'number', "
                    "number_format => 'NEW-{SEQ}')")
    app.execute("INSERT INTO invoice_new (company_id, status, issued_on, amount) "
                "VALUES (1, 'approved', '2026-05-04', 30)")
    assert app.execute("SELECT number FROM invoice_new").fetchall() == [("NEW-1",)]
    assert lives_ok(db.connect("auditor"), "SELECT ok, problems FROM ledgerlock.verify_audit()") == [(True, 0)]
