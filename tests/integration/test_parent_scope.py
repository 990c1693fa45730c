"""A table's scope from a referenced parent row: scope_column => 'fk_column.parent_column' (journal entry ->
ledger -> entity). Declared and validated at protect time, enforced by the period guard on the child and by
the parent's own guard, explained by why_locked."""

from __future__ import annotations

import zipfile

import psycopg
import pytest
from click.testing import CliRunner

from ledgerlock import audit_bundle
from ledgerlock.cli import cli
from lltest import lives_ok, refused

SCHEMA = """
CREATE TABLE entity (id integer PRIMARY KEY, name text NOT NULL DEFAULT 'e');
CREATE TABLE ledger (uuid uuid PRIMARY KEY, entity_id integer REFERENCES entity, name text NOT NULL DEFAULT 'l');
CREATE TABLE je (
    id        integer PRIMARY KEY,
    ledger_id uuid REFERENCES ledger ON DELETE CASCADE,
    posted_on date NOT NULL,
    status    text NOT NULL DEFAULT 'draft',
    number    text,
    amount    numeric NOT NULL DEFAULT 0,
    activity  integer
);
INSERT INTO entity VALUES (1), (2);
INSERT INTO ledger (uuid, entity_id) VALUES ('00000000-0000-0000-0000-00000000000a', 1),
                                            ('00000000-0000-0000-0000-00000000000b', 2),
                                            ('00000000-0000-0000-0000-00000000000c', 1);
GRANT SELECT, INSERT, UPDATE, DELETE ON entity, ledger, je TO ll_app, ll_controller;
"""
LA = "00000000-0000-0000-0000-00000000000a"  # ledger of entity 1
LB = "00000000-0000-0000-0000-00000000000b"  # ledger of entity 2
LC = "00000000-0000-0000-0000-00000000000c"  # another ledger of entity 1


def protect_je(owner: psycopg.Connection, scope_column: str = "ledger_id.entity_id", **extra) -> None:
    args = ", ".join(f"{k} => %({k})s" for k in extra)
    owner.execute("SELECT ledgerlock.protect('je', date_column => 'posted_on', scope_column => %(scope)s, "
                  "mutable_columns => '{amount}'" + (", " + args if args else "") + ")",
                  {"scope": scope_column} | extra)


@pytest.fixture
def books(db):
    owner = db.owner()
    owner.execute(SCHEMA)
    protect_je(owner)
    db.connect("admin").execute("SELECT ledgerlock.lock_period('1', '2026-03-01', '2026-03-31', 'hard')")
    return db


def insert_je(conn, id_, ledger, day, **cols):
    names = ["id", "ledger_id", "posted_on", *cols]
    values = [id_, ledger, day, *cols.values()]
    conn.execute(f"INSERT INTO je ({', '.join(names)}) VALUES ({', '.join(['%s'] * len(names))})", values)


# --- declaration ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope_column", "sqlstate", "match"),
    [
        ("ledger_id.entity_id.region", "22023", r"follows more than one foreign key"),
        ("amount.entity_id", "22023", r"je\.amount is not a single-column foreign key"),
        ("ledger_id.nope", "22023", r"ledger_id references (public\.)?ledger, which has no column nope"),
        ("nope.entity_id", "42703", r"scope_column: table (public\.)?je has no column nope"),
        ("nope", "42703", r"scope_column: table (public\.)?je has no column nope"),
    ],
)
def test_a_bad_parent_scope_declaration_is_refused_with_a_sentence(db, scope_column, sqlstate, match):
    owner = db.owner()
    owner.execute(SCHEMA)
    with refused(sqlstate, match):
        protect_je(owner, scope_column)
    lives_ok(owner, "SELECT ledgerlock.protect('je', date_column => 'posted_on', "
                    "scope_column => 'ledger_id.entity_id')")
    assert owner.execute("SELECT scope_column FROM ledgerlock.protected_table WHERE tbl = 'je'::regclass"
                         ).fetchone()[0] == "ledger_id.entity_id"


