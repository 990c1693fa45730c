"""Partitioned tables: the protected table guards every partition, new ones included; writing straight
into a partition is guarded; TRUNCATE of a partition is refused; detaching does not free final rows."""

from __future__ import annotations

import pytest

from lltest import refused

STATE = "SELECT tableoid::regclass::text, * FROM ledger_entry ORDER BY id"
FINAL = r"^ledger_entry(_2025|_2026)? id=1 posted_on=2025-03-01 is final and cannot be (updated|deleted)"


def guards(conn, rel, *, row_level_only=False):
    return conn.execute(
        "SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = %s::regclass AND tgname LIKE 'll\\_%%' "
        "AND (NOT %s OR tgtype & 1 = 1 OR tgname = 'll_00_truncate') ORDER BY 1", (rel, row_level_only)).fetchall()


@pytest.mark.parametrize("stmt", [
    "UPDATE ledger_entry SET amount = 0 WHERE id = 1",
    "UPDATE ledger_entry_2025 SET amount = 0 WHERE id = 1",
    "DELETE FROM ledger_entry_2025 WHERE id = 1",
    "UPDATE ledger_entry SET posted_on = '2026-03-01' WHERE id = 1",  # row movement to another partition
    "INSERT INTO ledger_entry_2025 VALUES (1, '2025-03-01', 'draft', 0) "
    "ON CONFLICT (id, posted_on) DO UPDATE SET status = 'draft'",
])
def test_final_rows_are_guarded_through_the_parent_and_the_partition(journal, unchanged, stmt):
    unchanged(STATE)
    with refused("LL001", FINAL):
        journal.execute(stmt)


def test_draft_rows_in_partitions_stay_editable(journal):
    journal.execute("UPDATE ledger_entry_2025 SET amount = 21 WHERE id = 2")
    journal.execute("UPDATE ledger_entry SET posted_on = '2026-04-01' WHERE id = 2")  # moves partition
    journal.execute("DELETE FROM ledger_entry_2026 WHERE id = 2")


MOVED = (r"^an UPDATE of public\.ledger_entry moved 1 row\(s\) to another partition without writing them there: "
         r"their new dates lie in a locked window, where ledgerlock\.on_locked = 'skip' skips inserts, and the rows "
         r"would have been deleted$")


def test_skip_mode_cannot_make_an_update_that_moves_a_row_into_a_locked_window_delete_it(db, journal):
    """PostgreSQL runs an UPDATE that moves a row to another partition as a delete and an insert, and skip mode
    skips inserts into locked windows: the application's UPDATE moving draft 2 into a locked 2026 month under
    `on_locked = 'skip'` deleted it, with no audit event, and verification reported it missing for good. Refused
    (LL002) and undone; the neighbours: the same move into an open month, and skip mode skipping an INSERT."""
    db.connect("admin").execute("SELECT ledgerlock.lock_period('*', '2026-01-01', '2026-01-31', 'hard')")
    before = journal.execute(STATE).fetchall()
    with journal.transaction():
        journal.execute("SET LOCAL ledgerlock.on_locked = 'skip'")
        with refused("LL002", MOVED) as info:
            journal.execute("UPDATE ledger_entry SET posted_on = '2026-01-15' WHERE id = 2")
        assert info.value.diag.message_hint.startswith("skip mode applies to inserts")
    with refused("LL002", r"^Period 2026-01-01\.\.2026-01-31 is locked \(hard\) for scope \*: ledger_entry"):
        journal.execute("UPDATE ledger_entry SET posted_on = '2026-01-15' WHERE id = 2")  # the default mode
    with journal.transaction():  # two rows, one moving into the window: refused whole (row 4 with it)
        journal.execute("SET LOCAL ledgerlock.on_locked = 'skip'")
        journal.execute("INSERT INTO ledger_entry VALUES (4, '2025-05-01', 'draft', 40)")
        with refused("LL002", MOVED):
            journal.execute("UPDATE ledger_entry SET posted_on = CASE id WHEN 2 THEN date '2026-01-15' "
                            "ELSE date '2026-05-01' END WHERE id IN (2, 4)")
    assert journal.execute(STATE).fetchall() == before
    assert db.connect("auditor").execute("SELECT ok, problems FROM ledgerlock.verify_audit()").fetchone() == (True, 0)
    with journal.transaction():
        journal.execute("SET LOCAL ledgerlock.on_locked = 'skip'")
        journal.execute("INSERT INTO ledger_entry VALUES (5, '2026-01-20', 'draft', 50)")  # skipped, recorded
        journal.execute("UPDATE ledger_entry SET posted_on = '2026-04-01' WHERE id = 2")  # an open month
    assert journal.execute("SELECT tableoid::regclass::text, id FROM ledger_entry WHERE id IN (2, 5)").fetchall() == [
        ("ledger_entry_2026", 2)]
    assert db.connect("auditor").execute("SELECT ok, problems FROM ledgerlock.verify_audit()").fetchone() == (True, 0)


