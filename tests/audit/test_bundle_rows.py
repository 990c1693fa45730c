"""The auditor's bundle proves the selected rows' latest images offline: rows.json carries each bundled row's
image with the event that recorded it (every hashed field) and its chain link, and `audit verify --bundle`
recomputes the event's hash, finds it in the bundle's chain, and checks the image against it; a row the
database found changed behind the trail when bundling is reported."""

from __future__ import annotations

import json
import zipfile

import pytest
from click.testing import CliRunner
from test_tampering import triggers_off

from ledgerlock import audit_bundle
from ledgerlock.cli import cli


@pytest.fixture
def books(db):
    db.protect_invoice()
    app = db.connect("app")
    app.execute("INSERT INTO invoice (id, company_id, issued_on, amount) "
                "SELECT g, 1, date '2025-03-01' + g, g * 10 FROM generate_series(1, 6) g")
    app.execute("UPDATE invoice SET amount = amount + 1 WHERE id IN (2, 3)")
    app.execute("DELETE FROM invoice WHERE id = 6")
    return db


def bundle(db, path):
    res = CliRunner().invoke(cli, ["--dsn", db.conninfo("auditor"), "audit", "bundle", "--scope", "1",
                                   "--from", "2025-03-01", "--to", "2025-03-31", "-o", str(path)])
    assert res.exit_code == 0, res.output
    return path


def rewrite(path, name, change):
    """The bundle with one member changed (a forger's edit)."""
    with zipfile.ZipFile(path) as z:
        members = {i.filename: z.read(i.filename) for i in z.infolist()}
    if change is None:
        del members[name]
    else:
        members[name] = change(members[name].decode()).encode()
    out = path.with_name("edited-" + path.name)
    with zipfile.ZipFile(out, "w") as z:
        for n, data in members.items():
            z.writestr(n, data)
    return out


def test_every_bundled_row_has_its_latest_image_proven(books, tmp_path):
    path = bundle(books, tmp_path / "march.zip")
    with zipfile.ZipFile(path) as z:
        rows = audit_bundle.loads(z.read("rows.json").decode())
    by_id = {int(r["row_key"]["id"]): r for r in rows}
    assert sorted(by_id) == [1, 2, 3, 4, 5, 6]
    assert by_id[2]["image"]["amount"] == "21.00" and by_id[2]["event"]["operation"] == "UPDATE"
    assert by_id[6]["image"] is None and by_id[6]["event"]["operation"] == "DELETE"
    assert all(r["live_matches"] is True for r in rows)
    rep = audit_bundle.verify_bundle(str(path))
    assert rep.ok and rep.rows == 6, rep.problems
    res = CliRunner().invoke(cli, ["audit", "verify", "--bundle", str(path)])
    assert res.exit_code == 0 and "6 row images proven" in res.output, res.output


@pytest.mark.parametrize(("edit", "problem"), [
    (lambda t: t.replace('"amount": 21.00', '"amount": 2100.00', 1), "its image differs from the one event seq"),
    (lambda t: t.replace('"actor": null', '"actor": "x"', 1), "was modified: its content does not match its hash"),
    (lambda t: t.replace('"live_matches": true', '"live_matches": false', 1), "the live row differed"),
])
def test_an_edited_row_image_or_its_event_fails_offline(books, tmp_path, edit, problem):
    edited = rewrite(bundle(books, tmp_path / "march.zip"), "rows.json", edit)
    rep = audit_bundle.verify_bundle(str(edited))
    assert not rep.ok and any(problem in p for p in rep.problems), rep.problems
    assert CliRunner().invoke(cli, ["audit", "verify", "--bundle", str(edited)]).exit_code == 3


def test_rows_json_removed_while_the_manifest_counts_it_fails(books, tmp_path):
    edited = rewrite(bundle(books, tmp_path / "march.zip"), "rows.json", None)
    rep = audit_bundle.verify_bundle(str(edited))
    assert not rep.ok and any("lacks rows.json" in p for p in rep.problems), rep.problems


