"""A refused INSERT names no number: the row's number (temporary or final) is never issued."""

from __future__ import annotations

from lltest import refused


def test_an_insert_refused_by_a_period_lock_names_no_number(db):
    db.protect_invoice(number_column="number", number_format="INV-{YYYY}-{SEQ:5}")
    db.connect("admin").execute("SELECT ledgerlock.lock_period('1', '2025-03-01', '2025-03-31')")
    app = db.connect("app")
    with refused("LL002", r"invoice id=10 cannot be inserted$") as info:
        app.execute("INSERT INTO invoice (id, company_id, issued_on, status) VALUES (10, 1, '2025-03-15', 'approved')")
    assert "INV-" not in info.value.diag.message_primary
    # the number the refused row was given comes back: the next final invoice of 2025 is the first
    number = app.execute("INSERT INTO invoice (id, company_id, issued_on, status) VALUES (11, 1, '2025-04-15', "
                         "'approved') RETURNING number").fetchone()[0]
    assert number == "INV-2025-00001"
