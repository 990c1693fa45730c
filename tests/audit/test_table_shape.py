"""A protected table's columns change after its rows were recorded. A column added with a default (the DDL
guard lets it through: PostgreSQL writes no row) used to make every older row read as changed behind the
trail, for good; a column dropped or renamed without the guard went unnoticed, its recorded values gone.
Verification now reports each once per column, and an admin records an added column's values (audited),
which never records a row changed behind the trail."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ledgerlock.cli import cli
from lltest import Background, lives_ok, refused


def _books(db):
    db.protect_invoice()
    app = db.connect("app")
    app.execute("INSERT INTO invoice (id, company_id, amount, note) VALUES (1, 1, 10, 'n'), (2, 1, 20, NULL), "
                "(3, 2, 30, NULL)")
    app.execute("UPDATE invoice SET status = 'approved' WHERE id = 1")
    return app


def _found(db):
    return db.connect("auditor").execute(
        "SELECT code, table_name, column_name, problem FROM ledgerlock.audit_discrepancies()").fetchall()


def _behind_the_trail(db, *statements):
    """Run statements as a superuser with the table's triggers off, then put each back ENABLE ALWAYS."""
    su = db.owner()  # the harness owner is a superuser, as the attacker here is
    names = [r[0] for r in su.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = 'invoice'::regclass "
                                      "AND NOT tgisinternal").fetchall()]
    su.execute("ALTER TABLE invoice DISABLE TRIGGER USER")
    for statement in statements:
        su.execute(statement)
    for name in names:
        su.execute(f'ALTER TABLE invoice ENABLE ALWAYS TRIGGER "{name}"')


def _verify_exit(db) -> int:
    return CliRunner().invoke(cli, ["--dsn", db.conninfo("auditor"), "audit", "verify"]).exit_code


def test_a_column_added_with_a_default_is_one_problem_until_an_admin_records_its_values(db):
    app = _books(db)
    db.owner().execute("ALTER TABLE invoice ADD COLUMN channel text NOT NULL DEFAULT 'web'")
    found = _found(db)
    assert [(c, t, col) for c, t, col, _ in found] == [("column_unrecorded", "public.invoice", "channel")]
    # (invoice 1's latest event is its approval; 2's and 3's are their insert)
    assert found[0][3].startswith("public.invoice.channel holds values the trail never recorded in 3 row(s) "
                                  "(the oldest: invoice id=2, web there, not in event seq ")
    assert _verify_exit(db) != 0
    # a row written since has the column in its event
    app.execute("UPDATE invoice SET amount = 21 WHERE id = 2")
    assert "in 2 row(s)" in _found(db)[0][3]
    # only an admin of every scope records them, with a reason
    for role in ("app", "controller", "auditor"):
        with refused("42501"):
            db.connect(role).execute("SELECT ledgerlock.record_added_columns('invoice', 'added')")
    admin = db.connect("admin")
    admin.execute("SELECT ledgerlock.grant_scope('ll_admin2', '1')")
    with refused("LL005", "is limited to scopes 1"):
        db.connect("admin2").execute("SELECT ledgerlock.record_added_columns('invoice', 'added')")
    with refused("LL007", "^record_added_columns requires a reason$"):
        admin.execute("SELECT ledgerlock.record_added_columns('invoice', '  ')")
    with refused("22023", "is not protected"):
        admin.execute("SELECT ledgerlock.record_added_columns('customer', 'added')")
    assert lives_ok(admin, "SELECT ledgerlock.record_added_columns('invoice', 'channel added, web for all')") == [(2,)]
    assert _found(db) == []
    assert _verify_exit(db) == 0
    events = db.connect("auditor").execute(
        "SELECT row_key, operation, reason, details, new_row ->> 'channel' FROM ledgerlock.audit_log "
        "WHERE table_name = 'public.invoice'::regclass AND operation = 'BASELINE' ORDER BY seq").fetchall()
    assert events == [({"id": 1}, "BASELINE", "channel added, web for all", {"recorded_columns": ["channel"]}, "web"),
                      ({"id": 3}, "BASELINE", "channel added, web for all", {"recorded_columns": ["channel"]}, "web")]
    # nothing left to record
    assert lives_ok(admin, "SELECT ledgerlock.record_added_columns('invoice', 'again')") == [(0,)]