def test_a_row_changed_behind_the_trail_is_reported_by_the_bundle(books, tmp_path):
    su = books.owner()
    with triggers_off(su, "invoice"):
        su.execute("UPDATE invoice SET amount = 1 WHERE id = 4")
    path = bundle(books, tmp_path / "march.zip")
    with zipfile.ZipFile(path) as z:
        rows = json.loads(z.read("rows.json"))
    assert [r["row_key"]["id"] for r in rows if not r["live_matches"]] == [4]
    rep = audit_bundle.verify_bundle(str(path))
    assert not rep.ok and rep.problems == [
        f'row public.invoice {{"id": 4}}: the live row differed from event seq '
        f'{next(r["event"]["seq"] for r in rows if r["row_key"]["id"] == 4)} when the bundle was written '
        "(the books did not match the trail)"]


def test_rows_moved_to_other_keys_are_bundled_under_both_keys(books, tmp_path):
    """An UPDATE that changes the key: the old key's latest fact is that the row left it (no image, the
    UPDATE recorded it), the new key's is the moved row; a shift of every key by one in one statement leaves
    each key with the row that arrived there (its occupant left within the statement)."""
    app = books.connect("app")
    app.execute("UPDATE invoice SET id = 40 WHERE id = 4")
    app.execute("UPDATE invoice SET id = id + 100 WHERE id IN (1, 2)")
    app.execute("UPDATE invoice SET id = id - 1 WHERE id IN (101, 102)")  # 101 -> 100, then 102 -> 101
    path = bundle(books, tmp_path / "march.zip")
    with zipfile.ZipFile(path) as z:
        rows = audit_bundle.loads(z.read("rows.json").decode())
    by_id = {int(r["row_key"]["id"]): r for r in rows}
    assert sorted(by_id) == [1, 2, 3, 4, 5, 6, 40, 100, 101, 102]
    move = by_id[4]["event"]
    assert by_id[4]["image"] is None and move["operation"] == "UPDATE" and int(move["row_key"]["id"]) == 40
    assert int(by_id[40]["image"]["id"]) == 40 and by_id[40]["event"]["seq"] == move["seq"]
    assert by_id[100]["image"]["amount"] == "10.00" and by_id[101]["image"]["amount"] == "21.00"
    assert by_id[102]["image"] is None and by_id[1]["image"] is None and by_id[2]["image"] is None
    assert all(r["live_matches"] is True for r in rows), [r for r in rows if not r["live_matches"]]
    rep = audit_bundle.verify_bundle(str(path))
    assert rep.ok and rep.rows == 10, rep.problems
    # a forger who claims the row is still at its old key is caught by the move in the bundle
    with zipfile.ZipFile(path) as z:
        insert = next(e for e in audit_bundle.loads(z.read("events.json").decode())
                      if e["operation"] == "INSERT" and int(e["row_key"]["id"]) == 4)
    forged = rewrite(path, "rows.json", lambda t: audit_bundle.jsonb_text([
        r | {"image": insert["new_row"], "event": insert} if int(r["row_key"]["id"]) == 4 else r
        for r in audit_bundle.loads(t)]))
    rep = audit_bundle.verify_bundle(str(forged))
    assert not rep.ok and rep.problems == [
        f'row public.invoice {{"id": 4}}: bundled event seq {move["seq"]} is later than event seq {insert["seq"]}, '
        "whose image it claims as the latest"], rep.problems


def test_a_column_holding_values_no_event_recorded_counts_against_every_row_of_its_table(books, tmp_path):
    """A problem of the whole table (here a column added with a default, column_unrecorded) has no row key:
    the bundle holds it against each of the table's rows, until an admin records the column's values."""
    books.owner().execute("ALTER TABLE invoice ADD COLUMN channel text NOT NULL DEFAULT 'web'")
    path = bundle(books, tmp_path / "march.zip")
    with zipfile.ZipFile(path) as z:
        rows = json.loads(z.read("rows.json"))
    # every bundled row of the table, the deleted one too: the problem is the table's, and has no row key
    assert sorted(r["row_key"]["id"] for r in rows if not r["live_matches"]) == [1, 2, 3, 4, 5, 6]
    assert not audit_bundle.verify_bundle(str(path)).ok
    books.connect("admin").execute("SELECT ledgerlock.record_added_columns('invoice', 'channel added')")
    path = bundle(books, tmp_path / "march-recorded.zip")
    rep = audit_bundle.verify_bundle(str(path))
    assert rep.ok, rep.problems
