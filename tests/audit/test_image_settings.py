"""A row's image in the trail does not depend on the session that wrote it.

to_jsonb writes numbers, dates and timestamps in JSON's own form, but every other type as its text output,
and some of those depend on the session: a date range on DateStyle ('[01/03/2025,15/03/2025)' under
'SQL, DMY'), an interval on IntervalStyle ('-1 2:03:04' under sql_standard means -1 day -02:03:04, and
under the default style -1 day +02:03:04), bytea on bytea_output, money on lc_monetary. Any client may set
them. Before images were made under pinned settings, one row written by the application under
DateStyle 'SQL, DMY' made every later verification fail with 22008, for every auditor, and an interval
written under sql_standard was reported as changed though nobody changed it.
"""

from __future__ import annotations

import json

import psycopg
import pytest
from click.testing import CliRunner
from psycopg.types.json import Jsonb
from test_tampering import discrepancies, event_seq, triggers_off

from ledgerlock.cli import cli
from lltest import lives_ok, refused

# what a client may set that changes the text output of a value (lc_monetary: only C exists on test servers)
WRITER = {"DateStyle": "SQL, DMY", "IntervalStyle": "sql_standard", "bytea_output": "escape",
          "TimeZone": "Pacific/Kiritimati", "extra_float_digits": "-15", "lc_monetary": "C"}
AUDITORS = {
    "plain": {},
    "German": {"DateStyle": "German", "IntervalStyle": "iso_8601", "TimeZone": "America/St_Johns"},
    "as the writer": WRITER,
}
ROWS = [  # id, during, span, delay, blob, price, at
    (1, "[2025-03-01,2025-03-15)", "[2025-03-31 23:00:00+00,2025-04-01 05:00:00+00)", "-1 day -02:03:04",
     b"\x00\xff\\", "1000.25", "2025-03-31 23:00:00.123456+00"),
    (2, "[2025-12-24,2026-01-02]", "(,2025-01-01 00:00:00+00]", "-1 year -2 mons +3 days 04:05:06.789",
     b"", "-3.50", "2025-01-01 00:00:00+00"),
    (3, "empty", "[2025-06-01 12:00:00+00,)", "P1Y2M3DT4H5M6S", b"abc", "0", "2025-06-30 22:59:59+00"),
]


def session(db, role: str, settings: dict[str, str]) -> psycopg.Connection:
    conn = db.connect(role)
    for name, value in settings.items():
        conn.execute("SELECT set_config(%s, %s, false)", (name, value))
    return conn


@pytest.fixture
def odd(db):
    """A protected table whose columns print differently in different sessions, written by the application
    under settings that change every one of them: inserts, an update, a skipped write and its re-post."""
    owner = db.owner()
    owner.execute("""CREATE TABLE booking (
        id int PRIMARY KEY, company_id int NOT NULL DEFAULT 1, booked_on date NOT NULL,
        during daterange, span tstzrange, delay interval, blob bytea, price money, at timestamptz,
        delays interval[], spans tstzmultirange)""")
    owner.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON booking TO ll_app, ll_admin")
    owner.execute("SELECT ledgerlock.protect('booking', date_column => 'booked_on', scope_column => 'company_id')")
    app = session(db, "app", WRITER)
    for r in ROWS:
        app.execute("INSERT INTO booking (id, booked_on, during, span, delay, blob, price, at, delays, spans) "
                    "VALUES (%s, '2025-06-01', %s, %s, %s::interval, %s, %s::numeric::money, %s, "
                    "ARRAY[%s::interval], tstzmultirange(%s::tstzrange))",
                    (r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[3], r[2]))
    app.execute("UPDATE booking SET delay = delay * 2, during = daterange('2025-02-01', '2025-02-28') WHERE id = 2")
    # a write skipped in a locked window keeps its row; an admin re-posts it into an open day
    db.connect("admin").execute("SELECT ledgerlock.lock_period('1', '2025-01-01', '2025-01-31', 'hard')")
    app.execute("SET ledgerlock.on_locked = 'skip'")
    app.execute("INSERT INTO booking (id, booked_on, during, delay, price) "
                "VALUES (4, '2025-01-15', '[2025-01-10,2025-01-20)', '-2 days -01:00:00', '12.34')")
    app.execute("RESET ledgerlock.on_locked")
    assert owner.execute("SELECT count(*) FROM booking WHERE id = 4").fetchone()[0] == 0
    skip_id = owner.execute("SELECT max(id) FROM ledgerlock.skipped_writes").fetchone()[0]
    session(db, "admin", {"DateStyle": "ISO, MDY", "IntervalStyle": "postgres"}).execute(
        "SELECT ledgerlock.repost_skipped(%s, '2025-06-02')", (skip_id,))
    return db


