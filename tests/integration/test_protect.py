"""ledgerlock.protect validates at call time, installs all or nothing, and reconfigures cleanly."""

from __future__ import annotations

import re

import pytest

from lltest import case_insensitive_collation, refused


def guard_triggers(conn, table="invoice"):
    return sorted(
        r[0]
        for r in conn.execute(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass AND tgname LIKE 'll\\_%%'", (table,)
        )
    )


def registered(conn, table="invoice"):
    return conn.execute(
        "SELECT count(*) FROM ledgerlock.protected_table WHERE tbl = %s::regclass", (table,)
    ).fetchone()[0]


@pytest.mark.parametrize(
    ("kwargs", "sqlstate", "match"),
    [
        ({"date_column": "nope"}, "42703", r"date_column: table public.invoice has no column nope"),
        ({"date_column": "note"}, "42804", r"date_column: public\.invoice\.note is of type text"),
        ({"scope_column": "tenant"}, "42703", r"scope_column: table public.invoice has no column tenant"),
        ({"number_column": "num"}, "42703", r"number_column: table public.invoice has no column num"),
        ({"mutable_columns": ["paid", "nope"]}, "42703", r"mutable_columns: table public.invoice has no column nope"),
        ({"mutable_columns": ["issued_on"]}, "22023", r"issued_on cannot be mutable"),
        ({"final_when": "status = "}, "42601", r"final_when .* is not a valid condition on public\.invoice"),
        ({"final_when": "stat = 'paid'"}, "42703", r"final_when .* is not a valid condition.*stat"),
        ({"final_when": "amount + 1"}, "42804", r"final_when .* is of type numeric, not boolean"),
        ({"final_when": "true; drop table invoice"}, "22023", r"must be a single condition"),
        ({"final_when": "status = (select 'paid')"}, "0A000", r"subquer"),
    ],
)
def test_bad_configuration_fails_clearly_and_installs_nothing(db, kwargs, sqlstate, match):
    owner = db.owner()
    with refused(sqlstate, match):
        db.protect_invoice(owner, **kwargs)
    assert registered(owner) == 0
    assert guard_triggers(owner) == []
    assert owner.execute(
        "SELECT count(*) FROM pg_class WHERE relname LIKE '\\_ll\\_deparse%'").fetchone()[0] == 0


def test_unknown_table_fails_clearly(db):
    with refused("42P01", r'relation "no_such_table" does not exist'):
        db.owner().execute("SELECT ledgerlock.protect('no_such_table', 'd')")


def test_table_without_primary_key_is_refused(db):
    owner = db.owner()
    owner.execute("CREATE TABLE nokey (d date)")
    with refused("22023", r"public\.nokey has no primary key"):
        owner.execute("SELECT ledgerlock.protect('nokey', 'd')")


@pytest.mark.parametrize("table", ["ledgerlock.period_lock", "ledgerlock_gate.sealer"])
def test_ledgerlock_s_own_tables_are_not_tables_it_guards(db, table):
    with refused("42809", rf"^protect: {table.replace('.', '[.]')} is a system or ledgerlock table$"):
        db.owner().execute("SELECT ledgerlock.protect(%s, 'from_date')", (table,))


def test_view_is_not_a_table(db):
    owner = db.owner()
    owner.execute("CREATE VIEW v_invoice AS SELECT * FROM invoice")
    with refused("42809", r"public\.v_invoice is not a table"):
        owner.execute("SELECT ledgerlock.protect('v_invoice', 'issued_on')")


def test_reconfiguring_replaces_the_rule_cleanly(db):
    owner = db.owner()
    db.protect_invoice(owner)
    app = db.connect("app")
    app.execute("INSERT INTO invoice (id, company_id, status) VALUES (1, 1, 'approved'), (2, 1, 'paid')")
    # loosening the rules over final rows is a superuser's call here (an admin is refused: test_protect_weakening)
    db.protect_invoice(owner, final_when="status = 'paid'", mutable_columns=["paid", "reconciled", "note"],
                       weaken_reason="approved invoices may still change")
    assert registered(owner) == 1
    final_guards = [t for t in guard_triggers(owner) if t.startswith(("ll_00_", "ll_10_"))]
    assert final_guards == ["ll_00_truncate", "ll_10_final_delete", "ll_10_final_update"]
    app.execute("UPDATE invoice SET amount = 5 WHERE id = 1")  # approved is no longer final
    app.execute("UPDATE invoice SET note = 'n' WHERE id = 2")  # note is now mutable
    with refused("LL001"):
        app.execute("UPDATE invoice SET amount = 5 WHERE id = 2")


