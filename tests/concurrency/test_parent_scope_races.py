"""A write of a child whose scope (or date) comes from its parent, and a move of that parent to another scope
(or day), serialize: the child's guard share-locks the parent row it reads, so whichever comes second sees the
first; a move of the parent's date and a lock of the children's scope serialize on the scope's gate."""

from __future__ import annotations

import pytest

from lltest import Background, lives_ok, refused, sqlstate

SCHEMA = """
CREATE TABLE ledger (id integer PRIMARY KEY, entity_id integer);
CREATE TABLE je (id integer PRIMARY KEY, ledger_id integer REFERENCES ledger, posted_on date NOT NULL);
INSERT INTO ledger VALUES (1, 1);
GRANT SELECT, INSERT, UPDATE, DELETE ON ledger, je TO ll_app;
"""


def books(db):
    owner = db.owner()
    owner.execute(SCHEMA)
    owner.execute("SELECT ledgerlock.protect('je', 'posted_on', 'ledger_id.entity_id')")
    db.connect("admin").execute("SELECT ledgerlock.lock_period('2', '2026-03-01', '2026-03-31', 'hard')")
    return owner


def test_a_parent_moving_into_a_locked_scope_waits_for_an_open_child_write_and_then_sees_it(db):
    owner = books(db)
    writer = db.connect("app", autocommit=False)
    writer.execute("INSERT INTO je VALUES (1, 1, '2026-03-10')")  # scope 1, open: holds the ledger row
    mover = db.connect("app")
    move = Background(mover, "UPDATE ledger SET entity_id = 2 WHERE id = 1")
    assert move.wait_until_blocked(owner) == "transactionid"
    writer.commit()
    move.join()
    assert sqlstate(move.error) == "LL002", move.error
    assert "je id=1 cannot be moved from scope 1 to scope 2" in move.error.diag.message_primary
    # the neighbour: with the child rolled back, the same move passes
    writer.execute("DELETE FROM je")
    writer.commit()
    lives_ok(mover, "UPDATE ledger SET entity_id = 2 WHERE id = 1")


def test_a_child_write_waits_for_an_open_parent_move_and_then_reads_the_new_scope(db):
    owner = books(db)
    mover = db.connect("app", autocommit=False)
    mover.execute("UPDATE ledger SET entity_id = 2 WHERE id = 1")  # no child yet: passes, row held
    writer = db.connect("app")
    insert = Background(writer, "INSERT INTO je VALUES (1, 1, '2026-03-10')")
    assert insert.wait_until_blocked(owner) == "transactionid"
    mover.commit()
    insert.join()
    assert sqlstate(insert.error) == "LL002", insert.error
    assert "for scope 2: je id=1 cannot be inserted" in insert.error.diag.message_primary
    lives_ok(writer, "INSERT INTO je VALUES (2, 1, '2026-04-10')")  # the neighbour: after the window


# --- a date read from the parent row ------------------------------------------------------------------------

DATED = """
CREATE TABLE header (id integer PRIMARY KEY, posted_on date);
CREATE TABLE line (id integer PRIMARY KEY, header_id integer REFERENCES header, entity_id integer);
INSERT INTO header VALUES (1, '2026-04-10'), (2, '2026-02-10'), (3, '2026-04-20');
GRANT SELECT, INSERT, UPDATE, DELETE ON header, line TO ll_app;
"""


def dated_books(db):
    owner = db.owner()
    owner.execute(DATED)
    owner.execute("SELECT ledgerlock.protect('line', 'header_id.posted_on', 'entity_id')")
    db.connect("app").execute("INSERT INTO line VALUES (1, 1, 1), (2, 2, 1)")
    return owner


def test_a_lock_waits_for_an_open_parent_date_move_into_its_window(db):
    owner = dated_books(db)
    mover = db.connect("app", autocommit=False)
    mover.execute("UPDATE header SET posted_on = '2026-03-10' WHERE id = 1")  # no window yet: passes, gate held
    admin = db.connect("admin")
    admin.execute("SET lock_timeout = '30s'")
    locking = Background(admin, "SELECT ledgerlock.lock_period('1', '2026-03-01', '2026-03-31', 'hard')")
    assert locking.wait_until_blocked(owner) == "relation"
    mover.commit()
    locking.join()
    assert locking.error is None, locking.error
    # the line moved in before the lock: it now lies in the window, and moving it out again is refused
    with refused("LL002", r"line id=1 cannot be moved from 2026-03-10 to 2026-04-10 with header id=1"):
        mover.execute("UPDATE header SET posted_on = '2026-04-10' WHERE id = 1")
    mover.rollback()
    lives_ok(mover, "UPDATE header SET posted_on = '2026-02-11' WHERE id = 2")  # the neighbour: outside it


