"""R1 holds against one admin: no unprotect, and no re-protect that weakens the rules, on a table that
holds final rows (LL001) or rows in an active hard window (LL002). A re-protect that would remove or
loosen anything says what and needs weaken_reason (22023 without it, LL007 when blank), and is audited with
it. set_number_format never turns numbering off."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from ledgerlock.cli import cli
from lltest import refused

FULL = ("SELECT ledgerlock.protect('invoice', 'issued_on', 'company_id', $$status in ('approved','paid')$$, "
        "'number', 'INV-{SEQ}', '{paid,reconciled}'{extra})")


def full(conn, extra=""):
    conn.execute(FULL.replace("{extra}", extra))


@pytest.fixture
def final_invoice(db):
    """invoice protected in full (final_when, numbering, two mutable columns); id=1 final, id=2 draft."""
    admin = db.connect("admin")
    full(admin)
    db.connect("app").execute("INSERT INTO invoice (id, company_id, issued_on, status) VALUES "
                              "(1, 1, '2025-03-10', 'approved'), (2, 1, '2025-03-11', 'draft')")
    return admin


def config(db):
    return db.owner().execute("SELECT final_when, number_column, number_format, mutable_columns, ledger "
                              "FROM ledgerlock.protected_table WHERE tbl = 'invoice'::regclass").fetchone()


def test_the_reported_bypass_unprotect_edit_protect_is_refused(db, final_invoice):
    before = config(db)
    with refused("LL001", r"^unprotect: public\.invoice holds final rows \(invoice id=1 \(INV-1\) and maybe "
                          r"more\) and cannot be unprotected") as info:
        final_invoice.execute("SELECT ledgerlock.unprotect('invoice', 'maint')")
    assert "correcting document" in info.value.diag.message_hint
    with refused("LL001"):
        final_invoice.execute("UPDATE invoice SET amount = 1 WHERE id = 1")
    assert config(db) == before


def test_unprotect_of_a_table_without_final_rows_still_works(db):
    admin = db.connect("admin")
    full(admin)
    db.connect("app").execute("INSERT INTO invoice (id, company_id, status) VALUES (2, 1, 'draft')")
    admin.execute("SELECT ledgerlock.unprotect('invoice', 'retired')")


def test_a_superuser_may_still_retire_a_table_with_final_rows(db, final_invoice):
    db.owner().execute("SELECT ledgerlock.unprotect('invoice', 'archived to the new ERP')")
    assert db.owner().execute("SELECT count(*) FROM ledgerlock.protected_table").fetchone()[0] == 0


def test_protect_with_fewer_arguments_says_what_would_be_removed(db, final_invoice):
    """The new user's trap: re-running protect with only the date and scope columns."""
    with refused("22023", r"^protect would weaken the rules of public\.invoice: final_when "
                          r"\(status in \('approved','paid'\)\) removed; number_column number removed; "
                          r"number_format INV-\{SEQ\} removed; mutable columns paid, reconciled removed$") as info:
        final_invoice.execute("SELECT ledgerlock.protect('invoice', 'issued_on', 'company_id')")
    assert "weaken_reason" in info.value.diag.message_hint
    with refused("LL007", r"^protect requires a reason"):
        final_invoice.execute("SELECT ledgerlock.protect('invoice', 'issued_on', 'company_id', weaken_reason => ' ')")
    with refused("LL001", r"^protect: public\.invoice holds final rows .* so its final_when, key, date, scope, "
                          r"numbering and mutable columns cannot be loosened"):
        final_invoice.execute("SELECT ledgerlock.protect('invoice', 'issued_on', 'company_id', "
                              "weaken_reason => 'simplify')")
    with refused("LL001"):
        final_invoice.execute("UPDATE invoice SET amount = 1 WHERE id = 1")


