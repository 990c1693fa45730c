-- Rule R2: gapless final numbering — the triggers that hand out numbers, and their installer.
--
-- The model (docs/numbering.md):
-- * A row gets its final number when it becomes final (UPDATE into final_when, or INSERT/COPY of a row
--   that is already final), from the counter row of its series, in the same transaction: a rollback
--   gives the number back, a crash loses both together. Whatever number the client wrote is replaced.
-- * A statement takes its numbers as ranges, not one counter update per row: 1 number, then 4, 16, 64...
--   (repeated updates of one row in one transaction walk a growing version chain). When the statement
--   ends, ll_40_settle_* reads the rows it wrote (transition tables), checks that the final rows it
--   numbered carry exactly the numbers from the start of the range on, each once, gives the unused tail
--   back and closes the range.
-- * Between rows, the position in the range is kept in a transaction-local setting. A client can change
--   settings (even in the middle of a statement), so that position is only a hint: the settle step checks
--   the result against the counter and the transition tables, which a client cannot touch, and refuses
--   the statement (LL009) when they disagree. No number is ever decided by client-settable state alone.
-- * Counters are taken in a fixed order (table, series). A transaction that needs a counter that sorts
--   before one it already holds waits for it at most 100 ms and then fails with 40001 (retry), instead of
--   risking a deadlock.
-- * ll_40 runs after every other BEFORE trigger (name order): a row some other rule refuses never takes a
--   counter lock. The lock is held until commit, so finalize last in a transaction.

-- BEFORE INSERT/UPDATE, for rows becoming final. Arguments: number column, date column, date kind (date,
-- timestamp, timestamptz; '' when the format has no date token), scope column ('' when the format has no
-- {SCOPE}), prefix format, suffix format, padding.
CREATE OR REPLACE FUNCTION ledgerlock.assign_final_number()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER  -- takes numbers from ledgerlock's counters, which clients cannot touch
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r jsonb := pg_catalog.to_jsonb(NEW);
    d date;
    scope text;
    prefix text := TG_ARGV[4];
    suffix text := TG_ARGV[5];
    slot text;
    state text;
    pos bigint;
    top bigint;
    chunk bigint;
    seq text;
BEGIN
    IF TG_ARGV[2] <> '' THEN
        d := CASE TG_ARGV[2]
                 WHEN 'date' THEN (r ->> TG_ARGV[1])::date
                 WHEN 'timestamp' THEN (r ->> TG_ARGV[1])::timestamp::date
                 ELSE ((r ->> TG_ARGV[1])::timestamptz AT TIME ZONE 'UTC')::date END;
        IF d IS NULL OR NOT pg_catalog.isfinite(d) THEN
            PERFORM ledgerlock._refuse('LL009', pg_catalog.format(
                '%s cannot get a final number: its %I is %s, and the number format needs the date',
                ledgerlock.row_label(TG_RELID, r), TG_ARGV[1], coalesce(r ->> TG_ARGV[1], 'empty')),
                pg_catalog.format('set %I before the row becomes final', TG_ARGV[1]));
        END IF;
        prefix := pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(prefix,
                      '{YYYY}', pg_catalog.to_char(d, 'YYYY')), '{YY}', pg_catalog.to_char(d, 'YY')),
                      '{MM}', pg_catalog.to_char(d, 'MM'));
        suffix := pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(suffix,
                      '{YYYY}', pg_catalog.to_char(d, 'YYYY')), '{YY}', pg_catalog.to_char(d, 'YY')),
                      '{MM}', pg_catalog.to_char(d, 'MM'));
    END IF;
    IF TG_ARGV[3] <> '' THEN
        scope := r ->> TG_ARGV[3];
        IF scope IS NULL THEN
            PERFORM ledgerlock._refuse('LL009', pg_catalog.format(
                '%s cannot get a final number: its %I is empty, and the number format needs the scope',
                ledgerlock.row_label(TG_RELID, r), TG_ARGV[3]),
                pg_catalog.format('set %I before the row becomes final', TG_ARGV[3]));
        END IF;
        prefix := pg_catalog.replace(prefix, '{SCOPE}', scope);
        suffix := pg_catalog.replace(suffix, '{SCOPE}', scope);
    END IF;

    -- Where this statement stands in its range of the series: "next,last,chunk" (a hint; see above).
    slot := 'ledgerlock.numbering_' || pg_catalog.md5(TG_RELID::oid::text || E'\x1f' || prefix || E'\x1f' || suffix);
    state := pg_catalog.current_setting(slot, true);
    IF state IS NULL OR state = '' THEN
        pos := 1; top := 0; chunk := 0;
    ELSE
        pos := pg_catalog.split_part(state, ',', 1)::bigint;
        top := pg_catalog.split_part(state, ',', 2)::bigint;
        chunk := pg_catalog.split_part(state, ',', 3)::bigint;
    END IF;
    IF pos > top THEN
        chunk := CASE WHEN chunk = 0 THEN 1 ELSE least(chunk * 4, 65536) END;
        SELECT t.first_value, t.last_value INTO pos, top
        FROM ledgerlock._take_numbers(TG_RELID, prefix, suffix, chunk, pg_catalog.lower(TG_OP)) AS t;
    END IF;
    state := pg_catalog.set_config(slot, (pos + 1)::text || ',' || top::text || ',' || chunk::text, true);

    seq := pos::text;
    IF pg_catalog.length(seq) < TG_ARGV[6]::integer THEN
        seq := pg_catalog.lpad(seq, TG_ARGV[6]::integer, '0');
    END IF;
    NEW := pg_catalog.jsonb_populate_record(NEW, pg_catalog.jsonb_build_object(TG_ARGV[0], prefix || seq || suffix));
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.assign_final_number() FROM PUBLIC;

