"""Four-eyes unlock of hard windows: requested by one admin, approved by a different database user,
expiring by the database clock, every step in the lock history."""

from __future__ import annotations

import pytest

from lltest import Background, refused, sqlstate


@pytest.fixture
def hard_lock(db):
    """Invoices protected; scope 1 locked hard through 2025-03-31; four-eyes on."""
    db.protect_invoice()
    app = db.connect("app")
    app.execute("INSERT INTO invoice (id, company_id, issued_on, amount) VALUES (1, 1, '2025-03-10', 10)")
    admin = db.connect("admin")
    lock_id = admin.execute("SELECT ledgerlock.lock_period('1', '2025-03-01', '2025-03-31', 'hard')").fetchone()[0]
    admin.execute("SELECT ledgerlock.set_four_eyes(true)")
    return lock_id


def status(db, lock_id):
    return db.owner().execute(
        "SELECT status, unlocked_by, unlock_reason FROM ledgerlock.period_locks WHERE id = %s", (lock_id,)).fetchone()


def history(db, *kinds):
    return db.connect("auditor").execute(
        "SELECT kind, db_user, lock_id, reason, details FROM ledgerlock.lock_history WHERE kind = ANY (%s) ORDER BY id",
        (list(kinds),)).fetchall()


def test_off_by_default_one_admin_unlocks_a_hard_window(db):
    admin = db.connect("admin")
    assert admin.execute("SELECT four_eyes_unlock FROM ledgerlock.close_setting").fetchone()[0] is False
    lock_id = admin.execute("SELECT ledgerlock.lock_period('1', '2025-03-01', '2025-03-31', 'hard')").fetchone()[0]
    assert admin.execute("SELECT ledgerlock.four_eyes_required(%s)", (lock_id,)).fetchone()[0] is False
    admin.execute("SELECT ledgerlock.unlock_period(%s, 'late supplier invoice')", (lock_id,))
    assert status(db, lock_id) == ("unlocked", "ll_admin", "late supplier invoice")


def test_with_four_eyes_on_a_direct_hard_unlock_is_refused(db, hard_lock):
    admin = db.connect("admin")
    assert admin.execute("SELECT ledgerlock.four_eyes_required(%s)", (hard_lock,)).fetchone()[0] is True
    with refused("LL005", rf"^unlocking hard lock #{hard_lock} takes the approval of a second admin "
                          r"\(four-eyes is on\)$") as info:
        admin.execute("SELECT ledgerlock.unlock_period(%s, 'late supplier invoice')", (hard_lock,))
    assert f"ledgerlock.request_unlock({hard_lock}, reason)" in info.value.diag.message_hint
    assert status(db, hard_lock)[0] == "active"
    with refused("LL005"):  # the superuser too goes through the function's gate
        db.owner().execute("SELECT ledgerlock.unlock_period(%s, 'x')", (hard_lock,))
    # a soft window is not concerned: a controller still unlocks it alone
    c = db.connect("controller")
    soft = c.execute("SELECT ledgerlock.lock_period('1', '2025-04-01', '2025-04-30')").fetchone()[0]
    assert c.execute("SELECT ledgerlock.four_eyes_required(%s)", (soft,)).fetchone()[0] is False
    c.execute("SELECT ledgerlock.unlock_period(%s, 'reclassification')", (soft,))
    assert status(db, soft)[0] == "unlocked"


def test_the_requester_cannot_approve_their_own_request(db, hard_lock):
    admin = db.connect("admin")
    request_id = admin.execute("SELECT ledgerlock.request_unlock(%s, 'late supplier invoice')",
                               (hard_lock,)).fetchone()[0]
    with refused("LL005", rf"^request #{request_id} \(unlock lock #{hard_lock}\) was filed by ll_admin, who cannot "
                          r"also approve it: four-eyes needs a different database user$"):
        admin.execute("SELECT ledgerlock.approve_unlock(%s)", (request_id,))
    assert status(db, hard_lock)[0] == "active"
    # the refusal rolled its transaction back; the manager records it in a transaction of its own, and the
    # function re-checks it, so only a true refusal is ever recorded
    assert admin.execute("SELECT ledgerlock.record_unlock_refusal(%s)", (request_id,)).fetchone()[0] is True
    assert db.connect("admin2").execute("SELECT ledgerlock.record_unlock_refusal(%s)",
                                        (request_id,)).fetchone()[0] is False
    [(kind, user, lock_id, reason, details)] = history(db, "unlock_refuse")
    assert (kind, user, lock_id, reason) == ("unlock_refuse", "ll_admin", hard_lock, "late supplier invoice")
    assert details["sqlstate"] == "LL005" and details["request_id"] == request_id


