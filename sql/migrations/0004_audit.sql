-- ledgerlock 0004: the audit trail (R5) - append-only events, and the hash chain that seals them.
--
-- Writers only ever INSERT into audit_event (each event carries its own hash, computed when written);
-- a sealer later appends links to audit_chain in seal order. No row is ever updated, so no writer waits
-- for another and there is no hot chain-head row. Functions, guards and RLS policies live in
-- sql/functions/r5_audit.sql and sql/triggers/r5_audit_capture.sql (they need functions that the code step
-- installs after the migrations).

CREATE SEQUENCE ledgerlock.audit_event_seq AS bigint;
REVOKE ALL ON SEQUENCE ledgerlock.audit_event_seq FROM PUBLIC;

-- One row per event: a row written to a protected table, or an event that is not a row write
-- (protect/unprotect, lock events, number-format changes, skipped writes, unlock requests).
CREATE TABLE ledgerlock.audit_event (
    seq         bigint      PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),          -- transaction time
    txid        xid8        NOT NULL DEFAULT pg_current_xact_id(),
    table_oid   oid,                                         -- for joins while the table exists
    table_name  text,                                        -- qualified name when written (hashed)
    row_key     jsonb,
    scope       text,
    operation   text        NOT NULL,
    old_row     jsonb,
    new_row     jsonb,
    db_user     name        NOT NULL DEFAULT session_user,   -- authoritative: the login
    actor       text,                                        -- informational: ledgerlock.actor
    reason      text,                                        -- ledgerlock.reason, or the unlock/override reason
    context     text,                                        -- informational: ledgerlock.context
    lock_id     bigint,
    override_id bigint,
    details     jsonb,
    event_hash  text        NOT NULL                         -- sha256 of the canonical form, hex
);
REVOKE ALL ON ledgerlock.audit_event FROM PUBLIC;
-- The sealer looks for committed, unsealed events among recent transactions only.
CREATE INDEX audit_event_txid ON ledgerlock.audit_event (txid);
CREATE INDEX audit_event_table_key ON ledgerlock.audit_event (table_oid, row_key);
ALTER TABLE ledgerlock.audit_event ENABLE ROW LEVEL SECURITY;

-- The chain, in seal order: link n hashes link n-1, the sealed event's hash and the seal it belongs to.
-- A seal (batch) covers every event committed before the sealer's snapshot; txid_floor is the previous
-- seal's snapshot xmin, so an event sealed in this batch must have a txid >= txid_floor (an older one
-- would have been sealed before: it was inserted behind the sealer's back).
CREATE TABLE ledgerlock.audit_chain (
    chain_seq    bigint      PRIMARY KEY,
    seq          bigint      NOT NULL UNIQUE,
    event_hash   text        NOT NULL,
    batch        bigint      NOT NULL,          -- chain_seq of the first link of its seal
    txid_floor   xid8        NOT NULL,
    sealed_below xid8        NOT NULL,          -- this seal's snapshot xmin (the next seal's floor)
    sealed_at    timestamptz NOT NULL DEFAULT now(),
    chain_hash   text        NOT NULL
);
REVOKE ALL ON ledgerlock.audit_chain FROM PUBLIC;
GRANT SELECT ON ledgerlock.audit_chain TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

-- The evidence as users read it. security_invoker: the reader's row-level security applies (auditors
-- read everything, scope-granted roles their scopes, applications nothing).
CREATE VIEW ledgerlock.audit_log WITH (security_invoker = true) AS
SELECT e.seq,
       e.at,
       e.txid,
       e.table_oid::regclass AS table_name,
       e.row_key,
       e.scope,
       e.operation,
       e.old_row,
       e.new_row,
       CASE WHEN e.old_row IS NOT NULL AND e.new_row IS NOT NULL THEN
           ARRAY(SELECT k.key FROM jsonb_each(e.new_row) AS k
                 WHERE k.value IS DISTINCT FROM e.old_row -> k.key
                 UNION
                 SELECT o.key FROM jsonb_each(e.old_row) AS o
                 WHERE NOT e.new_row ? o.key
                 ORDER BY 1)
       END AS changed_columns,
       e.db_user,
       e.actor,
       e.reason,
       e.context,
       e.lock_id,
       e.override_id,
       e.event_hash,
       c.chain_seq,
       c.chain_hash,
       e.details
FROM ledgerlock.audit_event e
LEFT JOIN ledgerlock.audit_chain c ON c.seq = e.seq;
REVOKE ALL ON ledgerlock.audit_log FROM PUBLIC;
GRANT SELECT ON ledgerlock.audit_log TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;
GRANT SELECT ON ledgerlock.audit_event TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

-- Who reads which events: members of a ledgerlock role read every scope unless scope grants limit them
-- (R3's ledgerlock.scope_grant, the same rule as the lock history); a scope-limited role reads the events
-- of its scopes only (table-level events, which have no scope, are not among them). Applications have no
-- SELECT privilege at all. Superusers and the owner bypass RLS (they own the evidence; see docs/audit.md).
CREATE POLICY audit_event_granted_scopes ON ledgerlock.audit_event FOR SELECT USING (
    NOT EXISTS (SELECT FROM ledgerlock.scope_grant g WHERE pg_catalog.pg_has_role(session_user, g.grantee, 'MEMBER'))
    OR scope IN (SELECT g.scope FROM ledgerlock.scope_grant g
                 WHERE pg_catalog.pg_has_role(session_user, g.grantee, 'MEMBER')));
