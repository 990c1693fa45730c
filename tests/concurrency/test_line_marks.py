"""R4 lines and R3's scope marks: a line under a header dated after its scope's mark neither enters the scope's
gate nor probes the windows (the line trigger carries the header table's marks, as R3's own triggers do), and a
lock that raises the mark still waits for the line table's open writers and is enforced through the lines once
committed (real connections, explicit steps, waits with timeouts).

"Enters the gate" is observed on the server, as in test_scope_marks.py: a write that looks a header's period up
holds ROW EXCLUSIVE on its scope's gate (ledgerlock_gate.scope_gate_NN) to the end of its transaction.
"""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest
from psycopg import sql

from lltest import (
    HOSTILE_OPTIONS,
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

# headers of scope 1: after its mark (May), before its window (January), in its window (March)
MAY, JANUARY, MARCH, JUNE = 1, 2, 3, 4


@pytest.fixture
def setup(db):
    """invoice protected, its lines under protect_lines; invoices 1-4 of scope 1 dated 2025-05-15, 2025-01-15,
    2025-03-10 and 2025-06-20; then scope 1 locked February-March 2025 and scope 2 June 2025."""
    db.protect_invoice()
    db.owner().execute("SELECT ledgerlock.protect_lines('invoice_line', 'invoice')")
    db.connect("app").execute("INSERT INTO invoice (id, company_id, issued_on) VALUES (1, 1, '2025-05-15'), "
                              "(2, 1, '2025-01-15'), (3, 1, '2025-03-10'), (4, 1, '2025-06-20')")
    controller = db.connect("controller")
    controller.execute(LOCK, ("1", "2025-02-01", "2025-03-31"))
    controller.execute(LOCK, ("2", "2025-06-01", "2025-06-30"))
    yield db
    end_other_sessions(db)


def add_line(conn: psycopg.Connection, invoice_id: int) -> None:
    conn.execute("INSERT INTO invoice_line (invoice_id, description) VALUES (%s, 'x')", (invoice_id,))


def line_marks(conn: psycopg.Connection) -> tuple[str, dict]:
    """The header table's scope marks as the line trigger carries them (its first two arguments)."""
    args = conn.execute("SELECT ledgerlock._trigger_args(tgargs) FROM pg_trigger WHERE tgrelid = "
                        "'invoice_line'::regclass AND tgname LIKE 'll\\_30\\_r%\\_lines'").fetchone()[0]
    return args[0], json.loads(args[1]) if args[1] else None


def test_the_line_trigger_carries_the_header_table_s_scope_marks(setup):
    assert line_marks(setup.owner()) == ("-infinity", {"1": "2025-03-31", "2": "2025-06-30"})


@pytest.mark.parametrize("settings", ["normal", "hostile"])
def test_a_line_under_a_header_past_its_scope_mark_enters_no_gate(setup, settings):
    """Scope 2's June lock raises the table's mark to June; scope 1's own mark stays March: a line under the May
    header takes no gate, one under the January header is looked up (and passes), one under the March header
    is refused; the same under a client's hostile settings (DateStyle, TimeZone, search_path, ...)."""
    db = setup
    observer = db.owner()
    app = db.connect("app", autocommit=False, options=HOSTILE_OPTIONS if settings == "hostile" else "")
    add_line(app, MAY)
    assert gates_held(observer, app.info.backend_pid) == []
    app.commit()
    add_line(app, JANUARY)  # the neighbour: on or before scope 1's mark, the header's period is looked up
    assert gates_held(observer, app.info.backend_pid) == [gate_of(observer, "1")]
    app.commit()
    with refused("LL002", r"^Period 2025-02-01\.\.2025-03-31 is locked \(hard\) for scope 1: invoice id=3 cannot be "
                          r"changed through its lines \(invoice_line id=\d+ cannot be inserted\)"):
        add_line(app, MARCH)
    app.rollback()
    assert app.execute("SELECT invoice_id FROM invoice_line ORDER BY id").fetchall() == [(MAY,), (JANUARY,)]


def test_a_lock_raising_the_header_s_scope_mark_waits_for_an_unchecked_line_writer(setup):
    """A adds a line under the May header (no gate) and stays open; B locks scope 1's April-May: B waits for A
    (re-creating the line trigger waits for the line table's writers), then a line under that header is
    refused, and one under the June header (after the new mark) passes."""
    db = setup
    observer = db.owner()
    writer = db.connect("app", autocommit=False)
    add_line(writer, MAY)
    assert gates_held(observer, writer.info.backend_pid) == []
    locker = db.connect("controller")
    step = Background(locker, LOCK, ("1", "2025-04-01", "2025-05-31"))
    step.wait_until_blocked(observer)
    assert not step.done
    writer.commit()
    assert step.join().error is None, step.error
    assert line_marks(observer)[1]["1"] == "2025-05-31"
    app = db.connect("app")
    with refused("LL002", r"^Period 2025-04-01\.\.2025-05-31 is locked \(hard\) for scope 1: invoice id=1 cannot be "
                          r"changed through its lines"):
        add_line(app, MAY)
    with refused("LL002", r"invoice_line id=\d+ cannot be deleted"):
        app.execute("DELETE FROM invoice_line WHERE invoice_id = %s", (MAY,))
    add_line(app, JUNE)
    assert mark_problems(observer) == []


@pytest.mark.parametrize("isolation", ["REPEATABLE READ", "SERIALIZABLE"])
def test_an_older_snapshot_cannot_add_a_line_under_a_header_whose_window_raised_its_mark(setup, isolation):
    """A's snapshot predates B's lock of scope 1's April-May; after B commits, A's line under the May header is
    looked up (the new trigger) and fails (40001 from the fence, or LL002); a line under the June header passes."""
    db = setup
    writer = db.connect("app", autocommit=False)
    writer.execute(f"SET TRANSACTION ISOLATION LEVEL {isolation}")
    writer.execute("SELECT count(*) FROM invoice_line").fetchone()  # A's snapshot
    db.connect("controller").execute(LOCK, ("1", "2025-04-01", "2025-05-31"))
    with pytest.raises(psycopg.Error) as info:
        add_line(writer, MAY)
    assert sqlstate(info.value) in ("40001", "LL002"), info.value
    writer.rollback()
    add_line(writer, JUNE)
    writer.commit()


def test_a_lock_that_does_not_raise_the_mark_leaves_the_line_trigger_alone(setup):
    """A window inside scope 1's marks (January 2025, before its March mark) changes no trigger: the line
    trigger's definition is the same object, and its lines are looked up under the gate and refused."""
    db = setup
    observer = db.owner()
    before = observer.execute("SELECT oid, xmin::text FROM pg_trigger WHERE tgrelid = 'invoice_line'::regclass "
                              "AND tgname LIKE 'll\\_30\\_r%\\_lines'").fetchone()
    db.connect("controller").execute(LOCK, ("1", "2025-01-01", "2025-01-31"))
    assert observer.execute("SELECT oid, xmin::text FROM pg_trigger WHERE tgrelid = 'invoice_line'::regclass "
                            "AND tgname LIKE 'll\\_30\\_r%\\_lines'").fetchone() == before
    with refused("LL002", r"^Period 2025-01-01\.\.2025-01-31 is locked \(hard\) for scope 1: invoice id=2"):
        add_line(db.connect("app"), JANUARY)


def test_doctor_reports_a_line_trigger_whose_mark_is_below_its_header_s_windows(setup):
    """The control: scope 1 dropped from the line trigger's marks by hand (lines under its headers would pass
    unchecked) is what _period_mark_problems and doctor see; reinstall_guards fixes it."""
    db = setup
    owner = db.owner()
    edit_trigger_by_hand(owner, "invoice_line", "ll\\_30\\_r%\\_lines", '"1": "2025-03-31", ', "")
    assert mark_problems(owner) == [("invoice_line", "-infinity", "2025-03-31")]
    # what the finding means: the line check no longer looks scope 1's headers up, so a line lands in its window
    add_line(db.connect("app"), MARCH)
    auditor = db.connect("auditor")
    assert auditor.execute("SELECT severity, object FROM ledgerlock.doctor_findings() "
                           "WHERE check_name = 'period mark'").fetchall() == [("critical", "public.invoice_line")]
    db.connect("admin").execute("SELECT ledgerlock.reinstall_guards()")
    assert mark_problems(owner) == []
    with refused("LL002", r"for scope 1: invoice id=3"):
        add_line(db.connect("app"), MARCH)


def test_lines_of_an_unprotected_header_carry_no_marks_until_the_header_is_protected(db):
    """Lines protected under a header table that is not protected itself: no period, so the trigger carries
    empty marks and a line takes no gate. Protecting the header re-creates the line trigger with the header's
    marks, and a line under a header in a locked window is refused from then on."""
    db.owner().execute("SELECT ledgerlock.protect_lines('invoice_line', 'invoice')")
    db.connect("controller").execute(LOCK, ("1", "2025-02-01", "2025-03-31"))
    observer = db.owner()
    assert line_marks(observer) == ("", None)
    app = db.connect("app", autocommit=False)
    app.execute("INSERT INTO invoice (id, company_id, issued_on) VALUES (1, 1, '2025-03-10'), (2, 1, '2025-05-10')")
    add_line(app, 1)
    assert gates_held(observer, app.info.backend_pid) == []
    app.commit()
    db.protect_invoice()
    assert line_marks(observer) == ("-infinity", {"1": "2025-03-31"})
    with refused("LL002", r"for scope 1: invoice id=1 cannot be changed through its lines"):
        add_line(app, 1)
    app.rollback()
    add_line(app, 2)
    assert gates_held(observer, app.info.backend_pid) == []
    app.commit()


@pytest.mark.parametrize("first", ["lock", "protect_lines"])
def test_protect_lines_and_a_lock_racing_leave_the_line_trigger_s_mark_high(db, first):
    """A holds one of the two uncommitted (scope 1 locked February-April 2026, or the lines rule made); B, the
    other, waits for it (the mark clock, taken before any table lock: no deadlock either way). Once both have
    committed, the line trigger gives scope 1 the lock's mark, a line under the April header is refused and one
    under the May header passes."""
    db.protect_invoice()
    db.connect("app").execute("INSERT INTO invoice (id, company_id, issued_on) VALUES (1, 1, '2026-04-15'), "
                              "(2, 1, '2026-05-15')")
    statements = {"lock": LOCK % ("'1'", "'2026-02-01'", "'2026-04-30'"),
                  "protect_lines": "SELECT ledgerlock.protect_lines('invoice_line', 'invoice')"}
    second = "protect_lines" if first == "lock" else "lock"
    holder = db.connect("admin", autocommit=False)
    holder.execute(statements[first])
    step = Background(db.connect("admin"), statements[second])
    step.wait_until_blocked(db.owner())
    assert not step.done
    holder.commit()
    assert step.join().error is None, step.error
    owner = db.owner()
    assert line_marks(owner)[1] == {"1": "2026-04-30"}
    assert mark_problems(owner) == []
    app = db.connect("app")
    with refused("LL002", r"^Period 2026-02-01\.\.2026-04-30 is locked \(hard\) for scope 1: invoice id=1"):
        add_line(app, 1)
    add_line(app, 2)
    end_other_sessions(db)


def test_a_tenant_admin_s_lock_of_its_own_scope_raises_the_line_trigger_s_mark(setup):
    """A ledgerlock admin limited to scope 1 (grant_scope) locks scope 1's April-May: its lock re-creates the
    line trigger (on a table it does not own) with scope 1's new mark, and a line under the May header is
    refused; scope 2's mark stays as it was."""
    db = setup
    name = f"ll_tenant_{uuid.uuid4().hex[:8]}"
    owner = db.owner()
    owner.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE ledgerlock_admin").format(sql.Identifier(name)))
    db.connect("admin").execute("SELECT ledgerlock.grant_scope(%s::regrole, '1')", (name,))
    with psycopg.connect(db.cluster.server.conninfo(dbname=db.name, user=name), autocommit=True) as tenant:
        tenant.execute(LOCK, ("1", "2025-04-01", "2025-05-31"))
    assert line_marks(owner)[1] == {"1": "2025-05-31", "2": "2025-06-30"}
    assert mark_problems(owner) == []
    with refused("LL002", r"^Period 2025-04-01\.\.2025-05-31 is locked \(hard\) for scope 1: invoice id=1"):
        add_line(db.connect("app"), MAY)
    add_line(db.connect("app"), JUNE)
    owner.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
    owner.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def test_a_line_trigger_without_marks_looks_every_header_up(setup):
    """A line trigger whose marks are empty ('' and '': installed before its header had a date, the line table
    protected itself so that protecting the header did not re-create it) looks every header up: the March
    header is refused, the May one passes, and no empty mark is ever read as a date."""
    db = setup
    owner = db.owner()
    edit_trigger_by_hand(owner, "invoice_line", "ll\\_30\\_r%\\_lines", "('-infinity', '{\"1\": \"2025-03-31\", "
                         "\"2\": \"2025-06-30\"}'", "('', ''")
    assert line_marks(owner) == ("", None)
    app = db.connect("app", autocommit=False)
    with refused("LL002", r"for scope 1: invoice id=3 cannot be changed through its lines"):
        add_line(app, MARCH)
    app.rollback()
    add_line(app, MAY)
    assert gates_held(owner, app.info.backend_pid) == [gate_of(owner, "1")]
    app.commit()