def test_a_different_admin_approves_and_the_window_unlocks_with_the_request_reason(db, hard_lock):
    admin, admin2 = db.connect("admin"), db.connect("admin2")
    request_id = admin.execute("SELECT ledgerlock.request_unlock(%s, 'late supplier invoice')",
                               (hard_lock,)).fetchone()[0]
    pending = admin2.execute("SELECT id, lock_id, scope, requested_by, status FROM ledgerlock.unlock_requests()"
                             ).fetchall()
    assert pending == [(request_id, hard_lock, "1", "ll_admin", "pending")]
    assert admin2.execute("SELECT ledgerlock.approve_unlock(%s)", (request_id,)).fetchone()[0] == hard_lock
    assert status(db, hard_lock) == ("unlocked", "ll_admin2", "late supplier invoice")
    # while unlocked, the application may correct the invoice
    db.connect("app").execute("UPDATE invoice SET amount = 12 WHERE id = 1")
    assert admin2.execute("SELECT status, decided_by FROM ledgerlock.unlock_request WHERE id = %s",
                          (request_id,)).fetchone() == ("approved", "ll_admin2")
    assert admin2.execute("SELECT count(*) FROM ledgerlock.unlock_requests()").fetchone()[0] == 0
    kinds = [(k, u, r) for k, u, _, r, _ in history(db, "unlock_request", "unlock_approve", "unlock")]
    assert kinds == [("unlock_request", "ll_admin", "late supplier invoice"),
                     ("unlock_approve", "ll_admin2", "late supplier invoice"),
                     ("unlock", "ll_admin2", "late supplier invoice")]
    approve = history(db, "unlock_approve")[0][4]
    assert approve["requested_by"] == "ll_admin" and approve["decided_by"] == "ll_admin2"


def test_an_approval_opens_that_window_once_only(db, hard_lock):
    admin, admin2 = db.connect("admin"), db.connect("admin2")
    request_id = admin.execute("SELECT ledgerlock.request_unlock(%s, 'fix')", (hard_lock,)).fetchone()[0]
    admin2.execute("SELECT ledgerlock.approve_unlock(%s)", (request_id,))
    relocked = admin.execute("SELECT ledgerlock.relock(%s)", (hard_lock,)).fetchone()[0]
    with refused("LL005", rf"^unlocking hard lock #{relocked} takes the approval"):
        admin.execute("SELECT ledgerlock.unlock_period(%s, 'again')", (relocked,))
    with refused("LL004", rf"^request #{request_id} \(unlock lock #{hard_lock}\) is approved already$"):
        db.owner().execute("SELECT ledgerlock.approve_unlock(%s)", (request_id,))


def test_an_expired_request_cannot_be_approved(db, hard_lock):
    admin, admin2 = db.connect("admin"), db.connect("admin2")
    admin.execute("SELECT ledgerlock.set_four_eyes(true, '200 milliseconds')")
    request_id = admin.execute("SELECT ledgerlock.request_unlock(%s, 'fix')", (hard_lock,)).fetchone()[0]
    expires_at = admin.execute("SELECT expires_at FROM ledgerlock.unlock_request WHERE id = %s",
                               (request_id,)).fetchone()[0]
    # wait on the database clock, which is the one that decides (no timing is asserted)
    admin.execute("SELECT pg_sleep(0.05) FROM generate_series(1, 100) WHERE clock_timestamp() <= %s", (expires_at,))
    assert admin.execute("SELECT clock_timestamp() > %s", (expires_at,)).fetchone()[0]
    with refused("LL004", rf"^request #{request_id} \(unlock lock #{hard_lock}\) by ll_admin expired at "):
        admin2.execute("SELECT ledgerlock.approve_unlock(%s)", (request_id,))
    assert status(db, hard_lock)[0] == "active"
    # the expiry is on record as soon as an admin looks (the refused approval rolled back)
    assert admin2.execute("SELECT ledgerlock.record_unlock_refusal(%s)", (request_id,)).fetchone()[0] is True
    assert [r[0] for r in history(db, "unlock_request_expire", "unlock_refuse")] == [
        "unlock_request_expire", "unlock_refuse"]
    everything = admin2.execute("SELECT id, status FROM ledgerlock.unlock_requests(false)").fetchall()
    assert everything == [(request_id, "expired")]
    # a fresh request can be filed and approved
    admin.execute("SELECT ledgerlock.set_four_eyes(true, '1 hour')")
    again = admin.execute("SELECT ledgerlock.request_unlock(%s, 'fix')", (hard_lock,)).fetchone()[0]
    admin2.execute("SELECT ledgerlock.approve_unlock(%s)", (again,))
    assert status(db, hard_lock)[0] == "unlocked"


