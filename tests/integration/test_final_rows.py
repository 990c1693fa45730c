"""R1: finalized rows are permanent — tested as the application meets them."""

from __future__ import annotations

import pytest

import ledgerlock.errors as lle
from lltest import guard_calls, lives_ok, refused, trigger_def


@pytest.fixture
def invoices(db):
    db.protect_invoice()
    app = db.connect("app")
    app.execute("INSERT INTO invoice (id, company_id, amount) VALUES (1, 1, 100), (2, 1, 200)")
    app.execute("UPDATE invoice SET status = 'approved' WHERE id = 1")
    return app


def amount(conn, invoice_id):
    return conn.execute("SELECT amount FROM invoice WHERE id = %s", (invoice_id,)).fetchone()[0]


def test_update_of_final_row_is_refused_with_ll001(invoices):
    with refused("LL001", r"^invoice id=1 is final and cannot be updated; issue a correcting document instead$"):
        invoices.execute("UPDATE invoice SET amount = 1 WHERE id = 1")
    assert amount(invoices, 1) == 100


def test_delete_of_final_row_is_refused_with_ll001(invoices):
    message = r"^invoice id=1 is final and cannot be deleted; issue a correcting document instead$"
    with refused("LL001", message) as info:
        invoices.execute("DELETE FROM invoice WHERE id = 1")
    assert info.value.diag.message_hint is None  # no empty "HINT:" line when there is nothing to add
    assert invoices.execute("SELECT count(*) FROM invoice WHERE id = 1").fetchone()[0] == 1


def test_application_catches_finalized_row_error(invoices):
    with pytest.raises(lle.FinalizedRowError) as info:
        invoices.execute("UPDATE invoice SET note = 'x' WHERE id = 1")
    assert info.value.sqlstate == "LL001"
    assert "paid, reconciled" in info.value.diag.message_hint


def test_draft_row_stays_editable_and_deletable(invoices):
    lives_ok(invoices, "UPDATE invoice SET amount = 250, note = 'revised' WHERE id = 2")
    assert amount(invoices, 2) == 250
    lives_ok(invoices, "DELETE FROM invoice WHERE id = 2")
    assert invoices.execute("SELECT count(*) FROM invoice WHERE id = 2").fetchone()[0] == 0


def test_mutable_columns_stay_editable_on_final_row(invoices):
    lives_ok(invoices, "UPDATE invoice SET paid = true, reconciled = true WHERE id = 1")
    assert invoices.execute("SELECT paid AND reconciled FROM invoice WHERE id = 1").fetchone()[0]


def test_mutable_and_protected_column_together_is_refused(invoices):
    with refused("LL001"):
        invoices.execute("UPDATE invoice SET paid = true, amount = 5 WHERE id = 1")
    assert invoices.execute("SELECT paid FROM invoice WHERE id = 1").fetchone()[0] is False


def test_status_change_out_of_final_is_refused(invoices):
    """There is no unlock: moving a final row back to draft is an update like any other."""
    with refused("LL001"):
        invoices.execute("UPDATE invoice SET status = 'draft' WHERE id = 1")


def test_no_op_update_of_final_row_is_allowed(invoices):
    lives_ok(invoices, "UPDATE invoice SET amount = amount WHERE id = 1")
    assert invoices.execute("SELECT status, amount FROM invoice WHERE id = 1").fetchone() == ("approved", 100)


def test_insert_of_already_final_row_is_allowed_and_then_frozen(db):
    db.protect_invoice()
    app = db.connect("app")
    lives_ok(app, "INSERT INTO invoice (id, company_id, status, amount) VALUES (9, 1, 'paid', 10)")
    assert app.execute("SELECT status, amount FROM invoice WHERE id = 9").fetchone() == ("paid", 10)
    with refused("LL001"):
        app.execute("UPDATE invoice SET amount = 11 WHERE id = 9")


def test_multi_row_update_touching_one_final_row_changes_nothing(invoices):
    with refused("LL001"):
        invoices.execute("UPDATE invoice SET note = 'bulk'")
    assert invoices.execute("SELECT count(*) FROM invoice WHERE note = 'bulk'").fetchone()[0] == 0


def test_final_rows_bind_admins_and_the_owner_too(db, invoices):
    for role in ("admin", "owner"):
        with refused("LL001"):
            db.connect(role).execute("UPDATE invoice SET amount = 1 WHERE id = 1")


