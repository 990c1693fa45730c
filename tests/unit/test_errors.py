"""Every SQLSTATE of the contract maps to an exception class psycopg raises by itself."""

from __future__ import annotations

import psycopg.errors

import ledgerlock.errors as lle

CONTRACT = {
    "LL001": "FinalizedRowError",
    "LL002": "PeriodLockedError",
    "LL003": "ReferencedRowError",
    "LL004": "InvalidLockOperationError",
    "LL005": "NotAuthorizedError",
    "LL006": "AppendOnlyError",
    "LL007": "ReasonRequiredError",
    "LL008": "ProtectedTableError",
    "LL009": "NumberingError",
}


def test_every_sqlstate_has_its_class_registered_with_psycopg():
    for state, name in CONTRACT.items():
        cls = psycopg.errors.lookup(state)
        assert cls.__name__ == name
        assert issubclass(cls, lle.LedgerlockError) and issubclass(cls, psycopg.DatabaseError)
        assert lle.BY_SQLSTATE[state] is cls


def test_describe_names_the_meaning():
    assert lle.describe("LL002") == "the row's date lies in a locked period"
    assert lle.describe("23505") == "database error"
    assert lle.describe(None) == "database error"
