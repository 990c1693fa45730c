-- Rule R3: no row whose date (old or new) lies in an active lock window of its scope and ledger can be
-- inserted, updated or deleted; mutable columns stay writable. Locking never touches the protected rows:
-- the guards look the windows up (ledgerlock._window_covering: two index probes, whatever their number).
--
-- Triggers on a protected table (trigger arguments: date column, date kind, scope column or '', ledger or
-- '', then the exempt columns for UPDATE):
--   ll_20_period_skip    BEFORE INSERT, row, only when ledgerlock.on_locked = 'skip' (WHEN clause): a row
--                        in a locked window is skipped and recorded (ledgerlock.skipped_writes)
--   ll_20_period_insert  AFTER INSERT: on a plain table one statement-level trigger over the transition
--                        table (a bulk insert checks min/max per scope and probes rows only when a window
--                        could apply); on a partitioned table, a partition or an inheritance table a row
--                        trigger, because statement triggers do not fire for rows written through a partition
--   ll_20_period_update  AFTER UPDATE, row: old and new date; a change of mutable columns only passes
--   ll_20_period_delete  AFTER DELETE, row
-- AFTER triggers see the row as stored (generated columns, changes made by other BEFORE triggers).

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

-- The hot path (one row) is written out inline in both guard functions below: the advisory lock, the fence
-- and the probe are those of ledgerlock._enter_scope and ledgerlock._window_covering, without their call
-- overhead (each nested call with a pinned search_path costs about as much as the probe itself).

-- AFTER INSERT … FOR EACH STATEMENT, REFERENCING NEW TABLE AS ll_new.
CREATE OR REPLACE FUNCTION ledgerlock.guard_period_insert()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER  -- reads ledgerlock's windows, which clients cannot
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    date_col text := TG_ARGV[0];
    date_kind text := TG_ARGV[1];
    scope_col text := nullif(TG_ARGV[2], '');
    tbl_ledger text := nullif(TG_ARGV[3], '');
    on_locked text := pg_catalog.current_setting('ledgerlock.on_locked', true);
    r jsonb;
    n integer := 0;
    row_scope text;
    day date;
    w bigint;
    grp record;
    hit record;
    scope_sql text;
    day_sql text;
