"""The WHEN clause that lets a mutable-only update of a final row by (R1, and R3 in a locked window) while the
table's shape changes under it. The clause compares the new row, its exempt columns put back, with the old
row whole: a column added by a concurrent ALTER TABLE counts as a change whichever side commits first.
Real connections with explicit steps: one holds its statement's lock uncommitted, the other is shown to
wait, then the first commits."""

from __future__ import annotations

import pytest

from lltest import Background, end_other_sessions, lives_ok, refused, sqlstate


@pytest.fixture
def final_invoice(db):
    db.protect_invoice()
    db.connect("app").execute("INSERT INTO invoice (id, company_id, amount, status, issued_on) "
                              "VALUES (1, 1, 100, 'approved', '2025-01-15')")
    db.connect("admin").execute("SELECT ledgerlock.lock_period('1', '2025-01-01', '2025-01-31', 'hard')")
    yield db
    end_other_sessions(db)


def test_a_column_added_while_a_mutable_update_is_open_counts_as_a_change_once_committed(final_invoice):
    db = final_invoice
    first = db.connect("app", autocommit=False)
    lives_ok(first, "UPDATE invoice SET paid = true WHERE id = 1")  # mutable only: let by, lock held
    ddl = Background(db.owner(), "ALTER TABLE invoice ADD COLUMN memo text")
    ddl.wait_until_blocked(db.owner())
    first.commit()
    ddl.join()
    assert ddl.error is None
    app = db.connect("app")
    with refused("LL001", r"^invoice id=1 is final and cannot be updated"):
        app.execute("UPDATE invoice SET memo = 'x' WHERE id = 1")
    with refused("LL001", r"^invoice id=1 is final and cannot be updated"):
        app.execute("UPDATE invoice SET paid = false, memo = 'x' WHERE id = 1")
    lives_ok(app, "UPDATE invoice SET paid = false, reconciled = true WHERE id = 1")
    assert app.execute("SELECT paid, reconciled, memo FROM invoice WHERE id = 1").fetchone() == (False, True, None)


def test_an_update_waiting_for_a_column_being_added_is_judged_with_the_column(final_invoice):
    db = final_invoice
    ddl = db.connect("owner", autocommit=False)
    ddl.execute("ALTER TABLE invoice ADD COLUMN memo text DEFAULT 'none'")
    refused_write = Background(db.connect("app"), "UPDATE invoice SET paid = true, memo = 'x' WHERE id = 1")
    allowed_write = Background(db.connect("app"), "UPDATE invoice SET reconciled = true WHERE id = 1")
    refused_write.wait_until_blocked(db.owner())
    allowed_write.wait_until_blocked(db.owner())
    ddl.commit()
    refused_write.join()
    allowed_write.join()
    assert sqlstate(refused_write.error) == "LL001"
    assert allowed_write.error is None
    assert db.owner().execute("SELECT paid, reconciled, memo FROM invoice WHERE id = 1").fetchone() == (
        False, True, "none")


# --- R1's comparisons (one per set of exempt columns) created and dropped by concurrent installers -------------

PROTECT = ("SELECT ledgerlock.protect({table!r}, date_column => 'issued_on', scope_column => 'company_id', "
           "final_when => $$status in ('approved','paid')$$, mutable_columns => {mutable!r})")


@pytest.fixture
def twins(db):
    db.owner().execute("CREATE TABLE offer (LIKE invoice INCLUDING ALL); "
                       "CREATE TABLE bill (LIKE invoice INCLUDING ALL); "
                       "GRANT SELECT, INSERT, UPDATE, DELETE ON offer, bill TO ll_app")
    yield db
    end_other_sessions(db)


def comparison_of(conn, table):
    """The comparison the table's R1 update guard calls."""
    return conn.execute("SELECT substring(pg_get_triggerdef(oid) from 'ledgerlock\\.(_ll10_x[0-9a-f]+_changed)') "
                        "FROM pg_trigger WHERE tgrelid = %s::regclass AND tgname = 'll_10_final_update'",
                        (table,)).fetchone()[0]