def test_a_parent_date_move_waits_for_an_open_lock_and_then_is_refused(db):
    owner = dated_books(db)
    admin = db.connect("admin", autocommit=False)
    admin.execute("SELECT ledgerlock.lock_period('1', '2026-03-01', '2026-03-31', 'hard')")  # gate held
    mover = db.connect("app")
    mover.execute("SET lock_timeout = '30s'")
    move = Background(mover, "UPDATE header SET posted_on = '2026-03-10' WHERE id = 1")
    assert move.wait_until_blocked(owner) == "relation"
    admin.commit()
    move.join()
    assert sqlstate(move.error) == "LL002", move.error
    assert "line id=1 cannot be moved from 2026-04-10 to 2026-03-10 with header id=1" in move.error.diag.message_primary
    lives_ok(mover, "UPDATE header SET posted_on = '2026-04-11' WHERE id = 1")  # the neighbour: after the window


def test_a_line_write_holds_its_parent_so_a_date_move_waits_and_then_sees_it(db):
    owner = dated_books(db)
    db.connect("admin").execute("SELECT ledgerlock.lock_period('1', '2026-03-01', '2026-03-31', 'hard')")
    writer = db.connect("app", autocommit=False)
    writer.execute("INSERT INTO line VALUES (3, 3, 1)")  # header 3 in April: passes, header row share-locked
    mover = db.connect("app")
    mover.execute("SET lock_timeout = '30s'")
    move = Background(mover, "UPDATE header SET posted_on = '2026-03-10' WHERE id = 3")
    assert move.wait_until_blocked(owner) == "transactionid"
    writer.commit()
    move.join()
    assert sqlstate(move.error) == "LL002", move.error
    assert "line id=3 cannot be moved from 2026-04-20 to 2026-03-10" in move.error.diag.message_primary
    lives_ok(mover, "UPDATE header SET posted_on = '2026-04-21' WHERE id = 3")  # the neighbour: after the window


@pytest.mark.parametrize("isolation", ["READ COMMITTED", "REPEATABLE READ"])
@pytest.mark.parametrize("statement", [
    "INSERT INTO line VALUES (5, 2, 1)",  # header 2 is dated 2026-02-10
    "UPDATE line SET header_id = 2 WHERE id = 1",  # moved from April into February
    "DELETE FROM line WHERE id = 2",
])
def test_a_child_write_dated_by_its_parent_waits_for_an_open_lock_and_then_is_refused(db, isolation, statement):
    """The generated checks of a table dated by its parent (INSERT, and UPDATE and DELETE) enter the scope's gate
    as guard_period_row does: a write into a window being locked waits for the lock, then is refused (LL002, or
    40001 where its snapshot predates the lock); the same write after a rolled-back lock passes."""
    owner = dated_books(db)
    # March first: the February lock below then lies under the scope's mark and re-creates no trigger, so what
    # the write waits for is the scope's gate
    db.connect("admin").execute("SELECT ledgerlock.lock_period('1', '2026-03-01', '2026-03-31', 'hard')")
    assert "_change(" in owner.execute("SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgname = "
                                       "'ll_20_period_update' AND tgrelid = 'line'::regclass").fetchone()[0]
    for outcome in ("rollback", "commit"):
        admin = db.connect("admin", autocommit=False)
        admin.execute("SELECT ledgerlock.lock_period('1', '2026-02-01', '2026-02-28', 'hard')")  # uncommitted
        writer = db.connect("app", autocommit=False)
        writer.execute(f"SET TRANSACTION ISOLATION LEVEL {isolation}")
        writer.execute("SET lock_timeout = '30s'")
        write = Background(writer, statement)
        assert write.wait_until_blocked(owner) == "relation"
        getattr(admin, outcome)()
        write.join()
        if outcome == "rollback":
            assert write.error is None, write.error
            writer.rollback()  # the neighbour passed; leave the books as they were for the lock that commits
        else:
            expected = {"LL002"} if isolation == "READ COMMITTED" else {"LL002", "40001"}
            assert sqlstate(write.error) in expected, write.error
            writer.rollback()
    assert owner.execute("SELECT id, header_id FROM line ORDER BY id").fetchall() == [(1, 1), (2, 2)]
    with refused("LL002", r"locked \(hard\) for scope 1: line id=5 cannot be inserted"):
        db.connect("app").execute("INSERT INTO line VALUES (5, 2, 1)")
