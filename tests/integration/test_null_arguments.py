"""A null where the SQL API needs a value is refused by a sentence that names what is missing — never a message
with a hole where the null was printed ("unlock request # does not exist", "protect:  has no primary key"),
never an internal error. Every function a ledgerlock role may call, all its arguments null, as an admin."""

from __future__ import annotations

import re

import psycopg

from lltest import refused

# What a refusal of missing values says (the API's own words: "lock_period requires a scope, …", "a non-blank
# reason", "must be true or false", "is not a close period", "needs the digest").
NAMES_WHAT_IS_MISSING = re.compile(r"\brequires?\b|\brequired\b|\bmust\b|\bneeds\b|\bis not a\b")
HOLE = re.compile(r"#(\s|$|\))|\s\s|^\s|\s$|:\s*$| (to|of|on|for)$")
STATE_ERRORS = {"55000"}  # become/promote_subscriber: no arguments, answered by the database's state


def api_functions(owner):
    return owner.execute(
        """SELECT p.oid::regprocedure::text, p.proname,
                  (SELECT string_agg('NULL::' || format_type(t, NULL), ', ' ORDER BY o)
                   FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY AS a(t, o))
           FROM pg_proc p
           WHERE p.pronamespace = 'ledgerlock'::regnamespace AND p.prokind = 'f' AND p.pronargs > 0
             AND p.prorettype <> 'trigger'::regtype
             AND p.proname NOT LIKE '\\_ll10\\_x%'  -- R1's comparisons: called by WHEN clauses, not people
             AND (has_function_privilege('ll_admin', p.oid, 'EXECUTE')
                  OR has_function_privilege('ll_auditor', p.oid, 'EXECUTE'))
           ORDER BY 1""").fetchall()


def test_every_api_function_called_with_nulls_says_what_is_missing(db):
    db.protect_invoice()
    functions = api_functions(db.owner())
    assert len(functions) > 40 and any(name == "approve_unlock" for _, name, _ in functions)
    problems = []
    for signature, name, args in functions:
        conn = db.connect("admin")
        try:
            conn.execute(f"SELECT ledgerlock.{name}({args})").fetchall()
        except psycopg.Error as exc:
            state, message = exc.diag.sqlstate, exc.diag.message_primary or ""
            if state.startswith("XX") or state in ("P0002", "P0003"):  # internal, or PL/pgSQL's own "no rows"
                problems.append((signature, state, message))
            elif state not in STATE_ERRORS and (not NAMES_WHAT_IS_MISSING.search(message) or HOLE.search(message)):
                problems.append((signature, state, message))
        finally:
            conn.close()
    assert problems == [], "\n".join(map(repr, problems))


def test_a_missing_id_is_named_and_a_real_one_is_the_permitted_neighbour(db):
    db.owner().execute("SELECT ledgerlock.set_four_eyes(true)")
    admin = db.connect("admin")
    lock = admin.execute("SELECT ledgerlock.lock_period('1', '2025-01-01', '2025-01-31', 'hard')").fetchone()[0]
    request = admin.execute("SELECT ledgerlock.request_unlock(%s, 'late invoice')", (lock,)).fetchone()[0]
    for call, message in (
        ("SELECT ledgerlock.withdraw_unlock(NULL)", "withdraw_unlock requires the id of an unlock request"),
        ("SELECT ledgerlock.approve_unlock(NULL)", "approve_unlock requires the id of an unlock request"),
        ("SELECT ledgerlock.relock(NULL)", "relock requires the id of a lock"),
        ("SELECT ledgerlock.unlock_period(NULL, 'x')", "unlock_period requires the id of a lock"),
        ("SELECT ledgerlock.complete_close_task(NULL, 'x')", "complete_close_task requires the id of a close task"),
        ("SELECT ledgerlock.repost_skipped(NULL)", "repost_skipped requires the id of a skipped write"),
        ("SELECT ledgerlock.protect(NULL, 'issued_on')", "protect requires a table"),
        ("SELECT ledgerlock.protect('invoice', NULL)",
         "protect requires a date column (the date that places a row in a lock window)"),
        ("SELECT ledgerlock.protect_lines('invoice_line', NULL)",
         "protect_lines requires a parent table and a child table"),
        ("SELECT ledgerlock.revoke_scope('ll_app', NULL)", "revoke_scope requires a role and a scope"),
        ("SELECT * FROM ledgerlock.why_locked('invoice', NULL)", "why_locked requires a table and a row's key"),
    ):
        with refused("22023", "^" + re.escape(message) + "$"):
            db.connect("admin").execute(call)
    # the permitted neighbour: the same call with the real id
    admin.execute("SELECT ledgerlock.withdraw_unlock(%s)", (request,))
    status = db.owner().execute("SELECT status FROM ledgerlock.unlock_request WHERE id = %s", (request,)).fetchone()
    assert status == ("withdrawn",)
