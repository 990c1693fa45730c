"""R4: referenced rows are frozen — tested as the application meets them, each refusal with its neighbour."""

from __future__ import annotations

import pytest

import ledgerlock.errors as lle
from lltest import lives_ok, major, refused


@pytest.fixture
def paid(db):
    """invoice 1 (draft) has payment 9; invoice 2 (draft) has only a void payment; invoice 3 has none."""
    db.protect_invoice()
    db.owner().execute("SELECT ledgerlock.protect_referenced('invoice', 'payment', child_condition => "
                       "$$status <> 'void'$$)")
    app = db.connect("app")
    app.execute("INSERT INTO invoice (id, company_id, amount) VALUES (1, 1, 100), (2, 1, 200), (3, 1, 300)")
    app.execute("INSERT INTO payment (id, company_id, invoice_id, amount) VALUES (9, 1, 1, 50)")
    app.execute("INSERT INTO payment (id, company_id, invoice_id, amount, status) VALUES (10, 1, 2, 20, 'void')")
    return app


def note(conn, invoice_id):
    return conn.execute("SELECT note FROM invoice WHERE id = %s", (invoice_id,)).fetchone()[0]


def test_update_of_referenced_parent_is_refused_with_ll003(paid):
    with refused("LL003", r"^invoice id=1 is referenced by payment id=9 and cannot be updated$"):
        paid.execute("UPDATE invoice SET note = 'x' WHERE id = 1")
    assert note(paid, 1) is None


def test_delete_of_referenced_parent_is_refused_with_ll003(paid):
    with pytest.raises(lle.ReferencedRowError) as info:
        paid.execute("DELETE FROM invoice WHERE id = 1")
    assert info.value.diag.message_primary == "invoice id=1 is referenced by payment id=9 and cannot be deleted"
    assert info.value.diag.message_hint.startswith("delete payment id=9 first (or change it so that it no longer "
                                                   "matches: status <> 'void')")


def test_unreferenced_parent_stays_editable_and_deletable(paid):
    lives_ok(paid, "UPDATE invoice SET note = 'x', amount = 301 WHERE id = 3")
    assert note(paid, 3) == "x"
    lives_ok(paid, "DELETE FROM invoice WHERE id = 3")
    assert paid.execute("SELECT count(*) FROM invoice WHERE id = 3").fetchone()[0] == 0


def test_child_excluded_by_the_condition_does_not_freeze(paid):
    lives_ok(paid, "UPDATE invoice SET note = 'void payment only' WHERE id = 2")
    assert note(paid, 2) == "void payment only"


def test_voiding_the_child_releases_the_parent_and_unvoiding_freezes_it_again(paid):
    paid.execute("UPDATE payment SET status = 'void' WHERE id = 9")
    lives_ok(paid, "UPDATE invoice SET note = 'released' WHERE id = 1")
    assert note(paid, 1) == "released"
    paid.execute("UPDATE payment SET status = 'posted' WHERE id = 9")
    with refused("LL003"):
        paid.execute("UPDATE invoice SET note = 'again' WHERE id = 1")


def test_mutable_columns_of_a_referenced_parent_stay_editable(paid):
    lives_ok(paid, "UPDATE invoice SET paid = true WHERE id = 1")
    assert paid.execute("SELECT paid FROM invoice WHERE id = 1").fetchone()[0] is True
    with refused("LL003", r"cannot be updated$") as info:
        paid.execute("UPDATE invoice SET paid = false, amount = 1 WHERE id = 1")
    assert "only paid, reconciled may still change" in info.value.diag.message_hint


def test_no_op_update_of_referenced_parent_is_allowed(paid):
    lives_ok(paid, "UPDATE invoice SET amount = amount WHERE id = 1")
    assert paid.execute("SELECT amount FROM invoice WHERE id = 1").fetchone()[0] == 100