def test_rows_written_under_other_settings_verify_under_any_settings(odd):
    assert odd.owner().execute(
        "SELECT during::text, delay::text FROM booking WHERE id = 4").fetchone() == ("[2025-01-10,2025-01-20)",
                                                                                      "-2 days -01:00:00")
    for label, settings in AUDITORS.items():
        auditor = session(odd, "auditor", settings)
        [(ok, problems)] = lives_ok(auditor, "SELECT ok, problems FROM ledgerlock.verify_audit()")
        found = auditor.execute("SELECT problem FROM ledgerlock.audit_discrepancies()").fetchall()
        assert (ok, problems, found) == (True, 0, []), label


@pytest.mark.parametrize(("column", "changed", "shown"), [
    ("during", "'[2025-03-01,2025-03-16)'", "[2025-03-01,2025-03-16)"),
    ("delay", "'-1 day -02:03:05'", "-1 days -02:03:05"),
    ("blob", r"'\x00ff5d'", r"\x00ff5d"),
    ("price", "1000.26::numeric::money", "$1,000.26"),
    ("span", "'[2025-03-31 23:00:00+00,2025-04-01 05:00:01+00)'", "2025-04-01 05:00:01+00"),
])
def test_a_changed_value_of_such_a_column_is_still_reported(odd, column, changed, shown):
    seq = event_seq(odd, "booking", {"id": 1}, "INSERT")
    with triggers_off(odd.owner(), "booking") as su:
        su.execute(f"UPDATE booking SET {column} = {changed} WHERE id = 1")
    for label, settings in AUDITORS.items():
        auditor = session(odd, "auditor", settings)
        found = auditor.execute("SELECT code, row_key, column_name, seq, problem "
                                "FROM ledgerlock.audit_discrepancies()").fetchall()
        assert [f[:4] for f in found] == [("row_changed", {"id": 1}, column, seq)], label
        assert f"booking id=1: {column} is " in found[0][4] and shown in found[0][4], (label, found[0][4])
    # the permitted neighbour: the other rows, written under the same settings, are not reported
    assert [d[2] for d in discrepancies(odd)] == [{"id": 1}]


def test_every_function_that_makes_or_reads_a_row_image_pins_the_same_output_settings(db):
    """One list of settings, carried by each function (PostgreSQL pins settings per function): a function that
    reads an image under other settings than it was made under could read another value."""
    pinned = {"extra_float_digits=1", "DateStyle=ISO, YMD", "IntervalStyle=postgres", "bytea_output=hex",
              "lc_monetary=C", "TimeZone=UTC"}
    functions = ["ledgerlock.audit_capture()", "ledgerlock.audit_capture_lock_event()",
                 "ledgerlock._audit_row_image(anyelement)", "ledgerlock.repost_skipped(bigint,date)",
                 "ledgerlock._audit_baseline(regclass,regclass,boolean)",
                 "ledgerlock._audit_row_diff(regclass,regclass,boolean)", "ledgerlock._audit_data_problems(regclass)"]
    db.protect_invoice()  # a protected table runs a capture made for it: the shared capture's settings, pinned
    functions += [r[0] for r in db.owner().execute(
        "SELECT DISTINCT t.tgfoid::regprocedure::text FROM pg_trigger t "
        "WHERE t.tgrelid = 'invoice'::regclass AND t.tgname LIKE 'll\\_90\\_%'")]
    assert len(functions) == 8, functions
    for fn in functions:
        config = set(db.owner().execute("SELECT proconfig FROM pg_proc WHERE oid = %s::regprocedure",
                                        (fn,)).fetchone()[0] or [])
        assert pinned <= config, (fn, pinned - config)