def test_protect_without_final_when_installs_no_final_guard(db):
    owner = db.owner()
    owner.execute("SELECT ledgerlock.protect('journal_entry', 'posted_on')")
    assert "ll_10_final_update" not in guard_triggers(owner, "journal_entry")
    assert "ll_00_truncate" in guard_triggers(owner, "journal_entry")


def test_protect_and_unprotect_require_the_admin_role(db):
    with refused("42501", r"permission denied for function protect"):
        db.protect_invoice(db.connect("app"))  # an application is not even allowed to call it
    with refused("LL005", r"protect requires the ledgerlock_admin role; ll_controller is not a member"):
        db.protect_invoice(db.connect("controller"))
    db.protect_invoice(db.connect("admin"))  # an admin may, without owning the table
    assert registered(db.owner()) == 1
    with refused("LL005"):
        db.connect("auditor").execute("SELECT ledgerlock.unprotect('invoice', 'no')")
    with refused("42501"):
        db.connect("app").execute("SELECT ledgerlock.unprotect('invoice', 'no')")


def test_unprotect_needs_a_reason_and_removes_every_guard(db):
    admin = db.connect("admin")
    db.protect_invoice(admin)
    with refused("LL007", r"unprotect requires a reason"):
        admin.execute("SELECT ledgerlock.unprotect('invoice', '  ')")
    assert registered(admin) == 1
    admin.execute("SELECT ledgerlock.unprotect('invoice', 'table retired')")
    owner = db.owner()
    assert registered(owner) == 0
    assert guard_triggers(owner) == []


def test_protect_refuses_when_ledgerlock_owner_cannot_own_the_guards(db):
    owner = db.owner()
    owner.execute("CREATE ROLE ll_other_owner NOLOGIN")
    try:
        owner.execute("CREATE TABLE foreign_owned (id int PRIMARY KEY, d date)")
        owner.execute("ALTER TABLE foreign_owned OWNER TO ll_other_owner")
        # the installer is a superuser here, so it may act for any owner: the check passes
        owner.execute("SELECT ledgerlock.protect('foreign_owned', 'd')")
        assert registered(owner, "foreign_owned") == 1
    finally:
        owner.execute("DROP TABLE IF EXISTS foreign_owned")
        owner.execute("DROP ROLE ll_other_owner")


SCOPE_TYPES_REFUSED = [
    ("float8", "a float prints by the client's extra_float_digits"),
    ("numeric", r"equal numbers print differently \(1\.5 and 1\.50\)"),
    ("numeric(6,2)", r"equal numbers print differently \(1\.5 and 1\.50\)"),
    ("char(4)", r"a char\(n\) keeps its padding in the row's image \('B1  ', which a lock of 'B1' does not name\)"),
    ("timestamptz", "its text can depend on the client's settings"),
    ("interval", "its text can depend on the client's settings"),
]


@pytest.mark.parametrize(("typ", "why"), SCOPE_TYPES_REFUSED)
def test_a_scope_column_that_prints_two_ways_for_one_value_is_refused(db, typ, why):
    """A scope is compared as text with the scopes locks name. Before this was refused, a client with
    extra_float_digits -15 wrote a float8 branch 1.5 into scope '2', past the lock of scope '1.5', and a numeric
    1.50 passed a lock of 1.5 without any setting at all."""
    owner = db.owner()
    owner.execute(f"CREATE TABLE ticket (id int PRIMARY KEY, branch {typ}, on_day date NOT NULL)")
    with refused("42804", r"^scope_column: public\.ticket\.branch is of type .*; a scope must be an integer, text or "
                          r"uuid column$") as info:
        owner.execute("SELECT ledgerlock.protect('ticket', 'on_day', 'branch')")
    assert re.search(rf"^a scope is compared as text with the scopes locks name, and {why}$",
                     info.value.diag.message_detail)
    assert owner.execute("SELECT count(*) FROM ledgerlock.protected_table").fetchone()[0] == 0


