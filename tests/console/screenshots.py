"""Regenerate the screenshots of docs/console.md: a throwaway server, a small ERP in the middle of its
month-end close, the console, and headless Chromium.

    HOME=... .venv/bin/python tests/console/screenshots.py      (writes docs/console/*.png)
"""

from __future__ import annotations

import datetime as dt
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from conftest import CHROMIUM_ARGS, click_through, login  # noqa: E402

from lltest import fresh_database, known_servers, start_cluster, stop_cluster  # noqa: E402

OUT = HERE.parents[1] / "docs" / "console"


def seed(db) -> None:
    """Three companies mid-close: scope 2 locked through the month before last and its last month soft,
    a checklist half done, a hard window with a four-eyes request waiting, invoices with a correction."""
    owner = db.owner()
    owner.execute("INSERT INTO company (id, name) VALUES (3, 'Initrode SA') ON CONFLICT DO NOTHING")
    db.protect_invoice(number_column="number", number_format="INV-{YYYY}-{SEQ:5}")
    owner.execute("SELECT ledgerlock.set_fiscal_year_start('2', 4)")
    app = db.connect("app")
    today = dt.date.today()
    last = today.replace(day=1) - dt.timedelta(days=1)
    before = last.replace(day=1) - dt.timedelta(days=1)
    for company in (1, 2):
        for day in (3, 12, 21):
            app.execute("INSERT INTO invoice (company_id, issued_on, amount, status) VALUES (%s, %s, %s, 'approved')",
                        (company, last.replace(day=day), 100 * day))
    draft = app.execute("INSERT INTO invoice (company_id, issued_on, amount) VALUES (2, %s, 480) RETURNING id",
                        (last.replace(day=27),)).fetchone()[0]
    app.execute("UPDATE invoice SET amount = 512.40, paid = true WHERE id = %s", (draft,))
    admin, controller = db.connect("admin"), db.connect("controller")
    admin.execute("SELECT ledgerlock.lock_through('2', %s, 'hard', note => 'previous close', "
                  "reviewer => 'J. Reviewer')", (before,))
    for task in ("Reconcile the bank account", "Import the card statement", "Review open invoices"):
        controller.execute("SELECT ledgerlock.add_close_task('2', 'last-month', %s)", (task,))
    controller.execute("SELECT ledgerlock.complete_close_task(id, 'statement matched') "
                       "FROM ledgerlock.close_tasks('2') WHERE task = 'Reconcile the bank account'")
    controller.execute("SELECT ledgerlock.lock_through('2', %s, note => 'month-end close')", (last,))
    admin.execute("SELECT ledgerlock.lock_through('1', %s, 'hard', note => 'month-end close')", (before,))
    controller.execute("SELECT ledgerlock.lock_through('3', %s)", (before - dt.timedelta(days=62),))
    owner.execute("SELECT ledgerlock.set_four_eyes(true)")
    hard = admin.execute("SELECT id FROM ledgerlock.period_locks WHERE scope = '1'").fetchone()[0]
    admin.execute("SELECT ledgerlock.request_unlock(%s, 'auditor adjustment 12: late supplier credit note')",
                  (hard,))


def main() -> None:
    import uvicorn
    from playwright.sync_api import sync_playwright

    from ledgerlock.console import create_app

    OUT.mkdir(parents=True, exist_ok=True)
    cluster, root = start_cluster("pg16", known_servers()["pg16"])
    try:
        with fresh_database(cluster) as db:
            seed(db)
            where = "embedded PostgreSQL on local socket, database ledgerlock_demo"
            app = create_app(db.conninfo("owner"), where=where)
            server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
            thread = threading.Thread(target=server.run, daemon=True)
            thread.start()
            deadline = time.monotonic() + 15
            while not server.started and time.monotonic() < deadline:
                time.sleep(0.05)
            url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
                shots = {}
                for role, pages in (
                    ("ll_controller", [("scopes", "/"), ("calendar", "/calendar?scope=2"),
                                       ("history", "/history?scope=2"), ("checklist", "/checklist?scope=2")]),
                    ("ll_admin2", [("inbox", "/inbox")]),
                    ("ll_auditor", [("audit", "/audit?table=invoice"), ("evidence", "/evidence"),
                                    ("numbers", "/numbers")]),
                ):
                    ctx = browser.new_context(base_url=url, viewport={"width": 1200, "height": 760})
                    page = ctx.new_page()
                    login(page, role)
                    for name, path in pages:
                        page.goto(path)
                        if name in ("evidence", "numbers"):  # these checks run when asked; the result stays
                            click_through(page, "#verify button" if name == "evidence" else "#check button")
                            page.goto(path)
                        shots[name] = page
                        page.screenshot(path=str(OUT / f"{name}.png"))
                    if role == "ll_auditor":
                        page.goto("/audit?table=invoice&operation=UPDATE")
                        click_through(page, page.locator("#events a.op").first)
                        page.screenshot(path=str(OUT / "audit-diff.png"))
                    ctx.close()
                browser.close()
            server.should_exit = True
            thread.join(timeout=15)
    finally:
        stop_cluster(cluster, root)
    for png in sorted(OUT.glob("*.png")):
        print(f"{png.relative_to(OUT.parents[1])}: {png.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
