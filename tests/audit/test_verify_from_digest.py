"""Verification from a kept digest on (ledgerlock.verify_audit_from, `audit verify --digest D --from-digest`):
the chain is read only after the digest's link, so a daily check costs what happened since; events after
the digest are checked as verify_audit checks them, and the books are checked in full."""

from __future__ import annotations

import contextlib

import pytest
from click.testing import CliRunner
from test_tampering import triggers_off

from ledgerlock.cli import cli
from lltest import lives_ok, refused


@pytest.fixture
def trail(db):
    """Twenty invoices, the chain sealed and its digest kept; then five more writes, sealed after the digest."""
    db.protect_invoice()
    app = db.connect("app")
    app.execute("INSERT INTO invoice (id, company_id, amount) SELECT g, 1, g * 10 FROM generate_series(1, 20) g")
    db.digest = db.connect("auditor").execute("SELECT ledgerlock.audit_digest()").fetchone()[0]
    app.execute("UPDATE invoice SET amount = amount + 1 WHERE id <= 5")
    # sealed (an event is proven once sealed: before its seal, an edit is not detectable)
    db.connect("auditor").execute("SELECT ledgerlock.audit_digest()")
    return db


@contextlib.contextmanager
def guards_off(su):
    su.execute("ALTER TABLE ledgerlock.audit_event DISABLE TRIGGER ll_90_append_only")
    try:
        yield su
    finally:
        su.execute("ALTER TABLE ledgerlock.audit_event ENABLE ALWAYS TRIGGER ll_90_append_only")


def from_digest(db, digest=None):
    return lives_ok(db.connect("auditor"), "SELECT ok, events, sealed, unsealed, problems, problem "
                    "FROM ledgerlock.verify_audit_from(%s)", (digest or db.digest,))[0]


def test_only_the_links_after_the_digest_are_read(trail):
    ok, events, sealed, unsealed, problems, _ = from_digest(trail)
    assert (ok, events, sealed, unsealed, problems) == (True, 6, 6, 0, 0)  # five events and the seal's own SEAL event
    res = CliRunner().invoke(cli, ["--dsn", trail.conninfo("auditor"), "audit", "verify", "--digest", trail.digest,
                                   "--from-digest"])
    assert res.exit_code == 0, res.output
    assert "read from it on (6 links after it)" in res.output


def test_an_event_changed_after_the_digest_is_reported_one_before_it_by_the_full_verify(trail):
    su = trail.owner()
    seqs = su.execute("SELECT min(seq), max(seq) FROM ledgerlock.audit_event WHERE table_name = 'public.invoice'"
                      ).fetchone()
    with guards_off(su):
        su.execute("UPDATE ledgerlock.audit_event SET actor = 'someone else' WHERE seq = ANY(%s)", (list(seqs),))
    ok, _, _, _, problems, problem = from_digest(trail)
    assert not ok and problems == 1 and f"event seq {seqs[1]} " in problem and "was modified" in problem
    # the event before the digest is fixed by the digest's verification, not re-read here; the full one reads it
    ok, problems = trail.connect("auditor").execute(
        "SELECT ok, problems FROM ledgerlock.verify_audit(%s)", (trail.digest,)).fetchone()
    assert not ok and problems == 2


def test_the_books_are_checked_in_full(trail):
    su = trail.owner()
    with triggers_off(su, "invoice"):
        su.execute("UPDATE invoice SET amount = 1 WHERE id = 17")  # a row no event after the digest touched
    ok, _, _, _, problems, problem = from_digest(trail)
    assert not ok and problems == 1 and problem.startswith("invoice id=17: amount is 1.00 in the table")


def test_a_rewritten_chain_and_a_missing_digest_are_refused_or_reported(trail):
    seq, hash_ = trail.digest.split(":")[1:]
    ok, *_, problem = from_digest(trail, f"ll1:{seq}:{'0' * 64}")
    assert not ok and f"chain link {seq} differs from the digest" in problem
    with refused("22023", "verifying from a digest needs the digest"):
        trail.connect("auditor").execute("SELECT * FROM ledgerlock.verify_audit_from(NULL)")
    with refused("42501", "permission denied for function verify_audit_from"):
        trail.connect("app").execute("SELECT * FROM ledgerlock.verify_audit_from(%s)", (trail.digest,))
    res = CliRunner().invoke(cli, ["--dsn", trail.conninfo("auditor"), "audit", "verify", "--from-digest"])
    assert res.exit_code == 2 and "--from-digest needs --digest" in res.output


