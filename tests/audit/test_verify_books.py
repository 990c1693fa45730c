"""The books check finds each row's latest event among many, and its verdict does not depend on the plan the
session's planner settings lead to (join methods, memory, parallel workers): the same discrepancies, row
for row, in a plain session, in one that forbids hash joins and index scans with little memory, and in one
that makes parallel plans free."""

from __future__ import annotations

import pytest
from test_tampering import books, discrepancies, event_seq, triggers_off  # noqa: F401  (books: a fixture)

from lltest import lives_ok

PLANNER_SETTINGS = {
    "plain": {},
    "no hash joins, no index scans, little memory": {
        "enable_hashjoin": "off", "enable_indexscan": "off", "enable_indexonlyscan": "off",
        "enable_bitmapscan": "off", "work_mem": "64kB", "max_parallel_workers_per_gather": "0"},
    "no merge joins, no sorts": {"enable_mergejoin": "off", "enable_sort": "off"},
    "parallel plans for free": {
        "parallel_setup_cost": "0", "parallel_tuple_cost": "0", "min_parallel_table_scan_size": "0",
        "min_parallel_index_scan_size": "0", "max_parallel_workers_per_gather": "4"},
}


def discrepancies_under(db, settings):
    auditor = db.connect("auditor")
    for name, value in settings.items():
        auditor.execute(f"SET {name} = '{value}'")
    try:
        rows = lives_ok(auditor, "SELECT code, table_name, row_key, column_name, seq "
                        "FROM ledgerlock.audit_discrepancies()")
        return sorted(rows, key=lambda r: (r[1], sorted(r[2].items()) if r[2] else [], r[3] or "", r[0]))
    finally:
        auditor.execute("RESET ALL")


@pytest.fixture
def rewritten(books):  # noqa: F811  (the fixture imported above)
    """Invoice 7 updated, deleted, inserted again with another amount and updated again: six events under
    one key, the latest an UPDATE."""
    app = books.connect("app")
    app.execute("UPDATE invoice SET note = 'first' WHERE id = 7")
    app.execute("DELETE FROM invoice WHERE id = 7")
    app.execute("INSERT INTO invoice (id, company_id, issued_on, amount) VALUES (7, 2, '2025-03-07', 700)")
    app.execute("UPDATE invoice SET note = 'second' WHERE id = 7")
    return books


def test_the_latest_of_many_events_of_a_key_decides(rewritten):
    assert discrepancies(rewritten) == []
    latest = event_seq(rewritten, "invoice", {"id": 7}, "UPDATE")
    with triggers_off(rewritten.owner(), "invoice") as su:
        su.execute("UPDATE invoice SET amount = 70 WHERE id = 7")
    found = [d for d in discrepancies(rewritten) if d[2] == {"id": 7}]
    assert [(d[0], d[3], d[4]) for d in found] == [("row_changed", "amount", latest)]
    assert f"amount is 70.00 in the table, 700.00 in event seq {latest}" in found[0][5]


def test_a_key_deleted_behind_the_trail_after_it_was_inserted_again_is_missing(rewritten):
    latest = event_seq(rewritten, "invoice", {"id": 7}, "UPDATE")
    with triggers_off(rewritten.owner(), "invoice") as su:
        su.execute("DELETE FROM invoice WHERE id = 7")
    found = [(d[0], d[4]) for d in discrepancies(rewritten) if d[2] == {"id": 7}]
    assert found == [("row_missing", latest)]


def test_the_verdict_does_not_depend_on_the_planner_settings(rewritten):
    clean = {label: discrepancies_under(rewritten, s) for label, s in PLANNER_SETTINGS.items()}
    assert all(rows == [] for rows in clean.values()), clean
    with triggers_off(rewritten.owner(), "invoice") as su:
        su.execute("UPDATE invoice SET amount = 1 WHERE id = 21")
        su.execute("DELETE FROM invoice WHERE id = 7")
        su.execute("INSERT INTO invoice (id, company_id, issued_on, amount) VALUES (99, 1, '2025-06-01', 1)")
    seen = {label: discrepancies_under(rewritten, s) for label, s in PLANNER_SETTINGS.items()}
    expected = [("row_missing", "public.invoice", {"id": 7}, None),
                ("row_changed", "public.invoice", {"id": 21}, "amount"),
                ("row_unrecorded", "public.invoice", {"id": 99}, None)]
    for label, rows in seen.items():
        assert [r[:4] for r in rows] == expected, label
        assert rows == seen["plain"], label
