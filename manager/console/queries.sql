-- The console's reads, one named block each (`-- name: <block>` then what it returns). Every statement runs
-- as the logged-in person's own role: what comes back is what the database lets that role see (row-level
-- security on scopes, capability checks in the functions). Writes are single calls of the public SQL API
-- and live next to the route that makes them.

-- name: whoami
-- The person and their capabilities.
SELECT session_user::text AS role,
       r.rolsuper AS superuser,
       ledgerlock.has_capability('admin') AS admin,
       ledgerlock.has_capability('controller') AS controller,
       ledgerlock.has_capability('auditor') AS auditor,
       current_database() AS database
FROM pg_roles r WHERE r.rolname = session_user;

-- name: granted_scopes
-- The scopes the person is limited to (null: not limited; empty: limited to no scope), as every rule asks it.
SELECT ledgerlock._granted_scopes() AS scopes;

-- name: scopes
-- Every scope the person may see: locks, checklist and fiscal-year settings (row-level security hides
-- other scopes of the first two; the third is filtered by the grants here), plus the scopes granted.
WITH granted AS (
    SELECT ledgerlock._granted_scopes() AS scopes
), known AS (
    SELECT scope FROM ledgerlock.period_locks
    UNION SELECT scope FROM ledgerlock.close_tasks()
    UNION SELECT scope FROM ledgerlock.fiscal_year_start WHERE scope <> '*'
    UNION SELECT unnest(scopes) FROM granted
)
SELECT k.scope,
       ledgerlock.locked_through(k.scope) AS locked_through,
       (SELECT count(*) FROM ledgerlock.period_locks l WHERE l.scope = k.scope AND l.status = 'active') AS active_locks,
       (SELECT count(*) FROM ledgerlock.period_locks l
        WHERE l.scope = k.scope AND l.status = 'active' AND l.level = 'hard') AS hard_locks,
       (SELECT count(*) FROM ledgerlock.close_tasks(k.scope) t WHERE t.status = 'open') AS open_tasks
FROM known k, granted
WHERE granted.scopes IS NULL OR k.scope = ANY (granted.scopes)
ORDER BY length(k.scope), k.scope;

-- name: scope_summary
-- The badge and the presets of one scope.
SELECT ledgerlock.locked_through(%(scope)s) AS locked_through,
       ledgerlock.fiscal_year_start_month(%(scope)s) AS fiscal_start,
       ledgerlock.preset_through(%(scope)s, 'end-of-last-month') AS end_of_last_month,
       ledgerlock.preset_through(%(scope)s, 'end-of-last-quarter') AS end_of_last_quarter,
       ledgerlock.preset_through(%(scope)s, 'end-of-last-fiscal-year') AS end_of_last_fiscal_year;

-- name: calendar
-- Twelve months from %(start)s, each hard, soft, unlocked or open, with the windows that touch it.
SELECT m::date AS month_start,
       (m + interval '1 month - 1 day')::date AS month_end,
       CASE WHEN bool_or(l.status = 'active' AND l.level = 'hard') THEN 'hard'
            WHEN bool_or(l.status = 'active') THEN 'soft'
            WHEN bool_or(l.status = 'unlocked') THEN 'unlocked'
            ELSE 'open' END AS state,
       bool_or(l.status = 'active' AND NOT (l.from_date <= m::date AND l.to_date >= (m + interval '1 month - 1 day')::date))
           AS partial,
       coalesce(array_agg(l.id ORDER BY l.id) FILTER (WHERE l.id IS NOT NULL), '{}') AS lock_ids
FROM generate_series(%(start)s::date, %(start)s::date + interval '11 months', interval '1 month') AS m
LEFT JOIN ledgerlock.period_locks l
       ON l.scope = %(scope)s AND l.status IN ('active', 'unlocked')
      AND daterange(l.from_date, l.to_date, '[]') && daterange(m::date, (m + interval '1 month')::date)
GROUP BY m
ORDER BY m;

-- name: scope_locks
-- The windows of one scope, newest first, with what may be done to them next.
SELECT l.id, l.from_date, l.to_date, l.level, l.ledgers, l.status, l.note, l.reviewer, l.locked_at,
       l.locked_by, l.upgraded_by, l.unlocked_by, l.unlock_reason, l.relock_of, l.relocked_as,
       CASE WHEN l.status = 'active' THEN ledgerlock.four_eyes_required(l.id) ELSE false END AS four_eyes
FROM ledgerlock.period_locks l
WHERE l.scope = %(scope)s
ORDER BY l.from_date DESC, l.id DESC;

