"""A table's date from a referenced parent row: date_column => 'fk_column.parent_column' (a journal line whose
date is its entry's). Declared and validated at protect time, enforced by the period guard on the child (the
parent's date read only when a window could apply) and by the parent's own guard, explained by why_locked."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg import sql

from lltest import edit_trigger_by_hand, guard_calls, lives_ok, mark_problems, refused, trigger_def

SCHEMA = """
CREATE TABLE header (id integer PRIMARY KEY, entity_id integer, posted_on date, memo text);
CREATE TABLE line (
    id        integer PRIMARY KEY,
    header_id integer REFERENCES header ON DELETE CASCADE,
    entity_id integer,
    account   text NOT NULL DEFAULT '1000',
    amount    numeric NOT NULL DEFAULT 0,
    reconciled boolean NOT NULL DEFAULT false,
    at        timestamptz,
    number    text
);
INSERT INTO header VALUES (1, 1, '2026-03-10'), (2, 1, '2026-04-10'), (3, 2, '2026-03-10'), (4, 1, NULL);
GRANT SELECT, INSERT, UPDATE, DELETE ON header, line TO ll_app, ll_controller;
"""


def protect_line(owner, date_column="header_id.posted_on", scope_column="entity_id", **extra):
    args = "".join(f", {k} => %({k})s" for k in extra)
    owner.execute("SELECT ledgerlock.protect('line', date_column => %(d)s, scope_column => %(s)s, "
                  "mutable_columns => '{reconciled}'" + args + ")", {"d": date_column, "s": scope_column} | extra)


@pytest.fixture
def books(db):
    owner = db.owner()
    owner.execute(SCHEMA)
    protect_line(owner)
    return db


def lock(db, scope="1", level="hard"):
    db.connect("admin").execute("SELECT ledgerlock.lock_period(%s, '2026-03-01', '2026-03-31', %s)", [scope, level])


# --- declaration ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("date_column", "scope_column", "sqlstate", "match"),
    [
        ("header_id.posted_on.x", "entity_id", "22023", r"date_column: 'header_id\.posted_on\.x' follows more than "
                                                       r"one foreign key"),
        ("account.posted_on", "entity_id", "22023", r"line\.account is not a single-column foreign key"),
        ("header_id.nope", "entity_id", "22023", r"header_id references (public\.)?header, which has no column nope"),
        ("header_id.memo", "entity_id", "42804", r"date_column: (public\.)?header\.memo is of type text; it must be "
                                                 r"a date or a timestamp"),
        ("nope.posted_on", "entity_id", "42703", r"date_column: table (public\.)?line has no column nope"),
    ],
)
def test_a_bad_parent_date_declaration_is_refused_with_a_sentence(db, date_column, scope_column, sqlstate, match):
    owner = db.owner()
    owner.execute(SCHEMA)
    with refused(sqlstate, match):
        protect_line(owner, date_column, scope_column)
    lives_ok(owner, "SELECT ledgerlock.protect('line', date_column => 'header_id.posted_on', scope_column => "
                    "'entity_id')")
    assert owner.execute("SELECT date_column FROM ledgerlock.protected_table WHERE tbl = 'line'::regclass"
                         ).fetchone()[0] == "header_id.posted_on"


def test_a_numbered_table_and_two_parents_are_refused(db):
    owner = db.owner()
    owner.execute(SCHEMA)
    owner.execute("CREATE TABLE entity (id integer PRIMARY KEY); INSERT INTO entity VALUES (1), (2);"
                  "ALTER TABLE line ADD FOREIGN KEY (entity_id) REFERENCES entity")
    with refused("22023", r"number_column: the date of (public\.)?line comes from (public\.)?header; a numbered table "
                          r"keeps its date on itself"):
        protect_line(owner, number_column="number", final_when="number IS NOT NULL")
    with refused("22023", r"scope_column and date_column: the scope of (public\.)?line comes through entity_id and "
                          r"its date through header_id; both must come through the same foreign key"):
        protect_line(owner, scope_column="entity_id.id")
    lives_ok(owner, "SELECT ledgerlock.protect('line', date_column => 'header_id.posted_on', "
                    "scope_column => 'header_id.entity_id')")
    lives_ok(owner, "SELECT ledgerlock.protect('line', date_column => 'at', scope_column => 'entity_id', "
                    "number_column => 'number', final_when => 'number IS NOT NULL', weaken_reason => 'own date')")


# --- the child's writes ------------------------------------------------------------------------------------


def test_a_child_of_a_locked_parent_date_is_refused_and_its_neighbours_pass(books):
    lock(books)
    app = books.connect("app")
    with refused("LL002", r"locked \(hard\) for scope 1: line id=1 cannot be inserted"):
        app.execute("INSERT INTO line (id, header_id, entity_id) VALUES (1, 1, 1)")
    lives_ok(app, "INSERT INTO line (id, header_id, entity_id) VALUES (2, 2, 1)")  # header dated in April
    lives_ok(app, "INSERT INTO line (id, header_id, entity_id) VALUES (3, 1, 2)")  # another scope
    lives_ok(app, "INSERT INTO line (id, header_id, entity_id) VALUES (4, 4, 1)")  # an undated header
    lives_ok(app, "INSERT INTO line (id, header_id, entity_id) VALUES (5, NULL, 1)")  # no header



def insert_check(owner) -> str:
    """The function the child's AFTER INSERT check calls, as its trigger names it."""
    return trigger_def(owner, "line", "ll_20_period_insert").split("EXECUTE FUNCTION ledgerlock.")[1].split("(")[0]


