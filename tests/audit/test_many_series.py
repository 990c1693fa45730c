"""Thousands of series in one book: a number format with {SCOPE} gives every company its own series, and a
billing run finalizes one invoice per company in one statement. The statement's settle step and the
verification of the counters each cost one pass over the rows, however many series: before, the settle step
compared every open counter with every series (3,000 series: 9,000,000 pairs, and on PostgreSQL 15 a new
setting per series), and verification read the trail once per series (4,000 series: 5 s; from a digest, the
whole table once per series). The bounds below are waits with a limit, not timings: one pass takes well
under a second on every server; the old passes took longer than the bound on 16 (7 s and ~30 s)."""

from __future__ import annotations

import pytest
from test_tampering import triggers_off

from lltest import lives_ok

COMPANIES = 10_000


@pytest.fixture
def billing(db):
    owner = db.owner()
    owner.execute("CREATE TABLE bill (id bigint PRIMARY KEY, company_id integer NOT NULL, number text, "
                  "status text NOT NULL DEFAULT 'draft', issued_on date NOT NULL)")
    owner.execute("GRANT SELECT, INSERT, UPDATE ON bill TO ll_app")
    owner.execute("SELECT ledgerlock.protect('bill', date_column => 'issued_on', scope_column => 'company_id', "
                  "final_when => $$status = 'final'$$, number_column => 'number', "
                  "number_format => 'B-{SCOPE}-{SEQ:4}')")
    app = db.connect("app")
    app.execute("SET statement_timeout = '5s'")  # the old settle step: 7 s for these 10,000 series
    # the first run: one final bill per company, in one statement (a one-row finalization first, so that the
    # session's plans are made for one row, as a connection pool's are)
    app.execute("INSERT INTO bill VALUES (0, 1, NULL, 'final', date '2026-01-01')")
    app.execute("INSERT INTO bill SELECT g, g, NULL, 'final', date '2026-01-31' FROM generate_series(1, %s) g",
                (COMPANIES,))
    # the second run: drafts, then finalized by one UPDATE
    app.execute("INSERT INTO bill SELECT %s + g, g, NULL, 'draft', date '2026-02-28' FROM generate_series(1, %s) g",
                (COMPANIES, COMPANIES))
    app.execute("UPDATE bill SET status = 'final' WHERE id > %s", (COMPANIES,))
    db.digest = db.connect("auditor").execute("SELECT ledgerlock.audit_digest()").fetchone()[0]
    return db


def verify(db, digest=None):
    auditor = db.connect("auditor")
    auditor.execute("SET statement_timeout = '5s'")  # the old check: ~30 s for 10,000 series
    return auditor.execute("SELECT ok, problems, problem FROM ledgerlock.verify_audit(%s)", (digest,)).fetchone()


def test_every_company_numbers_its_own_series_gaplessly_and_the_book_verifies(billing):
    owner = billing.owner()
    rows = owner.execute("SELECT company_id, array_agg(number ORDER BY id) FROM bill GROUP BY company_id "
                         "ORDER BY company_id").fetchall()
    assert len(rows) == COMPANIES
    assert rows[0] == (1, ["B-1-0001", "B-1-0002", "B-1-0003"])
    assert all(numbers == [f"B-{company}-0001", f"B-{company}-0002"] for company, numbers in rows[1:])
    counters = owner.execute("SELECT count(*), sum(last_value) FROM ledgerlock.number_counter "
                             "WHERE tbl = 'bill'::regclass AND open_from IS NULL").fetchone()
    assert counters == (COMPANIES, 2 * COMPANIES + 1)
    assert lives_ok(owner, "SELECT count(*) FROM ledgerlock.number_gaps('bill')") == [(0,)]
    assert verify(billing)[:2] == (True, 0)
    assert verify(billing, billing.digest)[:2] == (True, 0)


def test_one_counter_wound_back_among_thousands_is_reported_with_its_series_and_event(billing):
    app = billing.connect("app")
    app.execute("INSERT INTO bill VALUES (100000, 4321, NULL, 'final', date '2026-03-31')")  # B-4321-0003
    seq = billing.owner().execute(
        "SELECT max(seq) FROM ledgerlock.audit_event WHERE table_name = 'public.bill' AND row_key = '{\"id\": 100000}'"
    ).fetchone()[0]
    with triggers_off(billing.owner(), "ledgerlock.number_counter") as su:
        su.execute("UPDATE ledgerlock.number_counter SET last_value = 2 "
                   "WHERE tbl = 'bill'::regclass AND prefix = 'B-4321-'")
    problem = ("public.bill: the counter of series B-4321-{SEQ} is at 2, the highest number the trail shows issued "
               f"in it is 3 (event seq {seq})")
    for digest in (None, billing.digest):  # the whole trail, and from the digest (the live row carries 3)
        ok, problems, first = verify(billing, digest)
        assert (ok, problems) == (False, 1)
        assert problem in first
    with triggers_off(billing.owner(), "ledgerlock.number_counter") as su:  # put back: the book verifies again
        su.execute("UPDATE ledgerlock.number_counter SET last_value = 3 "
                   "WHERE tbl = 'bill'::regclass AND prefix = 'B-4321-'")
    assert verify(billing, billing.digest)[:2] == (True, 0)
    # and company 4321's next bill is its fourth number
    app.execute("INSERT INTO bill VALUES (100001, 4321, NULL, 'final', date '2026-04-30')")
    assert app.execute("SELECT number FROM bill WHERE id = 100001").fetchone()[0] == "B-4321-0004"
