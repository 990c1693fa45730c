"""Logical replication between two real servers, both protected by ledgerlock (docs/replication.md): the
subscriber applies the publisher's books as they were made — the initial copy and streamed changes keep the
publisher's numbers, nothing the publisher accepted is refused, no event is added — while local writes on the
subscriber stay guarded; its evidence verifies against the publisher's digest, and after cut-over numbering
continues without gap or duplicate."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from ledgerlock.server import THROWAWAY_SETTINGS, LocalServer
from lltest import Cluster, TestDatabase, fresh_database, known_servers, major, refused, scratch_dir, trigger_def

FORMAT = "INV-{YYYY}-{SEQ:5}"
VENV_BIN = Path(sys.executable).parent
SYNC_TIMEOUT = 60.0


def start_publisher(name: str) -> tuple[Cluster, Path]:
    """A second server of this major with wal_level = logical (a restart-only setting), set up like the test
    servers (ledgerlock template, login roles)."""
    root = scratch_dir(f"ll-{name}-")
    (root / "owner.pid").write_text(str(os.getpid()))
    settings = dict(THROWAWAY_SETTINGS) | {"wal_level": "logical", "max_replication_slots": "8",
                                            "max_wal_senders": "8"}
    server = LocalServer(datadir=root / "data", bindir=known_servers()[name], settings=settings)
    server.start()
    cluster = Cluster(name, server)
    cluster.setup()
    return cluster, root


@pytest.fixture(scope="module")
def publisher(cluster):
    """A publishing server of the same major as the subscriber (the session's server), one per module."""
    pub, root = start_publisher(cluster.name)
    yield pub
    pub.server.destroy()
    shutil.rmtree(root, ignore_errors=True)


def populate(pub: TestDatabase) -> None:
    """Final and draft numbered invoices, a payment referencing a draft, a hard lock over January."""
    pub.protect_invoice(number_column="number", number_format=FORMAT)
    owner = pub.owner()
    owner.execute("SELECT ledgerlock.protect('payment', 'paid_on', 'company_id', final_when => $$status = 'posted'$$)")
    owner.execute("SELECT ledgerlock.protect_referenced('invoice', 'payment')")
    app = pub.connect("app")
    app.execute("""INSERT INTO invoice (id, company_id, issued_on, status, amount) VALUES
                   (1, 1, '2026-03-02', 'approved', 100), (2, 1, '2026-03-03', 'approved', 200),
                   (3, 1, '2026-03-04', 'draft', 300), (4, 1, '2026-01-15', 'draft', 50),
                   (6, 1, '2026-03-07', 'draft', 80)""")
    app.execute("INSERT INTO payment (id, company_id, invoice_id, paid_on, amount) VALUES (1, 1, 6, '2026-03-07', 80)")
    pub.connect("admin").execute("SELECT ledgerlock.lock_period('1', '2026-01-01', '2026-01-31', 'hard')")


def publish(pub: TestDatabase) -> None:
    owner = pub.owner()
    tables = [r[0] for r in owner.execute("SELECT t::text FROM ledgerlock.publication_tables() t")]
    owner.execute(sql.SQL("CREATE PUBLICATION books FOR TABLE {}").format(
        sql.SQL(", ").join(sql.SQL(t) for t in tables)))


def subscribe(sub: TestDatabase, pub: TestDatabase, slot: str) -> None:
    conninfo = pub.cluster.server.conninfo(pub.name)
    sub.owner().execute(sql.SQL("CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION books").format(
        sql.Identifier(slot), sql.Literal(conninfo)))


BOOKS = [  # what must be equal on both sides, row for row
    "SELECT id, number, status, amount, paid, issued_on FROM invoice ORDER BY id",
    "SELECT id, invoice_id, status FROM payment ORDER BY id",
    "SELECT tbl::text, prefix, suffix, last_value FROM ledgerlock.number_counter ORDER BY 1, 2, 3",
    "SELECT id, scope, from_date, to_date, level, status FROM ledgerlock.period_lock ORDER BY id",
    "SELECT seq, event_hash FROM ledgerlock.audit_event ORDER BY seq",
    "SELECT chain_seq, chain_hash FROM ledgerlock.audit_chain ORDER BY chain_seq",
    "SELECT id, kind FROM ledgerlock.lock_event ORDER BY id",
]


def books(conn: psycopg.Connection) -> list:
    return [conn.execute(q).fetchall() for q in BOOKS]


def in_sync(pub: psycopg.Connection, sub: psycopg.Connection) -> list:
    """Wait (bounded) until the subscriber holds exactly the publisher's books; returns them."""
    want = books(pub)
    deadline = time.monotonic() + SYNC_TIMEOUT
    while (got := books(sub)) != want:
        if time.monotonic() > deadline:
            for q, w, g in zip(BOOKS, want, got, strict=True):
                assert g == w, q
        time.sleep(0.1)  # a poll interval: the loop ends on what the subscriber holds
    return want


def copied(sub: psycopg.Connection) -> None:
    """Wait (bounded) until every table of the subscriptions has finished its initial copy (docs/replication.md,
    step 4): each table has its own sync worker, so the books being equal says nothing of the registry."""
    deadline = time.monotonic() + SYNC_TIMEOUT
    while (pending := sub.execute("SELECT srrelid::regclass::text, srsubstate::text FROM pg_subscription_rel "
                                  "WHERE srsubstate <> 'r' ORDER BY 1").fetchall()):
        assert time.monotonic() < deadline, pending
        time.sleep(0.1)  # a poll interval: the loop ends on the subscription's state


def ledgerlock(dsn: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "ledgerlock"), "--dsn", dsn, *args], capture_output=True, text=True,
                          timeout=300, input="")


