"""Row-level security on the tables the rules read. ledgerlock's checks and verification read a protected
table, the parent its scope or date comes from and both tables of a referential rule with their owner's
rights, and a table's owner is subject to its policies only under FORCE ROW LEVEL SECURITY. Under FORCE, a
multi-tenant policy (`company_id = current_setting('app.tenant')`) decided which rows the checks saw, by a
setting any client may change: a tenant's session updated a shared product that another tenant's final
invoice line references, and verification reported every row it could not see as missing. Protect and the
referential rules refuse such a table, the DDL guard refuses FORCE afterwards, doctor reports it. Run as the
setup of docs/hardening.md (a NOLOGIN owner that is no superuser: superusers pass every policy)."""

from __future__ import annotations

import json

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql

from ledgerlock.cli import cli
from lltest import lives_ok, refused

TENANT = "company_id = nullif(current_setting('app.tenant', true), '')::int"


@pytest.fixture
def shop(healthy):
    """A shared product table (no policy), each tenant's invoice lines under a tenant policy (ENABLE, not
    FORCE), granted to the application; returns (owner, admin, app) connections."""
    h = healthy
    owner = psycopg.connect(h.conninfo("as_owner"), autocommit=True)
    owner.execute(f"""
        CREATE TABLE product (id int PRIMARY KEY, name text NOT NULL, price int NOT NULL);
        CREATE TABLE sale_line (id int PRIMARY KEY, company_id int NOT NULL, product_id int NOT NULL REFERENCES product,
                                qty int NOT NULL, sold_on date NOT NULL DEFAULT current_date);
        CREATE INDEX ON sale_line (product_id);
        ALTER TABLE sale_line ENABLE ROW LEVEL SECURITY;
        CREATE POLICY tenant ON sale_line USING ({TENANT});
        CREATE TABLE unrelated (id int PRIMARY KEY, company_id int NOT NULL);
        ALTER TABLE unrelated ENABLE ROW LEVEL SECURITY;
        CREATE POLICY tenant ON unrelated USING ({TENANT})""")
    owner.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON product, sale_line TO {}").format(
        sql.Identifier(h.app)))
    admin = psycopg.connect(h.conninfo("admin"), autocommit=True)
    app = psycopg.connect(h.conninfo("app"), autocommit=True)
    app.execute("INSERT INTO product VALUES (1, 'paper', 5), (2, 'ink', 9)")
    app.execute("SET app.tenant = '1'")
    app.execute("INSERT INTO sale_line VALUES (1, 1, 1, 3)")
    yield owner, admin, app
    for conn in (owner, admin, app):
        conn.close()


def doctor_rows(h, table):
    res = CliRunner().invoke(cli, ["--dsn", h.conninfo(), "doctor", "--json"])
    assert res.exit_code in (0, 3), res.output
    return res.exit_code, [f for f in json.loads(res.stdout) if f["object"] == table and f["check"] == "table"]


def sales(owner, admin, app_role: str, more: str = "", more_tables: tuple[str, ...] = ()) -> None:
    """Each tenant's sales under a tenant policy, numbered when final, and their items as lines (no policy),
    granted to the application; `more` is created with them, and `more_tables` granted with them."""
    owner.execute(f"""
        CREATE TABLE sale (id int PRIMARY KEY, company_id int NOT NULL, sold_on date NOT NULL,
                           status text NOT NULL DEFAULT 'draft', number text);
        ALTER TABLE sale ENABLE ROW LEVEL SECURITY;
        CREATE POLICY tenant ON sale USING ({TENANT});
        CREATE TABLE sale_item (id int PRIMARY KEY, sale_id int NOT NULL REFERENCES sale, qty int NOT NULL);
        {more}""")
    owner.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON {} TO {}").format(
        sql.SQL(", ").join(map(sql.Identifier, ("sale", "sale_item", *more_tables))), sql.Identifier(app_role)))
    lives_ok(admin, "SELECT ledgerlock.protect('sale', 'sold_on', 'company_id', $$status = 'final'$$, 'number', "
                    "'S-{SEQ}')")
    lives_ok(admin, "SELECT ledgerlock.protect_lines('sale_item', 'sale')")


