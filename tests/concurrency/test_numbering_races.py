"""R2 under concurrency and crashes, with real connections: no gap, no duplicate.

- 8 connections finalize a few hundred rows of one series, a quarter of the transactions rolled back;
- the same with two series interleaved in each transaction, in both orders;
- two transactions taking two counters in opposite orders: one is told to retry (40001), none deadlocks;
- finalizers of one series wait in line on its slot (docs/numbering.md, "Waiting in line"; no client can take
  one: tests/hardening/test_lock_keys.py); a savepoint rolled back leaves the line, a transaction's second
  counter is waited for on its row, and a finalizer whose snapshot is older than the last number is told to
  retry;
- the postmaster killed (SIGKILL) in the middle of such a load, and restarted.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

import psycopg
import pytest

from lltest import Background, fresh_database, known_servers, selected_servers, start_cluster, stop_cluster

WORKERS = 8
ROWS = 400
FORMAT = "INV-{YYYY}-{SEQ:5}"


def setup_invoices(db, rows: int = ROWS, years: tuple[int, ...] = (2026,)) -> None:
    db.protect_invoice(number_column="number", number_format=FORMAT)
    db.connect("app").execute(
        "INSERT INTO invoice (id, company_id, issued_on) "
        "SELECT g, 1, make_date((%s::int[])[1 + g %% %s], 3, 1) FROM generate_series(1, %s) g",
        (list(years), len(years), rows),
    )


def run_workers(conninfo: str, work: Callable[[psycopg.Connection, int, random.Random], None]) -> list[BaseException]:
    """Run `work(conn, worker, rng)` in WORKERS threads, each with its own connection, started together."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(WORKERS)

    def worker(i: int) -> None:
        try:
            with psycopg.connect(conninfo) as conn:
                barrier.wait(60)
                work(conn, i, random.Random(i))
        except BaseException as exc:  # noqa: BLE001 — reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return errors


def series_numbers(conn: psycopg.Connection) -> dict[str, list[int]]:
    got: dict[str, list[int]] = {}
    for (number,) in conn.execute("SELECT number FROM invoice WHERE status = 'approved'"):
        prefix, seq = number.rsplit("-", 1)
        got.setdefault(prefix, []).append(int(seq))
    return {k: sorted(v) for k, v in got.items()}


def assert_gapless(conn: psycopg.Connection) -> int:
    """Every series runs 1..N, its counter stands at N, and number_gaps agrees. Returns the rows numbered."""
    counters = dict(conn.execute(
        "SELECT prefix, last_value FROM ledgerlock.number_counter WHERE open_from IS NULL").fetchall())
    total = 0
    for prefix, seqs in series_numbers(conn).items():
        assert seqs == list(range(1, len(seqs) + 1)), f"{prefix}: {seqs}"
        assert counters[prefix + "-"] == len(seqs)
        total += len(seqs)
    assert conn.execute("SELECT count(*) FROM ledgerlock.number_counter WHERE open_from IS NOT NULL").fetchone()[0] == 0
    assert conn.execute("SELECT * FROM ledgerlock.number_gaps()").fetchall() == []
    return total


def test_eight_connections_with_rollbacks_leave_one_series_gapless(db):
    setup_invoices(db)
    rolled_back = []

    def work(conn, i, rng):
        ids = list(range(1 + i, ROWS + 1, WORKERS))
        while ids:
            n = rng.randint(1, 3)
            batch, ids = ids[:n], ids[n:]
            rollback = rng.random() < 0.25
            with conn.transaction(force_rollback=rollback):
                conn.execute("UPDATE invoice SET status = 'approved' WHERE id = ANY(%s)", (batch,))
            if rollback:
                rolled_back.extend(batch)

    assert run_workers(db.conninfo("app"), work) == []
    owner = db.owner()
    finals = owner.execute("SELECT count(*) FROM invoice WHERE status = 'approved'").fetchone()[0]
    assert finals == ROWS - len(rolled_back) and len(rolled_back) > ROWS // 8
    assert assert_gapless(owner) == finals


