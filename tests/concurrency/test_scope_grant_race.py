"""Two admins each revoking one of a role's last two scopes at the same time: each saw the other's scope still
granted (its delete not committed), so neither left the mark of "limited to no scope", and the role ended
with no grant row at all, that is unlimited. revoke_scope now takes the role's grant rows first, so the
second revoke waits, then sees it took the last one (real connections, waits with timeouts)."""

from __future__ import annotations

from lltest import Background, refused


def test_two_revokes_of_a_roles_last_scopes_at_once_leave_it_limited_to_no_scope(db):
    owner, first, second = db.owner(), db.connect("admin"), db.connect("admin")
    for scope in ("1", "2"):
        first.execute("SELECT ledgerlock.grant_scope('ll_controller', %s)", (scope,))
    with first.transaction():
        first.execute("SELECT ledgerlock.revoke_scope('ll_controller', '1')")
        other = Background(second, "SELECT ledgerlock.revoke_scope('ll_controller', '2')")
        other.wait_until_blocked(owner)  # the second revoke waits for the first one's transaction
    assert other.join().error is None
    assert owner.execute("SELECT scope FROM ledgerlock.scope_grant WHERE grantee = 'll_controller'::regrole"
                         ).fetchall() == [("",)]
    with refused("LL005", r"^lock_period on scope 1 is not allowed: ll_controller is limited to no scope$"):
        db.connect("controller").execute("SELECT ledgerlock.lock_period('1', '2025-01-01', '2025-01-31')")
    # the permitted neighbour: one revoke of one of two scopes leaves the other granted
    first.execute("SELECT ledgerlock.grant_scope('ll_controller', '3')")
    first.execute("SELECT ledgerlock.grant_scope('ll_controller', '4')")
    first.execute("SELECT ledgerlock.revoke_scope('ll_controller', '3')")
    db.connect("controller").execute("SELECT ledgerlock.lock_period('4', '2025-01-01', '2025-01-31')")
