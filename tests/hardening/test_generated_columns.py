"""Generated columns, which PostgreSQL does not compute where ledgerlock's triggers read a row: a stored one is
computed only after the BEFORE triggers, and a virtual one (PostgreSQL 18 on, the default kind there) never
for a trigger, which reads it as null. A scope read that way put every row in no scope: on PostgreSQL 18 a
table scoped by a virtual column took rows into a hard-locked month. Protect now refuses a generated date,
scope or number column and a condition over a virtual column; doctor reports a table protected before it
did; verification leaves virtual columns out of the images it compares (the capture records them as null)."""

from __future__ import annotations

import datetime
import json

import pytest
from click.testing import CliRunner

from ledgerlock.cli import cli
from lltest import lives_ok, major, refused


def kinds(db) -> list[str]:
    return ["STORED", "VIRTUAL"] if major(db.cluster.name) >= 18 else ["STORED"]


def need_virtual(db) -> None:
    if major(db.cluster.name) < 18:
        pytest.skip("PostgreSQL 18 added virtual generated columns")


def add_generated(db, kind: str) -> None:
    owner = db.owner()
    owner.execute(f"ALTER TABLE invoice ADD COLUMN branch integer GENERATED ALWAYS AS (company_id) {kind}, "
                  f"ADD COLUMN booked_on date GENERATED ALWAYS AS (issued_on) {kind}, "
                  f"ADD COLUMN ref text GENERATED ALWAYS AS ('R' || id) {kind}")


def test_a_generated_column_cannot_be_the_date_scope_or_number_of_a_row(db):
    for kind in kinds(db):
        owner = db.owner()
        owner.execute("ALTER TABLE invoice DROP COLUMN IF EXISTS branch, DROP COLUMN IF EXISTS booked_on, "
                      "DROP COLUMN IF EXISTS ref")
        add_generated(db, kind)
        said = ("a virtual generated column: PostgreSQL does not compute it for triggers, where ledgerlock's rules "
                "would read it as null") if kind == "VIRTUAL" else (
                "a generated column: PostgreSQL computes it only after the BEFORE triggers in which ledgerlock's "
                "rules read it")
        with refused("22023", rf"^scope_column: public\.invoice\.branch is {said}$") as info:
            db.protect_invoice(scope_column="branch")
        assert info.value.diag.message_hint == ("name the column branch is computed from (company_id), or make branch "
                                                "a plain column")
        with refused("22023", rf"^date_column: public\.invoice\.booked_on is {said}$") as info:
            db.protect_invoice(date_column="booked_on")
        assert "(issued_on)" in info.value.diag.message_hint
        with refused("22023", rf"^number_column: public\.invoice\.ref is {said}$") as info:
            db.protect_invoice(number_column="ref", number_format="INV-{SEQ}")
        assert info.value.diag.message_hint == "ledgerlock writes the number into it: name a plain text column"
        assert owner.execute("SELECT count(*) FROM ledgerlock.protected_table").fetchone()[0] == 0, kind

    # the permitted neighbour: the columns they are computed from, on the same table; the rules hold
    db.protect_invoice(number_column="number", number_format="INV-{SEQ}")
    db.connect("controller").execute("SELECT ledgerlock.lock_period('1', '2025-03-01', '2025-03-31', 'hard')")
    app = db.connect("app")
    with refused("LL002", r"is locked \(hard\) for scope 1: invoice id=1 cannot be inserted"):
        app.execute("INSERT INTO invoice (id, company_id, issued_on) VALUES (1, 1, '2025-03-10')")
    lives_ok(app, "INSERT INTO invoice (id, company_id, issued_on, status) VALUES (2, 1, '2025-04-10', 'approved')")
    assert app.execute("SELECT number, branch, booked_on, ref FROM invoice").fetchall() == [
        ("INV-1", 1, datetime.date(2025, 4, 10), "R2")]


