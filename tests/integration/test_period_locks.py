"""R3: locked periods are read-only — tested as the application, controller and admin meet them.

Every refusal is shown both ways: the forbidden write fails with its SQLSTATE and message, and the
permitted neighbour (other scope, other ledger, open date, mutable column) goes through.
"""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest

import ledgerlock.errors as lle
from lltest import guard_calls, lives_ok, refused, trigger_def

MARCH = ("2025-03-01", "2025-03-31")
LOCKED_MSG = r"^Period 2025-03-01\.\.2025-03-31 is locked \(soft\) for scope 1: "


def lock(conn, scope="1", from_date=MARCH[0], to_date=MARCH[1], **kw):
    args = ", ".join(f"{k} => %({k})s" for k in kw)
    stmt = f"SELECT ledgerlock.lock_period(%(scope)s, %(f)s::date, %(t)s::date{', ' + args if args else ''})"
    return conn.execute(stmt, {"scope": scope, "f": from_date, "t": to_date, **kw}).fetchone()[0]


def count(conn, sql, params=None):
    return conn.execute(sql, params).fetchone()[0]


@pytest.fixture
def app(db):
    """invoice protected (scope company_id, mutable paid/reconciled), rows in March and April of company 1
    and in March of company 2, and March of company 1 locked (soft) by the controller."""
    db.protect_invoice()
    app = db.connect("app")
    app.execute("""INSERT INTO invoice (id, company_id, issued_on, amount) VALUES
                   (1, 1, '2025-03-10', 100), (2, 1, '2025-04-10', 200), (3, 2, '2025-03-10', 300)""")
    db.owner().execute("SELECT setval(pg_get_serial_sequence('invoice', 'id'), 100)")  # generated ids from 101
    lock(db.connect("controller"))
    return app


# ---------------------------------------------------------------------------------------------------
# The rule: inserts, updates and deletes whose old or new date lies in an active window


def test_insert_into_locked_window_is_refused_with_ll002(app):
    with refused("LL002", LOCKED_MSG + r"invoice id=10 cannot be inserted$"):
        app.execute("INSERT INTO invoice (id, company_id, issued_on) VALUES (10, 1, '2025-03-31')")
    assert count(app, "SELECT count(*) FROM invoice WHERE id = 10") == 0


def test_insert_neighbours_pass_other_scope_and_open_dates(app):
    lives_ok(app, "INSERT INTO invoice (id, company_id, issued_on) VALUES (10, 2, '2025-03-15')")  # other scope
    lives_ok(app, "INSERT INTO invoice (id, company_id, issued_on) VALUES (11, 1, '2025-04-01')")  # day after
    lives_ok(app, "INSERT INTO invoice (id, company_id, issued_on) VALUES (12, 1, '2025-02-28')")  # day before
    assert count(app, "SELECT count(*) FROM invoice WHERE id >= 10") == 3


def test_refusal_hint_names_the_way_out_and_application_catches_period_locked_error(app):
    with pytest.raises(lle.PeriodLockedError) as info:
        app.execute("INSERT INTO invoice (company_id, issued_on) VALUES (1, '2025-03-05')")
    hint = info.value.diag.message_hint
    assert "begin_override" in hint and "unlock_period(1, " in hint


def test_update_of_row_in_window_is_refused_and_mutable_columns_stay_writable(app):
    with refused("LL002", LOCKED_MSG + r"invoice id=1 cannot be updated$"):
        app.execute("UPDATE invoice SET amount = 1 WHERE id = 1")
    lives_ok(app, "UPDATE invoice SET paid = true, reconciled = true WHERE id = 1")  # recording payment is fine
    assert app.execute("SELECT amount, paid, reconciled FROM invoice WHERE id = 1").fetchone() == (100, True, True)
    with refused("LL002"):  # a mutable column together with a locked one
        app.execute("UPDATE invoice SET reconciled = false, note = 'x' WHERE id = 1")


def test_recording_a_payment_on_a_row_in_a_window_calls_no_guard(db, app):
    """The WHEN clause of the update check tells a mutable-only update apart in C (the new row with its exempt
    columns put back, compared whole and exactly): the period check is not called; any other column is."""
    db.owner().execute(f"ALTER DATABASE {db.name} SET track_functions = 'pl'")
    tx = db.connect("app", autocommit=False)
    lives_ok(tx, "UPDATE invoice SET paid = true WHERE id = 1")
    assert guard_calls(tx, "guard_period_row") == 0
    tx.commit()
    with refused("LL002", LOCKED_MSG + r"invoice id=1 cannot be updated$"):
        tx.execute("UPDATE invoice SET paid = false, amount = 1 WHERE id = 1")
    tx.rollback()
    assert tx.execute("SELECT amount, paid FROM invoice WHERE id = 1").fetchone() == (100, True)


def test_moving_a_row_into_or_out_of_the_window_is_refused(app):
    with refused("LL002", LOCKED_MSG + r"invoice id=2 cannot be updated$"):
        app.execute("UPDATE invoice SET issued_on = '2025-03-20' WHERE id = 2")  # new date inside
    with refused("LL002", LOCKED_MSG + r"invoice id=1 cannot be updated$"):
        app.execute("UPDATE invoice SET issued_on = '2025-04-20' WHERE id = 1")  # old date inside
    with refused("LL002"):
        app.execute("UPDATE invoice SET company_id = 1 WHERE id = 3")  # into the locked scope
    lives_ok(app, "UPDATE invoice SET issued_on = '2025-04-20', amount = 250 WHERE id = 2")  # open to open
    assert app.execute("SELECT issued_on, amount FROM invoice WHERE id = 2").fetchone() == (dt.date(2025, 4, 20), 250)


def test_delete_in_window_is_refused_outside_allowed(app):
    with refused("LL002", LOCKED_MSG + r"invoice id=1 cannot be deleted$"):
        app.execute("DELETE FROM invoice WHERE id = 1")
    lives_ok(app, "DELETE FROM invoice WHERE id IN (2, 3)")
    assert count(app, "SELECT count(*) FROM invoice") == 1


def test_locks_bind_admins_and_the_owner_too(db, app):
    for role in ("controller", "admin", "owner"):
        with refused("LL002"):
            db.connect(role).execute("UPDATE invoice SET amount = 5 WHERE id = 1")


