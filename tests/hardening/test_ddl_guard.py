"""The DDL guard (`ledgerlock install-ddl-guard`): even the owner of a protected table cannot drop or disable
its guards, detach or drop it, rewrite it or hang triggers and rules on it; ledgerlock's own protect,
unprotect and migrate go through."""

from __future__ import annotations

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql

from ledgerlock import migrate
from ledgerlock.cli import cli
from lltest import case_insensitive_collation, lives_ok, refused, sqlstate

FINAL_ROW = "SELECT * FROM invoice WHERE id = 1"


@pytest.fixture
def app_owns_invoice(db, invoices, ddl_guard):
    """The common weak setup: the application owns its tables. Ownership lets it do any DDL."""
    owner = db.owner()
    owner.execute("ALTER TABLE invoice OWNER TO ll_app")
    owner.execute("ALTER TABLE quote OWNER TO ll_app")
    owner.execute("GRANT CREATE ON SCHEMA public TO ll_app")
    return invoices


def test_install_needs_a_superuser_and_says_what_stays_open(db):
    res = CliRunner().invoke(cli, ["--dsn", db.conninfo("admin"), "install-ddl-guard"])
    assert res.exit_code == 1
    assert "needs a superuser" in res.output and "DETACH PARTITION" in res.output
    res = CliRunner().invoke(cli, ["--dsn", db.conninfo(), "install-ddl-guard"])
    assert res.exit_code == 0, res.output
    rows = db.owner().execute("SELECT evtname, evtevent, evtenabled FROM pg_event_trigger ORDER BY 1").fetchall()
    assert rows == [("ledgerlock_ddl_guard_drop", "sql_drop", "A"),
                    ("ledgerlock_ddl_guard_end", "ddl_command_end", "A"),
                    ("ledgerlock_ddl_guard_rewrite", "table_rewrite", "A"),
                    ("ledgerlock_ddl_guard_start", "ddl_command_start", "A")]
    res = CliRunner().invoke(cli, ["--dsn", db.conninfo(), "install-ddl-guard", "--remove"])
    assert res.exit_code == 0 and db.owner().execute("SELECT count(*) FROM pg_event_trigger").fetchone()[0] == 0


@pytest.mark.parametrize(("stmt", "match"), [
    ("ALTER TABLE invoice DISABLE TRIGGER ll_10_final_update",
     r"^disabling trigger ll_10_final_update on public\.invoice is refused"),
    ("ALTER TABLE invoice DISABLE TRIGGER USER", r"^disabling trigger ll_\d\d_\w+ on public\.invoice is refused"),
    ("ALTER TABLE invoice ENABLE REPLICA TRIGGER ll_10_final_update", r"^disabling trigger ll_10_final_update"),
    ("DROP TRIGGER ll_10_final_update ON invoice", r"^dropping trigger ll_10_final_update on public\.invoice"),
    ("DROP TABLE invoice CASCADE", r"refused"),
    ("ALTER TABLE invoice DROP COLUMN note", r"^DROP table column public\.invoice\.note is refused"),
    ("ALTER TABLE invoice ALTER COLUMN amount TYPE numeric(14, 2) USING 0",
     r"^rewriting public\.invoice \(ALTER TABLE\) is refused"),
    ("ALTER TABLE invoice ADD COLUMN stamp timestamptz DEFAULT clock_timestamp()", r"^rewriting public\.invoice"),
    ("CREATE TRIGGER zz BEFORE UPDATE ON invoice FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()",
     r"^CREATE TRIGGER zz on public\.invoice is refused"),
    ("CREATE RULE r AS ON UPDATE TO invoice DO INSTEAD NOTHING", r"^CREATE RULE r on public\.invoice is refused"),
    ("ALTER TRIGGER ll_10_final_update ON invoice RENAME TO ll_10_renamed", r"^ALTER TRIGGER .* is refused"),
    ("COMMENT ON TRIGGER ll_10_final_update ON invoice IS 'ledgerlock:forged'", r"^COMMENT .* is refused"),
    # renames: the trail files the rows under the table's name and keeps them keyed by column name, so each row
    # would read as written behind the trail for good (verify_audit failed after ALTER TABLE invoice RENAME TO)
    ("ALTER TABLE invoice RENAME TO sales_invoice", r"^ALTER TABLE public\.sales_invoice is refused: guard ll_\d\d_"
                                                   r"\w+ no longer matches the definition ledgerlock installed, which "
                                                   r"names the table \(renamed, or moved to another schema\), and the "
                                                   r"audit trail files the rows of protected table public\.sales_"
                                                   r"invoice under its name"),
    ("ALTER TABLE invoice RENAME COLUMN note TO remark",
     r"^renaming a column of public\.invoice \(to remark\) is refused: protected table public\.invoice keeps its "
     r"rows in the audit trail as images keyed by column name"),
    ("ALTER TABLE invoice RENAME COLUMN id TO invoice_id", r"^renaming a column of public\.invoice \(to invoice_id\)"),
    ("ALTER TABLE invoice RENAME issued_on TO booked_on", r"^renaming a column of public\.invoice \(to booked_on\)"),
])
def test_the_owning_application_cannot_switch_the_guards_off(app_owns_invoice, unchanged, stmt, match):
    unchanged(FINAL_ROW)
    with refused("LL008", match):
        app_owns_invoice.execute(stmt)
    with refused("LL001"):
        app_owns_invoice.execute("UPDATE invoice SET amount = 0 WHERE id = 1")