def test_recording_added_columns_never_records_a_row_changed_behind_the_trail(db):
    _books(db)
    db.owner().execute("ALTER TABLE invoice ADD COLUMN channel text NOT NULL DEFAULT 'web'")
    _behind_the_trail(db, "UPDATE invoice SET amount = 1 WHERE id = 1",
                      "UPDATE invoice SET channel = 'forged' WHERE id = 3")  # a value of the new column, old row
    found = _found(db)
    assert [(c, col) for c, _, col, _ in found] == [("row_changed", "amount"), ("column_unrecorded", "channel")]
    assert "in 3 row(s)" in found[1][3]
    # the admin certifies the added column's values as they are: the changed row stays reported
    assert lives_ok(db.connect("admin"), "SELECT ledgerlock.record_added_columns('invoice', 'channel')") == [(2,)]
    found = _found(db)
    assert [(c, col) for c, _, col, _ in found] == [("row_changed", "amount"), ("column_unrecorded", "channel")]
    assert "in 1 row(s) (the oldest: invoice id=1, web there" in found[1][3]


def test_a_column_added_without_a_default_reads_null_and_is_no_problem(db):
    app = _books(db)
    db.owner().execute("ALTER TABLE invoice ADD COLUMN memo text")
    assert _found(db) == []
    app.execute("UPDATE invoice SET memo = 'm' WHERE id = 2")  # written through the trail
    assert _found(db) == []
    # the neighbour: a value put there behind the trail
    _behind_the_trail(db, "UPDATE invoice SET memo = 'forged' WHERE id = 3")
    assert [(c, col) for c, _, col, _ in _found(db)] == [("column_unrecorded", "memo")]


def test_a_column_dropped_or_renamed_without_the_ddl_guard_is_reported_once_and_cannot_be_recorded_away(db):
    _books(db)
    owner = db.owner()
    owner.execute("ALTER TABLE invoice RENAME COLUMN note TO remark")
    found = _found(db)
    assert [(c, col) for c, _, col, _ in found] == [("column_gone", "note"), ("column_unrecorded", "remark")]
    assert found[0][3].startswith("public.invoice.note is gone: the trail recorded it for 3 row(s) (the oldest: "
                                  "invoice id=2, event seq ")
    assert found[0][3].endswith("it was dropped or renamed, and its recorded values can no longer be held to the "
                                "table")
    assert "in 1 row(s) (the oldest: invoice id=1, n there" in found[1][3]
    assert lives_ok(db.connect("admin"), "SELECT ledgerlock.record_added_columns('invoice', 'x')") == [(0,)]
    owner.execute("ALTER TABLE invoice RENAME COLUMN remark TO note")
    assert _found(db) == []
    owner.execute("ALTER TABLE invoice DROP COLUMN note")
    assert [(c, col) for c, _, col, _ in _found(db)] == [("column_gone", "note")]
    assert _verify_exit(db) != 0


def _books_with_a_composite(db):
    """A protected table whose column holds a composite type (an amount and its currency), through an array."""
    owner = db.owner()
    owner.execute("""CREATE TYPE priced AS (amount numeric, currency text);
        CREATE TABLE quote_line (id integer PRIMARY KEY, issued_on date NOT NULL, prices priced[]);
        GRANT SELECT, INSERT, UPDATE, DELETE ON quote_line TO ll_app;
        SELECT ledgerlock.protect('quote_line', 'issued_on');""")
    db.connect("app").execute("INSERT INTO quote_line VALUES (1, '2026-01-05', ARRAY[(10, 'EUR')::priced]), "
                              "(2, '2026-01-06', NULL)")
    return owner


