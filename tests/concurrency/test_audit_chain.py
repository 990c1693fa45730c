"""R5 under concurrency: the chain verifies after any interleaving of writers, rollbacks, overrides, unlocks,
relocks, sealers and a crash, no committed change lacks its event, and writers never wait for the sealer."""

from __future__ import annotations

import random
import threading
import time

import psycopg
import pytest

from lltest import fresh_database, known_servers, refused, selected_servers, start_cluster, stop_cluster


def chain(conn):
    """The sealed events in chain order (the SEAL event that closes each seal left out)."""
    return conn.execute("SELECT c.seq FROM ledgerlock.audit_chain c JOIN ledgerlock.audit_event e ON e.seq = c.seq "
                        "WHERE e.operation <> 'SEAL' ORDER BY c.chain_seq").fetchall()


def verified(conn):
    return conn.execute("SELECT ok, problem FROM ledgerlock.verify_audit()").fetchone()


def test_a_late_committing_transaction_is_sealed_in_a_later_seal(db):
    """T1 takes a smaller seq but commits after T2: the first seal takes T2's event only; T1's event joins
    the chain at the next seal, after it. Chain order is seal order."""
    db.protect_invoice()
    t1, t2, sealer = db.connect("app", autocommit=False), db.connect("app"), db.connect("auditor")
    t1.execute("INSERT INTO invoice (id, company_id) VALUES (1, 1)")   # seq n, not committed
    t2.execute("INSERT INTO invoice (id, company_id) VALUES (2, 1)")   # seq n+1, committed
    owner = db.owner()
    s1, s2 = (owner.execute("SELECT seq FROM ledgerlock.audit_event WHERE row_key = %s::jsonb",
                            (f'{{"id": {i}}}',)).fetchone() for i in (1, 2))
    assert s1 is None  # T1's event is invisible until it commits
    sealer.execute("SELECT ledgerlock.audit_seal()")
    assert chain(owner)[-1] == s2
    t1.commit()
    s1 = owner.execute("SELECT seq FROM ledgerlock.audit_event WHERE row_key = '{\"id\": 1}'").fetchone()
    assert s1 < s2
    sealer.execute("SELECT ledgerlock.audit_seal()")
    assert chain(owner)[-2:] == [s2, s1]
    assert verified(sealer) == (True, None)


def test_writers_do_not_wait_for_a_sealer_and_sealers_wait_for_each_other(db):
    db.protect_invoice()
    app = db.connect("app")
    app.execute("INSERT INTO invoice (id, company_id) VALUES (1, 1)")
    s1 = db.connect("auditor", autocommit=False)
    s2 = db.connect("auditor")
    assert s1.execute("SELECT ledgerlock.audit_seal()").fetchone()[0] >= 2  # holds the sealer lock, open
    app.execute("SET statement_timeout = '2s'")
    app.execute("INSERT INTO invoice (id, company_id) VALUES (2, 1)")  # commits while the seal is open
    app.execute("UPDATE invoice SET amount = 5 WHERE id = 1")
    s2.execute("SET lock_timeout = '300ms'")
    with refused("55P03"):  # a second sealer waits for the first
        s2.execute("SELECT ledgerlock.audit_seal()")
    s1.commit()
    assert s2.execute("SELECT ledgerlock.audit_seal()").fetchone()[0] == 2
    assert verified(s2) == (True, None)


WRITES = 60  # inserts of each of the four writers


def test_concurrent_sealers_and_writers_keep_one_chain(db):
    """Four writers insert a fixed number of rows each while three sealers seal for as long as they write."""
    db.protect_invoice()
    start = threading.Barrier(7, timeout=60)
    writers_done = threading.Event()
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            with psycopg.connect(db.conninfo("app"), autocommit=True) as c:
                start.wait()
                for i in range(1, WRITES + 1):
                    c.execute("INSERT INTO invoice (id, company_id, amount) VALUES (%s, 1, %s)", (k * 100_000 + i, i))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def sealer() -> None:
        try:
            with psycopg.connect(db.conninfo("auditor"), autocommit=True) as c:
                c.execute("SET lock_timeout = '20s'")  # sealers wait for each other
                start.wait()
                while not writers_done.is_set():
                    c.execute("SELECT ledgerlock.audit_seal()")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    writers = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    sealers = [threading.Thread(target=sealer) for _ in range(3)]
    for t in writers + sealers:
        t.start()
    for t in writers:
        t.join(120)
    writers_done.set()
    for t in sealers:
        t.join(60)
    assert not any(t.is_alive() for t in writers + sealers)
    assert errors == []
    auditor = db.connect("auditor")
    ok, problem = verified(auditor)  # seals what the sealers left, then checks the whole chain
    assert ok, problem
    n_events, n_links, n_inserts = auditor.execute(
        "SELECT (SELECT count(*) FROM ledgerlock.audit_event), (SELECT count(*) FROM ledgerlock.audit_chain), "
        "(SELECT count(*) FROM ledgerlock.audit_event WHERE table_name = 'public.invoice' AND operation = 'INSERT')"
    ).fetchone()
    assert n_events == n_links and n_inserts == 4 * WRITES


