"""Django's ORM (psycopg 3 backend) on protected tables: finalization through save(), the final number on the
object, refusals surfaced as ledgerlock's exception classes, save() of a final row with only mutable columns
changed, an override inside transaction.atomic, and rollbacks that leave nothing half-written."""

from __future__ import annotations

from decimal import Decimal

import pytest
from clientsupport import LOCKED_DAY, OPEN_DAY, assert_gapless, configure_django, invoice_events, numbers
from django.db import DatabaseError, connections, transaction

from ledgerlock.errors import FinalizedRowError, PeriodLockedError

configure_django()  # before the models are imported
from ll_erp_django.models import Invoice, InvoiceLine  # noqa: E402

pytestmark = pytest.mark.usefixtures("django_erp")


def ledgerlock_error(info: pytest.ExceptionInfo) -> Exception:
    """What a Django user catches: django.db.DatabaseError, whose __cause__ is psycopg's exception, which is
    ledgerlock's class once ledgerlock.errors is imported."""
    assert type(info.value) is DatabaseError
    return info.value.__cause__


def test_save_finalizes_and_refresh_from_db_reads_the_number(django_erp):
    invoice = Invoice.objects.create(company_id=1, issued_on=OPEN_DAY, amount=Decimal("120.00"))
    assert invoice.number == "DRAFT-1"  # a draft carries a temporary number, read back by create()
    invoice.status = "approved"
    invoice.save()
    assert invoice.number == "DRAFT-1"  # Django's UPDATE returns nothing: the object still holds the old value
    invoice.refresh_from_db(fields=["number"])
    assert invoice.number == "INV-2024-00001"
    assert numbers(django_erp) == ["INV-2024-00001"]


def test_create_of_a_final_row_reads_the_number_back_through_returning(django_erp):
    invoice = Invoice.objects.create(company_id=1, issued_on=OPEN_DAY, status="approved")
    assert invoice.number == "INV-2024-00001"  # DatabaseAssignedText: db_returning


def test_bulk_create_numbers_every_final_row_gaplessly(django_erp):
    with transaction.atomic():
        created = Invoice.objects.bulk_create(
            [Invoice(company_id=1, issued_on=OPEN_DAY, status="approved" if i % 2 else "draft") for i in range(6)])
    assert [i.number for i in created] == ["DRAFT-1", "INV-2024-00001", "DRAFT-2", "INV-2024-00002", "DRAFT-3",
                                           "INV-2024-00003"]
    assert_gapless(django_erp)


def test_save_of_a_final_row_changing_a_guarded_column_is_refused(django_erp):
    invoice = Invoice.objects.create(company_id=1, issued_on=OPEN_DAY, status="approved", amount=Decimal("50.00"))
    invoice.amount = Decimal("0.00")
    with pytest.raises(DatabaseError) as info:
        invoice.save()
    error = ledgerlock_error(info)
    assert isinstance(error, FinalizedRowError)
    assert error.sqlstate == "LL001"
    assert error.diag.message_primary.startswith("invoice id=1 (INV-2024-00001) is final and cannot be updated")
    Invoice.objects.filter(pk=invoice.pk).update(amount=Decimal("50.00"))  # the neighbour: no change, no refusal
    assert Invoice.objects.get(pk=invoice.pk).amount == Decimal("50.00")


def test_save_with_only_mutable_columns_changed_succeeds(django_erp):
    invoice = Invoice.objects.create(company_id=1, issued_on=OPEN_DAY, status="approved")
    first_updated = invoice.updated
    invoice.save()  # unchanged: only the auto-updated `updated` column moves, and it is declared mutable
    invoice.paid = True
    invoice.save()
    invoice.refresh_from_db()
    assert invoice.paid and invoice.updated > first_updated
    assert invoice.number == "INV-2024-00001"


def test_save_of_a_stale_object_after_finalization_is_refused_until_refreshed(django_erp):
    invoice = Invoice.objects.create(company_id=1, issued_on=OPEN_DAY)
    invoice.status = "approved"
    invoice.save()
    invoice.paid = True
    with pytest.raises(DatabaseError) as info:
        invoice.save()  # would write number = NULL over the final number
    assert isinstance(ledgerlock_error(info), FinalizedRowError)
    invoice.save(update_fields=["paid", "updated"])  # writes only the mutable columns
    invoice.refresh_from_db()
    invoice.reconciled = True
    invoice.save()  # a refreshed object writes its number back unchanged
    assert Invoice.objects.filter(paid=True, reconciled=True, number="INV-2024-00001").count() == 1


