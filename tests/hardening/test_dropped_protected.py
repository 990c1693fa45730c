"""A protected table dropped where no DDL guard refuses it (a managed service without a superuser: the owner
can). Its registry row stays behind, naming it by oid. Nothing of ledgerlock may break on it: closing a period,
`ledgerlock migrate` and `number_gaps` go on for the other tables; verification reports the table as dropped,
doctor names it with the way out, and `unprotect` by its oid retires it on the record."""

from __future__ import annotations

import json

from click.testing import CliRunner

from ledgerlock import migrate
from ledgerlock.cli import cli
from lltest import lives_ok, refused


def dropped_while_protected(db, lines: bool = False) -> int:
    db.protect_invoice(number_column="number", number_format="INV-{YYYY}-{SEQ:5}")
    owner = db.owner()
    owner.execute("CREATE TABLE scratch_doc (id int PRIMARY KEY, issued_on date NOT NULL, status text, number text)")
    owner.execute("SELECT ledgerlock.protect('scratch_doc', 'issued_on', final_when => $$status = 'final'$$, "
                  "number_column => 'number', number_format => 'S-{SEQ}')")
    owner.execute("INSERT INTO scratch_doc VALUES (1, '2026-01-05', 'final', NULL)")
    if lines:
        owner.execute("CREATE TABLE scratch_line (id int PRIMARY KEY, doc_id int REFERENCES scratch_doc)")
        owner.execute("SELECT ledgerlock.protect_lines('scratch_line', 'scratch_doc')")
    oid = owner.execute("SELECT 'scratch_doc'::regclass::oid").fetchone()[0]
    assert owner.execute("SELECT count(*) FROM pg_event_trigger").fetchone()[0] == 0  # no DDL guard here
    owner.execute("DROP TABLE scratch_doc CASCADE")
    return oid


def doctor(conninfo):
    res = CliRunner().invoke(cli, ["--dsn", conninfo, "doctor", "--json"])
    assert res.exit_code in (0, 3), res.output
    return res.exit_code, json.loads(res.stdout)


def test_the_other_tables_keep_every_operation(db):
    dropped_while_protected(db)
    app, controller, admin = db.connect("app"), db.connect("controller"), db.connect("admin")
    # closing a period raises the marks of every protected table's guards: the dropped one has none
    lock_id = lives_ok(controller, "SELECT ledgerlock.lock_period('1', '2025-03-01', '2025-03-31')")[0][0]
    with refused("LL002", r"invoice id=1 cannot be inserted"):
        app.execute("INSERT INTO invoice (id, company_id, issued_on) VALUES (1, 1, '2025-03-10')")
    app.execute("INSERT INTO invoice (id, company_id, issued_on, status) VALUES (2, 1, '2025-04-10', 'approved')")
    assert lives_ok(admin, "SELECT ledgerlock.reinstall_guards()") == [(1,)]
    migrate.migrate(db.conninfo())
    assert lives_ok(controller, "SELECT * FROM ledgerlock.number_gaps(NULL)") == []
    assert lock_id


def test_verification_and_doctor_name_it_and_unprotect_by_oid_retires_it(db):
    oid = dropped_while_protected(db)
    auditor = db.connect("auditor")
    digest = auditor.execute("SELECT ledgerlock.audit_digest()").fetchone()[0]
    problem = "public.scratch_doc was dropped while it was protected: the rows its trail records are gone with it"
    for call in ("ledgerlock.verify_audit()", "ledgerlock.verify_audit_from(%s)"):
        rows = auditor.execute(f"SELECT ok, problems, problem FROM {call}", (digest,) if "%s" in call else None)
        assert rows.fetchall() == [(False, 1, problem)], call
    code, found = doctor(db.conninfo("auditor"))
    [finding] = [f for f in found if f["check"] == "guard trigger" and "dropped while" in f["finding"]]
    assert any(f["check"] == "audit chain" and problem in f["finding"] for f in found)  # verification's, as above
    assert code == 3 and finding["severity"] == "critical" and finding["object"] == "public.scratch_doc"
    assert finding["finding"] == f"protected table public.scratch_doc (oid {oid}) was dropped while it was protected"
    assert f"SELECT ledgerlock.unprotect({oid}, " in finding["fix"]
    with refused("LL007", r"^unprotect requires a reason$"):
        db.connect("admin").execute("SELECT ledgerlock.unprotect(%s, '')", (oid,))
    with refused("42501"):
        db.connect("app").execute("SELECT ledgerlock.unprotect(%s, 'not mine to say')", (oid,))
    db.connect("admin").execute("SELECT ledgerlock.unprotect(%s, 'a scratch table dropped by the DBA')", (oid,))
    assert auditor.execute("SELECT ok, problems FROM ledgerlock.verify_audit()").fetchall() == [(True, 0)]
    assert not [f for f in doctor(db.conninfo("auditor"))[1] if "dropped while" in f["finding"]]
    event = auditor.execute("SELECT operation, reason, details FROM ledgerlock.audit_log "
                            "WHERE operation = 'UNPROTECT'").fetchall()
    assert event == [("UNPROTECT", "a scratch table dropped by the DBA", {"dropped": True})]
    # filed under the name the table's events carry (audit_log shows a dropped table's oid, as for any event of it)
    assert db.owner().execute("SELECT table_name FROM ledgerlock.audit_event "
                              "WHERE operation = 'UNPROTECT'").fetchone() == ("public.scratch_doc",)
    with refused("42P01", rf"^unprotect: relation with oid {oid} does not exist and is not protected$"):
        db.connect("admin").execute("SELECT ledgerlock.unprotect(%s, 'again')", (oid,))