def test_two_series_interleaved_in_each_transaction_in_both_orders(db):
    """Each transaction finalizes a 2025 and a 2026 row, alternating which comes first. Counters are taken in
    a fixed order: a transaction asked to take them the other way round waits briefly and is told to retry
    (40001); no transaction ever deadlocks (40P01)."""
    setup_invoices(db, years=(2025, 2026))
    outcomes = {"retried": 0, "deadlocks": 0, "rolled_back": 0}
    lock = threading.Lock()

    def work(conn, i, rng):
        mine = list(range(1 + i, ROWS + 1, WORKERS))
        pairs = [(a, b) for a, b in zip(mine[0::2], mine[1::2], strict=False)]
        for a, b in pairs:  # a and b are in different years (ids alternate between the years)
            first, second = (a, b) if rng.random() < 0.5 else (b, a)
            rollback = rng.random() < 0.25
            while True:
                try:
                    with conn.transaction(force_rollback=rollback):
                        conn.execute("UPDATE invoice SET status = 'approved' WHERE id = %s", (first,))
                        conn.execute("UPDATE invoice SET note = 'between' WHERE id = %s", (second,))
                        conn.execute("UPDATE invoice SET status = 'approved' WHERE id = %s", (second,))
                    break
                except psycopg.errors.SerializationFailure:
                    with lock:
                        outcomes["retried"] += 1
                except psycopg.errors.DeadlockDetected:
                    with lock:
                        outcomes["deadlocks"] += 1
            if rollback:
                with lock:
                    outcomes["rolled_back"] += 1

    assert run_workers(db.conninfo("app"), work) == []
    assert outcomes["deadlocks"] == 0
    assert outcomes["rolled_back"] > 0
    owner = db.owner()
    numbered = assert_gapless(owner)
    assert set(series_numbers(owner)) == {"INV-2025", "INV-2026"}
    assert numbered == owner.execute("SELECT count(*) FROM invoice WHERE status = 'approved'").fetchone()[0]


def test_counters_taken_in_opposite_orders_give_a_retry_not_a_deadlock(db):
    setup_invoices(db, rows=4, years=(2025, 2026))  # ids 1, 3 in 2026; 2, 4 in 2025
    a, b = db.connect("app", autocommit=False), db.connect("app", autocommit=False)
    observer = db.owner()
    a.execute("UPDATE invoice SET status = 'approved' WHERE id = 2")  # a holds 2025 (first in the order)
    b.execute("UPDATE invoice SET status = 'approved' WHERE id = 1")  # b holds 2026
    b_pid = b.info.backend_pid
    a_second = Background(a, "UPDATE invoice SET status = 'approved' WHERE id = 3")  # 2026, in order: waits for b
    a_second.wait_until_blocked(observer)
    b.execute("SET lock_timeout = '20s'")  # its own wait is brief (then 40001); a longer one fails the test
    with pytest.raises(psycopg.errors.SerializationFailure) as info:  # b: 2025 is out of order for it
        b.execute("UPDATE invoice SET status = 'approved' WHERE id = 4")
    assert "retry the transaction" in info.value.diag.message_hint
    b.rollback()
    assert a_second.join().error is None
    a.commit()
    assert observer.execute("SELECT pid FROM pg_stat_activity WHERE pid = %s", (b_pid,)).fetchone() is not None
    b.execute("UPDATE invoice SET status = 'approved' WHERE id IN (1, 4)")  # the retry succeeds
    b.commit()
    assert series_numbers(observer) == {"INV-2025": [1, 2], "INV-2026": [1, 2]}
    assert assert_gapless(observer) == 4


def row_waited_on(observer: psycopg.Connection, conn: psycopg.Connection) -> str | None:
    """The table of the row a backend waits for: a row lock's waiter holds the row's tuple lock while it waits
    for the holder's transaction (the first in line), or waits for that tuple lock (the rest of the line)."""
    row = observer.execute("SELECT relation::regclass::text FROM pg_locks WHERE locktype = 'tuple' AND pid = %s",
                           (conn.info.backend_pid,)).fetchone()
    return row[0] if row else None


def test_finalizers_of_one_series_wait_in_line_on_its_slot_and_stay_gapless(db):
    setup_invoices(db, rows=3)
    observer = db.owner()
    a, b, c = (db.connect("app", autocommit=False) for _ in range(3))
    a.execute("UPDATE invoice SET status = 'approved' WHERE id = 1")
    waiting = [Background(b, "UPDATE invoice SET status = 'approved' WHERE id = 2")]
    waiting[0].wait_until_blocked(observer)
    waiting.append(Background(c, "UPDATE invoice SET status = 'approved' WHERE id = 3"))
    waiting[1].wait_until_blocked(observer)
    # in line on the series' slot, not on the counter's row (docs/numbering.md, "Waiting in line")
    assert [row_waited_on(observer, w.conn) for w in waiting] == ["ledgerlock_gate.number_queue"] * 2
    a.commit()
    for w in waiting:
        w.join()
        assert w.error is None
        w.conn.commit()
    assert series_numbers(observer) == {"INV-2026": [1, 2, 3]}
    assert assert_gapless(observer) == 3