@pytest.fixture
def pair(cluster, publisher):
    """(publisher database, subscriber database): populated, published, subscribed and in sync."""
    with fresh_database(publisher) as pub, fresh_database(cluster) as sub:
        populate(pub)
        publish(pub)
        # under the DDL guard: the admin's subscriber and cut-over steps change guards through ledgerlock's code
        sub.owner().execute("SELECT ledgerlock.install_ddl_guard()")
        sub.connect("admin").execute("SELECT ledgerlock.become_subscriber()")
        slot = f"books_{uuid.uuid4().hex[:8]}"
        subscribe(sub, pub, slot)
        try:
            in_sync(pub.owner(), sub.owner())
            copied(sub.owner())
            # the guards of the replicated registry, installed ENABLE (origin): what local sessions meet
            sub.connect("admin").execute("SELECT ledgerlock.reinstall_guards()")
            yield pub, sub, slot
        finally:
            sub.close_all()
            drop_subscription(sub, slot)
            if not publisher.server.is_running():  # the cut-over stopped it
                publisher.server.start()


def drop_subscription(sub: TestDatabase, slot: str) -> None:
    """Without its publisher a subscription is dropped once detached from its remote slot."""
    owner = sub.owner()
    name = sql.Identifier(slot)
    if owner.execute("SELECT FROM pg_subscription WHERE subname = %s", (slot,)).fetchone() is not None:
        owner.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(name))
        owner.execute(sql.SQL("ALTER SUBSCRIPTION {} SET (slot_name = NONE)").format(name))
        owner.execute(sql.SQL("DROP SUBSCRIPTION {}").format(name))
    sub.close_all()


