"""R5: the trail of everything the demo did, a verification, and a superuser's tampering caught."""

TITLE = "Every change leaves evidence (R5)"


def run(demo) -> None:
    demo.say("Every write to a protected table and every lock event was recorded, with who (the database\n"
             "login), when, what before and after, and the reason the application declared:")
    demo.app.execute("SET ledgerlock.actor = 'maria@acme'")
    demo.app.execute("SET ledgerlock.reason = 'customer asked for a PO number'")
    demo.run(demo.app, "UPDATE invoice SET note = 'PO 4711' WHERE status = 'draft' AND id = "
                       "(SELECT min(id) FROM invoice WHERE status = 'draft')")
    demo.run(demo.admin, """SELECT seq, operation, table_name, row_key, db_user, actor, reason,
        array_to_string(changed_columns, ',') AS changed
        FROM ledgerlock.audit_log ORDER BY seq DESC LIMIT 8""", who="auditor")
    demo.say("db_user is the session user, which the database vouches for; actor and reason are what the\n"
             "application said (SET ledgerlock.actor / ledgerlock.reason): recorded, never trusted for anything.")
    demo.say("Each event carries its own SHA-256; a sealer links committed events into one chain (run\n"
             "`ledgerlock audit seal --every 1` as a service). The digest is the chain head: keep it outside\n"
             "the database (mail it, print it, file it).")
    rows = demo.run(demo.admin, "SELECT ledgerlock.audit_digest()", who="auditor")
    digest = rows[0][0]
    demo.run(demo.admin, "SELECT ok, events, sealed, problem FROM ledgerlock.verify_audit(%s)", (digest,),
             who="auditor")
    demo.say("Nobody rewrites history through SQL, not even the owner:")
    demo.refused(demo.admin, "UPDATE ledgerlock.audit_event SET actor = 'nobody'", who="owner")
    demo.say("A superuser can switch the guard off and edit an event. It is detected:")
    demo.run(demo.admin, "ALTER TABLE ledgerlock.audit_event DISABLE TRIGGER ll_90_append_only", who="superuser")
    demo.run(demo.admin, """UPDATE ledgerlock.audit_event SET new_row = jsonb_set(new_row, '{amount}', '1.00')
        WHERE seq = (SELECT min(seq) FROM ledgerlock.audit_event WHERE operation = 'INSERT')""", who="superuser")
    demo.run(demo.admin, "SELECT ok, problems, problem FROM ledgerlock.verify_audit(%s)", (digest,),
             who="auditor")
    demo.say("Putting the event back as it was makes the trail verify again (the superuser restores the guard):")
    demo.run(demo.admin, """UPDATE ledgerlock.audit_event SET new_row = jsonb_set(new_row, '{amount}',
        to_jsonb(100.00)) WHERE seq = (SELECT min(seq) FROM ledgerlock.audit_event WHERE operation = 'INSERT')""",
             who="superuser")
    demo.run(demo.admin, "ALTER TABLE ledgerlock.audit_event ENABLE ALWAYS TRIGGER ll_90_append_only",
             who="superuser")
    demo.run(demo.admin, "SELECT ok, problems FROM ledgerlock.verify_audit(%s)", (digest,), who="auditor")
    demo.say("For an auditor: `ledgerlock audit bundle --scope 1 --from 2026-01-01 --to 2026-12-31 -o acme.zip`,\n"
             "checked anywhere with `ledgerlock audit verify --bundle acme.zip --digest <the digest you kept>`.")
