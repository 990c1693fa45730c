"""final_when and child_condition are run later by ledgerlock's own definer code (number_gaps, why_locked,
the R4 guards), so an admin could smuggle a call to an internal function through them. Both are screened
by one function: every function and operator must be a PostgreSQL built-in (pg_catalog) and immutable, and
a final_when may not read a mutable column (22023, naming the offender). Ordinary conditions still pass."""

from __future__ import annotations

import re

import pytest

from lltest import refused

UNLOCK_ATTACK = "ledgerlock._unlock(NULL::ledgerlock.period_lock, 'through final_when') IS NULL"


def protect(conn, final_when, mutable=("paid", "reconciled")):
    conn.execute("SELECT ledgerlock.protect('invoice', 'issued_on', 'company_id', %s, "
                 "mutable_columns => %s::name[])", (final_when, list(mutable)))


@pytest.mark.parametrize(("condition", "match"), [
    (UNLOCK_ATTACK, r"calls ledgerlock\._unlock\(ledgerlock\.period_lock,text,jsonb\), which is not a "
                    r"PostgreSQL built-in"),
    ("status = 'paid' AND ledgerlock.has_capability('admin')", r"calls ledgerlock\.has_capability\(text\)"),
    ("status = 'paid' AND random() < 2", r"calls random\(\), which is volatile"),
    ("issued_on < now()", r"calls now\(\), which is stable"),
    ("status = 'paid' AND public.ll_is_paid(status)", r"calls public\.ll_is_paid\(text\), which is not a "
                                                      r"PostgreSQL built-in"),
    ("status OPERATOR(public.===) 'paid'",
     r"uses operator public\.===\(text,text\), which is not a PostgreSQL built-in"),
    ("issued_on::text LIKE '2025%'", r"converts values through text in a way that depends on session settings"),
])
def test_final_when_calling_anything_but_immutable_builtins_is_refused(db, condition, match):
    owner = db.owner()
    owner.execute("CREATE FUNCTION public.ll_is_paid(s text) RETURNS boolean IMMUTABLE LANGUAGE sql "
                  "AS $$ SELECT s = 'paid' $$")
    owner.execute("CREATE FUNCTION public.ll_same(a text, b text) RETURNS boolean IMMUTABLE LANGUAGE sql "
                  "AS $$ SELECT a = b $$")
    owner.execute("CREATE OPERATOR public.=== (LEFTARG = text, RIGHTARG = text, FUNCTION = public.ll_same)")
    admin = db.connect("admin")
    with refused("22023", r"^final_when .* " + match):
        protect(admin, condition)
    assert owner.execute("SELECT count(*) FROM ledgerlock.protected_table").fetchone()[0] == 0
    assert owner.execute("SELECT count(*) FROM pg_class WHERE relname LIKE '\\_ll\\_deparse%'").fetchone()[0] == 0
    protect(admin, "status = 'paid'")  # the permitted neighbour


def test_the_unlock_attack_through_final_when_never_reaches_number_gaps(db):
    admin = db.connect("admin")
    lock = admin.execute("SELECT ledgerlock.lock_period('1', '2025-03-01', '2025-03-31', 'hard')").fetchone()[0]
    with refused("22023", r"ledgerlock\._unlock"):
        admin.execute("SELECT ledgerlock.protect('invoice', 'issued_on', 'company_id', %s, 'number', 'INV-{SEQ}')",
                      (UNLOCK_ATTACK,))
    assert list(admin.execute("SELECT * FROM ledgerlock.number_gaps()")) == []
    assert db.owner().execute("SELECT status FROM ledgerlock.period_lock WHERE id = %s", (lock,)).fetchone()[0] \
        == "active"


