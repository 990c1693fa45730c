"""A write refused by a period lock names no number that was never issued: the final number R2 gave the row
in the refused statement goes back with it, so the message shows the number the row had before, if any."""

from __future__ import annotations

from lltest import lives_ok, refused


def protect(db):
    db.protect_invoice(number_column="number", number_format="INV-{YYYY}-{SEQ:5}")
    db.connect("admin").execute("SELECT ledgerlock.lock_period('1', '2025-03-01', '2025-03-31', 'hard')")
    return db.connect("app")


def test_a_final_insert_refused_by_a_lock_names_no_number_in_message_hint_or_detail(db):
    app = protect(db)
    with refused("LL002", r"invoice id=10 cannot be inserted$") as info:
        app.execute("INSERT INTO invoice (id, company_id, issued_on, status) VALUES (10, 1, '2025-03-15', 'approved')")
    diag = info.value.diag
    assert "INV-" not in f"{diag.message_primary} {diag.message_detail} {diag.message_hint}"
    assert lives_ok(app, "INSERT INTO invoice (id, company_id, issued_on, status) VALUES (11, 1, '2025-04-15', "
                         "'approved') RETURNING number") == [("INV-2025-00001",)]


def test_a_draft_finalized_into_a_locked_window_names_no_number_it_was_given(db):
    app = protect(db)
    app.execute("INSERT INTO invoice (id, company_id, issued_on) VALUES (20, 1, '2025-04-15')")
    with refused("LL002", r"invoice id=20 \(DRAFT-1\) cannot be updated$") as info:  # the number it keeps
        app.execute("UPDATE invoice SET issued_on = '2025-03-15', status = 'approved' WHERE id = 20")
    diag = info.value.diag
    assert "INV-" not in f"{diag.message_primary} {diag.message_detail} {diag.message_hint}"
    # the neighbour: finalized in an open window, the row takes the number the refused statement gave back
    assert lives_ok(app, "UPDATE invoice SET status = 'approved' WHERE id = 20 RETURNING number") == [
        ("INV-2025-00001",)]
