"""Upgrading to cheap capture: events written by a release that hashed them at write time keep that hash, sealed
or not, and still verify against a digest kept before the upgrade; events written after it are stored unhashed
and hashed by the sealer; a pre-upgrade event edited afterwards is still caught by the hash it was written with."""

from __future__ import annotations

from test_upgrade import install_previous_release, put_the_books_in, upgraded  # noqa: F401 (a fixture)

from ledgerlock import migrate


def verify(db, digest=None):
    return db.connect("auditor").execute(
        "SELECT ok, problems, problem FROM ledgerlock.verify_audit(%s)", (digest,)).fetchone()


def test_events_hashed_at_write_time_still_verify_after_the_upgrade(upgraded):  # noqa: F811
    install_previous_release(upgraded)
    kept = put_the_books_in(upgraded)
    app, su = upgraded.connect("app"), upgraded.owner()
    app.execute("INSERT INTO invoice (id, company_id, issued_on, amount) VALUES (6, 1, '2025-04-21', 600)")
    unsealed = su.execute("SELECT max(seq) FROM ledgerlock.audit_event").fetchone()[0]
    assert su.execute("SELECT event_hash IS NOT NULL, NOT EXISTS (SELECT FROM ledgerlock.audit_chain c "
                      "WHERE c.seq = e.seq) FROM ledgerlock.audit_event e WHERE seq = %s",
                      (unsealed,)).fetchone() == (True, True)

    migrate.migrate(upgraded.conninfo())
    app.execute("INSERT INTO invoice (id, company_id, issued_on, amount) VALUES (7, 1, '2025-04-22', 700)")
    new = su.execute("SELECT max(seq) FROM ledgerlock.audit_event WHERE table_name = 'public.invoice'").fetchone()[0]
    assert su.execute("SELECT event_hash FROM ledgerlock.audit_event WHERE seq = %s", (new,)).fetchone()[0] is None
    assert verify(upgraded, kept["digest"])[:2] == (True, 0)
    # the pre-upgrade event was sealed with the hash it was written with; the new one with the sealer's
    rows = su.execute("SELECT e.seq, e.event_hash = c.event_hash, e.event_hash IS NULL FROM ledgerlock.audit_event e "
                      "JOIN ledgerlock.audit_chain c ON c.seq = e.seq WHERE e.seq IN (%s, %s) ORDER BY 1",
                      (unsealed, new)).fetchall()
    assert rows == [(unsealed, True, False), (new, None, True)]

    # a pre-upgrade event edited after the upgrade is caught by its written hash
    su.execute("ALTER TABLE ledgerlock.audit_event DISABLE TRIGGER ll_90_append_only")
    su.execute("UPDATE ledgerlock.audit_event SET reason = 'edited' WHERE seq = %s", (unsealed,))
    su.execute("ALTER TABLE ledgerlock.audit_event ENABLE ALWAYS TRIGGER ll_90_append_only")
    ok, _n, problem = verify(upgraded, kept["digest"])
    assert not ok and problem.startswith(f"event seq {unsealed} ") and "was modified" in problem
