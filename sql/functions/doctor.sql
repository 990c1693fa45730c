-- The checks behind `ledgerlock doctor`: every way the rules could still be got around in this database,
-- as findings a DBA can act on (severity, what, why it matters, the command that fixes it).
-- Severity: critical (a rule can be bypassed now: the doctor exits non-zero), warning (a weakness to fix),
-- info (worth knowing; nothing to fix here). Read-only, SECURITY INVOKER: it sees what its caller sees.
-- One function per check, listed in order by ledgerlock._doctor_checks(); doctor_findings() runs them all.

-- The functions PUBLIC may execute: the documented read API (DESIGN.md; the same list as
-- tests/migration/test_install_paths.py).
CREATE OR REPLACE FUNCTION ledgerlock._public_api()
RETURNS name[]
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ARRAY['has_capability', 'locked_through', 'period_lock_at', 'why_locked', 'begin_override',
                 'audit_digest']::name[]
$$;
REVOKE ALL ON FUNCTION ledgerlock._public_api() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._public_api() TO ledgerlock_admin, ledgerlock_auditor;

-- Protected tables and all their partitions, with the protected table each belongs to.
CREATE OR REPLACE FUNCTION ledgerlock._guarded_relations()
RETURNS TABLE(rel regclass, root regclass)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.relid, p.tbl FROM ledgerlock.protected_table p, ledgerlock._partition_tree(p.tbl) t
$$;
REVOKE ALL ON FUNCTION ledgerlock._guarded_relations() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._guarded_relations() TO ledgerlock_admin, ledgerlock_auditor;


-- Who owns the protected tables: the owner can drop or disable any guard.
CREATE OR REPLACE FUNCTION ledgerlock._doctor_table_owners()
RETURNS TABLE(severity text, check_name text, object text, finding text, why text, fix text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
    v record;
BEGIN
    FOR r IN
        SELECT g.rel, g.root, o.rolname AS owner, o.rolcanlogin, o.rolsuper
        FROM (SELECT * FROM ledgerlock._guarded_relations()  -- and the parents children read scopes or dates from
              UNION SELECT * FROM ledgerlock._period_parents()) g
        JOIN pg_catalog.pg_class c ON c.oid = g.rel
        JOIN pg_catalog.pg_roles o ON o.oid = c.relowner
        ORDER BY 1
    LOOP
        IF r.rolcanlogin AND NOT r.rolsuper THEN
            RETURN QUERY SELECT 'critical', 'table owner', r.rel::text,
                pg_catalog.format('%s is owned by %s, a role that can log in', r.rel, r.owner),
                'a table''s owner can drop or disable its guard triggers, detach its partitions or rewrite it',
                pg_catalog.format('ALTER TABLE %s OWNER TO <a NOLOGIN owner role>  -- see docs/hardening.md',
                                  r.rel);
        ELSIF r.rolcanlogin THEN
            RETURN QUERY SELECT 'warning', 'table owner', r.rel::text,
                pg_catalog.format('%s is owned by superuser %s', r.rel, r.owner),
                'every session of that login acts as the owner of the protected table',
                pg_catalog.format('ALTER TABLE %s OWNER TO <a NOLOGIN owner role>  -- see docs/hardening.md',
                                  r.rel);
        END IF;
        FOR v IN
            SELECT m.rolname FROM pg_catalog.pg_roles m
            WHERE m.rolcanlogin AND NOT m.rolsuper AND m.rolname <> r.owner
              AND pg_catalog.pg_has_role(m.oid, (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = r.rel),
                                         'USAGE')
            ORDER BY 1
        LOOP
            RETURN QUERY SELECT 'critical', 'table owner', r.rel::text,
                pg_catalog.format('login role %s is a member of %s, the owner of %s', v.rolname, r.owner, r.rel),
                'a member of the owner role acts as the owner: it can drop or disable the guards',
                pg_catalog.format('REVOKE %I FROM %I', r.owner, v.rolname);
        END LOOP;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._doctor_table_owners() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._doctor_table_owners() TO ledgerlock_admin, ledgerlock_auditor;

-- Privileges on protected tables that reach around the row guards.
CREATE OR REPLACE FUNCTION ledgerlock._doctor_table_privileges()
RETURNS TABLE(severity text, check_name text, object text, finding text, why text, fix text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT g.rel, a.privilege_type, coalesce(gr.rolname, 'PUBLIC') AS grantee
        FROM (SELECT * FROM ledgerlock._guarded_relations()  -- and the parents children read scopes or dates from
              UNION SELECT * FROM ledgerlock._period_parents()) g
        JOIN pg_catalog.pg_class c ON c.oid = g.rel
        CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) a
        LEFT JOIN pg_catalog.pg_roles gr ON gr.oid = a.grantee
        WHERE a.grantee <> c.relowner AND a.privilege_type IN ('TRIGGER', 'TRUNCATE')
        ORDER BY 1, 2, 3
    LOOP
        IF r.privilege_type = 'TRIGGER' THEN
            RETURN QUERY SELECT 'critical', 'table privilege', r.rel::text,
                pg_catalog.format('%s may create triggers on %s', r.grantee, r.rel),
                'a BEFORE trigger that fires after ledgerlock''s guard can change a final row it has just checked',
                pg_catalog.format('REVOKE TRIGGER ON %s FROM %s', r.rel, r.grantee);
        ELSE
            RETURN QUERY SELECT 'info', 'table privilege', r.rel::text,
                pg_catalog.format('%s holds TRUNCATE on %s', r.grantee, r.rel),
                'the TRUNCATE guard refuses it, but the privilege serves no purpose on a protected table',
                pg_catalog.format('REVOKE TRUNCATE ON %s FROM %s', r.rel, r.grantee);
        END IF;
    END LOOP;
    -- CREATE in a schema of the books, for a role that owns none of its protected tables (PUBLIC holds it on
    -- schema public of every database made before PostgreSQL 15): the rules do not care, they pin their
    -- search_path, but an admin's psql session or script does.
    FOR r IN
        SELECT DISTINCT n.nspname, coalesce(gr.rolname, 'PUBLIC') AS grantee
        FROM (SELECT * FROM ledgerlock._guarded_relations() UNION SELECT * FROM ledgerlock._period_parents()) g
        JOIN pg_catalog.pg_class c ON c.oid = g.rel
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        CROSS JOIN LATERAL pg_catalog.aclexplode(n.nspacl) a
        LEFT JOIN pg_catalog.pg_roles gr ON gr.oid = a.grantee
        WHERE a.privilege_type = 'CREATE' AND a.grantee <> n.nspowner AND gr.rolsuper IS NOT TRUE
          AND NOT EXISTS (SELECT FROM pg_catalog.pg_class o WHERE o.relnamespace = n.oid AND o.relowner = a.grantee
                            AND o.oid IN (SELECT x.rel FROM ledgerlock._guarded_relations() x))
        ORDER BY 1, 2
    LOOP
        RETURN QUERY SELECT 'warning', 'schema privilege', r.nspname::text,
            pg_catalog.format('%s may create objects in schema %s, which holds protected tables', r.grantee,
                              r.nspname),
            'a function or operator planted there is what an admin''s unqualified SQL (psql, scripts) may run, '
            'with the admin''s rights, instead of the built-in it meant (CVE-2018-1058); ledgerlock''s own '
            'functions pin search_path and are not affected',
            pg_catalog.format('REVOKE CREATE ON SCHEMA %I FROM %s', r.nspname,
                              CASE r.grantee WHEN 'PUBLIC' THEN 'PUBLIC' ELSE pg_catalog.quote_ident(r.grantee) END);
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._doctor_table_privileges() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._doctor_table_privileges() TO ledgerlock_admin, ledgerlock_auditor;

-- A parameter's defaults that sessions of this database take at connection (ALTER DATABASE / ALTER ROLE ... SET,
-- for this database or every one) and whose value matches value_regex (lower case): who takes it, in words,
-- and the RESET that takes it away.
CREATE OR REPLACE FUNCTION ledgerlock._doctor_setting_defaults(parameter text, value_regex text)
RETURNS TABLE(takers text, fix text)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.format('%s%s', coalesce(pg_catalog.quote_ident(ro.rolname), 'every role'),
                             CASE WHEN s.setdatabase = 0 THEN ' in every database' ELSE ' in this database' END),
           pg_catalog.format('ALTER %s%s RESET %s',
                             CASE WHEN ro.rolname IS NULL THEN pg_catalog.format('DATABASE %I',
                                                                                 pg_catalog.current_database())
                                  ELSE pg_catalog.format('ROLE %I', ro.rolname) END,
                             CASE WHEN ro.rolname IS NOT NULL AND s.setdatabase <> 0
                                  THEN pg_catalog.format(' IN DATABASE %I', pg_catalog.current_database())
                                  ELSE '' END,
                             parameter)
    FROM pg_catalog.pg_db_role_setting s
    CROSS JOIN LATERAL pg_catalog.unnest(s.setconfig) AS c(setting)
    LEFT JOIN pg_catalog.pg_roles ro ON ro.oid = s.setrole
    WHERE s.setdatabase IN (0, (SELECT d.oid FROM pg_catalog.pg_database d
                                WHERE d.datname = pg_catalog.current_database()))
      AND pg_catalog.lower(c.setting) ~ ('^' || parameter || '=(' || value_regex || ')$')
    ORDER BY 1
