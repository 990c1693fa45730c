"""Fixtures of the bypass battery: a protected invoice table with one final and one draft row, an attacker
schema the application owns, and a way to prove that nothing changed."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import psycopg
import pytest
from psycopg import sql

from ledgerlock import migrate, sqlfiles

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


JOURNAL = """
CREATE TABLE ledger_entry (
    id int NOT NULL, posted_on date NOT NULL, status text NOT NULL DEFAULT 'draft', amount int NOT NULL,
    PRIMARY KEY (id, posted_on)) PARTITION BY RANGE (posted_on);
CREATE TABLE ledger_entry_2025 PARTITION OF ledger_entry FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE ledger_entry_2026 PARTITION OF ledger_entry FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ledger_entry, ledger_entry_2025, ledger_entry_2026 TO ll_app;
INSERT INTO ledger_entry VALUES (1, '2025-03-01', 'final', 10), (2, '2025-04-01', 'draft', 20),
                                (3, '2026-03-01', 'final', 30);
SELECT ledgerlock.protect('ledger_entry', 'posted_on', final_when => $$status = 'final'$$);
"""


@pytest.fixture
def journal(db):
    """A protected partitioned table (two partitions), final rows 1 and 3, draft 2; the app's connection."""
    db.owner().execute(JOURNAL)
    return db.connect("app")


@pytest.fixture
def ddl_guard(db):
    db.owner().execute("SELECT ledgerlock.install_ddl_guard()")


@dataclass
class HealthyDatabase:
    """A database set up the way docs/hardening.md says: a NOLOGIN owner role owns ledgerlock and the ERP
    tables, the application login has plain DML, a person holds ledgerlock_admin, the DDL guard is on."""

    cluster: object
    name: str
    owner: str
    app: str
    admin: str

    def conninfo(self, who: str = "super") -> str:
        if who == "super":
            return self.cluster.conninfo(self.name)
        if who == "as_owner":  # a superuser session acting as the owner role (how migrate is run)
            return self.cluster.conninfo(self.name) + f" options='-c role={self.owner}'"
        return self.cluster.server.conninfo(dbname=self.name, user=getattr(self, who))


@pytest.fixture
def healthy(cluster):
    suffix = uuid.uuid4().hex[:8]
    h = HealthyDatabase(cluster, f"h_{suffix}", f"erp_owner_{suffix}", f"erp_app_{suffix}", f"alice_{suffix}")
    with psycopg.connect(cluster.conninfo(), autocommit=True) as su:
        su.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(h.owner)))
        su.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(h.app)))
        su.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE ledgerlock_admin").format(sql.Identifier(h.admin)))
        su.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(h.name), sql.Identifier(h.owner)))
    try:
        migrate.migrate(h.conninfo("as_owner"))
        with psycopg.connect(h.conninfo("as_owner"), autocommit=True) as conn:
            conn.execute(sqlfiles.demo_schema())
            conn.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {0}; "
                                 "GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {0}").format(sql.Identifier(h.app)))
        with psycopg.connect(h.conninfo("admin"), autocommit=True) as conn:
            conn.execute("SELECT ledgerlock.protect('invoice', 'issued_on', 'company_id', "
                         "$$status in ('approved','paid')$$, mutable_columns => '{paid,reconciled}')")
        with psycopg.connect(h.conninfo(), autocommit=True) as conn:
            conn.execute("SELECT ledgerlock.install_ddl_guard()")
        yield h
    finally:
        with psycopg.connect(cluster.conninfo(), autocommit=True) as su:
            su.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(h.name)))
            for role in (h.app, h.admin, h.owner):
                su.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
