"""Every rule on tables whose names would trip generated SQL: a table name with a space, quoted mixed-case
columns, reserved words, a 63-character name, and a column named after every variable, alias and row name the
generated functions and trigger conditions use (read from ledgerlock's own SQL, so a new one is covered too).
Such a column once made protect fail (`old` in a trigger's WHEN), numbering fail (`ll_scope` in the settle
query), the books check fail (`ll_img`) and a header's label come out empty (`ll_row`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lltest import lives_ok, refused

SQL = Path(__file__).resolve().parents[2] / "sql"
LONG = "x" * 63


def generated_names() -> list[str]:
    """The ll_* names of ledgerlock's SQL, and the aliases and row names its generated SQL reads unqualified."""
    names = set()
    for path in [*SQL.glob("functions/*.sql"), *SQL.glob("triggers/*.sql")]:
        # ll_ variables, and the ll90_ names a table's own capture writes its values in for
        names |= set(re.findall(r"\bll(?:90)?_[a-z_0-9]+\b", path.read_text()))
    names = {n for n in names if len(n) <= 63 and not n.startswith("ll_10_") and not n.startswith("ll_20_")}
    return sorted(names | {"old", "new", "t", "r", "k", "n", "o", "x", "w", "tg_op", "row", "key", "scope", "seq"})


@pytest.fixture
def books(db):
    extra = ", ".join(f'"{c}" text' for c in generated_names())
    owner = db.owner()
    owner.execute(f'''CREATE TABLE "Doc Header" (
        "the id" integer PRIMARY KEY, "from" integer NOT NULL, "Date of ""issue""" date NOT NULL,
        "select" text, "Status" text NOT NULL DEFAULT 'draft', "{LONG}" boolean DEFAULT false,
        "montant €" numeric, {extra})''')
    owner.execute(f'''CREATE TABLE "Doc Line" ("line id" integer PRIMARY KEY,
        "the header" integer NOT NULL REFERENCES "Doc Header", "order" text, {extra})''')
    owner.execute('GRANT SELECT, INSERT, UPDATE, DELETE ON "Doc Header", "Doc Line" TO ll_app, ll_auditor, ll_admin')
    cols = ", ".join(f'"{c}"' for c in generated_names())
    vals = ", ".join("'v'" for _ in generated_names())
    # a row written before protect: the audit baseline reads it
    owner.execute(f'''INSERT INTO "Doc Header" ("the id", "from", "Date of ""issue""", {cols})
                      VALUES (100, 7, '2025-02-01', {vals})''')
    owner.execute(f'''SELECT ledgerlock.protect('"Doc Header"', date_column => 'Date of "issue"',
        scope_column => 'from', final_when => $$"Status" = 'final'$$, number_column => 'select',
        number_format => '{{SCOPE}}/N-{{YYYY}}-{{SEQ:3}}',
        mutable_columns => ARRAY['{LONG}', 'll_w', 'new']::name[])''')
    owner.execute('''SELECT ledgerlock.protect('"Doc Line"', date_column => 'the header.Date of "issue"',
                     scope_column => 'the header.from')''')
    owner.execute('''SELECT ledgerlock.protect_lines('"Doc Line"', '"Doc Header"')''')
    db.cols, db.vals = cols, vals
    return db


