"""R4 lines: a line table that is itself protected keeps its own mutable columns under a frozen header (a journal
line's reconciliation flag), and never the foreign key that ties it to its header."""

from __future__ import annotations

import pytest

from lltest import lives_ok, refused


@pytest.fixture
def lines(db):
    """invoice 1 final with line 11, invoice 2 draft; invoice_line protected with `reconciled` (and, wrongly,
    its foreign key) mutable, and following its header."""
    owner = db.owner()
    owner.execute("ALTER TABLE invoice_line ADD COLUMN created date NOT NULL DEFAULT current_date,"
                  " ADD COLUMN reconciled boolean NOT NULL DEFAULT false")
    db.protect_invoice()
    owner.execute("SELECT ledgerlock.protect_lines('invoice_line', 'invoice')")
    app = db.connect("app")
    app.execute("INSERT INTO invoice (id, company_id, amount) VALUES (1, 1, 100), (2, 1, 200)")
    app.execute("INSERT INTO invoice_line (id, invoice_id, description) VALUES (11, 1, 'a')")
    app.execute("UPDATE invoice SET status = 'approved' WHERE id = 1")
    return db, app


def protect_line_table(db):
    db.owner().execute("SELECT ledgerlock.protect('invoice_line', date_column => 'created',"
                       " mutable_columns => '{reconciled,invoice_id}')")


def test_a_mutable_column_of_a_protected_line_table_changes_under_a_final_header(lines):
    db, app = lines
    with refused("LL001", r"^invoice_line id=11 cannot be updated: its header invoice id=1 is final"):
        app.execute("UPDATE invoice_line SET reconciled = true WHERE id = 11")  # not declared yet
    protect_line_table(db)  # after protect_lines: protecting the line table reinstalls its line guard
    lives_ok(app, "UPDATE invoice_line SET reconciled = true WHERE id = 11")
    assert app.execute("SELECT reconciled FROM invoice_line WHERE id = 11").fetchone() == (True,)
    with refused("LL001", r"^invoice_line id=11 cannot be updated: its header invoice id=1 is final"):
        app.execute("UPDATE invoice_line SET reconciled = false, unit_price = 9 WHERE id = 11")


def test_the_foreign_key_to_the_header_is_never_exempt(lines):
    db, app = lines
    protect_line_table(db)
    with refused("LL001", r"^invoice_line id=11 cannot be moved: its header invoice id=1 is final"):
        app.execute("UPDATE invoice_line SET invoice_id = 2 WHERE id = 11")
    app.execute("INSERT INTO invoice_line (id, invoice_id, description) VALUES (21, 2, 'b')")
    with refused("LL001", r"^invoice_line id=21 cannot be moved to invoice id=1: that header is final"):
        app.execute("UPDATE invoice_line SET invoice_id = 1 WHERE id = 21")