def test_moving_the_child_to_another_parent_freezes_the_new_one(paid):
    paid.execute("UPDATE payment SET invoice_id = 3 WHERE id = 9")
    lives_ok(paid, "UPDATE invoice SET note = 'free again' WHERE id = 1")
    assert note(paid, 1) == "free again"
    with refused("LL003", r"^invoice id=3 is referenced by payment id=9"):
        paid.execute("UPDATE invoice SET note = 'x' WHERE id = 3")


def test_the_rule_binds_admins_and_the_owner_too(db, paid):
    for role in ("admin", "owner"):
        with refused("LL003"):
            db.connect(role).execute("DELETE FROM invoice WHERE id = 1")


def test_multi_row_update_touching_one_referenced_row_changes_nothing(paid):
    with refused("LL003"):
        paid.execute("UPDATE invoice SET note = 'bulk'")
    assert paid.execute("SELECT count(*) FROM invoice WHERE note = 'bulk'").fetchone()[0] == 0


def test_final_and_referenced_parent_reports_final_first(paid):
    """Rules compose without special cases: R1 (ll_10) fires before R4 (ll_30)."""
    paid.execute("UPDATE invoice SET status = 'approved' WHERE id = 3")
    paid.execute("INSERT INTO payment (id, company_id, invoice_id, amount) VALUES (11, 1, 3, 300)")
    paid.execute("UPDATE invoice SET paid = true WHERE id = 3")  # mutable under both rules
    with refused("LL001", r"^invoice id=3 is final"):
        paid.execute("UPDATE invoice SET note = 'x' WHERE id = 3")
    with refused("LL003", r"^invoice id=1 is referenced by payment id=9"):  # and a draft invoice meets R4
        paid.execute("UPDATE invoice SET status = 'approved' WHERE id = 1")


def test_guard_triggers_are_enable_always_with_hash_and_no_function_is_public(db, paid):
    owner = db.owner()
    rows = owner.execute(
        """SELECT t.tgrelid::regclass::text, t.tgname, t.tgenabled, obj_description(t.oid, 'pg_trigger')
           FROM pg_trigger t WHERE t.tgname LIKE 'll\\_30\\_%' ORDER BY 1, 2""").fetchall()
    assert [(r[0], r[1]) for r in rows] == [
        ("invoice", "ll_30_r1_parent_delete"), ("invoice", "ll_30_r1_parent_update"),
        ("payment", "ll_30_r1_child_insert"), ("payment", "ll_30_r1_child_update")]
    assert all(r[2] == "A" and r[3].startswith("ledgerlock:") for r in rows)
    public = owner.execute(
        """SELECT p.proname FROM pg_proc p WHERE p.pronamespace = 'ledgerlock'::regnamespace
           AND p.proname LIKE '\\_ll30%' AND has_function_privilege('public', p.oid, 'EXECUTE')""").fetchall()
    assert public == []


# -- the delete-only form, and parents that are not protected tables ------------------------------------

@pytest.fixture
def timesheets(db):
    owner = db.owner()
    owner.execute("""
        CREATE TABLE project (id integer PRIMARY KEY, name text NOT NULL);
        CREATE TABLE employee (id integer PRIMARY KEY, name text NOT NULL);
        CREATE TABLE time_entry (id integer PRIMARY KEY, project_id integer NOT NULL REFERENCES project,
                                 employee_id integer NOT NULL REFERENCES employee, hours numeric NOT NULL);
        CREATE INDEX ON time_entry (project_id);
        CREATE INDEX ON time_entry (employee_id);
        GRANT SELECT, INSERT, UPDATE, DELETE ON project, employee, time_entry TO ll_app;
        SELECT ledgerlock.protect_referenced('project', 'time_entry', operations => '{delete}');
        SELECT ledgerlock.protect_referenced('employee', 'time_entry', operations => '{delete}');
    """)
    app = db.connect("app")
    app.execute("INSERT INTO project VALUES (1, 'Apollo'), (2, 'Gemini')")
    app.execute("INSERT INTO employee VALUES (1, 'Ada'), (2, 'Bob')")
    app.execute("INSERT INTO time_entry VALUES (7, 1, 1, 3.5)")
    return app