def test_every_rule_holds_on_tables_whose_names_would_trip_generated_sql(books):
    app, cols, vals = books.connect("app"), books.cols, books.vals
    header = f'INSERT INTO "Doc Header" ("the id", "from", "Date of ""issue""", "Status", {cols}) '
    # R2: numbered by insert, by update and in bulk, in the series of the row's scope and year
    assert app.execute(header + f"VALUES (1, 7, '2025-03-05', 'draft', {vals}) RETURNING \"select\"").fetchone()[0] \
        .startswith("DRAFT-")
    app.execute(f'INSERT INTO "Doc Line" ("line id", "the header", {cols}) VALUES (2, 1, {vals})')  # a draft's line
    assert app.execute(header + f"VALUES (2, 7, '2025-03-06', 'final', {vals}) RETURNING \"select\"").fetchone() \
        == ("7/N-2025-001",)
    assert app.execute('UPDATE "Doc Header" SET "Status" = \'final\' WHERE "the id" = 1 RETURNING "select"') \
        .fetchone() == ("7/N-2025-002",)
    app.execute(header + f"SELECT g, 7, '2025-04-07', 'final', {vals} FROM generate_series(10, 59) g")
    assert books.owner().execute("SELECT * FROM ledgerlock.number_gaps()").fetchall() == []
    # R1: a final row refuses a change, and takes its mutable columns (one named ll_w, one new, one 63 long)
    with refused("LL001", r'^Doc Header the id=2 \(7/N-2025-001\) is final and cannot be updated'):
        app.execute('UPDATE "Doc Header" SET "montant €" = 5 WHERE "the id" = 2')
    lives_ok(app, f'UPDATE "Doc Header" SET "{LONG}" = true, ll_w = \'w\', "new" = \'n\' WHERE "the id" = 2')
    # R4: the lines of a final header are frozen, with the header named by its key; a draft's lines are not
    app.execute(header + f"VALUES (3, 7, '2025-04-08', 'draft', {vals})")
    app.execute(f'INSERT INTO "Doc Line" ("line id", "the header", {cols}) VALUES (1, 3, {vals})')
    with refused("LL001", r'^Doc Line line id=2 cannot be updated: its header Doc Header the id=1 \(7/N-2025-002\) '
                          r'is final'):
        app.execute('UPDATE "Doc Line" SET "order" = \'b\' WHERE "line id" = 2')
    lives_ok(app, 'UPDATE "Doc Line" SET "order" = \'b\' WHERE "line id" = 1')
    # R3: a hard lock refuses the header and, through it, its lines; the open month takes both
    app.execute(header + f"VALUES (4, 7, '2025-03-20', 'draft', {vals})")
    books.connect("admin").execute("SELECT ledgerlock.lock_period('7', '2025-03-01', '2025-03-31', 'hard')")
    with refused("LL002", r'^Period 2025-03-01\.\.2025-03-31 is locked \(hard\) for scope 7: '
                          r'Doc Header the id=300 cannot be inserted'):
        app.execute(header + f"VALUES (300, 7, '2025-03-09', 'draft', {vals})")
    lives_ok(app, header + f"VALUES (301, 7, '2025-04-09', 'draft', {vals})")
    with refused("LL002", r"is locked \(hard\) for scope 7"):
        app.execute(f'INSERT INTO "Doc Line" ("line id", "the header", {cols}) VALUES (3, 4, {vals})')
    lives_ok(app, f'INSERT INTO "Doc Line" ("line id", "the header", {cols}) VALUES (4, 301, {vals})')
    # skip mode records the refused row, and its re-post into an open month goes through
    app.execute("SET ledgerlock.on_locked = 'skip'")
    app.execute(header + f"VALUES (302, 7, '2025-03-10', 'draft', {vals})")
    app.execute("RESET ledgerlock.on_locked")
    skip = books.owner().execute("SELECT max(id) FROM ledgerlock.lock_event WHERE kind = 'skip'").fetchone()[0]
    books.connect("admin").execute("SELECT ledgerlock.repost_skipped(%s, '2025-04-10')", (skip,))
    # R5: the trail and the books verify, the baseline row included; a change behind the trail is found
    auditor = books.connect("auditor")
    assert auditor.execute("SELECT ok, problems FROM ledgerlock.verify_audit()").fetchone() == (True, 0)
    why = books.connect("admin").execute(
        'SELECT rule FROM ledgerlock.why_locked(\'"Doc Line"\', \'{"line id": 2}\')').fetchall()
    assert ("lines",) in why
    owner = books.owner()
    owner.execute('ALTER TABLE "Doc Header" DISABLE TRIGGER USER')
    owner.execute('UPDATE "Doc Header" SET "montant €" = 99 WHERE "the id" = 100')
    for (name,) in owner.execute("""SELECT tgname FROM pg_trigger WHERE tgrelid = '"Doc Header"'::regclass
                                    AND NOT tgisinternal""").fetchall():  # put back exactly as they were
        owner.execute(f'ALTER TABLE "Doc Header" ENABLE ALWAYS TRIGGER "{name}"')
    found = auditor.execute("SELECT table_name, row_key::text, column_name FROM ledgerlock.audit_discrepancies()")
    assert found.fetchall() == [('public."Doc Header"', '{"the id": 100}', "montant €")]


# Pieces of column names, mixed at random (seeded): the names ledgerlock's generated SQL and templates use,
# quoting of every kind, template braces, dollar quotes, format directives, a comment, non-ASCII.
NAME_PIECES = st.sampled_from(["ll_", "ll90_op", "ll90_tbl", "ll_row", "ll_scope", "TG_OP", "NEW", "old", "{{",
                               "}}", "{SEQ}", "|L", "$$", "$ll$", "'", '"', "\\", "--", ";", " ", "é", "%s", "%I",
                               "E'", "x", "id", "select", "NULL"])
NAMES = st.lists(NAME_PIECES, min_size=1, max_size=5).map("".join).filter(
    lambda n: len(n.encode()) <= 40 and "." not in n)
