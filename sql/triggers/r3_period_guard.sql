-- Rule R3: no row whose date (old or new) lies in an active lock window of its scope and ledger can be
-- inserted, updated or deleted; mutable columns stay writable. Locking never touches the protected rows:
-- the guards look the windows up (two backward index probes, whatever the number of windows).
--
-- Row triggers on a protected table (arguments: date column, date kind, scope column or '', ledger or '',
-- then the exempt columns for UPDATE) — row triggers, so partitions inherit them:
--   ll_20_period_skip    BEFORE INSERT, only when ledgerlock.on_locked = 'skip': a row in a locked window
--                        is skipped and recorded (ledgerlock.skipped_writes)
--   ll_20_period_insert  AFTER INSERT
--   ll_20_period_update  AFTER UPDATE: old and new date; a change of mutable columns only passes
--   ll_20_period_delete  AFTER DELETE
-- AFTER triggers see the row as stored (generated columns, changes made by other BEFORE triggers).
--
-- The high-water mark: each trigger's WHEN clause compares the row's date with the last day of any active
-- window that applies to the table (`issued_on <= '2026-03-31'`), written into the trigger by the installer.
-- Rows dated after every window — today's documents, nearly every write — never call a function, so
-- single-row and bulk writes cost what they cost without ledgerlock. A lock that raises the mark re-installs
-- the guards of the tables it applies to, in its own transaction: CREATE TRIGGER waits for the table's open
-- writers and holds new ones until the lock commits, so no write judged by the old mark commits after the
-- lock. Unlocking leaves the mark where it is (a stricter filter only calls the function more often).

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
-- BEFORE INSERT (skip mode), AFTER INSERT, AFTER UPDATE, AFTER DELETE.
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
            EXECUTE 'LOCK TABLE ledgerlock.scope_gate_' || pg_catalog.lpad((pg_catalog.hashtext(old_scope) & 63)::text, 2, '0')
                    || ' IN ROW EXCLUSIVE MODE';
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
                EXECUTE 'LOCK TABLE ledgerlock.scope_gate_' || pg_catalog.lpad((pg_catalog.hashtext(new_scope) & 63)::text, 2, '0')
                        || ' IN ROW EXCLUSIVE MODE';
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
    IF TG_OP = 'UPDATE' AND ledgerlock._same_except(OLD, NEW, TG_ARGV[4:]) THEN
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

-- The row's date as a trigger WHEN expression over OLD or NEW (as the guard reads it: timestamptz in UTC).
CREATE OR REPLACE FUNCTION ledgerlock._period_day_sql(alias text, date_column name, date_kind text)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE date_kind WHEN 'date' THEN pg_catalog.format('%s.%I', alias, date_column)
                          WHEN 'timestamp' THEN pg_catalog.format('(%s.%I)::date', alias, date_column)
                          ELSE pg_catalog.format('((%s.%I) AT TIME ZONE ''UTC'')::date', alias, date_column) END
$$;
REVOKE ALL ON FUNCTION ledgerlock._period_day_sql(text, name, text) FROM PUBLIC;

-- The high-water mark of a table with this ledger tag: the last day of any active window that applies to
-- it, in any scope (null when there is none).
CREATE OR REPLACE FUNCTION ledgerlock._period_mark(ledger text)
RETURNS date
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.max(s.to_date) FROM ledgerlock.period_lock_span s
    WHERE s.ledger = '*' OR s.ledger = _period_mark.ledger
$$;
REVOKE ALL ON FUNCTION ledgerlock._period_mark(text) FROM PUBLIC;

-- After a new window: re-install the guards of the tables whose mark it may raise (see the top of this
-- file). A table whose other windows already reach as far keeps its triggers untouched.
CREATE OR REPLACE FUNCTION ledgerlock._raise_period_marks(to_date date, ledgers text[], lock_id bigint)
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
          AND NOT EXISTS (SELECT FROM ledgerlock.period_lock_span s
                          WHERE (s.ledger = '*' OR s.ledger = p.ledger) AND s.lock_id <> _raise_period_marks.lock_id
                            AND s.to_date >= _raise_period_marks.to_date)
        ORDER BY p.tbl::oid
    LOOP
        PERFORM ledgerlock._install_20_period(t);
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._raise_period_marks(date, text[], bigint) FROM PUBLIC;

