-- Rule R3: no row whose date (old or new) lies in an active lock window of its scope and ledger can be
-- inserted, updated or deleted; mutable columns stay writable. Locking never touches the protected rows:
-- the guards look the windows up (two backward index probes, whatever the number of windows).
--
-- Row triggers on a protected table (arguments: date column, date kind, scope column or '', ledger or '',
-- the rest mark, the scope marks, the query of a scope read from a parent row or '', the query of a date read
-- from a parent row or '', then the exempt columns for UPDATE) - row triggers, so partitions inherit them:
--   ll_20_period_skip    BEFORE INSERT, acts only when ledgerlock.on_locked = 'skip': a row in a locked window
--                        is skipped and recorded (ledgerlock.skipped_writes); in the default mode it returns
--                        at once (the mode is not in its WHEN clause: see _install_20_period)
--   ll_20_period_insert  AFTER INSERT (the table's generated check where it qualifies: see _ll20_insert_body)
--   ll_20_period_update  AFTER UPDATE: old and new date; a change of mutable columns only passes, without a
--                        call (its WHEN clause: ledgerlock._row_changed_beyond_exempt)
--   ll_20_period_delete  AFTER DELETE
-- AFTER triggers see the row as stored (generated columns, changes made by other BEFORE triggers).
--
-- The high-water marks, written into the triggers by the installer (docs/period-locks.md has the race argument). The
-- table's mark is in each trigger's WHEN clause: the last day of any active window that applies to the table, in any
-- scope (`issued_on <= '2026-03-31'`). Rows dated after it - today's documents, nearly every write - never call a
-- function, so single-row and bulk writes cost what they cost without ledgerlock. A table whose date comes from a
-- parent row cannot name it in the WHEN clause: its triggers fire on every write once any window applies to it, and the
-- parent's date is read (one index probe, the parent row share-locked) only for a row whose scope has a window. The
-- scopes' marks are in the arguments (ledgerlock._period_scope_marks): a side of a row dated after its scope's mark is
-- not probed, so a lock in one scope does not make another scope's backdated writes pay the check. A lock that raises
-- the mark the installed triggers give its scope re-installs the guards of the tables it applies to, in its own
-- transaction: CREATE OR REPLACE TRIGGER waits for the table's open writers and holds new ones until the lock commits,
-- so no write judged by the old marks commits after the lock. Unlocking leaves the marks where they are (a stricter
-- filter only probes more often).

-- 'skip' and 'error' (the default) are the only values of ledgerlock.on_locked; anything else is a mistake
-- that must not pass silently.
CREATE OR REPLACE FUNCTION ledgerlock._check_on_locked()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v text := pg_catalog.current_setting('ledgerlock.on_locked', true);
BEGIN
    IF v IS NOT NULL AND v NOT IN ('', 'error', 'skip') THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('ledgerlock.on_locked must be ''error'' or ''skip'', not %L', v);
    END IF;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._check_on_locked() FROM PUBLIC;

-- The probe is written out inline (the scope gate, the fence and the query of ledgerlock._enter_scope and
-- ledgerlock._window_covering): a nested call with a pinned search_path costs about as much as the probe.
-- BEFORE INSERT (skip mode), AFTER INSERT, AFTER UPDATE, AFTER DELETE. Arguments: date column, date kind,
-- scope column or '', ledger or '', the scope marks (see the top of this file), the parent's scope query
-- (ledgerlock._parent_scope_sql: run only for a scope_column that is not a column of the row), the parent's
-- date query (ledgerlock._parent_date_sql, likewise), then the exempt columns.
-- One loop visits the row's sides (new; old; old then new): each side whose day lies on or before its
-- scope's mark enters the scope and looks its window up; the new side of an update that keeps scope and day
-- reuses the old side's window.
CREATE OR REPLACE FUNCTION ledgerlock.guard_period_row()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER  -- reads ledgerlock's windows, which clients cannot
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
SET gin_fuzzy_search_limit = 0  -- it reads a user's rows: ledgerlock._row_reading_settings()
SET extra_float_digits = 1
AS $$
DECLARE
    ll_refused text;  -- a refusal is called as an expression: see ledgerlock._refuse
    on_locked text := pg_catalog.current_setting('ledgerlock.on_locked', true);
    date_col text;
    date_kind text;
    scope_col text;
    tbl_ledger text;
    rest_mark date;  -- null: no scope marks, every side is probed
    fenced boolean;
    o jsonb;
    n jsonb;
    r jsonb;
    side text;
    row_scope text;
    row_day date;
    entered text;  -- the scope whose gate this call holds
    w bigint;
    old_scope text;
    old_day date;
    wo bigint;
    wn bigint;
    num_col text;
    day_text text;
    old_read boolean := false;  -- the old side read its parent's date (an update keeping the parent reuses it)
BEGIN
    IF TG_WHEN = 'BEFORE' AND on_locked IS DISTINCT FROM 'skip' THEN
        RETURN NEW;  -- ll_20_period_skip outside skip mode (see _install_20_period): the AFTER check judges the row
    END IF;
    IF on_locked IS NOT NULL AND on_locked NOT IN ('', 'error', 'skip') THEN
        ll_refused := ledgerlock._check_on_locked();
    END IF;
    date_col := TG_ARGV[0];
    date_kind := TG_ARGV[1];
    scope_col := nullif(TG_ARGV[2], '');
    tbl_ledger := nullif(TG_ARGV[3], '');
    rest_mark := nullif(TG_ARGV[4], '')::date;
    fenced := pg_catalog.current_setting('transaction_isolation') <> 'read committed';
    FOREACH side IN ARRAY CASE TG_OP WHEN 'INSERT' THEN '{new}'::text[] WHEN 'DELETE' THEN '{old}'::text[]
                                     ELSE '{old,new}'::text[] END LOOP
        IF side = 'old' THEN
            o := pg_catalog.to_jsonb(OLD);
            r := o;
        ELSE
            n := pg_catalog.to_jsonb(NEW);
            r := n;
        END IF;
        IF TG_ARGV[7] = '' OR r ? date_col THEN
            row_day := CASE date_kind WHEN 'timestamptz' THEN ((r ->> date_col)::timestamptz AT TIME ZONE 'UTC')::date
                                      ELSE (r ->> date_col)::date END;
        ELSIF side = 'new' AND TG_OP = 'UPDATE' AND old_read
              AND (o -> pg_catalog.split_part(date_col, '.', 1)) = (n -> pg_catalog.split_part(date_col, '.', 1)) THEN
            row_day := old_day;  -- the same parent: the same day
        ELSIF rest_mark IS NULL OR rest_mark > '-infinity'::date OR TG_ARGV[6] <> ''
              OR TG_ARGV[5]::jsonb ? coalesce(r ->> scope_col, '*') THEN
            -- the date comes from the parent row, share-locked so that it cannot move until this write ends;
            -- read only when the row's scope has a window (_scope_marked_sql), or the scope is the parent's too
            EXECUTE TG_ARGV[7] INTO day_text USING r;
            IF day_text IS NULL AND side = 'new' THEN
                ll_refused := ledgerlock._refuse('23503',
                    pg_catalog.format('%s cannot be %s: its date comes from the row %s references, which does not '
                                      'exist', ledgerlock.row_label(TG_RELID::regclass, r),
                                      CASE TG_OP WHEN 'INSERT' THEN 'inserted' ELSE 'updated' END,
                                      pg_catalog.split_part(date_col, '.', 1)),
                    'write the parent row first: the period lock of the row is read from it');
            END IF;
            row_day := nullif(day_text, '')::date;
            old_read := side = 'old';
        ELSE
            row_day := NULL;  -- no window in the row's scope: the parent is not read
        END IF;
        IF scope_col IS NULL OR r ? scope_col OR TG_ARGV[6] = '' THEN
            row_scope := coalesce(r ->> scope_col, '*');
        ELSIF row_day IS NULL THEN
            row_scope := NULL;  -- no window to find: the parent is not read
        ELSE
            -- the scope comes from the parent row, share-locked so that it cannot move until this write ends
            EXECUTE TG_ARGV[6] INTO row_scope USING r;
            IF row_scope IS NULL AND side = 'new' THEN
                ll_refused := ledgerlock._refuse('23503',
                    pg_catalog.format('%s cannot be %s: its scope comes from the row %s references, which does not '
                                      'exist', ledgerlock.row_label(TG_RELID::regclass, r - coalesce(
                                          (ledgerlock._config(TG_RELID::regclass)).number_column::text, '')),
                                      CASE TG_OP WHEN 'INSERT' THEN 'inserted' ELSE 'updated' END,
                                      pg_catalog.split_part(scope_col, '.', 1)),
                    'write the parent row first: the period lock of the row is read from it');
            END IF;
        END IF;
        w := NULL;
        IF row_day IS NULL THEN
            NULL;  -- a row without a date lies in no window
        ELSIF row_scope IS NULL THEN
            NULL;  -- the old side of a row whose parent this transaction deleted: the parent's guard checked it
        ELSIF side = 'new' AND TG_OP = 'UPDATE' AND row_scope = old_scope AND row_day = old_day THEN
            w := wo;  -- same scope and date: the same window
        ELSIF rest_mark IS NULL OR row_day <= rest_mark  -- the test _mark_test_sql writes into generated checks
              OR row_day <= (TG_ARGV[5]::jsonb ->> row_scope)::date THEN
            IF entered IS DISTINCT FROM row_scope THEN
                EXECUTE 'LOCK TABLE ledgerlock_gate.scope_gate_'
                        || pg_catalog.lpad((pg_catalog.hashtext(row_scope) & 63)::text, 2, '0') || ' IN ROW EXCLUSIVE MODE';
                IF fenced THEN
                    PERFORM FROM ledgerlock.period_fence f
                    WHERE f.bucket = pg_catalog.hashtext(row_scope) & 1023 FOR KEY SHARE;
                END IF;
                entered := row_scope;
            END IF;
            IF tbl_ledger IS NULL THEN  -- an untagged table: windows on every ledger only
                SELECT x.lock_id INTO w
                FROM (SELECT s.lock_id, s.to_date FROM ledgerlock.period_lock_span s
                      WHERE s.scope = row_scope AND s.ledger = '*' AND s.from_date <= row_day
                      ORDER BY s.from_date DESC LIMIT 1) AS x
                WHERE x.to_date >= row_day;
            ELSE
                SELECT x.lock_id INTO w
                FROM ((SELECT s.lock_id, s.to_date FROM ledgerlock.period_lock_span s
                       WHERE s.scope = row_scope AND s.ledger = '*' AND s.from_date <= row_day
                       ORDER BY s.from_date DESC LIMIT 1)
                      UNION ALL
                      (SELECT s.lock_id, s.to_date FROM ledgerlock.period_lock_span s
                       WHERE s.scope = row_scope AND s.ledger = tbl_ledger AND s.from_date <= row_day
                       ORDER BY s.from_date DESC LIMIT 1)) AS x
                WHERE x.to_date >= row_day
                LIMIT 1;
            END IF;
        END IF;
        IF side = 'old' THEN
            old_scope := row_scope;
            old_day := row_day;
            wo := w;
        ELSE
            wn := w;
        END IF;
    END LOOP;

    IF TG_OP = 'INSERT' AND TG_WHEN = 'BEFORE' THEN  -- skip mode
        IF wn IS NULL OR ledgerlock._period_admits(TG_RELID::regclass, wn, n) THEN
            RETURN NEW;
        END IF;
        PERFORM ledgerlock._lock_event('skip', row_scope, wn, NULL, pg_catalog.jsonb_build_object(
            'table', TG_RELID::regclass::text, 'key', ledgerlock.row_key(TG_RELID::regclass, n),
            'row', ledgerlock._audit_row_image(NEW)));
        RETURN NULL;
    END IF;

    IF wo IS NULL AND wn IS NULL THEN
        RETURN NULL;
    END IF;
    -- only mutable (or generated) columns changed: reconciling or paying a row in a locked period is fine
    IF TG_OP = 'UPDATE' AND ledgerlock._same_except(OLD, NEW, TG_ARGV[8:]) THEN
        RETURN NULL;
    END IF;
    IF wo IS NOT NULL THEN
        ll_refused := ledgerlock._check_window(TG_RELID::regclass, wo, o,
                                         CASE TG_OP WHEN 'DELETE' THEN 'deleted' ELSE 'updated' END, true);
    END IF;
    IF wn IS NOT NULL AND wn IS DISTINCT FROM wo THEN
        IF TG_OP = 'UPDATE' THEN
            -- a final number given in this statement goes back if it is refused: name the row by its old one
            num_col := (ledgerlock._config(TG_RELID::regclass)).number_column;
            IF num_col IS NOT NULL THEN
                n := pg_catalog.jsonb_set(n, ARRAY[num_col], coalesce(o -> num_col, 'null'::jsonb));
            END IF;
        END IF;
        ll_refused := ledgerlock._check_window(TG_RELID::regclass, wn, n,
                                         CASE TG_OP WHEN 'INSERT' THEN 'inserted' ELSE 'updated' END, true);
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.guard_period_row() FROM PUBLIC;

-- The high-water mark of a table with this ledger tag: the last day of any active window that applies to
-- it, in any scope (null when there is none). On a subscriber, 'infinity': its windows arrive by replication,
-- which raises no mark, so its guards probe every row.
CREATE OR REPLACE FUNCTION ledgerlock._period_mark(ledger text)
RETURNS date
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN ledgerlock._is_subscriber() THEN 'infinity'::date ELSE pg_catalog.max(s.to_date) END
    FROM ledgerlock.period_lock_span s
    WHERE s.ledger = '*' OR s.ledger = _period_mark.ledger
$$;
REVOKE ALL ON FUNCTION ledgerlock._period_mark(text) FROM PUBLIC;

-- The scope marks of a table with this ledger tag, passed to its guards as arguments: `rest`, the mark of
-- every scope not listed, and `listed`, a JSON object giving the 64 scopes with the latest windows their own
-- marks (each later than `rest`). A scope's mark is the last day of its active windows that apply to the
-- table; a side of a row dated after its scope's mark needs no probe. Bounded so that the argument stays small
-- whatever the number of scopes: the scopes past the 64th share `rest`, which is only ever too high.
CREATE OR REPLACE FUNCTION ledgerlock._period_scope_marks(ledger text, OUT rest date, OUT listed jsonb)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH m AS (
        SELECT s.scope, pg_catalog.max(s.to_date) AS mark FROM ledgerlock.period_lock_span s
        WHERE s.ledger = '*' OR s.ledger = _period_scope_marks.ledger
        GROUP BY s.scope),
    r AS (SELECT CASE WHEN ledgerlock._is_subscriber() THEN 'infinity'::date  -- see _period_mark
                 ELSE coalesce((SELECT m.mark FROM m ORDER BY m.mark DESC OFFSET 64 LIMIT 1), '-infinity'::date)
                 END AS rest)
    SELECT r.rest, coalesce((SELECT pg_catalog.jsonb_object_agg(m.scope, ledgerlock._iso_date(m.mark))
                             FROM m WHERE m.mark > r.rest), '{}'::jsonb)
    FROM r
$$;
REVOKE ALL ON FUNCTION ledgerlock._period_scope_marks(text) FROM PUBLIC;

-- A date as text whatever the session's DateStyle ('2026-03-31', '-infinity'): trigger arguments and marks are
-- read back by the guards under any client setting.
CREATE OR REPLACE FUNCTION ledgerlock._iso_date(d date)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN pg_catalog.isfinite(d) THEN pg_catalog.to_char(d, 'YYYY-MM-DD') ELSE d::text END
$$;
REVOKE ALL ON FUNCTION ledgerlock._iso_date(date) FROM PUBLIC;

-- The arguments of a trigger (pg_trigger.tgargs: each argument followed by a zero byte).
CREATE OR REPLACE FUNCTION ledgerlock._trigger_args(args bytea)
RETURNS text[]
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on  -- its literals hold backslashes
AS $$
DECLARE
    out text[] := '{}';
    i integer;
BEGIN
    LOOP
        i := pg_catalog.position(args, '\x00'::bytea);
        EXIT WHEN i IS NULL OR i = 0;
        out := out || pg_catalog.convert_from(pg_catalog.substr(args, 1, i - 1),
                                              pg_catalog.getdatabaseencoding());
        args := pg_catalog.substr(args, i + 1);
    END LOOP;
    RETURN out;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._trigger_args(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._trigger_args(bytea) TO ledgerlock_admin, ledgerlock_auditor;

-- The mark a guard's two mark arguments give a scope (as _period_scope_marks made them: the mark of the
-- scopes not listed, then the listed scopes' marks as JSON): the scope's own when it is listed, else the
-- rest's; no_marks when the guard carries none (''). Read back from installed triggers by R3 and R4.
CREATE OR REPLACE FUNCTION ledgerlock._mark_of_args(rest text, listed text, scope text, no_marks date)
RETURNS date
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN coalesce(rest, '') = '' THEN no_marks
                ELSE coalesce((listed::jsonb ->> scope)::date, rest::date) END
$$;
REVOKE ALL ON FUNCTION ledgerlock._mark_of_args(text, text, text, date) FROM PUBLIC;

-- The mark the installed guards of a table give a scope (null: no guard installed): the table's mark from the
-- WHEN clause of ll_20_period_insert, lowered to the scope's own mark from its arguments. Read from the
-- trigger itself, which is what decides which rows are checked.
CREATE OR REPLACE FUNCTION ledgerlock._period_installed_mark(tbl regclass, scope text)
RETURNS date
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT least(w.top, ledgerlock._mark_of_args(a.args[5], a.args[6], _period_installed_mark.scope, w.top))
    FROM pg_catalog.pg_trigger t
    CROSS JOIN LATERAL (SELECT pg_catalog.substring(ledgerlock._trigger_text(t.tgrelid::regclass, t.tgname),
                                                    '<= ''([-0-9a-z]+)''::date')::date AS top) w
    CROSS JOIN LATERAL (SELECT ledgerlock._trigger_args(t.tgargs) AS args) a
    WHERE t.tgrelid = _period_installed_mark.tbl AND t.tgname = 'll_20_period_insert'
$$;
REVOKE ALL ON FUNCTION ledgerlock._period_installed_mark(regclass, text) FROM PUBLIC;

-- The mark the installed guards of a parent give its children (see _install_20_scope_parent): the latest day
-- written in the WHEN clause of its delete guard (null: no such guard, or one without a mark).
CREATE OR REPLACE FUNCTION ledgerlock._parent_installed_mark(parent regclass)
RETURNS date
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.max(m.day[1]::date)
    FROM pg_catalog.regexp_matches(ledgerlock._trigger_text(parent, 'll_20_scope_parent_delete'),
                                   '''([-0-9a-z]+)''::date', 'g') AS m(day)
$$;
REVOKE ALL ON FUNCTION ledgerlock._parent_installed_mark(regclass) FROM PUBLIC;

-- After a new window of a scope: re-install the guards of the tables whose mark for that scope it raises
-- (see the top of this file), and the triggers of their lines (R4) that carry the marks. A table whose installed
-- mark for the scope already reaches as far keeps its triggers untouched.
CREATE OR REPLACE FUNCTION ledgerlock._raise_period_marks(scope text, to_date date, ledgers text[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t regclass;
BEGIN
    FOR t IN
        SELECT p.tbl FROM ledgerlock.protected_table p
        WHERE (_raise_period_marks.ledgers IS NULL OR p.ledger = ANY (_raise_period_marks.ledgers))
          AND ledgerlock._relation_exists(p.tbl)  -- a table dropped while protected has no guards to raise
          AND NOT coalesce(ledgerlock._period_installed_mark(p.tbl, _raise_period_marks.scope)
                           >= _raise_period_marks.to_date, false)
        ORDER BY p.tbl::oid
    LOOP
        PERFORM ledgerlock._install_20_period(t);
    END LOOP;
    -- the parents those tables take a date or scope from carry a mark too; installing a child installed them
    FOR t IN
        SELECT pp.parent FROM ledgerlock._period_parents() pp
        WHERE ledgerlock._relation_exists(pp.parent)
          AND EXISTS (SELECT FROM ledgerlock._period_children(pp.parent) c
                      WHERE _raise_period_marks.ledgers IS NULL OR c.ledger = ANY (_raise_period_marks.ledgers))
          AND NOT coalesce(ledgerlock._parent_installed_mark(pp.parent) >= _raise_period_marks.to_date, false)
        ORDER BY pp.parent::oid
    LOOP
        PERFORM ledgerlock._install_20_scope_parent(t);
    END LOOP;
    -- the lines of those tables' headers carry the same marks (R4, protect_lines): r4_reference_guard.sql
    PERFORM ledgerlock._ref_raise_marks(scope, to_date, ledgers);
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._raise_period_marks(text, date, text[]) FROM PUBLIC;

-- Like ledgerlock._create_guard_trigger, but CREATE OR REPLACE: raising the mark must not DROP a trigger
-- (DROP TRIGGER takes an ACCESS EXCLUSIVE lock, which would block readers; CREATE OR REPLACE TRIGGER and
-- ENABLE ALWAYS take SHARE ROW EXCLUSIVE, which waits for writers only).
CREATE OR REPLACE FUNCTION ledgerlock._replace_guard_trigger(tbl regclass, trigger_name name, definition text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_trigger t WHERE t.tgrelid = tbl AND t.tgname = trigger_name) THEN
        PERFORM ledgerlock._create_guard_trigger(tbl, trigger_name, definition);
        RETURN;
    END IF;
    PERFORM ledgerlock._ddl_permit(tbl, true);  -- the DDL guard lets ledgerlock's own installers through
    EXECUTE pg_catalog.format('CREATE OR REPLACE TRIGGER %I %s', trigger_name, definition);
    PERFORM ledgerlock._finish_guard_trigger(tbl, trigger_name);
    PERFORM ledgerlock._ddl_permit(tbl, false);
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._replace_guard_trigger(regclass, name, text) FROM PUBLIC;

-- The INSERT check generated per table (ledgerlock._ll20_<table key>_insert), for a table whose scope is a
-- column of its own that prints the same under every session setting (integers, text, uuid), or none, and
-- whose date is a column of its own or its parent row's (date_column 'fk.column'): it reads NEW's columns
-- directly instead of copying the row to jsonb and walking guard_period_row's loop over the sides of a row,
-- reads a parent's date with a static query (a plan the session keeps, where guard_period_row runs the
-- parent's query as dynamic SQL, planned again for every row: ~25 us a row), and probes the windows with a
-- query written for the table's ledger. It decides exactly what guard_period_row decides for an insert: the
-- same scope marks (still the trigger's arguments, so a lock that raises them still replaces the trigger),
-- the parent read only when the row's scope has a window and share-locked, the same refusal of a missing
-- parent, gate, fence and probe; a row it finds in a window goes to the same _check_window. A table dated by
-- its parent gets an UPDATE and DELETE check generated the same way (_ll20_<key>_change): its WHEN clauses
-- cannot test the date, so every change calls it. Every other write (UPDATE and DELETE of a table with a date
-- of its own, which its WHEN clauses filter to the backdated ones; skip mode; a scope read from a parent row)
-- runs guard_period_row.

-- The two tests the scope marks are for, written into the generated checks and into R4's line checks
-- (r4_reference_guard.sql, _ref_probe_sql); guard_period_row makes the same two in its own variables. rest_sql
-- is the mark of the scopes not listed, a date expression (null: no marks, so every side is looked up), and
-- listed_sql the listed scopes' marks, a jsonb expression: a guard's arguments (_period_scope_marks).
-- Whether a side of scope scope_sql dated day_sql lies on or before its scope's mark, so that its windows must
-- be looked up (a side dated after it lies in no window). The day is read once; a scope not listed is null,
-- which greatest() skips.
CREATE OR REPLACE FUNCTION ledgerlock._mark_test_sql(day_sql text, scope_sql text, rest_sql text, listed_sql text)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT pg_catalog.format('coalesce(%3$s IS NULL OR %1$s <= GREATEST(%3$s, (%4$s ->> %2$s)::date), false)',
                             day_sql, scope_sql, rest_sql, listed_sql)
$fn$;
REVOKE ALL ON FUNCTION ledgerlock._mark_test_sql(text, text, text, text) FROM PUBLIC;

-- Whether the scope scope_sql has a mark at all (some window): before a day is read from a parent row.
CREATE OR REPLACE FUNCTION ledgerlock._scope_marked_sql(scope_sql text, rest_sql text, listed_sql text)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT pg_catalog.format('coalesce(%2$s IS NULL OR %2$s > ''-infinity''::date OR %3$s ? %1$s, false)',
                             scope_sql, rest_sql, listed_sql)
$fn$;
REVOKE ALL ON FUNCTION ledgerlock._scope_marked_sql(text, text, text) FROM PUBLIC;

-- The body of the generated INSERT check. Values: day_init (' := ' and the row's date as an expression over
-- NEW; empty for a date read from the parent row), read_day (empty, or the statements that read the parent's
-- date: see _ll20_parent_read_sql), scope (its scope as text), gate (_ll20_gate_sql), probe (the window lookup
-- into ll_w: _ll20_probe_sql).
-- The trigger's arguments are guard_period_row's: [4] the mark of unlisted scopes, [5] the listed scopes' marks.
CREATE OR REPLACE FUNCTION ledgerlock._ll20_insert_body(v jsonb)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT ledgerlock._template($ll$
DECLARE
    ll_refused text;  -- a refusal is called as an expression: see ledgerlock._refuse
    ll_on_locked text := pg_catalog.current_setting('ledgerlock.on_locked', true);
    ll_day date{{day_init}};
    ll_scope text := {{scope}};
    ll_rest date := nullif(TG_ARGV[4], '')::date;
    ll_w bigint;
BEGIN
    IF ll_on_locked IS NOT NULL AND ll_on_locked NOT IN ('', 'error', 'skip') THEN
        ll_refused := ledgerlock._check_on_locked();
    END IF;{{read_day}}
    -- a row without a date lies in no window; one dated after its scope's mark needs no probe
    IF ll_day IS NULL OR NOT {{marked}} THEN
        RETURN NULL;
    END IF;
{{gate}}
{{probe}}
    IF ll_w IS NOT NULL THEN
        ll_refused := ledgerlock._check_window(TG_RELID::regclass, ll_w, pg_catalog.to_jsonb(NEW), 'inserted', true);
    END IF;
    RETURN NULL;
END
$ll$, v || pg_catalog.jsonb_build_object(
    'marked', ledgerlock._mark_test_sql('ll_day', 'll_scope', 'll_rest', 'TG_ARGV[5]::jsonb')))
$fn$;
REVOKE ALL ON FUNCTION ledgerlock._ll20_insert_body(jsonb) FROM PUBLIC;

-- The body of the generated UPDATE and DELETE check of a table dated by its parent row (the WHEN clause of
-- such a table cannot test the date, so every change of a non-exempt column calls it once any window applies).
-- It decides what guard_period_row decides for these writes: the old side's day read from its parent (share-
-- locked) only when the old scope has a window; the new side's reused when the foreign key did not change, else
-- read the same way (a missing parent refused); each side probed after entering its scope's gate (once for
-- both when they share it); a change of exempt columns only lets through; a window found goes to
-- _check_window. Values: old_scope, new_scope (the scopes as text), read_old, read_new (_ll20_parent_read_sql
-- into ll_od, ll_nd), same_parent (whether the foreign key kept its value), gate_old, gate_new, probe_old,
-- probe_new. The trigger's arguments are guard_period_row's ([8:]: the exempt columns, for an UPDATE).
CREATE OR REPLACE FUNCTION ledgerlock._ll20_change_body(v jsonb)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT ledgerlock._template($ll$
DECLARE
    ll_refused text;  -- a refusal is called as an expression: see ledgerlock._refuse
    ll_on_locked text := pg_catalog.current_setting('ledgerlock.on_locked', true);
    ll_rest date := nullif(TG_ARGV[4], '')::date;
    ll_os text := {{old_scope}};
    ll_ns text;
    ll_od date;
    ll_nd date;
    ll_wo bigint;
    ll_wn bigint;
    ll_read boolean := false;
    ll_entered text;  -- the scope whose gate this call holds
BEGIN
    IF ll_on_locked IS NOT NULL AND ll_on_locked NOT IN ('', 'error', 'skip') THEN
        ll_refused := ledgerlock._check_on_locked();
    END IF;
    -- the old side: its parent's day, read only when its scope has a window
    IF {{old_scope_marked}} THEN
        ll_read := true;
{{read_old}}
        IF ll_od IS NOT NULL AND {{old_marked}} THEN
{{gate_old}}
            ll_entered := ll_os;
{{probe_old}}
        END IF;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        ll_ns := {{new_scope}};
        IF ll_read AND {{same_parent}} THEN
            ll_nd := ll_od;  -- the same parent: the same day
        ELSIF {{new_scope_marked}} THEN
{{read_new}}
        END IF;
        IF ll_nd IS NULL THEN
            NULL;  -- a row without a date lies in no window
        ELSIF ll_ns = ll_os AND ll_nd = ll_od THEN
            ll_wn := ll_wo;  -- same scope and date: the same window
        ELSIF {{new_marked}} THEN
            IF ll_entered IS DISTINCT FROM ll_ns THEN
{{gate_new}}
            END IF;
{{probe_new}}
        END IF;
    END IF;
    IF ll_wo IS NULL AND ll_wn IS NULL THEN
        RETURN NULL;
    END IF;
    -- only mutable (or generated) columns changed: reconciling or paying a row in a locked period is fine
    IF TG_OP = 'UPDATE' AND ledgerlock._same_except(OLD, NEW, TG_ARGV[8:]) THEN
        RETURN NULL;
    END IF;
    IF ll_wo IS NOT NULL THEN
        ll_refused := ledgerlock._check_window(TG_RELID::regclass, ll_wo, pg_catalog.to_jsonb(OLD),
                                               CASE TG_OP WHEN 'DELETE' THEN 'deleted' ELSE 'updated' END, true);
    END IF;
    IF ll_wn IS NOT NULL AND ll_wn IS DISTINCT FROM ll_wo THEN
        ll_refused := ledgerlock._check_window(TG_RELID::regclass, ll_wn, pg_catalog.to_jsonb(NEW), 'updated', true);
    END IF;
    RETURN NULL;
END
$ll$, v || pg_catalog.jsonb_build_object(
    'old_scope_marked', ledgerlock._scope_marked_sql('ll_os', 'll_rest', 'TG_ARGV[5]::jsonb'),
    'new_scope_marked', ledgerlock._scope_marked_sql('ll_ns', 'll_rest', 'TG_ARGV[5]::jsonb'),
    'old_marked', ledgerlock._mark_test_sql('ll_od', 'll_os', 'll_rest', 'TG_ARGV[5]::jsonb'),
    'new_marked', ledgerlock._mark_test_sql('ll_nd', 'll_ns', 'll_rest', 'TG_ARGV[5]::jsonb')))
$fn$;
REVOKE ALL ON FUNCTION ledgerlock._ll20_change_body(jsonb) FROM PUBLIC;

-- A generated check's entry into the gate of the scope in scope_var (every window change of that scope holds
-- the gate, so the probe that follows sees every window committed before it), and under REPEATABLE READ or
-- SERIALIZABLE the scope's fence. The gate stays a LOCK built as text: a static LOCK per bucket in a tree of
-- IFs measured no cheaper (each IF is an expression prepared per transaction).
CREATE OR REPLACE FUNCTION ledgerlock._ll20_gate_sql(scope_var text)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT pg_catalog.replace($q$    EXECUTE 'LOCK TABLE ledgerlock_gate.scope_gate_'
            || pg_catalog.lpad((pg_catalog.hashtext(ll_scope) & 63)::text, 2, '0') || ' IN ROW EXCLUSIVE MODE';
    IF pg_catalog.current_setting('transaction_isolation') <> 'read committed' THEN
        PERFORM FROM ledgerlock.period_fence f
        WHERE f.bucket = pg_catalog.hashtext(ll_scope) & 1023 FOR KEY SHARE;
    END IF;$q$, 'll_scope', scope_var)
$fn$;
REVOKE ALL ON FUNCTION ledgerlock._ll20_gate_sql(text) FROM PUBLIC;

-- A generated check's window lookup: the active window of the scope in scope_var covering the day in day_var,
-- into into_var, written for the table's ledger (null: windows on every ledger only).
CREATE OR REPLACE FUNCTION ledgerlock._ll20_probe_sql(ledger text, scope_var text, day_var text, into_var text)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(
        CASE WHEN ledger IS NULL THEN $q$
    SELECT x.lock_id INTO ll_w
    FROM (SELECT s.lock_id, s.to_date FROM ledgerlock.period_lock_span s
          WHERE s.scope = ll_scope AND s.ledger = '*' AND s.from_date <= ll_day
          ORDER BY s.from_date DESC LIMIT 1) AS x
    WHERE x.to_date >= ll_day;$q$
        ELSE pg_catalog.format($q$
    SELECT x.lock_id INTO ll_w
    FROM ((SELECT s.lock_id, s.to_date FROM ledgerlock.period_lock_span s
           WHERE s.scope = ll_scope AND s.ledger = '*' AND s.from_date <= ll_day
           ORDER BY s.from_date DESC LIMIT 1)
          UNION ALL
          (SELECT s.lock_id, s.to_date FROM ledgerlock.period_lock_span s
           WHERE s.scope = ll_scope AND s.ledger = %L AND s.from_date <= ll_day
           ORDER BY s.from_date DESC LIMIT 1)) AS x
    WHERE x.to_date >= ll_day
    LIMIT 1;$q$, ledger) END,
        'll_w', into_var), 'll_scope', scope_var), 'll_day', day_var)
$fn$;
REVOKE ALL ON FUNCTION ledgerlock._ll20_probe_sql(text, text, text, text) FROM PUBLIC;

-- A generated check's read of a row's day from its parent row, the query guard_period_row runs through
-- _parent_date_sql (both built by _parent_day_source): rec (NEW or OLD) names the row, into_var the variable;
-- a null foreign key is no day; the parent row share-locked, so that its date cannot move until this write
-- ends; verb (inserted, updated) refuses a parent that does not exist (a deferred foreign key), null leaves the
-- day null (the old side of a row whose parent this transaction deleted). Null when the table's date is not a
-- parent's.
CREATE OR REPLACE FUNCTION ledgerlock._ll20_parent_read_sql(tbl regclass, rec text, into_var text, verb text)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d record;
BEGIN
    SELECT * INTO d FROM ledgerlock._parent_day_source(tbl, rec, true);
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    RETURN pg_catalog.format($q$
    IF %1$s.%2$I IS NOT NULL THEN
        SELECT %3$s INTO %4$s %5$s;%6$s
    END IF;$q$, rec, d.fk, d.day_sql, into_var, d.from_sql,
        CASE WHEN verb IS NOT NULL THEN pg_catalog.format($q$
        IF NOT FOUND THEN
            ll_refused := ledgerlock._refuse('23503',
                pg_catalog.format('%%s cannot be %1$s: its date comes from the row %%s references, which does '
                                  'not exist', ledgerlock.row_label(TG_RELID::regclass, pg_catalog.to_jsonb(%2$s)),
                                  %3$L),
                'write the parent row first: the period lock of the row is read from it');
        END IF;$q$, verb, rec, d.fk) ELSE '' END);
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._ll20_parent_read_sql(regclass, text, text, text) FROM PUBLIC;

-- Whether a table's period checks can be generated (see the top of this section): its scope is a column of
-- its own that prints the same under every session setting (ledgerlock._scope_column_problem), or none; its
-- date a column of its own, or its parent's (date_from_parent: the installer knows) when the scope is not
-- read from a parent too.
CREATE OR REPLACE FUNCTION ledgerlock._ll20_generated(tbl regclass, date_from_parent boolean)
RETURNS boolean
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cfg ledgerlock.protected_table := ledgerlock._config(tbl);
BEGIN
    IF ledgerlock._parent_scope_sql(tbl, false) IS NOT NULL THEN
        RETURN false;
    END IF;
    IF NOT date_from_parent AND NOT EXISTS (SELECT FROM pg_catalog.pg_attribute a
                                            WHERE a.attrelid = tbl AND a.attname = cfg.date_column
                                              AND NOT a.attisdropped) THEN
        RETURN false;
    END IF;
    RETURN cfg.scope_column IS NULL OR EXISTS (
        SELECT FROM pg_catalog.pg_attribute a
        WHERE a.attrelid = tbl AND a.attname = cfg.scope_column AND NOT a.attisdropped
          AND ledgerlock._scope_column_problem(tbl, a.attname) IS NULL);
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._ll20_generated(regclass, boolean) FROM PUBLIC;

-- Create the generated function gen with body, unless it already has that body and its recorded fingerprint:
-- a lock that raises a mark re-runs the installer, and needs no new function.
CREATE OR REPLACE FUNCTION ledgerlock._ll20_put(gen name, body text)
RETURNS name
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ledgerlock._refuse_taken_generated_name(gen);  -- also when its body would not change
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_proc p
                   JOIN ledgerlock.code_fingerprint f ON f.fn = p.oid::regprocedure::text AND f.origin = 'generated'
                   WHERE p.pronamespace = 'ledgerlock'::regnamespace AND p.proname = gen AND p.pronargs = 0
                     AND p.prosrc = body
                     AND p.proconfig @> ledgerlock._row_reading_settings()
                     AND (f.body_md5, f.security_definer, f.config)
                         IS NOT DISTINCT FROM (pg_catalog.md5(p.prosrc), p.prosecdef, p.proconfig)) THEN
        PERFORM ledgerlock._create_generated_function(gen, body, ledgerlock._row_reading_settings());
    END IF;
    RETURN gen;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._ll20_put(name, text) FROM PUBLIC;

-- (Re)generate the INSERT check of a table and return its name, or return null when the table
-- does not qualify (_ll20_generated): its inserts are then checked by guard_period_row.
-- from_parent: the date or the scope is read from a parent row; kind: ledgerlock._period_date_kind (both
-- computed by the installer already).
CREATE OR REPLACE FUNCTION ledgerlock._ll20_generate_insert(tbl regclass, kind text, from_parent boolean)
RETURNS name
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cfg ledgerlock.protected_table := ledgerlock._config(tbl);
    read_day text := CASE WHEN from_parent THEN ledgerlock._ll20_parent_read_sql(tbl, 'NEW', 'll_day', 'inserted') END;
BEGIN
    IF (from_parent AND read_day IS NULL) OR NOT ledgerlock._ll20_generated(tbl, from_parent) THEN
        RETURN NULL;  -- the installer drops a function generated before, once no trigger runs it
    END IF;
    RETURN ledgerlock._ll20_put(ledgerlock._generated_name(tbl, 'll20', 'insert'),
        ledgerlock._ll20_insert_body(pg_catalog.jsonb_build_object(
            'day_init', CASE WHEN read_day IS NULL THEN ' := ' || ledgerlock._day_sql('NEW', cfg.date_column, kind)
                             ELSE '' END,
            'read_day', CASE WHEN read_day IS NULL THEN '' ELSE $q$
    -- the day is the parent row's: read only when the row's scope has a window
    IF NOT $q$ || ledgerlock._scope_marked_sql('ll_scope', 'll_rest', 'TG_ARGV[5]::jsonb') || $q$ THEN
        RETURN NULL;
    END IF;$q$ || read_day END,
            'scope', CASE WHEN cfg.scope_column IS NULL THEN '''*'''
                          ELSE pg_catalog.format('coalesce(NEW.%I::text, ''*'')', cfg.scope_column) END,
            'gate', ledgerlock._ll20_gate_sql('ll_scope'),
            'probe', ledgerlock._ll20_probe_sql(cfg.ledger, 'll_scope', 'll_day', 'll_w'))));
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._ll20_generate_insert(regclass, text, boolean) FROM PUBLIC;

-- (Re)generate the UPDATE and DELETE check of a table dated by its parent row and return its name, or return
-- null (a date of its own: its WHEN clauses test the date, and the few writes that pass go to
-- guard_period_row; a table that does not qualify: guard_period_row).
CREATE OR REPLACE FUNCTION ledgerlock._ll20_generate_change(tbl regclass, date_from_parent boolean)
RETURNS name
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cfg ledgerlock.protected_table := ledgerlock._config(tbl);
    read_old text := CASE WHEN date_from_parent THEN ledgerlock._ll20_parent_read_sql(tbl, 'OLD', 'll_od', NULL) END;
    fk name := (SELECT d.fk FROM ledgerlock._parent_day_source(tbl, 'OLD', true) d);
BEGIN
    IF read_old IS NULL OR NOT ledgerlock._ll20_generated(tbl, true) THEN
        RETURN NULL;
    END IF;
    RETURN ledgerlock._ll20_put(ledgerlock._generated_name(tbl, 'll20', 'change'),
        ledgerlock._ll20_change_body(pg_catalog.jsonb_build_object(
            'old_scope', CASE WHEN cfg.scope_column IS NULL THEN '''*'''
                              ELSE pg_catalog.format('coalesce(OLD.%I::text, ''*'')', cfg.scope_column) END,
            'new_scope', CASE WHEN cfg.scope_column IS NULL THEN '''*'''
                              ELSE pg_catalog.format('coalesce(NEW.%I::text, ''*'')', cfg.scope_column) END,
            'read_old', read_old,
            'read_new', ledgerlock._ll20_parent_read_sql(tbl, 'NEW', 'll_nd', 'updated'),
            'same_parent', pg_catalog.format('NEW.%1$I IS NOT DISTINCT FROM OLD.%1$I', fk),
            'gate_old', ledgerlock._ll20_gate_sql('ll_os'),
            'gate_new', ledgerlock._ll20_gate_sql('ll_ns'),
            'probe_old', ledgerlock._ll20_probe_sql(cfg.ledger, 'll_os', 'll_od', 'll_wo'),
            'probe_new', ledgerlock._ll20_probe_sql(cfg.ledger, 'll_ns', 'll_nd', 'll_wn'))));
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._ll20_generate_change(regclass, boolean) FROM PUBLIC;

-- unprotect: the rule's triggers, then its generated function.
CREATE OR REPLACE FUNCTION ledgerlock._uninstall_20_period(tbl regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ledgerlock._drop_guard_triggers(tbl, 'll_20_period_');
    PERFORM ledgerlock._drop_generated_functions(ARRAY[ledgerlock._generated_name(tbl, 'll20', 'insert'),
                                                       ledgerlock._generated_name(tbl, 'll20', 'change')]);
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._uninstall_20_period(regclass) FROM PUBLIC;

CREATE OR REPLACE FUNCTION ledgerlock._install_20_period(tbl regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cfg ledgerlock.protected_table := ledgerlock._config(tbl);
    kind text := ledgerlock._period_date_kind(tbl);
    marks record;
    args text;
    exempt text := (SELECT pg_catalog.string_agg(pg_catalog.quote_literal(c), ', ')
                    FROM pg_catalog.unnest(ledgerlock._exempt_columns(tbl)) AS c);
    mark_day date;
    mark text;
    parent_day text := ledgerlock._parent_date_sql(tbl, true);
    parent_scope text := ledgerlock._parent_scope_sql(tbl, true);
    old_day text := ledgerlock._day_sql('OLD', cfg.date_column, kind);
    new_day text := ledgerlock._day_sql('NEW', cfg.date_column, kind);
    stale name;
    insert_fn text;
    change_fn text;
BEGIN
    -- The mark is computed after every concurrent window change has committed, and none can start before
    -- this transaction ends (ledgerlock._tick_mark_clock): a lock racing this install cannot leave it low.
    PERFORM ledgerlock._tick_mark_clock();
    marks := ledgerlock._period_scope_marks(cfg.ledger);
    args := pg_catalog.format('%L, %L, %L, %L, %L, %L, %L, %L', cfg.date_column, kind,
                              coalesce(cfg.scope_column::text, ''), coalesce(cfg.ledger, ''),
                              ledgerlock._iso_date(marks.rest), marks.listed,
                              coalesce(parent_scope, ''), coalesce(parent_day, ''));
    mark_day := coalesce(ledgerlock._period_mark(cfg.ledger), '-infinity');
    mark := pg_catalog.quote_literal(ledgerlock._iso_date(mark_day))
            || '::date';
    IF parent_day IS NOT NULL THEN  -- the date is the parent's: the WHEN clause only knows whether a window applies
        old_day := '''-infinity''::date';
        new_day := old_day;
        mark := pg_catalog.format('%s AND %s < %s', mark, old_day, mark);  -- false when no window applies
    ELSIF pg_catalog.strpos(cfg.date_column, '.') > 0 AND NOT EXISTS (
            SELECT FROM pg_catalog.pg_attribute a WHERE a.attrelid = tbl AND a.attname = cfg.date_column) THEN
        PERFORM ledgerlock._row_day(tbl, '{}');  -- the foreign key is gone: a clear error
    END IF;
    -- replaced in place (a stale ll_20_ trigger of an older version is dropped): see _replace_guard_trigger
    FOR stale IN
        SELECT t.tgname FROM pg_catalog.pg_trigger t
        WHERE t.tgrelid = tbl AND NOT t.tgisinternal AND t.tgparentid = 0 AND pg_catalog.starts_with(t.tgname, 'll_20_')
          AND t.tgname NOT IN ('ll_20_period_skip', 'll_20_period_insert', 'll_20_period_update', 'll_20_period_delete',
                               'll_20_scope_parent_update', 'll_20_scope_parent_delete')
    LOOP
        PERFORM ledgerlock._drop_guard_triggers(tbl, stale);
    END LOOP;
    -- The skip trigger's WHEN leaves the mode out where the date test can say no: PostgreSQL prepares the clause
    -- again for every INSERT statement, dated today or not, and the mode's test (a current_setting call) made
    -- every INSERT pay ~2 us to spare the rare backdated row outside skip mode a call that returns at once.
    -- Where the date test is always true, the mode stays in the clause: a date read from a parent row, and a
    -- subscriber (its mark is 'infinity': see _period_mark).
    PERFORM ledgerlock._replace_guard_trigger(tbl, 'll_20_period_skip', pg_catalog.format(
        'BEFORE INSERT ON %s FOR EACH ROW WHEN (%s <= %s%s) EXECUTE FUNCTION ledgerlock.guard_period_row(%s)',
        tbl, new_day, mark,
        CASE WHEN parent_day IS NOT NULL OR mark_day = 'infinity'
             THEN pg_catalog.format(' AND pg_catalog.current_setting(%L, true) = %L', 'ledgerlock.on_locked', 'skip')
             ELSE '' END,
        args));
    insert_fn := coalesce(pg_catalog.quote_ident(ledgerlock._ll20_generate_insert(
                              tbl, kind, parent_day IS NOT NULL OR parent_scope IS NOT NULL)), 'guard_period_row');
    change_fn := coalesce(pg_catalog.quote_ident(ledgerlock._ll20_generate_change(tbl, parent_day IS NOT NULL)),
                          'guard_period_row');
    PERFORM ledgerlock._replace_guard_trigger(tbl, 'll_20_period_insert', pg_catalog.format(
        'AFTER INSERT ON %s FOR EACH ROW WHEN (%s <= %s) EXECUTE FUNCTION ledgerlock.%s(%s)',
        tbl, new_day, mark, insert_fn, args));
    PERFORM ledgerlock._replace_guard_trigger(tbl, 'll_20_period_update', pg_catalog.format(
        'AFTER UPDATE ON %s FOR EACH ROW WHEN ((%s <= %s OR %s <= %s) AND %s) '
        'EXECUTE FUNCTION ledgerlock.%s(%s%s)', tbl, old_day, mark, new_day, mark,
        ledgerlock._row_changed_beyond_exempt(tbl, true), change_fn, args, ', ' || exempt));
    PERFORM ledgerlock._replace_guard_trigger(tbl, 'll_20_period_delete', pg_catalog.format(
        'AFTER DELETE ON %s FOR EACH ROW WHEN (%s <= %s) EXECUTE FUNCTION ledgerlock.%s(%s)',
        tbl, old_day, mark, change_fn, args));
    IF insert_fn = 'guard_period_row' THEN
        PERFORM ledgerlock._drop_generated_functions(ARRAY[ledgerlock._generated_name(tbl, 'll20', 'insert')]);
    END IF;
    IF change_fn = 'guard_period_row' THEN
        PERFORM ledgerlock._drop_generated_functions(ARRAY[ledgerlock._generated_name(tbl, 'll20', 'change')]);
    END IF;
    -- a parent's guards, for a scope or date read from it (a column name without a dot names no parent)
    PERFORM ledgerlock._install_20_scope_parent(sp.parent) FROM ledgerlock._scope_path(tbl, cfg.scope_column) sp
    WHERE pg_catalog.strpos(cfg.scope_column, '.') > 0;
    PERFORM ledgerlock._install_20_scope_parent(dp.parent) FROM ledgerlock._scope_path(tbl, cfg.date_column) dp
    WHERE pg_catalog.strpos(cfg.date_column, '.') > 0;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._install_20_period(regclass) FROM PUBLIC;

-- The words of a parent's guard's refusal (_ll20_parent_body): how the parent (its old image o, new n; op 'UPDATE' or
-- 'DELETE') placed a child before and after, by the scope and date columns the child takes from it
-- ("moved from scope 1 on 2026-03-10 to scope 2 with header id=1", "taken out of 2026-03-10 by deleting
-- header id=1"). Built only for a child found in a window: a row label reads the catalog.
CREATE OR REPLACE FUNCTION ledgerlock._moved_children_words(parent regclass, op text, o jsonb, n jsonb,
                                                            scope_from text, date_from text, kind text)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    from_text text := pg_catalog.concat_ws(' on ',
        CASE WHEN scope_from IS NOT NULL THEN 'scope ' || coalesce(o ->> scope_from, '*') END,
        CASE WHEN date_from IS NOT NULL
                  AND (op = 'DELETE' OR scope_from IS NULL OR (o -> date_from) IS DISTINCT FROM (n -> date_from))
             THEN coalesce(ledgerlock._iso_date(ledgerlock._period_date(o ->> date_from, kind)), 'no date') END);
    to_text text := pg_catalog.concat_ws(' on ',
        CASE WHEN scope_from IS NOT NULL THEN 'scope ' || coalesce(n ->> scope_from, '*') END,
        CASE WHEN date_from IS NOT NULL
                  AND (scope_from IS NULL OR (o -> date_from) IS DISTINCT FROM (n -> date_from))
             THEN coalesce(ledgerlock._iso_date(ledgerlock._period_date(n ->> date_from, kind)), 'no date') END);
BEGIN
    -- a partition's guard runs for a row of its partitioned table: the row is named as the table's, as the
    -- children are named by their protected table
    parent := coalesce(pg_catalog.pg_partition_root(parent), parent);
    RETURN CASE op
        WHEN 'UPDATE' THEN pg_catalog.format('moved from %s to %s with %s', from_text, to_text,
                                             ledgerlock.row_label(parent, o))
        ELSE pg_catalog.format('taken out of %s by deleting %s', from_text, ledgerlock.row_label(parent, o)) END;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._moved_children_words(regclass, text, jsonb, jsonb, text, text, text) FROM PUBLIC;


-- The guard of a parent row whose column is the scope or the date of a protected table's rows (scope_column or
-- date_column 'fk_column.parent_column'): moving it to another scope or day moves its children with it, and
-- deleting it (a cascading foreign key) takes them out of their scope and day. Each child lying in an active
-- window before or after is checked against that window as a write of the child would be (an override admits
-- a soft one), so the parent's column is frozen exactly while a child lies in a locked window on either side.
-- BEFORE UPDATE OR DELETE: a cascading delete is judged before the foreign key's action reaches the children.
-- Generated for each parent (ledgerlock._ll20_<parent key>_parent, run by its two triggers), with each child's
-- queries written for that child: static SQL whose plans the session keeps (until 2026-11-29 one shared guard,
-- guard_scope_parent, read the registry and each child's date kind and planned its queries again at every
-- call: a backdated delete ~0.45 ms against ~0.14 ms, PG 16; migration 0046 dropped it). Regenerated with the
-- parent's triggers (_install_20_scope_parent), so it follows the children.
-- The body: values children, one block per child (_ll20_generate_parent), in _period_children's order.
CREATE OR REPLACE FUNCTION ledgerlock._ll20_parent_body(v jsonb)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT ledgerlock._template($ll$
DECLARE
    ll_refused text;  -- a refusal is called as an expression: see ledgerlock._refuse
    ll_s text;        -- a scope whose gate is entered
    ll_hit record;    -- a child in a window
    ll_verb text;     -- the words of a refusal, built at the first child found in a window
BEGIN
{{children}}
    RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
END
$ll$, v)
$fn$;
REVOKE ALL ON FUNCTION ledgerlock._ll20_parent_body(jsonb) FROM PUBLIC;

-- One side (rec: OLD or NEW) of one child of a parent's guard: enter the gates of the scopes the children lie
-- in on that side (the parent's scope, or each child's own, read from the children: the same on both sides,
-- so entered on the old side only), then look up every child lying in a window on that side and check it as a
-- write of it. The children are found by the parent's old key (BEFORE UPDATE: they still reference it).
CREATE OR REPLACE FUNCTION ledgerlock._ll20_parent_side_sql(c record, kind text, rec text)
RETURNS text
LANGUAGE plpgsql
STABLE  -- prints a regclass
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    children text := pg_catalog.format('ll_row.%I = (OLD.%I)::%s', c.fk_column, c.parent_key, c.fk_type);
    row_scope text := CASE WHEN c.own_scope IS NULL THEN '''*'''
                           ELSE pg_catalog.format('coalesce(pg_catalog.to_jsonb(ll_row.%I) #>> ''{}'', ''*'')',
                                                  c.own_scope) END;
BEGIN
    RETURN ledgerlock._template($ll$
        -- {{rec}}
{{enter}}
        FOR ll_hit IN
            SELECT pg_catalog.to_jsonb(ll_row.*) AS r, s.lock_id FROM {{child}} AS ll_row
            JOIN ledgerlock.period_lock_span s ON s.scope = {{scope}} AND (s.ledger = '*' OR s.ledger = {{ledger|L}})
                                               AND {{day}} BETWEEN s.from_date AND s.to_date
            WHERE {{children}}
            ORDER BY s.from_date, s.lock_id
        LOOP
            ll_verb := coalesce(ll_verb, ledgerlock._moved_children_words(TG_RELID::regclass, TG_OP,
                pg_catalog.to_jsonb(OLD), CASE TG_OP WHEN 'UPDATE' THEN pg_catalog.to_jsonb(NEW) END,
                {{scope_from|L}}, {{date_from|L}}, {{kind|L}}));
            -- a child: not the row written
            ll_refused := ledgerlock._check_window({{child_name|L}}::regclass, ll_hit.lock_id, ll_hit.r, ll_verb,
                                                   false);
        END LOOP;$ll$, pg_catalog.jsonb_build_object(
        'rec', rec,
        'children', children,
        'enter', CASE WHEN c.scope_from IS NOT NULL
                      THEN pg_catalog.format('        ll_s := coalesce(pg_catalog.to_jsonb(%s.%I) #>> ''{}'', ''*'');',
                                             rec, c.scope_from) || pg_catalog.chr(10)
                           || ledgerlock._ll20_gate_sql('ll_s')
                      WHEN rec = 'NEW' THEN '        -- the children''s own scopes: their gates were entered on the old side'
                      ELSE pg_catalog.format('        FOR ll_s IN SELECT DISTINCT %s FROM %s AS ll_row WHERE %s ORDER BY 1 LOOP',
                                             row_scope, c.child, children) || pg_catalog.chr(10)
                           || ledgerlock._ll20_gate_sql('ll_s') || pg_catalog.chr(10) || '        END LOOP;' END,
        'scope', CASE WHEN c.scope_from IS NOT NULL THEN 'll_s' ELSE row_scope END,
        'ledger', c.ledger,
        'day', CASE WHEN c.date_from IS NOT NULL THEN ledgerlock._day_sql(rec, c.date_from, kind)
                    ELSE ledgerlock._day_sql('ll_row', c.own_date::name, kind) END,
        'scope_from', c.scope_from,
        'date_from', c.date_from,
        'kind', kind,
        'child', c.child::text,
        'child_name', c.child::text));
END
$fn$;
REVOKE ALL ON FUNCTION ledgerlock._ll20_parent_side_sql(record, text, text) FROM PUBLIC;

-- (Re)generate the guard of a parent and return its name (null when no child names the parent). For each child,
-- in the registry's order, and for each side of the parent (the old, then for an UPDATE the new): the gates of
-- the scopes the children lie in, then every child lying in a window, checked as a write of it.
CREATE OR REPLACE FUNCTION ledgerlock._ll20_generate_parent(parent regclass)
RETURNS name
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c record;
    kind text;
    blocks text := '';
BEGIN
    FOR c IN SELECT * FROM ledgerlock._period_children(parent) LOOP
        kind := ledgerlock._period_date_kind(c.child);
        IF kind IS NULL THEN  -- _period_children resolved the date through the catalog: it has a type
            RAISE EXCEPTION 'the date of % cannot be read from the catalog', c.child;
        END IF;
        blocks := blocks || pg_catalog.format($ll$
    -- %s
    ll_verb := NULL;
    IF TG_OP = 'DELETE' OR %s THEN
%s
        IF TG_OP = 'UPDATE' THEN
%s
        END IF;
    END IF;
$ll$, c.child,
            (SELECT pg_catalog.string_agg(pg_catalog.format('OLD.%1$I IS DISTINCT FROM NEW.%1$I', x.col), ' OR ')
             FROM (VALUES (c.scope_from), (c.date_from)) AS x(col) WHERE x.col IS NOT NULL),
            ledgerlock._ll20_parent_side_sql(c, kind, 'OLD'), ledgerlock._ll20_parent_side_sql(c, kind, 'NEW'));
    END LOOP;
    IF blocks = '' THEN
        RETURN NULL;
    END IF;
    RETURN ledgerlock._ll20_put(ledgerlock._generated_name(parent, 'll20', 'parent'),
                                ledgerlock._ll20_parent_body(pg_catalog.jsonb_build_object('children', blocks)));
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._ll20_generate_parent(regclass) FROM PUBLIC;

-- The parent's guards (see _ll20_parent_body): on every change of a column some child takes its scope or
-- date from, and on every delete. Installed with each child's period guards, and re-run on the parent after
-- protect or unprotect changes what names it: dropped once no child names the parent.
-- Their WHEN clauses carry a mark, as a child's guards do: the last day of any window that applies to some
-- child (the children's ledgers, every scope; 'infinity' on a subscriber). A child dated by the parent lies in
-- no window while the parent's date, old and new, is after the mark, so deleting or moving such a parent calls
-- nothing; a child with a date of its own is looked at whenever any window applies to it. A new window past
-- the mark re-creates both triggers in place (_raise_period_marks), which waits for the parent's writers.
CREATE OR REPLACE FUNCTION ledgerlock._install_20_scope_parent(parent regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mark text;
    on_update text;
    on_delete text;
    fn name;
BEGIN
    PERFORM ledgerlock._tick_mark_clock();  -- as in _install_20_period: no window change commits under the mark
    mark := (SELECT pg_catalog.quote_literal(ledgerlock._iso_date(coalesce(
                        pg_catalog.max(ledgerlock._period_mark(c.ledger)), '-infinity'))) || '::date'
             FROM ledgerlock._period_children(parent) c);
    SELECT pg_catalog.string_agg(DISTINCT pg_catalog.format('(%s) AND %s', r.moved, r.reach_moved), ' OR '),
           pg_catalog.string_agg(DISTINCT r.reach_old, ' OR ')
      INTO on_update, on_delete
    FROM ledgerlock._period_children(parent) c
    CROSS JOIN LATERAL (SELECT ledgerlock._period_date_kind(c.child) AS kind) k
    CROSS JOIN LATERAL (SELECT CASE WHEN c.date_from IS NOT NULL THEN ledgerlock._day_sql('OLD', c.date_from, k.kind)
                               END AS o,
                               CASE WHEN c.date_from IS NOT NULL THEN ledgerlock._day_sql('NEW', c.date_from, k.kind)
                               END AS n) d
    CROSS JOIN LATERAL (SELECT
        (SELECT pg_catalog.string_agg(pg_catalog.format('OLD.%I IS DISTINCT FROM NEW.%I', x.col, x.col), ' OR ')
         FROM (VALUES (c.scope_from), (c.date_from)) AS x(col) WHERE x.col IS NOT NULL) AS moved,
        -- a child with a date of its own: whether any window applies at all (the mark is not '-infinity')
        CASE WHEN c.date_from IS NULL THEN pg_catalog.format('''-infinity''::date < %s', mark)
             ELSE pg_catalog.format('%s <= %s', d.o, mark) END AS reach_old,
        CASE WHEN c.date_from IS NULL THEN pg_catalog.format('''-infinity''::date < %s', mark)
             ELSE pg_catalog.format('(%s <= %s OR %s <= %s)', d.o, mark, d.n, mark) END AS reach_moved) r;
    IF on_delete IS NULL THEN  -- no child names the parent any more
        PERFORM ledgerlock._drop_guard_triggers(parent, 'll_20_scope_parent_');
        PERFORM ledgerlock._drop_generated_functions(ARRAY[ledgerlock._generated_name(parent, 'll20', 'parent')]);
        RETURN;
    END IF;
    fn := ledgerlock._ll20_generate_parent(parent);
    PERFORM ledgerlock._replace_guard_trigger(parent, 'll_20_scope_parent_update', pg_catalog.format(
        'BEFORE UPDATE ON %s FOR EACH ROW WHEN (%s) EXECUTE FUNCTION ledgerlock.%I()', parent, on_update, fn));
    PERFORM ledgerlock._replace_guard_trigger(parent, 'll_20_scope_parent_delete', pg_catalog.format(
        'BEFORE DELETE ON %s FOR EACH ROW WHEN (%s) EXECUTE FUNCTION ledgerlock.%I()', parent, on_delete, fn));
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._install_20_scope_parent(regclass) FROM PUBLIC;

-- The lock tables themselves: lock_event is append-only, a period_lock row never disappears and only
-- moves forward (soft to hard, active to unlocked, relocked once). ENABLE ALWAYS, as every guard.

CREATE OR REPLACE FUNCTION ledgerlock.guard_lock_history()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ledgerlock._refuse('LL006',
        pg_catalog.format('%s is append-only: %s is refused', TG_TABLE_NAME, pg_catalog.lower(TG_OP)),
        'lock history is evidence; record a new event instead');
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.guard_lock_history() FROM PUBLIC;

CREATE OR REPLACE FUNCTION ledgerlock.guard_period_lock_row()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'DELETE'
       OR (NEW.id, NEW.scope, NEW.from_date, NEW.to_date, NEW.ledgers, NEW.note, NEW.locked_at, NEW.locked_by,
           NEW.relock_of)
          IS DISTINCT FROM (OLD.id, OLD.scope, OLD.from_date, OLD.to_date, OLD.ledgers, OLD.note, OLD.locked_at,
                            OLD.locked_by, OLD.relock_of)
       OR (OLD.level = 'hard' AND NEW.level <> 'hard')
       OR (OLD.status = 'unlocked' AND (NEW.status <> 'unlocked' OR NEW.unlocked_at IS DISTINCT FROM OLD.unlocked_at
                                        OR NEW.unlock_reason IS DISTINCT FROM OLD.unlock_reason))
       OR (OLD.relocked_as IS NOT NULL AND NEW.relocked_as IS DISTINCT FROM OLD.relocked_as) THEN
        PERFORM ledgerlock._refuse('LL006',
            pg_catalog.format('lock #%s cannot be %s: a lock only moves forward (soft to hard, active to '
                              'unlocked, relocked once) and its row stays', OLD.id,
                              CASE TG_OP WHEN 'DELETE' THEN 'deleted' ELSE 'rewritten' END),
            'use ledgerlock.upgrade_lock, unlock_period or relock');
    END IF;
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.guard_period_lock_row() FROM PUBLIC;

CREATE OR REPLACE TRIGGER ll_20_lock_event_append_only BEFORE UPDATE OR DELETE ON ledgerlock.lock_event
    FOR EACH ROW EXECUTE FUNCTION ledgerlock.guard_lock_history();
CREATE OR REPLACE TRIGGER ll_20_lock_event_no_truncate BEFORE TRUNCATE ON ledgerlock.lock_event
    FOR EACH STATEMENT EXECUTE FUNCTION ledgerlock.guard_lock_history();
CREATE OR REPLACE TRIGGER ll_20_period_lock_forward BEFORE UPDATE OR DELETE ON ledgerlock.period_lock
    FOR EACH ROW EXECUTE FUNCTION ledgerlock.guard_period_lock_row();
CREATE OR REPLACE TRIGGER ll_20_period_lock_no_truncate BEFORE TRUNCATE ON ledgerlock.period_lock
    FOR EACH STATEMENT EXECUTE FUNCTION ledgerlock.guard_lock_history();
ALTER TABLE ledgerlock.lock_event ENABLE ALWAYS TRIGGER ll_20_lock_event_append_only;
ALTER TABLE ledgerlock.lock_event ENABLE ALWAYS TRIGGER ll_20_lock_event_no_truncate;
ALTER TABLE ledgerlock.period_lock ENABLE ALWAYS TRIGGER ll_20_period_lock_forward;
ALTER TABLE ledgerlock.period_lock ENABLE ALWAYS TRIGGER ll_20_period_lock_no_truncate;

-- Every protected table whose installed guards give a scope a mark below the last day of that scope's windows
-- (a write dated between the two would not be checked), and every line table of a lines rule (R4) whose trigger
-- gives its header's scope such a mark (a line under a header dated between the two would not be checked), and
-- every parent a protected table takes its date or scope from whose guards carry a mark below the last day of any
-- window of its children (such a parent could be moved or deleted unchecked): for ledgerlock doctor, which
-- reports it as critical. One row per table, its scope with the latest such window.
CREATE OR REPLACE FUNCTION ledgerlock._period_mark_problems()
RETURNS TABLE (tbl regclass, installed date, required date)
LANGUAGE sql
STABLE
SECURITY DEFINER  -- reads the windows for the auditor's doctor
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
AS $$
    SELECT DISTINCT ON (x.tbl) x.tbl, x.installed, x.required
    FROM (SELECT p.tbl, ledgerlock._period_installed_mark(p.tbl, r.scope) AS installed, r.required
          FROM ledgerlock.protected_table p
          CROSS JOIN LATERAL (SELECT s.scope, pg_catalog.max(s.to_date) AS required
                              FROM ledgerlock.period_lock_span s
                              WHERE s.ledger = '*' OR s.ledger = p.ledger
                              GROUP BY s.scope) r
          UNION ALL
          SELECT l.child, ledgerlock._ref_installed_mark(l.id, r.scope), r.required
          FROM ledgerlock.reference_rule l
          JOIN ledgerlock.protected_table p ON p.tbl = l.parent AND p.date_column IS NOT NULL
          CROSS JOIN LATERAL (SELECT s.scope, pg_catalog.max(s.to_date) AS required
                              FROM ledgerlock.period_lock_span s
                              WHERE s.ledger = '*' OR s.ledger = p.ledger
                              GROUP BY s.scope) r
          WHERE l.kind = 'lines'
          UNION ALL
          SELECT pp.parent, ledgerlock._parent_installed_mark(pp.parent), r.required
          FROM ledgerlock._period_parents() pp
          CROSS JOIN LATERAL (SELECT pg_catalog.max(s.to_date) AS required FROM ledgerlock.period_lock_span s
                              WHERE EXISTS (SELECT FROM ledgerlock._period_children(pp.parent) c
                                            WHERE s.ledger = '*' OR s.ledger = c.ledger)) r
          WHERE r.required IS NOT NULL) x
    WHERE x.installed IS NULL OR x.installed < x.required
    ORDER BY x.tbl, x.required DESC
$$;
REVOKE ALL ON FUNCTION ledgerlock._period_mark_problems() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._period_mark_problems() TO ledgerlock_admin, ledgerlock_auditor;
