"""R4: lines follow their header, and rules compose into chains."""

from __future__ import annotations

import datetime as dt

import pytest

from lltest import refused


@pytest.fixture
def lines(db):
    """invoice 1 final (approved) with line 11, invoice 2 draft with line 21; lines follow their header."""
    db.protect_invoice()
    db.owner().execute("SELECT ledgerlock.protect_lines('invoice_line', 'invoice')")
    app = db.connect("app")
    app.execute("INSERT INTO invoice (id, company_id, amount) VALUES (1, 1, 100), (2, 1, 200), (3, 1, 300)")
    app.execute("INSERT INTO invoice_line (id, invoice_id, description) VALUES (11, 1, 'a'), (21, 2, 'b')")
    app.execute("UPDATE invoice SET status = 'approved' WHERE id = 1")
    return app


def count_lines(conn, invoice_id):
    return conn.execute("SELECT count(*) FROM invoice_line WHERE invoice_id = %s", (invoice_id,)).fetchone()[0]


def test_final_header_refuses_a_new_line(lines):
    with refused("LL001", r"^invoice_line id=12 cannot be inserted: its header invoice id=1 is final; "
                          r"issue a correcting document instead$"):
        lines.execute("INSERT INTO invoice_line (id, invoice_id, description) VALUES (12, 1, 'late')")
    assert count_lines(lines, 1) == 1


def test_final_header_refuses_line_update_and_delete(lines):
    with refused("LL001", r"^invoice_line id=11 cannot be updated: its header invoice id=1 is final"):
        lines.execute("UPDATE invoice_line SET unit_price = 5 WHERE id = 11")
    with refused("LL001", r"^invoice_line id=11 cannot be deleted: its header invoice id=1 is final"):
        lines.execute("DELETE FROM invoice_line WHERE id = 11")
    assert count_lines(lines, 1) == 1


def test_draft_header_lines_stay_editable(lines):
    lines.execute("INSERT INTO invoice_line (id, invoice_id, description) VALUES (22, 2, 'more')")
    lines.execute("UPDATE invoice_line SET unit_price = 5 WHERE invoice_id = 2")
    lines.execute("DELETE FROM invoice_line WHERE id = 21")
    assert count_lines(lines, 2) == 1


def test_line_cannot_be_moved_out_of_or_into_a_final_header(lines):
    with refused("LL001", r"^invoice_line id=11 cannot be moved: its header invoice id=1 is final"):
        lines.execute("UPDATE invoice_line SET invoice_id = 2 WHERE id = 11")
    with refused("LL001", r"^invoice_line id=21 cannot be moved to invoice id=1: that header is final"):
        lines.execute("UPDATE invoice_line SET invoice_id = 1 WHERE id = 21")
    lines.execute("UPDATE invoice_line SET invoice_id = 3 WHERE id = 21")  # between drafts: fine
    assert count_lines(lines, 3) == 1


def test_no_op_update_of_a_line_of_a_final_header_is_allowed(lines):
    lines.execute("UPDATE invoice_line SET description = description WHERE id = 11")


def test_referenced_header_freezes_its_lines(db, lines):
    db.owner().execute("SELECT ledgerlock.protect_referenced('invoice', 'payment')")
    lines.execute("INSERT INTO payment (id, company_id, invoice_id, amount) VALUES (9, 1, 2, 10)")
    with refused("LL003", r"^invoice_line id=21 cannot be updated: its header invoice id=2 is referenced by "
                          r"payment id=9$"):
        lines.execute("UPDATE invoice_line SET unit_price = 1 WHERE id = 21")
    lines.execute("UPDATE invoice_line SET unit_price = 1 WHERE invoice_id = 3")  # no payment on 3


def test_delete_only_reference_does_not_freeze_lines(db, lines):
    db.owner().execute("SELECT ledgerlock.protect_referenced('invoice', 'payment', operations => '{delete}')")
    lines.execute("INSERT INTO payment (id, company_id, invoice_id, amount) VALUES (9, 1, 2, 10)")
    lines.execute("UPDATE invoice_line SET unit_price = 1 WHERE id = 21")


