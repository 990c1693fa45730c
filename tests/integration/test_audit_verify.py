"""R5 tamper evidence: a superuser who edits, deletes, inserts or swaps events with the guards disabled is
caught by verify_audit and `ledgerlock audit verify`; a digest kept outside proves the chain up to it."""

from __future__ import annotations

import contextlib

import pytest
from click.testing import CliRunner

from ledgerlock.cli import cli
from lltest import refused

HASH = """ledgerlock._audit_event_hash(seq, at, txid, table_name, row_key, scope, operation, old_row, new_row,
          db_user, actor, reason, context, lock_id, override_id, details)"""


@pytest.fixture
def trail(db):
    """Ten invoices written, changed and partly deleted by the application; the chain sealed."""
    db.protect_invoice()
    app = db.connect("app")
    app.execute("INSERT INTO invoice (id, company_id, amount) "
                "SELECT g, 1 + g % 2, g * 10 FROM generate_series(1, 10) g")
    app.execute("UPDATE invoice SET amount = amount + 1 WHERE id <= 4")
    app.execute("DELETE FROM invoice WHERE id = 10")
    db.owner().execute("SELECT ledgerlock.audit_seal()")
    return db


@contextlib.contextmanager
def guards_off(conn):
    """What a superuser can do: switch the append-only guards off for a moment (and back on)."""
    conn.execute("ALTER TABLE ledgerlock.audit_event DISABLE TRIGGER ll_90_append_only")
    conn.execute("ALTER TABLE ledgerlock.audit_chain DISABLE TRIGGER ll_90_append_only")
    try:
        yield conn
    finally:
        conn.execute("ALTER TABLE ledgerlock.audit_event ENABLE ALWAYS TRIGGER ll_90_append_only")
        conn.execute("ALTER TABLE ledgerlock.audit_chain ENABLE ALWAYS TRIGGER ll_90_append_only")


def verify(db, digest=None, role="auditor"):
    return db.connect(role).execute(
        "SELECT ok, problems, first_broken_seq, first_broken_chain_seq, problem, unsealed, head "
        "FROM ledgerlock.verify_audit(%s)", (digest,)).fetchone()


def cli_verify(db, *args):
    return CliRunner().invoke(cli, ["--dsn", db.conninfo("auditor"), "audit", "verify", *args])


def seq_of(db, operation, key):
    return db.owner().execute("SELECT seq FROM ledgerlock.audit_event WHERE operation = %s AND row_key = %s::jsonb",
                              (operation, f'{{"id": {key}}}')).fetchone()[0]


def test_an_intact_trail_verifies_and_the_cli_says_so(trail):
    ok, problems, *_ = verify(trail)
    assert ok and problems == 0
    res = cli_verify(trail)
    assert res.exit_code == 0, res.output
    assert "audit trail intact" in res.output


def test_a_modified_sealed_event_is_caught(trail):
    seq = seq_of(trail, "UPDATE", 2)
    with guards_off(trail.owner()) as su:
        su.execute("UPDATE ledgerlock.audit_event SET new_row = jsonb_set(new_row, '{amount}', '999') "
                   "WHERE seq = %s", (seq,))
    ok, problems, first, _chain, problem, *_ = verify(trail)
    # the event, and the row that no longer matches what it recorded
    assert not ok and problems == 2 and first == seq
    assert problem.endswith("was modified: its content does not match its hash")
    res = cli_verify(trail)
    assert res.exit_code == 3 and f"event seq {seq}" in res.output


def test_a_modified_event_whose_hash_was_recomputed_is_caught_by_the_chain(trail):
    seq = seq_of(trail, "INSERT", 3)
    with guards_off(trail.owner()) as su:
        su.execute("UPDATE ledgerlock.audit_event SET actor = 'someone else' WHERE seq = %s", (seq,))
        su.execute(f"UPDATE ledgerlock.audit_event SET event_hash = {HASH} WHERE seq = %s", (seq,))
    ok, _n, first, _chain, problem, *_ = verify(trail)
    assert not ok and first == seq
    assert "its hash differs from the one sealed" in problem


def test_a_rewritten_event_hash_and_chain_link_is_caught_by_the_next_link(trail):
    seq = seq_of(trail, "INSERT", 3)
    with guards_off(trail.owner()) as su:
        su.execute("UPDATE ledgerlock.audit_event SET actor = 'someone else' WHERE seq = %s", (seq,))
        su.execute(f"UPDATE ledgerlock.audit_event SET event_hash = {HASH} WHERE seq = %s", (seq,))
        su.execute("UPDATE ledgerlock.audit_chain c SET event_hash = e.event_hash FROM ledgerlock.audit_event e "
                   "WHERE e.seq = c.seq AND c.seq = %s", (seq,))
    ok, _n, _first, chain, problem, *_ = verify(trail)
    assert not ok and "is broken: it does not follow from link" in problem


