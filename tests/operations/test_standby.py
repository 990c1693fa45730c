"""A physical streaming standby (pg_basebackup -R from the test server, started beside it): the read-only
commands answer there, and every writing command says, in a sentence and with exit 1, that the server is a
read-only standby. A session made read-only by a role setting (default_transaction_read_only) is told the same.
And a failover: the primary killed under load, the standby promoted, keeps the books and the evidence."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from ledgerlock.server import LocalServer
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

VENV_BIN = Path(sys.executable).parent
READ_ONLY = "server is a read-only standby (or the session is read-only); run this on the primary"


def ledgerlock(dsn: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "ledgerlock"), "--dsn", dsn, *args], capture_output=True, text=True,
                          timeout=300, input="")


def caught_up(primary: psycopg.Connection, standby: psycopg.Connection, timeout: float = 60) -> None:
    """Wait (bounded) until the standby has replayed everything the primary has written so far."""
    # the insert position: under synchronous_commit = off (the test servers) a commit may not be written yet
    lsn = primary.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]
    deadline = time.monotonic() + timeout
    while standby.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)).fetchone()[0] is not True:
        assert time.monotonic() < deadline, f"the standby did not replay {lsn} within {timeout}s"
        time.sleep(0.05)


@pytest.fixture
def books(db):
    """A protected, numbered invoice table with final rows, a period lock and an audit trail."""
    owner = db.owner()
    db.protect_invoice(owner, number_column="number", number_format="INV-{YYYY}-{SEQ:5}")
    app = db.connect("app")
    for day in ("2025-03-10", "2025-03-12", "2025-04-02"):
        app.execute("INSERT INTO invoice (company_id, issued_on, status) VALUES (1, %s, 'approved')", (day,))
    db.connect("admin").execute("SELECT ledgerlock.lock_period('1', '2025-03-01', '2025-03-31')")
    return db


@pytest.fixture
def standby(books, cluster):
    root = scratch_dir("ll-standby-")
    server: LocalServer = cluster.server.make_standby(root / "data")
    try:
        server.start()
        with psycopg.connect(books.conninfo(), autocommit=True) as primary, \
                psycopg.connect(server.conninfo(books.name), autocommit=True) as replica:
            assert replica.execute("SELECT pg_is_in_recovery()").fetchone()[0] is True
            # a row written after the base backup reaches the standby by streaming
            primary.execute("INSERT INTO invoice (company_id, issued_on, status) VALUES (1, '2025-04-03', 'approved')")
            caught_up(primary, replica)
            assert replica.execute("SELECT count(*) FROM invoice").fetchone()[0] == 4
        yield server
    finally:
        server.destroy()
        shutil.rmtree(root, ignore_errors=True)


def on_standby(standby: LocalServer, books, role: str) -> str:
    return standby.conninfo(books.name, "postgres" if role == "owner" else f"ll_{role}")


READS = [
    ("admin", ["status"]),
    ("auditor", ["status"]),
    ("admin", ["locks"]),
    ("controller", ["locks", "1"]),
    ("auditor", ["history"]),
    ("app", ["why", "invoice", "1"]),
    ("auditor", ["numbers", "check"]),
    ("admin", ["numbers", "series"]),
    ("auditor", ["audit", "log"]),
]
WRITES = [
    ("owner", ["migrate"]),
    ("admin", ["protect", "payment", "--date-column", "paid_on"]),
    ("admin", ["lock", "1", "--from", "2025-05-01", "--to", "2025-05-31"]),
    ("admin", ["upgrade", "1"]),
    ("admin", ["unlock", "1", "--reason", "late supplier invoice"]),
    ("admin", ["unprotect", "invoice", "--reason", "retired"]),
]


def test_a_standby_answers_reads_and_refuses_writes_in_a_sentence(standby, books):
    """One test, because a standby costs a base backup and a start."""
    for role, args in READS:
        res = ledgerlock(on_standby(standby, books, role), *args)
        assert res.returncode == 0, (role, args, res.stdout, res.stderr)
        assert "Traceback" not in res.stderr
    res = ledgerlock(on_standby(standby, books, "app"), "why", "invoice", "1")
    assert "period lock" in res.stdout.lower() or "final" in res.stdout.lower()
    for role, args in WRITES:
        res = ledgerlock(on_standby(standby, books, role), *args)
        assert res.returncode == 1, (role, args, res.stdout, res.stderr)
        assert READ_ONLY in res.stderr, (role, args, res.stderr)
        assert "Traceback" not in res.stderr
    # the permitted neighbour: the same lock on the primary
    res = ledgerlock(books.conninfo("admin"), "lock", "1", "--from", "2025-05-01", "--to", "2025-05-31")
    assert res.returncode == 0, res.stderr


def test_a_read_only_session_is_told_the_same(books):
    owner = books.owner()
    owner.execute(f'ALTER ROLE ll_admin IN DATABASE "{books.name}" SET default_transaction_read_only = on')
    res = ledgerlock(books.conninfo("admin"), "lock", "1", "--from", "2025-05-01", "--to", "2025-05-31")
    assert res.returncode == 1 and READ_ONLY in res.stderr and "Traceback" not in res.stderr
    assert "error 25006" in res.stderr
    res = ledgerlock(books.conninfo("admin"), "lock", "1", "--from", "2025-05-01", "--to", "2025-05-31", "--json")
    assert res.returncode == 1 and '"sqlstate": "25006"' in res.stdout and READ_ONLY in res.stdout
    # reads still answer for that role; a role without the setting still writes
    for args in (["locks"], ["status"], ["history"]):
        assert ledgerlock(books.conninfo("admin"), *args).returncode == 0
    res = ledgerlock(books.conninfo("controller"), "lock", "1", "--from", "2025-05-01", "--to", "2025-05-31")
    assert res.returncode == 0, res.stderr



def test_verify_and_doctor_answer_read_only_on_the_standby(standby, books):
    """verify_audit and `audit verify` on the standby verify what is sealed and count what is not (the row
    written after the base backup); `doctor` answers there: a write would be refused (25006), as sealing is."""
    with psycopg.connect(books.conninfo(), autocommit=True) as primary:
        primary.execute("SELECT ledgerlock.audit_digest()")  # seals the base backup's events and the new row
        primary.execute("INSERT INTO invoice (company_id, issued_on, status) VALUES (1, '2025-04-04', 'draft')")
        with psycopg.connect(on_standby(standby, books, "auditor"), autocommit=True) as replica:
            caught_up(primary, replica)
            # the neighbour a standby refuses: sealing writes
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                replica.execute("SELECT ledgerlock.audit_seal()")
            ok, unsealed, problems = replica.execute(
                "SELECT ok, unsealed, problems FROM ledgerlock.verify_audit()").fetchone()
            assert (ok, unsealed, problems) == (True, 1, 0)
            digest = primary.execute("SELECT ledgerlock._audit_head()").fetchone()[0]
            ok, unsealed = replica.execute(
                "SELECT ok, unsealed FROM ledgerlock.verify_audit_from(%s)", (digest,)).fetchone()
            assert (ok, unsealed) == (True, 1)
        for role in ("auditor", "admin"):
            res = ledgerlock(on_standby(standby, books, role), "audit", "verify")
            assert res.returncode == 0, (role, res.stdout, res.stderr)
            assert "1 event(s) are not sealed yet" in res.stdout and "Traceback" not in res.stderr
            res = ledgerlock(on_standby(standby, books, role), "doctor")
            assert res.returncode in (0, 3), (role, res.stdout, res.stderr)
            assert READ_ONLY not in res.stderr and "Traceback" not in res.stderr, res.stderr
            assert "doctor" in res.stdout.lower() or res.stdout.strip(), res.stdout


def failover_servers() -> list[str]:
    """One server: the failover is PostgreSQL's; what ledgerlock must keep through it does not vary by version."""
    return [max(selected_servers(), key=major)]


