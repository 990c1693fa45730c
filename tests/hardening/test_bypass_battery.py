"""The bypass battery: everything a hostile application (LOGIN, plain DML grants) might try to get a final
row changed. Each case asserts the refusal AND that the data is unchanged, and shows the permitted
neighbour where there is one. Cases over ledgerlock's own objects are generated from the catalog, so a
function or table added by any rule is covered without touching this file."""

from __future__ import annotations

import re

import psycopg
import pytest
from psycopg import sql

from lltest import lives_ok, refused

FINAL_UPDATE = "UPDATE invoice SET amount = 1 WHERE id = 1"
FINAL_DELETE = "DELETE FROM invoice WHERE id = 1"
LL001_UPDATE = r"^invoice id=1 is final and cannot be updated"
LL001_DELETE = r"^invoice id=1 is final and cannot be deleted"
FINAL_ROW = "SELECT * FROM invoice WHERE id = 1"

# Functions PUBLIC may execute (the documented read API); kept in step with
# tests/migration/test_install_paths.py::test_public_can_execute_only_the_documented_functions.
PUBLIC_API = {"has_capability", "locked_through", "period_lock_at", "why_locked", "begin_override", "audit_digest"}


def ledgerlock_settings(conn) -> set[str]:
    """Every ledgerlock.* setting the installed code reads, plus names an attacker would guess."""
    names = {"ledgerlock.actor", "ledgerlock.reason", "ledgerlock.context", "ledgerlock.on_locked",
             "ledgerlock.bypass", "ledgerlock.disable", "ledgerlock.enabled", "ledgerlock.override",
             "ledgerlock.admin", "ledgerlock.role", "ledgerlock.skip", "ledgerlock.unlock"}
    for (src,) in conn.execute("SELECT prosrc FROM pg_proc WHERE pronamespace = 'ledgerlock'::regnamespace"):
        names |= set(re.findall(r"ledgerlock\.[a-z_]+(?=')", src or ""))
    for (src,) in conn.execute(
        """SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d JOIN pg_class c ON c.oid = d.adrelid
           WHERE c.relnamespace = 'ledgerlock'::regnamespace"""
    ):
        names |= set(re.findall(r"ledgerlock\.[a-z_]+(?=')", src or ""))
    return {n for n in names if n.count(".") == 1}


def setting_value(name: str, value: str) -> str:
    """on_locked refuses values it does not know (22023, stricter still); give it its loosest valid one."""
    if name == "ledgerlock.on_locked" and value not in ("error", "skip"):
        return "skip"
    return value


# --- TRUNCATE ---------------------------------------------------------------------------------------

def test_truncate_without_privilege_is_refused(invoices, unchanged):
    unchanged()
    with refused("42501"):
        invoices.execute("TRUNCATE invoice")


def test_truncate_with_privilege_is_refused_by_the_guard(db, invoices, unchanged):
    db.owner().execute("GRANT TRUNCATE ON invoice, invoice_line, payment, quote TO ll_app")
    unchanged()
    with refused("LL008", r"^TRUNCATE of public\.invoice is refused"):
        invoices.execute("TRUNCATE invoice, invoice_line, payment")
    invoices.execute("INSERT INTO quote (company_id) VALUES (1)")
    lives_ok(invoices, "TRUNCATE quote")  # the unprotected neighbour
    assert invoices.execute("SELECT count(*) FROM quote").fetchone()[0] == 0


def test_truncate_cascade_from_a_parent_is_refused(db, invoices, unchanged):
    db.owner().execute("GRANT TRUNCATE ON ALL TABLES IN SCHEMA public TO ll_app")
    unchanged()
    unchanged("SELECT count(*) FROM company")
    with refused("LL008", r"TRUNCATE of public\.invoice is refused"):
        invoices.execute("TRUNCATE company CASCADE")
    invoices.execute("TRUNCATE quote")


# --- triggers, replication role, settings -----------------------------------------------------------