def test_a_virtual_scope_column_took_rows_into_a_hard_locked_month_and_doctor_reports_one(db):
    """What the refusal prevents, as it was: a table scoped by a virtual column (protected by a release that
    took it, here put in place without the DDL guard) lets the application into a hard-locked month; doctor
    says so, critical; scoped by the column it is computed from again, the lock holds."""
    need_virtual(db)
    owner = db.owner()
    owner.execute("ALTER TABLE invoice ADD COLUMN branch integer")
    db.protect_invoice(scope_column="branch")
    assert owner.execute("SELECT count(*) FROM pg_event_trigger").fetchone()[0] == 0  # no DDL guard here
    owner.execute("ALTER TABLE invoice DROP COLUMN branch")
    owner.execute("ALTER TABLE invoice ADD COLUMN branch integer GENERATED ALWAYS AS (company_id) VIRTUAL")
    db.connect("controller").execute("SELECT ledgerlock.lock_period('1', '2025-03-01', '2025-03-31', 'hard')")
    app = db.connect("app")
    app.execute("INSERT INTO invoice (id, company_id, issued_on) VALUES (1, 1, '2025-03-10')")
    assert app.execute("SELECT branch FROM invoice WHERE id = 1").fetchone() == (1,)

    res = CliRunner().invoke(cli, ["--dsn", db.conninfo(), "doctor", "--json"])
    assert res.exit_code == 3, res.output
    [f] = [f for f in json.loads(res.stdout) if f["object"] == "public.invoice" and f["check"] == "table"]
    assert f["severity"] == "critical"
    assert f["finding"] == ("public.invoice.branch is a virtual generated column: PostgreSQL does not compute it for "
                            "triggers, where ledgerlock's rules would read it as null (read by the scope column of "
                            "public.invoice)")
    assert "no lock holds for the row" in f["why"]
    assert f["fix"].startswith("make public.invoice.branch a plain column, or scope by the column it is computed from")

    owner.execute("DELETE FROM invoice")
    db.protect_invoice(weaken_reason="scope by the company itself")
    with refused("LL002", r"is locked \(hard\) for scope 1: invoice id=1 cannot be inserted"):
        app.execute("INSERT INTO invoice (id, company_id, issued_on) VALUES (1, 1, '2025-03-10')")
    res = CliRunner().invoke(cli, ["--dsn", db.conninfo(), "doctor", "--json"])
    assert not [f for f in json.loads(res.stdout) if f["object"] == "public.invoice" and f["check"] == "table"]


def test_a_stored_generated_scope_column_protected_before_fails_closed_and_doctor_warns(db):
    """A stored generated scope column, which protect took before it refused one: the period checks (AFTER)
    see it, but the numbering and skip mode read the scope BEFORE PostgreSQL computes it. Both fail closed, and
    doctor says why (a warning); scoped by the column it is computed from, both work."""
    owner = db.owner()
    owner.execute("ALTER TABLE invoice ADD COLUMN branch integer")
    db.protect_invoice(scope_column="branch", number_column="number", number_format="INV-{SCOPE}-{SEQ:3}")
    owner.execute("ALTER TABLE invoice DROP COLUMN branch")  # no DDL guard here: as a release before put it
    owner.execute("ALTER TABLE invoice ADD COLUMN branch integer GENERATED ALWAYS AS (company_id) STORED")
    db.connect("controller").execute("SELECT ledgerlock.lock_period('1', '2025-03-01', '2025-03-31', 'hard')")
    app = db.connect("app")
    with refused("LL009", r"^invoice id=1 cannot get a final number: its branch is empty, and the number format "
                          r"needs the scope"):
        app.execute("INSERT INTO invoice (id, company_id, issued_on, status) VALUES (1, 1, '2025-04-10', 'approved')")
    app.execute("SET ledgerlock.on_locked = 'skip'")
    with refused("LL002", r"is locked \(hard\) for scope 1: invoice id=9 cannot be inserted"):
        app.execute("INSERT INTO invoice (id, company_id, issued_on) VALUES (9, 1, '2025-03-10')")
    app.execute("RESET ledgerlock.on_locked")

    res = CliRunner().invoke(cli, ["--dsn", db.conninfo(), "doctor", "--json"])
    [f] = [f for f in json.loads(res.stdout) if f["object"] == "public.invoice" and f["check"] == "table"]
    assert (f["severity"], f["finding"]) == ("warning", (
        "public.invoice.branch is a generated column: PostgreSQL computes it only after the BEFORE triggers in "
        "which ledgerlock's rules read it (the scope column of public.invoice)"))
    assert f["fix"].startswith("scope by the column it is computed from")

    # the permitted neighbour: scoped by the column it is computed from, numbered and skipped as documented
    db.protect_invoice(number_column="number", number_format="INV-{SCOPE}-{SEQ:3}",
                       weaken_reason="scope by the company itself")
    lives_ok(app, "INSERT INTO invoice (id, company_id, issued_on, status) VALUES (1, 1, '2025-04-10', 'approved')")
    assert app.execute("SELECT number FROM invoice WHERE id = 1").fetchone() == ("INV-1-001",)
    app.execute("SET ledgerlock.on_locked = 'skip'")
    lives_ok(app, "INSERT INTO invoice (id, company_id, issued_on) VALUES (9, 1, '2025-03-10')")
    assert app.execute("SELECT count(*) FROM invoice WHERE id = 9").fetchone() == (0,)
    res = CliRunner().invoke(cli, ["--dsn", db.conninfo(), "doctor", "--json"])
    assert not [f for f in json.loads(res.stdout) if f["object"] == "public.invoice" and f["check"] == "table"]