def test_an_insert_dated_by_its_parent_is_checked_by_a_generated_check_that_plans_the_parent_read_once(books):
    """The child's INSERT check is generated for the table, with the parent's date read by a static query (a
    plan the session keeps), not by guard_period_row's dynamic query, planned again for every row (~25 us a
    row: a 20,000-row INSERT took 0.50 s against 0.02 s with a date of its own, PG 16). It decides the same:
    a row dated in the window is refused, its neighbours pass, a row of a scope without a window does not
    read its parent."""
    lock(books)
    owner = books.owner()
    owner.execute(f"ALTER DATABASE {books.name} SET track_functions = 'pl'")
    check = insert_check(owner)
    assert check.startswith("_ll20_") and check.endswith("_insert")
    tx = books.connect("app", autocommit=False)
    tx.execute("INSERT INTO line (id, header_id, entity_id) "
               "SELECT g, 2 + 2 * (g % 2), 1 FROM generate_series(1, 400) g")  # April and undated headers
    tx.execute("INSERT INTO line (id, header_id, entity_id) SELECT g, 1, 2 FROM generate_series(401, 800) g")
    assert guard_calls(tx, "guard_period_row") == 0
    assert guard_calls(tx, check) == 800
    with refused("LL002", r"^Period 2026-03-01\.\.2026-03-31 is locked \(hard\) for scope 1: line id=801 "
                          r"cannot be inserted"):
        tx.execute("INSERT INTO line (id, header_id, entity_id) VALUES (801, 1, 1)")
    tx.rollback()
    # the parent's row is share-locked until the child's write ends: its date cannot move meanwhile
    tx.execute("INSERT INTO line (id, header_id, entity_id) VALUES (1, 2, 1)")
    mover = books.connect("app")
    mover.execute("SET lock_timeout = '200ms'")  # a bounded wait: the row lock is held until tx ends
    with refused("55P03", r"lock timeout"):
        mover.execute("UPDATE header SET posted_on = '2026-04-11' WHERE id = 2")
    lives_ok(mover, "UPDATE header SET posted_on = '2026-04-11' WHERE id = 3")  # a header no write has read
    tx.commit()


def test_a_generated_parent_date_check_reads_a_timestamptz_parent_in_utc_whatever_the_client_time_zone(db):
    """A parent dated by a timestamptz: the day is its UTC date, as guard_period_row reads it, whatever time
    zone the client set (+14 sees 2026-04-01 for 2026-03-31 23:30 UTC, -07 sees 2026-03-31 for 2026-04-01
    00:30 UTC)."""
    owner = db.owner()
    owner.execute(SCHEMA.replace("posted_on date", "posted_on timestamptz"))
    owner.execute("UPDATE header SET posted_on = '2026-03-31 23:30+00' WHERE id = 1")
    owner.execute("UPDATE header SET posted_on = '2026-04-01 00:30+00' WHERE id = 2")
    protect_line(owner)
    assert insert_check(owner).startswith("_ll20_")
    lock(db)
    ahead, behind = db.connect("app"), db.connect("app")
    ahead.execute("SET TimeZone = 'Pacific/Kiritimati'")
    behind.execute("SET TimeZone = 'America/Phoenix'")
    with refused("LL002", r"for scope 1: line id=1 cannot be inserted"):
        ahead.execute("INSERT INTO line (id, header_id, entity_id) VALUES (1, 1, 1)")
    lives_ok(behind, "INSERT INTO line (id, header_id, entity_id) VALUES (2, 2, 1)")


def deferred_books(db):
    """The books with a deferred foreign key from line to header (a child may name its parent before the parent
    exists, within the transaction), line protected, scope 1's March hard-locked; returns the owner's
    connection."""
    owner = db.owner()
    owner.execute(SCHEMA)
    owner.execute("ALTER TABLE line DROP CONSTRAINT line_header_id_fkey, ADD CONSTRAINT line_header_id_fkey "
                  "FOREIGN KEY (header_id) REFERENCES header ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED")
    protect_line(owner)
    lock(db)
    return owner

def test_a_generated_parent_date_check_refuses_a_child_whose_parent_does_not_exist_yet(db):
    """A deferred foreign key lets a child be written before its parent: its day cannot be read, so it is
    refused (23503) in a scope with a window, as guard_period_row refuses it; once the parent exists, the
    child is written."""
    owner = deferred_books(db)
    assert insert_check(owner).startswith("_ll20_")
    app = db.connect("app", autocommit=False)
    with refused("23503", r"^line id=1 cannot be inserted: its date comes from the row header_id references, "
                          r"which does not exist"):
        app.execute("INSERT INTO line (id, header_id, entity_id) VALUES (1, 9, 1)")
    app.rollback()
    lives_ok(app, "INSERT INTO line (id, header_id, entity_id) VALUES (1, 9, 2)")  # a scope without a window
    app.execute("INSERT INTO header VALUES (9, 1, '2026-04-02')")
    lives_ok(app, "INSERT INTO line (id, header_id, entity_id) VALUES (2, 9, 1)")
    app.commit()



def test_a_soft_lock_admits_a_child_dated_by_its_parent_only_under_an_override_in_a_granted_scope(books):
    """The generated check sends a child it finds in a window to the same decision as every other write: the
    application is refused with the way out, a tenant admin limited to scope 1 writes into scope 1's window
    under an override (recorded on the event) and is still refused in scope 2's."""
    admin = books.connect("admin")
    for scope in ("1", "2"):
        admin.execute("SELECT ledgerlock.lock_period(%s, '2026-03-01', '2026-03-31', 'soft')", [scope])
    with refused("LL002", r"^Period 2026-03-01\.\.2026-03-31 is locked \(soft\) for scope 1: line id=1 cannot be "
                          r"inserted"):
        books.connect("app").execute("INSERT INTO line (id, header_id, entity_id) VALUES (1, 1, 1)")
    name = f"ll_tenant_{uuid.uuid4().hex[:8]}"
    owner = books.owner()
    owner.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE ledgerlock_admin").format(sql.Identifier(name)))
    try:
        owner.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON header, line TO {}").format(
            sql.Identifier(name)))
        admin.execute("SELECT ledgerlock.grant_scope(%s::regrole, '1')", [name])
        with psycopg.connect(books.cluster.server.conninfo(dbname=books.name, user=name)) as tenant:
            tenant.execute("SELECT ledgerlock.begin_override('a late line of entry 3')")
            with refused("LL002", r"locked \(soft\) for scope 2: line id=3 cannot be inserted"):
                tenant.execute("INSERT INTO line (id, header_id, entity_id) VALUES (3, 3, 2)")
            tenant.rollback()
            override = tenant.execute("SELECT ledgerlock.begin_override('a late line of entry 1')").fetchone()[0]
            tenant.execute("INSERT INTO line (id, header_id, entity_id) VALUES (1, 1, 1)")
            tenant.commit()
        events = books.connect("auditor").execute(
            "SELECT row_key ->> 'id', override_id, reason FROM ledgerlock.audit_event "
            "WHERE table_oid = 'line'::regclass AND operation = 'INSERT'").fetchall()
        assert events == [("1", override, "a late line of entry 1")]
    finally:
        books.close_all()
        with psycopg.connect(books.conninfo(), autocommit=True) as cleanup:
            cleanup.execute(sql.SQL("DROP OWNED BY {0}; DROP ROLE {0}").format(sql.Identifier(name)))