@pytest.mark.parametrize("stmt", [
    "ALTER TABLE invoice DISABLE TRIGGER ll_10_final_update",
    "ALTER TABLE invoice DISABLE TRIGGER ALL",
    "ALTER TABLE invoice DISABLE TRIGGER USER",
    "ALTER TABLE invoice ENABLE REPLICA TRIGGER ll_10_final_update",
    "DROP TRIGGER ll_10_final_update ON invoice",
    "DROP TRIGGER ll_00_truncate ON invoice",
    "ALTER TRIGGER ll_10_final_update ON invoice RENAME TO x",
    "CREATE TRIGGER zz BEFORE UPDATE ON invoice FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()",
    "CREATE RULE r AS ON UPDATE TO invoice DO INSTEAD NOTHING",
    "ALTER TABLE invoice SET UNLOGGED",
    "ALTER TABLE invoice OWNER TO ll_app",
    "ALTER TABLE invoice ALTER COLUMN amount TYPE numeric(12, 0)",
    "ALTER TABLE invoice DROP COLUMN amount",
    "DROP TABLE invoice CASCADE",
    "COMMENT ON TRIGGER ll_10_final_update ON invoice IS 'ledgerlock:forged'",
])
def test_ddl_on_a_protected_table_is_refused(invoices, unchanged, stmt):
    unchanged()
    with refused("42501"):
        invoices.execute(stmt)
    with refused("LL001", LL001_UPDATE):
        invoices.execute(FINAL_UPDATE)


def test_session_replication_role_cannot_be_set_and_does_not_silence_guards(db, invoices, unchanged):
    unchanged()
    with refused("42501"):
        invoices.execute("SET session_replication_role = replica")
    owner = db.owner()  # a superuser may set it; the guards are ENABLE ALWAYS
    owner.execute("SET session_replication_role = replica")
    with refused("LL001", LL001_UPDATE):
        owner.execute(FINAL_UPDATE)
    with refused("LL001", LL001_DELETE):
        owner.execute(FINAL_DELETE)


@pytest.mark.parametrize("value", ["on", "off", "true", "1", "0", "skip", "allow", "bypass", "admin", "replica", ""])
def test_no_ledgerlock_setting_loosens_a_rule(db, invoices, unchanged, value):
    names = ledgerlock_settings(db.owner())
    assert {"ledgerlock.actor", "ledgerlock.reason", "ledgerlock.context", "ledgerlock.on_locked"} <= names
    unchanged(FINAL_ROW)
    for scope in ("SESSION", "LOCAL"):
        with invoices.transaction():
            for name in sorted(names):
                invoices.execute(sql.SQL("SET {} {} = {}").format(
                    sql.SQL(scope), sql.Identifier(*name.split(".")), sql.Literal(setting_value(name, value))))
            with refused("LL001", LL001_UPDATE), invoices.transaction():
                invoices.execute(FINAL_UPDATE)
            with refused("LL001", LL001_DELETE), invoices.transaction():
                invoices.execute(FINAL_DELETE)
            lives_ok(invoices, "UPDATE invoice SET note = 'draft edit' WHERE id = 2")  # the neighbour
            assert invoices.execute("SELECT note FROM invoice WHERE id = 2").fetchone()[0] == "draft edit"
    # the same settings, given at connection time
    opts = " ".join(f"-c {n}={setting_value(n, value)}" for n in sorted(names) if value)
    if opts:
        conn = db.connect("app", options=opts)
        with refused("LL001", LL001_UPDATE):
            conn.execute(FINAL_UPDATE)


def test_roles_cannot_be_borrowed(invoices, unchanged):
    unchanged()
    for stmt in ("SET ROLE ll_admin", "SET ROLE ledgerlock_admin", "SET SESSION AUTHORIZATION ll_admin"):
        with refused("42501"):
            invoices.execute(stmt)
    assert invoices.execute("SELECT ledgerlock.has_capability('admin')").fetchone()[0] is False


