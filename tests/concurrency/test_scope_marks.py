"""R3's high-water mark per scope: a lock in one scope does not make another scope's backdated writes enter the
scope gate and probe the windows, and a lock that raises a scope's mark still waits for that scope's open
writers and is enforced once committed (real connections, explicit steps, waits with timeouts).

"Enters the gate" is observed on the server: a write that checks its row holds ROW EXCLUSIVE on its scope's
gate (ledgerlock.scope_gate_NN) to the end of its transaction; a write its scope's mark lets through holds
none.
"""

from __future__ import annotations

import json

import psycopg
import pytest

from lltest import (
    Background,
    edit_trigger_by_hand,
    end_other_sessions,
    gate_of,
    gates_held,
    mark_problems,
    refused,
    sqlstate,
)

LOCK = "SELECT ledgerlock.lock_period(%s, %s::date, %s::date, 'hard')"


@pytest.fixture
def setup(db):
    """invoice protected; scope 1 locked through March 2025 (from February), scope 2 through June 2025."""
    db.protect_invoice()
    controller = db.connect("controller")
    controller.execute(LOCK, ("1", "2025-02-01", "2025-03-31"))
    controller.execute(LOCK, ("2", "2025-06-01", "2025-06-30"))
    yield db
    end_other_sessions(db)


def insert(conn: psycopg.Connection, scope: int, day: str) -> None:
    conn.execute("INSERT INTO invoice (company_id, issued_on, amount) VALUES (%s, %s, 10)", (scope, day))


def test_a_later_lock_in_another_scope_does_not_make_a_backdated_write_probe(setup):
    """Scope 2's June lock raises the table's mark to June; scope 1's own mark stays March, so a scope-1 row
    dated May (after March) takes no gate, while a scope-1 row dated January (before March: checked) does."""
    db = setup
    observer = db.owner()
    app = db.connect("app", autocommit=False)
    insert(app, 1, "2025-05-15")
    assert gates_held(observer, app.info.backend_pid) == []
    app.commit()
    insert(app, 1, "2025-01-15")  # the neighbour: on or before scope 1's mark, the check runs
    assert gates_held(observer, app.info.backend_pid) == [gate_of(observer, "1")]
    app.commit()
    with refused("LL002", r"locked \(hard\) for scope 2"):
        db.connect("app").execute("INSERT INTO invoice (company_id, issued_on) VALUES (2, '2025-06-15')")


def test_an_update_moving_a_row_into_a_scope_past_its_mark_checks_the_side_that_needs_it(setup):
    """Old side scope 1 in May (after its mark: no probe), new side scope 2 in June (locked): refused; the
    same move to scope 2 in May (before scope 2's window, after scope 1's mark) passes."""
    db = setup
    app = db.connect("app")
    row_id = app.execute("INSERT INTO invoice (company_id, issued_on) VALUES (1, '2025-05-15') RETURNING id"
                         ).fetchone()[0]
    with refused("LL002", r"locked \(hard\) for scope 2"):
        app.execute("UPDATE invoice SET company_id = 2, issued_on = '2025-06-10' WHERE id = %s", (row_id,))
    app.execute("UPDATE invoice SET company_id = 2, issued_on = '2025-05-20' WHERE id = %s", (row_id,))
    assert app.execute("SELECT company_id, issued_on::text FROM invoice WHERE id = %s", (row_id,)).fetchone() \
        == (2, "2025-05-20")


def test_a_lock_raising_a_scope_mark_waits_for_that_scope_s_unchecked_writer(setup):
    """A writes scope 1 in May (no gate: after scope 1's mark) and stays open; B locks scope 1's April-May:
    B waits for A (re-installing the guards waits for the table's writers), then a May write is refused."""
    db = setup
    observer = db.owner()
    writer = db.connect("app", autocommit=False)
    insert(writer, 1, "2025-05-15")
    assert gates_held(observer, writer.info.backend_pid) == []
    locker = db.connect("controller")
    locker.execute("SET lock_timeout = '20s'")
    step = Background(locker, LOCK, ("1", "2025-04-01", "2025-05-31"))
    step.wait_until_blocked(observer)
    assert not step.done
    writer.commit()
    assert step.join().error is None, step.error
    with refused("LL002", r"Period 2025-04-01\.\.2025-05-31 is locked \(hard\) for scope 1"):
        insert(db.connect("app"), 1, "2025-05-16")
    insert(db.connect("app"), 1, "2025-06-16")  # the neighbour: after scope 1's new mark
    assert mark_problems(observer) == []