def change_check(owner) -> str:
    """The function the child's AFTER UPDATE and AFTER DELETE checks call, as their triggers name it."""
    names = {trigger_def(owner, "line", t).split("EXECUTE FUNCTION ledgerlock.")[1].split("(")[0]
             for t in ("ll_20_period_update", "ll_20_period_delete")}
    assert len(names) == 1
    return names.pop()


def test_updates_and_deletes_dated_by_the_parent_are_checked_by_a_generated_check(books):
    """The child's UPDATE and DELETE checks are generated too (its WHEN clauses cannot test the parent's date, so
    every change of a non-exempt column calls them): the parent's date is read by a static query, once for both
    sides when the foreign key keeps its value, not by guard_period_row's dynamic query per side and row. They
    decide the same: a change in the window, a move into it, a delete in it are refused; the mutable column,
    rows outside it and moves between open days pass."""
    lock(books)
    owner = books.owner()
    owner.execute(f"ALTER DATABASE {books.name} SET track_functions = 'pl'")
    check = change_check(owner)
    assert check.startswith("_ll20_") and check.endswith("_change")
    owner.execute("INSERT INTO header VALUES (5, 1, '2026-04-20'), (6, 1, '2026-03-20')")
    app = books.connect("app")
    tx = books.connect("app", autocommit=False)
    tx.execute("INSERT INTO line (id, header_id, entity_id) SELECT g, 2, 1 FROM generate_series(1, 300) g")
    tx.execute("INSERT INTO line (id, header_id, entity_id) SELECT g, 3, 2 FROM generate_series(301, 400) g")
    tx.commit()
    tx.execute("UPDATE line SET amount = amount + 1")  # April, and another scope's March: pass
    tx.execute("UPDATE line SET header_id = 5 WHERE id <= 10")  # April to April
    tx.execute("DELETE FROM line WHERE id > 390")
    assert guard_calls(tx, "guard_period_row") == 0
    assert guard_calls(tx, check) == 400 + 10 + 10
    tx.commit()
    with refused("LL002", r"^Period 2026-03-01\.\.2026-03-31 is locked \(hard\) for scope 1: line id=11 cannot be "
                          r"updated"):
        app.execute("UPDATE line SET header_id = 6 WHERE id = 11")  # into the window
    lives_ok(app, "UPDATE line SET reconciled = true WHERE id = 12")


def test_a_generated_change_check_refuses_a_move_to_a_parent_that_does_not_exist_yet(db):
    """Re-pointing a child to a parent a deferred foreign key lets it name before it exists: in a scope with a
    window its day cannot be read, so it is refused (23503), as guard_period_row refuses it."""
    owner = deferred_books(db)
    assert change_check(owner).endswith("_change")
    app = db.connect("app", autocommit=False)
    app.execute("INSERT INTO line (id, header_id, entity_id) VALUES (1, 2, 1), (2, 2, 2)")
    app.commit()
    with refused("23503", r"^line id=1 cannot be updated: its date comes from the row header_id references, "
                          r"which does not exist"):
        app.execute("UPDATE line SET header_id = 9 WHERE id = 1")
    app.rollback()
    lives_ok(app, "UPDATE line SET header_id = 9 WHERE id = 2")  # a scope without a window
    app.execute("INSERT INTO header VALUES (9, 1, '2026-04-02')")
    app.commit()


def test_a_table_whose_scope_is_its_parents_keeps_the_generic_insert_check(db):
    """A scope read from the parent row is not generated: its inserts go to guard_period_row, and the
    generated function of a table protected before with a scope of its own is dropped when it is protected
    again with its parent's."""
    owner = db.owner()
    owner.execute(SCHEMA)
    protect_line(owner)
    generated = insert_check(owner)
    protect_line(owner, scope_column="header_id.entity_id", weaken_reason="the scope is the entry's")
    assert insert_check(owner) == "guard_period_row"
    assert change_check(owner) == "guard_period_row"
    assert owner.execute("SELECT count(*) FROM pg_proc WHERE proname = %s", [generated]).fetchone()[0] == 0
    lock(db)
    app = db.connect("app")
    with refused("LL002", r"for scope 1: line id=1 cannot be inserted"):
        app.execute("INSERT INTO line (id, header_id) VALUES (1, 1)")
    lives_ok(app, "INSERT INTO line (id, header_id) VALUES (2, 2)")

def test_skip_mode_skips_a_child_of_a_locked_parent_date_and_only_in_skip_mode(books):
    """A date read from the parent leaves the skip trigger's date test always true, so its WHEN keeps the
    mode's test: in the default mode it is not called at all; in skip mode the child in the window is
    skipped and recorded, its neighbour inserted."""
    lock(books)
    owner = books.owner()
    owner.execute(f"ALTER DATABASE {books.name} SET track_functions = 'pl'")
    when = trigger_def(owner, "line", "ll_20_period_skip")
    assert "current_setting('ledgerlock.on_locked'::text, true) = 'skip'::text" in when
    tx = books.connect("app", autocommit=False)
    lives_ok(tx, "INSERT INTO line (id, header_id, entity_id) VALUES (2, 2, 1)")  # header dated in April
    # one call: the AFTER check (the date is the parent's); the skip trigger was not called
    assert guard_calls(tx, insert_check(owner)) == 1
    assert guard_calls(tx, "guard_period_row") == 0
    tx.execute("SET LOCAL ledgerlock.on_locked = 'skip'")
    cur = tx.execute("INSERT INTO line (id, header_id, entity_id) VALUES (1, 1, 1), (3, 2, 1)")
    assert cur.rowcount == 1
    tx.commit()
    app = books.connect("app")
    assert [r[0] for r in app.execute("SELECT id FROM line ORDER BY id")] == [2, 3]
    skipped = books.connect("controller").execute(
        "SELECT table_name, row_key, scope FROM ledgerlock.skipped_writes").fetchall()
    assert skipped == [("public.line", {"id": 1}, "1")]
    with refused("LL002", r"line id=1 cannot be inserted"):
        app.execute("INSERT INTO line (id, header_id, entity_id) VALUES (1, 1, 1)")


