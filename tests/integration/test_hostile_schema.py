"""Every rule on tables whose names would trip generated SQL: a table name with a space, quoted mixed-case
columns, reserved words, a 63-character name, and a column named after every variable, alias and row name the
generated functions and trigger conditions use (read from ledgerlock's own SQL, so a new one is covered too).
Such a column once made protect fail (`old` in a trigger's WHEN), numbering fail (`ll_scope` in the settle
query), the books check fail (`ll_img`) and a header's label come out empty (`ll_row`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

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