def test_a_deleted_sealed_event_is_caught(trail):
    seq = seq_of(trail, "DELETE", 10)
    with guards_off(trail.owner()) as su:
        su.execute("DELETE FROM ledgerlock.audit_event WHERE seq = %s", (seq,))
    ok, _n, first, _chain, problem, *_ = verify(trail)
    assert not ok and first == seq and problem.endswith("is missing: it was deleted")
    assert cli_verify(trail).exit_code == 3


def test_a_deleted_event_and_its_link_are_caught(trail):
    seq = seq_of(trail, "UPDATE", 1)
    with guards_off(trail.owner()) as su:
        su.execute("DELETE FROM ledgerlock.audit_event WHERE seq = %s", (seq,))
        su.execute("DELETE FROM ledgerlock.audit_chain WHERE seq = %s", (seq,))
    ok, _n, _first, _chain, problem, *_ = verify(trail)
    assert not ok and "is missing: the chain jumps" in problem


def test_an_inserted_event_is_caught_sealed_or_not(trail):
    su = trail.owner()
    old_txid = su.execute("SELECT txid FROM ledgerlock.audit_event ORDER BY seq LIMIT 1").fetchone()[0]
    # a forged event with a correct hash, backdated into an old transaction: the next seal takes it in,
    # but its transaction ended before the previous seal, which would have sealed it
    su.execute("""INSERT INTO ledgerlock.audit_event (seq, at, txid, table_oid, table_name, row_key, scope,
                     operation, new_row, db_user, event_hash)
                   SELECT s, now() - interval '1 day', %s, 'invoice'::regclass, 'public.invoice', '{"id": 77}',
                          '1', 'INSERT', '{"id": 77, "amount": 1}', 'll_app', 'x'
                   FROM nextval('ledgerlock.audit_event_seq') s""", (old_txid,))
    forged = su.execute("SELECT max(seq) FROM ledgerlock.audit_event").fetchone()[0]
    # with the wrong hash: caught as modified even before any seal
    ok, _n, first, _chain, problem, *_ = verify(trail)
    assert not ok and first == forged and "was modified" in problem
    with guards_off(su):
        su.execute(f"UPDATE ledgerlock.audit_event SET event_hash = {HASH} WHERE seq = %s", (forged,))
    ok, _n, first, _chain, problem, *_ = verify(trail)
    assert not ok and first == forged and "was inserted behind the sealer" in problem


def test_swapped_events_are_caught(trail):
    a, b = seq_of(trail, "INSERT", 1), seq_of(trail, "INSERT", 2)
    with guards_off(trail.owner()) as su:
        su.execute("UPDATE ledgerlock.audit_event SET seq = -seq WHERE seq IN (%s, %s)", (a, b))
        su.execute("UPDATE ledgerlock.audit_event SET seq = CASE seq WHEN %s THEN %s ELSE %s END "
                   "WHERE seq IN (%s, %s)", (-a, b, a, -a, -b))
    ok, problems, first, *_ = verify(trail)
    assert not ok and first == a and problems == 2
    assert cli_verify(trail).exit_code == 3


def test_swapped_links_are_caught(trail):
    with guards_off(trail.owner()) as su:
        su.execute("UPDATE ledgerlock.audit_chain SET chain_seq = -chain_seq WHERE chain_seq IN (3, 4)")
        su.execute("UPDATE ledgerlock.audit_chain SET chain_seq = CASE chain_seq WHEN -3 THEN 4 ELSE 3 END "
                   "WHERE chain_seq IN (-3, -4)")
    ok, _n, _first, chain, problem, *_ = verify(trail)
    assert not ok and chain == 3 and "is broken" in problem