def test_a_locked_child_cannot_be_changed_repointed_or_deleted_but_its_mutable_column_can(books):
    app = books.connect("app")
    app.execute("INSERT INTO line (id, header_id, entity_id) VALUES (1, 1, 1), (2, 2, 1), (3, 1, 2)")
    lock(books)
    with refused("LL002", r"for scope 1: line id=1 cannot be updated"):
        app.execute("UPDATE line SET amount = 5 WHERE id = 1")
    with refused("LL002", r"for scope 1: line id=3 cannot be updated"):  # into the locked scope, same parent
        app.execute("UPDATE line SET entity_id = 1 WHERE id = 3")
    with refused("LL002", r"for scope 1: line id=1 cannot be updated"):  # out of the window
        app.execute("UPDATE line SET header_id = 2 WHERE id = 1")
    with refused("LL002", r"for scope 1: line id=2 cannot be updated"):  # into the window
        app.execute("UPDATE line SET header_id = 1 WHERE id = 2")
    with refused("LL002", r"for scope 1: line id=1 cannot be deleted"):
        app.execute("DELETE FROM line WHERE id = 1")
    lives_ok(app, "UPDATE line SET reconciled = true WHERE id = 1")
    lives_ok(app, "UPDATE line SET header_id = 4 WHERE id = 2")
    lives_ok(app, "DELETE FROM line WHERE id = 2")
    lives_ok(app, "UPDATE line SET amount = 4 WHERE id = 3")  # scope 2 is open


def test_scope_and_date_from_the_same_parent(db):
    owner = db.owner()
    owner.execute(SCHEMA)
    protect_line(owner, scope_column="header_id.entity_id")
    lock(db, "2")
    app = db.connect("app")
    with refused("LL002", r"for scope 2: line id=1 cannot be inserted"):
        app.execute("INSERT INTO line (id, header_id) VALUES (1, 3)")
    lives_ok(app, "INSERT INTO line (id, header_id) VALUES (2, 1)")  # same day, scope 1


# --- the parent's date column -------------------------------------------------------------------------------


def test_moving_a_parent_date_into_or_out_of_a_locked_window_is_refused_while_children_follow(books):
    app = books.connect("app")
    app.execute("INSERT INTO line (id, header_id, entity_id) VALUES (1, 1, 1), (2, 2, 1), (3, 3, 2)")
    lock(books)
    with refused("LL002", r"locked \(hard\) for scope 1: line id=1 cannot be moved from 2026-03-10 to 2026-04-01 "
                          r"with header id=1"):
        app.execute("UPDATE header SET posted_on = '2026-04-01' WHERE id = 1")
    with refused("LL002", r"for scope 1: line id=2 cannot be moved from 2026-04-10 to 2026-03-31 with header id=2"):
        app.execute("UPDATE header SET posted_on = '2026-03-31' WHERE id = 2")
    with refused("LL002", r"for scope 1: line id=1 cannot be taken out of 2026-03-10 by deleting header id=1"):
        app.execute("DELETE FROM header WHERE id = 1")
    # neighbours: the parent's other columns, a move that keeps every child outside the window, another scope
    lives_ok(app, "UPDATE header SET memo = 'm' WHERE id = 1")
    lives_ok(app, "UPDATE header SET posted_on = '2026-05-01' WHERE id = 2")
    lives_ok(app, "UPDATE header SET posted_on = '2026-03-11' WHERE id = 3")  # its child is in scope 2
    lives_ok(app, "UPDATE header SET posted_on = '2026-03-12' WHERE id = 4")  # no children
    lives_ok(app, "DELETE FROM header WHERE id = 2")
    assert app.execute("SELECT count(*) FROM line WHERE id = 2").fetchone()[0] == 0


def test_a_soft_lock_admits_a_parent_date_move_under_an_override(books):
    app = books.connect("app")
    app.execute("INSERT INTO line (id, header_id, entity_id) VALUES (1, 1, 1)")
    lock(books, level="soft")
    with refused("LL002", r"line id=1 cannot be moved from 2026-03-10 to 2026-04-01"):
        app.execute("UPDATE header SET posted_on = '2026-04-01' WHERE id = 1")
    ctl = books.connect("controller", autocommit=False)
    ctl.execute("SELECT ledgerlock.begin_override('late correction of the entry date')")
    lives_ok(ctl, "UPDATE header SET posted_on = '2026-04-01' WHERE id = 1")
    ctl.commit()


def test_the_parent_guard_goes_once_no_child_takes_its_date(books):
    owner = books.owner()
    names = ("SELECT array_agg(tgname ORDER BY tgname) FROM pg_trigger WHERE tgrelid = 'header'::regclass "
             "AND tgname LIKE 'll_%%'")
    assert owner.execute(names).fetchone()[0] == ["ll_20_scope_parent_delete", "ll_20_scope_parent_update"]
    owner.execute("SELECT ledgerlock.protect('line', date_column => 'at', scope_column => 'entity_id', "
                  "mutable_columns => '{reconciled}', weaken_reason => 'own date')")
    assert owner.execute(names).fetchone()[0] is None


def parent_guard(owner) -> str:
    """The function the parent's two guards run, as their triggers name it: the guard generated for the parent."""
    names = {trigger_def(owner, "header", t).split("EXECUTE FUNCTION ledgerlock.")[1].split("(")[0]
             for t in ("ll_20_scope_parent_update", "ll_20_scope_parent_delete")}
    assert len(names) == 1
    return names.pop()


