"""A concurrency fuzz of R3 (issue 13: make the suite find the next holes itself; DESIGN §6).

Real connections at once, each in its own thread: three lockers (a controller and two admins) change the
windows of scopes 1, 2 and 3 (lock_period, lock_through, unlock_period, relock), an admin re-installs the
guards (reinstall_guards, a re-protect with the same configuration), and three application writers insert
and update invoices and journal entries of those scopes dated over the days being locked, in READ
COMMITTED and REPEATABLE READ. Lock operations of one round start together (a barrier), so that they meet
each other inside the server; writers never wait for anyone.

Every run is bounded by counts (rounds, writes), never by seconds. Every connection sets lock_timeout; 40001,
40P01 and 55P03 are retryable (skipped), LL002/LL004/LL005 are the refusals the rules give (and 22023 for a
lock id nobody committed yet); anything else fails the test.

Afterwards, for every window still active (ledgerlock.period_locks):
(a) no write of its scope dated in it was made by a transaction that began after the lock committed — each
    thread takes a number from one shared counter (under a Python lock) right after its COMMIT returns and
    right before its BEGIN, so "began after the lock's commit returned" is exact; a write that began earlier
    may have committed before the lock, which is fine;
(b) an application insert dated in it is refused with LL002, on every protected table;
(c) the high-water mark in the WHEN clause of every ll_20 trigger reaches its last day.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import random
import re
import threading

import psycopg
from psycopg import IsolationLevel

from lltest import refused

SEED = 13
ROUNDS = 24
WRITES_PER_WRITER = 80
SCOPES = ("1", "2", "3")
LOCKERS = ("controller", "admin", "admin2")  # each round, each on its own scope
RETRYABLE = {"40001", "40P01", "55P03"}
TABLES = {  # protected table -> its date column
    "invoice": "issued_on",
    "journal_entry": "posted_on",
}
MARK = re.compile(r"<= '(\d{4}-\d{2}-\d{2}|-infinity)'::date")
FIRST_DAY = dt.date(2025, 1, 1)
MAX_STEP = 3  # a new window ends 1..MAX_STEP days after every window so far: each one raises the mark


def day(i: int) -> dt.date:
    return FIRST_DAY + dt.timedelta(days=i)


@dataclasses.dataclass
class Write:
    began: int  # counter value taken right before BEGIN
    table: str
    scope: str
    day: dt.date


class Run:
    """What the threads share: the commit-order counter, the locks they created, the writes that committed."""

    def __init__(self, db, seed: int):
        self.db = db
        self.seed = seed
        self._mutex = threading.Lock()
        self._counter = itertools.count(1)
        self.lock_committed: dict[int, int] = {}  # lock id -> counter right after its COMMIT returned
        self.writes: list[Write] = []
        self.scope_end: dict[str, int] = {}  # scope -> the last day (index) a lock of it reached
        self.top = 0  # the last day (index) any lock reached
        self.unexpected: list[str] = []
        self.outcomes: dict[str, int] = {}
        self.marks_seen: list[str] = []
        # lock operations of a round start together, and when all are done the marks are checked (c)
        self.start = threading.Barrier(len(LOCKERS) + 1, timeout=60)
        self.end = threading.Barrier(len(LOCKERS) + 1, action=self.check_marks, timeout=60)
        self._observer = db.owner()

    def check_marks(self) -> None:
        """(c) between rounds: no lock operation runs, so every mark must reach the last active window."""
        self.marks_seen.extend(stale_marks(self._observer))

    def tick(self) -> int:
        with self._mutex:
            return next(self._counter)

    def count(self, what: str) -> None:
        with self._mutex:
            self.outcomes[what] = self.outcomes.get(what, 0) + 1

    def connect(self, role: str) -> psycopg.Connection:
        conn = self.db.connect(role)
        conn.execute("SET lock_timeout = '10s'")
        return conn

    def attempt(self, who: str, fn, expected: set[str]) -> bool:
        """Run fn; True when it committed. Retryable failures and expected refusals are counted, others kept."""
        try:
            fn()
            self.count(f"{who}: ok")
            return True
        except psycopg.Error as exc:
            state = exc.diag.sqlstate
            if state in RETRYABLE or state in expected:
                self.count(f"{who}: {state}")
            else:
                with self._mutex:
                    self.unexpected.append(f"{who}: {state} {exc.diag.message_primary}")
            return False


def locker(run: Run, role: str, index: int) -> None:
    """Each round: wait for the others, then one lock operation on a scope the other locker does not touch
    this round, in its own transaction. New windows start after the scope's last one and mostly end after
    every window so far, so that most of them raise the high-water mark of every table."""
    rng = random.Random(run.seed * 100 + index)
    conn = run.connect(role)
    for r in range(ROUNDS):
        scope = SCOPES[(r + index) % len(SCOPES)]
        kind = rng.choices(["lock_period", "lock_through", "unlock", "relock"], [8, 2, 1, 1])[0]
        expected = {"LL004", "LL005"}  # lock-state conflicts and scope grants
        with run._mutex:
            first = run.scope_end.get(scope, -1) + 1
            last = max(run.top, first) + rng.randint(1, MAX_STEP)
        if kind == "lock_period":
            stmt, args = "SELECT ledgerlock.lock_period(%s, %s, %s, 'hard')", (scope, day(first), day(last))
        elif kind == "lock_through":
            stmt, args = "SELECT ledgerlock.lock_through(%s, %s, 'hard')", (scope, day(last))
        else:
            known = sorted(run.lock_committed)
            lock_id = rng.choice(known) if known else 1
            if not known:
                expected = expected | {"22023"}  # no lock committed yet: lock #1 may not exist (a bad argument)
            stmt = ("SELECT ledgerlock.unlock_period(%s, 'fuzz')" if kind == "unlock"
                    else "SELECT ledgerlock.relock(%s)")
            args = (lock_id,)

        def op(stmt=stmt, args=args, kind=kind, scope=scope, last=last):
            with conn.transaction():
                row = conn.execute(stmt, args).fetchone()
                conn.execute("SELECT count(*) FROM ledgerlock.period_locks")  # the console re-reads the list
            done = run.tick()
            if kind != "unlock":
                with run._mutex:
                    run.lock_committed[row[0]] = done
                    if kind != "relock":
                        run.scope_end[scope] = max(run.scope_end.get(scope, -1), last)
                        run.top = max(run.top, last)
        run.start.wait()
        run.attempt(f"{role} {kind}", op, expected)
        run.end.wait()


def guard_installer(run: Run) -> None:
    """Each round, with the lockers: reinstall_guards, or protect again with the same configuration."""
    rng = random.Random(run.seed * 100 + 9)
    conn = run.connect("admin")
    for _ in range(ROUNDS):
        if rng.random() < 0.5:
            stmt = "SELECT ledgerlock.reinstall_guards()"
        elif rng.random() < 0.5:
            stmt = ("SELECT ledgerlock.protect('invoice', 'issued_on', 'company_id', "
                    "$$status in ('approved','paid')$$, mutable_columns => '{paid,reconciled}')")
        else:
            stmt = "SELECT ledgerlock.protect('journal_entry', 'posted_on', 'company_id')"
        run.start.wait()
        run.attempt("admin guards", lambda stmt=stmt: conn.execute(stmt), set())
        run.end.wait()


def writer(run: Run, index: int, days: int) -> None:
    """Inserts and updates rows of every scope over the days being locked, one or two per transaction."""
    rng = random.Random(run.seed * 100 + 50 + index)
    conn = run.connect("app")
    mine: list[tuple[str, int, str, dt.date]] = []
    for _ in range(WRITES_PER_WRITER):
        level = rng.choice([IsolationLevel.READ_COMMITTED, IsolationLevel.READ_COMMITTED,
                            IsolationLevel.REPEATABLE_READ])
        planned: list[tuple[str, str, tuple, Write]] = []
        table = rng.choice(list(TABLES))  # one table per transaction: two would mostly add deadlocks with lockers
        own = [m for m in mine if m[0] == table]
        for _ in range(rng.choice([1, 1, 2])):
            if own and rng.random() < 0.3:
                table, rid, scope, when = rng.choice(own)
                planned.append(("update", f"UPDATE {table} SET amount = amount + 1 WHERE id = %s", (rid,),
                                Write(0, table, scope, when)))
            else:
                scope = rng.choice(SCOPES)
                when = day(rng.randrange(days))
                planned.append(("insert", f"INSERT INTO {table} (company_id, {TABLES[table]}, amount) "
                                          "VALUES (%s, %s, 1) RETURNING id", (int(scope), when),
                                Write(0, table, scope, when)))
        inserted: list[tuple[str, int, str, dt.date]] = []

        def tx(level=level, planned=planned, inserted=inserted):
            conn.isolation_level = level
            began = run.tick()
            with conn.transaction():
                for kind, stmt, args, w in planned:
                    w.began = began
                    cur = conn.execute(stmt, args)
                    if kind == "insert":
                        inserted.append((w.table, cur.fetchone()[0], w.scope, w.day))
        if run.attempt("app write", tx, {"LL002"}):
            with run._mutex:
                run.writes.extend(w for *_, w in planned)
            mine.extend(inserted)


def fuzz(db, seed: int) -> Run:
    run = Run(db, seed)
    days = MAX_STEP * ROUNDS + 3
    threads = [threading.Thread(target=locker, args=(run, role, i)) for i, role in enumerate(LOCKERS)]
    threads.append(threading.Thread(target=guard_installer, args=(run,)))
    threads += [threading.Thread(target=writer, args=(run, i, days)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a fuzz thread did not finish"
    return run


def violations(db, run: Run) -> list[str]:
    """(a), (b) and (c) of the module docstring, each violation as a sentence."""
    owner = db.owner()
    windows = owner.execute("SELECT id, scope, from_date::text, to_date FROM ledgerlock.period_locks "
                            "WHERE status = 'active' ORDER BY id").fetchall()
    found = []
    for lock_id, scope, from_text, to_date in windows:
        from_date = dt.date.min if from_text == "-infinity" else dt.date.fromisoformat(from_text)
        committed = run.lock_committed[lock_id]
        for w in run.writes:
            if w.began > committed and w.scope == scope and from_date <= w.day <= to_date:
                found.append(f"(a) a {w.table} write of scope {scope} dated {w.day} began after lock #{lock_id} "
                             f"({from_text}..{to_date}) committed, and committed")
    app = db.connect("app")
    for lock_id, scope, _, to_date in windows:
        for table, date_column in TABLES.items():
            try:
                with app.transaction(force_rollback=True):
                    app.execute(f"INSERT INTO {table} (company_id, {date_column}) VALUES (%s, %s)",
                                (int(scope), to_date))
                found.append(f"(b) the application inserted a {table} row of scope {scope} dated {to_date} "
                             f"inside lock #{lock_id}")
            except psycopg.Error as exc:
                if exc.diag.sqlstate != "LL002":
                    found.append(f"(b) probe into lock #{lock_id} on {table}: {exc.diag.sqlstate} "
                                 f"{exc.diag.message_primary}")
    return found + stale_marks(owner) + run.marks_seen


def stale_marks(owner: psycopg.Connection) -> list[str]:
    """(c): every ll_20 trigger's WHEN mark reaches the last day of every active window (no ledgers here)."""
    need = owner.execute("SELECT max(to_date) FROM ledgerlock.period_locks WHERE status = 'active'").fetchone()[0]
    found = []
    for table in TABLES if need else ():
        for name, tgdef in owner.execute("SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger "
                                         "WHERE tgrelid = %s::regclass AND tgname LIKE 'll_20_%%'", (table,)):
            low = sorted({m for m in MARK.findall(tgdef) if m == "-infinity" or dt.date.fromisoformat(m) < need})
            if low:
                found.append(f"(c) {table}.{name} carries the mark {low[0]}, below {need}, the last day of an "
                             "active window")
    return found


