"""Updates that move rows to other keys: each is an event on the old key (the row left it) and on the new
one (the row arrived), and the books check follows them, also when one statement moves a row onto a key
that another row of the same statement leaves (SET id = id + 1 in either order, a swap). A row deleted or
moved behind the trail is still reported."""

from __future__ import annotations

import zipfile

import pytest
from click.testing import CliRunner
from test_tampering import triggers_off

from ledgerlock import audit_bundle
from ledgerlock.cli import cli
from lltest import lives_ok


@pytest.fixture
def ledger(db):
    """A protected table whose key is deferrable, so one statement may move rows onto keys other rows of the
    same statement leave later (PostgreSQL then checks the key at the end of the statement)."""
    owner = db.owner()
    owner.execute("CREATE TABLE entry (id integer PRIMARY KEY DEFERRABLE INITIALLY IMMEDIATE, "
                  "company_id integer NOT NULL, booked_on date NOT NULL, amount numeric(12, 2) NOT NULL)")
    owner.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON entry TO ll_app")
    owner.execute("SELECT ledgerlock.protect('entry', date_column => 'booked_on', scope_column => 'company_id')")
    app = db.connect("app")
    app.execute("INSERT INTO entry SELECT g, 1, date '2025-06-01' + g, g * 10 FROM generate_series(1, 5) g")
    return db


def problems(db):
    return db.connect("auditor").execute(
        "SELECT code, row_key, problem FROM ledgerlock.audit_discrepancies() WHERE table_name = 'public.entry' "
        "ORDER BY problem").fetchall()


def verdict(db):
    return lives_ok(db.connect("auditor"), "SELECT ok, problems, problem FROM ledgerlock.verify_audit()")[0]


@pytest.mark.parametrize("order", ["ascending", "descending"])
def test_shifting_every_key_by_one_verifies(ledger, order):
    app = ledger.connect("app")
    if order == "descending":  # the rows visited from the highest key: each key is left before it is taken
        app.execute("DELETE FROM entry")
        app.execute("INSERT INTO entry SELECT g, 1, date '2025-06-01' + g, g * 10 FROM generate_series(5, 1, -1) g")
    app.execute("UPDATE entry SET id = id + 1")
    assert app.execute("SELECT array_agg(id ORDER BY id) FROM entry").fetchone()[0] == [2, 3, 4, 5, 6]
    assert problems(ledger) == []
    assert verdict(ledger) == (True, 0, None)


def test_a_swap_in_one_statement_and_moves_over_two_statements_verify(ledger):
    app = ledger.connect("app")
    app.execute("UPDATE entry SET id = CASE id WHEN 1 THEN 2 ELSE 1 END WHERE id IN (1, 2)")
    with ledger.connect("app", autocommit=False) as tx:
        tx.execute("UPDATE entry SET id = 9 WHERE id = 4")   # key 4 left...
        tx.execute("UPDATE entry SET id = 4 WHERE id = 3")   # ...and taken by another row
        tx.execute("UPDATE entry SET id = 3 WHERE id = 4")   # which moves on again: key 4 is empty
        tx.commit()
    assert app.execute("SELECT array_agg(id ORDER BY id) FROM entry").fetchone()[0] == [1, 2, 3, 5, 9]
    assert problems(ledger) == []


def test_a_row_deleted_or_moved_behind_the_trail_after_a_shift_is_reported(ledger):
    app = ledger.connect("app")
    app.execute("UPDATE entry SET id = id + 1")
    su = ledger.owner()
    with triggers_off(su, "entry"):
        su.execute("DELETE FROM entry WHERE id = 3")      # a key the shift both left and took
        su.execute("UPDATE entry SET id = 7 WHERE id = 6")
    found = {(code, key["id"]) for code, key, _ in problems(ledger)}
    assert found == {("row_missing", 3), ("row_missing", 6), ("row_unrecorded", 7)}
    ok, n, _ = verdict(ledger)
    assert not ok and n == 3


@pytest.mark.parametrize("order", ["ascending", "descending"])
def test_a_shift_of_every_key_is_bundled_with_each_keys_new_row_and_proven_offline(ledger, order, tmp_path):
    """rows.json replays the moves as the books check does: after SET id = id + 1 (visited in either order)
    each key holds the row that arrived there, key 1 none, and the bundle verifies offline."""
    app = ledger.connect("app")
    if order == "descending":
        app.execute("DELETE FROM entry")
        app.execute("INSERT INTO entry SELECT g, 1, date '2025-06-01' + g, g * 10 FROM generate_series(5, 1, -1) g")
    app.execute("UPDATE entry SET id = id + 1")
    path = tmp_path / "june.zip"
    res = CliRunner().invoke(cli, ["--dsn", ledger.conninfo("auditor"), "audit", "bundle", "--scope", "1",
                                   "--from", "2025-06-01", "--to", "2025-06-30", "-o", str(path)])
    assert res.exit_code == 0, res.output
    with zipfile.ZipFile(path) as z:
        rows = audit_bundle.loads(z.read("rows.json").decode())
    images = {int(r["row_key"]["id"]): r["image"] and str(r["image"]["amount"]) for r in rows}
    assert images == {1: None, 2: "10.00", 3: "20.00", 4: "30.00", 5: "40.00", 6: "50.00"}
    assert all(r["live_matches"] is True for r in rows)
    rep = audit_bundle.verify_bundle(str(path))
    assert rep.ok and rep.rows == 6, rep.problems
