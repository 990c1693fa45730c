"""R1: a finalized invoice refuses changes; its payment status may still move."""

TITLE = "Finalized rows are permanent (R1)"


def run(demo) -> None:
    demo.say("The admin protects the invoice table: an invoice is final once approved or paid;\n"
             "its payment status and reconciliation flag may still change afterwards.")
    demo.run(demo.admin, """SELECT ledgerlock.protect('invoice', date_column => 'issued_on',
        scope_column => 'company_id', final_when => $$status in ('approved','paid')$$,
        mutable_columns => '{paid,reconciled}')""", who="admin")
    demo.say("The application creates a draft and edits it freely:")
    demo.run(demo.app, "INSERT INTO invoice (id, company_id, customer_id, amount) VALUES (1, 1, 1, 100.00)")
    demo.run(demo.app, "UPDATE invoice SET amount = 120.00 WHERE id = 1")
    demo.say("It approves the invoice. From now on the invoice is final:")
    demo.run(demo.app, "UPDATE invoice SET status = 'approved' WHERE id = 1")
    demo.refused(demo.app, "UPDATE invoice SET amount = 99.00 WHERE id = 1")
    demo.refused(demo.app, "DELETE FROM invoice WHERE id = 1")
    demo.say("Recording the payment touches only a mutable column, so it goes through:")
    demo.run(demo.app, "UPDATE invoice SET paid = true WHERE id = 1")
    demo.say("Not even the table's owner can empty the table with TRUNCATE:")
    demo.refused(demo.admin, "TRUNCATE invoice CASCADE", who="owner")