def test_header_in_a_locked_period_freezes_its_lines(db):
    db.protect_invoice()
    owner = db.owner()
    owner.execute("SELECT ledgerlock.protect_lines('invoice_line', 'invoice')")
    app = db.connect("app")
    app.execute("INSERT INTO invoice (id, company_id, issued_on) VALUES (1, 1, '2025-03-10'), (2, 1, '2025-04-10')")
    app.execute("INSERT INTO invoice_line (id, invoice_id, description) VALUES (11, 1, 'a'), (21, 2, 'b')")
    db.connect("controller").execute("SELECT ledgerlock.lock_period('1', %s, %s, 'hard')",
                                     (dt.date(2025, 3, 1), dt.date(2025, 3, 31)))
    with refused("LL002", r"^Period 2025-03-01\.\.2025-03-31 is locked \(hard\) for scope 1: invoice id=1 cannot be "
                          r"changed through its lines \(invoice_line id=12 cannot be inserted\)$"):
        app.execute("INSERT INTO invoice_line (id, invoice_id, description) VALUES (12, 1, 'late')")
    with refused("LL002", r"invoice_line id=11 cannot be deleted"):
        app.execute("DELETE FROM invoice_line WHERE id = 11")
    with refused("LL002", r"invoice_line id=21 cannot be moved to it"):
        app.execute("UPDATE invoice_line SET invoice_id = 1 WHERE id = 21")
    app.execute("INSERT INTO invoice_line (id, invoice_id, description) VALUES (22, 2, 'april is open')")


def test_a_header_dated_by_a_timestamptz_is_read_in_utc_through_its_lines_whatever_the_client_time_zone(db):
    """A line's check reads its header's date as the header's own guard does: a timestamptz column's day in UTC.
    The header's coordinates are read inline for a column of the header itself (one registry read, not five);
    this holds that inline read to the guard's rule at both edges of a window, under time zones that put each
    header on the other side of midnight."""
    owner = db.owner()
    owner.execute("CREATE TABLE booking (id int PRIMARY KEY, company_id int NOT NULL, at timestamptz NOT NULL); "
                  "CREATE TABLE booking_line (id int PRIMARY KEY, booking_id int NOT NULL REFERENCES booking, "
                  "amount numeric NOT NULL DEFAULT 0); "
                  "GRANT SELECT, INSERT, UPDATE, DELETE ON booking, booking_line TO ll_app")
    owner.execute("SELECT ledgerlock.protect('booking', date_column => 'at', scope_column => 'company_id')")
    owner.execute("SELECT ledgerlock.protect_lines('booking_line', 'booking')")
    app = db.connect("app")
    app.execute("INSERT INTO booking VALUES (1, 1, '2025-03-31 23:30+00'), (2, 1, '2025-04-01 00:30+00'), "
                "(3, 1, '2025-02-28 23:30+00')")
    db.connect("controller").execute("SELECT ledgerlock.lock_period('1', '2025-03-01', '2025-03-31', 'hard')")
    app.execute("SET TimeZone = 'Pacific/Kiritimati'")  # +14: booking 1 is on April 1st there, still March in UTC
    with refused("LL002", r"^Period 2025-03-01\.\.2025-03-31 is locked \(hard\) for scope 1: booking id=1 cannot be "
                          r"changed through its lines \(booking_line id=11 cannot be inserted\)$"):
        app.execute("INSERT INTO booking_line (id, booking_id) VALUES (11, 1)")
    app.execute("SET TimeZone = 'America/Los_Angeles'")  # -7: booking 2 is on March 31st there, April in UTC
    app.execute("INSERT INTO booking_line (id, booking_id) VALUES (21, 2)")
    app.execute("SET TimeZone = 'Pacific/Kiritimati'")  # booking 3 is on March 1st there, February in UTC
    app.execute("INSERT INTO booking_line (id, booking_id) VALUES (31, 3)")
    assert owner.execute("SELECT array_agg(id ORDER BY id) FROM booking_line").fetchone()[0] == [21, 31]

def test_cascade_from_a_draft_header_deletes_its_lines(lines):
    lines.execute("DELETE FROM invoice WHERE id = 2")
    assert count_lines(lines, 2) == 0


