"""Where users run verification: read-only (a standby's 25006 reproduced with default_transaction_read_only),
and on a copy restored with pg_dump/pg_restore into another cluster, whose transaction ids start over."""

from __future__ import annotations

import json
import subprocess

import psycopg
import pytest
from click.testing import CliRunner
from test_tampering import triggers_off

from ledgerlock.cli import cli
from lltest import known_servers, refused, start_cluster, stop_cluster

READ_ONLY = "-c default_transaction_read_only=on"


@pytest.fixture
def trail(db):
    db.protect_invoice()
    app = db.connect("app")
    app.execute("INSERT INTO invoice (id, company_id, amount) SELECT g, 1 + g % 2, g FROM generate_series(1, 10) g")
    db.digest = db.connect("auditor").execute("SELECT ledgerlock.audit_digest()").fetchone()[0]
    app.execute("UPDATE invoice SET amount = 99 WHERE id = 4")  # not sealed yet
    return db


def read_only(db):
    return psycopg.connect(db.conninfo("auditor") + f" options='{READ_ONLY}'", autocommit=True)


def test_verify_runs_read_only_and_says_how_many_events_wait_for_a_seal(trail):
    with read_only(trail) as ro:
        # the neighbour that a standby refuses: sealing writes
        with refused("25006", "read-only transaction"):
            ro.execute("SELECT ledgerlock.audit_seal()")
        ok, unsealed, problems = ro.execute(
            "SELECT ok, unsealed, problems FROM ledgerlock.verify_audit(%s)", (trail.digest,)).fetchone()
    assert ok and unsealed == 1 and problems == 0
    res = CliRunner().invoke(cli, ["--dsn", trail.conninfo("auditor") + f" options='{READ_ONLY}'",
                                   "audit", "verify", "--digest", trail.digest])
    assert res.exit_code == 0, res.output
    assert "1 event(s) are not sealed yet" in res.output


def test_read_only_verification_still_reports_a_changed_row(trail):
    su = trail.owner()
    seq = su.execute("SELECT max(seq) FROM ledgerlock.audit_event WHERE row_key = '{\"id\": 4}'").fetchone()[0]
    with triggers_off(su, "invoice"):
        su.execute("UPDATE invoice SET amount = 5 WHERE id = 4")
    with read_only(trail) as ro:
        ok, problems, problem = ro.execute("SELECT ok, problems, problem FROM ledgerlock.verify_audit()").fetchone()
    assert not ok and problems == 1
    assert problem == f"invoice id=4: amount is 5.00 in the table, 99.00 in event seq {seq}"


@pytest.fixture
def second_cluster(cluster):
    """Another server of the same version: a restore target whose transaction ids start low."""
    c, root = start_cluster(f"{cluster.name}-restore", known_servers()[cluster.name])
    yield c
    stop_cluster(c, root)