def test_the_parents_guard_is_generated_for_it_and_follows_its_children(books):
    """The parent's guard is generated for the parent, its children's queries written for each child (static SQL
    whose plans the session keeps; guard_scope_parent planned them at every call): a backdated delete ~0.45 ms ->
    ~0.14 ms, PG 16. Regenerated when a child is protected or unprotected; dropped with the triggers."""
    owner = books.owner()
    guard = parent_guard(owner)
    assert guard.startswith("_ll20_t") and guard.endswith("_parent")
    body = owner.execute("SELECT prosrc FROM pg_proc WHERE proname = %s", (guard,)).fetchone()[0]
    assert "public.line AS ll_row" in body and "EXECUTE pg_catalog.format" not in body
    assert owner.execute("SELECT count(*) FROM ledgerlock.doctor_findings() WHERE severity = 'critical'"
                         ).fetchone()[0] == 0  # its fingerprint is recorded: no drift
    owner.execute("CREATE TABLE note (id integer PRIMARY KEY, header_id integer REFERENCES header, at date)")
    owner.execute("SELECT ledgerlock.protect('note', date_column => 'at', scope_column => 'header_id.entity_id')")
    body = owner.execute("SELECT prosrc FROM pg_proc WHERE proname = %s", (guard,)).fetchone()[0]
    assert "public.note AS ll_row" in body and "public.line AS ll_row" in body
    for table in ("note", "line"):
        owner.execute("SELECT ledgerlock.unprotect(%s, 'no longer kept')", (table,))
    assert owner.execute("SELECT count(*) FROM pg_proc WHERE proname = %s", (guard,)).fetchone()[0] == 0
    assert owner.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'header'::regclass "
                         "AND tgname LIKE 'll\\_%%'").fetchone()[0] == 0


def test_a_parent_dated_after_every_window_is_moved_and_deleted_without_calling_its_guard(books):
    """The parent's guards carry the mark in their WHEN clauses, as the children's do: a header dated after the
    last day of every window its lines' table has is deleted or moved without a call (the guard ran dynamic
    queries, ~1.3 ms a delete on PG 16, where the plain delete takes ~25 us). Dated on or before the mark,
    the guard runs and refuses a line in a window; a line of a header after the mark still follows its header."""
    owner = books.owner()
    owner.execute(f"ALTER DATABASE {books.name} SET track_functions = 'pl'")
    app = books.connect("app")
    app.execute("INSERT INTO line (id, header_id, entity_id) VALUES (1, 1, 1), (2, 2, 1)")
    lock(books)  # March, scope 1: the mark is 2026-03-31
    assert "old.posted_on <= '2026-03-31'::date" in trigger_def(owner, "header", "ll_20_scope_parent_delete")
    guard = parent_guard(owner)
    tx = books.connect("app", autocommit=False)
    lives_ok(tx, "UPDATE header SET posted_on = '2026-05-01' WHERE id = 2")  # April to May: after the mark
    lives_ok(tx, "DELETE FROM header WHERE id = 2")
    assert guard_calls(tx, guard) == 0
    assert tx.execute("SELECT count(*) FROM line WHERE id = 2").fetchone()[0] == 0  # its line went with it
    app.execute("INSERT INTO line (id, header_id, entity_id) VALUES (3, 3, 2)")  # March, but scope 2: no window
    lives_ok(tx, "DELETE FROM header WHERE id = 3")  # on or before the mark: the guard runs, and lets it by
    assert guard_calls(tx, guard) == 1
    with refused("LL002", r"for scope 1: line id=1 cannot be taken out of 2026-03-10 by deleting header id=1"):
        tx.execute("DELETE FROM header WHERE id = 1")
    tx.rollback()
    with refused("LL002", r"line id=2 cannot be moved from 2026-04-10 to 2026-03-31 with header id=2"):
        app.execute("UPDATE header SET posted_on = '2026-03-31' WHERE id = 2")  # after the mark, moved before it


def test_a_parent_without_a_window_anywhere_is_never_checked_and_the_first_window_raises_its_mark(books):
    owner = books.owner()
    app = books.connect("app")
    app.execute("INSERT INTO line (id, header_id, entity_id) VALUES (1, 1, 1), (2, 3, 2)")
    assert "'-infinity'::date" in trigger_def(owner, "header", "ll_20_scope_parent_delete")
    assert owner.execute("SELECT ledgerlock._parent_installed_mark('header')::text").fetchone()[0] == "-infinity"
    lock(books, scope="2")  # scope 2's March: the lines of scope 1 are not in it, but the mark covers March
    assert owner.execute("SELECT ledgerlock._parent_installed_mark('header')").fetchone()[0].isoformat() \
        == "2026-03-31"
    with refused("LL002", r"for scope 2: line id=2 cannot be taken out of 2026-03-10 by deleting header id=3"):
        app.execute("DELETE FROM header WHERE id = 3")
    lives_ok(app, "DELETE FROM header WHERE id = 1")  # scope 1 has no window: the guard looks and lets it by


def test_a_window_past_a_parents_mark_raises_it_even_when_the_children_need_no_new_mark(books):
    """A parent's mark lowered by hand (a superuser re-creating the trigger) is a doctor finding, and the next
    window past it raises it although the child's own mark already reaches that far."""
    owner = books.owner()
    app = books.connect("app")
    app.execute("INSERT INTO header VALUES (5, 1, '2026-02-10')")
    app.execute("INSERT INTO line (id, header_id, entity_id) VALUES (1, 5, 1)")
    lock(books)  # March
    edit_trigger_by_hand(owner, "header", "ll_20_scope_parent_delete", "'2026-03-31'::date", "'2026-01-31'::date")
    assert mark_problems(owner) == [("header", "2026-01-31", "2026-03-31")]
    auditor = books.connect("auditor")
    assert auditor.execute("SELECT object FROM ledgerlock.doctor_findings() WHERE check_name = 'period mark'"
                           ).fetchall() == [("public.header",)]
    books.connect("admin").execute("SELECT ledgerlock.lock_period('1', '2026-02-01', '2026-02-28', 'hard')")
    assert owner.execute("SELECT ledgerlock._period_installed_mark('line', '1')").fetchone()[0].isoformat() \
        == "2026-03-31"  # the child's guards were not touched: their mark already covered February
    assert owner.execute("SELECT ledgerlock._parent_installed_mark('header')").fetchone()[0].isoformat() \
        == "2026-03-31"
    assert mark_problems(owner) == []
    with refused("LL002", r"2026-02-01\.\.2026-02-28 is locked \(hard\) for scope 1: line id=1 cannot be taken "
                          r"out of 2026-02-10 by deleting header id=5"):
        app.execute("DELETE FROM header WHERE id = 5")


