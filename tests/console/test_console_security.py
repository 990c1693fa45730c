"""The console against hostile content and hostile pages: what the application, a client's labels or a person
typed (an invoice note, `ledgerlock.actor`, an unlock reason, a close task) is shown as text and never runs, and
no page of the console can be framed by another site or kept in the browser's cache."""

from __future__ import annotations

import datetime as dt

import pytest
from conftest import CHROMIUM, click_through, csrf_of, flash_text, login
from playwright.sync_api import expect

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                                "(apt-get install chromium); CI installs it")

# Each one would change the page's title if the browser ran it; the console has no script of its own.
HOSTILE = [
    "<script>document.title = 'pwned'</script>",
    "<img src=x onerror=\"document.title = 'pwned'\">",
    "\"><svg onload=\"document.title = 'pwned'\">",
]


def assert_shown_as_text(page, where: str) -> None:
    """Every hostile string is in the page's text, verbatim, and none of them became an element."""
    text = page.inner_text("main")
    for html in HOSTILE:
        assert html in text, (where, html)
    assert page.title() != "pwned", where
    assert page.locator("main script, main img, main svg").count() == 0, where


def test_what_the_application_and_people_wrote_is_shown_as_text_never_run(db, new_page):
    db.protect_invoice()
    dialogs = []
    hostile = " ".join(HOSTILE)
    app = db.connect("app")
    app.execute("SELECT set_config('ledgerlock.actor', %s, false), set_config('ledgerlock.context', %s, false)",
                (hostile, hostile))
    invoice = app.execute("INSERT INTO invoice (company_id, issued_on, amount, note) VALUES (1, '2025-05-10', 100, "
                          "'first') RETURNING id").fetchone()[0]
    app.execute("UPDATE invoice SET note = %s WHERE id = %s", (hostile, invoice))
    admin = db.connect("admin")
    soft = admin.execute("SELECT ledgerlock.lock_period('1', '2025-01-01', '2025-01-31')").fetchone()[0]
    admin.execute("SELECT ledgerlock.unlock_period(%s, %s)", (soft, hostile))

    auditor = new_page("ll_auditor")
    auditor.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    auditor.goto("/audit?table=invoice&operation=update")
    assert_shown_as_text(auditor, "the audit log")
    click_through(auditor, auditor.locator("#events a.op").first)
    assert_shown_as_text(auditor, "the audit event")
    changed = auditor.locator("#diff tr.changed[data-column='note']")
    assert changed.locator("td.before").inner_text() == "first"
    assert changed.locator("td.after").inner_text() == hostile

    page = new_page("ll_admin")
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto("/history?scope=1")
    assert_shown_as_text(page, "the history")
    page.goto("/calendar?scope=1")
    assert_shown_as_text(page, "the calendar")
    # a close task typed into the console's own form
    page.goto("/checklist?scope=1")
    page.fill("#add-task input[name=task]", hostile)
    page.fill("#add-task input[name=scope]", "1")
    click_through(page, "#add-task button")
    assert "is on the checklist of scope 1" in flash_text(page)
    assert_shown_as_text(page, "the checklist")
    assert dialogs == []
    # the permitted neighbour: the same page does show ordinary text, and the database holds the strings as typed
    assert db.owner().execute("SELECT task FROM ledgerlock.close_task").fetchone()[0] == hostile
    assert db.owner().execute("SELECT unlock_reason FROM ledgerlock.period_locks WHERE id = %s",
                              (soft,)).fetchone()[0] == hostile



def test_control_and_bidirectional_characters_the_application_wrote_are_shown_as_escapes(db, new_page):
    """A bidirectional override (U+202E) shows the rest of a cell in reverse order, a zero-width space makes two
    keys look alike, control characters are invisible: the console shows each as an escape, as the manager
    prints them on a terminal (docs/cli.md); the neighbour, accented text, is shown as it is."""
    db.protect_invoice()
    app = db.connect("app")
    app.execute("SELECT set_config('ledgerlock.actor', %s, false), set_config('ledgerlock.reason', %s, false)",
                ("mallory\u202eeve", "Müller\x1b[2K\u200bpaid"))
    app.execute("INSERT INTO invoice (company_id, issued_on, amount, note) VALUES (1, '2025-05-10', 100, 'ok')")
    page = new_page("ll_auditor")
    page.goto("/audit?table=invoice")
    row = page.locator("#events tbody tr", has_text="INSERT")
    assert "for mallory\\u202eeve" in row.inner_text()
    assert "Müller\\x1b[2K\\u200bpaid" in row.inner_text()
    assert not [c for c in ("\u202e", "\x1b", "\u200b") if c in page.inner_text("main")]