def test_expiry_is_recorded_by_the_sweep(db, hard_lock):
    admin = db.connect("admin")
    admin.execute("SELECT ledgerlock.set_four_eyes(true, '100 milliseconds')")
    request_id = admin.execute("SELECT ledgerlock.request_unlock(%s, 'fix')", (hard_lock,)).fetchone()[0]
    admin.execute("SELECT pg_sleep(0.05) FROM generate_series(1, 100) "
                  "WHERE clock_timestamp() <= (SELECT expires_at FROM ledgerlock.unlock_request WHERE id = %s)",
                  (request_id,))
    assert admin.execute("SELECT ledgerlock.expire_unlock_requests()").fetchone()[0] == 1
    assert admin.execute("SELECT ledgerlock.expire_unlock_requests()").fetchone()[0] == 0  # recorded once
    [(kind, _, lock_id, _, details)] = history(db, "unlock_request_expire")
    assert lock_id == hard_lock and details["status"] == "expired"


def test_request_refusals(db, hard_lock):
    admin = db.connect("admin")
    with refused("LL007", r"^request_unlock requires a reason$"):
        admin.execute("SELECT ledgerlock.request_unlock(%s, '  ')", (hard_lock,))
    with refused("22023", r"^request_unlock: lock #999 does not exist or is not active$"):
        admin.execute("SELECT ledgerlock.request_unlock(999, 'x')")
    soft = admin.execute("SELECT ledgerlock.lock_period('1', '2025-04-01', '2025-04-30')").fetchone()[0]
    with refused("LL004", rf"^request_unlock: lock #{soft} is soft; only hard windows need a second admin$"):
        admin.execute("SELECT ledgerlock.request_unlock(%s, 'x')", (soft,))
    with refused("LL005", r"^request_unlock requires the ledgerlock_admin role; ll_controller"):
        db.connect("controller").execute("SELECT ledgerlock.request_unlock(%s, 'x')", (hard_lock,))
    with refused("42501"):
        db.connect("app").execute("SELECT ledgerlock.request_unlock(%s, 'x')", (hard_lock,))
    first = admin.execute("SELECT ledgerlock.request_unlock(%s, 'x')", (hard_lock,)).fetchone()[0]
    with refused("LL004", rf"^request #{first} \(unlock lock #{hard_lock}\) by ll_admin is already pending until "):
        db.connect("admin2").execute("SELECT ledgerlock.request_unlock(%s, 'y')", (hard_lock,))
    with refused("LL005", r"^approve_unlock requires the ledgerlock_admin role; ll_controller"):
        db.connect("controller").execute("SELECT ledgerlock.approve_unlock(%s)", (first,))
    with refused("22023", r"^unlock request #999 does not exist$"):
        admin.execute("SELECT ledgerlock.approve_unlock(999)")


def test_the_requester_may_withdraw(db, hard_lock):
    admin, admin2 = db.connect("admin"), db.connect("admin2")
    request_id = admin.execute("SELECT ledgerlock.request_unlock(%s, 'x')", (hard_lock,)).fetchone()[0]
    with refused("LL005", rf"^request #{request_id} was filed by ll_admin; only they can withdraw it$"):
        admin2.execute("SELECT ledgerlock.withdraw_unlock(%s)", (request_id,))
    admin.execute("SELECT ledgerlock.withdraw_unlock(%s)", (request_id,))
    with refused("LL004", r"is withdrawn already$"):
        admin2.execute("SELECT ledgerlock.approve_unlock(%s)", (request_id,))
    assert [r[0] for r in history(db, "unlock_request_withdraw")] == ["unlock_request_withdraw"]


