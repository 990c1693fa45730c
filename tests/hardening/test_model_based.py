"""A model-based randomized test of R1, R2 and R3 (issue 13: make the suite find the next holes itself).

Hypothesis drives random operations by random roles against the demo invoice table — inserts, updates of
amount, status, paid, date and note, deletes, finalizations, period locks (lock_period, lock_through,
upgrade_lock, unlock_period, relock) on scopes '1' and '2', overrides, transactions that commit or roll
back, savepoints rolled back — and checks each one against a small Python model of the rules:

- R1: a final row (status approved or paid) changes only in its mutable column `paid`, and is never deleted;
- R2: a row gets its final number when it becomes final, per year, 1, 2, 3… with nothing given away by a
  refused statement, a rolled-back savepoint or transaction; `number_gaps()` stays empty;
- R3: no row whose old or new date lies in an active window of its scope is inserted, updated (but for
  `paid`) or deleted, unless a controller's override of the same transaction opens a soft window of a scope
  granted to it; the windows themselves follow the lock API (overlaps, lock-through only forward, one-way
  upgrades, hard unlocks for admins only, scope grants);
- R5 (cheaply): `verify_audit()` is ok every few steps and at the end;
- and the high-water mark in the WHEN clause of every ll_20 trigger reaches the last active window.

After every step the database must agree with the model: the expected refusal (SQLSTATE) or success, every
invoice row (numbers included) and every lock window. A disagreement fails with both sides side by side;
hypothesis then shrinks the run to the shortest sequence of steps that still disagrees.

Roles: app (plain DML), controller, admin, tenant (ll_admin2, an admin limited to scope '1' by
ledgerlock.grant_scope in this test), auditor (no DML at all).
"""

from __future__ import annotations

import calendar
import contextlib
import copy
import dataclasses
import datetime as dt
import os
import re
from dataclasses import dataclass, field
from decimal import Decimal

import psycopg
from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from lltest import fresh_database

ROLES = ("app", "controller", "admin", "tenant", "auditor")
LOGIN = {"app": "app", "controller": "controller", "admin": "admin", "tenant": "admin2", "auditor": "auditor"}
CONTROLLERS = {"controller", "admin", "tenant"}  # members of ledgerlock_controller or ledgerlock_admin
ADMINS = {"admin", "tenant"}
WRITERS = {"app", "controller", "admin", "tenant"}  # the auditor has no DML grant
TENANT_SCOPES = {"1"}
SCOPES = ("1", "2")
FINAL = {"approved", "paid"}
# Months rows are dated in; windows cover the first six only, so the last is always open.
MONTHS = [(2024, 11), (2024, 12), (2025, 1), (2025, 2), (2025, 3), (2025, 4), (2025, 5)]
LOCKABLE = len(MONTHS) - 1
VERIFY_EVERY = 8
# Shrinking replays runs on fresh databases for minutes; the failure report already lists the last steps.
# LEDGERLOCK_SHRINK=1 turns it on to get the shortest repro of a disagreement.
PHASES = [Phase.explicit, Phase.reuse, Phase.generate] + ([Phase.shrink] if os.environ.get("LEDGERLOCK_SHRINK") else [])
SETTINGS = settings(max_examples=12, stateful_step_count=30, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck), print_blob=False, phases=PHASES)


def first_day(m: int) -> dt.date:
    return dt.date(*MONTHS[m], 1)


def last_day(m: int) -> dt.date:
    y, mo = MONTHS[m]
    return dt.date(y, mo, calendar.monthrange(y, mo)[1])


def day_of(m: int, which: str) -> dt.date:
    return {"first": first_day(m), "mid": first_day(m).replace(day=15), "last": last_day(m)}[which]


# -- the model ----------------------------------------------------------------------------------------------

@dataclass
class Row:
    company_id: str
    issued_on: dt.date
    amount: int
    status: str = "draft"
    paid: bool = False
    note: str | None = None
    number: str | None = None  # the final number; drafts carry a temporary DRAFT-… number

    def final(self) -> bool:
        return self.status in FINAL


@dataclass
class Lock:
    scope: str
    from_date: dt.date | None  # None: -infinity (a lock_through from the beginning of time)
    to_date: dt.date
    level: str
    status: str = "active"  # active, unlocked
    relocked_as: int | None = None

    def covers(self, scope: str, d: dt.date) -> bool:
        return (self.status == "active" and self.scope == scope and d <= self.to_date
                and (self.from_date is None or d >= self.from_date))

    def view_status(self) -> str:
        return "active" if self.status == "active" else "relocked" if self.relocked_as else "unlocked"