def test_two_foreign_keys_on_the_column_are_ambiguous_and_scope_in_a_number_format_is_refused(db):
    owner = db.owner()
    owner.execute(SCHEMA)
    owner.execute("CREATE TABLE ledger2 (uuid uuid PRIMARY KEY, entity_id integer)")
    owner.execute("ALTER TABLE je ADD FOREIGN KEY (ledger_id) REFERENCES ledger2")
    with refused("22023", r"je\.ledger_id has 2 foreign keys \(to (public\.)?ledger, (public\.)?ledger2\)"):
        protect_je(owner)
    owner.execute("ALTER TABLE je DROP CONSTRAINT je_ledger_id_fkey1")
    with refused("22023", r"number_format: \{SCOPE\} needs a scope column of (public\.)?je itself"):
        protect_je(owner, number_column="number", number_format="JE-{SCOPE}-{SEQ}", final_when="status = 'posted'")
    lives_ok(owner, "SELECT ledgerlock.protect('je', date_column => 'posted_on', "
                    "scope_column => 'ledger_id.entity_id', final_when => $$status = 'posted'$$, "
                    "number_column => 'number', number_format => 'JE-{YYYY}-{SEQ}')")


def test_the_foreign_key_column_cannot_be_mutable(db):
    owner = db.owner()
    owner.execute(SCHEMA)
    with refused("22023", r"mutable_columns: ledger_id cannot be mutable"):
        owner.execute("SELECT ledgerlock.protect('je', 'posted_on', 'ledger_id.entity_id', "
                      "mutable_columns => '{ledger_id}')")


# --- the child's writes -----------------------------------------------------------------------------------


def test_a_child_in_a_locked_scope_is_refused_and_one_in_another_scope_passes(books):
    app = books.connect("app")
    with refused("LL002", r"locked \(hard\) for scope 1: je id=1 cannot be inserted"):
        insert_je(app, 1, LA, "2026-03-10")
    lives_ok(app, "INSERT INTO je (id, ledger_id, posted_on) VALUES (2, %s, '2026-03-10')", [LB])
    lives_ok(app, "INSERT INTO je (id, ledger_id, posted_on) VALUES (3, %s, '2026-04-01')", [LA])
    lives_ok(app, "INSERT INTO je (id, ledger_id, posted_on) VALUES (4, NULL, '2026-03-10')")  # scope '*'


def test_a_locked_child_cannot_be_changed_or_deleted_but_its_mutable_column_can(db):
    owner = db.owner()
    owner.execute(SCHEMA)
    protect_je(owner)
    app = db.connect("app")
    insert_je(app, 1, LA, "2026-03-10")
    insert_je(app, 2, LB, "2026-03-10")
    db.connect("admin").execute("SELECT ledgerlock.lock_period('1', '2026-03-01', '2026-03-31', 'hard')")
    with refused("LL002", r"for scope 1: je id=1 cannot be updated"):
        app.execute("UPDATE je SET status = 'x' WHERE id = 1")
    with refused("LL002", r"for scope 1: je id=1 cannot be deleted"):
        app.execute("DELETE FROM je WHERE id = 1")
    lives_ok(app, "UPDATE je SET amount = 5 WHERE id = 1")
    lives_ok(app, "UPDATE je SET status = 'x' WHERE id = 2")
    lives_ok(app, "DELETE FROM je WHERE id = 2")


def test_repointing_a_child_is_checked_like_changing_its_scope_column(db):
    owner = db.owner()
    owner.execute(SCHEMA)
    protect_je(owner)
    app = db.connect("app")
    insert_je(app, 1, LA, "2026-03-10")  # scope 1, to be locked
    insert_je(app, 2, LB, "2026-03-10")  # scope 2, open
    db.connect("admin").execute("SELECT ledgerlock.lock_period('1', '2026-03-01', '2026-03-31', 'hard')")
    with refused("LL002", r"for scope 1: je id=1 cannot be updated"):  # out of the locked scope
        app.execute("UPDATE je SET ledger_id = %s WHERE id = 1", [LB])
    with refused("LL002", r"for scope 1: je id=2 cannot be updated"):  # into the locked scope
        app.execute("UPDATE je SET ledger_id = %s WHERE id = 2", [LA])
    with refused("LL002", r"for scope 1: je id=2 cannot be updated"):
        app.execute("UPDATE je SET ledger_id = %s WHERE id = 2", [LC])
    lives_ok(app, "UPDATE je SET ledger_id = NULL WHERE id = 2")  # scope '*', open
    lives_ok(app, "UPDATE je SET ledger_id = %s WHERE id = 2", [LB])