def test_child_condition_is_screened_the_same_way(db):
    admin = db.connect("admin")
    with refused("22023", r"^child_condition .* calls ledgerlock\._unlock"):
        admin.execute("SELECT ledgerlock.protect_referenced('invoice', 'payment', child_condition => %s)",
                      (UNLOCK_ATTACK.replace("final_when", "child_condition"),))
    with refused("22023", r"^child_condition .* calls random\(\), which is volatile"):
        admin.execute("SELECT ledgerlock.protect_referenced('invoice', 'payment', "
                      "child_condition => $$random() > 0.5$$)")
    assert db.owner().execute("SELECT count(*) FROM ledgerlock.reference_rule").fetchone()[0] == 0
    admin.execute("SELECT ledgerlock.protect_referenced('invoice', 'payment', "
                  "child_condition => $$status <> 'void' AND coalesce(amount, 0) > 0$$)")


def test_final_when_reading_a_mutable_column_is_refused(db):
    admin = db.connect("admin")
    with refused("22023", r"^final_when .* reads reconciled, a mutable column: a final row could stop being "
                          r"final by changing it"):
        protect(admin, "status = 'paid' AND NOT reconciled")
    protect(admin, "status = 'paid' AND NOT reconciled", mutable=("paid",))  # reconciled is not mutable


def test_an_ordinary_condition_is_accepted_and_works(db):
    admin = db.connect("admin")
    condition = ("status in ('approved','paid') AND lower(coalesce(note, '')) <> 'void' "
                 "AND amount::integer >= 0 AND company_id::text <> '' AND status::varchar(10) <> 'x'")
    admin.execute("SELECT ledgerlock.protect('invoice', 'issued_on', 'company_id', %s, 'number', 'INV-{SEQ}', "
                  "'{paid,reconciled}')", (condition,))
    app = db.connect("app")
    app.execute("INSERT INTO invoice (id, company_id, status) VALUES (1, 1, 'approved'), (2, 1, 'draft')")
    with refused("LL001"):
        app.execute("UPDATE invoice SET amount = 5 WHERE id = 1")
    app.execute("UPDATE invoice SET amount = 5 WHERE id = 2")
    assert list(db.connect("auditor").execute("SELECT * FROM ledgerlock.number_gaps()")) == []


# Output functions PostgreSQL marks immutable whose text still follows a session setting: float4, float8 and
# the geometric types print by extra_float_digits, bytea by bytea_output. A condition that converts such a value
# to text passed PostgreSQL's own check (the scratch index), and R1's WHEN clause evaluates final_when in the
# writer's session: under extra_float_digits = -15 a final row no longer matched, and the application changed
# it (the attack below; measured 2026-11-29 before the screen).
RATED = """
CREATE DOMAIN rate_d AS float8;
CREATE TABLE rated (
    id          integer PRIMARY KEY,
    company_id  integer NOT NULL,
    issued_on   date NOT NULL,
    status      text NOT NULL DEFAULT 'draft',
    rate        float8 NOT NULL DEFAULT 1,
    rates       float8[] NOT NULL DEFAULT '{1}',
    rated       rate_d NOT NULL DEFAULT 1,
    at          point NOT NULL DEFAULT '(0,0)',
    sig         bytea NOT NULL DEFAULT '',
    amount      numeric NOT NULL DEFAULT 0,
    invoice_id  integer REFERENCES invoice
);
GRANT SELECT, INSERT, UPDATE, DELETE ON rated TO ll_app;
"""


@pytest.mark.parametrize(("condition", "shown"), [
    ("status = 'final' OR rate::text = '0.30000000000000004'", "a double precision value to text, which prints "
                                                               "by the session's extra_float_digits"),
    ("upper((rate * 2)::varchar) <> 'NAN'", "a double precision value to text"),
    ("rated::text <> ''", "a double precision value to text"),
    ("rates[1]::text <> ''", "a double precision value to text"),
    ("(CASE WHEN amount > 0 THEN rate END)::text <> ''", "a double precision value to text"),
    ("at::text <> '(0,0)'", "a point value to text, which prints by the session's extra_float_digits"),
    ("sig::text <> '\\x'", "a bytea value to text, which prints by the session's bytea_output"),
])
def test_a_condition_that_prints_a_value_by_a_session_setting_is_refused(db, condition, shown):
    db.owner().execute(RATED)
    admin = db.connect("admin")
    with refused("22023", r"^final_when .* converts " + re.escape(shown)):
        admin.execute("SELECT ledgerlock.protect('rated', 'issued_on', 'company_id', %s)", (condition,))
    assert db.owner().execute("SELECT count(*) FROM ledgerlock.protected_table").fetchone()[0] == 0
    with refused("22023", r"^child_condition .* converts " + re.escape(shown)):
        admin.execute("SELECT ledgerlock.protect_referenced('invoice', 'rated', child_condition => %s)",
                      (condition,))


