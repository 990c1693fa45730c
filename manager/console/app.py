"""The console's routes: pages that read through the SQL API, forms that call it.

Every request that touches the database opens a connection as the logged-in person's role (auth.py) and
runs the page's reads or the form's one API call on it; the database decides what that role may see and do.
A refusal comes back as the database's sentence (message and hint) in the page, never as a stack trace;
bad form input is answered with a sentence before anything is sent.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import json
import os
import secrets
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
import markupsafe
import psycopg
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from .. import context
from .. import errors as ll_errors
from ..output import printable
from . import csrf
from .auth import LoginRefused, LoginThrottle, Person, SessionStore, connect_as, describe_person, login
from .queries import query

HERE = Path(__file__).parent
PRESETS = ("end-of-last-month", "end-of-last-quarter", "end-of-last-fiscal-year")
# The checks that read everything they prove (Console.run_check): kind -> (what it is called in a sentence,
# its query in queries.sql, whether that returns rows, the page that shows its result).
CHECKS = {"verify": ("verification", "verify", False, "/evidence#verify"),
          "numbers": ("check of the final numbers", "number_gaps", True, "/numbers#check")}
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


class FormError(Exception):
    """Bad input in a form: the sentence to show; nothing was sent to the database."""


class NeedLogin(Exception):
    def __init__(self, sentence: str | None = None):
        super().__init__(sentence)
        self.sentence = sentence


@dataclass
class Refusal:
    """A database refusal as people read it."""

    message: str
    hint: str | None = None
    sqlstate: str | None = None

    @property
    def meaning(self) -> str | None:
        return ll_errors.describe(self.sqlstate, self.message) if self.sqlstate else None

    @classmethod
    def of(cls, exc: psycopg.Error) -> Refusal:
        diag = getattr(exc, "diag", None)
        state = diag.sqlstate if diag else None
        message = (diag.message_primary if diag and diag.message_primary else str(exc)).strip()
        if state == "42501":
            message = f"Your role may not do this ({message})."
        return cls(message, diag.message_hint if diag else None, state)


# -- reading the database ----------------------------------------------------------------------------------

def rows(conn: psycopg.Connection, name: str, params: dict | None = None) -> list[dict]:
    return context.rows(conn, query(name), params)


def one(conn: psycopg.Connection, name: str, params: dict | None = None) -> dict | None:
    found = rows(conn, name, params)
    return found[0] if found else None


def attempt(fn: Callable[[], Any]) -> tuple[Any, Refusal | None]:
    """A read that the person's role may be refused (an auditor-only function for a controller): its value,
    or the refusal to show in its place."""
    try:
        return fn(), None
    except psycopg.Error as exc:
        return None, Refusal.of(exc)


def scalar(conn: psycopg.Connection, statement: str, params: tuple) -> Any:
    return conn.execute(statement, params).fetchone()[0]


# -- form input --------------------------------------------------------------------------------------------

def text_field(form, name: str, label: str, *, required: bool = True) -> str | None:
    value = form.get(name)
    value = value.strip() if isinstance(value, str) else ""
    if not value:
        if required:
            raise FormError(f"{label} is required.")
        return None
    return value


def int_field(form, name: str, label: str) -> int:
    value = text_field(form, name, label)
    try:
        number = int(value)
    except ValueError:
        raise FormError(f"{label} must be a whole number, not {value!r}.") from None
    if number <= 0:
        raise FormError(f"{label} must be a positive number, not {number}.")
    return number


def year_value(value: str, label: str) -> int:
    """A year like 2026: ASCII digits only (str.isdigit() also takes '²', which int() then refuses)."""
    if not (value.isascii() and value.isdigit() and len(value) == 4 and 1900 < int(value) < 2200):
        raise FormError(f"{label} must be a year like 2026, not {value!r}.")
    return int(value)


def date_value(value: str | None, label: str) -> dt.date | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value.strip())
    except ValueError:
        raise FormError(f"{label} must be a date like 2026-03-31, not {value!r}.") from None


def fiscal_year_of(day: dt.date, start_month: int) -> int:
    return day.year if day.month >= start_month else day.year - 1


def fiscal_label(year: int, start_month: int) -> str:
    return str(year) if start_month == 1 else f"FY{year}"


def diff_rows(old: dict | None, new: dict | None) -> list[dict]:
    """Column by column, before and after (new columns in the new row's order, dropped ones last)."""
    old, new = old or {}, new or {}
    keys = list(new) + [k for k in old if k not in new]
    return [{"column": k, "before": old.get(k), "after": new.get(k), "in_old": k in old, "in_new": k in new,
             "changed": old.get(k) != new.get(k) or (k in old) != (k in new)} for k in keys]


def shown(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if isinstance(value, decimal.Decimal):
        return str(value)
    return json.dumps(value, ensure_ascii=False, default=str)


def _finalized(value: Any) -> Any:
    """Every {{ ... }} of a template: text shown harmlessly (output.printable: a bidirectional override, a
    zero-width or a control character the application wrote, as an escape), then HTML-escaped; markup the
    templates build (tojson) is left as it is."""
    if isinstance(value, str) and not isinstance(value, markupsafe.Markup):
        return printable(value)
    return value


def when(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return "" if value is None else str(value)


def duration(value: Any) -> str:
    if not isinstance(value, dt.timedelta):
        return ""
    seconds = int(value.total_seconds())
    if seconds <= 0:
        return "expired"
    hours, rest = divmod(seconds, 3600)
    return f"{hours} h {rest // 60:02d} min" if hours else f"{rest // 60} min"


def same_site(path: str) -> str:
    """Where a form may send the browser back to: a path on this site, nothing else."""
    return path if path.startswith("/") and not path.startswith("//") else "/"


# -- the application ---------------------------------------------------------------------------------------

class Console:
    def __init__(self, conninfo: str, where: str):
        self.conninfo = conninfo
        self.where = where
        self.sessions = SessionStore()
        self.logins = LoginThrottle()
        self.checks: dict[tuple[str, str], dict] = {}  # (sid, kind): the session's last check (see run_check)
        self.checking = threading.Lock()
        self.checking_since: tuple[dt.datetime, str | None, str] = (dt.datetime.now(), None, "")
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                                 finalize=_finalized)
        self.templates = Jinja2Templates(env=env)
        env.filters.update(shown=shown, when=when, duration=duration, urlencode_params=urlencode)
        env.globals.update(MONTHS=MONTHS)

    # -- session ---------------------------------------------------------------------------------------
    def _credentials(self, request: Request) -> tuple[str, str | None]:
        sid, role = request.session.get("sid"), request.session.get("role")
        if not sid or not role:
            raise NeedLogin()
        known, password = self.sessions.password(sid)
        if not known:  # idle too long, or the console restarted: passwords never outlive either
            raise NeedLogin("Your session ended; please log in again.")
        return role, password

    def _logout(self, request: Request) -> None:
        sid = request.session.get("sid")
        if sid:
            self.sessions.close(sid)
            for kind in CHECKS:
                self.checks.pop((sid, kind), None)
        request.session.clear()

    def flash(self, request: Request, kind: str, text: str, hint: str | None = None) -> None:
        request.session.setdefault("flash", []).append({"kind": kind, "text": text, "hint": hint})

    async def with_db(self, request: Request, work: Callable[[psycopg.Connection, Person], Any]
                      ) -> tuple[Any, Person, list[str]]:
        """Run ``work`` on a connection opened as the logged-in person; returns its value, the person and the
        NOTICEs the database sent (a lock over open close tasks warns this way)."""
        role, password = self._credentials(request)

        def run():
            notices: list[str] = []
            try:
                with connect_as(self.conninfo, role, password) as conn:
                    conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
                    person = describe_person(conn)
                    return work(conn, person), person, notices
            except psycopg.OperationalError as exc:
                if getattr(exc, "sqlstate", None) is None:  # the connection itself failed
                    raise NeedLogin("The database no longer accepts your login; please log in again.") from None
                raise
            except LoginRefused as exc:
                raise NeedLogin(str(exc)) from None

        return await run_in_threadpool(run)

    def _to_login(self, request: Request, exc: NeedLogin) -> Response:
        self._logout(request)
        if exc.sentence:
            self.flash(request, "error", exc.sentence)
        return RedirectResponse("/login", status_code=303)

    def render(self, request: Request, template: str, person: Person | None, status: int = 200,
               **context) -> Response:
        context.update(person=person, csrf_token=csrf.token(request), where=self.where,
                       role=request.session.get("role"),
                       flashes=request.session.pop("flash", []), path=request.url.path)
        return self.templates.TemplateResponse(request, template, context, status_code=status)

    async def page(self, request: Request, template: str, work: Callable[[psycopg.Connection, Person], dict]
                   ) -> Response:
        try:
            data, person, _ = await self.with_db(request, work)
        except NeedLogin as exc:
            return self._to_login(request, exc)
        except FormError as exc:
            return self.render(request, "refused.html", None, status=400, refusal=Refusal(str(exc)))
        except psycopg.Error as exc:
            return self.render(request, "refused.html", None, refusal=Refusal.of(exc))
        return self.render(request, template, person, **data)

    async def action(self, request: Request, work: Callable[[psycopg.Connection, Person, Any], str],
                     back: Callable[[Any], str]) -> Response:
        """A POST form: CSRF first, then one call of the SQL API as the person, then back to the page with
        the outcome (or the refusal's sentence) on top."""
        form = await request.form()
        if not csrf.valid(request, form):
            return self.render(request, "refused.html", None, status=403, refusal=Refusal(
                "This form was refused: its security token is missing or out of date. Reload the page and "
                "try again."))
        try:
            message, _, notices = await self.with_db(request, lambda conn, person: work(conn, person, form))
        except NeedLogin as exc:
            return self._to_login(request, exc)
        except FormError as exc:
            self.flash(request, "error", str(exc))
        except psycopg.Error as exc:
            refusal = Refusal.of(exc)
            self.flash(request, "error", refusal.message, refusal.hint)
        else:
            self.flash(request, "ok", message)
            for notice in notices:
                self.flash(request, "warning", notice)
        return RedirectResponse(same_site(back(form)), status_code=303)

    # -- login -----------------------------------------------------------------------------------------
    async def login_page(self, request: Request) -> Response:
        if request.method == "GET":
            return self.render(request, "login.html", None)
        form = await request.form()
        if not csrf.valid(request, form):
            return self.render(request, "refused.html", None, status=403, refusal=Refusal(
                "This form was refused: its security token is missing or out of date. Reload the page and "
                "try again."))
        role = (form.get("role") or "").strip()
        password = form.get("password") or None
        address = request.client.host if request.client else "?"
        wait = self.logins.wait(address, role)
        if wait:
            self.flash(request, "error", f"Too many refused logins as {role} from this address: try again in "
                                         f"{-(-int(wait) // 60)} min.")  # rounded up
            return self.render(request, "login.html", None, status=429, role_typed=role)
        try:
            await run_in_threadpool(login, self.conninfo, role, password)
        except LoginRefused as exc:
            self.logins.refused(address, role)
            self.flash(request, "error", str(exc))
            return self.render(request, "login.html", None, status=401, role_typed=role)
        self.logins.succeeded(address, role)
        self._logout(request)
        request.session.update(sid=self.sessions.open(password), role=role, csrf_token=secrets.token_urlsafe(32))
        return RedirectResponse("/", status_code=303)

    async def logout(self, request: Request) -> Response:
        form = await request.form()
        if not csrf.valid(request, form):
            return self.render(request, "refused.html", None, status=403,
                               refusal=Refusal("This form was refused: its security token is missing."))
        self._logout(request)
        return RedirectResponse("/login", status_code=303)

    # -- scopes and the calendar -------------------------------------------------------------------------
    async def scopes(self, request: Request) -> Response:
        return await self.page(request, "scopes.html", lambda conn, person: {"scopes": rows(conn, "scopes")})

    async def calendar(self, request: Request) -> Response:
        scope = (request.query_params.get("scope") or "").strip()
        if not scope:
            return RedirectResponse("/", status_code=303)
        year_param = request.query_params.get("year")

        def work(conn, person):
            summary = one(conn, "scope_summary", {"scope": scope})
            start_month = summary["fiscal_start"]
            if year_param:
                year = year_value(year_param, "The year")
            else:
                year = fiscal_year_of(dt.date.today(), start_month)
            months = rows(conn, "calendar", {"scope": scope, "start": dt.date(year, start_month, 1)})
            return {"scope": scope, "summary": summary, "year": year, "year_label": fiscal_label(year, start_month),
                    "months": months, "locks": rows(conn, "scope_locks", {"scope": scope}),
                    "tasks": rows(conn, "tasks", {"scope": scope, "period": None}),
                    "today": dt.date.today()}

        return await self.page(request, "calendar.html", work)

    async def lock(self, request: Request) -> Response:
        def work(conn, person, form):
            scope = text_field(form, "scope", "The scope")
            preset = text_field(form, "preset", "The lock preset")
            level = text_field(form, "level", "The level")
            if level not in ("soft", "hard"):
                raise FormError(f"The level is soft or hard, not {level!r}.")
            note = text_field(form, "note", "The note", required=False)
            reviewer = text_field(form, "reviewer", "The reviewer", required=False)
            if preset == "date":
                through = date_value(text_field(form, "through", "The date to lock through"),
                                     "The date to lock through")
            elif preset in PRESETS:
                through = scalar(conn, "SELECT ledgerlock.preset_through(%s, %s)", (scope, preset))
            else:
                raise FormError(f"Unknown lock preset {preset!r}: choose one of {', '.join(PRESETS)} or a date.")
            lock_id = scalar(conn, "SELECT ledgerlock.lock_through(%s, %s, level => %s, note => %s, "
                                   "reviewer => %s)", (scope, through, level, note, reviewer))
            return f"Locked: lock #{lock_id}, the books of scope {scope} are locked through {through} ({level})."

        return await self.action(request, work, self._back_to_scope)

    async def call_on_one(self, request: Request, *, field: str, label: str, call: str,
                          said: Callable[[int, str | None], str], back: Callable[[Any], str],
                          optional: tuple[str, str] | None = None) -> Response:
        """A form that names one thing by its number (a lock, a task, a request) and maybe one optional text
        (a reviewer, a note): one call of the SQL API with both, and the sentence saying what happened."""
        def work(conn, person, form):
            number = int_field(form, field, label)
            extra = text_field(form, *optional, required=False) if optional else None
            conn.execute(call, (number, extra) if optional else (number,))
            return said(number, extra)

        return await self.action(request, work, back)

    @staticmethod
    def _back_to_scope(form) -> str:
        scope = form.get("scope")
        return "/calendar?" + urlencode({"scope": scope}) if isinstance(scope, str) and scope else "/"

    async def upgrade(self, request: Request) -> Response:
        return await self.call_on_one(
            request, field="lock_id", label="The lock number", optional=("reviewer", "The reviewer"),
            call="SELECT ledgerlock.upgrade_lock(%s, reviewer => %s)", back=self._back_to_scope,
            said=lambda lock_id, by: f"Lock #{lock_id} is now hard (reviewed{' by ' + by if by else ''}).")

    async def unlock(self, request: Request) -> Response:
        def work(conn, person, form):
            lock_id = int_field(form, "lock_id", "The lock number")
            reason = text_field(form, "reason", "A reason for the unlock")
            if scalar(conn, "SELECT ledgerlock.four_eyes_required(%s)", (lock_id,)):
                request_id = scalar(conn, "SELECT ledgerlock.request_unlock(%s, %s)", (lock_id, reason))
                return (f"Four-eyes: unlock request #{request_id} for lock #{lock_id} is filed; a second admin "
                        "approves it in the inbox.")
            conn.execute("SELECT ledgerlock.unlock_period(%s, %s)", (lock_id, reason))
            return f"Lock #{lock_id} is unlocked: {reason}"

        return await self.action(request, work, self._back_to_scope)

    async def relock(self, request: Request) -> Response:
        def work(conn, person, form):
            lock_id = int_field(form, "lock_id", "The lock number")
            new_id = scalar(conn, "SELECT ledgerlock.relock(%s)", (lock_id,))
            return f"Relocked: lock #{new_id} closes the window of lock #{lock_id} again."

        return await self.action(request, work, self._back_to_scope)

    # -- history, inbox, checklist -----------------------------------------------------------------------
    async def history(self, request: Request) -> Response:
        scope = (request.query_params.get("scope") or "").strip() or None
        return await self.page(request, "history.html", lambda conn, person: {
            "scope": scope, "events": rows(conn, "history", {"scope": scope, "limit": 300})})

    async def inbox(self, request: Request) -> Response:
        return await self.page(request, "inbox.html", lambda conn, person: {
            "setting": one(conn, "four_eyes"), "requests": rows(conn, "requests")})

    async def approve(self, request: Request) -> Response:
        def work(conn, person, form):
            request_id = int_field(form, "request_id", "The request number")
            try:
                lock_id = scalar(conn, "SELECT ledgerlock.approve_unlock(%s)", (request_id,))
            except psycopg.Error:
                # the refused approval rolled back with its statement; record it in a statement of its own
                with contextlib.suppress(psycopg.Error):
                    conn.execute("SELECT ledgerlock.record_unlock_refusal(%s)", (request_id,))
                raise
            if lock_id is None:
                return f"Request #{request_id} approved: four-eyes is off."
            return f"Request #{request_id} approved: lock #{lock_id} is unlocked."

        return await self.action(request, work, lambda form: "/inbox")

    async def withdraw(self, request: Request) -> Response:
        return await self.call_on_one(
            request, field="request_id", label="The request number", call="SELECT ledgerlock.withdraw_unlock(%s)",
            said=lambda request_id, _: f"Request #{request_id} withdrawn.", back=lambda form: "/inbox")

    async def four_eyes(self, request: Request) -> Response:
        """The four-eyes switch (an unrestricted admin): on at once; off, while on, files the request a
        second admin approves in the inbox (ledgerlock.request_four_eyes_off), as `close four-eyes off`."""
        def work(conn, person, form):
            state = text_field(form, "state", "The four-eyes setting")
            if state not in ("on", "off"):
                raise FormError(f"Four-eyes is turned on or off, not {state!r}.")
            on = one(conn, "four_eyes")["four_eyes_unlock"]
            if state == "off" and on:
                reason = text_field(form, "reason", "A reason for turning four-eyes off")
                request_id = scalar(conn, "SELECT ledgerlock.request_four_eyes_off(%s)", (reason,))
                return (f"Request #{request_id} to turn four-eyes off is filed; a second admin approves it in the "
                        "inbox.")
            conn.execute("SELECT ledgerlock.set_four_eyes(%s)", (state == "on",))
            return ("Four-eyes is on: unlocking a hard window now takes a second admin." if state == "on"
                    else "Four-eyes is off: an admin unlocks hard windows alone.")

        return await self.action(request, work, lambda form: "/inbox")

    def _checklist_back(self, form) -> str:
        params = {k: form.get(k) for k in ("scope", "period") if isinstance(form.get(k), str) and form.get(k)}
        return "/checklist" + ("?" + urlencode(params) if params else "")

    async def checklist(self, request: Request) -> Response:
        scope = (request.query_params.get("scope") or "").strip() or None
        period = (request.query_params.get("period") or "").strip() or None

        def work(conn, person):
            tasks = rows(conn, "tasks", {"scope": scope, "period": period})
            done = sum(1 for t in tasks if t["status"] == "done")
            return {"scope": scope, "period": period, "tasks": tasks, "done": done,
                    "scopes": [s["scope"] for s in rows(conn, "scopes")]}

        return await self.page(request, "checklist.html", work)

    async def add_task(self, request: Request) -> Response:
        def work(conn, person, form):
            scope = text_field(form, "scope", "The scope")
            period = text_field(form, "period", "The period")
            task = text_field(form, "task", "The task")
            task_id = scalar(conn, "SELECT ledgerlock.add_close_task(%s, %s, %s)", (scope, period, task))
            return f"Task #{task_id} is on the checklist of scope {scope}: {task}"

        return await self.action(request, work, self._checklist_back)

    async def complete_task(self, request: Request) -> Response:
        return await self.call_on_one(
            request, field="task_id", label="The task number", optional=("note", "The note"),
            call="SELECT ledgerlock.complete_close_task(%s, %s)", said=lambda task_id, _: f"Task #{task_id} is done.",
            back=self._checklist_back)

    # -- evidence ------------------------------------------------------------------------------------------
    async def audit(self, request: Request) -> Response:
        q = request.query_params
        table = (q.get("table") or "").strip() or None
        operation = (q.get("operation") or "").strip().upper() or None
        before = (q.get("before") or "").strip() or None

        def work(conn, person):
            date_from = date_value(q.get("from"), "The first date")
            date_to = date_value(q.get("to"), "The last date")
            if date_from and date_to and date_from > date_to:
                raise FormError(f"The first date ({date_from}) is after the last date ({date_to}).")
            if table and scalar(conn, "SELECT to_regclass(%s)", (table,)) is None:
                raise FormError(f"There is no table named {table!r}.")
            if before and not (before.isascii() and before.isdigit() and len(before) <= 18):
                raise FormError(f"'before' must be an event number, not {before!r}.")
            events = rows(conn, "audit_events", {"table": table, "operation": operation, "from": date_from,
                                                 "to": date_to, "before": before, "limit": 100})
            note = None
            if not events and operation:
                known = [r["operation"] for r in rows(conn, "audit_operations")]
                if operation not in known:
                    note = f"No event has the operation {operation}; the trail has: {', '.join(known) or 'none'}."
            return {"events": events, "note": note, "tables": [r["table_name"] for r in rows(conn, "audit_tables")],
                    "filters": {"table": table or "", "operation": operation or "", "from": q.get("from") or "",
                                "to": q.get("to") or ""},
                    "next_before": events[-1]["seq"] if len(events) == 100 else None}

        return await self.page(request, "audit.html", work)

    async def audit_event(self, request: Request) -> Response:
        seq = request.path_params["seq"]

        def work(conn, person):
            event = one(conn, "audit_event", {"seq": seq})
            if event is None:
                raise FormError(f"There is no audit event #{seq} that your role may read.")
            return {"event": event, "diff": diff_rows(event["old_row"], event["new_row"])}

        return await self.page(request, "audit_event.html", work)

    async def why(self, request: Request) -> Response:
        table = (request.query_params.get("table") or "").strip()
        key = (request.query_params.get("key") or "").strip()

        def work(conn, person):
            tables = [r["table_name"] for r in rows(conn, "audit_tables")] if person.can_lock or person.auditor \
                else []
            if not table and not key:
                return {"tables": tables, "table": "", "key": "", "reasons": None}
            if not table or not key:
                raise FormError("Give both the table and the row's key (42, or {\"id\": 42}).")
            if scalar(conn, "SELECT to_regclass(%s)", (table,)) is None:
                raise FormError(f"There is no table named {table!r}.")
            try:
                key_json = json.dumps(json.loads(key))
            except ValueError:
                key_json = json.dumps(key)
            return {"tables": tables, "table": table, "key": key,
                    "reasons": rows(conn, "why", {"table": table, "key": key_json})}

        return await self.page(request, "why.html", work)

    async def numbers(self, request: Request) -> Response:
        """The series, and this session's last check of every final number (run_check: it reads them all)."""
        return await self.page(request, "numbers.html", lambda conn, person: {
            "series": rows(conn, "number_series"), "checked": self.checks.get((request.session.get("sid"), "numbers"))})

    async def evidence(self, request: Request) -> Response:
        """The digest, the bundle form, and this session's last verification: a verification reads every event
        and every protected row (seconds per million), so it runs when asked (verify), not on every view."""
        def work(conn, person):
            digest, digest_refused = attempt(lambda: one(conn, "digest")["digest"])
            scopes = [s["scope"] for s in rows(conn, "scopes")]
            last = self.checks.get((request.session.get("sid"), "verify"))
            return {"verified": last, "digest": digest, "digest_refused": digest_refused, "scopes": scopes,
                    "last_fy": fiscal_year_of(dt.date.today(), 1) - 1}

        return await self.page(request, "evidence.html", work)

    async def verify(self, request: Request) -> Response:
        return await self.run_check(request, "verify")

    async def check_numbers(self, request: Request) -> Response:
        return await self.run_check(request, "numbers")

    async def run_check(self, request: Request, kind: str) -> Response:
        """Run a check that reads every event and row (verify) or every final number (numbers) now: seconds per
        million, so when asked, never on a page view, and one at a time per console (a second person is told who
        started the running one). The result is kept for this session and shown on the check's page."""
        label, query, many, page = CHECKS[kind]
        form = await request.form()
        if not csrf.valid(request, form):
            return self.render(request, "refused.html", None, status=403, refusal=Refusal(
                "This form was refused: its security token is missing or out of date."))
        if not self.checking.acquire(blocking=False):
            started, who, what = self.checking_since
            self.flash(request, "error", f"A {what} started by {who} at {started:%H:%M:%S} is still running; "
                                         "try again when it has finished.")
            return RedirectResponse(page.split("#")[0], status_code=303)
        try:
            self.checking_since = (dt.datetime.now(), request.session.get("role"), label)

            def work(conn, person):
                result, refused = attempt(lambda: rows(conn, query) if many else one(conn, query))
                return {"at": dt.datetime.now(), "result": result, "refused": refused}

            try:
                last, _, _ = await self.with_db(request, work)
            except NeedLogin as exc:
                return self._to_login(request, exc)
            self.checks[(request.session.get("sid"), kind)] = last
        finally:
            self.checking.release()
        return RedirectResponse(page, status_code=303)

    async def bundle(self, request: Request) -> Response:
        """The auditor bundle of one scope and fiscal year, as a download (audit_bundle.write_bundle)."""
        from ..audit_bundle import NothingToBundle, write_bundle

        form = await request.form()
        if not csrf.valid(request, form):
            return self.render(request, "refused.html", None, status=403, refusal=Refusal(
                "This form was refused: its security token is missing or out of date."))

        def work(conn, person):
            scope = text_field(form, "scope", "The scope")
            year = text_field(form, "year", "The fiscal year")
            year = str(year_value(year, "The fiscal year"))
            start_month = scalar(conn, "SELECT ledgerlock.fiscal_year_start_month(%s)", (scope,))
            label = f"FY{year}" if start_month != 1 else year
            span = one(conn, "fiscal_year", {"scope": scope, "label": label})
            with tempfile.TemporaryDirectory(prefix="ledgerlock-console-") as tmp:
                path = os.path.join(tmp, "bundle.zip")
                try:
                    write_bundle(conn, scope, span["from_date"], span["to_date"], path, allow_empty=False)
                except NothingToBundle as exc:
                    raise FormError(f"Nothing to bundle for scope {scope}, fiscal year {label}: {exc}. An empty "
                                    "bundle would look like evidence of a quiet year; choose a year with "
                                    "activity.") from None
                data = Path(path).read_bytes()
            return data, f"ledgerlock-bundle-scope-{scope}-{label}.zip"

        try:
            (data, name), _, _ = await self.with_db(request, work)
        except NeedLogin as exc:
            return self._to_login(request, exc)
        except FormError as exc:
            self.flash(request, "error", str(exc))
            return RedirectResponse("/evidence", status_code=303)
        except psycopg.Error as exc:
            refusal = Refusal.of(exc)
            self.flash(request, "error", refusal.message, refusal.hint)
            return RedirectResponse("/evidence", status_code=303)
        safe = "".join(c if (c.isascii() and c.isalnum()) or c in "-_." else "_" for c in name)  # a header is latin-1
        return Response(data, media_type="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="{safe}"'})


# What every response tells the browser: run no script but the console's own file (static/console.js; no
# inline script, so nothing a page shows can run), load styles and images from the console only, send forms only
# to it, never show it in a frame (an unlock button under someone else's page), never guess a content type,
# send no referrer, and keep no copy of a page that shows the books.
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'none'; script-src 'self'; style-src 'self'; "
                                 b"style-src-attr 'unsafe-inline'; img-src 'self'; form-action 'self'; "
                                 b"frame-ancestors 'none'; base-uri 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]
NO_STORE = (b"cache-control", b"no-store")


class SecurityHeaders:
    """ASGI middleware adding SECURITY_HEADERS to every response (and no-store to all but /static)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        extra = SECURITY_HEADERS + ([] if scope["path"].startswith("/static/") else [NO_STORE])

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in extra}
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message = {**message, "headers": headers + extra}
            await send(message)

        return await self.app(scope, receive, send_with_headers)


def create_app(conninfo: str, *, where: str = "PostgreSQL", secret_key: str | None = None,
               idle_minutes: float = 30) -> Starlette:
    """The console for the database ``conninfo`` names (its user and password are never used: people log
    in as their own roles). The session secret is random per process unless given; a session idle for
    ``idle_minutes`` ends, and none outlives the cookie's 12 hours."""
    console = Console(conninfo, where)
    console.sessions.idle = idle_minutes * 60
    get, post = ["GET"], ["POST"]
    routes = [
        Route("/login", console.login_page, methods=["GET", "POST"]),
        Route("/logout", console.logout, methods=post),
        Route("/", console.scopes, methods=get),
        Route("/calendar", console.calendar, methods=get),
        Route("/lock", console.lock, methods=post),
        Route("/upgrade", console.upgrade, methods=post),
        Route("/unlock", console.unlock, methods=post),
        Route("/relock", console.relock, methods=post),
        Route("/history", console.history, methods=get),
        Route("/inbox", console.inbox, methods=get),
        Route("/approve", console.approve, methods=post),
        Route("/withdraw", console.withdraw, methods=post),
        Route("/four-eyes", console.four_eyes, methods=post),
        Route("/checklist", console.checklist, methods=get),
        Route("/checklist/add", console.add_task, methods=post),
        Route("/checklist/done", console.complete_task, methods=post),
        Route("/audit", console.audit, methods=get),
        Route("/audit/{seq:int}", console.audit_event, methods=get),
        Route("/why", console.why, methods=get),
        Route("/numbers", console.numbers, methods=get),
        Route("/evidence", console.evidence, methods=get),
        Route("/evidence/bundle", console.bundle, methods=post),
        Route("/evidence/verify", console.verify, methods=post),
        Route("/numbers/check", console.check_numbers, methods=post),
        Mount("/static", app=StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    middleware = [Middleware(SecurityHeaders),
                  Middleware(SessionMiddleware, secret_key=secret_key or secrets.token_urlsafe(48),
                             session_cookie="ledgerlock_console", same_site="strict", max_age=12 * 3600)]
    app = Starlette(routes=routes, middleware=middleware)
    app.state.console = console
    return app