def test_an_attribute_dropped_from_a_composite_type_a_protected_column_holds_is_reported(db):
    """DROP ATTRIBUTE took the currency out of every row that held it, with no write, and verification said the
    books were as recorded: it reads a recorded value into the type as the type is now, which leaves the
    dropped key out on both sides. The recorded value is now also held to that reading, key by key."""
    owner = _books_with_a_composite(db)
    owner.execute("ALTER TYPE priced ADD ATTRIBUTE rate numeric")  # the neighbour: null in every row
    assert _found(db) == []
    owner.execute("ALTER TYPE priced DROP ATTRIBUTE currency")
    found = _found(db)
    assert [(c, t, col) for c, t, col, _ in found] == [("row_changed", "public.quote_line", "prices")]
    assert found[0][3].startswith('quote_line id=1: prices is [{"rate": null, "amount": 10}] in the table, '
                                  '[{"amount": 10, "currency": "EUR"}] in event seq ')
    assert _verify_exit(db) != 0
    # an admin's recording of added columns records the row that lost nothing, and not the one that did
    owner.execute("ALTER TABLE quote_line ADD COLUMN channel text NOT NULL DEFAULT 'web'")
    assert lives_ok(db.connect("admin"), "SELECT ledgerlock.record_added_columns('quote_line', 'channel added')"
                    ) == [(1,)]
    found = _found(db)
    assert [(c, col) for c, _, col, _ in found] == [("row_changed", "prices"), ("column_unrecorded", "channel")]
    assert "in 1 row(s) (the oldest: quote_line id=1, web there" in found[1][3]


def test_the_ddl_guard_refuses_to_drop_or_rename_an_attribute_protected_rows_hold(db):
    owner = _books_with_a_composite(db)
    owner.execute("CREATE TABLE address (street text, city text); ALTER TABLE quote_line ADD COLUMN ship_to address")
    owner.execute("SELECT ledgerlock.install_ddl_guard()")
    owner.execute("""CREATE FUNCTION clears_the_settings(text) RETURNS boolean LANGUAGE sql AS $$
        SELECT bool_and(set_config(name, '{}', true) IS NOT NULL)
        FROM unnest(ARRAY['ledgerlock.type_attributes', 'ledgerlock.enum_labels']) AS name $$""")
    for statement, match in (
            ("ALTER TYPE priced DROP ATTRIBUTE currency", r"^dropping attribute currency of (public\.)?priced is "
                                                          r"refused: protected tables hold it: every row that holds "
                                                          r"it would change, with no write and no audit event"),
            ("ALTER TYPE priced RENAME ATTRIBUTE currency TO cur",
             r"^renaming an attribute of (public\.)?priced \(to cur\) is refused"),
            ("ALTER TABLE address DROP COLUMN city", r"^dropping attribute city of (public\.)?address is refused"),
            ("ALTER TABLE address RENAME COLUMN city TO town",
             r"^renaming an attribute of (public\.)?address \(to town\) is refused"),
            # code the same ALTER TABLE runs (a CHECK constraint's function) cannot clear what the guard reads
            ("INSERT INTO address VALUES ('s', 'c'); ALTER TABLE address DROP COLUMN city, "
             "ADD CONSTRAINT c CHECK (clears_the_settings(street))", r"^dropping attribute city of")):
        with refused("LL008", match):
            owner.execute(statement)
    # the neighbours: an attribute added, and a type no protected column holds
    owner.execute("ALTER TYPE priced ADD ATTRIBUTE rate numeric; ALTER TABLE address ADD COLUMN zip text")
    owner.execute("CREATE TYPE other AS (a int, b int); ALTER TYPE other DROP ATTRIBUTE b")
    owner.execute("ALTER TABLE customer RENAME COLUMN name TO display_name")
    assert _found(db) == []