def test_without_force_the_checks_see_every_tenant_s_rows(healthy, shop):
    """The neighbour, the setup docs/hardening.md describes: the policy applies to the application, not to the
    owner ledgerlock's checks run as. A session of tenant 2 cannot see tenant 1's line, and still cannot
    change the product it references; the refusal does not name the line it may not see (as PostgreSQL's own
    foreign-key errors leave the key out under row-level security)."""
    owner, admin, app = shop
    lives_ok(admin, "SELECT ledgerlock.protect_referenced('product', 'sale_line')")
    app.execute("SET app.tenant = '2'")
    assert app.execute("SELECT count(*) FROM sale_line").fetchone() == (0,)
    with refused("LL003", r"^product id=1 is referenced by a row of sale_line and cannot be updated$"):
        app.execute("UPDATE product SET price = 6 WHERE id = 1")
    lives_ok(app, "UPDATE product SET price = 10 WHERE id = 2")
    assert doctor_rows(healthy, "public.sale_line")[1] == []


def test_force_hid_a_referencing_line_from_the_check_and_doctor_reports_it(healthy, shop):
    """As it was (FORCE set where no DDL guard refuses it): the check, run as the owner, saw only the lines the
    session's tenant setting let it see. Doctor reports the table; without FORCE the check sees the line again."""
    owner, admin, app = shop
    lives_ok(admin, "SELECT ledgerlock.protect_referenced('product', 'sale_line')")
    psycopg.connect(healthy.conninfo(), autocommit=True).execute("SELECT ledgerlock.uninstall_ddl_guard()")
    owner.execute("ALTER TABLE sale_line FORCE ROW LEVEL SECURITY")
    app.execute("SET app.tenant = '2'")
    app.execute("UPDATE product SET price = 6 WHERE id = 1")  # the line of tenant 1 references it
    code, found = doctor_rows(healthy, "public.sale_line")
    assert code == 3 and [(f["severity"], f["finding"], f["fix"]) for f in found] == [
        ("critical", "public.sale_line has FORCE ROW LEVEL SECURITY",
         "ALTER TABLE public.sale_line NO FORCE ROW LEVEL SECURITY")]
    assert "a row they do not see cannot refuse a write" in found[0]["why"]
    owner.execute("ALTER TABLE sale_line NO FORCE ROW LEVEL SECURITY")
    with refused("LL003", r"^product id=1 is referenced by a row of sale_line"):
        app.execute("UPDATE product SET price = 7 WHERE id = 1")
    assert doctor_rows(healthy, "public.sale_line")[1] == []


def test_the_rules_refuse_a_table_under_force_and_the_ddl_guard_refuses_force_later(healthy, shop):
    owner, admin, app = shop
    for forced, calls in (("sale_line", (("ledgerlock.protect_referenced('product', 'sale_line')", "child"),
                                         ("ledgerlock.protect('sale_line', 'sold_on')", "protect"))),
                          ("product", (("ledgerlock.protect_referenced('product', 'sale_line')", "parent"),
                                       ("ledgerlock.protect('sale_line', 'sold_on', 'product_id.id')", "scope_column"),
                                       ("ledgerlock.protect_lines('sale_line', 'product')", "parent")))):
        owner.execute(f"ALTER TABLE {forced} ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY")
        for call, parameter in calls:
            with refused("22023", rf"^{parameter}: public\.{forced} has FORCE ROW LEVEL SECURITY: its policies would "
                                  r"decide which of its rows ledgerlock's checks see") as info:
                admin.execute(f"SELECT {call}")
            assert info.value.diag.message_hint.startswith(f"ALTER TABLE public.{forced} NO FORCE ROW LEVEL SECURITY")
        owner.execute(f"ALTER TABLE {forced} NO FORCE ROW LEVEL SECURITY")
    assert admin.execute("SELECT count(*) FROM ledgerlock.protected_table WHERE tbl = 'sale_line'::regclass"
                         ).fetchone() == (0,)
    lives_ok(admin, "SELECT ledgerlock.protect_referenced('product', 'sale_line')")

    # under the DDL guard (the healthy setup has it), FORCE on a table a rule reads is refused, in either order
    for stmt in ("ALTER TABLE sale_line FORCE ROW LEVEL SECURITY",
                 "ALTER TABLE invoice FORCE ROW LEVEL SECURITY, ENABLE ROW LEVEL SECURITY"):
        with refused("LL008", r"^FORCE ROW LEVEL SECURITY on public\.(sale_line|invoice) is refused: ledgerlock's "
                              r"checks of public\.(product|invoice) read it as its owner"):
            owner.execute(stmt)
    # the neighbours: FORCE on a table no rule reads, ENABLE alone on one a rule reads
    owner.execute("ALTER TABLE unrelated FORCE ROW LEVEL SECURITY")
    owner.execute("ALTER TABLE invoice ENABLE ROW LEVEL SECURITY")
    assert owner.execute("SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = 'invoice'::regclass"
                         ).fetchone() == (True, False)


