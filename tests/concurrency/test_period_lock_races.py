"""R3 races, with real concurrent connections and explicit steps.

A write that commits after a lock has committed never lands in the locked window, in READ COMMITTED,
REPEATABLE READ and SERIALIZABLE; a lock request waits for the open writers of its scope (it never reports
success while such a write can still commit), is not starved by a stream of new writers, and honours
lock_timeout. Blocking is asserted on the server (pg_stat_activity and pg_locks: waiting on a relation lock), never
with sleeps standing in for it.
"""

from __future__ import annotations

import threading

import psycopg
import pytest
from psycopg import IsolationLevel

from lltest import Background, end_other_sessions, refused, sqlstate

MARCH = ("2025-03-01", "2025-03-31")
LOCK_MARCH = "SELECT ledgerlock.lock_period('1', '2025-03-01', '2025-03-31')"
INSERT_MARCH = "INSERT INTO invoice (company_id, issued_on) VALUES (1, '2025-03-15')"
SERIALIZATION_FAILURE = "40001"


@pytest.fixture
def setup(db):
    db.protect_invoice()
    yield db
    # a failed step must not leave a thread waiting on a lock behind an open transaction
    end_other_sessions(db)


def raise_mark_beforehand(db, raised: bool) -> str:
    """With `raised` False, a later window (May) exists beforehand, so locking March does not raise the
    table's high-water mark: the lock then meets writers on the scope's gate (a ledgerlock table no client
    can lock). Otherwise the lock raises the mark and re-installs the guards, meeting writers on the table
    lock. Returns the relation the lock waits for."""
    if not raised:
        db.connect("admin").execute("SELECT ledgerlock.lock_period('1', '2025-05-01', '2025-05-31')")
        return db.owner().execute("SELECT ledgerlock._scope_gate('1')").fetchone()[0]
    return "invoice"


def waited_relation(observer: psycopg.Connection, pid: int) -> str:
    """The relation backend `pid` waits to lock (after wait_until_blocked saw it wait)."""
    return observer.execute("SELECT relation::regclass::text FROM pg_locks WHERE pid = %s AND NOT granted",
                            (pid,)).fetchone()[0]


@pytest.mark.parametrize("raises_mark", [True, False], ids=["raises-mark", "below-mark"])
def test_a_lock_waits_for_an_open_write_in_its_scope(setup, raises_mark):
    """The writer's row is in the window but not committed: the lock does not report success until the
    write is decided, so no write can commit into a window after the lock was reported."""
    db = setup
    gate = raise_mark_beforehand(db, raises_mark)
    writer = db.connect("app", autocommit=False)
    writer.execute(INSERT_MARCH)  # open transaction, row in March
    admin = db.connect("admin")
    observer = db.owner()
    locker = Background(admin, LOCK_MARCH)
    assert locker.wait_until_blocked(observer) == "relation"
    assert waited_relation(observer, admin.info.backend_pid) == gate
    assert not locker.done
    writer.commit()
    assert locker.join().error is None
    [(lock_id,)] = locker.rows
    assert lock_id is not None
    # the row committed before the lock; from now on it is frozen, and new rows are refused
    with refused("LL002"):
        writer.execute("DELETE FROM invoice WHERE issued_on = '2025-03-15'")
    writer.rollback()
    with refused("LL002"):
        db.connect("app").execute(INSERT_MARCH)


def test_a_lock_below_the_mark_in_another_scope_does_not_wait(setup):
    db = setup
    db.connect("admin").execute("SELECT ledgerlock.lock_period('2', '2025-05-01', '2025-05-31')")
    writer = db.connect("app", autocommit=False)
    writer.execute(INSERT_MARCH)  # scope 1, below the mark: holds scope 1's gate
    admin = db.connect("admin")
    admin.execute("SET lock_timeout = '2s'")
    admin.execute("SELECT ledgerlock.lock_period('2', '2025-03-01', '2025-03-31')")  # scope 2: no wait
    writer.commit()


def test_a_lock_that_raises_the_mark_waits_for_every_writer_of_the_table(setup):
    """The documented price of the high-water mark: re-installing the guards takes the table lock, so a
    lock that raises the mark waits for the table's open writers, of any scope (and honours lock_timeout)."""
    db = setup
    writer = db.connect("app", autocommit=False)
    writer.execute("INSERT INTO invoice (company_id, issued_on) VALUES (2, '2025-06-15')")  # scope 2
    admin = db.connect("admin")
    admin.execute("SET lock_timeout = '300ms'")
    with refused("55P03"):
        admin.execute(LOCK_MARCH)
    writer.commit()
    admin.execute(LOCK_MARCH)


