-- Rule R3: locked periods are read-only. The lock API (lock_period, lock_through, upgrade_lock,
-- unlock_period, relock, begin_override, locked_through, period_lock_at, grant_scope, revoke_scope) and the
-- helpers the guards and the other rules share (_enter_scope, _window_covering, _check_window,
-- _locking_window, _assert_period_open, _unlocked_window, current_override, _why_20_period).
-- The model, the permission matrix and the race analysis are in docs/period-locks.md.
--
-- Concurrency, in one paragraph: writers take ROW EXCLUSIVE on their scope's gate (ledgerlock._scope_gate,
-- one of 64 empty tables, by hash of the scope) before they read the windows of the scope, and keep it to
-- the end of their transaction; every change to the windows of a scope takes SHARE ROW EXCLUSIVE on the
-- gate first. So a lock change waits for the open writers of its scope, and a writer waits for a lock change
-- in progress (the lock queue is fair: a waiting locker is not overtaken by new writers). The gates are
-- relations in schema ledgerlock_gate, which no client may use, so no client can take them, not even through
-- the locks PREPARE holds on what it names (an advisory key could be taken by anyone; migration 0035). In
-- READ COMMITTED the writer's next statement sees the committed change; in REPEATABLE READ and SERIALIZABLE
-- its snapshot may predate it, which the fence rows turn into 40001.

-- "2026-03-01..2026-03-31", or "up to 2026-03-31" for a lock-through window that starts at -infinity.
CREATE OR REPLACE FUNCTION ledgerlock._period_text(from_date date, to_date date)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN from_date = '-infinity'::date THEN 'up to ' || pg_catalog.to_char(to_date, 'YYYY-MM-DD')
                ELSE pg_catalog.to_char(from_date, 'YYYY-MM-DD') || '..' || pg_catalog.to_char(to_date, 'YYYY-MM-DD')
           END
$$;
REVOKE ALL ON FUNCTION ledgerlock._period_text(date, date) FROM PUBLIC;

-- "Period 2026-03-01..2026-03-31 is locked (hard) for scope 7" (", ledgers ar,ap" when limited).
CREATE OR REPLACE FUNCTION ledgerlock._lock_message(lk ledgerlock.period_lock)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.format('Period %s is locked (%s) for scope %s%s',
                             ledgerlock._period_text(lk.from_date, lk.to_date), lk.level, lk.scope,
                             ', ledgers ' || pg_catalog.array_to_string(lk.ledgers, ','))
$$;
REVOKE ALL ON FUNCTION ledgerlock._lock_message(ledgerlock.period_lock) FROM PUBLIC;

-- ---------------------------------------------------------------------------------------------------
-- The scope fence (see the paragraph at the top)

-- The gate of a scope: ledgerlock_gate.scope_gate_00 .. scope_gate_63.
-- No SET clause (see ledgerlock._date_kind_of): qualified, not callable by PUBLIC.
CREATE OR REPLACE FUNCTION ledgerlock._scope_gate(scope text)
RETURNS text
LANGUAGE sql
IMMUTABLE
AS $$
    SELECT 'ledgerlock_gate.scope_gate_' OPERATOR(pg_catalog.||)
           pg_catalog.lpad((pg_catalog.hashtext(scope) OPERATOR(pg_catalog.&) 63)::pg_catalog.text, 2, '0')
$$;
REVOKE ALL ON FUNCTION ledgerlock._scope_gate(text) FROM PUBLIC;

