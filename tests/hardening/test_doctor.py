"""`ledgerlock doctor`: a weakened setup is caught with a non-zero exit; the setup of docs/hardening.md
comes out clean."""

from __future__ import annotations

import json

import psycopg
import pytest
from click.testing import CliRunner

from ledgerlock import migrate
from ledgerlock.cli import cli
from lltest import case_insensitive_collation, known_servers, major, refused, start_cluster, stop_cluster


def doctor(conninfo: str):
    res = CliRunner().invoke(cli, ["--dsn", conninfo, "doctor", "--json"])
    assert res.exit_code in (0, 3), res.output
    return res.exit_code, json.loads(res.stdout)


def problems(found, severity="critical"):
    return [f for f in found if f["severity"] == severity]


def test_the_setup_of_docs_hardening_is_clean(healthy):
    code, found = doctor(healthy.conninfo())
    assert problems(found) == [] and problems(found, "warning") == [], found
    assert code == 0
    text = CliRunner().invoke(cli, ["--dsn", healthy.conninfo(), "doctor"])
    assert text.exit_code == 0 and "clean: 0 critical, 0 warning" in text.output
    # info only: the bootstrap superuser, which nothing can stop and external digests reveal
    assert {f["check"] for f in found} <= {"bypass role"}


def test_a_ledgerlock_admin_or_auditor_can_run_it_but_not_the_application(db):
    db.protect_invoice()
    for role in ("admin", "auditor"):
        _, found = doctor(db.conninfo(role))
        # the harness's tables are owned by a superuser login, and ll_admin both writes them and is an admin
        assert any(f["check"] == "table owner" and "owned by superuser" in f["finding"] for f in found)
        assert any(f["check"] == "ledgerlock role" and f["object"] == "ll_admin" for f in found)
    res = CliRunner().invoke(cli, ["--dsn", db.conninfo("app"), "doctor"])
    assert res.exit_code == 1 and "42501" in res.output


@pytest.mark.parametrize(("weaken", "check", "finding"), [
    ("ALTER TABLE invoice OWNER TO ll_app", "table owner", r"owned by ll_app, a role that can log in"),
    ("ALTER TABLE invoice DISABLE TRIGGER ll_10_final_update", "guard trigger",
     "guard ll_10_final_update on public.invoice is disabled"),
    ("ALTER TABLE invoice ENABLE TRIGGER ll_00_truncate", "guard trigger", "is ENABLE (origin only)"),
    ("ALTER FUNCTION ledgerlock.guard_final_row() RESET search_path", "function",
     "SECURITY DEFINER function ledgerlock.guard_final_row() does not pin search_path"),
    ("GRANT TRIGGER ON invoice TO ll_app", "table privilege", "ll_app may create triggers on public.invoice"),
    ("GRANT INSERT ON ledgerlock.protected_table TO PUBLIC", "public privilege",
     "PUBLIC holds INSERT on ledgerlock.protected_table"),
    ("GRANT EXECUTE ON FUNCTION ledgerlock._refuse(text, text, text, text) TO PUBLIC", "public privilege",
     "PUBLIC may execute ledgerlock._refuse"),
    ("GRANT USAGE ON SCHEMA ledgerlock_gate TO PUBLIC", "public privilege",
     "PUBLIC may use schema ledgerlock_gate"),
    ("GRANT USAGE ON SCHEMA ledgerlock_gate TO ll_app", "public privilege", "ll_app may use schema ledgerlock_gate"),
    ("GRANT SELECT ON ledgerlock_gate.sealer TO PUBLIC", "public privilege",
     "PUBLIC holds SELECT on ledgerlock_gate.sealer"),
    ("DROP TRIGGER ll_10_final_delete ON invoice", "guard trigger", "has no final-row guard ll_10_final_delete"),
    ("DROP TRIGGER ll_10_final_update ON invoice; CREATE TRIGGER ll_10_final_update BEFORE UPDATE ON invoice "
     "FOR EACH ROW WHEN (false) EXECUTE FUNCTION ledgerlock.guard_final_row(); "
     "ALTER TABLE invoice ENABLE ALWAYS TRIGGER ll_10_final_update", "guard trigger",
     "differs from the definition ledgerlock installed"),
    ("SELECT ledgerlock.protect('journal_entry', 'posted_on'); ALTER TABLE journal_entry SET UNLOGGED", "table",
     "public.journal_entry is UNLOGGED"),
    ("ALTER ROLE ledgerlock_auditor LOGIN", "ledgerlock role", "ledgerlock_auditor can log in"),
])
def test_a_weakened_setup_is_caught_with_a_non_zero_exit(db, weaken, check, finding):
    db.protect_invoice()
    owner = db.owner()
    code, before = doctor(db.conninfo())
    owner.execute(weaken)
    try:
        code, found = doctor(db.conninfo())
        new = [f for f in problems(found) if f not in before]
        assert code == 3
        assert any(f["check"] == check and finding in f["finding"] and f["why"] and f["fix"] for f in new), new
    finally:
        owner.execute("ALTER ROLE ledgerlock_auditor NOLOGIN")  # roles are cluster-wide