def test_a_tenant_admins_lock_raises_a_shared_parents_mark_for_its_own_scope_only(books):
    """The header table is shared by the tenants. An admin limited to scope 2 locks April in scope 2: its lock
    re-creates the header's guards (as the definer: the tenant admin cannot create triggers on it) with the
    raised mark, so a scope 2 header of April with a line can no longer be deleted; scope 1's April header is
    checked too (the mark is every scope's) and, scope 1 having no April window, deleted."""
    owner = books.owner()
    name = f"ll_tenant_{uuid.uuid4().hex[:8]}"
    owner.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE ledgerlock_admin").format(sql.Identifier(name)))
    try:
        books.connect("admin").execute("SELECT ledgerlock.grant_scope(%s::regrole, '2')", [name])
        app = books.connect("app")
        app.execute("INSERT INTO header VALUES (5, 2, '2026-04-15'), (6, 1, '2026-04-16')")
        app.execute("INSERT INTO line (id, header_id, entity_id) VALUES (1, 5, 2), (2, 6, 1)")
        with psycopg.connect(books.cluster.server.conninfo(dbname=books.name, user=name), autocommit=True) as tenant:
            with refused("LL005", rf"lock_period on scope 1 is not allowed: {name} is limited to scopes 2"):
                tenant.execute("SELECT ledgerlock.lock_period('1', '2026-04-01', '2026-04-30', 'hard')")
            tenant.execute("SELECT ledgerlock.lock_period('2', '2026-04-01', '2026-04-30', 'hard')")
        assert owner.execute("SELECT ledgerlock._parent_installed_mark('header')::text").fetchone()[0] \
            == "2026-04-30"
        with refused("LL002", r"for scope 2: line id=1 cannot be taken out of 2026-04-15 by deleting header id=5"):
            app.execute("DELETE FROM header WHERE id = 5")
        lives_ok(app, "DELETE FROM header WHERE id = 6")
        assert mark_problems(owner) == []
    finally:
        books.close_all()
        with psycopg.connect(books.conninfo(), autocommit=True) as cleanup:
            cleanup.execute(sql.SQL("DROP OWNED BY {0}; DROP ROLE {0}").format(sql.Identifier(name)))


def test_a_partitioned_parent_guards_every_partition_with_the_mark(db):
    """A parent may be partitioned: its foreign key is stored once more per partition, which protect counted
    as more foreign keys and refused ("has 3 foreign keys"). The parent's guards are row triggers, cloned to
    each partition: a delete in a partition finds the children through the partitioned table
    (ledgerlock._period_children), and the mark lets a header dated after every window by in every partition."""
    owner = db.owner()
    owner.execute("""
        CREATE TABLE header (id integer PRIMARY KEY, entity_id integer, posted_on date) PARTITION BY RANGE (id);
        CREATE TABLE header_a PARTITION OF header FOR VALUES FROM (1) TO (100);
        CREATE TABLE header_b PARTITION OF header FOR VALUES FROM (100) TO (200);
        CREATE TABLE line (id integer PRIMARY KEY, header_id integer REFERENCES header ON DELETE CASCADE,
                           entity_id integer, reconciled boolean NOT NULL DEFAULT false);
        INSERT INTO header VALUES (1, 1, '2026-03-10'), (2, 1, '2026-04-10'), (101, 1, '2026-03-20'),
                                  (102, 1, '2026-04-20');
        GRANT SELECT, INSERT, UPDATE, DELETE ON header, line TO ll_app;""")
    protect_line(owner)
    app = db.connect("app")
    app.execute("INSERT INTO line (id, header_id, entity_id) VALUES (1, 1, 1), (2, 2, 1), (3, 101, 1), (4, 102, 1)")
    lock(db)
    assert "old.posted_on <= '2026-03-31'::date" in trigger_def(owner, "header_b", "ll_20_scope_parent_delete")
    # the row is named as the partitioned table's (its partition's guard refuses it), as the lines are
    with refused("LL002", r"line id=1 cannot be taken out of 2026-03-10 by deleting header id=1$"):
        app.execute("DELETE FROM header WHERE id = 1")
    with refused("LL002", r"line id=3 cannot be taken out of 2026-03-20 by deleting header id=101$"):
        app.execute("DELETE FROM header WHERE id = 101")
    with refused("LL002", r"line id=3 cannot be moved from 2026-03-20 to 2026-04-21 with header id=101$"):
        app.execute("UPDATE header SET posted_on = '2026-04-21' WHERE id = 101")
    lives_ok(app, "DELETE FROM header WHERE id IN (2, 102)")  # April: after the mark, in both partitions
    assert app.execute("SELECT array_agg(id ORDER BY id) FROM line").fetchone()[0] == [1, 3]