def _books_of_other_types(db):
    """A protected table whose columns PostgreSQL can change to another type without rewriting a row (a
    binary-coercible cast), one final row holding a value in each."""
    owner = db.owner()
    owner.execute("""CREATE TABLE receipt (id integer PRIMARY KEY, issued_on date NOT NULL, status text NOT NULL,
                                           amount integer, ledger oid, terminal cidr, note varchar(20), flags bit(3),
                                           parts integer[]);
        GRANT SELECT, INSERT, UPDATE ON receipt TO ll_app;
        SELECT ledgerlock.protect('receipt', 'issued_on', final_when => $$status = 'final'$$);""")
    db.connect("app").execute("INSERT INTO receipt VALUES (1, '2026-01-05', 'final', -5, 1259, '10.0.0.1/32', 'n', "
                              "'101', '{1,-2}'), (2, '2026-01-06', 'draft', 7, 1, '10.0.0.0/8', 'm', '000', '{3}')")
    return owner


def test_a_type_changed_under_the_values_without_a_rewrite_is_reported_and_cannot_be_recorded_away(db):
    """ALTER COLUMN amount TYPE oid rewrites nothing (integer and oid are binary-coercible): the final receipt's
    -5 read 4294967291, its ledger 1259 read pg_class as a regclass, its terminal 10.0.0.1/32 read 10.0.0.1 as an
    inet, and verification said the books were as recorded: it reads a recorded value into the column's type
    as the type is now, which made -5 read 4294967291 on both sides. A recorded value that reads otherwise in
    the type now is reported as the row's change, with the value as recorded."""
    owner = _books_of_other_types(db)
    # the neighbours: changes under which every value reads as it did
    owner.execute("CREATE DOMAIN amount_t AS integer; ALTER TABLE receipt ALTER COLUMN amount TYPE amount_t, "
                  "ALTER COLUMN note TYPE text, ALTER COLUMN flags TYPE varbit")
    assert _found(db) == []
    owner.execute("ALTER TABLE receipt ALTER COLUMN amount TYPE oid, ALTER COLUMN ledger TYPE regclass, "
                  "ALTER COLUMN terminal TYPE inet")
    # and a rewrite, which no row trigger sees either (the guard refuses any): an array's elements read otherwise
    owner.execute("ALTER TABLE receipt ALTER COLUMN parts TYPE oid[] USING parts::oid[]")
    assert owner.execute("SELECT amount, ledger::text, format('%s', terminal) FROM receipt WHERE id = 1"
                         ).fetchone() == (4294967291, "pg_class", "10.0.0.1")
    found = _found(db)
    assert [(c, t, col) for c, t, col, _ in found] == [
        ("row_changed", "public.receipt", "amount"), ("row_changed", "public.receipt", "ledger"),
        ("row_changed", "public.receipt", "terminal"), ("row_changed", "public.receipt", "parts")], [
            f[3] for f in found]  # the draft's 7, 1, 10.0.0.0/8 read alike
    assert found[0][3].startswith("receipt id=1: amount is 4294967291 in the table, -5 in event seq "), found
    assert found[1][3].startswith("receipt id=1: ledger is pg_class in the table, 1259 in event seq "), found
    assert found[2][3].startswith("receipt id=1: terminal is 10.0.0.1 in the table, 10.0.0.1/32 in event seq "), found
    assert found[3][3].startswith('receipt id=1: parts is ["1", "4294967294"] in the table, [1, -2] in event seq '
                                  ), found
    assert _verify_exit(db) != 0
    # an admin's recording of an added column records the draft, whose values read alike, and not the final row
    owner.execute("ALTER TABLE receipt ADD COLUMN channel text NOT NULL DEFAULT 'web'")
    assert lives_ok(db.connect("admin"), "SELECT ledgerlock.record_added_columns('receipt', 'channel added')"
                    ) == [(1,)]
    assert [(c, col) for c, _, col, _ in _found(db)] == [
        ("row_changed", "amount"), ("row_changed", "ledger"), ("row_changed", "terminal"), ("row_changed", "parts"),
        ("column_unrecorded", "channel")]


