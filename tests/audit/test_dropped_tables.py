"""A protected table that is unprotected and dropped leaves ledgerlock's history naming it (the number
format history keeps the table as a regclass): verification still runs and says the books are as recorded,
while a value changed in that same history row is still reported."""

from __future__ import annotations

from lltest import lives_ok


def _scratch_numbered_then_dropped(db):
    owner = db.owner()
    owner.execute("CREATE TABLE scratch_doc (id int PRIMARY KEY, issued_on date NOT NULL, status text, number text)")
    owner.execute("SELECT ledgerlock.protect('scratch_doc', 'issued_on', final_when => $$status = 'final'$$, "
                  "number_column => 'number', number_format => 'S-{SEQ}')")
    owner.execute("INSERT INTO scratch_doc VALUES (1, '2026-01-05', 'final', NULL)")
    owner.execute("SELECT ledgerlock.unprotect('scratch_doc', 'a scratch table goes')")
    owner.execute("DROP TABLE scratch_doc")
    return owner


def test_verify_is_ok_after_a_protected_table_was_unprotected_and_dropped(db):
    db.protect_invoice(number_column="number", number_format="INV-{YYYY}-{SEQ:5}")
    _scratch_numbered_then_dropped(db)
    rows = lives_ok(db.connect("auditor"), "SELECT ok, problems, problem FROM ledgerlock.verify_audit()")
    assert rows == [(True, 0, None)]


def test_a_history_row_of_a_dropped_table_changed_by_hand_is_still_reported(db):
    db.protect_invoice(number_column="number", number_format="INV-{YYYY}-{SEQ:5}")
    owner = _scratch_numbered_then_dropped(db)
    su = owner  # the harness owner is a superuser, as the attacker here is
    states = su.execute("SELECT tgname, tgenabled FROM pg_trigger WHERE NOT tgisinternal "
                        "AND tgrelid = 'ledgerlock.number_format_history'::regclass").fetchall()
    assert states and {state for _, state in states} == {"A"}  # ENABLE ALWAYS, as capture installs them
    su.execute("ALTER TABLE ledgerlock.number_format_history DISABLE TRIGGER USER")
    su.execute("UPDATE ledgerlock.number_format_history SET number_format = 'FORGED-{SEQ}' "
               "WHERE number_format = 'S-{SEQ}'")
    for name, _ in states:  # put back exactly as they were
        su.execute(f'ALTER TABLE ledgerlock.number_format_history ENABLE ALWAYS TRIGGER "{name}"')
    ok, problems = owner.execute("SELECT ok, problems FROM ledgerlock.verify_audit()").fetchone()
    assert (ok, problems) == (False, 1)
    found = db.connect("auditor").execute(
        "SELECT code, table_name, column_name, problem FROM ledgerlock.audit_discrepancies()").fetchall()
    assert [(c, t, col) for c, t, col, _ in found] == [
        ("row_changed", "ledgerlock.number_format_history", "number_format")]
    assert "FORGED-{SEQ} in the table, S-{SEQ} in event seq" in found[0][3]


def test_a_renamed_table_is_reported_once_with_the_name_its_trail_keeps_and_renaming_it_back_restores_the_check(db):
    """Without the DDL guard the owner can rename a protected table (the guard refuses it). The trail files its
    events under the name they were written with (and the oid), so every row read as written behind the trail,
    and reinstall_guards, doctor's advice, changed nothing: verification now reports the rename once, with the
    name to go back to; renamed back, it verifies."""
    db.protect_invoice()
    app = db.connect("app")
    app.execute("INSERT INTO invoice (id, company_id, amount) VALUES (1, 1, 10), (2, 1, 20)")
    owner = db.owner()
    owner.execute("ALTER TABLE invoice RENAME TO sales_invoice")
    auditor = db.connect("auditor")
    found = auditor.execute("SELECT code, table_name, row_key, problem FROM ledgerlock.audit_discrepancies()"
                            ).fetchall()
    # the table's rows: one problem, first; the registry names the table too (its key is the regclass, printed
    # as the name): its row reads as written under the new name and gone under the old one
    assert found == [("table_renamed", "public.sales_invoice", None,
                      "public.sales_invoice was renamed since the trail recorded it: its events are filed under "
                      "public.invoice, so its rows cannot be held to them; rename it back to public.invoice"),
                     ("row_unrecorded", "ledgerlock.protected_table", {"tbl": "public.sales_invoice"},
                      "protected_table tbl=public.sales_invoice: the row has no audit event (it was written behind "
                      "the trail)"),
                     ("row_missing", "ledgerlock.protected_table", {"tbl": "public.invoice"}, found[2][3])]
    verdict = auditor.execute("SELECT ok, problems, problem FROM ledgerlock.verify_audit()").fetchone()
    assert verdict == (False, 3, found[0][3])  # the first problem is the one a reader sees (doctor, the CLI)
    owner.execute("ALTER TABLE sales_invoice RENAME TO invoice")
    assert auditor.execute("SELECT ok, problems FROM ledgerlock.verify_audit()").fetchone() == (True, 0)
    # the neighbour: a row changed behind the trail is still found, per row
    owner.execute("ALTER TABLE invoice DISABLE TRIGGER USER")
    owner.execute("UPDATE invoice SET amount = 0 WHERE id = 2")
    owner.execute("ALTER TABLE invoice ENABLE TRIGGER USER")
    assert auditor.execute("SELECT code, row_key FROM ledgerlock.audit_discrepancies()").fetchall() == [
        ("row_changed", {"id": 2})]