def test_a_counter_taken_out_of_line_is_still_waited_for_on_its_row(db):
    """Only a transaction's first counter is waited in line for (one slot per transaction, whatever the series
    its statements number in): a second counter, taken in order, is locked by its row alone, and a finalizer of
    that series, whose slot is free, waits on the counter's row until the holder commits."""
    setup_invoices(db, rows=6, years=(2025, 2026))  # ids 1, 3, 5 in 2026; 2, 4, 6 in 2025
    observer = db.owner()
    db.connect("app").execute("UPDATE invoice SET status = 'approved' WHERE id IN (5, 6)")  # both counters exist
    a, b = db.connect("app", autocommit=False), db.connect("app", autocommit=False)
    a.execute("UPDATE invoice SET status = 'approved' WHERE id = 2")  # 2025: the first counter, in line
    a.execute("UPDATE invoice SET status = 'approved' WHERE id IN (1, 4)")  # 2026 (in order) and 2025 again
    waiter = Background(b, "UPDATE invoice SET status = 'approved' WHERE id = 3")  # 2026
    assert waiter.wait_until_blocked(observer) == "transactionid"
    assert row_waited_on(observer, b) == "ledgerlock.number_counter"
    a.commit()
    assert waiter.join().error is None
    b.commit()
    assert series_numbers(observer) == {"INV-2025": [1, 2, 3], "INV-2026": [1, 2, 3]}
    assert assert_gapless(observer) == 6


def test_the_line_holds_for_every_writer_and_across_a_concurrent_reinstall(db):
    """The application, a tenant admin and an admin finalize in one series while an admin regenerates the
    numbering functions (reinstall_guards, which waits for the writers' table locks and is waited for by the
    next): the tenant admin waits in line, the admin behind the reinstall, and the series stays 1..3. Swept
    under hostile session settings with the rest of this module (tests/conftest.py)."""
    setup_invoices(db, rows=3)
    observer = db.owner()
    db.owner().execute("SELECT ledgerlock.grant_scope('ll_admin2', '1')")  # a tenant admin, limited to scope 1
    app, tenant_admin = db.connect("app", autocommit=False), db.connect("admin2", autocommit=False)
    admin = db.connect("admin", autocommit=False)
    app.execute("UPDATE invoice SET status = 'approved' WHERE id = 1")
    in_line = Background(tenant_admin, "UPDATE invoice SET status = 'approved' WHERE id = 2")
    in_line.wait_until_blocked(observer)
    assert row_waited_on(observer, tenant_admin) == "ledgerlock_gate.number_queue"
    reinstall = Background(db.connect("admin"), "SELECT ledgerlock.reinstall_guards()")
    assert reinstall.wait_until_blocked(observer) == "relation"  # the writers' locks on the table
    behind = Background(admin, "UPDATE invoice SET status = 'approved' WHERE id = 3")
    assert behind.wait_until_blocked(observer) == "relation"  # queued behind the reinstall
    app.commit()
    assert in_line.join().error is None
    tenant_admin.commit()
    assert reinstall.join().error is None
    assert behind.join().error is None
    admin.commit()
    assert dict(observer.execute("SELECT id, number FROM invoice WHERE status = 'approved'").fetchall()) == {
        1: "INV-2026-00001", 2: "INV-2026-00002", 3: "INV-2026-00003"}
    assert assert_gapless(observer) == 3


def test_a_finalization_rolled_back_to_a_savepoint_leaves_the_line(db):
    setup_invoices(db, rows=3)
    observer = db.owner()
    a, b = db.connect("app", autocommit=False), db.connect("app", autocommit=False)
    a.execute("SAVEPOINT before_finalizing")
    a.execute("UPDATE invoice SET status = 'approved' WHERE id = 1")
    a.execute("ROLLBACK TO SAVEPOINT before_finalizing")
    # a's transaction is still open, and holds neither the slot nor the counter: b does not wait at all (a
    # lock it had to wait for would fail it at once)
    b.execute("SET lock_timeout = '1ms'")
    b.execute("UPDATE invoice SET status = 'approved' WHERE id = 2")
    b.commit()
    a.execute("UPDATE invoice SET status = 'approved' WHERE id = 3")  # a waits in line again, for the next number
    a.commit()
    assert dict(observer.execute("SELECT id, number FROM invoice WHERE status = 'approved'").fetchall()) == {
        2: "INV-2026-00001", 3: "INV-2026-00002"}
    assert assert_gapless(observer) == 2


