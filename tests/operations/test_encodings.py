"""Databases that are not UTF8: legacy ERPs keep their books in LATIN1, WIN1252, EUC_JP or even SQL_ASCII (and, where
the server has ICU, a UTF8 database with a German ICU collation). ledgerlock
installs into each (its SQL is ASCII: an em dash in a comment made migrate fail there), numbers, refuses in a
sentence, and its evidence verifies in the database and offline: the hashes are taken over the UTF8 form of the
text whatever the database's encoding, as the offline check computes them."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql

from ledgerlock import migrate
from ledgerlock.audit_bundle import verify_bundle
from ledgerlock.cli import cli
from lltest import TestDatabase, load_demo_schema, refused

SQL = Path(__file__).resolve().parents[2] / "sql"

# a note each encoding can store, with characters outside ASCII
NOTES = {"LATIN1": "Café Müller, 5 £", "WIN1252": "Café Müller, 5 €", "EUC_JP": "請求書 第一号",
         "SQL_ASCII": "Café Müller, 5 €", "UTF8 ICU de-DE": "Straße Ärger, 5 €"}


def test_every_shipped_sql_file_is_ascii():
    """What migrate sends is converted to the database's encoding: only ASCII converts to every one."""
    offending = [f"{p.relative_to(SQL)}:{n}" for p in sorted(SQL.rglob("*.sql"))
                 for n, line in enumerate(p.read_text().splitlines(), 1) if not line.isascii()]
    assert offending == []


@pytest.mark.parametrize("encoding", list(NOTES))
def test_a_database_in_another_encoding_keeps_every_rule_and_its_evidence(cluster, encoding, tmp_path):
    name = f"enc_{encoding.split()[0].lower()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(cluster.conninfo(), autocommit=True) as owner:
        if encoding == "UTF8 ICU de-DE":  # a collation that sorts ß, Ä and € its own way (PostgreSQL 15+, with ICU)
            try:
                owner.execute(sql.SQL("CREATE DATABASE {} LOCALE_PROVIDER icu ICU_LOCALE 'de-DE' LOCALE 'C' "
                                      "TEMPLATE template0").format(sql.Identifier(name)))
            except psycopg.errors.FeatureNotSupported:
                pytest.skip(f"the {cluster.name} build has no ICU (Debian's PostgreSQL has it)")
        else:
            owner.execute(sql.SQL("CREATE DATABASE {} ENCODING {} LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
                          .format(sql.Identifier(name), sql.Literal(encoding)))
    db = TestDatabase(cluster, name)
    try:
        migrate.migrate(db.conninfo())
        owner, app, auditor = (db.connect(role, client_encoding="UTF8")  # psycopg reads SQL_ASCII text as bytes
                               for role in ("owner", "app", "auditor"))
        load_demo_schema(owner)
        db.protect_invoice(owner, number_column="number", number_format="F-{SEQ:4}")
        note = NOTES[encoding]
        got = app.execute("INSERT INTO invoice (id, company_id, issued_on, status, note) VALUES "
                          "(1, 1, '2025-05-02', 'approved', %s) RETURNING number, note", (note,)).fetchone()
        assert got == ("F-0001", note)
        with refused("LL001", r"^invoice id=1 \(F-0001\) is final and cannot be updated"):
            app.execute("UPDATE invoice SET note = 'x' WHERE id = 1")
        # a reason the database stores, through the manager (which speaks UTF8 whatever the database's encoding)
        res = CliRunner().invoke(cli, ["--dsn", db.conninfo("admin"), "lock", "1", "--from", "2025-05-01",
                                       "--to", "2025-05-31", "--note", note])
        assert res.exit_code == 0, res.output
        assert auditor.execute("SELECT ok, problems FROM ledgerlock.verify_audit()").fetchone() == (True, 0)
        # the books check still sees a change behind the trail
        owner.execute("ALTER TABLE invoice DISABLE TRIGGER USER; UPDATE invoice SET amount = 9 WHERE id = 1")
        assert auditor.execute("SELECT ok FROM ledgerlock.verify_audit()").fetchone() == (False,)
        owner.execute("UPDATE invoice SET amount = 0 WHERE id = 1")
        for (trigger,) in owner.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = 'invoice'::regclass "
                                        "AND NOT tgisinternal").fetchall():
            owner.execute(sql.SQL("ALTER TABLE invoice ENABLE ALWAYS TRIGGER {}").format(sql.Identifier(trigger)))
        # offline: the bundle's hashes, recomputed in Python over UTF8, are the database's
        bundle = tmp_path / "books.zip"
        res = CliRunner().invoke(cli, ["--dsn", db.conninfo("auditor"), "audit", "bundle", "--scope", "1",
                                       "--fiscal-year", "2025", "-o", str(bundle), "--json"])
        assert res.exit_code == 0, res.output
        assert json.loads(res.stdout)["events"] >= 2
        report = verify_bundle(str(bundle))
        assert report.ok, report
    finally:
        db.close_all()
        with psycopg.connect(cluster.conninfo(), autocommit=True) as owner:
            owner.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