def test_every_response_forbids_scripts_frames_and_caching(db, new_page):
    page = new_page("ll_admin")
    page.goto("/calendar?scope=1")
    responses = {
        "login page": page.request.get("/login"),
        "a page": page.request.get("/calendar?scope=1"),
        "a refusal": page.request.post("/lock", form={"scope": "1", "preset": "end-of-last-month"},
                                       max_redirects=0),  # no CSRF token: 403 before the database
        "a redirect": page.request.post("/logout", form={"csrf_token": csrf_of(page)}, max_redirects=0),
        "the stylesheet": page.request.get("/static/console.css"),
    }
    assert responses["a refusal"].status == 403 and responses["a redirect"].status == 303
    assert responses["the stylesheet"].ok and responses["a page"].ok
    for what, response in responses.items():
        headers = response.headers
        policy = headers.get("content-security-policy", "")
        assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy, what
        assert "form-action 'self'" in policy and "script-src 'self';" in policy and "unsafe-inline'; img" in policy
        assert "'unsafe-inline'" not in policy.split("style-src-attr")[0], what  # no inline script, ever
        assert headers.get("x-frame-options") == "DENY", what
        assert headers.get("x-content-type-options") == "nosniff", what
        assert headers.get("referrer-policy") == "no-referrer", what
        if what != "the stylesheet":
            assert headers.get("cache-control") == "no-store", what


def test_no_page_can_frame_the_console_not_even_its_own(db, new_page, console):
    db.connect("admin").execute("SELECT ledgerlock.lock_period('1', '2025-01-01', '2025-01-31')")
    page = new_page("ll_admin")
    # A page that frames the calendar, with its unlock buttons, under content of its own. It is written into a
    # page of the console's origin, so the logged-in session goes along with the frame: all that stops it is the
    # console's answer (frame-ancestors 'none', X-Frame-Options DENY), which another site's page gets too.
    page.goto("/")
    page.set_content('<p>Win a prize: click the red button!</p>'
                     '<iframe id="c" src="/calendar?scope=1" width="900" height="600"></iframe>', wait_until="load")
    frame = page.frame_locator("#c")
    assert page.locator("#c").count() == 1
    assert frame.locator("form").count() == 0 and frame.locator("#locks").count() == 0
    # the permitted neighbour: the same page, opened by the browser itself, shows its lock and its button
    page.goto("/calendar?scope=1")
    assert page.locator("#locks tr[data-lock] button[name=unlock]").count() == 1


