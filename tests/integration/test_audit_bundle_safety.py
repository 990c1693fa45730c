"""The auditor's bundle as hostile input and hostile output: client-set text cannot become a spreadsheet
formula in its CSVs, and `audit verify --bundle` refuses zips it could not read safely (bombs, duplicate
members, names that climb out of a directory) with exit code 2 before reading them."""

from __future__ import annotations

import csv
import io
import os
import re
import tracemalloc
import warnings
import zipfile

import pytest
from click.testing import CliRunner

from ledgerlock import audit_bundle
from ledgerlock.cli import cli


def today(db) -> str:
    """The database's date now: the rows were dated by it (current_date), and a run that crosses midnight
    must still bundle them (a date taken when the module was imported would then end the day before)."""
    return db.owner().execute("SELECT current_date").fetchone()[0].isoformat()

FORMULAS = ["=HYPERLINK(\"http://evil\",\"x\")", "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)", "\tTAB",
            "\rCR", "'already quoted"]


def verify(path, *args, env=None):
    return CliRunner(env=env).invoke(cli, ["audit", "verify", "--bundle", str(path), *args])


# --- formula injection ---------------------------------------------------------------------------------

@pytest.fixture
def hostile_bundle(db, tmp_path):
    db.protect_invoice()
    app = db.connect("app")
    for i, text in enumerate(FORMULAS, start=1):
        app.execute("SELECT set_config('ledgerlock.actor', %s, false), set_config('ledgerlock.reason', %s, false),"
                    " set_config('ledgerlock.context', %s, false)", (text, text, text))
        app.execute("INSERT INTO invoice (id, company_id, amount, note) VALUES (%s, 1, 1, %s)", (i, text))
    ctl = db.connect("controller")
    ctl.execute("SELECT set_config('ledgerlock.actor', '=cmd()', false)")
    ctl.execute("SELECT ledgerlock.lock_period('1', '2020-01-01', '2020-12-31')")
    path = tmp_path / "hostile.zip"
    res = CliRunner().invoke(cli, ["--dsn", db.conninfo("auditor"), "audit", "bundle", "--scope", "1",
                                   "--from", "2020-01-01", "--to", today(db), "-o", str(path)])
    assert res.exit_code == 0, res.output
    return path


def cells(path, name):
    with zipfile.ZipFile(path) as z:
        return list(csv.reader(io.StringIO(z.read(name).decode())))


def test_client_text_in_bundle_csvs_cannot_start_a_formula(hostile_bundle):
    for name in ("events.csv", "lock_history.csv", "chain.csv"):
        for row in cells(hostile_bundle, name)[1:]:
            for cell in row:
                assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), (name, cell)
    events = cells(hostile_bundle, "events.csv")
    header = events[0]
    actors = [r[header.index("actor")] for r in events[1:] if r[header.index("operation")] == "INSERT"]
    assert actors == ["'" + t for t in FORMULAS]  # one leading quote, the text itself intact
    lock_rows = cells(hostile_bundle, "lock_history.csv")
    assert lock_rows[1][lock_rows[0].index("actor")] == "'=cmd()"
    # the JSON copy keeps the exact values (it is what is hashed)
    with zipfile.ZipFile(hostile_bundle) as z:
        events_json = audit_bundle.loads(z.read("events.json").decode())
    assert [e["actor"] for e in events_json if e["operation"] == "INSERT"] == FORMULAS
    res = verify(hostile_bundle)
    assert res.exit_code == 0 and "bundle intact" in res.output, res.output


def test_a_csv_cell_whose_quote_was_removed_fails_the_check(hostile_bundle, tmp_path):
    with zipfile.ZipFile(hostile_bundle) as z:
        files = {n: z.read(n) for n in z.namelist()}
    files["events.csv"] = files["events.csv"].replace(b"'=HYPERLINK", b"=HYPERLINK", 1)
    edited = tmp_path / "edited.zip"
    with zipfile.ZipFile(edited, "w") as z:
        for n, data in files.items():
            z.writestr(n, data)
    res = verify(edited)
    assert res.exit_code == 3 and "events.csv differs from events.json" in res.output, res.output


# --- unsafe zips ---------------------------------------------------------------------------------------