def test_delete_only_rule_keeps_parent_editable_but_not_deletable(timesheets):
    lives_ok(timesheets, "UPDATE project SET name = 'Apollo 11' WHERE id = 1")
    with refused("LL003", r"^project id=1 is referenced by time_entry id=7 and cannot be deleted$"):
        timesheets.execute("DELETE FROM project WHERE id = 1")
    lives_ok(timesheets, "DELETE FROM project WHERE id = 2")
    assert timesheets.execute("SELECT id, name FROM project ORDER BY id").fetchall() == [(1, "Apollo 11")]


def test_employee_who_entered_time_cannot_be_deleted(timesheets):
    with refused("LL003", r"^employee id=1 is referenced by time_entry id=7 and cannot be deleted$"):
        timesheets.execute("DELETE FROM employee WHERE id = 1")
    lives_ok(timesheets, "UPDATE employee SET name = 'Ada L.' WHERE id = 1")
    lives_ok(timesheets, "DELETE FROM employee WHERE id = 2")
    assert timesheets.execute("SELECT id, name FROM employee ORDER BY id").fetchall() == [(1, "Ada L.")]


# -- finding the foreign key --------------------------------------------------------------------------

def test_missing_foreign_key_is_a_clear_error_at_call_time(db):
    with refused("42830", r"^public\.quote has no foreign key to public\.invoice$"):
        db.owner().execute("SELECT ledgerlock.protect_referenced('invoice', 'quote')")


def test_ambiguous_foreign_key_must_be_named(db):
    owner = db.owner()
    owner.execute("""CREATE TABLE transfer (id integer PRIMARY KEY, from_invoice integer REFERENCES invoice,
                                            to_invoice integer REFERENCES invoice)""")
    owner.execute("CREATE INDEX ON transfer (to_invoice)")
    with refused("42830", r"^public\.transfer has 2 foreign keys to public\.invoice: .*say which with fk_columns$"):
        owner.execute("SELECT ledgerlock.protect_referenced('invoice', 'transfer')")
    with refused("42830", r"has no foreign key to public\.invoice on \(amount\)"):
        owner.execute("SELECT ledgerlock.protect_referenced('invoice', 'transfer', '{amount}')")
    owner.execute("SELECT ledgerlock.protect_referenced('invoice', 'transfer', '{to_invoice}')")
    app = db.connect("app")
    app.execute("INSERT INTO invoice (id, company_id) VALUES (1, 1), (2, 1)")
    owner.execute("INSERT INTO transfer VALUES (1, 1, 2)")
    app.execute("UPDATE invoice SET note = 'only from' WHERE id = 1")
    # (the application may not read transfer: the refusal does not name its row, as PostgreSQL's own foreign-key
    # errors leave out what the user may not select)
    with refused("LL003", r"^invoice id=2 is referenced by a row of transfer and cannot be updated$"):
        app.execute("UPDATE invoice SET note = 'to' WHERE id = 2")
    owner.execute("GRANT SELECT ON transfer TO ll_app")
    with refused("LL003", r"^invoice id=2 is referenced by transfer id=1 and cannot be updated$"):
        app.execute("UPDATE invoice SET note = 'to' WHERE id = 2")


