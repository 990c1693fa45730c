"""R2: gapless final numbering — formats, temporary numbers, assignment, freezing, number_gaps."""

from __future__ import annotations

import pytest

from lltest import lives_ok, refused

FORMAT = "INV-{YYYY}-{SEQ:5}"


def protect(db, conn=None, **overrides):
    args = {"number_column": "number", "number_format": FORMAT} | overrides
    db.protect_invoice(conn, **args)


def numbers(conn, where="true"):
    return [r[0] for r in conn.execute(f"SELECT number FROM invoice WHERE {where} ORDER BY id")]


def gaps(db, table=None):
    return db.owner().execute("SELECT * FROM ledgerlock.number_gaps(%s)", (table,)).fetchall()


@pytest.fixture
def app(db):
    protect(db)
    return db.connect("app")


# -- assignment -------------------------------------------------------------------------------------------

def test_draft_gets_a_temporary_number_and_its_final_number_when_it_becomes_final(app):
    app.execute("INSERT INTO invoice (id, company_id, issued_on) VALUES (1, 1, '2026-03-02')")
    (draft,) = numbers(app)
    assert draft.startswith("DRAFT-")
    app.execute("UPDATE invoice SET status = 'approved' WHERE id = 1")
    assert numbers(app) == ["INV-2026-00001"]


def test_rows_inserted_already_final_are_numbered_and_a_client_number_is_replaced(app):
    app.execute("""INSERT INTO invoice (id, company_id, number, status, issued_on)
                   VALUES (1, 1, 'INV-2026-99999', 'paid', '2026-01-10'), (2, 1, NULL, 'approved', '2026-01-11')""")
    assert numbers(app) == ["INV-2026-00001", "INV-2026-00002"]


def test_a_client_number_on_a_draft_is_kept_and_replaced_at_finalization(app):
    app.execute("INSERT INTO invoice (id, company_id, number, issued_on) VALUES (1, 1, 'PRO-7', '2026-01-10')")
    assert numbers(app) == ["PRO-7"]
    app.execute("UPDATE invoice SET status = 'approved', number = 'INV-2026-00042' WHERE id = 1")
    assert numbers(app) == ["INV-2026-00001"]


def test_a_rolled_back_finalization_gives_its_number_back(db, app):
    app.execute("INSERT INTO invoice (id, company_id, issued_on) VALUES (1, 1, '2026-01-10'), (2, 1, '2026-01-11')")
    with app.transaction(force_rollback=True):
        app.execute("UPDATE invoice SET status = 'approved' WHERE id = 1")
        assert numbers(app, "id = 1") == ["INV-2026-00001"]
    app.execute("UPDATE invoice SET status = 'approved' WHERE id = 2")
    assert numbers(app, "id = 2") == ["INV-2026-00001"]
    assert gaps(db) == []


def test_a_savepoint_rolled_back_gives_its_numbers_back(db, app):
    app.execute("INSERT INTO invoice (id, company_id, issued_on) "
                "SELECT g, 1, '2026-01-10' FROM generate_series(1, 6) g")
    with app.transaction():
        app.execute("UPDATE invoice SET status = 'approved' WHERE id IN (1, 2)")
        with app.transaction(force_rollback=True):  # a savepoint
            app.execute("UPDATE invoice SET status = 'approved' WHERE id IN (3, 4)")
        app.execute("UPDATE invoice SET status = 'approved' WHERE id = 5")
    assert numbers(app, "status = 'approved'") == ["INV-2026-00001", "INV-2026-00002", "INV-2026-00003"]
    assert gaps(db) == []


def test_numbers_follow_the_row_date_not_the_clock_and_restart_every_year(app):
    app.execute("""INSERT INTO invoice (id, company_id, issued_on, status) VALUES
                   (1, 1, '2025-12-31', 'approved'), (2, 1, '2026-01-01', 'approved'),
                   (3, 1, '2025-12-30', 'approved'), (4, 1, '2026-02-01', 'approved')""")
    assert numbers(app) == ["INV-2025-00001", "INV-2026-00001", "INV-2025-00002", "INV-2026-00002"]


def test_scope_token_gives_each_company_its_own_series(db):
    protect(db, number_format="{SCOPE}/{YY}{MM}-{SEQ:3}")
    app = db.connect("app")
    app.execute("""INSERT INTO invoice (id, company_id, issued_on, status) VALUES
                   (1, 1, '2026-03-05', 'approved'), (2, 2, '2026-03-06', 'approved'), (3, 1, '2026-03-07', 'paid')""")
    assert numbers(app) == ["1/2603-001", "2/2603-001", "1/2603-002"]


