"""The console in a real browser: a month-end close, refusals as sentences, four-eyes with two admins, a
tenant held to its scope, the auditor's evidence, CSRF. Each scenario checks the page and the database."""

from __future__ import annotations

import datetime as dt
import re
import uuid
import zipfile

import psycopg
import pytest
from conftest import CHROMIUM, click_through, csrf_of, flash_text, login

from lltest import refused

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                                "(apt-get install chromium); CI installs it")


def last_month_end(db) -> dt.date:
    """The end of last month by the database's date, as the console's preset computes it (Python's date and the
    server's can disagree around midnight at a month's end)."""
    return db.owner().execute("SELECT (date_trunc('month', current_date) - interval '1 day')::date").fetchone()[0]


def database_message(conn: psycopg.Connection, statement: str, params=()) -> str:
    """The sentence the database itself gives for a refused call (the page must show the same)."""
    with pytest.raises(psycopg.Error) as info:
        conn.execute(statement, params)
    return info.value.diag.message_primary


def lock_row(db, lock_id: int):
    return db.owner().execute("SELECT status, level, unlocked_by, unlock_reason FROM ledgerlock.period_locks "
                              "WHERE id = %s", (lock_id,)).fetchone()


def test_month_end_close_end_to_end_as_admin(db, new_page):
    db.protect_invoice()
    month_end = last_month_end(db)
    db.connect("app").execute("INSERT INTO invoice (company_id, issued_on, amount) VALUES (1, %s, 120)",
                              (month_end,))
    page = new_page("ll_admin")

    # the checklist of last month: two tasks, added in the page
    page.goto("/checklist?scope=1")
    for task in ("Reconcile the bank account", "Review open invoices"):
        page.fill("#add-task input[name=task]", task)
        page.fill("#add-task input[name=scope]", "1")
        click_through(page, "#add-task button")
        assert "is on the checklist of scope 1" in flash_text(page)
    assert page.inner_text("#progress p") == "0 of 2 tasks done"

    # lock through the end of last month (the pre-selected preset): soft, with the open tasks as a warning
    page.goto("/calendar?scope=1")
    assert page.inner_text("#badge") == "Nothing locked"
    click_through(page, "#lock-form button[type=submit]")
    flashes = flash_text(page)
    assert f"locked through {month_end} (soft)" in flashes
    assert "2 close tasks are still open for scope 1" in flashes
    assert page.inner_text("#badge") == f"Books locked through {month_end}"
    assert "soft" in page.get_attribute("#badge", "class")
    assert page.get_attribute(f"[data-month='{month_end:%Y-%m}']", "data-state") == "soft"

    # complete the checklist
    page.goto("/checklist?scope=1")
    while page.locator("form[action='/checklist/done']").count():
        form = page.locator("form[action='/checklist/done']").first
        form.locator("input[name=note]").fill("checked")
        click_through(page, form.locator("button"))
        assert re.search(r"Task #\d+ is done", flash_text(page))
    assert page.inner_text("#progress p") == "2 of 2 tasks done"

    # the reviewer marks it reviewed: hard
    page.goto("/calendar?scope=1")
    click_through(page, "form[action='/upgrade'] button")
    assert "is now hard" in flash_text(page)
    assert "hard" in page.get_attribute("#badge", "class")
    assert page.get_attribute(f"[data-month='{month_end:%Y-%m}']", "data-state") == "hard"

    # the database agrees, and recorded every step as ll_admin
    owner = db.owner()
    assert owner.execute("SELECT ledgerlock.locked_through('1')").fetchone()[0] == month_end
    assert owner.execute("SELECT level, status, locked_by FROM ledgerlock.period_locks WHERE scope = '1'"
                         ).fetchall() == [("hard", "active", "ll_admin")]
    kinds = [k for (k,) in owner.execute("SELECT kind FROM ledgerlock.lock_history WHERE db_user = 'll_admin' "
                                         "ORDER BY id")]
    assert kinds.count("close_task_done") == 2 and "lock" in kinds and kinds[-1] == "upgrade", kinds
    # the history page shows the same timeline
    page.goto("/history?scope=1")
    assert page.locator("#timeline [data-kind=upgrade]").count() == 1


