"""R4: an update that changes only the exempt (mutable) columns of a referenced parent never probes the child.

The probe is observed, not timed: pg_stat_xact_user_tables counts the scans of the child in the current
transaction. An update of a mutable column makes none and goes through; an update of any other column makes
one and is refused; a column added after the rule was installed counts as a change (the row is compared
whole, minus the exempt columns), so a guard generated before it cannot miss it.
"""

from __future__ import annotations

import pytest

from lltest import guard_calls, lives_ok, refused


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


def test_a_parent_with_a_generated_column(db):
    """Generated columns are exempt (a BEFORE trigger does not see their new value): a mutable-only or
    no-op update passes without a probe, any other column is still refused."""
    db.owner().execute("""
        CREATE TABLE g_doc (id integer PRIMARY KEY, issued_on date NOT NULL, amount numeric(12, 2) NOT NULL,
                            paid boolean NOT NULL DEFAULT false,
                            doubled numeric GENERATED ALWAYS AS (amount * 2) STORED);
        CREATE TABLE g_pay (id integer PRIMARY KEY, doc_id integer NOT NULL REFERENCES g_doc);
        CREATE INDEX ON g_pay (doc_id);
        GRANT SELECT, INSERT, UPDATE, DELETE ON g_doc, g_pay TO ll_app;
        SELECT ledgerlock.protect('g_doc', 'issued_on', mutable_columns => '{paid}');
        SELECT ledgerlock.protect_referenced('g_doc', 'g_pay');
    """)
    app = db.connect("app", autocommit=False)
    app.execute("INSERT INTO g_doc (id, issued_on, amount) VALUES (1, '2026-01-05', 10)")
    app.execute("INSERT INTO g_pay VALUES (9, 1)")
    app.commit()
    before = app.execute("SELECT coalesce(idx_scan, 0) + coalesce(seq_scan, 0) FROM pg_stat_xact_user_tables "
                         "WHERE relid = 'g_pay'::regclass").fetchone()[0]
    lives_ok(app, "UPDATE g_doc SET paid = true WHERE id = 1")
    lives_ok(app, "UPDATE g_doc SET amount = amount WHERE id = 1")
    assert app.execute("SELECT coalesce(idx_scan, 0) + coalesce(seq_scan, 0) FROM pg_stat_xact_user_tables "
                       "WHERE relid = 'g_pay'::regclass").fetchone()[0] == before
    app.commit()
    with refused("LL003", r"^g_doc id=1 is referenced by g_pay id=9 and cannot be updated$"):
        app.execute("UPDATE g_doc SET amount = 11 WHERE id = 1")
    app.rollback()
    assert app.execute("SELECT paid, doubled FROM g_doc WHERE id = 1").fetchone() == (True, 20)


def test_a_mutable_only_update_of_a_referenced_parent_does_not_call_the_guard(db):
    """The WHEN clause tells a mutable-only update apart in C (the new row with its exempt columns put back,
    compared whole and exactly with the old one): the guard is not called; any other column still calls it
    and is refused."""
    db.owner().execute(f"ALTER DATABASE {db.name} SET track_functions = 'pl'")
    db.protect_invoice()
    db.owner().execute("SELECT ledgerlock.protect_referenced('invoice', 'payment')")
    guard = db.owner().execute("SELECT proname FROM pg_proc WHERE proname ~ '^_ll30_r[0-9]+_parent$'").fetchone()[0]
    app = db.connect("app", autocommit=False)
    app.execute("INSERT INTO invoice (id, company_id, amount) VALUES (1, 1, 100)")
    app.execute("INSERT INTO payment (id, company_id, invoice_id, amount) VALUES (9, 1, 1, 50)")
    app.commit()
    lives_ok(app, "UPDATE invoice SET paid = true, reconciled = true WHERE id = 1")
    assert guard_calls(app, guard) == 0
    app.commit()
    with refused("LL003", r"^invoice id=1 is referenced by payment id=9 and cannot be updated$"):
        app.execute("UPDATE invoice SET paid = false, amount = 101 WHERE id = 1")
    app.rollback()
    assert app.execute("SELECT paid, reconciled, amount FROM invoice WHERE id = 1").fetchone() == (True, True, 100)


def test_a_mutable_value_that_jsonb_cannot_carry_exactly_is_decided_by_the_guard(db):
    """float8 -0 comes back from jsonb as 0: the WHEN clause cannot tell that the rest of the row stayed, so
    it calls the guard, whose own comparison is exact and lets the update through."""
    db.owner().execute(f"""
        ALTER DATABASE {db.name} SET track_functions = 'pl';
        CREATE TABLE f_doc (id integer PRIMARY KEY, issued_on date NOT NULL, amount numeric NOT NULL,
                            rate float8 NOT NULL DEFAULT '-0');
        CREATE TABLE f_pay (id integer PRIMARY KEY, doc_id integer NOT NULL REFERENCES f_doc);
        CREATE INDEX ON f_pay (doc_id);
        GRANT SELECT, INSERT, UPDATE, DELETE ON f_doc, f_pay TO ll_app;
        SELECT ledgerlock.protect('f_doc', 'issued_on', mutable_columns => '{{rate}}');
        SELECT ledgerlock.protect_referenced('f_doc', 'f_pay');
    """)
    guard = db.owner().execute("SELECT proname FROM pg_proc WHERE proname ~ '^_ll30_r[0-9]+_parent$'").fetchone()[0]
    app = db.connect("app", autocommit=False)
    app.execute("INSERT INTO f_doc (id, issued_on, amount) VALUES (1, '2026-01-05', 10)")
    app.execute("INSERT INTO f_pay VALUES (9, 1)")
    app.commit()
    lives_ok(app, "UPDATE f_doc SET rate = 1 WHERE id = 1")  # the old -0 does not survive jsonb
    assert guard_calls(app, guard) == 1
    lives_ok(app, "UPDATE f_doc SET rate = 2 WHERE id = 1")  # the old 1 does (under every extra_float_digits)
    assert guard_calls(app, guard) == 1
    app.commit()
    with refused("LL003", r"^f_doc id=1 is referenced by f_pay id=9 and cannot be updated$"):
        app.execute("UPDATE f_doc SET rate = 3, amount = 11 WHERE id = 1")