def test_padding_is_a_minimum_width(db):
    protect(db, number_format="N{SEQ:2}")
    app = db.connect("app")
    app.execute("INSERT INTO invoice (company_id, status) SELECT 1, 'approved' FROM generate_series(1, 101)")
    got = numbers(app)
    assert got[:2] == ["N01", "N02"] and got[98:] == ["N99", "N100", "N101"]


def test_one_statement_numbers_many_rows_in_row_order_without_gaps(db, app):
    app.execute("INSERT INTO invoice (id, company_id, issued_on) "
                "SELECT g, 1, '2026-05-01' FROM generate_series(1, 5000) g")
    app.execute("UPDATE invoice SET status = 'approved'")
    got = sorted(int(n.rsplit("-", 1)[1]) for n in numbers(app))
    assert got == list(range(1, 5001))
    assert app.execute("SELECT count(DISTINCT number) FROM invoice").fetchone()[0] == 5000
    assert db.owner().execute(
        "SELECT series, last_value FROM ledgerlock.number_series"
    ).fetchall() == [("INV-2026-{SEQ}", 5000)]
    assert gaps(db) == []


def test_one_statement_over_several_series_closes_each_range_exactly(db, app):
    app.execute("""INSERT INTO invoice (company_id, issued_on, status)
                   SELECT 1, make_date(2020 + g % 3, 1, 1), 'approved' FROM generate_series(1, 300) g""")
    assert db.owner().execute(
        "SELECT series, last_value FROM ledgerlock.number_series ORDER BY 1"
    ).fetchall() == [("INV-2020-{SEQ}", 100), ("INV-2021-{SEQ}", 100), ("INV-2022-{SEQ}", 100)]
    assert gaps(db) == []


def test_copy_of_final_rows_numbers_them(db, app):
    with app.cursor().copy("COPY invoice (id, company_id, status, issued_on, number) FROM STDIN") as copy:
        copy.write_row((1, 1, "approved", "2026-04-01", "X"))
        copy.write_row((2, 1, "draft", "2026-04-01", None))
        copy.write_row((3, 1, "paid", "2026-04-01", "Y"))
    got = numbers(app)
    assert got[0] == "INV-2026-00001" and got[1].startswith("DRAFT-") and got[2] == "INV-2026-00002"
    assert gaps(db) == []


def test_drafts_and_unrelated_updates_take_no_number(db, app):
    app.execute("INSERT INTO invoice (id, company_id, status) VALUES (1, 1, 'approved'), (2, 1, 'draft')")
    app.execute("UPDATE invoice SET paid = true WHERE id = 1")  # mutable column of a final row
    app.execute("UPDATE invoice SET amount = 3 WHERE id = 2")   # a draft
    assert db.owner().execute("SELECT sum(last_value) FROM ledgerlock.number_series").fetchone()[0] == 1


# -- freezing ---------------------------------------------------------------------------------------------

def test_final_number_is_frozen_like_any_other_column(app):
    app.execute("INSERT INTO invoice (id, company_id, status, issued_on) VALUES (1, 1, 'approved', '2026-01-02')")
    with refused("LL001", r"^invoice id=1 \(INV-2026-00001\) is final and cannot be updated"):
        app.execute("UPDATE invoice SET number = 'INV-2026-00002' WHERE id = 1")
    lives_ok(app, "UPDATE invoice SET paid = true WHERE id = 1")  # the permitted neighbour
    assert app.execute("SELECT number, paid FROM invoice WHERE id = 1").fetchone() == ("INV-2026-00001", True)
    assert numbers(app) == ["INV-2026-00001"]


def test_final_row_with_missing_scope_is_refused_draft_is_not(db):
    owner = db.owner()
    owner.execute("ALTER TABLE invoice ALTER company_id DROP NOT NULL")
    protect(db, number_format="{SCOPE}-{SEQ}")
    app = db.connect("app")
    with refused("LL009", r"^invoice id=1 cannot get a final number: its company_id is empty"):
        app.execute("INSERT INTO invoice (id, company_id, status) VALUES (1, NULL, 'approved')")
    app.execute("INSERT INTO invoice (id, company_id, status) VALUES (1, NULL, 'draft')")
    app.execute("UPDATE invoice SET company_id = 1, status = 'approved' WHERE id = 1")
    assert numbers(app) == ["1-1"]


