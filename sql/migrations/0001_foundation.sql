-- ledgerlock 0001: schema, roles and the registry of protected tables.
-- Tables live in migrations (frozen once released); functions and triggers live in sql/functions and
-- sql/triggers and are (re)applied by `ledgerlock migrate` whenever their text changes.

-- The three capability roles. NOLOGIN groups: people and services are made members of them.
-- Roles are cluster-wide, so a second database in the same cluster finds them already there.
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

-- The schema is created (empty) by the migrator before yoyo records itself in it.
CREATE SCHEMA IF NOT EXISTS ledgerlock;
REVOKE ALL ON SCHEMA ledgerlock FROM PUBLIC;
-- Every client may call the public read functions (locked_through, period_lock_at, why_locked); what a
-- client may do inside is decided function by function, never by schema access.
GRANT USAGE ON SCHEMA ledgerlock TO PUBLIC;

-- One row per protected table: the configuration `ledgerlock.protect` validated and installed.
CREATE TABLE ledgerlock.protected_table (
    tbl             regclass    PRIMARY KEY,
    date_column     name        NOT NULL,
    scope_column    name,
    final_when      text,           -- as the admin wrote it
    final_when_sql  text,           -- deparsed by PostgreSQL, columns qualified as ll_row.<col>
    number_column   name,
    number_format   text,
    mutable_columns name[]      NOT NULL DEFAULT '{}',
    ledger          text,
    key_columns     name[]      NOT NULL,
    protected_at    timestamptz NOT NULL DEFAULT now(),
    protected_by    name        NOT NULL DEFAULT session_user
);
REVOKE ALL ON ledgerlock.protected_table FROM PUBLIC;
GRANT SELECT ON ledgerlock.protected_table TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

-- What `ledgerlock migrate` installed of sql/functions and sql/triggers, so that a re-run knows
-- whether anything changed.
CREATE TABLE ledgerlock.installed_code (
    digest      text        PRIMARY KEY,
    version     text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    applied_by  name        NOT NULL DEFAULT session_user
);
REVOKE ALL ON ledgerlock.installed_code FROM PUBLIC;

-- Which migrations this database has, whichever way they came (yoyo or the one-file script), so that
-- `ledgerlock migrate` can take over a database installed with `ledgerlock sql`.
CREATE TABLE ledgerlock.installed_migration (
    id          text        PRIMARY KEY,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    via         text        NOT NULL CHECK (via IN ('migrate', 'script'))
);
REVOKE ALL ON ledgerlock.installed_migration FROM PUBLIC;