-- Take the next `n` numbers of a series for the current statement: lock its counter (until commit),
-- open the statement's range if none is open, and return the numbers taken.
CREATE OR REPLACE FUNCTION ledgerlock._take_numbers(tbl regclass, prefix text, suffix text, n bigint, kind text,
                                                   OUT first_value bigint, OUT last_value bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    order_key text := pg_catalog.lpad(tbl::oid::text, 10, '0') || E'\x1f' || prefix || E'\x1f' || suffix;
    held text := pg_catalog.current_setting('ledgerlock.numbering_counters_held', true);
BEGIN
    -- Fixed order, so two transactions cannot wait for each other: a counter that sorts before one this
    -- transaction already holds is only waited for briefly. (The setting is a hint: a client that changes it
    -- only risks an ordinary deadlock, which PostgreSQL detects.)
    IF held IS NOT NULL AND held <> '' AND order_key COLLATE "C" < held COLLATE "C" THEN
        PERFORM ledgerlock._take_counter_out_of_order(tbl, prefix, suffix, order_key, held);
    END IF;
    LOOP
        UPDATE ledgerlock.number_counter AS c
        SET last_value = c.last_value + n,
            open_from = coalesce(c.open_from, c.last_value),
            open_kind = CASE WHEN c.open_kind IS NULL OR c.open_kind = kind THEN kind ELSE 'both' END
        WHERE c.tbl = _take_numbers.tbl AND c.prefix = _take_numbers.prefix AND c.suffix = _take_numbers.suffix
        RETURNING c.last_value - n + 1, c.last_value INTO first_value, last_value;
        EXIT WHEN FOUND;
        INSERT INTO ledgerlock.number_counter AS c (tbl, prefix, suffix) VALUES (tbl, prefix, suffix)
        ON CONFLICT ON CONSTRAINT number_counter_pkey DO NOTHING;
    END LOOP;
    IF held IS NULL OR held = '' OR order_key COLLATE "C" > held COLLATE "C" THEN
        PERFORM pg_catalog.set_config('ledgerlock.numbering_counters_held', order_key, true);
    END IF;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._take_numbers(regclass, text, text, bigint, text) FROM PUBLIC;

-- A counter out of the fixed order: wait at most lock_timeout for it, then ask for a retry (40001).
CREATE OR REPLACE FUNCTION ledgerlock._take_counter_out_of_order(tbl regclass, prefix text, suffix text,
                                                                order_key text, held text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '100ms'
AS $$
BEGIN
    INSERT INTO ledgerlock.number_counter AS c (tbl, prefix, suffix) VALUES (tbl, prefix, suffix)
    ON CONFLICT ON CONSTRAINT number_counter_pkey DO NOTHING;
    PERFORM FROM ledgerlock.number_counter c
    WHERE c.tbl = _take_counter_out_of_order.tbl AND c.prefix = _take_counter_out_of_order.prefix
      AND c.suffix = _take_counter_out_of_order.suffix
    FOR UPDATE;
EXCEPTION WHEN lock_not_available THEN
    RAISE EXCEPTION USING ERRCODE = '40001',
        MESSAGE = pg_catalog.format('numbering: the counter of series %s of %s is busy, and this transaction '
                                    'already holds a counter that comes after it', prefix || '{SEQ}' || suffix, tbl),
        HINT = 'retry the transaction; to avoid this, finalize rows of several series in (table, series) order',
        DETAIL = 'counters are taken in a fixed order so that two transactions can never deadlock on them';
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._take_counter_out_of_order(regclass, text, text, text, text) FROM PUBLIC;

-- AFTER INSERT/UPDATE, once per statement, with the statement's rows as transition tables ll_new (and
-- ll_old). Checks the numbers the statement handed out and closes its ranges. Arguments: number column,
-- final_when over n., final_when over o. (update), key columns joined with commas (update).
CREATE OR REPLACE FUNCTION ledgerlock.settle_final_numbers()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER  -- closes ledgerlock's counters, which clients cannot touch
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    kind text := pg_catalog.lower(TG_OP);
    new_final bigint;
    new_other bigint;
    old_final bigint := 0;
    left_final bigint := 0;
    newly_final bigint;
    ranges record;
    got record;
    numbered bigint := 0;
    problem text;
BEGIN
    -- 1. How many rows became final in this statement: from the transition tables alone.
    EXECUTE pg_catalog.format('SELECT count(*) FILTER (WHERE (%1$s) IS TRUE), count(*) FILTER (WHERE (%1$s) IS NOT TRUE) '
                              'FROM ll_new AS n', TG_ARGV[1]) INTO new_final, new_other;
    IF TG_OP = 'UPDATE' THEN
        EXECUTE pg_catalog.format('SELECT count(*) FROM ll_old AS o WHERE (%s) IS TRUE', TG_ARGV[2]) INTO old_final;
        IF old_final > 0 AND new_other > 0 THEN  -- rows that stopped being final (final_when over a mutable column)
            EXECUTE pg_catalog.format('SELECT count(*) FROM ll_old AS o JOIN ll_new AS n USING (%s) '
                                      'WHERE (%s) IS TRUE AND (%s) IS NOT TRUE', TG_ARGV[3], TG_ARGV[2], TG_ARGV[1])
            INTO left_final;
        END IF;
    END IF;
    newly_final := new_final - old_final + left_final;

    -- 2. The ranges this statement opened (for this kind of write).
    SELECT pg_catalog.array_agg(c.prefix ORDER BY c.prefix, c.suffix) AS prefixes,
           pg_catalog.array_agg(c.suffix ORDER BY c.prefix, c.suffix) AS suffixes,
           pg_catalog.array_agg(c.open_from ORDER BY c.prefix, c.suffix) AS bases,
           pg_catalog.array_agg(c.last_value ORDER BY c.prefix, c.suffix) AS tops,
           pg_catalog.bool_or(c.open_kind = 'both') AS mixed
    INTO ranges
    FROM ledgerlock.number_counter c
    WHERE c.tbl = TG_RELID AND c.open_from IS NOT NULL AND c.open_kind IN (kind, 'both');
    IF ranges.mixed THEN
        PERFORM ledgerlock._refuse('LL009', pg_catalog.format(
            'an INSERT ... ON CONFLICT DO UPDATE on %s made rows final through both its INSERT and its UPDATE '
            'part; ledgerlock cannot prove their final numbers gapless', TG_RELID::regclass),
            'insert the rows as drafts, then make them final with an UPDATE');
    END IF;
    IF ranges.prefixes IS NULL THEN
        IF newly_final > 0 THEN
            PERFORM ledgerlock._refuse_numbering(TG_RELID, newly_final, 0, 'no numbers were taken from a counter');
        END IF;
        RETURN NULL;
    END IF;

    -- 3. Read the numbers of the statement's final rows back into (range, sequence number).
    FOR got IN EXECUTE pg_catalog.format($q$
        WITH c AS (
            SELECT * FROM ROWS FROM (pg_catalog.unnest($1::text[]), pg_catalog.unnest($2::text[]),
                                    pg_catalog.unnest($3::bigint[]), pg_catalog.unnest($4::bigint[]))
                          WITH ORDINALITY AS c(prefix, suffix, base, top, i)),
        f AS (SELECT (n.%1$I)::text COLLATE "C" AS num FROM ll_new AS n WHERE (%2$s) IS TRUE),
        m AS (
            SELECT c.i, c.base, c.top,
                   pg_catalog.substr(f.num, pg_catalog.length(c.prefix) + 1,
                                     pg_catalog.length(f.num) - pg_catalog.length(c.prefix)
                                     - pg_catalog.length(c.suffix)) AS digits
            FROM f JOIN c ON pg_catalog."left"(f.num, pg_catalog.length(c.prefix)) = c.prefix
                         AND pg_catalog."right"(f.num, pg_catalog.length(c.suffix)) = c.suffix
                         AND pg_catalog.length(f.num) > pg_catalog.length(c.prefix) + pg_catalog.length(c.suffix)),
        s AS (SELECT m.i, m.digits::bigint AS seq FROM m
              WHERE m.digits ~ '^[0-9]{1,18}$' AND m.digits::bigint > m.base AND m.digits::bigint <= m.top)
        SELECT c.i, c.prefix, c.suffix, c.base, c.top, pg_catalog.count(s.seq) AS cnt,
               pg_catalog.count(DISTINCT s.seq) AS distinct_cnt, min(s.seq) AS lo, max(s.seq) AS hi
        FROM c LEFT JOIN s ON s.i = c.i
        GROUP BY c.i, c.prefix, c.suffix, c.base, c.top
        ORDER BY c.i
        $q$, TG_ARGV[0], TG_ARGV[1])
        USING ranges.prefixes, ranges.suffixes, ranges.bases, ranges.tops
    LOOP
        IF got.cnt <> got.distinct_cnt THEN
            problem := pg_catalog.format('series %s: a number was handed out twice', got.prefix || '{SEQ}' || got.suffix);
        ELSIF got.cnt > 0 AND (got.lo <> got.base + 1 OR got.hi <> got.base + got.cnt) THEN
            problem := pg_catalog.format('series %s: the numbers handed out (%s to %s, %s rows) leave a hole after %s',
                                         got.prefix || '{SEQ}' || got.suffix, got.lo, got.hi, got.cnt, got.base);
        END IF;
        IF problem IS NOT NULL THEN
            PERFORM ledgerlock._refuse_numbering(TG_RELID, newly_final, numbered, problem);
        END IF;
        numbered := numbered + got.cnt;
        -- Close the range: the counter keeps exactly the numbers the statement's rows carry.
        UPDATE ledgerlock.number_counter AS c
        SET last_value = got.base + got.cnt, open_from = NULL, open_kind = NULL
        WHERE c.tbl = TG_RELID AND c.prefix = got.prefix AND c.suffix = got.suffix;
        PERFORM pg_catalog.set_config('ledgerlock.numbering_' || pg_catalog.md5(
            TG_RELID::oid::text || E'\x1f' || got.prefix || E'\x1f' || got.suffix), '', true);
    END LOOP;
    IF numbered <> newly_final THEN
        PERFORM ledgerlock._refuse_numbering(TG_RELID, newly_final, numbered,
                                             'some final rows carry numbers that were not taken in this statement');
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.settle_final_numbers() FROM PUBLIC;

-- LL009: the statement's final numbers do not add up; it is refused as a whole (nothing is numbered).
CREATE OR REPLACE FUNCTION ledgerlock._refuse_numbering(tbl regclass, newly_final bigint, numbered bigint,
                                                       problem text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ledgerlock._refuse('LL009', pg_catalog.format(
        'final numbering of %s refused: %s rows became final, %s carry a number taken in this statement (%s)',
        tbl, newly_final, numbered, problem),
        'ledgerlock hands out final numbers itself; do not change ledgerlock.numbering_* settings, and do not '
        'let another BEFORE trigger skip or renumber rows after ll_40',
        'the statement was rolled back, so no number was lost');
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._refuse_numbering(regclass, bigint, bigint, text) FROM PUBLIC;

-- BEFORE INSERT, for draft rows inserted with an empty number: a temporary number (gaps are fine).
-- Arguments: as assign_final_number, with the temporary-number format.
CREATE OR REPLACE FUNCTION ledgerlock.assign_draft_number()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER  -- uses ledgerlock's draft_number sequence, which clients cannot
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r jsonb := pg_catalog.to_jsonb(NEW);
    d date;
    scope text;
    prefix text := TG_ARGV[4];
    suffix text := TG_ARGV[5];
    seq text := pg_catalog.nextval('ledgerlock.draft_number')::text;
BEGIN
    -- A missing date or scope leaves its token in a temporary number, rather than refusing the draft.
    IF TG_ARGV[2] <> '' OR TG_ARGV[3] <> '' THEN
        IF TG_ARGV[2] <> '' THEN
            d := CASE TG_ARGV[2]
                     WHEN 'date' THEN (r ->> TG_ARGV[1])::date
                     WHEN 'timestamp' THEN (r ->> TG_ARGV[1])::timestamp::date
                     ELSE ((r ->> TG_ARGV[1])::timestamptz AT TIME ZONE 'UTC')::date END;
        END IF;
        IF TG_ARGV[3] <> '' THEN
            scope := r ->> TG_ARGV[3];
        END IF;
        prefix := ledgerlock._render_number_part(prefix, d, scope);
        suffix := ledgerlock._render_number_part(suffix, d, scope);
    END IF;
    IF pg_catalog.length(seq) < TG_ARGV[6]::integer THEN
        seq := pg_catalog.lpad(seq, TG_ARGV[6]::integer, '0');
    END IF;
    NEW := pg_catalog.jsonb_populate_record(NEW, pg_catalog.jsonb_build_object(TG_ARGV[0], prefix || seq || suffix));
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.assign_draft_number() FROM PUBLIC;

CREATE OR REPLACE FUNCTION ledgerlock._install_40_numbering(tbl regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cfg ledgerlock.protected_table := ledgerlock._config(tbl);
    final_fmt record;
    draft_fmt record;
    draft text;
    number_type regtype;
    date_kind text;
    new_final text := ledgerlock._final_condition(tbl, 'NEW');
    old_final text := ledgerlock._final_condition(tbl, 'OLD');
    keys text;
    args text;
BEGIN
    PERFORM ledgerlock._drop_guard_triggers(tbl, 'll_40_');
    IF cfg.number_format IS NULL THEN
        RETURN;
    END IF;
    IF cfg.number_column IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('number_format: %s needs a number_column to write the numbers into', tbl);
    END IF;
    IF new_final IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('number_format: %s needs final_when, the moment a row gets its final number',
                                        tbl);
    END IF;
    number_type := ledgerlock._column_type(tbl, cfg.number_column, 'number_column');
    IF number_type NOT IN ('text'::regtype, 'character varying'::regtype, 'character'::regtype) THEN
        RAISE EXCEPTION USING ERRCODE = '42804',
            MESSAGE = pg_catalog.format('number_column: %s.%I is of type %s; numbers are text, so it must be text '
                                        'or varchar', tbl, cfg.number_column, number_type);
    END IF;
    final_fmt := ledgerlock._number_format_parts(cfg.number_format, 'number_format', cfg.scope_column IS NOT NULL);
    INSERT INTO ledgerlock.number_setting AS s (tbl) VALUES (tbl) ON CONFLICT ON CONSTRAINT number_setting_pkey DO NOTHING;
    draft := (SELECT s.draft_format FROM ledgerlock.number_setting s WHERE s.tbl = _install_40_numbering.tbl);
    draft_fmt := ledgerlock._number_format_parts(draft, 'draft_format', cfg.scope_column IS NOT NULL);
    IF draft_fmt.prefix_format = final_fmt.prefix_format AND draft_fmt.suffix_format = final_fmt.suffix_format THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('draft_format %L would give temporary numbers that look like final ones '
                                        '(%L)', draft, cfg.number_format),
            HINT = 'give temporary numbers their own prefix, e.g. DRAFT-{SEQ}';
    END IF;
    date_kind := CASE ledgerlock._column_type(tbl, cfg.date_column, 'date_column')
                     WHEN 'date'::regtype THEN 'date'
                     WHEN 'timestamp without time zone'::regtype THEN 'timestamp'
                     ELSE 'timestamptz' END;
    SELECT pg_catalog.string_agg(pg_catalog.quote_ident(k), ', ') INTO keys FROM pg_catalog.unnest(cfg.key_columns) k;

    IF NOT EXISTS (SELECT FROM ledgerlock.number_format_history h
                   WHERE h.tbl = _install_40_numbering.tbl
                     AND h.id = (SELECT max(h2.id) FROM ledgerlock.number_format_history h2
                                 WHERE h2.tbl = _install_40_numbering.tbl)
                     AND h.number_format = cfg.number_format AND h.draft_format = draft) THEN
        INSERT INTO ledgerlock.number_format_history (tbl, number_format, draft_format)
        VALUES (tbl, cfg.number_format, draft);
    END IF;

    args := pg_catalog.format('%L, %L, %L, %L, %L, %L, %L', cfg.number_column, cfg.date_column,
        CASE WHEN final_fmt.uses_date THEN date_kind ELSE '' END,
        CASE WHEN final_fmt.uses_scope THEN cfg.scope_column ELSE '' END,
        final_fmt.prefix_format, final_fmt.suffix_format, final_fmt.pad);
    PERFORM ledgerlock._create_guard_trigger(tbl, 'll_40_final_number_insert', pg_catalog.format(
        'BEFORE INSERT ON %s FOR EACH ROW WHEN ((%s) IS TRUE) EXECUTE FUNCTION ledgerlock.assign_final_number(%s)',
        tbl, new_final, args));
    PERFORM ledgerlock._create_guard_trigger(tbl, 'll_40_final_number_update', pg_catalog.format(
        'BEFORE UPDATE ON %s FOR EACH ROW WHEN ((%s) IS TRUE AND (%s) IS NOT TRUE) '
        'EXECUTE FUNCTION ledgerlock.assign_final_number(%s)', tbl, new_final, old_final, args));
    PERFORM ledgerlock._create_guard_trigger(tbl, 'll_40_draft_number', pg_catalog.format(
        'BEFORE INSERT ON %s FOR EACH ROW WHEN ((%s) IS NOT TRUE AND coalesce(NEW.%I::text, '''') = '''') '
        'EXECUTE FUNCTION ledgerlock.assign_draft_number(%L, %L, %L, %L, %L, %L, %L)', tbl, new_final,
        cfg.number_column, cfg.number_column, cfg.date_column,
        CASE WHEN draft_fmt.uses_date THEN date_kind ELSE '' END,
        CASE WHEN draft_fmt.uses_scope THEN cfg.scope_column ELSE '' END,
        draft_fmt.prefix_format, draft_fmt.suffix_format, draft_fmt.pad));
    PERFORM ledgerlock._create_guard_trigger(tbl, 'll_40_settle_insert', pg_catalog.format(
        'AFTER INSERT ON %s REFERENCING NEW TABLE AS ll_new FOR EACH STATEMENT '
        'EXECUTE FUNCTION ledgerlock.settle_final_numbers(%L, %L)', tbl, cfg.number_column,
        pg_catalog.replace(cfg.final_when_sql, 'll_row.', 'n.')));
    PERFORM ledgerlock._create_guard_trigger(tbl, 'll_40_settle_update', pg_catalog.format(
        'AFTER UPDATE ON %s REFERENCING OLD TABLE AS ll_old NEW TABLE AS ll_new FOR EACH STATEMENT '
        'EXECUTE FUNCTION ledgerlock.settle_final_numbers(%L, %L, %L, %L)', tbl, cfg.number_column,
        pg_catalog.replace(cfg.final_when_sql, 'll_row.', 'n.'), pg_catalog.replace(cfg.final_when_sql, 'll_row.', 'o.'),
        keys));
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._install_40_numbering(regclass) FROM PUBLIC;

-- Counters and format history stay when a table is unprotected: protecting it again continues its series
-- (starting them over would hand out numbers a second time).
CREATE OR REPLACE FUNCTION ledgerlock._uninstall_40_numbering(tbl regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ledgerlock._drop_guard_triggers(tbl, 'll_40_');
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._uninstall_40_numbering(regclass) FROM PUBLIC;