def test_moving_a_protected_table_to_another_schema_is_refused_and_its_rows_still_verify(db, app_owns_invoice):
    """SET SCHEMA renames the table as the trail knows it (its qualified name): refused like RENAME TO, and the
    trail still verifies."""
    db.owner().execute("CREATE SCHEMA archive AUTHORIZATION ll_app")
    with refused("LL008", r"^ALTER TABLE archive\.invoice is refused: guard ll_\d\d_\w+ no longer matches"):
        app_owns_invoice.execute("ALTER TABLE invoice SET SCHEMA archive")
    app_owns_invoice.execute("ALTER TABLE quote SET SCHEMA archive")  # the neighbour: not protected
    assert db.connect("auditor").execute("SELECT ok, problems FROM ledgerlock.verify_audit()").fetchone() == (True, 0)


def test_renaming_the_schema_of_a_protected_table_is_refused_and_its_rows_still_verify(db, app_owns_invoice):
    """ALTER SCHEMA ... RENAME TO renames every table in the schema at once. The schema's owner (the database
    owner for public, often the application's login) did it unrefused: every protected table in it read as
    renamed, to doctor and to verify_audit. Refused like the table's own rename; a schema of unprotected tables
    is renamed."""
    owner = db.owner()
    owner.execute("ALTER SCHEMA public OWNER TO ll_app")
    owner.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO ll_app").format(sql.Identifier(db.name)))  # as its owner
    with refused("LL008", r"^ALTER SCHEMA \.\.\. RENAME TO books \(it holds books\.invoice\) is refused: guard "
                          r"ll_\d\d_\w+ no longer matches the definition ledgerlock installed"):
        app_owns_invoice.execute("ALTER SCHEMA public RENAME TO books")
    with refused("LL001"):
        app_owns_invoice.execute("UPDATE invoice SET amount = 0 WHERE id = 1")
    owner.execute("CREATE SCHEMA scratch AUTHORIZATION ll_app")
    app_owns_invoice.execute("CREATE TABLE scratch.note (id integer PRIMARY KEY)")
    app_owns_invoice.execute("ALTER SCHEMA scratch RENAME TO drafts")  # the neighbour: nothing protected in it
    assert owner.execute("SELECT to_regclass('drafts.note') IS NOT NULL").fetchone() == (True,)
    assert db.connect("auditor").execute("SELECT ok, problems FROM ledgerlock.verify_audit()").fetchone() == (True, 0)


def test_renaming_the_schema_of_a_partition_installs_its_guards_again(db, journal, ddl_guard):
    """A partition in a schema of its own: the schema renamed, the partition's guards are installed again, as for
    its own rename (its rows are filed under the protected table)."""
    owner = db.owner()
    owner.execute("CREATE SCHEMA y2025; ALTER TABLE ledger_entry_2025 SET SCHEMA y2025")
    owner.execute("ALTER SCHEMA y2025 RENAME TO archive_2025")
    assert owner.execute("SELECT count(*) FROM ledgerlock.doctor_findings() WHERE severity = 'critical'"
                         ).fetchone() == (0,)
    with refused("LL001", r"is final and cannot be updated"):
        journal.execute("UPDATE ledger_entry SET amount = 0 WHERE id = 1")
    assert db.connect("auditor").execute("SELECT ok, problems FROM ledgerlock.verify_audit()").fetchone() == (True, 0)


def test_a_typed_protected_tables_columns_cannot_be_renamed_through_its_type(db, ddl_guard):
    """A table made OF a composite type has its type's attributes for columns: ALTER TYPE ... RENAME ATTRIBUTE
    ... CASCADE renamed the protected table's column with no ALTER TABLE, past the guard (verification then
    reported the column gone). Refused as the column's own rename; adding an attribute passes."""
    owner = db.owner()
    owner.execute("""CREATE TYPE doc_t AS (id int, issued_on date, status text, note text);
        CREATE TABLE doc OF doc_t (PRIMARY KEY (id), issued_on WITH OPTIONS NOT NULL);
        GRANT SELECT, INSERT, UPDATE, DELETE ON doc TO ll_app;
        SELECT ledgerlock.protect('doc', 'issued_on', final_when => $$status = 'final'$$);""")
    db.connect("app").execute("INSERT INTO doc VALUES (1, '2026-01-05', 'final', 'n')")
    with refused("LL008", r"^renaming a column of public\.doc \(to remark\) is refused: protected table public\.doc "
                          r"keeps its rows in the audit trail as images keyed by column name"):
        owner.execute("ALTER TYPE doc_t RENAME ATTRIBUTE note TO remark CASCADE")
    with refused("LL008", r"^DROP table column public\.doc\.note is refused"):
        owner.execute("ALTER TYPE doc_t DROP ATTRIBUTE note CASCADE")
    owner.execute("ALTER TYPE doc_t ADD ATTRIBUTE memo text CASCADE")  # the neighbour
    assert db.connect("auditor").execute("SELECT ok, problems FROM ledgerlock.verify_audit()").fetchone() == (True, 0)


