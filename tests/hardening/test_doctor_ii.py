"""`ledgerlock doctor`, second round (issue 13, item 8 and the prepared transactions of item 6): no false
alarm on healthy R4 tables, a replaced guard function reported to the auditor, prepared transactions that
hold ledgerlock's locks reported as critical."""

from __future__ import annotations

import json
import shutil

import psycopg
import pytest
from click.testing import CliRunner

from ledgerlock import migrate, sqlfiles
from ledgerlock.cli import cli
from ledgerlock.server import SUPERUSER, LocalServer
from lltest import scratch_dir

NOT_PROTECTED = "but is not protected"


def doctor(conninfo: str):
    res = CliRunner().invoke(cli, ["--dsn", conninfo, "doctor", "--json"])
    assert res.exit_code in (0, 3), res.output
    return res.exit_code, json.loads(res.stdout)


def critical(found):
    return [f for f in found if f["severity"] == "critical"]


# --- R4 tables are not "unprotected tables carrying guards" -------------------------------------------

@pytest.fixture
def r4(db):
    owner = db.owner()
    db.protect_invoice(owner)
    owner.execute("SELECT ledgerlock.protect_referenced('invoice', 'payment')")
    owner.execute("SELECT ledgerlock.protect_lines('invoice_line', 'invoice')")
    owner.execute("SELECT ledgerlock.protect_referenced('customer', 'invoice')")  # an unprotected parent
    return owner


@pytest.mark.parametrize("role", ["owner", "auditor"])
def test_healthy_r4_children_and_parents_are_not_reported(db, r4, role):
    _, found = doctor(db.conninfo(role))
    assert not [f for f in found if NOT_PROTECTED in f["finding"]], found
    assert not [f for f in found if f["check"] == "guard trigger"], found


@pytest.mark.parametrize(("stray", "table", "trigger"), [
    ("CREATE TRIGGER ll_30_r1_child_extra BEFORE INSERT ON quote FOR EACH ROW "
     "EXECUTE FUNCTION suppress_redundant_updates_trigger()", "public.quote", "ll_30_r1_child_extra"),
    ("CREATE TRIGGER ll_10_final_update BEFORE UPDATE ON payment FOR EACH ROW "
     "EXECUTE FUNCTION suppress_redundant_updates_trigger()", "public.payment", "ll_10_final_update"),
    ("CREATE TRIGGER ll_30_r999_child_insert BEFORE INSERT ON payment FOR EACH ROW "
     "EXECUTE FUNCTION suppress_redundant_updates_trigger()", "public.payment", "ll_30_r999_child_insert"),
])
def test_a_stray_guard_on_an_unregistered_table_is_still_reported(db, r4, stray, table, trigger):
    r4.execute(stray)
    _, found = doctor(db.conninfo())
    assert any(f["object"] == table and f"carries guard {trigger} {NOT_PROTECTED}" in f["finding"]
               for f in found if f["severity"] == "warning"), found


def test_a_disabled_r4_guard_on_an_unprotected_child_is_critical(db, r4):
    trigger = r4.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = 'payment'::regclass "
                         "AND tgname ~ '^ll_30_' ORDER BY 1 LIMIT 1").fetchone()[0]
    r4.execute(f"ALTER TABLE payment DISABLE TRIGGER {trigger}")
    code, found = doctor(db.conninfo())
    assert code == 3
    assert any(f["object"] == "public.payment" and f"guard {trigger} on public.payment is disabled" in f["finding"]
               for f in critical(found)), found


# --- a replaced guard function, seen by the auditor ---------------------------------------------------

REPLACE_GUARD = ("CREATE OR REPLACE FUNCTION ledgerlock.guard_final_row() RETURNS trigger LANGUAGE plpgsql "
                 "SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$ BEGIN RETURN NEW; END $$")


@pytest.mark.parametrize("role", ["auditor", "admin"])
def test_the_auditor_is_told_of_a_guard_function_replaced_by_a_superuser(db, role):
    db.protect_invoice()
    code, found = doctor(db.conninfo(role))
    assert not [f for f in found if f["check"] in ("function", "code")], found
    db.owner().execute(REPLACE_GUARD)
    res = CliRunner().invoke(cli, ["--dsn", db.conninfo(role), "doctor"])
    assert res.exit_code == 3, res.output
    assert "[critical] function: ledgerlock.guard_final_row() differs from the shipped definition" in res.output