def test_bulk_insert_with_one_row_in_the_window_inserts_nothing(app):
    with refused("LL002", LOCKED_MSG + r"invoice id=22 cannot be inserted$"):
        app.execute("""INSERT INTO invoice (id, company_id, issued_on)
                       SELECT 20 + g, CASE WHEN g = 2 THEN 1 ELSE 2 END, date '2025-03-01' + g
                       FROM generate_series(0, 4) g""")
    assert count(app, "SELECT count(*) FROM invoice WHERE id >= 20") == 0
    lives_ok(app, """INSERT INTO invoice (id, company_id, issued_on)
                     SELECT 20 + g, 1 + g % 2, date '2025-04-01' + g FROM generate_series(0, 99) g""")
    assert count(app, "SELECT count(*) FROM invoice WHERE id >= 20") == 100


def test_bulk_insert_spanning_a_window_but_no_row_inside_passes(app):
    # scope 1 rows on both sides of March: the min/max range meets the window, the rows do not
    lives_ok(app, """INSERT INTO invoice (id, company_id, issued_on) VALUES
                     (30, 1, '2025-02-28'), (31, 1, '2025-04-01'), (32, 2, '2025-03-15')""")
    assert count(app, "SELECT count(*) FROM invoice WHERE id >= 30") == 3


def test_copy_and_upsert_are_checked_too(app):
    with refused("LL002"), app.cursor().copy("COPY invoice (id, company_id, issued_on) FROM STDIN") as cp:
        cp.write_row((40, 1, dt.date(2025, 3, 2)))
    with refused("LL002"):
        app.execute("""INSERT INTO invoice (id, company_id, issued_on) VALUES (1, 1, '2025-03-10')
                       ON CONFLICT (id) DO UPDATE SET amount = 999""")
    assert count(app, "SELECT amount FROM invoice WHERE id = 1") == 100


def test_many_windows_in_a_scope_still_find_the_one_that_applies(db, app):
    ctl = db.connect("controller")
    ctl.execute("""SELECT count(ledgerlock.lock_period('5', d::date, d::date, 'hard'))
                   FROM generate_series(date '2015-01-01', date '2015-01-01' + 598, interval '2 days') d""")
    # 300 one-day windows (every other day): the lookup must find the one of the day, not the scope's first
    # or last; how the number of windows weighs on a write is the bench's periods.lock_check scenario
    app.execute("INSERT INTO company VALUES (5, 'Five')")
    app.execute("INSERT INTO invoice (company_id, issued_on) VALUES (5, '2015-01-02'), (5, '2025-01-01')")
    with refused("LL002", r"^Period 2016-01-02\.\.2016-01-02 is locked \(hard\) for scope 5"):
        app.execute("INSERT INTO invoice (company_id, issued_on) VALUES (5, '2016-01-02')")


def test_locking_and_unlocking_touch_no_protected_row(db, app):
    before = app.execute("SELECT id, xmin::text FROM invoice ORDER BY id").fetchall()
    ctl = db.connect("controller")
    lock_id = lock(ctl, "1", "2025-04-01", "2025-04-30")
    ctl.execute("SELECT ledgerlock.unlock_period(%s, 'no row is touched')", (lock_id,))
    assert app.execute("SELECT id, xmin::text FROM invoice ORDER BY id").fetchall() == before


# ---------------------------------------------------------------------------------------------------
# Scope, ledgers, table shapes


def test_ledger_limited_lock_covers_only_tables_with_that_tag(db):
    owner = db.owner()
    db.protect_invoice(owner, ledger="ar")
    owner.execute("SELECT ledgerlock.protect('payment', 'paid_on', 'company_id', ledger => 'ap')")
    owner.execute("SELECT ledgerlock.protect('journal_entry', 'posted_on', 'company_id')")  # untagged
    app = db.connect("app")
    app.execute("INSERT INTO invoice (id, company_id, issued_on) VALUES (1, 1, '2025-01-10')")
    ctl = db.connect("controller")
    lock(ctl, "1", ledgers=["ap"])
    lives_ok(app, "INSERT INTO invoice (id, company_id, issued_on) VALUES (2, 1, '2025-03-02')")  # ar: other ledger
    lives_ok(app, "INSERT INTO journal_entry (company_id, posted_on) VALUES (1, '2025-03-02')")  # untagged
    assert count(app, "SELECT count(*) FROM invoice WHERE issued_on = '2025-03-02'") == 1
    assert count(app, "SELECT count(*) FROM journal_entry WHERE posted_on = '2025-03-02'") == 1
    with refused("LL002", r"^Period 2025-03-01\.\.2025-03-31 is locked \(soft\) for scope 1, ledgers ap: "
                          r"payment id=\d+ cannot be inserted$"):
        app.execute("INSERT INTO payment (company_id, invoice_id, paid_on, amount) VALUES (1, 1, '2025-03-02', 5)")
    lock(ctl, "1", "2025-03-01", "2025-03-31", ledgers=["ar"])  # disjoint ledgers may overlap
    with refused("LL002", r"for scope 1, ledgers ar: invoice"):
        app.execute("INSERT INTO invoice (id, company_id, issued_on) VALUES (3, 1, '2025-03-03')")
    lock(ctl, "1", "2025-02-01", "2025-02-28")  # every ledger, untagged tables included
    for stmt in ("INSERT INTO invoice (id, company_id, issued_on) VALUES (4, 1, '2025-02-03')",
                 "INSERT INTO journal_entry (company_id, posted_on) VALUES (1, '2025-02-03')",
                 "INSERT INTO payment (company_id, invoice_id, paid_on, amount) VALUES (1, 1, '2025-02-03', 5)"):
        with refused("LL002", r"^Period 2025-02-01\.\.2025-02-28 is locked \(soft\) for scope 1: "):
            app.execute(stmt)


def test_table_without_scope_column_is_scope_star(db):
    db.owner().execute("SELECT ledgerlock.protect('journal_entry', 'posted_on')")
    app = db.connect("app")
    lock(db.connect("controller"), "*")
    with refused("LL002", r"^Period 2025-03-01\.\.2025-03-31 is locked \(soft\) for scope \*: journal_entry id=1 "):
        app.execute("INSERT INTO journal_entry (id, company_id, posted_on) VALUES (1, 2, '2025-03-09')")
    app.execute("INSERT INTO journal_entry (id, company_id, posted_on) VALUES (1, 2, '2025-04-09')")