def test_a_subscriber_applies_the_publishers_books_and_takes_over_at_cut_over(pair):
    pub, sub, slot = pair
    p_owner, s_owner = pub.owner(), sub.owner()
    # the initial copy kept the publisher's numbers; reinstalling the guards added no event
    assert s_owner.execute("SELECT id, number FROM invoice WHERE id <= 2 ORDER BY id").fetchall() == [
        (1, "INV-2026-00001"), (2, "INV-2026-00002")]
    in_sync(p_owner, s_owner)
    guards = s_owner.execute("SELECT DISTINCT tgenabled::text FROM pg_trigger WHERE tgname ~ '^ll_[0-9]{2}_'")
    assert guards.fetchall() == [("O",)]
    # a subscriber's guards probe every row (its mark is 'infinity'), so its skip trigger keeps the mode's test
    assert "current_setting('ledgerlock.on_locked'" in trigger_def(s_owner, "invoice", "ll_20_period_skip")
    assert "current_setting" not in trigger_def(p_owner, "invoice", "ll_20_period_skip")

    # streamed: finalizations, a mutable column of a final row, an override write under a soft lock
    p_app, p_ctl = pub.connect("app"), pub.connect("controller", autocommit=False)
    p_app.execute("UPDATE invoice SET status = 'approved' WHERE id = 3")
    p_app.execute("INSERT INTO invoice (id, company_id, issued_on, status) VALUES (5, 1, '2026-03-06', 'paid')")
    p_app.execute("UPDATE invoice SET paid = true WHERE id = 1")
    p_app.execute("INSERT INTO invoice (id, company_id, issued_on, status, amount) "
                  "VALUES (9, 1, '2026-03-09', 'draft', 90)")
    pub.connect("controller").execute("SELECT ledgerlock.lock_period('1', '2026-03-01', '2026-03-31')")
    p_ctl.execute("SELECT ledgerlock.begin_override('late credit note')")
    p_ctl.execute("UPDATE invoice SET amount = 91 WHERE id = 9")
    p_ctl.commit()
    digest = pub.connect("auditor").execute("SELECT ledgerlock.audit_digest()").fetchone()[0]
    synced = in_sync(p_owner, s_owner)
    finals = [r[:2] for r in synced[0] if r[0] in (1, 2, 3, 5)]
    assert finals == [(1, "INV-2026-00001"), (2, "INV-2026-00002"), (3, "INV-2026-00003"), (5, "INV-2026-00004")]
    assert s_owner.execute("SELECT amount, paid FROM invoice WHERE id IN (1, 9) ORDER BY id").fetchall() == [
        (100, True), (91, False)]
    # the subscriber's evidence is the publisher's, and it verifies against the publisher's digest
    ok, problem = sub.connect("auditor").execute("SELECT ok, problem FROM ledgerlock.verify_audit(%s)",
                                                 (digest,)).fetchone()
    assert (ok, problem) == (True, None)
    assert sub.connect("auditor").execute("SELECT ledgerlock.audit_digest()").fetchone()[0] == digest

    # local writes on the subscriber stay guarded, by the rules first
    s_app = sub.connect("app")
    with refused("LL001", r"^invoice id=1 \(INV-2026-00001\) is final and cannot be updated"):
        s_app.execute("UPDATE invoice SET amount = 1 WHERE id = 1")
    with refused("LL002", r"2026-01-01\.\.2026-01-31 is locked \(hard\)"):
        s_app.execute("UPDATE invoice SET amount = 51 WHERE id = 4")
    with refused("LL003", r"^invoice id=6 \(DRAFT-\d+\) is referenced by payment id=1"):
        s_app.execute("DELETE FROM invoice WHERE id = 6")
    # what the rules let pass would fork the books: refused until cut-over, with the way out
    with refused("25006", r"^UPDATE of public\.invoice is refused on a subscriber"):
        s_app.execute("UPDATE invoice SET paid = true WHERE id = 2")
    with refused("25006", r"^INSERT of ledgerlock\.period_lock is refused on a subscriber"):
        sub.connect("admin").execute("SELECT ledgerlock.lock_period('1', '2026-02-01', '2026-02-28')")
    # the permitted neighbour: the same write made on the publisher reaches the subscriber
    p_app.execute("UPDATE invoice SET paid = true WHERE id = 2")
    in_sync(p_owner, s_owner)
    assert s_owner.execute("SELECT paid FROM invoice WHERE id = 2").fetchone() == (True,)

    # cut-over: not while the subscription applies; then the guards are ENABLE ALWAYS and numbering continues
    with refused("55000", rf"^subscription {slot} still applies the publisher's changes here"):
        sub.connect("admin").execute("SELECT ledgerlock.promote_subscriber()")
    pub.cluster.server.stop()
    s_owner.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(sql.Identifier(slot)))
    advanced = sub.connect("admin").execute("SELECT ledgerlock.promote_subscriber()").fetchone()[0]
    assert advanced["ledgerlock.audit_event_seq"] == s_owner.execute(
        "SELECT max(seq) FROM ledgerlock.audit_event").fetchone()[0]
    guards = s_owner.execute("SELECT DISTINCT tgenabled::text FROM pg_trigger WHERE tgname ~ '^ll_[0-9]{2}_'")
    assert guards.fetchall() == [("A",)]
    # its own marks now, as on the publisher
    assert "current_setting" not in trigger_def(s_owner, "invoice", "ll_20_period_skip")
    s_app = sub.connect("app")
    s_app.execute("INSERT INTO invoice (id, company_id, issued_on, status) VALUES (7, 1, '2026-04-02', 'paid')")
    s_app.execute("INSERT INTO invoice (id, company_id, issued_on, status) VALUES (8, 1, '2026-04-03', 'draft')")
    s_app.execute("UPDATE invoice SET status = 'approved' WHERE id = 8")
    assert s_app.execute("SELECT id, number FROM invoice WHERE id IN (7, 8) ORDER BY id").fetchall() == [
        (7, "INV-2026-00005"), (8, "INV-2026-00006")]
    with refused("LL001", r"^invoice id=7 \(INV-2026-00005\) is final and cannot be updated"):
        s_app.execute("UPDATE invoice SET amount = 1 WHERE id = 7")
    with refused("LL002", r"2026-01-01\.\.2026-01-31 is locked \(hard\)"):  # the replicated lock, own marks now
        s_app.execute("UPDATE invoice SET amount = 51 WHERE id = 4")
    sub.connect("admin").execute("SELECT ledgerlock.lock_period('1', '2026-02-01', '2026-02-28')")
    assert s_owner.execute("SELECT * FROM ledgerlock.number_gaps()").fetchall() == []
    new_digest = sub.connect("auditor").execute("SELECT ledgerlock.audit_digest()").fetchone()[0]
    assert new_digest != digest
    ok, problem = sub.connect("auditor").execute("SELECT ok, problem FROM ledgerlock.verify_audit(%s)",
                                                 (new_digest,)).fetchone()
    assert (ok, problem) == (True, None)