def test_the_consoles_own_pages_break_none_of_its_policy(db, new_page):
    db.protect_invoice()
    db.connect("app").execute("INSERT INTO invoice (company_id, issued_on, amount) VALUES (1, '2025-05-10', 100)")
    page = new_page("ll_admin")
    violations = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    for path in ("/", "/calendar?scope=1", "/history?scope=1", "/inbox", "/checklist?scope=1", "/audit",
                 "/audit/1", "/why?table=invoice", "/numbers", "/evidence"):
        page.goto(path)
        # the stylesheet applied: the page is laid out by console.css, not the browser's defaults
        assert page.evaluate("getComputedStyle(document.body).fontFamily").startswith("system-ui"), path
    # the one script works under the policy: the evidence page's Copy button copies the digest
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.click("button[data-copy=digest]")
    expect(page.locator("button[data-copy=digest]")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == page.input_value("#digest")
    assert violations == []


# Values a person, a bookmarklet or a script may put in any field: empty, blank, zero, negative, past bigint,
# digits Python calls digits and int() refuses, a NUL, an impossible date, quotes, markup, 10,000 characters.
HOSTILE_VALUES = ["", "   ", "0", "-1", "99999999999999999999", "²", "٣", "1\x00", "2025-02-30", "2025-13-01",
                  "x' OR '1'='1", "<b>bold</b>", "Ⅻ", "end-of-last-month\n", "9" * 10_000]
FORMS = {  # every POST route and the fields its form sends
    "/lock": ["scope", "preset", "level", "note", "reviewer", "through"],
    "/upgrade": ["scope", "lock_id"],
    "/unlock": ["scope", "lock_id", "reason"],
    "/relock": ["scope", "lock_id"],
    "/approve": ["request_id"],
    "/withdraw": ["request_id"],
    "/four-eyes": ["state", "reason"],
    "/checklist/add": ["scope", "period", "task"],
    "/checklist/done": ["scope", "period", "task_id", "note"],
    "/evidence/bundle": ["scope", "year"],
}
PAGES = {  # every GET page and its query parameters
    "/calendar": ["scope", "year"],
    "/history": ["scope"],
    "/checklist": ["scope", "period"],
    "/audit": ["table", "operation", "from", "to", "before"],
    "/why": ["table", "key"],
    "/numbers": ["table"],
}


def assert_answered_with_a_sentence(response, what) -> None:
    body = response.text() if "text/html" in response.headers.get("content-type", "") else ""
    assert response.status < 500, (what, response.status, body[:500])
    assert "Traceback" not in body and "Internal Server Error" not in body, what


def test_no_input_makes_the_console_fail_or_write(db, new_page):
    """Every form and page, each field in turn set to each hostile value (the others valid), as an admin with a
    valid token: an answer below 500 with no trace, and nothing written that the inputs did not ask for."""
    db.protect_invoice()
    admin = db.connect("admin")
    lock = admin.execute("SELECT ledgerlock.lock_period('1', '2025-01-01', '2025-01-31')").fetchone()[0]
    page = new_page("ll_admin")
    page.goto("/calendar?scope=1")
    token = page.locator("input[name=csrf_token]").first.input_value()
    valid = {"scope": "1", "preset": "end-of-last-month", "level": "soft", "lock_id": str(lock), "reason": "r",
             "request_id": "1", "state": "on", "period": "2025-01", "task": "t", "task_id": "1", "note": "n",
             "year": "2025", "table": "invoice", "operation": "UPDATE", "from": "2025-01-01", "to": "2025-12-31",
             "before": "10", "key": "1", "reviewer": "", "through": ""}
    for path, fields in FORMS.items():
        for field in fields:
            for value in HOSTILE_VALUES:
                form = {f: valid[f] for f in fields} | {field: value, "csrf_token": token}
                response = page.request.post(path, form=form, max_redirects=0)
                assert_answered_with_a_sentence(response, (path, field, value[:20]))
    for path, params in PAGES.items():
        for param in params:
            for value in HOSTILE_VALUES:
                response = page.request.get(path, params={p: valid[p] for p in params} | {param: value})
                assert_answered_with_a_sentence(response, (path, param, value[:20]))
    for seq in ("0", "99999999999999999999", "-1"):
        assert_answered_with_a_sentence(page.request.get(f"/audit/{seq}"), seq)
    # An admin may lock any scope, so some of these went through: each exactly as sent (stripped), none cut short
    # or changed on the way.
    owner = db.owner()
    sent = {v.strip() for v in HOSTILE_VALUES} | {"1"}
    for table, column in (("period_locks", "scope"), ("close_task", "scope"), ("close_task", "task")):
        written = {v for (v,) in owner.execute(f"SELECT DISTINCT {column} FROM ledgerlock.{table}")}
        assert written <= sent | {"t"}, (table, column, written - sent)


class Clock:
    """A clock the test moves: expiry is asserted on what the console does, never on a wait."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_an_idle_session_ends_and_the_console_forgets_its_password(db, new_page, console):
    clock = Clock()
    console.sessions.clock = clock
    page = new_page("ll_admin")
    idle, lifetime = console.sessions.idle, console.sessions.lifetime
    assert (idle, lifetime) == (30 * 60, 12 * 3600)  # the defaults `ledgerlock console --help` states
    assert len(console.sessions) == 1
    # used within the idle time: it lives on, and each request starts the idle time again
    for _ in range(3):
        clock.now += idle - 1
        page.goto("/calendar?scope=1")
        assert page.url.endswith("/calendar?scope=1") and page.locator("#lock-form").count() == 1
    # idle for longer: the next request lands on the login page with the reason, and the password is gone
    clock.now += idle + 1
    assert len(console.sessions) == 0
    page.goto("/calendar?scope=1")
    assert page.url.endswith("/login")
    assert "Your session ended; please log in again." in flash_text(page)
    # however busy, no session outlives the cookie's 12 hours
    other = new_page("ll_auditor")
    for _ in range(lifetime // (idle - 60) + 1):
        clock.now += idle - 60
        other.goto("/evidence")
    assert other.url.endswith("/login") and len(console.sessions) == 0


def try_login(page, role: str) -> str:
    page.goto("/login")
    page.fill("input[name=role]", role)
    click_through(page, "button:has-text('Log in')")
    return page.inner_text(".flash.error") if page.locator(".flash.error").count() else ""


def test_five_refused_logins_stop_that_role_from_that_address_for_a_while(db, new_page, console):
    clock = Clock()
    console.logins.clock = clock
    db.owner().execute("CREATE ROLE ll_locked_out NOLOGIN IN ROLE ledgerlock_controller")
    try:
        page = new_page(None)
        for _ in range(5):  # refused by the database: the role may not log in
            assert "is not allowed to log in (NOLOGIN)" in try_login(page, "ll_locked_out")
        db.owner().execute("ALTER ROLE ll_locked_out LOGIN")  # the database would now let it in…
        assert "Too many refused logins as ll_locked_out from this address: try again in 15 min." in \
            try_login(page, "ll_locked_out")  # …but the console does not ask it
        assert page.url.endswith("/login")
        # the neighbours: another role from the same address, and the same role once the time has passed
        login(page, "ll_auditor")
        assert page.locator("#scopes").count() == 1
        clock.now += 15 * 60 - 1
        assert "try again in 1 min" in try_login(page, "ll_locked_out")
        clock.now += 2
        assert try_login(page, "ll_locked_out") == "" and page.url.endswith("/")
    finally:
        db.owner().execute("DROP ROLE IF EXISTS ll_locked_out")


def test_verification_runs_when_asked_one_at_a_time_and_finds_a_change_behind_the_trail(db, new_page, console):
    """A verification reads every event and row: the evidence page runs none on a view, one when asked, and
    not two at once (a second person is told who started the running one); its result stays for the session."""
    db.protect_invoice()
    db.connect("app").execute("INSERT INTO invoice (id, company_id, issued_on, amount) VALUES (1, 1, '2025-05-10', 1)")
    owner = db.owner()
    owner.execute("ALTER TABLE invoice DISABLE TRIGGER USER")
    owner.execute("UPDATE invoice SET amount = 2 WHERE id = 1")  # behind the trail
    page = new_page("ll_auditor")
    page.goto("/evidence")
    assert "does not verify" not in page.inner_text("main") and page.locator("#verify button").inner_text() == \
        "Verify now"
    # someone else's verification is running: this one is not started
    assert console.app.checking.acquire(blocking=False)
    try:
        console.app.checking_since = (dt.datetime(2026, 11, 27, 9, 30, 5), "ll_admin", "verification")
        click_through(page, "#verify button")
        assert "A verification started by ll_admin at 09:30:05 is still running" in flash_text(page)
        assert "does not verify" not in page.inner_text("#verify")
    finally:
        console.app.checking.release()
    # the permitted neighbour: now it runs, and reports the change with its row
    click_through(page, "#verify button")
    text = page.inner_text("#verify")
    assert "The evidence does not verify" in text and "invoice id=1: amount is 2.00 in the table" in text
    assert page.locator("#verify button").inner_text() == "Verify again"
    page.goto("/evidence")  # kept for the session, not run again
    assert "The evidence does not verify" in page.inner_text("#verify")


def test_the_numbering_proof_checks_every_final_number_when_asked(db, new_page, console):
    """number_gaps() reads every final row (5 us each): the page lists the series on a view, and checks them when
    asked, one check at a time per console; a number removed behind the trail is then found."""
    db.protect_invoice(number_column="number", number_format="F-{SEQ:3}")
    db.connect("app").execute("INSERT INTO invoice (id, company_id, issued_on, status) SELECT g, 1, '2025-05-01', "
                              "'approved' FROM generate_series(1, 3) g")
    page = new_page("ll_auditor")
    page.goto("/numbers")
    assert "Not checked in this session yet." in page.inner_text("#check")
    assert "not checked" in page.inner_text("#series")
    # the permitted neighbour first: a clean series
    click_through(page, "#check button")
    assert page.url.endswith("/numbers#check")
    assert "no gap, no duplicate in any series, checked at" in page.inner_text("#check")
    # a final row removed behind the trail leaves a hole: found by the next check, not by a view
    owner = db.owner()
    owner.execute("ALTER TABLE invoice DISABLE TRIGGER USER; DELETE FROM invoice WHERE id = 2")
    page.goto("/numbers")
    assert "no gap, no duplicate in any series" in page.inner_text("#check")  # the session's last check
    # while another check runs, this one is not started
    assert console.app.checking.acquire(blocking=False)
    try:
        console.app.checking_since = (dt.datetime(2026, 11, 27, 9, 30, 5), "ll_admin", "verification")
        click_through(page, "#check button")
        assert "A verification started by ll_admin at 09:30:05 is still running" in flash_text(page)
    finally:
        console.app.checking.release()
    click_through(page, "#check button")
    assert "1 problem in the final numbers" in page.inner_text("#check")
    assert page.locator("#gaps tbody tr").all_inner_texts() == ["invoice\tF-{SEQ}\tgap\t2\tnumber 2 is missing"]
    assert "1 problem" in page.inner_text("#series")