def test_every_committed_lock_binds_every_protected_table_under_concurrent_lock_protect_and_writes(db):
    owner = db.owner()
    owner.execute("INSERT INTO company (id, name) VALUES (3, 'Initrode')")
    db.protect_invoice()
    owner.execute("SELECT ledgerlock.protect('journal_entry', 'posted_on', 'company_id')")
    run = fuzz(db, SEED)
    assert run.unexpected == [], "unexpected errors:\n" + "\n".join(run.unexpected)
    locks_taken = sum(n for k, n in run.outcomes.items() if k.endswith(("lock_period: ok", "lock_through: ok")))
    writes_done = run.outcomes.get("app write: ok", 0)
    assert locks_taken >= 5 and writes_done >= 50, f"the fuzz did too little to prove anything: {run.outcomes}"
    found = violations(db, run)
    assert found == [], (f"seed {SEED}: {len(found)} violation(s) of 'every committed lock binds every "
                         f"protected table':\n" + "\n".join(found[:20]) + f"\noutcomes: {run.outcomes}")


def test_the_fuzz_checks_can_fail(db):
    """Control: a window whose guards were re-installed with a mark below it is reported by (b) and (c)."""
    db.protect_invoice()
    owner = db.owner()
    owner.execute("SELECT ledgerlock.protect('journal_entry', 'posted_on', 'company_id')")
    run = Run(db, SEED)
    ctl = db.connect("controller")
    lock_id = ctl.execute("SELECT ledgerlock.lock_period('1', '2025-03-01', '2025-03-31', 'hard')").fetchone()[0]
    run.lock_committed[lock_id] = run.tick()
    assert violations(db, run) == []
    with refused("LL002"):
        db.connect("app").execute("INSERT INTO invoice (company_id, issued_on) VALUES (1, '2025-03-31')")
    # what a stale mark looks like: the ll_20 triggers of invoice filter on a day before the window
    for name, tgdef in owner.execute("SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger "
                                     "WHERE tgrelid = 'invoice'::regclass AND tgname LIKE 'll_20_%'").fetchall():
        owner.execute(f"CREATE OR REPLACE TRIGGER {name} " + tgdef.split(f"TRIGGER {name} ", 1)[1]
                      .replace("'2025-03-31'::date", "'2025-02-28'::date"))
    run.writes.append(Write(run.tick(), "invoice", "1", dt.date(2025, 3, 15)))
    found = violations(db, run)
    assert any(f.startswith("(a)") for f in found)
    assert any(f.startswith("(b) the application inserted a invoice row") for f in found)
    assert any(f.startswith("(c) invoice.ll_20_period_insert carries the mark 2025-02-28") for f in found)
    assert not any("journal_entry" in f for f in found)