def test_status_as_auditor_reads_the_installed_code(db):
    res = CliRunner().invoke(cli, ["--dsn", db.conninfo("auditor"), "status", "--json"])
    assert res.exit_code == 0, res.output
    st = json.loads(res.output)
    owner = json.loads(CliRunner().invoke(cli, ["--dsn", db.conninfo(), "status", "--json"]).output)
    assert st == owner and st["pending"] == [] and st["code_current"] is True, st


# --- prepared transactions that hold ledgerlock's locks -----------------------------------------------

@pytest.fixture
def prepared_cluster(cluster):
    """A database where PREPARE TRANSACTION works: the test cluster's own if it allows prepared
    transactions, else a throwaway server of the same build with max_prepared_transactions = 5."""
    with psycopg.connect(cluster.conninfo()) as conn:
        allowed = int(conn.execute("SHOW max_prepared_transactions").fetchone()[0]) > 0
    if allowed:
        with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE prepared_xacts TEMPLATE ll_template")
        yield lambda role="owner": cluster.conninfo("prepared_xacts", role)
        with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
            conn.execute("DROP DATABASE prepared_xacts WITH (FORCE)")
        return
    root = scratch_dir("ll-prepared-")
    server = LocalServer(datadir=root / "data", bindir=cluster.server.bindir,
                         settings={"max_prepared_transactions": "5", "fsync": "off"})
    try:
        server.start()
        migrate.migrate(server.conninfo())
        with psycopg.connect(server.conninfo(), autocommit=True) as conn:
            conn.execute(sqlfiles.demo_schema())
            conn.execute("CREATE ROLE ll_app LOGIN; CREATE ROLE ll_auditor LOGIN IN ROLE ledgerlock_auditor; "
                         "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ll_app; "
                         "GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO ll_app")
        yield lambda role="owner": server.conninfo(user=SUPERUSER if role == "owner" else f"ll_{role}")
    finally:
        server.destroy()
        shutil.rmtree(root, ignore_errors=True)


def prepared_findings(found):
    return [f for f in found if f["check"] == "prepared transaction"]


def test_a_prepared_transaction_holding_a_number_counter_is_critical(prepared_cluster):
    conninfo = prepared_cluster
    with psycopg.connect(conninfo(), autocommit=True) as owner:
        owner.execute("SELECT ledgerlock.protect('invoice', 'issued_on', 'company_id', "
                      "$$status in ('approved','paid')$$, number_column => 'number', "
                      "number_format => 'INV-{YYYY}-{SEQ:5}')")
    _, found = doctor(conninfo("auditor"))
    assert prepared_findings(found) == []
    # the neighbour: a prepared transaction on a table ledgerlock has nothing to do with
    with psycopg.connect(conninfo("app")) as app:
        app.execute("INSERT INTO quote (id, company_id, amount) VALUES (1, 1, 5)")
        app.execute("PREPARE TRANSACTION 'harmless'")
    with psycopg.connect(conninfo("app")) as app:
        app.execute("INSERT INTO invoice (id, company_id, amount, status) VALUES (1, 1, 10, 'approved')")
        app.execute("PREPARE TRANSACTION 'stuck'")
    try:
        code, found = doctor(conninfo("auditor"))
        assert code == 3
        [f] = prepared_findings(found)
        assert f["severity"] == "critical" and f["object"] == "stuck"
        assert f["finding"].startswith("a prepared transaction 'stuck' holds locks on ")
        assert "ledgerlock.number_counter" in f["finding"] and "public.invoice" in f["finding"]
        assert f["fix"] == "COMMIT PREPARED 'stuck' or ROLLBACK PREPARED 'stuck'"
    finally:
        with psycopg.connect(conninfo(), autocommit=True) as owner:
            owner.execute("ROLLBACK PREPARED 'stuck'")
    code, found = doctor(conninfo("auditor"))
    assert prepared_findings(found) == []
    with psycopg.connect(conninfo(), autocommit=True) as owner:
        owner.execute("ROLLBACK PREPARED 'harmless'")