@dataclass
class Model:
    rows: dict[int, Row] = field(default_factory=dict)
    locks: dict[int, Lock] = field(default_factory=dict)
    next_id: int = 1

    # R3: the active window covering a date of a scope (windows of a scope never overlap)
    def window(self, scope: str, d: dt.date) -> int | None:
        return next((i for i, lk in self.locks.items() if lk.covers(scope, d)), None)

    def admits(self, role: str, lock_id: int | None, override: bool) -> bool:
        if lock_id is None:
            return True
        lk = self.locks[lock_id]
        return lk.level == "soft" and override and (role != "tenant" or lk.scope in TENANT_SCOPES)

    def overlaps(self, scope: str, f: dt.date | None, t: dt.date) -> bool:
        return any(lk.status == "active" and lk.scope == scope and (f is None or lk.to_date >= f)
                   and (lk.from_date is None or lk.from_date <= t) for lk in self.locks.values())

    def run_end(self, scope: str) -> dt.date | None:
        """The end of the contiguous run of active windows from the earliest window, an unlocked (not
        relocked) window breaking it at its first day unless the run covers that day (ledgerlock._run_end)."""
        last = None
        spans = sorted(((lk.from_date or dt.date.min), lk.status != "active", lk.to_date)
                       for lk in self.locks.values()
                       if lk.scope == scope and (lk.status == "active" or lk.relocked_as is None))
        for f, unlocked, t in spans:
            if unlocked:
                if last is None or f > last:
                    break
                continue
            if last is not None and f != last + dt.timedelta(days=1):
                break
            last = t
        return last

    # R2: the next final number of the row's year (final rows are never deleted: the count is the counter)
    def next_number(self, d: dt.date) -> str:
        taken = sum(1 for r in self.rows.values() if r.final() and r.issued_on.year == d.year)
        return f"INV-{d.year}-{taken + 1:05d}"

    def mark(self) -> dt.date | None:
        ends = [lk.to_date for lk in self.locks.values() if lk.status == "active"]
        return max(ends) if ends else None


class Expect:
    """What the model says a statement does: refused with `sqlstate`, or succeeds and then `apply(result)`."""

    def __init__(self, sqlstate: str | None = None, why: str = "", apply=None):
        self.sqlstate, self.why, self._apply = sqlstate, why, apply

    def apply(self, result) -> None:
        if self._apply:
            self._apply(result)


def refuse(sqlstate: str, why: str) -> Expect:
    return Expect(sqlstate, why)


def lock_capability(role: str) -> Expect | None:
    if role == "app":
        return refuse("42501", "the application may not call lock functions")
    if role == "auditor":
        return refuse("LL005", "an auditor is not a controller")
    return None


