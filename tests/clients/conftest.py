"""Fixtures for the ORM client tests: the demo invoice tables protected the way an application would use
them (final once approved, numbered INV-YYYY-NNNNN, lines following their header, an auto-updated
``updated`` column declared mutable) and January 2024 soft-locked for company 1. Each test points the ORM at
its own fresh database, like every other test of the suite."""

from __future__ import annotations

import os

import pytest
from clientsupport import NUMBER_FORMAT, configure_django, conninfo_dict
from django_settings import DJANGO_ALIASES

from lltest import TestDatabase

# The console tests drive Chromium through an asyncio loop in the same pytest worker; a loop left behind in
# the main thread makes Django refuse every query as "called from an async context". These tests are
# synchronous: tell Django so.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture
def erp(db: TestDatabase) -> TestDatabase:
    """The fresh database with invoice protected, its lines following it, and 2024-01 soft-locked."""
    owner = db.owner()
    owner.execute("ALTER TABLE invoice ADD COLUMN updated timestamptz NOT NULL DEFAULT now()")
    db.protect_invoice(number_column="number", number_format=NUMBER_FORMAT,
                       mutable_columns=["paid", "reconciled", "updated"])
    owner.execute("SELECT ledgerlock.protect_lines('invoice_line', 'invoice')")
    owner.execute("SELECT ledgerlock.lock_period('1', '2024-01-01', '2024-01-31', 'soft')")
    return db


@pytest.fixture
def django_erp(erp: TestDatabase) -> TestDatabase:
    """``erp`` with Django's connections pointed at it: ``default`` as the application login, ``controller``
    as a member of ledgerlock_controller."""
    configure_django()
    from django.db import connections

    for alias, role in DJANGO_ALIASES.items():
        connections[alias].close()
        params = conninfo_dict(erp, role)
        connections.settings[alias].update(NAME=params["dbname"], USER=params["user"], HOST=params["host"],
                                           PORT=params["port"],
                                           OPTIONS={"options": params["options"]} if "options" in params else {})
    yield erp
    for alias in DJANGO_ALIASES:
        connections[alias].close()


@pytest.fixture
def sqla(erp: TestDatabase):
    """A function giving a SQLAlchemy engine (psycopg 3 driver) for a login role of ``erp``."""
    import psycopg
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    engines = []

    def engine(role: str = "app"):
        e = create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(erp.conninfo(role)),
                          poolclass=NullPool)
        engines.append(e)
        return e

    yield engine
    for e in engines:
        e.dispose()


@pytest.fixture(scope="session")
def ledger_template(cluster):
    """django-ledger's schema, alone and with one entity, its chart of accounts and a ledger, in two templates of
    this server."""
    from ledgersupport import build_ledger_templates

    build_ledger_templates(cluster)
    return cluster


@pytest.fixture
def ledger_db(ledger_template) -> TestDatabase:
    """A fresh clone of the django-ledger template, unprotected, with Django's connections pointed at it."""
    from ledgersupport import ledger_database, use_django

    with ledger_database(ledger_template) as db:
        use_django(db)
        yield db


@pytest.fixture
def empty_ledger(ledger_template) -> TestDatabase:
    """A fresh clone of django-ledger's schema alone (no entity), protected, with Django pointed at it."""
    from ledgersupport import LEDGER_SCHEMA, PROTECT, ledger_database, use_django

    with ledger_database(ledger_template, LEDGER_SCHEMA) as db:
        owner = db.owner()
        for statement in PROTECT:
            owner.execute(statement)
        use_django(db)
        yield db


@pytest.fixture
def ledger(ledger_db: TestDatabase) -> TestDatabase:
    """``ledger_db`` with the journal tables protected as docs/clients.md tells a django-ledger user to."""
    from ledgersupport import PROTECT

    owner = ledger_db.owner()
    for statement in PROTECT:
        owner.execute(statement)
    return ledger_db
