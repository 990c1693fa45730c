-- ledgerlock 0044: a scope limit that holds in every database of the cluster. Roles are the cluster's and scope
-- grants each database's, so a tenant admin limited to scope 1 in one database was unrestricted in every
-- other database of the cluster where ledgerlock is installed and no grant names it (it could unprotect, lift
-- hard locks, grant itself scopes there). A member of ledgerlock_scoped, a NOLOGIN group like the capability
-- roles, is limited in every database: to the scopes granted there, to none where no grant names it
-- (ledgerlock._granted_scopes). Created here when this installer may create roles, else by
-- `ledgerlock sql --roles | psql`; doctor reports it missing where scope grants exist, and each role limited
-- here that is not a member.
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'ledgerlock_scoped')
       AND (SELECT r.rolsuper OR r.rolcreaterole FROM pg_catalog.pg_roles r WHERE r.rolname = current_user) THEN
        CREATE ROLE ledgerlock_scoped NOLOGIN;
    END IF;
END
$roles$;

-- Who acts as a role: holds its privileges (a membership that inherits) or may SET ROLE to it. Defined in
-- sql/functions/00_core.sql, which every install re-creates; created here too because the policies below
-- call it, and the migrations run before the functions are installed.
CREATE OR REPLACE FUNCTION ledgerlock._acts_as(who name, grp oid)
RETURNS boolean
LANGUAGE sql
STABLE
AS $$
    SELECT pg_catalog.pg_has_role(who, grp, 'USAGE')
        OR pg_catalog.pg_has_role(who, grp, CASE WHEN pg_catalog.current_setting('server_version_num')::integer
                                                      OPERATOR(pg_catalog.>=) 160000 THEN 'SET' ELSE 'MEMBER' END)
$$;
REVOKE ALL ON FUNCTION ledgerlock._acts_as(name, oid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._acts_as(name, oid)
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor, pg_read_all_data;

-- The row-level security of the lock tables, the trail and the close: a role reads every scope when no grant
-- names it and it does not act as ledgerlock_scoped; else the scopes granted to it here. (A grant of ADMIN
-- alone, which PostgreSQL 16 on gives a CREATEROLE role over the roles it creates, no longer counts: the cloud
-- admin who created a tenant admin's role read only the tenant's scopes.)
DO $policies$
DECLARE
    p record;
BEGIN
    FOR p IN SELECT * FROM (VALUES ('period_lock_granted_scopes', 'ledgerlock.period_lock'),
                                   ('lock_event_granted_scopes', 'ledgerlock.lock_event'),
                                   ('audit_event_granted_scopes', 'ledgerlock.audit_event'),
                                   ('close_task_granted_scopes', 'ledgerlock.close_task')) AS v(policy, tbl)
    LOOP
        EXECUTE pg_catalog.format($q$
            ALTER POLICY %I ON %s USING (
                scope IN (SELECT g.scope FROM ledgerlock.scope_grant g WHERE ledgerlock._acts_as(session_user, g.grantee))
                OR NOT (EXISTS (SELECT FROM ledgerlock.scope_grant g WHERE ledgerlock._acts_as(session_user, g.grantee))
                        OR EXISTS (SELECT FROM pg_catalog.pg_roles r
                                   WHERE r.rolname = 'ledgerlock_scoped' AND ledgerlock._acts_as(session_user, r.oid))))
            $q$, p.policy, p.tbl);
    END LOOP;
END
$policies$;
