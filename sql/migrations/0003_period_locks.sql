-- ledgerlock 0003: period locks (R3) - lock windows, their index, overrides, scope grants, lock history.
-- Tables only: the functions that write them live in sql/functions/r3_period_locks.sql and
-- sql/triggers/r3_period_guard.sql (docs/period-locks.md explains the model).

-- One row per lock window, for ever: unlocking marks the row, it never disappears.
CREATE TABLE ledgerlock.period_lock (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scope           text        NOT NULL,
    from_date       date        NOT NULL,
    to_date         date        NOT NULL,
    level           text        NOT NULL CHECK (level IN ('soft', 'hard')),
    ledgers         text[]      CHECK (ledgers IS NULL OR cardinality(ledgers) > 0),  -- null: every ledger
    note            text,
    reviewer        text,
    status          text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'unlocked')),
    locked_at       timestamptz NOT NULL DEFAULT now(),
    locked_by       name        NOT NULL DEFAULT session_user,
    upgraded_at     timestamptz,
    upgraded_by     name,
    unlocked_at     timestamptz,
    unlocked_by     name,
    unlock_reason   text,
    relock_of       bigint      REFERENCES ledgerlock.period_lock,
    relocked_as     bigint      REFERENCES ledgerlock.period_lock,
    CONSTRAINT period_lock_dates CHECK (from_date <= to_date),
    CONSTRAINT period_lock_unlock_recorded CHECK ((status = 'unlocked') = (unlocked_at IS NOT NULL))
);
CREATE INDEX period_lock_scope ON ledgerlock.period_lock (scope, from_date);
-- Unlocked (and not relocked) windows, for the audit's "written while unlocked, because ...".
CREATE INDEX period_lock_unlocked ON ledgerlock.period_lock (scope, from_date)
    WHERE status = 'unlocked' AND relocked_as IS NULL;

-- The active windows, one row per (lock, ledger) - ledger '*' for a lock on every ledger. Overlapping
-- active windows whose ledgers intersect are refused, so the windows that apply to one table (ledger '*'
-- plus its own tag) never overlap: the check of a row is a backward probe of at most two index entries,
-- whatever the number of windows.
CREATE TABLE ledgerlock.period_lock_span (
    scope       text    NOT NULL,
    ledger      text    NOT NULL,
    from_date   date    NOT NULL,
    to_date     date    NOT NULL,
    lock_id     bigint  NOT NULL REFERENCES ledgerlock.period_lock,
    CONSTRAINT period_lock_span_pkey PRIMARY KEY (scope, ledger, from_date) INCLUDE (to_date, lock_id)
);
CREATE INDEX period_lock_span_lock ON ledgerlock.period_lock_span (lock_id);

-- Fence rows for writers whose snapshot is older than their statement (REPEATABLE READ, SERIALIZABLE):
-- every lock change bumps the generation of its scope's bucket. `generation` is a key column (it is in a
-- unique index), so the bump conflicts with such a writer's FOR KEY SHARE on the bucket, which then fails
-- with 40001 when a lock changed after its snapshot (a non-key UPDATE would not conflict). The 1024
-- buckets exist from the start, so writers never insert here.
CREATE TABLE ledgerlock.period_fence (
    bucket      integer PRIMARY KEY CHECK (bucket BETWEEN 0 AND 1023),
    generation  bigint  NOT NULL DEFAULT 0,
    CONSTRAINT period_fence_generation UNIQUE (bucket, generation)
);
INSERT INTO ledgerlock.period_fence (bucket) SELECT b FROM generate_series(0, 1023) AS b;

-- begin_override(reason): valid for the transaction whose id it records, and no other.
CREATE TABLE ledgerlock.period_override (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    txid        xid8        NOT NULL DEFAULT pg_current_xact_id(),
    at          timestamptz NOT NULL DEFAULT now(),
    db_user     name        NOT NULL DEFAULT session_user,
    actor       text        DEFAULT nullif(current_setting('ledgerlock.actor', true), ''),
    context     text        DEFAULT nullif(current_setting('ledgerlock.context', true), ''),
    reason      text        NOT NULL
);
CREATE INDEX period_override_txid ON ledgerlock.period_override (txid);

-- Scope grants: a role with rows here manages (and sees) the locks of those scopes only; a role without
-- any row (directly or through a role it belongs to) is not limited.
CREATE TABLE ledgerlock.scope_grant (
    grantee     regrole     NOT NULL,
    scope       text        NOT NULL,
    granted_at  timestamptz NOT NULL DEFAULT now(),
    granted_by  name        NOT NULL DEFAULT session_user,
    PRIMARY KEY (grantee, scope)
);