@pytest.mark.parametrize(("change", "what"), [
    ("$$status = 'paid'$$, 'number', 'INV-{SEQ}', '{paid,reconciled}'", r"final_when .* changed to"),
    ("$$status in ('approved','paid')$$, 'number', 'INV-{SEQ}', '{paid,reconciled,note}'",
     r"mutable columns note added"),
    ("$$status in ('approved','paid')$$, 'number', 'X-{SEQ}', '{paid,reconciled}'", r"number_format .* changed"),
])
def test_weakening_a_table_with_final_rows_is_refused_even_with_a_reason(db, final_invoice, change, what):
    stmt = f"SELECT ledgerlock.protect('invoice', 'issued_on', 'company_id', {change}"
    with refused("22023", what):
        final_invoice.execute(stmt + ")")
    with refused("LL001", r"holds final rows"):
        final_invoice.execute(stmt + ", weaken_reason => 'because')")


def test_strengthening_or_the_same_rules_need_no_reason(db, final_invoice):
    full(final_invoice)  # the same again
    full(final_invoice, ", 'ar'")  # a ledger tag added
    # a mutable column removed is stricter, but it is a removal: said, and confirmed with a reason
    with refused("22023", r"mutable columns reconciled removed"):
        final_invoice.execute("SELECT ledgerlock.protect('invoice', 'issued_on', 'company_id', "
                              "$$status in ('approved','paid')$$, 'number', 'INV-{SEQ}', '{paid}', 'ar')")
    final_invoice.execute("SELECT ledgerlock.protect('invoice', 'issued_on', 'company_id', "
                          "$$status in ('approved','paid')$$, 'number', 'INV-{SEQ}', '{paid}', 'ar', "
                          "weaken_reason => 'reconciliation moved to the bank module')")
    with refused("LL001"):
        db.connect("app").execute("UPDATE invoice SET reconciled = true WHERE id = 1")
    row = db.connect("auditor").execute(
        "SELECT reason, details FROM ledgerlock.audit_log WHERE operation = 'PROTECT' ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    assert row[0] == "reconciliation moved to the bank module"
    assert row[1]["removed"] == ["mutable columns reconciled removed"]


def test_weakening_without_final_rows_takes_a_reason_and_is_audited(db):
    admin = db.connect("admin")
    full(admin)
    db.connect("app").execute("INSERT INTO invoice (id, company_id, status) VALUES (2, 1, 'draft')")
    with refused("22023", r"final_when .* removed"):
        admin.execute("SELECT ledgerlock.protect('invoice', 'issued_on', 'company_id')")
    admin.execute("SELECT ledgerlock.protect('invoice', 'issued_on', 'company_id', "
                  "weaken_reason => 'invoices are final in the ERP now')")
    assert config(db)[:3] == (None, None, None)
    reason = db.connect("auditor").execute(
        "SELECT reason FROM ledgerlock.audit_log WHERE operation = 'PROTECT' ORDER BY seq DESC LIMIT 1").fetchone()
    assert reason == ("invoices are final in the ERP now",)


@pytest.fixture
def hard_journal(db):
    """journal_entry (no final_when) with a row of company 1 in a hard window; the admin's connection."""
    admin = db.connect("admin")
    admin.execute("SELECT ledgerlock.protect('journal_entry', 'posted_on', 'company_id')")
    db.connect("app").execute("INSERT INTO journal_entry (id, company_id, posted_on) VALUES (1, 1, '2025-03-10')")
    lock = admin.execute("SELECT ledgerlock.lock_period('1', '2025-03-01', '2025-03-31', 'hard')").fetchone()[0]
    return admin, lock


def test_rows_in_a_hard_window_block_unprotect_and_weakening_until_unlocked(db, hard_journal):
    admin, lock = hard_journal
    hard = r"Period 2025-03-01\.\.2025-03-31 is locked \(hard\) for scope 1: journal_entry id=1 lies in it"
    with refused("LL002", "^" + hard + r", so public\.journal_entry cannot be unprotected") as info:
        admin.execute("SELECT ledgerlock.unprotect('journal_entry', 'maint')")
    assert f"ledgerlock.unlock_period({lock}, " in info.value.diag.message_hint
    with refused("LL002", "^" + hard + r", so the rules of public\.journal_entry cannot be loosened"):
        admin.execute("SELECT ledgerlock.protect('journal_entry', 'posted_on', weaken_reason => 'no scopes')")
    with refused("LL002"):
        db.connect("app").execute("UPDATE journal_entry SET memo = 'x' WHERE id = 1")
    admin.execute("SELECT ledgerlock.protect('journal_entry', 'posted_on', 'company_id', ledger => 'gl')")
    # the way out is the hard unlock (four-eyes when on), then the change, then relock
    admin.execute("SELECT ledgerlock.unlock_period(%s, 'restructuring the journal')", (lock,))
    admin.execute("SELECT ledgerlock.unprotect('journal_entry', 'restructuring the journal')")


def test_a_soft_window_does_not_block_unprotect(db):
    admin = db.connect("admin")
    admin.execute("SELECT ledgerlock.protect('journal_entry', 'posted_on', 'company_id')")
    db.connect("app").execute("INSERT INTO journal_entry (id, company_id, posted_on) VALUES (1, 1, '2025-03-10')")
    admin.execute("SELECT ledgerlock.lock_period('1', '2025-03-01', '2025-03-31')")
    admin.execute("SELECT ledgerlock.lock_period('2', '2024-03-01', '2025-03-31', 'hard')")  # another scope
    admin.execute("SELECT ledgerlock.unprotect('journal_entry', 'soft windows admit overrides anyway')")


def test_set_number_format_never_turns_numbering_off(db, final_invoice):
    for fmt in (None, "", "   "):
        with refused("22023", r"^set_number_format: the format must not be empty"):
            final_invoice.execute("SELECT ledgerlock.set_number_format('invoice', %s)", (fmt,))
    assert config(db)[2] == "INV-{SEQ}"
    final_invoice.execute("SELECT ledgerlock.set_number_format('invoice', 'INV-{SEQ:5}')")
    assert config(db)[2] == "INV-{SEQ:5}"


def run(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_cli_protect_says_what_would_be_removed_and_takes_weaken_reason(db, final_invoice):
    dsn = db.conninfo("admin")
    res = run("--dsn", dsn, "protect", "invoice", "--date-column", "issued_on", "--scope-column", "company_id")
    assert res.exit_code == 1, res.output
    assert "error 22023" in res.output
    assert "final_when (status in ('approved','paid')) removed" in res.output
    assert "number_column number removed" in res.output
    assert "--weaken-reason" in res.output
    res = run("--dsn", dsn, "protect", "invoice", "--date-column", "issued_on", "--scope-column", "company_id",
              "--weaken-reason", "simplify")
    assert res.exit_code == 1 and "error LL001" in res.output
    with refused("LL001"):
        db.connect("app").execute("UPDATE invoice SET amount = 1 WHERE id = 1")
    # on a table without final rows, the confirmed change goes through
    db.connect("app").execute("DELETE FROM invoice WHERE id = 2")
    admin = db.connect("admin")
    admin.execute("SELECT ledgerlock.protect('journal_entry', 'posted_on', 'company_id', mutable_columns => '{memo}')")
    res = run("--dsn", dsn, "protect", "journal_entry", "--date-column", "posted_on", "--scope-column", "company_id")
    assert res.exit_code == 1 and "mutable columns memo removed" in res.output
    res = run("--dsn", dsn, "protect", "journal_entry", "--date-column", "posted_on", "--scope-column", "company_id",
              "--weaken-reason", "memo is frozen from now on")
    assert res.exit_code == 0, res.output
    assert "protected journal_entry" in res.output


def test_cli_help_explains_weaken_reason():
    out = run("protect", "--help").output
    assert "--weaken-reason" in out and "final rows" in out