# pg_dump --quote-all-identifiers (pg_upgrade dumps with it) writes every name quoted: the definitions it
# restores are read back by PostgreSQL, and ledgerlock's code and trail come out the same
@pytest.mark.parametrize("dump_options", [[], ["--quote-all-identifiers"]], ids=["plain", "quoted"])
def test_a_dump_restored_into_another_cluster_verifies_and_new_writes_verify(trail, second_cluster, dump_options):
    src = trail.owner()
    # the source's transaction ids run ahead of the fresh target's, as in most restores
    for _ in range(3000):
        src.execute("SELECT pg_current_xact_id()")
    trail.connect("app").execute("UPDATE invoice SET status = 'approved' WHERE id = 3")
    approved_by = src.execute("SELECT db_user FROM ledgerlock.audit_log ORDER BY seq DESC LIMIT 1").fetchone()[0]
    trail.connect("app").execute("UPDATE invoice SET amount = 98 WHERE id = 5")  # unsealed in the dump
    digest = trail.connect("auditor").execute("SELECT ledgerlock.audit_digest()").fetchone()[0]
    trail.connect("app").execute("UPDATE invoice SET amount = 97 WHERE id = 6")  # unsealed in the dump
    bindir = second_cluster.server.bindir
    dump = subprocess.run([str(bindir / "pg_dump"), "-Fc", *dump_options, "-d", trail.conninfo()],
                          capture_output=True, check=True)
    with psycopg.connect(second_cluster.conninfo(), autocommit=True) as c:
        c.execute("CREATE DATABASE restored")
    subprocess.run([str(bindir / "pg_restore"), "-d", second_cluster.conninfo("restored")], input=dump.stdout,
                   capture_output=True)
    target = psycopg.connect(second_cluster.conninfo("restored"), autocommit=True)
    last_below = target.execute("SELECT max(sealed_below) FROM ledgerlock.audit_chain").fetchone()[0]
    here = target.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())").fetchone()[0]
    assert int(str(here)) < int(str(last_below))  # the ids started over: the comparison below means something

    def verify():
        with psycopg.connect(second_cluster.conninfo("restored", "auditor"), autocommit=True) as a:
            return a.execute("SELECT ok, problems, problem, unsealed FROM ledgerlock.verify_audit(%s)",
                             (digest,)).fetchone()

    # read-only first (before any seal in the new cluster), then sealing
    with psycopg.connect(second_cluster.conninfo("restored", "auditor") + f" options='{READ_ONLY}'") as ro:
        ok, problems, problem, unsealed = ro.execute(
            "SELECT ok, problems, problem, unsealed FROM ledgerlock.verify_audit(%s)", (digest,)).fetchone()
    assert (ok, problems, problem, unsealed) == (True, 0, None, 1)
    assert verify()[:3] == (True, 0, None)
    with psycopg.connect(second_cluster.conninfo("restored", "app"), autocommit=True) as app:
        app.execute("UPDATE invoice SET amount = 96 WHERE id = 7")
        app.execute("INSERT INTO invoice (id, company_id, amount) VALUES (50, 1, 5)")
    assert verify() == (True, 0, None, 0)
    res = CliRunner().invoke(cli, ["--dsn", second_cluster.conninfo("restored", "auditor"), "audit", "verify",
                                   "--digest", digest])
    assert res.exit_code == 0, res.output

    # the history of a row, as an auditor asks for it, holds its events from before the restore: they carry
    # the old cluster's oid of the table, and are read by the name the trail files them under
    old_oid = src.execute("SELECT 'invoice'::regclass::oid").fetchone()[0]
    assert target.execute("SELECT 'invoice'::regclass::oid").fetchone()[0] != old_oid
    with psycopg.connect(second_cluster.conninfo("restored", "auditor"), autocommit=True) as a:
        history = a.execute("SELECT operation, new_row ->> 'amount', table_name::text, recorded_table "
                            "FROM ledgerlock.audit_log WHERE table_name = 'invoice'::regclass "
                            "AND row_key = '{\"id\": 7}' ORDER BY seq").fetchall()
        assert history == [("INSERT", "7.00", "invoice", "public.invoice"),
                           ("UPDATE", "96.00", "invoice", "public.invoice")]
        assert a.execute("SELECT count(*) FROM ledgerlock.audit_log "
                         "WHERE table_name IS NULL AND recorded_table IS NOT NULL").fetchone() == (0,)
    res = CliRunner().invoke(cli, ["--dsn", second_cluster.conninfo("restored", "auditor"), "audit", "log",
                                   "--table", "invoice", "--key", "7", "--json"])
    assert res.exit_code == 0, res.output
    assert [(e["operation"], e["table_name"]) for e in json.loads(res.stdout)] == [("INSERT", "invoice"),
                                                                                   ("UPDATE", "invoice")]
    # why_locked says since when a row is final from the same history: invoice 3, approved before the dump (by
    # whom to the trail's readers: the controller; the application reads since when)
    why = "SELECT summary FROM ledgerlock.why_locked('invoice', '{\"id\": 3}') WHERE rule = 'final'"
    with psycopg.connect(second_cluster.conninfo("restored", "controller"), autocommit=True) as ctl:
        [(summary,)] = ctl.execute(why).fetchall()
    assert approved_by in summary, summary
    with psycopg.connect(second_cluster.conninfo("restored", "app"), autocommit=True) as app:
        [(summary,)] = app.execute(why).fetchall()
    assert " since 2" in summary and " by " not in summary, summary
    # the restored code is the code this package ships, and every guard's definition is as recorded
    res = CliRunner().invoke(cli, ["--dsn", second_cluster.conninfo("restored", "auditor"), "doctor", "--json"])
    assert not [f for f in json.loads(res.stdout) if f["check"] in ("function", "guard trigger")], res.output
    target.close()