# -- formats ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("fmt", "match"),
    [
        ("INV-{YYYY}", r"must contain \{SEQ\} exactly once \(it has it 0 times\)"),
        ("INV-{SEQ}-{SEQ}", r"exactly once \(it has it 2 times\)"),
        ("INV-{YEAR}-{SEQ}", r"unknown token \{YEAR\}"),
        ("INV-{seq}", r"unknown token \{seq\}"),
        ("INV-{SEQ}}", r"brace that opens no token"),
        ("{SCOPE}{SEQ}", r"puts \{SCOPE\} right next to \{SEQ\}"),
        ("{SEQ:0}", r"pads to between 1 and 18 digits"),
        ("", r"number_format must not be empty"),
    ],
)
def test_bad_format_is_refused_at_protect_time_and_nothing_is_installed(db, fmt, match):
    owner = db.owner()
    with refused("22023", match):
        protect(db, owner, number_format=fmt)
    assert owner.execute("SELECT count(*) FROM ledgerlock.protected_table").fetchone()[0] == 0
    assert owner.execute(
        "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'invoice'::regclass AND NOT tgisinternal").fetchone()[0] == 0


def test_numbering_needs_a_final_when_and_a_text_number_column(db):
    owner = db.owner()
    with refused("22023", r"needs final_when"):
        protect(db, owner, final_when=None)
    with refused("42804", r"number_column: public\.invoice\.amount is of type numeric"):
        protect(db, owner, number_column="amount")
    protect(db, owner)  # the permitted neighbour


def test_set_number_format_affects_only_future_numbers(db, app):
    admin = db.connect("admin")
    app.execute("INSERT INTO invoice (id, company_id, status, issued_on) VALUES (1, 1, 'approved', '2026-01-02')")
    admin.execute("SELECT ledgerlock.set_number_format('invoice', 'INV-{YYYY}-{SEQ:7}')")  # same series
    app.execute("INSERT INTO invoice (id, company_id, status, issued_on) VALUES (2, 1, 'approved', '2026-01-02')")
    admin.execute("SELECT ledgerlock.set_number_format('invoice', 'F{YY}/{SEQ}', 'TMP-{SEQ:4}')")  # a new series
    app.execute("INSERT INTO invoice (id, company_id, status, issued_on) VALUES (3, 1, 'approved', '2026-01-02')")
    app.execute("INSERT INTO invoice (id, company_id, issued_on) VALUES (4, 1, '2026-01-02')")
    got = numbers(app)
    assert got[:3] == ["INV-2026-00001", "INV-2026-0000002", "F26/1"]
    assert got[3].startswith("TMP-")
    history = db.owner().execute(
        "SELECT number_format, draft_format FROM ledgerlock.number_format_history ORDER BY id").fetchall()
    assert history == [(FORMAT, "DRAFT-{SEQ}"), ("INV-{YYYY}-{SEQ:7}", "DRAFT-{SEQ}"), ("F{YY}/{SEQ}", "TMP-{SEQ:4}")]
    assert gaps(db) == []


def test_set_number_format_is_for_admins_and_validates(db, app):
    with refused("LL005", r"set_number_format requires the ledgerlock_admin role"):
        db.connect("controller").execute("SELECT ledgerlock.set_number_format('invoice', 'X-{SEQ}')")
    with refused("42501"):
        app.execute("SELECT ledgerlock.set_number_format('invoice', 'X-{SEQ}')")
    admin = db.connect("admin")
    with refused("22023", r"unknown token \{DD\}"):
        admin.execute("SELECT ledgerlock.set_number_format('invoice', 'X-{DD}-{SEQ}')")
    with refused("22023", r"draft_format 'INV-\{YYYY\}-\{SEQ\}' would give temporary numbers that look like final"):
        admin.execute("SELECT ledgerlock.set_number_format('invoice', %s, 'INV-{YYYY}-{SEQ}')", (FORMAT,))
    assert db.owner().execute("SELECT number_format FROM ledgerlock.protected_table").fetchone()[0] == FORMAT
    admin.execute("SELECT ledgerlock.set_number_format('invoice', 'X-{SEQ}')")


# -- number_gaps ------------------------------------------------------------------------------------------