def test_a_scope_column_cannot_be_given_a_nondeterministic_collation(db, ddl_guard):
    """protect refuses a scope column whose collation calls 'ACME' and 'acme' equal (a lock names the text, the
    application's queries the company); changing the collation afterwards rewrites no row and fired no check, so
    the guard refuses it too, directly and through a typed table's type. The neighbours: a
    deterministic collation on the scope column, a case-insensitive one on a column that is not the scope."""
    owner = db.owner()
    ci = case_insensitive_collation(owner)
    owner.execute("""CREATE TABLE bill (id int PRIMARY KEY, company text NOT NULL, on_day date NOT NULL, note text);
        CREATE TYPE doc_t AS (id int, company text, on_day date);
        CREATE TABLE doc OF doc_t (PRIMARY KEY (id), on_day WITH OPTIONS NOT NULL);
        ALTER TABLE bill OWNER TO ll_app;
        SELECT ledgerlock.protect('bill', 'on_day', 'company');
        SELECT ledgerlock.protect('doc', 'on_day', 'company')""")
    app = db.connect("app")
    why = (r"is refused: public\.ci is nondeterministic: it calls texts that differ equal \('ACME' and 'acme'\), "
           r"which locks, scope marks and number series tell apart: a row of protected table public\.bill could be "
           r"written into a locked window of its scope under another spelling$")
    with refused("LL008", r"^changing the collation of scope column public\.bill\.company to public\.ci " + why):
        app.execute(f"ALTER TABLE bill ALTER COLUMN company TYPE text COLLATE {ci}")
    with refused("LL008", r"^changing the collation of scope column public\.doc\.company to public\.ci is "):
        owner.execute(f"ALTER TYPE doc_t ALTER ATTRIBUTE company TYPE text COLLATE {ci} CASCADE")
    assert owner.execute("SELECT count(*) FROM pg_attribute WHERE attrelid IN ('bill'::regclass, 'doc'::regclass) "
                         "AND attname = 'company' AND attcollation = %s::regcollation", (ci,)).fetchone() == (0,)
    app.execute('ALTER TABLE bill ALTER COLUMN company TYPE text COLLATE "C"')
    app.execute(f"ALTER TABLE bill ALTER COLUMN note TYPE text COLLATE {ci}")
    owner.execute('ALTER TYPE doc_t ALTER ATTRIBUTE company TYPE text COLLATE "C" CASCADE')
    assert owner.execute("SELECT count(*) FROM ledgerlock.ddl_snapshot").fetchone() == (0,)


def test_a_protected_table_may_not_inherit_from_another(db):
    """A statement on the table a protected one inherits from (INHERITS) writes the protected table's rows with
    its row triggers but not its statement triggers, which fire only for a statement that names it: as the
    application, UPDATE base SET status = 'final' made a row final with a number whose range the settle step
    never closed, and no audit event (verification: 4 problems). protect refuses such a table, the DDL guard
    an INHERIT of a protected one (before 18 PostgreSQL refuses it itself: the capture's triggers have
    transition tables; 18 lets it through), and doctor reports one protected before."""
    owner = db.owner()
    owner.execute("""CREATE TABLE base (id int NOT NULL, issued_on date NOT NULL, status text, note text);
        CREATE TABLE doc2 (PRIMARY KEY (id)) INHERITS (base);
        GRANT SELECT, INSERT, UPDATE, DELETE ON doc2, base TO ll_app;""")
    protect = "SELECT ledgerlock.protect('doc2', 'issued_on', final_when => $$status = 'final'$$)"
    with refused("22023", r"^protect: public\.doc2 inherits from public\.base, and a statement on public\.base writes "
                          r"its rows without firing its statement triggers \(the audit capture, the numbering's "
                          r"settle step\)$") as info:
        owner.execute(protect)
    assert info.value.diag.message_hint.startswith("ALTER TABLE public.doc2 NO INHERIT public.base")
    owner.execute("ALTER TABLE doc2 NO INHERIT base")
    lives_ok(owner, protect)
    owner.execute("SELECT ledgerlock.install_ddl_guard()")
    with pytest.raises(psycopg.Error) as info:
        owner.execute("ALTER TABLE doc2 INHERIT base")
    # the guard, or a release of PostgreSQL that refuses it itself (the capture's triggers have transition tables)
    assert (sqlstate(info.value), str(info.value).splitlines()[0]) in {
        ("LL008", "ALTER TABLE public.doc2 is refused: protected table public.doc2 would inherit from public.base, "
                  "and a statement on public.base writes its rows without firing its statement triggers (the audit "
                  "capture, the numbering's settle step)"),
        ("0A000", 'trigger "ll_90_audit_insert" prevents table "doc2" from becoming an inheritance child'),
        ("0A000", 'trigger "ll_90_audit_update" prevents table "doc2" from becoming an inheritance child'),
        ("0A000", 'trigger "ll_90_audit_delete" prevents table "doc2" from becoming an inheritance child')}
    owner.execute("SELECT ledgerlock.uninstall_ddl_guard()")
    lives_ok(owner, "ALTER TABLE base ADD COLUMN memo text; ALTER TABLE base DROP COLUMN memo")  # base: not protected
    # protected before protect refused it (put back here as a superuser: the capture's triggers dropped for the
    # INHERIT, then installed again), doctor reports it
    for op in ("insert", "update", "delete"):
        owner.execute(f"DROP TRIGGER ll_90_audit_{op} ON doc2")
    owner.execute("ALTER TABLE doc2 INHERIT base; SELECT ledgerlock.reinstall_guards()")
    found = db.connect("auditor").execute("SELECT finding, fix FROM ledgerlock.doctor_findings() "
                                          "WHERE severity = 'critical' AND object = 'public.doc2'").fetchall()
    assert ("public.doc2 inherits from public.base", "ALTER TABLE public.doc2 NO INHERIT public.base") in found, found