def test_a_lock_fails_cleanly_at_lock_timeout(setup):
    db = setup
    writer = db.connect("app", autocommit=False)
    writer.execute(INSERT_MARCH)
    admin = db.connect("admin")
    admin.execute("SET lock_timeout = '200ms'")
    with refused("55P03"):
        admin.execute(LOCK_MARCH)
    writer.commit()
    assert admin.execute("SELECT count(*) FROM ledgerlock.period_locks").fetchone()[0] == 0
    admin.execute(LOCK_MARCH)  # once the writer is gone it goes through


@pytest.mark.parametrize("isolation", ["READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"])
@pytest.mark.parametrize("outcome", ["commit", "rollback"])
@pytest.mark.parametrize("raises_mark", [True, False], ids=["raises-mark", "below-mark"])
def test_a_write_waits_for_an_uncommitted_lock(setup, isolation, outcome, raises_mark):
    """The admin holds an uncommitted lock; the writer waits, then fails if the lock commits (LL002, or
    40001 where its snapshot predates the lock) and succeeds if it rolls back."""
    db = setup
    gate = raise_mark_beforehand(db, raises_mark)
    admin = db.connect("admin", autocommit=False)
    admin.execute(LOCK_MARCH)  # uncommitted
    writer = db.connect("app", autocommit=False)
    writer.execute(f"SET TRANSACTION ISOLATION LEVEL {isolation}")
    observer = db.owner()
    insert = Background(writer, INSERT_MARCH)
    assert insert.wait_until_blocked(observer) == "relation"
    assert waited_relation(observer, writer.info.backend_pid) == gate
    getattr(admin, outcome)()
    insert.join()
    if outcome == "commit":
        expected = {"LL002"} if isolation == "READ COMMITTED" else {"LL002", SERIALIZATION_FAILURE}
        assert sqlstate(insert.error) in expected, insert.error
        writer.rollback()
        assert observer.execute("SELECT count(*) FROM invoice").fetchone()[0] == 0
        with refused("LL002"):
            db.connect("app").execute(INSERT_MARCH)
    else:
        assert insert.error is None
        writer.commit()
        assert observer.execute("SELECT count(*) FROM invoice").fetchone()[0] == 1


@pytest.mark.parametrize("isolation", ["REPEATABLE READ", "SERIALIZABLE"])
@pytest.mark.parametrize("statement", [
    INSERT_MARCH,
    "UPDATE invoice SET amount = 7 WHERE id = 1",
    "DELETE FROM invoice WHERE id = 1",
    # a bulk insert takes the statement-level path
    "INSERT INTO invoice (company_id, issued_on) SELECT 1, date '2025-03-01' + g FROM generate_series(0, 40) g",
])
def test_a_snapshot_older_than_the_lock_cannot_write_into_the_window(setup, isolation, statement):
    """A REPEATABLE READ / SERIALIZABLE writer whose snapshot predates the lock: LL002 or 40001."""
    db = setup
    db.connect("app").execute("INSERT INTO invoice (id, company_id, issued_on) VALUES (1, 1, '2025-03-10')")
    db.owner().execute("SELECT setval(pg_get_serial_sequence('invoice', 'id'), 100)")
    writer = db.connect("app", autocommit=False)
    writer.isolation_level = IsolationLevel.REPEATABLE_READ if isolation == "REPEATABLE READ" \
        else IsolationLevel.SERIALIZABLE
    writer.execute("SELECT count(*) FROM invoice").fetchone()  # the snapshot is taken here
    db.connect("admin").execute(LOCK_MARCH)  # committed, after the snapshot
    with pytest.raises(psycopg.Error) as info:
        writer.execute(statement)
    assert sqlstate(info.value) in {"LL002", SERIALIZATION_FAILURE}
    writer.rollback()
    owner = db.owner()
    assert owner.execute("SELECT count(*), sum(amount) FROM invoice").fetchone() == (1, 0)


def test_an_upgrade_after_the_snapshot_stops_an_override_in_repeatable_read(setup):
    """The fence covers every lock change, not only new windows: soft to hard after the snapshot."""
    db = setup
    admin = db.connect("admin")
    lock_id = admin.execute(LOCK_MARCH).fetchone()[0]
    ctl = db.connect("controller", autocommit=False)
    ctl.isolation_level = IsolationLevel.REPEATABLE_READ
    ctl.execute("SELECT ledgerlock.begin_override('correction')")  # snapshot: the lock is soft
    admin.execute("SELECT ledgerlock.upgrade_lock(%s)", (lock_id,))
    with refused(SERIALIZATION_FAILURE):
        ctl.execute(INSERT_MARCH)
    ctl.rollback()


def test_a_repeatable_read_writer_in_an_open_period_is_not_disturbed(setup):
    """The neighbour: a lock in another scope after the snapshot does not fail the writer."""
    db = setup
    writer = db.connect("app", autocommit=False)
    writer.isolation_level = IsolationLevel.REPEATABLE_READ
    writer.execute("SELECT 1").fetchone()
    db.connect("admin").execute("SELECT ledgerlock.lock_period('2', '2025-03-01', '2025-03-31')")
    bucket = db.owner().execute("SELECT hashtext('1') & 1023 = hashtext('2') & 1023").fetchone()[0]
    assert not bucket  # different fence buckets, so no false conflict here
    writer.execute(INSERT_MARCH)
    writer.commit()