# --- ledgerlock's own objects, from the catalog ------------------------------------------------------

def test_no_direct_dml_on_any_ledgerlock_relation(db, invoices):
    owner = db.owner()
    rels = owner.execute(
        """SELECT c.oid::regclass::text, c.relkind FROM pg_class c
           WHERE c.relnamespace IN ('ledgerlock'::regnamespace, 'ledgerlock_gate'::regnamespace)
             AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
           ORDER BY 1"""
    ).fetchall()
    assert {"ledgerlock.protected_table", "ledgerlock_gate.sealer"} <= {r[0] for r in rels}
    before = {r[0]: owner.execute(f"SELECT count(*) FROM {r[0]}").fetchone()[0] for r in rels if r[1] != "S"}
    allowed = []
    for rel, kind in rels:
        col = plain_column(owner, rel)
        stmts = [f"INSERT INTO {rel} DEFAULT VALUES", f"DELETE FROM {rel}"]
        if col is not None:  # the gates have no column: they exist to be locked
            stmts.append(f"UPDATE {rel} SET {col} = {col}")
        if kind == "S":
            stmts = [f"SELECT nextval('{rel}')", f"SELECT setval('{rel}', 1)"]
        elif kind in ("r", "p"):
            # no lock a client can take on ledgerlock's tables (the gates, the audit chain) either
            stmts += [f"TRUNCATE {rel}", f"LOCK TABLE {rel} IN ROW EXCLUSIVE MODE",
                      f"LOCK TABLE {rel} IN ACCESS EXCLUSIVE MODE"]
        # a view that is not updatable says so before privileges are checked: still no way in
        ok = {"42501"} | ({"55000", "0A000", "42809", "428C9"} if kind in ("v", "m") else set())
        for stmt in stmts:
            try:
                with invoices.transaction():
                    invoices.execute(stmt)
                allowed.append(stmt)
            except psycopg.Error as exc:
                if exc.diag.sqlstate not in ok:
                    allowed.append(f"{stmt}: {exc.diag.sqlstate} {exc.diag.message_primary}")
    assert allowed == [], allowed
    after = {r[0]: owner.execute(f"SELECT count(*) FROM {r[0]}").fetchone()[0] for r in rels if r[1] != "S"}
    assert after == before


def plain_column(conn, rel: str) -> str | None:
    """A column UPDATE may name (not an identity or generated one), or None when the table has none."""
    row = conn.execute(
        "SELECT quote_ident(attname) FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
        "AND NOT attisdropped AND attidentity = '' AND attgenerated = '' ORDER BY attnum LIMIT 1",
        (rel,)).fetchone()
    return row[0] if row else None