def test_timestamptz_dates_are_read_in_utc_whatever_the_client_time_zone(db):
    owner = db.owner()
    owner.execute("CREATE TABLE booking (id int PRIMARY KEY, company_id int, at timestamptz NOT NULL)")
    owner.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON booking TO ll_app")
    owner.execute("SELECT ledgerlock.protect('booking', 'at', 'company_id')")
    lock(db.connect("controller"))
    app = db.connect("app")
    app.execute("SET TimeZone = 'Pacific/Kiritimati'")  # UTC+14: 2025-03-31 23:00 UTC reads as April 1st
    with refused("LL002"):
        app.execute("INSERT INTO booking VALUES (1, 1, '2025-03-31 23:00+00')")
    with refused("LL002"):  # bulk path, same reading
        app.execute("INSERT INTO booking VALUES (2, 1, '2025-04-02 00:00+00'), (3, 1, '2025-03-31 23:00+00')")
    app.execute("INSERT INTO booking VALUES (4, 1, '2025-04-01 00:00+00')")


def test_partitioned_table_is_guarded_through_parent_and_partition(db):
    owner = db.owner()
    owner.execute("""CREATE TABLE entry (id int, company_id int, booked_on date NOT NULL,
                     PRIMARY KEY (id, booked_on)) PARTITION BY RANGE (booked_on)""")
    owner.execute("CREATE TABLE entry_2025 PARTITION OF entry FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')")
    owner.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON entry, entry_2025 TO ll_app")
    owner.execute("SELECT ledgerlock.protect('entry', 'booked_on', 'company_id')")
    lock(db.connect("controller"))
    app = db.connect("app")
    with refused("LL002"):
        app.execute("INSERT INTO entry VALUES (1, 1, '2025-03-03')")
    with refused("LL002"):
        app.execute("INSERT INTO entry_2025 VALUES (1, 1, '2025-03-03')")
    app.execute("INSERT INTO entry_2025 VALUES (1, 1, '2025-04-03')")
    with refused("LL002"):
        app.execute("UPDATE entry_2025 SET booked_on = '2025-03-03' WHERE id = 1")


# ---------------------------------------------------------------------------------------------------
# The lock API and its refusals (LL004, LL005, LL007)


def test_overlapping_active_window_is_refused_with_ll004(db, app):
    ctl = db.connect("controller")
    with refused("LL004", r"^period 2025-03-15\.\.2025-04-15 for scope 1 overlaps lock #1 "
                          r"\(2025-03-01\.\.2025-03-31, soft\)$"):
        lock(ctl, "1", "2025-03-15", "2025-04-15")
    with refused("LL004", r"overlaps lock #1"):
        lock(ctl, "1", "2025-03-31", "2025-04-15", ledgers=["ar"])  # a ledger subset still intersects
    lock(ctl, "2", "2025-03-15", "2025-04-15")  # other scope
    lock(ctl, "1", "2025-04-01", "2025-04-15")  # adjacent


def test_future_end_is_refused_unless_allowed(db):
    ctl = db.connect("controller")
    today = count(ctl, "SELECT (now() AT TIME ZONE 'UTC')::date")  # the rule: the UTC date, whatever TimeZone says
    later = today + dt.timedelta(days=40)
    with refused("LL004", r"cannot end in the future"):
        lock(ctl, "1", str(today), str(later))
    lock(ctl, "1", str(today), str(today))  # today itself is not the future
    with refused("LL004", r"^a lock for scope 1 cannot end in the future \(infinity is after today, "):
        lock(ctl, "1", "2030-01-01", "infinity")  # named, not printed as nothing
    lock(ctl, "1", str(today + dt.timedelta(days=1)), str(later), allow_future=True)


def test_a_blank_scope_is_refused_like_a_missing_one(db):
    """A blank scope is an unset variable in a script (`ledgerlock lock "$COMPANY"`) far more often than a
    company, and a lock of it holds no row: refused, as grant_scope refuses it."""
    ctl = db.connect("controller")
    for scope in ("", "   ", "\u200b"):
        with refused("22023", r"^lock_period requires a scope, a from date and a to date$") as info:
            lock(ctl, scope)
        assert "scope column" in info.value.diag.message_hint
        with refused("22023", r"^lock_through requires a scope and a date$"):
            ctl.execute("SELECT ledgerlock.lock_through(%s, '2025-03-31')", (scope,))
    # an admin, and a tenant admin (limited to scope 2), are told the same before any scope grant is looked at
    db.connect("admin").execute("SELECT ledgerlock.grant_scope('ll_admin2', '2')")
    for role in ("admin", "admin2"):
        with refused("22023", r"^lock_period requires a scope, a from date and a to date$"):
            lock(db.connect(role), " ")
    assert count(ctl, "SELECT count(*) FROM ledgerlock.period_locks") == 0
    # the permitted neighbours: a company, and '*', the scope of tables without a scope column
    lock(ctl, "1")
    ctl.execute("SELECT ledgerlock.lock_through('*', '2025-03-31')")
    assert count(ctl, "SELECT count(*) FROM ledgerlock.period_locks") == 2


def test_end_before_start_and_bad_level_and_ledgers_are_refused(db):
    ctl = db.connect("controller")
    with refused("22023", r"^period 2025-03-31\.\.2025-03-01 for scope 1 ends before it starts$"):
        lock(ctl, "1", "2025-03-31", "2025-03-01")
    with refused("22023", r"^level must be soft or hard, not 'medium'$"):
        lock(ctl, level="medium")
    with refused("22023", r"^level must be soft or hard, not ' soft '$"):  # quoted: the spaces show
        lock(ctl, level=" soft ")
    with refused("22023", r"ledgers"):
        lock(ctl, ledgers=[])
    lock(ctl, level="HARD", ledgers=["ar", " ar"])
    assert ctl.execute("SELECT level, ledgers FROM ledgerlock.period_locks").fetchone() == ("hard", ["ar"])


def test_unknown_lock_id_is_refused_with_ll004(db):
    admin = db.connect("admin")
    for stmt in ("SELECT ledgerlock.upgrade_lock(404)", "SELECT ledgerlock.unlock_period(404, 'why')",
                 "SELECT ledgerlock.relock(404)"):
        with refused("22023", r"there is no lock #404"):
            admin.execute(stmt)


def test_upgrade_is_one_way_and_a_downgrade_is_refused(db, app):
    ctl = db.connect("controller")
    ctl.execute("SELECT ledgerlock.upgrade_lock(1, reviewer => 'auditor Jane')")
    row = ctl.execute("SELECT level, reviewer, upgraded_by FROM ledgerlock.period_locks WHERE id = 1").fetchone()
    assert row == ("hard", "auditor Jane", "ll_controller")
    with refused("LL004", r"^lock #1 is hard and cannot be downgraded to soft$"):
        ctl.execute("SELECT ledgerlock.upgrade_lock(1, level => 'soft')")
    with refused("LL004", r"^lock #1 is already hard$"):
        ctl.execute("SELECT ledgerlock.upgrade_lock(1)")
    with refused("LL002", r"^Period 2025-03-01\.\.2025-03-31 is locked \(hard\) for scope 1: invoice id=1 "):
        app.execute("DELETE FROM invoice WHERE id = 1")