def test_a_child_whose_parent_does_not_exist_yet_is_refused(db):
    owner = db.owner()
    owner.execute(SCHEMA)
    owner.execute("ALTER TABLE je DROP CONSTRAINT je_ledger_id_fkey, ADD CONSTRAINT je_ledger_id_fkey "
                  "FOREIGN KEY (ledger_id) REFERENCES ledger ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED")
    protect_je(owner)
    db.connect("admin").execute("SELECT ledgerlock.lock_period('1', '2026-03-01', '2026-03-31')")
    app = db.connect("app", autocommit=False)
    new = "00000000-0000-0000-0000-0000000000dd"
    with refused("23503", r"je id=1 cannot be inserted: its scope comes from the row ledger_id references, "
                          r"which does not exist"):
        insert_je(app, 1, new, "2026-03-10")
    app.rollback()
    app.execute("INSERT INTO ledger (uuid, entity_id) VALUES (%s, 2)", [new])
    lives_ok(app, "INSERT INTO je (id, ledger_id, posted_on) VALUES (1, %s, '2026-03-10')", [new])
    app.commit()


# --- the parent's scope column ------------------------------------------------------------------------------


def test_moving_a_parent_out_of_or_into_a_locked_scope_is_refused_while_children_lie_in_the_window(db):
    owner = db.owner()
    owner.execute(SCHEMA)
    protect_je(owner)
    app = db.connect("app")
    insert_je(app, 1, LA, "2026-03-10")  # scope 1
    insert_je(app, 2, LB, "2026-03-10")  # scope 2
    db.connect("admin").execute("SELECT ledgerlock.lock_period('1', '2026-03-01', '2026-03-31', 'hard')")
    with refused("LL002", r"locked \(hard\) for scope 1: je id=1 cannot be moved from scope 1 to scope 2 "
                          r"with ledger uuid=[-0]+a"):
        app.execute("UPDATE ledger SET entity_id = 2 WHERE uuid = %s", [LA])
    with refused("LL002", r"for scope 1: je id=2 cannot be moved from scope 2 to scope 1 with ledger uuid=[-0]+b"):
        app.execute("UPDATE ledger SET entity_id = 1 WHERE uuid = %s", [LB])
    with refused("LL002", r"for scope 1: je id=1 cannot be taken out of scope 1 by deleting ledger uuid=[-0]+a"):
        app.execute("DELETE FROM ledger WHERE uuid = %s", [LA])  # the cascade would take je 1 with it
    # neighbours: other columns of the parent, a parent whose children lie outside every window
    lives_ok(app, "UPDATE ledger SET name = 'renamed' WHERE uuid = %s", [LA])
    lives_ok(app, "UPDATE ledger SET entity_id = 2 WHERE uuid = %s", [LC])  # no children
    insert_je(app, 3, LC, "2026-04-02")
    lives_ok(app, "UPDATE ledger SET entity_id = 1 WHERE uuid = %s", [LC])  # its child is dated after the lock
    lives_ok(app, "DELETE FROM ledger WHERE uuid = %s", [LC])
    assert app.execute("SELECT count(*) FROM je WHERE id = 3").fetchone()[0] == 0
    assert app.execute("SELECT entity_id FROM ledger WHERE uuid = %s", [LA]).fetchone()[0] == 1


def test_a_soft_lock_admits_a_parent_move_under_an_override(db):
    owner = db.owner()
    owner.execute(SCHEMA)
    protect_je(owner)
    app = db.connect("app")
    insert_je(app, 1, LA, "2026-03-10")
    db.connect("admin").execute("SELECT ledgerlock.lock_period('1', '2026-03-01', '2026-03-31')")
    with refused("LL002", r"locked \(soft\) for scope 1: je id=1 cannot be moved"):
        app.execute("UPDATE ledger SET entity_id = 2 WHERE uuid = %s", [LA])
    ctl = db.connect("controller", autocommit=False)
    ctl.execute("SELECT ledgerlock.begin_override('entity merger')")
    lives_ok(ctl, "UPDATE ledger SET entity_id = 2 WHERE uuid = %s", [LA])
    ctl.commit()


