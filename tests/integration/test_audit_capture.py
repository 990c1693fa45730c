"""R5 capture: every write to a protected table, every lock event, protect/unprotect, number formats and
skipped writes leave an event; the events are append-only and readable only by the right roles."""

from __future__ import annotations

import pytest

from lltest import refused

MARCH = ("2026-03-01", "2026-03-31")


def events(conn, where="true", params=None):
    return conn.execute(
        f"""SELECT seq, table_name::text, row_key, scope, operation, old_row, new_row, changed_columns, db_user,
                   actor, reason, context, lock_id, override_id, txid, chain_seq
            FROM ledgerlock.audit_log WHERE {where} ORDER BY seq""", params).fetchall()


@pytest.fixture
def app(db):
    db.protect_invoice()
    return db.connect("app")


def test_insert_update_delete_are_captured_with_rows_and_changed_columns(db, app):
    app.execute("INSERT INTO invoice (id, company_id, amount, issued_on) VALUES (1, 1, 100, '2026-03-05')")
    app.execute("UPDATE invoice SET amount = 120, note = 'revised' WHERE id = 1")
    app.execute("DELETE FROM invoice WHERE id = 1")
    rows = events(db.connect("auditor"), "table_name = 'invoice'::regclass AND operation <> 'PROTECT'")
    assert [(r[1], r[2], r[3], r[4]) for r in rows] == [
        ("invoice", {"id": 1}, "1", "INSERT"), ("invoice", {"id": 1}, "1", "UPDATE"),
        ("invoice", {"id": 1}, "1", "DELETE")]
    ins, upd, dele = rows
    assert ins[5] is None and ins[6]["amount"] == 100 and ins[6]["issued_on"] == "2026-03-05"
    assert upd[5]["amount"] == 100 and upd[6]["amount"] == 120 and upd[7] == ["amount", "note"]
    assert dele[5]["amount"] == 120 and dele[6] is None and dele[7] is None
    assert {r[8] for r in rows} == {"ll_app"}


def test_bulk_statement_gives_one_event_per_row_in_one_transaction(db, app):
    app.execute("INSERT INTO invoice (id, company_id, amount) SELECT g, 1 + g % 2, g FROM generate_series(1, 50) g")
    rows = events(db.connect("auditor"), "operation = 'INSERT'")
    assert len(rows) == 50
    assert {r[14] for r in rows} == {rows[0][14]}  # one transaction
    assert sorted(r[2]["id"] for r in rows) == list(range(1, 51))
    assert all(r[3] == str(r[6]["company_id"]) for r in rows)


def test_update_changing_the_key_pairs_old_and_new_rows_right(db, app):
    app.execute("INSERT INTO invoice (id, company_id, amount) VALUES (1, 1, 10), (2, 1, 20)")
    app.execute("UPDATE invoice SET id = id + 10 WHERE id IN (1, 2)")
    rows = events(db.connect("auditor"), "operation = 'UPDATE'")
    pairs = sorted((r[5]["id"], r[6]["id"], r[5]["amount"], r[6]["amount"]) for r in rows)
    assert pairs == [(1, 11, 10, 10), (2, 12, 20, 20)]
    assert all(r[7] == ["id"] for r in rows)
    assert sorted(r[2]["id"] for r in rows) == [11, 12]  # the key is the row's key after the write


def test_composite_keys_and_tables_without_scope_are_captured(db):
    owner = db.owner()
    owner.execute("CREATE TABLE ledger_line (book text, n int, posted_on date NOT NULL, amount int, "
                  "PRIMARY KEY (book, n))")
    owner.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON ledger_line TO ll_app")
    owner.execute("SELECT ledgerlock.protect('ledger_line', 'posted_on')")
    db.connect("app").execute("INSERT INTO ledger_line VALUES ('gl', 7, '2026-01-02', 5)")
    (row,) = events(db.connect("auditor"), "operation = 'INSERT'")
    assert row[2] == {"book": "gl", "n": 7} and row[3] == "*"


def test_db_user_is_the_login_and_context_settings_are_informational(db, app):
    app.execute("SET ledgerlock.actor = 'alice@erp'")
    app.execute("SET ledgerlock.reason = 'customer asked'")
    app.execute("SET ledgerlock.context = 'web/invoice-form'")
    app.execute("INSERT INTO invoice (id, company_id) VALUES (1, 1)")
    owner = db.owner()
    owner.execute("SET ROLE ll_app")  # the login stays the owner: session_user is what is recorded
    owner.execute("INSERT INTO invoice (id, company_id) VALUES (2, 1)")
    rows = events(db.connect("auditor"), "operation = 'INSERT'")
    assert [(r[8], r[9], r[10], r[11]) for r in rows] == [
        ("ll_app", "alice@erp", "customer asked", "web/invoice-form"), ("postgres", None, None, None)]