def test_a_refused_action_is_shown_with_its_sentence(db, new_page):
    admin = db.connect("admin")
    hard = admin.execute("SELECT ledgerlock.lock_period('1', '2025-01-01', '2025-01-31', 'hard')").fetchone()[0]
    soft = admin.execute("SELECT ledgerlock.lock_period('1', '2025-02-01', '2025-02-28')").fetchone()[0]
    expected = database_message(db.connect("controller"), "SELECT ledgerlock.unlock_period(%s, 'x')", (hard,))

    page = new_page("ll_controller")
    page.goto("/calendar?scope=1")
    row = page.locator(f"tr[data-lock='{hard}']")
    row.locator("input[name=reason]").fill("late supplier invoice")
    click_through(page, row.locator("button[name=unlock]"))
    error = page.inner_text(".flash.error")
    assert expected in error and "Traceback" not in page.content()
    assert lock_row(db, hard)[:2] == ("active", "hard")

    # bad input is a sentence too, and nothing is sent: a blank reason
    click_through(page, page.locator(f"tr[data-lock='{soft}'] button[name=unlock]"))
    assert "A reason for the unlock is required." in page.inner_text(".flash.error")
    assert lock_row(db, soft)[0] == "active"

    # the permitted neighbour: the controller unlocks the soft window
    row = page.locator(f"tr[data-lock='{soft}']")
    row.locator("input[name=reason]").fill("reclassification")
    click_through(page, row.locator("button[name=unlock]"))
    assert f"Lock #{soft} is unlocked: reclassification" in flash_text(page)
    assert lock_row(db, soft) == ("unlocked", "soft", "ll_controller", "reclassification")
    # …and relocks it, pre-filled with the unlocked window
    click_through(page, page.locator(f"tr[data-lock='{soft}'] button[name=relock]"))
    assert "Relocked" in flash_text(page)
    assert lock_row(db, soft)[0] == "relocked"


def test_four_eyes_unlock_with_two_admins(db, new_page):
    admin = db.connect("admin")
    hard = admin.execute("SELECT ledgerlock.lock_period('1', '2025-03-01', '2025-03-31', 'hard')").fetchone()[0]
    db.owner().execute("SELECT ledgerlock.set_four_eyes(true)")

    first = new_page("ll_admin")
    first.goto("/calendar?scope=1")
    row = first.locator(f"tr[data-lock='{hard}']")
    assert row.locator("button[name=unlock]").inner_text() == "Request unlock"
    row.locator("input[name=reason]").fill("auditor adjustment 12")
    click_through(first, row.locator("button[name=unlock]"))
    match = re.search(r"unlock request #(\d+) for lock #\d+ is filed", flash_text(first))
    assert match, flash_text(first)
    request_id = int(match.group(1))
    assert lock_row(db, hard)[0] == "active"

    # the requester cannot approve (no button; a forged approval is refused and recorded)
    first.goto("/inbox")
    assert first.locator(f"tr[data-request='{request_id}'] button[name=approve]").count() == 0
    expected = database_message(db.connect("admin"), "SELECT ledgerlock.approve_unlock(%s)", (request_id,))
    response = first.request.post("/approve", form={"csrf_token": csrf_of(first), "request_id": str(request_id)})
    assert response.ok and expected in response.text()  # the page it lands on shows the sentence
    refusals = db.owner().execute("SELECT db_user FROM ledgerlock.lock_history WHERE kind = 'unlock_refuse'"
                                  ).fetchall()
    assert refusals == [("ll_admin",)]

    second = new_page("ll_admin2")
    second.goto("/inbox")
    assert "expires in" in second.inner_text(f"tr[data-request='{request_id}']")
    click_through(second, second.locator(f"tr[data-request='{request_id}'] button[name=approve]"))
    assert f"Request #{request_id} approved: lock #{hard} is unlocked." in flash_text(second)
    assert lock_row(db, hard) == ("unlocked", "hard", "ll_admin2", "auditor adjustment 12")
    assert second.get_attribute(f"tr[data-request='{request_id}']", "data-status") == "approved"


