"""Shared by the ORM client tests: the dates every test uses, reading numbers back, and Django's one-time
configuration (``settings.configure`` cannot run twice in a process, and models cannot be imported before it)."""

from __future__ import annotations

import datetime as dt

import psycopg
from django_settings import SETTINGS

from lltest import TestDatabase

LOCKED_DAY = dt.date(2024, 1, 15)  # inside the soft lock every test starts with
OPEN_DAY = dt.date(2024, 2, 15)  # after it
NUMBER_FORMAT = "INV-{YYYY}-{SEQ:5}"


def numbers(db: TestDatabase) -> list[str]:
    """Final numbers in the table, in order, read by the installer (what a later audit would see)."""
    return [r[0] for r in db.owner().execute("SELECT number FROM invoice WHERE number IS NOT NULL ORDER BY number")]


def assert_gapless(db: TestDatabase) -> None:
    gaps = db.owner().execute("SELECT * FROM ledgerlock.number_gaps('invoice')").fetchall()
    assert gaps == []


def conninfo_dict(db: TestDatabase, role: str) -> dict[str, str]:
    return psycopg.conninfo.conninfo_to_dict(db.conninfo(role))


def configure_django() -> None:
    import django
    from django.conf import settings

    if settings.configured:
        return
    settings.configure(**SETTINGS)
    django.setup()


def invoice_events(db: TestDatabase) -> list[tuple]:
    """The audit trail of the invoice table: (operation, row_key, reason, whether under an override)."""
    return db.owner().execute(
        "SELECT operation, row_key, reason, override_id IS NOT NULL FROM ledgerlock.audit_log"
        " WHERE table_name = 'invoice'::regclass ORDER BY seq").fetchall()
