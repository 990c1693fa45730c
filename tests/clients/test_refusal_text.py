"""What an ORM user reads when ledgerlock refuses: the message and hint carry the facts (table, key, final
number, period, lock id, the way out), and str(e) in Django and SQLAlchemy carries no internal SQL.

The CONTEXT a refusal carries is built by PostgreSQL from the call stack at the RAISE: one line per PL/pgSQL
frame, plus the full text of every query run through SPI on the way (PERFORM is such a query). No server
setting hides it (libpq's PQsetErrorContextVisibility is client-side, and psycopg 3 does not expose it). The
scratch guards (scratch_guard.sql) measure the two ways a guard can call _refuse."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest
from clientsupport import LOCKED_DAY, OPEN_DAY, configure_django
from django.db import DatabaseError, connection
from ll_erp_sqlalchemy import Invoice as SaInvoice
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from ledgerlock.errors import FinalizedRowError, PeriodLockedError

configure_django()  # before the models are imported
from ll_erp_django.models import Invoice as DjInvoice  # noqa: E402

FRAME = re.compile(r"^PL/pgSQL function [\w.]+\([\w ,\[\]]*\) line \d+ at [A-Za-z ]+$")


def context_lines(shown: str) -> list[str]:
    """The CONTEXT block of an error's text (up to SQLAlchemy's own "[SQL: …]" block, which is the user's
    statement)."""
    lines = shown.split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("CONTEXT:  "))
    block = [lines[start].removeprefix("CONTEXT:  ")]
    for line in lines[start + 1:]:
        if line.startswith("[SQL: ") or not line:
            break
        block.append(line)
    return block


def internal_sql(shown: str) -> list[str]:
    """The lines of an error's CONTEXT that are not a function frame: SQL text run on the way to the RAISE."""
    return [line for line in context_lines(shown) if not FRAME.match(line)]


def test_r1_refusal_in_django_names_table_key_number_and_the_mutable_columns(django_erp):
    invoice = DjInvoice.objects.create(company_id=1, issued_on=OPEN_DAY, status="approved")
    invoice.amount = Decimal("1.00")
    with pytest.raises(DatabaseError) as info:
        invoice.save()
    error = info.value.__cause__
    assert isinstance(error, FinalizedRowError)
    assert error.diag.message_primary == (
        "invoice id=1 (INV-2024-00001) is final and cannot be updated; issue a correcting document instead")
    assert error.diag.message_hint == "only paid, reconciled, updated may still change on a final row"
    assert str(info.value).startswith(error.diag.message_primary + "\nHINT:  " + error.diag.message_hint)
    assert internal_sql(str(info.value)) == []  # function frames only: no SQL of ledgerlock's internals


def test_r3_refusal_in_sqlalchemy_names_period_scope_row_and_the_lock(erp, sqla):
    with Session(sqla()) as session:
        session.add(SaInvoice(company_id=1, issued_on=LOCKED_DAY))
        with pytest.raises(DBAPIError) as info:
            session.commit()
    error = info.value.orig
    assert isinstance(error, PeriodLockedError)
    assert error.diag.message_primary == (
        "Period 2024-01-01..2024-01-31 is locked (soft) for scope 1: invoice id=1 cannot be inserted")
    assert error.diag.message_hint.startswith("soft lock #1: a controller can write with SELECT "
                                              "ledgerlock.begin_override('<reason>') in the same transaction")
    assert error.diag.message_detail == "lock_id=1"
    assert error.diag.message_primary in str(info.value)
    assert internal_sql(str(info.value)) == []


@pytest.fixture
def scratch(erp):
    erp.owner().execute((Path(__file__).parent / "scratch_guard.sql").read_text())
    erp.owner().execute("INSERT INTO scratch_doc (status) VALUES ('final'), ('final')")
    return erp


def guard(db, form: str) -> None:
    db.owner().execute("DROP TRIGGER IF EXISTS scratch_guard ON scratch_doc")
    db.owner().execute(f"CREATE TRIGGER scratch_guard BEFORE UPDATE OF amount ON scratch_doc FOR EACH ROW "
                       f"EXECUTE FUNCTION public.scratch_guard('{form}')")


def test_a_guard_calling_refuse_as_an_expression_shows_no_internal_sql_in_django(scratch, django_erp):
    guard(scratch, "assign")
    with pytest.raises(DatabaseError) as info, connection.cursor() as cur:
        cur.execute("UPDATE scratch_doc SET amount = 1 WHERE id = 1")
    shown = str(info.value)
    assert shown.startswith("scratch_doc id=1 is final and cannot be updated; issue a correcting document instead\n"
                            "HINT:  only status may still change on a final row\nCONTEXT:  ")
    assert internal_sql(shown) == []
    assert len(context_lines(shown)) == 3  # _refuse, the helper, the guard: one frame each
    with connection.cursor() as cur:  # the neighbour: a column the guard does not watch
        cur.execute("UPDATE scratch_doc SET status = 'paid' WHERE id = 1")


def test_a_guard_calling_refuse_as_an_expression_shows_no_internal_sql_in_sqlalchemy(scratch, sqla):
    guard(scratch, "assign")
    with sqla().connect() as conn:
        with pytest.raises(DBAPIError) as info:
            conn.execute(text("UPDATE scratch_doc SET amount = 1 WHERE id = 2"))
        assert isinstance(info.value.orig, FinalizedRowError)
        assert internal_sql(str(info.value)) == []
        assert "[SQL: UPDATE scratch_doc SET amount = 1 WHERE id = 2]" in str(info.value)  # the user's own


def test_a_guard_calling_refuse_through_perform_shows_its_internal_sql(scratch, django_erp):
    """The control: the check above can fail, and fails the way the rule guards' refusals read today."""
    guard(scratch, "perform")
    with pytest.raises(DatabaseError) as info, connection.cursor() as cur:
        cur.execute("UPDATE scratch_doc SET amount = 1 WHERE id = 1")
    leaked = internal_sql(str(info.value))
    assert leaked[0].startswith('SQL statement "SELECT ledgerlock._refuse(\'LL001\',')
    assert any(line.startswith('SQL statement "SELECT public.scratch_refuse_final(') for line in leaked)
