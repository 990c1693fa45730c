"""R2 against a hostile application: client-settable state never decides a final number unchecked, and the
statements ledgerlock cannot prove gapless are refused whole (LL009), with their permitted neighbours."""

from __future__ import annotations

import hashlib

import pytest

from lltest import lives_ok, refused

FORMAT = "INV-{YYYY}-{SEQ:5}"


@pytest.fixture
def app(db):
    db.protect_invoice(number_column="number", number_format=FORMAT)
    app = db.connect("app")
    app.execute("INSERT INTO invoice (id, company_id, issued_on) "
                "SELECT g, 1, '2026-02-01' FROM generate_series(1, 6) g")
    return app


def slot(db, prefix="INV-2026-", suffix=""):
    """The name of the setting where a statement keeps its position in a series (anyone can compute it)."""
    key = "t" + hashlib.md5(b"public.invoice").hexdigest()[:16]  # the table's key (ledgerlock._table_key)
    return "ledgerlock.numbering_" + hashlib.md5(f"{key}\x1f{prefix}\x1f{suffix}".encode()).hexdigest()


def state(db):
    owner = db.owner()
    return (
        owner.execute("SELECT id, number FROM invoice WHERE status = 'approved' ORDER BY id").fetchall(),
        owner.execute("SELECT series, last_value FROM ledgerlock.number_series").fetchall(),
        owner.execute("SELECT count(*) FROM ledgerlock.number_counter WHERE open_from IS NOT NULL").fetchone()[0],
    )


def test_a_claimed_range_set_before_the_statement_is_refused(db, app):
    app.execute("SELECT set_config(%s, '1,100,1', false)", (slot(db),))  # "I already hold 1..100"
    with refused("LL009", r"^final numbering of public\.invoice refused: 2 rows became final, 0 carry a number taken"):
        app.execute("UPDATE invoice SET status = 'approved' WHERE id IN (1, 2)")
    assert state(db) == ([], [], 0)
    app.execute("RESET ALL")
    lives_ok(app, "UPDATE invoice SET status = 'approved' WHERE id IN (1, 2)")  # the permitted neighbour
    assert state(db)[:2] == ([(1, "INV-2026-00001"), (2, "INV-2026-00002")], [("INV-2026-{SEQ}", 2)])


def test_a_position_changed_in_the_middle_of_the_statement_is_refused(db, app):
    """The classic bypass: SET col = set_config(...) in the very UPDATE that finalizes the rows."""
    with refused("LL009", r"3 rows became final, 1 carry a number taken in this statement"):
        app.execute(
            "UPDATE invoice SET status = 'approved', "
            "note = CASE WHEN id = 2 THEN set_config(%s, '5,100,1', true) END WHERE id IN (1, 2, 3)",
            (slot(db),),
        )
    assert state(db) == ([], [], 0)


def test_a_position_moved_back_gives_a_duplicate_which_is_refused(db, app):
    with refused("LL009", r"handed out twice"):
        app.execute("UPDATE invoice SET status = 'approved', "
                    "note = CASE WHEN id = 3 THEN set_config(%s, '1,16,4', true) END WHERE id IN (1, 2, 3, 4)",
                    (slot(db),))
    assert state(db) == ([], [], 0)


def test_the_counter_order_hint_cannot_open_anything(db, app):
    app.execute("SELECT set_config('ledgerlock.numbering_counters_held', '', false)")
    app.execute("UPDATE invoice SET status = 'approved' WHERE id = 1")
    assert state(db)[:2] == ([(1, "INV-2026-00001")], [("INV-2026-{SEQ}", 1)])


def test_insert_on_conflict_do_nothing_of_existing_final_rows_is_fine(db, app):
    app.execute("UPDATE invoice SET status = 'approved' WHERE id IN (1, 2)")
    app.execute("""INSERT INTO invoice (id, company_id, status, issued_on) VALUES (1, 1, 'approved', '2026-02-01'),
                   (2, 1, 'approved', '2026-02-01') ON CONFLICT (id) DO NOTHING""")  # an import run twice
    assert state(db)[:2] == ([(1, "INV-2026-00001"), (2, "INV-2026-00002")], [("INV-2026-{SEQ}", 2)])


