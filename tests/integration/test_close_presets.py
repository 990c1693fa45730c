"""Lock presets and fiscal years: pure date arithmetic in SQL, on fixed dates."""

from __future__ import annotations

import datetime as dt

import pytest

from lltest import refused

D = dt.date


def through(conn, scope, preset, today):
    return conn.execute("SELECT ledgerlock.preset_through(%s, %s, %s)", (scope, preset, today)).fetchone()[0]


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        (D(2026, 4, 15), D(2026, 3, 31)),
        (D(2026, 3, 1), D(2026, 2, 28)),
        (D(2026, 3, 31), D(2026, 2, 28)),
        (D(2024, 3, 1), D(2024, 2, 29)),   # leap year
        (D(2000, 3, 10), D(2000, 2, 29)),  # divisible by 400: leap
        (D(2100, 3, 10), D(2100, 2, 28)),  # divisible by 100 only: not leap
        (D(2026, 1, 1), D(2025, 12, 31)),  # across the year
        (D(2026, 5, 31), D(2026, 4, 30)),
        (D(2026, 12, 31), D(2026, 11, 30)),
    ],
)
def test_end_of_last_month(db, today, expected):
    assert through(db.connect("controller"), "1", "end-of-last-month", today) == expected


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        (D(2026, 4, 1), D(2026, 3, 31)),
        (D(2026, 6, 30), D(2026, 3, 31)),
        (D(2026, 7, 1), D(2026, 6, 30)),
        (D(2026, 2, 14), D(2025, 12, 31)),
        (D(2024, 5, 20), D(2024, 3, 31)),
        (D(2026, 12, 31), D(2026, 9, 30)),
    ],
)
def test_end_of_last_quarter_with_calendar_fiscal_year(db, today, expected):
    assert through(db.connect("controller"), "1", "end-of-last-quarter", today) == expected


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        (D(2026, 1, 1), D(2025, 12, 31)),
        (D(2026, 12, 31), D(2025, 12, 31)),
        (D(2025, 2, 28), D(2024, 12, 31)),
    ],
)
def test_end_of_last_fiscal_year_is_the_calendar_year_by_default(db, today, expected):
    assert through(db.connect("controller"), "1", "end-of-last-fiscal-year", today) == expected


@pytest.mark.parametrize(
    ("preset", "today", "expected"),
    [
        # fiscal year from 1 April: FY quarters Apr-Jun, Jul-Sep, Oct-Dec, Jan-Mar
        ("end-of-last-fiscal-year", D(2026, 4, 1), D(2026, 3, 31)),
        ("end-of-last-fiscal-year", D(2026, 3, 31), D(2025, 3, 31)),
        ("end-of-last-fiscal-year", D(2027, 1, 15), D(2026, 3, 31)),
        ("end-of-last-fiscal-year", D(2024, 2, 29), D(2023, 3, 31)),
        ("end-of-last-quarter", D(2026, 4, 1), D(2026, 3, 31)),
        ("end-of-last-quarter", D(2026, 5, 15), D(2026, 3, 31)),
        ("end-of-last-quarter", D(2026, 3, 31), D(2025, 12, 31)),
        ("end-of-last-quarter", D(2026, 8, 1), D(2026, 6, 30)),
        ("end-of-last-month", D(2026, 4, 1), D(2026, 3, 31)),
    ],
)
def test_presets_with_a_fiscal_year_starting_in_april(db, preset, today, expected):
    db.connect("admin").execute("SELECT ledgerlock.set_fiscal_year_start('1', 4)")
    controller = db.connect("controller")
    assert through(controller, "1", preset, today) == expected
    # the other company keeps the calendar year
    assert through(controller, "2", "end-of-last-fiscal-year", D(2026, 5, 15)) == D(2025, 12, 31)


