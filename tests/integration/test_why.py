"""why_locked and `ledgerlock why`: every rule freezing a row now, as a tree, with the way back."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ledgerlock.cli import cli
from lltest import refused

# (the table by its relname: under the sweep's quote_all_identifiers a client's own regclass reads "invoice")
WHY = ("SELECT depth, (SELECT relname::text FROM pg_class WHERE oid = table_name), row_label, rule, summary, "
       "way_back FROM ledgerlock.why_locked(%s, %s)")


@pytest.fixture
def chain(db):
    """invoice 42 (final, INV-7) <- payment 9 <- deposit_item 30, a line of deposit 3 (final)."""
    db.protect_invoice(number_column="number")
    owner = db.owner()
    owner.execute("""
        CREATE TABLE deposit (id integer PRIMARY KEY, deposited_on date NOT NULL DEFAULT current_date,
                              status text NOT NULL DEFAULT 'open');
        CREATE TABLE deposit_item (id integer PRIMARY KEY, deposit_id integer NOT NULL REFERENCES deposit,
                                   payment_id integer NOT NULL REFERENCES payment);
        CREATE INDEX ON deposit_item (payment_id);
        GRANT SELECT, INSERT, UPDATE, DELETE ON deposit, deposit_item TO ll_app;
        SELECT ledgerlock.protect('deposit', date_column => 'deposited_on', final_when => $$status = 'final'$$);
        SELECT ledgerlock.protect_referenced('invoice', 'payment', child_condition => $$status <> 'void'$$);
        SELECT ledgerlock.protect_referenced('payment', 'deposit_item');
        SELECT ledgerlock.protect_lines('deposit_item', 'deposit');
    """)
    owner.execute("INSERT INTO invoice (id, company_id, amount, number) VALUES (42, 1, 100, 'INV-7'), (43, 1, 5, NULL)")
    app = db.connect("app")
    app.execute("UPDATE invoice SET status = 'approved' WHERE id = 42")
    app.execute("INSERT INTO payment (id, company_id, invoice_id, amount) VALUES (9, 1, 42, 100)")
    app.execute("INSERT INTO deposit (id) VALUES (3)")
    app.execute("INSERT INTO deposit_item VALUES (30, 3, 9)")
    app.execute("UPDATE deposit SET status = 'final' WHERE id = 3")
    return app


def test_why_locked_walks_the_whole_chain(chain):
    rows = chain.execute(WHY, ("invoice", '{"id": 42}')).fetchall()
    assert [(r[0], r[1], r[3]) for r in rows] == [
        (0, "invoice", "final"),
        (0, "invoice", "referenced"),
        (1, "payment", "referenced"),
        (2, "deposit_item", "lines"),
        (3, "deposit", "final"),
    ]
    final, referenced = rows[0], rows[1]
    assert final[2] == "invoice id=42 (INV-7)"
    assert ", number INV-7" in final[4] and final[4].startswith("final (status in ('approved','paid')) since ")
    assert final[5].startswith("a final row is never unlocked: issue a correcting document")
    assert referenced[4] == "referenced by payment id=9"
    assert referenced[5] == "delete payment id=9 first, or change it so that it no longer matches: status <> 'void'"
    assert rows[3][4] == "a line of deposit id=3, which is frozen"


def test_why_locked_accepts_a_bare_key_and_says_nothing_for_a_free_row(chain):
    assert len(chain.execute(WHY, ("payment", "9")).fetchall()) == 3
    assert chain.execute(WHY, ("invoice", "43")).fetchall() == []


def test_void_child_is_not_a_reason(chain, db):
    db.owner().execute("INSERT INTO payment (id, company_id, invoice_id, amount, status) VALUES (10, 1, 43, 1, 'void')")
    assert chain.execute(WHY, ("invoice", "43")).fetchall() == []


def test_why_locked_names_missing_rows_and_needs_read_access(chain, db):
    with refused("P0002", r"^public\.invoice has no row with key"):
        chain.execute(WHY, ("invoice", "4242"))
    db.owner().execute("REVOKE SELECT ON deposit_item FROM ll_app")
    with refused("42501", r"may not read public\.deposit_item"):
        chain.execute(WHY, ("deposit_item", "30"))
    # the chain stops at a table the caller may not read, and does not name its rows
    rows = chain.execute(WHY, ("payment", "9")).fetchall()
    assert [(r[0], r[4]) for r in rows] == [(0, "referenced by a row of deposit_item")]


def test_composite_key_must_be_an_object(db):
    owner = db.owner()
    owner.execute("""
        CREATE TABLE ledger_doc (company_id integer, doc_no integer, PRIMARY KEY (company_id, doc_no));
        CREATE TABLE ledger_ref (id integer PRIMARY KEY, company_id integer, doc_no integer,
                                 FOREIGN KEY (company_id, doc_no) REFERENCES ledger_doc);
        CREATE INDEX ON ledger_ref (company_id, doc_no);
        SELECT ledgerlock.protect_referenced('ledger_doc', 'ledger_ref');
        INSERT INTO ledger_doc VALUES (1, 7);
        INSERT INTO ledger_ref VALUES (5, 1, 7);
    """)
    rows = owner.execute(WHY, ("ledger_doc", '{"company_id": 1, "doc_no": 7}')).fetchall()
    assert [(r[2], r[4]) for r in rows] == [("ledger_doc company_id=1 doc_no=7", "referenced by ledger_ref id=5")]
    with refused("22023", r"give it as a JSON object"):
        owner.execute(WHY, ("ledger_doc", "7"))


# -- the command line ---------------------------------------------------------------------------------

def run(db, *args):
    return CliRunner().invoke(cli, ["--dsn", db.conninfo("app"), *args], catch_exceptions=False)


def test_cli_why_prints_a_tree_with_the_way_back(db, chain):
    result = run(db, "why", "invoice", "42")
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.startswith("invoice id=42 (INV-7) is frozen:\n├─ final (R1): final (status in ('approved','paid'))")
    assert "└─ referenced (R4): referenced by payment id=9\n" in out
    assert "      payment id=9 is itself frozen:\n      └─ referenced (R4): referenced by deposit_item id=30" in out
    assert "deposit id=3 is itself frozen:" in out
    steps = out.split("way back, step by step:\n")[1].splitlines()
    assert steps[0].startswith("  1. invoice id=42 (INV-7): a final row is never unlocked")
    assert steps[-1] == ("  5. invoice id=42 (INV-7): delete payment id=9 first, or change it so that it no "
                         "longer matches: status <> 'void'")


def test_cli_why_json(db, chain):
    result = run(db, "why", "payment", "9", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["frozen"] is True and data["key"] == 9
    (reason,) = data["reasons"]
    assert reason["rule"] == "referenced" and reason["details"]["child_key"] == {"id": 30}
    assert reason["because"][0]["rule"] == "lines"
    assert reason["because"][0]["because"][0]["rule"] == "final"


def test_cli_why_for_a_free_row_and_a_missing_row(db, chain):
    result = run(db, "why", "invoice", "43")
    assert result.exit_code == 0 and result.output == "invoice 43 is not frozen: it can be changed\n"
    result = CliRunner().invoke(cli, ["--dsn", db.conninfo("app"), "why", "invoice", "999"])
    assert result.exit_code == 1
    assert "error P0002" in result.output and "public.invoice has no row with key 999" in result.output


def test_cli_why_accepts_a_json_object_key(db):
    owner = db.owner()
    owner.execute("""
        CREATE TABLE ledger_doc (company_id integer, doc_no integer, PRIMARY KEY (company_id, doc_no));
        CREATE TABLE ledger_ref (id integer PRIMARY KEY, company_id integer, doc_no integer,
                                 FOREIGN KEY (company_id, doc_no) REFERENCES ledger_doc);
        CREATE INDEX ON ledger_ref (company_id, doc_no);
        SELECT ledgerlock.protect_referenced('ledger_doc', 'ledger_ref');
        INSERT INTO ledger_doc VALUES (1, 7);
        INSERT INTO ledger_ref VALUES (5, 1, 7);
    """)
    result = CliRunner().invoke(cli, ["--dsn", db.conninfo(), "why", "ledger_doc", '{"company_id": 1, "doc_no": 7}'])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ledger_doc company_id=1 doc_no=7 is frozen:\n└─ referenced (R4): "
                                    "referenced by ledger_ref id=5\n")


WHY_DETAILS = ("SELECT details FROM ledgerlock.why_locked('invoice', '{\"id\": 43}') WHERE rule = 'period_lock'")


def test_why_locked_shows_a_windows_note_reviewer_and_locker_only_to_whom_period_lock_at_does(chain, db):
    """The application reads why a row is locked, not the window's note, reviewer or who locked it: those reach
    a controller, admin or auditor whose scope grants include the window's scope, as period_lock_at's do."""
    day = db.owner().execute("SELECT issued_on FROM invoice WHERE id = 43").fetchone()[0]
    lock = db.connect("controller").execute(
        "SELECT ledgerlock.lock_period('1', %s, %s, 'soft', 'Q1 closed: fraud review of ACME', 'J. Auditor')",
        (day, day)).fetchone()[0]
    shown = {"note": "Q1 closed: fraud review of ACME", "reviewer": "J. Auditor", "locked_by": "ll_controller"}
    hidden = dict.fromkeys(shown)

    def details(conn):
        d = conn.execute(WHY_DETAILS).fetchone()[0]
        assert (d["lock_id"], d["scope"], d["level"]) == (lock, "1", "soft")  # what a form needs, for everyone
        return {k: d.get(k) for k in shown}

    def at(conn):
        row = conn.execute("SELECT note, reviewer, locked_by FROM ledgerlock.period_lock_at('1', %s)", (day,))
        return dict(zip(("note", "reviewer", "locked_by"), row.fetchone(), strict=True))

    assert details(chain) == at(chain) == hidden
    for role in ("controller", "admin"):
        assert details(db.connect(role)) == at(db.connect(role)) == shown, role
    assert at(db.connect("auditor")) == shown  # (it may not read invoices, so it asks no why)
    # a tenant admin of another scope: the window is not its business
    db.connect("admin").execute("SELECT ledgerlock.grant_scope('ll_admin2', '2')")
    assert details(db.connect("admin2")) == at(db.connect("admin2")) == hidden


def test_why_locked_says_who_made_a_row_final_only_to_the_trails_readers(chain, db):
    """Who made a row final comes from the audit trail, which the application may not read and a tenant admin
    reads for its own scopes only: why_locked says since when to everyone, by whom to them."""
    why = "SELECT summary, details FROM ledgerlock.why_locked('invoice', '{\"id\": 42}') WHERE rule = 'final'"
    summary, details = chain.execute(why).fetchone()
    assert summary.startswith("final (status in ('approved','paid')) since 2") and summary.endswith(
        ", number INV-7") and " by " not in summary, summary
    assert "by" not in details and "actor" not in details and details["number"] == "INV-7"
    for role in ("controller", "admin"):
        summary, details = db.connect(role).execute(why).fetchone()
        assert summary.endswith(" by ll_app, number INV-7") and details["by"] == "ll_app", (role, summary)
    db.connect("admin").execute("SELECT ledgerlock.grant_scope('ll_admin2', '2')")
    summary, details = db.connect("admin2").execute(why).fetchone()
    assert " by " not in summary and "by" not in details
    db.connect("admin").execute("SELECT ledgerlock.grant_scope('ll_admin2', '1')")
    assert db.connect("admin2").execute(why).fetchone()[1]["by"] == "ll_app"