-- A writer enters a scope before it reads the scope's windows (held to the end of the transaction).
-- Volatile on purpose: the caller's next statement takes a fresh snapshot, after the wait. Runs as the
-- owner of the gates (it is only called from SECURITY DEFINER guards).
CREATE OR REPLACE FUNCTION ledgerlock._enter_scope(scope text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE 'LOCK TABLE ' || ledgerlock._scope_gate(scope) || ' IN ROW EXCLUSIVE MODE';
    IF pg_catalog.current_setting('transaction_isolation') <> 'read committed' THEN
        -- 40001 if a lock change on this bucket committed after our snapshot
        PERFORM FROM ledgerlock.period_fence f WHERE f.bucket = pg_catalog.hashtext(scope) & 1023 FOR KEY SHARE;
    END IF;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._enter_scope(text) FROM PUBLIC;

-- Every change to the windows of a scope: wait for its open writers, keep new ones out until commit, and
-- bump the fence (a key update) so that older snapshots cannot write past the change.
CREATE OR REPLACE FUNCTION ledgerlock._change_scope(scope text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE 'LOCK TABLE ' || ledgerlock._scope_gate(scope) || ' IN SHARE ROW EXCLUSIVE MODE';
    UPDATE ledgerlock.period_fence f SET generation = f.generation + 1
    WHERE f.bucket = pg_catalog.hashtext(scope) & 1023;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._change_scope(text) FROM PUBLIC;

-- Before a high-water mark is computed or raised (new windows, guard installation): wait for every other
-- such operation to commit, so that the mark is computed from every window committed before it; in
-- REPEATABLE READ and SERIALIZABLE, whose snapshot could predate one, this fails with 40001 instead.
CREATE OR REPLACE FUNCTION ledgerlock._tick_mark_clock()
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE ledgerlock.period_mark_clock c SET generation = c.generation + 1
$$;
REVOKE ALL ON FUNCTION ledgerlock._tick_mark_clock() FROM PUBLIC;

-- ---------------------------------------------------------------------------------------------------
-- Finding the window of a row

-- The active window of the scope that applies to the ledger (null: a table without a ledger tag) and
-- intersects [from_d, to_d]; null when there is none. Windows that apply to one ledger never overlap, so
-- the one starting last on or before to_d is the only candidate in each of the two index ranges ('*' and
-- the ledger's): two backward index probes, whatever the number of windows.
CREATE OR REPLACE FUNCTION ledgerlock._window_covering(scope text, ledger text, from_d date, to_d date)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    w bigint;
BEGIN
    SELECT x.lock_id INTO w
    FROM ((SELECT s.lock_id, s.to_date FROM ledgerlock.period_lock_span s
           WHERE s.scope = _window_covering.scope AND s.ledger = '*' AND s.from_date <= to_d
           ORDER BY s.from_date DESC LIMIT 1)
          UNION ALL
          (SELECT s.lock_id, s.to_date FROM ledgerlock.period_lock_span s
           WHERE s.scope = _window_covering.scope AND s.ledger = _window_covering.ledger AND s.from_date <= to_d
           ORDER BY s.from_date DESC LIMIT 1)) AS x
    WHERE x.to_date >= from_d
    LIMIT 1;
    RETURN w;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._window_covering(text, text, date, date) FROM PUBLIC;

-- The accounting date of a row of a protected table, as the guards compute it: a date as is, a timestamp's
-- date, a timestamptz's date in UTC (fixed, so that no client TimeZone can move a row out of a window).
-- No SET clause (see ledgerlock._date_kind_of): qualified, not callable by PUBLIC. STABLE, as reading a
-- timestamptz is: an IMMUTABLE function whose body is not is never inlined.
CREATE OR REPLACE FUNCTION ledgerlock._period_date(value text, date_kind text)
RETURNS date
LANGUAGE sql
STABLE
AS $$
    SELECT CASE WHEN date_kind OPERATOR(pg_catalog.=) 'timestamptz'
                THEN pg_catalog.timezone('UTC', value::pg_catalog.timestamptz)::pg_catalog.date
                ELSE value::pg_catalog.date END
$$;
REVOKE ALL ON FUNCTION ledgerlock._period_date(text, text) FROM PUBLIC;

-- ledgerlock._date_kind_of the date column of a protected table (or of the protected table a partition
-- belongs to; the parent's column when the date comes from a parent row).
-- It is on the write path (every date read from a row image: R4's line checks, the capture in an unlocked
-- window, the generic R3 guard), so it is PL/pgSQL, whose plans the session keeps, and reads the parent's
-- foreign key only for a dotted date_column: as one SQL query joining _scope_path's catalog lookups it was
-- planned again on every call, 1.4-1.8 ms (a line insert under protect_lines took 20 times an invoice's).
CREATE OR REPLACE FUNCTION ledgerlock._period_date_kind(tbl regclass)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel regclass := ledgerlock._rule_table(tbl);
    col text;
    parent regclass;
    parent_col name;
    typ oid;
BEGIN
    SELECT p.date_column INTO col FROM ledgerlock.protected_table p WHERE p.tbl = rel;
    IF col IS NULL THEN
        RETURN NULL;
    END IF;
    IF pg_catalog.strpos(col, '.') > 0 THEN  -- a parent's column, when the foreign key resolves
        SELECT dp.parent, dp.parent_column INTO parent, parent_col FROM ledgerlock._scope_path(rel, col) dp;
        IF parent IS NOT NULL THEN
            rel := parent;
            col := parent_col;
        END IF;
    END IF;
    SELECT a.atttypid INTO typ FROM pg_catalog.pg_attribute a
    WHERE a.attrelid = rel AND a.attname = col AND NOT a.attisdropped;
    RETURN CASE WHEN typ IS NOT NULL THEN ledgerlock._date_kind_of(typ) END;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._period_date_kind(regclass) FROM PUBLIC;

-- Where a row of a protected table lies: its scope ('*' without a scope column, or when the value is
-- null), its date, and its table's ledger tag. On the write path of every line under protect_lines (its
-- header's coordinates) and of the capture in an unlocked window, so the registry is read once and a column
-- of the row itself (nearly every table) is read inline, as _row_scope and _row_day read it; a parent's
-- column (a dotted path) goes through them. Through them for every row, one line insert read the registry
-- five times (~20 us of the line's ~85 us above the same insert without the rule, PG 16).
CREATE OR REPLACE FUNCTION ledgerlock._period_coordinates(tbl regclass, r jsonb,
                                                          OUT scope text, OUT day date, OUT ledger text)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cfg ledgerlock.protected_table := ledgerlock._config(tbl);
    typ oid;
BEGIN
    IF cfg.scope_column IS NULL OR r ? cfg.scope_column OR pg_catalog.strpos(cfg.scope_column, '.') = 0 THEN
        scope := coalesce(r ->> cfg.scope_column, '*');
    ELSE
        scope := ledgerlock._row_scope(tbl, r);
    END IF;
    IF pg_catalog.strpos(cfg.date_column, '.') = 0 THEN  -- what _period_date_kind reads for such a column
        SELECT a.atttypid INTO typ FROM pg_catalog.pg_attribute a
        WHERE a.attrelid = cfg.tbl AND a.attname = cfg.date_column AND NOT a.attisdropped;
        day := ledgerlock._period_date(r ->> cfg.date_column,
                                       CASE WHEN typ IS NOT NULL THEN ledgerlock._date_kind_of(typ) END);
    ELSE
        day := ledgerlock._row_day(tbl, r);
    END IF;
    ledger := cfg.ledger;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._period_coordinates(regclass, jsonb) FROM PUBLIC;

-- ---------------------------------------------------------------------------------------------------
-- Overrides

-- The override begin_override opened in the current transaction, or null. Bound to the transaction id,
-- which no later transaction and no other session of this cluster can have, and to the transaction's start
-- (the row's `at`): rows restored by pg_restore or replicated from a publisher carry the ids of another
-- cluster, which this one's transactions reach in turn. Nothing a client sets is consulted.
CREATE OR REPLACE FUNCTION ledgerlock.current_override()
RETURNS bigint
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
AS $$
    SELECT pg_catalog.max(o.id) FROM ledgerlock.period_override o
    WHERE o.txid = pg_catalog.pg_current_xact_id_if_assigned() AND o.db_user = session_user
      AND o.at = pg_catalog.now()
$$;
REVOKE ALL ON FUNCTION ledgerlock.current_override() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.current_override()
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

CREATE OR REPLACE FUNCTION ledgerlock.begin_override(reason text)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
AS $$
DECLARE
    ov bigint;
BEGIN
    PERFORM ledgerlock._require_capability('controller', 'begin_override');
    INSERT INTO ledgerlock.period_override (reason)
    VALUES (ledgerlock._require_reason(reason, 'begin_override'))
    RETURNING id INTO ov;
    RETURN ov;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.begin_override(text) FROM PUBLIC;
-- Anyone may call it: an application gets the explanatory LL005, not a bare 42501.
GRANT EXECUTE ON FUNCTION ledgerlock.begin_override(text) TO PUBLIC;

-- Whether the window admits a write now: only a soft window, only through an override of this transaction,
-- only in a scope granted to the overriding user. The first write an override lets into a window is
-- recorded in the lock history (every row it touches is audited by R5).
CREATE OR REPLACE FUNCTION ledgerlock._period_admits(tbl regclass, window_id bigint, r jsonb)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    lk ledgerlock.period_lock;
    ov bigint;
BEGIN
    SELECT * INTO lk FROM ledgerlock.period_lock l WHERE l.id = window_id;
    IF lk.level <> 'soft' THEN
        RETURN false;
    END IF;
    ov := ledgerlock.current_override();
    IF ov IS NULL OR NOT ledgerlock._scope_granted(lk.scope) THEN
        RETURN false;
    END IF;
    INSERT INTO ledgerlock.lock_event (kind, lock_id, scope, reason, actor, context, details)
    SELECT 'override', lk.id, lk.scope, o.reason, o.actor, o.context,
           pg_catalog.jsonb_build_object('override_id', o.id, 'table', tbl::text,
                                         'key', ledgerlock.row_key(tbl, r))
    FROM ledgerlock.period_override o WHERE o.id = ov
    ON CONFLICT (((details ->> 'override_id')::bigint), lock_id) WHERE kind = 'override' DO NOTHING;
    RETURN true;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._period_admits(regclass, bigint, jsonb) FROM PUBLIC;

-- LL002, naming the window, the row and the way out. The row is the one written (own: named by its label), or
-- another one the window covers (a line's header, a moved parent's child): named as the writer may read it
-- (ledgerlock._row_named: under row-level security, "a row of sale", as R4's refusals name another row).
CREATE OR REPLACE FUNCTION ledgerlock._refuse_locked(tbl regclass, lock_id bigint, r jsonb, verb text, own boolean)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ll_refused text;  -- a refusal is called as an expression: see ledgerlock._refuse
    lk ledgerlock.period_lock;
    num text := (ledgerlock._config(tbl)).number_column;
BEGIN
    SELECT * INTO lk FROM ledgerlock.period_lock l WHERE l.id = _refuse_locked.lock_id;
    -- a refused INSERT names no number: the one its row was given is never issued
    IF verb = 'inserted' AND num IS NOT NULL THEN
        r := r - num;
    END IF;
    ll_refused := ledgerlock._refuse('LL002',
        pg_catalog.format('%s: %s cannot be %s', ledgerlock._lock_message(lk),
                          CASE WHEN own THEN ledgerlock.row_label(tbl, r) ELSE ledgerlock._row_named(tbl, r) END, verb),
        CASE lk.level
            WHEN 'soft' THEN pg_catalog.format(
                'soft lock #%s: a controller can write with SELECT ledgerlock.begin_override(''<reason>'') in the '
                'same transaction, or unlock it with ledgerlock.unlock_period(%s, ''<reason>'')', lk.id, lk.id)
            ELSE pg_catalog.format(
                'hard lock #%s admits no override: post the correction in an open period, or have an admin '
                'unlock it with ledgerlock.unlock_period(%s, ''<reason>'')', lk.id, lk.id)
        END,
        pg_catalog.format('lock_id=%s', lk.id));
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._refuse_locked(regclass, bigint, jsonb, text, boolean) FROM PUBLIC;

-- The one place a write meets a window that covers it: admitted through an override, or refused (own: r is
-- the row written; see _refuse_locked).
CREATE OR REPLACE FUNCTION ledgerlock._check_window(tbl regclass, lock_id bigint, r jsonb, verb text, own boolean)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ll_refused text;  -- a refusal is called as an expression: see ledgerlock._refuse
BEGIN
    IF NOT ledgerlock._period_admits(tbl, lock_id, r) THEN
        ll_refused := ledgerlock._refuse_locked(tbl, lock_id, r, verb, own);
    END IF;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._check_window(regclass, bigint, jsonb, text, boolean) FROM PUBLIC;

-- ---------------------------------------------------------------------------------------------------
-- What other rules call (R4 lines, R5 audit)

-- The active window covering that row of a protected table, or null (no fence: for reports and evidence).
CREATE OR REPLACE FUNCTION ledgerlock._locking_window(tbl regclass, r jsonb)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c record := ledgerlock._period_coordinates(tbl, r);
BEGIN
    IF c.day IS NULL THEN
        RETURN NULL;
    END IF;
    RETURN ledgerlock._window_covering(c.scope, c.ledger, c.day, c.day);
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._locking_window(regclass, jsonb) FROM PUBLIC;

-- The active window covering a row, after entering the row's scope exactly as the guards do (fence included),
-- or null: the caller passes it to _check_window, which raises LL002 unless an override of this transaction
-- opens it. The caller builds the refusal's words only then (a row label reads the catalog: a write through a
-- line would otherwise pay for three of them).
CREATE OR REPLACE FUNCTION ledgerlock._entered_window(tbl regclass, r jsonb)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c record := ledgerlock._period_coordinates(tbl, r);
BEGIN
    IF c.day IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM ledgerlock._enter_scope(c.scope);
    RETURN ledgerlock._window_covering(c.scope, c.ledger, c.day, c.day);
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._entered_window(regclass, jsonb) FROM PUBLIC;

-- An unlocked (not relocked) window covering the row, latest unlock first, or null: the audit records its
-- unlock reason with writes made while it is open.
CREATE OR REPLACE FUNCTION ledgerlock._unlocked_window(tbl regclass, r jsonb)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c record := ledgerlock._period_coordinates(tbl, r);
    w bigint;
BEGIN
    IF c.day IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT l.id INTO w FROM ledgerlock.period_lock l
    WHERE l.scope = c.scope AND l.status = 'unlocked' AND l.relocked_as IS NULL
      AND l.from_date <= c.day AND l.to_date >= c.day
      AND (l.ledgers IS NULL OR c.ledger = ANY (l.ledgers))
    ORDER BY l.unlocked_at DESC, l.id DESC
    LIMIT 1;
    RETURN w;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._unlocked_window(regclass, jsonb) FROM PUBLIC;

-- Whether the session user may read what ledgerlock recorded about a scope beyond what a form needs: a
-- window's note, reviewer and who locked it, who made a row final (the trail's db_user and actor). A
-- controller, admin or auditor whose scope grants include the scope may, as the trail's and the lock
-- history's row-level security lets it read them. Everyone else (the application, a tenant admin of another
-- scope) gets the window, its level and its message, and since when a row is final (period_lock_at,
-- why_locked).
CREATE OR REPLACE FUNCTION ledgerlock._details_shown(scope text)
RETURNS boolean
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT (ledgerlock.has_capability('controller') OR ledgerlock.has_capability('auditor'))
           AND ledgerlock._scope_granted(scope)
$$;
REVOKE ALL ON FUNCTION ledgerlock._details_shown(text) FROM PUBLIC;

-- why_locked hook: the active window that freezes the row, if any.
CREATE OR REPLACE FUNCTION ledgerlock._why_20_period(tbl regclass, key jsonb)
RETURNS TABLE (rule text, summary text, details jsonb, way_back text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cfg ledgerlock.protected_table := ledgerlock._config(tbl);
    r jsonb;
    w bigint;
    lk ledgerlock.period_lock;
BEGIN
    EXECUTE pg_catalog.format('SELECT pg_catalog.to_jsonb(t.*) FROM %s t, pg_catalog.jsonb_populate_record(NULL::%s, $1) k '
                              'WHERE %s', tbl, tbl,
                              (SELECT pg_catalog.string_agg(pg_catalog.format('t.%1$I = k.%1$I', c), ' AND ')
                               FROM pg_catalog.unnest(cfg.key_columns) AS c))
    INTO r USING key;
    IF r IS NULL THEN
        RETURN;
    END IF;
    w := ledgerlock._locking_window(tbl, r);
    IF w IS NULL THEN
        RETURN;
    END IF;
    SELECT * INTO lk FROM ledgerlock.period_lock l WHERE l.id = w;
    rule := 'period_lock';
    summary := pg_catalog.format('%s (lock #%s)', ledgerlock._lock_message(lk), lk.id);
    details := pg_catalog.jsonb_build_object('lock_id', lk.id, 'scope', lk.scope, 'from_date', lk.from_date,
        'to_date', lk.to_date, 'level', lk.level, 'ledgers', lk.ledgers, 'locked_at', lk.locked_at)
        || CASE WHEN ledgerlock._details_shown(lk.scope)
                THEN pg_catalog.jsonb_build_object('locked_by', lk.locked_by, 'note', lk.note, 'reviewer', lk.reviewer)
                ELSE '{}' END;
    -- a scope read from the parent row names that row ("ledger uuid=..."), whose scope column moves it
    details := details || coalesce((SELECT pg_catalog.jsonb_build_object('scope_from', pg_catalog.format(
                                                '%s %s=%s (its %s)', sp.parent, sp.parent_key, r ->> sp.fk_column,
                                                sp.parent_column))
                                    FROM ledgerlock._scope_path(tbl, cfg.scope_column) sp), '{}');
    -- so does a date read from the parent row, whose date column moves it
    details := details || coalesce((SELECT pg_catalog.jsonb_build_object('date', ledgerlock._row_day(tbl, r),
                                                'date_from', pg_catalog.format('%s %s=%s (its %s)', dp.parent,
                                                dp.parent_key, r ->> dp.fk_column, dp.parent_column))
                                    FROM ledgerlock._scope_path(tbl, cfg.date_column) dp), '{}');
    way_back := CASE lk.level
        WHEN 'soft' THEN pg_catalog.format('a controller writes under ledgerlock.begin_override(reason), or '
                                           'unlocks it: ledgerlock.unlock_period(%s, reason)', lk.id)
        ELSE pg_catalog.format('an admin unlocks it: ledgerlock.unlock_period(%s, reason)', lk.id) END;
    RETURN NEXT;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._why_20_period(regclass, jsonb) FROM PUBLIC;

-- ---------------------------------------------------------------------------------------------------
-- Reading the locks (anyone: forms warn before saving, reports print "Books locked through ...")

-- The end of the contiguous run of active windows that starts at the earliest window applying to the
-- ledger (null: untagged tables, windows on every ledger only), unlocked (not relocked) windows included:
-- an unlocked window breaks the run at its start unless active windows cover that day again, so with the
-- earliest window unlocked the books are locked through nothing (null); null also when nothing is locked.
CREATE OR REPLACE FUNCTION ledgerlock._run_end(scope text, ledger text)
RETURNS date
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    w record;
    last date;
BEGIN
    FOR w IN
        SELECT s.from_date, s.to_date, true AS active FROM ledgerlock.period_lock_span s
        WHERE s.scope = _run_end.scope AND (s.ledger = '*' OR s.ledger = _run_end.ledger)
        UNION ALL
        SELECT l.from_date, l.to_date, false FROM ledgerlock.period_lock l
        WHERE l.scope = _run_end.scope AND l.status = 'unlocked' AND l.relocked_as IS NULL
          AND (l.ledgers IS NULL OR _run_end.ledger = ANY (l.ledgers))
        ORDER BY 1, 3 DESC  -- an active window first: it covers the start of an unlocked one on the same day
    LOOP
        IF NOT w.active THEN
            IF last IS NULL OR w.from_date > last THEN
                EXIT;  -- the unlocked window's first day is open
            END IF;
            CONTINUE;
        END IF;
        IF last IS NOT NULL AND w.from_date <> last + 1 THEN
            EXIT;
        END IF;
        last := w.to_date;
    END LOOP;
    RETURN last;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._run_end(text, text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION ledgerlock.locked_through(scope text, ledger text DEFAULT NULL)
RETURNS date
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
AS $$
    SELECT ledgerlock._run_end(scope, ledger)
$$;
REVOKE ALL ON FUNCTION ledgerlock.locked_through(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.locked_through(text, text) TO PUBLIC;

CREATE OR REPLACE FUNCTION ledgerlock.period_lock_at(scope text, d date, ledger text DEFAULT NULL)
RETURNS TABLE (lock_id bigint, from_date date, to_date date, level text, ledgers text[], note text,
               reviewer text, locked_at timestamptz, locked_by name, message text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
AS $$
DECLARE
    w bigint := ledgerlock._window_covering(scope, ledger, d, d);
    details boolean := ledgerlock._details_shown(scope);
BEGIN
    RETURN QUERY
    SELECT l.id, l.from_date, l.to_date, l.level, l.ledgers,
           CASE WHEN details THEN l.note END, CASE WHEN details THEN l.reviewer END, l.locked_at,
           CASE WHEN details THEN l.locked_by END, ledgerlock._lock_message(l)
    FROM ledgerlock.period_lock l WHERE l.id = w;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.period_lock_at(text, date, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.period_lock_at(text, date, text) TO PUBLIC;

-- ---------------------------------------------------------------------------------------------------
-- Changing the locks

-- The level, checked: 'soft' or 'hard'.
CREATE OR REPLACE FUNCTION ledgerlock._lock_level(level text)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF level IS NULL OR pg_catalog.lower(level) NOT IN ('soft', 'hard') THEN
        PERFORM ledgerlock._refuse('22023', pg_catalog.format('level must be soft or hard, not %L', level));
    END IF;
    RETURN pg_catalog.lower(level);
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._lock_level(text) FROM PUBLIC;

-- The ledgers, checked: null (every ledger) or a non-empty sorted set of tags.
CREATE OR REPLACE FUNCTION ledgerlock._lock_ledgers(ledgers text[])
RETURNS text[]
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    clean text[];
BEGIN
    IF ledgers IS NULL THEN
        RETURN NULL;
    END IF;
    clean := ARRAY(SELECT DISTINCT pg_catalog.btrim(l) FROM pg_catalog.unnest(ledgers) AS l ORDER BY 1);
    IF pg_catalog.cardinality(clean) = 0 OR pg_catalog.array_position(clean, NULL) IS NOT NULL
       OR '' = ANY (clean) OR '*' = ANY (clean) THEN
        PERFORM ledgerlock._refuse('22023', pg_catalog.format('ledgers %s: pass null for every ledger, or '
                                                               'a list of ledger tags', ledgers));
    END IF;
    RETURN clean;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._lock_ledgers(text[]) FROM PUBLIC;

-- Create an active window. The caller holds the scope (_change_scope) and checked the capability, the
-- scope grant and the arguments; this refuses an overlap with an active window whose ledgers intersect.
-- A lock's scope is compared as text with each row's scope, which prints one way per value
-- (ledgerlock._scope_type_problem). A scope that no protected table's scope column prints ('07' or ' 7'
-- where every scope column is an integer, an upper-case uuid) covers no row: the lock stands, and the
-- controller is told so, with the text the column would print when the scope reads as one of its values.
-- Nothing to say for '*' or before any table with a scope column is protected. Returns whether it warned.
CREATE OR REPLACE FUNCTION ledgerlock._warn_unheld_scope(scope text)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c record;
    printed text;
    meant text;
    types text[] := '{}';
BEGIN
    IF scope = '*' THEN
        RETURN false;
    END IF;
    FOR c IN
        -- the base type: a domain prints as it does, and its CHECK (the column owner's code) is not run here,
        -- in lock_period's definer context, on a text the controller chose
        SELECT DISTINCT ledgerlock._base_type(s.typ) AS typ
        FROM ledgerlock.protected_table p CROSS JOIN LATERAL ledgerlock._scope_source(p.tbl, p.scope_column) s
        WHERE p.scope_column IS NOT NULL
    LOOP
        BEGIN
            EXECUTE pg_catalog.format('SELECT ($1::%s)::text', c.typ) INTO printed USING scope;
        EXCEPTION WHEN data_exception THEN
            printed := NULL;  -- not a value of the column's type
        END;
        IF printed = scope THEN
            RETURN false;
        END IF;
        meant := coalesce(meant, printed);
        types := types || c.typ::text;
    END LOOP;
    IF pg_catalog.cardinality(types) = 0 THEN
        RETURN false;
    END IF;
    RAISE WARNING USING
        MESSAGE = pg_catalog.format('scope %L is not a scope any protected table prints (their scope columns are '
                                    '%s), so this lock covers no row', scope, pg_catalog.array_to_string(types, ', ')),
        HINT = CASE WHEN meant IS NOT NULL
                    THEN pg_catalog.format('did you mean scope %L? A scope is compared as text', meant)
                    ELSE 'a scope is compared as text with the scope columns as they print their values' END;
    RETURN true;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._warn_unheld_scope(text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION ledgerlock._create_window(scope text, from_date date, to_date date, level text,
                                                     note text, reviewer text, ledgers text[], kind text,
                                                     relock_of bigint DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    clash ledgerlock.period_lock;
    new_id bigint;
BEGIN
    PERFORM ledgerlock._tick_mark_clock();  -- before anything is read: see _raise_period_marks
    SELECT l.* INTO clash
    FROM ledgerlock.period_lock_span s JOIN ledgerlock.period_lock l ON l.id = s.lock_id
    WHERE s.scope = _create_window.scope
      AND (_create_window.ledgers IS NULL OR s.ledger = '*' OR s.ledger = ANY (_create_window.ledgers))
      AND s.from_date <= _create_window.to_date AND s.to_date >= _create_window.from_date
    ORDER BY s.from_date
    LIMIT 1;
    IF FOUND THEN
        PERFORM ledgerlock._refuse('LL004',
            pg_catalog.format('period %s for scope %s overlaps lock #%s (%s, %s%s)',
                              ledgerlock._period_text(from_date, to_date), scope, clash.id,
                              ledgerlock._period_text(clash.from_date, clash.to_date), clash.level,
                              ', ledgers ' || pg_catalog.array_to_string(clash.ledgers, ',')),
            pg_catalog.format('choose dates outside lock #%s, or unlock it first', clash.id));
    END IF;
    INSERT INTO ledgerlock.period_lock AS l (scope, from_date, to_date, level, ledgers, note, reviewer, relock_of)
    VALUES (scope, from_date, to_date, level, ledgers, ledgerlock._visible_text(note),
            ledgerlock._visible_text(reviewer), relock_of)
    RETURNING l.id INTO new_id;
    INSERT INTO ledgerlock.period_lock_span (scope, ledger, from_date, to_date, lock_id)
    SELECT scope, g, from_date, to_date, new_id FROM pg_catalog.unnest(coalesce(ledgers, '{*}')) AS g;
    PERFORM ledgerlock._raise_period_marks(scope, to_date, ledgers);
    PERFORM ledgerlock._lock_event(kind, scope, new_id, NULL, pg_catalog.jsonb_build_object(
        'from_date', from_date, 'to_date', to_date, 'level', level, 'ledgers', ledgers, 'note', note,
        'reviewer', reviewer, 'relock_of', relock_of));
    PERFORM ledgerlock._warn_open_close_tasks(scope, from_date, to_date);  -- the close checklist (r3_close.sql)
    PERFORM ledgerlock._warn_unheld_scope(scope);
    RETURN new_id;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._create_window(text, date, date, text, text, text, text[], text, bigint) FROM PUBLIC;

-- Today for the future-lock check: the UTC date of the transaction's start. Not current_date, which follows
-- the session's TimeZone (a client in UTC+14 would lock today a day early); UTC is also the date a
-- timestamptz written now has in a window (_period_date), so "today" and the rows written now agree.
CREATE OR REPLACE FUNCTION ledgerlock._today()
RETURNS date
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.timezone('UTC', pg_catalog.now())::date
$$;
REVOKE ALL ON FUNCTION ledgerlock._today() FROM PUBLIC;

CREATE OR REPLACE FUNCTION ledgerlock._refuse_future(scope text, to_date date)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ledgerlock._refuse('LL004',
        pg_catalog.format('a lock for scope %s cannot end in the future (%s is after today, %s)', scope,
                          CASE WHEN pg_catalog.isfinite(to_date) THEN pg_catalog.to_char(to_date, 'YYYY-MM-DD')
                               ELSE to_date::text END,  -- to_char prints infinity as nothing
                          pg_catalog.to_char(ledgerlock._today(), 'YYYY-MM-DD')),
        'pass allow_future => true (ledgerlock lock --allow-future) to lock ahead on purpose');
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._refuse_future(text, date) FROM PUBLIC;

CREATE OR REPLACE FUNCTION ledgerlock.lock_period(scope text, from_date date, to_date date,
                                                  level text DEFAULT 'soft', note text DEFAULT NULL,
                                                  reviewer text DEFAULT NULL, ledgers text[] DEFAULT NULL,
                                                  allow_future boolean DEFAULT false)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
AS $$
DECLARE
    lvl text;
    ldg text[];
BEGIN
    PERFORM ledgerlock._require_capability('controller', 'lock_period');
    -- a blank scope is an unset variable in a script far more often than a company: a lock of it holds no row
    IF ledgerlock._visible_text(scope) IS NULL OR from_date IS NULL OR to_date IS NULL THEN
        PERFORM ledgerlock._refuse('22023', 'lock_period requires a scope, a from date and a to date',
                                   'a scope is the company (entity, ledger...) the rows carry in their scope column, '
                                   'e.g. ''7''; ''*'' is the scope of tables without one');
    END IF;
    PERFORM ledgerlock._require_scope(scope, 'lock_period');
    lvl := ledgerlock._lock_level(level);
    ldg := ledgerlock._lock_ledgers(ledgers);
    IF to_date < from_date THEN
        PERFORM ledgerlock._refuse('22023', pg_catalog.format('period %s..%s for scope %s ends before it starts',
                                   pg_catalog.to_char(from_date, 'YYYY-MM-DD'), pg_catalog.to_char(to_date, 'YYYY-MM-DD'),
                                   scope));
    END IF;
    IF to_date > ledgerlock._today() AND NOT coalesce(allow_future, false) THEN
        PERFORM ledgerlock._refuse_future(scope, to_date);
    END IF;
    PERFORM ledgerlock._change_scope(scope);
    RETURN ledgerlock._create_window(scope, from_date, to_date, lvl, note, reviewer, ldg, 'lock');
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.lock_period(text, date, date, text, text, text, text[], boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.lock_period(text, date, date, text, text, text, text[], boolean)
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

-- The day after the books of these ledgers are locked through (the earliest of them), or -infinity.
CREATE OR REPLACE FUNCTION ledgerlock._lock_through_start(scope text, ledgers text[])
RETURNS date
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    l text;
    e date;
    earliest date := 'infinity';
BEGIN
    IF ledgers IS NULL THEN
        earliest := ledgerlock._run_end(scope, NULL);
    ELSE
        FOREACH l IN ARRAY ledgers LOOP
            e := ledgerlock._run_end(scope, l);
            IF e IS NULL THEN
                earliest := NULL;
                EXIT;
            END IF;
            earliest := least(earliest, e);
        END LOOP;
    END IF;
    RETURN coalesce(earliest + 1, '-infinity'::date);
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._lock_through_start(text, text[]) FROM PUBLIC;

CREATE OR REPLACE FUNCTION ledgerlock.lock_through(scope text, through date, level text DEFAULT 'soft',
                                                   note text DEFAULT NULL, reviewer text DEFAULT NULL,
                                                   ledgers text[] DEFAULT NULL, allow_future boolean DEFAULT false)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
AS $$
DECLARE
    lvl text;
    ldg text[];
    start date;
BEGIN
    PERFORM ledgerlock._require_capability('controller', 'lock_through');
    IF ledgerlock._visible_text(scope) IS NULL OR through IS NULL THEN  -- blank: see lock_period
        PERFORM ledgerlock._refuse('22023', 'lock_through requires a scope and a date',
                                   'a scope is the company (entity, ledger...) the rows carry in their scope column, '
                                   'e.g. ''7''; ''*'' is the scope of tables without one');
    END IF;
    PERFORM ledgerlock._require_scope(scope, 'lock_through');
    lvl := ledgerlock._lock_level(level);
    ldg := ledgerlock._lock_ledgers(ledgers);
    IF through > ledgerlock._today() AND NOT coalesce(allow_future, false) THEN
        PERFORM ledgerlock._refuse_future(scope, through);
    END IF;
    PERFORM ledgerlock._change_scope(scope);
    start := ledgerlock._lock_through_start(scope, ldg);
    IF through < start THEN
        PERFORM ledgerlock._refuse('LL004',
            pg_catalog.format('the books of scope %s are already locked through %s; the lock-through date only '
                              'moves forward', scope, pg_catalog.to_char(start - 1, 'YYYY-MM-DD')),
            'to reopen a period, unlock its window with ledgerlock.unlock_period(lock_id, reason)');
    END IF;
    RETURN ledgerlock._create_window(scope, start, through, lvl, note, reviewer, ldg,
                                     CASE WHEN start = '-infinity'::date THEN 'lock' ELSE 'advance' END);
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.lock_through(text, date, text, text, text, text[], boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.lock_through(text, date, text, text, text, text[], boolean)
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

-- A lock about to change: known (LL004), in a granted scope (LL005), its scope held, re-read after the wait.
CREATE OR REPLACE FUNCTION ledgerlock._lock_for_change(lock_id bigint, action text)
RETURNS ledgerlock.period_lock
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    lk ledgerlock.period_lock;
BEGIN
    PERFORM ledgerlock._require_value(lock_id IS NOT NULL, action, 'the id of a lock');
    SELECT * INTO lk FROM ledgerlock.period_lock l WHERE l.id = _lock_for_change.lock_id;
    IF NOT FOUND THEN
        PERFORM ledgerlock._refuse('22023', pg_catalog.format('%s: there is no lock #%s', action,
                                                               coalesce(lock_id::text, 'null')),
                                   'ledgerlock locks (or the view ledgerlock.period_locks) lists them');
    END IF;
    PERFORM ledgerlock._require_scope(lk.scope, action);
    PERFORM ledgerlock._change_scope(lk.scope);
    SELECT * INTO lk FROM ledgerlock.period_lock l WHERE l.id = _lock_for_change.lock_id FOR UPDATE;
    RETURN lk;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._lock_for_change(bigint, text) FROM PUBLIC;

-- Soft to hard ("mark as reviewed"); one way. level => 'soft' on a hard lock is the refused downgrade.
CREATE OR REPLACE FUNCTION ledgerlock.upgrade_lock(lock_id bigint, reviewer text DEFAULT NULL,
                                                   level text DEFAULT 'hard')
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
AS $$
DECLARE
    lvl text;
    lk ledgerlock.period_lock;
BEGIN
    PERFORM ledgerlock._require_capability('controller', 'upgrade_lock');
    lvl := ledgerlock._lock_level(level);
    lk := ledgerlock._lock_for_change(lock_id, 'upgrade_lock');
    IF lk.status <> 'active' THEN
        PERFORM ledgerlock._refuse('LL004', pg_catalog.format('lock #%s is unlocked; only an active lock can be '
                                                               'upgraded', lk.id),
                                   pg_catalog.format('relock it first: ledgerlock.relock(%s)', lk.id));
    END IF;
    IF lk.level = 'hard' AND lvl = 'soft' THEN
        PERFORM ledgerlock._refuse('LL004', pg_catalog.format('lock #%s is hard and cannot be downgraded to soft',
                                                               lk.id),
                                   pg_catalog.format('an admin can unlock it (ledgerlock.unlock_period(%s, reason)) '
                                                     'and lock the period again as soft', lk.id));
    END IF;
    IF lk.level = lvl THEN
        PERFORM ledgerlock._refuse('LL004', pg_catalog.format('lock #%s is already %s', lk.id, lk.level));
    END IF;
    UPDATE ledgerlock.period_lock l
    SET level = 'hard', upgraded_at = now(), upgraded_by = session_user,
        reviewer = coalesce(ledgerlock._visible_text(upgrade_lock.reviewer), l.reviewer)
    WHERE l.id = lk.id;
    PERFORM ledgerlock._lock_event('upgrade', lk.scope, lk.id, NULL, pg_catalog.jsonb_build_object(
        'from_level', 'soft', 'to_level', 'hard', 'reviewer', reviewer));
    PERFORM ledgerlock._warn_open_close_tasks(lk.scope, lk.from_date, lk.to_date);  -- the close checklist
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.upgrade_lock(bigint, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.upgrade_lock(bigint, text, text)
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

-- Unlock a window whose permission was checked (unlock_period, and approve_unlock for a four-eyes
-- request). The lock row stays, marked unlocked; its index entries go.
CREATE OR REPLACE FUNCTION ledgerlock._unlock(lk ledgerlock.period_lock, reason text, details jsonb DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE ledgerlock.period_lock l
    SET status = 'unlocked', unlocked_at = now(), unlocked_by = session_user, unlock_reason = reason
    WHERE l.id = lk.id;
    DELETE FROM ledgerlock.period_lock_span s WHERE s.lock_id = lk.id;
    PERFORM ledgerlock._lock_event('unlock', lk.scope, lk.id, reason,
                                   details || pg_catalog.jsonb_build_object('level', lk.level));
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._unlock(ledgerlock.period_lock, text, jsonb) FROM PUBLIC;

CREATE OR REPLACE FUNCTION ledgerlock.unlock_period(lock_id bigint, reason text)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
AS $$
DECLARE
    why text;
    lk ledgerlock.period_lock;
BEGIN
    PERFORM ledgerlock._require_capability('controller', 'unlock_period');
    why := ledgerlock._require_reason(reason, 'unlock_period');
    lk := ledgerlock._lock_for_change(lock_id, 'unlock_period');
    IF lk.status <> 'active' THEN
        PERFORM ledgerlock._refuse('LL004', pg_catalog.format('lock #%s is already unlocked', lk.id));
    END IF;
    IF lk.level = 'hard' THEN
        PERFORM ledgerlock._require_capability('admin', 'unlocking a hard lock');
    END IF;
    -- the four-eyes gate of the close: a hard unlock may need a second admin
    PERFORM ledgerlock._assert_unlock_approved(lk.id, lk.level);
    PERFORM ledgerlock._unlock(lk, why);
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.unlock_period(bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.unlock_period(bigint, text)
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

-- A new active window with the unlocked one's dates, level, ledgers, note and reviewer.
CREATE OR REPLACE FUNCTION ledgerlock.relock(lock_id bigint)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
AS $$
DECLARE
    lk ledgerlock.period_lock;
    new_id bigint;
BEGIN
    PERFORM ledgerlock._require_capability('controller', 'relock');
    lk := ledgerlock._lock_for_change(lock_id, 'relock');
    IF lk.status = 'active' THEN
        PERFORM ledgerlock._refuse('LL004', pg_catalog.format('lock #%s is active; only an unlocked lock can be '
                                                               'relocked', lk.id));
    END IF;
    IF lk.relocked_as IS NOT NULL THEN
        PERFORM ledgerlock._refuse('LL004', pg_catalog.format('lock #%s was already relocked as lock #%s',
                                                               lk.id, lk.relocked_as));
    END IF;
    new_id := ledgerlock._create_window(lk.scope, lk.from_date, lk.to_date, lk.level, lk.note, lk.reviewer,
                                        lk.ledgers, 'relock', lk.id);
    UPDATE ledgerlock.period_lock l SET relocked_as = new_id WHERE l.id = lk.id;
    RETURN new_id;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.relock(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.relock(bigint) TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;