def test_a_condition_may_read_a_stored_generated_column_but_not_a_virtual_one(db):
    owner = db.owner()
    owner.execute("ALTER TABLE invoice ADD COLUMN closed boolean "
                  "GENERATED ALWAYS AS (status IN ('approved', 'paid')) STORED")
    if major(db.cluster.name) >= 18:
        owner.execute("ALTER TABLE invoice ADD COLUMN closed_v boolean "
                      "GENERATED ALWAYS AS (status IN ('approved', 'paid')) VIRTUAL")
        with refused("22023", r"^final_when 'closed_v and amount > 0' reads closed_v, a virtual generated column, "
                              r"which PostgreSQL does not compute for the triggers that evaluate the condition$"):
            db.protect_invoice(final_when="closed_v and amount > 0")
        assert owner.execute("SELECT count(*) FROM ledgerlock.protected_table").fetchone()[0] == 0
    db.protect_invoice(final_when="closed")
    app = db.connect("app")
    app.execute("INSERT INTO invoice (id, company_id, status, amount) VALUES (1, 1, 'approved', 3), "
                "(2, 1, 'draft', 3)")
    with refused("LL001", r"^invoice id=1 is final and cannot be updated"):
        app.execute("UPDATE invoice SET amount = 4 WHERE id = 1")
    lives_ok(app, "UPDATE invoice SET amount = 4 WHERE id = 2")


def test_verification_leaves_virtual_columns_out_and_still_sees_the_columns_they_read(db):
    """The capture records a virtual column as null (PostgreSQL does not compute it for triggers) and the table
    reads its value: every row was reported as changed behind the trail. The images are compared without
    virtual columns; a change behind the trail of the column one reads is still reported, by that column."""
    need_virtual(db)
    owner = db.owner()
    owner.execute("ALTER TABLE invoice ADD COLUMN amount_cents numeric GENERATED ALWAYS AS (amount * 100) VIRTUAL, "
                  "ADD COLUMN doubled numeric GENERATED ALWAYS AS (amount * 2) STORED")
    db.protect_invoice()
    app = db.connect("app")
    app.execute("INSERT INTO invoice (id, company_id, amount) VALUES (1, 1, 3), (2, 1, 5)")
    app.execute("UPDATE invoice SET amount = 4, status = 'approved' WHERE id = 1")
    owner.execute("ALTER TABLE invoice ADD COLUMN amount_tax numeric GENERATED ALWAYS AS (amount / 5) VIRTUAL")
    auditor = db.connect("auditor")
    assert auditor.execute("SELECT ok, problems FROM ledgerlock.verify_audit()").fetchall() == [(True, 0)]
    assert auditor.execute("SELECT new_row -> 'amount_cents' FROM ledgerlock.audit_log WHERE operation = 'UPDATE'"
                           ).fetchall() == [(None,)]
    assert CliRunner().invoke(cli, ["--dsn", db.conninfo("auditor"), "audit", "verify"]).exit_code == 0

    owner.execute("ALTER TABLE invoice DISABLE TRIGGER USER")
    owner.execute("UPDATE invoice SET amount = 40 WHERE id = 1")
    owner.execute("ALTER TABLE invoice ENABLE TRIGGER USER")
    found = auditor.execute("SELECT code, row_key, column_name, problem FROM ledgerlock.audit_discrepancies()"
                            ).fetchall()
    assert sorted((c, str(k), col) for c, k, col, _ in found) == [("row_changed", "{'id': 1}", "amount"),
                                                                   ("row_changed", "{'id': 1}", "doubled")]
    assert any(p.startswith("invoice id=1: amount is 40.00 in the table, 4.00 in event seq ") for *_, p in found)
    assert CliRunner().invoke(cli, ["--dsn", db.conninfo("auditor"), "audit", "verify"]).exit_code != 0

    # a stored generated column's new expression rewrites every row behind the trail: each is reported
    owner.execute("ALTER TABLE invoice ALTER COLUMN doubled SET EXPRESSION AS (amount * 3)")
    found = auditor.execute("SELECT row_key, column_name FROM ledgerlock.audit_discrepancies()").fetchall()
    assert sorted(found, key=str) == sorted([({"id": 1}, "amount"), ({"id": 1}, "doubled"), ({"id": 2}, "doubled")],
                                            key=str)