def test_missing_slots_of_the_numbering_line_are_a_warning_with_the_fix(db):
    """A finalizer whose slot in ledgerlock_gate.number_queue is gone waits on the counter row instead: numbers
    stay gapless, so it is a warning. The auditor cannot read that schema; doctor still sees it."""
    db.protect_invoice(number_column="number", number_format="INV-{YYYY}-{SEQ:5}")
    owner = db.owner()
    line = [f for f in doctor(db.conninfo("auditor"))[1] if f["object"] == "ledgerlock_gate.number_queue"]
    assert line == []
    owner.execute("DELETE FROM ledgerlock_gate.number_queue WHERE slot >= 4000")  # only a superuser can
    code, found = doctor(db.conninfo("auditor"))
    [finding] = [f for f in found if f["object"] == "ledgerlock_gate.number_queue"]
    assert (finding["severity"], finding["check"], finding["finding"]) == (
        "warning", "numbering", "96 of the 4096 slots finalizers of a series wait in line on are missing")
    assert "numbers stay gapless" in finding["why"] and code == 0
    fix = finding["fix"].removeprefix("as the owner of ledgerlock: ")
    owner.execute(fix)
    assert [f for f in doctor(db.conninfo("auditor"))[1] if f["object"] == "ledgerlock_gate.number_queue"] == []
    db.connect("app").execute("INSERT INTO invoice (id, company_id, status, issued_on) "
                              "VALUES (1, 1, 'approved', '2026-03-01')")
    assert owner.execute("SELECT number FROM invoice").fetchone()[0] == "INV-2026-00001"


def test_a_role_that_may_create_in_the_schema_of_the_books_is_a_warning(db):
    """PUBLIC held CREATE on schema public before PostgreSQL 15, and upgraded databases keep it: whoever can
    create there can plant a function or operator that an admin's unqualified SQL runs (CVE-2018-1058)."""
    db.protect_invoice()
    owner = db.owner()
    _, before = doctor(db.conninfo())
    assert not [f for f in before if f["check"] == "schema privilege"]
    for grantee, name in (("PUBLIC", "PUBLIC"), ("ll_app", "ll_app")):
        owner.execute(f"GRANT CREATE ON SCHEMA public TO {grantee}")
        try:
            code, found = doctor(db.conninfo("auditor"))
            mine = [f for f in found if f["check"] == "schema privilege"]
            assert [(f["severity"], f["object"], f["finding"], f["fix"]) for f in mine] == [
                ("warning", "public", f"{name} may create objects in schema public, which holds protected tables",
                 f"REVOKE CREATE ON SCHEMA public FROM {name}")]
            assert "CVE-2018-1058" in mine[0]["why"] and code == 0  # a warning: the rules are not weakened
        finally:
            owner.execute(f"REVOKE CREATE ON SCHEMA public FROM {grantee}")
    # the permitted neighbour: the role that owns the protected tables may create beside them
    owner.execute("CREATE ROLE ll_books_owner; GRANT CREATE ON SCHEMA public TO ll_books_owner; "
                  "ALTER TABLE invoice OWNER TO ll_books_owner")
    try:
        _, found = doctor(db.conninfo())
        assert not [f for f in found if f["check"] == "schema privilege"], found
    finally:
        owner.execute("REASSIGN OWNED BY ll_books_owner TO CURRENT_USER; DROP OWNED BY ll_books_owner; "
                      "DROP ROLE ll_books_owner")


