"""django-ledger's own tests, run against its schema with the journal tables protected as docs/clients.md
says: its closing-entry tests post generated books, close them month by month (posted headers inserted first,
then their lines, inside the test's transaction) and read the results through its views."""

from __future__ import annotations

import unittest

from clientsupport import configure_django

configure_django()  # before django-ledger's test modules import its models
from django_ledger.tests import test_closing_entry  # noqa: E402


def smaller(case: type[unittest.TestCase]) -> type[unittest.TestCase]:
    """The same tests on less generated data (django-ledger's class attributes): a month's worth of entries
    instead of up to eighteen months', to keep the client tests a small part of the suite on three servers."""
    return type(case.__name__, (case,), {"DAYS_FORWARD": 30, "TX_QUANTITY": 4, "__test__": False})


def run(case: type[unittest.TestCase]) -> unittest.TestResult:
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(smaller(case))
    return unittest.TextTestRunner(verbosity=2).run(suite)


def test_django_ledgers_closing_entry_tests_pass_on_the_protected_schema(empty_ledger):
    result = run(test_closing_entry.ClosingEntryModelTests)
    assert result.testsRun == 3
    assert result.wasSuccessful(), result.errors + result.failures
