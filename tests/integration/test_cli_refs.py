"""`ledgerlock refs`: referential rules (R4) from the command line — add, list, remove — with the database's
refusals as sentences and exit codes."""

from __future__ import annotations

import json

from click.testing import CliRunner

from ledgerlock.cli import cli
from lltest import refused


def run(db, role: str, *args: str):
    return CliRunner().invoke(cli, ["--dsn", db.conninfo(role), *args])


def test_refs_add_freezes_a_referenced_row_and_remove_releases_it(db):
    res = run(db, "admin", "refs", "add", "invoice", "payment", "--when", "amount > 0")
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == ("rule #1 referenced: a row of invoice is frozen (delete, update) while a row of "
                                  "payment references it when amount > 0 (payment (invoice_id) -> invoice)")
    app = db.connect("app")
    app.execute("INSERT INTO invoice (id, company_id, issued_on) VALUES (1, 1, '2025-03-10')")
    app.execute("INSERT INTO payment (id, company_id, invoice_id, paid_on, amount) VALUES (1, 1, 1, '2025-03-11', 5)")
    with refused("LL003", r"^invoice id=1 is referenced by payment id=1"):
        app.execute("UPDATE invoice SET amount = 3 WHERE id = 1")
    listed = json.loads(run(db, "auditor", "refs", "list", "--json").stdout)
    assert [(r["kind"], r["parent"], r["child"], r["child_columns"], r["child_condition"]) for r in listed] == [
        ("referenced", "invoice", "payment", ["invoice_id"], "amount > 0")]
    assert "payment_invoice_id_fkey (invoice_id)" in run(db, "auditor", "refs", "list", "invoice").stdout
    res = run(db, "admin", "refs", "remove", "invoice", "payment", "--reason", "payments move", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == {"parent": "invoice", "child": "payment", "kind": "referenced", "removed": True}
    app.execute("UPDATE invoice SET amount = 3 WHERE id = 1")  # released
    assert run(db, "auditor", "refs", "list").stdout.strip() == "(no referential rules)"


def test_refs_add_lines_makes_lines_follow_their_header(db):
    db.protect_invoice()
    res = run(db, "admin", "refs", "add", "invoice", "invoice_line", "--lines", "--json")
    assert res.exit_code == 0, res.output
    rule = json.loads(res.stdout)
    assert (rule["kind"], rule["parent"], rule["child"]) == ("lines", "invoice", "invoice_line")
    app = db.connect("app")
    app.execute("INSERT INTO invoice (id, company_id, issued_on, status) VALUES (1, 1, '2025-03-10', 'approved')")
    with refused("LL001"):
        app.execute("INSERT INTO invoice_line (invoice_id, description) VALUES (1, 'rent')")
    res = run(db, "admin", "refs", "remove", "invoice", "invoice_line", "--lines", "--reason", "test over")
    assert res.exit_code == 0 and res.stdout.strip() == (
        "removed the lines rule between invoice and invoice_line (test over)")
    app.execute("INSERT INTO invoice_line (invoice_id, description) VALUES (1, 'rent')")


def test_refs_refusals_are_sentences_with_exit_codes(db):
    res = run(db, "controller", "refs", "add", "invoice", "payment")
    assert res.exit_code == 1 and res.stderr.splitlines()[1] == (
        "error LL005 (the database user lacks the ledgerlock capability or scope): protect_referenced requires "
        "the ledgerlock_admin role; ll_controller is not a member")
    res = run(db, "admin", "refs", "add", "payment", "invoice")
    assert res.exit_code == 1
    assert "error 42830 (database error): public.invoice has no foreign key to public.payment" in res.stderr
    res = run(db, "admin", "refs", "add", "invoice", "payment", "--fk", "company_id")
    assert res.exit_code == 1 and "public.payment has no foreign key to public.invoice on (company_id)" in res.stderr
    res = run(db, "admin", "refs", "add", "invoice", "payment", "--fk", "invoice_id,")
    assert res.exit_code == 2 and "is not a comma-separated list of column names" in res.stderr
    res = run(db, "admin", "refs", "add", "invoice", "payment", "--lines", "--when", "amount > 0")
    assert res.exit_code == 2 and "--lines takes no --when" in res.stderr
    res = run(db, "admin", "refs", "add", "invoice", "nosuch")
    assert res.exit_code == 1 and 'relation "nosuch" does not exist' in res.stderr
    res = run(db, "admin", "refs", "remove", "invoice", "payment", "--reason", "x")
    assert res.exit_code == 1 and "public.invoice is not protected as referenced by public.payment" in res.stderr
    run(db, "admin", "refs", "add", "invoice", "payment")
    res = run(db, "admin", "refs", "remove", "invoice", "payment", "--reason", " ", "--json")
    assert res.exit_code == 1 and json.loads(res.stdout)["error"]["sqlstate"] == "LL007"
    db.owner().execute("SELECT ledgerlock.grant_scope('ll_admin2', '2')")
    res = run(db, "admin2", "refs", "add", "invoice", "invoice_line", "--lines")
    assert res.exit_code == 1 and "protect_lines changes what every scope shares" in res.stderr
    assert len(json.loads(run(db, "admin", "refs", "list", "--json").stdout)) == 1