def predict(m: Model, role: str, op: tuple, override: bool) -> tuple[str, tuple, Expect]:
    """(sql, params, expectation) of one operation by `role` on model state `m` (mutated by apply)."""
    kind = op[0]
    if kind == "insert":
        _, scope, month, which, amount, status = op
        d = day_of(month, which)
        rid = m.next_id
        sql_ = "INSERT INTO invoice (id, company_id, issued_on, amount, status) VALUES (%s, %s, %s, %s, %s)"
        params = (rid, int(scope), d, amount, status)
        if role not in WRITERS:
            return sql_, params, refuse("42501", "the auditor has no DML grant")
        w = m.window(scope, d)
        if not m.admits(role, w, override):
            return sql_, params, refuse("LL002", f"{d} lies in lock #{w}")

        def do_insert(_):
            row = Row(scope, d, amount, status)
            if row.final():
                row.number = m.next_number(d)
            m.rows[rid] = row
            m.next_id = rid + 1
        return sql_, params, Expect(apply=do_insert)

    if kind in ("update", "finalize", "delete"):
        rid = pick(sorted(m.rows), op[1], missing=1000 + op[1])
        if kind == "delete":
            sql_, params = "DELETE FROM invoice WHERE id = %s", (rid,)
        else:
            changes = {"status": "approved"} if kind == "finalize" else dict(op[2])
            if "issued_on" in changes:
                changes["issued_on"] = day_of(*changes["issued_on"])
            cols = sorted(changes)
            sql_ = f"UPDATE invoice SET {', '.join(f'{c} = %s' for c in cols)} WHERE id = %s"
            params = (*[changes[c] for c in cols], rid)
        if role not in WRITERS:
            return sql_, params, refuse("42501", "the auditor has no DML grant")
        old = m.rows.get(rid)
        if old is None:
            return sql_, params, Expect()  # no row: nothing happens
        wo = m.window(old.company_id, old.issued_on)
        if kind == "delete":
            if old.final():
                return sql_, params, refuse("LL001", f"invoice {rid} is final")
            if not m.admits(role, wo, override):
                return sql_, params, refuse("LL002", f"invoice {rid} lies in lock #{wo}")
            return sql_, params, Expect(apply=lambda _: m.rows.pop(rid))
        new = dataclasses.replace(old, **changes)
        if not old.final() and new.final():
            new.number = m.next_number(new.issued_on)
        fixed = ("company_id", "issued_on", "amount", "status", "note", "number")
        changed = [c for c in fixed if getattr(old, c) != getattr(new, c)]
        if changed and old.final():
            return sql_, params, refuse("LL001", f"invoice {rid} is final, {changed} would change")
        if changed:
            wn = m.window(new.company_id, new.issued_on)
            if not m.admits(role, wo, override):
                return sql_, params, refuse("LL002", f"invoice {rid} (old date) lies in lock #{wo}")
            if wn != wo and not m.admits(role, wn, override):
                return sql_, params, refuse("LL002", f"invoice {rid} (new date) lies in lock #{wn}")
        return sql_, params, Expect(apply=lambda _: m.rows.__setitem__(rid, new))

    if kind in ("lock_period", "lock_through"):
        if kind == "lock_period":
            _, scope, m1, span, level = op
            f, t = first_day(m1), last_day(min(m1 + span, LOCKABLE - 1))
            sql_, params = "SELECT ledgerlock.lock_period(%s, %s, %s, %s)", (scope, f, t, level)
        else:
            _, scope, m1, level = op
            t = last_day(m1)
            sql_, params = "SELECT ledgerlock.lock_through(%s, %s, %s)", (scope, t, level)
        if (no := lock_capability(role)) is not None:
            return sql_, params, no
        if role == "tenant" and scope not in TENANT_SCOPES:
            return sql_, params, refuse("LL005", f"the tenant admin is limited to scope 1, not {scope}")
        if kind == "lock_through":
            end = m.run_end(scope)
            f = None if end is None else end + dt.timedelta(days=1)
            if f is not None and t < f:
                return sql_, params, refuse("LL004", f"scope {scope} is locked through {end} already")
        if m.overlaps(scope, f, t):
            return sql_, params, refuse("LL004", f"{f}..{t} overlaps an active window of scope {scope}")

        def do_lock(result):
            m.locks[result[0]] = Lock(scope, f, t, level)
        return sql_, params, Expect(apply=do_lock)

    # upgrade, unlock, relock of a known lock (or of an unknown one)
    lock_id = pick(sorted(m.locks), op[1], missing=9999)
    sql_ = {"upgrade": "SELECT ledgerlock.upgrade_lock(%s)",
            "unlock": "SELECT ledgerlock.unlock_period(%s, 'model-based test')",
            "relock": "SELECT ledgerlock.relock(%s)"}[kind]
    params = (lock_id,)
    if (no := lock_capability(role)) is not None:
        return sql_, params, no
    lk = m.locks.get(lock_id)
    if lk is None:
        return sql_, params, refuse("22023", f"there is no lock #{lock_id}")
    if role == "tenant" and lk.scope not in TENANT_SCOPES:
        return sql_, params, refuse("LL005", f"lock #{lock_id} is of scope {lk.scope}, not the tenant's")
    if kind == "upgrade":
        if lk.status != "active" or lk.level == "hard":
            return sql_, params, refuse("LL004", f"lock #{lock_id} is {lk.status}, {lk.level}")
        return sql_, params, Expect(apply=lambda _: setattr(lk, "level", "hard"))
    if kind == "unlock":
        if lk.status != "active":
            return sql_, params, refuse("LL004", f"lock #{lock_id} is already unlocked")
        if lk.level == "hard" and role not in ADMINS:
            return sql_, params, refuse("LL005", "a hard unlock takes an admin")
        return sql_, params, Expect(apply=lambda _: setattr(lk, "status", "unlocked"))
    if lk.status == "active" or lk.relocked_as is not None:
        return sql_, params, refuse("LL004", f"lock #{lock_id} is {lk.view_status()}")
    if m.overlaps(lk.scope, lk.from_date, lk.to_date):
        return sql_, params, refuse("LL004", f"relocking #{lock_id} overlaps an active window")

    def do_relock(result):
        lk.relocked_as = result[0]
        m.locks[result[0]] = Lock(lk.scope, lk.from_date, lk.to_date, lk.level)
    return sql_, params, Expect(apply=do_relock)