def test_reason_is_required_to_unlock_and_to_override(db, app):
    ctl = db.connect("controller")
    for reason in (None, "", "   "):
        with refused("LL007", r"^unlock_period requires a reason$"):
            ctl.execute("SELECT ledgerlock.unlock_period(1, %s)", (reason,))
        with refused("LL007", r"^begin_override requires a reason$"):
            ctl.execute("SELECT ledgerlock.begin_override(%s)", (reason,))
    assert count(ctl, "SELECT status FROM ledgerlock.period_locks WHERE id = 1") == "active"


@pytest.mark.parametrize("stmt", [
    "SELECT ledgerlock.lock_period('1', '2025-05-01', '2025-05-31')",
    "SELECT ledgerlock.lock_through('1', '2025-05-31')",
    "SELECT ledgerlock.upgrade_lock(1)",
    "SELECT ledgerlock.unlock_period(1, 'why')",
    "SELECT ledgerlock.relock(1)",
])
def test_lock_functions_need_the_controller_role(db, app, stmt):
    with refused("LL005", r"requires the ledgerlock_controller role; ll_auditor is not a member"):
        db.connect("auditor").execute(stmt)
    with refused("42501", r"permission denied for function"):  # an application may not even call them
        app.execute(stmt)


def test_controller_unlocks_soft_only_admin_unlocks_hard(db, app):
    ctl, admin = db.connect("controller"), db.connect("admin")
    hard = lock(ctl, "1", "2025-05-01", "2025-05-31", level="hard")
    with refused("LL005", r"^unlocking a hard lock requires the ledgerlock_admin role; ll_controller is not a member$"):
        ctl.execute("SELECT ledgerlock.unlock_period(%s, 'fix a typo')", (hard,))
    lives_ok(ctl, "SELECT ledgerlock.unlock_period(1, 'late supplier invoice')")  # soft: a controller may
    lives_ok(admin, "SELECT ledgerlock.unlock_period(%s, 'fix a typo')", (hard,))
    assert ctl.execute("SELECT status FROM ledgerlock.period_locks ORDER BY id").fetchall() == [("unlocked",)] * 2


def test_unlock_keeps_the_row_opens_the_window_and_relock_closes_it_again(db, app):
    ctl = db.connect("controller")
    ctl.execute("SELECT ledgerlock.unlock_period(1, 'late supplier invoice')")
    with refused("LL004", r"^lock #1 is already unlocked$"):
        ctl.execute("SELECT ledgerlock.unlock_period(1, 'again')")
    lives_ok(app, "UPDATE invoice SET amount = 110 WHERE id = 1")  # open now
    assert count(app, "SELECT amount FROM invoice WHERE id = 1") == 110
    owner = db.owner()
    assert count(owner, "SELECT ledgerlock._unlocked_window('invoice', to_jsonb(i)) FROM invoice i WHERE id = 1") == 1
    assert count(owner, "SELECT ledgerlock._locking_window('invoice', to_jsonb(i)) FROM invoice i WHERE id = 1") is None
    new_id = count(ctl, "SELECT ledgerlock.relock(1)")
    rows = ctl.execute("""SELECT id, status, from_date, to_date, level, unlock_reason, relock_of, relocked_as
                          FROM ledgerlock.period_locks ORDER BY id""").fetchall()
    assert rows == [
        (1, "relocked", dt.date(2025, 3, 1), dt.date(2025, 3, 31), "soft", "late supplier invoice", None, new_id),
        (new_id, "active", dt.date(2025, 3, 1), dt.date(2025, 3, 31), "soft", None, 1, None),
    ]
    with refused("LL002", r"^Period 2025-03-01\.\.2025-03-31 is locked \(soft\) for scope 1: invoice id=1 "):
        app.execute("UPDATE invoice SET amount = 120 WHERE id = 1")
    with refused("LL004", rf"^lock #1 was already relocked as lock #{new_id}$"):
        ctl.execute("SELECT ledgerlock.relock(1)")
    with refused("LL004", rf"^lock #{new_id} is active; only an unlocked lock can be relocked$"):
        ctl.execute("SELECT ledgerlock.relock(%s)", (new_id,))
    unlocked = "SELECT ledgerlock._unlocked_window('invoice', to_jsonb(i)) FROM invoice i WHERE id = 1"
    assert count(owner, unlocked) is None


def test_relock_is_refused_when_a_new_window_overlaps(db, app):
    ctl = db.connect("controller")
    ctl.execute("SELECT ledgerlock.unlock_period(1, 'reopen')")
    lock(ctl, "1", "2025-03-20", "2025-04-05")
    with refused("LL004", r"overlaps lock #2"):
        ctl.execute("SELECT ledgerlock.relock(1)")


def test_lock_through_moves_forward_only(db):
    ctl = db.connect("controller")
    assert count(ctl, "SELECT ledgerlock.locked_through('1')") is None
    first = count(ctl, "SELECT ledgerlock.lock_through('1', '2025-01-31')")
    second = count(ctl, "SELECT ledgerlock.lock_through('1', '2025-02-28', note => 'Feb close')")
    assert count(ctl, "SELECT ledgerlock.locked_through('1')") == dt.date(2025, 2, 28)
    rows = ctl.execute("SELECT id, to_json(from_date) #>> '{}', to_json(to_date) #>> '{}' "  # ISO whatever DateStyle
                       "FROM ledgerlock.period_locks ORDER BY id").fetchall()
    assert rows == [(first, "-infinity", "2025-01-31"), (second, "2025-02-01", "2025-02-28")]
    with refused("LL004", r"^the books of scope 1 are already locked through 2025-02-28; the lock-through date "
                          r"only moves forward$"):
        ctl.execute("SELECT ledgerlock.lock_through('1', '2025-02-10')")
    kinds = ctl.execute("SELECT kind FROM ledgerlock.lock_history ORDER BY id").fetchall()
    assert kinds == [("lock",), ("advance",)]
    lock(ctl, "1", "2025-03-01", "2025-03-31")  # a month locked with lock_period extends the span too
    assert count(ctl, "SELECT ledgerlock.locked_through('1')") == dt.date(2025, 3, 31)
    app = db.connect("app")
    assert count(app, "SELECT ledgerlock.locked_through('1')") == dt.date(2025, 3, 31)  # for every report


