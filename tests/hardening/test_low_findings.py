"""Low findings of the hostile review (issue 13, item 7): invisible reasons, the future-lock date, and what
period_lock_at tells a role that may not see a scope's lock details."""

from __future__ import annotations

from datetime import date

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


# Zones whose date runs ahead of UTC's for most (Kiritimati: UTC+14) or all but one hour (UTC+23) of the day.
@pytest.mark.parametrize("zone", ["Pacific/Kiritimati", "<+23>-23"])
def test_the_session_time_zone_cannot_lock_a_day_that_is_still_in_the_future(db, zone):
    controller = db.connect("controller")
    controller.execute("SELECT set_config('TimeZone', %s, false)", (zone,))
    utc_today, local_today = controller.execute(
        "SELECT (now() AT TIME ZONE 'UTC')::date, current_date").fetchone()
    if local_today > utc_today:
        with refused("LL004", rf"cannot end in the future \({local_today} is after today, {utc_today}\)"):
            controller.execute("SELECT ledgerlock.lock_period('1', %s, %s)", (local_today, local_today))
        with refused("LL004", r"cannot end in the future"):
            controller.execute("SELECT ledgerlock.lock_through('1', %s)", (local_today,))
    # the neighbours: today under the rule, and a future day on purpose
    controller.execute("SELECT ledgerlock.lock_period('1', %s, %s)", (utc_today, utc_today))
    controller.execute("SELECT ledgerlock.lock_through('2', %s)", (utc_today,))
    controller.execute("SELECT ledgerlock.lock_period('3', %s, %s, allow_future => true)",
                       (local_today, local_today))
    controller.execute("SELECT ledgerlock.lock_through('4', %s, allow_future => true)", (local_today,))


def test_a_session_behind_utc_may_lock_the_utc_day(db):
    """The rule is the UTC date, the same day a timestamptz written now falls on in a window."""
    controller = db.connect("controller")
    controller.execute("SET TimeZone = 'Etc/GMT+12'")  # UTC-12
    utc_today = controller.execute("SELECT (now() AT TIME ZONE 'UTC')::date").fetchone()[0]
    controller.execute("SELECT ledgerlock.lock_through('1', %s)", (utc_today,))
    with refused("LL004", r"cannot end in the future"):
        controller.execute("SELECT ledgerlock.lock_period('2', %s::date + 1, %s::date + 1)", (utc_today, utc_today))


LOCK_AT = ("SELECT lock_id, from_date, to_date, level, note, reviewer, locked_by, message "
           "FROM ledgerlock.period_lock_at(%s, '2025-03-15')")


@pytest.fixture
def noted_locks(db):
    owner = db.owner()
    for scope in ("1", "2"):
        owner.execute("SELECT ledgerlock.lock_period(%s, '2025-03-01', '2025-03-31', 'hard', "
                      "note => 'fraud case 17 under review', reviewer => 'carol')", (scope,))
    return owner.execute("SELECT locked_by FROM ledgerlock.period_lock WHERE scope = '2'").fetchone()[0]


def test_period_lock_at_tells_the_application_the_window_but_not_its_notes(db, noted_locks):
    row = db.connect("app").execute(LOCK_AT, ("2",)).fetchone()
    assert row[0] is not None
    assert row[1:4] == (date(2025, 3, 1), date(2025, 3, 31), "hard")
    assert row[7] == "Period 2025-03-01..2025-03-31 is locked (hard) for scope 2"
    assert row[4:7] == (None, None, None)


def test_period_lock_at_tells_a_controller_the_notes_of_its_granted_scopes_only(db, noted_locks):
    controller = db.connect("controller")
    assert controller.execute(LOCK_AT, ("2",)).fetchone()[4:7] == ("fraud case 17 under review", "carol",
                                                                    noted_locks)
    db.owner().execute("SELECT ledgerlock.grant_scope('ll_controller', '1')")
    assert controller.execute(LOCK_AT, ("1",)).fetchone()[4:7] == ("fraud case 17 under review", "carol",
                                                                    noted_locks)
    row = controller.execute(LOCK_AT, ("2",)).fetchone()
    assert row[0] is not None and row[3] == "hard" and row[4:7] == (None, None, None)
    assert db.connect("auditor").execute(LOCK_AT, ("2",)).fetchone()[4:7] == (
        "fraud case 17 under review", "carol", noted_locks)


def test_lock_notes_and_reviewers_keep_only_visible_text(db):
    """A note or reviewer of invisible characters is no note at all; visible ones are trimmed like reasons."""
    admin = db.connect("admin")
    blank = admin.execute("SELECT ledgerlock.lock_period('1', '2025-01-01', '2025-01-31', note => %s, "
                          "reviewer => %s)", ("\u00a0\u200b\t", "\u3000")).fetchone()[0]
    kept = admin.execute("SELECT ledgerlock.lock_period('1', '2025-02-01', '2025-02-28', note => %s, "
                         "reviewer => %s)", ("\u00a0 accruals posted \u200b", " CFO ")).fetchone()[0]
    rows = dict((r[0], r[1:]) for r in admin.execute(
        "SELECT id, note, reviewer FROM ledgerlock.period_locks WHERE id IN (%s, %s)", (blank, kept)).fetchall())
    assert rows[blank] == (None, None)
    assert rows[kept] == ("accruals posted", "CFO")