def _good_members() -> dict[str, bytes]:
    digest = "ll1:0:" + "0" * 64
    manifest = f'{{"format": "{audit_bundle.FORMAT}", "digest": "{digest}"}}'
    return {"manifest.json": manifest.encode(), "digest.txt": digest.encode() + b"\n", "events.csv": b"seq\n",
            "events.json": b"[]", "chain.csv": b"chain_seq\n", "lock_history.json": b"[]",
            "lock_history.csv": b"seq\n"}


def _zip(path, members: list[tuple[str, bytes]]) -> None:
    with warnings.catch_warnings(), zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        warnings.simplefilter("ignore")  # zipfile warns of the duplicate name we write on purpose
        for name, data in members:
            z.writestr(zipfile.ZipInfo(name), data, compress_type=zipfile.ZIP_DEFLATED)


def test_an_empty_but_well_formed_bundle_is_read(tmp_path):
    """The neighbour of every refusal below: the same crafted bundle without the trap is accepted."""
    path = tmp_path / "ok.zip"
    _zip(path, list(_good_members().items()))
    res = verify(path)
    assert res.exit_code == 0 and "bundle intact: 0 events" in res.output, res.output


@pytest.mark.parametrize(("extra", "message"), [
    (("events.csv", b"seq\n1\n"), r"member events\.csv appears twice"),
    (("../evil.txt", b"x"), r"unsafe member name '\.\./evil\.txt'"),
    (("/etc/cron.d/evil", b"x"), r"unsafe member name '/etc/cron\.d/evil'"),
    (("a/../../evil", b"x"), r"unsafe member name"),
    (("C:\\evil.txt", b"x"), r"unsafe member name"),
    (("..\\evil.txt", b"x"), r"unsafe member name"),
])
def test_duplicate_and_unsafe_member_names_are_refused(tmp_path, extra, message):
    path = tmp_path / "crafted.zip"
    _zip(path, [*_good_members().items(), extra])
    res = verify(path)
    assert res.exit_code == 2, res.output
    assert re.search(message, res.output) and "Traceback" not in res.output, res.output
    assert "bundle intact" not in res.output


def _bomb(path, name: str, megabytes: int) -> None:
    """A member of `megabytes` MiB of zeros, written in 1 MiB pieces (the test itself stays small)."""
    members = _good_members()
    del members[name]
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for n, data in members.items():
            z.writestr(n, data)
        info = zipfile.ZipInfo(name)
        info.compress_type = zipfile.ZIP_DEFLATED
        with z.open(info, "w", force_zip64=True) as f:
            chunk = b"0" * (1 << 20)
            for _ in range(megabytes):
                f.write(chunk)


def test_a_zip_bomb_is_refused_without_being_inflated(tmp_path):
    path = tmp_path / "bomb.zip"
    _bomb(path, "events.json", 50)
    assert os.path.getsize(path) < 200_000  # 50 MiB that compress to ~50 KiB
    tracemalloc.start()
    try:
        res = verify(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert res.exit_code == 2, res.output
    assert "events.json" in res.output and "compression ratio" in res.output, res.output
    assert peak < 16 << 20, f"verify used {peak} bytes on a bomb"


def test_a_member_over_the_size_limit_is_refused(tmp_path):
    path = tmp_path / "big.zip"
    members = _good_members()
    members["events.json"] = b"[" + b" " * (3 << 20) + b"]"  # 3 MiB
    _zip(path, list(members.items()))
    env = {"LEDGERLOCK_BUNDLE_MAX_MEMBER_BYTES": str(1 << 20), "LEDGERLOCK_BUNDLE_MAX_RATIO": "100000"}
    res = verify(path, env=env)
    assert res.exit_code == 2, res.output
    assert "events.json" in res.output and "more than 1048576 bytes" in res.output, res.output
    # the same bundle under a larger limit is read
    env["LEDGERLOCK_BUNDLE_MAX_MEMBER_BYTES"] = str(8 << 20)
    res = verify(path, env=env)
    assert res.exit_code == 0, res.output


def test_the_limits_are_parameters_of_the_python_api(tmp_path):
    path = tmp_path / "big.zip"
    _bomb(path, "chain.csv", 3)
    with pytest.raises(audit_bundle.UnsafeBundleError, match=r"chain\.csv .*more than 1048576 bytes"):
        audit_bundle.verify_bundle(str(path), max_member_bytes=1 << 20, max_ratio=10_000)