def test_typed_comparisons_of_the_same_values_are_the_permitted_neighbour(db):
    db.owner().execute(RATED)
    admin = db.connect("admin")
    admin.execute("SELECT ledgerlock.protect('rated', 'issued_on', 'company_id', %s)",
                  ("status = 'final' OR rate = 0.30000000000000004 OR rate::numeric::text = '7' "
                   "OR id::text = '0' OR length(sig) > 100 OR at[0] > 1e9 OR rates[1] < 0",))
    app = db.connect("app")
    app.execute("SET extra_float_digits = -15")
    app.execute("INSERT INTO rated (id, company_id, issued_on, rate) VALUES "
                "(1, 1, '2025-06-01', 0.1::float8 + 0.2::float8), (2, 1, '2025-06-01', 0.3)")
    # 0.1 + 0.2 is final by its value, whatever the session prints it as; 0.3 is not
    with refused("LL001", r"^rated id=1 "):
        app.execute("UPDATE rated SET amount = 5 WHERE id = 1")
    app.execute("UPDATE rated SET amount = 5 WHERE id = 2")


def test_doctor_reports_a_condition_protected_before_the_screen(db):
    """A condition an earlier release accepted stays in force after migrate: doctor reports it (critical), as the
    auditor reads it, until the table is protected again with a typed comparison."""
    owner = db.owner()
    owner.execute(RATED)
    # the earlier release, as its screen was: nothing refused on this count
    shipped = owner.execute("SELECT pg_get_functiondef('ledgerlock._settings_printed(text)'::regprocedure)"
                            ).fetchone()[0]
    owner.execute("CREATE OR REPLACE FUNCTION ledgerlock._settings_printed(tree text) RETURNS SETOF text "
                  "LANGUAGE sql AS $$ SELECT NULL::text WHERE false $$")
    admin = db.connect("admin")
    admin.execute("SELECT ledgerlock.protect('rated', 'issued_on', 'company_id', "
                  "$$status = 'final' OR rate::text = '0.30000000000000004'$$)")
    admin.execute("SELECT ledgerlock.protect_referenced('invoice', 'rated', child_condition => $$sig::text <> ''$$)")
    owner.execute(shipped)

    def findings():
        return db.connect("auditor").execute(
            "SELECT severity, object, finding FROM ledgerlock.doctor_findings() WHERE check_name = 'condition' "
            "ORDER BY 2").fetchall()

    assert findings() == [
        ("critical", "public.rated", "final_when 'status = ''final'' OR rate::text = ''0.30000000000000004''' "
                                     "converts a double precision value to text, which prints by the session's "
                                     "extra_float_digits"),
        ("critical", "public.rated -> public.invoice",
         "child_condition 'sig::text <> ''''' converts a bytea value to text, which prints by the session's "
         "bytea_output")]
    # the way out it names: the same rules again, with typed comparisons
    admin.execute("SELECT ledgerlock.protect('rated', 'issued_on', 'company_id', "
                  "$$status = 'final' OR rate = 0.30000000000000004$$, weaken_reason => 'typed comparison')")
    admin.execute("SELECT ledgerlock.unprotect_referenced('invoice', 'rated', 'typed comparison')")
    admin.execute("SELECT ledgerlock.protect_referenced('invoice', 'rated', child_condition => $$length(sig) > 0$$)")
    assert findings() == []