def test_a_column_a_protected_parent_inherits_cannot_be_renamed_on_the_table_it_inherits_from(db, ddl_guard):
    """The table a protected line takes its date from may inherit its columns (it is not protected): renaming
    its date column on the table it inherits from renamed the column the line's checks read, past the guard.
    Refused as its own rename; a column nobody reads is renamed."""
    owner = db.owner()
    owner.execute("""CREATE TABLE base (id int NOT NULL, posted_on date, memo text);
        CREATE TABLE header (PRIMARY KEY (id)) INHERITS (base);
        CREATE TABLE line (id int PRIMARY KEY, header_id int REFERENCES header);
        SELECT ledgerlock.protect('line', date_column => 'header_id.posted_on');""")
    with refused("LL008", r"^renaming a column of public\.header \(to booked_on\) is refused: protected table "
                          r"public\.line takes its date from public\.header through header_id\.posted_on"):
        owner.execute("ALTER TABLE base RENAME COLUMN posted_on TO booked_on")
    owner.execute("ALTER TABLE base RENAME COLUMN memo TO note")


def test_a_partition_cannot_bring_a_trigger_of_its_own_into_a_protected_table(db, journal, ddl_guard):
    """The guard refuses CREATE TRIGGER on a protected table and its partitions; a table attached as a partition
    brought its own along: a BEFORE UPDATE trigger named zz (it fires after ll_10) set the amount of a final
    entry to 0 after the final-row guard had accepted the update (reproduced, PG 16). Refused, as a rule is; the
    partition attached without it holds its rows final; without the guard, doctor warns of such a trigger."""
    owner = db.owner()
    owner.execute("""CREATE TABLE ledger_entry_2027 (LIKE ledger_entry INCLUDING ALL);
        CREATE FUNCTION zero_it() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.amount := 0; RETURN NEW; END $$;
        CREATE TRIGGER zz BEFORE UPDATE ON ledger_entry_2027 FOR EACH ROW EXECUTE FUNCTION zero_it();
        CREATE RULE no_delete AS ON DELETE TO ledger_entry_2027 DO INSTEAD NOTHING;""")
    attach = ("ALTER TABLE ledger_entry ATTACH PARTITION ledger_entry_2027 "
              "FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')")
    with refused("LL008", r"^attaching partition public\.ledger_entry_2027 to public\.ledger_entry is refused: it "
                          r"carries rule no_delete on public\.ledger_entry_2027, which would run on rows of protected "
                          r"table public\.ledger_entry beside ledgerlock's guards"):
        owner.execute(attach)
    owner.execute("DROP RULE no_delete ON ledger_entry_2027")
    with refused("LL008", r"^attaching partition public\.ledger_entry_2027 to public\.ledger_entry is refused: it "
                          r"carries trigger zz on public\.ledger_entry_2027"):
        owner.execute(attach)
    owner.execute("DROP TRIGGER zz ON ledger_entry_2027")
    owner.execute(attach)  # the neighbour
    owner.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON ledger_entry_2027 TO ll_app")
    journal.execute("INSERT INTO ledger_entry VALUES (9, '2027-03-01', 'final', 90)")
    with refused("LL001"):
        journal.execute("UPDATE ledger_entry SET amount = 0 WHERE id = 9")
    # without the guard the owner can attach one: doctor warns of it
    owner.execute("SELECT ledgerlock.uninstall_ddl_guard()")
    owner.execute("CREATE TRIGGER zz BEFORE UPDATE ON ledger_entry_2027 FOR EACH ROW EXECUTE FUNCTION zero_it()")
    found = db.connect("auditor").execute("SELECT finding FROM ledgerlock.doctor_findings() "
                                          "WHERE check_name = 'foreign trigger'").fetchall()
    assert ("BEFORE UPDATE trigger zz on public.ledger_entry_2027 fires after ledgerlock's final-row guard",) in found


def test_an_unlogged_table_cannot_be_attached_as_a_partition_of_a_protected_table(db, journal, ddl_guard):
    """CREATE UNLOGGED TABLE ... PARTITION OF a protected table was refused, ATTACH PARTITION of an unlogged table
    was not: its rows, final ones included, would be emptied by a crash. Refused alike; logged, it attaches;
    without the guard, doctor reports it."""
    owner = db.owner()
    owner.execute("CREATE UNLOGGED TABLE ledger_entry_2027 (LIKE ledger_entry INCLUDING ALL)")
    attach = ("ALTER TABLE ledger_entry ATTACH PARTITION ledger_entry_2027 "
              "FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')")
    with refused("LL008", r"^attaching partition public\.ledger_entry_2027 to public\.ledger_entry is refused: "
                          r"protected table public\.ledger_entry must stay logged") as info:
        owner.execute(attach)
    assert info.value.diag.message_hint == "ALTER TABLE public.ledger_entry_2027 SET LOGGED, then attach it"
    owner.execute("SELECT ledgerlock.uninstall_ddl_guard()")
    owner.execute(attach)
    found = db.connect("auditor").execute("SELECT finding FROM ledgerlock.doctor_findings() "
                                          "WHERE severity = 'critical' AND object LIKE '%ledger_entry%'").fetchall()
    assert ("public.ledger_entry_2027 is UNLOGGED",) in found, found
    owner.execute("ALTER TABLE ledger_entry DETACH PARTITION ledger_entry_2027; "
                  "ALTER TABLE ledger_entry_2027 SET LOGGED; SELECT ledgerlock.install_ddl_guard()")
    owner.execute(attach)  # the neighbour