def test_a_modified_unsealed_event_written_with_its_hash_is_caught(trail):
    # an event written with its hash (by a release that hashed at write time); a new event is hashed by the
    # sealer, and one changed before the seal is sealed as it stands (docs/audit.md: what stays undetectable)
    trail.connect("app").execute("INSERT INTO invoice (id, company_id) VALUES (50, 1)")
    su = trail.owner()
    seq = su.execute("SELECT max(seq) FROM ledgerlock.audit_event").fetchone()[0]
    assert su.execute("SELECT count(*) FROM ledgerlock.audit_chain WHERE seq = %s", (seq,)).fetchone()[0] == 0
    with guards_off(su):
        su.execute(f"UPDATE ledgerlock.audit_event SET event_hash = {HASH} WHERE seq = %s", (seq,))
        su.execute("UPDATE ledgerlock.audit_event SET db_user = 'll_admin' WHERE seq = %s", (seq,))
    # verify seals first, then checks: the altered event is reported either way
    ok, _n, first, _chain, problem, *_ = verify(trail)
    assert not ok and first == seq and "was modified" in problem


def test_a_digest_proves_the_chain_up_to_it_and_catches_a_rewrite_or_truncation(trail):
    digest = trail.connect("auditor").execute("SELECT ledgerlock.audit_digest()").fetchone()[0]
    trail.connect("app").execute("INSERT INTO invoice (id, company_id) VALUES (60, 1)")
    ok, *_ = verify(trail, digest)
    assert ok
    res = cli_verify(trail, "--digest", digest)
    assert res.exit_code == 0 and f"the chain passes through {digest}" in res.output
    # a superuser rebuilds the whole chain after changing an event: consistent, but not the digest's chain
    su = trail.owner()
    seq = seq_of(trail, "INSERT", 5)
    with guards_off(su):
        su.execute("UPDATE ledgerlock.audit_event SET new_row = jsonb_set(new_row, '{amount}', '1') WHERE seq = %s",
                   (seq,))
        su.execute(f"UPDATE ledgerlock.audit_event SET event_hash = {HASH}")
        su.execute("ALTER TABLE ledgerlock.audit_chain DISABLE TRIGGER ll_90_no_truncate")
        su.execute("TRUNCATE ledgerlock.audit_chain")
        su.execute("ALTER TABLE ledgerlock.audit_chain ENABLE ALWAYS TRIGGER ll_90_no_truncate")
    su.execute("SELECT ledgerlock.audit_seal()")
    ok, problems, _first, _chain, problem, *_ = verify(trail)
    # without a digest, the rewritten chain is consistent (that is why digests exist); the rows are not, and
    # the seals' own events (two) now sit inside the one rebuilt seal instead of closing theirs
    assert not ok and problems == 3 and "claims to close a seal but does not" in problem
    ok, *_ = verify(trail, digest)
    res = cli_verify(trail, "--digest", digest)
    assert not ok and res.exit_code == 3 and "differs from the digest" in res.output
    # truncation of the tail past the digest's link
    with guards_off(su):
        su.execute("DELETE FROM ledgerlock.audit_chain WHERE chain_seq >= %s", (int(digest.split(":")[1]),))
    ok, _n, _first, _chain, problem, *_ = verify(trail, digest)
    assert not ok


def test_verification_needs_the_auditor_capability(trail):
    with refused("LL005", r"verify_audit requires the ledgerlock_auditor role"):
        trail.connect("controller").execute("SELECT * FROM ledgerlock.verify_audit()")
    with refused("42501"):
        trail.connect("app").execute("SELECT * FROM ledgerlock.verify_audit()")
    assert verify(trail, role="admin")[0] and verify(trail, role="auditor")[0]


def test_a_malformed_digest_is_refused_clearly(trail):
    with refused("22023", r"is not a ledgerlock audit digest"):
        verify(trail, "abc")
    # a chain position past bigint is not a digest either (it was 22003, "out of range for type bigint")
    with refused("22023", r"is not a ledgerlock audit digest"):
        verify(trail, "ll1:99999999999999999999:" + "a" * 64)


def test_digest_for_the_application_is_the_sealed_head_and_seals_for_ledgerlock_roles(trail):
    trail.connect("app").execute("INSERT INTO invoice (id, company_id) VALUES (70, 1)")
    before = trail.connect("app").execute("SELECT ledgerlock.audit_digest()").fetchone()[0]
    after = trail.connect("auditor").execute("SELECT ledgerlock.audit_digest()").fetchone()[0]
    assert int(after.split(":")[1]) == int(before.split(":")[1]) + 2  # the event, and the seal's own event


def test_verify_inside_an_open_transaction_ignores_its_own_unsealed_events(trail):
    admin = trail.connect("admin")
    with admin.transaction():
        admin.execute("INSERT INTO invoice (id, company_id) VALUES (80, 1)")
        ok, _n, _f, _c, _p, unsealed, _h = admin.execute(
            "SELECT ok, problems, first_broken_seq, first_broken_chain_seq, problem, unsealed, head "
            "FROM ledgerlock.verify_audit()").fetchone()
        assert ok and unsealed == 1
    assert verify(trail)[0]