def test_truncate_of_protected_table_is_refused(db, invoices):
    owner = db.owner()
    with refused("LL008", r"TRUNCATE of public\.invoice is refused"):
        owner.execute("TRUNCATE invoice CASCADE")
    with refused("42501"):  # the application has no TRUNCATE privilege at all
        invoices.execute("TRUNCATE invoice")
    assert owner.execute("SELECT count(*) FROM invoice").fetchone()[0] == 2
    owner.execute("INSERT INTO quote (company_id) VALUES (1)")
    lives_ok(owner, "TRUNCATE quote")  # the unprotected neighbour truncates
    assert owner.execute("SELECT count(*) FROM quote").fetchone()[0] == 0


def test_application_cannot_disable_or_drop_guard_triggers(invoices):
    with refused("42501"):
        invoices.execute("ALTER TABLE invoice DISABLE TRIGGER ll_10_final_update")
    with refused("42501"):
        invoices.execute("DROP TRIGGER ll_10_final_update ON invoice")
    with refused("LL001"):
        invoices.execute("UPDATE invoice SET amount = 1 WHERE id = 1")


def test_session_replication_role_does_not_silence_guards(db, invoices):
    owner = db.owner()  # only a superuser may set it at all; the guards are ENABLE ALWAYS
    owner.execute("SET session_replication_role = replica")
    with refused("LL001"):
        owner.execute("UPDATE invoice SET amount = 1 WHERE id = 1")
    with refused("42501"):
        invoices.execute("SET session_replication_role = replica")


def test_guard_triggers_are_enable_always_and_carry_a_definition_hash(db, invoices):
    rows = db.owner().execute(
        """SELECT t.tgname, t.tgenabled, obj_description(t.oid, 'pg_trigger')
           FROM pg_trigger t WHERE t.tgrelid = 'invoice'::regclass AND t.tgname LIKE 'll\\_%' ORDER BY 1"""
    ).fetchall()
    names = [r[0] for r in rows]
    assert {"ll_00_truncate", "ll_10_final_update", "ll_10_final_delete"} <= set(names)
    assert all(r[1] == "A" for r in rows)
    assert all(r[2].startswith("ledgerlock:") and len(r[2]) == len("ledgerlock:") + 32 for r in rows)


def test_generated_columns_do_not_break_the_guard(db):
    owner = db.owner()
    owner.execute("ALTER TABLE invoice ADD COLUMN amount_cents bigint GENERATED ALWAYS AS (amount * 100) STORED")
    db.protect_invoice()
    app = db.connect("app")
    app.execute("INSERT INTO invoice (id, company_id, status, amount) VALUES (1, 1, 'approved', 3)")
    lives_ok(app, "UPDATE invoice SET paid = true WHERE id = 1")
    assert app.execute("SELECT paid, amount_cents FROM invoice WHERE id = 1").fetchone() == (True, 300)
    with refused("LL001"):
        app.execute("UPDATE invoice SET amount = 4 WHERE id = 1")


def test_message_names_the_final_number_when_the_table_has_one(db):
    db.protect_invoice(number_column="number")
    app = db.connect("app")
    owner = db.owner()
    # a number set by the owner outside numbering (numbering rules are tested with R2)
    owner.execute("INSERT INTO invoice (id, company_id, number, status) VALUES (5, 1, 'X-7', 'draft')")
    owner.execute("UPDATE invoice SET status = 'approved' WHERE id = 5")
    number = owner.execute("SELECT number FROM invoice WHERE id = 5").fetchone()[0]
    with refused("LL001", rf"^invoice id=5 \({number}\) is final"):
        app.execute("DELETE FROM invoice WHERE id = 5")


def test_a_mutable_only_update_of_a_final_row_does_not_call_the_guard(db):
    """The WHEN clause tells a mutable-only update of a final row apart in C: guard_final_row is not called.
    A column added after protect still counts as a change, so the guard is called and refuses."""
    db.owner().execute(f"ALTER DATABASE {db.name} SET track_functions = 'pl'")
    db.protect_invoice()
    app = db.connect("app", autocommit=False)
    app.execute("INSERT INTO invoice (id, company_id, amount, status) VALUES (1, 1, 100, 'approved')")
    app.commit()
    lives_ok(app, "UPDATE invoice SET paid = true, reconciled = true WHERE id = 1")
    assert guard_calls(app, "guard_final_row") == 0
    app.commit()
    db.owner().execute("ALTER TABLE invoice ADD COLUMN memo text")
    with refused("LL001", r"^invoice id=1 is final and cannot be updated"):
        app.execute("UPDATE invoice SET paid = false, memo = 'x' WHERE id = 1")
    app.rollback()
    assert app.execute("SELECT paid, reconciled, memo FROM invoice WHERE id = 1").fetchone() == (True, True, None)


