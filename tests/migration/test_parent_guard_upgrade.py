"""Migration 0046: the parent's guard is generated per parent, and the shared guard_scope_parent of the releases
before goes. A database whose parents' triggers still run it (put back here as the release before left it: a
function of that name that the two triggers run) upgrades in one transaction: the function and its triggers go,
the parent gets its own guard, and a delete of a parent whose child lies in a locked window is still refused."""

from __future__ import annotations

from ledgerlock import migrate
from lltest import lives_ok, refused

SCHEMA = """
CREATE TABLE header (id integer PRIMARY KEY, entity_id integer, posted_on date);
CREATE TABLE line (id integer PRIMARY KEY, header_id integer REFERENCES header ON DELETE CASCADE, entity_id integer);
INSERT INTO header VALUES (1, 1, '2026-03-10'), (2, 1, '2026-04-10');
INSERT INTO line VALUES (1, 1, 1), (2, 2, 1);
GRANT SELECT, INSERT, UPDATE, DELETE ON header, line TO ll_app;
SELECT ledgerlock.protect('line', date_column => 'header_id.posted_on', scope_column => 'entity_id');
SELECT ledgerlock.lock_period('1', '2026-03-01', '2026-03-31', 'hard');
"""

PARENT_GUARDS = ("SELECT tgname, tgfoid::regproc::text FROM pg_trigger WHERE tgrelid = 'header'::regclass "
                 "AND tgname LIKE 'll\\_%%' ORDER BY 1")


def test_the_parents_triggers_move_from_the_shared_guard_to_their_own(db):
    owner = db.owner()
    owner.execute(SCHEMA)
    generated = owner.execute(PARENT_GUARDS).fetchall()[0][1]
    # the release before: the shared guard (here one that lets everything by, so that the test sees it go)
    owner.execute("SELECT ledgerlock._ddl_permit('ledgerlock'::regnamespace::oid, true)")
    owner.execute("CREATE FUNCTION ledgerlock.guard_scope_parent() RETURNS trigger LANGUAGE plpgsql AS "
                  "$$ BEGIN RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END; END $$")
    owner.execute("SELECT ledgerlock._ddl_permit('header'::regclass, true)")
    for tgname, when in (("ll_20_scope_parent_update", "BEFORE UPDATE"),
                         ("ll_20_scope_parent_delete", "BEFORE DELETE")):
        owner.execute(f"CREATE OR REPLACE TRIGGER {tgname} {when} ON header FOR EACH ROW "
                      "EXECUTE FUNCTION ledgerlock.guard_scope_parent()")
    owner.execute(f"DROP FUNCTION {generated}()")
    owner.execute("DELETE FROM ledgerlock.installed_migration WHERE id = '0046_parent_guard_per_parent'")
    owner.execute("DELETE FROM ledgerlock.installed_code")  # as after an upgrade: the digest is new
    assert owner.execute(PARENT_GUARDS).fetchall() == [("ll_20_scope_parent_delete", "ledgerlock.guard_scope_parent"),
                                                       ("ll_20_scope_parent_update", "ledgerlock.guard_scope_parent")]

    report = migrate.migrate(db.conninfo())

    assert report.applied == ["0046_parent_guard_per_parent"]
    assert owner.execute("SELECT to_regprocedure('ledgerlock.guard_scope_parent()')").fetchone()[0] is None
    assert owner.execute(PARENT_GUARDS).fetchall() == [("ll_20_scope_parent_delete", generated),
                                                       ("ll_20_scope_parent_update", generated)]
    app = db.connect("app")
    with refused("LL002", r"line id=1 cannot be taken out of 2026-03-10 by deleting header id=1"):
        app.execute("DELETE FROM header WHERE id = 1")
    lives_ok(app, "DELETE FROM header WHERE id = 2")
    assert owner.execute("SELECT count(*) FROM ledgerlock.doctor_findings() WHERE severity = 'critical'"
                         ).fetchone()[0] == 0