@pytest.mark.parametrize("isolation", ["REPEATABLE READ", "SERIALIZABLE"])
def test_an_older_snapshot_cannot_write_into_a_window_that_raised_its_scope_mark(setup, isolation):
    """A's snapshot predates B's lock of scope 1's May; after B commits, A's May write is checked (the new
    guards) and fails (40001 from the fence, or LL002); a fresh transaction's write after the window passes."""
    db = setup
    writer = db.connect("app", autocommit=False)
    writer.execute(f"SET TRANSACTION ISOLATION LEVEL {isolation}")
    writer.execute("SELECT count(*) FROM invoice").fetchone()  # A's snapshot
    db.connect("controller").execute(LOCK, ("1", "2025-04-01", "2025-05-31"))
    with pytest.raises(psycopg.Error) as info:
        insert(writer, 1, "2025-05-15")
    assert sqlstate(info.value) in ("40001", "LL002"), info.value
    writer.rollback()
    insert(writer, 1, "2025-06-15")
    writer.commit()


def test_scopes_past_the_listed_ones_share_the_rest_mark_and_stay_checked(db):
    """70 scopes with windows ending on 70 different days: the 64 latest are listed with their own marks, the
    others share the rest mark (the 65th latest). Every scope's window is still enforced, and doctor is clean."""
    db.protect_invoice()
    db.owner().execute("INSERT INTO company (id, name) SELECT g, 'company ' || g FROM generate_series(3, 70) g")
    controller = db.connect("controller")
    for k in range(1, 71):
        controller.execute("SELECT ledgerlock.lock_period(%s, date '2024-01-01', date '2024-01-01' + %s, 'hard')",
                           (str(k), k))
    owner = db.owner()
    args = owner.execute("SELECT ledgerlock._trigger_args(tgargs) FROM pg_trigger "
                         "WHERE tgrelid = 'invoice'::regclass AND tgname = 'll_20_period_insert'").fetchone()[0]
    assert args[4] == "2024-01-07" and len(json.loads(args[5])) == 64
    app = db.connect("app")
    for scope, last_locked in ((1, "2024-01-02"), (6, "2024-01-07"), (70, "2024-03-11")):
        with refused("LL002", rf"for scope {scope}:"):
            app.execute("INSERT INTO invoice (company_id, issued_on) VALUES (%s, %s)", (scope, last_locked))
    app.execute("INSERT INTO invoice (company_id, issued_on) VALUES (1, '2024-01-03')")  # after scope 1's window
    assert mark_problems(owner) == []


def test_doctor_reports_a_scope_whose_installed_mark_is_below_its_windows(setup):
    """The control: scope 1 dropped from the listed marks by hand (its rows would pass unchecked) is what
    _period_mark_problems and doctor see; reinstall_guards fixes it."""
    db = setup
    owner = db.owner()
    assert mark_problems(owner) == []
    edit_trigger_by_hand(owner, "invoice", "ll_20_period_insert", '"1": "2025-03-31", ', "")
    assert mark_problems(owner) == [("invoice", "-infinity", "2025-03-31")]
    # what the finding means: the guards no longer check scope 1's rows, so one lands in its window
    db.connect("app").execute("INSERT INTO invoice (company_id, issued_on) VALUES (1, '2025-03-14')")
    auditor = db.connect("auditor")
    assert auditor.execute("SELECT severity, object FROM ledgerlock.doctor_findings() "
                           "WHERE check_name = 'period mark'").fetchall() == [("critical", "public.invoice")]
    db.connect("admin").execute("SELECT ledgerlock.reinstall_guards()")
    assert mark_problems(owner) == []
    with refused("LL002", r"for scope 1"):
        db.connect("app").execute("INSERT INTO invoice (company_id, issued_on) VALUES (1, '2025-03-15')")


def test_marks_written_under_a_hostile_datestyle_are_read_back_alike(db):
    """The controller locks with DateStyle 'SQL, DMY' (its marks are written as ISO dates); the application
    writes with 'German, DMY': the window is enforced and the neighbour passes."""
    db.protect_invoice()
    controller = db.connect("controller")
    controller.execute("SET DateStyle = 'SQL, DMY'")
    controller.execute(LOCK, ("1", "2025-02-01", "2025-03-31"))
    controller.execute(LOCK, ("2", "2025-06-01", "2025-06-30"))
    app = db.connect("app")
    app.execute("SET DateStyle = 'German, DMY'")
    with refused("LL002", r"for scope 1"):
        app.execute("INSERT INTO invoice (company_id, issued_on) VALUES (1, date '2025-03-15')")
    app.execute("INSERT INTO invoice (company_id, issued_on) VALUES (1, date '2025-05-15')")
    assert mark_problems(db.owner()) == []
