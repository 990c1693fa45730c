-- Rule R3, skipped writes: what a write in skip mode (SET LOCAL ledgerlock.on_locked = 'skip') left out
-- because its date lay in a locked window, counted per job, and re-posted once the books allow it.
--
-- A skip is a 'skip' event in ledgerlock.lock_event (view ledgerlock.skipped_writes) that keeps the row
-- image as the guard saw it before the insert (defaults applied, no final number yet). Re-posting inserts
-- that image again, as the caller and through every rule, with the date as recorded (its window unlocked)
-- or moved to a date of an open period; a 'repost' event records it, once per skip.

-- Recurring jobs: a scheduler that generates entries (rent, depreciation, subscriptions) writes in skip
-- mode with a context label per job; a generation dated in a locked window is skipped and recorded, not
-- lost. This is the count to watch: per context label, table and scope, how many generations were
-- skipped (and not re-posted since), when, and into which windows. Reads ledgerlock.skipped_writes as the
-- caller (its row-level security applies).
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
      AND s.reposted_at IS NULL
    GROUP BY s.context, s.table_name, s.scope
    ORDER BY s.context NULLS FIRST, s.table_name, s.scope
$$;
REVOKE ALL ON FUNCTION ledgerlock.skipped_generations(text, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.skipped_generations(text, timestamptz)
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

-- The skip a controller may re-post, locked until the end of the transaction (a second re-post of it
-- waits here, then finds the first one's event), and its row image ready to insert: the date moved to
-- new_date when given, generated columns left out (the table computes them). Checks who asks (a
-- controller or admin, granted the skip's scope), that the skip exists and was not re-posted, and that its
-- table is still protected. Reads only: calling it alone changes nothing.
CREATE OR REPLACE FUNCTION ledgerlock._repost_claim(skip_id bigint, new_date date,
                                                    OUT tbl regclass, OUT image jsonb)
LANGUAGE plpgsql
SECURITY DEFINER  -- reads and row-locks ledgerlock's lock events, which clients cannot
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
AS $$
DECLARE
    skip ledgerlock.lock_event;
    done ledgerlock.lock_event;
    cfg ledgerlock.protected_table;
    kind text;
BEGIN
    PERFORM ledgerlock._require_capability('controller', 'repost_skipped');
    PERFORM ledgerlock._require_value(skip_id IS NOT NULL, 'repost_skipped', 'the id of a skipped write');
    SELECT * INTO skip FROM ledgerlock.lock_event e WHERE e.id = skip_id AND e.kind = 'skip' FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('there is no skipped write #%s', skip_id),
            HINT = 'the ids are those of ledgerlock.skipped_writes';
    END IF;
    PERFORM ledgerlock._require_scope(skip.scope, 'repost_skipped');
    SELECT * INTO done FROM ledgerlock.lock_event e
    WHERE e.kind = 'repost' AND (e.details ->> 'skip_id')::bigint = skip_id;
    IF FOUND THEN
        PERFORM ledgerlock._refuse('LL004',
            pg_catalog.format('skipped write #%s was already re-posted by %s at %s, as %s %s', skip_id,
                              done.db_user, done.at, done.details ->> 'table', done.details -> 'key'),
            'a skipped write is re-posted once; post a further row as a new document');
    END IF;
    tbl := (skip.details ->> 'table')::regclass;
    cfg := ledgerlock._config(tbl);
    image := skip.details -> 'row';
    IF new_date IS NOT NULL THEN
        kind := ledgerlock._period_date_kind(cfg.tbl);
        image := image || pg_catalog.jsonb_build_object(cfg.date_column::text,
            CASE kind WHEN 'date' THEN pg_catalog.to_jsonb(new_date)
                      WHEN 'timestamp' THEN pg_catalog.to_jsonb(new_date::timestamp)
                      ELSE pg_catalog.to_jsonb(new_date::timestamp AT TIME ZONE 'UTC') END);
    END IF;
    image := image - ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a
                           WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated <> '');
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._repost_claim(bigint, date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._repost_claim(bigint, date) TO ledgerlock_admin, ledgerlock_controller;

-- The 'repost' event of a skip, once the row is back in its table, and the row's key: refused unless the
-- row with that key is there and is the skipped row - every column of the recorded image (date moved as
-- asked, generated columns left out) equal as a typed value, except the final number and the declared
-- mutable columns, which may have been set since - so the event never claims a re-post that did not
-- happen, not even against an unrelated row that shares the key; the unique index lock_event_repost_once
-- keeps it to one per skip.
CREATE OR REPLACE FUNCTION ledgerlock._repost_record(skip_id bigint, tbl regclass, inserted jsonb, new_date date)
RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER  -- writes ledgerlock's lock history, which clients cannot
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
AS $$
DECLARE
    claim record := ledgerlock._repost_claim(skip_id, new_date);  -- who asks, the skip, its image
    skip ledgerlock.lock_event;
    cfg ledgerlock.protected_table;
    key jsonb;
    there boolean;
BEGIN
    IF claim.tbl IS DISTINCT FROM tbl THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('skipped write #%s was not a write to %s', skip_id, tbl);
    END IF;
    cfg := ledgerlock._config(tbl);
    key := ledgerlock.row_key(tbl, inserted);
    EXECUTE pg_catalog.format(
        'SELECT EXISTS (SELECT FROM pg_catalog.jsonb_populate_record(NULL::%1$s, $1) AS k '
        'JOIN pg_catalog.jsonb_populate_record(NULL::%1$s, $2) AS i ON true JOIN %1$s AS t ON %2$s WHERE %3$s)',
        tbl,
        (SELECT pg_catalog.string_agg(pg_catalog.format('t.%1$I = k.%1$I', c), ' AND ')
         FROM pg_catalog.unnest(ledgerlock._key_columns(tbl)) AS c),
        coalesce((SELECT pg_catalog.string_agg(pg_catalog.format('t.%1$I IS NOT DISTINCT FROM i.%1$I', c), ' AND ')
                  FROM pg_catalog.jsonb_object_keys(claim.image) AS c
                  WHERE c::name <> ALL (ledgerlock._exempt_columns(tbl))
                    AND c::name IS DISTINCT FROM cfg.number_column), 'true'))
        INTO there USING key, claim.image;
    IF NOT coalesce(there, false) THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('%s has no row %s re-posted from skipped write #%s', tbl, key, skip_id),
            HINT = 'ledgerlock.repost_skipped inserts the recorded row and records its re-post';
    END IF;
    SELECT * INTO skip FROM ledgerlock.lock_event e WHERE e.id = skip_id;
    PERFORM ledgerlock._lock_event('repost', skip.scope, skip.lock_id, NULL, pg_catalog.jsonb_build_object(
        'skip_id', skip_id, 'table', tbl::text, 'key', key, 'new_date', new_date,
        'skipped_at', skip.at, 'skipped_by', skip.db_user, 'skipped_context', skip.context));
    RETURN key;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._repost_record(bigint, regclass, jsonb, date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._repost_record(bigint, regclass, jsonb, date)
    TO ledgerlock_admin, ledgerlock_controller;

-- Re-post skipped write skip_id: insert its recorded row again, with its date (once its window is
-- unlocked) or with new_date (a date of an open period). The insert runs as the caller - the caller's
-- privileges on the table, and every rule, apply as to any insert (a date still locked is refused with
-- LL002, never skipped again) - and returns the new row's key. A controller or admin of the skip's scope;
-- once per skip (LL004).
CREATE OR REPLACE FUNCTION ledgerlock.repost_skipped(skip_id bigint, new_date date DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
-- the skipped row's image is read back as it was made (sql/triggers/r5_audit_capture.sql)
SET extra_float_digits = '1'
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
SET bytea_output = 'hex'
SET lc_monetary = 'C'
SET TimeZone = 'UTC'
AS $$
DECLARE
    claim record := ledgerlock._repost_claim(skip_id, new_date);
    mode text := pg_catalog.current_setting('ledgerlock.on_locked', true);
    columns text;
    inserted jsonb;
BEGIN
    -- a re-post is refused in a locked window, never skipped again: error mode for this insert only (a
    -- function SET clause would need a superuser to create it, the setting being a placeholder)
    PERFORM pg_catalog.set_config('ledgerlock.on_locked', 'error', true);
    SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO columns
    FROM pg_catalog.pg_attribute a
    WHERE a.attrelid = claim.tbl AND a.attnum > 0 AND NOT a.attisdropped AND claim.image ? a.attname;
    EXECUTE pg_catalog.format(
        'INSERT INTO %1$s AS ll_row (%2$s) OVERRIDING SYSTEM VALUE SELECT %2$s '
        'FROM pg_catalog.jsonb_populate_record(NULL::%1$s, $1) RETURNING pg_catalog.to_jsonb(ll_row.*)',
        claim.tbl, columns)
        INTO inserted USING claim.image;
    PERFORM pg_catalog.set_config('ledgerlock.on_locked', coalesce(mode, ''), true);
    RETURN ledgerlock._repost_record(skip_id, claim.tbl, inserted, new_date);
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.repost_skipped(bigint, date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.repost_skipped(bigint, date) TO ledgerlock_admin, ledgerlock_controller;
