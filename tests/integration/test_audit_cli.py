"""R5 manager: audit log, show, digest, seal, bundle, and the offline bundle check (no database)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from ledgerlock import audit_bundle
from ledgerlock.cli import cli


def today(db) -> str:
    """The database's date now: the rows were dated by it (current_date), and a run that crosses midnight
    must still bundle them (a date taken when the module was imported would then end the day before)."""
    return db.owner().execute("SELECT current_date").fetchone()[0].isoformat()



def run(db, *args, role="auditor"):
    return CliRunner().invoke(cli, ["--dsn", db.conninfo(role), "audit", *args])


@pytest.fixture
def trail(db):
    db.protect_invoice()
    app = db.connect("app")
    app.execute("SET ledgerlock.actor = 'alice'")
    app.execute("INSERT INTO invoice (id, company_id, amount) VALUES (1, 1, 100), (2, 2, 5), (3, 1, 7)")
    app.execute("UPDATE invoice SET amount = 120, note = 'typo' WHERE id = 1")
    app.execute("DELETE FROM invoice WHERE id = 3")
    ctl = db.connect("controller")
    lock_id = ctl.execute("SELECT ledgerlock.lock_period('1', '2020-01-01', '2020-12-31')").fetchone()[0]
    db.connect("admin").execute("SELECT ledgerlock.unlock_period(%s, 'correction: \"quoted\", \\ and é')",
                                (lock_id,))
    return db


def test_log_lists_and_filters_events(trail):
    res = run(trail, "log")
    assert res.exit_code == 0, res.output
    assert "PROTECT" in res.output and "UNLOCK" in res.output
    res = run(trail, "log", "--table", "invoice", "--key", "1", "--json")
    rows = json.loads(res.output)
    assert [r["operation"] for r in rows] == ["INSERT", "UPDATE"]
    assert rows[1]["changed_columns"] == ["amount", "note"] and rows[1]["actor"] == "alice"
    res = run(trail, "log", "--scope", "2", "--operation", "insert", "--json")
    assert [r["row_key"] for r in json.loads(res.output)] == [{"id": 2}]
    res = run(trail, "log", "--actor", "nobody")
    assert "(no events)" in res.output
    res = run(trail, "log", "--since", "2999-01-01", "--json")
    assert json.loads(res.output) == []


def test_show_renders_before_and_after_as_a_diff(trail):
    seq = trail.owner().execute("SELECT seq FROM ledgerlock.audit_event WHERE operation = 'UPDATE'").fetchone()[0]
    res = run(trail, "show", str(seq))
    assert res.exit_code == 0, res.output
    assert f"event {seq}: UPDATE invoice" in res.output
    assert '~ amount       100.00 -> 120.00' in res.output
    assert '~ note         null -> "typo"' in res.output
    assert '  status       "draft"' in res.output
    assert "database user:  ll_app" in res.output and "actor:          alice" in res.output
    res = run(trail, "show", "999999")
    assert res.exit_code == 1 and "no audit event 999999" in res.output


def test_the_application_gets_a_one_line_error(trail):
    res = run(trail, "log", role="app")
    assert res.exit_code == 1 and "error 42501" in res.output and "Traceback" not in res.output


def test_digest_and_seal(trail):
    res = run(trail, "seal")
    assert res.exit_code == 0 and res.stdout.startswith("sealed ")
    res = run(trail, "digest")
    assert res.exit_code == 0
    seq, h = audit_bundle.parse_digest(res.output.strip())
    assert seq == trail.owner().execute("SELECT count(*) FROM ledgerlock.audit_chain").fetchone()[0]


@pytest.mark.parametrize("options", ["-c default_transaction_isolation=serializable",
                                     "-c default_transaction_read_only=on"])
def test_verify_in_a_session_that_cannot_seal_says_why_the_newest_events_are_unsealed(trail, options):
    """An auditor whose tool opens serializable or read-only transactions verifies what is sealed and says the
    rest is not, and why; the permitted neighbour, a plain session, seals them first and has nothing to say."""
    dsn = trail.conninfo("auditor") + f" options='{options}'"
    res = CliRunner().invoke(cli, ["--dsn", dsn, "audit", "verify"])
    assert res.exit_code == 0, res.output
    assert "audit trail intact" in res.output
    assert ("event(s) are not sealed yet and are covered by no digest: this session could not seal them (a "
            "standby, a read-only session, or one whose transactions are not READ COMMITTED); `ledgerlock audit "
            "seal` on the primary seals them") in res.output
    res = run(trail, "verify")
    assert res.exit_code == 0 and "not sealed yet" not in res.output, res.output


@pytest.fixture
def bundle(trail, tmp_path):
    path = tmp_path / "scope1.zip"
    res = run(trail, "bundle", "--scope", "1", "--from", "2020-01-01", "--to", today(trail), "-o", str(path))
    assert res.exit_code == 0, res.output
    return path


def test_bundle_holds_the_scope_and_verifies_without_a_database(trail, bundle):
    with zipfile.ZipFile(bundle) as z:
        assert set(z.namelist()) == {"README.txt", "manifest.json", "digest.txt", "events.csv", "events.json",
                                     "lock_history.csv", "lock_history.json", "chain.csv", "rows.json"}
        events = audit_bundle.loads(z.read("events.json").decode())
        locks = json.loads(z.read("lock_history.json"))
        digest = z.read("digest.txt").decode().strip()
    assert {e["scope"] for e in events} == {"1"}
    assert [e["operation"] for e in events] == ["INSERT", "INSERT", "UPDATE", "DELETE", "LOCK", "UNLOCK"]
    assert [x["kind"] for x in locks] == ["lock", "unlock"]
    assert locks[1]["reason"] == 'correction: "quoted", \\ and é'
    # the offline check runs with no connection at all
    res = CliRunner().invoke(cli, ["audit", "verify", "--bundle", str(bundle)])
    assert res.exit_code == 0, res.output
    assert "bundle intact: 6 events" in res.output
    res = CliRunner().invoke(cli, ["audit", "verify", "--bundle", str(bundle), "--digest", digest])
    assert res.exit_code == 0 and f"the chain passes through {digest}" in res.output
    # and agrees with the database's own verification of the same digest
    assert trail.connect("auditor").execute("SELECT ok FROM ledgerlock.verify_audit(%s)", (digest,)).fetchone()[0]


def _rewrite(path, name, edit):
    with zipfile.ZipFile(path) as z:
        files = {n: z.read(n).decode() for n in z.namelist()}
    files[name] = edit(files[name])
    with zipfile.ZipFile(path, "w") as z:
        for n, text in files.items():
            z.writestr(n, text)


@pytest.mark.parametrize(("name", "old", "new", "problem"), [
    ("events.json", '"amount": 120.00', '"amount": 12.00', "was modified"),
    ("events.json", '"db_user": "ll_app"', '"db_user": "ll_admin"', "was modified"),
    ("events.csv", "alice", "bob", "events.csv differs from events.json"),
    ("lock_history.json", "correction", "no reason", "differs from its audit event"),
    ("chain.csv", ",1,", ",2,", "does not follow|is missing|not in the bundle|differs from chain link"),
    ("digest.txt", "ll1:", "ll1:1", "name different digests|not a ledgerlock audit digest"),
])
def test_a_hand_edited_bundle_fails(bundle, name, old, new, problem):
    def edit(text):
        assert old in text, f"{old!r} not in {name}"
        return text.replace(old, new, 1)

    _rewrite(bundle, name, edit)
    res = CliRunner().invoke(cli, ["audit", "verify", "--bundle", str(bundle)])
    assert res.exit_code == 3, res.output
    import re

    assert re.search(problem, res.output), res.output


def test_a_consistently_rewritten_bundle_fails_against_the_kept_digest(trail, bundle):
    """Someone rewrites an event, its hash, the chain and the bundle's digest: the bundle is consistent
    with itself, and only the digest the auditor kept exposes it."""
    with zipfile.ZipFile(bundle) as z:
        kept = z.read("digest.txt").decode().strip()
        events = audit_bundle.loads(z.read("events.json").decode())
        chain = z.read("chain.csv").decode().splitlines()
    target = next(e for e in events if e["operation"] == "UPDATE")
    target["new_row"]["amount"] = audit_bundle.RawNumber("12.00")
    target["event_hash"] = audit_bundle.event_hash(target)
    header, rows = chain[0].split(","), [r.split(",") for r in chain[1:]]
    prev = None
    for r in rows:
        link = dict(zip(header, r, strict=True))
        if int(link["seq"]) == int(target["seq"]):
            r[header.index("event_hash")] = link["event_hash"] = target["event_hash"]
        if prev is not None and int(link["chain_seq"]) >= int(target["chain_seq"]):
            r[header.index("chain_hash")] = audit_bundle.link_hash(prev, link)
        prev = r[header.index("chain_hash")]
    target["chain_hash"] = next(r[header.index("chain_hash")] for r in rows if int(r[1]) == int(target["seq"]))
    forged_digest = f"ll1:{rows[-1][0]}:{rows[-1][header.index('chain_hash')]}"
    _rewrite(bundle, "chain.csv", lambda _t: "\n".join([",".join(header)] + [",".join(r) for r in rows]) + "\n")
    _rewrite(bundle, "digest.txt", lambda _t: forged_digest + "\n")
    _rewrite(bundle, "manifest.json", lambda t: t.replace(kept, forged_digest))
    def value(k, v):
        return audit_bundle.jsonb_text(v) if k in audit_bundle.JSONB_FIELDS else json.dumps(v)

    _rewrite(bundle, "events.json", lambda _t: "[" + ",\n".join(
        "{" + ", ".join(f"{json.dumps(k)}: {value(k, v)}" for k, v in e.items()) + "}" for e in events) + "]")
    _rewrite(bundle, "events.csv", lambda t: t.replace("120.00", "12.00").replace(
        next(x for x in t.splitlines() if "UPDATE" in x).split(",")[16], target["event_hash"]))
    rep = audit_bundle.verify_bundle(str(bundle))
    # events.csv's chain_hash column still carries the old link: the CSV copy disagrees; fix it as well
    assert not rep.ok
    rep = audit_bundle.verify_bundle(str(bundle), digest=kept)
    assert not rep.ok and any("differs from the digest: the chain was rewritten" in p for p in rep.problems)


def test_canonical_text_matches_postgresql_for_tricky_values(db):
    """The offline verifier reproduces jsonb's text and the event hash byte for byte."""
    owner = db.owner()
    samples = ['{"b": 1, "aa": [1, 2, {}], "é": "x\\u0001\\n\\t\\"\\\\", "ab": 1.50, "c": [], "big": 1e30}',
               '{"ключ": "значение", "z": null, "t": true, "f": false, "n": -0.000001, "": "empty key"}',
               '[1, "two", {"three": [3.0]}]', '"just a string with \\u001f"', '12345678901234567890.5']
    for s in samples:
        pg_text = owner.execute("SELECT %s::jsonb::text", (s,)).fetchone()[0]
        assert audit_bundle.jsonb_text(audit_bundle.loads(pg_text)) == pg_text
    row = owner.execute(
        """SELECT ledgerlock._audit_time(t), ledgerlock._audit_event_hash(42, t, '777'::xid8, 'public.x',
                  %s::jsonb, 'sc"ope', 'UPDATE', %s::jsonb, %s::jsonb, 'u', 'actor\n', NULL, 'ctx', 5, NULL, NULL)
           FROM (SELECT timestamptz '2026-03-01 10:00:00.123456+02' AS t) x""",
        ('{"id": 1}', samples[0], samples[1])).fetchone()
    assert row[0] == "2026-03-01T08:00:00.123456Z"
    event = {"seq": 42, "at": row[0], "txid": "777", "table_name": "public.x", "row_key": {"id": 1},
             "scope": 'sc"ope', "operation": "UPDATE",
             "old_row": audit_bundle.loads(owner.execute("SELECT %s::jsonb::text", (samples[0],)).fetchone()[0]),
             "new_row": audit_bundle.loads(owner.execute("SELECT %s::jsonb::text", (samples[1],)).fetchone()[0]),
             "db_user": "u", "actor": "actor\n", "reason": None, "context": "ctx", "lock_id": 5,
             "override_id": None, "details": None}
    assert audit_bundle.event_hash(event) == row[1]