-- Like ledgerlock._create_guard_trigger, but CREATE OR REPLACE: raising the mark must not DROP a trigger
-- (DROP TRIGGER takes an ACCESS EXCLUSIVE lock, which would block readers; CREATE OR REPLACE TRIGGER and
-- ENABLE ALWAYS take SHARE ROW EXCLUSIVE, which waits for writers only).
CREATE OR REPLACE FUNCTION ledgerlock._replace_guard_trigger(tbl regclass, trigger_name name, definition text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tgdef text;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_trigger t WHERE t.tgrelid = tbl AND t.tgname = trigger_name) THEN
        PERFORM ledgerlock._create_guard_trigger(tbl, trigger_name, definition);
        RETURN;
    END IF;
    PERFORM ledgerlock._ddl_permit(tbl, true);  -- the DDL guard lets ledgerlock's own installers through
    EXECUTE pg_catalog.format('CREATE OR REPLACE TRIGGER %I %s', trigger_name, definition);
    EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', tbl, trigger_name);
    SELECT pg_catalog.pg_get_triggerdef(t.oid) INTO tgdef
    FROM pg_catalog.pg_trigger t WHERE t.tgrelid = tbl AND t.tgname = trigger_name;
    EXECUTE pg_catalog.format('COMMENT ON TRIGGER %I ON %s IS %L', trigger_name, tbl,
                              'ledgerlock:' || pg_catalog.md5(tgdef));
    PERFORM ledgerlock._ddl_permit(tbl, false);
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._replace_guard_trigger(regclass, name, text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION ledgerlock._install_20_period(tbl regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cfg ledgerlock.protected_table := ledgerlock._config(tbl);
    kind text := ledgerlock._period_date_kind(tbl);
    args text := pg_catalog.format('%L, %L, %L, %L', cfg.date_column, kind,
                                   coalesce(cfg.scope_column::text, ''), coalesce(cfg.ledger, ''));
    exempt text := (SELECT pg_catalog.string_agg(pg_catalog.quote_literal(c), ', ')
                    FROM pg_catalog.unnest(ledgerlock._exempt_columns(tbl)) AS c);
    mark text;
    old_day text := ledgerlock._period_day_sql('OLD', cfg.date_column, kind);
    new_day text := ledgerlock._period_day_sql('NEW', cfg.date_column, kind);
    stale name;
BEGIN
    -- The mark is computed after every concurrent window change has committed, and none can start before
    -- this transaction ends (ledgerlock._tick_mark_clock): a lock racing this install cannot leave it low.
    PERFORM ledgerlock._tick_mark_clock();
    mark := pg_catalog.quote_literal(coalesce(ledgerlock._period_mark(cfg.ledger), '-infinity'::date)::text)
            || '::date';
    -- replaced in place (a stale ll_20_ trigger of an older version is dropped): see _replace_guard_trigger
    FOR stale IN
        SELECT t.tgname FROM pg_catalog.pg_trigger t
        WHERE t.tgrelid = tbl AND NOT t.tgisinternal AND t.tgparentid = 0 AND pg_catalog.starts_with(t.tgname, 'll_20_')
          AND t.tgname NOT IN ('ll_20_period_skip', 'll_20_period_insert', 'll_20_period_update', 'll_20_period_delete')
    LOOP
        PERFORM ledgerlock._drop_guard_triggers(tbl, stale);
    END LOOP;
    PERFORM ledgerlock._replace_guard_trigger(tbl, 'll_20_period_skip', pg_catalog.format(
        'BEFORE INSERT ON %s FOR EACH ROW WHEN (%s <= %s AND pg_catalog.current_setting(%L, true) = %L) '
        'EXECUTE FUNCTION ledgerlock.guard_period_row(%s)', tbl, new_day, mark, 'ledgerlock.on_locked', 'skip', args));
    PERFORM ledgerlock._replace_guard_trigger(tbl, 'll_20_period_insert', pg_catalog.format(
        'AFTER INSERT ON %s FOR EACH ROW WHEN (%s <= %s) EXECUTE FUNCTION ledgerlock.guard_period_row(%s)',
        tbl, new_day, mark, args));
    PERFORM ledgerlock._replace_guard_trigger(tbl, 'll_20_period_update', pg_catalog.format(
        'AFTER UPDATE ON %s FOR EACH ROW WHEN ((%s <= %s OR %s <= %s) AND NOT pg_catalog.record_image_eq(OLD, NEW)) '
        'EXECUTE FUNCTION ledgerlock.guard_period_row(%s%s)', tbl, old_day, mark, new_day, mark, args,
        ', ' || exempt));
    PERFORM ledgerlock._replace_guard_trigger(tbl, 'll_20_period_delete', pg_catalog.format(
        'AFTER DELETE ON %s FOR EACH ROW WHEN (%s <= %s) EXECUTE FUNCTION ledgerlock.guard_period_row(%s)',
        tbl, old_day, mark, args));
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._install_20_period(regclass) FROM PUBLIC;

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

-- Every protected table whose installed high-water mark is below the mark its windows require (a write
-- dated between the two would not be checked): for ledgerlock doctor, which reports it as critical.
-- The installed mark is read back from the WHEN clause of ll_20_period_insert.
CREATE OR REPLACE FUNCTION ledgerlock._period_mark_problems()
RETURNS TABLE (tbl regclass, installed date, required date)
LANGUAGE sql
STABLE
SECURITY DEFINER  -- reads the windows for the auditor's doctor
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT p.tbl, m.installed, r.required
    FROM ledgerlock.protected_table p
    CROSS JOIN LATERAL (SELECT ledgerlock._period_mark(p.ledger) AS required) r
    LEFT JOIN LATERAL (
        SELECT pg_catalog.substring(pg_catalog.pg_get_triggerdef(t.oid), '<= ''([-0-9a-z]+)''::date')::date
               AS installed
        FROM pg_catalog.pg_trigger t
        WHERE t.tgrelid = p.tbl AND t.tgname = 'll_20_period_insert') m ON true
    WHERE r.required IS NOT NULL AND (m.installed IS NULL OR m.installed < r.required)
$$;
REVOKE ALL ON FUNCTION ledgerlock._period_mark_problems() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._period_mark_problems() TO ledgerlock_admin, ledgerlock_auditor;
