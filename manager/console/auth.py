"""Who is logged in: the database role, its password held in server memory only, its connections.

The signed session cookie carries a random session id, the role name and the CSRF token — never the
password. Passwords live in this process's memory, keyed by session id, and die with it. Each request opens
a connection as the person's role; the console has no connection of its own to act through.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import functools
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.datetime import DateLoader
from psycopg.types.json import set_json_loads

from .. import errors as _errors  # noqa: F401  (registers the LLxxx exception classes with psycopg)
from ..connection import client_session
from ..context import rows


class LoginRefused(Exception):
    """A login the console will not make, with the sentence to show."""


@dataclass(frozen=True)
class Person:
    role: str
    admin: bool
    controller: bool
    auditor: bool
    granted_scopes: tuple[str, ...] | None
    database: str

    @property
    def can_lock(self) -> bool:
        return self.admin or self.controller

    @property
    def can_read_evidence(self) -> bool:
        return self.admin or self.auditor


class SessionStore:
    """Passwords of logged-in people, in memory, by session id, for as long as the person uses the console: a
    session idle for ``idle`` seconds, or older than ``lifetime`` (the cookie's own limit), is forgotten, its
    password with it, so a browser closed without logging out does not leave a password in the process.
    ``clock`` is time.monotonic; tests give their own."""

    def __init__(self, idle: float = 30 * 60, lifetime: float = 12 * 3600,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.idle, self.lifetime, self.clock = idle, lifetime, clock
        self._sessions: dict[str, tuple[str | None, float, float]] = {}  # sid: password, opened, last used
        self._lock = threading.Lock()

    def _forget_expired(self, now: float) -> None:
        for sid, (_, opened, used) in list(self._sessions.items()):
            if now - used > self.idle or now - opened > self.lifetime:
                del self._sessions[sid]

    def open(self, password: str | None) -> str:
        sid = secrets.token_urlsafe(32)
        with self._lock:
            now = self.clock()
            self._forget_expired(now)
            self._sessions[sid] = (password, now, now)
        return sid

    def password(self, sid: str) -> tuple[bool, str | None]:
        """(True, the password) for a live session, whose idle time starts again; (False, None) otherwise."""
        with self._lock:
            now = self.clock()
            self._forget_expired(now)
            if sid in self._sessions:
                password, opened, _ = self._sessions[sid]
                self._sessions[sid] = (password, opened, now)
                return True, password
        return False, None

    def close(self, sid: str) -> None:
        with self._lock:
            self._sessions.pop(sid, None)

    def __len__(self) -> int:
        with self._lock:
            self._forget_expired(self.clock())
            return len(self._sessions)


class LoginThrottle:
    """Refused logins by (client address, role name): after ``limit`` of them within ``window`` seconds, that
    address may not try that role again until ``window`` seconds after the last one, and the database is not
    asked (a console on the network must not be a password-guessing machine for the database). Keyed by address
    too, so nobody can lock a colleague out from elsewhere. ``clock`` is time.monotonic; tests give their own."""

    def __init__(self, limit: int = 5, window: float = 15 * 60, clock: Callable[[], float] = time.monotonic):
        self.limit, self.window, self.clock = limit, window, clock
        self._refused: dict[tuple[str, str], list[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str], now: float) -> list[float]:
        times = [t for t in self._refused.get(key, []) if now - t < self.window]
        if times:
            self._refused[key] = times
        else:
            self._refused.pop(key, None)
        return times

    def wait(self, address: str, role: str) -> float:
        """Seconds before this address may try this role again (0: now)."""
        with self._lock:
            now = self.clock()
            times = self._recent((address, role), now)
            return self.window - (now - times[-1]) if len(times) >= self.limit else 0.0

    def refused(self, address: str, role: str) -> None:
        with self._lock:
            now = self.clock()
            self._refused[(address, role)] = [*self._recent((address, role), now), now]

    def succeeded(self, address: str, role: str) -> None:
        with self._lock:
            self._refused.pop((address, role), None)


def role_conninfo(base: str, role: str, password: str | None) -> str:
    """The configured server and database, as this role: the base's own user and password are dropped, and
    no password file is read, so a login succeeds only with what the person typed (or trust auth)."""
    params = conninfo_to_dict(base)
    params.pop("password", None)
    params["user"] = role
    params["passfile"] = "/nonexistent/ledgerlock-console-no-passfile"
    params["application_name"] = "ledgerlock console"
    if password:
        params["password"] = password
    return make_conninfo(**params)


class _OpenEndedDateLoader(DateLoader):
    """Lock windows from the beginning of the books start at date '-infinity': loaded as date.min."""

    def load(self, data):
        if bytes(data) == b"-infinity":
            return dt.date.min
        if bytes(data) == b"infinity":
            return dt.date.max
        return super().load(data)


@contextlib.contextmanager
def connect_as(base: str, role: str, password: str | None) -> Iterator[psycopg.Connection]:
    with client_session(psycopg.connect(role_conninfo(base, role, password), autocommit=True,
                                        connect_timeout=10)) as conn:
        conn.adapters.register_loader("date", _OpenEndedDateLoader)
        # row images keep their numbers digit for digit (100.00 stays 100.00 in the audit diff)
        set_json_loads(functools.partial(json.loads, parse_float=decimal.Decimal), context=conn)
        yield conn


def describe_person(conn: psycopg.Connection) -> Person:
    from .queries import query

    row = rows(conn, query("whoami"))[0]
    if row["superuser"]:
        raise LoginRefused(f"{row['role']} is a superuser: the console never works as a superuser. "
                           "Log in with a role that is a member of ledgerlock_admin, ledgerlock_controller "
                           "or ledgerlock_auditor.")
    if not (row["admin"] or row["controller"] or row["auditor"]):
        raise LoginRefused(f"{row['role']} is not a member of ledgerlock_admin, ledgerlock_controller or "
                           "ledgerlock_auditor: the console has nothing to show it. An administrator grants "
                           "one of them with GRANT ledgerlock_auditor TO the role.")
    with conn.cursor() as cur:
        scopes = cur.execute(query("granted_scopes")).fetchone()[0]
    return Person(role=row["role"], admin=row["admin"], controller=row["controller"], auditor=row["auditor"],
                  granted_scopes=tuple(scopes) if scopes is not None else None, database=row["database"])


def login(base: str, role: str, password: str | None) -> Person:
    """Open a connection as the role and check it may use the console; the sentence of a refusal is raised
    as LoginRefused."""
    role = role.strip()
    if not role:
        raise LoginRefused("Type your database role name.")
    try:
        with connect_as(base, role, password) as conn:
            return describe_person(conn)
    except psycopg.OperationalError as exc:
        text = str(exc).strip().splitlines()[-1] if str(exc).strip() else "connection failed"
        if "not permitted to log in" in text:
            raise LoginRefused(f"The role {role} is not allowed to log in (NOLOGIN). An administrator allows it "
                               f"with ALTER ROLE {role} LOGIN (and a password).") from None
        if "password" in text or "does not exist" in text or "authentication" in text:
            raise LoginRefused("The database refused this role name and password.") from None
        raise LoginRefused(f"The database could not be reached: {text}") from None
    except psycopg.errors.UndefinedFunction:
        raise LoginRefused("ledgerlock is not installed in this database: run `ledgerlock migrate` "
                           "(or `ledgerlock demo`) first.") from None
    except psycopg.errors.InvalidSchemaName:
        raise LoginRefused("ledgerlock is not installed in this database: run `ledgerlock migrate` "
                           "(or `ledgerlock demo`) first.") from None
    except psycopg.Error as exc:
        message = exc.diag.message_primary if exc.diag and exc.diag.message_primary else str(exc)
        raise LoginRefused(f"The database refused the login: {message}") from None