def test_a_subscription_without_ledgerlocks_tables_is_named_by_doctor_in_a_sentence(cluster, publisher):
    """Publishing the protected tables alone: doctor names the missing tables and the fix (exit 3, no traceback);
    and become_subscriber refuses a database that keeps books of its own, in a sentence."""
    with fresh_database(publisher) as pub, fresh_database(cluster) as sub:
        populate(pub)
        pub.owner().execute("CREATE PUBLICATION books FOR TABLE invoice, payment")
        with refused("55000", r"^this database keeps books of its own"):
            pub.connect("admin").execute("SELECT ledgerlock.become_subscriber()")
        sub.connect("admin").execute("SELECT ledgerlock.become_subscriber()")
        slot = f"books_{uuid.uuid4().hex[:8]}"
        subscribe(sub, pub, slot)
        try:
            res = ledgerlock(sub.conninfo("auditor"), "doctor")
            assert "Traceback" not in res.stderr
            assert f"subscription {slot} does not replicate ledgerlock's tables ledgerlock.audit_chain" in res.stdout
            assert "REFRESH PUBLICATION" in res.stdout
            assert res.returncode == 3, (res.returncode, res.stdout, res.stderr)
            res = ledgerlock(sub.conninfo("auditor"), "replication", "status")
            assert res.returncode == 3 and "Traceback" not in res.stderr, (res.stdout, res.stderr)
            assert f"subscription {slot} does not replicate ledgerlock's tables" in res.stdout
            # the permitted neighbour: the publication of every table ledgerlock lists satisfies doctor
            tables = [r[0] for r in pub.owner().execute("SELECT t::text FROM ledgerlock.publication_tables() t")]
            pub.owner().execute(sql.SQL("ALTER PUBLICATION books SET TABLE {}").format(
                sql.SQL(", ").join(sql.SQL(t) for t in tables)))
            sub.owner().execute(sql.SQL("ALTER SUBSCRIPTION {} REFRESH PUBLICATION WITH (copy_data = false)").format(
                sql.Identifier(slot)))
            res = ledgerlock(sub.conninfo("auditor"), "doctor")
            assert "does not replicate" not in res.stdout and "Traceback" not in res.stderr
            assert "this database is a ledgerlock subscriber" in res.stdout
            res = ledgerlock(sub.conninfo("auditor"), "replication", "status")
            assert res.returncode == 0 and res.stdout.startswith("this database is a subscriber"), res.stdout
            # a writing command on the subscriber answers in a sentence too
            res = ledgerlock(sub.conninfo("admin"), "lock", "1", "--from", "2026-05-01", "--to", "2026-05-31")
            assert res.returncode == 1 and "Traceback" not in res.stderr, (res.stdout, res.stderr)
            assert "INSERT of ledgerlock.period_lock is refused on a subscriber" in res.stderr
            assert "logical-replication subscriber: write on the publisher" in res.stderr
            assert "standby" not in res.stderr, res.stderr  # the database is writable; its books are not
            assert "ledgerlock.promote_subscriber()" in res.stderr
        finally:
            drop_subscription(sub, slot)


