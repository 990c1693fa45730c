"""The DDL guard and R4: the referential rule generates trigger functions in schema ledgerlock, so every
installer that (re)generates or drops them must take the schema's DDL permit. Run as an admin (not a
superuser), with the guard installed by a superuser."""

from __future__ import annotations

import pytest

from lltest import lives_ok, refused


def test_an_admin_runs_every_r4_installer_under_the_ddl_guard(db, ddl_guard):
    admin = db.connect("admin")
    db.protect_invoice(admin)
    admin.execute("SELECT ledgerlock.protect_referenced('invoice', 'payment')")
    admin.execute("SELECT ledgerlock.protect_lines('invoice_line', 'invoice')")
    db.protect_invoice(admin)  # re-protect of a table in an R4 rule regenerates the rule's functions
    admin.execute("SELECT ledgerlock.reinstall_guards()")
    admin.execute("SELECT ledgerlock.unprotect_lines('invoice_line', 'invoice', 'lines no longer follow')")
    admin.execute("SELECT ledgerlock.unprotect_referenced('invoice', 'payment', 'payments are free now')")
    rules = db.owner().execute("SELECT count(*) FROM ledgerlock.reference_rule").fetchone()[0]
    assert rules == 0
    # no permit is left behind for a later statement of the same transaction
    assert db.owner().execute("SELECT count(*) FROM ledgerlock.ddl_permit").fetchone()[0] == 0


def test_the_guard_still_refuses_the_owner_a_plain_drop_of_an_r4_trigger(db, ddl_guard):
    owner = db.owner()
    db.protect_invoice(owner)
    owner.execute("SELECT ledgerlock.protect_referenced('invoice', 'payment')")
    trigger = owner.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = 'payment'::regclass "
                            "AND tgname ~ '^ll_30_' LIMIT 1").fetchone()[0]
    with refused("LL008", rf"^dropping trigger {trigger} on public\.payment"):
        owner.execute(f"DROP TRIGGER {trigger} ON payment")


@pytest.mark.parametrize(("stmt", "match"), [
    ("ALTER TABLE payment RENAME COLUMN invoice_id TO invoice_ref",
     r"^renaming a column of public\.payment \(to invoice_ref\) is refused: the referenced rule of public\.invoice "
     r"and public\.payment reads it by name"),
    ("ALTER TABLE payment RENAME COLUMN status TO state",  # named by the rule's child condition
     r"^renaming a column of public\.payment \(to state\) is refused: the referenced rule"),
    ("ALTER TABLE invoice_line RENAME COLUMN invoice_id TO invoice_ref",
     r"^renaming a column of public\.invoice_line \(to invoice_ref\) is refused: the lines rule of public\.invoice "
     r"and public\.invoice_line reads it by name"),
    ("ALTER TABLE payment RENAME TO settlement", r"^ALTER TABLE public\.settlement is refused: guard ll_30_\w+ no "
                                                 r"longer matches the definition ledgerlock installed"),
])
def test_renaming_what_an_r4_rule_reads_is_refused_and_its_neighbours_pass(db, ddl_guard, stmt, match):
    """A referential rule's generated checks name the child table, the foreign key's columns and the columns of
    its child condition: renamed, every update of a parent would fail (column ll_row.invoice_id does not exist).
    A column no rule reads renames."""
    owner = db.owner()
    db.protect_invoice(owner)
    owner.execute("SELECT ledgerlock.protect_referenced('invoice', 'payment', "
                  "child_condition => $$status = 'posted'$$)")
    owner.execute("SELECT ledgerlock.protect_lines('invoice_line', 'invoice')")
    app = db.connect("app")
    app.execute("INSERT INTO invoice (id, company_id, amount) VALUES (1, 1, 5), (2, 1, 5)")
    app.execute("INSERT INTO payment (company_id, invoice_id, amount) VALUES (1, 1, 5)")
    with refused("LL008", match):
        owner.execute(stmt)
    lives_ok(owner, "ALTER TABLE payment RENAME COLUMN paid_on TO settled_on")
    lives_ok(owner, "ALTER TABLE invoice_line RENAME COLUMN description TO label")
    with refused("LL003", r"^invoice id=1 is referenced by payment id=1 and cannot be updated"):
        app.execute("UPDATE invoice SET amount = 6 WHERE id = 1")
    lives_ok(app, "UPDATE invoice SET amount = 6 WHERE id = 2")
