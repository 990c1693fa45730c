"""The WHEN clause that lets a mutable-only update of a final row by (R1, and R3 in a locked window) while the
table's shape changes under it. The clause compares the new row, its exempt columns put back, with the old
row whole: a column added by a concurrent ALTER TABLE counts as a change whichever side commits first.
Real connections with explicit steps: one holds its statement's lock uncommitted, the other is shown to
wait, then the first commits."""

from __future__ import annotations

import pytest

from lltest import Background, lives_ok, refused, sqlstate


@pytest.fixture
def final_invoice(db):
    db.protect_invoice()
    db.connect("app").execute("INSERT INTO invoice (id, company_id, amount, status, issued_on) "
                              "VALUES (1, 1, 100, 'approved', '2025-01-15')")
    db.connect("admin").execute("SELECT ledgerlock.lock_period('1', '2025-01-01', '2025-01-31', 'hard')")
    yield db
    db.owner().execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE datname = current_database() AND pid <> pg_backend_pid()")


def test_a_column_added_while_a_mutable_update_is_open_counts_as_a_change_once_committed(final_invoice):
    db = final_invoice
    first = db.connect("app", autocommit=False)
    lives_ok(first, "UPDATE invoice SET paid = true WHERE id = 1")  # mutable only: let by, lock held
    ddl = Background(db.owner(), "ALTER TABLE invoice ADD COLUMN memo text")
    ddl.wait_until_blocked(db.owner())
    first.commit()
    ddl.join()
    assert ddl.error is None
    app = db.connect("app")
    with refused("LL001", r"^invoice id=1 is final and cannot be updated"):
        app.execute("UPDATE invoice SET memo = 'x' WHERE id = 1")
    with refused("LL001", r"^invoice id=1 is final and cannot be updated"):
        app.execute("UPDATE invoice SET paid = false, memo = 'x' WHERE id = 1")
    lives_ok(app, "UPDATE invoice SET paid = false, reconciled = true WHERE id = 1")
    assert app.execute("SELECT paid, reconciled, memo FROM invoice WHERE id = 1").fetchone() == (False, True, None)


def test_an_update_waiting_for_a_column_being_added_is_judged_with_the_column(final_invoice):
    db = final_invoice
    ddl = db.connect("owner", autocommit=False)
    ddl.execute("ALTER TABLE invoice ADD COLUMN memo text DEFAULT 'none'")
    refused_write = Background(db.connect("app"), "UPDATE invoice SET paid = true, memo = 'x' WHERE id = 1")
    allowed_write = Background(db.connect("app"), "UPDATE invoice SET reconciled = true WHERE id = 1")
    refused_write.wait_until_blocked(db.owner())
    allowed_write.wait_until_blocked(db.owner())
    ddl.commit()
    refused_write.join()
    allowed_write.join()
    assert sqlstate(refused_write.error) == "LL001"
    assert allowed_write.error is None
    assert db.owner().execute("SELECT paid, reconciled, memo FROM invoice WHERE id = 1").fetchone() == (
        False, True, "none")