def test_values_a_rewrite_rounded_behind_the_trail_are_reported(db):
    """A superuser without the DDL guard (which refuses any rewrite) rewrote a final bill's columns into
    narrower types: 100.50 became 101, 0.123456789 became 0.12345679, a timestamp, a time and an interval lost
    their fraction of a second. Verification read each recorded value into the narrower type as well, rounding
    it the same way, and said the books were as recorded. Each is a change now; a value printed otherwise by a
    setting (the zone a timestamptz was printed in, a float's digits) still reads as the same value."""
    owner = db.owner()
    owner.execute("""CREATE TABLE bill (id integer PRIMARY KEY, issued_on date NOT NULL, status text NOT NULL,
                                        amount numeric(12,2), rate float8, stamped timestamptz, took interval,
                                        at_time time);
        SELECT ledgerlock.protect('bill', 'issued_on', final_when => $$status = 'final'$$)""")
    app = db.connect("app")
    app.execute("SET TimeZone = 'Pacific/Kiritimati'; SET extra_float_digits = -3; SET IntervalStyle = 'iso_8601'")
    owner.execute("GRANT SELECT, INSERT ON bill TO ll_app")
    app.execute("INSERT INTO bill VALUES (1, '2026-01-05', 'final', 100.50, 0.123456789, "
                "'2026-01-05 10:00:00.7+00', '1 day 02:00:00.5', '10:00:00.7'), "
                "(2, '2026-01-05', 'final', 7, 0.5, '2026-01-05 10:00:00+00', '1 day', '10:00')")
    assert _found(db) == []  # the neighbour: what the writer's settings printed reads as it was
    owner.execute("ALTER TABLE bill ALTER COLUMN amount TYPE numeric(12,0), ALTER COLUMN rate TYPE float4, "
                  "ALTER COLUMN stamped TYPE timestamptz(0), ALTER COLUMN took TYPE interval(0), "
                  "ALTER COLUMN at_time TYPE time(0)")
    found = [(c, p.split(" in event seq ")[0]) for c, _, _, p in _found(db)]
    assert found == [
        ("row_changed", "bill id=1: amount is 101 in the table, 100.50"),
        ("row_changed", "bill id=1: rate is 0.12345679 in the table, 0.123456789"),
        ("row_changed", "bill id=1: stamped is 2026-01-05T10:00:01+00:00 in the table, 2026-01-05T10:00:00.7+00:00"),
        ("row_changed", "bill id=1: took is 1 day 02:00:01 in the table, 1 day 02:00:00.5"),
        ("row_changed", "bill id=1: at_time is 10:00:01 in the table, 10:00:00.7")], found  # bill 2 reads alike
    assert _verify_exit(db) != 0