def test_four_eyes_is_switched_on_and_off_from_the_inbox(db, new_page):
    def four_eyes_on() -> bool:
        return db.owner().execute("SELECT four_eyes_unlock FROM ledgerlock.close_setting").fetchone()[0]

    page = new_page("ll_admin")
    page.goto("/inbox")
    click_through(page, "#four-eyes button")
    assert "Four-eyes is on: unlocking a hard window now takes a second admin." in flash_text(page)
    assert four_eyes_on() and "Four-eyes is on" in page.inner_text("main")

    # off takes a reason, then a second admin: the request waits in the inbox
    click_through(page, "#four-eyes button")
    assert "A reason for turning four-eyes off is required." in flash_text(page)
    page.fill("#four-eyes input[name=reason]", "year-end audit over")
    click_through(page, "#four-eyes button")
    assert "Request #1 to turn four-eyes off is filed; a second admin approves it in the inbox." in flash_text(page)
    assert four_eyes_on()
    assert page.locator("tr[data-request='1'] button[name=approve]").count() == 0  # not by its author

    # a controller gets no switch, and a forged post is the database's refusal
    controller = new_page("ll_controller")
    controller.goto("/inbox")
    assert controller.locator("#four-eyes").count() == 0
    expected = database_message(db.connect("controller"), "SELECT ledgerlock.set_four_eyes(true)")
    response = controller.request.post("/four-eyes", form={"csrf_token": csrf_of(controller), "state": "on"})
    assert response.ok and expected in response.text() and "Traceback" not in response.text()

    second = new_page("ll_admin2")
    second.goto("/inbox")
    click_through(second, second.locator("tr[data-request='1'] button[name=approve]"))
    assert "Request #1 approved: four-eyes is off." in flash_text(second)
    assert not four_eyes_on()
    assert second.locator("#four-eyes button").inner_text() == "Turn four-eyes on"


def test_the_bundle_of_a_year_without_events_is_refused_with_a_sentence(db, new_page, tmp_path):
    db.connect("admin").execute("SELECT ledgerlock.lock_period('1', '2025-01-01', '2025-01-31')")
    page = new_page("ll_auditor")
    page.goto("/evidence")
    page.fill("#bundle input[name=year]", "2019")
    click_through(page, "#bundle button")
    assert page.url.endswith("/evidence")
    assert ("Nothing to bundle for scope 1, fiscal year 2019: no audit event of scope 1 concerns a row dated "
            "2019-01-01 to 2019-12-31 or a lock overlapping it." in flash_text(page))
    page.fill("#bundle input[name=year]", "2025")  # the permitted neighbour: a year with its lock
    with page.expect_download() as download:
        page.click("#bundle button")
    download.value.save_as(tmp_path / "bundle.zip")
    assert zipfile.is_zipfile(tmp_path / "bundle.zip")


def test_a_tenant_limited_to_scope_1_cannot_see_or_touch_scope_2(db, new_page):
    tenant = f"tenant_{uuid.uuid4().hex[:8]}"
    owner = db.owner()
    owner.execute(f"CREATE ROLE {tenant} LOGIN IN ROLE ledgerlock_admin")
    owner.execute("SELECT ledgerlock.grant_scope(%s, '1')", (tenant,))
    admin = db.connect("admin")
    admin.execute("SELECT ledgerlock.lock_period('1', '2025-01-01', '2025-01-31')")
    other = admin.execute("SELECT ledgerlock.lock_period('2', '2025-01-01', '2025-01-31')").fetchone()[0]

    page = new_page(tenant)
    scopes = page.locator("#scopes [data-scope]")
    assert [scopes.nth(i).get_attribute("data-scope") for i in range(scopes.count())] == ["1"]
    page.goto("/calendar?scope=2")
    assert page.locator("#locks tr[data-lock]").count() == 0  # row-level security hides scope 2's windows

    # forged posts for scope 2 are refused by the database, with its sentence
    token = csrf_of(page)
    response = page.request.post("/lock", form={"csrf_token": token, "scope": "2", "preset": "end-of-last-month",
                                                "level": "soft"})
    assert f"lock_through on scope 2 is not allowed: {tenant} is limited to scopes 1" in response.text()
    response = page.request.post("/unlock", form={"csrf_token": token, "scope": "2", "lock_id": str(other),
                                                  "reason": "x"})
    assert response.ok and 'class="flash error"' in response.text() and "Traceback" not in response.text()
    assert lock_row(db, other)[0] == "active"
    assert owner.execute("SELECT count(*) FROM ledgerlock.period_locks WHERE scope = '2'").fetchone()[0] == 1

    # the permitted neighbour: its own scope
    page.goto("/calendar?scope=1")
    click_through(page, "#lock-form button[type=submit]")
    assert f"locked through {last_month_end(db)}" in flash_text(page)

    # its last scope revoked, the tenant is limited to no scope: it sees none and may lock none
    admin.execute("SELECT ledgerlock.set_fiscal_year_start('2', 4)")  # a scope the scope list could name
    admin.execute("SELECT ledgerlock.revoke_scope(%s, '1')", (tenant,))
    page = new_page(tenant)
    assert page.locator("#scopes [data-scope]").count() == 0
    assert "admin · no scope" in page.locator("header .caps").inner_text()
    response = page.request.post("/lock", form={"csrf_token": csrf_of(page), "scope": "1",
                                                "preset": "end-of-last-month", "level": "soft"})
    assert f"lock_through on scope 1 is not allowed: {tenant} is limited to no scope" in response.text()