def test_lock_through_message_for_a_window_from_the_beginning(db):
    db.protect_invoice()
    db.connect("controller").execute("SELECT ledgerlock.lock_through('1', '2024-12-31', 'hard')")
    with refused("LL002", r"^Period up to 2024-12-31 is locked \(hard\) for scope 1: invoice id=1 cannot be "
                          r"inserted$"):
        db.connect("app").execute("INSERT INTO invoice (id, company_id, issued_on) VALUES (1, 1, '1999-05-05')")


def test_period_lock_at_lets_a_form_warn_before_saving(db, app):
    rows = app.execute("SELECT lock_id, level, message FROM ledgerlock.period_lock_at('1', '2025-03-15')").fetchall()
    assert rows == [(1, "soft", "Period 2025-03-01..2025-03-31 is locked (soft) for scope 1")]
    assert app.execute("SELECT * FROM ledgerlock.period_lock_at('1', '2025-04-15')").fetchall() == []
    assert app.execute("SELECT * FROM ledgerlock.period_lock_at('2', '2025-03-15')").fetchall() == []


# ---------------------------------------------------------------------------------------------------
# Overrides


def test_controller_override_opens_a_soft_window_for_that_transaction_only(db, app):
    ctl = db.connect("controller", autocommit=False)
    ov = count(ctl, "SELECT ledgerlock.begin_override('correct amount after auditor note')")
    assert count(ctl, "SELECT ledgerlock.current_override()") == ov
    ctl.execute("UPDATE invoice SET amount = 101 WHERE id = 1")
    ctl.execute("INSERT INTO invoice (id, company_id, issued_on) VALUES (50, 1, '2025-03-20')")
    ctl.commit()
    assert count(ctl, "SELECT ledgerlock.current_override()") is None
    with refused("LL002"):  # the next transaction of the same session
        ctl.execute("UPDATE invoice SET amount = 102 WHERE id = 1")
    ctl.rollback()
    assert count(app, "SELECT amount FROM invoice WHERE id = 1") == 101
    events = ctl.execute("""SELECT kind, lock_id, reason, db_user, details ->> 'override_id'
                            FROM ledgerlock.lock_history WHERE kind = 'override'""").fetchall()
    assert events == [("override", 1, "correct amount after auditor note", "ll_controller", str(ov))]


def test_override_is_not_for_applications_and_never_opens_hard_windows(db, app):
    with refused("LL005", r"^begin_override requires the ledgerlock_controller role; ll_app is not a member$"):
        app.execute("SELECT ledgerlock.begin_override('I am sure')")
    admin = db.connect("admin")
    hard = lock(admin, "1", "2025-05-01", "2025-05-31", level="hard")
    with admin.transaction():
        admin.execute("SELECT ledgerlock.begin_override('admin correction')")
        with refused("LL002", r"hard\) for scope 1: invoice id=60 .*"), admin.transaction():
            admin.execute("INSERT INTO invoice (id, company_id, issued_on) VALUES (60, 1, '2025-05-02')")
        admin.execute("INSERT INTO invoice (id, company_id, issued_on) VALUES (61, 1, '2025-03-02')")  # soft
    assert hard and count(app, "SELECT count(*) FROM invoice WHERE id IN (60, 61)") == 1


def test_override_cannot_be_forged_by_the_application(db, app):
    with refused("42501"):
        app.execute("INSERT INTO ledgerlock.period_override (reason) VALUES ('forged')")
    with refused("42501"):
        app.execute("SELECT ledgerlock.current_override()")
    app.execute("SET ledgerlock.override = 'on'")  # settings authorize nothing
    app.execute("SET ledgerlock.on_locked = 'error'")
    with refused("LL002"):
        app.execute("UPDATE invoice SET amount = 1 WHERE id = 1")


def test_an_override_restored_with_a_transaction_id_reused_here_opens_nothing(db, app):
    """pg_restore brings ledgerlock.period_override back with the transaction ids of the cluster it was dumped
    from (logical replication brings the publisher's), and this cluster's ids start again and reach them. A
    transaction holding such an id, run by the user who opened that override, must not take it for its own:
    it would write into a soft-locked window without begin_override, and file the old override on its audit
    events. The row is put in place as pg_restore puts it (a superuser's COPY of the old values) while the
    controller's transaction holds that very id."""
    ctl = db.connect("controller", autocommit=False)
    restore = ("INSERT INTO ledgerlock.period_override (txid, at, db_user, reason) "
               "VALUES (%s, '2024-01-15 10:00+00', 'll_controller', 'a correction of 2024, restored')")
    db.owner().execute(restore, (count(ctl, "SELECT pg_current_xact_id()"),))
    assert count(ctl, "SELECT ledgerlock.current_override()") is None
    with refused("LL002", LOCKED_MSG + r"invoice id=1 cannot be updated"):
        ctl.execute("UPDATE invoice SET amount = 101 WHERE id = 1")
    ctl.rollback()
    # the permitted neighbour: the transaction's own override, beside a restored one with its id
    db.owner().execute(restore, (count(ctl, "SELECT pg_current_xact_id()"),))
    ov = count(ctl, "SELECT ledgerlock.begin_override('correct amount after auditor note')")
    assert count(ctl, "SELECT ledgerlock.current_override()") == ov
    ctl.execute("UPDATE invoice SET amount = 101 WHERE id = 1")
    ctl.commit()
    assert count(app, "SELECT amount FROM invoice WHERE id = 1") == 101
    auditor = db.connect("auditor")
    assert auditor.execute("SELECT override_id FROM ledgerlock.audit_log WHERE operation = 'UPDATE'").fetchall() == [
        (ov,)]


def test_override_of_one_session_does_not_open_the_window_for_another(db, app):
    ctl = db.connect("controller", autocommit=False)
    ctl.execute("SELECT ledgerlock.begin_override('my own correction')")
    other = db.connect("controller")
    with refused("LL002"):
        other.execute("INSERT INTO invoice (company_id, issued_on) VALUES (1, '2025-03-03')")
    ctl.rollback()


# ---------------------------------------------------------------------------------------------------
# Skip mode for imports


