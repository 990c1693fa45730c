-- ledgerlock 0011: re-posting skipped writes (ledgerlock.repost_skipped, sql/functions/r3_skipped.sql).
--
-- A skip already keeps the row image (details.row of its 'skip' event); a re-post is a 'repost' event in
-- the same lock history, naming the skip it re-posts (details.skip_id) and the row it inserted. A skip is
-- re-posted once: the index refuses a second event for it, whatever the path.
CREATE UNIQUE INDEX lock_event_repost_once ON ledgerlock.lock_event (((details ->> 'skip_id')::bigint))
    WHERE kind = 'repost';

-- skipped_writes says whether, when, by whom and as which row each skip was re-posted (null: not yet).
CREATE OR REPLACE VIEW ledgerlock.skipped_writes WITH (security_invoker = true) AS
SELECT e.id, e.at, (e.details ->> 'table') AS table_name, e.details -> 'key' AS row_key,
       e.details -> 'row' AS row_data, e.lock_id, e.scope, e.db_user, e.actor, e.context,
       r.at AS reposted_at, r.db_user AS reposted_by, r.details -> 'key' AS reposted_key
FROM ledgerlock.lock_event e
LEFT JOIN ledgerlock.lock_event r ON r.kind = 'repost' AND (r.details ->> 'skip_id')::bigint = e.id
WHERE e.kind = 'skip';
