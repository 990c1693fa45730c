"""What an ORM user reads when R2 refuses to number (LL009): the message and hint say which row and what to
do, and str(e) in Django and SQLAlchemy carries no internal SQL of ledgerlock's generated numbering
functions (the refusals are called as expressions, as test_refusal_text.py explains for R1 and R3)."""

from __future__ import annotations

import pytest
from clientsupport import OPEN_DAY, assert_gapless, numbers
from django.db import DatabaseError, connection
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from test_refusal_text import context_lines, internal_sql

from ledgerlock.errors import NumberingError


@pytest.fixture
def undated(erp):
    """The ERP's invoices with a date that may be missing: a final row without one cannot be numbered."""
    erp.owner().execute("ALTER TABLE invoice ALTER COLUMN issued_on DROP NOT NULL")
    return erp


def test_an_unnumberable_final_row_in_django_names_the_row_and_the_missing_date(undated, django_erp):
    with pytest.raises(DatabaseError) as info, connection.cursor() as cur:
        cur.execute("INSERT INTO invoice (id, company_id, status, issued_on) VALUES (7, 1, 'approved', NULL)")
    error = info.value.__cause__
    assert isinstance(error, NumberingError)
    assert error.diag.message_primary == (
        "invoice id=7 cannot get a final number: its issued_on is empty, and the number format needs the date")
    assert error.diag.message_hint == "set issued_on before the row becomes final"
    assert internal_sql(str(info.value)) == []  # function frames only
    assert len(context_lines(str(info.value))) == 3  # _refuse, _refuse_unnumberable, the generated trigger
    with connection.cursor() as cur:  # the neighbour: the same row with its date
        cur.execute("INSERT INTO invoice (id, company_id, status, issued_on) VALUES (7, 1, 'approved', %s)",
                    [OPEN_DAY])
    assert numbers(undated) == ["INV-2024-00001"]


def test_a_statement_numbering_refusal_in_sqlalchemy_shows_no_internal_sql(erp, sqla):
    """An import run with ON CONFLICT DO NOTHING that skips a final row between two it inserts: the skipped
    row took a number, so the statement is refused whole (the settle step)."""
    with sqla().connect() as conn:
        conn.execute(text("INSERT INTO invoice (id, company_id, status, issued_on) "
                          "VALUES (1, 1, 'approved', :d)"), {"d": OPEN_DAY})
        conn.commit()
        statement = ("INSERT INTO invoice (id, company_id, status, issued_on) VALUES (1, 1, 'approved', :d), "
                     "(2, 1, 'approved', :d) ON CONFLICT (id) DO NOTHING")
        with pytest.raises(DBAPIError) as info:
            conn.execute(text(statement), {"d": OPEN_DAY})
        conn.rollback()
        assert isinstance(info.value.orig, NumberingError)
        assert "leave a hole after 1" in info.value.orig.diag.message_primary
        assert internal_sql(str(info.value)) == []
        conn.execute(text("INSERT INTO invoice (id, company_id, status, issued_on) VALUES (2, 1, 'approved', :d) "
                          "ON CONFLICT (id) DO NOTHING"), {"d": OPEN_DAY})  # the neighbour: only new rows
        conn.commit()
    assert numbers(erp) == ["INV-2024-00001", "INV-2024-00002"]
    assert_gapless(erp)