def test_skip_mode_skips_locked_rows_and_records_them(db, app):
    with app.transaction():
        app.execute("SET LOCAL ledgerlock.on_locked = 'skip'")
        app.execute("SET LOCAL ledgerlock.context = 'import bank-2025-03.csv'")
        cur = app.execute("""INSERT INTO invoice (id, company_id, issued_on) VALUES
                             (70, 1, '2025-03-30'), (71, 1, '2025-04-01'), (72, 2, '2025-03-30')""")
        assert cur.rowcount == 2
    assert [r[0] for r in app.execute("SELECT id FROM invoice WHERE id >= 70 ORDER BY id")] == [71, 72]
    rows = db.connect("controller").execute(
        "SELECT table_name, row_key, lock_id, scope, db_user, context FROM ledgerlock.skipped_writes").fetchall()
    assert rows == [("public.invoice", {"id": 70}, 1, "1", "ll_app", "import bank-2025-03.csv")]
    # the setting was LOCAL: the next insert is refused again
    with refused("LL002"):
        app.execute("INSERT INTO invoice (id, company_id, issued_on) VALUES (73, 1, '2025-03-30')")


def test_outside_skip_mode_the_skip_guard_hands_a_backdated_row_to_the_check(db, app):
    """The skip trigger's WHEN tests the date only (the mode's test made every INSERT pay to prepare it): a
    backdated row in the default mode calls it, and it hands the row on. The row in the window is refused,
    its open neighbour before the mark lands, a row dated after the mark calls nothing, and nothing is skipped."""
    owner = db.owner()
    owner.execute(f"ALTER DATABASE {db.name} SET track_functions = 'pl'")
    when = trigger_def(owner, "invoice", "ll_20_period_skip")
    assert "issued_on <= '2025-03-31'::date" in when and "current_setting" not in when
    owner.execute("SELECT ledgerlock.grant_scope('ll_admin2', '1')")  # a tenant admin, limited to scope 1
    for base, role in ((10, "app"), (20, "admin2"), (30, "admin")):  # no role's write gets past the check
        tx = db.connect(role, autocommit=False)
        with refused("LL002", LOCKED_MSG + rf"invoice id={base} cannot be inserted$"):
            tx.execute("INSERT INTO invoice (id, company_id, issued_on) VALUES (%s, 1, '2025-03-31')", (base,))
        tx.rollback()
        calls = guard_calls(tx, "guard_period_row")  # pending counts may still hold the refused statement's
        lives_ok(tx, f"INSERT INTO invoice (id, company_id, issued_on) VALUES ({base + 1}, 1, '2025-02-28')")
        assert guard_calls(tx, "guard_period_row") == calls + 1, role  # the skip trigger, handing the row on
        lives_ok(tx, f"INSERT INTO invoice (id, company_id, issued_on) VALUES ({base + 2}, 1, '2025-04-01')")
        assert guard_calls(tx, "guard_period_row") == calls + 1, role  # after the mark: nothing called
        tx.commit()
    assert [r[0] for r in app.execute("SELECT id FROM invoice WHERE id >= 10 ORDER BY id")] == [
        11, 12, 21, 22, 31, 32]
    assert count(db.connect("controller"), "SELECT count(*) FROM ledgerlock.skipped_writes") == 0


def test_skip_mode_never_loosens_anything(app):
    with app.transaction():
        app.execute("SET LOCAL ledgerlock.on_locked = 'skip'")
        with refused("LL002"), app.transaction():
            app.execute("UPDATE invoice SET amount = 1 WHERE id = 1")
        with refused("LL002"), app.transaction():
            app.execute("DELETE FROM invoice WHERE id = 1")
    with refused("22023", r"ledgerlock.on_locked must be 'error' or 'skip', not 'ignore'"), app.transaction():
        app.execute("SET LOCAL ledgerlock.on_locked = 'ignore'")  # a typo: said when a row meets the guard
        app.execute("INSERT INTO invoice (company_id, issued_on) VALUES (2, '2025-03-01')")


# ---------------------------------------------------------------------------------------------------
# Scope grants


def test_scope_grants_limit_what_a_role_manages_and_sees(db, app):
    admin = db.connect("admin")
    lock(admin, "2", "2025-01-01", "2025-01-31")
    admin.execute("SELECT ledgerlock.grant_scope('ll_controller', '2')")
    ctl = db.connect("controller")
    with refused("LL005", r"^lock_period on scope 1 is not allowed: ll_controller is limited to scopes 2$"):
        lock(ctl, "1", "2025-05-01", "2025-05-31")
    with refused("LL005", r"^unlock_period on scope 1 is not allowed"):
        ctl.execute("SELECT ledgerlock.unlock_period(1, 'not mine')")
    lock(ctl, "2", "2025-05-01", "2025-05-31")  # its own scope
    assert {r[0] for r in ctl.execute("SELECT scope FROM ledgerlock.period_locks")} == {"2"}  # RLS
    assert {r[0] for r in ctl.execute("SELECT scope FROM ledgerlock.lock_history")} == {"2"}
    assert {r[0] for r in admin.execute("SELECT scope FROM ledgerlock.period_locks")} == {"1", "2"}
    with refused("LL005", r"grant_scope requires the ledgerlock_admin role"):
        ctl.execute("SELECT ledgerlock.grant_scope('ll_controller', '1')")
    # an override works only in granted scopes
    with ctl.transaction():
        ctl.execute("SELECT ledgerlock.begin_override('tenant correction')")
        ctl.execute("INSERT INTO invoice (company_id, issued_on) VALUES (2, '2025-01-05')")
        with refused("LL002"), ctl.transaction():
            ctl.execute("INSERT INTO invoice (company_id, issued_on) VALUES (1, '2025-03-05')")
    admin.execute("SELECT ledgerlock.revoke_scope('ll_controller', '2')")
    with refused("LL005", r"^lock_period on scope 1 is not allowed: ll_controller is limited to no scope$"):
        lock(ctl, "1", "2025-05-01", "2025-05-31")  # its last scope revoked: limited to none
    admin.execute("SELECT ledgerlock.lift_scope_limit('ll_controller', 'controls every company again')")
    lock(ctl, "1", "2025-05-01", "2025-05-31")  # the limit lifted on purpose: not limited


def test_a_scope_limited_admin_cannot_manage_grants(db):
    owner = db.owner()
    owner.execute("SELECT ledgerlock.grant_scope('ll_admin2', '7')")
    with refused("LL005", r"^grant_scope: ll_admin2 is itself limited to some scopes$"):
        db.connect("admin2").execute("SELECT ledgerlock.grant_scope('ll_admin2', '8')")
    db.connect("admin").execute("SELECT ledgerlock.grant_scope('ll_admin2', '8')")


# ---------------------------------------------------------------------------------------------------
# History and the lock tables themselves