def test_insert_on_conflict_skipping_rows_between_numbered_ones_is_refused(db, app):
    app.execute("UPDATE invoice SET status = 'approved' WHERE id = 1")
    with refused("LL009", r"leave a hole after 1"):
        app.execute("""INSERT INTO invoice (id, company_id, status, issued_on) VALUES (1, 1, 'approved', '2026-02-01'),
                       (10, 1, 'approved', '2026-02-01') ON CONFLICT (id) DO NOTHING""")
    assert state(db)[1] == [("INV-2026-{SEQ}", 1)]
    app.execute("INSERT INTO invoice (id, company_id, status, issued_on) VALUES (10, 1, 'approved', '2026-02-01')")
    assert state(db)[1] == [("INV-2026-{SEQ}", 2)]


def test_upsert_finalizing_through_its_update_part_is_numbered(db, app):
    app.execute("""INSERT INTO invoice (id, company_id, issued_on) VALUES (1, 1, '2026-02-01')
                   ON CONFLICT (id) DO UPDATE SET status = 'approved'""")
    assert state(db)[:2] == ([(1, "INV-2026-00001")], [("INV-2026-{SEQ}", 1)])


BOTH_WAYS = (r"^one statement on public\.invoice made rows final both by inserting and by updating them \(an INSERT "
             r"\.\.\. ON CONFLICT DO UPDATE, a MERGE, a query whose WITH clauses insert and update, or an UPDATE "
             r"that moves rows to another partition\); ledgerlock cannot prove their final numbers gapless$")


def test_upsert_finalizing_through_both_parts_is_refused(db, app):
    with refused("LL009", BOTH_WAYS):
        app.execute("""INSERT INTO invoice (id, company_id, status, issued_on) VALUES
                       (1, 1, 'approved', '2026-02-01'), (20, 1, 'approved', '2026-02-01')
                       ON CONFLICT (id) DO UPDATE SET status = 'approved'""")
    assert state(db) == ([], [], 0)


@pytest.mark.parametrize("statement", [
    """MERGE INTO invoice t USING (VALUES (1, 'approved'), (30, 'approved')) AS s(id, st) ON t.id = s.id
       WHEN MATCHED THEN UPDATE SET status = s.st
       WHEN NOT MATCHED THEN INSERT (id, company_id, issued_on, status) VALUES (s.id, 1, '2026-02-03', s.st)""",
    """WITH i AS (INSERT INTO invoice (id, company_id, issued_on, status) VALUES (30, 1, '2026-02-03', 'approved')
               RETURNING id)
       UPDATE invoice SET status = 'approved' WHERE id = 1""",
])
def test_a_merge_or_a_writable_cte_finalizing_by_inserting_and_updating_is_refused_by_name(db, app, statement):
    """Such a query's inserted and updated rows share one settle step, as an upsert's do: the same refusal,
    and a message that names what the application ran."""
    with refused("LL009", BOTH_WAYS) as info:
        app.execute(statement)
    assert info.value.diag.message_hint.startswith("make rows final by inserting them in one statement")
    assert state(db) == ([], [], 0)
    # the permitted neighbours: the same query making rows final one way only
    lives_ok(app, """MERGE INTO invoice t USING (VALUES (1, 'approved'), (30, 'draft')) AS s(id, st) ON t.id = s.id
                     WHEN MATCHED THEN UPDATE SET status = s.st
                     WHEN NOT MATCHED THEN INSERT (id, company_id, issued_on, status)
                                           VALUES (s.id, 1, '2026-02-03', s.st)""")
    assert state(db)[0] == [(1, "INV-2026-00001")]