def test_guards_wait_for_the_initial_copy_of_the_registry(cluster, publisher):
    """Installing the subscriber's guards (and promoting it) before the initial copy is done would install the
    rules of a half-copied registry, silently: refused in a sentence naming the tables, and the CLI's status
    says how many are still copying; once every table is ready, the same call installs them."""
    with fresh_database(publisher) as pub, fresh_database(cluster) as sub:
        populate(pub)
        publish(pub)
        sub.connect("admin").execute("SELECT ledgerlock.become_subscriber()")
        slot = f"books_{uuid.uuid4().hex[:8]}"
        name = sql.Identifier(slot)
        conninfo = pub.cluster.server.conninfo(pub.name)
        sub.owner().execute(sql.SQL("CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION books "
                                    "WITH (enabled = false)").format(name, sql.Literal(conninfo)))
        try:
            admin = sub.connect("admin")
            with refused("55000", r"^installing the guards of a subscriber waits for the initial copy of "
                                  rf"subscription {slot}: .*ledgerlock\.reference_rule \(not started\)"):
                admin.execute("SELECT ledgerlock.reinstall_guards()")
            with refused("55000", rf"^promote_subscriber waits for the initial copy of subscription {slot}"):
                admin.execute("SELECT ledgerlock.promote_subscriber()")
            res = ledgerlock(sub.conninfo("auditor"), "replication", "status")
            assert res.returncode == 0, (res.stdout, res.stderr)
            assert "still in their initial copy" in res.stdout
            # the permitted neighbour: once the copy is done, the guards of the whole registry are installed
            sub.owner().execute(sql.SQL("ALTER SUBSCRIPTION {} ENABLE").format(name))
            copied(sub.owner())
            admin.execute("SELECT ledgerlock.reinstall_guards()")
            guards = sub.owner().execute("SELECT tgname::text FROM pg_trigger WHERE tgrelid = 'invoice'::regclass "
                                         "AND tgname ~ '^ll_30_'").fetchall()
            assert guards, "the referential guards of the copied registry"
            with refused("LL003", r"^invoice id=6 \(DRAFT-\d+\) is referenced by payment id=1"):
                sub.connect("app").execute("DELETE FROM invoice WHERE id = 6")
            res = ledgerlock(sub.conninfo("auditor"), "replication", "status")
            assert "still in their initial copy" not in res.stdout, res.stdout
        finally:
            drop_subscription(sub, slot)