def test_lock_history_records_every_event_in_order(db, app):
    ctl, admin = db.connect("controller"), db.connect("admin")
    ctl.execute("SELECT ledgerlock.upgrade_lock(1)")
    admin.execute("SELECT ledgerlock.unlock_period(1, 'restatement')")
    new_id = count(ctl, "SELECT ledgerlock.relock(1)")
    rows = ctl.execute("SELECT kind, lock_id, db_user, reason FROM ledgerlock.lock_history ORDER BY id").fetchall()
    assert rows == [("lock", 1, "ll_controller", None), ("upgrade", 1, "ll_controller", None),
                    ("unlock", 1, "ll_admin", "restatement"), ("relock", new_id, "ll_controller", None)]
    assert count(db.connect("auditor"), "SELECT count(*) FROM ledgerlock.lock_history") == 4
    with refused("42501"):
        app.execute("SELECT * FROM ledgerlock.lock_history")


def test_lock_history_and_lock_rows_are_append_only_even_for_the_owner(db, app):
    owner = db.owner()
    with refused("LL006", r"^lock_event is append-only: update is refused$"):
        owner.execute("UPDATE ledgerlock.lock_event SET reason = 'x'")
    with refused("LL006", r"^lock_event is append-only: delete is refused$"):
        owner.execute("DELETE FROM ledgerlock.lock_event")
    with refused("LL006"):
        owner.execute("TRUNCATE ledgerlock.lock_event CASCADE")
    with refused("LL006", r"^lock #1 cannot be deleted"):
        owner.execute("DELETE FROM ledgerlock.period_lock")
    with refused("LL006", r"^lock #1 cannot be rewritten"):
        owner.execute("UPDATE ledgerlock.period_lock SET to_date = '2025-03-02'")
    owner.execute("SET session_replication_role = replica")  # ENABLE ALWAYS: still refused
    with refused("LL006"):
        owner.execute("DELETE FROM ledgerlock.lock_event")
    with refused("42501"):
        db.connect("admin").execute("UPDATE ledgerlock.period_lock SET status = 'unlocked'")


def test_guards_carry_the_high_water_mark_and_a_later_lock_raises_it(db, app):
    """Rows dated after every window never call a function: the triggers' WHEN clause holds the mark."""
    def definition():
        return db.owner().execute("SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = 'invoice'::regclass "
                                  "AND tgname = 'll_20_period_insert'").fetchone()[0]
    assert "WHEN ((new.issued_on <= '2025-03-31'::date))" in definition()
    ctl = db.connect("controller")
    lock(ctl, "2", "2025-06-01", "2025-06-30")  # any scope raises the table's mark
    assert "'2025-06-30'::date" in definition()
    lock(ctl, "1", "2025-01-01", "2025-01-31")  # below the mark: the triggers stay as they are
    assert "'2025-06-30'::date" in definition()
    with refused("LL002"):
        app.execute("INSERT INTO invoice (company_id, issued_on) VALUES (1, '2025-01-15')")
    app.execute("INSERT INTO invoice (company_id, issued_on) VALUES (1, '2025-07-01')")


def test_guard_triggers_are_installed_enable_always_and_reinstalled_on_reconfigure(db, app):
    def triggers():
        return db.owner().execute("""SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'invoice'::regclass
                                     AND tgname LIKE 'll\\_20\\_%' ORDER BY 1""").fetchall()
    assert triggers() == [("ll_20_period_delete", "A"), ("ll_20_period_insert", "A"),
                          ("ll_20_period_skip", "A"), ("ll_20_period_update", "A")]
    db.protect_invoice(mutable_columns=["paid", "reconciled", "note"], weaken_reason="notes stay editable")
    app.execute("UPDATE invoice SET note = 'now mutable' WHERE id = 1")
    assert len(triggers()) == 4


def test_why_locked_names_the_window(db, app):
    rows = app.execute("SELECT rule, summary, way_back FROM ledgerlock.why_locked('invoice', '{\"id\": 1}')"
                       " WHERE rule = 'period_lock'").fetchall()
    assert rows == [("period_lock", "Period 2025-03-01..2025-03-31 is locked (soft) for scope 1 (lock #1)",
                     "a controller writes under ledgerlock.begin_override(reason), or unlocks it: "
                     "ledgerlock.unlock_period(1, reason)")]
    assert app.execute("SELECT count(*) FROM ledgerlock.why_locked('invoice', '{\"id\": 2}')"
                       " WHERE rule = 'period_lock'").fetchone()[0] == 0


def test_entered_window_and_check_window_are_the_guards_check_for_other_rules(db, app):
    """R4 checks a header's period through its lines this way: the window covering the row (its scope entered),
    then _check_window with the words of the refusal, built only when there is a window."""
    owner = db.owner()
    window = "SELECT ledgerlock._entered_window('invoice', to_jsonb(i)) FROM invoice i WHERE id = %s"
    assert count(owner, window, (1,)) is not None and count(owner, window, (2,)) is None
    with refused("LL002", LOCKED_MSG + r"invoice id=1 cannot be given new lines$"):
        owner.execute("SELECT ledgerlock._check_window('invoice', ledgerlock._entered_window('invoice', to_jsonb(i)), "
                      "to_jsonb(i), 'given new lines', true) FROM invoice i WHERE id = 1")


def test_public_read_functions_are_callable_by_the_application(app):
    through = app.execute("SELECT ledgerlock.locked_through('1'), ledgerlock.locked_through('1', 'ar'), "
                          "ledgerlock.locked_through('3')").fetchone()
    assert through == (dt.date(2025, 3, 31), dt.date(2025, 3, 31), None)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        app.execute("SELECT ledgerlock._window_covering('1', NULL, current_date, current_date)")


# ---------------------------------------------------------------------------------------------------
# The INSERT check generated per table (own date and scope columns): the same answers as guard_period_row

INSERT_CHECK = ("SELECT tgfoid::regproc::text FROM pg_trigger "
                "WHERE tgrelid = %s::regclass AND tgname = 'll_20_period_insert'")


def test_insert_check_of_a_table_with_its_own_date_and_scope_is_generated_and_refuses_with_ll002(app, db):
    fn = count(db.owner(), INSERT_CHECK, ("invoice",))
    assert fn.startswith("ledgerlock._ll20_t") and fn.endswith("_insert")
    with refused("LL002", LOCKED_MSG + r"invoice id=10 cannot be inserted$"):
        app.execute("INSERT INTO invoice (id, company_id, issued_on) VALUES (10, 1, '2025-03-01')")
    with refused("22023", "ledgerlock.on_locked must be 'error' or 'skip', not 'skipp'"):
        with app.transaction():
            app.execute("SET LOCAL ledgerlock.on_locked = 'skipp'")
            app.execute("INSERT INTO invoice (id, company_id, issued_on) VALUES (10, 1, '2025-03-01')")
    lives_ok(app, "INSERT INTO invoice (id, company_id, issued_on) VALUES (11, 1, '2025-04-01')")  # day after
    lives_ok(app, "INSERT INTO invoice (id, company_id, issued_on) VALUES (12, 2, '2025-03-01')")  # other scope
    assert count(app, "SELECT count(*) FROM invoice WHERE id >= 10") == 2