def test_the_ddl_guard_refuses_a_type_changed_without_a_rewrite(db):
    """With the DDL guard, the owning application changed a column's type under its values without a rewrite
    (the rewrite check never fired): refused, through ALTER TABLE and through ALTER TYPE ... CASCADE of a typed
    table's type; the changes under which values read as they did pass."""
    owner = _books_of_other_types(db)
    owner.execute("""ALTER TABLE receipt OWNER TO ll_app; CREATE DOMAIN amount_t AS integer;
        CREATE TYPE doc_t AS (id integer, issued_on date, status text, amount integer);
        CREATE TABLE doc OF doc_t (PRIMARY KEY (id)); GRANT SELECT, INSERT ON doc TO ll_app;
        SELECT ledgerlock.protect('doc', 'issued_on', final_when => $$status = 'final'$$);
        SELECT ledgerlock.install_ddl_guard()""")
    app = db.connect("app")
    app.execute("INSERT INTO doc VALUES (1, '2026-01-05', 'final', -5)")
    for statement, match in (
            ("ALTER TABLE receipt ALTER COLUMN amount TYPE oid",
             r"^changing the type of column public\.receipt\.amount \(integer to oid\) is refused: PostgreSQL "
             r"changes it without rewriting a row \(a binary-coercible cast\), so every row of protected table "
             r"public\.receipt would read another value"),
            ("ALTER TABLE receipt ALTER COLUMN ledger TYPE regclass",
             r"^changing the type of column public\.receipt\.ledger \(oid to regclass\) is refused"),
            ("ALTER TABLE receipt ALTER COLUMN terminal TYPE inet",
             r"^changing the type of column public\.receipt\.terminal \(cidr to inet\) is refused"),
            # a domain in between does not launder it: the base types are compared
            ("ALTER TABLE receipt ALTER COLUMN amount TYPE amount_t; ALTER TABLE receipt ALTER COLUMN amount TYPE oid",
             r"^changing the type of column public\.receipt\.amount \((public\.)?amount_t to oid\)")):
        with refused("LL008", match):
            app.execute(statement)
    with refused("LL008", r"^changing the type of column public\.doc\.amount \(integer to oid\) is refused"):
        owner.execute("ALTER TYPE doc_t ALTER ATTRIBUTE amount TYPE oid CASCADE")
    # DDL the command itself runs (a CHECK constraint's function, called for each row after the type changed):
    # its own start and end fire inside the command's, and no longer take what the command's start kept
    owner.execute("""CREATE TABLE other (id integer); INSERT INTO other VALUES (1);
        CREATE FUNCTION alters_other(integer) RETURNS boolean LANGUAGE plpgsql AS $f$
            BEGIN EXECUTE 'ALTER TABLE other ALTER COLUMN id SET DEFAULT 1'; RETURN true; END $f$;
        CREATE FUNCTION alters_receipt(integer) RETURNS boolean LANGUAGE plpgsql AS $f$
            BEGIN EXECUTE 'ALTER TABLE receipt ALTER COLUMN ledger TYPE regclass'; RETURN true; END $f$""")
    with refused("LL008", r"^changing the type of column public\.receipt\.amount \(integer to oid\) is refused"):
        owner.execute("ALTER TABLE receipt ALTER COLUMN amount TYPE oid, ADD CONSTRAINT c CHECK (alters_other(id))")
    with refused("LL008", r"^changing the type of column public\.receipt\.ledger \(oid to regclass\) is refused"):
        owner.execute("ALTER TABLE other ADD CONSTRAINT c CHECK (alters_receipt(id))")
    assert app.execute("SELECT amount FROM receipt WHERE id = 1").fetchone() == (-5,)
    # the neighbours: the same values under a domain, text for varchar, varbit for bit
    app.execute("ALTER TABLE receipt ALTER COLUMN amount TYPE amount_t, ALTER COLUMN note TYPE text, "
                "ALTER COLUMN flags TYPE varbit")
    owner.execute("CREATE DOMAIN note_t AS text; "
                  "ALTER TABLE receipt ALTER COLUMN note TYPE note_t, ADD CONSTRAINT c CHECK (alters_other(id))")
    owner.execute("ALTER TYPE doc_t ALTER ATTRIBUTE amount TYPE amount_t CASCADE")
    assert owner.execute("SELECT count(*) FROM ledgerlock.ddl_snapshot").fetchone() == (0,)
    assert _found(db) == []


def test_the_ddl_guard_lets_a_column_with_a_default_be_added_and_still_refuses_a_drop(db):
    _books(db)
    owner = db.owner()
    owner.execute("SELECT ledgerlock.install_ddl_guard()")
    owner.execute("ALTER TABLE invoice ADD COLUMN channel text NOT NULL DEFAULT 'web'")
    with refused("LL008", r"^DROP table column public\.invoice\.note is refused"):
        owner.execute("ALTER TABLE invoice DROP COLUMN note")
    db.connect("admin").execute("SELECT ledgerlock.record_added_columns('invoice', 'channel added')")
    assert _found(db) == []