def comparisons(conn):
    """R1's comparison functions (_ll10_x<key>_changed) and the tables whose triggers' WHEN clauses call each."""
    return conn.execute(
        """SELECT p.proname, array_agg(DISTINCT t.tgrelid::regclass::text ORDER BY t.tgrelid::regclass::text)
                                 FILTER (WHERE t.oid IS NOT NULL)
           FROM pg_proc p
           LEFT JOIN pg_depend d ON d.refclassid = 'pg_proc'::regclass AND d.refobjid = p.oid
                                AND d.classid = 'pg_trigger'::regclass
           LEFT JOIN pg_trigger t ON t.oid = d.objid
           WHERE p.pronamespace = 'ledgerlock'::regnamespace AND p.proname LIKE '\\_ll10\\_x%'
           GROUP BY 1 ORDER BY 1""").fetchall()


def test_exempt_columns_of_any_type_are_compared_exactly_whatever_the_writers_search_path(db):
    """The comparison puts the exempt columns back by assignment, so columns of any type (jsonb, arrays, enums,
    a float's -0) are told apart exactly and never call the guard for a mutable-only update. It pins no
    search_path (a SET clause costs every call), so a writer whose search_path puts its own `*=` operator and
    record_image_eq first must not make a change of a protected column look like none."""
    owner = db.owner()
    owner.execute(f"ALTER DATABASE {db.name} SET track_functions = 'pl'")
    owner.execute(
        "CREATE TYPE stage AS ENUM ('open', 'sent', 'signed');"
        "CREATE TABLE deal (id int PRIMARY KEY, company_id int NOT NULL, signed_on date NOT NULL DEFAULT "
        "'2026-03-01', status text NOT NULL DEFAULT 'draft', amount numeric NOT NULL, meta jsonb, "
        "weight float8, tags text[], stage stage);"
        "GRANT SELECT, INSERT, UPDATE ON deal TO ll_app;"
        "CREATE SCHEMA evil; GRANT USAGE ON SCHEMA evil TO PUBLIC;"
        "CREATE FUNCTION evil.same(a record, b record) RETURNS boolean LANGUAGE plpgsql AS 'BEGIN RETURN true; END';"
        "CREATE FUNCTION evil.record_image_eq(a record, b record) RETURNS boolean LANGUAGE plpgsql "
        "AS 'BEGIN RETURN true; END';"
        "CREATE OPERATOR evil.*= (LEFTARG = record, RIGHTARG = record, FUNCTION = evil.same);"
        "GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA evil TO PUBLIC")
    owner.execute("SELECT ledgerlock.protect('deal', date_column => 'signed_on', scope_column => 'company_id', "
                  "final_when => $$status = 'signed'$$, mutable_columns => '{meta,weight,tags,stage}')")
    assert "ledgerlock._ll10_x" in trigger_def(owner, "deal", "ll_10_final_update")
    app = db.connect("app", autocommit=False)
    app.execute("INSERT INTO deal (id, company_id, amount, status, meta, weight, tags, stage) "
                "VALUES (1, 1, 100, 'signed', '{\"a\": 1}', 0.0, '{x}', 'signed')")
    app.commit()
    app.execute("SET search_path = evil, public, pg_catalog")
    for change in ("""meta = '{"b": 2, "a": 1}'""", "weight = '-0'", "tags = '{x,y}'", "stage = 'sent'",
                   "meta = NULL, weight = NULL, tags = NULL, stage = NULL"):
        lives_ok(app, f"UPDATE deal SET {change} WHERE id = 1")
    assert guard_calls(app, "guard_final_row") == 0
    app.commit()
    assert app.execute("SELECT weight, meta, tags, stage::text FROM deal").fetchone() == (None, None, None, None)
    for change in ("amount = 101", "amount = 100.0", "meta = '{}', signed_on = '2026-03-02'"):
        with refused("LL001", r"^deal id=1 is final and cannot be updated"):
            app.execute(f"UPDATE deal SET {change} WHERE id = 1")
        app.rollback()
        app.execute("SET search_path = evil, public, pg_catalog")
    kept = app.execute("SELECT amount::text, to_char(signed_on, 'YYYY-MM-DD') FROM deal").fetchone()
    assert kept == ("100", "2026-03-01")


