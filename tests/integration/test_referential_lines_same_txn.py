"""R4: a header and its lines committed together are one document.

Lines may be inserted into (and changed in, or deleted from) a header that became final in the current
transaction; once that transaction has committed, they are frozen like the lines of any final header. The
exemption comes only from ledgerlock's own record of the header becoming final in this transaction: an
update of a header that was already final (a mutable column) reopens nothing, and no client can forge one.
"""

from __future__ import annotations

import psycopg
import pytest

from lltest import Background, refused

LATE_LINE = r"^invoice_line id={line} cannot be inserted: its header invoice id={inv} is final; " \
            r"issue a correcting document instead$"


@pytest.fixture
def app(db):
    """invoice 1 final since an earlier transaction (line 11), invoice 2 draft (line 21); lines follow their
    header. The returned app connection is not in autocommit: each test decides its transactions."""
    db.protect_invoice()
    db.owner().execute("SELECT ledgerlock.protect_lines('invoice_line', 'invoice')")
    setup = db.connect("app")
    setup.execute("INSERT INTO invoice (id, company_id, amount) VALUES (1, 1, 100), (2, 1, 200)")
    setup.execute("INSERT INTO invoice_line (id, invoice_id, description) VALUES (11, 1, 'a'), (21, 2, 'b')")
    setup.execute("UPDATE invoice SET status = 'approved' WHERE id = 1")
    return db.connect("app", autocommit=False)


def lines_of(conn, invoice_id):
    return [r[0] for r in conn.execute("SELECT id FROM invoice_line WHERE invoice_id = %s ORDER BY id",
                                       (invoice_id,)).fetchall()]


def test_lines_go_into_a_header_inserted_final_in_the_same_transaction(app):
    with app.transaction():
        app.execute("INSERT INTO invoice (id, company_id, amount, status) VALUES (5, 1, 50, 'approved')")
        app.execute("INSERT INTO invoice_line (id, invoice_id, description) VALUES (51, 5, 'x'), (52, 5, 'y'), "
                    "(53, 5, 'z')")
        app.execute("UPDATE invoice_line SET description = 'x2' WHERE id = 51")
        app.execute("DELETE FROM invoice_line WHERE id = 53")
    assert lines_of(app, 5) == [51, 52]
    app.commit()
    # committed: the document is whole, its lines are frozen
    with refused("LL001", LATE_LINE.format(line=54, inv=5)):
        with app.transaction():
            app.execute("INSERT INTO invoice_line (id, invoice_id, description) VALUES (54, 5, 'late')")
    with refused("LL001", r"^invoice_line id=51 cannot be updated: its header invoice id=5 is final"):
        with app.transaction():
            app.execute("UPDATE invoice_line SET description = 'x3' WHERE id = 51")
    with refused("LL001", r"^invoice_line id=52 cannot be deleted: its header invoice id=5 is final"):
        with app.transaction():
            app.execute("DELETE FROM invoice_line WHERE id = 52")
    assert lines_of(app, 5) == [51, 52]


def test_lines_go_into_a_header_finalized_in_the_same_transaction(app):
    with app.transaction():
        app.execute("UPDATE invoice SET status = 'approved' WHERE id = 2")
        app.execute("INSERT INTO invoice_line (id, invoice_id, description) VALUES (22, 2, 'more')")
        app.execute("UPDATE invoice_line SET description = 'b2' WHERE id = 21")
    assert lines_of(app, 2) == [21, 22]
    with refused("LL001", LATE_LINE.format(line=23, inv=2)):
        with app.transaction():
            app.execute("INSERT INTO invoice_line (id, invoice_id, description) VALUES (23, 2, 'late')")


def test_a_mutable_update_of_a_header_final_before_reopens_nothing(app):
    """The update writes a new header tuple in this transaction, but the header was final before it."""
    with refused("LL001", LATE_LINE.format(line=12, inv=1)):
        with app.transaction():
            app.execute("UPDATE invoice SET paid = true WHERE id = 1")
            app.execute("INSERT INTO invoice_line (id, invoice_id, description) VALUES (12, 1, 'late')")
    with refused("LL001", r"^invoice_line id=11 cannot be deleted: its header invoice id=1 is final"):
        with app.transaction():
            app.execute("UPDATE invoice SET paid = true, reconciled = true WHERE id = 1")
            with app.transaction():  # a savepoint changes nothing
                app.execute("UPDATE invoice SET paid = false WHERE id = 1")
                app.execute("DELETE FROM invoice_line WHERE id = 11")
    # the permitted neighbour: the mutable update alone commits
    with app.transaction():
        app.execute("UPDATE invoice SET paid = true WHERE id = 1")
    assert lines_of(app, 1) == [11]


def test_a_line_moves_between_headers_finalized_in_the_same_transaction_only(app):
    with app.transaction():
        app.execute("INSERT INTO invoice (id, company_id, amount, status) VALUES (6, 1, 60, 'approved')")
        app.execute("UPDATE invoice SET status = 'approved' WHERE id = 2")
        app.execute("UPDATE invoice_line SET invoice_id = 6 WHERE id = 21")
    assert lines_of(app, 6) == [21]
    with refused("LL001", r"^invoice_line id=71 cannot be moved to invoice id=1: that header is final"):
        with app.transaction():
            app.execute("INSERT INTO invoice (id, company_id, amount, status) VALUES (7, 1, 70, 'approved'), "
                        "(9, 1, 90, 'approved')")
            app.execute("INSERT INTO invoice_line (id, invoice_id, description) VALUES (71, 7, 'x')")
            app.execute("UPDATE invoice_line SET invoice_id = 9 WHERE id = 71")  # fine: 7 and 9 are new...
            app.execute("UPDATE invoice_line SET invoice_id = 1 WHERE id = 71")  # ...1 was final before
    with refused("LL001", r"^invoice_line id=21 cannot be moved: its header invoice id=6 is final"):
        with app.transaction():
            app.execute("INSERT INTO invoice (id, company_id, amount, status) VALUES (7, 1, 70, 'approved')")
            app.execute("UPDATE invoice_line SET invoice_id = 7 WHERE id = 21")  # 6 was committed final