def test_the_key_a_protected_tables_rows_are_named_by_cannot_be_dropped(db, app_owns_invoice):
    """protect requires a primary key: the trail, the refusals and verification name rows by it. The owning
    application dropped it (the guard let it through), inserted a second invoice id=1 beside the final one, and
    verification reported the final invoice as changed. Refused now, also as a unique index dropped after the
    key was moved onto it; moving the key onto a unique index passes; without the guard, doctor reports it."""
    owner = db.owner()
    app = app_owns_invoice
    with refused("LL008", r"^DROP table constraint invoice_pkey on public\.invoice is refused: public\.invoice has "
                          r"no primary key or unique index on \(id\), the key its rows are named by"):
        app.execute("ALTER TABLE invoice DROP CONSTRAINT invoice_pkey CASCADE")
    app.execute("CREATE UNIQUE INDEX invoice_id_key ON invoice (id); "
                "ALTER TABLE invoice DROP CONSTRAINT invoice_pkey CASCADE")  # the neighbour: still a unique key
    with refused("LL008", r"^DROP index public\.invoice_id_key is refused: public\.invoice has no primary key"):
        app.execute("DROP INDEX invoice_id_key")
    with refused("23505"):
        app.execute("INSERT INTO invoice (id, company_id, amount) VALUES (1, 1, 5)")
    owner.execute("SELECT ledgerlock.uninstall_ddl_guard()")
    app.execute("DROP INDEX invoice_id_key")
    found = db.connect("auditor").execute("SELECT finding, fix FROM ledgerlock.doctor_findings() "
                                          "WHERE severity = 'critical' AND object = 'public.invoice'").fetchall()
    assert ("public.invoice has no primary key or unique index on (id), the key its rows are named by",
            "ALTER TABLE public.invoice ADD PRIMARY KEY (id)") in found, found


def test_a_refused_concurrent_detach_is_reported_by_doctor_with_the_way_back(db, journal, ddl_guard):
    """DETACH PARTITION ... CONCURRENTLY commits its first step before any event trigger fires: the guard
    refuses the second, which leaves the partition pending. Its final rows stay guarded (its own triggers),
    but new queries of the protected table no longer see them, and verification reports them missing. Doctor
    names the cause and the way back, which restores the books."""
    with psycopg.connect(db.conninfo(), autocommit=True) as other:
        with refused("LL008", r"^detaching partition public\.ledger_entry_2025 from public\.ledger_entry is "
                              r"refused: its final rows would no longer be guarded"):
            other.execute("ALTER TABLE ledger_entry DETACH PARTITION ledger_entry_2025 CONCURRENTLY")
    assert journal.execute("SELECT id FROM ledger_entry ORDER BY id").fetchall() == [(3,)]
    with refused("LL001"):
        journal.execute("UPDATE ledger_entry_2025 SET amount = 0 WHERE id = 1")
    auditor = db.connect("auditor")
    [(finding, fix)] = auditor.execute("SELECT finding, fix FROM ledgerlock.doctor_findings() WHERE severity = "
                                       "'critical' AND check_name = 'table'").fetchall()
    assert finding == ("partition public.ledger_entry_2025 of public.ledger_entry is being detached (DETACH "
                       "PARTITION ... CONCURRENTLY, whose second step the DDL guard refused)")
    owner = db.owner()
    owner.execute(fix.removeprefix("as a superuser: "))
    assert journal.execute("SELECT id FROM ledger_entry ORDER BY id").fetchall() == [(1,), (2,), (3,)]
    assert auditor.execute("SELECT ok, problems FROM ledgerlock.verify_audit()").fetchone() == (True, 0)
    assert auditor.execute("SELECT count(*) FROM ledgerlock.doctor_findings() WHERE severity = 'critical'"
                           ).fetchone() == (0,)


def test_renaming_a_partition_installs_its_guards_again_and_its_rules_hold(db, journal, ddl_guard):
    """A partition's rows are filed under the table it belongs to, so its name matters only to its own guards'
    recorded definitions: renamed (or moved), its guards are installed again, doctor finds nothing, the final
    rows stay final and the trail verifies."""
    owner = db.owner()
    owner.execute("ALTER TABLE ledger_entry_2025 RENAME TO ledger_entry_y2025")
    assert owner.execute("SELECT count(*) FROM ledgerlock.doctor_findings() WHERE severity = 'critical'"
                         ).fetchone() == (0,)
    with refused("LL001", r"^ledger_entry(_y2025)? id=1 posted_on=2025-03-01 is final and cannot be updated"):
        journal.execute("UPDATE ledger_entry_y2025 SET amount = 0 WHERE id = 1")
    journal.execute("UPDATE ledger_entry_y2025 SET amount = 21 WHERE id = 2")
    with refused("LL008"):
        journal.execute("TRUNCATE ledger_entry_y2025")
    assert db.connect("auditor").execute("SELECT ok, problems FROM ledgerlock.verify_audit()").fetchone() == (True, 0)


def test_unlogged_is_refused(db, ddl_guard, unchanged):
    owner = db.owner()
    owner.execute("SELECT ledgerlock.protect('journal_entry', 'posted_on')")
    with refused("LL008", r"^rewriting public\.journal_entry"):
        owner.execute("ALTER TABLE journal_entry SET UNLOGGED")