def test_the_ddl_guard_refuses_a_new_expression_for_a_virtual_column_of_a_protected_table(db):
    """A virtual column stores nothing: SET EXPRESSION (which PostgreSQL allows on a table without check
    constraints) rewrites nothing, so the guard's rewrite check never fired, and every row, final ones included,
    reads another value, with no write and no audit event (verification proves the stored columns, not the
    expression). The owning application did it unrefused; the guard now compares the expressions before and
    after the ALTER TABLE, kept where it cannot reach them."""
    need_virtual(db)
    owner = db.owner()
    for table in ("bill", "draft_bill"):
        owner.execute(f"CREATE TABLE {table} (id integer PRIMARY KEY, issued_on date NOT NULL, status text, "
                      f"amount numeric, gross numeric GENERATED ALWAYS AS (amount * 1.2) VIRTUAL); "
                      f"ALTER TABLE {table} OWNER TO ll_app")
    owner.execute("SELECT ledgerlock.protect('bill', 'issued_on', final_when => $$status = 'final'$$); "
                  "SELECT ledgerlock.install_ddl_guard()")
    app = db.connect("app")
    app.execute("INSERT INTO bill VALUES (1, '2026-01-05', 'final', 10)")
    with refused("LL008", r"^changing the expression of virtual generated column public\.bill\.gross "
                          r"\(\(amount \* 1\.2\) to \(amount \* 1\.5\)\) is refused: the column stores nothing: every "
                          r"row of protected table public\.bill would read another value, with no write and no audit "
                          r"event$"):
        app.execute("ALTER TABLE bill ALTER COLUMN gross SET EXPRESSION AS (amount * 1.5)")
    assert app.execute("SELECT gross FROM bill WHERE id = 1").fetchone()[0] == 12
    with refused("42501"):  # what the guard compares with is out of the owner's reach
        app.execute("DELETE FROM ledgerlock.ddl_snapshot")
    # the neighbours: a virtual column added to the protected table, a new expression on a table not protected
    app.execute("ALTER TABLE bill ADD COLUMN net numeric GENERATED ALWAYS AS (amount) VIRTUAL")
    app.execute("ALTER TABLE draft_bill ALTER COLUMN gross SET EXPRESSION AS (amount * 1.5)")
    assert owner.execute("SELECT count(*) FROM ledgerlock.ddl_snapshot").fetchone() == (0,)
    assert db.connect("auditor").execute("SELECT ok, problems FROM ledgerlock.verify_audit()").fetchone() == (True, 0)


def test_doctor_reports_a_final_when_that_reads_a_virtual_column(db):
    """Protected by a release that took it (put in place here without the DDL guard): the column final_when
    reads becomes virtual, and the guards are reinstalled over it."""
    need_virtual(db)
    owner = db.owner()
    owner.execute("ALTER TABLE invoice ADD COLUMN closed boolean")
    db.protect_invoice(final_when="closed and amount > 0")
    owner.execute("ALTER TABLE invoice DROP COLUMN closed CASCADE")
    owner.execute("ALTER TABLE invoice ADD COLUMN closed boolean "
                  "GENERATED ALWAYS AS (status IN ('approved', 'paid')) VIRTUAL")
    db.connect("admin").execute("SELECT ledgerlock.reinstall_guards()")
    res = CliRunner().invoke(cli, ["--dsn", db.conninfo(), "doctor", "--json"])
    assert res.exit_code == 3, res.output
    [f] = [f for f in json.loads(res.stdout) if f["object"] == "public.invoice" and f["check"] == "table"]
    assert f["finding"].startswith("public.invoice.closed is a virtual generated column")
    assert f["finding"].endswith("(read by the final_when of public.invoice)")
    assert f["fix"] == ("make public.invoice.closed a STORED generated column, or write the final_when over the "
                        "columns it is computed from, then protect again")