def test_a_function_redefined_by_hand_is_reported_as_drifted(db):
    migrate.migrate(db.conninfo())  # the installed code is the version on disk
    owner = db.owner()
    src = owner.execute("SELECT prosrc FROM pg_proc WHERE oid = 'ledgerlock.guard_truncate'::regproc").fetchone()[0]
    code, _ = doctor(db.conninfo())
    owner.execute("CREATE OR REPLACE FUNCTION ledgerlock.guard_truncate() RETURNS trigger LANGUAGE plpgsql "
                  "SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$ BEGIN RETURN NULL; END $$")
    code, found = doctor(db.conninfo())
    assert code == 3
    assert any(f["object"] == "ledgerlock.guard_truncate()" and "differs from the shipped" in f["finding"]
               for f in problems(found))
    owner.execute("CREATE OR REPLACE FUNCTION ledgerlock.guard_truncate() RETURNS trigger LANGUAGE plpgsql "
                  "SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET quote_all_identifiers = off "
                  "AS $b$" + src + "$b$")
    _, found = doctor(db.conninfo())
    assert not any(f["object"] == "ledgerlock.guard_truncate()" for f in found)


@pytest.mark.parametrize("move, fix", [
    ("ALTER TABLE invoice RENAME TO sales_invoice", "ALTER TABLE public.sales_invoice RENAME TO invoice"),
    ("CREATE SCHEMA books; ALTER TABLE invoice SET SCHEMA books", "ALTER TABLE books.invoice SET SCHEMA public"),
    ("CREATE SCHEMA books; ALTER TABLE invoice SET SCHEMA books; ALTER TABLE books.invoice RENAME TO sales",
     "ALTER TABLE books.sales SET SCHEMA public; ALTER TABLE public.sales RENAME TO invoice"),
])
def test_a_renamed_table_is_one_finding_whose_fix_is_the_rename_back_and_running_it_makes_doctor_clean(
        db, move, fix):
    """Without the DDL guard the owner can rename a protected table. Every guard names the table, so each read as
    changed, with reinstall_guards as the fix, which cannot help: the trail files the table's rows and its
    registry row under the old name. Doctor now says what happened once, with the SQL that undoes it."""
    db.protect_invoice()
    db.connect("app").execute("INSERT INTO invoice (id, company_id, amount) VALUES (1, 1, 10)")
    owner = db.owner()
    owner.execute(move)
    code, found = doctor(db.conninfo())
    assert code == 3
    moved = [f for f in problems(found) if f["check"] in ("renamed table", "guard trigger")]
    assert len(moved) == 1 and moved[0]["check"] == "renamed table", moved
    assert moved[0]["finding"].endswith("ledgerlock protected it as public.invoice, and its guards still name "
                                        "public.invoice")
    assert moved[0]["fix"] == fix + "  (then run doctor again: a guard also changed by hand shows only then)"
    chain = [f for f in problems(found) if f["check"] == "audit chain"]
    assert [f["fix"] for f in chain] == [
        'rename the protected table back first (the "renamed table" finding), then verify again']
    owner.execute(moved[0]["fix"].split("  (")[0])
    code, found = doctor(db.conninfo())
    assert code == 0 and problems(found) == [], problems(found)
    assert db.connect("auditor").execute("SELECT ok FROM ledgerlock.verify_audit()").fetchone() == (True,)