def test_ordinary_ddl_still_works(app_owns_invoice):
    """The neighbours: harmless DDL on the protected table, anything on tables ledgerlock does not protect."""
    app_owns_invoice.execute("ALTER TABLE invoice ADD COLUMN memo text")
    app_owns_invoice.execute("ALTER TABLE invoice RENAME CONSTRAINT invoice_pkey TO invoice_pk")
    app_owns_invoice.execute("ALTER INDEX invoice_pk RENAME TO invoice_key")
    app_owns_invoice.execute("CREATE INDEX ON invoice (issued_on)")
    app_owns_invoice.execute("ALTER TABLE quote DISABLE TRIGGER USER")
    app_owns_invoice.execute("CREATE TRIGGER zz BEFORE UPDATE ON quote FOR EACH ROW "
                             "EXECUTE FUNCTION suppress_redundant_updates_trigger()")
    app_owns_invoice.execute("ALTER TABLE quote ALTER COLUMN amount TYPE numeric(14, 2)")
    app_owns_invoice.execute("ALTER TABLE quote RENAME COLUMN amount TO total")  # not protected: renamed
    app_owns_invoice.execute("ALTER TABLE quote RENAME TO offer")
    app_owns_invoice.execute("DROP TABLE offer")


def test_a_json_column_the_owning_application_adds_gets_its_capture_made_again(db, app_owns_invoice):
    """The guard makes the table's audit capture again, as ledgerlock, for a json column added by an owner that
    is no ledgerlock role: the column's exact text is recorded, and the application gets no say in the copy."""
    app = app_owns_invoice
    app.execute("ALTER TABLE invoice ADD COLUMN meta json")
    app.execute("""UPDATE invoice SET meta = '{"a": 2, "a": 1}' WHERE id = 2""")
    auditor = db.connect("auditor")
    assert auditor.execute("SELECT new_row ->> 'meta' FROM ledgerlock.audit_event "
                           "WHERE table_oid = 'invoice'::regclass ORDER BY seq DESC LIMIT 1").fetchone()[0] == (
        '{"a": 2, "a": 1}')
    assert auditor.execute("SELECT count(*) FROM ledgerlock.audit_discrepancies()").fetchone()[0] == 0
    capture = db.owner().execute("SELECT p.proowner::regrole::text, has_function_privilege('ll_app', p.oid, 'EXECUTE') "
                                 "FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid "
                                 "WHERE t.tgrelid = 'invoice'::regclass AND t.tgname = 'll_90_audit_update'").fetchone()
    assert capture[0] != "ll_app" and capture[1] is False


def test_even_a_superuser_in_replica_mode_is_stopped(db, invoices, ddl_guard, unchanged):
    owner = db.owner()
    owner.execute("SET session_replication_role = replica")  # event triggers are ENABLE ALWAYS too
    unchanged(FINAL_ROW)
    with refused("LL008", r"^dropping trigger ll_10_final_update"):
        owner.execute("DROP TRIGGER ll_10_final_update ON invoice")
    with refused("LL008", r"^disabling trigger"):
        owner.execute("ALTER TABLE invoice DISABLE TRIGGER USER")


def test_protect_unprotect_reconfigure_and_migrate_go_through(db, invoices, ddl_guard):
    admin = db.connect("admin")
    db.protect_invoice(admin, mutable_columns=["paid"], weaken_reason="reconciliation is final")  # reconfigure
    admin.execute("SELECT ledgerlock.reinstall_guards()")
    owner = db.owner()
    owner.execute("DELETE FROM ledgerlock.installed_code")  # as after an upgrade
    report = migrate.migrate(db.conninfo())  # a superuser runs migrate
    assert report.code_installed
    with refused("LL001"):
        invoices.execute("UPDATE invoice SET reconciled = true WHERE id = 1")
    # the table holds a final row: only a superuser may retire it
    owner.execute("SELECT ledgerlock.unprotect('invoice', 'moving to a new ledger')")
    owner.execute("ALTER TABLE invoice DISABLE TRIGGER ALL")  # no longer protected: ordinary DDL
    assert owner.execute("SELECT count(*) FROM ledgerlock.ddl_permit").fetchone()[0] == 0


def test_no_setting_opens_the_guard(db, app_owns_invoice, unchanged):
    unchanged(FINAL_ROW)
    for name in ("ledgerlock.ddl_permit", "ledgerlock.bypass", "ledgerlock.unprotect", "ledgerlock.reason"):
        app_owns_invoice.execute(sql.SQL("SET {} = 'on'").format(sql.Identifier(*name.split("."))))
    with refused("LL008"):
        app_owns_invoice.execute("DROP TRIGGER ll_10_final_update ON invoice")
    with refused("42501"):  # and the permit table itself is out of reach
        app_owns_invoice.execute("INSERT INTO ledgerlock.ddl_permit VALUES (pg_current_xact_id(), 'invoice'::regclass)")


def test_a_member_of_the_owner_role_cannot_change_ledgerlock_itself(healthy):
    """Under the DDL guard, ledgerlock's code changes only through migrate run by a superuser."""
    mallory = f"mallory_{healthy.owner}"
    with psycopg.connect(healthy.conninfo(), autocommit=True) as su:
        su.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(sql.Identifier(mallory),
                                                                     sql.Identifier(healthy.owner)))
    try:
        with psycopg.connect(healthy.cluster.server.conninfo(dbname=healthy.name, user=mallory),
                             autocommit=True) as conn:
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(healthy.owner)))
            with refused("LL008", r"^ALTER FUNCTION ledgerlock\.guard_final_row\(\) is refused"):
                conn.execute("ALTER FUNCTION ledgerlock.guard_final_row() RESET search_path")
            with refused("LL008", r"ledgerlock's own code"):
                conn.execute("CREATE OR REPLACE FUNCTION ledgerlock.has_capability(capability text) RETURNS boolean "
                             "LANGUAGE sql AS $$ SELECT true $$")
            with refused("LL008", r"ledgerlock's own code"):
                conn.execute("DROP FUNCTION ledgerlock.guard_truncate() CASCADE")
            with refused("LL008", r"^DROP table ledgerlock_gate\.sealer is refused"):
                conn.execute("DROP TABLE ledgerlock_gate.sealer")
            with refused("LL008", r"^dropping trigger ll_10_final_update"):
                conn.execute("DROP TRIGGER ll_10_final_update ON invoice")
            conn.execute("CREATE TABLE scratch (x int)")  # the neighbour: DDL outside ledgerlock
    finally:
        with psycopg.connect(healthy.conninfo(), autocommit=True) as su:
            su.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(mallory)))
            su.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(mallory)))


