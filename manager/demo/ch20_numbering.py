"""R2: a draft carries a temporary number; it gets its gapless final number when it becomes final, and a
rolled-back finalization gives its number back."""

TITLE = "Final numbers are gapless (R2)"


def run(demo) -> None:
    demo.say("The admin gives invoices a final number format: INV-<year of the invoice date>-<5 digits>.\n"
             "The year comes from the invoice's own date, so the series restarts every year.")
    demo.run(demo.admin, """SELECT ledgerlock.protect('invoice', date_column => 'issued_on',
        scope_column => 'company_id', final_when => $$status in ('approved','paid')$$,
        number_column => 'number', number_format => 'INV-{YYYY}-{SEQ:5}',
        mutable_columns => '{paid,reconciled}')""", who="admin")
    demo.say("A draft inserted without a number gets a temporary one:")
    demo.run(demo.app, "INSERT INTO invoice (id, company_id, customer_id, issued_on, amount) "
                       "VALUES (21, 1, 1, '2026-03-10', 80.00), (22, 1, 2, '2026-03-11', 45.00), "
                       "(23, 1, 2, '2026-03-12', 60.00) RETURNING id, number, status")
    demo.say("Approving it makes it final; in the same transaction it takes the next number of its series.\n"
             "The number the application tried to write is replaced:")
    demo.run(demo.app, "UPDATE invoice SET status = 'approved', number = 'INV-2026-00042' WHERE id = 21 "
                       "RETURNING id, number, status")
    demo.say("Invoice 22 is approved in a transaction that is then rolled back. Inside it, it had number 2:")
    with demo.app.transaction(force_rollback=True):
        demo.run(demo.app, "UPDATE invoice SET status = 'approved' WHERE id = 22 RETURNING id, number, status")
    demo.say("...the rollback gave the number back, so the next invoice approved takes it:")
    demo.run(demo.app, "UPDATE invoice SET status = 'approved' WHERE id = 23 RETURNING id, number, status")
    demo.say("A final number is frozen like the rest of the final row:")
    demo.refused(demo.app, "UPDATE invoice SET number = 'INV-2026-00003' WHERE id = 23")
    demo.say("The proof of continuity an auditor asks for: every series, and its gaps and duplicates (none):")
    demo.run(demo.admin, "SELECT table_name, series, last_value FROM ledgerlock.number_series", who="admin")
    demo.run(demo.admin, "SELECT * FROM ledgerlock.number_gaps()", who="admin")
