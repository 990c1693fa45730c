"""R4: an update that changes only the exempt (mutable) columns of a referenced parent never probes the child.

The probe is observed, not timed: pg_stat_xact_user_tables counts the scans of the child in the current
transaction. An update of a mutable column makes none and goes through; an update of any other column makes
one and is refused; a column added after the rule was installed counts as a change (the row is compared
whole, minus the exempt columns), so a guard generated before it cannot miss it.
"""

from __future__ import annotations

import pytest

from lltest import lives_ok, refused


@pytest.fixture
def paid(db):
    """invoice 1 has payment 9 (referenced), invoice 3 has none; the app's connection, not in autocommit."""
    db.protect_invoice()
    db.owner().execute("SELECT ledgerlock.protect_referenced('invoice', 'payment')")
    setup = db.connect("app")
    setup.execute("INSERT INTO invoice (id, company_id, amount) VALUES (1, 1, 100), (3, 1, 300)")
    setup.execute("INSERT INTO payment (id, company_id, invoice_id, amount) VALUES (9, 1, 1, 50)")
    return db.connect("app", autocommit=False)


def child_scans(conn):
    """Scans of payment in this transaction, before it ends."""
    return conn.execute("SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) FROM pg_stat_xact_user_tables "
                        "WHERE relid = 'payment'::regclass").fetchone()[0]


def test_a_mutable_only_update_of_a_referenced_parent_skips_the_probe(paid):
    before = child_scans(paid)
    lives_ok(paid, "UPDATE invoice SET paid = true, reconciled = true WHERE id = 1")
    assert child_scans(paid) == before
    paid.commit()
    assert paid.execute("SELECT paid, reconciled FROM invoice WHERE id = 1").fetchone() == (True, True)


def test_any_other_column_probes_and_is_refused(paid):
    with refused("LL003", r"^invoice id=1 is referenced by payment id=9 and cannot be updated$"):
        paid.execute("UPDATE invoice SET paid = true, note = 'x' WHERE id = 1")
    paid.rollback()
    before = child_scans(paid)
    lives_ok(paid, "UPDATE invoice SET note = 'x' WHERE id = 3")  # unreferenced: probed, permitted
    assert child_scans(paid) > before
    paid.commit()


def test_a_column_added_after_the_rule_counts_as_a_change(db, paid):
    db.owner().execute("ALTER TABLE invoice ADD COLUMN memo text")
    with refused("LL003", r"^invoice id=1 is referenced by payment id=9 and cannot be updated$"):
        paid.execute("UPDATE invoice SET memo = 'x' WHERE id = 1")
    paid.rollback()
    lives_ok(paid, "UPDATE invoice SET paid = true WHERE id = 1")
    paid.commit()