def test_a_key_that_prints_differently_is_the_same_key_for_every_auditor(db):
    """A bytea primary key, written under bytea_output escape: its events and its live row are filed under
    one key whatever the auditor's bytea_output, so nothing is taken for a row missing and another unrecorded."""
    owner = db.owner()
    owner.execute("CREATE TABLE token (id bytea PRIMARY KEY, company_id int NOT NULL DEFAULT 1, "
                  "issued_on date NOT NULL DEFAULT '2025-06-01', note text)")
    owner.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON token TO ll_app")
    owner.execute("SELECT ledgerlock.protect('token', date_column => 'issued_on', scope_column => 'company_id')")
    app = session(db, "app", WRITER)
    app.execute("INSERT INTO token (id) VALUES ('\\x00ff'::bytea), ('\\x5c01'::bytea), ('\\x'::bytea)")
    app.execute("UPDATE token SET note = 'kept' WHERE id = '\\x5c01'::bytea")
    app.execute("DELETE FROM token WHERE id = '\\x'::bytea")
    for label, settings in AUDITORS.items():
        auditor = session(db, "auditor", settings | {"bytea_output": "hex" if label == "plain" else "escape"})
        assert auditor.execute("SELECT problem FROM ledgerlock.audit_discrepancies()").fetchall() == [], label
    with triggers_off(owner, "token") as su:
        su.execute("DELETE FROM token WHERE id = '\\x5c01'::bytea")
    for label, settings in AUDITORS.items():
        auditor = session(db, "auditor", settings)
        found = auditor.execute("SELECT code, row_key FROM ledgerlock.audit_discrepancies()").fetchall()
        assert found == [("row_missing", {"id": "\\x5c01"})], label


def test_a_range_key_is_named_as_the_trail_names_it_whatever_the_writer_set(db):
    """A row is named by its key in refusals and in the lock history, and the trigger reads the key with
    to_jsonb under the client's settings: a reservation keyed by a date range was named
    'during=[10/01/2025,20/01/2025)' under DateStyle 'SQL, DMY', and its override event's key was not the key
    its audit event records, so the two could not be matched. Both now print the key as the trail does."""
    owner = db.owner()
    owner.execute("""CREATE TABLE reservation (room int, during daterange, company_id int NOT NULL DEFAULT 1,
                                               booked_on date NOT NULL, status text NOT NULL DEFAULT 'held',
                                               PRIMARY KEY (room, during));
                     GRANT SELECT, INSERT, UPDATE, DELETE ON reservation TO ll_app, ll_controller;
                     GRANT SELECT ON reservation TO ll_auditor""")
    owner.execute("SELECT ledgerlock.protect('reservation', date_column => 'booked_on', scope_column => 'company_id', "
                  "final_when => $$status = 'confirmed'$$)")
    admin = db.connect("admin")
    soft = admin.execute("SELECT ledgerlock.lock_period('1', '2025-01-01', '2025-01-31')").fetchone()[0]
    admin.execute("SELECT ledgerlock.lock_period('1', '2025-02-01', '2025-02-28', 'hard')")
    ctl = session(db, "controller", WRITER)
    with ctl.transaction():
        ctl.execute("SELECT ledgerlock.begin_override('late booking')")
        ctl.execute("INSERT INTO reservation (room, during, booked_on) VALUES (1, '[2025-01-10,2025-01-20)', "
                    "'2025-01-09')")
    key = {"room": 1, "during": "[2025-01-10,2025-01-20)"}
    assert owner.execute("SELECT row_key FROM ledgerlock.audit_log WHERE table_name = 'reservation'::regclass "
                         "AND operation = 'INSERT'").fetchall() == [(key,)]
    assert owner.execute("SELECT lock_id, details -> 'key' FROM ledgerlock.lock_history "
                         "WHERE kind = 'override'").fetchall() == [(soft, key)]
    app = session(db, "app", WRITER)
    with pytest.raises(psycopg.Error) as refused:
        app.execute("INSERT INTO reservation (room, during, booked_on) VALUES (2, '[2025-02-01,2025-02-05)', "
                    "'2025-02-03')")
    assert refused.value.sqlstate == "LL002"
    assert "reservation room=2 during=[2025-02-01,2025-02-05) cannot be inserted" in str(refused.value)
    # the permitted neighbour, under the same settings: an open day
    lives_ok(app, "INSERT INTO reservation (room, during, booked_on) VALUES (2, '[2025-03-01,2025-03-05)', "
                  "'2025-03-03')")
    # why_locked finds the write that made the row final among its audit events by its key, whatever the
    # auditor's DateStyle (it said "since an unknown time by an unknown user")
    app.execute("UPDATE reservation SET status = 'confirmed' WHERE room = 2")
    auditor = session(db, "auditor", WRITER)
    [(summary,)] = auditor.execute("SELECT summary FROM ledgerlock.why_locked('reservation', %s) WHERE rule = 'final'",
                                   (Jsonb({"room": 2, "during": "[2025-03-01,2025-03-05)"}),)).fetchall()
    assert summary.startswith("final (status = 'confirmed') since 2") and summary.endswith(" by ll_app"), summary