# -- 8 writers, rollbacks, overrides, unlocks and relocks, a sealer, and kill -9 of the postmaster --------

WRITERS = 8
TRANSACTIONS = 2000  # the bound on each writer's transactions (the crash comes long before)
UNDER_WAY = 60  # acknowledged commits (and one rollback) before the crash


def _writer(conninfo: str, k: int, stop: threading.Event, acked: dict, rolled_back: set, lock: threading.Lock,
            under_way: threading.Event):
    rnd = random.Random(k)
    mine: list[int] = []
    n = 0
    try:
        with psycopg.connect(conninfo) as c:
            while not stop.is_set() and n < TRANSACTIONS:
                n += 1
                txid = c.execute("SELECT pg_current_xact_id()::text").fetchone()[0]
                op = rnd.choice(["insert", "insert", "update", "delete"]) if mine else "insert"
                if op == "insert":
                    new_id = k * 1_000_000 + n
                    c.execute("INSERT INTO invoice (id, company_id, amount) VALUES (%s, %s, %s)",
                              (new_id, 1 + k % 2, n))
                    c.execute("INSERT INTO invoice (id, company_id, amount) VALUES (%s, %s, 1)",
                              (new_id + 500_000, 1 + k % 2))
                    touched = [new_id, new_id + 500_000]
                elif op == "update":
                    touched = [rnd.choice(mine)]
                    c.execute("UPDATE invoice SET amount = amount + 1, note = %s WHERE id = %s", (f"w{k}", touched[0]))
                else:
                    touched = [mine.pop(rnd.randrange(len(mine)))]
                    c.execute("DELETE FROM invoice WHERE id = %s", (touched[0],))
                if rnd.random() < 0.3:
                    c.rollback()
                    with lock:
                        rolled_back.add(txid)
                    if op == "delete":
                        mine.append(touched[0])
                    continue
                c.commit()
                with lock:
                    acked[txid] = (op, touched)
                    if len(acked) >= UNDER_WAY and rolled_back:
                        under_way.set()
                if op == "insert":
                    mine += touched
    except psycopg.Error:
        return  # the server went away: this transaction's outcome is unknown, and that is fine


def _overrider(conninfo: str, stop: threading.Event, counts: dict):
    """A controller posting late credits into company 1's soft-locked 2019 under overrides, some rolled back."""
    rnd = random.Random(100)
    try:
        with psycopg.connect(conninfo) as c:
            while not stop.is_set():
                c.execute("SELECT ledgerlock.begin_override('late supplier credit')")
                c.execute("UPDATE invoice SET amount = amount + 1 WHERE id = %s", (rnd.randrange(2, 41, 2),))
                if rnd.random() < 0.3:
                    c.rollback()
                    continue
                c.commit()
                counts["overrides"] += 1
    except psycopg.Error:
        return


def _reopener(admin: str, app: str, stop: threading.Event, lock_id: int, counts: dict):
    """An admin reopening company 2's hard-locked 2019 for one write and locking it again, over and over; the
    application's write into it once relocked is refused."""
    rnd = random.Random(101)
    try:
        with psycopg.connect(admin, autocommit=True) as a, psycopg.connect(app, autocommit=True) as w:
            while not stop.is_set():
                a.execute("SELECT ledgerlock.unlock_period(%s, 'reopened for an adjustment')", (lock_id,))
                w.execute("UPDATE invoice SET amount = amount + 1 WHERE id = %s", (rnd.randrange(1, 41, 2),))
                lock_id = a.execute("SELECT ledgerlock.relock(%s)", (lock_id,)).fetchone()[0]
                counts["relocks"] += 1
                try:
                    w.execute("UPDATE invoice SET amount = amount + 1 WHERE id = %s", (rnd.randrange(1, 41, 2),))
                except psycopg.Error as exc:
                    if exc.sqlstate != "LL002":
                        raise
                    counts["refused"] += 1
    except psycopg.Error:
        return


def _sealer(conninfo: str, stop: threading.Event):
    try:
        with psycopg.connect(conninfo, autocommit=True) as c:
            while not stop.is_set():
                c.execute("SELECT ledgerlock.audit_seal()")
                time.sleep(0.05)
    except psycopg.Error:
        return


