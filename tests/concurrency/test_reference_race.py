"""R4 under concurrency: a child insert and an update or delete of its parent serialize.

The foreign key's own check takes FOR KEY SHARE on the parent, which does not conflict with a non-key
UPDATE: without R4's child-side FOR SHARE, a payment could commit against an invoice whose amount changed
under it. Each test runs two real connections with explicit steps: A takes its lock, B is shown waiting on
it (pg_stat_activity), A commits, B finishes — and the outcome is asserted."""

from __future__ import annotations

import pytest

from lltest import Background, lives_ok, refused


@pytest.fixture
def invoices(db):
    db.protect_invoice()
    db.owner().execute("SELECT ledgerlock.protect_referenced('invoice', 'payment', child_condition => "
                       "$$status <> 'void'$$)")
    db.connect("app").execute("INSERT INTO invoice (id, company_id, amount) VALUES (1, 1, 100)")
    return db


def test_parent_update_waits_for_a_child_insert_and_is_then_refused(invoices):
    db = invoices
    a = db.connect("app", autocommit=False)
    a.execute("INSERT INTO payment (id, company_id, invoice_id, amount) VALUES (9, 1, 1, 100)")
    b = Background(db.connect("app"), "UPDATE invoice SET amount = 1 WHERE id = 1")
    b.wait_until_blocked(db.owner())
    a.commit()
    b.join()
    assert b.error is not None and b.error.diag.sqlstate == "LL003", b.error
    assert "invoice id=1 is referenced by payment id=9" in b.error.diag.message_primary
    assert db.owner().execute("SELECT amount FROM invoice WHERE id = 1").fetchone()[0] == 100


def test_parent_delete_waits_for_a_child_insert_and_is_then_refused(invoices):
    db = invoices
    a = db.connect("app", autocommit=False)
    a.execute("INSERT INTO payment (id, company_id, invoice_id, amount) VALUES (9, 1, 1, 100)")
    b = Background(db.connect("app"), "DELETE FROM invoice WHERE id = 1")
    b.wait_until_blocked(db.owner())
    a.commit()
    b.join()
    assert b.error is not None and b.error.diag.sqlstate == "LL003", b.error


def test_child_insert_waits_for_a_parent_update_and_references_the_new_state(invoices):
    db = invoices
    b = db.connect("app", autocommit=False)
    b.execute("UPDATE invoice SET amount = 120 WHERE id = 1")
    a = Background(db.connect("app"), "INSERT INTO payment (id, company_id, invoice_id, amount) VALUES (9, 1, 1, 120)")
    a.wait_until_blocked(db.owner())
    b.commit()
    a.join()
    assert a.error is None
    app = db.connect("app")
    assert app.execute("SELECT amount FROM invoice WHERE id = 1").fetchone()[0] == 120
    with refused("LL003"):
        app.execute("UPDATE invoice SET amount = 1 WHERE id = 1")


def test_child_insert_after_a_parent_delete_fails_on_the_foreign_key(invoices):
    db = invoices
    b = db.connect("app", autocommit=False)
    b.execute("DELETE FROM invoice WHERE id = 1")
    a = Background(db.connect("app"), "INSERT INTO payment (id, company_id, invoice_id, amount) VALUES (9, 1, 1, 1)")
    a.wait_until_blocked(db.owner())
    b.commit()
    a.join()
    assert a.error is not None and a.error.diag.sqlstate == "23503", a.error


def test_void_child_takes_no_lock(invoices):
    """A child the condition excludes does not freeze the parent, so it does not make its update wait."""
    db = invoices
    a = db.connect("app", autocommit=False)
    a.execute("INSERT INTO payment (id, company_id, invoice_id, amount, status) VALUES (9, 1, 1, 1, 'void')")
    other = db.connect("app")
    other.execute("SET lock_timeout = '20s'")  # a lock it should not meet fails the test instead of hanging it
    lives_ok(other, "UPDATE invoice SET note = 'not blocked' WHERE id = 1")
    assert other.execute("SELECT note FROM invoice WHERE id = 1").fetchone()[0] == "not blocked"
    a.commit()