ZONES = ("UTC", "Pacific/Kiritimati", "America/St_Johns")  # +00:00, +14:00, -03:30 (and -02:30 in summer)


@pytest.fixture
def readings(db):
    """Meter readings keyed by (meter, at timestamptz), written by the application in three time zones."""
    owner = db.owner()
    owner.execute("""CREATE TABLE reading (meter int, at timestamptz, company_id int NOT NULL DEFAULT 1,
                                           read_on date NOT NULL DEFAULT '2025-06-01', kwh numeric(10,2),
                                           status text NOT NULL DEFAULT 'draft', PRIMARY KEY (meter, at));
                     GRANT SELECT, INSERT, UPDATE, DELETE ON reading TO ll_app, ll_controller;
                     GRANT SELECT ON reading TO ll_auditor""")
    owner.execute("SELECT ledgerlock.protect('reading', date_column => 'read_on', scope_column => 'company_id', "
                  "final_when => $$status = 'final'$$)")
    utc, east, west = (session(db, "app", {"TimeZone": z}) for z in ZONES)
    utc.execute("INSERT INTO reading (meter, at, kwh) VALUES (1, '2025-06-01 00:00+00', 10), "
                "(2, '2025-06-01 00:00+00', 20), (3, '2025-06-01 12:30:00.25+00', 30)")
    east.execute("UPDATE reading SET kwh = 11, status = 'final' WHERE meter = 1")
    west.execute("DELETE FROM reading WHERE meter = 2")
    west.execute("UPDATE reading SET kwh = 31 WHERE meter = 3")
    db.zoned = (utc, east, west)
    return db