def test_number_gaps_reports_gaps_duplicates_and_numbers_beyond_the_counter(db, app):
    app.execute("INSERT INTO invoice (id, company_id, issued_on) "
                "SELECT g, 1, '2026-01-05' FROM generate_series(1, 6) g")
    app.execute("UPDATE invoice SET status = 'approved'")
    assert gaps(db) == []
    owner = db.owner()  # a superuser tampering under the guards: what number_gaps is there to reveal
    owner.execute("ALTER TABLE invoice DISABLE TRIGGER USER")
    owner.execute("DELETE FROM invoice WHERE id IN (2, 3, 6)")
    owner.execute("INSERT INTO invoice (id, company_id, status, issued_on, number) VALUES "
                  "(7, 1, 'approved', '2026-01-05', 'INV-2026-00004'), (8, 1, 'paid', '2026-01-05', 'INV-2026-00009')")
    owner.execute("ALTER TABLE invoice ENABLE TRIGGER USER")
    rows = [(str(r[0]), r[1], r[2], r[3], r[4]) for r in gaps(db, "invoice")]
    assert rows == [
        ("invoice", "INV-2026-{SEQ}", "gap", 2, 3),
        ("invoice", "INV-2026-{SEQ}", "duplicate", 4, 4),
        ("invoice", "INV-2026-{SEQ}", "gap", 6, 8),
        ("invoice", "INV-2026-{SEQ}", "ahead", 9, 9),
    ]
    detail = {r[2]: r[5] for r in gaps(db)}
    assert '{"id": 4}' in detail["duplicate"] and '{"id": 7}' in detail["duplicate"]


def test_number_gaps_sees_a_counter_ahead_of_the_rows(db, app):
    app.execute("INSERT INTO invoice (company_id, status, issued_on) VALUES (1, 'approved', '2026-01-05')")
    db.owner().execute("UPDATE ledgerlock.number_counter SET last_value = 3")
    assert [(r[2], r[3], r[4]) for r in gaps(db)] == [("gap", 2, 3)]


def test_number_gaps_is_for_auditors_controllers_and_admins(db, app):
    for role in ("auditor", "controller", "admin"):
        assert db.connect(role).execute("SELECT * FROM ledgerlock.number_gaps()").fetchall() == []
    with refused("42501"):
        app.execute("SELECT * FROM ledgerlock.number_gaps()")
    with refused("LL005"):
        db.connect("auditor").execute("SELECT ledgerlock.set_number_format('invoice', 'X-{SEQ}')")


def test_application_cannot_touch_counters(db, app):
    app.execute("INSERT INTO invoice (company_id, status) VALUES (1, 'approved')")
    for stmt in ("UPDATE ledgerlock.number_counter SET last_value = 0",
                 "SELECT * FROM ledgerlock.number_series",
                 "SELECT nextval('ledgerlock.draft_number')",
                 "SELECT ledgerlock._take_counter_out_of_order('invoice', 'INV-2026-', '', '', '')"):
        with refused("42501"):
            app.execute(stmt)
    assert db.connect("auditor").execute("SELECT last_value FROM ledgerlock.number_series").fetchone()[0] == 1


@pytest.mark.parametrize(("column_type", "month"), [("timestamptz", "2025-03"), ("timestamp", "2025-04"),
                                                    ("date", "2025-04")])
def test_the_number_takes_its_period_from_the_day_the_period_guard_reads(db, column_type, month):
    """A timestamptz is read as its UTC date by every rule, numbering too: 2025-04-01 05:00 in Kiritimati
    (UTC+14) is still March in UTC, so the March series numbers it, whatever the client's TimeZone; a
    timestamp and a date are read as written."""
    owner = db.owner()
    owner.execute(f"CREATE TABLE booking (id int PRIMARY KEY, company_id int NOT NULL, number text, "
                  f"status text NOT NULL DEFAULT 'draft', booked_at {column_type} NOT NULL)")
    owner.execute("GRANT SELECT, INSERT, UPDATE ON booking TO ll_app")
    owner.execute("SELECT ledgerlock.protect('booking', date_column => 'booked_at', scope_column => 'company_id', "
                  "final_when => $$status = 'approved'$$, number_column => 'number', "
                  "number_format => 'B-{YYYY}-{MM}-{SEQ:3}')")
    app = db.connect("app")
    app.execute("SET TimeZone = 'Pacific/Kiritimati'")
    app.execute("INSERT INTO booking (id, company_id, booked_at) VALUES (1, 1, '2025-04-01 05:00')")
    app.execute("UPDATE booking SET status = 'approved' WHERE id = 1")
    assert app.execute("SELECT number FROM booking").fetchone()[0] == f"B-{month}-001"
    # the same row read by the period guard: locking the month the number names refuses its change
    db.connect("admin").execute("SELECT ledgerlock.lock_period('1', d, (d + interval '1 month - 1 day')::date) "
                                "FROM (SELECT %s::date AS d) m", (f"{month}-01",))
    with refused("LL002", r"is locked"):
        app.execute("INSERT INTO booking (id, company_id, booked_at) VALUES (2, 1, '2025-04-01 05:00')")
    lives_ok(app, "INSERT INTO booking (id, company_id, booked_at) VALUES (3, 1, '2025-06-01 05:00')")