EXAMPLE = {"n": 0}


@settings(max_examples=8, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(names=st.lists(NAMES, min_size=8, max_size=8, unique_by=str.lower).filter(
    # the status column is named in final_when, which is read as text first: no ";", "--" or "/*" (sql-api.md)
    lambda ns: not any(bad in ns[3] for bad in (";", "--", "/*"))))
def test_every_rule_holds_whatever_its_columns_are_named(db, names):
    """The rules' generated SQL (R1's comparisons, R2's numbering and settle step, R3's checks, R4's line
    guard, R5's capture) on columns named from random pieces: seeded, bounded examples on every server, each
    with its own tables and scope. Each rule refuses what it must, lets the neighbour by, and the books verify."""
    EXAMPLE["n"] += 1
    try:
        _every_rule_on(db, names, EXAMPLE["n"])
    finally:
        db.close_all()  # connections per example: the server's limit is not the examples'


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _every_rule_on(db, names: list[str], n: int) -> None:
    key, scope, day, status, number, paid, amount, fk = (_q(c) for c in names)
    hdr, ln, s = f"hdr_{n}", f"ln_{n}", 100 + n
    owner = db.owner()
    owner.execute(f"CREATE TABLE {hdr} ({key} int PRIMARY KEY, {scope} int NOT NULL, {day} date NOT NULL, "
                  f"{status} text NOT NULL DEFAULT 'draft', {number} text, {paid} boolean NOT NULL DEFAULT false, "
                  f"{amount} numeric NOT NULL DEFAULT 0)")
    owner.execute(f"CREATE TABLE {ln} (line int PRIMARY KEY, {fk} int NOT NULL REFERENCES {hdr}, note text)")
    owner.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {hdr}, {ln} TO ll_app")
    owner.execute("SELECT ledgerlock.protect(%s, date_column => %s, scope_column => %s, final_when => %s, "
                  "number_column => %s, number_format => 'N-{SEQ:3}', mutable_columns => ARRAY[%s]::name[])",
                  (hdr, names[2], names[1], f"{status} = 'final'", names[4], names[5]))
    owner.execute("SELECT ledgerlock.protect_lines(%s, %s)", (ln, hdr))
    app = db.connect("app")
    # a query with parameters: a % in a name is written %% (psycopg reads placeholders)
    k, sc, d, st_, num = (c.replace("%", "%%") for c in (key, scope, day, status, number))
    insert = f"INSERT INTO {hdr} ({k}, {sc}, {d}, {st_}) VALUES (%s, {s}, %s, %s) RETURNING {num}"
    # R2: numbered by insert, by update and in bulk, gapless
    app.execute(insert, (1, "2025-03-05", "draft"))
    assert app.execute(insert, (2, "2025-03-06", "final")).fetchone() == ("N-001",)
    assert app.execute(f"UPDATE {hdr} SET {status} = 'final' WHERE {key} = 1 RETURNING {number}").fetchone() == (
        "N-002",)
    app.execute(f"INSERT INTO {hdr} ({key}, {scope}, {day}, {status}) "
                f"SELECT g, {s}, '2025-04-07', 'final' FROM generate_series(10, 19) g")
    assert [r[0] for r in app.execute(f"SELECT {number} FROM {hdr} ORDER BY {number}")] == [
        f"N-{i:03}" for i in range(1, 13)]
    # R1: a final row refuses a change and takes its mutable column
    with refused("LL001", r"is final and cannot be updated"):
        app.execute(f"UPDATE {hdr} SET {amount} = 5 WHERE {key} = 2")
    lives_ok(app, f"UPDATE {hdr} SET {paid} = true WHERE {key} = 2")
    # R4: a final header's lines are frozen; a draft's are not
    with refused("LL001", r"is final"):
        app.execute(f"INSERT INTO {ln} (line, {fk}) VALUES (1, 2)")
    app.execute(insert, (3, "2025-04-08", "draft"))
    lives_ok(app, f"INSERT INTO {ln} (line, {fk}) VALUES (2, 3)")
    # R3: a hard lock refuses a row dated in it, and lets the open month by
    db.connect("admin").execute("SELECT ledgerlock.lock_period(%s, '2025-03-01', '2025-03-31', 'hard')", (str(s),))
    with refused("LL002", rf"is locked \(hard\) for scope {s}"):
        app.execute(insert, (4, "2025-03-09", "draft"))
    lives_ok(app, insert.replace(f" RETURNING {num}", ""), (5, "2025-04-09", "draft"))
    # R5: everything written verifies
    assert db.connect("auditor").execute("SELECT ok, problems FROM ledgerlock.verify_audit()").fetchone() == (True, 0)