@pytest.mark.parametrize("isolation", ["REPEATABLE READ", "SERIALIZABLE"])
def test_a_finalizer_whose_snapshot_predates_the_last_number_is_told_to_retry(db, isolation):
    """Out of line, a finalizer whose snapshot was taken before the previous finalizer committed cannot see the
    counter it must continue: it fails with 40001 (retry), never takes a number twice or skips one."""
    setup_invoices(db, rows=2)
    observer = db.owner()
    a, b = db.connect("app", autocommit=False), db.connect("app", autocommit=False)
    b.execute(f"SET TRANSACTION ISOLATION LEVEL {isolation}")
    b.execute("SELECT count(*) FROM invoice").fetchone()  # b's snapshot: before a's number
    a.execute("UPDATE invoice SET status = 'approved' WHERE id = 1")
    waiter = Background(b, "UPDATE invoice SET status = 'approved' WHERE id = 2")
    waiter.wait_until_blocked(observer)
    assert row_waited_on(observer, b) == "ledgerlock_gate.number_queue"
    a.commit()
    assert isinstance(waiter.join().error, psycopg.errors.SerializationFailure)
    b.rollback()
    b.execute(f"SET TRANSACTION ISOLATION LEVEL {isolation}")
    b.execute("UPDATE invoice SET status = 'approved' WHERE id = 2")  # the retry
    b.commit()
    assert series_numbers(observer) == {"INV-2026": [1, 2]}
    assert assert_gapless(observer) == 2


@pytest.mark.slow
@pytest.mark.parametrize("server", selected_servers())
def test_postmaster_killed_mid_load_leaves_no_gap_or_duplicate(server):
    """A private server (never the shared one): 8 writers finalize, the postmaster is SIGKILLed while they
    run, the server restarts and recovers; then the load resumes. Every series is still 1..N."""
    cluster, root = start_cluster(f"crash-{server}", known_servers()[server])
    # durable settings for this one: a crash must not lose a commit the client was told about
    cluster.server.settings.update({"fsync": "on", "synchronous_commit": "on"})
    cluster.server.stop()
    cluster.server.start()
    try:
        with fresh_database(cluster) as db:
            setup_invoices(db, rows=2000, years=(2025, 2026))
            committed: list[int] = []
            lock = threading.Lock()
            stop = threading.Event()
            under_way = threading.Event()  # 300 finalizations committed: the middle of the load

            def work(conn, i, rng):
                ids = list(range(1 + i, 2001, WORKERS))
                rng.shuffle(ids)
                while ids and not stop.is_set():
                    batch, ids = ids[:3], ids[3:]
                    rollback = rng.random() < 0.25
                    try:
                        with conn.transaction(force_rollback=rollback):
                            conn.execute("UPDATE invoice SET status = 'approved' WHERE id = ANY(%s)", (batch,))
                        if not rollback:
                            with lock:
                                committed.extend(batch)
                                if len(committed) >= 300:
                                    under_way.set()
                    except psycopg.errors.SerializationFailure:
                        ids.extend(batch)
                    except psycopg.OperationalError:
                        return  # the server went away

            def kill_when_under_way():  # in the middle of the load, whatever the machine's speed
                under_way.wait(120)  # bounded; a load that never got there fails on `0 < before` below
                cluster.server.kill()

            killer = threading.Thread(target=kill_when_under_way)
            killer.start()
            run_workers(db.conninfo("app"), work)  # errors are expected: the server dies under them
            killer.join(60)
            stop.set()
            for attempt in range(50):
                try:
                    cluster.server.start()
                    break
                except Exception:  # noqa: BLE001 — old shared memory may still be held for a moment
                    if attempt == 49:
                        raise
                    time.sleep(0.2)
            with psycopg.connect(db.conninfo("owner")) as owner:
                finals = {r[0] for r in owner.execute("SELECT id FROM invoice WHERE status = 'approved'")}
                assert set(committed) <= finals  # every acknowledged commit survived
                before = assert_gapless(owner)
                assert 0 < before < 2000
            stop.clear()
            assert run_workers(db.conninfo("app"), work) == []  # the load resumes on the recovered counters
            with psycopg.connect(db.conninfo("owner")) as owner:
                assert assert_gapless(owner) > before
    finally:
        stop_cluster(cluster, root)