def test_the_hash_does_not_depend_on_session_settings(db):
    owner = db.owner()
    q = """SELECT ledgerlock._audit_event_hash(1, timestamptz '2026-01-01 00:00:00+00', '1', 't', NULL, NULL, 'X',
                  NULL, '{"f": 0.1}', 'u', NULL, NULL, NULL, NULL, NULL, NULL)"""
    first = owner.execute(q).fetchone()[0]
    for setting in ("SET TimeZone = 'Pacific/Chatham'", "SET DateStyle = 'SQL, DMY'",
                    "SET IntervalStyle = 'sql_standard'", "SET extra_float_digits = -15"):
        owner.execute(setting)
        assert owner.execute(q).fetchone()[0] == first


def unsealed(db) -> int:
    return db.owner().execute("SELECT count(*) FROM ledgerlock.audit_event e WHERE NOT EXISTS "
                              "(SELECT FROM ledgerlock.audit_chain c WHERE c.seq = e.seq)").fetchone()[0]


def wait_for(condition, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {timeout}s"
        time.sleep(0.05)


def test_the_sealer_service_survives_a_lost_connection_and_refuses_a_busy_loop(trail):
    """`audit seal --every` is a service: when its backend is terminated (a restart, a failover), it says so,
    connects again and seals what was written meanwhile, instead of exiting."""
    res = run(trail, "seal", "--every", "0")
    assert res.exit_code == 2 and "0.0 is not in the range 0.1<=x<=3600" in res.output  # no busy loop
    sealer = subprocess.Popen([str(Path(sys.executable).parent / "ledgerlock"), "--dsn", trail.conninfo("auditor"),
                               "audit", "seal", "--every", "0.1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        wait_for(lambda: unsealed(trail) == 0, "the sealer sealed the trail")
        owner = trail.owner()
        terminated = owner.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                   "WHERE datname = current_database() AND usename = 'll_auditor'").fetchone()[0]
        assert terminated == 1
        trail.connect("app").execute("INSERT INTO invoice (id, company_id, amount) VALUES (9, 1, 9)")
        wait_for(lambda: unsealed(trail) == 0, "the sealer sealed the new event after its backend was terminated")
        assert sealer.poll() is None  # still running
    finally:
        sealer.send_signal(signal.SIGINT)
        out, err = sealer.communicate(timeout=30)
    assert sealer.returncode == 0, err
    # PostgreSQL's reason ("terminating connection due to administrator command", or the closed socket)
    assert re.search(r"sealer: .+; trying again in 0\.1 s", err), err
    assert "sealer: connected again" in err and "Traceback" not in err
    assert "sealed 1 event(s)" in out


class _Lines:
    """A pipe's lines as they arrive, read by a thread (the sealer's stderr, while it runs)."""

    def __init__(self, pipe) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=lambda: self.lines.extend(iter(pipe.readline, "")), daemon=True)
        self._thread.start()

    def text(self) -> str:
        return "".join(self.lines)

    def close(self) -> str:
        self._thread.join(timeout=30)
        return self.text()


def _sealer_waiting_behind(trail, gate) -> subprocess.Popen:
    """A sealer service whose seal of one new event waits on the sealers' gate, which GATE holds."""
    sealer = subprocess.Popen([str(Path(sys.executable).parent / "ledgerlock"), "--dsn", trail.conninfo("auditor"),
                               "audit", "seal", "--every", "0.1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    wait_for(lambda: unsealed(trail) == 0, "the sealer sealed the trail")
    gate.execute("BEGIN")
    gate.execute("LOCK TABLE ledgerlock_gate.sealer IN SHARE ROW EXCLUSIVE MODE")
    trail.connect("app").execute("INSERT INTO invoice (id, company_id, amount) VALUES (10, 1, 10)")
    wait_for(lambda: waiting_sealers(trail) == 1, "the sealer's seal waits on the gate")
    return sealer


def waiting_sealers(db) -> int:
    return db.owner().execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                              "AND usename = 'll_auditor' AND wait_event_type = 'Lock'").fetchone()[0]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stopped_sealer_finishes_and_reports_the_seal_in_progress(trail, sig):
    """What a service manager sends (SIGTERM; Ctrl-C is SIGINT) stops the sealer after the seal in progress:
    a seal that committed is always in its output. The seal here waits behind another holder of the
    sealers' gate when the signal comes; it is not cut short, it seals once the gate is free."""
    gate = trail.connect("owner")
    sealer = _sealer_waiting_behind(trail, gate)
    err = _Lines(sealer.stderr)
    try:
        sealer.send_signal(sig)
        wait_for(lambda: "stopping after the seal in progress" in err.text(), "the sealer says it is stopping")
        assert waiting_sealers(trail) == 1 and sealer.poll() is None  # the seal still waits: not cancelled
        gate.execute("COMMIT")
        out = sealer.stdout.read()
        assert sealer.wait(timeout=30) == 0
    finally:
        if sealer.poll() is None:
            sealer.kill()
    # the last line: the seal of the new event, stamped with the time and its UTC offset
    assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d sealed 1 event\(s\)\n$", out), out
    assert unsealed(trail) == 0
    assert f"(a second {sig.name} stops it now)" in err.close() and "Traceback" not in err.text()


def test_a_second_signal_stops_the_sealer_at_once_and_its_seal_commits_nothing(trail):
    gate = trail.connect("owner")
    sealer = _sealer_waiting_behind(trail, gate)
    err = _Lines(sealer.stderr)
    try:
        sealer.send_signal(signal.SIGTERM)
        wait_for(lambda: "stopping after the seal in progress" in err.text(), "the sealer says it is stopping")
        sealer.send_signal(signal.SIGTERM)
        assert sealer.wait(timeout=30) == 0  # while the gate is still held
        out = sealer.stdout.read()
    finally:
        if sealer.poll() is None:
            sealer.kill()
    wait_for(lambda: waiting_sealers(trail) == 0, "the cut-short seal's backend stops waiting")
    gate.execute("COMMIT")
    assert unsealed(trail) == 1  # the new event: the seal that was cut short committed nothing
    assert out.count(" sealed ") == 1, out  # the trail's first seal alone
    assert "sealer: stopped at once; a seal cut short commits nothing" in err.close()
    assert "Traceback" not in err.text()