def test_a_rule_whose_line_or_child_table_was_dropped_breaks_nothing_and_is_removed_by_its_oid(db):
    db.protect_invoice()
    owner, admin = db.owner(), db.connect("admin")
    owner.execute("INSERT INTO invoice (id, company_id, issued_on) VALUES (1, 1, '2026-01-05'), (2, 1, '2026-01-06')")
    for name in ("ln", "receipt"):
        owner.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, invoice_id int REFERENCES invoice, amount numeric)")
    owner.execute("INSERT INTO receipt VALUES (1, 1, 10)")
    admin.execute("SELECT ledgerlock.protect_lines('ln', 'invoice')")
    admin.execute("SELECT ledgerlock.protect_referenced('invoice', 'receipt')")
    oids = dict(owner.execute("SELECT relname, oid FROM pg_class "
                              "WHERE relname IN ('ln', 'receipt', 'invoice')").fetchall())
    owner.execute("DROP TABLE ln")
    owner.execute("DROP TABLE receipt")
    # the parent's guard still looks for the receipts until the guards are installed again (ledgerlock
    # migrate with new code does it; doctor names the rule meanwhile), which passes the rules by
    assert lives_ok(admin, "SELECT ledgerlock.reinstall_guards()") == [(1,)]
    db.connect("controller").execute("SELECT ledgerlock.lock_period('1', '2025-01-01', '2025-12-31')")
    app = db.connect("app")
    app.execute("UPDATE invoice SET amount = 5 WHERE id = 1")  # its receipt went with the table
    _, found = doctor(db.conninfo("auditor"))
    rules = sorted((f["severity"], f["finding"], f["fix"]) for f in found
                   if "names a table that was dropped" in f["finding"])
    ln, receipt, invoice = oids["ln"], oids["receipt"], oids["invoice"]
    assert rules == [
        ("warning", f"the lines rule #1 names a table that was dropped (oid {ln})",
         f"SELECT ledgerlock.unprotect_lines({ln}, {invoice}, '<why>')"),
        ("warning", f"the referenced rule #2 names a table that was dropped (oid {receipt})",
         f"SELECT ledgerlock.unprotect_referenced({invoice}, {receipt}, '<why>')")]
    for _, _, fix in rules:
        admin.execute(fix.replace("<why>", "the table was dropped"))
    assert not [f for f in doctor(db.conninfo("auditor"))[1] if "names a table that was dropped" in f["finding"]]
    assert owner.execute("SELECT count(*) FROM ledgerlock.reference_rule").fetchone() == (0,)
    auditor = db.connect("auditor")
    assert auditor.execute("SELECT ok, problems FROM ledgerlock.verify_audit()").fetchall() == [(True, 0)]


def test_retiring_a_dropped_header_removes_its_lines_rule_and_the_lines_guards(db):
    """A protected header dropped with CASCADE (its lines' foreign key goes with it): unprotect by its oid
    removes the lines rule as unprotect_lines would, on the record, and the line table loses that rule's
    guard, so its writes stop looking for the header."""
    oid = dropped_while_protected(db, lines=True)
    owner = db.owner()
    assert owner.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'scratch_line'::regclass "
                         "AND tgname LIKE 'll\\_30\\_%'").fetchone() == (1,)
    db.connect("admin").execute("SELECT ledgerlock.unprotect(%s, 'the scratch documents went')", (oid,))
    assert owner.execute("SELECT count(*) FROM ledgerlock.reference_rule").fetchone() == (0,)
    assert owner.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'scratch_line'::regclass "
                         "AND tgname LIKE 'll\\_30\\_%'").fetchone() == (0,)
    lives_ok(owner, "INSERT INTO scratch_line VALUES (2, 1)")
    auditor = db.connect("auditor")
    assert auditor.execute("SELECT ok, problems FROM ledgerlock.verify_audit()").fetchall() == [(True, 0)]
    assert [r[0] for r in auditor.execute("SELECT operation FROM ledgerlock.audit_log "
                                          "WHERE operation LIKE 'UNPROTECT%' ORDER BY seq")] == [
        "UNPROTECT_LINES", "UNPROTECT"]