def test_a_table_protected_while_another_with_the_same_exempt_columns_is_waits_then_shares_its_comparison(twins):
    """protect() of offer creates the comparison of {paid} and has not committed; protect() of bill with the same
    set waits for it (protect() calls queue on the period mark clock, and the comparison has a lock of its own
    for installers that do not: a partition's, run by the DDL guard), then calls the same function; the first
    one rolled back instead, the second creates it itself."""
    db = twins
    owner = db.owner()
    for outcome in ("commit", "rollback"):
        first = db.connect("owner", autocommit=False)
        first.execute(PROTECT.format(table="offer", mutable="{paid}"))
        second = Background(db.connect("owner", autocommit=False), PROTECT.format(table="bill", mutable="{paid}"))
        assert second.wait_until_blocked(owner) in ("transactionid", "tuple")
        getattr(first, outcome)()
        second.join()
        assert second.error is None, second.error
        second.conn.commit()
        assert comparison_of(owner, "bill") is not None
        if outcome == "commit":
            assert comparison_of(owner, "bill") == comparison_of(owner, "offer")
            owner.execute("SELECT ledgerlock.unprotect('offer', 'again'); SELECT ledgerlock.unprotect('bill', 'again')")
    app = db.connect("app")
    app.execute("INSERT INTO bill (id, company_id, amount, status) VALUES (1, 1, 10, 'approved')")
    lives_ok(app, "UPDATE bill SET paid = true WHERE id = 1")
    with refused("LL001", r"^bill id=1 is final"):
        app.execute("UPDATE bill SET amount = 11 WHERE id = 1")


def test_an_installer_holding_its_own_set_never_waits_for_another_set_in_use(twins):
    """A referential rule installed while protect() of another table holds the lock of its own set: the rule's
    install neither waits for that lock nor takes it (only unused comparisons are locked, to be dropped)."""
    db = twins
    owner = db.owner()
    owner.execute(PROTECT.format(table="bill", mutable="{note}"))
    owner.execute("CREATE TABLE bill_line (id int PRIMARY KEY, bill_id int NOT NULL REFERENCES bill);"
                  "CREATE INDEX ON bill_line (bill_id)")
    first = db.connect("owner", autocommit=False)
    first.execute(PROTECT.format(table="offer", mutable="{paid}"))
    rule = Background(db.connect("admin"), "SELECT ledgerlock.protect_referenced('bill', 'bill_line')")
    rule.join()  # a wait would end in lock_timeout (55P03)
    assert rule.error is None, rule.error
    first.commit()
    assert comparison_of(owner, "offer") != comparison_of(owner, "bill")


def test_the_application_cannot_stall_protect_through_a_comparison_s_lock(twins):
    """The lock that serializes a comparison's creation and dropping is its fingerprint row, which the application
    can neither lock nor write; an advisory lock it holds on any key (ledgerlock takes none) stalls nothing."""
    db = twins
    owner = db.owner()
    owner.execute(PROTECT.format(table="offer", mutable="{paid}"))
    name = comparison_of(owner, "offer")
    app = db.connect("app", autocommit=False)
    app.execute("SELECT pg_advisory_lock(hashtext(%s)), pg_advisory_lock(hashtext(%s))",
                (name, f"ledgerlock.{name}"))
    with refused("42501"):
        app.execute("SELECT FROM ledgerlock.code_fingerprint FOR UPDATE")
    app.rollback()
    app.execute("SELECT pg_advisory_lock(hashtext(%s))", (f"ledgerlock.{name}",))
    bill = Background(db.connect("owner"), PROTECT.format(table="bill", mutable="{paid}"))
    bill.join()  # a wait would end in lock_timeout (55P03)
    assert bill.error is None, bill.error
    assert comparison_of(owner, "bill") == name