def test_a_guard_changed_by_hand_or_a_renamed_partition_still_gets_reinstall_guards_as_the_fix(db, journal):
    """The neighbours of a renamed table: a guard whose definition changed without a rename, and a partition
    renamed (its rows are filed under the protected table, so its guards installed again are the whole fix)."""
    db.protect_invoice()
    owner = db.owner()
    owner.execute("ALTER TABLE ledger_entry_2026 RENAME TO ledger_entry_y2026")
    owner.execute("DROP TRIGGER ll_10_final_delete ON invoice")
    owner.execute("CREATE TRIGGER ll_10_final_delete BEFORE DELETE ON invoice FOR EACH ROW WHEN (false) "
                  "EXECUTE FUNCTION ledgerlock.guard_final_row()")
    owner.execute("ALTER TABLE invoice ENABLE ALWAYS TRIGGER ll_10_final_delete")
    owner.execute("COMMENT ON TRIGGER ll_10_final_delete ON invoice IS 'ledgerlock:00000000000000000000000000000000'")
    code, found = doctor(db.conninfo())
    assert code == 3
    assert not [f for f in found if f["check"] == "renamed table"]
    drifted = {(f["object"], f["finding"].split(" on ")[0], f["fix"])
               for f in problems(found) if f["check"] == "guard trigger"}
    reinstall = "ledgerlock migrate  (or: SELECT ledgerlock.reinstall_guards())"
    # the partition's statement-level guards (TRUNCATE, audit) name it; its row guards are the table's
    assert ("public.invoice", "guard ll_10_final_delete", reinstall) in drifted
    assert ("public.ledger_entry_y2026", "guard ll_00_truncate", reinstall) in drifted
    assert {(obj, fix) for obj, _, fix in drifted} == {("public.invoice", reinstall),
                                                       ("public.ledger_entry_y2026", reinstall)}
    owner.execute("SELECT ledgerlock.reinstall_guards()")
    _, found = doctor(db.conninfo())
    assert not [f for f in problems(found) if f["check"] == "guard trigger"]


def test_a_partition_added_without_the_ddl_guard_is_reported_until_guards_are_reinstalled(db, journal):
    owner = db.owner()
    owner.execute("CREATE TABLE ledger_entry_2027 PARTITION OF ledger_entry "
                  "FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')")
    code, found = doctor(db.conninfo())
    assert code == 3
    assert any("public.ledger_entry_2027 has no TRUNCATE guard" in f["finding"] for f in problems(found))
    owner.execute("SELECT ledgerlock.reinstall_guards()")
    _, found = doctor(db.conninfo())
    assert not any("ledger_entry_2027" in f["finding"] for f in problems(found))


def test_a_detached_partition_is_reported(db, journal):
    db.owner().execute("ALTER TABLE ledger_entry DETACH PARTITION ledger_entry_2025")  # no DDL guard here
    _, found = doctor(db.conninfo())
    assert any(f["object"] == "public.ledger_entry_2025" and "is not protected" in f["finding"]
               for f in problems(found, "warning"))


def test_the_missing_ddl_guard_is_reported_and_a_disabled_one_is_critical(db):
    _, found = doctor(db.conninfo())
    assert any(f["check"] == "ddl guard" and "not installed" in f["finding"] for f in found)
    owner = db.owner()
    owner.execute("SELECT ledgerlock.install_ddl_guard()")
    _, found = doctor(db.conninfo())
    assert not any(f["check"] == "ddl guard" for f in found)
    owner.execute("ALTER EVENT TRIGGER ledgerlock_ddl_guard_drop DISABLE")
    code, found = doctor(db.conninfo())
    assert code == 3 and any(f["check"] == "ddl guard" and "disabled" in f["finding"] for f in problems(found))


def test_human_output_names_why_and_fix(db):
    db.protect_invoice()
    db.owner().execute("ALTER TABLE invoice OWNER TO ll_app")
    res = CliRunner().invoke(cli, ["--dsn", db.conninfo(), "doctor"])
    assert res.exit_code == 3
    assert "[critical] table owner: public.invoice is owned by ll_app" in res.output
    assert "    why: " in res.output and "    fix: ALTER TABLE public.invoice OWNER TO" in res.output


def test_functions_generated_by_installers_are_not_foreign_and_orphans_are_reported(db):
    """R2 and R4 generate trigger functions per table or rule: doctor knows them, and flags leftovers."""
    migrate.migrate(db.conninfo())
    owner = db.owner()
    db.protect_invoice(owner, number_column="number", number_format="INV-{YYYY}-{SEQ:5}")
    owner.execute("SELECT ledgerlock.protect_referenced('invoice', 'payment')")
    generated = [r[0] for r in owner.execute(
        "SELECT oid::regprocedure::text FROM pg_proc WHERE pronamespace = 'ledgerlock'::regnamespace "
        "AND proname ~ '^_ll[0-9]{2}_'")]
    assert any("_ll40_" in g for g in generated) and any("_ll30_" in g for g in generated)
    _, found = doctor(db.conninfo())
    assert not [f for f in found if f["object"] in generated], found
    # a generated function whose rule is gone is a leftover
    owner.execute("CREATE FUNCTION ledgerlock._ll30_r999999_parent() RETURNS trigger LANGUAGE plpgsql "
                  "AS $$ BEGIN RETURN NULL; END $$")
    _, found = doctor(db.conninfo())
    assert any(f["object"] == "ledgerlock._ll30_r999999_parent()" and "no longer exists" in f["finding"]
               for f in problems(found, "warning"))


