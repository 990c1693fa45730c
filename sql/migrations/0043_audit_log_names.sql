-- ledgerlock 0043: audit_log names an event's table by the name the trail files it under. Its table_name
-- was the event's table oid as a regclass, and an oid means nothing outside the cluster that wrote it: after
-- pg_dump/pg_restore into another cluster (or logical replication) the events written before carry the old
-- cluster's oids, so a history asked for by table (`WHERE table_name = 'invoice'::regclass`, `ledgerlock
-- audit log --table invoice`, why_locked's "final since") left out every event from before the restore, and
-- an old oid could even name another table. table_name now resolves the recorded qualified name (the name
-- verification files events under; the DDL guard refuses renames), and falls back to the oid when no table
-- has that name any more (a dropped table then reads as its bare oid, as before). recorded_table, added at the
-- end, is the name as recorded, which outlives the table; table_oid the table's oid in the cluster that wrote
-- the event. (A filter on table_name computes it for every event; one on table_oid and recorded_table is read
-- through the (table_oid, row_key, seq) index, as `ledgerlock audit log --table` does.)
CREATE OR REPLACE VIEW ledgerlock.audit_log WITH (security_invoker = true) AS
SELECT e.seq,
       e.at,
       e.txid,
       coalesce(pg_catalog.to_regclass(e.table_name), e.table_oid::regclass) AS table_name,
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
       e.details,
       e.table_name AS recorded_table,
       e.table_oid
FROM ledgerlock.audit_event e
LEFT JOIN ledgerlock.audit_chain c ON c.seq = e.seq;
