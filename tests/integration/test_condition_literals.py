"""A stored condition (final_when, child_condition) is read over OLD, NEW or a query's alias by rewriting its
column qualifiers only: a string literal that contains "ll_row." keeps its value in R1, R2, R4, why and
number_gaps (ledgerlock._condition_as)."""

from __future__ import annotations

import pytest

from lltest import refused

FINAL = "status in ('approved', 'paid') or note = 'll_row.final'"  # the literal looks like a qualifier


@pytest.fixture
def app(db):
    db.protect_invoice(number_column="number", number_format="INV-{YYYY}-{SEQ:5}", final_when=FINAL)
    return db.connect("app")


def test_condition_as_rewrites_qualifiers_and_keeps_literals_and_quoted_names(db):
    owner = db.owner()
    got = owner.execute(
        "SELECT ledgerlock._condition_as($$((ll_row.note = 'll_row.x'::text) AND (ll_row.\"ll_row.y\" <> 'it''s "
        "ll_row.z'::text))$$, a) FROM unnest(ARRAY['OLD', 'n', '']) a").fetchall()
    assert [g[0] for g in got] == [
        "((OLD.note = 'll_row.x'::text) AND (OLD.\"ll_row.y\" <> 'it''s ll_row.z'::text))",
        "((n.note = 'll_row.x'::text) AND (n.\"ll_row.y\" <> 'it''s ll_row.z'::text))",
        "((note = 'll_row.x'::text) AND (\"ll_row.y\" <> 'it''s ll_row.z'::text))",
    ]


def test_r2_numbers_a_row_made_final_by_the_literal_and_number_gaps_counts_it(db, app):
    app.execute("INSERT INTO invoice (id, company_id, issued_on, note) VALUES (1, 1, '2026-03-02', 'll_row.final')")
    app.execute("INSERT INTO invoice (id, company_id, issued_on, note) VALUES (2, 1, '2026-03-02', 'll_row.draft')")
    app.execute("UPDATE invoice SET note = 'll_row.final' WHERE id = 2")
    got = app.execute("SELECT id, number FROM invoice ORDER BY id").fetchall()
    assert got == [(1, "INV-2026-00001"), (2, "INV-2026-00002")]
    assert db.owner().execute("SELECT * FROM ledgerlock.number_gaps('invoice')").fetchall() == []


def test_r1_refuses_an_update_of_a_row_final_by_the_literal_and_lets_its_mutable_columns_change(app):
    app.execute("INSERT INTO invoice (id, company_id, issued_on, note) VALUES (1, 1, '2026-03-02', 'll_row.final')")
    with refused("LL001", r"^invoice id=1 \(INV-2026-00001\) is final and cannot be updated"):
        app.execute("UPDATE invoice SET amount = 5 WHERE id = 1")
    with refused("LL001", r"^invoice id=1 \(INV-2026-00001\) is final and cannot be deleted"):
        app.execute("DELETE FROM invoice WHERE id = 1")
    app.execute("UPDATE invoice SET paid = true WHERE id = 1")  # the permitted neighbour
    assert app.execute("SELECT paid FROM invoice WHERE id = 1").fetchone() == (True,)


def test_why_dates_the_finalization_by_the_write_that_made_the_row_final(db, app):
    app.execute("INSERT INTO invoice (id, company_id, issued_on, note) VALUES (1, 1, '2026-03-02', 'x')")
    with app.transaction():
        app.execute("SET LOCAL ledgerlock.actor = 'alice'")
        app.execute("UPDATE invoice SET note = 'll_row.final' WHERE id = 1")
    with app.transaction():
        app.execute("SET LOCAL ledgerlock.actor = 'bob'")
        app.execute("UPDATE invoice SET paid = true WHERE id = 1")  # final before and after: not the moment
    why = "SELECT details FROM ledgerlock.why_locked('invoice', '1') WHERE rule = 'final'"
    (details,) = db.connect("controller").execute(why).fetchone()  # by whom: for the trail's readers
    assert details["actor"] == "alice"
    assert "actor" not in app.execute(why).fetchone()[0]


def test_r4_child_condition_literal_still_locks_the_parent_from_the_child_side(db):
    """A matching line being written share-locks its invoice: a concurrent update of the invoice waits."""
    owner = db.owner()
    owner.execute("INSERT INTO invoice (id, company_id, issued_on) VALUES (1, 1, '2026-03-02')")
    owner.execute("SELECT ledgerlock.protect_referenced('invoice', 'invoice_line', "
                  "child_condition => $$description <> 'll_row.draft'$$)")
    writer = db.connect("app", autocommit=False)
    writer.execute("INSERT INTO invoice_line (invoice_id, description) VALUES (1, 'NEW.draft')")  # matches
    other = db.connect("app")
    other.execute("SET lock_timeout = '2s'")
    with refused("55P03"):  # lock_not_available: the line's transaction holds the invoice row
        other.execute("UPDATE invoice SET note = 'changed' WHERE id = 1")
    writer.commit()
    with refused("LL003", r"^invoice id=1 is referenced by invoice_line id=\d+"):
        other.execute("UPDATE invoice SET note = 'changed' WHERE id = 1")
    writer.execute("INSERT INTO invoice_line (invoice_id, description) VALUES (1, 'll_row.draft')")
    writer.execute("DELETE FROM invoice_line WHERE description = 'NEW.draft'")
    writer.commit()
    other.execute("UPDATE invoice SET note = 'changed' WHERE id = 1")  # a non-matching line freezes nothing
    assert other.execute("SELECT note FROM invoice WHERE id = 1").fetchone() == ("changed",)



def test_a_condition_may_name_a_column_called_x(db):
    """A condition is parsed over the table and a helper that makes PostgreSQL qualify its columns. The
    helper once had a column of its own, x: final_when over a table's column x was refused as ambiguous."""
    owner = db.owner()
    owner.execute("CREATE TABLE point (id int PRIMARY KEY, x int NOT NULL, y int, made_on date NOT NULL)")
    owner.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON point TO ll_app")
    owner.execute("SELECT ledgerlock.protect('point', date_column => 'made_on', final_when => 'x > 0')")
    app = db.connect("app")
    app.execute("INSERT INTO point VALUES (1, 0, 0, '2026-01-01'), (2, 5, 0, '2026-01-01')")
    with refused("LL001", r"^point id=2 is final and cannot be updated"):
        app.execute("UPDATE point SET y = 1 WHERE id = 2")
    app.execute("UPDATE point SET y = 1 WHERE id = 1")  # the neighbour: x = 0, not final
    assert app.execute("SELECT id, y FROM point ORDER BY id").fetchall() == [(1, 1), (2, 0)]
    when = owner.execute("SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = 'point'::regclass "
                         "AND tgname = 'll_10_final_update'").fetchone()[0]
    assert "(old.x > 0)" in when