def test_the_exempt_column_test_is_one_function_per_set_of_columns_the_writer_may_call(db):
    """The mutable-only test of the update guards' WHEN clauses (R1, R3, R4) is a call of a comparison per set of
    exempt columns, which PostgreSQL prepares in every statement for far less than the expression. Tables with
    the same set share it; whoever writes a protected table may call it (a WHEN clause runs with the writer's
    rights) and nothing else; it goes with the last table that uses it, fingerprint included."""
    owner = db.owner()
    owner.execute("CREATE TABLE offer (LIKE invoice INCLUDING ALL); CREATE TABLE bill (LIKE invoice INCLUDING ALL);"
                  "GRANT SELECT, INSERT, UPDATE, DELETE ON offer, bill TO ll_app")
    db.protect_invoice()
    owner.execute(
        "SELECT ledgerlock.protect('offer', date_column => 'issued_on', scope_column => 'company_id', "
        "final_when => $$status in ('approved','paid')$$, mutable_columns => '{reconciled,paid}')")
    owner.execute("SELECT ledgerlock.protect('bill', date_column => 'issued_on', scope_column => 'company_id', "
                  "final_when => $$status in ('approved','paid')$$, mutable_columns => '{paid}')")
    found = comparisons(owner)
    assert sorted(tables for _, tables in found) == [["bill"], ["invoice", "offer"]], found
    shared = next(name for name, tables in found if tables == ["invoice", "offer"])
    for tbl, trigger in (("invoice", "ll_10_final_update"), ("invoice", "ll_20_period_update")):
        assert f"ledgerlock.{shared}(old.*, new.*)" in trigger_def(owner, tbl, trigger)
    # the writer's rights: the application calls it through the WHEN clause, and may call it directly
    app = db.connect("app")
    app.execute("INSERT INTO offer (id, company_id, amount, status) VALUES (1, 1, 10, 'approved')")
    lives_ok(app, "UPDATE offer SET paid = true, reconciled = true WHERE id = 1")
    with refused("LL001", r"^offer id=1 is final"):
        app.execute("UPDATE offer SET amount = 11 WHERE id = 1")
    assert app.execute(f"SELECT ledgerlock.{shared}(q, q) FROM offer q").fetchone() == (False,)
    assert owner.execute("SELECT p.prosecdef, p.proconfig, f.origin FROM pg_proc p "
                         "JOIN ledgerlock.code_fingerprint f ON f.fn = p.oid::regprocedure::text "
                         "WHERE p.proname = %s", (shared,)).fetchone() == (False, None, "generated")
    # gone with the last table that uses it, and its fingerprint with it; the other set's stays
    owner.execute("SELECT ledgerlock.unprotect('offer', 'retired')")  # final rows: a superuser's act
    assert shared in [name for name, _ in comparisons(owner)]
    owner.execute("SELECT ledgerlock.unprotect('invoice', 'retired')")
    db.connect("admin").execute("SELECT ledgerlock.reinstall_guards()")
    assert [tables for _, tables in comparisons(owner)] == [["bill"]]
    assert owner.execute("SELECT count(*) FROM ledgerlock.code_fingerprint WHERE fn LIKE %s",
                         (f"ledgerlock.{shared}(%",)).fetchone() == (0,)


def test_a_comparison_replaced_by_hand_is_drift_and_reinstall_guards_puts_it_back(db, invoices):
    """Replaced with one that always says "unchanged", every update of a final row would slip past R1's WHEN
    clause: only the owner of schema ledgerlock can do it (the DDL guard refuses anyone else), doctor names it,
    and reinstall_guards restores it."""
    owner = db.owner()
    (name, _), = comparisons(owner)
    owner.execute(f"CREATE OR REPLACE FUNCTION ledgerlock.{name}(o anyelement, n anyelement) RETURNS boolean "
                  "LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$ BEGIN RETURN false; END $$")
    lives_ok(invoices, "UPDATE invoice SET amount = 1 WHERE id = 1")  # what the tampering buys
    found = owner.execute("SELECT severity, finding FROM ledgerlock.doctor_findings() WHERE object LIKE %s",
                          (f"ledgerlock.{name}(%",)).fetchall()
    assert found == [("critical", f"ledgerlock.{name}(anyelement,anyelement) differs from the function ledgerlock "
                                  "generated")]
    db.connect("admin").execute("SELECT ledgerlock.reinstall_guards()")
    with refused("LL001", r"^invoice id=1 is final and cannot be updated"):
        invoices.execute("UPDATE invoice SET amount = 2 WHERE id = 1")
    lives_ok(invoices, "UPDATE invoice SET paid = true WHERE id = 1")
    assert owner.execute("SELECT count(*) FROM ledgerlock.doctor_findings() WHERE object LIKE %s",
                         (f"ledgerlock.{name}(%",)).fetchone() == (0,)
