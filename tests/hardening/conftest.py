"""Fixtures of the bypass battery: a protected invoice table with one final and one draft row, an attacker
schema the application owns, and a way to prove that nothing changed."""

from __future__ import annotations

import pytest
from psycopg import sql

INVOICE_STATE = "SELECT id, status, amount, paid, reconciled, note, issued_on FROM invoice ORDER BY id"


@pytest.fixture
def invoices(db):
    """invoice id=1 final (approved), id=2 draft; returns the application's connection."""
    db.protect_invoice()
    app = db.connect("app")
    app.execute("INSERT INTO invoice (id, company_id, amount) VALUES (1, 1, 100), (2, 1, 200)")
    app.execute("UPDATE invoice SET status = 'approved' WHERE id = 1")
    return app


@pytest.fixture
def unchanged(db):
    """Call with a query (default: every invoice); asserts at teardown that its result did not change.

    The snapshot is read by the owner, so rows the application cannot see are compared as well."""
    watched: list[tuple[str, list]] = []
    owner = db.connect("owner")

    def watch(query: str = INVOICE_STATE) -> None:
        watched.append((query, owner.execute(query).fetchall()))

    yield watch
    for query, before in watched:
        assert owner.execute(query).fetchall() == before, f"data changed: {query}"


@pytest.fixture
def attacker_schema(db):
    """A schema the application role owns and may put first on its search_path (the hijack's home)."""
    db.owner().execute(sql.SQL("CREATE SCHEMA evil AUTHORIZATION ll_app"))
    return "evil"