def test_a_later_before_trigger_renumbering_rows_is_caught(db, app):
    """The table owner adds a BEFORE trigger that fires after ll_40 and rewrites the number."""
    owner = db.owner()
    owner.execute("""CREATE FUNCTION public.renumber() RETURNS trigger LANGUAGE plpgsql AS
                     $$ BEGIN NEW.number := 'INV-2026-00042'; RETURN NEW; END $$""")
    owner.execute("CREATE TRIGGER zz_renumber BEFORE UPDATE ON invoice FOR EACH ROW EXECUTE FUNCTION public.renumber()")
    with refused("LL009", r"1 rows became final, 0 carry a number taken in this statement"):
        app.execute("UPDATE invoice SET status = 'approved' WHERE id = 1")
    owner.execute("DROP TRIGGER zz_renumber ON invoice")
    app.execute("UPDATE invoice SET status = 'approved' WHERE id = 1")
    assert state(db)[:2] == ([(1, "INV-2026-00001")], [("INV-2026-{SEQ}", 1)])


# One-row statements are proven by a shorter path (one UPDATE that closes the range only when the row carries
# the one number the statement took); these attacks must still fall through to the full checks and be refused.

def test_a_claimed_range_on_a_one_row_insert_or_update_is_refused(db, app):
    app.execute("SELECT set_config(%s, '1,100,1', false)", (slot(db),))
    with refused("LL009", r"1 rows became final, 0 carry a number taken in this statement"):
        app.execute("UPDATE invoice SET status = 'approved' WHERE id = 1")
    with refused("LL009", r"1 rows became final, 0 carry a number taken in this statement"):
        app.execute("INSERT INTO invoice (id, company_id, status, issued_on) VALUES (30, 1, 'approved', '2026-02-01')")
    assert state(db) == ([], [], 0)
    app.execute("RESET ALL")
    lives_ok(app, "UPDATE invoice SET status = 'approved' WHERE id = 1")  # the permitted neighbours
    lives_ok(app, "INSERT INTO invoice (id, company_id, status, issued_on) VALUES (30, 1, 'approved', '2026-02-01')")
    assert state(db) == ([(1, "INV-2026-00001"), (30, "INV-2026-00002")], [("INV-2026-{SEQ}", 2)], 0)


def test_a_one_row_statement_replaying_the_last_number_of_its_transaction_is_refused(db, app):
    """The number the hint replays is the counter's last value: only the range the statement opened proves it."""
    app.execute("BEGIN")
    app.execute("UPDATE invoice SET status = 'approved' WHERE id = 1")
    app.execute("SELECT set_config(%s, '1,1,1', true)", (slot(db),))  # "1 is still mine"
    with refused("LL009", r"1 rows became final, 0 carry a number taken in this statement"):
        app.execute("UPDATE invoice SET status = 'approved' WHERE id = 2")
    app.execute("ROLLBACK")
    assert state(db) == ([], [], 0)


def test_one_row_statements_in_savepoints_and_in_two_series_stay_gapless(db, app):
    app.execute("UPDATE invoice SET issued_on = '2025-03-01' WHERE id IN (5, 6)")
    app.execute("BEGIN")
    app.execute("UPDATE invoice SET status = 'approved' WHERE id = 1")
    app.execute("SAVEPOINT s")
    app.execute("UPDATE invoice SET status = 'approved' WHERE id = 2")
    app.execute("UPDATE invoice SET status = 'approved' WHERE id = 5")
    app.execute("ROLLBACK TO SAVEPOINT s")
    app.execute("UPDATE invoice SET status = 'approved' WHERE id = 3")
    app.execute("UPDATE invoice SET status = 'approved' WHERE id = 6")
    app.execute("UPDATE invoice SET status = 'approved' WHERE id IN (2, 5)")  # two series in one statement
    app.execute("COMMIT")
    assert state(db) == ([(1, "INV-2026-00001"), (2, "INV-2026-00003"), (3, "INV-2026-00002"),
                          (5, "INV-2025-00002"), (6, "INV-2025-00001")],
                         [("INV-2025-{SEQ}", 2), ("INV-2026-{SEQ}", 3)], 0)
    assert db.owner().execute("SELECT count(*) FROM ledgerlock.number_gaps(NULL)").fetchone()[0] == 0


