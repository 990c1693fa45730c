-- The month-end and year-end close: fiscal years and lock presets, the close checklist, four-eyes
-- unlocks of hard windows, and the count of skipped generations of recurring jobs.
-- Tables are in migrations/0007_close.sql; they are written only here, by capability-checked functions.

-- ---------------------------------------------------------------------------------------------------
-- Fiscal years and lock presets
-- ---------------------------------------------------------------------------------------------------

-- The month (1..12) the scope's fiscal year starts in: its own row, else scope '*', else January.
CREATE OR REPLACE FUNCTION ledgerlock.fiscal_year_start_month(scope text)
RETURNS integer
LANGUAGE sql
STABLE
SECURITY DEFINER  -- a pure configuration read: anyone who may call it may know the fiscal calendar
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(
        (SELECT f.start_month FROM ledgerlock.fiscal_year_start f WHERE f.scope = fiscal_year_start_month.scope),
        (SELECT f.start_month FROM ledgerlock.fiscal_year_start f WHERE f.scope = '*'),
        1)
$$;
REVOKE ALL ON FUNCTION ledgerlock.fiscal_year_start_month(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.fiscal_year_start_month(text)
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

CREATE OR REPLACE FUNCTION ledgerlock.set_fiscal_year_start(scope text, start_month integer)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    before integer;
BEGIN
    PERFORM ledgerlock._require_capability('admin', 'set_fiscal_year_start');
    IF scope IS NULL OR pg_catalog.btrim(scope) = '' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'set_fiscal_year_start: scope is required',
            HINT = 'use scope ''*'' for the default of every scope';
    END IF;
    IF scope = '*' THEN
        PERFORM ledgerlock._require_unrestricted('set_fiscal_year_start for every scope (''*'')');
    ELSE
        PERFORM ledgerlock._require_scope(scope, 'set_fiscal_year_start');
    END IF;
    IF start_month IS NULL OR start_month NOT BETWEEN 1 AND 12 THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('set_fiscal_year_start: start_month must be 1..12, not %s',
                                        coalesce(start_month::text, 'null')),
            HINT = 'a fiscal year starting on 1 April is start_month 4';
    END IF;
    before := ledgerlock.fiscal_year_start_month(scope);
    INSERT INTO ledgerlock.fiscal_year_start AS f (scope, start_month) VALUES (scope, start_month)
    ON CONFLICT ON CONSTRAINT fiscal_year_start_pkey DO UPDATE
        SET start_month = EXCLUDED.start_month, set_at = now(), set_by = session_user;
    PERFORM ledgerlock._close_event('fiscal_year_start', scope, NULL, NULL,
        pg_catalog.jsonb_build_object('start_month', start_month, 'previous_start_month', before));
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.set_fiscal_year_start(text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.set_fiscal_year_start(text, integer)
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

-- The "through" date of a lock preset, as of `today`. Pure date arithmetic, so the CLI and SQL agree:
--   end-of-last-month        the last day of the month before today's
--   end-of-last-quarter      the last day of the fiscal quarter before today's (quarters count from the
--                            fiscal year's start month: with April, Apr-Jun, Jul-Sep, Oct-Dec, Jan-Mar)
--   end-of-last-fiscal-year  the day before the current fiscal year started
CREATE OR REPLACE FUNCTION ledgerlock.preset_through(scope text, preset text, today date DEFAULT current_date)
RETURNS date
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    month_start date := pg_catalog.date_trunc('month', today)::date;
    -- whole months between the start of the fiscal year and today's month
    into_year integer := (pg_catalog.date_part('month', today)::integer
                          - ledgerlock.fiscal_year_start_month(scope) + 12) % 12;
BEGIN
    IF today IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'preset_through: today must not be null';
    END IF;
    IF preset = 'end-of-last-month' THEN
        RETURN month_start - 1;
    ELSIF preset = 'end-of-last-quarter' THEN
        RETURN (month_start - pg_catalog.make_interval(months => into_year % 3))::date - 1;
    ELSIF preset = 'end-of-last-fiscal-year' THEN
        RETURN (month_start - pg_catalog.make_interval(months => into_year))::date - 1;
    END IF;
    RAISE EXCEPTION USING ERRCODE = '22023',
        MESSAGE = pg_catalog.format('unknown lock preset %L', preset),
        HINT = 'presets: end-of-last-month, end-of-last-quarter, end-of-last-fiscal-year';
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.preset_through(text, text, date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.preset_through(text, text, date)
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

-- ---------------------------------------------------------------------------------------------------
-- Close periods and the checklist
-- ---------------------------------------------------------------------------------------------------

-- A close period label in its stored form: the relative labels last-month, last-quarter and
-- last-fiscal-year (the periods the lock presets close, as of `today`) become 2026-03, 2026-01-01..2026-03-31
-- and FY2025; any other label is returned trimmed and in capitals (period_dates checks it).
CREATE OR REPLACE FUNCTION ledgerlock.period_label(scope text, period text, today date DEFAULT current_date)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p text := pg_catalog.upper(pg_catalog.btrim(period));
    last_day date;
BEGIN
    IF p = 'LAST-MONTH' THEN
        RETURN pg_catalog.to_char(ledgerlock.preset_through(scope, 'end-of-last-month', today), 'YYYY-MM');
    ELSIF p = 'LAST-QUARTER' THEN
        last_day := ledgerlock.preset_through(scope, 'end-of-last-quarter', today);
        RETURN pg_catalog.to_char((last_day + 1 - interval '3 months')::date, 'YYYY-MM-DD') || '..'
               || pg_catalog.to_char(last_day, 'YYYY-MM-DD');
    ELSIF p = 'LAST-FISCAL-YEAR' THEN
        last_day := ledgerlock.preset_through(scope, 'end-of-last-fiscal-year', today);
        RETURN 'FY' || pg_catalog.to_char((last_day + 1 - interval '1 year')::date, 'YYYY');
    END IF;
    RETURN p;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.period_label(text, text, date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.period_label(text, text, date)
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

-- The dates of a close period label, as an inclusive-exclusive daterange:
--   2026-03 (a month), 2026-Q1 (a calendar quarter), 2026 (a calendar year),
--   FY2026 (the fiscal year of the scope that starts in 2026), 2026-01-01..2026-06-30 (explicit, inclusive),
--   or a relative label of period_label (last-month, last-quarter, last-fiscal-year).
CREATE OR REPLACE FUNCTION ledgerlock.period_dates(scope text, period text)
RETURNS daterange
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p text := ledgerlock.period_label(scope, period);
    m text[];
    first date;
BEGIN
    IF p ~ '^\d{4}-(0[1-9]|1[0-2])$' THEN
        first := pg_catalog.to_date(p || '-01', 'YYYY-MM-DD');
        RETURN pg_catalog.daterange(first, (first + interval '1 month')::date);
    ELSIF p ~ '^\d{4}-Q[1-4]$' THEN
        first := pg_catalog.make_date(pg_catalog.left(p, 4)::integer, pg_catalog.right(p, 1)::integer * 3 - 2, 1);
        RETURN pg_catalog.daterange(first, (first + interval '3 months')::date);
    ELSIF p ~ '^\d{4}$' THEN
        first := pg_catalog.make_date(p::integer, 1, 1);
        RETURN pg_catalog.daterange(first, (first + interval '1 year')::date);
    ELSIF p ~ '^FY\d{4}$' THEN
        first := pg_catalog.make_date(pg_catalog.substr(p, 3)::integer, ledgerlock.fiscal_year_start_month(scope), 1);
        RETURN pg_catalog.daterange(first, (first + interval '1 year')::date);
    END IF;
    m := pg_catalog.regexp_match(p, '^(\d{4}-\d{2}-\d{2})\s*\.\.\s*(\d{4}-\d{2}-\d{2})$');
    IF m IS NOT NULL THEN
        BEGIN
            IF m[1]::date <= m[2]::date THEN
                RETURN pg_catalog.daterange(m[1]::date, m[2]::date, '[]');
            END IF;
        EXCEPTION WHEN datetime_field_overflow OR invalid_datetime_format THEN
            NULL;  -- not a date: refused below like any other bad label
        END;
    END IF;
    RAISE EXCEPTION USING ERRCODE = '22023',
        MESSAGE = pg_catalog.format('%L is not a close period', period),
        HINT = 'write 2026-03 (month), 2026-Q1 (quarter), 2026 (year), FY2026 (fiscal year starting in 2026), '
               '2026-01-01..2026-06-30, or last-month, last-quarter, last-fiscal-year';
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.period_dates(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.period_dates(text, text)
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

-- Add a task to the checklist of a scope's close period; adding the same task again returns its id.
CREATE OR REPLACE FUNCTION ledgerlock.add_close_task(scope text, period text, task text)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d daterange;
    task_id bigint;
BEGIN
    PERFORM ledgerlock._require_capability('controller', 'add_close_task');
    PERFORM ledgerlock._require_scope(scope, 'add_close_task');
    IF task IS NULL OR pg_catalog.btrim(task) = '' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'add_close_task: the task needs a description',
            HINT = 'e.g. ''Reconcile the bank accounts''';
    END IF;
    d := ledgerlock.period_dates(scope, period);
    INSERT INTO ledgerlock.close_task AS t (scope, period, dates, task)
    VALUES (scope, ledgerlock.period_label(scope, period), d, pg_catalog.btrim(task))
    ON CONFLICT ON CONSTRAINT close_task_once DO NOTHING
    RETURNING t.id INTO task_id;
    IF task_id IS NULL THEN
        SELECT t.id INTO task_id FROM ledgerlock.close_task t
        WHERE t.scope = add_close_task.scope AND t.dates = d AND t.task = pg_catalog.btrim(add_close_task.task);
    ELSE
        PERFORM ledgerlock._close_event('close_task_add', scope, NULL, NULL,
            pg_catalog.jsonb_build_object('task_id', task_id, 'period', ledgerlock.period_label(scope, period),
                                          'task', pg_catalog.btrim(task)));
    END IF;
    RETURN task_id;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.add_close_task(text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.add_close_task(text, text, text)
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

-- Mark a task done (once: the first one to do it is who the checklist remembers).
CREATE OR REPLACE FUNCTION ledgerlock.complete_close_task(task_id bigint, note text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t ledgerlock.close_task;
BEGIN
    PERFORM ledgerlock._require_capability('controller', 'complete_close_task');
    SELECT * INTO t FROM ledgerlock.close_task c WHERE c.id = task_id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM ledgerlock._refuse('LL004', pg_catalog.format('close task #%s does not exist', task_id),
                                   'list the tasks with ledgerlock.close_tasks(scope, period)');
    END IF;
    PERFORM ledgerlock._require_scope(t.scope, 'complete_close_task');
    IF t.done_at IS NOT NULL THEN
        PERFORM ledgerlock._refuse('LL004',
            pg_catalog.format('close task #%s (%s, %s) was already done by %s at %s', t.id, t.task, t.period,
                              t.done_by, t.done_at));
    END IF;
    UPDATE ledgerlock.close_task c SET done_at = now(), done_by = session_user,
                                       done_note = nullif(pg_catalog.btrim(note), '')
    WHERE c.id = task_id;
    PERFORM ledgerlock._close_event('close_task_done', t.scope, NULL, note,
        pg_catalog.jsonb_build_object('task_id', t.id, 'period', t.period, 'task', t.task));
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.complete_close_task(bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.complete_close_task(bigint, text)
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

-- The checklist: every task of in_scope (null: every scope) whose period overlaps in_period (null: any).
CREATE OR REPLACE FUNCTION ledgerlock.close_tasks(in_scope text DEFAULT NULL, in_period text DEFAULT NULL)
RETURNS TABLE(id bigint, scope text, period text, from_date date, to_date date, task text, status text,
              added_by name, added_at timestamptz, done_by name, done_at timestamptz, done_note text)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d daterange;
BEGIN
    IF NOT (ledgerlock.has_capability('controller') OR ledgerlock.has_capability('auditor')) THEN
        PERFORM ledgerlock._require_capability('controller', 'close_tasks');
    END IF;
    IF in_period IS NOT NULL THEN
        d := ledgerlock.period_dates(coalesce(in_scope, '*'), in_period);
    END IF;
    RETURN QUERY
    SELECT t.id, t.scope, t.period, pg_catalog.lower(t.dates), pg_catalog.upper(t.dates) - 1, t.task,
           CASE WHEN t.done_at IS NULL THEN 'open' ELSE 'done' END, t.added_by, t.added_at, t.done_by,
           t.done_at, t.done_note
    FROM ledgerlock.close_task t
    WHERE (in_scope IS NULL OR t.scope = in_scope)
      AND (d IS NULL OR t.dates && d)
      AND ledgerlock._scope_granted(t.scope)
    ORDER BY pg_catalog.lower(t.dates), t.scope, t.id;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.close_tasks(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.close_tasks(text, text)
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

-- Called when a window is locked (or upgraded to hard): a NOTICE listing the open tasks of the scope
-- whose period overlaps the window. It warns, it never blocks — the lock stands.
CREATE OR REPLACE FUNCTION ledgerlock._warn_open_close_tasks(scope text, from_date date, to_date date)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    window_range daterange := pg_catalog.daterange(from_date, to_date, '[]');
    open_tasks text;
    n integer;
    example text;
BEGIN
    SELECT pg_catalog.count(*),
           pg_catalog.string_agg(pg_catalog.format('#%s %s (%s)', t.id, t.task, t.period), '; '
                                 ORDER BY pg_catalog.lower(t.dates), t.id),
           pg_catalog.min(t.period)
    INTO n, open_tasks, example
    FROM ledgerlock.close_task t
    WHERE t.scope = _warn_open_close_tasks.scope AND t.done_at IS NULL AND t.dates && window_range;
    IF n > 0 THEN
        RAISE NOTICE USING
            MESSAGE = pg_catalog.format('%s close task%s still open for scope %s in %s: %s', n,
                CASE WHEN n = 1 THEN ' is' ELSE 's are' END, scope, ledgerlock._period_text(from_date, to_date),
                open_tasks),
            HINT = pg_catalog.format('the lock stands; mark a task done with: ledgerlock close tasks %s %s done ID',
                                     scope, example);
    END IF;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._warn_open_close_tasks(text, date, date) FROM PUBLIC;

-- ---------------------------------------------------------------------------------------------------
-- Four-eyes unlock of hard windows
-- ---------------------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION ledgerlock._close_setting()
RETURNS ledgerlock.close_setting
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM ledgerlock.close_setting
$$;
REVOKE ALL ON FUNCTION ledgerlock._close_setting() FROM PUBLIC;

-- Turn four-eyes on (and/or change how long a request stays valid): one admin may make unlocking
-- stricter. Turning it off is the opposite: while it is on, that takes a request approved by another
-- admin (request_four_eyes_off + approve_unlock), or one admin alone could remove the second pair of eyes.
CREATE OR REPLACE FUNCTION ledgerlock.set_four_eyes(required boolean, request_ttl interval DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s ledgerlock.close_setting;
BEGIN
    PERFORM ledgerlock._require_capability('admin', 'set_four_eyes');
    PERFORM ledgerlock._require_unrestricted('set_four_eyes');
    SELECT * INTO s FROM ledgerlock.close_setting FOR UPDATE;
    IF required IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'set_four_eyes: required must be true or false';
    END IF;
    IF request_ttl IS NOT NULL AND request_ttl <= interval '0' THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('set_four_eyes: request_ttl must be positive, not %s', request_ttl);
    END IF;
    IF s.four_eyes_unlock AND NOT required AND NOT ledgerlock._approved_in_this_transaction('four_eyes_off', NULL) THEN
        PERFORM ledgerlock._refuse('LL005',
            'four-eyes unlocking is on: turning it off takes the approval of a second admin',
            'file the request with ledgerlock.request_four_eyes_off(reason); another admin approves it with '
            'ledgerlock.approve_unlock(request_id)');
    END IF;
    UPDATE ledgerlock.close_setting c
    SET four_eyes_unlock = required, unlock_request_ttl = coalesce(request_ttl, c.unlock_request_ttl),
        changed_at = now(), changed_by = session_user;
    PERFORM ledgerlock._close_event('four_eyes_setting', NULL, NULL, NULL,
        pg_catalog.jsonb_build_object('four_eyes_unlock', required,
            'unlock_request_ttl', coalesce(request_ttl, s.unlock_request_ttl)::text,
            'previous', pg_catalog.jsonb_build_object('four_eyes_unlock', s.four_eyes_unlock,
                                                      'unlock_request_ttl', s.unlock_request_ttl::text)));
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.set_four_eyes(boolean, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.set_four_eyes(boolean, interval)
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

-- Whether an approved request of this action (and window) was approved in the current transaction:
-- the only way past the four-eyes gate. Request rows are written only by this file's functions.
CREATE OR REPLACE FUNCTION ledgerlock._approved_in_this_transaction(action text, lock_id bigint)
RETURNS boolean
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (
        SELECT FROM ledgerlock.unlock_request r
        WHERE r.action = _approved_in_this_transaction.action
          AND r.lock_id IS NOT DISTINCT FROM _approved_in_this_transaction.lock_id
          AND r.status = 'approved'
          AND r.decided_txid = pg_catalog.pg_current_xact_id_if_assigned())
$$;
REVOKE ALL ON FUNCTION ledgerlock._approved_in_this_transaction(text, bigint) FROM PUBLIC;

-- Whether unlocking this window now takes a four-eyes request (four-eyes on and the window hard).
CREATE OR REPLACE FUNCTION ledgerlock.four_eyes_required(lock_id bigint)
RETURNS boolean
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT (ledgerlock._close_setting()).four_eyes_unlock
           AND ledgerlock._lock_window_level(four_eyes_required.lock_id) = 'hard'
$$;
REVOKE ALL ON FUNCTION ledgerlock.four_eyes_required(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.four_eyes_required(bigint)
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

-- The gate unlock_period passes through for a hard window: with four-eyes on, only an unlock approved
-- (by a second admin) in this very transaction gets past. LL005 otherwise, naming the way.
CREATE OR REPLACE FUNCTION ledgerlock._assert_unlock_approved(lock_id bigint, level text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF level = 'hard' AND (ledgerlock._close_setting()).four_eyes_unlock
       AND NOT ledgerlock._approved_in_this_transaction('unlock', lock_id) THEN
        PERFORM ledgerlock._refuse('LL005',
            pg_catalog.format('unlocking hard lock #%s takes the approval of a second admin (four-eyes is on)',
                              lock_id),
            pg_catalog.format('file the request with ledgerlock.request_unlock(%s, reason) (CLI: ledgerlock unlock '
                              '%s --reason ...); a different admin approves it with ledgerlock.approve_unlock('
                              'request_id)', lock_id, lock_id));
    END IF;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._assert_unlock_approved(bigint, text) FROM PUBLIC;

-- Mark pending requests whose time is up as expired (database clock), recording each expiry once.
-- Every four-eyes function sweeps first, so an expiry is on record at the latest when anyone looks.
CREATE OR REPLACE FUNCTION ledgerlock.expire_unlock_requests()
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r ledgerlock.unlock_request;
    n integer := 0;
BEGIN
    PERFORM ledgerlock._require_capability('admin', 'expire_unlock_requests');
    FOR r IN
        UPDATE ledgerlock.unlock_request u
        SET status = 'expired', decided_at = u.expires_at, decided_by = NULL
        WHERE u.status = 'pending' AND u.expires_at <= pg_catalog.clock_timestamp()
        RETURNING u.*
    LOOP
        PERFORM ledgerlock._close_event('unlock_request_expire', ledgerlock._lock_window_scope(r.lock_id),
            r.lock_id, r.reason, ledgerlock._request_details(r));
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.expire_unlock_requests() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.expire_unlock_requests()
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

CREATE OR REPLACE FUNCTION ledgerlock._request_details(r ledgerlock.unlock_request)
RETURNS jsonb
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.jsonb_build_object('request_id', r.id, 'action', r.action, 'lock_id', r.lock_id,
        'requested_by', r.requested_by, 'requested_at', r.requested_at, 'expires_at', r.expires_at,
        'status', r.status, 'decided_by', r.decided_by, 'decided_at', r.decided_at)
$$;
REVOKE ALL ON FUNCTION ledgerlock._request_details(ledgerlock.unlock_request) FROM PUBLIC;

CREATE OR REPLACE FUNCTION ledgerlock._file_request(action text, lock_id bigint, reason text)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r ledgerlock.unlock_request;
    ttl interval := (ledgerlock._close_setting()).unlock_request_ttl;
BEGIN
    PERFORM ledgerlock.expire_unlock_requests();
    SELECT * INTO r FROM ledgerlock.unlock_request u
    WHERE u.action = _file_request.action AND u.lock_id IS NOT DISTINCT FROM _file_request.lock_id
      AND u.status = 'pending';
    IF FOUND THEN
        PERFORM ledgerlock._refuse('LL004',
            pg_catalog.format('request #%s (%s) by %s is already pending until %s', r.id,
                              coalesce('unlock lock #' || r.lock_id, 'turn four-eyes off'), r.requested_by,
                              r.expires_at),
            pg_catalog.format('another admin approves it with ledgerlock.approve_unlock(%s), or %s withdraws it '
                              'with ledgerlock.withdraw_unlock(%s)', r.id, r.requested_by, r.id));
    END IF;
    INSERT INTO ledgerlock.unlock_request AS u (action, lock_id, reason, expires_at)
    VALUES (action, lock_id, reason, pg_catalog.clock_timestamp() + ttl)
    RETURNING u.* INTO r;
    PERFORM ledgerlock._close_event('unlock_request', ledgerlock._lock_window_scope(lock_id), lock_id, reason,
                                    ledgerlock._request_details(r));
    RETURN r.id;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._file_request(text, bigint, text) FROM PUBLIC;

-- File a request to unlock a hard window; a different admin approves it before it expires.
CREATE OR REPLACE FUNCTION ledgerlock.request_unlock(lock_id bigint, reason text)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    why text;
    level text;
BEGIN
    PERFORM ledgerlock._require_capability('admin', 'request_unlock');
    why := ledgerlock._require_reason(reason, 'request_unlock');
    level := ledgerlock._lock_window_level(lock_id);
    IF level IS NULL THEN
        PERFORM ledgerlock._refuse('LL004',
            pg_catalog.format('request_unlock: lock #%s does not exist or is not active', lock_id),
            'list the active windows with: ledgerlock locks');
    END IF;
    PERFORM ledgerlock._require_scope(ledgerlock._lock_window_scope(lock_id), 'request_unlock');
    IF level <> 'hard' THEN
        PERFORM ledgerlock._refuse('LL004',
            pg_catalog.format('request_unlock: lock #%s is %s; only hard windows need a second admin', lock_id,
                              level),
            pg_catalog.format('unlock it directly with ledgerlock.unlock_period(%s, reason)', lock_id));
    END IF;
    RETURN ledgerlock._file_request('unlock', lock_id, why);
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.request_unlock(bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.request_unlock(bigint, text)
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

-- File a request to turn four-eyes off; a different admin approves it with approve_unlock.
CREATE OR REPLACE FUNCTION ledgerlock.request_four_eyes_off(reason text)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    why text;
BEGIN
    PERFORM ledgerlock._require_capability('admin', 'request_four_eyes_off');
    PERFORM ledgerlock._require_unrestricted('request_four_eyes_off');
    why := ledgerlock._require_reason(reason, 'request_four_eyes_off');
    IF NOT (ledgerlock._close_setting()).four_eyes_unlock THEN
        PERFORM ledgerlock._refuse('LL004', 'request_four_eyes_off: four-eyes unlocking is already off');
    END IF;
    RETURN ledgerlock._file_request('four_eyes_off', NULL, why);
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.request_four_eyes_off(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.request_four_eyes_off(text)
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

-- Why approving this request is refused now, as (sqlstate, message, hint), or nulls when it may go ahead.
-- One place for the conditions, so approve_unlock and record_unlock_refusal cannot disagree.
CREATE OR REPLACE FUNCTION ledgerlock._approval_refusal(r ledgerlock.unlock_request, OUT sqlstate text,
                                                        OUT message text, OUT hint text)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    what text := coalesce('unlock lock #' || r.lock_id, 'turn four-eyes off');
BEGIN
    IF r.status = 'pending' AND r.expires_at <= pg_catalog.clock_timestamp() OR r.status = 'expired' THEN
        sqlstate := 'LL004';
        message := pg_catalog.format('request #%s (%s) by %s expired at %s', r.id, what, r.requested_by,
                                     r.expires_at);
        hint := 'file a new request; requests expire by the database clock (ledgerlock.set_four_eyes sets how long)';
    ELSIF r.status <> 'pending' THEN
        sqlstate := 'LL004';
        message := pg_catalog.format('request #%s (%s) is %s already', r.id, what, r.status);
    ELSIF r.lock_id IS NULL AND ledgerlock._granted_scopes() IS NOT NULL THEN
        sqlstate := 'LL005';  -- a global request: only an admin who is not scope-limited decides it
        message := pg_catalog.format('approving request #%s (%s) changes what every scope shares: %s is limited '
                                     'to scopes %s', r.id, what, session_user,
                                     pg_catalog.array_to_string(ledgerlock._granted_scopes(), ', '));
        hint := 'ask an admin who is not scope-limited (no ledgerlock.grant_scope names them) to approve it';
    ELSIF r.requested_by = session_user THEN
        sqlstate := 'LL005';
        message := pg_catalog.format('request #%s (%s) was filed by %s, who cannot also approve it: four-eyes '
                                     'needs a different database user', r.id, what, session_user);
        hint := 'ask another member of ledgerlock_admin to run ledgerlock.approve_unlock(' || r.id || ')';
    END IF;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._approval_refusal(ledgerlock.unlock_request) FROM PUBLIC;

-- Approve a request: a different admin than the requester, before it expires. An unlock request unlocks
-- the window with the request's reason; a four_eyes_off request turns four-eyes off. Returns the lock id
-- (null for four_eyes_off).
CREATE OR REPLACE FUNCTION ledgerlock.approve_unlock(request_id bigint)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r ledgerlock.unlock_request;
    refusal record;
BEGIN
    PERFORM ledgerlock._require_capability('admin', 'approve_unlock');
    SELECT * INTO r FROM ledgerlock.unlock_request u WHERE u.id = request_id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM ledgerlock._refuse('LL004', pg_catalog.format('unlock request #%s does not exist', request_id),
                                   'list pending requests with: ledgerlock unlock --pending');
    END IF;
    IF r.lock_id IS NOT NULL THEN
        PERFORM ledgerlock._require_scope(ledgerlock._lock_window_scope(r.lock_id), 'approve_unlock');
    END IF;
    refusal := ledgerlock._approval_refusal(r);
    IF refusal.sqlstate IS NOT NULL THEN
        -- The refusal rolls this transaction back, so it cannot be recorded here: the server log keeps it,
        -- and the manager records it afterwards with record_unlock_refusal (which re-checks it).
        RAISE LOG 'ledgerlock: % refused approving request #% filed by %: %', session_user, r.id, r.requested_by,
            refusal.message;
        PERFORM ledgerlock._refuse(refusal.sqlstate, refusal.message, refusal.hint);
    END IF;
    UPDATE ledgerlock.unlock_request u
    SET status = 'approved', decided_at = pg_catalog.clock_timestamp(), decided_by = session_user,
        decided_txid = pg_catalog.pg_current_xact_id()
    WHERE u.id = r.id
    RETURNING u.* INTO r;
    PERFORM ledgerlock._close_event('unlock_approve', ledgerlock._lock_window_scope(r.lock_id), r.lock_id,
                                    r.reason, ledgerlock._request_details(r));
    IF r.action = 'unlock' THEN
        PERFORM ledgerlock.unlock_period(r.lock_id, r.reason);
    ELSE
        PERFORM ledgerlock.set_four_eyes(false);
    END IF;
    RETURN r.lock_id;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.approve_unlock(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.approve_unlock(bigint)
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

-- Record, in its own transaction, that approving this request is refused for the session user now
-- (same user, expired, already decided). It re-checks the refusal, so it can only record the truth;
-- it returns false (and records nothing) when the approval would in fact go through.
CREATE OR REPLACE FUNCTION ledgerlock.record_unlock_refusal(request_id bigint)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r ledgerlock.unlock_request;
    refusal record;
BEGIN
    PERFORM ledgerlock._require_capability('admin', 'record_unlock_refusal');
    PERFORM ledgerlock.expire_unlock_requests();
    SELECT * INTO r FROM ledgerlock.unlock_request u WHERE u.id = request_id;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    refusal := ledgerlock._approval_refusal(r);
    IF refusal.sqlstate IS NULL THEN
        RETURN false;
    END IF;
    PERFORM ledgerlock._close_event('unlock_refuse', ledgerlock._lock_window_scope(r.lock_id), r.lock_id,
        r.reason, ledgerlock._request_details(r) || pg_catalog.jsonb_build_object(
            'refused_user', session_user, 'sqlstate', refusal.sqlstate, 'refusal', refusal.message));
    RETURN true;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.record_unlock_refusal(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.record_unlock_refusal(bigint)
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

-- The requester takes a pending request back.
CREATE OR REPLACE FUNCTION ledgerlock.withdraw_unlock(request_id bigint)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r ledgerlock.unlock_request;
BEGIN
    PERFORM ledgerlock._require_capability('admin', 'withdraw_unlock');
    SELECT * INTO r FROM ledgerlock.unlock_request u WHERE u.id = request_id FOR UPDATE;
    IF NOT FOUND OR r.status <> 'pending' THEN
        PERFORM ledgerlock._refuse('LL004',
            pg_catalog.format('unlock request #%s is not pending', request_id));
    END IF;
    IF r.requested_by <> session_user THEN
        PERFORM ledgerlock._refuse('LL005',
            pg_catalog.format('request #%s was filed by %s; only they can withdraw it', r.id, r.requested_by));
    END IF;
    UPDATE ledgerlock.unlock_request u
    SET status = 'withdrawn', decided_at = pg_catalog.clock_timestamp(), decided_by = session_user
    WHERE u.id = r.id
    RETURNING u.* INTO r;
    PERFORM ledgerlock._close_event('unlock_request_withdraw', ledgerlock._lock_window_scope(r.lock_id),
                                    r.lock_id, r.reason, ledgerlock._request_details(r));
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.withdraw_unlock(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.withdraw_unlock(bigint)
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

-- Requests, newest first (pending only by default). Sweeps expiries first when an admin asks.
CREATE OR REPLACE FUNCTION ledgerlock.unlock_requests(pending_only boolean DEFAULT true)
RETURNS TABLE(id bigint, action text, lock_id bigint, scope text, reason text, requested_by name,
              requested_at timestamptz, expires_at timestamptz, status text, decided_by name,
              decided_at timestamptz)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT (ledgerlock.has_capability('controller') OR ledgerlock.has_capability('auditor')) THEN
        PERFORM ledgerlock._require_capability('controller', 'unlock_requests');
    END IF;
    IF ledgerlock.has_capability('admin') THEN
        PERFORM ledgerlock.expire_unlock_requests();
    END IF;
    RETURN QUERY
    SELECT u.id, u.action, u.lock_id, ledgerlock._lock_window_scope(u.lock_id), u.reason, u.requested_by,
           u.requested_at, u.expires_at,
           CASE WHEN u.status = 'pending' AND u.expires_at <= pg_catalog.clock_timestamp() THEN 'expired'
                ELSE u.status END,
           u.decided_by, u.decided_at
    FROM ledgerlock.unlock_request u
    WHERE (NOT pending_only OR (u.status = 'pending' AND u.expires_at > pg_catalog.clock_timestamp()))
      AND (u.lock_id IS NULL OR ledgerlock._scope_granted(ledgerlock._lock_window_scope(u.lock_id)))
    ORDER BY u.id DESC;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.unlock_requests(boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.unlock_requests(boolean)
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

-- ---------------------------------------------------------------------------------------------------
-- Wiring to the period locks (R3): windows and the lock history
-- ---------------------------------------------------------------------------------------------------

-- The level of an active window ('soft' | 'hard'), or null when there is no active window of that id.
CREATE OR REPLACE FUNCTION ledgerlock._lock_window_level(lock_id bigint)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT l.level FROM ledgerlock.period_lock l WHERE l.id = _lock_window_level.lock_id AND l.status = 'active'
$$;
REVOKE ALL ON FUNCTION ledgerlock._lock_window_level(bigint) FROM PUBLIC;

CREATE OR REPLACE FUNCTION ledgerlock._lock_window_scope(lock_id bigint)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT l.scope FROM ledgerlock.period_lock l WHERE l.id = _lock_window_scope.lock_id
$$;
REVOKE ALL ON FUNCTION ledgerlock._lock_window_scope(bigint) FROM PUBLIC;

-- Every close event goes into the lock history (R3's lock_event, which the audit chains): checklist
-- changes, fiscal-year and four-eyes settings, unlock requests, approvals, expiries, withdrawals and
-- recorded refusals.
CREATE OR REPLACE FUNCTION ledgerlock._close_event(kind text, scope text, lock_id bigint, reason text,
                                                   details jsonb)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO ledgerlock.lock_event (lock_id, scope, kind, reason, details)
    VALUES (lock_id, scope, kind, reason, coalesce(details, '{}'))
$$;
REVOKE ALL ON FUNCTION ledgerlock._close_event(text, text, bigint, text, jsonb) FROM PUBLIC;

-- ---------------------------------------------------------------------------------------------------
-- Recurring jobs: skipped generations
-- ---------------------------------------------------------------------------------------------------

-- A scheduler that generates entries (rent, depreciation, subscriptions) writes in skip mode with a
-- context label per job; a generation dated in a locked window is skipped and recorded, not lost. This is
-- the count to watch: per context label, table and scope, how many generations were skipped, when, and
-- into which windows. Reads ledgerlock.skipped_writes as the caller (its row-level security applies).
CREATE OR REPLACE FUNCTION ledgerlock.skipped_generations(of_context text DEFAULT NULL,
                                                          since timestamptz DEFAULT NULL)
RETURNS TABLE(context text, table_name text, scope text, skipped bigint, first_at timestamptz,
              last_at timestamptz, lock_ids bigint[])
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.context, s.table_name, s.scope, pg_catalog.count(*), pg_catalog.min(s.at), pg_catalog.max(s.at),
           pg_catalog.array_agg(DISTINCT s.lock_id ORDER BY s.lock_id)
    FROM ledgerlock.skipped_writes s
    WHERE (of_context IS NULL OR s.context = of_context)
      AND (since IS NULL OR s.at >= since)
    GROUP BY s.context, s.table_name, s.scope
    ORDER BY s.context NULLS FIRST, s.table_name, s.scope
$$;
REVOKE ALL ON FUNCTION ledgerlock.skipped_generations(text, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.skipped_generations(text, timestamptz)
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;