def pick(keys: list[int], n: int, missing: int) -> int:
    """Mostly an existing key (by position), sometimes one that does not exist."""
    return keys[n % len(keys)] if keys and n < 12 else missing


# -- strategies ---------------------------------------------------------------------------------------------

scopes = st.sampled_from(SCOPES)
levels = st.sampled_from(["soft", "soft", "hard"])
days = st.tuples(st.integers(0, len(MONTHS) - 1), st.sampled_from(["first", "mid", "last"]))
changes = st.fixed_dictionaries({}, optional={
    "amount": st.integers(0, 999),
    "status": st.sampled_from(["draft", "approved", "paid", "void"]),
    "paid": st.booleans(),
    "issued_on": days,
    "note": st.sampled_from([None, "n1", "n2"]),
}).filter(bool).map(lambda d: tuple(sorted(d.items())))
write_ops = st.one_of(
    st.tuples(st.just("insert"), scopes, st.integers(0, len(MONTHS) - 1), st.sampled_from(["first", "mid", "last"]),
              st.integers(0, 999), st.sampled_from(["draft", "draft", "approved"])),
    st.tuples(st.just("update"), st.integers(0, 13), changes),
    st.tuples(st.just("finalize"), st.integers(0, 13)),
    st.tuples(st.just("delete"), st.integers(0, 13)),
)
lock_ops = st.one_of(
    st.tuples(st.just("lock_period"), scopes, st.integers(0, LOCKABLE - 1), st.integers(0, 2), levels),
    st.tuples(st.just("lock_through"), scopes, st.integers(0, LOCKABLE - 1), levels),
    st.tuples(st.sampled_from(["upgrade", "unlock", "relock"]), st.integers(0, 13)),
    st.tuples(st.sampled_from(["unlock", "unlock", "relock"]), st.integers(0, 11)),
)
roles = st.sampled_from(["app", "app", "app", "controller", "controller", "admin", "admin", "tenant", "tenant",
                         "auditor"])


# -- the machine --------------------------------------------------------------------------------------------

MARK = re.compile(r"<= '(\d{4}-\d{2}-\d{2}|-infinity)'::date")