def test_a_timestamptz_key_is_one_key_whatever_zone_the_writer_set(readings):
    """A timestamptz prints with the offset of the session's TimeZone ('2025-06-01T14:00:00+14:00'), and the
    trail files a row under its key's text: a reading written under UTC and updated under Pacific/Kiritimati
    was filed under two keys, so verification reported the untouched row as changed behind the trail ("kwh is
    11 in the table, 10 in event seq 4") and a deleted one as missing, for good; why_locked did not find the
    write that made it final. Every event of a row now carries one key, printed in UTC."""
    db = readings
    owner = db.owner()
    keys = owner.execute("SELECT row_key ->> 'meter', array_agg(DISTINCT row_key ->> 'at') "
                         "FROM ledgerlock.audit_log WHERE recorded_table = 'public.reading' AND row_key ? 'meter' "
                         "GROUP BY 1 ORDER BY 1").fetchall()
    assert keys == [("1", ["2025-06-01T00:00:00+00:00"]), ("2", ["2025-06-01T00:00:00+00:00"]),
                    ("3", ["2025-06-01T12:30:00.25+00:00"])]
    for zone in ZONES:
        auditor = session(db, "auditor", {"TimeZone": zone})
        assert auditor.execute("SELECT ok, problems FROM ledgerlock.verify_audit()").fetchone() == (True, 0), zone
        [(summary,)] = auditor.execute(
            "SELECT summary FROM ledgerlock.why_locked('reading', %s) WHERE rule = 'final'",
            (Jsonb({"meter": 1, "at": "2025-06-01 09:00+09"}),)).fetchall()
        assert summary.startswith("final (status = 'final') since 2") and summary.endswith(" by ll_app"), summary
    # `audit log --key` finds a row by any spelling of its instant
    utc_key = {"meter": 1, "at": "2025-06-01T00:00:00+00:00"}
    for role in ("auditor", "controller"):
        assert logged(db, role, "reading", {"meter": 1, "at": "2025-06-01 09:00+09"}) == [
            ("INSERT", utc_key), ("UPDATE", utc_key)], role
    # a refusal names the row as the trail does, under the writer's zone
    utc, east, west = db.zoned
    with refused("LL001", r"^reading meter=1 at=2025-06-01T00:00:00\+00:00 is final"):
        west.execute("UPDATE reading SET kwh = 12 WHERE meter = 1")
    lives_ok(east, "UPDATE reading SET kwh = 32 WHERE meter = 3")  # the permitted neighbour: a draft
    # an override's lock event names the row by the key its audit events carry
    soft = db.connect("admin").execute("SELECT ledgerlock.lock_period('1', '2025-06-01', '2025-06-30')").fetchone()[0]
    ctl = session(db, "controller", {"TimeZone": "Pacific/Kiritimati"})
    with ctl.transaction():
        ctl.execute("SELECT ledgerlock.begin_override('meter replaced')")
        ctl.execute("INSERT INTO reading (meter, at, kwh) VALUES (4, '2025-06-02 00:00+00', 40)")
    key = {"meter": 4, "at": "2025-06-02T00:00:00+00:00"}
    assert owner.execute("SELECT lock_id, details -> 'key' FROM ledgerlock.lock_history "
                         "WHERE kind = 'override'").fetchall() == [(soft, key)]
    assert owner.execute("SELECT row_key FROM ledgerlock.audit_log WHERE recorded_table = 'public.reading' "
                         "AND row_key ->> 'meter' = '4'").fetchall() == [(key,)]
    # a change behind the trail is still reported, by the key in UTC, to an auditor in any zone
    with triggers_off(owner, "reading") as su:
        su.execute("UPDATE reading SET kwh = 99 WHERE meter = 3")
    for zone in ZONES:
        found = session(db, "auditor", {"TimeZone": zone}).execute(
            "SELECT code, row_key, column_name FROM ledgerlock.audit_discrepancies()").fetchall()
        assert found == [("row_changed", {"meter": 3, "at": "2025-06-01T12:30:00.25+00:00"}, "kwh")], zone