def test_a_merge_that_moves_a_row_is_reported_by_verification_since_postgresql_passes_no_old_row(db, journal):
    """PostgreSQL (15.18, 16.2 and 18.6, measured 2026-11-30) hands the statement triggers of a MERGE that moves a
    row to another partition no old row at all, and the new row only as an inserted one, when the MERGE has an
    INSERT action. The capture, which reads those transition tables, cannot record the move: verification reports
    the old key missing, and the new one unrecorded or recorded as an insert (docs/audit.md, "What the capture
    cannot see"). The row triggers still fire, so every rule holds; an UPDATE records the same move."""
    auditor = db.connect("auditor")

    def found():
        return auditor.execute("SELECT code, row_key::text FROM ledgerlock.audit_discrepancies() "
                               "ORDER BY 2, 1").fetchall()

    def events(after):
        return auditor.execute("SELECT operation, row_key::text FROM ledgerlock.audit_event WHERE seq > %s "
                               "ORDER BY seq", (after,)).fetchall()

    journal.execute("MERGE INTO ledger_entry t USING (VALUES (2)) AS s(id) ON t.id = s.id "
                    "WHEN MATCHED THEN UPDATE SET posted_on = '2026-04-01'")
    assert found() == [("row_missing", '{"id": 2, "posted_on": "2025-04-01"}'),
                       ("row_unrecorded", '{"id": 2, "posted_on": "2026-04-01"}')]
    with refused("LL001", FINAL):  # the rules hold: a final row is not moved
        journal.execute("MERGE INTO ledger_entry t USING (VALUES (1)) AS s(id) ON t.id = s.id "
                        "WHEN MATCHED THEN UPDATE SET posted_on = '2026-04-01'")
    journal.execute("INSERT INTO ledger_entry VALUES (4, '2025-05-01', 'draft', 40)")
    seq = auditor.execute("SELECT max(seq) FROM ledgerlock.audit_event").fetchone()[0]
    journal.execute("MERGE INTO ledger_entry t USING (VALUES (4), (5)) AS s(id) ON t.id = s.id "
                    "WHEN MATCHED THEN UPDATE SET posted_on = '2026-05-01' "
                    "WHEN NOT MATCHED THEN INSERT VALUES (s.id, '2025-06-01', 'draft', 50)")
    assert events(seq) == [("INSERT", '{"id": 4, "posted_on": "2026-05-01"}'),
                           ("INSERT", '{"id": 5, "posted_on": "2025-06-01"}')]
    assert ("row_missing", '{"id": 4, "posted_on": "2025-05-01"}') in found() and len(found()) == 3
    seq = auditor.execute("SELECT max(seq) FROM ledgerlock.audit_event").fetchone()[0]
    journal.execute("UPDATE ledger_entry SET posted_on = '2026-07-01' WHERE id = 5")  # the neighbour
    assert events(seq) == [("UPDATE", '{"id": 5, "posted_on": "2026-07-01"}')]
    assert len(found()) == 3