def test_protect_and_unprotect_are_recorded_with_the_reason(db):
    db.protect_invoice()
    db.protect_invoice(mutable_columns=["paid", "reconciled", "note"], weaken_reason="notes stay editable")
    db.connect("admin").execute("SELECT ledgerlock.unprotect('invoice', '  moving to the new ledger  ')")
    rows = events(db.connect("auditor"), "operation IN ('PROTECT', 'UNPROTECT')")
    assert [r[4] for r in rows] == ["PROTECT", "PROTECT", "UNPROTECT"]
    first, second, gone = rows
    assert first[5] is None and first[6]["final_when"] == "status in ('approved','paid')"
    assert second[5]["mutable_columns"] == ["paid", "reconciled"]
    assert second[6]["mutable_columns"] == ["paid", "reconciled", "note"]
    assert second[10] == "notes stay editable"  # a loosening re-protect carries its reason
    assert gone[10] == "moving to the new ledger" and gone[8] == "ll_admin" and gone[6] is None


def test_lock_events_are_audited_with_lock_id_scope_and_reason(db, app):
    ctl = db.connect("controller")
    lock_id = ctl.execute("SELECT ledgerlock.lock_period('1', %s, %s)", MARCH).fetchone()[0]
    ctl.execute("SELECT ledgerlock.upgrade_lock(%s)", (lock_id,))
    db.connect("admin").execute("SELECT ledgerlock.unlock_period(%s, 'late supplier invoice')", (lock_id,))
    rows = events(db.connect("auditor"), "table_name = 'ledgerlock.lock_event'::regclass")
    assert [(r[4], r[3], r[12]) for r in rows] == [("LOCK", "1", lock_id), ("UPGRADE", "1", lock_id),
                                                   ("UNLOCK", "1", lock_id)]
    assert rows[2][10] == "late supplier invoice" and rows[2][8] == "ll_admin"
    assert rows[0][6]["kind"] == "lock" and rows[0][6]["lock_id"] == lock_id


def test_writes_in_an_unlocked_window_carry_the_window_and_its_unlock_reason(db, app):
    ctl = db.connect("controller")
    lock_id = ctl.execute("SELECT ledgerlock.lock_period('1', %s, %s)", MARCH).fetchone()[0]
    ctl.execute("SELECT ledgerlock.unlock_period(%s, 'reopened for the audit adjustment')", (lock_id,))
    app.execute("INSERT INTO invoice (id, company_id, issued_on) VALUES (1, 1, '2026-03-10'), "
                "(2, 1, '2026-04-10')")
    rows = events(db.connect("auditor"), "operation = 'INSERT'")
    assert [(r[2]["id"], r[12], r[10]) for r in rows] == [
        (1, lock_id, "reopened for the audit adjustment"), (2, None, None)]


def test_the_window_lookup_follows_the_rows_scope_old_or_new(db, app):
    """Only rows whose scope (before or after the write) has an unlocked window are looked up: writes of
    other companies carry no window, and a row moved out of the reopened company still carries it."""
    ctl = db.connect("controller")
    lock_id = ctl.execute("SELECT ledgerlock.lock_period('1', %s, %s)", MARCH).fetchone()[0]
    ctl.execute("SELECT ledgerlock.unlock_period(%s, 'reopened for the audit adjustment')", (lock_id,))
    app.execute("SET ledgerlock.reason = 'routine entry'")
    app.execute("INSERT INTO invoice (id, company_id, issued_on) VALUES (1, 2, '2026-03-10'), "
                "(2, 1, '2026-03-11')")
    app.execute("UPDATE invoice SET company_id = 2 WHERE id = 2")
    rows = events(db.connect("auditor"), "operation IN ('INSERT', 'UPDATE')")
    assert [(r[4], r[2]["id"], r[12], r[10]) for r in rows] == [
        ("INSERT", 1, None, "routine entry"),
        ("INSERT", 2, lock_id, "reopened for the audit adjustment"),
        ("UPDATE", 2, lock_id, "reopened for the audit adjustment")]