def test_two_overlapping_locks_race_and_one_is_refused(setup):
    db = setup
    first = db.connect("admin", autocommit=False)
    first.execute(LOCK_MARCH)
    second = db.connect("admin2")
    observer = db.owner()
    other = Background(second, "SELECT ledgerlock.lock_period('1', '2025-03-15', '2025-04-15')")
    assert other.wait_until_blocked(observer) == "relation"
    # the second lock change waits on the first for the mark clock (or the scope's gate): never ahead of it
    assert waited_relation(observer, second.info.backend_pid) in (None, "ledgerlock.period_mark_clock",
                                                                   db.owner().execute(
                                                                       "SELECT ledgerlock._scope_gate('1')"
                                                                   ).fetchone()[0])
    first.commit()
    other.join()
    assert sqlstate(other.error) == "LL004"
    assert observer.execute("SELECT count(*) FROM ledgerlock.period_locks").fetchone()[0] == 1


WRITERS = 8
IN_SWING = 200  # rows committed before the lock is asked for
REFUSALS = 10  # March refusals after which a writer stops
WRITES = 1000  # the bound on each writer's inserts after the lock (it stops at its REFUSALS long before)


def test_a_lock_completes_while_eight_writers_hammer_the_scope(setup):
    """Eight writers insert as fast as they can into scope 1 (March and April). Once 200 rows are in, the
    lock is asked for and granted within lock_timeout (the lock queue is fair); every writer goes on until
    March refused it ten times, and no March row commits after the lock."""
    db = setup
    counts = {"ok": 0, "refused": 0}
    in_swing = threading.Event()
    errors: list[BaseException] = []
    mutex = threading.Lock()
    admin = db.connect("admin")
    admin.execute("SET lock_timeout = '5s'")

    locked = threading.Event()  # set once the lock is granted (or the test gave up on it)

    def hammer(i: int) -> None:
        conn = psycopg.connect(db.conninfo("app"), autocommit=True)
        conn.execute("SET lock_timeout = '20s'")
        refusals = 0
        after_lock = 0
        n = 0
        try:
            # WRITES bounds the writes after the lock: a fast writer on a loaded machine could make all its
            # writes before the lock was granted, and then never meet the lock at all
            while refusals < REFUSALS and after_lock < WRITES:
                n += 1
                if locked.is_set():
                    after_lock += 1
                day = "2025-03-15" if n % 2 else "2025-04-15"
                try:
                    conn.execute("INSERT INTO invoice (company_id, issued_on, note) VALUES (1, %s, %s)",
                                  (day, f"w{i}"))
                    with mutex:
                        counts["ok"] += 1
                        if counts["ok"] == IN_SWING:
                            in_swing.set()
                except psycopg.Error as exc:
                    if sqlstate(exc) != "LL002":
                        errors.append(exc)
                        in_swing.set()  # the test goes on, and fails on the error
                        return
                    refusals += 1
                    with mutex:
                        counts["refused"] += 1
        finally:
            conn.close()

    threads = [threading.Thread(target=hammer, args=(i,), daemon=True) for i in range(WRITERS)]
    for t in threads:
        t.start()
    try:
        assert in_swing.wait(60), "the writers never committed their first rows"
        assert errors == []
        admin.execute(LOCK_MARCH)  # must not time out
        march_at_lock = admin.execute("SELECT count(*) FROM invoice WHERE issued_on = '2025-03-15'").fetchone()[0]
    finally:
        locked.set()
        for t in threads:
            t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert counts["refused"] == WRITERS * REFUSALS  # every writer kept going after the lock, refused in March
    after = admin.execute("SELECT count(*) FROM invoice WHERE issued_on = '2025-03-15'").fetchone()[0]
    assert after == march_at_lock
    assert admin.execute("SELECT count(*) FROM invoice WHERE issued_on = '2025-04-15'").fetchone()[0] > 0


def test_raising_the_mark_never_blocks_readers(setup):
    """Re-installing the guards uses CREATE OR REPLACE TRIGGER (SHARE ROW EXCLUSIVE), never DROP TRIGGER
    (ACCESS EXCLUSIVE): an open reading transaction does not hold the lock up, nor is it held up."""
    db = setup
    reader = db.connect("auditor", autocommit=False)
    db.owner().execute("GRANT SELECT ON invoice TO ll_auditor")
    reader.execute("SELECT count(*) FROM invoice").fetchone()
    admin = db.connect("admin")
    admin.execute("SET lock_timeout = '2s'")
    admin.execute(LOCK_MARCH)
    reader.execute("SELECT count(*) FROM invoice").fetchone()
    reader.commit()