$$;
REVOKE ALL ON FUNCTION ledgerlock._doctor_setting_defaults(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._doctor_setting_defaults(text, text) TO ledgerlock_admin, ledgerlock_auditor;

-- Roles that can bypass the rules: superusers, BYPASSRLS, session_replication_role or track_counts granted.
CREATE OR REPLACE FUNCTION ledgerlock._doctor_bypass_roles()
RETURNS TABLE(severity text, check_name text, object text, finding text, why text, fix text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT rolname FROM pg_catalog.pg_roles WHERE rolsuper AND rolcanlogin ORDER BY 1 LOOP
        RETURN QUERY SELECT 'info', 'bypass role', r.rolname::text,
            pg_catalog.format('%s is a superuser', r.rolname),
            'a superuser can switch off any rule; only external audit digests (ledgerlock audit digest) reveal it',
            'keep superuser logins to DBAs; store `ledgerlock audit digest` outside the database regularly';
    END LOOP;
    FOR r IN SELECT rolname FROM pg_catalog.pg_roles WHERE rolbypassrls AND NOT rolsuper ORDER BY 1 LOOP
        RETURN QUERY SELECT 'warning', 'bypass role', r.rolname::text,
            pg_catalog.format('%s has BYPASSRLS', r.rolname),
            'row-level security policies of ledgerlock''s tables do not apply to it',
            pg_catalog.format('ALTER ROLE %I NOBYPASSRLS', r.rolname);
    END LOOP;
    IF pg_catalog.to_regclass('pg_catalog.pg_parameter_acl') IS NOT NULL THEN  -- PostgreSQL 15+
        FOR r IN EXECUTE $q$
            SELECT coalesce(gr.rolname, 'PUBLIC') AS grantee, a.privilege_type, p.parname::text AS parname
            FROM pg_catalog.pg_parameter_acl p CROSS JOIN LATERAL pg_catalog.aclexplode(p.paracl) a
            LEFT JOIN pg_catalog.pg_roles gr ON gr.oid = a.grantee
            WHERE p.parname IN ('session_replication_role', 'track_counts', 'event_triggers')
              AND NOT coalesce(gr.rolsuper, false)
            ORDER BY 3, 1$q$
        LOOP
            RETURN QUERY SELECT 'warning', 'bypass role', r.grantee::text,
                pg_catalog.format('%s may %s %s', r.grantee, r.privilege_type, r.parname),
                CASE r.parname
                    WHEN 'session_replication_role'
                    THEN 'replica mode skips foreign-key checks and every trigger that is not ENABLE ALWAYS'
                    WHEN 'event_triggers'
                    THEN 'with it off, a session fires no event trigger: the DDL guard refuses nothing it does'
                    -- docs/numbering.md, "A write that makes no row final reads no counter"
                    ELSE 'the numbering asks PostgreSQL''s count of the counters a transaction updated whether a '
                         'range can be open; a role that turns the count off and on within one statement can '
                         'leave numbers taken and not given back' END,
                pg_catalog.format('REVOKE %s ON PARAMETER %s FROM %s', r.privilege_type, r.parname, r.grantee);
        END LOOP;
    END IF;
    -- replica mode as a default (a bulk loader's, often): those sessions skip foreign-key checks (ledgerlock's
    -- guards are ENABLE ALWAYS and still run)
    FOR r IN SELECT * FROM ledgerlock._doctor_setting_defaults('session_replication_role', 'replica') LOOP
        RETURN QUERY SELECT 'warning', 'bypass role', 'session_replication_role',
            pg_catalog.format('session_replication_role is replica by default for %s', r.takers),
            'those sessions skip foreign-key checks: a line can name a header that does not exist, a row be '
            'deleted while others reference it where no ledgerlock rule protects the reference',
            r.fix;
    END LOOP;
    -- PostgreSQL 17 on: MAINTAIN, held on every relation by the members of pg_maintain, lets a role LOCK a
    -- table in any mode, ledgerlock's own tables included (their schema is one every client may use)
    IF pg_catalog.to_regrole('pg_maintain') IS NOT NULL THEN
        FOR r IN
            SELECT m.rolname::text AS grantee, 'is a member of pg_maintain' AS what,
                   pg_catalog.format('REVOKE pg_maintain FROM %I', m.rolname) AS fix
            FROM pg_catalog.pg_roles m
            WHERE m.rolcanlogin AND NOT m.rolsuper AND m.rolname <> 'pg_maintain'
              AND pg_catalog.pg_has_role(m.oid, 'pg_maintain', 'MEMBER')
            UNION ALL
            SELECT coalesce(gr.rolname, 'PUBLIC'), pg_catalog.format('holds MAINTAIN on %s', c.oid::regclass),
                   pg_catalog.format('REVOKE MAINTAIN ON %s FROM %s', c.oid::regclass,
                                     coalesce(pg_catalog.quote_ident(gr.rolname), 'PUBLIC'))
            FROM pg_catalog.pg_class c CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) a
            LEFT JOIN pg_catalog.pg_roles gr ON gr.oid = a.grantee
            WHERE c.relnamespace IN ('ledgerlock'::regnamespace, 'ledgerlock_gate'::regnamespace)
              AND a.privilege_type = 'MAINTAIN' AND a.grantee <> c.relowner AND NOT coalesce(gr.rolsuper, false)
            ORDER BY 1, 2
        LOOP
            RETURN QUERY SELECT 'warning', 'bypass role', r.grantee,
                pg_catalog.format('%s %s', r.grantee, r.what),
                'it may LOCK ledgerlock''s own tables (the number counters, the audit trail, the period locks) '
                'and hold them, which stalls every finalization, audited write or lock change until it lets go',
                r.fix;
        END LOOP;
    END IF;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._doctor_bypass_roles() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._doctor_bypass_roles() TO ledgerlock_admin, ledgerlock_auditor;

-- ledgerlock's capability roles: groups nobody logs in as, held by people rather than the application.
CREATE OR REPLACE FUNCTION ledgerlock._doctor_ledgerlock_roles()
RETURNS TABLE(severity text, check_name text, object text, finding text, why text, fix text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT rolname FROM pg_catalog.pg_roles
        WHERE rolname IN ('ledgerlock_admin', 'ledgerlock_controller', 'ledgerlock_auditor') AND rolcanlogin
    LOOP
        RETURN QUERY SELECT 'critical', 'ledgerlock role', r.rolname::text,
            pg_catalog.format('%s can log in', r.rolname),
            'the capability roles are groups; a login on one is a shared account nobody can be held to',
            pg_catalog.format('ALTER ROLE %I NOLOGIN', r.rolname);
    END LOOP;
    -- an application role (DML on a protected table) that is also a ledgerlock admin or controller
    FOR r IN
        SELECT DISTINCT m.rolname, g.rolname AS grp
        FROM pg_catalog.pg_roles m
        JOIN pg_catalog.pg_roles g ON g.rolname IN ('ledgerlock_admin', 'ledgerlock_controller')
        WHERE m.rolcanlogin AND NOT m.rolsuper AND pg_catalog.pg_has_role(m.oid, g.oid, 'MEMBER')
          AND EXISTS (SELECT FROM ledgerlock.protected_table p
                      WHERE pg_catalog.has_table_privilege(m.oid, p.tbl, 'INSERT, UPDATE, DELETE'))
        ORDER BY 1, 2
    LOOP
        RETURN QUERY SELECT 'warning', 'ledgerlock role', r.rolname::text,
            pg_catalog.format('%s writes protected tables and is a member of %s', r.rolname, r.grp),
            'an application login that is also an admin or controller can unprotect, unlock or override for '
            'itself: people hold those roles, not the application',
            pg_catalog.format('REVOKE %I FROM %I  -- grant it to the people who close the books', r.grp,
                              r.rolname);
    END LOOP;
    -- a role whose last scope an earlier release revoked: that left it unlimited (migration 0044's release
    -- leaves it limited to none), and nobody has decided since (a grant, or lift_scope_limit)
    FOR r IN
        SELECT h.grantee AS rolname, h.revoked_at
        FROM (SELECT e.details ->> 'grantee' AS grantee,
                     pg_catalog.max(e.id) FILTER (WHERE e.kind = 'revoke_scope') AS revoked,
                     pg_catalog.max(e.at) FILTER (WHERE e.kind = 'revoke_scope') AS revoked_at,
                     pg_catalog.max(e.id) FILTER (WHERE e.kind IN ('grant_scope', 'lift_scope_limit')) AS decided
              FROM ledgerlock.lock_event e
              WHERE e.kind IN ('grant_scope', 'revoke_scope', 'lift_scope_limit')
              GROUP BY 1) h
        WHERE h.revoked IS NOT NULL AND (h.decided IS NULL OR h.decided < h.revoked)
          AND pg_catalog.to_regrole(h.grantee) IS NOT NULL
          AND NOT EXISTS (SELECT FROM ledgerlock.scope_grant g WHERE g.grantee = pg_catalog.to_regrole(h.grantee))
        ORDER BY 1
    LOOP
        RETURN QUERY SELECT 'warning', 'ledgerlock role', r.rolname,
            pg_catalog.format('%s acts on every scope: its last scope was revoked on %s, before migration 0044, '
                              'which left it unlimited', r.rolname,
                              pg_catalog.to_char(pg_catalog.timezone('UTC', r.revoked_at), 'YYYY-MM-DD')),
            'before migration 0044 a role no grant names was not limited at all: an admin who took a tenant''s '
            'last company away gave it every company (revoking a last scope now leaves the role limited to none)',
            pg_catalog.format('to limit it to no scope: SELECT ledgerlock.grant_scope(%1$L, ''x''); SELECT '
                              'ledgerlock.revoke_scope(%1$L, ''x''); to keep it unlimited on purpose, then: '
                              'SELECT ledgerlock.lift_scope_limit(%1$L, ''<reason>'')', r.rolname);
    END LOOP;
    -- scope limits that hold in this database only (roles are the cluster's, grants each database's)
    IF NOT EXISTS (SELECT FROM ledgerlock.scope_grant) THEN
        RETURN;
    ELSIF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'ledgerlock_scoped') THEN
        RETURN QUERY SELECT 'warning', 'ledgerlock role', 'ledgerlock_scoped',
            'ledgerlock_scoped does not exist: scope grants limit roles in this database only',
            'roles are the cluster''s and scope grants each database''s: a role limited here is unrestricted in '
            'every other database of the cluster where ledgerlock is installed and no grant names it',
            'have a role with CREATEROLE run `ledgerlock sql --roles | psql`, then GRANT ledgerlock_scoped to each '
            'role limited here';
        RETURN;
    END IF;
    FOR r IN
        SELECT g.grantee::text AS rolname, d.names
        FROM (SELECT DISTINCT s.grantee FROM ledgerlock.scope_grant s) g
        CROSS JOIN LATERAL (SELECT pg_catalog.string_agg(pg_catalog.quote_ident(x.datname), ', '
                                                         ORDER BY x.datname) AS names
                            FROM pg_catalog.pg_database x
                            WHERE x.datallowconn AND x.datname <> pg_catalog.current_database()
                              AND pg_catalog.has_database_privilege(g.grantee, x.oid, 'CONNECT')) d
        WHERE d.names IS NOT NULL AND NOT ledgerlock._scoped_everywhere(g.grantee::oid)
        ORDER BY 1
    LOOP
        RETURN QUERY SELECT 'warning', 'ledgerlock role', r.rolname,
            pg_catalog.format('%s is limited to scopes in this database only; it may connect to %s', r.rolname,
                              r.names),
            'where ledgerlock is installed and no grant names it, a role that is not a member of ledgerlock_scoped '
            'is not limited at all: a tenant admin of one company''s books is the admin of the next company''s',
            pg_catalog.format('GRANT ledgerlock_scoped TO %I  -- limited to the scopes granted in each database, '
                              'to none elsewhere', r.rolname);
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._doctor_ledgerlock_roles() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._doctor_ledgerlock_roles() TO ledgerlock_admin, ledgerlock_auditor;


-- Guard triggers every protected relation must carry: the TRUNCATE guard, and the final-row guards
-- where final_when is set.
CREATE OR REPLACE FUNCTION ledgerlock._doctor_missing_guards()
RETURNS TABLE(severity text, check_name text, object text, finding text, why text, fix text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    -- a protected table dropped where no DDL guard refuses it: the registry still names it (by oid)
    FOR r IN
        SELECT p.tbl::oid AS oid, coalesce(ledgerlock._audit_name_of(p.tbl), p.tbl::oid::text) AS name
        FROM ledgerlock.protected_table p WHERE NOT ledgerlock._relation_exists(p.tbl)
        ORDER BY 1
    LOOP
        RETURN QUERY SELECT 'critical', 'guard trigger', r.name,
            pg_catalog.format('protected table %s (oid %s) was dropped while it was protected', r.name, r.oid),
            'its rows went with it, past every guard; the audit trail keeps its events, and verify_audit '
            'reports the table (table_dropped) until an admin retires it',
            pg_catalog.format('once the auditors know: SELECT ledgerlock.unprotect(%s, ''<why it was dropped>''); '
                              'a superuser''s DDL guard (ledgerlock install-ddl-guard) refuses such a DROP', r.oid);
    END LOOP;
    -- a referential rule (R4) one of whose tables was dropped the same way: it guards nothing any more
    FOR r IN
        SELECT x.id, x.kind, x.parent::oid AS parent, x.child::oid AS child FROM ledgerlock.reference_rule x
        WHERE NOT (ledgerlock._relation_exists(x.parent) AND ledgerlock._relation_exists(x.child))
        ORDER BY x.id
    LOOP
        RETURN QUERY SELECT 'warning', 'guard trigger', pg_catalog.format('rule %s', r.id),
            pg_catalog.format('the %s rule #%s names a table that was dropped (oid %s)', r.kind, r.id,
                              CASE WHEN ledgerlock._relation_exists(r.parent) THEN r.child ELSE r.parent END),
            'the rule guards nothing any more, and until it is removed a write its other table''s guard checks '
            'looks for the dropped table and fails',
            CASE r.kind WHEN 'lines'
                THEN pg_catalog.format('SELECT ledgerlock.unprotect_lines(%s, %s, ''<why>'')', r.child, r.parent)
                ELSE pg_catalog.format('SELECT ledgerlock.unprotect_referenced(%s, %s, ''<why>'')', r.parent, r.child)
            END;
    END LOOP;
    FOR r IN
        SELECT g.rel, g.root FROM ledgerlock._guarded_relations() g
        WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_trigger t WHERE t.tgrelid = g.rel AND t.tgname = 'll_00_truncate')
        ORDER BY 1
    LOOP
        RETURN QUERY SELECT 'critical', 'guard trigger', r.rel::text,
            pg_catalog.format('%s has no TRUNCATE guard (ll_00_truncate)', r.rel),
            'TRUNCATE fires no row trigger: without this guard it empties final rows at once',
            'ledgerlock migrate  (or: SELECT ledgerlock.reinstall_guards())';
    END LOOP;
    FOR r IN
        SELECT g.rel, n.tgname FROM ledgerlock._guarded_relations() g
        JOIN ledgerlock.protected_table p ON p.tbl = g.root AND p.final_when_sql IS NOT NULL
        CROSS JOIN (VALUES ('ll_10_final_update'::name), ('ll_10_final_delete'::name)) n(tgname)
        WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_trigger t WHERE t.tgrelid = g.rel AND t.tgname = n.tgname)
        ORDER BY 1, 2
    LOOP
        RETURN QUERY SELECT 'critical', 'guard trigger', r.rel::text,
            pg_catalog.format('%s has no final-row guard %s', r.rel, r.tgname),
            'without it, final rows of the table can be changed or deleted',
            'ledgerlock migrate  (or: SELECT ledgerlock.reinstall_guards())';
    END LOOP;
    FOR r IN
        SELECT pp.parent, pp.child, n.tgname FROM ledgerlock._period_parents() pp
        CROSS JOIN (VALUES ('ll_20_scope_parent_update'::name), ('ll_20_scope_parent_delete'::name)) n(tgname)
        WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_trigger t WHERE t.tgrelid = pp.parent AND t.tgname = n.tgname)
        ORDER BY 1, 3
    LOOP
        RETURN QUERY SELECT 'critical', 'guard trigger', r.parent::text,
            pg_catalog.format('%s has no guard %s, though %s takes its scope or date from it', r.parent, r.tgname,
                              r.child),
            'without it, moving or deleting the parent row moves its children out of a locked period unchecked',
            'ledgerlock migrate  (or: SELECT ledgerlock.reinstall_guards())';
    END LOOP;
    FOR r IN
        SELECT p.tbl FROM ledgerlock.protected_table p WHERE ledgerlock._audit_capture_stale(p.tbl) ORDER BY 1
    LOOP
        RETURN QUERY SELECT 'critical', 'guard trigger', r.tbl::text,
            pg_catalog.format('the audit capture of %s was made for other json columns than it has now', r.tbl),
            'a json column is recorded as jsonb, which drops duplicate keys unnoticed, and verification reports '
            'every row written since as changed',
            'SELECT ledgerlock.reinstall_guards()  (the DDL guard does it at the ALTER TABLE)';
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._doctor_missing_guards() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._doctor_missing_guards() TO ledgerlock_admin, ledgerlock_auditor;