def test_nobody_writes_the_request_table_or_the_setting_directly(db, hard_lock):
    for role in ("app", "admin", "controller"):
        conn = db.connect(role)
        with refused("42501"):
            conn.execute("INSERT INTO ledgerlock.unlock_request (lock_id, reason, expires_at, status, decided_at, "
                         "decided_by, decided_txid) VALUES (%s, 'x', now() + interval '1 hour', 'approved', now(), "
                         "'ll_admin2', pg_current_xact_id())", (hard_lock,))
        with refused("42501"):
            conn.execute("UPDATE ledgerlock.close_setting SET four_eyes_unlock = false")
    # and no client setting opens the gate
    admin = db.connect("admin")
    admin.execute("SET ledgerlock.four_eyes = 'off'")
    with refused("LL005"):
        admin.execute("SELECT ledgerlock.unlock_period(%s, 'x')", (hard_lock,))


def test_who_may_change_the_setting(db):
    with refused("LL005", r"^set_four_eyes requires the ledgerlock_admin role; ll_controller"):
        db.connect("controller").execute("SELECT ledgerlock.set_four_eyes(true)")
    with refused("42501"):
        db.connect("app").execute("SELECT ledgerlock.set_four_eyes(true)")
    with refused("22023", r"request_ttl must be positive"):
        db.connect("admin").execute("SELECT ledgerlock.set_four_eyes(true, '-1 hour')")
    db.connect("admin").execute("SELECT ledgerlock.set_four_eyes(true, '4 hours')")
    assert db.connect("auditor").execute(
        "SELECT four_eyes_unlock, unlock_request_ttl::text, changed_by FROM ledgerlock.close_setting").fetchone() == (
        True, "04:00:00", "ll_admin")
    [(_, user, _, _, details)] = history(db, "four_eyes_setting")
    assert user == "ll_admin" and details["four_eyes_unlock"] is True


def test_turning_four_eyes_off_takes_a_second_admin(db, hard_lock):
    admin, admin2 = db.connect("admin"), db.connect("admin2")
    with refused("LL005", r"^four-eyes unlocking is on: turning it off takes the approval of a second admin$"):
        admin.execute("SELECT ledgerlock.set_four_eyes(false)")
    request_id = admin.execute("SELECT ledgerlock.request_four_eyes_off('auditors signed off')").fetchone()[0]
    with refused("LL005", r"who cannot also approve it"):
        admin.execute("SELECT ledgerlock.approve_unlock(%s)", (request_id,))
    assert admin2.execute("SELECT ledgerlock.approve_unlock(%s)", (request_id,)).fetchone()[0] is None
    assert admin.execute("SELECT four_eyes_unlock FROM ledgerlock.close_setting").fetchone()[0] is False
    with refused("LL004", r"^request_four_eyes_off: four-eyes unlocking is already off$"):
        admin.execute("SELECT ledgerlock.request_four_eyes_off('again')")
    admin.execute("SELECT ledgerlock.unlock_period(%s, 'now one admin may')", (hard_lock,))
    # turning it on again is one admin's call (it makes unlocking stricter)
    admin.execute("SELECT ledgerlock.set_four_eyes(true)")
    assert [r[4]["four_eyes_unlock"] for r in history(db, "four_eyes_setting")] == [True, False, True]


def test_an_approval_restored_with_a_transaction_id_reused_here_lets_no_admin_alone_through(db, hard_lock):
    """pg_restore brings ledgerlock.unlock_request back with the transaction ids of the cluster it was dumped
    from, and this cluster's ids start again and reach them; an admin can read the requests and watch the next
    id come. An approval to turn four-eyes off, restored with the id the admin's transaction now holds and in
    the admin's own name, must not count as approved in that transaction. The row is put in place as
    pg_restore puts it (a superuser's COPY of the old values)."""
    admin = db.connect("admin", autocommit=False)
    xid = admin.execute("SELECT pg_current_xact_id()").fetchone()[0]
    db.owner().execute(
        "INSERT INTO ledgerlock.unlock_request (action, reason, requested_at, requested_by, expires_at, status, "
        "decided_at, decided_by, decided_txid) VALUES ('four_eyes_off', 'auditors signed off in 2024', "
        "'2024-06-01 09:00+00', 'll_admin2', '2024-06-08 09:00+00', 'approved', '2024-06-01 10:00+00', "
        "'ll_admin', %s)", (xid,))
    with refused("LL005", r"^four-eyes unlocking is on: turning it off takes the approval of a second admin$"):
        admin.execute("SELECT ledgerlock.set_four_eyes(false)")
    admin.rollback()
    assert admin.execute("SELECT four_eyes_unlock FROM ledgerlock.close_setting").fetchone()[0] is True
    admin.rollback()
    # the permitted neighbour: a request of this cluster, approved by the second admin
    request_id = admin.execute("SELECT ledgerlock.request_four_eyes_off('auditors signed off')").fetchone()[0]
    admin.commit()
    db.connect("admin2").execute("SELECT ledgerlock.approve_unlock(%s)", (request_id,))
    assert admin.execute("SELECT four_eyes_unlock FROM ledgerlock.close_setting").fetchone()[0] is False


