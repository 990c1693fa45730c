"""Browser tests of ``ledgerlock console``: the real app served by uvicorn on 127.0.0.1, driven by the system's
headless Chromium through Playwright (nothing is downloaded: the browser is Debian's /usr/bin/chromium).

They run on one test server only (the embedded PostgreSQL 16 when selected): the console adds no SQL of its
own to check per server version, and each browser scenario costs seconds.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lltest import TestDatabase, selected_servers

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 15_000


def console_server_name() -> str:
    servers = selected_servers()
    return "pg16" if "pg16" in servers else servers[0]


def pytest_collection_modifyitems(config, items):
    """Keep the console tests of one server; the others are deselected (reported as such, not skipped)."""
    keep, drop = [], []
    here = Path(__file__).parent
    for item in items:
        callspec = getattr(item, "callspec", None)
        server = callspec.params.get("cluster") if callspec else None
        if here in Path(item.path).parents and server is not None and server != console_server_name():
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@dataclass
class Console:
    url: str
    db: TestDatabase
    sessions: object  # the app's SessionStore: a test may give it its own clock
    logins: object  # the app's LoginThrottle, likewise
    app: object  # the app's Console (manager/console/app.py)


@pytest.fixture
def console(db) -> Iterator[Console]:
    """The console app for this test's database, on a free port of 127.0.0.1. Its base connection string
    names the superuser: the console must never use it (people log in as their own roles)."""
    import uvicorn

    from ledgerlock.console import create_app

    app = create_app(db.conninfo("owner"), where=f"test server {db.cluster.name}, database {db.name}")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, name="console", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive(), "the console server stopped while starting"
        assert time.monotonic() < deadline, "the console server did not start within 15 s"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Console(f"http://127.0.0.1:{port}", db, app.state.console.sessions, app.state.console.logins,
                      app.state.console)
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("the console's browser tests need Debian's chromium (/usr/bin/chromium); CI installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def new_page(browser, console):
    """A function that opens a fresh browser context (own cookies) logged in as a role."""
    contexts = []

    def open_as(role: str | None, password: str = ""):
        ctx = browser.new_context(base_url=console.url, viewport={"width": 1280, "height": 900})
        ctx.set_default_timeout(TIMEOUT_MS)
        contexts.append(ctx)
        page = ctx.new_page()
        if role is not None:
            login(page, role, password)
        return page

    yield open_as
    for ctx in contexts:
        ctx.close()


def login(page, role: str, password: str = "") -> None:
    page.goto("/login")
    page.fill("input[name=role]", role)
    page.fill("input[name=password]", password)
    click_through(page, "button:has-text('Log in')")
    page.wait_for_url(re.compile(r"/$"))


def click_through(page, target) -> None:
    """Click a link or a form's button and wait until the page it leads to has loaded.

    Playwright's click returns once the navigation has started; a locator counted right after it may read a document
    the browser has not finished parsing (CI saw `#diff tr.changed` counted 0 on /audit/5 that way)."""
    locator = page.locator(target) if isinstance(target, str) else target
    with page.expect_navigation(wait_until="load"):
        locator.click()


def csrf_of(page) -> str:
    return page.locator("input[name=csrf_token]").first.input_value()


def flash_text(page) -> str:
    return " ".join(page.locator(".flash").all_inner_texts())