-- The name a protected table had when ledgerlock installed its guards, when the table has been renamed or
-- moved to another schema since (the DDL guard refuses that; without it, the owner can); null otherwise, and
-- for a partition (its rows are filed under the protected table: reinstall_guards puts its guards right).
-- The candidates are the names the audit trail knows the table by: the one its own events are filed under
-- (an audited table), and the registry's rows, whose keys print the table's name (every protected table).
-- A candidate is the old name when it turns the TRUNCATE guard, which every protected table carries, back
-- into the definition whose fingerprint ledgerlock recorded when it installed it.
CREATE OR REPLACE FUNCTION ledgerlock._renamed_from(rel regclass)
RETURNS text
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
AS $$
    SELECT c.name
    FROM pg_catalog.pg_trigger t
    CROSS JOIN LATERAL ((SELECT e.table_name AS name FROM ledgerlock.audit_event e
                         WHERE e.table_oid = rel ORDER BY e.table_oid, e.row_key, e.seq LIMIT 1)
                        UNION
                        SELECT e.row_key ->> 'tbl' FROM ledgerlock.audit_event e
                        WHERE e.table_oid = 'ledgerlock.protected_table'::regclass) AS c
    WHERE t.tgrelid = rel AND t.tgname = 'll_00_truncate' AND t.tgparentid = 0
      AND EXISTS (SELECT FROM ledgerlock.protected_table p WHERE p.tbl = rel)
      AND c.name IS DISTINCT FROM rel::text
      AND pg_catalog.obj_description(t.oid, 'pg_trigger')
          = 'ledgerlock:' || pg_catalog.md5(pg_catalog.replace(pg_catalog.pg_get_triggerdef(t.oid),
                                                               ' ON ' || rel::text || ' ', ' ON ' || c.name || ' '))
    LIMIT 1
