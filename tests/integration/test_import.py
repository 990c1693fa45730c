"""CSV imports that respect the period locks: preview, load in skip mode, malformed rows load nothing."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ledgerlock import importer
from ledgerlock.cli import cli

HEADER = "id,company_id,issued_on,amount,note\n"
ROWS = [
    "1,1,2025-03-05,10.00,march scope 1",     # in the hard lock of scope 1
    "2,1,2025-03-31,20.00,march scope 1",     # idem (last day)
    "3,2,2025-03-15,30.00,march scope 2",     # scope 2 is not locked
    "4,1,2025-04-01,40.00,april scope 1",     # the day after the window
    "5,1,2025-02-28,50.00,february scope 1",  # in the soft lock of scope 1
    "6,1,2025-04-30,60.00,april scope 1",
]


def run(*args, ok=True):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def locked(db):
    """invoice protected; scope 1: February soft, March hard. Returns (soft_id, hard_id)."""
    db.protect_invoice()
    c = db.connect("controller")
    soft = c.execute("SELECT ledgerlock.lock_period('1', '2025-02-01', '2025-02-28')").fetchone()[0]
    hard = c.execute("SELECT ledgerlock.lock_period('1', '2025-03-01', '2025-03-31', 'hard')").fetchone()[0]
    return soft, hard


@pytest.fixture
def csv_file(tmp_path):
    def write(lines, name="invoices.csv", header=HEADER, raw: bytes | None = None):
        p = tmp_path / name
        if raw is not None:
            p.write_bytes(raw)
        else:
            p.write_text(header + "".join(line + "\n" for line in lines))
        return p
    return write


def invoice_ids(db):
    return [r[0] for r in db.owner().execute("SELECT id FROM invoice ORDER BY id")]


def skipped(db):
    return db.owner().execute(
        "SELECT table_name, row_key, lock_id, context, db_user FROM ledgerlock.skipped_writes ORDER BY id").fetchall()


def test_dry_run_counts_rows_per_locked_window_and_writes_nothing(db, locked, csv_file):
    soft, hard = locked
    report = importer.import_csv(db.connect("controller"), csv_file(ROWS), "invoice", dry_run=True)
    assert report.rows == 6
    assert [(w.lock_id, w.scope, str(w.from_date), str(w.to_date), w.level, w.rows) for w in report.windows] == [
        (soft, "1", "2025-02-01", "2025-02-28", "soft", 1),
        (hard, "1", "2025-03-01", "2025-03-31", "hard", 2),
    ]
    assert report.in_locked_windows == 3 and report.would_load == 3
    assert invoice_ids(db) == [] and skipped(db) == []


def test_import_loads_the_rest_and_records_the_skipped_rows_with_the_label(db, locked, csv_file):
    soft, hard = locked
    report = importer.import_csv(db.connect("controller"), csv_file(ROWS), "invoice", context="march-batch")
    assert (report.rows, report.inserted, report.skipped) == (6, 3, 3)
    assert [(w.lock_id, w.rows) for w in report.windows] == [(soft, 1), (hard, 2)]
    assert invoice_ids(db) == [3, 4, 6]
    label = f"march-batch import:{report.sha256}"
    assert skipped(db) == [
        ("public.invoice", {"id": 1}, hard, label, "ll_controller"),
        ("public.invoice", {"id": 2}, hard, label, "ll_controller"),
        ("public.invoice", {"id": 5}, soft, label, "ll_controller"),
    ]
    # PostgreSQL converted the values to the column types
    assert db.owner().execute("SELECT amount, issued_on::text FROM invoice WHERE id = 4").fetchone() == (
        40, "2025-04-01")


def test_the_label_defaults_to_the_files_sha256(db, locked, csv_file):
    path = csv_file(ROWS, name="q1.csv")
    importer.import_csv(db.connect("controller"), path, "invoice")
    assert {r[3] for r in skipped(db)} == {f"import:{importer.file_sha256(path)}"}


def test_an_application_role_imports_under_the_same_rules(db, locked, csv_file):
    app = db.connect("app")
    # it may not read the audit trail where imports are recorded: it is told so, and how to proceed
    with pytest.raises(importer.AlreadyImported, match="ll_app may not read.*or pass --again"):
        importer.import_csv(app, csv_file(ROWS), "invoice")
    preview = importer.import_csv(app, csv_file(ROWS), "invoice", dry_run=True, again=True)
    assert (preview.would_load, preview.in_locked_windows, preview.windows) == (3, 3, [])
    report = importer.import_csv(app, csv_file(ROWS), "invoice", again=True)
    assert (report.inserted, report.skipped, report.windows) == (3, 3, [])  # it may not read the lock history
    assert invoice_ids(db) == [3, 4, 6]
    assert [r[4] for r in skipped(db)] == ["ll_app"] * 3


def test_without_skip_mode_the_same_rows_are_refused(db, locked):
    """The import's skip mode is what turns the refusal into a recorded skip; it loosens nothing."""
    from lltest import refused

    with refused("LL002"):
        db.connect("controller").execute(
            "INSERT INTO invoice (id, company_id, issued_on) VALUES (1, 1, '2025-03-05'), (3, 2, '2025-03-15')")
    assert invoice_ids(db) == []