@pytest.mark.parametrize("server_name", failover_servers())
def test_a_standby_promoted_after_the_primary_crashed_keeps_the_books_and_the_evidence(server_name):
    """Four writers finalize numbered invoices on the primary; the auditor keeps a digest; the primary is killed
    (SIGKILL of the postmaster) in the middle of the load and the standby promoted. There, with what reached it:
    the kept digest verifies and so do the books, the numbers run without a gap, the sealer resumes, the lock
    still refuses, and new finalizations take the next numbers."""
    primary, root = start_cluster(server_name, known_servers()[server_name])
    standby_root = scratch_dir("ll-failover-")
    standby = None
    try:
        primary.maintain(sql.SQL("CREATE DATABASE books TEMPLATE {}").format(sql.Identifier(TEMPLATE)))
        books = TestDatabase(primary, "books")
        books.protect_invoice(number_column="number", number_format="INV-{SEQ:5}")
        books.connect("admin").execute("SELECT ledgerlock.lock_period('1', '2025-03-01', '2025-03-31', 'hard')")
        books.connect("app").execute("INSERT INTO invoice (company_id, issued_on, status) VALUES (1, '2025-04-01', "
                                     "'approved')")
        digest = books.connect("auditor").execute("SELECT ledgerlock.audit_digest()").fetchone()[0]
        standby = primary.server.make_standby(standby_root / "data")
        standby.start()

        committed = []  # acknowledged, not necessarily durable: the test servers run synchronous_commit = off
        lock, under_way = threading.Lock(), threading.Event()

        def write(worker: int) -> None:
            with psycopg.connect(books.conninfo("app"), autocommit=True) as app:
                for n in range(400):  # bounded: the kill comes long before
                    try:
                        app.execute("INSERT INTO invoice (company_id, issued_on, status, amount) "
                                    "VALUES (1, '2025-04-02', 'approved', %s)", (worker * 1000 + n,))
                    except psycopg.OperationalError:
                        return  # the primary went away
                    with lock:
                        committed.append(worker * 1000 + n)
                        if len(committed) >= 100:
                            under_way.set()

        writers = [threading.Thread(target=write, args=(w,)) for w in range(4)]
        for w in writers:
            w.start()
        assert under_way.wait(120), "the load never got under way"
        # the standby has replayed part of the load (bounded wait: what streams, streams), and the writers go on
        with psycopg.connect(books.conninfo(), autocommit=True) as p, \
                psycopg.connect(standby.conninfo("books"), autocommit=True) as s:
            caught_up(p, s)
            replayed = s.execute("SELECT count(*) FROM invoice WHERE status = 'approved'").fetchone()[0]
        assert replayed > 1
        primary.server.kill()
        for w in writers:
            w.join(60)
        standby.promote()

        new = TestDatabase(Cluster(server_name, standby), "books")
        owner = new.owner()
        assert owner.execute("SELECT pg_is_in_recovery()").fetchone()[0] is False
        finals = owner.execute("SELECT count(*), max(substr(number, 5)::int) FROM invoice "
                               "WHERE status = 'approved'").fetchone()
        assert finals[0] >= replayed and finals[0] == finals[1]  # 1..n, each once: what reached it, no gap
        assert owner.execute("SELECT * FROM ledgerlock.number_gaps()").fetchall() == []
        auditor = new.connect("auditor")
        ok, problem, unsealed = auditor.execute("SELECT ok, problem, unsealed FROM ledgerlock.verify_audit(%s)",
                                                (digest,)).fetchone()
        assert (ok, problem) == (True, None) and unsealed >= 0
        auditor.execute("SELECT ledgerlock.audit_seal()")  # the sealer resumes on the new primary
        ok, unsealed, problems = auditor.execute("SELECT ok, unsealed, problems FROM ledgerlock.verify_audit(%s)",
                                                 (digest,)).fetchone()
        assert (ok, unsealed, problems) == (True, 0, 0)
        app = new.connect("app")
        with refused("LL002", r"^Period 2025-03-01\.\.2025-03-31 is locked \(hard\) for scope 1"):
            app.execute("INSERT INTO invoice (company_id, issued_on) VALUES (1, '2025-03-15')")
        number = app.execute("INSERT INTO invoice (company_id, issued_on, status) VALUES (1, '2025-04-03', "
                             "'approved') RETURNING number").fetchone()[0]
        assert number == f"INV-{finals[0] + 1:05d}"
        new.close_all()
        books.close_all()
    finally:
        if standby is not None:
            standby.destroy()
        shutil.rmtree(standby_root, ignore_errors=True)
        stop_cluster(primary, root)