def test_a_parent_scope_column_is_held_to_the_same_rule(db):
    owner = db.owner()
    owner.execute("CREATE TABLE branch (id int PRIMARY KEY, code numeric NOT NULL)")
    owner.execute("CREATE TABLE ticket (id int PRIMARY KEY, branch_id int REFERENCES branch, on_day date NOT NULL)")
    with refused("42804", r"^scope_column: public\.branch\.code is of type numeric"):
        owner.execute("SELECT ledgerlock.protect('ticket', 'on_day', 'branch_id.code')")
    owner.execute("ALTER TABLE branch ALTER COLUMN code TYPE text")
    owner.execute("SELECT ledgerlock.protect('ticket', 'on_day', 'branch_id.code')")  # the neighbour


def test_a_scope_column_of_a_nondeterministic_collation_is_refused(db):
    """Under a case-insensitive collation the application's own queries read 'ACME' and 'acme' as one company, but a
    lock, a scope mark and a number series name the text: protected that way, a hard lock of 'acme' let the
    application write 999.00 into the locked January as company 'ACME', and its own report of acme's January
    (`WHERE company = 'acme'`) counted it (PostgreSQL 15, ICU). protect refuses such a column, its own or a parent's;
    a deterministic collation, whatever its order, compares the same bytes as equal only."""
    owner = db.owner()
    ci = case_insensitive_collation(owner)
    owner.execute(f"""CREATE TABLE bill (id int PRIMARY KEY, company text COLLATE {ci} NOT NULL, on_day date NOT NULL);
        CREATE TABLE firm (id int PRIMARY KEY, code text COLLATE {ci} NOT NULL);
        CREATE TABLE bill_line (id int PRIMARY KEY, firm_id int NOT NULL REFERENCES firm,
                                on_day date NOT NULL)""")
    with refused("42804", r"^scope_column: public\.bill\.company has a nondeterministic collation; a scope must "
                          r"compare equal only to the same text$") as info:
        owner.execute("SELECT ledgerlock.protect('bill', 'on_day', 'company')")
    assert info.value.diag.message_detail == (
        "a scope is compared as text with the scopes locks name, and its collation public.ci is nondeterministic: "
        "values it calls equal ('ACME' and 'acme') are different scopes to a lock")
    assert info.value.diag.message_hint == (
        'give the column a deterministic collation (ALTER TABLE public.bill ALTER COLUMN company TYPE text COLLATE '
        '"default"), or scope by a company id')
    with refused("42804", r"^scope_column: public\.firm\.code has a nondeterministic collation"):
        owner.execute("SELECT ledgerlock.protect('bill_line', 'on_day', 'firm_id.code')")
    assert registered(owner, "bill") == 0 and registered(owner, "bill_line") == 0
    # the neighbours: the hint's way out, and a parent's column of a deterministic collation ("C" orders by bytes)
    owner.execute('ALTER TABLE bill ALTER COLUMN company TYPE text COLLATE "default"')
    owner.execute("SELECT ledgerlock.protect('bill', 'on_day', 'company')")
    owner.execute('ALTER TABLE firm ALTER COLUMN code TYPE text COLLATE "C"')
    owner.execute("SELECT ledgerlock.protect('bill_line', 'on_day', 'firm_id.code')")
    assert registered(owner, "bill") == 1 and registered(owner, "bill_line") == 1


@pytest.mark.parametrize("typ", ["int", "bigint", "smallint", "text", "varchar(10)", "uuid",
                                 "company_code", "company_ref"])
def test_integer_text_and_uuid_scope_columns_and_their_domains_are_accepted(db, typ):
    owner = db.owner()
    owner.execute("CREATE DOMAIN company_code AS varchar(8) CHECK (VALUE <> '')")
    owner.execute("CREATE DOMAIN company_ref AS company_code")  # a domain over a domain
    owner.execute(f"CREATE TABLE ticket (id int PRIMARY KEY, branch {typ}, on_day date NOT NULL)")
    owner.execute("SELECT ledgerlock.protect('ticket', 'on_day', 'branch')")
    assert owner.execute("SELECT scope_column FROM ledgerlock.protected_table").fetchone()[0] == "branch"