@pytest.mark.parametrize("target", ["ledger_entry", "ledger_entry_2025", "ledger_entry_2026"])
def test_truncate_of_the_table_or_any_partition_is_refused(journal, unchanged, target):
    unchanged(STATE)
    with refused("LL008", r"^TRUNCATE of public\.ledger_entry"):
        journal.execute(f"TRUNCATE {target}")


def test_every_partition_carries_enable_always_guards(db, journal):
    """Every rule's guards (row triggers cloned, the TRUNCATE guard installed per partition)."""
    owner = db.owner()
    parent = guards(owner, "ledger_entry", row_level_only=True)
    assert {("ll_00_truncate", "A"), ("ll_10_final_delete", "A"), ("ll_10_final_update", "A")} <= set(parent)
    assert all(enabled == "A" for _, enabled in parent)
    audit = {("ll_90_audit_delete", "A"), ("ll_90_audit_insert", "A"), ("ll_90_audit_update", "A")}
    for part in ("ledger_entry_2025", "ledger_entry_2026"):
        assert guards(owner, part, row_level_only=True) == parent
        assert audit <= set(guards(owner, part))  # statement-level capture, installed per partition (R5)


def test_a_new_partition_is_guarded_for_rows_and_after_reinstall_for_truncate(db, journal, unchanged):
    owner = db.owner()
    owner.execute("CREATE TABLE ledger_entry_2027 PARTITION OF ledger_entry "
                  "FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')")
    owner.execute("GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ledger_entry_2027 TO ll_app")
    journal.execute("INSERT INTO ledger_entry VALUES (4, '2027-03-01', 'final', 40)")
    unchanged(STATE)
    with refused("LL001", r"id=4 posted_on=2027-03-01 is final and cannot be updated"):
        journal.execute("UPDATE ledger_entry_2027 SET amount = 0 WHERE id = 4")
    assert ("ll_10_final_update", "A") in guards(owner, "ledger_entry_2027")
    # statement triggers are not passed on: without the DDL guard, reinstall_guards() (run by migrate)
    # gives the new partition its TRUNCATE guard; doctor reports the gap until then
    owner.execute("SELECT ledgerlock.reinstall_guards()")
    with refused("LL008"):
        journal.execute("TRUNCATE ledger_entry_2027")


def test_with_the_ddl_guard_a_new_or_attached_partition_is_guarded_at_once(db, journal, ddl_guard, unchanged):
    owner = db.owner()
    owner.execute("CREATE TABLE ledger_entry_2027 PARTITION OF ledger_entry "
                  "FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')")
    owner.execute("CREATE TABLE ledger_entry_2028 (LIKE ledger_entry)")
    owner.execute("ALTER TABLE ledger_entry ATTACH PARTITION ledger_entry_2028 "
                  "FOR VALUES FROM ('2028-01-01') TO ('2029-01-01')")
    owner.execute("GRANT ALL ON ledger_entry_2027, ledger_entry_2028 TO ll_app")
    journal.execute("INSERT INTO ledger_entry VALUES (5, '2028-03-01', 'final', 50)")
    unchanged(STATE)
    for part in ("ledger_entry_2027", "ledger_entry_2028"):
        assert ("ll_00_truncate", "A") in guards(owner, part)
        with refused("LL008"):
            journal.execute(f"TRUNCATE {part}")
    with refused("LL001"):
        journal.execute("DELETE FROM ledger_entry_2028 WHERE id = 5")


def test_the_application_cannot_detach_or_drop_a_partition(journal, unchanged):
    unchanged(STATE)
    for stmt in ("ALTER TABLE ledger_entry DETACH PARTITION ledger_entry_2025",
                 "DROP TABLE ledger_entry_2025",
                 "ALTER TABLE ledger_entry_2025 DISABLE TRIGGER ll_10_final_update"):
        with refused("42501"):
            journal.execute(stmt)


