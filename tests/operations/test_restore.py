"""Operations: a protected database dumped with pg_dump and restored with pg_restore keeps every rule and its
numbering with no step by hand — into a new database of the same server, and into another server (the newest
PostgreSQL here), with the target server's own pg_dump and pg_restore, as a DBA moving to a new major does.
The other way to a new major, pg_upgrade of the whole cluster in place, keeps them too, and the evidence."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from ledgerlock import migrate
from lltest import (
    TEMPLATE,
    Cluster,
    TestDatabase,
    known_servers,
    major,
    refused,
    scratch_dir,
    selected_servers,
    start_cluster,
    stop_cluster,
)

FORMAT = "INV-{YYYY}-{SEQ:5}"


def newest_server() -> str:
    return max(known_servers(), key=major)


@pytest.fixture(scope="module")
def newest(cluster) -> Cluster:
    """A second server of the newest PostgreSQL found (pg18 where installed): the target of a major upgrade."""
    name = newest_server()
    target, root = start_cluster(name, known_servers()[name])
    yield target
    stop_cluster(target, root)


def _populate(db) -> None:
    """Numbered, final and draft invoices, a referenced invoice, a hard period lock, and their audit trail."""
    db.protect_invoice(number_column="number", number_format=FORMAT)
    owner = db.owner()
    owner.execute("SELECT ledgerlock.protect('payment', 'paid_on', 'company_id', "
                  "final_when => $$status = 'posted'$$)")
    owner.execute("SELECT ledgerlock.protect_referenced('invoice', 'payment')")
    app = db.connect("app")
    app.execute("""INSERT INTO invoice (id, company_id, issued_on, status, amount) VALUES
                   (1, 1, '2026-03-02', 'approved', 100), (2, 1, '2026-03-03', 'approved', 200),
                   (3, 1, '2026-03-04', 'draft', 300), (4, 1, '2026-01-15', 'draft', 50),
                   (6, 1, '2026-03-07', 'draft', 80)""")
    app.execute("INSERT INTO payment (id, company_id, invoice_id, paid_on, amount) VALUES (1, 1, 6, '2026-03-07', 80)")
    db.connect("admin").execute("SELECT ledgerlock.lock_period('1', '2026-01-01', '2026-01-31', 'hard')")


def _restore(source_conninfo: str, target: Cluster, tmp_path: Path) -> str:
    """pg_dump the source with the target's binaries, pg_restore into a new database of the target."""
    bindir = known_servers()[target.name]
    dump = tmp_path / "ledger.dump"
    subprocess.run([str(bindir / "pg_dump"), "-Fc", "-f", str(dump), "-d", source_conninfo],
                   check=True, capture_output=True, text=True, timeout=120)
    name = f"r_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(target.conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
    done = subprocess.run([str(bindir / "pg_restore"), "--exit-on-error", "-d", target.conninfo(name), str(dump)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return name


def _drop(target: Cluster, name: str) -> None:
    with psycopg.connect(target.conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def _assert_rules_hold(target: Cluster, name: str) -> None:
    with psycopg.connect(target.conninfo(name, "app"), autocommit=True) as app, \
         psycopg.connect(target.conninfo(name), autocommit=True) as owner:
        # R1: a final row refuses an update with LL001, and still takes its mutable columns
        with refused("LL001", r"invoice id=1 \(INV-2026-00001\) is final and cannot be updated"):
            app.execute("UPDATE invoice SET amount = 1 WHERE id = 1")
        app.execute("UPDATE invoice SET paid = true WHERE id = 1")
        # R2: a new finalization continues the series, with no gap
        app.execute("UPDATE invoice SET status = 'approved' WHERE id = 3")
        app.execute("INSERT INTO invoice (id, company_id, issued_on, status) VALUES (5, 1, '2026-03-06', 'paid')")
        got = app.execute("SELECT id, number FROM invoice WHERE id IN (3, 5) ORDER BY id").fetchall()
        assert got == [(3, "INV-2026-00003"), (5, "INV-2026-00004")]
        assert owner.execute("SELECT * FROM ledgerlock.number_gaps()").fetchall() == []
        # R3: the hard lock still refuses, a write outside it passes (above)
        with refused("LL002", r"2026-01-01\.\.2026-01-31 is locked \(hard\)"):
            app.execute("UPDATE invoice SET amount = 51 WHERE id = 4")
        # R4: the referenced draft stays frozen (an unreferenced one was finalized above)
        with refused("LL003", r"^invoice id=6 \(DRAFT-\d+\) is referenced by payment id=1"):
            app.execute("UPDATE invoice SET note = 'x' WHERE id = 6")
        # R5: the chain and the books verify
        ok, problem = owner.execute("SELECT ok, problem FROM ledgerlock.verify_audit()").fetchone()
        assert (ok, problem) == (True, None)


def _assert_migrate_installs_the_guards_again(target: Cluster, name: str) -> None:
    """Guards that carry a table's oid (the audit capture's arguments) are made again by migrate, which says so."""
    report = migrate.migrate(target.conninfo(name))
    assert report.restored_tables == ["invoice", "payment"] and report.guards_reinstalled == 2
    assert report.changed and not report.applied and not report.code_installed
    with psycopg.connect(target.conninfo(name, "app"), autocommit=True) as app, \
         psycopg.connect(target.conninfo(name), autocommit=True) as owner:
        app.execute("UPDATE invoice SET reconciled = true WHERE id = 5")
        last = owner.execute("SELECT table_name::text, row_key FROM ledgerlock.audit_log ORDER BY seq DESC LIMIT 1")
        assert last.fetchone() == ("invoice", {"id": 5})  # the table_oid of the restored table
        ok, problem = owner.execute("SELECT ok, problem FROM ledgerlock.verify_audit()").fetchone()
        assert (ok, problem) == (True, None)
    again = migrate.migrate(target.conninfo(name))
    assert not again.changed and again.restored_tables == []


def test_a_restore_into_a_new_database_of_the_same_server_keeps_every_rule(db, tmp_path):
    _populate(db)
    name = _restore(db.conninfo(), db.cluster, tmp_path)
    try:
        _assert_rules_hold(db.cluster, name)
        _assert_migrate_installs_the_guards_again(db.cluster, name)
    finally:
        _drop(db.cluster, name)


def test_a_restore_into_another_server_of_the_newest_major_keeps_every_rule(db, newest, tmp_path):
    _populate(db)
    name = _restore(db.conninfo(), newest, tmp_path)
    try:
        _assert_rules_hold(newest, name)
        _assert_migrate_installs_the_guards_again(newest, name)
    finally:
        _drop(newest, name)


def test_a_renamed_numbered_table_is_refused_with_a_hint_that_works(db):
    """Generated functions name their table: after a rename (no DDL guard) finalizing is refused until the
    command the hint names has run, and then numbering continues."""
    db.protect_invoice(number_column="number", number_format=FORMAT)
    app = db.connect("app")
    app.execute("INSERT INTO invoice (id, company_id, issued_on, status) VALUES (1, 1, '2026-03-02', 'approved')")
    db.owner().execute("ALTER TABLE invoice RENAME TO sales_invoice")
    with refused("LL009", r"^the numbering triggers of public\.sales_invoice were generated for public\.invoice") as e:
        app.execute("INSERT INTO sales_invoice (id, company_id, issued_on, status) VALUES (2, 1, '2026-03-03', 'paid')")
    assert "SELECT ledgerlock.reinstall_guards()" in e.value.diag.message_hint
    db.connect("admin").execute("SELECT ledgerlock.reinstall_guards()")
    app.execute("INSERT INTO sales_invoice (id, company_id, issued_on, status) VALUES (2, 1, '2026-03-03', 'paid')")
    assert app.execute("SELECT number FROM sales_invoice WHERE id = 2").fetchone() == ("INV-2026-00002",)
    leftovers = db.owner().execute("SELECT count(*) FROM pg_proc WHERE proname ~ '^_ll40_t[0-9a-f]+_' "
                                   "AND NOT EXISTS (SELECT FROM pg_trigger t WHERE t.tgfoid = pg_proc.oid)")
    assert leftovers.fetchone() == (0,)  # the old name's functions are pruned


def upgrade_sources() -> list[str]:
    """pg_upgrade from the oldest server of the run to the newest one found: the longest jump, once per run (two
    servers and an upgrade cost half a minute)."""
    oldest = min(selected_servers(), key=major)
    return [oldest] if oldest != newest_server() else []


@pytest.mark.parametrize("source", upgrade_sources())
def test_pg_upgrade_to_the_newest_major_keeps_every_rule_and_the_evidence(source, tmp_path):
    """A server with ledgerlock in use (the DDL guard installed, a digest kept by the auditor) upgraded in place by
    pg_upgrade: the rules hold, numbering continues, the kept digest verifies, migrate has nothing to do, doctor
    finds nothing critical and the DDL guard still refuses."""
    old, old_root = start_cluster(source, known_servers()[source])
    new_root = scratch_dir("ll-upgraded-")
    new = None
    try:
        old.maintain(sql.SQL("CREATE DATABASE books TEMPLATE {}").format(sql.Identifier(TEMPLATE)))
        books = TestDatabase(old, "books")
        _populate(books)
        books.owner().execute("SELECT ledgerlock.install_ddl_guard()")
        auditor = books.connect("auditor")
        auditor.execute("SELECT ledgerlock.audit_seal()")
        digest = auditor.execute("SELECT ledgerlock.audit_digest()").fetchone()[0]
        books.close_all()
        old.close()
        old.server.stop()

        new_server = old.server.upgraded_to(new_root / "data", known_servers()[newest_server()])
        new_server.start()
        new = Cluster(newest_server(), new_server)
        with psycopg.connect(new.conninfo("books"), autocommit=True) as owner:
            version = owner.execute("SHOW server_version_num").fetchone()[0][:2]
            assert version == str(major(newest_server()))
        report = migrate.migrate(new.conninfo("books"))  # the same oids, the same code: nothing to do
        assert not report.changed and report.restored_tables == [], report
        with psycopg.connect(new.conninfo("books", "auditor"), autocommit=True) as auditor:
            ok, problem = auditor.execute("SELECT ok, problem FROM ledgerlock.verify_audit(%s)", (digest,)).fetchone()
            assert (ok, problem) == (True, None)
            critical = auditor.execute("SELECT object, finding FROM ledgerlock.doctor_findings() "
                                       "WHERE severity = 'critical'").fetchall()
            assert critical == []
        _assert_rules_hold(new, "books")  # R1-R5, numbering continued, the chain and books verified again
        with psycopg.connect(new.conninfo("books"), autocommit=True) as owner:
            with refused("LL008", r"^dropping trigger ll_10_final_update on public\.invoice"):
                owner.execute("DROP TRIGGER ll_10_final_update ON invoice")
    finally:
        if new is not None:
            new.close()
            new.server.destroy()
        shutil.rmtree(new_root, ignore_errors=True)
        stop_cluster(old, old_root)