def test_writes_wait_while_an_admin_records_added_columns(db):
    """The table is read and its events written under a SHARE lock: a write in between would leave a
    BASELINE event newer than the row it describes."""
    app = _books(db)
    db.owner().execute("ALTER TABLE invoice ADD COLUMN channel text NOT NULL DEFAULT 'web'")
    admin = db.connect("admin", autocommit=False)
    assert admin.execute("SELECT ledgerlock.record_added_columns('invoice', 'channel')").fetchone() == (3,)
    write = Background(db.connect("app"), "UPDATE invoice SET amount = 25, channel = 'shop' WHERE id = 2")
    assert write.wait_until_blocked(db.owner()) == "relation"
    admin.commit()
    write.join()
    assert write.error is None, write.error
    assert app.execute("SELECT amount, channel FROM invoice WHERE id = 2").fetchone() == (25, "shop")
    assert _found(db) == []


def test_hostile_session_settings_neither_hide_nor_invent_a_change_of_an_added_column(db):
    """The added columns' values are read, compared and recorded under pinned output settings: an admin and an
    application with a float rounded, dates in another style and another time zone record and write the same."""
    app = _books(db)
    db.owner().execute("ALTER TABLE invoice ADD COLUMN rate float8 NOT NULL DEFAULT 0.1, "
                       "ADD COLUMN due date NOT NULL DEFAULT '2026-03-04', "
                       "ADD COLUMN seen timestamptz NOT NULL DEFAULT '2026-03-04 23:30+00'")
    hostile = "SET extra_float_digits = -15; SET DateStyle = 'SQL, DMY'; SET TimeZone = 'Pacific/Kiritimati'"
    admin = db.connect("admin")
    admin.execute(hostile)
    assert [c for c, _, _, _ in _found(db)] == ["column_unrecorded"] * 3
    assert lives_ok(admin, "SELECT ledgerlock.record_added_columns('invoice', 'rate, due, seen')") == [(3,)]
    assert _found(db) == []
    app.execute(hostile)
    app.execute("UPDATE invoice SET rate = 0.30000000000000004 WHERE id = 2")
    assert _found(db) == []
    _behind_the_trail(db, "UPDATE invoice SET rate = 0.3 WHERE id = 2")  # lost digits are a change
    assert [(c, col) for c, _, col, _ in _found(db)] == [("row_changed", "rate")]


def test_the_cli_names_its_command_for_an_added_column_and_records_it(db):
    """`audit verify` gives the fix as the CLI command, `audit record-columns`, which an admin runs with a reason."""
    _books(db)
    db.owner().execute("ALTER TABLE invoice ADD COLUMN channel text NOT NULL DEFAULT 'web'")

    def run(role, *args):
        return CliRunner().invoke(cli, ["--dsn", db.conninfo(role), "audit", *args])

    res = run("auditor", "verify")
    assert res.exit_code == 3, res.output
    assert res.stderr.splitlines()[0].endswith(
        "an admin records them: ledgerlock audit record-columns public.invoice --reason \"...\""), res.stderr
    res = run("admin", "record-columns", "invoice")
    assert res.exit_code == 2 and "Missing option '--reason'" in res.stderr
    for role, code, text in (("controller", 1, "42501"), ("admin", 1, "LL007")):
        res = run(role, "record-columns", "invoice", "--reason", " " if role == "admin" else "added")
        assert (res.exit_code, text in res.stderr) == (code, True), (role, res.stderr)
    res = run("admin", "record-columns", "no_such_table", "--reason", "added")
    assert res.exit_code == 1 and 'relation "no_such_table" does not exist' in res.stderr, res.stderr
    res = run("admin", "record-columns", "invoice", "--reason", "channel added, web for all")
    assert (res.exit_code, res.stdout) == (0, "recorded the added columns of 3 row(s) of public.invoice\n"), res.output
    assert run("auditor", "verify").exit_code == 0
    res = run("admin", "record-columns", "invoice", "--reason", "again", "--json")
    assert (res.exit_code, json.loads(res.stdout)) == (0, {"table": "public.invoice", "rows": 0}), res.output
    assert db.connect("auditor").execute(
        "SELECT count(*), min(reason) FROM ledgerlock.audit_log WHERE operation = 'BASELINE' AND "
        "table_name = 'public.invoice'::regclass").fetchone() == (3, "channel added, web for all")


