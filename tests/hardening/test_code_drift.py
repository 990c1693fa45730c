"""Code drift, seen by the auditor: every function in schema ledgerlock is compared with the fingerprint
ledgerlock recorded when it installed or generated it, and the shipped ones with the manager's own package
(which a database superuser cannot edit)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ledgerlock import doctor as checks
from ledgerlock import sqlfiles
from ledgerlock.cli import cli

GUARD = "ledgerlock.guard_final_row()"
NO_OP = ("CREATE OR REPLACE FUNCTION ledgerlock.guard_final_row() RETURNS trigger LANGUAGE plpgsql "
         "SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET quote_all_identifiers = off "
         "AS $$ BEGIN RETURN NEW; END $$")


def doctor(conninfo: str):
    res = CliRunner().invoke(cli, ["--dsn", conninfo, "doctor", "--json"])
    assert res.exit_code in (0, 3), res.output
    return res.exit_code, json.loads(res.stdout)


def about(found, obj):
    return [f for f in found if f["object"] == obj]


def critical(found):
    return [f for f in found if f["severity"] == "critical"]


def source(owner, fn):
    return owner.execute("SELECT prosrc FROM pg_proc WHERE oid = %s::regprocedure", (fn,)).fetchone()[0]


def test_every_function_has_a_fingerprint_and_the_package_agrees_with_the_catalog(db):
    db.protect_invoice(number_column="number", number_format="INV-{YYYY}-{SEQ:5}")
    owner = db.owner()
    unrecorded = owner.execute(
        "SELECT p.oid::regprocedure::text FROM pg_proc p WHERE p.pronamespace = 'ledgerlock'::regnamespace "
        "AND NOT EXISTS (SELECT FROM ledgerlock.code_fingerprint f WHERE f.fn = p.oid::regprocedure::text)"
    ).fetchall()
    assert unrecorded == []
    assert owner.execute("SELECT count(*) FROM ledgerlock.code_fingerprint WHERE origin = 'generated'").fetchone()[0]
    shipped = sqlfiles.shipped_functions()
    assert "guard_final_row" in shipped and "_rules" in shipped
    assert shipped["guard_final_row"][0].config == ("search_path=pg_catalog, pg_temp", "quote_all_identifiers=off")
    with db.connect("auditor") as auditor:
        assert checks.code_drift(auditor) == []


@pytest.mark.parametrize("role", ["auditor", "owner"])
def test_a_guard_function_replaced_with_a_no_op_is_critical_by_name_until_restored(db, role):
    db.protect_invoice()
    owner = db.owner()
    src = source(owner, GUARD)
    _, before = doctor(db.conninfo(role))  # the harness's own setup has criticals (owner logins)
    assert about(before, GUARD) == []
    owner.execute(NO_OP)
    code, found = doctor(db.conninfo(role))
    assert code == 3
    assert [f for f in critical(found) if f not in before] == [
        f for f in about(found, GUARD) if f["finding"] == f"{GUARD} differs from the shipped definition"], found
    owner.execute(NO_OP.replace("$$ BEGIN RETURN NEW; END $$", "$b$" + src + "$b$"))
    _, found = doctor(db.conninfo(role))
    assert found == before


def test_a_replacement_whose_fingerprint_was_forged_too_is_caught_by_the_package(db):
    db.protect_invoice()
    owner = db.owner()
    owner.execute(NO_OP)
    owner.execute("UPDATE ledgerlock.code_fingerprint f SET body_md5 = md5(p.prosrc) FROM pg_proc p "
                  "WHERE p.oid = %s::regprocedure AND f.fn = %s", (GUARD, GUARD))
    sql_only = db.connect("auditor").execute(
        "SELECT * FROM ledgerlock.doctor_findings() WHERE object = %s", (GUARD,)).fetchall()
    assert sql_only == []  # the database's own record was forged with it
    code, found = doctor(db.conninfo("auditor"))
    assert code == 3
    assert [f["finding"] for f in about(found, GUARD)] == [f"{GUARD} differs from the shipped definition"]


@pytest.mark.parametrize("change", [
    f"ALTER FUNCTION {GUARD} SECURITY INVOKER",
    f"ALTER FUNCTION {GUARD} SET search_path = public, pg_catalog",
])
def test_a_changed_security_or_setting_with_the_same_body_is_drift(db, change):
    db.protect_invoice()
    db.owner().execute(change)
    with db.connect("auditor") as auditor:
        assert [f.finding for f in checks.code_drift(auditor)] == [f"{GUARD} differs from the shipped definition"]
    code, found = doctor(db.conninfo("auditor"))
    assert code == 3 and any(f["finding"] == f"{GUARD} differs from the shipped definition" for f in found)


def test_a_generated_guard_function_replaced_with_a_no_op_is_critical_until_reinstalled(db):
    db.protect_invoice(number_column="number", number_format="INV-{YYYY}-{SEQ:5}")
    owner = db.owner()
    fn = owner.execute(
        "SELECT 'ledgerlock.' || ledgerlock._generated_name('invoice', 'll40', 'final') || '()'").fetchone()[0]
    _, before = doctor(db.conninfo("auditor"))
    assert about(before, fn) == []
    owner.execute(f"CREATE OR REPLACE FUNCTION {fn} RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER "
                  "SET search_path = pg_catalog, pg_temp AS $$ BEGIN RETURN NEW; END $$")
    code, found = doctor(db.conninfo("auditor"))
    assert code == 3
    assert [(f["severity"], f["finding"]) for f in about(found, fn)] == [
        ("critical", f"{fn} differs from the function ledgerlock generated")]
    with db.connect("auditor") as auditor:  # what `audit verify` calls
        assert [(f.severity, f.finding) for f in checks.code_drift(auditor)] == [
            ("critical", f"{fn} differs from the function ledgerlock generated")]
    owner.execute("SELECT ledgerlock.reinstall_guards()")
    _, found = doctor(db.conninfo("auditor"))
    assert found == before


def test_a_dropped_ledgerlock_function_is_reported_missing(db):
    db.protect_invoice()
    owner = db.owner()
    owner.execute("DROP FUNCTION ledgerlock.why_locked(regclass, jsonb)")
    code, found = doctor(db.conninfo("auditor"))
    assert code == 3
    assert any(f["finding"] == "ledgerlock.why_locked(regclass,jsonb) is missing" for f in found), found


def test_audit_verify_reports_a_replaced_guard_by_name_and_passes_once_it_is_restored(db):
    db.protect_invoice()
    owner = db.owner()
    src = source(owner, GUARD)

    def verify():
        res = CliRunner().invoke(cli, ["--dsn", db.conninfo("auditor"), "audit", "verify", "--json"])
        return res.exit_code, json.loads(res.stdout)

    code, out = verify()
    assert (code, out["ok"], out["code_drift"]) == (0, True, [])
    owner.execute(NO_OP)  # the trail itself is intact: only the code that guards the books changed
    code, out = verify()
    assert code == 3 and out["ok"] is False
    assert [d for d in out["code_drift"] if GUARD in d] == [f"{GUARD} differs from the shipped definition"]
    owner.execute("CREATE OR REPLACE FUNCTION ledgerlock.guard_final_row() RETURNS trigger LANGUAGE plpgsql "
                  "SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET quote_all_identifiers = off "
                  "AS $ll$" + src + "$ll$")
    code, out = verify()
    assert (code, out["ok"], out["code_drift"]) == (0, True, [])


def test_a_generated_period_check_replaced_with_a_no_op_is_critical_until_reinstalled(db):
    db.protect_invoice()
    owner = db.owner()
    fn = owner.execute(
        "SELECT 'ledgerlock.' || ledgerlock._generated_name('invoice', 'll20', 'insert') || '()'").fetchone()[0]
    _, before = doctor(db.conninfo("auditor"))
    assert about(before, fn) == []
    owner.execute(f"CREATE OR REPLACE FUNCTION {fn} RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER "
                  "SET search_path = pg_catalog, pg_temp AS $$ BEGIN RETURN NULL; END $$")
    code, found = doctor(db.conninfo("auditor"))
    assert code == 3
    assert [(f["severity"], f["finding"]) for f in about(found, fn)] == [
        ("critical", f"{fn} differs from the function ledgerlock generated")]
    owner.execute("SELECT ledgerlock.reinstall_guards()")
    _, found = doctor(db.conninfo("auditor"))
    assert found == before
