-- ledgerlock 0019: the mark of a logical-replication subscriber (docs/replication.md).
--
-- One row while this database applies a publisher's books: its guards fire for local sessions only
-- (ENABLE, not ENABLE ALWAYS), the sealer leaves the chain to the publisher, and replicated tables refuse
-- local writes. Never published: each database of a replication pair has its own role.
CREATE TABLE ledgerlock.replication_role (
    singleton   boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    role        text        NOT NULL CHECK (role = 'subscriber'),
    since       timestamptz NOT NULL DEFAULT now(),
    marked_by   name        NOT NULL DEFAULT session_user
);
COMMENT ON TABLE ledgerlock.replication_role IS
    'one row while this database is a logical-replication subscriber of another ledgerlock database';
REVOKE ALL ON ledgerlock.replication_role FROM PUBLIC;
GRANT SELECT ON ledgerlock.replication_role TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;