def test_the_auditor_reads_the_diff_and_the_digest_but_gets_no_lock_forms(db, new_page, tmp_path):
    from ledgerlock.audit_bundle import verify_bundle

    db.protect_invoice()
    app = db.connect("app")
    invoice = app.execute("INSERT INTO invoice (company_id, issued_on, amount) VALUES (1, '2025-05-10', 100) "
                          "RETURNING id").fetchone()[0]
    app.execute("UPDATE invoice SET amount = 140 WHERE id = %s", (invoice,))
    db.connect("admin").execute("SELECT ledgerlock.lock_period('1', '2025-01-01', '2025-01-31')")

    page = new_page("ll_auditor")
    page.goto("/calendar?scope=1")
    assert page.locator("#locks tr[data-lock]").count() == 1
    assert page.locator("#lock-form").count() == 0 and page.locator("form[action='/unlock']").count() == 0

    page.goto("/audit?table=invoice&operation=update")
    click_through(page, page.locator("#events a.op").first)
    changed = page.locator("#diff tr.changed")
    assert changed.count() == 1 and changed.get_attribute("data-column") == "amount"
    assert changed.locator("td.before").inner_text() == "100.00"
    assert changed.locator("td.after").inner_text() == "140.00"
    page.goto("/audit?operation=updte")
    assert "No event has the operation UPDTE" in page.inner_text("main")

    page.goto("/evidence")
    assert "verified" not in page.inner_text("#verify")  # run when asked, not on every view
    click_through(page, "#verify button")
    assert page.url.endswith("/evidence#verify") and "verified at" in page.inner_text("#verify")
    digest = page.input_value("#digest")
    assert re.fullmatch(r"ll1:\d+:[0-9a-f]{64}", digest)
    page.fill("#bundle input[name=year]", "2025")  # the year the invoice and the lock are dated in
    with page.expect_download() as download:
        page.click("#bundle button")
    path = tmp_path / "bundle.zip"
    download.value.save_as(path)
    assert zipfile.is_zipfile(path) and verify_bundle(str(path)).ok

    # a forged lock by the auditor is the database's refusal
    with refused("LL005") as info:
        db.connect("auditor").execute("SELECT ledgerlock.lock_through('1', '2025-02-28')")
    response = page.request.post("/lock", form={"csrf_token": csrf_of(page), "scope": "1",
                                                "preset": "end-of-last-month", "level": "soft"})
    assert info.value.diag.message_primary in response.text()
    assert db.owner().execute("SELECT count(*) FROM ledgerlock.period_locks").fetchone()[0] == 1


def test_a_form_replayed_without_its_csrf_token_is_refused(db, new_page):
    page = new_page("ll_admin")
    page.goto("/calendar?scope=1")
    form = {"scope": "1", "preset": "end-of-last-month", "level": "soft"}
    for token in (None, "forged-token"):
        response = page.request.post("/lock", form=form | ({"csrf_token": token} if token else {}),
                                     max_redirects=0)
        assert response.status == 403
        assert "security token is missing or out of date" in response.text()
    assert db.owner().execute("SELECT count(*) FROM ledgerlock.period_locks").fetchone()[0] == 0
    # the same form with the page's token goes through
    response = page.request.post("/lock", form=form | {"csrf_token": csrf_of(page)}, max_redirects=0)
    assert response.status == 303
    assert db.owner().execute("SELECT count(*) FROM ledgerlock.period_locks").fetchone()[0] == 1


def test_logins_the_console_refuses(db, new_page):
    page = new_page(None)
    for role, sentence in (("postgres", "is a superuser: the console never works as a superuser"),
                           ("ll_app", "is not a member of ledgerlock_admin, ledgerlock_controller or"),
                           ("nobody_here", "The database refused this role name and password.")):
        page.goto("/login")
        page.fill("input[name=role]", role)
        click_through(page, "button:has-text('Log in')")
        assert sentence in page.inner_text(".flash.error"), role
        assert page.url.endswith("/login")
    page.goto("/")
    assert page.url.endswith("/login")  # nothing is shown without a login
    login(page, "ll_auditor")
    assert page.locator("#scopes").count() == 1
