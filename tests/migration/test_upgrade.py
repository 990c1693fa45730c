"""Upgrading from the previous release: a database installed with 0.1.0's one-file script and in use (final
rows with numbers, soft and hard locks, an unlock, audit events, a seal and a kept digest) is migrated with
today's `migrate`. Every rule still holds on the old data, the kept digest still verifies, and the catalog
equals that of a fresh install given the same calls: the two databases are compared, no object is listed."""

from __future__ import annotations

import re
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from test_install_paths import snapshot

from ledgerlock import migrate
from lltest import TestDatabase, lives_ok, load_demo_schema, refused

PREVIOUS_RELEASE = Path(__file__).parent / "fixtures" / "vendor" / "ledgerlock-0.1.0.sql"
NUMBER_FORMAT = "INV-{YYYY}-{SEQ:5}"

# The guards on the protected tables (outside schema ledgerlock, so not in test_install_paths' snapshot):
# their definitions carry each rule's configuration and the period marks the locks set.
GUARDS = """
SELECT c.relname || ':' || pg_get_triggerdef(t.oid) || ':' || t.tgenabled::text
FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
WHERE c.relnamespace = 'public'::regnamespace AND NOT t.tgisinternal
"""
# Generated functions carry their table's OID (in their names, and zero-padded in lock keys), which differs
# from one database to another. A SQLSTATE (ERRCODE = '22023', _refuse('55000', ...)) is matched first and kept
# as it is: a table whose OID happens to be 22023 must not turn an error code into its name.
OID = re.compile(r"(?:ERRCODE = |_refuse\()'[0-9A-Z]{5}'|(?<![0-9])[0-9]{4,10}(?![0-9])")