def test_detaching_a_partition_is_refused_under_the_ddl_guard(db, journal, ddl_guard, unchanged):
    owner = db.owner()  # even the superuser owner: detaching would leave final rows unguarded
    unchanged(STATE)
    with refused("LL008", r"^detaching partition public\.ledger_entry_2025 from public\.ledger_entry is refused"):
        owner.execute("ALTER TABLE ledger_entry DETACH PARTITION ledger_entry_2025")
    with refused("LL008", r"refused"):
        owner.execute("DROP TABLE ledger_entry_2026")
    with refused("LL001"):
        journal.execute("UPDATE ledger_entry_2025 SET amount = 0 WHERE id = 1")


def test_unprotect_removes_every_partition_guard_and_lets_detach_through(db, journal, ddl_guard):
    # the table holds final rows: retiring it is a superuser's call
    db.owner().execute("SELECT ledgerlock.unprotect('ledger_entry', 'archive 2025 elsewhere')")
    owner = db.owner()
    for part in ("ledger_entry", "ledger_entry_2025", "ledger_entry_2026"):
        assert guards(owner, part) == []
    owner.execute("ALTER TABLE ledger_entry DETACH PARTITION ledger_entry_2025")


def test_a_partition_cannot_be_protected_or_unprotected_on_its_own(db, journal):
    admin = db.connect("admin")
    with refused("22023", r"is a partition of protected table public\.ledger_entry"):
        admin.execute("SELECT ledgerlock.protect('ledger_entry_2025', 'posted_on')")
    with refused("22023", r"is a partition of protected table public\.ledger_entry"):
        admin.execute("SELECT ledgerlock.unprotect('ledger_entry_2025', 'just this year')")
    with refused("LL001"):
        journal.execute("UPDATE ledger_entry_2025 SET amount = 0 WHERE id = 1")


def test_a_write_straight_into_a_partition_is_audited(db, journal):
    owner = db.owner()
    if owner.execute("SELECT to_regclass('ledgerlock.audit_log')").fetchone()[0] is None:
        pytest.fail("the audit rule is not installed")
    before = owner.execute("SELECT count(*) FROM ledgerlock.audit_log").fetchone()[0]
    journal.execute("UPDATE ledger_entry_2025 SET amount = 22 WHERE id = 2")
    after = owner.execute("SELECT count(*) FROM ledgerlock.audit_log").fetchone()[0]
    assert after == before + 1


AUDITED = ("SELECT table_name::text, operation, row_key ->> 'id', old_row ->> 'amount', new_row ->> 'amount' "
           "FROM ledgerlock.audit_log WHERE seq > %s ORDER BY seq")


def _last_seq(owner):
    return owner.execute("SELECT coalesce(max(seq), 0) FROM ledgerlock.audit_log").fetchone()[0]


def test_writes_through_the_parent_or_a_partition_are_recorded_once_under_the_protected_table(db, journal):
    owner = db.owner()
    mark = _last_seq(owner)
    journal.execute("INSERT INTO ledger_entry_2026 VALUES (7, '2026-05-01', 'draft', 70)")  # straight in
    journal.execute("INSERT INTO ledger_entry VALUES (8, '2025-05-01', 'draft', 80)")  # routed by the parent
    journal.execute("DELETE FROM ledger_entry_2026 WHERE id = 7")
    journal.execute("UPDATE ledger_entry SET amount = 81 WHERE id = 8")
    assert owner.execute(AUDITED, (mark,)).fetchall() == [
        ("ledger_entry", "INSERT", '7', None, "70"),
        ("ledger_entry", "INSERT", '8', None, "80"),
        ("ledger_entry", "DELETE", '7', "70", None),
        ("ledger_entry", "UPDATE", '8', "80", "81"),
    ]
    assert db.connect("auditor").execute("SELECT ok FROM ledgerlock.verify_audit()").fetchone()[0] is True