def test_internal_and_admin_functions_cannot_be_called_by_the_application(db, invoices, unchanged):
    unchanged()
    funcs = db.owner().execute(
        """SELECT p.oid::regprocedure::text, p.proname,
                  (SELECT string_agg('NULL::' || format_type(t, NULL), ', ' ORDER BY o)
                   FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY AS a(t, o))
           FROM pg_proc p WHERE p.pronamespace = 'ledgerlock'::regnamespace AND p.prokind = 'f'
             AND p.prorettype NOT IN ('trigger'::regtype, 'event_trigger'::regtype)
           ORDER BY 1"""
    ).fetchall()
    # R1's comparisons, which trigger WHEN clauses call with the writer's rights (below)
    comparisons = [f for f in funcs if f[1].startswith("_ll10_x")]
    internal = [f for f in funcs if f[1] not in PUBLIC_API and f not in comparisons]
    assert any(f[1] == "_refuse" for f in internal) and any(f[1] == "unprotect" for f in internal)
    callable_ = []
    for sig, name, args in internal:
        args = (args or "").replace("NULL::anyelement", "NULL::integer")  # polymorphic: any concrete type
        try:
            with invoices.transaction():
                invoices.execute(f"SELECT ledgerlock.{name}({args})")
            callable_.append(sig)
        except psycopg.Error as exc:
            if exc.diag.sqlstate != "42501":
                callable_.append(f"{sig}: {exc.diag.sqlstate} {exc.diag.message_primary}")
    assert callable_ == [], callable_
    # the application may call those: each compares its two arguments and nothing else, with the caller's
    # rights and no name looked up in a search_path, and is the function ledgerlock generated (its fingerprint)
    assert comparisons, "the invoice fixture's mutable columns have a comparison"
    for sig, _name, _ in comparisons:
        row = db.owner().execute(
            """SELECT p.prosecdef, p.proconfig, p.prorettype::regtype::text, p.prosrc, f.body_md5 = md5(p.prosrc)
               FROM pg_proc p JOIN ledgerlock.code_fingerprint f ON f.fn = p.oid::regprocedure::text
               WHERE p.oid = %s::regprocedure AND f.origin = 'generated'""", (sig,)).fetchone()
        assert row[:3] == (False, None, "boolean") and row[4], (sig, row)
        body = row[3].strip().splitlines()
        assert body[0] == "BEGIN" and body[-2:] == ["    RETURN NOT (o OPERATOR(pg_catalog.*=) n);", "END"], row[3]
        assert all(re.fullmatch(r"    n\.(\w+) := o\.\1;", line) for line in body[1:-2]) and body[1:-2], row[3]


def security_definer_functions(conn):
    return conn.execute(
        """SELECT p.oid::regprocedure::text, p.proname, coalesce(p.proconfig, '{}'),
                  has_function_privilege('public', p.oid, 'EXECUTE')
           FROM pg_proc p WHERE p.pronamespace = 'ledgerlock'::regnamespace AND p.prosecdef ORDER BY 1"""
    ).fetchall()


def test_every_security_definer_function_pins_search_path_and_is_not_public(db):
    rows = security_definer_functions(db.owner())
    assert any(r[1] == "protect" for r in rows) and any(r[1] == "guard_final_row" for r in rows)
    unpinned = [r[0] for r in rows if "search_path=pg_catalog, pg_temp" not in r[2]]
    public = [r[0] for r in rows if r[3] and r[1] not in PUBLIC_API]
    assert unpinned == [] and public == [], (unpinned, public)


def test_every_ledgerlock_function_pins_search_path(db):
    """Every function pins search_path, except plain SQL helpers kept inlinable on purpose (a SET clause
    prevents inlining): those must not be SECURITY DEFINER nor callable by PUBLIC, so they only ever run
    inside a pinned caller."""
    rows = db.owner().execute(
        """SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
           WHERE p.pronamespace = 'ledgerlock'::regnamespace AND p.prokind IN ('f', 'p')
             AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false)
             AND (p.prosecdef OR l.lanname <> 'sql' OR has_function_privilege('public', p.oid, 'EXECUTE'))
           ORDER BY 1"""
    ).fetchall()
    assert rows == []


# --- search_path hijack ------------------------------------------------------------------------------

HIJACK_SIGNATURES = ["text", "text, text", "text, text, text", "jsonb", "jsonb, text", "regclass, jsonb",
                     "name, text, text", "regclass, text", "anyelement", "anyelement, anyelement"]


def referenced_names(conn) -> set[str]:
    """Every function name ledgerlock's code calls (qualified or not), and every ledgerlock function name."""
    names: set[str] = set()
    for name, src in conn.execute(
        "SELECT proname, prosrc FROM pg_proc WHERE pronamespace = 'ledgerlock'::regnamespace"
    ):
        names.add(name)
        names |= {m.split(".")[-1] for m in re.findall(r"\b([a-z_][a-z0-9_.]*)\s*\(", src or "")}
    keywords = {"if", "in", "and", "or", "not", "values", "exists", "coalesce", "nullif", "greatest", "least",
                "case", "when", "array", "row", "select", "any", "all", "cast", "using", "returns", "over",
                "filter", "within", "table", "on", "as", "is", "into", "from", "where", "exception", "format",
                "set", "insert", "update", "delete", "by", "then", "else", "elsif", "loop", "lateral", "with",
                "ordinality", "conflict", "primary", "key", "partition", "join", "unnest", "default"}
    return {n for n in names if n not in keywords and re.fullmatch(r"[a-z_][a-z0-9_]*", n)} | {"format", "unnest"}