def test_override_writes_carry_the_override_window_and_reason(db, app):
    app.execute("INSERT INTO invoice (id, company_id, issued_on) VALUES (1, 1, '2026-03-10')")
    ctl = db.connect("controller")
    lock_id = ctl.execute("SELECT ledgerlock.lock_period('1', %s, %s)", MARCH).fetchone()[0]
    with ctl.transaction():
        ov = ctl.execute("SELECT ledgerlock.begin_override('bank fee booked late')").fetchone()[0]
        ctl.execute("UPDATE invoice SET amount = 3 WHERE id = 1")
    (row,) = events(db.connect("auditor"), "operation = 'UPDATE'")
    assert (row[13], row[12], row[10], row[8]) == (ov, lock_id, "bank fee booked late", "ll_controller")
    kinds = [r[4] for r in events(db.connect("auditor"), "table_name = 'ledgerlock.lock_event'::regclass")]
    assert kinds == ["LOCK", "OVERRIDE"]


def test_skipped_writes_are_audited_under_their_table(db, app):
    ctl = db.connect("controller")
    lock_id = ctl.execute("SELECT ledgerlock.lock_period('1', %s, %s)", MARCH).fetchone()[0]
    with app.transaction():
        app.execute("SET LOCAL ledgerlock.on_locked = 'skip'")
        app.execute("INSERT INTO invoice (id, company_id, issued_on) VALUES (1, 1, '2026-03-10'), "
                    "(2, 1, '2026-04-10')")
    rows = events(db.connect("auditor"), "operation IN ('SKIP', 'INSERT')")
    assert [(r[4], r[1], r[2]) for r in rows] == [("SKIP", "invoice", {"id": 1}), ("INSERT", "invoice", {"id": 2})]
    assert rows[0][12] == lock_id and rows[0][6]["issued_on"] == "2026-03-10"


def test_number_format_changes_are_audited(db):
    db.protect_invoice(number_column="number", number_format="INV-{YYYY}-{SEQ:5}")
    db.connect("admin").execute("SELECT ledgerlock.set_number_format('invoice', 'F-{YY}-{SEQ:4}')")
    (row,) = events(db.connect("auditor"), "operation = 'NUMBER_FORMAT'")
    assert row[5]["number_format"] == "INV-{YYYY}-{SEQ:5}" and row[6]["number_format"] == "F-{YY}-{SEQ:4}"
    assert row[8] == "ll_admin"


def test_application_cannot_change_write_or_read_events(db, app):
    app.execute("INSERT INTO invoice (id, company_id) VALUES (1, 1)")
    for stmt in ("UPDATE ledgerlock.audit_event SET actor = 'x'", "DELETE FROM ledgerlock.audit_event",
                 "TRUNCATE ledgerlock.audit_event", "TRUNCATE ledgerlock.audit_chain",
                 "DELETE FROM ledgerlock.audit_chain",
                 "INSERT INTO ledgerlock.audit_event (seq, operation, event_hash) VALUES (999, 'INSERT', 'x')",
                 "INSERT INTO ledgerlock.audit_chain VALUES (99, 99, 'x', 99, '0', '0', now(), 'x')",
                 "SELECT * FROM ledgerlock.audit_log", "SELECT * FROM ledgerlock.audit_event",
                 "SELECT ledgerlock._audit_event('INSERT', 'invoice', '{\"id\": 1}', '1', NULL, '{}', "
                 "'{\"db_user\": \"ll_admin\"}')",
                 "SELECT ledgerlock.audit_seal()", "SELECT * FROM ledgerlock.verify_audit()"):
        with refused("42501"):
            app.execute(stmt)
    # its own writes are what it can produce: events that name it
    assert {r[8] for r in events(db.owner(), "operation = 'INSERT'")} == {"ll_app"}


def test_an_event_cannot_claim_another_database_user(db):
    """_audit_event takes no user: even ledgerlock's own callers record session_user, and details cannot
    smuggle one in."""
    owner = db.owner()
    seq = owner.execute("""SELECT ledgerlock._audit_event('NOTE', NULL, NULL, '1', NULL, '{}',
                                  '{"db_user": "ll_admin", "reason": "r"}')""").fetchone()[0]
    row = owner.execute("SELECT db_user, reason, details FROM ledgerlock.audit_log WHERE seq = %s",
                        (seq,)).fetchone()
    assert row == ("postgres", "r", {"db_user": "ll_admin"})  # the claim stays a detail, the user is the login