def test_a_one_row_statement_keeps_no_position_and_one_set_behind_it_is_refused_next(db, app):
    """A one-row finalization keeps no position (its range of one number is used up) and its settle step resets
    none. A position the client sets after the row took its number, in RETURNING (which runs before the
    statement's settle step), is therefore left behind: the next statement that follows it replays a number
    and is refused."""
    hint = "SELECT current_setting(%s, true)"
    app.execute("BEGIN")
    app.execute("UPDATE invoice SET status = 'approved' WHERE id = 1")
    assert app.execute(hint, (slot(db),)).fetchone()[0] in (None, "")
    app.execute("UPDATE invoice SET status = 'approved' WHERE id IN (2, 3)")  # several rows keep one, then reset it
    assert app.execute(hint, (slot(db),)).fetchone()[0] == ""
    app.execute("INSERT INTO invoice (id, company_id, status, issued_on) VALUES (30, 1, 'approved', '2026-02-01') "
                "RETURNING set_config(%s, '4,4,1', true)", (slot(db),))  # "4 is still mine"
    assert app.execute(hint, (slot(db),)).fetchone()[0] == "4,4,1"
    with refused("LL009", r"1 rows became final, 0 carry a number taken in this statement"):
        app.execute("UPDATE invoice SET status = 'approved' WHERE id = 4")
    app.execute("ROLLBACK")
    assert state(db) == ([], [], 0)
    app.execute("BEGIN")  # the permitted neighbour: the same statements without the setting
    app.execute("UPDATE invoice SET status = 'approved' WHERE id = 1")
    app.execute("UPDATE invoice SET status = 'approved' WHERE id IN (2, 3)")
    app.execute("INSERT INTO invoice (id, company_id, status, issued_on) VALUES (30, 1, 'approved', '2026-02-01')")
    app.execute("UPDATE invoice SET status = 'approved' WHERE id = 4")
    app.execute("COMMIT")
    assert state(db) == ([(1, "INV-2026-00001"), (2, "INV-2026-00002"), (3, "INV-2026-00003"), (4, "INV-2026-00005"),
                          (30, "INV-2026-00004")], [("INV-2026-{SEQ}", 5)], 0)
    assert db.owner().execute("SELECT count(*) FROM ledgerlock.number_gaps(NULL)").fetchone()[0] == 0


def test_every_role_numbers_one_row_at_a_time_and_none_gets_a_forged_position_through(db, app):
    """The one-row path as the application, a tenant admin (limited to scope 1) and an admin: each takes the
    next number, marks it paid without touching the counter, and is refused when it replays a number through
    a position it set itself; the counter never keeps a range open."""
    db.owner().execute("SELECT ledgerlock.grant_scope('ll_admin2', '1')")
    for n, (row, role) in enumerate(((1, "app"), (2, "admin2"), (3, "admin")), start=1):
        conn = app if role == "app" else db.connect(role)
        lives_ok(conn, f"UPDATE invoice SET status = 'approved' WHERE id = {row}")
        lives_ok(conn, f"UPDATE invoice SET paid = true WHERE id = {row}")
        assert state(db)[1:] == ([("INV-2026-{SEQ}", n)], 0), role
        conn.execute("BEGIN")
        conn.execute("SELECT set_config(%s, %s, true)", (slot(db), f"{n},{n},1"))  # "the last number is mine"
        with refused("LL009", r"1 rows became final, 0 carry a number taken in this statement"):
            conn.execute(f"UPDATE invoice SET status = 'approved' WHERE id = {row + 3}")
        conn.execute("ROLLBACK")
    assert state(db) == ([(1, "INV-2026-00001"), (2, "INV-2026-00002"), (3, "INV-2026-00003")],
                         [("INV-2026-{SEQ}", 3)], 0)
    assert db.owner().execute("SELECT count(*) FROM ledgerlock.number_gaps(NULL)").fetchone()[0] == 0