LOCAL_TABLES = {  # ledgerlock's tables each database keeps for itself (docs/replication.md)
    "installed_code", "installed_migration", "code_fingerprint", "guard_install", "ddl_permit", "ddl_snapshot",
    "period_mark_clock", "period_fence", "replication_role", "header_final_mark",
}


def test_every_table_of_ledgerlock_is_either_replicated_or_kept_local_by_decision(db):
    """A new table of ledgerlock must be added to _replicated_own_tables() or to the local list above."""
    owner = db.owner()
    tables = {r[0] for r in owner.execute(
        "SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'ledgerlock'::regnamespace AND c.relkind = 'r' "
        "AND c.relname !~ '^_?yoyo_.*$'")}
    replicated = {r[0] for r in owner.execute(
        "SELECT t::regclass::text FROM unnest(ledgerlock._replicated_own_tables()) t")}
    assert {t.removeprefix("ledgerlock.") for t in replicated} | LOCAL_TABLES == tables
    # each replicated table has a primary key: without one, the publisher's own UPDATE and DELETE would fail
    keyless = owner.execute("SELECT t::regclass::text FROM unnest(ledgerlock._replicated_own_tables()) t "
                            "WHERE NOT EXISTS (SELECT FROM pg_index i WHERE i.indrelid = t AND i.indisprimary)")
    assert keyless.fetchall() == []


def test_a_database_without_ledgerlock_is_told_what_a_subscriber_needs(cluster):
    name = f"bare_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
    try:
        for args in (["replication", "status"], ["replication", "subscribe"], ["replication", "tables"]):
            res = ledgerlock(cluster.conninfo(name), *args)
            assert res.returncode == 1 and "Traceback" not in res.stderr, (args, res.stdout, res.stderr)
            assert f"ledgerlock is not installed in database {name}: a subscriber needs ledgerlock's tables" \
                in res.stderr
    finally:
        with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def other_major(cluster):
    """A subscriber server of another major than the session's (the newest, or 16 when the session runs it)."""
    servers = known_servers()
    newest = max(servers, key=major)
    name = newest if newest != cluster.name else "pg16"
    if name == cluster.name:
        name = next(n for n in servers if n != cluster.name)
    other, root = start_publisher(name)
    yield other
    other.server.destroy()
    shutil.rmtree(root, ignore_errors=True)


def test_a_subscriber_of_another_major_applies_the_books_and_verifies(publisher, other_major):
    """The upgrade path: a subscriber on another major keeps the publisher's numbers and verifies its digest."""
    with fresh_database(publisher) as pub, fresh_database(other_major) as sub:
        populate(pub)
        publish(pub)
        sub.connect("admin").execute("SELECT ledgerlock.become_subscriber()")
        slot = f"books_{uuid.uuid4().hex[:8]}"
        subscribe(sub, pub, slot)
        try:
            pub.connect("app").execute("UPDATE invoice SET status = 'paid' WHERE id = 3")
            digest = pub.connect("auditor").execute("SELECT ledgerlock.audit_digest()").fetchone()[0]
            in_sync(pub.owner(), sub.owner())
            copied(sub.owner())  # the registry and settings verify_audit checks, not only the books
            assert sub.owner().execute("SELECT number FROM invoice WHERE id = 3").fetchone() == ("INV-2026-00003",)
            ok, problem = sub.connect("auditor").execute("SELECT ok, problem FROM ledgerlock.verify_audit(%s)",
                                                         (digest,)).fetchone()
            assert (ok, problem) == (True, None)
        finally:
            drop_subscription(sub, slot)


