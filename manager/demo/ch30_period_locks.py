"""R3: last month is locked; a backdated write is refused, a controller overrides with a reason, the month is
marked reviewed (hard), unlocked with a reason, relocked — and the history shows it all."""

TITLE = "Locked periods are read-only (R3)"

LAST_MONTH = ("date_trunc('month', current_date - interval '1 month')::date",
              "(date_trunc('month', current_date) - interval '1 day')::date")
MID_LAST_MONTH = "(date_trunc('month', current_date - interval '1 month')::date + 14)"


def run(demo) -> None:
    admin, app = demo.admin, demo.app
    demo.say("Month-end: the controller locks last month for company 1 (soft: still open to audited overrides).")
    rows = demo.run(admin, f"SELECT ledgerlock.lock_period('1', {LAST_MONTH[0]}, {LAST_MONTH[1]}, "
                           "note => 'month-end close') AS lock_id", who="controller")
    lock_id = rows[0][0]
    demo.say("A form can warn while the user types a date, and every report can print the lock line:")
    demo.run(app, f"SELECT message FROM ledgerlock.period_lock_at('1', {MID_LAST_MONTH})")
    demo.run(app, "SELECT 'Books locked through ' || ledgerlock.locked_through('1') AS report_line")
    demo.say("A backdated invoice is refused — for every client of the database, not only the ERP:")
    demo.refused(app, f"INSERT INTO invoice (id, company_id, customer_id, issued_on, amount) "
                      f"VALUES (3100, 1, 1, {MID_LAST_MONTH}, 40.00)")
    demo.say("Company 2's books are not locked, and today's invoices of company 1 go through:")
    demo.run(app, f"INSERT INTO invoice (id, company_id, customer_id, issued_on, amount) "
                  f"VALUES (3101, 2, 3, {MID_LAST_MONTH}, 70.00), (3102, 1, 1, current_date, 55.00)")

    demo.say("A controller posts the late supplier credit anyway, with an override: one transaction, a reason,\n"
             "and every row it touches audited:")
    controller = demo.people["controller"]
    with controller.transaction():
        demo.run(controller, "SELECT ledgerlock.begin_override('credit note received after close, approved by CFO')",
                 who="controller")
        demo.run(controller, f"INSERT INTO invoice (id, company_id, customer_id, issued_on, amount, note) "
                             f"VALUES (3103, 1, 1, {MID_LAST_MONTH}, -40.00, 'credit note')", who="controller")

    demo.say("The auditor has reviewed the month: the lock becomes hard. Hard locks admit no override:")
    demo.run(admin, f"SELECT ledgerlock.upgrade_lock({lock_id}, reviewer => 'external auditor')", who="controller")
    with controller.transaction():
        controller.execute("SELECT ledgerlock.begin_override('one more fix')")
        demo.refused(controller, "UPDATE invoice SET amount = -45.00 WHERE id = 3103", who="controller")
    demo.say("Recording that a locked invoice was paid changes a mutable column only, so it goes through:")
    demo.run(app, "UPDATE invoice SET paid = true WHERE id = 3103")

    demo.say("Only an admin can reopen a hard lock, and only with a reason; the lock row stays, marked unlocked:")
    demo.refused(admin, f"SELECT ledgerlock.unlock_period({lock_id}, '  ')", who="admin")
    demo.run(admin, f"SELECT ledgerlock.unlock_period({lock_id}, 'restatement requested by the auditor')",
             who="admin")
    demo.run(app, "UPDATE invoice SET amount = -45.00 WHERE id = 3103")
    demo.run(admin, f"SELECT ledgerlock.relock({lock_id}) AS new_lock_id", who="controller")
    demo.run(admin, "SELECT id, from_date, to_date, level, status, reviewer, unlock_reason "
                    "FROM ledgerlock.period_locks WHERE scope = '1' ORDER BY id", who="auditor")

    demo.say("An import runs in skip mode: rows dated in a locked window are skipped and listed, not errors:")
    with app.transaction():
        app.execute("SET LOCAL ledgerlock.on_locked = 'skip'")
        app.execute("SET LOCAL ledgerlock.context = 'bank import 2 (recurring job)'")
        demo.run(app, f"INSERT INTO invoice (id, company_id, customer_id, issued_on, amount) "
                      f"VALUES (3104, 1, 1, {MID_LAST_MONTH}, 10.00), (3105, 1, 1, current_date, 12.00)")
    demo.run(admin, "SELECT table_name, row_key, lock_id, context FROM ledgerlock.skipped_writes ORDER BY id",
             who="auditor")

    demo.say("The lock history, append-only:")
    demo.run(admin, "SELECT id, kind, lock_id, db_user, reason FROM ledgerlock.lock_history "
                    "WHERE scope = '1' ORDER BY id", who="auditor")