def test_a_scope_typed_by_a_domain_over_a_domain_is_read_by_the_generated_check(db):
    """A scope column typed by a domain over a domain over text prints as text does: protect accepts it, and the
    generated check reads it (the same rule, ledgerlock._scope_type_problem, decides both)."""
    owner = db.owner()
    owner.execute("CREATE DOMAIN branch_code AS text; CREATE DOMAIN branch_ref AS branch_code")
    owner.execute("CREATE TABLE ticket (id int PRIMARY KEY, branch branch_ref NOT NULL, on_day date NOT NULL)")
    owner.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON ticket TO ll_app")
    owner.execute("SELECT ledgerlock.protect('ticket', 'on_day', 'branch')")
    assert count(owner, INSERT_CHECK, ("ticket",)).startswith("ledgerlock._ll20_t")
    lock(db.connect("controller"), scope="B1")
    app = db.connect("app")
    with refused("LL002", r"^Period 2025-03-01\.\.2025-03-31 is locked \(soft\) for scope B1: ticket id=1 "
                          r"cannot be inserted$"):
        app.execute("INSERT INTO ticket VALUES (1, 'B1', '2025-03-31')")
    lives_ok(app, "INSERT INTO ticket VALUES (2, 'B2', '2025-03-31')")
    assert count(app, "SELECT count(*) FROM ticket") == 1


def test_reprotecting_with_a_scope_that_does_not_qualify_drops_the_generated_check(db):
    """A scope read from a parent row (site_id.region) is the generic guard's: the generated check goes."""
    owner = db.owner()
    owner.execute("CREATE TABLE site (id int PRIMARY KEY, region int); INSERT INTO site VALUES (1, 4)")
    owner.execute("CREATE TABLE ticket (id int PRIMARY KEY, branch int NOT NULL, site_id int REFERENCES site, "
                  "on_day date)")
    owner.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON ticket TO ll_app")
    owner.execute("SELECT ledgerlock.protect('ticket', 'on_day', 'branch')")
    fn = count(owner, INSERT_CHECK, ("ticket",))
    assert fn.startswith("ledgerlock._ll20_t")
    owner.execute("SELECT ledgerlock.protect('ticket', 'on_day', 'site_id.region', "
                  "weaken_reason => 'test: by region')")
    assert count(owner, INSERT_CHECK, ("ticket",)) == "ledgerlock.guard_period_row"
    assert count(owner, "SELECT to_regproc(%s)", (fn,)) is None
    lock(db.connect("controller"), scope="*")
    app = db.connect("app")
    with refused("LL002", r"^Period 2025-03-01\.\.2025-03-31 is locked \(soft\) for scope \*: ticket id=1 "
                          r"cannot be inserted$"):
        app.execute("INSERT INTO ticket VALUES (1, 7, NULL, '2025-03-31')")  # no site: scope '*'
    lives_ok(app, "INSERT INTO ticket VALUES (2, 7, 1, '2025-03-31')")  # site 1: region 4
    owner.execute("SELECT ledgerlock.protect('ticket', 'on_day', 'branch', weaken_reason => 'test: by branch')")
    assert count(owner, INSERT_CHECK, ("ticket",)) == fn


def test_unprotect_drops_the_generated_insert_check(db):
    owner = db.owner()
    owner.execute("CREATE TABLE ticket (id int PRIMARY KEY, branch int NOT NULL, on_day date)")
    owner.execute("SELECT ledgerlock.protect('ticket', 'on_day', 'branch')")
    fn = count(owner, INSERT_CHECK, ("ticket",))
    assert count(owner, "SELECT count(*) FROM ledgerlock.code_fingerprint WHERE fn = %s AND origin = 'generated'",
                 (fn + "()",)) == 1
    with db.connect("admin") as admin:
        admin.execute("SELECT ledgerlock.unprotect('ticket', 'test: no longer a ledger table')")
    assert count(owner, "SELECT to_regproc(%s)", (fn,)) is None
    assert count(owner, "SELECT count(*) FROM ledgerlock._orphan_generated_functions()") == 0


def test_reinstall_guards_and_unprotect_send_no_notices(db):
    """Regenerating a table's guards drops the generated functions it no longer needs; a table that never had
    them (not numbered) must not make reinstall_guards() or unprotect() print a NOTICE per missing function."""
    owner = db.owner()
    db.protect_invoice()
    notices: list[str] = []
    owner.add_notice_handler(lambda d: notices.append(d.message_primary))
    assert owner.execute("SELECT ledgerlock.reinstall_guards()").fetchone()[0] >= 1
    owner.execute("SELECT ledgerlock.unprotect('invoice', 'module retired')")
    assert notices == []
    assert owner.execute("SELECT count(*) FROM pg_proc WHERE proname LIKE '\\_ll40\\_t%'").fetchone()[0] == 0


def test_locking_a_scope_runs_no_check_of_the_scope_column_s_domain(db):
    """lock_period runs as ledgerlock's owner and reads the scope the controller typed against each scope
    column's type, to say when no table prints it; it reads it as the domain's base type, so a domain's CHECK,
    the column owner's code, never runs there on the controller's text."""
    owner = db.owner()
    owner.execute("CREATE FUNCTION branch_ok(v text) RETURNS boolean LANGUAGE plpgsql AS "
                  "$$ BEGIN RAISE EXCEPTION 'the domain check ran on %', v; END $$")
    owner.execute("CREATE DOMAIN branch_code AS text CHECK (branch_ok(VALUE))")
    owner.execute("CREATE TABLE ticket (id int PRIMARY KEY, branch branch_code, on_day date NOT NULL)")
    owner.execute("SELECT ledgerlock.protect('ticket', 'on_day', 'branch')")
    ctl = db.connect("controller")
    notices = []
    ctl.add_notice_handler(lambda d: notices.append(d.message_primary))
    [(lock_id,)] = lives_ok(ctl, "SELECT ledgerlock.lock_period('B7', '2025-03-01', '2025-03-31')")
    assert count(owner, "SELECT scope FROM ledgerlock.period_locks WHERE id = %s", (lock_id,)) == "B7"
    assert not any("covers no row" in n for n in notices), notices  # a text column prints 'B7'
