"""django-ledger 0.8.5 on a protected schema, driven through its own API: posting makes a journal entry final
and numbered, an unchanged posted entry saves, unposting is refused as ledgerlock's FinalizedRowError, the
reconciliation flags of its lines still move, and closing the books for a month (posted headers inserted first,
then their lines) commits as one document per entry."""

from __future__ import annotations

import psycopg
import pytest
from clientsupport import configure_django
from django.db import DatabaseError, transaction
from ledgersupport import BOOKS_MONTH, DAY, JE, OTHER_ENTITY_NAME, books, txs

from ledgerlock.errors import FinalizedRowError, PeriodLockedError
from lltest import TestDatabase

configure_django()  # before the models are imported
from django_ledger.models import JournalEntryModel, TransactionModel  # noqa: E402


def post_entry(amount: str = "1000.00"):
    entity, ledger, cash, capital, _ = books()
    je, _ = entity.commit_txs(je_timestamp=DAY, je_txs=txs(cash, capital, amount), je_posted=True,
                              je_ledger_model=ledger, je_desc="capital contribution")
    return je


def final_numbers(db: TestDatabase) -> list[str]:
    return [r[0] for r in db.owner().execute(f"SELECT je_number FROM {JE} WHERE posted ORDER BY je_number")]


def test_posting_makes_the_entry_final_and_numbered(ledger):
    je = post_entry()
    assert je.posted
    je.refresh_from_db(fields=["je_number"])
    assert je.je_number == "JE-2026-000001"
    assert final_numbers(ledger) == ["JE-2026-000001"]
    assert ledger.owner().execute("SELECT * FROM ledgerlock.number_gaps(%s)", [JE]).fetchall() == []


def test_save_of_an_unchanged_posted_entry_succeeds(ledger):
    je = post_entry()
    loaded = JournalEntryModel.objects.get(pk=je.pk)
    before = loaded.updated
    loaded.save()  # django-ledger verifies the entry again and writes every column; only `updated` moves
    loaded.refresh_from_db()
    assert loaded.updated > before and loaded.posted and loaded.je_number == "JE-2026-000001"


def ledgerlock_error(info: pytest.ExceptionInfo) -> Exception:
    """What a Django user catches is django.db.DatabaseError; its __cause__ is ledgerlock's class."""
    assert isinstance(info.value, DatabaseError)
    return info.value.__cause__


def test_unpost_of_a_posted_entry_is_refused_as_finalized_row_error(ledger):
    je = post_entry()
    draft = post_entry("5.00")
    draft.refresh_from_db()
    JournalEntryModel.objects.filter(pk=draft.pk)  # the neighbour below: a draft unposts and deletes freely
    posted = JournalEntryModel.objects.get(pk=je.pk)
    assert posted.can_unpost()  # django-ledger itself would allow it: only the database stands in the way
    with pytest.raises(DatabaseError) as info:
        posted.mark_as_unposted(commit=True, raise_exception=True)
    error = ledgerlock_error(info)
    assert isinstance(error, FinalizedRowError)
    assert error.sqlstate == "LL001"
    assert "(JE-2026-000001) is final and cannot be updated" in error.diag.message_primary
    assert JournalEntryModel.objects.get(pk=je.pk).posted


def test_reconciling_the_lines_of_a_posted_entry_succeeds_and_other_changes_are_refused(ledger):
    je = post_entry()
    lines = TransactionModel.objects.filter(journal_entry=je)
    # django-ledger's own save() of a line refuses any change under a locked entry, so reconciliation is a
    # queryset update, which the database judges: the flags are declared mutable on the lines
    assert lines.update(cleared=True, reconciled=True) == 2
    assert lines.filter(reconciled=True, cleared=True).count() == 2
    with pytest.raises(DatabaseError) as info:
        lines.update(description="rewritten")
    error = ledgerlock_error(info)
    assert isinstance(error, FinalizedRowError)
    assert "(JE-2026-000001) is final" in error.diag.message_primary


def test_closing_the_books_for_a_month_commits_posted_entries_with_their_lines(ledger):
    entity, ledger_model, cash, capital, revenue = books()
    post_entry()
    entity.commit_txs(je_timestamp=DAY, je_txs=txs(cash, revenue, "250.00"), je_posted=True,
                      je_ledger_model=ledger_model, je_desc="cash sale")
    with transaction.atomic():  # closing entries: posted headers first, then their lines, as one document each
        entity.close_books_for_month(year=BOOKS_MONTH[0], month=BOOKS_MONTH[1])
    closing = JournalEntryModel.objects.filter(is_closing_entry=True)
    assert closing.count() >= 1
    for je in closing:
        assert je.posted and je.je_number.startswith("JE-2026-")
        assert TransactionModel.objects.filter(journal_entry=je).count() >= 1
    assert len(final_numbers(ledger)) == 2 + closing.count()
    assert ledger.owner().execute("SELECT * FROM ledgerlock.number_gaps(%s)", [JE]).fetchall() == []
    with pytest.raises(DatabaseError) as info:  # once committed, a closing entry's lines are frozen
        TransactionModel.objects.filter(journal_entry__in=closing).update(amount=0)
    assert isinstance(ledgerlock_error(info), FinalizedRowError)


def test_a_period_lock_of_one_entity_holds_its_journal_entries_through_their_ledger(ledger):
    owner = ledger.owner()
    entity, ledger_model, cash, capital, _ = books()
    owner.execute("SELECT ledgerlock.lock_period(%s, '2026-10-01', '2026-10-31', 'soft')", [str(entity.uuid)])
    with pytest.raises(DatabaseError) as info:
        entity.commit_txs(je_timestamp=DAY, je_txs=txs(cash, capital, "10.00"), je_posted=True,
                          je_ledger_model=ledger_model)
    error = ledgerlock_error(info)
    assert isinstance(error, PeriodLockedError)
    assert f"Period 2026-10-01..2026-10-31 is locked (soft) for scope {entity.uuid}" in error.diag.message_primary
    assert not JournalEntryModel.objects.filter(ledger=ledger_model).exists()
    other, other_ledger, other_cash, other_capital, _ = books(OTHER_ENTITY_NAME)
    je, _ = other.commit_txs(je_timestamp=DAY, je_txs=txs(other_cash, other_capital, "10.00"), je_posted=True,
                             je_ledger_model=other_ledger)  # another entity's books stay open that month
    assert JournalEntryModel.objects.get(pk=je.pk).posted
    reasons = owner.execute("SELECT rule, details FROM ledgerlock.why_locked(%s, %s)",
                            [JE, psycopg.types.json.Jsonb(str(je.pk))]).fetchall()
    assert [r[0] for r in reasons] == ["final"]  # final, but in no locked window of its own entity


def test_closing_the_books_outside_a_transaction_commits_the_entries_and_refuses_their_lines(ledger):
    entity, _, _, _, _ = books()
    post_entry()
    with pytest.raises(DatabaseError) as info:  # autocommit: each statement commits on its own
        entity.close_books_for_month(year=BOOKS_MONTH[0], month=BOOKS_MONTH[1])
    error = ledgerlock_error(info)
    assert isinstance(error, FinalizedRowError)
    assert "cannot be inserted: its header django_ledger_journalentrymodel" in error.diag.message_primary
    closing = JournalEntryModel.objects.filter(is_closing_entry=True)
    assert closing.exists() and all(je.posted for je in closing)  # why the recipe wraps it in atomic()
    assert not TransactionModel.objects.filter(journal_entry__in=closing).exists()
