-- ledgerlock 0007: month-end and year-end close - fiscal years, the close checklist, four-eyes unlocks.
-- Functions live in sql/functions/r3_close.sql and r3_four_eyes.sql. Every table here is written only through those functions
-- (SECURITY DEFINER, capability-checked); clients get SELECT where they may read, nothing more.

-- The month a scope's fiscal year starts in (lock presets, FY period labels). Scope '*' is the default
-- for every scope without its own row; without any row the fiscal year is the calendar year.
CREATE TABLE ledgerlock.fiscal_year_start (
    scope       text        PRIMARY KEY,
    start_month integer     NOT NULL CHECK (start_month BETWEEN 1 AND 12),
    set_at      timestamptz NOT NULL DEFAULT now(),
    set_by      name        NOT NULL DEFAULT session_user
);
REVOKE ALL ON ledgerlock.fiscal_year_start FROM PUBLIC;
GRANT SELECT ON ledgerlock.fiscal_year_start TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

-- The close checklist: what must be done before a period is locked. Tasks never block a lock; locking a
-- window that overlaps open tasks raises a NOTICE listing them.
CREATE TABLE ledgerlock.close_task (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scope       text        NOT NULL,
    period      text        NOT NULL,      -- the label as given: 2026-03, 2026-Q1, 2026, FY2026, D..D
    dates       daterange   NOT NULL CHECK (NOT isempty(dates) AND NOT lower_inf(dates) AND NOT upper_inf(dates)),
    task        text        NOT NULL CHECK (btrim(task) <> ''),
    added_at    timestamptz NOT NULL DEFAULT now(),
    added_by    name        NOT NULL DEFAULT session_user,
    done_at     timestamptz,
    done_by     name,
    done_note   text,
    CHECK ((done_at IS NULL) = (done_by IS NULL)),
    CONSTRAINT close_task_once UNIQUE (scope, dates, task)
);
-- "open tasks of this scope", asked on every lock (open tasks are few: a partial index stays tiny)
CREATE INDEX close_task_open_idx ON ledgerlock.close_task (scope) WHERE done_at IS NULL;
REVOKE ALL ON ledgerlock.close_task FROM PUBLIC;
GRANT SELECT ON ledgerlock.close_task TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

-- Settings of the close, one row. Stored here (admin-only to change, audited), never in a client GUC.
CREATE TABLE ledgerlock.close_setting (
    id                  boolean     PRIMARY KEY DEFAULT true CHECK (id),
    four_eyes_unlock    boolean     NOT NULL DEFAULT false,
    unlock_request_ttl  interval    NOT NULL DEFAULT '24 hours' CHECK (unlock_request_ttl > interval '0'),
    changed_at          timestamptz NOT NULL DEFAULT now(),
    changed_by          name        NOT NULL DEFAULT session_user
);
INSERT INTO ledgerlock.close_setting DEFAULT VALUES;
REVOKE ALL ON ledgerlock.close_setting FROM PUBLIC;
GRANT SELECT ON ledgerlock.close_setting TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

-- Four-eyes requests: filed by one admin, approved by a different database user before they expire
-- (database clock). Approving an 'unlock' request unlocks the window with the request's reason; approving
-- 'four_eyes_off' turns four-eyes off (one admin alone cannot remove the second pair of eyes).
CREATE TABLE ledgerlock.unlock_request (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    action          text        NOT NULL DEFAULT 'unlock' CHECK (action IN ('unlock', 'four_eyes_off')),
    lock_id         bigint      REFERENCES ledgerlock.period_lock CHECK ((action = 'unlock') = (lock_id IS NOT NULL)),
    reason          text        NOT NULL CHECK (btrim(reason) <> ''),
    requested_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    requested_by    name        NOT NULL DEFAULT session_user,
    expires_at      timestamptz NOT NULL,
    status          text        NOT NULL DEFAULT 'pending'
                                CHECK (status IN ('pending', 'approved', 'expired', 'withdrawn')),
    decided_at      timestamptz,
    decided_by      name,
    decided_txid    xid8,
    CHECK ((status = 'pending') = (decided_at IS NULL)),
    CHECK (expires_at > requested_at)
);
-- one pending request per window (and one pending request to turn four-eyes off)
CREATE UNIQUE INDEX unlock_request_pending_idx ON ledgerlock.unlock_request (action, coalesce(lock_id, 0))
    WHERE status = 'pending';
REVOKE ALL ON ledgerlock.unlock_request FROM PUBLIC;
GRANT SELECT ON ledgerlock.unlock_request TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

-- Row-level security, as on the lock tables (R3): a scope-limited role reads the checklist and the
-- requests of its scopes only. (The close functions are SECURITY DEFINER and check the grant themselves.)
ALTER TABLE ledgerlock.close_task ENABLE ROW LEVEL SECURITY;
CREATE POLICY close_task_granted_scopes ON ledgerlock.close_task FOR SELECT USING (
    NOT EXISTS (SELECT FROM ledgerlock.scope_grant g WHERE pg_catalog.pg_has_role(session_user, g.grantee, 'MEMBER'))
    OR scope IN (SELECT g.scope FROM ledgerlock.scope_grant g
                 WHERE pg_catalog.pg_has_role(session_user, g.grantee, 'MEMBER')));
ALTER TABLE ledgerlock.unlock_request ENABLE ROW LEVEL SECURITY;
-- period_lock's own policy applies inside the subquery: a request is visible when its window is
CREATE POLICY unlock_request_granted_scopes ON ledgerlock.unlock_request FOR SELECT USING (
    lock_id IS NULL OR EXISTS (SELECT FROM ledgerlock.period_lock l WHERE l.id = lock_id));