def test_a_scope_column_that_cannot_hold_a_scope_is_reported(db):
    """Protected when its scope was an integer, then retyped without the DDL guard (or protected by a release
    that accepted any type): doctor names the column and why a lock of its scope can be walked past."""
    owner = db.owner()
    owner.execute("CREATE TABLE ticket (id int PRIMARY KEY, branch int NOT NULL, on_day date NOT NULL)")
    owner.execute("SELECT ledgerlock.protect('ticket', 'on_day', 'branch')")
    _, before = doctor(db.conninfo())
    assert not any(f["object"] == "public.ticket" and f["check"] == "table" for f in before)
    owner.execute("ALTER TABLE ticket ALTER COLUMN branch TYPE numeric")
    code, found = doctor(db.conninfo())
    assert code == 3
    [f] = [f for f in problems(found) if f["object"] == "public.ticket" and f["check"] == "table"]
    assert f["severity"] == "critical"
    assert f["finding"] == "the scope column public.ticket.branch of public.ticket is of type numeric"
    assert "equal numbers print differently (1.5 and 1.50)" in f["why"] and "protect it again" in f["fix"]



def test_a_scope_column_made_case_insensitive_is_reported_with_the_write_it_lets_past(db):
    """Protected with a deterministic collation, then given a case-insensitive one without the DDL guard: a hard
    lock of company 'acme' no longer holds the application, which writes into the locked January as 'ACME', and the
    company's own report of January counts the row. Doctor names the column and why."""
    owner = db.owner()
    ci = case_insensitive_collation(owner)
    owner.execute("""CREATE TABLE bill (id int PRIMARY KEY, company text NOT NULL, on_day date NOT NULL,
                                         amount numeric);
        GRANT SELECT, INSERT ON bill TO ll_app;
        SELECT ledgerlock.protect('bill', 'on_day', 'company')""")
    db.connect("admin").execute("SELECT ledgerlock.lock_period('acme', '2026-01-01', '2026-01-31', 'hard')")
    _, before = doctor(db.conninfo())
    assert not any(f["object"] == "public.bill" and f["check"] == "table" for f in before)
    owner.execute(f"ALTER TABLE bill ALTER COLUMN company TYPE text COLLATE {ci}")
    app = db.connect("app")
    with refused("LL002", r"^Period 2026-01-01\.\.2026-01-31 is locked \(hard\) for scope acme: bill id=1 "):
        app.execute("INSERT INTO bill VALUES (1, 'acme', '2026-01-20', 100)")
    app.execute("INSERT INTO bill VALUES (2, 'ACME', '2026-01-20', 999)")  # what doctor warns about
    assert app.execute("SELECT sum(amount) FROM bill WHERE company = 'acme' AND on_day <= '2026-01-31'"
                       ).fetchone() == (999,)
    code, found = doctor(db.conninfo())
    assert code == 3
    [f] = [f for f in problems(found) if f["object"] == "public.bill" and f["check"] == "table"]
    assert f["finding"] == ("the scope column public.bill.company of public.bill is of type text with a "
                            "nondeterministic collation")
    assert f["why"] == ("a scope is compared as text with the scopes locks name, and its collation public.ci is "
                        "nondeterministic: values it calls equal ('ACME' and 'acme') are different scopes to a lock: "
                        "a client can write a row of a locked scope under a text no lock names")
    assert "of a deterministic collation, then protect it again" in f["fix"]