def plant_hijack(app, schema: str, names: set[str], *, equals: bool = True) -> int:
    """Same-named functions in a schema the application owns and in pg_temp, a permissive `-` and `=`,
    and temp tables shadowing ledgerlock's relations; returns how many functions were planted."""
    planted = 0
    for name in sorted(names - {"pg_has_role"}):
        for sig in HIJACK_SIGNATURES:
            for where in (schema, "pg_temp"):
                try:
                    with app.transaction():
                        app.execute(sql.SQL(
                            "CREATE FUNCTION {}.{}({}) RETURNS text LANGUAGE plpgsql AS "
                            "$h$ BEGIN RAISE EXCEPTION 'hijacked %', {}; END $h$").format(
                            sql.Identifier(where), sql.Identifier(name), sql.SQL(sig), sql.Literal(name)))
                    planted += 1
                except psycopg.Error:
                    pass  # a signature that clashes with another return type: the others stand in
    # operators that would make any final row look unchanged, and any capability check succeed
    app.execute(sql.SQL("""
        CREATE FUNCTION {s}.jsonb_minus(jsonb, text[]) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{{}}'::jsonb $$;
        CREATE OPERATOR {s}.- (LEFTARG = jsonb, RIGHTARG = text[], FUNCTION = {s}.jsonb_minus);
        CREATE FUNCTION {s}.pg_has_role(name, text, text) RETURNS boolean LANGUAGE sql AS $$ SELECT true $$;
        CREATE FUNCTION {s}.pg_has_role(name, name, text) RETURNS boolean LANGUAGE sql AS $$ SELECT true $$;
    """).format(s=sql.Identifier(schema)))
    if equals:
        app.execute(sql.SQL("""
            CREATE FUNCTION {s}.text_eq(text, text) RETURNS boolean LANGUAGE sql AS $$ SELECT true $$;
            CREATE OPERATOR {s}.= (LEFTARG = text, RIGHTARG = text, FUNCTION = {s}.text_eq);
        """).format(s=sql.Identifier(schema)))
    for (rel,) in app.execute("SELECT relname FROM pg_class WHERE relnamespace = 'ledgerlock'::regnamespace "
                              "AND relkind IN ('r', 'v', 'p')").fetchall():
        app.execute(sql.SQL("CREATE TEMP TABLE {} (tbl regclass, x text)").format(sql.Identifier(rel)))
    app.execute(sql.SQL("SET search_path = pg_temp, {}, pg_catalog, public").format(sql.Identifier(schema)))
    return planted


def test_search_path_hijack_changes_nothing(db, invoices, attacker_schema, unchanged):
    names = referenced_names(db.owner())
    assert {"to_jsonb", "row_label", "_refuse", "pg_has_role"} <= names
    assert plant_hijack(invoices, attacker_schema, names) > len(names)
    unchanged(FINAL_ROW)
    with refused("LL001", LL001_UPDATE):
        invoices.execute(FINAL_UPDATE)
    with refused("LL001", LL001_DELETE):
        invoices.execute(FINAL_DELETE)
    with refused("LL001", LL001_UPDATE):  # the hijacked `-` would make this look like a no-op
        invoices.execute("UPDATE invoice SET note = 'x' WHERE id = 1")
    assert invoices.execute("SELECT ledgerlock.has_capability('admin')").fetchone()[0] is False
    invoices.execute("UPDATE invoice SET note = 'still editable' WHERE id = 2")