BEGIN
    IF on_locked IS NOT NULL AND on_locked NOT IN ('', 'error', 'skip') THEN
        PERFORM ledgerlock._check_on_locked();
    END IF;
    SELECT pg_catalog.count(*), (pg_catalog.array_agg(x.j))[1] INTO n, r
    FROM (SELECT pg_catalog.to_jsonb(t) AS j FROM ll_new t LIMIT 2) AS x;
    IF n = 1 THEN  -- the common single-row insert: no dynamic SQL, no nested call
        day := CASE date_kind WHEN 'timestamptz' THEN ((r ->> date_col)::timestamptz AT TIME ZONE 'UTC')::date
                              ELSE (r ->> date_col)::date END;
        IF day IS NULL THEN
            RETURN NULL;
        END IF;
        row_scope := coalesce(r ->> scope_col, '*');
        PERFORM pg_catalog.pg_advisory_xact_lock_shared(1280049184, pg_catalog.hashtext(row_scope));
        IF pg_catalog.current_setting('transaction_isolation') <> 'read committed' THEN
            PERFORM FROM ledgerlock.period_fence f
            WHERE f.bucket = pg_catalog.hashtext(row_scope) & 1023 FOR KEY SHARE;
        END IF;
        SELECT x.lock_id INTO w
        FROM ((SELECT s.lock_id, s.to_date FROM ledgerlock.period_lock_span s
               WHERE s.scope = row_scope AND s.ledger = '*' AND s.from_date <= day
               ORDER BY s.from_date DESC LIMIT 1)
              UNION ALL
              (SELECT s.lock_id, s.to_date FROM ledgerlock.period_lock_span s
               WHERE s.scope = row_scope AND s.ledger = tbl_ledger AND s.from_date <= day
               ORDER BY s.from_date DESC LIMIT 1)) AS x
        WHERE x.to_date >= day
        LIMIT 1;
        IF w IS NOT NULL THEN
            PERFORM ledgerlock._check_window(TG_RELID::regclass, w, r, 'inserted');
        END IF;
        RETURN NULL;
    ELSIF n = 0 THEN
        RETURN NULL;
    END IF;

    -- A bulk insert: per scope, the range of dates; rows are probed only where a window meets the range.
    scope_sql := CASE WHEN scope_col IS NULL THEN '''*''::text'
                      ELSE pg_catalog.format('coalesce(t.%I::text, ''*'')', scope_col) END;
    day_sql := CASE date_kind WHEN 'date' THEN pg_catalog.format('t.%I', date_col)
                              WHEN 'timestamp' THEN pg_catalog.format('t.%I::date', date_col)
                              ELSE pg_catalog.format('(t.%I AT TIME ZONE ''UTC'')::date', date_col) END;
    FOR grp IN EXECUTE pg_catalog.format(
        'SELECT %s AS scope, pg_catalog.min(%s) AS lo, pg_catalog.max(%s) AS hi FROM ll_new t GROUP BY 1',
        scope_sql, day_sql, day_sql)
    LOOP
        CONTINUE WHEN grp.lo IS NULL;
        PERFORM ledgerlock._enter_scope(grp.scope);
        CONTINUE WHEN ledgerlock._window_covering(grp.scope, tbl_ledger, grp.lo, grp.hi) IS NULL;
        FOR hit IN EXECUTE pg_catalog.format(
            'SELECT DISTINCT ON (w.lock_id) w.lock_id, pg_catalog.to_jsonb(t) AS r '
            'FROM ll_new t CROSS JOIN LATERAL (SELECT %s AS day) d '
            'CROSS JOIN LATERAL (SELECT x.lock_id FROM ('
            '  (SELECT s.lock_id, s.to_date FROM ledgerlock.period_lock_span s'
            '   WHERE s.scope = $1 AND s.ledger = ''*'' AND s.from_date <= d.day ORDER BY s.from_date DESC LIMIT 1)'
            '  UNION ALL'
            '  (SELECT s.lock_id, s.to_date FROM ledgerlock.period_lock_span s'
            '   WHERE s.scope = $1 AND s.ledger = $2 AND s.from_date <= d.day ORDER BY s.from_date DESC LIMIT 1)'
            ' ) x WHERE x.to_date >= d.day LIMIT 1) w '
            'WHERE %s = $1 ORDER BY w.lock_id', day_sql, scope_sql)
            USING grp.scope, tbl_ledger
        LOOP
            PERFORM ledgerlock._check_window(TG_RELID::regclass, hit.lock_id, hit.r, 'inserted');
        END LOOP;
    END LOOP;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.guard_period_insert() FROM PUBLIC;

-- Row triggers: BEFORE INSERT (skip mode), AFTER INSERT (partitioned tables), AFTER UPDATE, AFTER DELETE.
CREATE OR REPLACE FUNCTION ledgerlock.guard_period_row()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER  -- reads ledgerlock's windows, which clients cannot
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    date_col text := TG_ARGV[0];
    date_kind text := TG_ARGV[1];
    scope_col text := nullif(TG_ARGV[2], '');
    tbl_ledger text := nullif(TG_ARGV[3], '');
    on_locked text := pg_catalog.current_setting('ledgerlock.on_locked', true);
    fenced boolean := pg_catalog.current_setting('transaction_isolation') <> 'read committed';
    o jsonb;
    n jsonb;
    old_scope text;
    new_scope text;
    old_day date;
    new_day date;
    wo bigint;
    wn bigint;
BEGIN
    IF on_locked IS NOT NULL AND on_locked NOT IN ('', 'error', 'skip') THEN
        PERFORM ledgerlock._check_on_locked();
    END IF;
    IF TG_OP <> 'INSERT' THEN
        o := pg_catalog.to_jsonb(OLD);
        old_day := CASE date_kind WHEN 'timestamptz' THEN ((o ->> date_col)::timestamptz AT TIME ZONE 'UTC')::date
                                  ELSE (o ->> date_col)::date END;
        IF old_day IS NOT NULL THEN
            old_scope := coalesce(o ->> scope_col, '*');
            PERFORM pg_catalog.pg_advisory_xact_lock_shared(1280049184, pg_catalog.hashtext(old_scope));
            IF fenced THEN
                PERFORM FROM ledgerlock.period_fence f
                WHERE f.bucket = pg_catalog.hashtext(old_scope) & 1023 FOR KEY SHARE;
            END IF;
            SELECT x.lock_id INTO wo
            FROM ((SELECT s.lock_id, s.to_date FROM ledgerlock.period_lock_span s
                   WHERE s.scope = old_scope AND s.ledger = '*' AND s.from_date <= old_day
                   ORDER BY s.from_date DESC LIMIT 1)
                  UNION ALL
                  (SELECT s.lock_id, s.to_date FROM ledgerlock.period_lock_span s
                   WHERE s.scope = old_scope AND s.ledger = tbl_ledger AND s.from_date <= old_day
                   ORDER BY s.from_date DESC LIMIT 1)) AS x
            WHERE x.to_date >= old_day
            LIMIT 1;
        END IF;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        n := pg_catalog.to_jsonb(NEW);
        new_day := CASE date_kind WHEN 'timestamptz' THEN ((n ->> date_col)::timestamptz AT TIME ZONE 'UTC')::date
                                  ELSE (n ->> date_col)::date END;
        IF new_day IS NOT NULL THEN
            new_scope := coalesce(n ->> scope_col, '*');
            IF new_scope IS DISTINCT FROM old_scope THEN
                PERFORM pg_catalog.pg_advisory_xact_lock_shared(1280049184, pg_catalog.hashtext(new_scope));
                IF fenced THEN
                    PERFORM FROM ledgerlock.period_fence f
                    WHERE f.bucket = pg_catalog.hashtext(new_scope) & 1023 FOR KEY SHARE;
                END IF;
            END IF;
            IF new_day IS DISTINCT FROM old_day OR new_scope IS DISTINCT FROM old_scope THEN
                SELECT x.lock_id INTO wn
                FROM ((SELECT s.lock_id, s.to_date FROM ledgerlock.period_lock_span s
                       WHERE s.scope = new_scope AND s.ledger = '*' AND s.from_date <= new_day
                       ORDER BY s.from_date DESC LIMIT 1)
                      UNION ALL
                      (SELECT s.lock_id, s.to_date FROM ledgerlock.period_lock_span s
                       WHERE s.scope = new_scope AND s.ledger = tbl_ledger AND s.from_date <= new_day
                       ORDER BY s.from_date DESC LIMIT 1)) AS x
                WHERE x.to_date >= new_day
                LIMIT 1;
            ELSE
                wn := wo;  -- same scope and date: the same window
            END IF;
        END IF;
    END IF;

    IF TG_OP = 'INSERT' AND TG_WHEN = 'BEFORE' THEN  -- skip mode
        IF wn IS NULL OR ledgerlock._period_admits(TG_RELID::regclass, wn, n) THEN
            RETURN NEW;
        END IF;
        INSERT INTO ledgerlock.lock_event (kind, lock_id, scope, details)
        VALUES ('skip', wn, new_scope, pg_catalog.jsonb_build_object(
            'table', TG_RELID::regclass::text, 'key', ledgerlock.row_key(TG_RELID::regclass, n), 'row', n));
        RETURN NULL;
    END IF;

    IF wo IS NULL AND wn IS NULL THEN
        RETURN NULL;
    END IF;
    -- only mutable (or generated) columns changed: reconciling or paying a row in a locked period is fine
    IF TG_OP = 'UPDATE' AND (n - TG_ARGV[4:]) = (o - TG_ARGV[4:]) THEN
        RETURN NULL;
    END IF;
    IF wo IS NOT NULL THEN
        PERFORM ledgerlock._check_window(TG_RELID::regclass, wo, o,
                                         CASE TG_OP WHEN 'DELETE' THEN 'deleted' ELSE 'updated' END);
    END IF;
    IF wn IS NOT NULL AND wn IS DISTINCT FROM wo THEN
        PERFORM ledgerlock._check_window(TG_RELID::regclass, wn, n,
                                         CASE TG_OP WHEN 'INSERT' THEN 'inserted' ELSE 'updated' END);
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.guard_period_row() FROM PUBLIC;

CREATE OR REPLACE FUNCTION ledgerlock._install_20_period(tbl regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cfg ledgerlock.protected_table := ledgerlock._config(tbl);
    args text := pg_catalog.format('%L, %L, %L, %L', cfg.date_column, ledgerlock._period_date_kind(tbl),
                                   coalesce(cfg.scope_column::text, ''), coalesce(cfg.ledger, ''));
    exempt text := (SELECT pg_catalog.string_agg(pg_catalog.quote_literal(c), ', ')
                    FROM pg_catalog.unnest(ledgerlock._exempt_columns(tbl)) AS c);
    row_inserts boolean;
BEGIN
    PERFORM ledgerlock._drop_guard_triggers(tbl, 'll_20_');
    SELECT c.relkind = 'p' OR c.relispartition
           OR EXISTS (SELECT FROM pg_catalog.pg_inherits i WHERE i.inhrelid = tbl OR i.inhparent = tbl)
    INTO row_inserts
    FROM pg_catalog.pg_class c WHERE c.oid = tbl;
    PERFORM ledgerlock._create_guard_trigger(tbl, 'll_20_period_skip', pg_catalog.format(
        'BEFORE INSERT ON %s FOR EACH ROW WHEN (pg_catalog.current_setting(''ledgerlock.on_locked'', true) = '
        '''skip'') EXECUTE FUNCTION ledgerlock.guard_period_row(%s)', tbl, args));
    IF row_inserts THEN
        PERFORM ledgerlock._create_guard_trigger(tbl, 'll_20_period_insert', pg_catalog.format(
            'AFTER INSERT ON %s FOR EACH ROW EXECUTE FUNCTION ledgerlock.guard_period_row(%s)', tbl, args));
    ELSE
        PERFORM ledgerlock._create_guard_trigger(tbl, 'll_20_period_insert', pg_catalog.format(
            'AFTER INSERT ON %s REFERENCING NEW TABLE AS ll_new FOR EACH STATEMENT '
            'EXECUTE FUNCTION ledgerlock.guard_period_insert(%s)', tbl, args));
    END IF;
    PERFORM ledgerlock._create_guard_trigger(tbl, 'll_20_period_update', pg_catalog.format(
        'AFTER UPDATE ON %s FOR EACH ROW EXECUTE FUNCTION ledgerlock.guard_period_row(%s%s)',
        tbl, args, ', ' || exempt));
    PERFORM ledgerlock._create_guard_trigger(tbl, 'll_20_period_delete', pg_catalog.format(
        'AFTER DELETE ON %s FOR EACH ROW EXECUTE FUNCTION ledgerlock.guard_period_row(%s)', tbl, args));
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._install_20_period(regclass) FROM PUBLIC;

-- ---------------------------------------------------------------------------------------------------
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