def test_the_parent_guard_survives_reinstall_and_goes_once_no_child_names_it(db):
    owner = db.owner()
    owner.execute(SCHEMA)
    protect_je(owner)
    admin = db.connect("admin")
    admin.execute("SELECT ledgerlock.reinstall_guards()")
    names = "SELECT tgname FROM pg_trigger WHERE tgrelid = 'ledger'::regclass AND tgname LIKE 'll_%' ORDER BY 1"
    guards = ["ll_20_scope_parent_delete", "ll_20_scope_parent_update"]
    assert [r[0] for r in owner.execute(names)] == guards
    auditor = db.connect("auditor")
    # (the owner check covers the parent as it covers the table: here both are the test's superuser's)
    doctor = ("SELECT check_name, object FROM ledgerlock.doctor_findings() WHERE object LIKE '%ledger%' "
              "AND check_name <> 'table owner'")
    assert auditor.execute(doctor).fetchall() == []  # the parent's guards are no orphans
    # the parent protected and unprotected itself: its guards as a parent stay
    owner.execute("ALTER TABLE ledger ADD COLUMN opened_on date")
    owner.execute("SELECT ledgerlock.protect('ledger', 'opened_on')")
    assert {"ll_20_scope_parent_delete", "ll_20_scope_parent_update"} <= {r[0] for r in owner.execute(names)}
    owner.execute("SELECT ledgerlock.unprotect('ledger', 'test')")
    assert [r[0] for r in owner.execute(names)] == guards
    # the child no longer takes its scope from the ledger: the guards go
    owner.execute("SELECT ledgerlock.protect('je', 'posted_on', weaken_reason => 'one scope for all')")
    assert [r[0] for r in owner.execute(names)] == []
    protect_je(owner, weaken_reason="entities again")
    assert [r[0] for r in owner.execute(names)] == guards
    owner.execute("SELECT ledgerlock.unprotect('je', 'test')")
    assert [r[0] for r in owner.execute(names)] == []
    assert auditor.execute(doctor).fetchall() == []


# --- explanations ----------------------------------------------------------------------------------------


def test_why_locked_names_the_window_of_the_parents_scope(db):
    owner = db.owner()
    owner.execute(SCHEMA)
    protect_je(owner)
    app = db.connect("app")
    insert_je(app, 1, LA, "2026-03-10")
    insert_je(app, 2, LB, "2026-03-10")
    db.connect("admin").execute("SELECT ledgerlock.lock_period('1', '2026-03-01', '2026-03-31', 'hard')")
    rows = owner.execute("SELECT rule, summary, details FROM ledgerlock.why_locked('je', '{\"id\": 1}')").fetchall()
    assert [(r[0], r[2]["scope"]) for r in rows] == [("period_lock", "1")]
    assert "ledger uuid=" in rows[0][2]["scope_from"]
    assert owner.execute("SELECT count(*) FROM ledgerlock.why_locked('je', '{\"id\": 2}')").fetchone()[0] == 0


# --- evidence ----------------------------------------------------------------------------------------------


def test_the_audit_trail_records_the_parents_scope_and_the_unlock_a_write_went_through(db):
    owner = db.owner()
    owner.execute(SCHEMA)
    protect_je(owner)
    app = db.connect("app")
    insert_je(app, 1, LA, "2026-03-10")
    insert_je(app, 2, LB, "2026-03-10")
    admin = db.connect("admin")
    lock_id = admin.execute("SELECT ledgerlock.lock_period('1', '2026-03-01', '2026-03-31')").fetchone()[0]
    admin.execute("SELECT ledgerlock.unlock_period(%s, 'late invoice from the notary')", [lock_id])
    app.execute("UPDATE je SET status = 'posted' WHERE id IN (1, 2)")
    rows = owner.execute("SELECT row_key ->> 'id', scope, lock_id, reason FROM ledgerlock.audit_log "
                         "WHERE table_name = 'je'::regclass AND operation = 'UPDATE' ORDER BY 1").fetchall()
    assert rows == [("1", "1", lock_id, "late invoice from the notary"), ("2", "2", None, None)]
    assert owner.execute("SELECT ok, problem FROM ledgerlock.verify_audit()").fetchone() == (True, None)