def call_outcome(conn, name: str, args: str):
    try:
        with conn.transaction(force_rollback=True):
            return ("ok", conn.execute(f"SELECT ledgerlock.{name}({args or ''})").fetchall())
    except psycopg.Error as exc:
        return (exc.diag.sqlstate, exc.diag.message_primary)


def test_every_public_function_ignores_the_hijack(db, invoices, attacker_schema):
    """Each function PUBLIC may call (SECURITY DEFINER or not) answers the same with and without the hijack."""
    owner = db.owner()
    public = owner.execute(
        """SELECT p.proname, (SELECT string_agg('NULL::' || format_type(t, NULL), ', ' ORDER BY o)
                              FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY AS a(t, o))
           FROM pg_proc p WHERE p.pronamespace = 'ledgerlock'::regnamespace
             AND has_function_privilege('public', p.oid, 'EXECUTE') ORDER BY 1"""
    ).fetchall()
    calls = [(name, args) for name, args in public] + [("has_capability", "'admin'"),
                                                       ("has_capability", "'controller'")]
    assert ("has_capability", "'admin'") in calls
    before = [call_outcome(invoices, n, a) for n, a in calls]
    plant_hijack(invoices, attacker_schema, referenced_names(owner))
    after = [call_outcome(invoices, n, a) for n, a in calls]
    assert after == before
    assert not any("hijacked" in str(o) for o in after)


# A final-row guard that compares rows with an unqualified operator, as guards are commonly written (and as
# ledgerlock's own was before it compared stored bytes through a pinned, qualified function).
UNPINNED_GUARD = """
BEGIN
    IF (to_jsonb(NEW) - coalesce(TG_ARGV, '{}'::text[]))
       IS DISTINCT FROM (to_jsonb(OLD) - coalesce(TG_ARGV, '{}'::text[])) THEN
        PERFORM ledgerlock._refuse_final(TG_RELID, to_jsonb(OLD), 'updated');
    END IF;
    RETURN NEW;
END
"""


def test_hijack_control_an_unpinned_guard_is_bypassed(db, invoices, attacker_schema):
    """The battery's hijack is real: a SECURITY DEFINER guard without a pinned search_path lets a final row
    change. (This is what `ledgerlock doctor` reports as an unpinned SECURITY DEFINER function.)"""
    owner = db.owner()
    owner.execute(sql.SQL("CREATE FUNCTION public.unpinned_guard() RETURNS trigger LANGUAGE plpgsql "
                          "SECURITY DEFINER AS {}").format(sql.Literal(UNPINNED_GUARD)))
    owner.execute("CREATE TABLE ctl (LIKE invoice INCLUDING ALL)")
    owner.execute("INSERT INTO ctl SELECT * FROM invoice")
    owner.execute("GRANT SELECT, UPDATE ON ctl TO ll_app")
    owner.execute("CREATE TRIGGER ll_10_ctl BEFORE UPDATE ON ctl FOR EACH ROW WHEN (OLD.status = 'approved') "
                  "EXECUTE FUNCTION public.unpinned_guard()")
    with refused("LL001"):  # without the hijack, the copy refuses like the original
        invoices.execute("UPDATE ctl SET amount = 1 WHERE id = 1")
    plant_hijack(invoices, attacker_schema, set(), equals=False)  # only the `-` that empties both rows
    invoices.execute("UPDATE ctl SET amount = 1 WHERE id = 1")
    assert owner.execute("SELECT amount FROM ctl WHERE id = 1").fetchone()[0] == 1


