"""R4: an invoice with a payment refuses an edit, a final invoice refuses a new line, and `why` explains."""

TITLE = "Referenced rows are frozen, lines follow their header (R4)"


def _why(demo, table: str, key: str) -> None:
    demo.run(demo.app, "SELECT depth, row_label, rule, summary, way_back "
                       f"FROM ledgerlock.why_locked('{table}', '{key}')")


def run(demo) -> None:
    demo.say("The admin freezes an invoice while a payment (not voided) references it, and makes invoice\n"
             "lines follow their invoice:")
    demo.run(demo.admin, """SELECT ledgerlock.protect_referenced('invoice', 'payment',
        child_condition => $$status <> 'void'$$)""", who="admin")
    demo.run(demo.admin, "SELECT ledgerlock.protect_lines('invoice_line', 'invoice')", who="admin")

    demo.say("A draft invoice with a line gets a payment; from then on it cannot be edited or deleted:")
    demo.run(demo.app, "INSERT INTO invoice (id, company_id, customer_id, amount) VALUES (2, 1, 2, 80.00)")
    demo.run(demo.app, "INSERT INTO invoice_line (invoice_id, description, unit_price) VALUES (2, 'Consulting', 80)")
    demo.run(demo.app, "INSERT INTO payment (id, company_id, invoice_id, amount) VALUES (9, 1, 2, 80.00)")
    demo.refused(demo.app, "UPDATE invoice SET amount = 60.00 WHERE id = 2")
    demo.refused(demo.app, "DELETE FROM invoice WHERE id = 2")
    demo.say("Its lines follow it:")
    demo.refused(demo.app, "UPDATE invoice_line SET unit_price = 60 WHERE invoice_id = 2")
    demo.say("Recording that it is paid touches only a mutable column:")
    demo.run(demo.app, "UPDATE invoice SET paid = true WHERE id = 2")

    demo.say("Invoice 1 is final (chapter 1): it refuses a new line.")
    demo.refused(demo.app, "INSERT INTO invoice_line (invoice_id, description, unit_price) VALUES (1, 'Extra', 10)")

    demo.say("`ledgerlock why` (here its SQL form) explains both, with the way back:")
    _why(demo, "invoice", "2")
    _why(demo, "invoice", "1")

    demo.say("The way back goes through the chain: void the payment, and the invoice is a draft again.")
    demo.run(demo.app, "UPDATE payment SET status = 'void' WHERE id = 9")
    demo.run(demo.app, "UPDATE invoice SET amount = 60.00 WHERE id = 2")