def _latest_meta(db):
    return db.connect("auditor").execute(
        "SELECT new_row -> 'meta' FROM ledgerlock.audit_event WHERE table_oid = 'invoice'::regclass "
        "AND operation = 'UPDATE' ORDER BY seq DESC LIMIT 1").fetchone()[0]


def _stale_capture(db):
    return [f for f in db.connect("auditor").execute("SELECT severity, finding FROM ledgerlock.doctor_findings()")
            if "json columns" in f[1]]


def test_a_json_value_jsonb_cannot_hold_is_refused_and_nothing_is_written(db):
    """A json column accepts an escaped NUL character ("\u0000") and a number beyond numeric's range, which
    jsonb cannot hold. The capture makes each row's image with to_jsonb, so such a write to a protected table
    fails whole (22P05, 22003: docs/audit.md, "Capture") where an unprotected table takes it; nothing is written,
    and any other escape (a control character, an escaped quote) is captured as the column's exact text."""
    app = _books(db)
    owner = db.owner()
    owner.execute("ALTER TABLE invoice ADD COLUMN meta json; CREATE TABLE scratch (meta json);"
                  "GRANT INSERT ON scratch TO ll_app")
    db.connect("admin").execute("SELECT ledgerlock.reinstall_guards()")  # the capture, made for the json column
    for value, state in (('{"a": "\\u0000"}', "22P05"), ('{"a": 1e200000}', "22003")):
        app.execute("INSERT INTO scratch VALUES (%s)", (value,))  # what the column itself accepts
        with refused(state):
            app.execute("INSERT INTO invoice (id, company_id, meta) VALUES (9, 1, %s)", (value,))
    assert app.execute("SELECT count(*) FROM invoice WHERE id = 9").fetchone() == (0,)
    app.execute("""INSERT INTO invoice (id, company_id, meta) VALUES (9, 1, '{"a": "\\u0001 \\"q\\""}')""")
    assert db.connect("auditor").execute(
        "SELECT new_row -> 'meta' FROM ledgerlock.audit_event WHERE table_oid = 'invoice'::regclass "
        "AND row_key = '{\"id\": 9}'").fetchone()[0] == '{"a": "\\u0001 \\"q\\""}'
    assert _found(db) == []


@pytest.mark.parametrize("ddl_guard", [True, False])
def test_a_json_column_added_later_is_captured_as_its_exact_text_and_verifies(db, ddl_guard):
    """The capture keeps a json column as its exact text (jsonb would drop a duplicate key unnoticed); which
    columns are json is written into the table's capture when it is made. The DDL guard makes it again at the
    ALTER TABLE; without the guard, doctor names it until reinstall_guards does."""
    app = _books(db)
    owner = db.owner()
    if ddl_guard:
        owner.execute("SELECT ledgerlock.install_ddl_guard()")
    owner.execute("ALTER TABLE invoice ADD COLUMN meta json")
    if not ddl_guard:
        assert _stale_capture(db) == [("critical", "the audit capture of public.invoice was made for other json "
                                                   "columns than it has now")]
        db.connect("admin").execute("SELECT ledgerlock.reinstall_guards()")
    assert _stale_capture(db) == []
    app.execute("""UPDATE invoice SET meta = '{"a": 2, "a": 1}' WHERE id = 2""")
    assert _latest_meta(db) == '{"a": 2, "a": 1}'
    assert _found(db) == []
    # the permitted neighbour of the check: a change behind the trail that only jsonb would not see is reported
    if ddl_guard:
        owner.execute("SELECT ledgerlock.uninstall_ddl_guard()")  # the superuser behind the trail
    _behind_the_trail(db, """UPDATE invoice SET meta = '{"a": 1, "a": 2}' WHERE id = 2""")
    assert [(c, col) for c, _, col, _ in _found(db)] == [("row_changed", "meta")]