# --- DML shapes --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("stmt", "match"), [
    ("INSERT INTO invoice (id, company_id, amount) VALUES (1, 1, 5) "
     "ON CONFLICT (id) DO UPDATE SET amount = EXCLUDED.amount", LL001_UPDATE),
    ("WITH d AS (DELETE FROM invoice WHERE id = 1 RETURNING *) SELECT count(*) FROM d", LL001_DELETE),
    ("WITH u AS (UPDATE invoice SET amount = 0 WHERE id = 1 RETURNING *) SELECT count(*) FROM u", LL001_UPDATE),
    ("WITH n AS (INSERT INTO quote (company_id) VALUES (1) RETURNING id) "
     "UPDATE invoice SET amount = (SELECT id FROM n) WHERE id = 1", LL001_UPDATE),
    ("MERGE INTO invoice i USING (VALUES (1)) v(id) ON i.id = v.id WHEN MATCHED THEN UPDATE SET amount = 0",
     LL001_UPDATE),
    ("MERGE INTO invoice i USING (VALUES (1)) v(id) ON i.id = v.id WHEN MATCHED THEN DELETE", LL001_DELETE),
    ("UPDATE invoice SET issued_on = issued_on + 1 WHERE id = 1", LL001_UPDATE),
    ("UPDATE invoice SET id = 99 WHERE id = 1", LL001_UPDATE),
])
def test_dml_shapes_cannot_touch_a_final_row(invoices, unchanged, stmt, match):
    unchanged()
    with refused("LL001", match):
        invoices.execute(stmt)


def test_on_conflict_do_update_of_a_mutable_column_is_the_permitted_neighbour(invoices):
    lives_ok(invoices, "INSERT INTO invoice (id, company_id) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET paid = true")
    assert invoices.execute("SELECT paid FROM invoice WHERE id = 1").fetchone()[0] is True


def test_copy_cannot_reach_files_programs_or_final_rows(db, invoices, unchanged):
    unchanged()
    with refused("42501"):
        invoices.execute("COPY invoice FROM '/etc/hostname'")
    with refused("42501"):
        invoices.execute("COPY invoice FROM PROGRAM 'true'")
    with refused("23505"), invoices.cursor().copy("COPY invoice (id, company_id, amount) FROM STDIN") as cp:
        cp.write_row((1, 1, 5))  # COPY only inserts: a final row cannot be overwritten
    with invoices.cursor().copy("COPY invoice (id, company_id, amount) FROM STDIN") as cp:
        cp.write_row((3, 1, 5))  # the neighbour: a new row
    db.owner().execute("DELETE FROM invoice WHERE id = 3")


def test_updates_through_views_are_still_refused(db, invoices, attacker_schema, unchanged):
    owner = db.owner()
    owner.execute("CREATE VIEW invoice_v AS SELECT * FROM invoice")  # owned by the superuser installer
    owner.execute("GRANT SELECT, UPDATE, DELETE ON invoice_v TO ll_app")
    invoices.execute("CREATE VIEW evil.v AS SELECT * FROM invoice")
    invoices.execute("""
        CREATE VIEW evil.w AS SELECT id, amount FROM invoice;
        CREATE FUNCTION evil.w_upd() RETURNS trigger LANGUAGE plpgsql AS
            $$ BEGIN UPDATE public.invoice SET amount = NEW.amount WHERE id = NEW.id; RETURN NEW; END $$;
        CREATE TRIGGER w_upd INSTEAD OF UPDATE ON evil.w FOR EACH ROW EXECUTE FUNCTION evil.w_upd();
    """)
    unchanged(FINAL_ROW)
    for view in ("invoice_v", "evil.v", "evil.w"):
        with refused("LL001", LL001_UPDATE):
            invoices.execute(f"UPDATE {view} SET amount = 0 WHERE id = 1")
    for view in ("invoice_v", "evil.v"):
        with refused("LL001", LL001_DELETE):
            invoices.execute(f"DELETE FROM {view} WHERE id = 1")
    invoices.execute("UPDATE invoice_v SET note = 'via view' WHERE id = 2")


def test_rules_on_the_applications_own_tables_cannot_reach_final_rows(invoices, attacker_schema, unchanged):
    invoices.execute("""
        CREATE TABLE evil.t (x int);
        CREATE RULE r AS ON INSERT TO evil.t DO ALSO UPDATE public.invoice SET amount = NEW.x WHERE id = 1;
    """)
    unchanged()
    with refused("LL001", LL001_UPDATE):
        invoices.execute("INSERT INTO evil.t VALUES (0)")