def test_savepoints_finalized_in_a_released_savepoint_counts_a_rolled_back_one_does_not(app):
    with app.transaction():
        with app.transaction():  # released
            app.execute("UPDATE invoice SET status = 'approved' WHERE id = 2")
        app.execute("INSERT INTO invoice_line (id, invoice_id, description) VALUES (22, 2, 'more')")
    assert lines_of(app, 2) == [21, 22]
    app.execute("INSERT INTO invoice (id, company_id, amount) VALUES (8, 1, 80)")
    app.commit()
    with app.transaction():
        try:
            with app.transaction():
                app.execute("UPDATE invoice SET status = 'approved' WHERE id = 8")
                raise RuntimeError("roll the savepoint back")
        except RuntimeError:
            pass
        # the header is a draft again, and its lines with it
        app.execute("INSERT INTO invoice_line (id, invoice_id, description) VALUES (81, 8, 'draft line')")
    assert lines_of(app, 8) == [81]


def test_a_line_written_while_another_transaction_finalizes_the_header_waits_and_is_refused(db, app):
    """The mark is the finalizing transaction's alone: a concurrent line waits on the header's row lock and,
    once the header is committed final, is refused; the finalizing transaction's own line goes in."""
    app.execute("UPDATE invoice SET status = 'approved' WHERE id = 2")
    other = db.connect("app")
    other.execute("SET lock_timeout = '20s'")
    b = Background(other, "INSERT INTO invoice_line (id, invoice_id, description) VALUES (23, 2, 'concurrent')")
    b.wait_until_blocked(db.owner())
    app.execute("INSERT INTO invoice_line (id, invoice_id, description) VALUES (22, 2, 'own')")
    app.commit()
    b.join()
    assert b.error is not None and b.error.diag.sqlstate == "LL001", b.error
    assert b.error.diag.message_primary.startswith("invoice_line id=23 cannot be inserted: its header invoice id=2 "
                                                   "is final")
    assert lines_of(app, 2) == [21, 22]


def test_no_client_can_write_a_mark(db, app):
    rule = db.owner().execute("SELECT id FROM ledgerlock.reference_rule WHERE kind = 'lines'").fetchone()[0]
    with refused("42501", r"permission denied"):
        app.execute("INSERT INTO ledgerlock.header_final_mark VALUES (pg_current_xact_id(), "
                    "pg_postmaster_start_time(), %s, '[1]')", (rule,))
    app.rollback()
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        app.execute("SELECT * FROM ledgerlock.header_final_mark")
    app.rollback()


def test_marks_of_finished_transactions_are_pruned(db, app):
    for inv in (30, 31, 32):
        with app.transaction():
            app.execute("INSERT INTO invoice (id, company_id, amount, status) VALUES (%s, 1, 1, 'approved')", (inv,))
    app.commit()
    # each finalization prunes the marks of the transactions that finished before it
    assert db.owner().execute("SELECT count(*) FROM ledgerlock.header_final_mark").fetchone()[0] <= 1


def test_a_rounded_float_key_opens_no_other_header(db):
    """Keys are compared exactly, whatever the client prints: under extra_float_digits = -15 the keys
    1.2000000000000002 and 1.2 print alike, yet a mark for the fresh header 1.2 opens nothing of the other."""
    db.owner().execute("""
        CREATE TABLE fx_doc (rate float8 PRIMARY KEY, status text NOT NULL, issued_on date NOT NULL);
        CREATE TABLE fx_doc_line (id integer PRIMARY KEY, rate float8 NOT NULL REFERENCES fx_doc);
        CREATE INDEX ON fx_doc_line (rate);
        GRANT SELECT, INSERT, UPDATE, DELETE ON fx_doc, fx_doc_line TO ll_app;
        SELECT ledgerlock.protect('fx_doc', 'issued_on', final_when => $$status = 'final'$$);
        SELECT ledgerlock.protect_lines('fx_doc_line', 'fx_doc');
    """)
    app = db.connect("app")
    app.execute("INSERT INTO fx_doc VALUES (1.2000000000000002, 'final', '2026-01-05')")
    app.execute("SET extra_float_digits = -15")
    tx = db.connect("app", autocommit=False)
    tx.execute("SET extra_float_digits = -15")
    tx.commit()
    with refused("LL001", r"^fx_doc_line id=2 cannot be inserted: its header fx_doc .* is final"):
        with tx.transaction():
            tx.execute("INSERT INTO fx_doc VALUES (1.2, 'final', '2026-01-05')")
            tx.execute("INSERT INTO fx_doc_line VALUES (1, 1.2)")  # the fresh header: fine
            tx.execute("INSERT INTO fx_doc_line VALUES (2, 1.2000000000000002)")
    with tx.transaction():
        tx.execute("INSERT INTO fx_doc VALUES (1.2, 'final', '2026-01-05')")
        tx.execute("INSERT INTO fx_doc_line VALUES (1, 1.2)")
    assert app.execute("SELECT count(*) FROM fx_doc_line").fetchone()[0] == 1