FACT_TABLE = """
CREATE TABLE fact (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, v text);
CREATE TABLE fact_log (n serial PRIMARY KEY, trig text, role text, backend text);
CREATE FUNCTION fact_trace() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- qualified: the workers run with an empty search_path
    INSERT INTO public.fact_log (trig, role, backend)
    VALUES (TG_NAME, pg_catalog.current_setting('session_replication_role'),
            (SELECT a.backend_type FROM pg_catalog.pg_stat_activity a WHERE a.pid = pg_catalog.pg_backend_pid()));
    RETURN NULL;
END $$;
"""
FACT_TRIGGERS = """
CREATE TRIGGER always_row AFTER INSERT ON fact FOR EACH ROW EXECUTE FUNCTION fact_trace();
CREATE TRIGGER origin_row AFTER INSERT ON fact FOR EACH ROW EXECUTE FUNCTION fact_trace();
CREATE TRIGGER replica_row AFTER INSERT ON fact FOR EACH ROW EXECUTE FUNCTION fact_trace();
CREATE TRIGGER always_stmt AFTER INSERT ON fact FOR EACH STATEMENT EXECUTE FUNCTION fact_trace();
ALTER TABLE fact ENABLE ALWAYS TRIGGER always_row;
ALTER TABLE fact ENABLE REPLICA TRIGGER replica_row;
ALTER TABLE fact ENABLE ALWAYS TRIGGER always_stmt;
"""


def test_what_the_apply_and_table_sync_workers_fire(cluster, publisher):
    """The PostgreSQL facts the design rests on, established on real servers: both workers run with
    session_replication_role = replica; they fire ENABLE ALWAYS and ENABLE REPLICA row triggers, never ENABLE
    (origin) ones; apply fires no statement trigger; sequences do not follow the rows."""
    with fresh_database(publisher) as pub, fresh_database(cluster) as sub:
        for db in (pub, sub):
            db.owner().execute(FACT_TABLE)
        sub.owner().execute(FACT_TRIGGERS)
        pub.owner().execute("INSERT INTO fact (v) VALUES ('copied'), ('copied')")
        pub.owner().execute("CREATE PUBLICATION books FOR TABLE fact")
        slot = f"facts_{uuid.uuid4().hex[:8]}"
        subscribe(sub, pub, slot)
        try:
            s_owner = sub.owner()
            copied = fired_once(s_owner, 2)  # the initial copy (table sync)
            pub.owner().execute("INSERT INTO fact (v) VALUES ('streamed'), ('streamed')")
            streamed = {k: n - copied.get(k, 0) for k, n in fired_once(s_owner, 4).items()}
            # the copy fires the statement trigger once (it is a COPY); apply fires none
            assert copied == {("always_row", "replica"): 2, ("replica_row", "replica"): 2,
                              ("always_stmt", "replica"): 1}
            assert streamed == {("always_row", "replica"): 2, ("replica_row", "replica"): 2,
                                ("always_stmt", "replica"): 0}
            backends = s_owner.execute("SELECT DISTINCT backend FROM fact_log").fetchall()
            assert all(b.startswith("logical replication") for (b,) in backends), backends
            # sequences stay behind: a local insert takes 1, which the publisher already used
            assert s_owner.execute("SELECT nextval(pg_get_serial_sequence('fact', 'id'))").fetchone() == (1,)
        finally:
            drop_subscription(sub, slot)


def fired_once(conn: psycopg.Connection, rows: int) -> dict:
    """Wait (bounded) until the subscriber holds this many rows of fact; then what fired, by trigger and role."""
    deadline = time.monotonic() + SYNC_TIMEOUT
    while conn.execute("SELECT count(*) FROM fact").fetchone()[0] < rows:
        assert time.monotonic() < deadline, "the subscriber never received the rows"
        time.sleep(0.1)  # a poll interval: the loop ends on what the subscriber holds
    # the copy's statement trigger fires after its rows are visible: wait for its own transaction to end
    while conn.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type ~ 'tablesync'").fetchone()[0]:
        assert time.monotonic() < deadline, "the table sync never ended"
        time.sleep(0.1)
    return {(t, r): n for t, r, n in conn.execute("SELECT trig, role, count(*) FROM fact_log GROUP BY 1, 2")}