$$;
REVOKE ALL ON FUNCTION ledgerlock._renamed_from(regclass) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._renamed_from(regclass) TO ledgerlock_admin, ledgerlock_auditor;

-- What takes a table back to the name ledgerlock protected it under (_renamed_from): a SET SCHEMA when
-- it moved, a RENAME when its name changed.
CREATE OR REPLACE FUNCTION ledgerlock._rename_back_sql(rel regclass, old_name text)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.concat_ws('; ',
               CASE WHEN o.parts[1] <> n.nspname
                    THEN pg_catalog.format('ALTER TABLE %s SET SCHEMA %I', rel, o.parts[1]) END,
               CASE WHEN o.parts[2] <> c.relname
                    THEN pg_catalog.format('ALTER TABLE %I.%I RENAME TO %I', o.parts[1], c.relname, o.parts[2]) END)
    FROM pg_catalog.pg_class c
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    CROSS JOIN (SELECT pg_catalog.parse_ident(old_name) AS parts) o
    WHERE c.oid = rel
$$;
REVOKE ALL ON FUNCTION ledgerlock._rename_back_sql(regclass, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._rename_back_sql(regclass, text) TO ledgerlock_admin, ledgerlock_auditor;

-- Every ll_NN_ trigger: accounted for by a rule (_orphan_guard_triggers), ENABLE ALWAYS, and its
-- definition matching the hash ledgerlock commented it with.
CREATE OR REPLACE FUNCTION ledgerlock._doctor_guard_triggers()
RETURNS TABLE(severity text, check_name text, object text, finding text, why text, fix text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off  -- the names its findings print
AS $$
DECLARE
    r record;
    old_name text;
    renamed regclass[] := '{}';  -- reported once, as a rename, instead of once per guard
BEGIN
    FOR r IN
        SELECT t.tgrelid::regclass AS rel, t.tgname, t.tgenabled, t.tgparentid,
               pg_catalog.obj_description(t.oid, 'pg_trigger') AS hash,
               'ledgerlock:' || pg_catalog.md5(ledgerlock._trigger_text(t.tgrelid::regclass, t.tgname)) AS expected,
               -- ledgerlock's own tables (append-only history) carry guards of their own
               (SELECT c.relnamespace = 'ledgerlock'::regnamespace FROM pg_catalog.pg_class c
                WHERE c.oid = t.tgrelid) AS own,
               o.rel IS NOT NULL AS orphan
        FROM pg_catalog.pg_trigger t
        LEFT JOIN ledgerlock._orphan_guard_triggers() o ON o.rel = t.tgrelid AND o.tgname = t.tgname
        WHERE t.tgname ~ '^ll_[0-9]{2}_' AND NOT t.tgisinternal
        ORDER BY 1, 2
    LOOP
        IF r.orphan THEN
            RETURN QUERY SELECT 'warning', 'guard trigger', r.rel::text,
                pg_catalog.format('%s carries guard %s but is not protected (a detached partition, or a table '
                                  'whose protection was removed by hand)', r.rel, r.tgname),
                'its rows look guarded to a reader of the catalog but no rule is configured for them',
                pg_catalog.format('protect it again (ledgerlock protect %s ...) or drop the leftover trigger', r.rel);
        ELSIF r.tgenabled <> ledgerlock._guard_tgenabled() THEN  -- 'O' on a subscriber (_doctor_replication)
            RETURN QUERY SELECT 'critical', 'guard trigger', r.rel::text,
                pg_catalog.format('guard %s on %s is %s, not ENABLE ALWAYS', r.tgname, r.rel,
                                  CASE r.tgenabled WHEN 'D' THEN 'disabled' WHEN 'R' THEN 'ENABLE REPLICA'
                                       ELSE 'ENABLE (origin only)' END),
                'a disabled guard enforces nothing; an ENABLE (origin) guard is silenced by '
                'session_replication_role = replica',
                pg_catalog.format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', r.rel, r.tgname);
        ELSIF r.tgparentid = 0 AND r.hash IS DISTINCT FROM r.expected AND NOT (r.own AND r.hash IS NULL)
              AND r.rel = ANY (renamed) THEN
            NULL;  -- reported with the rename below
        ELSIF r.tgparentid = 0 AND r.hash IS DISTINCT FROM r.expected AND NOT (r.own AND r.hash IS NULL)
              AND (SELECT ledgerlock._renamed_from(r.rel)) IS NOT NULL THEN
            -- every guard names the table, so all of them read as changed; reinstalling them would not help:
            -- the trail files the table's rows, and its registry row, under the old name
            old_name := ledgerlock._renamed_from(r.rel);
            renamed := renamed || r.rel;
            RETURN QUERY SELECT 'critical', 'renamed table', r.rel::text,
                pg_catalog.format('%s was renamed: ledgerlock protected it as %s, and its guards still name %s',
                                  r.rel, old_name, old_name),
                pg_catalog.format('the audit trail files its rows and its registry entry under %s, so verification '
                                  'reports it until it has that name again; reinstall_guards would not change that '
                                  '(to rename a protected table, unprotect it first, audited, then protect it again)',
                                  old_name),
                ledgerlock._rename_back_sql(r.rel, old_name)
                || '  (then run doctor again: a guard also changed by hand shows only then)';
        ELSIF r.tgparentid = 0 AND r.hash IS DISTINCT FROM r.expected AND NOT (r.own AND r.hash IS NULL) THEN
            RETURN QUERY SELECT 'critical', 'guard trigger', r.rel::text,
                pg_catalog.format('guard %s on %s differs from the definition ledgerlock installed', r.tgname, r.rel),
                'a trigger redefined by hand may no longer check what the rule says',
                'ledgerlock migrate  (or: SELECT ledgerlock.reinstall_guards())';
        END IF;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._doctor_guard_triggers() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._doctor_guard_triggers() TO ledgerlock_admin, ledgerlock_auditor;

-- A trigger of the application's that fires after the final-row guard can still change NEW.
CREATE OR REPLACE FUNCTION ledgerlock._doctor_foreign_triggers()
RETURNS TABLE(severity text, check_name text, object text, finding text, why text, fix text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT t.tgrelid::regclass AS rel, t.tgname FROM pg_catalog.pg_trigger t
        JOIN (SELECT * FROM ledgerlock._guarded_relations()
              UNION SELECT * FROM ledgerlock._period_parents()) g ON g.rel = t.tgrelid
        WHERE NOT t.tgisinternal AND t.tgname !~ '^ll_[0-9]{2}_'
          AND t.tgname::text COLLATE "C" > 'll_10'
          AND (t.tgtype & 2) <> 0 AND (t.tgtype & 1) <> 0 AND (t.tgtype & 16) <> 0  -- BEFORE ROW UPDATE
        ORDER BY 1, 2
    LOOP
        RETURN QUERY SELECT 'warning', 'foreign trigger', r.rel::text,
            pg_catalog.format('BEFORE UPDATE trigger %s on %s fires after ledgerlock''s final-row guard',
                              r.tgname, r.rel),
            'triggers fire in name order: this one may change a final row after the guard accepted the update',
            pg_catalog.format('ALTER TRIGGER %I ON %s RENAME TO <a name sorting before ll_>', r.tgname, r.rel);
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._doctor_foreign_triggers() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._doctor_foreign_triggers() TO ledgerlock_admin, ledgerlock_auditor;

-- A final_when or child_condition stored before protect screened what PostgreSQL calls immutable but prints by
-- a session setting (ledgerlock._settings_printed): read from the WHEN clause of the trigger that evaluates
-- it (R1's delete guard holds final_when alone, R4's child insert guard the child_condition), as parsed.
CREATE OR REPLACE FUNCTION ledgerlock._doctor_conditions()
RETURNS TABLE(severity text, check_name text, object text, finding text, why text, fix text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT p.tbl::text AS rel, 'final_when' AS what, p.final_when AS cond, x.phrase,
               'a writer''s setting decides whether a row is final: under it a final row can be changed' AS why,
               pg_catalog.format('protect %s again with a final_when that compares typed values (rate = 1.5, '
                                 'not rate::text = ''1.5''): protect refuses the other kind since 2026-11-29',
                                 p.tbl) AS fix
        FROM ledgerlock.protected_table p
        JOIN pg_catalog.pg_trigger t ON t.tgrelid = p.tbl AND t.tgname = 'll_10_final_delete'
        CROSS JOIN LATERAL ledgerlock._settings_printed(t.tgqual::text) AS x(phrase)
        UNION ALL
        SELECT pg_catalog.format('%s -> %s', f.child, f.parent), 'child_condition', f.child_condition, x.phrase,
               'a writer''s setting decides whether a child row freezes its parent: under it the parent can be '
               'changed', pg_catalog.format('protect_referenced(%L, %L) again with a child_condition that '
                                            'compares typed values', f.parent::text, f.child::text)
        FROM ledgerlock.reference_rule f
        JOIN pg_catalog.pg_trigger t ON t.tgrelid = f.child AND t.tgname = 'll_30_r' || f.id || '_child_insert'
        CROSS JOIN LATERAL ledgerlock._settings_printed(t.tgqual::text) AS x(phrase)
        WHERE f.kind = 'referenced'
        ORDER BY 1, 2, 4
    LOOP
        RETURN QUERY SELECT 'critical', 'condition', r.rel,
            pg_catalog.format('%s %L %s', r.what, r.cond, r.phrase), r.why, r.fix;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._doctor_conditions() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._doctor_conditions() TO ledgerlock_admin, ledgerlock_auditor;

-- Protected relations that a crash empties.
CREATE OR REPLACE FUNCTION ledgerlock._doctor_unlogged_tables()
RETURNS TABLE(severity text, check_name text, object text, finding text, why text, fix text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT g.rel FROM ledgerlock._guarded_relations() g JOIN pg_catalog.pg_class c ON c.oid = g.rel
        WHERE c.relpersistence <> 'p' ORDER BY 1
    LOOP
        RETURN QUERY SELECT 'critical', 'table', r.rel::text, pg_catalog.format('%s is UNLOGGED', r.rel),
            'an unlogged table is emptied by a crash and is not replicated: final rows would vanish',
            pg_catalog.format('ALTER TABLE %s SET LOGGED', r.rel);
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._doctor_unlogged_tables() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._doctor_unlogged_tables() TO ledgerlock_admin, ledgerlock_auditor;

-- SECURITY DEFINER functions without a pinned search_path (ledgerlock's, and any trigger function a
-- protected table runs).
CREATE OR REPLACE FUNCTION ledgerlock._doctor_definer_functions()
RETURNS TABLE(severity text, check_name text, object text, finding text, why text, fix text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT DISTINCT p.oid::regprocedure AS fn FROM pg_catalog.pg_proc p
        WHERE p.prosecdef
          AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false)
          AND (p.pronamespace = 'ledgerlock'::regnamespace
               OR p.oid IN (SELECT t.tgfoid FROM pg_catalog.pg_trigger t
                            JOIN ledgerlock._guarded_relations() g ON g.rel = t.tgrelid))
        ORDER BY 1
    LOOP
        RETURN QUERY SELECT 'critical', 'function', r.fn::text,
            pg_catalog.format('SECURITY DEFINER function %s does not pin search_path', r.fn),
            'a caller''s own schema or operators would run with the function owner''s rights '
            '(search_path hijack)',
            pg_catalog.format('ALTER FUNCTION %s SET search_path = pg_catalog, pg_temp  (or: ledgerlock migrate)',
                              r.fn);
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._doctor_definer_functions() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._doctor_definer_functions() TO ledgerlock_admin, ledgerlock_auditor;

-- PUBLIC privileges on ledgerlock's objects.
CREATE OR REPLACE FUNCTION ledgerlock._doctor_public_privileges()
RETURNS TABLE(severity text, check_name text, object text, finding text, why text, fix text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT c.oid::regclass AS rel, a.privilege_type FROM pg_catalog.pg_class c
        CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) a
        WHERE c.relnamespace IN ('ledgerlock'::regnamespace, 'ledgerlock_gate'::regnamespace) AND a.grantee = 0
        ORDER BY 1, 2
    LOOP
        RETURN QUERY SELECT 'critical', 'public privilege', r.rel::text,
            pg_catalog.format('PUBLIC holds %s on %s', r.privilege_type, r.rel),
            'every role, the application included, can use it',
            pg_catalog.format('REVOKE ALL ON %s FROM PUBLIC', r.rel);
    END LOOP;
    IF pg_catalog.has_schema_privilege('public', 'ledgerlock', 'CREATE') THEN
        RETURN QUERY SELECT 'critical', 'public privilege', 'ledgerlock',
            'PUBLIC may create objects in schema ledgerlock',
            'anyone could plant a function or table next to ledgerlock''s own',
            'REVOKE CREATE ON SCHEMA ledgerlock FROM PUBLIC';
    END IF;
    -- a role that can name a gate can hold it: PREPARE locks what it names before any privilege is checked
    FOR r IN
        SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END AS who
        FROM pg_catalog.pg_namespace n CROSS JOIN LATERAL pg_catalog.aclexplode(n.nspacl) a
        WHERE n.nspname = 'ledgerlock_gate' AND a.grantee <> n.nspowner
        ORDER BY 1
    LOOP
        RETURN QUERY SELECT 'critical', 'public privilege', 'ledgerlock_gate',
            pg_catalog.format('%s may use schema ledgerlock_gate', r.who),
            'a role that can name a gate can hold a lock on it (PREPARE locks every table it names) and stall lock '
            'changes, sealing or migrate',
            pg_catalog.format('REVOKE ALL ON SCHEMA ledgerlock_gate FROM %s', r.who);
    END LOOP;
    FOR r IN
        SELECT p.oid::regprocedure AS fn, p.proname FROM pg_catalog.pg_proc p
        WHERE p.pronamespace = 'ledgerlock'::regnamespace
          AND pg_catalog.has_function_privilege('public', p.oid, 'EXECUTE')
          AND p.proname <> ALL (ledgerlock._public_api())
          AND p.prorettype NOT IN ('pg_catalog.trigger'::regtype, 'pg_catalog.event_trigger'::regtype)
          -- R1's comparisons, which WHEN clauses call with the writer's rights (_changed_beyond_function);
          -- a body changed by hand is drift (_doctor_code)
          AND NOT (pg_catalog.starts_with(p.proname, '_ll10_x') AND NOT p.prosecdef
                   AND EXISTS (SELECT FROM ledgerlock.code_fingerprint f
                               WHERE f.fn = p.oid::regprocedure::text AND f.origin = 'generated'))
        ORDER BY 1
    LOOP
        RETURN QUERY SELECT CASE WHEN pg_catalog.starts_with(r.proname::text, '_') THEN 'critical' ELSE 'warning' END,
            'public privilege', r.fn::text,
            pg_catalog.format('PUBLIC may execute %s', r.fn),
            'only the documented read API is meant for every role; the rest checks nothing itself',
            pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', r.fn);
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._doctor_public_privileges() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._doctor_public_privileges() TO ledgerlock_admin, ledgerlock_auditor;

-- The DDL guard: installed, and each of its event triggers ENABLE ALWAYS.
CREATE OR REPLACE FUNCTION ledgerlock._doctor_ddl_guard()
RETURNS TABLE(severity text, check_name text, object text, finding text, why text, fix text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_event_trigger e
                   JOIN ledgerlock.ddl_guard_events() d ON d.event_trigger = e.evtname) THEN
        RETURN QUERY SELECT 'info', 'ddl guard', current_database()::text,
            'the DDL guard is not installed in this database',
            'table owners (and superusers, by mistake) can drop or disable guards, detach partitions, rewrite '
            'protected tables; only ownership keeps the application from it',
            'ledgerlock install-ddl-guard  (needs a superuser)';
    ELSE
        FOR r IN
            SELECT d.event_trigger, e.evtenabled FROM ledgerlock.ddl_guard_events() d
            LEFT JOIN pg_catalog.pg_event_trigger e ON e.evtname = d.event_trigger
            WHERE e.evtenabled IS DISTINCT FROM 'A' ORDER BY 1
        LOOP
            RETURN QUERY SELECT 'critical', 'ddl guard', r.event_trigger::text,
                pg_catalog.format('event trigger %s is %s', r.event_trigger,
                                  CASE WHEN r.evtenabled IS NULL THEN 'missing' WHEN r.evtenabled = 'D'
                                       THEN 'disabled' ELSE 'not ENABLE ALWAYS' END),
                'the DDL guard is incomplete: some DDL that switches guards off goes through',
                'ledgerlock install-ddl-guard  (needs a superuser)';
        END LOOP;
        -- PostgreSQL 17 on: event_triggers = off stops every event trigger. Set for the server (ALTER SYSTEM,
        -- postgresql.conf, the command line), or as a default of this database or of a role in it (below).
        IF EXISTS (SELECT FROM pg_catalog.pg_settings g
                   WHERE g.name = 'event_triggers' AND g.setting = 'off'
                     AND g.source NOT IN ('database', 'user', 'database user', 'session', 'client')) THEN
            RETURN QUERY SELECT 'critical', 'ddl guard', 'event_triggers',
                'event_triggers is off for this server',
                'PostgreSQL fires no event trigger: the DDL guard refuses nothing',
                'ALTER SYSTEM RESET event_triggers; SELECT pg_reload_conf();  -- or its line in postgresql.conf';
        END IF;
        FOR r IN SELECT * FROM ledgerlock._doctor_setting_defaults('event_triggers', 'off|of|false|fals|fal|fa|f|no|n|0')
        LOOP
            RETURN QUERY SELECT 'critical', 'ddl guard', 'event_triggers',
                pg_catalog.format('event_triggers is off by default for %s', r.takers),
                'those sessions fire no event trigger: the DDL guard refuses nothing they do', r.fix;
        END LOOP;
    END IF;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._doctor_ddl_guard() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._doctor_ddl_guard() TO ledgerlock_admin, ledgerlock_auditor;

-- Prepared transactions that hold locks on ledgerlock's objects or on protected tables: they keep
-- them across disconnects and restarts (a counter row, a scope, a table) until someone ends them.
-- A prepared transaction's locks have no pid; its own transactionid lock names its virtualtransaction.
CREATE OR REPLACE FUNCTION ledgerlock._doctor_prepared_transactions()
RETURNS TABLE(severity text, check_name text, object text, finding text, why text, fix text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT x.gid, pg_catalog.string_agg(DISTINCT l.relation::regclass::text, ', '
                                            ORDER BY l.relation::regclass::text) AS held
        FROM pg_catalog.pg_prepared_xacts x
        JOIN pg_catalog.pg_locks own ON own.locktype = 'transactionid' AND own.transactionid = x.transaction
                                    AND own.pid IS NULL
        JOIN pg_catalog.pg_locks l ON l.virtualtransaction = own.virtualtransaction AND l.pid IS NULL
                                  AND l.locktype IN ('relation', 'tuple') AND l.database = (
                                      SELECT d.oid FROM pg_catalog.pg_database d
                                      WHERE d.datname = pg_catalog.current_database())
        JOIN pg_catalog.pg_class c ON c.oid = l.relation
        WHERE x.database = pg_catalog.current_database()
          AND (c.relnamespace IN ('ledgerlock'::regnamespace, 'ledgerlock_gate'::regnamespace)
               OR l.relation IN (SELECT g.rel FROM ledgerlock._guarded_relations() g))
        GROUP BY x.gid
        ORDER BY 1
    LOOP
        RETURN QUERY SELECT 'critical', 'prepared transaction', r.gid,
            pg_catalog.format('a prepared transaction %L holds locks on %s', r.gid, r.held),
            'a prepared transaction keeps its locks across disconnects and restarts: numbering, lock changes '
            'or writes that need them wait until someone ends it',
            pg_catalog.format('COMMIT PREPARED %L or ROLLBACK PREPARED %L', r.gid, r.gid);
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._doctor_prepared_transactions() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._doctor_prepared_transactions() TO ledgerlock_admin, ledgerlock_auditor;

-- R3 high-water marks: a table whose ll_20 triggers carry a mark below the last day of a window
-- that applies to it does not check writes dated between the two.
CREATE OR REPLACE FUNCTION ledgerlock._doctor_period_marks()
RETURNS TABLE(severity text, check_name text, object text, finding text, why text, fix text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT m.tbl, m.installed, m.required FROM ledgerlock._period_mark_problems() m ORDER BY 1 LOOP
        RETURN QUERY SELECT 'critical', 'period mark', r.tbl::text,
            pg_catalog.format('the period guards of %s check rows dated up to %s, but a lock window ends on %s',
                              r.tbl, coalesce(r.installed::text, '(none installed)'), r.required),
            'writes dated after the installed mark are not checked against the windows: a lock is not enforced',
            'ledgerlock migrate  (or SELECT ledgerlock.reinstall_guards() as an admin)';
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._doctor_period_marks() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._doctor_period_marks() TO ledgerlock_admin, ledgerlock_auditor;

-- The audit chain: intact, and every event sealed.
CREATE OR REPLACE FUNCTION ledgerlock._doctor_audit_chain()
RETURNS TABLE(severity text, check_name text, object text, finding text, why text, fix text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    BEGIN
        FOR r IN SELECT * FROM ledgerlock.verify_audit() LOOP
            IF NOT r.ok THEN
                RETURN QUERY SELECT 'critical', 'audit chain', 'ledgerlock.audit_log',
                    pg_catalog.format('the audit chain is broken: %s (%s problem(s))', r.problem, r.problems),
                    'the evidence was altered or removed after it was written',
                    CASE WHEN EXISTS (SELECT FROM ledgerlock.protected_table p
                                      WHERE ledgerlock._renamed_from(p.tbl) IS NOT NULL)
                         THEN 'rename the protected table back first (the "renamed table" finding), then verify again'
                         ELSE 'compare with your external digests (ledgerlock audit verify --digest ...) and investigate'
                    END;
            ELSIF r.unsealed > 0 THEN
                RETURN QUERY SELECT 'warning', 'audit chain', 'ledgerlock.audit_log',
                    pg_catalog.format('%s event(s) are not sealed into the chain yet', r.unsealed),
                    'events outside the chain are not covered by a digest',
                    'ledgerlock audit verify  (seals and verifies)';
            END IF;
        END LOOP;
    EXCEPTION WHEN insufficient_privilege THEN
        RETURN QUERY SELECT 'warning', 'audit chain', 'ledgerlock.verify_audit',
            'the audit chain could not be checked: ' || SQLERRM,
            'doctor sees only what its caller may see', 'run ledgerlock doctor as a ledgerlock admin or auditor';
    END;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._doctor_audit_chain() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._doctor_audit_chain() TO ledgerlock_admin, ledgerlock_auditor;

-- Final numbers: no gap, no duplicate in any series; the line finalizers wait in has all its slots.
CREATE OR REPLACE FUNCTION ledgerlock._doctor_numbering()
RETURNS TABLE(severity text, check_name text, object text, finding text, why text, fix text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
    missing integer;
BEGIN
    missing := ledgerlock._number_queue_missing();
    IF missing > 0 THEN
        RETURN QUERY SELECT 'warning', 'numbering', 'ledgerlock_gate.number_queue',
            pg_catalog.format('%s of the %s slots finalizers of a series wait in line on are missing', missing,
                              ledgerlock._number_queue_slots()),
            'finalizers of a series whose slot is missing wait on its counter row instead: numbers stay gapless, '
            'but a busy series finalizes more slowly (docs/numbering.md, "Waiting in line")',
            pg_catalog.format('as the owner of ledgerlock: INSERT INTO ledgerlock_gate.number_queue SELECT g FROM '
                              'generate_series(0, %s) g ON CONFLICT DO NOTHING', ledgerlock._number_queue_slots() - 1);
    END IF;
    BEGIN
        FOR r IN SELECT * FROM ledgerlock.number_gaps(NULL) LOOP
            RETURN QUERY SELECT 'critical', 'numbering', r.table_name::text,
                pg_catalog.format('%s in series %s of %s: %s..%s %s', r.kind, r.series, r.table_name,
                                  r.first_number, r.last_number, coalesce(r.detail, '')),
                'final numbers must run without gaps or duplicates',
                pg_catalog.format('ledgerlock numbers check  -- then investigate %s', r.table_name);
        END LOOP;
    EXCEPTION WHEN insufficient_privilege THEN
        RETURN QUERY SELECT 'warning', 'numbering', 'ledgerlock.number_gaps',
            'numbering could not be checked: ' || SQLERRM,
            'doctor sees only what its caller may see', 'run ledgerlock doctor as a ledgerlock admin or auditor';
    END;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._doctor_numbering() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._doctor_numbering() TO ledgerlock_admin, ledgerlock_auditor;

-- A function's fingerprint, as the code check compares it: its body (md5 of pg_proc.prosrc, the text
-- between the dollar quotes), whether it runs as its owner, and the settings it pins.
-- Fingerprints of the functions the code script just created (those whose catalog row is not the one
-- pg_temp.ll_code_before saw when the script began): sqlfiles.code_script() calls it as its last step.
CREATE OR REPLACE FUNCTION ledgerlock._record_shipped_code()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer;
BEGIN
    DELETE FROM ledgerlock.code_fingerprint f WHERE f.origin = 'shipped';
    INSERT INTO ledgerlock.code_fingerprint AS f (fn, origin, body_md5, security_definer, config)
    SELECT p.oid::regprocedure::text, 'shipped', pg_catalog.md5(p.prosrc), p.prosecdef, p.proconfig
    FROM pg_catalog.pg_proc p
    WHERE p.pronamespace = 'ledgerlock'::regnamespace
      AND NOT EXISTS (SELECT FROM pg_temp.ll_code_before b
                      WHERE b.oid = p.oid AND b.row_version = p.xmin::text || '@' || p.ctid::text)
    ON CONFLICT ON CONSTRAINT code_fingerprint_pkey DO UPDATE SET
        origin = EXCLUDED.origin, body_md5 = EXCLUDED.body_md5, security_definer = EXCLUDED.security_definer,
        config = EXCLUDED.config, recorded_at = now(), recorded_by = session_user;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._record_shipped_code() FROM PUBLIC;

-- Fingerprint of the function a guard trigger runs, when a rule generated it (it is not shipped):
-- ledgerlock._create_guard_trigger calls it for every trigger it creates.
CREATE OR REPLACE FUNCTION ledgerlock._record_generated_code(tbl regclass, trigger_name name)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO ledgerlock.code_fingerprint AS f (fn, origin, body_md5, security_definer, config)
    SELECT p.oid::regprocedure::text, 'generated', pg_catalog.md5(p.prosrc), p.prosecdef, p.proconfig
    FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid
    WHERE t.tgrelid = tbl AND t.tgname = trigger_name AND p.pronamespace = 'ledgerlock'::regnamespace
      -- a shipped function never reaches the conflict: its row would stay locked until commit, and every
      -- installer creating a trigger on it would queue behind that
      AND NOT EXISTS (SELECT FROM ledgerlock.code_fingerprint s
                      WHERE s.fn = p.oid::regprocedure::text AND s.origin = 'shipped')
    ON CONFLICT ON CONSTRAINT code_fingerprint_pkey DO UPDATE SET
        body_md5 = EXCLUDED.body_md5, security_definer = EXCLUDED.security_definer, config = EXCLUDED.config,
        recorded_at = now(), recorded_by = session_user
    WHERE f.origin = 'generated'
$$;
REVOKE ALL ON FUNCTION ledgerlock._record_generated_code(regclass, name) FROM PUBLIC;

-- Code drift: every function in schema ledgerlock against the fingerprint ledgerlock recorded when it
-- installed (shipped) or generated it. The manager also checks the shipped ones against its own package
-- (manager/doctor.py), which a database superuser cannot edit.
CREATE OR REPLACE FUNCTION ledgerlock._doctor_code()
RETURNS TABLE(severity text, check_name text, object text, finding text, why text, fix text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT p.oid::regprocedure::text AS fn, f.origin, o.fn IS NOT NULL AS orphan,
               (f.body_md5, f.security_definer, f.config)
                   IS DISTINCT FROM (pg_catalog.md5(p.prosrc), p.prosecdef, p.proconfig) AS drifted
        FROM pg_catalog.pg_proc p
        LEFT JOIN ledgerlock.code_fingerprint f ON f.fn = p.oid::regprocedure::text
        LEFT JOIN ledgerlock._orphan_generated_functions() o(fn) ON o.fn = p.oid
        WHERE p.pronamespace = 'ledgerlock'::regnamespace
        ORDER BY 1
    LOOP
        IF r.orphan THEN
            RETURN QUERY SELECT 'warning', 'function', r.fn,
                pg_catalog.format('%s was generated for a rule that no longer exists', r.fn),
                'a leftover guard function is dead code with the owner''s rights',
                'SELECT ledgerlock.reinstall_guards()  (it drops what no rule uses)';
        ELSIF r.origin IS NULL THEN
            RETURN QUERY SELECT 'warning', 'function', r.fn, pg_catalog.format('%s is not part of ledgerlock', r.fn),
                'an object in schema ledgerlock that ledgerlock did not install runs with its rights if anything '
                'calls it', pg_catalog.format('DROP FUNCTION %s  -- after checking who created it', r.fn);
        ELSIF r.drifted THEN
            RETURN QUERY SELECT 'critical', 'function', r.fn,
                pg_catalog.format(CASE r.origin WHEN 'shipped' THEN '%s differs from the shipped definition'
                                  ELSE '%s differs from the function ledgerlock generated' END, r.fn),
                'a rule redefined by hand may no longer enforce what it says',
                CASE r.origin WHEN 'shipped'
                    THEN 'ledgerlock migrate  (after DELETE FROM ledgerlock.installed_code, so that it reinstalls the code)'
                    ELSE 'SELECT ledgerlock.reinstall_guards()  (it regenerates the guards)' END;
        END IF;
    END LOOP;
    FOR r IN
        SELECT f.fn FROM ledgerlock.code_fingerprint f
        WHERE f.origin = 'shipped' AND pg_catalog.to_regprocedure(f.fn) IS NULL ORDER BY 1
    LOOP
        RETURN QUERY SELECT 'critical', 'function', r.fn, pg_catalog.format('%s is missing', r.fn),
            'a rule whose function was dropped fails or no longer checks anything',
            'ledgerlock migrate  (after DELETE FROM ledgerlock.installed_code, so that it reinstalls the code)';
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._doctor_code() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._doctor_code() TO ledgerlock_admin, ledgerlock_auditor;

-- Protected tables whose scope column cannot hold a scope (ledgerlock._scope_column_problem): protected
-- before protect refused such columns, or the column's type or collation changed since (without the DDL guard).
CREATE OR REPLACE FUNCTION ledgerlock._doctor_scope_columns()
RETURNS TABLE(severity text, check_name text, object text, finding text, why text, fix text)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'critical', 'table', p.tbl::text,
           pg_catalog.format('the scope column %s.%I of %s is of type %s%s', s.rel, s.col, p.tbl, s.typ,
                             CASE WHEN ledgerlock._scope_type_problem(s.typ) IS NULL
                                  THEN ' with a nondeterministic collation' ELSE '' END),
           pg_catalog.format('a scope is compared as text with the scopes locks name, and %s: a client can write a '
                             'row of a locked scope under a text no lock names', x.problem),
           pg_catalog.format('scope %s by an integer, text or uuid column of a deterministic collation, then protect '
                             'it again', p.tbl)
    FROM ledgerlock.protected_table p
    CROSS JOIN LATERAL ledgerlock._scope_source(p.tbl, p.scope_column) s
    CROSS JOIN LATERAL (SELECT ledgerlock._scope_column_problem(s.rel, s.col) AS problem) x
    WHERE p.scope_column IS NOT NULL AND x.problem IS NOT NULL
    ORDER BY 3
$$;
REVOKE ALL ON FUNCTION ledgerlock._doctor_scope_columns() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._doctor_scope_columns() TO ledgerlock_admin, ledgerlock_auditor;

-- Protected tables whose scope or date is read through a foreign key that is gone or NOT ENFORCED
-- (ledgerlock._parent_path_problem), that inherit from another table (ledgerlock._inheritance_parent), or whose
-- key no unique index holds any more (ledgerlock._key_problem): the DDL guard refuses each; without it, the
-- owner can.
CREATE OR REPLACE FUNCTION ledgerlock._doctor_parent_paths()
RETURNS TABLE(severity text, check_name text, object text, finding text, why text, fix text)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'critical', 'table', p.tbl::text, ledgerlock._parent_path_problem(p.tbl),
           'a row may then reference a parent that does not exist yet, and take a date in a locked window when '
           'that parent is written, or keep its place when its parent is gone: no check of ledgerlock sees it',
           pg_catalog.format('put the foreign key back, enforced (ALTER TABLE %s ... FOREIGN KEY, or ALTER '
                             'CONSTRAINT ... ENFORCED), then SELECT ledgerlock.reinstall_guards()', p.tbl)
    FROM ledgerlock.protected_table p
    WHERE ledgerlock._relation_exists(p.tbl) AND ledgerlock._parent_path_problem(p.tbl) IS NOT NULL
    UNION ALL
    SELECT 'critical', 'table', p.tbl::text,
           pg_catalog.format('%s inherits from %s', p.tbl, ledgerlock._inheritance_parent(p.tbl)),
           pg_catalog.format('a statement on %s writes the rows of %s without firing its statement triggers: the '
                             'audit capture records nothing, the numbering''s settle step does not run',
                             ledgerlock._inheritance_parent(p.tbl), p.tbl),
           pg_catalog.format('ALTER TABLE %s NO INHERIT %s', p.tbl, ledgerlock._inheritance_parent(p.tbl))
    FROM ledgerlock.protected_table p
    WHERE ledgerlock._relation_exists(p.tbl) AND ledgerlock._inheritance_parent(p.tbl) IS NOT NULL
    UNION ALL
    SELECT 'critical', 'table', p.tbl::text, ledgerlock._key_problem(p.tbl),
           'two rows could carry the key of a final row; the audit trail, the refusals and verification name rows '
           'by it',
           pg_catalog.format('ALTER TABLE %s ADD PRIMARY KEY (%s)', p.tbl,
                             (SELECT pg_catalog.string_agg(pg_catalog.quote_ident(k), ', ')
                              FROM pg_catalog.unnest(p.key_columns) AS k))
    FROM ledgerlock.protected_table p
    WHERE ledgerlock._relation_exists(p.tbl) AND ledgerlock._key_problem(p.tbl) IS NOT NULL
    UNION ALL
    -- DETACH PARTITION ... CONCURRENTLY commits its first step before any event trigger fires: the DDL guard
    -- refuses the second, which leaves the partition pending, its rows out of every new query of the table
    SELECT 'critical', 'table', p.tbl::text,
           pg_catalog.format('partition %s of %s is being detached (DETACH PARTITION ... CONCURRENTLY, whose second '
                             'step the DDL guard refused)', i.inhrelid::regclass, i.inhparent::regclass),
           'queries of the protected table no longer see its rows (verification reports them missing), though its '
           'own guards still hold them',
           -- (its audit triggers go before it is attached again: some releases refuse a partition whose
           -- triggers have transition tables; reinstall_guards puts them back)
           pg_catalog.format('as a superuser: SELECT ledgerlock.uninstall_ddl_guard(); ALTER TABLE %1$s DETACH '
                             'PARTITION %2$s FINALIZE; DROP TRIGGER IF EXISTS ll_90_audit_insert ON %2$s; DROP '
                             'TRIGGER IF EXISTS ll_90_audit_update ON %2$s; DROP TRIGGER IF EXISTS ll_90_audit_delete '
                             'ON %2$s; ALTER TABLE %1$s ATTACH PARTITION %2$s %3$s; SELECT '
                             'ledgerlock.install_ddl_guard(); SELECT ledgerlock.reinstall_guards()',
                             i.inhparent::regclass, i.inhrelid::regclass,
                             pg_catalog.pg_get_expr(c.relpartbound, c.oid))
    FROM ledgerlock.protected_table p
    CROSS JOIN LATERAL ledgerlock._partition_tree(p.tbl) t
    JOIN pg_catalog.pg_inherits i ON i.inhparent = t.relid AND i.inhdetachpending
    JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
    WHERE ledgerlock._relation_exists(p.tbl)
    ORDER BY 3
$$;
REVOKE ALL ON FUNCTION ledgerlock._doctor_parent_paths() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._doctor_parent_paths() TO ledgerlock_admin, ledgerlock_auditor;

-- Tables the rules read with row-level security applied to their owner (ledgerlock._forced_row_security):
-- the policies decide which rows the checks and verification see, often by a setting a client may change.
CREATE OR REPLACE FUNCTION ledgerlock._doctor_row_security()
RETURNS TABLE(severity text, check_name text, object text, finding text, why text, fix text)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT DISTINCT ON (r.rel) 'critical', 'table', r.rel::text,
           pg_catalog.format('%s has FORCE ROW LEVEL SECURITY', r.rel),
           pg_catalog.format('ledgerlock''s checks of %s and its verification read it as its owner, so its policies '
                             'decide which rows they see: a row they do not see cannot refuse a write, and a client '
                             'may change the settings a policy reads', r.serves),
           pg_catalog.format('ALTER TABLE %s NO FORCE ROW LEVEL SECURITY', r.rel)
    FROM ledgerlock._rule_read_relations() r
    WHERE ledgerlock._forced_row_security(r.rel) = r.rel  -- (the relation itself, not one of its partitions)
    ORDER BY r.rel, r.serves
$$;
REVOKE ALL ON FUNCTION ledgerlock._doctor_row_security() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._doctor_row_security() TO ledgerlock_admin, ledgerlock_auditor;

-- Virtual generated columns (PostgreSQL 18 on) a rule reads from the row in its triggers, where PostgreSQL
-- does not compute them (ledgerlock._generated_problem): a scope column, or a column a final_when or a
-- child_condition reads. Protect refuses them; a table protected before it did is reported. (A generated
-- date column could never be protected: PostgreSQL refuses R3's BEFORE trigger on it.)
CREATE OR REPLACE FUNCTION ledgerlock._doctor_generated_columns()
RETURNS TABLE(severity text, check_name text, object text, finding text, why text, fix text)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on  -- its literals hold backslashes
AS $$
    WITH used AS (
        SELECT p.tbl AS rel, p.scope_column AS col, 'scope column' AS what
        FROM ledgerlock.protected_table p WHERE p.scope_column IS NOT NULL AND ledgerlock._relation_exists(p.tbl)
        UNION ALL
        SELECT c.rel, a.attname, c.what
        FROM (SELECT p.tbl AS rel, p.final_when_sql AS cond, 'final_when' AS what
              FROM ledgerlock.protected_table p WHERE p.final_when_sql IS NOT NULL
              UNION ALL
              SELECT r.child, r.child_condition_sql, 'child_condition'
              FROM ledgerlock.reference_rule r WHERE r.child_condition_sql IS NOT NULL) c
        JOIN pg_catalog.pg_attribute a ON a.attrelid = c.rel AND a.attnum > 0 AND NOT a.attisdropped
                                      AND a.attgenerated = 'v'
        -- the column as the stored condition names it (deparsed by PostgreSQL: ll_row.<quoted name>)
        WHERE ledgerlock._relation_exists(c.rel)
          AND c.cond || ' ' ~ ('ll_row\.' || pg_catalog.regexp_replace(pg_catalog.quote_ident(a.attname),
                                                                       '([^A-Za-z0-9_])', '\\\1', 'g')
                               || '[^A-Za-z0-9_$]')
    )
    SELECT 'critical', 'table', u.rel::text,
           pg_catalog.format('%s (read by the %s of %s)', ledgerlock._generated_problem(u.rel, u.col, false), u.what,
                             u.rel),
           CASE WHEN u.what = 'scope column'
                THEN 'the period checks place a row by its scope: read as null, no lock holds for the row'
                ELSE pg_catalog.format('the guards ask the %s of each row they are given: over a column read as null '
                                       'it can let a final or referenced row change', u.what) END,
           CASE WHEN u.what = 'scope column'
                THEN pg_catalog.format('make %s.%I a plain column, or scope by the column it is computed from, then '
                                       'protect %s again', u.rel, u.col, u.rel)
                ELSE pg_catalog.format('make %s.%I a STORED generated column, or write the %s over the columns it is '
                                       'computed from, then protect again', u.rel, u.col, u.what) END
    FROM used u
    WHERE ledgerlock._generated_problem(u.rel, u.col, false) IS NOT NULL
    UNION ALL
    -- a stored generated scope column (protect refuses one since 2026-11-29; a table protected before keeps
    -- it): the period checks run AFTER and see it, but the skip trigger and the numbering read the scope in a
    -- BEFORE trigger, where it is still null. Both fail closed (a finalization whose number needs the scope is
    -- refused, skip mode refuses instead of skipping), so a warning.
    SELECT 'warning', 'table', u.rel::text,
           pg_catalog.format('%s (the scope column of %s)', ledgerlock._generated_problem(u.rel, u.col, true), u.rel),
           'the numbering and skip mode read it as null: a finalization whose number needs the scope is refused, '
           'and a write in a locked window is refused instead of skipped',
           pg_catalog.format('scope by the column it is computed from, or make %s.%I a plain column, then protect %s '
                             'again', u.rel, u.col, u.rel)
    FROM used u
    WHERE u.what = 'scope column' AND ledgerlock._generated_problem(u.rel, u.col, false) IS NULL
      AND ledgerlock._generated_problem(u.rel, u.col, true) IS NOT NULL
    ORDER BY 3, 4
$$;
REVOKE ALL ON FUNCTION ledgerlock._doctor_generated_columns() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._doctor_generated_columns() TO ledgerlock_admin, ledgerlock_auditor;

-- The checks doctor_findings() runs, in the order it reports them. Each is a function () RETURNS
-- TABLE(severity, check_name, object, finding, why, fix), SECURITY INVOKER, granted to the admin and the
-- auditor (the documented monitoring role).
CREATE OR REPLACE FUNCTION ledgerlock._doctor_checks()
RETURNS TABLE(ord integer, check_function regprocedure)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.i::integer, c.fn::regprocedure FROM pg_catalog.unnest(ARRAY[
        'ledgerlock._doctor_table_owners()',
        'ledgerlock._doctor_table_privileges()',
        'ledgerlock._doctor_bypass_roles()',
        'ledgerlock._doctor_ledgerlock_roles()',
        'ledgerlock._doctor_missing_guards()',
        'ledgerlock._doctor_guard_triggers()',
        'ledgerlock._doctor_foreign_triggers()',
        'ledgerlock._doctor_conditions()',
        'ledgerlock._doctor_unlogged_tables()',
        'ledgerlock._doctor_scope_columns()',
        'ledgerlock._doctor_parent_paths()',
        'ledgerlock._doctor_generated_columns()',
        'ledgerlock._doctor_row_security()',
        'ledgerlock._doctor_definer_functions()',
        'ledgerlock._doctor_public_privileges()',
        'ledgerlock._doctor_ddl_guard()',
        'ledgerlock._doctor_prepared_transactions()',
        'ledgerlock._doctor_period_marks()',
        'ledgerlock._doctor_audit_chain()',
        'ledgerlock._doctor_numbering()',
        'ledgerlock._doctor_replication()',
        'ledgerlock._doctor_code()'
    ]) WITH ORDINALITY AS c(fn, i)
    ORDER BY c.i
$$;
REVOKE ALL ON FUNCTION ledgerlock._doctor_checks() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._doctor_checks() TO ledgerlock_admin, ledgerlock_auditor;

CREATE OR REPLACE FUNCTION ledgerlock.doctor_findings()
RETURNS TABLE(severity text, check_name text, object text, finding text, why text, fix text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off  -- it compares names with the ones ledgerlock ships (docs/hardening.md, "Names")
AS $$
DECLARE
    fn regprocedure;
BEGIN
    FOR fn IN SELECT c.check_function FROM ledgerlock._doctor_checks() c ORDER BY c.ord LOOP
        RETURN QUERY EXECUTE pg_catalog.format('SELECT * FROM %s()', fn::oid::regproc);
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.doctor_findings() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.doctor_findings() TO ledgerlock_admin, ledgerlock_auditor;