def test_missing_index_on_the_foreign_key_is_warned(db):
    owner = db.owner()
    owner.execute("CREATE TABLE refund (id integer PRIMARY KEY, invoice_id integer REFERENCES invoice)")
    notices: list[tuple[str, str, str]] = []  # a Diagnostic is only valid inside the handler: copy it
    owner.add_notice_handler(lambda d: notices.append((d.severity, d.message_primary, d.message_hint)))
    owner.execute("SELECT ledgerlock.protect_referenced('invoice', 'refund')")
    warned = [n for n in notices if n[0] == "WARNING"]
    assert len(warned) == 1 and "public.refund has no index leading with (invoice_id)" in warned[0][1]
    assert warned[0][2] == "CREATE INDEX ON public.refund (invoice_id)"
    notices.clear()
    owner.execute("SELECT ledgerlock.protect_referenced('invoice', 'payment')")  # indexed in the demo schema
    assert [n for n in notices if n[0] == "WARNING"] == []


def test_bad_arguments_are_refused(db):
    owner = db.owner()
    with refused("22023", r"operations"):
        owner.execute("SELECT ledgerlock.protect_referenced('invoice', 'payment', operations => '{insert}')")
    with refused("42703", r"^child_condition .* is not a valid condition on public\.payment"):
        owner.execute("SELECT ledgerlock.protect_referenced('invoice', 'payment', child_condition => 'nope = 1')")


def test_only_admins_configure_rules(db):
    with refused("42501"):
        db.connect("app").execute("SELECT ledgerlock.protect_referenced('invoice', 'payment')")
    with refused("LL005", r"^protect_referenced requires the ledgerlock_admin role"):
        db.connect("controller").execute("SELECT ledgerlock.protect_referenced('invoice', 'payment')")
    db.connect("admin").execute("SELECT ledgerlock.protect_referenced('invoice', 'payment')")


def test_composite_foreign_key(db):
    owner = db.owner()
    owner.execute("""
        CREATE TABLE ledger_doc (company_id integer, doc_no integer, memo text, PRIMARY KEY (company_id, doc_no));
        CREATE TABLE ledger_ref (id integer PRIMARY KEY, company_id integer, doc_no integer,
                                 FOREIGN KEY (company_id, doc_no) REFERENCES ledger_doc);
        CREATE INDEX ON ledger_ref (doc_no, company_id);
        GRANT SELECT, INSERT, UPDATE, DELETE ON ledger_doc, ledger_ref TO ll_app;
        SELECT ledgerlock.protect_referenced('ledger_doc', 'ledger_ref', '{doc_no,company_id}');
    """)
    app = db.connect("app")
    app.execute("INSERT INTO ledger_doc VALUES (1, 7, 'a'), (2, 7, 'b'), (1, 8, 'c')")
    app.execute("INSERT INTO ledger_ref VALUES (1, 1, 7)")
    with refused("LL003", r"^ledger_doc company_id=1 doc_no=7 is referenced by ledger_ref id=1 and cannot be updated$"):
        app.execute("UPDATE ledger_doc SET memo = 'x' WHERE company_id = 1 AND doc_no = 7")
    app.execute("UPDATE ledger_doc SET memo = 'x' WHERE (company_id, doc_no) IN ((2, 7), (1, 8))")
    assert app.execute("SELECT count(*) FROM ledger_doc WHERE memo = 'x'").fetchone()[0] == 2


# -- installation: protect() re-runs keep the guards, unprotect removes them --------------------------

def test_reprotecting_the_parent_keeps_and_reconfigures_the_guards(db, paid):
    db.protect_invoice(mutable_columns=["paid"], weaken_reason="reconciliation is frozen too")
    with refused("LL003"):
        paid.execute("UPDATE invoice SET note = 'x' WHERE id = 1")
    with refused("LL003"):  # reconciled is no longer mutable
        paid.execute("UPDATE invoice SET reconciled = true WHERE id = 1")
    lives_ok(paid, "UPDATE invoice SET paid = true WHERE id = 1")
    assert paid.execute("SELECT paid, reconciled FROM invoice WHERE id = 1").fetchone() == (True, False)