def test_a_gap_of_several_links_names_the_link_before_it(trail):
    with guards_off(trail.owner()) as su:
        su.execute("DELETE FROM ledgerlock.audit_chain WHERE chain_seq IN (3, 4)")
    ok, problems, _first, chain, problem, *_ = verify(trail)
    assert not ok and chain == 5 and problems == 3  # the gap, and the two events no link seals any more
    assert problem == "chain link 4 is missing: the chain jumps from link 2 to link 5 (links were deleted)"


def test_a_broken_link_is_reported_before_its_modified_event(trail):
    seq = seq_of(trail, "INSERT", 6)
    with guards_off(trail.owner()) as su:
        su.execute("UPDATE ledgerlock.audit_event SET reason = 'edited' WHERE seq = %s", (seq,))
    assert verify(trail)[1] == 1
    with guards_off(trail.owner()) as su:
        su.execute("UPDATE ledgerlock.audit_chain SET chain_hash = repeat('0', 64) WHERE seq = %s", (seq,))
    ok, problems, first, chain, problem, *_ = verify(trail)
    # the link itself, its event, and the next link, which no longer follows from it
    assert not ok and problems == 3 and first == seq
    assert problem.startswith(f"chain link {chain} (event seq {seq}) is broken")


VERDICT = ("SELECT ok, events, sealed, unsealed, first_broken_seq, first_broken_chain_seq, problem, problems "
           "FROM ledgerlock.verify_audit()")
PARALLEL = ("SET parallel_setup_cost = 0", "SET parallel_tuple_cost = 0", "SET min_parallel_table_scan_size = 0",
            "SET min_parallel_index_scan_size = 0", "SET max_parallel_workers_per_gather = 2")


def test_the_verdict_is_the_same_with_or_without_parallel_workers(trail):
    """The links and events of a chunk may be checked by parallel workers: the first problem and the counts
    must not depend on the plan."""
    su = trail.owner()
    a, b = seq_of(trail, "INSERT", 1), seq_of(trail, "UPDATE", 3)
    # an event dated a month back, sealed as genuine: found by the same chunk query, from its time
    su.execute("SELECT ledgerlock.audit_seal()")
    forged = su.execute(
        "INSERT INTO ledgerlock.audit_event (seq, at, table_name, operation, db_user) "
        "VALUES (nextval('ledgerlock.audit_event_seq'), now() - interval '30 days', 'public.invoice', 'NOTE', "
        "'ll_admin') RETURNING seq").fetchone()[0]
    su.execute("SELECT ledgerlock.audit_seal()")
    actors = su.execute("SELECT seq, actor FROM ledgerlock.audit_event WHERE seq IN (%s, %s)", (a, b)).fetchall()
    seq_7 = seq_of(trail, "INSERT", 7)
    with guards_off(su):
        su.execute("UPDATE ledgerlock.audit_event SET actor = 'x' WHERE seq IN (%s, %s)", (a, b))
        su.execute("DELETE FROM ledgerlock.audit_event WHERE seq = %s", (seq_7,))
    serial = trail.connect("auditor")
    serial.execute("SET max_parallel_workers_per_gather = 0")
    parallel = trail.connect("auditor")
    for setting in PARALLEL:
        parallel.execute(setting)
        su.execute(setting)
    plan = "\n".join(r[0] for r in su.execute(
        "EXPLAIN SELECT * FROM ledgerlock._audit_link_problems(1, 100, 1, 100000, '{1}', '{100}', "
        "'{infinity}', '{-infinity}', '{}', '{}', '{0}')").fetchall())
    assert "Workers Planned" in plan  # the check below compares two different plans
    one, other = serial.execute(VERDICT).fetchone(), parallel.execute(VERDICT).fetchone()
    assert one == other
    # 3 in the chain, the back-dated event, and invoice 7 without its event
    assert not one[0] and one[4] == a and one[7] == 5
    with guards_off(su):  # the modified events put back: the deleted event, the back-dated one and invoice 7 left
        for seq, actor in actors:
            su.execute("UPDATE ledgerlock.audit_event SET actor = %s WHERE seq = %s", (actor, seq))
    one, other = serial.execute(VERDICT).fetchone(), parallel.execute(VERDICT).fetchone()
    assert one == other
    assert one[7] == 3 and one[4] == seq_7 < forged, one[6]
