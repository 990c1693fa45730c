"""The bypass battery against R2 (numbering), R3 (period locks) and R5 (audit): what the application might
set, call or write to get a locked row changed, a number forged or a change unrecorded."""

from __future__ import annotations

import pytest
from psycopg import sql

from lltest import lives_ok, refused

LOCKED_ROW = "SELECT * FROM invoice WHERE id = 7"


@pytest.fixture
def locked(db):
    """invoice id=7 (draft, 2020-06-01, company 1) inside a hard lock of company 1 for 2020."""
    db.protect_invoice()
    app = db.connect("app")
    app.execute("INSERT INTO invoice (id, company_id, issued_on, amount) VALUES (7, 1, '2020-06-01', 70)")
    db.owner().execute("SELECT ledgerlock.lock_period('1', '2020-01-01', '2020-12-31', 'hard')")
    return app


@pytest.mark.parametrize("on_locked", ["error", "skip"])
@pytest.mark.parametrize("stmt", [
    "UPDATE invoice SET amount = 0 WHERE id = 7",
    "UPDATE invoice SET issued_on = '2021-01-05' WHERE id = 7",  # moving it out of the window
    "DELETE FROM invoice WHERE id = 7",
    "INSERT INTO invoice (id, company_id, issued_on) VALUES (7, 1, '2020-06-01') "
    "ON CONFLICT (id) DO UPDATE SET note = 'x'",
    "WITH d AS (DELETE FROM invoice WHERE id = 7 RETURNING 1) SELECT count(*) FROM d",
])
def test_locked_period_rows_cannot_be_changed_whatever_the_settings(locked, unchanged, stmt, on_locked):
    unchanged(LOCKED_ROW)
    locked.execute(sql.SQL("SET ledgerlock.on_locked = {}").format(sql.Literal(on_locked)))
    locked.execute("SET ledgerlock.reason = 'year-end fix'; SET ledgerlock.actor = 'cfo'")
    if on_locked == "skip" and stmt.startswith("INSERT"):
        locked.execute(stmt)  # skip mode drops the proposed row before ON CONFLICT: nothing is updated
        return
    with refused("LL002", r"^Period 2020-01-01\.\.2020-12-31 is locked \(hard\) for scope 1"):
        locked.execute(stmt)


def test_the_application_cannot_open_an_override_or_unlock(locked, unchanged):
    unchanged(LOCKED_ROW)
    with locked.transaction():
        with refused("LL005"), locked.transaction():
            locked.execute("SELECT ledgerlock.begin_override('closing adjustments')")
        with refused("LL002"):
            locked.execute("UPDATE invoice SET amount = 0 WHERE id = 7")
    for stmt in ("SELECT ledgerlock.unlock_period(1, 'because')",
                 "SELECT ledgerlock.lock_period('1', '2019-01-01', '2019-12-31')",
                 "UPDATE ledgerlock.period_lock SET status = 'unlocked'"):
        with refused("42501"):
            locked.execute(stmt)
    locked.execute("UPDATE invoice SET amount = 1 WHERE id = 7 AND false")  # a no-op is fine


def test_copy_into_a_locked_period_is_refused_or_skipped_never_landed(locked, unchanged):
    unchanged("SELECT count(*) FROM invoice")
    with refused("LL002"), locked.cursor().copy("COPY invoice (id, company_id, issued_on) FROM STDIN") as cp:
        cp.write_row((8, 1, "2020-03-01"))
    locked.execute("SET ledgerlock.on_locked = 'skip'")
    with locked.cursor().copy("COPY invoice (id, company_id, issued_on) FROM STDIN") as cp:
        cp.write_row((9, 1, "2020-03-02"))  # skipped, and recorded as skipped
    locked.execute("RESET ledgerlock.on_locked")
    with locked.cursor().copy("COPY invoice (id, company_id, issued_on) FROM STDIN") as cp:
        cp.write_row((10, 2, "2020-03-02"))  # the neighbour: company 2 is not locked
    locked.execute("DELETE FROM invoice WHERE id = 10")


def test_a_cascade_into_a_locked_period_is_refused(db, unchanged):
    owner = db.owner()
    owner.execute("""
        CREATE TABLE folder (id int PRIMARY KEY);
        CREATE TABLE doc (id int PRIMARY KEY, folder_id int REFERENCES folder ON DELETE CASCADE,
                          doc_date date NOT NULL);
        GRANT SELECT, INSERT, UPDATE, DELETE ON folder, doc TO ll_app;
        INSERT INTO folder VALUES (1), (2);
        INSERT INTO doc VALUES (1, 1, '2020-05-01'), (2, 2, '2021-05-01');
        SELECT ledgerlock.protect('doc', 'doc_date');
        SELECT ledgerlock.lock_period('*', '2020-01-01', '2020-12-31', 'hard');
    """)
    app = db.connect("app")
    unchanged("SELECT * FROM doc WHERE id = 1")
    with refused("LL002", r"is locked \(hard\) for scope \*"):
        app.execute("DELETE FROM folder WHERE id = 1")
    lives_ok(app, "DELETE FROM folder WHERE id = 2")  # the neighbour, outside the window
    assert app.execute("SELECT count(*) FROM doc WHERE folder_id = 2").fetchone()[0] == 0


@pytest.fixture
def invoices(db):
    db.protect_invoice()
    app = db.connect("app")
    app.execute("INSERT INTO invoice (id, company_id, amount) VALUES (1, 1, 100), (2, 1, 200)")
    return app


def test_settings_cannot_forge_who_wrote(db, invoices):
    if db.owner().execute("SELECT to_regclass('ledgerlock.audit_log')").fetchone()[0] is None:
        pytest.fail("the audit rule is not installed")
    invoices.execute("SET ledgerlock.actor = 'alice'; SET ledgerlock.reason = 'approved by the CFO'")
    invoices.execute("SET application_name = 'll_admin'")
    invoices.execute("UPDATE invoice SET note = 'forged?' WHERE id = 2")
    row = db.owner().execute(
        "SELECT db_user, actor, reason FROM ledgerlock.audit_log WHERE operation = 'UPDATE' "
        "AND new_row ->> 'note' = 'forged?'").fetchone()
    assert row == ("ll_app", "alice", "approved by the CFO")  # actor and reason are the app's say; db_user is not
    with refused("42501"):
        invoices.execute("SELECT * FROM ledgerlock.audit_log")


def test_a_forged_final_number_is_replaced_by_the_series_number(db):
    db.protect_invoice(number_column="number", number_format="INV-{YYYY}-{SEQ:5}")
    app = db.connect("app")
    app.execute("INSERT INTO invoice (id, company_id, issued_on) VALUES (1, 1, '2026-02-01')")
    app.execute("UPDATE invoice SET status = 'approved', number = 'INV-2026-00099' WHERE id = 1")
    assert app.execute("SELECT number FROM invoice WHERE id = 1").fetchone()[0] == "INV-2026-00001"
    with refused("LL001"):
        app.execute("UPDATE invoice SET number = 'INV-2026-00099' WHERE id = 1")
    assert db.owner().execute("SELECT count(*) FROM ledgerlock.number_gaps()").fetchone()[0] == 0
