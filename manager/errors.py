"""Exceptions for every ledgerlock SQLSTATE, raised by psycopg itself.

Importing this module registers the classes with psycopg, so an application catches them directly::

    import ledgerlock.errors as lle
    try:
        cur.execute("update invoice set amount = 0 where id = 42")
    except lle.FinalizedRowError as e:
        print(e.diag.message_primary, e.diag.message_hint)

Each class is also a ``psycopg.DatabaseError``, so existing handlers keep working.
"""

from __future__ import annotations

import psycopg.errors


class LedgerlockError(psycopg.errors.DatabaseError):
    """Base class of every refusal ledgerlock raises (SQLSTATE class LL)."""

    meaning = "ledgerlock refusal"


class FinalizedRowError(LedgerlockError, code="LL001", name="LL_FINALIZED_ROW"):
    meaning = "the row is final and cannot be changed or deleted"


class PeriodLockedError(LedgerlockError, code="LL002", name="LL_PERIOD_LOCKED"):
    meaning = "the row's date lies in a locked period"


class ReferencedRowError(LedgerlockError, code="LL003", name="LL_REFERENCED_ROW"):
    meaning = "the row is referenced by dependent rows"


class InvalidLockOperationError(LedgerlockError, code="LL004", name="LL_INVALID_LOCK_OPERATION"):
    meaning = "invalid lock operation (overlap, future end, downgrade, unknown id)"


class NotAuthorizedError(LedgerlockError, code="LL005", name="LL_NOT_AUTHORIZED"):
    meaning = "the database user lacks the ledgerlock capability or scope"


class AppendOnlyError(LedgerlockError, code="LL006", name="LL_APPEND_ONLY"):
    meaning = "audit and lock history are append-only"


class ReasonRequiredError(LedgerlockError, code="LL007", name="LL_REASON_REQUIRED"):
    meaning = "a non-blank reason is required"


class ProtectedTableError(LedgerlockError, code="LL008", name="LL_PROTECTED_TABLE"):
    meaning = "operation refused on a protected table (TRUNCATE, dropping or disabling guards)"


class NumberingError(LedgerlockError, code="LL009", name="LL_NUMBERING"):
    meaning = "a final number cannot be given or proven gapless"


BY_SQLSTATE: dict[str, type[LedgerlockError]] = {
    cls.sqlstate: cls
    for cls in (
        FinalizedRowError,
        PeriodLockedError,
        ReferencedRowError,
        InvalidLockOperationError,
        NotAuthorizedError,
        AppendOnlyError,
        ReasonRequiredError,
        ProtectedTableError,
        NumberingError,
    )
}


# PostgreSQL's own SQLSTATEs that the manager explains in its own words.
# 25006 read_only_sql_transaction: every writing command sent to a physical standby (or to a session with
# default_transaction_read_only) ends here, whatever it was about to write.
READ_ONLY = "server is a read-only standby (or the session is read-only); run this on the primary"
OTHER_MEANINGS = {"25006": READ_ONLY}
# A logical-replication subscriber's write barrier (ledgerlock.guard_subscriber_write) raises 25006 as well:
# the database is writable, its replicated books are not, until cut-over. Its message says so.
SUBSCRIBER_MESSAGE = "is refused on a subscriber"
SUBSCRIBER = "this database is a logical-replication subscriber: write on the publisher until cut-over"


def describe(sqlstate: str | None, message: str | None = None) -> str:
    """The meaning of a SQLSTATE (and, where one SQLSTATE has two causes, of its message), for one-line CLI
    errors."""
    if sqlstate == "25006" and message and SUBSCRIBER_MESSAGE in message:
        return SUBSCRIBER
    cls = BY_SQLSTATE.get(sqlstate or "")
    return cls.meaning if cls else OTHER_MEANINGS.get(sqlstate or "", "database error")