@pytest.fixture
def numbered(db):
    """Numbered invoices, three of them final (INV-2025-00001..3), the digest kept; then two more writes, sealed."""
    db.protect_invoice(number_column="number", number_format="INV-{YYYY}-{SEQ:5}")
    app = db.connect("app")
    app.execute("INSERT INTO invoice (id, company_id, issued_on, amount) "
                "SELECT g, 1, date '2025-01-01' + g, g FROM generate_series(1, 10) g")
    app.execute("UPDATE invoice SET status = 'approved' WHERE id <= 3")
    db.digest = db.connect("auditor").execute("SELECT ledgerlock.audit_digest()").fetchone()[0]
    app.execute("UPDATE invoice SET amount = amount + 1 WHERE id IN (8, 9)")
    db.connect("auditor").execute("SELECT ledgerlock.audit_digest()")
    return db


def test_a_counter_wound_back_after_the_digest_is_reported_from_it(numbered):
    assert from_digest(numbered)[:5] == (True, 3, 3, 0, 0)
    su = numbered.owner()
    with triggers_off(su, "ledgerlock.number_counter"):
        su.execute("UPDATE ledgerlock.number_counter SET last_value = 2 WHERE tbl = 'invoice'::regclass")
    ok, *_, problems, problem = from_digest(numbered)
    assert not ok and problems == 1
    assert ("the counter of series INV-2025-{SEQ} is at 2, the highest number the trail shows issued in it is 3"
            in problem)
    # a number finalized after the digest counts as well: the counter one behind it is reported
    with triggers_off(su, "ledgerlock.number_counter"):
        su.execute("UPDATE ledgerlock.number_counter SET last_value = 3 WHERE tbl = 'invoice'::regclass")
    numbered.connect("app").execute("UPDATE invoice SET status = 'approved' WHERE id = 4")
    assert from_digest(numbered)[:5] == (True, 5, 5, 0, 0)
    with triggers_off(su, "invoice", "ledgerlock.number_counter"):
        su.execute("UPDATE ledgerlock.number_counter SET last_value = 3 WHERE tbl = 'invoice'::regclass")
    ok, *_, problems, problem = from_digest(numbered)
    assert not ok and problems == 1 and "is at 3, the highest number the trail shows issued in it is 4" in problem


def test_a_forged_seal_and_a_back_dated_event_after_the_digest_are_reported_from_it(numbered):
    su, auditor = numbered.owner(), numbered.connect("auditor")
    forged = su.execute(
        "INSERT INTO ledgerlock.audit_event (seq, operation, db_user, details) "
        "VALUES (nextval('ledgerlock.audit_event_seq'), 'SEAL', 'll_auditor', '{\"batch\": 1}') "
        "RETURNING seq").fetchone()[0]
    auditor.execute("SELECT ledgerlock.audit_seal()")
    ok, *_, problems, problem = from_digest(numbered)
    assert not ok and problems == 1 and problem.startswith(f"event seq {forged} ") and "it was forged" in problem
    su.execute(
        "INSERT INTO ledgerlock.audit_event (seq, at, table_name, row_key, scope, operation, new_row, db_user, reason) "
        "VALUES (nextval('ledgerlock.audit_event_seq'), now() - interval '30 days', 'ledgerlock.lock_event', "
        "'{\"id\": 9}', '1', 'UNLOCK', '{\"id\": 9}', 'll_admin', 'forged')")
    auditor.execute("SELECT ledgerlock.audit_seal()")
    ok, *_, problems, problem = from_digest(numbered)
    assert not ok and problems == 2
    out = CliRunner().invoke(cli, ["--dsn", numbered.conninfo("auditor"), "audit", "verify", "--digest",
                                   numbered.digest, "--from-digest"])
    assert out.exit_code == 3 and "2 problem(s)" in out.output