def test_serializable_transactions_serialize_too(invoices):
    """Under SERIALIZABLE the parent's snapshot may predate the child: SSI aborts one of the two instead."""
    db = invoices
    a = db.connect("app", autocommit=False)
    b = db.connect("app", autocommit=False)
    for c in (a, b):
        c.execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
        c.execute("SELECT count(*) FROM invoice")  # take the snapshot now
    a.execute("INSERT INTO payment (id, company_id, invoice_id, amount) VALUES (9, 1, 1, 100)")
    a.commit()
    with refused("40001"):
        b.execute("UPDATE invoice SET amount = 1 WHERE id = 1")
        b.commit()
    b.rollback()
    assert db.owner().execute("SELECT amount FROM invoice WHERE id = 1").fetchone()[0] == 100


def test_line_insert_waits_for_header_finalization_and_is_then_refused(db):
    db.protect_invoice()
    db.owner().execute("SELECT ledgerlock.protect_lines('invoice_line', 'invoice')")
    db.connect("app").execute("INSERT INTO invoice (id, company_id) VALUES (1, 1)")
    b = db.connect("app", autocommit=False)
    b.execute("UPDATE invoice SET status = 'approved' WHERE id = 1")
    a = Background(db.connect("app"), "INSERT INTO invoice_line (id, invoice_id, description) VALUES (11, 1, 'x')")
    a.wait_until_blocked(db.owner())
    b.commit()
    a.join()
    assert a.error is not None and a.error.diag.sqlstate == "LL001", a.error
    assert "its header invoice id=1 is final" in a.error.diag.message_primary


def test_header_finalization_waits_for_a_line_insert(db):
    db.protect_invoice()
    db.owner().execute("SELECT ledgerlock.protect_lines('invoice_line', 'invoice')")
    db.connect("app").execute("INSERT INTO invoice (id, company_id) VALUES (1, 1)")
    a = db.connect("app", autocommit=False)
    a.execute("INSERT INTO invoice_line (id, invoice_id, description) VALUES (11, 1, 'x')")
    b = Background(db.connect("app"), "UPDATE invoice SET status = 'approved' WHERE id = 1")
    b.wait_until_blocked(db.owner())
    a.commit()
    b.join()
    assert b.error is None
    with refused("LL001"):  # the line that was committed first is now part of the final invoice
        db.connect("app").execute("DELETE FROM invoice_line WHERE id = 11")


def test_line_insert_waits_for_a_rule_freezing_its_header_and_is_then_refused(db):
    """B makes payments freeze their invoice (protect_referenced) while invoice 1 has one; A's line under
    invoice 1 waits for B (its header's table) and, once B has committed, is refused by the rule it did not
    see when it started (a line's check reads the header's rules in every call); a line under invoice 2,
    which no payment references, passes."""
    db.protect_invoice()
    db.owner().execute("SELECT ledgerlock.protect_lines('invoice_line', 'invoice')")
    app = db.connect("app")
    app.execute("INSERT INTO invoice (id, company_id) VALUES (1, 1), (2, 1)")
    app.execute("INSERT INTO payment (id, company_id, invoice_id, amount) VALUES (9, 1, 1, 10)")
    b = db.connect("admin", autocommit=False)
    b.execute("SELECT ledgerlock.protect_referenced('invoice', 'payment')")
    a = Background(db.connect("app"), "INSERT INTO invoice_line (id, invoice_id, description) VALUES (11, 1, 'x')")
    a.wait_until_blocked(db.owner())
    b.commit()
    a.join()
    assert a.error is not None and a.error.diag.sqlstate == "LL003", a.error
    assert a.error.diag.message_primary == ("invoice_line id=11 cannot be inserted: its header invoice id=1 is "
                                            "referenced by payment id=9")
    lives_ok(app, "INSERT INTO invoice_line (id, invoice_id, description) VALUES (21, 2, 'x')")