@pytest.mark.parametrize(
    ("bad_line", "line", "message"),
    [
        ("7,1,2025-04-02,70.00,too,many", 5, r"^invoices\.csv line 5: extra data after last expected column$"),
        ("7,1,2025-04-02", 5, r'^invoices\.csv line 5: missing data for column "c4"$'),
        ("7,1,2025-04-31,70.00,x", 5, r'^invoices\.csv line 5, column issued_on: date/time field value out of range'),
        ("7,1,2025-04-02,seventy,x", 5, r'^invoices\.csv line 5, column amount: invalid input syntax for type '
                                        r'numeric: "seventy"$'),
    ],
)
def test_a_malformed_row_is_reported_with_its_line_and_nothing_is_loaded(db, locked, csv_file, bad_line, line,
                                                                        message):
    rows = ROWS[2:5] + [bad_line] + ROWS[5:]  # the bad row is the 4th data row: line 5 of the file
    for dry_run in (True, False):
        with pytest.raises(importer.ImportFailed, match=message) as info:
            importer.import_csv(db.connect("controller"), csv_file(rows), "invoice", dry_run=dry_run)
        assert info.value.line == line
    assert invoice_ids(db) == [] and skipped(db) == []


@pytest.mark.parametrize(
    ("bad_line", "message"),  # the preview converts values; constraints are checked by the import itself
    [
        ("7,9,2025-04-02,70.00,x", r"line 5: insert or update on table \"invoice\" violates foreign key"),
        ("7,1,2025-04-02,123456789012.00,x", r"line 5: numeric field overflow"),
        ("3,1,2025-04-02,70.00,x", r"line 5: duplicate key value violates unique constraint \"invoice_pkey\" "
                                   r"\(Key \(id\)=\(3\) already exists\.\)"),
    ],
)
def test_a_row_the_table_refuses_is_reported_by_the_import(db, locked, csv_file, bad_line, message):
    rows = ROWS[2:5] + [bad_line] + ROWS[5:]
    with pytest.raises(importer.ImportFailed, match=message) as info:
        importer.import_csv(db.connect("controller"), csv_file(rows), "invoice")
    assert info.value.line == 5
    assert invoice_ids(db) == [] and skipped(db) == []


def test_cast_errors_are_found_by_the_preview(db, locked, csv_file):
    rows = ROWS + ["7,1,2025-04-31,70.00,x"]
    with pytest.raises(importer.ImportFailed, match=r"^invoices\.csv line 8, column issued_on: ") as info:
        importer.import_csv(db.connect("controller"), csv_file(rows), "invoice", dry_run=True)
    assert info.value.line == 8


def test_header_errors(db, locked, csv_file):
    c = db.connect("controller")
    with pytest.raises(importer.ImportFailed, match=r"^invoices\.csv line 1: 'total' is not a column of invoice "
                                                    r"\(its columns: id, company_id"):
        importer.import_csv(c, csv_file([], header="id,total\n"), "invoice")
    with pytest.raises(importer.ImportFailed, match=r"column 'id' appears twice in the header"):
        importer.import_csv(c, csv_file([], header="id,ID\n"), "invoice")
    with pytest.raises(importer.ImportFailed, match=r"is empty: the first line must name the columns"):
        importer.import_csv(c, csv_file([], raw=b""), "invoice")
    with pytest.raises(importer.ImportFailed, match=r"^there is no table nope$"):
        importer.import_csv(c, csv_file(ROWS), "nope")


