"""A table's audit capture is made again by the DDL guard inside the ALTER TABLE that adds a json column (the
capture keeps a json column as its exact text, and which columns are json is written into it). Writers meet
that ALTER from both sides: one whose transaction is open when it comes (the ALTER waits for it), and
writers that come while it is uncommitted (they wait for it, and may name the new column). Each must be
recorded by the capture in force for the table it wrote: the old one before, the new one after, never a
json value recorded through jsonb. Real connections, explicit steps; every wait is shown on the server."""

from __future__ import annotations

from lltest import Background

DUPLICATE_KEYS = '{"a": 2, "a": 1}'  # jsonb would keep {"a": 1}: only the exact text shows the first key


def _latest_image(db, key: int) -> dict:
    return db.connect("auditor").execute(
        "SELECT new_row FROM ledgerlock.audit_event WHERE table_oid = 'invoice'::regclass AND row_key = %s "
        "ORDER BY seq DESC LIMIT 1", (f'{{"id": {key}}}',)).fetchone()[0]


def _discrepancies(db) -> list[tuple]:
    return db.connect("auditor").execute(
        "SELECT code, table_name, row_key, column_name FROM ledgerlock.audit_discrepancies()").fetchall()


def test_writers_on_both_sides_of_an_added_json_column_are_recorded_by_the_capture_in_force(db):
    db.protect_invoice()
    db.connect("app").execute("INSERT INTO invoice (id, company_id, amount) VALUES (1, 1, 10), (2, 1, 20), "
                              "(3, 2, 30)")
    owner = db.owner()
    owner.execute("SELECT ledgerlock.install_ddl_guard()")

    early = db.connect("app", autocommit=False)
    early.execute("UPDATE invoice SET amount = 11 WHERE id = 1")  # open when the ALTER comes
    ddl_conn = db.connect("owner", autocommit=False)
    ddl = Background(ddl_conn, "ALTER TABLE invoice ADD COLUMN meta json")
    assert ddl.wait_until_blocked(owner) == "relation"
    early.commit()
    ddl.join()
    assert ddl.error is None, ddl.error

    # the ALTER, and the capture the guard made again in it, are not committed yet: these writers wait for it
    late = [
        Background(db.connect("app"), f"UPDATE invoice SET meta = '{DUPLICATE_KEYS}' WHERE id = 2"),
        Background(db.connect("app"), "INSERT INTO invoice (id, company_id, amount, meta) "
                                      "VALUES (4, 2, 40, '{\"b\": 1, \"b\": 2}')"),
        Background(db.connect("app"), "UPDATE invoice SET amount = 31 WHERE id = 3"),
    ]
    for writer in late:
        assert writer.wait_until_blocked(owner) == "relation"
    ddl_conn.commit()
    for writer in late:
        writer.join()
        assert writer.error is None, writer.error

    assert _latest_image(db, 1)["amount"] == 11 and "meta" not in _latest_image(db, 1)  # before: the old capture
    assert _latest_image(db, 2)["meta"] == DUPLICATE_KEYS
    assert _latest_image(db, 4)["meta"] == '{"b": 1, "b": 2}'
    assert _latest_image(db, 3)["amount"] == 31 and _latest_image(db, 3)["meta"] == "null"
    assert db.connect("auditor").execute(
        "SELECT count(*) FROM ledgerlock.doctor_findings() WHERE finding LIKE '%json columns%'").fetchone()[0] == 0
    assert _discrepancies(db) == []
    # the permitted neighbour: the same rows rewritten behind the trail are reported, the duplicate key included
    owner.execute("SELECT ledgerlock.uninstall_ddl_guard()")
    owner.execute("ALTER TABLE invoice DISABLE TRIGGER USER")
    owner.execute("""UPDATE invoice SET meta = '{"a": 1, "a": 2}' WHERE id = 2""")
    owner.execute("UPDATE invoice SET amount = 12 WHERE id = 1")
    owner.execute("ALTER TABLE invoice ENABLE TRIGGER USER")
    assert sorted((code, key["id"], col) for code, _, key, col in _discrepancies(db)) == [
        ("row_changed", 1, "amount"), ("row_changed", 2, "meta")]