def test_the_lock_command_works_beside_a_table_whose_scope_comes_from_a_parent(db):
    from click.testing import CliRunner

    from ledgerlock.cli import cli

    owner = db.owner()
    owner.execute(SCHEMA)
    protect_je(owner)
    result = CliRunner().invoke(cli, ["--dsn", db.conninfo("controller"), "lock", "1", "--from", "2026-03-01",
                                      "--to", "2026-03-31"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "locked lock #1: scope 1 2026-03-01..2026-03-31 (soft, active)" in result.stdout
    app = db.connect("app")
    with refused("LL002", r"for scope 1: je id=1 cannot be inserted"):
        insert_je(app, 1, LA, "2026-03-10")


def test_loosening_the_rules_over_a_hard_window_reads_the_parents_scope(db):
    owner = db.owner()
    owner.execute(SCHEMA)
    protect_je(owner)
    app = db.connect("app")
    insert_je(app, 1, LA, "2026-02-10")  # scope 1, before its window
    insert_je(app, 2, LB, "2026-03-10")  # scope 2
    admin = db.connect("admin")
    admin.execute("SELECT ledgerlock.lock_period('1', '2026-03-01', '2026-03-31', 'hard')")
    loosen = ("SELECT ledgerlock.protect('je', 'posted_on', 'ledger_id.entity_id', mutable_columns => %s, "
              "weaken_reason => 'memo is free text')")
    lives_ok(admin, loosen, [["amount", "status"]])  # no row of scope 1 lies in its hard window
    admin.execute("SELECT ledgerlock.lock_period('2', '2026-03-01', '2026-03-31', 'hard')")
    with refused("LL002", r"locked \(hard\) for scope 2: je id=2 lies in it"):
        admin.execute(loosen, [["amount", "status", "activity"]])


def test_a_parent_key_change_cascading_to_locked_children_is_refused_and_to_open_ones_passes(db):
    owner = db.owner()
    owner.execute(SCHEMA)
    owner.execute("ALTER TABLE je DROP CONSTRAINT je_ledger_id_fkey, ADD CONSTRAINT je_ledger_id_fkey "
                  "FOREIGN KEY (ledger_id) REFERENCES ledger ON UPDATE CASCADE")
    protect_je(owner)
    app = db.connect("app")
    insert_je(app, 1, LA, "2026-03-10")  # scope 1, to be locked
    insert_je(app, 2, LB, "2026-03-10")  # scope 2, open
    db.connect("admin").execute("SELECT ledgerlock.lock_period('1', '2026-03-01', '2026-03-31', 'hard')")
    with refused("LL002", r"for scope 1: je id=1 cannot be updated"):
        app.execute("UPDATE ledger SET uuid = '00000000-0000-0000-0000-0000000000aa' WHERE uuid = %s", [LA])
    lives_ok(app, "UPDATE ledger SET uuid = '00000000-0000-0000-0000-0000000000bb' WHERE uuid = %s", [LB])
    assert app.execute("SELECT ledger_id::text FROM je WHERE id = 2").fetchone()[0].endswith("bb")


def test_a_numbered_final_child_takes_its_number_and_a_locked_one_is_refused_without_one(db):
    owner = db.owner()
    owner.execute(SCHEMA)
    protect_je(owner, final_when="status = 'posted'", number_column="number", number_format="JE-{YYYY}-{SEQ:4}")
    db.connect("admin").execute("SELECT ledgerlock.lock_period('1', '2026-03-01', '2026-03-31', 'hard')")
    app = db.connect("app")
    with refused("LL002", r"for scope 1: je id=1 cannot be inserted$"):
        app.execute("INSERT INTO je (id, ledger_id, posted_on, status) VALUES (1, %s, '2026-03-10', 'posted')", [LA])
    assert lives_ok(app, "INSERT INTO je (id, ledger_id, posted_on, status) VALUES (2, %s, '2026-03-10', 'posted') "
                         "RETURNING number", [LB]) == [("JE-2026-0001",)]
    with refused("LL001", r"je id=2 \(JE-2026-0001\) is final"):
        app.execute("UPDATE je SET ledger_id = %s WHERE id = 2", [LC])


ROWS = 40_000
ENTITY = {LA: "1", LB: "2", None: "*"}  # the scope each ledger gives (no ledger: none)


def test_a_bulk_write_files_every_event_under_its_parents_scope_in_one_pass(db):
    """The capture files each event under its row's scope. For a table whose scope is its parent's, a statement
    of many rows reads every row's parent scope with one query: row by row, each a dynamic query, a 20,000-row
    INSERT took 1.6 s against 0.13 s with a scope column of its own (PG 16), and the INSERT below ~3.2 s. The
    bound is a wait with a limit, not a timing: each statement takes well under a second. One-row statements
    read their own."""
    owner = db.owner()
    owner.execute(SCHEMA)
    protect_je(owner)
    app = db.connect("app")
    app.execute("SET statement_timeout = '2500ms'")
    insert_je(app, 0, LA, "2026-04-01")
    app.execute("INSERT INTO je (id, ledger_id, posted_on) "
                "SELECT g, (ARRAY[%s, %s, NULL])[1 + g %% 3]::uuid, date '2026-04-02' FROM generate_series(1, %s) g",
                (LA, LB, ROWS))
    # every row moves to the other entity's ledger (no ledger stays none), then every even one goes
    app.execute("UPDATE je SET ledger_id = CASE ledger_id WHEN %s THEN %s::uuid WHEN %s THEN %s::uuid END WHERE id > 0",
                (LA, LB, LB, LA))
    app.execute("DELETE FROM je WHERE id % 2 = 0 AND id > 0")
    ledger = {g: [LA, LB, None][g % 3] for g in range(1, ROWS + 1)}
    moved = {g: {LA: LB, LB: LA, None: None}[v] for g, v in ledger.items()}
    expected = {}
    for op, scopes in (("INSERT", [ENTITY[v] for v in ledger.values()] + ["1"]),
                       ("UPDATE", [ENTITY[v] for v in moved.values()]),
                       ("DELETE", [ENTITY[v] for g, v in moved.items() if g % 2 == 0])):
        for s in scopes:
            expected[(op, s)] = expected.get((op, s), 0) + 1
    got = owner.execute("SELECT operation, scope, count(*) FROM ledgerlock.audit_event "
                        "WHERE table_oid = 'je'::regclass AND operation IN ('INSERT', 'UPDATE', 'DELETE') "
                        "GROUP BY 1, 2").fetchall()
    assert {(op, s): n for op, s, n in got} == expected
    # a one-row statement reads its row's own, both ways
    app.execute("UPDATE je SET ledger_id = %s WHERE id = 0", (LB,))
    assert owner.execute("SELECT scope FROM ledgerlock.audit_event WHERE table_oid = 'je'::regclass "
                         "AND row_key ->> 'id' = '0' ORDER BY seq").fetchall() == [("1",), ("2",)]
    assert owner.execute("SELECT ok, problem FROM ledgerlock.verify_audit()").fetchone() == (True, None)


def test_rows_recorded_at_protect_and_after_an_added_column_are_filed_under_their_parents_scope(db, tmp_path):
    """BASELINE events (rows already there when the table is protected; values of a column added since) are
    filed as the capture files a write: under the parent's scope. They were filed under no scope, or '*', so
    an auditor's bundle of an entity left out the event that holds its rows' latest images."""
    owner = db.owner()
    owner.execute(SCHEMA)
    owner.execute("INSERT INTO je (id, ledger_id, posted_on, amount) VALUES (1, %s, '2026-01-05', 1), "
                  "(2, %s, '2026-01-05', 2), (3, NULL, '2026-01-05', 3)", (LA, LB))
    protect_je(owner)
    owner.execute("ALTER TABLE je ADD COLUMN channel text DEFAULT 'web'")
    assert lives_ok(db.connect("admin"), "SELECT ledgerlock.record_added_columns('je', 'channel added')") == [(3,)]
    events = owner.execute("SELECT row_key ->> 'id', scope, details IS NULL FROM ledgerlock.audit_event "
                           "WHERE table_oid = 'je'::regclass AND operation = 'BASELINE' ORDER BY seq").fetchall()
    assert events == [("1", "1", True), ("2", "2", True), ("3", "*", True),
                      ("1", "1", False), ("2", "2", False), ("3", "*", False)]
    res = CliRunner().invoke(cli, ["--dsn", db.conninfo("auditor"), "audit", "bundle", "--scope", "1",
                                   "--from", "2026-01-01", "--to", "2026-01-31", "-o", str(tmp_path / "e1.zip")])
    assert res.exit_code == 0, res.output
    with zipfile.ZipFile(tmp_path / "e1.zip") as z:
        rows = audit_bundle.loads(z.read("rows.json").decode())
    found = [(int(r["row_key"]["id"]), r["event"]["operation"], r["image"]["channel"], r["live_matches"]) for r in rows]
    assert found == [(1, "BASELINE", "web", True)]
    assert owner.execute("SELECT ok FROM ledgerlock.verify_audit()").fetchone() == (True,)
