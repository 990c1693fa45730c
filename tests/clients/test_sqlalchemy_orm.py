"""SQLAlchemy 2's ORM (psycopg 3 driver) on protected tables: finalization on flush, the final number on the
object through RETURNING, insertmanyvalues batches, refusals surfaced as ledgerlock's exception classes
through ``.orig``, mutable columns, an override inside a transaction, and rollbacks that leave nothing."""

from __future__ import annotations

from decimal import Decimal

import pytest
from clientsupport import LOCKED_DAY, OPEN_DAY, assert_gapless, invoice_events, numbers
from ll_erp_sqlalchemy import Invoice, InvoiceLine
from sqlalchemy import event, func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from ledgerlock.errors import FinalizedRowError, PeriodLockedError


def ledgerlock_error(info: pytest.ExceptionInfo) -> Exception:
    """What a SQLAlchemy user catches: a DBAPIError whose .orig is psycopg's exception, which is ledgerlock's
    class once ledgerlock.errors is imported."""
    assert isinstance(info.value, DBAPIError)
    return info.value.orig


def test_flush_finalizes_and_returning_puts_the_number_on_the_object(erp, sqla):
    with Session(sqla()) as session, session.begin():
        invoice = Invoice(company_id=1, issued_on=OPEN_DAY, amount=Decimal("120.00"))
        session.add(invoice)
        session.flush()
        assert invoice.number == "DRAFT-1"
        invoice.status = "approved"
        session.flush()  # UPDATE … RETURNING number, updated
        assert invoice.number == "INV-2024-00001"
    assert numbers(erp) == ["INV-2024-00001"]


def test_insertmanyvalues_numbers_a_batch_in_one_statement(erp, sqla):
    engine = sqla()
    inserts = []
    event.listen(engine, "before_cursor_execute",
                 lambda conn, cur, stmt, params, ctx, many: inserts.append(stmt) if stmt.startswith("INSERT") else None)
    with Session(engine) as session, session.begin():
        batch = [Invoice(company_id=1, issued_on=OPEN_DAY, status="approved" if i % 2 else "draft") for i in range(6)]
        session.add_all(batch)
        session.flush()
        assert [i.number for i in batch] == ["DRAFT-1", "INV-2024-00001", "DRAFT-2", "INV-2024-00002", "DRAFT-3",
                                             "INV-2024-00003"]
    assert len(inserts) == 1 and "RETURNING" in inserts[0]
    assert_gapless(erp)


def test_changing_a_guarded_column_of_a_final_row_is_refused(erp, sqla):
    with Session(sqla()) as session:
        invoice = Invoice(company_id=1, issued_on=OPEN_DAY, status="approved", amount=Decimal("50.00"))
        session.add(invoice)
        session.commit()
        invoice.amount = Decimal("0.00")
        with pytest.raises(DBAPIError) as info:
            session.commit()
        error = ledgerlock_error(info)
        assert isinstance(error, FinalizedRowError)
        assert error.sqlstate == "LL001"
        assert error.diag.message_primary.startswith("invoice id=1 (INV-2024-00001) is final and cannot be updated")
        assert error.diag.message_hint == "only paid, reconciled, updated may still change on a final row"
        session.rollback()
        assert session.get(Invoice, invoice.id).amount == Decimal("50.00")


def test_changing_only_mutable_columns_of_a_final_row_succeeds(erp, sqla):
    with Session(sqla()) as session:
        invoice = Invoice(company_id=1, issued_on=OPEN_DAY, status="approved")
        session.add(invoice)
        session.commit()
        first_updated = invoice.updated
        invoice.paid = True  # and onupdate=now() moves `updated`
        session.commit()
        assert invoice.paid and invoice.updated > first_updated and invoice.number == "INV-2024-00001"