def test_quarters_follow_a_fiscal_year_that_does_not_start_on_a_calendar_quarter(db):
    db.connect("admin").execute("SELECT ledgerlock.set_fiscal_year_start('1', 2)")  # Feb-Apr, May-Jul, ...
    c = db.connect("controller")
    assert through(c, "1", "end-of-last-quarter", D(2026, 5, 1)) == D(2026, 4, 30)
    assert through(c, "1", "end-of-last-quarter", D(2026, 4, 30)) == D(2026, 1, 31)
    assert through(c, "1", "end-of-last-quarter", D(2024, 3, 1)) == D(2024, 1, 31)
    assert through(c, "1", "end-of-last-fiscal-year", D(2024, 3, 1)) == D(2024, 1, 31)
    assert through(c, "1", "end-of-last-fiscal-year", D(2024, 1, 31)) == D(2023, 1, 31)


def test_scope_star_is_the_default_fiscal_year_and_a_scope_row_wins(db):
    admin = db.connect("admin")
    admin.execute("SELECT ledgerlock.set_fiscal_year_start('*', 7)")
    admin.execute("SELECT ledgerlock.set_fiscal_year_start('2', 4)")
    c = db.connect("controller")
    assert through(c, "1", "end-of-last-fiscal-year", D(2026, 8, 1)) == D(2026, 6, 30)
    assert through(c, "2", "end-of-last-fiscal-year", D(2026, 8, 1)) == D(2026, 3, 31)
    admin.execute("SELECT ledgerlock.set_fiscal_year_start('2', 1)")  # setting again reconfigures
    assert through(c, "2", "end-of-last-fiscal-year", D(2026, 8, 1)) == D(2025, 12, 31)


def test_today_defaults_to_the_database_date(db):
    c = db.connect("controller")
    got, expected = c.execute(
        "SELECT ledgerlock.preset_through('1', 'end-of-last-month'), date_trunc('month', current_date)::date - 1"
    ).fetchone()
    assert got == expected


def test_unknown_preset_is_refused_with_the_list(db):
    c = db.connect("controller")
    with refused("22023", r"^unknown lock preset 'end-of-last-week'$"):
        through(c, "1", "end-of-last-week", D(2026, 4, 1))
    assert through(c, "1", "end-of-last-month", D(2026, 4, 1)) == D(2026, 3, 31)


def test_only_admins_set_the_fiscal_year_start(db):
    with refused("LL005", r"^set_fiscal_year_start requires the ledgerlock_admin role; ll_controller"):
        db.connect("controller").execute("SELECT ledgerlock.set_fiscal_year_start('1', 4)")
    with refused("42501"):
        db.connect("app").execute("SELECT ledgerlock.set_fiscal_year_start('1', 4)")
    with refused("42501"):  # the table is not writable directly, not even by admins
        db.connect("admin").execute("INSERT INTO ledgerlock.fiscal_year_start (scope, start_month) VALUES ('1', 4)")
    db.connect("admin").execute("SELECT ledgerlock.set_fiscal_year_start('1', 4)")
    assert db.connect("auditor").execute(
        "SELECT start_month, set_by FROM ledgerlock.fiscal_year_start WHERE scope = '1'").fetchone() == (4, "ll_admin")


@pytest.mark.parametrize("month", [0, 13, None])
def test_fiscal_year_start_month_must_be_a_month(db, month):
    admin = db.connect("admin")
    with refused("22023", r"start_month must be 1\.\.12"):
        admin.execute("SELECT ledgerlock.set_fiscal_year_start('1', %s)", (month,))


def test_setting_the_fiscal_year_start_is_in_the_lock_history(db):
    db.connect("admin").execute("SELECT ledgerlock.set_fiscal_year_start('1', 4)")
    kind, scope, user, details = db.connect("auditor").execute(
        "SELECT kind, scope, db_user, details FROM ledgerlock.lock_history WHERE kind = 'fiscal_year_start'"
    ).fetchone()
    assert (kind, scope, user) == ("fiscal_year_start", "1", "ll_admin")
    assert details == {"start_month": 4, "previous_start_month": 1}