def test_reinstall_guards_restores_a_dropped_guard(db, paid):
    owner = db.owner()
    owner.execute("DROP TRIGGER ll_30_r1_child_insert ON payment")
    owner.execute("SELECT ledgerlock.reinstall_guards()")  # payment is not protected; invoice's hook restores it
    assert owner.execute("SELECT count(*) FROM pg_trigger WHERE tgname = 'll_30_r1_child_insert'").fetchone()[0] == 1


def test_unprotect_removes_the_rules_of_the_table(db, paid):
    owner = db.owner()
    owner.execute("SELECT ledgerlock.unprotect('invoice', 'migrating the invoice module')")
    assert owner.execute("SELECT count(*) FROM ledgerlock.reference_rule").fetchone()[0] == 0
    assert owner.execute("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'll\\_30%'").fetchone()[0] == 0
    assert owner.execute("SELECT count(*) FROM pg_proc WHERE proname LIKE '\\_ll30%'").fetchone()[0] == 0
    lives_ok(paid, "UPDATE invoice SET note = 'free' WHERE id = 1")
    assert note(paid, 1) == "free"


def test_unprotect_referenced_needs_admin_and_reason(db, paid):
    admin = db.connect("admin")
    with refused("LL007"):
        admin.execute("SELECT ledgerlock.unprotect_referenced('invoice', 'payment', ' ')")
    with refused("22023", r"is not protected as referenced by"):
        admin.execute("SELECT ledgerlock.unprotect_referenced('invoice', 'invoice_line', 'x')")
    admin.execute("SELECT ledgerlock.unprotect_referenced('invoice', 'payment', 'payments move to the bank module')")
    lives_ok(paid, "UPDATE invoice SET note = 'free' WHERE id = 1")
    assert note(paid, 1) == "free"
    with refused("LL001"):  # R1 is untouched
        paid.execute("UPDATE invoice SET status = 'approved' WHERE id = 1; UPDATE invoice SET note = 'y' WHERE id = 1")


# -- cascades ---------------------------------------------------------------------------------------------

def test_cascade_never_deletes_a_frozen_row(db):
    """Deleting a draft invoice cascades to its lines; a line referenced by a delivery stops it."""
    owner = db.owner()
    db.protect_invoice()
    owner.execute("""
        CREATE TABLE delivery (id integer PRIMARY KEY, invoice_line_id integer NOT NULL REFERENCES invoice_line);
        CREATE INDEX ON delivery (invoice_line_id);
        GRANT SELECT, INSERT, UPDATE, DELETE ON delivery TO ll_app;
        SELECT ledgerlock.protect_referenced('invoice_line', 'delivery');
    """)
    app = db.connect("app")
    app.execute("INSERT INTO invoice (id, company_id) VALUES (1, 1), (2, 1)")
    app.execute("INSERT INTO invoice_line (id, invoice_id, description) "
                "VALUES (11, 1, 'a'), (12, 1, 'b'), (21, 2, 'c')")
    app.execute("INSERT INTO delivery VALUES (5, 12)")
    with refused("LL003", r"^invoice_line id=12 is referenced by delivery id=5 and cannot be deleted$"):
        app.execute("DELETE FROM invoice WHERE id = 1")
    assert app.execute("SELECT count(*) FROM invoice_line WHERE invoice_id = 1").fetchone()[0] == 2
    lives_ok(app, "DELETE FROM invoice WHERE id = 2")  # nothing frozen below it: the cascade goes through
    assert app.execute("SELECT count(*) FROM invoice_line WHERE invoice_id = 2").fetchone()[0] == 0


