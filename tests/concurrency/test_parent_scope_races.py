"""A write of a child whose scope comes from its parent, and a move of that parent to another scope,
serialize: the child's guard share-locks the parent row it reads, so whichever comes second sees the first."""

from __future__ import annotations

from lltest import Background, lives_ok, sqlstate

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
