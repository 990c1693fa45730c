-- ledgerlock 0022: cheap capture - writers store an event without hashing it; the sealer hashes it when it
-- links it into the chain (audit_chain.event_hash is then the event's hash of record).
--
-- Events written before this migration keep the hash computed when they were written: verification still
-- compares it with the sealed one. A new event's event_hash stays null (the row is never updated: the trail
-- is append-only), so the hash of an event is coalesce(audit_event.event_hash, audit_chain.event_hash).
ALTER TABLE ledgerlock.audit_event ALTER COLUMN event_hash DROP NOT NULL;
COMMENT ON COLUMN ledgerlock.audit_event.event_hash IS
    'sha256 computed when written, for events written before cheap capture; null since: the sealer hashes '
    'the event and keeps the hash in audit_chain.event_hash';

-- The evidence as users read it: the event's hash is the one of record (written, else sealed).
CREATE OR REPLACE VIEW ledgerlock.audit_log WITH (security_invoker = true) AS
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
       coalesce(e.event_hash, c.event_hash) AS event_hash,
       c.chain_seq,
       c.chain_hash,
       e.details
FROM ledgerlock.audit_event e
LEFT JOIN ledgerlock.audit_chain c ON c.seq = e.seq;