def test_deleting_a_final_row_is_refused(erp, sqla):
    with Session(sqla()) as session:
        draft, final = Invoice(company_id=1, issued_on=OPEN_DAY), Invoice(company_id=1, issued_on=OPEN_DAY,
                                                                          status="approved")
        session.add_all([draft, final])
        session.commit()
        session.delete(final)
        with pytest.raises(DBAPIError) as info:
            session.commit()
        assert isinstance(ledgerlock_error(info), FinalizedRowError)
        session.rollback()
        session.delete(draft)
        session.commit()
        assert session.scalars(select(Invoice.number)).all() == ["INV-2024-00001"]


def test_write_into_a_locked_period_raises_period_locked_error(erp, sqla):
    with Session(sqla()) as session:
        session.add(Invoice(company_id=1, issued_on=LOCKED_DAY))
        with pytest.raises(DBAPIError) as info:
            session.commit()
        error = ledgerlock_error(info)
        assert isinstance(error, PeriodLockedError)
        assert error.sqlstate == "LL002"
        assert "Period 2024-01-01..2024-01-31 is locked (soft) for scope 1" in error.diag.message_primary
        session.rollback()
        session.add(Invoice(company_id=2, issued_on=LOCKED_DAY))  # another scope is open
        session.commit()


def test_override_in_a_transaction_lets_a_controller_write_into_a_soft_locked_period(erp, sqla):
    engine = sqla("controller")
    with Session(engine) as session:
        session.add(Invoice(company_id=1, issued_on=LOCKED_DAY))
        with pytest.raises(DBAPIError) as info:
            session.commit()
        assert isinstance(ledgerlock_error(info), PeriodLockedError)
        session.rollback()
    with Session(engine) as session, session.begin():
        session.execute(text("SELECT ledgerlock.begin_override(:reason)"), {"reason": "supplier invoice received late"})
        late = Invoice(company_id=1, issued_on=LOCKED_DAY, status="approved")
        session.add(late)
        session.flush()
        assert late.number == "INV-2024-00001"
        late_id = late.id
    writes = [e for e in invoice_events(erp) if e[0] == "INSERT"]
    assert writes == [("INSERT", {"id": late_id}, "supplier invoice received late", True)]  # audited with the reason
    with Session(engine) as session:  # the override ended with its transaction
        session.add(Invoice(company_id=1, issued_on=LOCKED_DAY))
        with pytest.raises(DBAPIError) as info:
            session.commit()
        assert isinstance(ledgerlock_error(info), PeriodLockedError)


def test_a_refused_flush_rolls_back_everything_and_the_number_is_given_back(erp, sqla):
    engine = sqla()
    with Session(engine) as session:
        header = Invoice(company_id=1, issued_on=OPEN_DAY, status="approved")
        session.add_all([header, Invoice(company_id=1, issued_on=LOCKED_DAY)])
        with pytest.raises(DBAPIError) as info:
            session.commit()
        assert isinstance(ledgerlock_error(info), PeriodLockedError)
        session.rollback()
    assert [e for e in invoice_events(erp) if e[0] == "INSERT"] == []  # no evidence of what never was
    with Session(engine) as session, session.begin():
        assert session.scalar(select(func.count()).select_from(Invoice)) == 0
        again = Invoice(company_id=1, issued_on=OPEN_DAY, status="approved")
        session.add(again)
        session.flush()
        assert again.number == "INV-2024-00001"
    assert_gapless(erp)


def test_header_and_lines_flushed_in_one_transaction_then_frozen(erp, sqla):
    with Session(sqla()) as session:
        invoice = Invoice(company_id=1, issued_on=OPEN_DAY,
                          lines=[InvoiceLine(description=f"item {i}") for i in range(3)])
        session.add(invoice)
        session.flush()  # the header and its lines, then finalize in the same transaction
        invoice.status = "approved"
        session.commit()
        invoice.lines.append(InvoiceLine(description="added later"))
        with pytest.raises(DBAPIError) as info:
            session.commit()
        assert isinstance(ledgerlock_error(info), FinalizedRowError)
        session.rollback()
        draft = Invoice(company_id=1, issued_on=OPEN_DAY, lines=[InvoiceLine(description="a draft takes lines")])
        session.add(draft)
        session.commit()
        assert len(invoice.lines) == 3 and len(draft.lines) == 1