-- name: history
-- The lock history timeline, newest first.
SELECT h.id, h.at, h.lock_id, h.scope, h.kind, h.db_user, h.actor, h.reason, h.context, h.details
FROM ledgerlock.lock_history h
WHERE (%(scope)s::text IS NULL OR h.scope = %(scope)s)
ORDER BY h.id DESC
LIMIT %(limit)s;

-- name: four_eyes
-- Whether hard unlocks need a second admin, and how long a request lives.
SELECT four_eyes_unlock, unlock_request_ttl FROM ledgerlock.close_setting;

-- name: requests
-- The four-eyes requests (every status), newest first, with the window they would open.
SELECT r.id, r.action, r.lock_id, r.scope, r.reason, r.requested_by, r.requested_at, r.expires_at, r.status,
       r.decided_by, r.decided_at, r.expires_at - clock_timestamp() AS expires_in,
       l.from_date, l.to_date, l.level
FROM ledgerlock.unlock_requests(false) r
LEFT JOIN ledgerlock.period_locks l ON l.id = r.lock_id
ORDER BY (r.status = 'pending') DESC, r.id DESC
LIMIT 100;

-- name: tasks
-- The close checklist of a scope (and period, when given).
SELECT t.id, t.scope, t.period, t.from_date, t.to_date, t.task, t.status, t.added_by, t.added_at,
       t.done_by, t.done_at, t.done_note
FROM ledgerlock.close_tasks(%(scope)s, %(period)s) t;

-- name: audit_events
-- One page of the audit trail, newest first, filtered.
SELECT a.seq, a.at, a.table_name::text AS table_name, a.row_key, a.scope, a.operation, a.changed_columns,
       a.db_user, a.actor, a.reason, a.lock_id, a.override_id
FROM ledgerlock.audit_log a
-- (the table's events under every oid the trail files them under: a restored dump's carry the old cluster's;
-- a scalar subquery, so that the oids are found once)
WHERE (%(table)s::regclass IS NULL OR a.table_oid = ANY ((SELECT ledgerlock._audit_oids_of(%(table)s::regclass))::oid[]))
  AND (%(operation)s::text IS NULL OR a.operation = %(operation)s)
  AND (%(from)s::date IS NULL OR a.at >= %(from)s::date)
  AND (%(to)s::date IS NULL OR a.at < %(to)s::date + 1)
  AND (%(before)s::bigint IS NULL OR a.seq < %(before)s)
ORDER BY a.seq DESC
LIMIT %(limit)s;

-- name: audit_operations
-- The operations present in the trail (said when a filter matches nothing).
SELECT DISTINCT operation FROM ledgerlock.audit_log ORDER BY operation;

-- name: audit_tables
-- The tables a filter can name.
SELECT tbl::text AS table_name FROM ledgerlock.protected_table ORDER BY 1;

-- name: audit_event
-- One event, whole.
SELECT a.seq, a.at, a.txid::text AS txid, a.table_name::text AS table_name, a.row_key, a.scope, a.operation,
       a.old_row, a.new_row, a.changed_columns, a.db_user, a.actor, a.reason, a.context, a.lock_id,
       a.override_id, a.event_hash, a.chain_seq, a.chain_hash, a.details
FROM ledgerlock.audit_log a
WHERE a.seq = %(seq)s;

-- name: why
-- Every rule that freezes one row now.
SELECT w.depth, w.table_name::text AS table_name, w.row_key, w.row_label, w.rule, w.summary, w.way_back
FROM ledgerlock.why_locked(%(table)s::regclass, %(key)s::jsonb) w;

-- name: number_series
-- Every numbering series and its last final number.
SELECT s.table_name::text AS table_name, s.series, s.last_value FROM ledgerlock.number_series s ORDER BY 1, 2;

-- name: number_gaps
-- The problems in final numbers (empty: every series runs 1..N).
SELECT g.table_name::text AS table_name, g.series, g.kind, g.first_number, g.last_number, g.detail
FROM ledgerlock.number_gaps() g;

-- name: verify
-- The chain and the books, recomputed.
SELECT v.ok, v.events, v.sealed, v.unsealed, v.head, v.first_broken_seq, v.problem, v.problems
FROM ledgerlock.verify_audit() v;

-- name: digest
-- The chain head to keep outside the database.
SELECT ledgerlock.audit_digest() AS digest;

-- name: fiscal_year
-- The dates of a fiscal year of a scope (FY2026: the year starting in 2026).
SELECT lower(d) AS from_date, upper(d) - 1 AS to_date
FROM ledgerlock.period_dates(%(scope)s, %(label)s) AS d;
