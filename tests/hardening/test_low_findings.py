"""Low findings of the hostile review (issue 13, item 7): invisible reasons, the future-lock date, and what
period_lock_at tells a role that may not see a scope's lock details."""

from __future__ import annotations

import pytest

from lltest import refused

INVISIBLE = [
    "\t", "\n", "\r\n", "\v", "\f", " \t \n ",
    "\u00a0", "\u2000", "\u2007", "\u200a", "\u200b", "\u200c", "\u200d", "\u2028", "\u2029", "\u202f",
    "\u205f", "\u2060", "\u3000", "\ufeff", "\u0085", "\u00ad", "\u180e", "\u1680",
    "\x01\x02\x1f\x7f",  # control characters only
    "\u00a0\u200b\ufeff \t",
]


@pytest.mark.parametrize("reason", INVISIBLE, ids=[repr(r) for r in INVISIBLE])
def test_a_reason_without_a_visible_character_is_refused(db, reason):
    controller = db.connect("controller", autocommit=False)
    with refused("LL007", r"^begin_override requires a reason"):
        controller.execute("SELECT ledgerlock.begin_override(%s)", (reason,))
    controller.rollback()
    lock_id = db.owner().execute("SELECT ledgerlock.lock_period('1', '2025-01-01', '2025-01-31')").fetchone()[0]
    with refused("LL007", r"^unlock_period requires a reason"):
        controller.execute("SELECT ledgerlock.unlock_period(%s, %s)", (lock_id, reason))


@pytest.mark.parametrize(("reason", "stored"), [
    ("ok", "ok"),
    ("o\u00a0k", "o\u00a0k"),  # an NBSP inside is part of the reason
    ("\u00a0\u200b fixed a typo \u3000\ufeff\n", "fixed a typo"),
    ("\tx", "x"),
])
def test_a_reason_with_a_visible_character_passes_trimmed_of_the_invisible_ends(db, reason, stored):
    controller = db.connect("controller", autocommit=False)
    ov = controller.execute("SELECT ledgerlock.begin_override(%s)", (reason,)).fetchone()[0]
    controller.commit()
    assert db.owner().execute("SELECT reason FROM ledgerlock.period_override WHERE id = %s",
                              (ov,)).fetchone()[0] == stored
    lock_id = db.owner().execute("SELECT ledgerlock.lock_period('1', '2025-01-01', '2025-01-31')").fetchone()[0]
    controller.execute("SELECT ledgerlock.unlock_period(%s, %s)", (lock_id, reason))
    controller.commit()
    assert db.owner().execute("SELECT unlock_reason FROM ledgerlock.period_lock WHERE id = %s",
                              (lock_id,)).fetchone()[0] == stored