def test_cascade_into_a_final_row_is_refused_by_r1(db):
    owner = db.owner()
    owner.execute("""
        CREATE TABLE receipt (id integer PRIMARY KEY, invoice_id integer REFERENCES invoice ON DELETE CASCADE,
                              status text NOT NULL DEFAULT 'draft', issued_on date NOT NULL DEFAULT current_date);
        CREATE INDEX ON receipt (invoice_id);
        GRANT SELECT, INSERT, UPDATE, DELETE ON receipt TO ll_app;
        SELECT ledgerlock.protect('receipt', date_column => 'issued_on', final_when => $$status = 'issued'$$);
        SELECT ledgerlock.protect_referenced('invoice', 'receipt', operations => '{delete}');
    """)
    app = db.connect("app")
    app.execute("INSERT INTO invoice (id, company_id) VALUES (1, 1)")
    app.execute("INSERT INTO receipt (id, invoice_id, status) VALUES (3, 1, 'issued')")
    with refused("LL003", r"^invoice id=1 is referenced by receipt id=3 and cannot be deleted$"):
        app.execute("DELETE FROM invoice WHERE id = 1")
    owner.execute("SELECT ledgerlock.unprotect_referenced('invoice', 'receipt', 'test the cascade alone')")
    with refused("LL001", r"^receipt id=3 is final and cannot be deleted"):  # the cascade meets R1
        app.execute("DELETE FROM invoice WHERE id = 1")


def test_no_op_update_of_a_referenced_parent_without_exempt_columns_is_allowed(timesheets, db):
    db.owner().execute("SELECT ledgerlock.protect_referenced('project', 'time_entry')")  # now update, delete
    timesheets.execute("UPDATE project SET name = name WHERE id = 1")
    with refused("LL003", r"^project id=1 is referenced by time_entry id=7 and cannot be updated$"):
        timesheets.execute("UPDATE project SET name = 'x' WHERE id = 1")


def test_a_temporal_foreign_key_is_refused_and_a_plain_one_beside_it_protects(db):
    """PostgreSQL 18's temporal foreign keys (FOREIGN KEY (..., PERIOD p)): a sale references every price row of
    its product whose period overlaps its own, which the guards, finding references by equal columns, did not
    see: a price a sale was made at was updated. Refused; a plain foreign key to the same parent protects."""
    if major(db.cluster.name) < 18:
        pytest.skip("PostgreSQL 18 added temporal foreign keys")
    owner = db.owner()
    owner.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
    owner.execute("""
        CREATE TABLE price (id int, valid_at daterange, amount int, PRIMARY KEY (id, valid_at WITHOUT OVERLAPS),
                            UNIQUE (id, amount));
        CREATE TABLE sale (id int PRIMARY KEY, price_id int, sold daterange, amount int,
                           FOREIGN KEY (price_id, PERIOD sold) REFERENCES price (id, PERIOD valid_at),
                           FOREIGN KEY (price_id, amount) REFERENCES price (id, amount));
        CREATE INDEX ON sale (price_id, sold);
        CREATE INDEX ON sale (price_id, amount);
        GRANT ALL ON price, sale TO ll_app""")
    with refused("0A000", r"^public\.sale references public\.price through sale_price_id_sold_fkey, a temporal "
                          r"foreign key \(PERIOD\): a row references the rows of public\.price whose periods "
                          r"overlap its own, which ledgerlock cannot find by equal columns$"):
        owner.execute("SELECT ledgerlock.protect_referenced('price', 'sale', '{price_id,sold}')")
    assert owner.execute("SELECT count(*) FROM ledgerlock.reference_rule").fetchone() == (0,)
    owner.execute("SELECT ledgerlock.protect_referenced('price', 'sale', '{price_id,amount}')")
    app = db.connect("app")
    app.execute("INSERT INTO price VALUES (1, '[2025-01-01,2026-01-01)', 10), (2, '[2025-01-01,2026-01-01)', 20)")
    app.execute("INSERT INTO sale VALUES (1, 1, '[2025-03-01,2025-03-02)', 10)")
    with refused("LL003", r"^price id=1 valid_at=\[2025-01-01,2026-01-01\) is referenced by sale id=1"):
        app.execute("UPDATE price SET amount = 11 WHERE id = 1")
    lives_ok(app, "UPDATE price SET amount = 21 WHERE id = 2")