@pytest.mark.parametrize(("parameter", "why"), [
    ("session_replication_role", "replica mode skips foreign-key checks"),
    ("track_counts", "leave numbers taken and not given back"),
    ("event_triggers", "the DDL guard refuses nothing it does"),
])
def test_a_role_that_may_set_a_parameter_the_rules_rely_on_is_a_warning(db, parameter, why):
    """The application must not hold SET on session_replication_role (replica mode) or on track_counts (the
    count the numbering's settle step asks whether a range can be open: docs/numbering.md). PostgreSQL 15 lets a
    superuser grant SET on a parameter; doctor names the grant and the REVOKE that undoes it. PostgreSQL 17 added
    event_triggers, which stops the DDL guard."""
    if parameter == "event_triggers" and major(db.cluster.name) < 17:
        pytest.skip("PostgreSQL 17 added event_triggers")
    db.protect_invoice(number_column="number", number_format="INV-{YYYY}-{SEQ:5}")
    owner = db.owner()
    app = db.connect("app")
    with refused("42501", f'permission denied to set parameter "{parameter}"'):
        app.execute(f"SET {parameter} = {'replica' if parameter == 'session_replication_role' else 'off'}")
    assert not [f for f in doctor(db.conninfo("auditor"))[1] if parameter in f["finding"]]
    owner.execute(f"GRANT SET ON PARAMETER {parameter} TO ll_app")  # parameters are cluster-wide
    try:
        code, found = doctor(db.conninfo("auditor"))
        mine = [f for f in found if parameter in f["finding"]]
        assert [(f["severity"], f["check"], f["object"], f["finding"], f["fix"]) for f in mine] == [
            ("warning", "bypass role", "ll_app", f"ll_app may SET {parameter}",
             f"REVOKE SET ON PARAMETER {parameter} FROM ll_app")]
        assert why in mine[0]["why"] and code == 0  # a warning, like every bypass role
        owner.execute(mine[0]["fix"])
        assert not [f for f in doctor(db.conninfo("auditor"))[1] if parameter in f["finding"]]
    finally:
        owner.execute(f"REVOKE SET ON PARAMETER {parameter} FROM ll_app")


def test_a_login_that_may_lock_ledgerlock_s_tables_is_a_warning(db):
    """PostgreSQL 17 added MAINTAIN (held on every relation by the members of pg_maintain), which lets a role
    LOCK any table in any mode: the application could hold ledgerlock's number counters, audit trail or period
    locks and stall every finalization, audited write and lock change. Doctor names the membership and the
    grant, with the REVOKE; without them the lock is refused."""
    if major(db.cluster.name) < 17:
        pytest.skip("PostgreSQL 17 added MAINTAIN and pg_maintain")
    db.protect_invoice(number_column="number", number_format="INV-{YYYY}-{SEQ:5}")
    owner = db.owner()
    app = db.connect("app", autocommit=False)
    with refused("42501", "permission denied for table number_counter"):
        app.execute("LOCK TABLE ledgerlock.number_counter IN ACCESS EXCLUSIVE MODE")
    app.rollback()
    _, before = doctor(db.conninfo())
    assert not [f for f in before if f["object"] == "ll_app"]
    owner.execute("GRANT pg_maintain TO ll_app")
    owner.execute("GRANT MAINTAIN ON ledgerlock.audit_event TO ll_app")
    app.execute("LOCK TABLE ledgerlock.number_counter IN ACCESS EXCLUSIVE MODE")  # what it could hold
    app.rollback()
    _, found = doctor(db.conninfo())
    mine = [(f["severity"], f["finding"], f["fix"]) for f in found if f["object"] == "ll_app"]
    assert mine == [("warning", "ll_app holds MAINTAIN on ledgerlock.audit_event",
                     "REVOKE MAINTAIN ON ledgerlock.audit_event FROM ll_app"),
                    ("warning", "ll_app is a member of pg_maintain", "REVOKE pg_maintain FROM ll_app")]
    assert all("stalls every finalization" in f["why"] for f in found if f["object"] == "ll_app")
    owner.execute("REVOKE pg_maintain FROM ll_app")
    owner.execute("REVOKE MAINTAIN ON ledgerlock.audit_event FROM ll_app")
    _, after = doctor(db.conninfo())
    assert not [f for f in after if f["object"] == "ll_app"]


