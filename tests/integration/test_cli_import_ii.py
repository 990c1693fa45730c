"""Issue 18 item 5: `ledgerlock import` reads files as spreadsheets write them (--encoding, --delimiter,
--decimal-comma), its dry run fails where the load fails, a file is not loaded twice without --again, and a
long load says which phase it is in."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ledgerlock import importer
from ledgerlock.cli import cli
from ledgerlock.commands import imports


def run(db, path, *args, role="controller"):
    return CliRunner().invoke(cli, ["--dsn", db.conninfo(role), "import", str(path), "--table", "invoice", *args])


def invoices(db):
    return db.owner().execute("SELECT company_id, amount::text, note FROM invoice ORDER BY id").fetchall()


@pytest.fixture
def protected(db):
    db.protect_invoice()
    return db


def test_a_latin1_file_gets_a_sentence_naming_the_line_then_loads_with_its_encoding(protected, tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("company_id,amount,note\n1,10.00,plain\n1,20.00,créance\n".encode("latin-1"))
    res = run(protected, path)
    assert res.exit_code == 1, res.output
    assert "latin1.csv line 3: this line is not valid utf-8" in res.stderr and "--encoding latin-1" in res.stderr
    assert "Traceback" not in res.output and invoices(protected) == []
    res = run(protected, path, "--encoding", "latin-1")
    assert res.exit_code == 0, res.output
    assert invoices(protected) == [(1, "10.00", "plain"), (1, "20.00", "créance")]
    res = run(protected, path, "--encoding", "klingon", "--again")
    assert res.exit_code == 1 and "unknown encoding 'klingon'" in res.stderr


def test_semicolons_and_decimal_commas(protected, tmp_path):
    path = tmp_path / "de.csv"
    path.write_text("company_id;amount;note\n1;1.234,50;tausend\n2;7,25;sieben\n")
    res = run(protected, path, "--delimiter", ";")
    assert res.exit_code == 1 and "invalid input syntax for type numeric" in res.stderr, res.output
    res = run(protected, path, "--delimiter", ";", "--decimal-comma")
    assert res.exit_code == 0, res.output
    assert invoices(protected) == [(1, "1234.50", "tausend"), (2, "7.25", "sieben")]
    res = run(protected, path, "--delimiter", ";;", "--again")
    assert res.exit_code == 1 and "the delimiter must be one character" in res.stderr


@pytest.mark.parametrize("row, sqlstate, words", [
    ("99,10.00,no such company", "23503", "foreign key"),
    (",10.00,no company at all", "23502", "null value in column \"company_id\""),
])
def test_the_dry_run_fails_where_the_load_fails(protected, tmp_path, row, sqlstate, words):
    path = tmp_path / "bad.csv"
    path.write_text(f"company_id,amount,note\n1,5.00,fine\n{row}\n")
    for extra in (["--dry-run"], []):
        res = run(protected, path, *extra)
        assert res.exit_code == 1, res.output
        assert f"error {sqlstate}: bad.csv line 3" in res.stderr and words in res.stderr, res.stderr
    assert invoices(protected) == []
    # the neighbour: the good row alone passes the dry run, which loads nothing
    path.write_text("company_id,amount,note\n1,5.00,fine\n")
    res = run(protected, path, "--dry-run")
    assert res.exit_code == 0 and "would load: 1" in res.stdout, res.output
    assert invoices(protected) == []


def test_the_same_file_is_not_imported_twice_without_again(protected, tmp_path):
    path = tmp_path / "batch.csv"
    path.write_text("company_id,amount,note\n1,5.00,once\n")
    assert run(protected, path).exit_code == 0
    res = run(protected, path)
    assert res.exit_code == 1, res.output
    sha = importer.file_sha256(path)
    assert f"batch.csv (sha256 {sha[:12]}…) was already imported into invoice" in res.stderr
    assert "first written by ll_controller at " in res.stderr, res.stderr
    assert "--again" in res.stderr and len(invoices(protected)) == 1
    assert run(protected, path, "--dry-run").exit_code == 1  # the dry run says so too
    # another file is not this one; --again loads the same one knowingly
    other = tmp_path / "batch2.csv"
    other.write_text("company_id,amount,note\n1,5.00,twice\n")
    assert run(protected, other).exit_code == 0
    res = run(protected, path, "--again")
    assert res.exit_code == 0, res.output
    assert [r[2] for r in invoices(protected)] == ["once", "twice", "once"]
    ctx = protected.owner().execute("SELECT DISTINCT context FROM ledgerlock.audit_event WHERE operation = 'INSERT' "
                                    "AND context LIKE 'import:%' ORDER BY 1").fetchall()
    assert {c[0] for c in ctx} == {f"import:{sha}", f"import:{importer.file_sha256(other)}"}


def test_an_import_names_its_target_and_its_phases(protected, tmp_path, monkeypatch):
    monkeypatch.setattr(imports, "PROGRESS_FROM", 0)  # show the progress of this small file as of a big one
    path = tmp_path / "phases.csv"
    path.write_text("company_id,amount,note\n1,5.00,a\n2,6.00,b\n")
    res = run(protected, path)
    assert res.exit_code == 0, res.output
    err = res.stderr
    assert f"ledgerlock: acting on {protected.cluster.server.socket_dir}:" in err
    assert err.index("uploading phases.csv") < err.index("ledgerlock: loading 2 rows into invoice through every rule") \
        < err.index("ledgerlock: done")


def test_json_report_carries_the_files_identity(protected, tmp_path):
    path = tmp_path / "j.csv"
    path.write_text("company_id,amount,note\n1,5.00,a\n")
    res = run(protected, path, "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["sha256"] == importer.file_sha256(path) and data["inserted"] == 1 and data["encoding"] == "utf-8"
    assert data["context"] == f"import:{data['sha256']}"


def test_a_file_s_mark_set_by_the_application_is_named_by_who_wrote_it(protected, tmp_path):
    """The mark is a context label, which any session may set: an application that wrote a row under the mark
    of a file an accountant is about to import made the import refuse as "already imported". The refusal now
    names the login that wrote the mark, so the accountant tells it apart from an import of theirs."""
    path = tmp_path / "statement.csv"
    path.write_text("company_id,amount,note\n1,5.00,from the bank\n")
    app = protected.connect("app")
    app.execute("SELECT set_config('ledgerlock.context', %s, false)", (f"import:{importer.file_sha256(path)}",))
    app.execute("INSERT INTO invoice (company_id, amount, note) VALUES (1, 1, 'not from the file')")
    res = run(protected, path)
    assert res.exit_code == 1, res.output
    assert "was already imported into invoice" in res.stderr and "first written by ll_app at " in res.stderr
    # the neighbour: --again loads it, knowingly
    assert run(protected, path, "--again").exit_code == 0
    assert [r[2] for r in invoices(protected)] == ["not from the file", "from the bank"]
