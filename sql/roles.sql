-- ledgerlock: the three capability roles and ledgerlock_scoped, created once per cluster by a role with
-- CREATEROLE (`ledgerlock sql --roles | psql`). Roles are cluster-wide and creating them needs CREATEROLE,
-- which the owner that installs ledgerlock (a NOLOGIN role) does not have on a managed service; migrate finds
-- them here and creates nothing. The same block opens migrations 0001 and 0044, for installers that may
-- create roles. On PostgreSQL 16 and later the role that runs this keeps ADMIN on the roles: it is the one
-- that grants them to people (GRANT ledgerlock_admin TO alice; GRANT ledgerlock_scoped TO a tenant admin).
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'ledgerlock_auditor') THEN
        CREATE ROLE ledgerlock_auditor NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'ledgerlock_controller') THEN
        CREATE ROLE ledgerlock_controller NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'ledgerlock_admin') THEN
        CREATE ROLE ledgerlock_admin NOLOGIN;
    END IF;
    -- Not a capability: a member is limited to the scopes granted in each database, and to none where no
    -- grant names it (migration 0044; docs/hardening.md, "Several databases on one cluster").
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'ledgerlock_scoped') THEN
        CREATE ROLE ledgerlock_scoped NOLOGIN;
    END IF;
END
$roles$;