def test_the_owning_application_cannot_hang_rows_under_a_protected_table_by_inheritance(db, app_owns_invoice):
    """A table that inherits from a protected one: its rows read as the protected table's (SELECT ... FROM
    invoice includes them), and PostgreSQL fires none of the parent's triggers for a write to it. The owner
    could put a final invoice into a hard-locked month that way, unchecked and unaudited."""
    app = app_owns_invoice
    db.connect("controller").execute("SELECT ledgerlock.lock_period('1', '2025-03-01', '2025-03-31', 'hard')")
    with refused("LL008", r"^CREATE TABLE public\.shadow_invoice is refused: it would inherit from protected table "
                          r"public\.invoice"):
        app.execute("CREATE TABLE shadow_invoice () INHERITS (invoice)")
    app.execute("CREATE TABLE shadow_invoice (LIKE invoice INCLUDING CONSTRAINTS)")
    with refused("LL008", r"^ALTER TABLE public\.shadow_invoice is refused: it would inherit from protected table "
                          r"public\.invoice"):
        app.execute("ALTER TABLE shadow_invoice INHERIT invoice")
    assert app.execute("SELECT count(*) FROM invoice").fetchone() == (2,)
    # the neighbour: inheriting from a table ledgerlock does not protect
    app.execute("CREATE TABLE quote_archive () INHERITS (quote)")
    assert db.connect("auditor").execute("SELECT ok, problems FROM ledgerlock.verify_audit()").fetchone() == (True, 0)


def test_protect_refuses_a_table_other_tables_inherit_from(db):
    owner = db.owner()
    owner.execute("CREATE TABLE invoice_2019 () INHERITS (invoice)")
    with refused("22023", r"^protect: public\.invoice has tables inheriting from it \(public\.invoice_2019\), whose "
                          r"rows read as its own but are written past its guards$"):
        db.protect_invoice()
    owner.execute("DROP TABLE invoice_2019")
    db.protect_invoice()


def test_a_partition_attached_with_rows_is_refused(db, journal, ddl_guard):
    """ATTACH PARTITION brings a table's rows into the protected table at once: no check of ledgerlock saw
    them and no audit event records them (a final row in a hard-locked month, a forged number). Refused for a
    table that holds rows; an empty one is attached and guarded (test_partitions.py)."""
    owner = db.owner()
    owner.execute("CREATE TABLE ledger_entry_2028 (LIKE ledger_entry)")
    owner.execute("INSERT INTO ledger_entry_2028 VALUES (8, '2028-03-01', 'final', 80)")
    with refused("LL008", r"^attaching partition public\.ledger_entry_2028 to public\.ledger_entry is refused: it "
                          r"holds rows that no check of ledgerlock saw and no audit event records"):
        owner.execute("ALTER TABLE ledger_entry ATTACH PARTITION ledger_entry_2028 "
                      "FOR VALUES FROM ('2028-01-01') TO ('2029-01-01')")
    assert owner.execute("SELECT count(*) FROM ledger_entry").fetchone() == (3,)
    # the way: attach it empty, and write its rows through the protected table (checked and audited)
    owner.execute("CREATE TABLE staging AS SELECT * FROM ledger_entry_2028")
    owner.execute("TRUNCATE ledger_entry_2028")
    owner.execute("ALTER TABLE ledger_entry ATTACH PARTITION ledger_entry_2028 "
                  "FOR VALUES FROM ('2028-01-01') TO ('2029-01-01')")
    owner.execute("INSERT INTO ledger_entry SELECT * FROM staging")
    with refused("LL001"):
        owner.execute("UPDATE ledger_entry SET amount = 0 WHERE id = 8")
    assert db.connect("auditor").execute("SELECT ok, problems FROM ledgerlock.verify_audit()").fetchone() == (True, 0)


def test_without_the_guard_rows_hung_under_a_protected_table_are_reported_by_verification(db, invoices, journal):
    """Where no DDL guard refuses them (a managed service), a table made to inherit from a protected one and a
    partition attached with rows put rows in it that no event records: verification names each."""
    owner = db.owner()
    owner.execute("CREATE TABLE shadow_invoice () INHERITS (invoice)")
    owner.execute("INSERT INTO shadow_invoice (id, company_id, status, amount) VALUES (7, 1, 'approved', 5)")
    owner.execute("CREATE TABLE ledger_entry_2028 (LIKE ledger_entry)")
    owner.execute("INSERT INTO ledger_entry_2028 VALUES (8, '2028-03-01', 'final', 80)")
    owner.execute("ALTER TABLE ledger_entry ATTACH PARTITION ledger_entry_2028 "
                  "FOR VALUES FROM ('2028-01-01') TO ('2029-01-01')")
    found = db.connect("auditor").execute(
        "SELECT code, table_name, row_key FROM ledgerlock.audit_discrepancies() ORDER BY 2").fetchall()
    assert found == [("row_unrecorded", "public.invoice", {"id": 7}),
                     ("row_unrecorded", "public.ledger_entry", {"id": 8, "posted_on": "2028-03-01"})]