@pytest.mark.slow
@pytest.mark.parametrize("server", selected_servers())
def test_eight_writers_with_rollbacks_and_a_crash_leave_a_verifiable_complete_trail(server):
    cluster, root = start_cluster(f"auditcrash-{server}", known_servers()[server])
    try:
        with psycopg.connect(cluster.conninfo(), autocommit=True) as c:
            # acknowledged commits must survive a crash of the server (the OS keeps running, so fsync does
            # not matter, but an asynchronous commit could be acknowledged and then lost)
            c.execute("ALTER SYSTEM SET synchronous_commit = on")
            c.execute("SELECT pg_reload_conf()")
        with fresh_database(cluster) as db:
            db.protect_invoice()
            # 2019 of both companies: 20 invoices each; company 1's year soft-locked (overrides), company 2's
            # hard-locked (unlocked and relocked during the load)
            db.connect("app").execute("INSERT INTO invoice (id, company_id, issued_on, amount) "
                                      "SELECT g, 1 + g % 2, date '2019-06-01', g FROM generate_series(1, 40) g")
            admin = db.connect("admin")
            admin.execute("SELECT ledgerlock.lock_period('1', '2019-01-01', '2019-12-31', 'soft')")
            hard = admin.execute("SELECT ledgerlock.lock_period('2', '2019-01-01', '2019-12-31', 'hard')").fetchone()[0]
            counts = {"overrides": 0, "relocks": 0, "refused": 0}
            acked: dict[str, tuple] = {}
            rolled_back: set[str] = set()
            lock = threading.Lock()
            stop = threading.Event()
            under_way = threading.Event()
            threads = [threading.Thread(target=_writer,
                                        args=(db.conninfo("app"), k, stop, acked, rolled_back, lock, under_way))
                       for k in range(WRITERS)]
            threads.append(threading.Thread(target=_sealer, args=(db.conninfo("auditor"), stop)))
            threads.append(threading.Thread(target=_overrider, args=(db.conninfo("controller"), stop, counts)))
            threads.append(threading.Thread(target=_reopener,
                                            args=(db.conninfo("admin"), db.conninfo("app"), stop, hard, counts)))
            for t in threads:
                t.start()
            deadline = time.monotonic() + 120  # bounded; a load that never got there fails on the counts below
            while time.monotonic() < deadline and not (
                    under_way.is_set() and counts["overrides"] >= 3 and counts["relocks"] >= 3 and counts["refused"]):
                time.sleep(0.05)
            cluster.server.kill()  # kill -9 of the postmaster, writers and sealer mid-flight
            stop.set()
            for t in threads:
                t.join(30)
            deadline = time.monotonic() + 60
            while True:  # orphaned backends may hold the old shared memory for a moment
                try:
                    cluster.server.start()
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
            assert len(acked) >= UNDER_WAY and rolled_back
            assert counts["overrides"] >= 3 and counts["relocks"] >= 3 and counts["refused"] >= 1

            owner = db.owner()
            # The writers' transaction ids, read before anything after the restart takes one: PostgreSQL
            # recovers its next id from the WAL replayed, so the id of a transaction rolled back just before
            # the crash, none of whose WAL reached disk, is handed out again (to the seal verify makes).
            txids = {r[0] for r in owner.execute(
                "SELECT DISTINCT txid::text FROM ledgerlock.audit_event WHERE table_name = 'public.invoice'")}
            assert owner.execute("SELECT pg_current_xact_id_if_assigned()").fetchone()[0] is None
            # every acknowledged commit has its events; no rolled-back transaction left one
            assert set(acked) <= txids
            assert not (rolled_back & txids)
            ok, problem = verified(owner)
            assert ok, problem
            for txid, (op, touched) in list(acked.items())[:200]:
                got = owner.execute(
                    "SELECT operation, (row_key ->> 'id')::int FROM ledgerlock.audit_event WHERE txid = %s::xid8 "
                    "ORDER BY seq", (txid,)).fetchall()
                assert got == [(op.upper(), i) for i in touched]
            # and the table is exactly what its events say: replaying the trail gives every row
            mismatched = owner.execute("""
                WITH last AS (
                    SELECT DISTINCT ON (row_key) row_key, operation, new_row
                    FROM ledgerlock.audit_event
                    WHERE table_name = 'public.invoice' AND operation IN ('INSERT', 'UPDATE', 'DELETE')
                    ORDER BY row_key, seq DESC)
                SELECT count(*) FROM last FULL JOIN invoice i ON (last.row_key ->> 'id')::int = i.id
                WHERE (i.id IS NULL) <> (last.operation = 'DELETE')
                   OR (i.id IS NOT NULL AND last.new_row IS DISTINCT FROM to_jsonb(i.*))""").fetchone()[0]
            assert mismatched == 0
            # the overrides, unlocks and relocks are in the trail as lock events
            kinds = dict(owner.execute("SELECT operation, count(*) FROM ledgerlock.audit_event "
                                       "WHERE operation IN ('OVERRIDE', 'UNLOCK', 'RELOCK') GROUP BY 1").fetchall())
            assert kinds.get("OVERRIDE", 0) >= 1 and kinds.get("UNLOCK", 0) >= 3 and kinds.get("RELOCK", 0) >= 3
            # the trail keeps working after the crash
            db.connect("app").execute("INSERT INTO invoice (id, company_id) VALUES (999, 1)")
            assert verified(owner) == (True, None)
            unsealed = owner.execute(
                "SELECT e.seq, e.txid::text, e.operation, e.row_key, (SELECT max(sealed_below)::text FROM "
                "ledgerlock.audit_chain), pg_current_snapshot()::text FROM ledgerlock.audit_event e WHERE NOT EXISTS "
                "(SELECT FROM ledgerlock.audit_chain c WHERE c.seq = e.seq)").fetchall()
            assert unsealed == []
    finally:
        stop_cluster(cluster, root)
