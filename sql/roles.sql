-- ledgerlock: the three capability roles, created once per cluster by a role with CREATEROLE
-- (`ledgerlock sql --roles | psql`). Roles are cluster-wide and creating them needs CREATEROLE, which the
-- owner that installs ledgerlock (a NOLOGIN role) does not have on a managed service; migrate finds them
-- here and creates nothing. The same block opens migration 0001, for installers that may create roles.
-- On PostgreSQL 16 and later the role that runs this keeps ADMIN on the three roles: it is the one that
-- grants them to people (GRANT ledgerlock_admin TO alice).
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
END
$roles$;