def install_previous_release(db: TestDatabase) -> None:
    """0.1.0 into an empty database, the way a DBA applies the script, then the demo ERP tables."""
    res = subprocess.run(
        [str(db.cluster.server.bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction",
         "-f", str(PREVIOUS_RELEASE), db.conninfo()],
        capture_output=True, text=True,
    )
    assert res.returncode == 0, res.stderr
    load_demo_schema(db.owner())


def put_the_books_in(db: TestDatabase) -> dict:
    """Data, locks, numbers and events through the public API (the same calls on either release).
    Invoices 1-4 are final (numbered 1-4), dated in January (soft lock), February (hard lock), March (locked,
    then unlocked) and April (open); invoice 5 is an April draft a payment references."""
    owner, admin, app = db.owner(), db.connect("admin"), db.connect("app")
    db.protect_invoice(number_column="number", number_format=NUMBER_FORMAT)
    owner.execute("SELECT ledgerlock.protect_referenced('invoice', 'payment')")
    app.execute("INSERT INTO invoice (id, company_id, issued_on, amount) VALUES "
                "(1, 1, '2025-01-10', 100), (2, 1, '2025-02-10', 200), (3, 1, '2025-03-10', 300), "
                "(4, 1, '2025-04-10', 400), (5, 1, '2025-04-20', 500)")
    for invoice in (1, 2, 3, 4):  # one transaction each: numbers in that order
        app.execute("UPDATE invoice SET status = 'approved' WHERE id = %s", (invoice,))
    app.execute("INSERT INTO payment (id, company_id, invoice_id, paid_on, amount) VALUES (1, 1, 5, '2025-04-25', 500)")
    app.execute("SET ledgerlock.reason = 'paid by transfer'")
    app.execute("UPDATE invoice SET paid = true WHERE id = 4")
    locks = {
        "soft": admin.execute("SELECT ledgerlock.lock_period('1', '2025-01-01', '2025-01-31')").fetchone()[0],
        "hard": admin.execute("SELECT ledgerlock.lock_period('1', '2025-02-01', '2025-02-28', 'hard')").fetchone()[0],
        "unlocked": admin.execute("SELECT ledgerlock.lock_period('1', '2025-03-01', '2025-03-31')").fetchone()[0],
    }
    admin.execute("SELECT ledgerlock.unlock_period(%s, 'late supplier credit')", (locks["unlocked"],))
    auditor = db.connect("auditor")
    auditor.execute("SELECT ledgerlock.audit_seal()")
    return {"locks": locks, "digest": auditor.execute("SELECT ledgerlock.audit_digest()").fetchone()[0]}


def catalog(db: TestDatabase) -> list[tuple[str, str]]:
    """test_install_paths' snapshot of schema ledgerlock plus the guards, with each OID of a table of the
    application replaced by the table's name."""
    owner = db.owner()
    tables = {int(oid): f"<oid of {name}>" for oid, name in owner.execute(
        "SELECT oid, relname FROM pg_class WHERE relnamespace = 'public'::regnamespace")}
    rows = snapshot(db.conninfo()) + [("guard", r[0]) for r in owner.execute(GUARDS)]
    return sorted((kind, named_oids(text, tables)) for kind, text in rows)


def named_oids(text: str, tables: dict[int, str]) -> str:
    """The text with each OID of a table replaced by the table's name; SQLSTATEs in quotes are left alone."""
    return OID.sub(lambda m: m[0] if not m[0][0].isdigit() else tables.get(int(m[0]), m[0]), text)


def test_an_errcode_equal_to_a_table_oid_is_not_renamed():
    # CI once ran this file with payment_pkey at OID 22023: ERRCODE = '22023' became "<oid of payment_pkey>"
    # in the upgraded database only, and the two catalogs differed on four functions that were the same.
    tables = {22023: "<oid of payment_pkey>", 16390: "<oid of invoice>"}
    text = "ERRCODE = '22023' ... _ll40_16390_settle ... lock key 0000016390 ... '16390'::regclass"
    assert named_oids(text, tables) == (
        "ERRCODE = '22023' ... _ll40_<oid of invoice>_settle ... lock key <oid of invoice> ... "
        "'<oid of invoice>'::regclass")


def doctor_findings(db: TestDatabase) -> list[tuple[str, ...]]:
    """What doctor finds, as the auditor, with the database's own name (which differs) left out."""
    rows = db.connect("auditor").execute(
        "SELECT severity, check_name, object, finding FROM ledgerlock.doctor_findings()").fetchall()
    return sorted(tuple((field or "").replace(db.name, "<database>") for field in row) for row in rows)


@pytest.fixture
def upgraded(cluster):
    """An empty database of its own (not a clone of the harness template, which has today's code)."""
    name = f"t_upgrade_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    database = TestDatabase(cluster, name)
    try:
        yield database
    finally:
        database.close_all()
        with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_books_kept_under_0_1_0_still_hold_after_migrate_and_match_a_fresh_install(upgraded, db):
    install_previous_release(upgraded)
    kept = put_the_books_in(upgraded)
    before = upgraded.owner().execute("SELECT id, number, status, amount, paid FROM invoice ORDER BY id").fetchall()
    assert [r[1] for r in before] == [f"INV-2025-0000{i}" for i in (1, 2, 3, 4)] + ["DRAFT-5"]

    report = migrate.migrate(upgraded.conninfo())
    assert report.code_installed and report.guards_reinstalled == 1

    # the catalog equals a fresh install's after the same calls, guards and their marks included (migrate
    # re-installs the guards, which recomputes each mark from the active windows: so does the fresh one)
    put_the_books_in(db)
    db.owner().execute("SELECT ledgerlock.reinstall_guards()")
    fresh, got = catalog(db), catalog(upgraded)
    only_upgraded, only_fresh = sorted(set(got) - set(fresh)), sorted(set(fresh) - set(got))
    assert only_upgraded == [] and only_fresh == [], (only_upgraded, only_fresh)
    assert len(got) == len(fresh)
    # doctor finds on the upgraded database what it finds on the fresh one, and nothing critical
    findings = doctor_findings(upgraded)
    assert findings == doctor_findings(db)
    assert [f for f in findings if f[0] == "critical"] == []

    owner, app = upgraded.owner(), upgraded.connect("app")
    assert owner.execute("SELECT id, number, status, amount, paid FROM invoice ORDER BY id").fetchall() == before

    # R1: a final row refuses a change; its declared mutable column still changes
    with refused("LL001", r"^invoice id=3 \(INV-2025-00003\) is final"):
        app.execute("UPDATE invoice SET amount = 1 WHERE id = 3")
    lives_ok(app, "UPDATE invoice SET reconciled = true WHERE id = 3")
    assert owner.execute("SELECT amount, reconciled FROM invoice WHERE id = 3").fetchone() == (300, True)

    # R2: the series continues where 0.1.0 left it, with no gap
    app.execute("INSERT INTO invoice (id, company_id, issued_on, amount) VALUES (6, 1, '2025-04-30', 600)")
    lives_ok(app, "UPDATE invoice SET status = 'approved' WHERE id = 6")
    assert owner.execute("SELECT number FROM invoice WHERE id = 6").fetchone()[0] == "INV-2025-00005"
    assert owner.execute("SELECT * FROM ledgerlock.number_gaps()").fetchall() == []

    # R3: the hard and the soft window refuse; the unlocked one takes writes
    with refused("LL002", r"^Period 2025-02-01\.\.2025-02-28 is locked \(hard\) for scope 1"):
        app.execute("INSERT INTO invoice (id, company_id, issued_on) VALUES (8, 1, '2025-02-15')")
    with refused("LL002", r"^Period 2025-01-01\.\.2025-01-31 is locked \(soft\) for scope 1"):
        app.execute("INSERT INTO invoice (id, company_id, issued_on) VALUES (8, 1, '2025-01-15')")
    lives_ok(app, "INSERT INTO invoice (id, company_id, issued_on) VALUES (7, 1, '2025-03-15')")
    assert owner.execute("SELECT issued_on::text, status FROM invoice WHERE id = 7").fetchone() == (
        "2025-03-15", "draft")
    states = dict(owner.execute("SELECT id, status FROM ledgerlock.period_locks").fetchall())
    assert states == {kept["locks"]["soft"]: "active", kept["locks"]["hard"]: "active",
                      kept["locks"]["unlocked"]: "unlocked"}

    # R4: the referenced draft is frozen; an unreferenced one is not
    with refused("LL003", r"^invoice id=5 \(DRAFT-5\) is referenced by payment id=1"):
        app.execute("UPDATE invoice SET amount = 1 WHERE id = 5")
    lives_ok(app, "UPDATE invoice SET amount = 70 WHERE id = 7")
    assert owner.execute("SELECT amount FROM invoice WHERE id = 7").fetchone()[0] == 70

    # R5: the digest kept under 0.1.0 still verifies, over the events written since
    ok, problem = upgraded.connect("auditor").execute(
        "SELECT ok, problem FROM ledgerlock.verify_audit(%s)", (kept["digest"],)).fetchone()
    assert (ok, problem) == (True, None)
    assert [f for f in doctor_findings(upgraded) if f[0] == "critical"] == []


def test_scope_limits_kept_under_0_1_0_hold_after_migrate_and_a_last_scope_revoked_then_is_named(upgraded):
    """A tenant admin limited under 0.1.0 stays limited after migrate (the policies 0044 rewrites included); a
    role whose last scope 0.1.0 revoked, which that left unlimited, is named by doctor until an admin decides."""
    install_previous_release(upgraded)
    admin = upgraded.connect("admin")
    for scope in ("1", "2"):
        admin.execute("SELECT ledgerlock.lock_period(%s, '2025-01-01', '2025-01-31')", (scope,))
    admin.execute("SELECT ledgerlock.grant_scope('ll_admin2', '2')")
    admin.execute("SELECT ledgerlock.grant_scope('ll_controller', '1')")
    admin.execute("SELECT ledgerlock.revoke_scope('ll_controller', '1')")  # 0.1.0: no grant left, unlimited
    migrate.migrate(upgraded.conninfo())
    tenant = upgraded.connect("admin2")
    assert tenant.execute("SELECT scope FROM ledgerlock.period_locks").fetchall() == [("2",)]
    with refused("LL005", r"^lock_period on scope 1 is not allowed: ll_admin2 is limited to scopes 2$"):
        tenant.execute("SELECT ledgerlock.lock_period('1', '2025-02-01', '2025-02-28')")
    lives_ok(tenant, "SELECT ledgerlock.lock_period('2', '2025-02-01', '2025-02-28')")
    assert [f[2] for f in doctor_findings(upgraded) if f[1] == "ledgerlock role" and "before migration 0044" in f[3]
            ] == ["ll_controller"]
