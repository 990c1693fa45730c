"""The rule manifest (ledgerlock._rules()): hooks are the ones it lists, never found by name, and
reinstall_guards installs, then prunes the guards and generated functions no rule accounts for."""

from __future__ import annotations

import subprocess
from pathlib import Path

from lltest import refused

ROOT = Path(__file__).resolve().parents[2]

LIVE_GUARDS = ("SELECT tgrelid::regclass::text, tgname, obj_description(oid, 'pg_trigger') FROM pg_trigger "
               "WHERE tgname LIKE 'll\\_%' AND NOT tgisinternal ORDER BY 1, 2")
GENERATED = ("SELECT oid::regprocedure::text FROM pg_proc WHERE pronamespace = 'ledgerlock'::regnamespace "
             "AND (starts_with(proname, '_ll40_t') OR starts_with(proname, '_ll30_r')) ORDER BY 1")


def test_the_manifest_lists_every_rule_with_its_design_rule_and_hooks(db):
    rows = db.owner().execute(
        "SELECT nn, name, design_rule, install::text, uninstall::text, refresh::text, why::text[], why_unprotected "
        "FROM ledgerlock._rules() ORDER BY nn").fetchall()
    assert [(r[0], r[2]) for r in rows] == [("00", "all"), ("10", "R1"), ("20", "R3"), ("30", "R4"), ("40", "R2"),
                                            ("90", "R5")]
    assert all(r[3].startswith(f"ledgerlock._install_{r[0]}_") for r in rows)
    r4 = rows[3]
    assert r4[4:] == ("ledgerlock._uninstall_30_referential(regclass)", "ledgerlock._refresh_30_referential()",
                      ["ledgerlock._why_30_referenced(regclass,jsonb)", "ledgerlock._why_31_lines(regclass,jsonb)"],
                      True)
    assert [r[7] for r in rows if r[7]] == [True]  # only R4 explains rows of tables that are not protected


def test_a_function_named_like_a_hook_is_not_run_only_the_listed_ones_are(db):
    owner = db.owner()
    owner.execute("CREATE FUNCTION ledgerlock._install_50_stray(tbl regclass) RETURNS void LANGUAGE plpgsql AS "
                  "$$ BEGIN RAISE EXCEPTION 'stray hook ran'; END $$")
    owner.execute("CREATE FUNCTION ledgerlock._why_05_stray(tbl regclass, key jsonb) "
                  "RETURNS TABLE(rule text, summary text, details jsonb, way_back text) LANGUAGE sql AS "
                  "$$ SELECT 'stray', 'stray', NULL::jsonb, 'none' $$")
    db.protect_invoice(owner)  # lives: the stray installer is not listed
    assert owner.execute("SELECT ledgerlock.reinstall_guards()").fetchone()[0] == 1
    app = db.connect("app")
    app.execute("INSERT INTO invoice (id, company_id, amount, status) VALUES (1, 1, 10, 'approved')")
    rules = [r[0] for r in owner.execute("SELECT rule FROM ledgerlock.why_locked('invoice', '{\"id\": 1}')")]
    assert rules == ["final"]
    # the listed installers did run: the final row is guarded
    with refused("LL001", "is final"):
        app.execute("UPDATE invoice SET amount = 11 WHERE id = 1")


def test_rule_hooks_are_install_or_uninstall(db):
    db.protect_invoice()
    with refused("22023", "rule hooks are install or uninstall, not 'refresh'"):
        db.owner().execute("SELECT ledgerlock._run_rule_hooks('invoice', 'refresh')")
    db.owner().execute("SELECT ledgerlock._run_rule_hooks('invoice', 'install')")


def test_no_hook_is_discovered_by_a_name_pattern():
    found = subprocess.run(["grep", "-rn", "proname ~", "sql", "manager"], cwd=ROOT, capture_output=True, text=True)
    assert found.stdout == ""