def test_a_new_or_attached_partition_is_audited_with_the_ddl_guard_or_after_reinstall(db, journal, ddl_guard):
    owner = db.owner()
    owner.execute("CREATE TABLE ledger_entry_2027 PARTITION OF ledger_entry "
                  "FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')")
    owner.execute("CREATE TABLE ledger_entry_2028 (LIKE ledger_entry)")
    owner.execute("ALTER TABLE ledger_entry ATTACH PARTITION ledger_entry_2028 "
                  "FOR VALUES FROM ('2028-01-01') TO ('2029-01-01')")
    owner.execute("GRANT ALL ON ledger_entry_2027, ledger_entry_2028 TO ll_app")
    mark = _last_seq(owner)
    journal.execute("INSERT INTO ledger_entry_2027 VALUES (9, '2027-05-01', 'draft', 90)")
    journal.execute("INSERT INTO ledger_entry_2028 VALUES (10, '2028-05-01', 'draft', 100)")
    assert [r[:3] for r in owner.execute(AUDITED, (mark,)).fetchall()] == [
        ("ledger_entry", "INSERT", '9'), ("ledger_entry", "INSERT", '10')]


def test_a_partition_created_without_the_ddl_guard_is_audited_after_reinstall(db, journal):
    owner = db.owner()
    owner.execute("CREATE TABLE ledger_entry_2027 PARTITION OF ledger_entry "
                  "FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')")
    owner.execute("GRANT ALL ON ledger_entry_2027 TO ll_app")
    owner.execute("SELECT ledgerlock.reinstall_guards()")
    mark = _last_seq(owner)
    journal.execute("UPDATE ledger_entry SET posted_on = '2027-06-01' WHERE id = 2")  # moves into the new one
    journal.execute("UPDATE ledger_entry_2027 SET amount = 5 WHERE id = 2")
    assert [r[1:3] for r in owner.execute(AUDITED, (mark,)).fetchall()] == [
        ("UPDATE", '2'), ("UPDATE", '2')]


def test_unprotect_removes_the_capture_from_every_partition(db, journal):
    # the table holds final rows: retiring it is a superuser's call
    db.owner().execute("SELECT ledgerlock.unprotect('ledger_entry', 'archive elsewhere')")
    owner = db.owner()
    assert owner.execute("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'll\\_90\\_%%' AND tgrelid = ANY("
                         "ARRAY['ledger_entry', 'ledger_entry_2025', 'ledger_entry_2026']::regclass[])"
                         ).fetchone()[0] == 0
    mark = _last_seq(owner)
    journal.execute("UPDATE ledger_entry_2025 SET amount = 23 WHERE id = 2")
    assert owner.execute(AUDITED, (mark,)).fetchall() == []


def test_a_guards_drift_is_judged_by_its_definition_whatever_the_sessions_printing_settings(db, journal):
    """The DDL guard tells a renamed (or hand-edited) guard by comparing its definition with the fingerprint
    recorded at install. It read the definition under the DDL session's settings: with quote_all_identifiers on
    every guard of a partition read as drifted, so any ALTER TABLE of a partition in such a session installed
    its table's guards again. Now read under pinned settings (ledgerlock._trigger_text); a real edit still shows."""
    owner = db.owner()
    owner.execute("SET quote_all_identifiers = on")
    owner.execute("SET DateStyle = 'SQL, DMY'")
    for rel in ("ledger_entry", "ledger_entry_2025"):
        assert owner.execute("SELECT ledgerlock._drifted_guard(%s::regclass)", (rel,)).fetchone()[0] is None
    # the neighbour: a guard whose definition no longer matches its fingerprint is still told, in that session
    owner.execute("COMMENT ON TRIGGER ll_00_truncate ON ledger_entry_2025 IS 'ledgerlock:0'")
    assert owner.execute("SELECT ledgerlock._drifted_guard('ledger_entry_2025'::regclass)").fetchone()[0] \
        == "ll_00_truncate"