def test_delete_of_a_final_row_is_refused(django_erp):
    draft = Invoice.objects.create(company_id=1, issued_on=OPEN_DAY)
    final = Invoice.objects.create(company_id=1, issued_on=OPEN_DAY, status="approved")
    with pytest.raises(DatabaseError) as info:
        final.delete()
    assert isinstance(ledgerlock_error(info), FinalizedRowError)
    draft.delete()
    assert list(Invoice.objects.values_list("number", flat=True)) == ["INV-2024-00001"]


def test_write_into_a_locked_period_raises_period_locked_error(django_erp):
    with pytest.raises(DatabaseError) as info:
        Invoice.objects.create(company_id=1, issued_on=LOCKED_DAY, amount=Decimal("10.00"))
    error = ledgerlock_error(info)
    assert isinstance(error, PeriodLockedError)
    assert error.sqlstate == "LL002"
    assert "Period 2024-01-01..2024-01-31 is locked (soft) for scope 1" in error.diag.message_primary
    assert "begin_override" in error.diag.message_hint
    assert Invoice.objects.create(company_id=2, issued_on=LOCKED_DAY).pk  # another scope is open


def test_override_in_a_transaction_lets_a_controller_write_into_a_soft_locked_period(django_erp):
    with pytest.raises(DatabaseError) as info, transaction.atomic(using="controller"):
        Invoice.objects.using("controller").create(company_id=1, issued_on=LOCKED_DAY)
    assert isinstance(ledgerlock_error(info), PeriodLockedError)
    with transaction.atomic(using="controller"):
        with connections["controller"].cursor() as cur:
            cur.execute("SELECT ledgerlock.begin_override(%s)", ["supplier invoice received late"])
        late = Invoice.objects.using("controller").create(company_id=1, issued_on=LOCKED_DAY, status="approved")
    assert late.number == "INV-2024-00001"
    assert Invoice.objects.filter(issued_on=LOCKED_DAY).count() == 1
    writes = [e for e in invoice_events(django_erp) if e[0] == "INSERT"]
    assert writes == [("INSERT", {"id": late.pk}, "supplier invoice received late", True)]  # audited with the reason
    with pytest.raises(DatabaseError) as info:  # the override ended with its transaction
        Invoice.objects.using("controller").create(company_id=1, issued_on=LOCKED_DAY)
    assert isinstance(ledgerlock_error(info), PeriodLockedError)


def test_a_refusal_inside_atomic_rolls_back_everything_and_the_number_is_given_back(django_erp):
    with pytest.raises(DatabaseError) as info, transaction.atomic():
        Invoice.objects.create(company_id=1, issued_on=OPEN_DAY, status="approved")
        Invoice.objects.create(company_id=1, issued_on=LOCKED_DAY)
    assert isinstance(ledgerlock_error(info), PeriodLockedError)
    assert Invoice.objects.count() == 0
    assert [e for e in invoice_events(django_erp) if e[0] == "INSERT"] == []  # no evidence of what never was
    assert Invoice.objects.create(company_id=1, issued_on=OPEN_DAY, status="approved").number == "INV-2024-00001"
    assert_gapless(django_erp)


def test_header_and_lines_saved_in_one_atomic_block_then_frozen(django_erp):
    with transaction.atomic():
        invoice = Invoice.objects.create(company_id=1, issued_on=OPEN_DAY)  # lines first, then finalize
        InvoiceLine.objects.bulk_create([InvoiceLine(invoice=invoice, description=f"item {i}") for i in range(3)])
        invoice.status = "approved"
        invoice.save()
    assert invoice.lines.count() == 3
    with pytest.raises(DatabaseError) as info:
        InvoiceLine.objects.create(invoice=invoice, description="added later")
    assert isinstance(ledgerlock_error(info), FinalizedRowError)
    draft = Invoice.objects.create(company_id=1, issued_on=OPEN_DAY)
    assert InvoiceLine.objects.create(invoice=draft, description="a draft takes lines").pk