def logged(db, role: str, table: str, key: dict) -> list[tuple[str, dict]]:
    """`ledgerlock audit log --table T --key K --json` as role: (operation, key) of each event."""
    res = CliRunner().invoke(cli, ["--dsn", db.conninfo(role), "audit", "log", "--table", table,
                                   "--key", json.dumps(key), "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return [(e["operation"], e["row_key"]) for e in json.loads(res.stdout)]


def test_events_recorded_in_the_writers_zone_before_the_pin_still_verify(readings):
    """Events written before the capture printed timestamps in UTC carry their writer's zone in their key; the
    trail cannot be rewritten, so verification reads such a key in UTC. Made here as the capture made them:
    the table's capture without its TimeZone pin, then put back as it was."""
    db = readings
    owner = db.owner()
    [capture] = owner.execute("SELECT DISTINCT tgfoid::regprocedure::text FROM pg_trigger "
                              "WHERE tgrelid = 'reading'::regclass AND tgname LIKE 'll\\_90\\_%'").fetchone()
    utc, east, west = db.zoned
    with triggers_off(owner) as su:
        su.execute(f"ALTER FUNCTION {capture} RESET TimeZone")
        east.execute("INSERT INTO reading (meter, at, kwh) VALUES (5, '2025-06-03 00:00+00', 50), "
                     "(6, '2025-06-03 00:00+00', 60)")
        west.execute("UPDATE reading SET kwh = 51 WHERE meter = 5")
        west.execute("DELETE FROM reading WHERE meter = 6")
        su.execute(f"ALTER FUNCTION {capture} SET TimeZone = 'UTC'")
    assert sorted(r[0] for r in owner.execute(
        "SELECT DISTINCT row_key ->> 'at' FROM ledgerlock.audit_log WHERE row_key ->> 'meter' IN ('5', '6')")) == [
        "2025-06-02T21:30:00-02:30", "2025-06-03T14:00:00+14:00"]
    utc.execute("UPDATE reading SET kwh = 52 WHERE meter = 5")  # and one in UTC, after the pin
    assert [op for op, _ in logged(db, "auditor", "reading", {"meter": 5, "at": "2025-06-03 00:00+00"})] == [
        "INSERT", "UPDATE", "UPDATE"]  # the first two recorded under +14:00 and -02:30
    auditor = session(db, "auditor", {"TimeZone": "America/St_Johns"})
    assert auditor.execute("SELECT ok, problems FROM ledgerlock.verify_audit()").fetchone() == (True, 0)
    with triggers_off(owner, "reading") as su:
        su.execute("UPDATE reading SET kwh = 98 WHERE meter = 5")
        su.execute("INSERT INTO reading (meter, at, kwh) VALUES (6, '2025-06-03 00:00+00', 60)")
    found = auditor.execute("SELECT code, row_key, column_name FROM ledgerlock.audit_discrepancies() "
                            "ORDER BY 2").fetchall()
    assert found == [("row_changed", {"meter": 5, "at": "2025-06-03T00:00:00+00:00"}, "kwh"),
                     ("row_resurrected", {"meter": 6, "at": "2025-06-03T00:00:00+00:00"}, None)]


def test_a_tstzrange_key_is_one_key_before_and_after_the_pin(db):
    """A tstzrange prints its bounds in the session's zone too: a booking keyed by (room, during tstzrange) is
    filed in UTC now, and its events written with the writers' zones before still verify."""
    owner = db.owner()
    owner.execute("""CREATE TABLE slot (room int, during tstzrange, company_id int NOT NULL DEFAULT 1,
                                        booked_on date NOT NULL DEFAULT '2025-06-01', note text,
                                        PRIMARY KEY (room, during));
                     GRANT SELECT, INSERT, UPDATE, DELETE ON slot TO ll_app""")
    owner.execute("SELECT ledgerlock.protect('slot', date_column => 'booked_on', scope_column => 'company_id')")
    utc, east, west = (session(db, "app", {"TimeZone": z}) for z in ZONES)
    [capture] = owner.execute("SELECT DISTINCT tgfoid::regprocedure::text FROM pg_trigger "
                              "WHERE tgrelid = 'slot'::regclass AND tgname LIKE 'll\\_90\\_%'").fetchone()
    span = "[2025-06-01 08:00+00,2025-06-01 10:00+00)"
    with triggers_off(owner) as su:  # as the capture of an older release wrote them
        su.execute(f"ALTER FUNCTION {capture} RESET TimeZone")
        east.execute("INSERT INTO slot (room, during) VALUES (1, %s), (2, %s)", (span, span))
        west.execute("UPDATE slot SET note = 'moved in' WHERE room = 1")
        east.execute("UPDATE slot SET during = '[2025-06-01 10:00+00,2025-06-01 12:00+00)' WHERE room = 2")
        su.execute(f"ALTER FUNCTION {capture} SET TimeZone = 'UTC'")
    utc.execute("UPDATE slot SET note = 'confirmed' WHERE room = 1")
    east.execute("DELETE FROM slot WHERE room = 2")  # the key it was moved to, recorded in another zone
    keys = owner.execute("SELECT operation, row_key ->> 'during' FROM ledgerlock.audit_log "
                         "WHERE recorded_table = 'public.slot' AND row_key ? 'room' ORDER BY seq").fetchall()
    assert keys == [("INSERT", '["2025-06-01 22:00:00+14","2025-06-02 00:00:00+14")'),
                    ("INSERT", '["2025-06-01 22:00:00+14","2025-06-02 00:00:00+14")'),
                    ("UPDATE", '["2025-06-01 05:30:00-02:30","2025-06-01 07:30:00-02:30")'),
                    ("UPDATE", '["2025-06-02 00:00:00+14","2025-06-02 02:00:00+14")'),
                    ("UPDATE", '["2025-06-01 08:00:00+00","2025-06-01 10:00:00+00")'),
                    ("DELETE", '["2025-06-01 10:00:00+00","2025-06-01 12:00:00+00")')]
    auditor = session(db, "auditor", {"TimeZone": "Pacific/Kiritimati"})
    assert auditor.execute("SELECT ok, problems FROM ledgerlock.verify_audit()").fetchone() == (True, 0)
    with triggers_off(owner, "slot") as su:
        su.execute("UPDATE slot SET note = 'forged' WHERE room = 1")
    assert auditor.execute("SELECT code, row_key, column_name FROM ledgerlock.audit_discrepancies()").fetchall() == [
        ("row_changed", {"room": 1, "during": '["2025-06-01 08:00:00+00","2025-06-01 10:00:00+00")'}, "note")]


QUOTED = {"quote_all_identifiers": "on"}  # any client may set it: 'invoice'::regclass::text then reads "invoice"


def test_a_client_that_quotes_every_name_leaves_the_books_as_any_other_client_would(db):
    """quote_all_identifiers makes PostgreSQL print every name quoted, in regclass output, format('%I') and the
    definitions it deparses. The capture recorded the tables of one application session's events as
    '"public"."invoice"': verification filed them under a table that does not exist and reported every row that
    session wrote as written behind the trail, for good (the trail cannot be corrected), and the counter as
    ahead of the numbers issued. An auditor or an admin working under it saw renamed tables and code drift.
    Every function that records or compares a name now pins the setting."""
    owner = db.owner()
    admin = session(db, "admin", QUOTED)
    db.protect_invoice(admin, number_column="number", number_format="INV-{YYYY}-{SEQ:5}")
    soft = admin.execute("SELECT ledgerlock.lock_period('1', '2026-01-01', '2026-01-31')").fetchone()[0]
    app = session(db, "app", QUOTED)
    app.execute("INSERT INTO invoice (id, company_id, issued_on, status, amount) VALUES "
                "(1, 1, '2026-02-01', 'approved', 10), (2, 1, '2026-02-02', 'draft', 20)")
    app.execute("UPDATE invoice SET status = 'approved' WHERE id = 2")
    app.execute("SET ledgerlock.on_locked = 'skip'")
    app.execute("INSERT INTO invoice (id, company_id, issued_on, amount) VALUES (3, 1, '2026-01-15', 30)")
    app.execute("RESET ledgerlock.on_locked")
    # a tenant admin (scope 1 only) under the same setting: its lock events name what they name; scope 2 is not its
    admin.execute("SELECT ledgerlock.grant_scope('ll_admin2', '1')")
    tenant = session(db, "admin2", QUOTED)
    march = tenant.execute("SELECT ledgerlock.lock_period('1', '2026-03-01', '2026-03-31', 'hard')").fetchone()[0]
    tenant.execute("SELECT ledgerlock.unlock_period(%s, 'a late supplier invoice')", (march,))
    with refused("LL005"):
        tenant.execute("SELECT ledgerlock.lock_period('2', '2026-03-01', '2026-03-31')")
    ctl = session(db, "controller", QUOTED)
    with ctl.transaction():
        ctl.execute("SELECT ledgerlock.begin_override('late fee')")
        ctl.execute("INSERT INTO invoice (id, company_id, issued_on, amount) VALUES (4, 1, '2026-01-20', 40)")
    assert owner.execute("SELECT DISTINCT recorded_table FROM ledgerlock.audit_log "
                         "WHERE table_oid = 'invoice'::regclass").fetchall() == [("public.invoice",)]
    assert owner.execute("SELECT kind, lock_id, details ->> 'table' FROM ledgerlock.lock_event "
                         "WHERE kind IN ('skip', 'override') ORDER BY id").fetchall() == [
        ("skip", soft, "public.invoice"), ("override", soft, "public.invoice")]
    assert owner.execute("SELECT id, number FROM invoice WHERE status = 'approved' ORDER BY id").fetchall() == [
        (1, "INV-2026-00001"), (2, "INV-2026-00002")]
    for settings in ({}, QUOTED):
        auditor = session(db, "auditor", settings)
        assert auditor.execute("SELECT ok, problems FROM ledgerlock.verify_audit()").fetchone() == (True, 0), settings
        assert auditor.execute("SELECT check_name, object FROM ledgerlock.doctor_findings() "
                               "WHERE severity = 'critical' AND check_name NOT IN ('superuser login', 'table owner')"
                               ).fetchall() == [], settings
    # the permitted neighbour of the pinned setting: the client's own reads print names as it asked
    assert app.execute("SELECT 'invoice'::regclass::text").fetchone() == ('"invoice"',)


def test_every_function_that_runs_with_its_owners_rights_prints_names_unquoted(db):
    """The rule behind the test above, over the installed code, generated functions included: every SECURITY
    DEFINER function of ledgerlock, and every function that makes or reads a row image, pins
    quote_all_identifiers off."""
    db.protect_invoice(number_column="number", number_format="INV-{YYYY}-{SEQ:5}")  # generated functions too
    rows = db.owner().execute(
        "SELECT p.oid::regprocedure::text, p.prosecdef, coalesce(p.proconfig, '{}') FROM pg_proc p "
        "WHERE p.pronamespace = 'ledgerlock'::regnamespace "
        "  AND (p.prosecdef OR 'DateStyle=ISO, YMD' = ANY (p.proconfig)) ORDER BY 1").fetchall()
    assert len([sig for sig, definer, _ in rows if definer and sig.startswith("ledgerlock._ll")]) >= 5
    assert [sig for sig, _, config in rows if "quote_all_identifiers=off" not in config] == []


def test_the_manager_reads_the_same_findings_whatever_quoting_the_connection_asks_for(db):
    """The manager compares what it reads (the code check, doctor's findings) with what its package ships; a DBA's
    PGOPTIONS or a role default may turn quote_all_identifiers on for its session. The manager pins it off."""
    import json

    from click.testing import CliRunner

    from ledgerlock.cli import cli

    db.protect_invoice(number_column="number", number_format="INV-{YYYY}-{SEQ:5}")
    db.connect("app").execute("INSERT INTO invoice (id, company_id, issued_on, status) "
                              "VALUES (1, 1, '2026-02-01', 'approved')")

    def run(*args, quoted: bool):
        dsn = db.conninfo("auditor") + (" options='-c quote_all_identifiers=on'" if quoted else "")
        res = CliRunner().invoke(cli, ["--dsn", dsn, *args, "--json"])
        return res.exit_code, json.loads(res.stdout)

    for args in (["doctor"], ["audit", "verify"]):
        assert run(*args, quoted=True) == run(*args, quoted=False), args
    code, verified = run("audit", "verify", quoted=True)
    assert (code, verified["ok"], verified["code_drift"]) == (0, True, [])
    # a guard replaced by hand: one finding, named as the package names it, however the session quotes
    db.owner().execute("CREATE OR REPLACE FUNCTION ledgerlock.guard_final_row() RETURNS trigger LANGUAGE plpgsql "
                       "SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$ BEGIN RETURN NEW; END $$")
    for args in (["doctor"], ["audit", "verify"]):
        assert run(*args, quoted=True) == run(*args, quoted=False), args
    code, verified = run("audit", "verify", quoted=True)
    assert (code, verified["code_drift"]) == (
        3, ["ledgerlock.guard_final_row() differs from the shipped definition"]), verified["code_drift"]