def test_why_locked_names_no_row_of_a_table_whose_policies_restrict_the_caller(healthy, shop):
    """why_locked reads rows with ledgerlock's rights, every tenant's: it answers for a table whose row-level
    security applies to the caller with 42501, and names no row of such a table in a chain (a tenant's session
    learned the keys of another tenant's lines through it). A role the policies do not restrict (BYPASSRLS) is
    the permitted neighbour: it reads the whole chain."""
    owner, admin, app = shop
    lives_ok(admin, "SELECT ledgerlock.protect_referenced('product', 'sale_line')")
    app.execute("SET app.tenant = '2'")
    why = "SELECT depth, table_name::text, summary, details -> 'because_of' FROM ledgerlock.why_locked(%s, %s)"
    with refused("42501", r"^permission denied: row-level security on public.sale_line applies to erp_app_\w+, and "
                          r"why_locked reads rows as ledgerlock's checks do"):
        app.execute(why, ("sale_line", "1"))
    assert app.execute(why, ("product", "1")).fetchall() == [(0, "product", "referenced by a row of sale_line", None)]
    assert app.execute(why, ("product", "2")).fetchall() == []  # no line references ink
    auditor = f"{healthy.app}_rls"
    with psycopg.connect(healthy.conninfo(), autocommit=True) as su:
        su.execute(sql.SQL("CREATE ROLE {} LOGIN BYPASSRLS").format(sql.Identifier(auditor)))
    try:
        owner.execute(sql.SQL("GRANT SELECT ON product, sale_line TO {}").format(sql.Identifier(auditor)))
        with psycopg.connect(healthy.cluster.server.conninfo(dbname=healthy.name, user=auditor),
                             autocommit=True) as reader:
            assert reader.execute(why, ("product", "1")).fetchall() == [
                (0, "product", "referenced by sale_line id=1", {"key": {"id": 1}, "table": "public.sale_line"})]
            assert reader.execute(why, ("sale_line", "1")).fetchall() == []  # the line itself is free
    finally:
        owner.execute(sql.SQL("REVOKE ALL ON product, sale_line FROM {}").format(sql.Identifier(auditor)))
        with psycopg.connect(healthy.conninfo(), autocommit=True) as su:
            su.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(auditor)))


def test_a_lines_refusal_names_no_header_of_a_table_whose_policies_restrict_the_writer(healthy, shop):
    """A line written under another tenant's final header (the foreign key reads every row; the application can
    name any key) is refused without the header's label, whose number is that tenant's. ledgerlock cannot tell
    which rows a policy shows the writer, so its own tenant's session reads the same; a header table without
    policies is named, the permitted neighbour."""
    owner, admin, app = shop
    sales(owner, admin, healthy.app)
    app.execute("SET app.tenant = '1'")
    app.execute("INSERT INTO sale (id, company_id, sold_on) VALUES (1, 1, '2025-06-01')")
    app.execute("INSERT INTO sale_item VALUES (10, 1, 1)")
    app.execute("UPDATE sale SET status = 'final' WHERE id = 1")
    app.execute("SET app.tenant = '2'")
    assert app.execute("SELECT count(*) FROM sale").fetchone() == (0,)
    with refused("LL001", r"^sale_item id=11 cannot be inserted: its header, a row of sale, is final"):
        app.execute("INSERT INTO sale_item VALUES (11, 1, 1)")
    with refused("LL001", r"^sale_item id=10 cannot be updated: its header, a row of sale, is final"):
        app.execute("UPDATE sale_item SET qty = 3 WHERE id = 10")
    app.execute("INSERT INTO sale (id, company_id, sold_on, status) VALUES (2, 2, '2025-06-01', 'final'), "
                "(3, 2, '2025-06-01', 'draft')")
    app.execute("INSERT INTO sale_item VALUES (12, 3, 1)")
    with refused("LL001", r"^sale_item id=12 cannot be moved to a row of sale: that header is final"):
        app.execute("UPDATE sale_item SET sale_id = 2 WHERE id = 12")
    owner.execute("ALTER TABLE sale DISABLE ROW LEVEL SECURITY")
    with refused("LL001", r"^sale_item id=10 cannot be updated: its header sale id=1 \(S-1\) is final"):
        app.execute("UPDATE sale_item SET qty = 3 WHERE id = 10")
    assert owner.execute("SELECT array_agg((sale_id, qty)::text ORDER BY id) FROM sale_item").fetchone() == (
        ["(1,1)", "(3,1)"],)