def test_installing_the_guard_gives_a_partition_made_without_it_its_truncate_guard(db, journal):
    """A partition created where no guard ran the installers lacks its TRUNCATE guard; the guard, installed
    later, takes a partition without one for a new or attached one (refused when it holds rows). Installing
    the guard gives every partition what it lacks first, so the table's next DDL goes through."""
    owner = db.owner()
    owner.execute("CREATE TABLE ledger_entry_2027 PARTITION OF ledger_entry "
                  "FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')")
    owner.execute("GRANT ALL ON ledger_entry_2027 TO ll_app")
    journal.execute("INSERT INTO ledger_entry VALUES (9, '2027-05-01', 'draft', 90)")  # checked and audited
    assert owner.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'ledger_entry_2027'::regclass "
                         "AND tgname = 'll_00_truncate'").fetchone() == (0,)
    owner.execute("SELECT ledgerlock.install_ddl_guard()")
    assert owner.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'ledger_entry_2027'::regclass "
                         "AND tgname = 'll_00_truncate'").fetchone() == (1,)
    owner.execute("ALTER TABLE ledger_entry ADD COLUMN memo text")
    with refused("LL008"):
        journal.execute("TRUNCATE ledger_entry_2027")


def test_a_label_protected_rows_hold_cannot_be_renamed(db, ddl_guard):
    """ALTER TYPE ... RENAME VALUE changes every row that holds the label, with no write: a final bill's status
    read 'posted' where its event says 'approved', and the numbering, whose stored final_when names the label,
    refused every write with 22P02. Refused for an enum a protected column holds, directly, through a domain, as
    an array, in a composite type or as a range's subtype; adding a label, and renaming one of an enum no
    protected column holds, go through."""
    owner = db.owner()
    owner.execute("""
        CREATE TYPE bill_status AS ENUM ('draft', 'approved');
        CREATE TYPE tag AS ENUM ('urgent', 'late');
        CREATE TYPE ccy AS ENUM ('EUR', 'USD');
        CREATE DOMAIN bill_ccy AS ccy;
        CREATE TYPE colour AS ENUM ('red', 'blue');
        CREATE TYPE grade AS ENUM ('low', 'high');
        CREATE TYPE rating AS (agency text, grades grade[]);
        CREATE TYPE size AS ENUM ('s', 'm', 'l');
        CREATE TYPE sizes AS RANGE (subtype = size);
        CREATE TABLE bill (id int PRIMARY KEY, vendor int NOT NULL, booked_on date NOT NULL DEFAULT current_date,
                           status bill_status NOT NULL DEFAULT 'draft', tags tag[], money bill_ccy, number text,
                           rated rating, fits sizes);
        GRANT ALL ON bill TO ll_app""")
    owner.execute("SELECT ledgerlock.protect('bill', 'booked_on', 'vendor', $$status = 'approved'$$, 'number', "
                  "'B-{SEQ}')")
    app = db.connect("app")
    app.execute("INSERT INTO bill (id, vendor, status, tags, money, rated, fits) "
                "VALUES (1, 1, 'approved', '{urgent}', 'EUR', ROW('acme', '{high}'), '[s,l)')")
    for typ, label in (("bill_status", "approved"), ("tag", "urgent"), ("ccy", "EUR"), ("grade", "high"),
                       ("size", "s")):
        with refused("LL008", rf"^renaming label '{label}' of public\.{typ} to 'x' is refused: protected tables "
                              r"hold it"):
            owner.execute(f"ALTER TYPE {typ} RENAME VALUE '{label}' TO 'x'")
    owner.execute("ALTER TYPE bill_status ADD VALUE 'posted'")
    owner.execute("ALTER TYPE colour RENAME VALUE 'red' TO 'crimson'")  # no protected column holds it
    app.execute("INSERT INTO bill (id, vendor) VALUES (2, 1)")
    app.execute("UPDATE bill SET status = 'approved' WHERE id = 2")
    assert app.execute("SELECT number FROM bill ORDER BY id").fetchall() == [("B-1",), ("B-2",)]
    assert db.connect("auditor").execute("SELECT ok FROM ledgerlock.verify_audit()").fetchone() == (True,)


def test_a_guard_an_earlier_release_installed_is_completed_by_a_superuser_s_migrate(db, ddl_guard):
    """A guard installed before the ddl_command_start trigger existed lacks it: doctor reports it missing, and
    `ledgerlock migrate` run by a superuser creates it (only a superuser may); a second migrate changes
    nothing."""
    owner = db.owner()
    owner.execute("DROP EVENT TRIGGER ledgerlock_ddl_guard_start")
    res = CliRunner().invoke(cli, ["--dsn", db.conninfo(), "doctor", "--json"])
    assert res.exit_code == 3 and "event trigger ledgerlock_ddl_guard_start is missing" in res.output
    res = CliRunner().invoke(cli, ["--dsn", db.conninfo(), "migrate"])
    assert res.exit_code == 0, res.output
    assert "completed the DDL guard with the event triggers this release added" in res.output
    assert owner.execute("SELECT evtenabled FROM pg_event_trigger WHERE evtname = 'ledgerlock_ddl_guard_start'"
                         ).fetchone() == ("A",)
    res = CliRunner().invoke(cli, ["--dsn", db.conninfo(), "migrate"])
    assert res.exit_code == 0 and "ledgerlock is up to date; nothing to apply" in res.output