def test_a_partitioned_child_dated_by_its_parent_is_checked_in_every_partition(db):
    """The other side: the lines' table is partitioned, so each partition holds its own copy of the foreign
    key (one per partition, on the partition): the guards read the parent through it."""
    owner = db.owner()
    owner.execute("""
        CREATE TABLE header (id integer PRIMARY KEY, entity_id integer, posted_on date);
        CREATE TABLE line (id integer, header_id integer REFERENCES header ON DELETE CASCADE, entity_id integer,
                           reconciled boolean NOT NULL DEFAULT false, PRIMARY KEY (id)) PARTITION BY RANGE (id);
        CREATE TABLE line_a PARTITION OF line FOR VALUES FROM (1) TO (100);
        CREATE TABLE line_b PARTITION OF line FOR VALUES FROM (100) TO (200);
        INSERT INTO header VALUES (1, 1, '2026-03-10'), (2, 1, '2026-04-10');
        GRANT SELECT, INSERT, UPDATE, DELETE ON header, line TO ll_app;""")
    protect_line(owner)
    app = db.connect("app")
    app.execute("INSERT INTO line (id, header_id, entity_id) VALUES (1, 2, 1), (101, 2, 1), (102, 1, 1)")
    lock(db)
    with refused("LL002", r"for scope 1: line id=103 cannot be inserted"):
        app.execute("INSERT INTO line (id, header_id, entity_id) VALUES (103, 1, 1)")
    with refused("LL002", r"line id=102 cannot be taken out of 2026-03-10 by deleting header id=1"):
        app.execute("DELETE FROM header WHERE id = 1")
    lives_ok(app, "INSERT INTO line (id, header_id, entity_id) VALUES (2, 2, 1)")
    lives_ok(app, "DELETE FROM header WHERE id = 2")  # April: after the mark; its lines in both partitions go
    assert app.execute("SELECT array_agg(id ORDER BY id) FROM line").fetchone()[0] == [102]


# --- explanations ----------------------------------------------------------------------------------------


def test_why_locked_names_the_window_of_the_parents_date(books):
    app = books.connect("app")
    app.execute("INSERT INTO line (id, header_id, entity_id) VALUES (1, 1, 1), (2, 2, 1)")
    lock(books)
    owner = books.owner()
    rows = owner.execute("SELECT rule, summary, details FROM ledgerlock.why_locked('line', '{\"id\": 1}')").fetchall()
    assert [(r[0], r[2]["date"]) for r in rows] == [("period_lock", "2026-03-10")]
    assert "header id=1" in rows[0][2]["date_from"]
    assert owner.execute("SELECT count(*) FROM ledgerlock.why_locked('line', '{\"id\": 2}')").fetchone()[0] == 0


# --- the DDL guard ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("stmt", "match"), [
    ("ALTER TABLE header DISABLE TRIGGER ll_20_scope_parent_update",
     r"^disabling trigger ll_20_scope_parent_update on (public\.)?header is refused"),
    ("CREATE TRIGGER zz BEFORE UPDATE ON header FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()",
     r"^CREATE TRIGGER zz on public\.header is refused"),
    ("ALTER TABLE header DROP COLUMN posted_on CASCADE", r"^(DROP table column public\.header\.posted_on|dropping "
                                                         r"trigger ll_20_scope_parent_update on public\.header) is "
                                                         r"refused"),
    ("ALTER TABLE header DROP COLUMN entity_id CASCADE", None),  # the child keeps its scope on itself: passes
    # the child's checks read the parent by name (its table, its key, its date column): a rename would make every
    # insert of a child in a scope with a window fail
    ("ALTER TABLE header RENAME TO entry", r"^ALTER TABLE public\.entry is refused: guard ll_20_scope_parent_\w+ no "
                                           r"longer matches the definition ledgerlock installed, which names the table "
                                           r"\(renamed, or moved to another schema\), and ledgerlock's checks that "
                                           r"read it name it"),
    ("ALTER TABLE header RENAME COLUMN posted_on TO booked_on",
     r"^renaming a column of public\.header \(to booked_on\) is refused: protected table public\.line takes its date "
     r"from public\.header through header_id\.posted_on"),
    ("ALTER TABLE header RENAME COLUMN id TO header_no", r"^renaming a column of public\.header \(to header_no\) is "
                                                         r"refused: protected table public\.line takes its date"),
    ("ALTER TABLE header RENAME COLUMN entity_id TO company_id", None),  # the child's scope is its own: passes
    # the foreign key the date is read through: without it a line could reference a header not written yet, and
    # take a date in a locked month when the header is inserted
    ("ALTER TABLE line DROP CONSTRAINT line_header_id_fkey",
     r"^DROP table constraint line_header_id_fkey on public\.line is refused: public\.line reads "
     r"'header_id\.posted_on' through the foreign key on public\.line\.header_id, which is gone$"),
    ("ALTER TABLE header DROP CONSTRAINT header_pkey CASCADE", r"^DROP table constraint line_header_id_fkey on "
                                                               r"public\.line is refused"),
    ("ALTER TABLE line ALTER CONSTRAINT line_header_id_fkey DEFERRABLE INITIALLY DEFERRED", None),
])
def test_the_ddl_guard_covers_the_parent_a_date_comes_from(books, stmt, match):
    """(Retyping the parent's date column is refused by PostgreSQL itself: its guard's WHEN clause names it.)"""
    owner = books.owner()
    owner.execute("SELECT ledgerlock.install_ddl_guard()")
    if match is None:
        lives_ok(owner, stmt)
    else:
        with refused("LL008", match):
            owner.execute(stmt)
    lives_ok(owner, "ALTER TABLE header DROP COLUMN memo")  # the neighbour: a column no child reads
    lives_ok(owner, "ALTER TABLE header ADD COLUMN note text")
    lives_ok(owner, "ALTER TABLE header RENAME COLUMN note TO remark")
    lock(books)  # and the child's checks still read the parent
    app = books.connect("app")
    with refused("LL002", r"for scope 1: line id=1 cannot be inserted"):
        app.execute("INSERT INTO line (id, header_id, entity_id) VALUES (1, 1, 1)")
    lives_ok(app, "INSERT INTO line (id, header_id, entity_id) VALUES (2, 2, 1)")