class LedgerMachine(RuleBasedStateMachine):
    cluster = None  # set by the test: the running server

    def __init__(self):
        super().__init__()
        self._stack = contextlib.ExitStack()
        self.db = self._stack.enter_context(fresh_database(self.cluster))
        self.db.protect_invoice(number_column="number", number_format="INV-{YYYY}-{SEQ:5}")
        self.owner = self.db.owner()
        self.owner.execute("SELECT ledgerlock.grant_scope('ll_admin2', '1')")  # the tenant admin
        self.conns = {role: self.db.connect(LOGIN[role]) for role in ROLES}
        self.model = Model()
        self.steps = 0
        self.log: list[str] = []

    def teardown(self):
        try:
            if self.steps:
                self.check_audit()
        finally:
            self._stack.close()

    # one statement, in a savepoint when inside a transaction, compared with the model
    def play(self, role: str, op: tuple, m: Model, override: bool) -> None:
        sql_, params, expect = predict(m, role, op, override)
        conn = self.conns[role]
        got, message, result = None, "", None
        try:
            with conn.transaction():
                cur = conn.execute(sql_, params)
                result = cur.fetchone() if cur.description else None
        except psycopg.Error as exc:
            got, message = exc.diag.sqlstate, exc.diag.message_primary
        line = f"{role}: {sql_ % tuple(repr(p if not isinstance(p, dt.date) else str(p)) for p in params)}"
        self.log.append(f"{line} -> {got or 'ok'}")
        assert got == expect.sqlstate, (
            f"model and database disagree on\n  {line}\n  model:    {expect.sqlstate or 'succeeds'} "
            f"({expect.why or 'no rule applies'})\n  database: {got or 'succeeded'} {message}\n"
            + self.history())
        event(f"{op[0]} by {role}: {got or 'ok'}")
        if got is None:
            expect.apply(result)

    def history(self) -> str:
        return "steps so far:\n  " + "\n  ".join(self.log[-25:])

    # -- rules ----------------------------------------------------------------------------------------------

    @rule(role=roles, op=st.one_of(write_ops, lock_ops))
    def autocommit(self, role, op):
        self.play(role, op, self.model, override=False)

    @rule(role=roles, ops=st.lists(st.one_of(write_ops, write_ops, write_ops, lock_ops), min_size=1, max_size=5),
          override=st.booleans(), savepoint=st.none() | st.integers(0, 4), commit=st.booleans())
    def transaction(self, role, ops, override, savepoint, commit):
        """BEGIN; [begin_override]; ops…, those from `savepoint` on in a savepoint rolled back; COMMIT or ROLLBACK."""
        conn = self.conns[role]
        work = copy.deepcopy(self.model)
        self.log.append(f"{role}: BEGIN")
        try:
            with conn.transaction(force_rollback=not commit):
                if override:
                    expected = None if role in CONTROLLERS else "LL005"
                    got = None
                    try:
                        with conn.transaction():
                            conn.execute("SELECT ledgerlock.begin_override('model-based test')")
                    except psycopg.Error as exc:
                        got = exc.diag.sqlstate
                    self.log.append(f"{role}: SELECT ledgerlock.begin_override(...) -> {got or 'ok'}")
                    assert got == expected, f"begin_override by {role}: expected {expected}, got {got}"
                    override = got is None
                inner = work
                for i, op in enumerate(ops):
                    if i == savepoint:
                        self.log.append(f"{role}: SAVEPOINT")
                        inner = copy.deepcopy(work)
                        with conn.transaction(force_rollback=True):
                            for later in ops[i:]:
                                self.play(role, later, inner, override)
                        self.log.append(f"{role}: ROLLBACK TO SAVEPOINT")
                        break
                    self.play(role, op, work, override)
        finally:
            self.log.append(f"{role}: {'COMMIT' if commit else 'ROLLBACK'}")
        if commit:
            self.model = work

    # -- invariants -----------------------------------------------------------------------------------------

    @invariant()
    def database_matches_the_model(self):
        self.steps += 1
        got_rows = {r[0]: r[1:] for r in self.owner.execute(
            "SELECT id, company_id::text, issued_on, amount, status, paid, note, number FROM invoice ORDER BY id")}
        want_rows = {i: (r.company_id, r.issued_on, Decimal(r.amount), r.status, r.paid, r.note, r.number)
                     for i, r in self.model.rows.items()}
        for i, row in got_rows.items():  # a draft's temporary number is not the model's business
            if row[-1] and row[-1].startswith("DRAFT-") and not want_rows.get(i, (None,) * 7)[-1]:
                got_rows[i] = (*row[:-1], None)
        assert got_rows == want_rows, self.diff("invoice", want_rows, got_rows)

        got_locks = {r[0]: r[1:] for r in self.owner.execute(
            "SELECT id, scope, from_date::text, to_date::text, level, status FROM ledgerlock.period_locks")}
        want_locks = {i: (lk.scope, str(lk.from_date or "-infinity"), str(lk.to_date), lk.level, lk.view_status())
                      for i, lk in self.model.locks.items()}
        assert got_locks == want_locks, self.diff("period_locks", want_locks, got_locks)

        gaps = self.owner.execute("SELECT series, kind, first_number, last_number FROM ledgerlock.number_gaps()")
        assert gaps.fetchall() == [], "number_gaps() is not empty\n" + self.history()

        mark = self.model.mark()
        for name, tgdef in self.owner.execute(
                "SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = 'invoice'::regclass "
                "AND tgname LIKE 'll_20_%'"):
            marks = {m for m in MARK.findall(tgdef)}
            assert mark is None or all(m != "-infinity" and dt.date.fromisoformat(m) >= mark for m in marks), (
                f"{name} carries mark {marks}, below the last active window ({mark})\n" + self.history())
        if self.steps % VERIFY_EVERY == 0:
            self.check_audit()

    def check_audit(self):
        ok, problems, problem = self.conns["auditor"].execute(
            "SELECT ok, problems, problem FROM ledgerlock.verify_audit()").fetchone()
        assert ok, f"verify_audit: {problems} problem(s), first: {problem}\n" + self.history()

    def diff(self, what: str, want: dict, got: dict) -> str:
        lines = [f"{what}: the database differs from the model"]
        for k in sorted(set(want) | set(got)):
            if want.get(k) != got.get(k):
                lines.append(f"  id {k}: model {want.get(k)}\n  {' ' * len(str(k))}    db    {got.get(k)}")
        return "\n".join(lines) + "\n" + self.history()


def test_random_operations_by_random_roles_agree_with_the_model(cluster):
    machine = type("LedgerMachineOn" + cluster.name, (LedgerMachine,), {"cluster": cluster})
    run_state_machine_as_test(machine, settings=SETTINGS)