def test_a_window_s_refusal_names_no_row_of_a_table_whose_policies_restrict_the_writer(healthy, shop):
    """R3's sentence names the row a window covers. When that row is not the one written (a line written under
    another tenant's header dated in a locked window; a shared parent moved under another tenant's children,
    which take their date from it) it is named as R4's refusals name it: not, under row-level security. The
    written row itself is named (the writer wrote it), and without policies the header is named, the
    permitted neighbour."""
    owner, admin, app = shop
    sales(owner, admin, healthy.app, more=f"""
        CREATE TABLE batch (id int PRIMARY KEY, run_on date NOT NULL);
        CREATE TABLE entry (id int PRIMARY KEY, company_id int NOT NULL, batch_id int NOT NULL REFERENCES batch,
                            amount int NOT NULL);
        ALTER TABLE entry ENABLE ROW LEVEL SECURITY;
        CREATE POLICY tenant ON entry USING ({TENANT});""", more_tables=("batch", "entry"))
    lives_ok(admin, "SELECT ledgerlock.protect('entry', date_column => 'batch_id.run_on', scope_column => "
                    "'company_id')")
    app.execute("SET app.tenant = '1'")
    app.execute("INSERT INTO sale (id, company_id, sold_on) VALUES (1, 1, '2025-03-01')")
    app.execute("INSERT INTO batch VALUES (1, '2025-03-01'), (2, '2025-03-01')")
    app.execute("INSERT INTO entry VALUES (1, 1, 1, 100)")
    lives_ok(admin, "SELECT ledgerlock.lock_period('1', '2025-01-01', '2025-06-30', 'hard')")
    app.execute("SET app.tenant = '2'")
    assert app.execute("SELECT count(*) FROM sale").fetchone() == (0,)
    window = r"^Period 2025-01-01\.\.2025-06-30 is locked \(hard\) for scope 1: "
    with refused("LL002", window + r"a row of sale cannot be changed through its lines \(sale_item id=10 cannot be "
                                   r"inserted\)$"):
        app.execute("INSERT INTO sale_item VALUES (10, 1, 1)")
    with refused("LL002", window + r"a row of entry cannot be moved from 2025-03-01 to 2025-07-01 with batch id=1$"):
        app.execute("UPDATE batch SET run_on = '2025-07-01' WHERE id = 1")
    lives_ok(app, "UPDATE batch SET run_on = '2025-07-01' WHERE id = 2")  # no entry takes its date from it
    app.execute("SET app.tenant = '1'")
    with refused("LL002", window + r"entry id=2 cannot be inserted$"):
        app.execute("INSERT INTO entry VALUES (2, 1, 1, 5)")  # the written row: named
    owner.execute("ALTER TABLE sale DISABLE ROW LEVEL SECURITY")
    with refused("LL002", window + r"sale id=1 \(DRAFT-1\) cannot be changed through its lines \(sale_item id=10 "
                                   r"cannot be inserted\)$"):
        app.execute("INSERT INTO sale_item VALUES (10, 1, 1)")
    assert owner.execute("SELECT (SELECT count(*) FROM sale_item), (SELECT run_on::text FROM batch WHERE id = 1)"
                         ).fetchone() == (0, "2025-03-01")