def test_a_foreign_key_made_not_enforced_is_refused_by_protect_and_the_ddl_guard_and_reported(db):
    """PostgreSQL 18 lets a foreign key be NOT ENFORCED. As the owner did it (the DDL guard on): a line
    referenced header 99, which did not exist, and once March was hard-locked, inserting header 99 dated March
    took the line into the locked month; nothing refused it and verification was content."""
    if int(db.owner().execute("SHOW server_version_num").fetchone()[0]) < 180000:
        pytest.skip("PostgreSQL 18 added NOT ENFORCED foreign keys")
    owner = db.owner()
    owner.execute(SCHEMA)
    owner.execute("ALTER TABLE line ALTER CONSTRAINT line_header_id_fkey NOT ENFORCED")
    with refused("22023", r"^'header_id\.posted_on': the foreign key line_header_id_fkey of (public\.)?line\.header_id "
                          r"is NOT ENFORCED, so a row may reference a parent that does not exist") as info:
        protect_line(owner)
    assert info.value.diag.message_hint == "ALTER TABLE public.line ALTER CONSTRAINT line_header_id_fkey ENFORCED"
    owner.execute(info.value.diag.message_hint)
    protect_line(owner)
    owner.execute("SELECT ledgerlock.install_ddl_guard()")
    with refused("LL008", r"^ALTER TABLE public\.line is refused: public\.line reads 'header_id\.posted_on' through "
                          r"foreign key line_header_id_fkey, which is NOT ENFORCED$"):
        owner.execute("ALTER TABLE line ALTER CONSTRAINT line_header_id_fkey NOT ENFORCED")
    with refused("23503"):  # the key still holds
        db.connect("app").execute("INSERT INTO line (id, header_id, entity_id) VALUES (500, 99, 1)")
    # without the guard (the owner may then), doctor reports it
    owner.execute("SELECT ledgerlock.uninstall_ddl_guard()")
    owner.execute("ALTER TABLE line ALTER CONSTRAINT line_header_id_fkey NOT ENFORCED")
    found = db.connect("auditor").execute(FINDINGS).fetchall()
    assert ("public.line reads 'header_id.posted_on' through foreign key line_header_id_fkey, which is NOT ENFORCED",
            ) in found, found


# --- doctor ------------------------------------------------------------------------------------------------

FINDINGS = ("SELECT finding FROM ledgerlock.doctor_findings() WHERE severity = 'critical' "
            "AND (object LIKE '%%header%%' OR object LIKE '%%line%%')")


def test_doctor_checks_the_parent_a_date_comes_from_as_it_checks_the_table(books):
    owner = books.owner()
    lock(books)  # the child's guards read the mark from their WHEN clause as a plain table's do
    assert owner.execute(FINDINGS).fetchall() == []  # the neighbour: as installed, nothing to report
    owner.execute("DROP TRIGGER ll_20_scope_parent_delete ON header")
    owner.execute("GRANT TRIGGER ON header TO ll_controller")
    owner.execute("ALTER TABLE header OWNER TO ll_app")
    found = [r[0] for r in owner.execute(FINDINGS).fetchall()]
    assert any("has no guard ll_20_scope_parent_delete, though" in f and "line takes its scope or date" in f
               for f in found), found
    assert any("may create triggers on" in f for f in found), found
    assert any("is owned by ll_app, a role that can log in" in f for f in found), found
    owner.execute("ALTER TABLE header OWNER TO CURRENT_USER")
    owner.execute("REVOKE TRIGGER ON header FROM ll_controller")
    owner.execute("SELECT ledgerlock.reinstall_guards()")
    assert owner.execute(FINDINGS).fetchall() == []


def test_a_lock_taken_under_another_date_style_leaves_guards_doctor_accepts(db):
    """The guards' WHEN clause holds the mark as a date constant, which pg_get_triggerdef prints in the session's
    DateStyle: the hash ledgerlock comments a guard with, and the mark read back from it, use ISO whoever locks."""
    owner = db.owner()
    owner.execute(SCHEMA)
    owner.execute("SELECT ledgerlock.protect('header', 'posted_on', 'entity_id')")
    protect_line(owner)  # header is also the parent its lines take their date from: its guards carry a mark too
    db.connect("app").execute("INSERT INTO line (id, header_id, entity_id) VALUES (1, 2, 1)")
    admin = db.connect("admin")
    admin.execute("SET DateStyle = 'SQL, DMY'")
    admin.execute("SELECT ledgerlock.lock_period('1', '2026-03-01', '2026-04-30', 'hard')")
    assert owner.execute("SELECT ledgerlock._period_installed_mark('header', '1')").fetchone()[0].isoformat() \
        == "2026-04-30"
    owner.execute("SET DateStyle = 'SQL, DMY'")  # whoever reads it back
    assert owner.execute("SELECT ledgerlock._parent_installed_mark('header')::text").fetchone()[0] == "30/04/2026"
    assert owner.execute(FINDINGS).fetchall() == []
    with refused("LL002", r"for scope 1: header id=5 cannot be inserted"):
        db.connect("app").execute("INSERT INTO header VALUES (5, 1, '2026-03-15')")
    lives_ok(db.connect("app"), "INSERT INTO header VALUES (6, 1, '2026-05-15')")
    with refused("LL002", r"line id=1 cannot be taken out of 2026-04-10 by deleting header id=2"):
        db.connect("app").execute("DELETE FROM header WHERE id = 2")


# --- evidence ----------------------------------------------------------------------------------------------


def test_the_audit_trail_records_the_unlock_a_write_dated_by_its_parent_went_through(books):
    app = books.connect("app")
    app.execute("INSERT INTO line (id, header_id, entity_id) VALUES (1, 1, 1), (2, 2, 1)")
    admin = books.connect("admin")
    lock_id = admin.execute("SELECT ledgerlock.lock_period('1', '2026-03-01', '2026-03-31')").fetchone()[0]
    admin.execute("SELECT ledgerlock.unlock_period(%s, 'late invoice from the notary')", [lock_id])
    app.execute("UPDATE line SET amount = 3 WHERE id IN (1, 2)")
    owner = books.owner()
    rows = owner.execute("SELECT row_key ->> 'id', lock_id, reason FROM ledgerlock.audit_log "
                         "WHERE table_name = 'line'::regclass AND operation = 'UPDATE' ORDER BY 1").fetchall()
    assert rows == [("1", lock_id, "late invoice from the notary"), ("2", None, None)]  # line 2: April
    assert owner.execute("SELECT ok, problem FROM ledgerlock.verify_audit()").fetchone() == (True, None)