def test_event_triggers_off_by_default_for_a_database_stops_the_ddl_guard_and_is_critical(db):
    """PostgreSQL 17's event_triggers = off, left as a default of the database (or of a role in it) after some
    maintenance, stops every event trigger: the owner's DDL went past the DDL guard. Doctor names the default,
    critical, with the RESET; reset, the guard refuses again."""
    if major(db.cluster.name) < 17:
        pytest.skip("PostgreSQL 17 added event_triggers")
    db.protect_invoice()
    owner = db.owner()
    owner.execute("SELECT ledgerlock.install_ddl_guard()")
    _, before = doctor(db.conninfo())
    assert not [f for f in before if f["object"] == "event_triggers"]
    owner.execute(f"ALTER DATABASE {db.name} SET event_triggers = off")
    with psycopg.connect(db.conninfo(), autocommit=True) as later:  # a session that takes the default
        later.execute("ALTER TABLE invoice DISABLE TRIGGER ll_10_final_update")
        later.execute("ALTER TABLE invoice ENABLE ALWAYS TRIGGER ll_10_final_update")
    code, found = doctor(db.conninfo())
    mine = [(f["severity"], f["finding"], f["fix"]) for f in found if f["object"] == "event_triggers"]
    assert code == 3 and mine == [("critical", "event_triggers is off by default for every role in this database",
                                   f"ALTER DATABASE {db.name} RESET event_triggers")]
    owner.execute(mine[0][2])
    with psycopg.connect(db.conninfo(), autocommit=True) as later:
        with refused("LL008", r"^disabling trigger ll_10_final_update on public\.invoice is refused"):
            later.execute("ALTER TABLE invoice DISABLE TRIGGER ll_10_final_update")
    assert not [f for f in doctor(db.conninfo())[1] if f["object"] == "event_triggers"]


def test_event_triggers_off_for_the_whole_server_is_critical(cluster):
    """The same set for the server (ALTER SYSTEM): on a server of its own, since it stops every database's
    guard."""
    if major(cluster.name) < 17:
        pytest.skip("PostgreSQL 17 added event_triggers")
    server, root = start_cluster(f"{cluster.name}-evt", known_servers()[cluster.name])
    try:
        with psycopg.connect(server.conninfo(), autocommit=True) as su:
            su.execute("CREATE DATABASE books")
        migrate.migrate(server.conninfo("books"))
        with psycopg.connect(server.conninfo("books"), autocommit=True) as su:
            su.execute("SELECT ledgerlock.install_ddl_guard()")
            assert not [f for f in doctor(server.conninfo("books"))[1] if f["object"] == "event_triggers"]
            su.execute("ALTER SYSTEM SET event_triggers = off")
            su.execute("SELECT pg_reload_conf()")
        code, found = doctor(server.conninfo("books"))
        assert code == 3 and [(f["severity"], f["finding"]) for f in found if f["object"] == "event_triggers"] == [
            ("critical", "event_triggers is off for this server")]
    finally:
        stop_cluster(server, root)


def test_replica_mode_as_a_role_s_default_is_a_warning(db):
    """A bulk loader's role set to start in replica mode (ALTER ROLE ... SET session_replication_role = replica,
    a common speed-up) skips foreign-key checks in every session: an invoice of a company that does not exist
    goes in. ledgerlock's guards are ENABLE ALWAYS and still run; doctor names the default with its RESET."""
    db.protect_invoice()
    owner = db.owner()
    assert not [f for f in doctor(db.conninfo())[1] if f["object"] == "session_replication_role"]
    owner.execute(f"ALTER ROLE ll_app IN DATABASE {db.name} SET session_replication_role = replica")
    try:
        with psycopg.connect(db.conninfo("app"), autocommit=True) as app:
            app.execute("INSERT INTO invoice (id, company_id) VALUES (1, 999)")  # no company 999
            with refused("LL001"):  # the guards still run
                app.execute("INSERT INTO invoice (id, company_id, status) VALUES (2, 1, 'approved'); "
                            "UPDATE invoice SET amount = 5 WHERE id = 2")
        _, found = doctor(db.conninfo())
        mine = [(f["severity"], f["finding"], f["fix"]) for f in found if f["object"] == "session_replication_role"]
        assert mine == [("warning", "session_replication_role is replica by default for ll_app in this database",
                         f"ALTER ROLE ll_app IN DATABASE {db.name} RESET session_replication_role")]
        owner.execute(mine[0][2])
        with psycopg.connect(db.conninfo("app"), autocommit=True) as app:
            with refused("23503"):
                app.execute("INSERT INTO invoice (id, company_id) VALUES (3, 998)")
        assert not [f for f in doctor(db.conninfo())[1] if f["object"] == "session_replication_role"]
    finally:
        owner.execute(f"ALTER ROLE ll_app IN DATABASE {db.name} RESET session_replication_role")