def test_events_are_append_only_for_the_owner_too(db, app):
    app.execute("INSERT INTO invoice (id, company_id) VALUES (1, 1)")
    owner = db.owner()
    owner.execute("SELECT ledgerlock.audit_seal()")
    with refused("LL006", r"^UPDATE of ledgerlock\.audit_event is refused: the audit trail is append-only$"):
        owner.execute("UPDATE ledgerlock.audit_event SET actor = 'x'")
    with refused("LL006", r"^DELETE of ledgerlock\.audit_event is refused"):
        owner.execute("DELETE FROM ledgerlock.audit_event")
    with refused("LL006", r"^TRUNCATE of ledgerlock\.audit_event is refused"):
        owner.execute("TRUNCATE ledgerlock.audit_event CASCADE")
    with refused("LL006", r"^UPDATE of ledgerlock\.audit_chain is refused"):
        owner.execute("UPDATE ledgerlock.audit_chain SET chain_hash = 'x'")
    with refused("LL006", r"^TRUNCATE of ledgerlock\.audit_chain is refused"):
        owner.execute("TRUNCATE ledgerlock.audit_chain")
    owner.execute("SET session_replication_role = replica")  # ENABLE ALWAYS: replica mode does not help
    with refused("LL006"):
        owner.execute("DELETE FROM ledgerlock.audit_event")
    owner.execute("RESET session_replication_role")
    assert owner.execute("SELECT count(*) FROM ledgerlock.audit_event WHERE actor IS NULL").fetchone()[0] >= 2
    # the permitted neighbour: appending
    owner.execute("SELECT ledgerlock._audit_event('NOTE', NULL, NULL, NULL, NULL, NULL, NULL)")


def test_guards_on_the_trail_are_enable_always(db):
    rows = db.owner().execute(
        """SELECT c.relname, t.tgname, t.tgenabled FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
           WHERE c.relname IN ('audit_event', 'audit_chain') AND NOT t.tgisinternal ORDER BY 1, 2""").fetchall()
    assert rows == [("audit_chain", "ll_90_append_only", "A"), ("audit_chain", "ll_90_no_truncate", "A"),
                    ("audit_event", "ll_90_append_only", "A"), ("audit_event", "ll_90_no_truncate", "A")]


def test_auditors_read_everything_scope_granted_roles_their_scopes(db, app):
    app.execute("INSERT INTO invoice (id, company_id) VALUES (1, 1), (2, 2)")
    owner = db.owner()
    owner.execute("CREATE ROLE ll_tenant LOGIN IN ROLE ledgerlock_controller")
    try:
        db.connect("admin").execute("SELECT ledgerlock.grant_scope('ll_tenant', '2')")
        tenant = db.cluster.conninfo(db.name, "owner").replace("user=postgres", "user=ll_tenant")
        import psycopg

        with psycopg.connect(tenant) as conn:
            scopes = [r[0] for r in conn.execute("SELECT DISTINCT scope FROM ledgerlock.audit_log ORDER BY 1")]
        assert scopes == ["2"]
        every = [r[0] for r in db.connect("auditor").execute(
            "SELECT DISTINCT coalesce(scope, '-') FROM ledgerlock.audit_log ORDER BY 1")]
        assert every == ["-", "1", "2"]
        assert db.connect("controller").execute(
            "SELECT count(DISTINCT scope) FROM ledgerlock.audit_log").fetchone()[0] == 2
    finally:
        owner.execute("DROP OWNED BY ll_tenant")
        owner.execute("DROP ROLE ll_tenant")


def test_a_failed_statement_leaves_no_event(db, app):
    app.execute("INSERT INTO invoice (id, company_id, status) VALUES (1, 1, 'approved')")
    with refused("LL001"):
        app.execute("UPDATE invoice SET amount = 5 WHERE id = 1")
    with app.transaction(force_rollback=True):
        app.execute("INSERT INTO invoice (id, company_id) VALUES (2, 1)")
    assert [r[4] for r in events(db.connect("auditor"), "table_name = 'invoice'::regclass")] == [
        "PROTECT", "INSERT"]


def test_columns_named_like_the_capture_aliases_are_captured_whole(db):
    owner = db.owner()
    owner.execute("CREATE TABLE tricky (o int, n int, r int, t int, d date NOT NULL, PRIMARY KEY (o, n))")
    owner.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON tricky TO ll_app")
    owner.execute("SELECT ledgerlock.protect('tricky', 'd')")
    app = db.connect("app")
    app.execute("INSERT INTO tricky VALUES (1, 2, 3, 4, '2026-01-01')")
    app.execute("UPDATE tricky SET r = 30")
    app.execute("DELETE FROM tricky")
    rows = events(db.connect("auditor"), "table_name = 'tricky'::regclass AND operation <> 'PROTECT'")
    assert [(r[2], (r[5] or {}).get("r"), (r[6] or {}).get("r")) for r in rows] == [
        ({"o": 1, "n": 2}, None, 3), ({"o": 1, "n": 2}, 3, 30), ({"o": 1, "n": 2}, 30, None)]
