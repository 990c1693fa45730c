"""The DDL guard and R4: the referential rule generates trigger functions in schema ledgerlock, so every
installer that (re)generates or drops them must take the schema's DDL permit. Run as an admin (not a
superuser), with the guard installed by a superuser."""

from __future__ import annotations

from lltest import refused


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
