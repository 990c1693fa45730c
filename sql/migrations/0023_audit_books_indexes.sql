-- ledgerlock 0023: what the books check reads by index (sql/functions/r5_verify.sql).
--
-- The latest event of each row: (table, key, seq), so that the newest event of a key is the last entry of
-- its run and a later one is found without reading events. It replaces (table, key): every lookup that
-- used that prefix still does, and the write path keeps the same number of indexes.
CREATE INDEX IF NOT EXISTS audit_event_row_latest ON ledgerlock.audit_event (table_oid, row_key, seq);
DROP INDEX IF EXISTS ledgerlock.audit_event_table_key;

-- Updates that moved a row to another key (its old image does not hold the key it is filed under): few,
-- and the only events whose old key is a fact of its own. Containment compares scalars by value, which
-- is how a unique index tells keys apart.
CREATE INDEX IF NOT EXISTS audit_event_moved ON ledgerlock.audit_event (table_oid, seq)
    WHERE operation IN ('UPDATE', 'STATE_UPDATE') AND NOT (old_row @> row_key);

-- Skipped import rows, whose lock_event row the lock history check reads from their details.
CREATE INDEX IF NOT EXISTS audit_event_skipped ON ledgerlock.audit_event (seq) WHERE operation = 'SKIP';

-- Verification from a kept digest on: these take where to start (sql/functions/r5_verify.sql creates them
-- again with it).
DROP FUNCTION IF EXISTS ledgerlock._audit_verify_chain();
DROP FUNCTION IF EXISTS ledgerlock._audit_window_problems();
DROP FUNCTION IF EXISTS ledgerlock._audit_discrepancies();
