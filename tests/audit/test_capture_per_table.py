"""A protected table that is not partitioned runs a capture function made for it: the shipped
ledgerlock.audit_capture()'s body with the table's scope column, json columns and key written in as literals
(ledgerlock._ll90_capture_body). These tests hold that the copy records what the shared function records,
that nothing a table's owner names its columns breaks out of its literals, that a capture redefined by hand
is never copied onto a table, and that the copy comes and goes with the table's protection."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledgerlock import doctor as checks
from ledgerlock.cli import cli
from lltest import lives_ok, refused

CAPTURE = "SELECT 'ledgerlock.' || ledgerlock._generated_name(%s, 'll90', 'capture') || '()'"


def capture_of(conn, table: str) -> list[tuple]:
    """What each capture trigger of a table runs, with how many arguments it passes."""
    return conn.execute("SELECT tgname, tgfoid::regprocedure::text, tgnargs FROM pg_trigger "
                        "WHERE tgrelid = %s::regclass AND tgname LIKE 'll\\_90\\_%%' ORDER BY 1", (table,)).fetchall()


def trail(db, table: str) -> list[tuple]:
    return db.connect("auditor").execute(
        "SELECT operation, row_key, scope, old_row, new_row, table_name FROM ledgerlock.audit_event "
        "WHERE table_oid = %s::regclass AND operation IN ('INSERT', 'UPDATE', 'DELETE') ORDER BY seq",
        (table,)).fetchall()


def test_a_table_runs_its_own_capture_and_records_what_a_partitioned_copy_records_through_the_shared_one(db):
    owner = db.owner()
    columns = "id int, company_id int NOT NULL, issued_on date NOT NULL, amount numeric, PRIMARY KEY (id, issued_on)"
    owner.execute(f"CREATE TABLE doc ({columns})")
    owner.execute(f"CREATE TABLE part_doc ({columns}) PARTITION BY RANGE (issued_on)")
    owner.execute("CREATE TABLE part_doc_all PARTITION OF part_doc DEFAULT")
    owner.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON doc, part_doc TO ll_app")
    for table in ("doc", "part_doc"):
        owner.execute("SELECT ledgerlock.protect(%s, date_column => 'issued_on', scope_column => 'company_id')",
                      (table,))
    own = owner.execute(CAPTURE, ("doc",)).fetchone()[0]
    assert capture_of(owner, "doc") == [("ll_90_audit_delete", own, 1), ("ll_90_audit_insert", own, 1),
                                        ("ll_90_audit_update", own, 1)]  # the json columns it was made for
    # a partition tree keeps the shared function: each partition files its rows under the protected table
    shared = [("ll_90_audit_delete", "ledgerlock.audit_capture()", 5),
              ("ll_90_audit_insert", "ledgerlock.audit_capture()", 5),
              ("ll_90_audit_update", "ledgerlock.audit_capture()", 5)]
    assert capture_of(owner, "part_doc_all") == shared and capture_of(owner, "part_doc") == shared
    # definer code like every guard: its search_path pinned, no EXECUTE for PUBLIC, nor the helpers that make it
    assert owner.execute(f"SELECT prosecdef, 'search_path=pg_catalog, pg_temp' = ANY (proconfig), "
                         f"has_function_privilege('public', oid, 'EXECUTE') FROM pg_proc "
                         f"WHERE oid = '{own}'::regprocedure").fetchone() == (True, True, False)
    for helper in ("ledgerlock._ll90_values('doc')", "ledgerlock._ll90_derive('', '{}')",
                   "ledgerlock._ll90_capture_body('doc')"):
        with refused("42501", "permission denied for function"):
            db.connect("app").execute(f"SELECT {helper}")
    body = owner.execute(f"SELECT prosrc FROM pg_proc WHERE oid = '{own}'::regprocedure").fetchone()[0]
    assert "TG_ARGV" not in body and "'company_id'::text" in body and "'{id,issued_on}'::text[]" in body
    app = db.connect("app")
    for table in ("doc", "part_doc"):
        app.execute(f"INSERT INTO {table} (id, company_id, issued_on, amount) VALUES (1, 1, '2026-04-01', 10), "
                    f"(2, 2, '2026-04-02', 20)")
        app.execute(f"UPDATE {table} SET amount = amount + 1")
        app.execute(f"UPDATE {table} SET amount = 5 WHERE id = 1")
        app.execute(f"DELETE FROM {table} WHERE id = 2")
    mine, theirs = trail(db, "doc"), trail(db, "part_doc")
    assert [e[:5] for e in mine] == [e[:5] for e in theirs]
    assert [(e[0], e[1], e[2]) for e in mine] == [
        ("INSERT", {"id": 1, "issued_on": "2026-04-01"}, "1"), ("INSERT", {"id": 2, "issued_on": "2026-04-02"}, "2"),
        ("UPDATE", {"id": 1, "issued_on": "2026-04-01"}, "1"), ("UPDATE", {"id": 2, "issued_on": "2026-04-02"}, "2"),
        ("UPDATE", {"id": 1, "issued_on": "2026-04-01"}, "1"), ("DELETE", {"id": 2, "issued_on": "2026-04-02"}, "2")]
    assert {e[5] for e in mine} == {"public.doc"} and {e[5] for e in theirs} == {"public.part_doc"}
    assert db.connect("auditor").execute("SELECT count(*) FROM ledgerlock.audit_discrepancies()").fetchone()[0] == 0


def test_column_names_made_to_break_out_of_a_literal_are_captured_as_written(db):
    """The table's owner names the columns the capture writes in as literals: a quote or a backslash in a name
    stays inside its literal, and the json column keeps its exact text (duplicate keys and all)."""
    owner = db.owner()
    owner.execute("""CREATE TABLE odd ("k'ey\\" int PRIMARY KEY, "co'; DROP TABLE invoice; --" int NOT NULL,
                     issued_on date NOT NULL DEFAULT '2026-04-01', "j\\'son" json)""")
    owner.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON odd TO ll_app")
    owner.execute("""SELECT ledgerlock.protect('odd', date_column => 'issued_on',
                                              scope_column => 'co''; DROP TABLE invoice; --')""")
    app = db.connect("app")
    app.execute("""INSERT INTO odd VALUES (1, 7, '2026-04-01', '{"a": 2, "a": 1}')""")
    app.execute("""UPDATE odd SET "j\\'son" = '{"a": 3}'""")
    assert [(e[0], e[1], e[2], (e[4] or {}).get("j\\'son")) for e in trail(db, "odd")] == [
        ("INSERT", {"k'ey\\": 1}, "7", '{"a": 2, "a": 1}'), ("UPDATE", {"k'ey\\": 1}, "7", '{"a": 3}')]
    assert owner.execute("SELECT to_regclass('invoice') IS NOT NULL").fetchone()[0]
    assert db.connect("auditor").execute("SELECT count(*) FROM ledgerlock.audit_discrepancies()").fetchone()[0] == 0


@pytest.mark.parametrize("names", [("ll90_op", "ll90_tbl", "ll90_json_cols"),
                                   ("ll90_tbl", "ll90_scope_col", "ll90_keys"),
                                   ("ll90_op", "company_id", "meta")])
def test_column_names_that_are_names_of_the_capture_are_captured_as_written(db, names):
    """The copy is made by writing each ll90_ name of audit_capture() as the table's value. A column named
    like one of them (the key, the scope, a json column) stays the column it is: a value once written in is
    never read again as a name to replace."""
    key, scope, js = names
    owner = db.owner()
    owner.execute(f"""CREATE TABLE odd ("{key}" int PRIMARY KEY, "{scope}" int NOT NULL,
                      issued_on date NOT NULL DEFAULT '2026-04-01', "{js}" json)""")
    owner.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON odd TO ll_app")
    lives_ok(owner, f"SELECT ledgerlock.protect('odd', date_column => 'issued_on', scope_column => '{scope}')")
    app = db.connect("app")
    app.execute("""INSERT INTO odd VALUES (1, 7, '2026-04-01', '{"a": 2, "a": 1}')""")
    app.execute(f"""UPDATE odd SET "{js}" = '{{"a": 3}}'""")
    assert [(e[0], e[1], e[2], (e[4] or {}).get(js)) for e in trail(db, "odd")] == [
        ("INSERT", {key: 1}, "7", '{"a": 2, "a": 1}'), ("UPDATE", {key: 1}, "7", '{"a": 3}')]
    assert db.connect("auditor").execute("SELECT count(*) FROM ledgerlock.audit_discrepancies()").fetchone()[0] == 0


# Pieces of names an owner might use, or an attacker might choose: the capture's own names, PL/pgSQL and SQL
# quoting, template braces, dollar quotes, a comment, a backslash, a dot (not in a scope: it names a parent).
NAME_PIECES = st.sampled_from(["ll90_", "ll90_k1", "ll90_keys", "ll90_op", "ll90_tbl", "ll90_period", "TG_OP",
                               "TG_RELID", "{{", "}}", "$$", "$ll$", "'", "\"", "\\", "--", ";", " ", "é", "x", "id",
                               "NULL", "E'", "%s", "%I", "."])
NAMES = st.lists(NAME_PIECES, min_size=1, max_size=6).map("".join).filter(lambda n: len(n.encode()) <= 60)


@settings(max_examples=10, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(names=st.lists(NAMES, min_size=4, max_size=4, unique_by=str.lower).filter(
           lambda ns: "." not in ns[2] and "issued_on" not in ns),
       composite=st.booleans())
def test_any_column_names_are_captured_as_written_and_verify(db, names, composite):
    """Whatever the table's owner names its key, scope and json columns, its own capture records them as
    written (key, scope, exact json text) and the books verify: seeded, bounded examples on every server."""
    try:
        _capture_odd_names(db, names, composite)
    finally:
        db.close_all()  # connections per example: the server's limit is not the examples'


def _capture_odd_names(db, names: list[str], composite: bool) -> None:
    k1, k2, scope, js = names
    owner = db.owner()
    owner.execute("DROP TABLE IF EXISTS odd")
    key = [k1, k2] if composite else [k1]
    cols = ", ".join(f'{_ident(c)} int NOT NULL' for c in [k1, k2, scope])
    owner.execute(f"CREATE TABLE odd ({cols}, issued_on date NOT NULL DEFAULT '2026-04-01', {_ident(js)} json, "
                  f"PRIMARY KEY ({', '.join(_ident(c) for c in key)}))")
    owner.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON odd TO ll_app")
    owner.execute("SELECT ledgerlock.protect('odd', date_column => 'issued_on', scope_column => %s)", (scope,))
    app = db.connect("app")
    app.execute(f"INSERT INTO odd ({_ident(k1)}, {_ident(k2)}, {_ident(scope)}, {_ident(js)}) "
                """VALUES (1, 1, 7, '{"a": 2, "a": 1}'), (2, 2, 8, NULL)""")
    app.execute(f"""UPDATE odd SET {_ident(js)} = '{{"b": 1,  "b": 2}}' WHERE {_ident(k1)} = 2""")
    app.execute(f"DELETE FROM odd WHERE {_ident(k1)} = 1")
    want_key = ({k1: 1, k2: 1} if composite else {k1: 1}), ({k1: 2, k2: 2} if composite else {k1: 2})
    assert [(e[0], e[1], e[2], (e[4] or e[3]).get(js)) for e in trail(db, "odd")] == [
        # a json column's SQL NULL reads "null", as its JSON null does (docs/audit.md, what stays undetectable)
        ("INSERT", want_key[0], "7", '{"a": 2, "a": 1}'), ("INSERT", want_key[1], "8", "null"),
        ("UPDATE", want_key[1], "8", '{"b": 1,  "b": 2}'), ("DELETE", want_key[0], "7", '{"a": 2, "a": 1}')]
    assert db.connect("auditor").execute("SELECT count(*) FROM ledgerlock.audit_discrepancies()").fetchone()[0] == 0
    owner.execute("SELECT ledgerlock.unprotect('odd', reason => 'next example')")


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def test_a_capture_redefined_by_hand_is_never_copied_onto_a_table(db):
    """A superuser who rewrites the shipped capture (here: to record nothing) cannot get the rewrite copied onto
    every table by the next protect or reinstall: both are refused, and the tables keep the captures they had."""
    owner = db.owner()
    db.protect_invoice()
    app = db.connect("app")
    shipped = owner.execute("SELECT pg_get_functiondef('ledgerlock.audit_capture()'::regprocedure)").fetchone()[0]
    owner.execute(shipped.replace("BEGIN\n", "BEGIN\n    RETURN NULL;\n", 1))
    owner.execute("CREATE TABLE receipt (id int PRIMARY KEY, company_id int NOT NULL, issued_on date NOT NULL)")
    with refused("55000", r"^the audit capture of public\.receipt cannot be made: ledgerlock\.audit_capture\(\) "
                          "differs"):
        owner.execute("SELECT ledgerlock.protect('receipt', date_column => 'issued_on', scope_column => 'company_id')")
    with refused("55000", r"^the audit capture of public\.invoice cannot be made"):
        owner.execute("SELECT ledgerlock.reinstall_guards()")
    app.execute("INSERT INTO invoice (id, company_id, issued_on) VALUES (1, 1, '2026-04-01')")
    assert [e[0] for e in trail(db, "invoice")] == ["INSERT"]  # invoice's own capture is untouched
    # the permitted neighbour: the shipped definition back, the same statements go through
    owner.execute(shipped)
    lives_ok(owner, "SELECT ledgerlock.protect('receipt', date_column => 'issued_on', scope_column => 'company_id')")
    lives_ok(owner, "SELECT ledgerlock.reinstall_guards()")
    owner.execute("GRANT INSERT ON receipt TO ll_app")
    app.execute("INSERT INTO receipt VALUES (1, 1, '2026-04-01')")
    assert [e[0] for e in trail(db, "receipt")] == ["INSERT"]


def test_a_tables_capture_replaced_with_a_no_op_is_critical_and_its_unrecorded_write_reported(db):
    db.protect_invoice()
    owner = db.owner()
    fn = owner.execute(CAPTURE, ("invoice",)).fetchone()[0]

    def verify():
        res = CliRunner().invoke(cli, ["--dsn", db.conninfo("auditor"), "audit", "verify", "--json"])
        return res.exit_code, json.loads(res.stdout)

    assert verify()[0] == 0
    owner.execute(f"CREATE OR REPLACE FUNCTION {fn} RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER "
                  "SET search_path = pg_catalog, pg_temp AS $$ BEGIN RETURN NULL; END $$")
    db.connect("app").execute("INSERT INTO invoice (id, company_id, issued_on) VALUES (1, 1, '2026-04-01')")
    code, out = verify()
    assert code == 3 and out["ok"] is False
    assert [d for d in out["code_drift"] if fn in d] == [
        f"{fn} differs from the function ledgerlock generated",  # its recorded fingerprint
        f"{fn} differs from the audit capture this package makes for its table"]  # the auditor's package
    assert [d[:2] for d in db.connect("auditor").execute(
        "SELECT code, row_key FROM ledgerlock.audit_discrepancies()").fetchall()] == [("row_unrecorded", {"id": 1})]
    # the permitted neighbour: reinstalled, the capture records again and its code is the one generated
    owner.execute("SELECT ledgerlock.reinstall_guards()")
    db.connect("app").execute("INSERT INTO invoice (id, company_id, issued_on) VALUES (2, 1, '2026-04-01')")
    assert [e[1] for e in trail(db, "invoice")] == [{"id": 2}]
    assert not [d for d in verify()[1]["code_drift"] if fn in d]


def test_unprotect_drops_the_tables_capture_and_protect_makes_it_again(db):
    owner = db.owner()
    db.protect_invoice()
    fn = owner.execute(CAPTURE, ("invoice",)).fetchone()[0]
    owner.execute("SELECT ledgerlock.unprotect('invoice', 'moving the table')")
    assert owner.execute("SELECT to_regprocedure(%s)", (fn,)).fetchone()[0] is None
    assert owner.execute("SELECT count(*) FROM ledgerlock.code_fingerprint WHERE fn = %s", (fn,)).fetchone()[0] == 0
    assert owner.execute("SELECT count(*) FROM ledgerlock._orphan_generated_functions()").fetchone()[0] == 0
    db.connect("app").execute("INSERT INTO invoice (id, company_id, issued_on) VALUES (1, 1, '2026-04-01')")
    db.protect_invoice()
    db.connect("app").execute("INSERT INTO invoice (id, company_id, issued_on) VALUES (2, 1, '2026-04-01')")
    assert capture_of(owner, "invoice")[0][1:] == (fn, 1)
    assert [e[1] for e in trail(db, "invoice")] == [{"id": 2}]


def test_a_tables_capture_rewritten_with_its_fingerprint_forged_is_caught_by_the_package(db):
    """The database's own record can be forged with the function; the copy the auditor's package makes for the
    table cannot. The rewrite here drops the key from every event, which the trail would otherwise carry."""
    db.protect_invoice()
    owner = db.owner()
    fn = owner.execute(CAPTURE, ("invoice",)).fetchone()[0]
    with db.connect("auditor") as auditor:
        assert checks.code_drift(auditor) == []
    definition = owner.execute("SELECT pg_get_functiondef(%s::regprocedure)", (fn,)).fetchone()[0]
    assert definition.count("ledgerlock._audit_event_row(TG_RELID") == 5
    owner.execute(definition.replace("ledgerlock._audit_event_row(TG_RELID", "ledgerlock._audit_event_row(0::oid"))
    owner.execute("UPDATE ledgerlock.code_fingerprint f SET body_md5 = md5(p.prosrc) FROM pg_proc p "
                  "WHERE p.oid = %s::regprocedure AND f.fn = %s", (fn, fn))
    assert db.connect("auditor").execute(
        "SELECT * FROM ledgerlock.doctor_findings() WHERE object = %s", (fn,)).fetchall() == []
    with db.connect("auditor") as auditor:
        assert [(f.severity, f.object, f.finding) for f in checks.code_drift(auditor)] == [
            ("critical", fn, f"{fn} differs from the audit capture this package makes for its table")]
    # the permitted neighbour: reinstalled, the package and the table's capture agree again
    owner.execute("SELECT ledgerlock.reinstall_guards()")
    with db.connect("auditor") as auditor:
        assert checks.code_drift(auditor) == []