def test_lines_of_a_table_that_is_not_protected(db):
    """A header that is only referenced (not protected) still freezes its lines; rows named by the catalog key."""
    owner = db.owner()
    owner.execute("""
        CREATE TABLE batch (id integer PRIMARY KEY, memo text);
        CREATE TABLE batch_item (id integer PRIMARY KEY, batch_id integer REFERENCES batch, amount numeric);
        CREATE TABLE batch_approval (id integer PRIMARY KEY, batch_id integer REFERENCES batch);
        CREATE INDEX ON batch_approval (batch_id);
        GRANT SELECT, INSERT, UPDATE, DELETE ON batch, batch_item, batch_approval TO ll_app;
        SELECT ledgerlock.protect_lines('batch_item', 'batch');
        SELECT ledgerlock.protect_referenced('batch', 'batch_approval');
    """)
    app = db.connect("app")
    app.execute("INSERT INTO batch VALUES (1, 'a'), (2, 'b')")
    app.execute("INSERT INTO batch_item VALUES (1, 1, 10), (2, 2, 20)")
    app.execute("INSERT INTO batch_approval VALUES (5, 1)")
    with refused("LL003", r"^batch_item id=1 cannot be updated: its header batch id=1 is referenced by "
                          r"batch_approval id=5$"):
        app.execute("UPDATE batch_item SET amount = 11 WHERE id = 1")
    app.execute("UPDATE batch_item SET amount = 21 WHERE id = 2")


# -- chains ------------------------------------------------------------------------------------------

@pytest.fixture
def chain(db):
    """invoice <- payment <- deposit_item (a line of deposit) ; deposit <- reconciliation.

    Payment 9 pays invoice 1 and sits in deposit 3, which reconciliation 4 has reconciled."""
    db.protect_invoice()
    owner = db.owner()
    owner.execute("""
        CREATE TABLE deposit (id integer PRIMARY KEY, deposited_on date NOT NULL DEFAULT current_date, memo text);
        CREATE TABLE deposit_item (id integer PRIMARY KEY, deposit_id integer NOT NULL REFERENCES deposit,
                                   payment_id integer NOT NULL REFERENCES payment);
        CREATE INDEX ON deposit_item (payment_id);
        CREATE TABLE reconciliation (id integer PRIMARY KEY, deposit_id integer NOT NULL REFERENCES deposit);
        CREATE INDEX ON reconciliation (deposit_id);
        GRANT SELECT, INSERT, UPDATE, DELETE ON deposit, deposit_item, reconciliation TO ll_app;
        SELECT ledgerlock.protect_referenced('invoice', 'payment', child_condition => $$status <> 'void'$$);
        SELECT ledgerlock.protect_referenced('payment', 'deposit_item');
        SELECT ledgerlock.protect_lines('deposit_item', 'deposit');
        SELECT ledgerlock.protect_referenced('deposit', 'reconciliation');
    """)
    app = db.connect("app")
    app.execute("INSERT INTO invoice (id, company_id, amount) VALUES (1, 1, 100)")
    app.execute("INSERT INTO payment (id, company_id, invoice_id, amount) VALUES (9, 1, 1, 100)")
    app.execute("INSERT INTO deposit (id) VALUES (3)")
    app.execute("INSERT INTO deposit_item VALUES (30, 3, 9)")
    app.execute("INSERT INTO reconciliation VALUES (4, 3)")
    return app


def test_three_level_chain_unwinds_only_backwards(chain):
    with refused("LL003", r"^invoice id=1 is referenced by payment id=9 and cannot be deleted$"):
        chain.execute("DELETE FROM invoice WHERE id = 1")
    with refused("LL003", r"^payment id=9 is referenced by deposit_item id=30 and cannot be deleted$"):
        chain.execute("DELETE FROM payment WHERE id = 9")
    with refused("LL003", r"^deposit_item id=30 cannot be deleted: its header deposit id=3 is referenced by "
                          r"reconciliation id=4$"):
        chain.execute("DELETE FROM deposit_item WHERE id = 30")
    # the way back: unreconcile, take the payment out of the deposit, delete the payment, then the invoice
    chain.execute("DELETE FROM reconciliation WHERE id = 4")
    chain.execute("DELETE FROM deposit_item WHERE id = 30")
    chain.execute("DELETE FROM payment WHERE id = 9")
    chain.execute("DELETE FROM invoice WHERE id = 1")


def test_voiding_a_payment_in_a_reconciled_deposit_is_refused(chain):
    """Voiding would release the invoice, but the payment itself is frozen by the deposit item."""
    with refused("LL003", r"^payment id=9 is referenced by deposit_item id=30 and cannot be updated$"):
        chain.execute("UPDATE payment SET status = 'void' WHERE id = 9")