# --- cascades from parent tables ---------------------------------------------------------------------

@pytest.fixture
def documents(db):
    """A protected child with ON DELETE CASCADE, ON DELETE SET NULL and ON UPDATE CASCADE foreign keys."""
    owner = db.owner()
    owner.execute("""
        CREATE TABLE folder (id int PRIMARY KEY);
        CREATE TABLE tag (id int PRIMARY KEY);
        CREATE TABLE doc (
            id int PRIMARY KEY,
            folder_id int NOT NULL REFERENCES folder ON DELETE CASCADE ON UPDATE CASCADE,
            tag_id int REFERENCES tag ON DELETE SET NULL,
            status text NOT NULL DEFAULT 'draft',
            doc_date date NOT NULL DEFAULT current_date);
        GRANT SELECT, INSERT, UPDATE, DELETE ON folder, tag, doc TO ll_app;
        INSERT INTO folder VALUES (1), (2);
        INSERT INTO tag VALUES (1), (2);
        INSERT INTO doc VALUES (1, 1, 1, 'final'), (2, 2, 2, 'draft');
    """)
    owner.execute("SELECT ledgerlock.protect('doc', 'doc_date', final_when => $$status = 'final'$$)")
    return db.connect("app")


@pytest.mark.parametrize(("stmt", "match"), [
    ("DELETE FROM folder WHERE id = 1", r"^doc id=1 is final and cannot be deleted"),
    ("DELETE FROM tag WHERE id = 1", r"^doc id=1 is final and cannot be updated"),
    ("UPDATE folder SET id = 10 WHERE id = 1", r"^doc id=1 is final and cannot be updated"),
])
def test_cascades_from_a_parent_are_refused(documents, unchanged, stmt, match):
    unchanged("SELECT * FROM doc ORDER BY id")
    unchanged("SELECT * FROM folder, tag ORDER BY 1, 2")
    with refused("LL001", match):
        documents.execute(stmt)


def test_final_row_of_a_table_without_mutable_columns_cannot_be_updated(documents, unchanged):
    """A table protected with no mutable column (the guard gets no trigger arguments) is guarded too."""
    unchanged("SELECT * FROM doc WHERE id = 1")
    with refused("LL001", r"^doc id=1 is final and cannot be updated"):
        documents.execute("UPDATE doc SET doc_date = '2020-01-01' WHERE id = 1")
    documents.execute("UPDATE doc SET doc_date = '2020-01-01' WHERE id = 2")


def test_cascades_to_draft_rows_are_the_permitted_neighbour(documents):
    lives_ok(documents, "DELETE FROM tag WHERE id = 2")
    lives_ok(documents, "DELETE FROM folder WHERE id = 2")
    assert documents.execute("SELECT array_agg(id) FROM doc").fetchone()[0] == [1]


# --- other side doors --------------------------------------------------------------------------------

@pytest.mark.parametrize("stmt", [
    "SELECT lo_import('/etc/hostname')",
    "SELECT lo_export(lo_create(0), '/tmp/ll-hardening-lo')",
    "COPY (SELECT 1) TO PROGRAM 'true'",
    "ALTER SYSTEM SET session_replication_role = replica",
    "SELECT * FROM ledgerlock.protected_table FOR UPDATE",
    "SELECT pg_read_file('postgresql.conf')",
    "CREATE EVENT TRIGGER evil ON ddl_command_start EXECUTE FUNCTION suppress_redundant_updates_trigger()",
    "SELECT ledgerlock.reinstall_guards()",
    "SELECT ledgerlock.unprotect('invoice', 'because')",
    "SELECT ledgerlock.protect('invoice', 'issued_on')",
])
def test_side_doors_are_closed(invoices, unchanged, stmt):
    unchanged()
    with refused("42501"):
        invoices.execute(stmt)
    with refused("LL001", LL001_UPDATE):
        invoices.execute(FINAL_UPDATE)