def test_two_admins_approving_at_once_unlock_once(db, hard_lock):
    admin, owner = db.connect("admin"), db.owner()
    request_id = admin.execute("SELECT ledgerlock.request_unlock(%s, 'fix')", (hard_lock,)).fetchone()[0]
    first = db.connect("admin2", autocommit=False)
    first.execute("SELECT ledgerlock.approve_unlock(%s)", (request_id,))  # holds the request row
    second = Background(owner, "SELECT ledgerlock.approve_unlock(%s)", (request_id,))
    second.wait_until_blocked(db.owner())  # waits on the request row (observed on the server, not by timing)
    first.commit()
    assert sqlstate(second.join().error) == "LL004"
    assert second.error.diag.message_primary == f"request #{request_id} (unlock lock #{hard_lock}) is approved already"
    assert [r[0] for r in history(db, "unlock")] == ["unlock"]


def test_the_four_eyes_trail_is_in_the_hash_chained_audit_log(db, hard_lock):
    admin, admin2 = db.connect("admin"), db.connect("admin2")
    request_id = admin.execute("SELECT ledgerlock.request_unlock(%s, 'late supplier invoice')",
                               (hard_lock,)).fetchone()[0]
    with refused("LL005"):
        admin.execute("SELECT ledgerlock.approve_unlock(%s)", (request_id,))
    admin.execute("SELECT ledgerlock.record_unlock_refusal(%s)", (request_id,))
    admin2.execute("SELECT ledgerlock.approve_unlock(%s)", (request_id,))
    auditor = db.connect("auditor")
    trail = auditor.execute(
        "SELECT operation, db_user, reason, lock_id FROM ledgerlock.audit_log "
        "WHERE operation IN ('FOUR_EYES_SETTING', 'UNLOCK_REQUEST', 'UNLOCK_REFUSE', 'UNLOCK_APPROVE', 'UNLOCK') "
        "ORDER BY seq").fetchall()
    assert trail == [("FOUR_EYES_SETTING", "ll_admin", None, None),
                     ("UNLOCK_REQUEST", "ll_admin", "late supplier invoice", hard_lock),
                     ("UNLOCK_REFUSE", "ll_admin", "late supplier invoice", hard_lock),
                     ("UNLOCK_APPROVE", "ll_admin2", "late supplier invoice", hard_lock),
                     ("UNLOCK", "ll_admin2", "late supplier invoice", hard_lock)]
    assert auditor.execute("SELECT ok FROM ledgerlock.verify_audit()").fetchone()[0] is True


def test_a_scope_limited_admin_neither_sees_nor_decides_other_scopes_requests(db, hard_lock):
    owner = db.owner()
    owner.execute("CREATE ROLE ll_tenant2 NOLOGIN")
    owner.execute("GRANT ll_tenant2 TO ll_admin2")
    db.connect("admin").execute("SELECT ledgerlock.grant_scope('ll_tenant2', '2')")
    request_id = db.connect("admin").execute("SELECT ledgerlock.request_unlock(%s, 'x')", (hard_lock,)).fetchone()[0]
    admin2 = db.connect("admin2")
    assert admin2.execute("SELECT count(*) FROM ledgerlock.unlock_request").fetchone()[0] == 0
    assert admin2.execute("SELECT count(*) FROM ledgerlock.unlock_requests()").fetchone()[0] == 0
    with refused("LL005", r"^approve_unlock on scope 1 is not allowed: ll_admin2 is limited to scopes 2$"):
        admin2.execute("SELECT ledgerlock.approve_unlock(%s)", (request_id,))
    db.owner().execute("SELECT ledgerlock.approve_unlock(%s)", (request_id,))  # an unlimited second admin may
    assert status(db, hard_lock)[0] == "unlocked"