-- Append-only history of everything that happens to locks: lock, advance, upgrade, unlock, relock,
-- override (first write through an override into a window), skip (a skipped import row), grant_scope,
-- revoke_scope. The audit chains it (R5).
CREATE TABLE ledgerlock.lock_event (
    id          bigserial   PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    lock_id     bigint      REFERENCES ledgerlock.period_lock,
    scope       text,
    kind        text        NOT NULL,
    db_user     name        NOT NULL DEFAULT session_user,
    actor       text        DEFAULT nullif(current_setting('ledgerlock.actor', true), ''),
    reason      text,
    context     text        DEFAULT nullif(current_setting('ledgerlock.context', true), ''),
    details     jsonb       NOT NULL DEFAULT '{}',
    txid        xid8        NOT NULL DEFAULT pg_current_xact_id()
);
CREATE INDEX lock_event_scope ON ledgerlock.lock_event (scope, id);
CREATE INDEX lock_event_lock ON ledgerlock.lock_event (lock_id);
-- One 'override' event per (override, window): the first write the override lets into the window.
CREATE UNIQUE INDEX lock_event_override_once ON ledgerlock.lock_event (((details ->> 'override_id')::bigint), lock_id)
    WHERE kind = 'override';

REVOKE ALL ON ledgerlock.period_lock, ledgerlock.period_lock_span, ledgerlock.period_fence,
    ledgerlock.period_override, ledgerlock.scope_grant, ledgerlock.lock_event FROM PUBLIC;
GRANT SELECT ON ledgerlock.period_lock, ledgerlock.lock_event, ledgerlock.scope_grant
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

-- Row-level security: a scope-limited role sees the locks and history of its scopes only. (The lock
-- functions are SECURITY DEFINER and check the grant themselves, with LL005.)
ALTER TABLE ledgerlock.period_lock ENABLE ROW LEVEL SECURITY;
ALTER TABLE ledgerlock.lock_event ENABLE ROW LEVEL SECURITY;
CREATE POLICY period_lock_granted_scopes ON ledgerlock.period_lock FOR SELECT USING (
    NOT EXISTS (SELECT FROM ledgerlock.scope_grant g WHERE pg_catalog.pg_has_role(session_user, g.grantee, 'MEMBER'))
    OR scope IN (SELECT g.scope FROM ledgerlock.scope_grant g
                 WHERE pg_catalog.pg_has_role(session_user, g.grantee, 'MEMBER')));
CREATE POLICY lock_event_granted_scopes ON ledgerlock.lock_event FOR SELECT USING (
    NOT EXISTS (SELECT FROM ledgerlock.scope_grant g WHERE pg_catalog.pg_has_role(session_user, g.grantee, 'MEMBER'))
    OR scope IN (SELECT g.scope FROM ledgerlock.scope_grant g
                 WHERE pg_catalog.pg_has_role(session_user, g.grantee, 'MEMBER')));

-- Current state of every lock window.
CREATE VIEW ledgerlock.period_locks WITH (security_invoker = true) AS
SELECT l.id, l.scope, l.from_date, l.to_date, l.level, l.ledgers,
       CASE WHEN l.status = 'active' THEN 'active'
            WHEN l.relocked_as IS NOT NULL THEN 'relocked'
            ELSE 'unlocked' END AS status,
       l.note, l.reviewer, l.locked_at, l.locked_by, l.upgraded_at, l.upgraded_by,
       l.unlocked_at, l.unlocked_by, l.unlock_reason, l.relock_of, l.relocked_as
FROM ledgerlock.period_lock l;

-- The timeline (skipped import rows have their own view).
CREATE VIEW ledgerlock.lock_history WITH (security_invoker = true) AS
SELECT e.id, e.at, e.lock_id, e.scope, e.kind, e.db_user, e.actor, e.reason, e.context, e.details
FROM ledgerlock.lock_event e
WHERE e.kind <> 'skip';

-- Rows an import skipped because their date lay in a locked window (SET LOCAL ledgerlock.on_locked = 'skip').
CREATE VIEW ledgerlock.skipped_writes WITH (security_invoker = true) AS
SELECT e.id, e.at, (e.details ->> 'table') AS table_name, e.details -> 'key' AS row_key,
       e.details -> 'row' AS row_data, e.lock_id, e.scope, e.db_user, e.actor, e.context
FROM ledgerlock.lock_event e
WHERE e.kind = 'skip';

GRANT SELECT ON ledgerlock.period_locks, ledgerlock.lock_history, ledgerlock.skipped_writes
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;