def _numbered_invoice(db):
    owner = db.owner()
    db.protect_invoice(owner, number_column="number", number_format="INV-{YYYY}-{SEQ:5}")
    owner.execute("SELECT ledgerlock.protect('journal_entry', 'posted_on')")
    return owner


def test_guards_of_a_table_whose_registry_row_was_removed_by_hand_are_pruned(db):
    owner = _numbered_invoice(db)
    journal_guards = [g for g in owner.execute(LIVE_GUARDS) if g[0] == "journal_entry"]
    assert journal_guards and owner.execute(GENERATED).fetchall()
    owner.execute("DELETE FROM ledgerlock.protected_table WHERE tbl = 'invoice'::regclass")  # a superuser, by hand
    assert any(g[0] == "invoice" for g in owner.execute(LIVE_GUARDS))
    owner.execute("SELECT ledgerlock.reinstall_guards()")
    assert not [g for g in owner.execute(LIVE_GUARDS) if g[0] == "invoice"]
    assert owner.execute(GENERATED).fetchall() == []
    assert not owner.execute("SELECT fn FROM ledgerlock.code_fingerprint WHERE origin = 'generated' "  # R3's, R5's
                             "AND fn NOT IN (format('ledgerlock.%I()', ledgerlock._generated_name('journal_entry', "
                             "'ll20', 'insert')), format('ledgerlock.%I()', "
                             "ledgerlock._generated_name('journal_entry', 'll90', 'capture')))").fetchall()
    # the live guards of the table still protected stay, exactly as installed
    assert [g for g in owner.execute(LIVE_GUARDS) if g[0] == "journal_entry"] == journal_guards


def test_functions_generated_for_a_dropped_table_are_pruned_and_live_ones_stay(db):
    owner = _numbered_invoice(db)
    owner.execute("CREATE TABLE scratch_doc (id int PRIMARY KEY, issued_on date NOT NULL, status text, number text)")
    owner.execute("SELECT ledgerlock.protect('scratch_doc', 'issued_on', final_when => $$status = 'final'$$, "
                  "number_column => 'number', number_format => 'S-{SEQ}')")
    key = owner.execute("SELECT ledgerlock._table_key('scratch_doc')").fetchone()[0]
    invoice_fns = [f for (f,) in owner.execute(GENERATED) if f"_{key}_" not in f]
    assert invoice_fns and len(owner.execute(GENERATED).fetchall()) > len(invoice_fns)
    owner.execute("DELETE FROM ledgerlock.protected_table WHERE tbl = 'scratch_doc'::regclass; DROP TABLE scratch_doc")
    guards = owner.execute(LIVE_GUARDS).fetchall()
    owner.execute("SELECT ledgerlock.reinstall_guards()")
    assert [f for (f,) in owner.execute(GENERATED)] == invoice_fns
    assert owner.execute(LIVE_GUARDS).fetchall() == guards
    app = db.connect("app")  # the numbering guard of the live table still numbers
    app.execute("INSERT INTO invoice (id, company_id, amount, status, issued_on) "
                "VALUES (1, 1, 10, 'approved', '2026-02-01')")
    assert app.execute("SELECT number FROM invoice WHERE id = 1").fetchone()[0] == "INV-2026-00001"


def test_a_stray_guard_on_an_r4_table_is_pruned_and_the_rule_guards_stay(db):
    owner = db.owner()
    db.protect_invoice(owner)
    owner.execute("SELECT ledgerlock.protect_referenced('invoice', 'payment')")
    owner.execute("CREATE TRIGGER ll_10_final_update BEFORE UPDATE ON payment FOR EACH ROW "
                  "EXECUTE FUNCTION suppress_redundant_updates_trigger()")
    before = [g for g in owner.execute(LIVE_GUARDS) if g[1] != "ll_10_final_update" or g[0] != "payment"]
    owner.execute("SELECT ledgerlock.reinstall_guards()")
    assert owner.execute(LIVE_GUARDS).fetchall() == before
    assert any(g[0] == "payment" and g[1].startswith("ll_30_r") for g in before)