def test_header_names_match_case_insensitively_columns_may_be_missing_and_reordered(db, locked, csv_file):
    path = csv_file(["2025-04-03,1,33.50", "2025-03-03,1,1"], header="\ufeffIssued_On,COMPANY_ID,amount\n")
    report = importer.import_csv(db.connect("controller"), path, "invoice")
    assert report.columns == ["issued_on", "company_id", "amount"]
    assert (report.inserted, report.skipped) == (1, 1)
    assert db.owner().execute("SELECT amount, status FROM invoice").fetchall() == [(33.5, "draft")]


def test_quoted_values_and_empty_fields(db, locked, csv_file):
    path = csv_file(['7,1,2025-04-02,1,"a note, with a comma and ""quotes"""', "8,1,2025-04-03,2,"])
    importer.import_csv(db.connect("controller"), path, "invoice")
    notes = db.owner().execute("SELECT note FROM invoice ORDER BY id").fetchall()
    assert notes == [('a note, with a comma and "quotes"',), (None,)]


def test_the_file_streams_in_chunks(db, locked, csv_file, monkeypatch):
    """Chunks far smaller than a line: every boundary splits a row somewhere, and nothing is lost."""
    monkeypatch.setattr(importer, "CHUNK_SIZE", 7)
    rows = [f"{i},{1 + i % 2},2025-0{3 + i % 3}-1{i % 10},{i}.25,row {i}" for i in range(10, 410)]
    path = csv_file(rows)
    seen = []
    report = importer.import_csv(db.connect("controller"), path, "invoice", progress=seen.append)
    assert sum(seen) == path.stat().st_size and max(seen) == 7
    assert report.rows == 400
    expected_skipped = sum(1 for i in range(10, 410) if 1 + i % 2 == 1 and 3 + i % 3 == 3)
    assert report.skipped == expected_skipped and report.inserted == 400 - expected_skipped
    assert db.owner().execute("SELECT count(*), sum(amount) FROM invoice").fetchone()[0] == report.inserted


def test_an_unprotected_table_imports_plainly(db, csv_file):
    path = csv_file(["1,1,2025-03-01,x,10"], header="id,company_id,posted_on,memo,amount\n")
    c = db.connect("admin")
    assert importer.import_csv(c, path, "journal_entry", dry_run=True).would_load == 1
    report = importer.import_csv(c, path, "journal_entry")
    assert (report.inserted, report.skipped) == (1, 0)


# --- the CLI ------------------------------------------------------------------------------------------

def test_cli_dry_run_then_import(db, locked, csv_file):
    soft, hard = locked
    path = str(csv_file(ROWS))
    dsn = db.conninfo("controller")
    out = run("--dsn", dsn, "import", path, "--table", "invoice", "--dry-run").stdout.splitlines()
    assert out == [
        "dry run: invoices.csv -> invoice: 6 rows read, nothing written",
        "  in locked windows (would be skipped): 3",
        f"    lock #{soft}  scope 1  2025-02-01..2025-02-28  soft: 1 row",
        f"    lock #{hard}  scope 1  2025-03-01..2025-03-31  hard: 2 rows",
        "  would load: 3",
    ]
    out = run("--dsn", dsn, "import", path, "--table", "invoice", "--context", "march").stdout.splitlines()
    assert out[0] == "invoices.csv -> invoice: 6 rows read, inserted 3, skipped 3"
    assert out[1] == ("  skipped rows lie in locked windows; they are in ledgerlock.skipped_writes with context "
                      f"'march import:{importer.file_sha256(path)}'")
    assert invoice_ids(db) == [3, 4, 6]


def test_cli_json_report(db, locked, csv_file):
    data = json.loads(run("--dsn", db.conninfo("controller"), "import", str(csv_file(ROWS)), "--table", "invoice",
                          "--dry-run", "--json").stdout)
    assert (data["rows"], data["would_load"], data["in_locked_windows"], data["dry_run"]) == (6, 3, 3, True)
    assert [w["rows"] for w in data["windows"]] == [1, 2]


def test_cli_malformed_file_exits_1_and_loads_nothing(db, locked, csv_file):
    path = str(csv_file(ROWS[:3] + ["7,1,2025-04-02,seventy,x"]))
    res = run("--dsn", db.conninfo("controller"), "import", path, "--table", "invoice", ok=False)
    assert res.exit_code == 1
    assert res.stderr.splitlines()[1:] == [
        'error 22P02: invoices.csv line 5, column amount: invalid input syntax for type numeric: "seventy"',
        "nothing was loaded",
    ]
    assert invoice_ids(db) == []
