-- Rule R3, the month-end and year-end close: fiscal years and lock presets, the close checklist
-- (four-eyes unlocks are in r3_four_eyes.sql, skipped generations of recurring jobs in r3_skipped.sql).
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
SET quote_all_identifiers = off
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
SET quote_all_identifiers = off
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
    PERFORM ledgerlock._lock_event('fiscal_year_start', scope, NULL, NULL,
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
SET standard_conforming_strings = on  -- its literals hold backslashes
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
SET quote_all_identifiers = off
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
        PERFORM ledgerlock._lock_event('close_task_add', scope, NULL, NULL,
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
SET quote_all_identifiers = off
AS $$
DECLARE
    t ledgerlock.close_task;
BEGIN
    PERFORM ledgerlock._require_capability('controller', 'complete_close_task');
    PERFORM ledgerlock._require_value(task_id IS NOT NULL, 'complete_close_task', 'the id of a close task');
    SELECT * INTO t FROM ledgerlock.close_task c WHERE c.id = task_id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM ledgerlock._refuse('22023', pg_catalog.format('close task #%s does not exist', task_id),
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
    PERFORM ledgerlock._lock_event('close_task_done', t.scope, NULL, note,
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
SET quote_all_identifiers = off
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
-- whose period overlaps the window. It warns, it never blocks - the lock stands.
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

