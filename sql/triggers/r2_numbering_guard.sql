-- Rule R2: gapless final numbering - the triggers that hand out numbers, and their installer.
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
-- * Between rows, the position in the range is kept in a transaction-local setting (a statement that
--   numbers one row keeps none: its range of one number is used up). A client can change
--   settings (even in the middle of a statement), so that position is only a hint: the settle step checks
--   the result against the counter and the transition tables, which a client cannot touch, and refuses
--   the statement (LL009) when they disagree. No number is ever decided by client-settable state alone.
-- * Counters are taken in a fixed order (table, series). A transaction that needs a counter that sorts
--   before one it already holds waits for it at most 100 ms and then fails with 40001 (retry), instead of
--   risking a deadlock.
-- * A transaction's first counter is waited for in line: its series' slot in ledgerlock_gate.number_queue (a
--   row nobody updates) is locked until commit before the counter is updated, so the next finalizer of the
--   series waits on the slot and finds the counter free, instead of re-running its UPDATE against the
--   counter's newest version after every commit. The counter's row lock still decides.
-- * ll_40 runs after the other BEFORE row triggers (name order): a row R1 (ll_10) or R4 (ll_30) refuses, or
--   a locked window skips (ll_20_period_skip), never takes a counter lock. R3's other checks (ll_20_period_*)
--   are AFTER row triggers, which fire once the statement's rows are written: a row R3 refuses has taken
--   its number and the counter lock already, and the refusal rolls both back with the statement (no
--   number is lost; a concurrent finalizer of the series waits until the rollback). The lock is held until
--   commit, so finalize last in a transaction.
-- * Counters and configuration belong to the protected table, also when the row triggers run on one of
--   its partitions (TG_RELID is then the partition): every partition numbers in the table's series.
--
-- Why generated functions: each numbered table gets its own trigger functions (_ll40_<table key>_final,
-- _draft, _settle), written by _ll40_generate_functions from its configuration, so that columns are read
-- and written directly (NEW.issued_on, not through jsonb) and the settle queries are static SQL whose plans
-- PL/pgSQL keeps for the session. The generic versions (jsonb row access, dynamic EXECUTE planned on every
-- statement) cost ~1 ms per one-row finalization; the generated ones ~0.1 ms. The templates live here; the
-- installer regenerates them on every install, so they never drift from the configuration.

-- 'INV-{YYYY}-' as a PL/pgSQL expression over the row's date (ll_d) and scope (ll_scope):
-- 'INV-' || pg_catalog.to_char(ll_d, 'YYYY') || '-'. With keep_tokens, a missing date or scope leaves its
-- token in the text (temporary numbers); without, the caller has refused such rows already.
CREATE OR REPLACE FUNCTION ledgerlock._number_part_sql(part text, keep_tokens boolean)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on  -- its literals hold backslashes
AS $$
DECLARE
    out text[] := '{}';
    tok text;
    lit text;
    expr text;
BEGIN
    WHILE part <> '' LOOP
        tok := pg_catalog.substring(part, '^\{(YYYY|YY|MM|SCOPE)\}');
        IF tok IS NOT NULL THEN
            expr := CASE tok WHEN 'SCOPE' THEN 'll_scope'
                             ELSE pg_catalog.format('pg_catalog.to_char(ll_d, %L)', tok) END;
            IF keep_tokens THEN
                expr := pg_catalog.format('coalesce(%s, %L)', expr, '{' || tok || '}');
            END IF;
            out := out || expr;
            part := pg_catalog.substr(part, pg_catalog.length(tok) + 3);
        ELSE
            lit := pg_catalog.substring(part, '^(.[^{]*)');
            out := out || pg_catalog.quote_literal(lit);
            part := pg_catalog.substr(part, pg_catalog.length(lit) + 1);
        END IF;
    END LOOP;
    RETURN CASE WHEN pg_catalog.cardinality(out) = 0 THEN '''''' ELSE pg_catalog.array_to_string(out, ' || ') END;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._number_part_sql(text, boolean) FROM PUBLIC;

-- The number's digits as text, zero-padded to at least pad digits (never cut): a SQL expression over the
-- text expression digits, which it reads up to three times. The one place a number's digits are written,
-- for the final number (ll_40), the temporary one, and the settle step that compares a row with its counter.
CREATE OR REPLACE FUNCTION ledgerlock._number_digits_sql(digits text, pad integer)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.format('CASE WHEN pg_catalog.length(%1$s) < %2$s THEN pg_catalog.lpad(%1$s, %2$s, ''0'') '
                             'ELSE %1$s END', digits, pad)
$$;
REVOKE ALL ON FUNCTION ledgerlock._number_digits_sql(text, integer) FROM PUBLIC;

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

-- How many slots the line has (ledgerlock_gate.number_queue, rows 0 .. n - 1, put there by migration 0040): a
-- series waits on slot hashtext(its key) & (n - 1), so n is a power of two. The one place the number is kept:
-- the generated final functions, the doctor and the count of missing slots read it here.
CREATE OR REPLACE FUNCTION ledgerlock._number_queue_slots()
RETURNS integer
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 4096
$$;
REVOKE ALL ON FUNCTION ledgerlock._number_queue_slots() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._number_queue_slots() TO ledgerlock_admin, ledgerlock_auditor;

-- How many of the line's slots are missing: for ledgerlock doctor. A finalizer whose slot is missing finds no
-- row to lock and waits on the counter row instead, as before the line: numbers stay gapless, one series is
-- slower. No client may read that schema, hence the definer.
CREATE OR REPLACE FUNCTION ledgerlock._number_queue_missing()
RETURNS integer
LANGUAGE sql
STABLE
SECURITY DEFINER  -- reads ledgerlock_gate for the auditor's doctor
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
AS $$
    SELECT ledgerlock._number_queue_slots() - pg_catalog.count(*)::integer
    FROM ledgerlock_gate.number_queue q
    WHERE q.slot BETWEEN 0 AND ledgerlock._number_queue_slots() - 1
$$;
REVOKE ALL ON FUNCTION ledgerlock._number_queue_missing() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._number_queue_missing() TO ledgerlock_admin, ledgerlock_auditor;

-- LL009 for a row whose format needs a date or a scope it does not have. r: the row's image under the capture's
-- pinned settings (ledgerlock._audit_row_image, made on the refusal only): a float key is named exactly.
CREATE OR REPLACE FUNCTION ledgerlock._refuse_unnumberable(tbl regclass, r jsonb, col name, what text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ll_refused text;  -- a refusal is called as an expression: see ledgerlock._refuse
BEGIN
    ll_refused := ledgerlock._refuse('LL009', pg_catalog.format(
        '%s cannot get a final number: its %I is %s, and the number format needs the %s',
        ledgerlock.row_label(tbl, r), col, coalesce(r ->> col, 'empty'), what),
        pg_catalog.format('set %I before the row becomes final', col));
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._refuse_unnumberable(regclass, jsonb, name, text) FROM PUBLIC;

-- LL009: the statement's final numbers do not add up; it is refused as a whole (nothing is numbered).
CREATE OR REPLACE FUNCTION ledgerlock._refuse_numbering(tbl regclass, newly_final bigint, numbered bigint,
                                                       problem text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ll_refused text;  -- a refusal is called as an expression: see ledgerlock._refuse
BEGIN
    ll_refused := ledgerlock._refuse('LL009', pg_catalog.format(
        'final numbering of %s refused: %s rows became final, %s carry a number taken in this statement (%s)',
        tbl, newly_final, numbered, problem),
        'ledgerlock hands out final numbers itself; do not change ledgerlock.numbering_* settings, and do not '
        'let another BEFORE trigger skip or renumber rows after ll_40',
        'the statement was rolled back, so no number was lost');
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._refuse_numbering(regclass, bigint, bigint, text) FROM PUBLIC;

-- A generated function runs on a relation it was not generated for: a partition created or attached since
-- (without the DDL guard, which would have regenerated them), or a table renamed since. Such a partition
-- may lack its settle triggers, so a range opened there might never be closed: refuse.
CREATE OR REPLACE FUNCTION ledgerlock._ll40_check_relation(rel regclass, generated_for text)
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ll_refused text;  -- a refusal is called as an expression: see ledgerlock._refuse
BEGIN
    IF ledgerlock._rule_table(rel) IS NOT DISTINCT FROM pg_catalog.to_regclass(generated_for) THEN
        ll_refused := ledgerlock._refuse('LL009', pg_catalog.format(
            'partition %s of %s was added after its numbering triggers were installed; it cannot number rows yet',
            rel, generated_for),
            'have an admin run SELECT ledgerlock.reinstall_guards(), or install the DDL guard');
    END IF;
    ll_refused := ledgerlock._refuse('LL009', pg_catalog.format(
        'the numbering triggers of %s were generated for %s (renamed since?)', rel, generated_for),
        'have an admin run SELECT ledgerlock.reinstall_guards() to generate them for its current name');
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._ll40_check_relation(regclass, text) FROM PUBLIC;

-- What every generated body of a table is filled with: the table as a regclass literal (resolved by name
-- when the body is first run in a session), the check that the trigger fires on the table or one of the
-- partitions it had at install time (by name: TG_TABLE_SCHEMA and TG_TABLE_NAME cost nothing), the keys
-- of its position hints and of the counter order, and its date, scope and final_when over NEW / n / o.
CREATE OR REPLACE FUNCTION ledgerlock._ll40_values(tbl regclass)
RETURNS jsonb
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.jsonb_build_object(
        'tbl', pg_catalog.format('%L::regclass', q.name),
        'rel_check', pg_catalog.format(
            'IF (TG_TABLE_SCHEMA, TG_TABLE_NAME) NOT IN (%s) THEN '
            'll_refused := ledgerlock._ll40_check_relation(TG_RELID, %L); END IF;', known.list, q.name),
        -- the position hints of the table's series live in settings named after this key
        'slot_key', ledgerlock._table_key(tbl) || E'\x1f',
        -- counters are taken in (table, series) order; the table's part of that order
        'order_key', q.name || E'\x1f',
        -- the mask of the line's slots (see ledgerlock._number_queue_slots)
        'queue_mask', (ledgerlock._number_queue_slots() - 1)::text,
        'number_column', cfg.number_column,
        'date_column', cfg.date_column,
        'scope_column', cfg.scope_column,
        'date_of', ledgerlock._day_sql('NEW', cfg.date_column, ledgerlock._period_date_kind(tbl)),
        'scope_of', CASE WHEN cfg.scope_column IS NULL THEN 'NULL'
                         ELSE pg_catalog.format('NEW.%I::text', cfg.scope_column) END,
        -- the same over a row n of the settle step's transition tables
        'date_n', ledgerlock._day_sql('n', cfg.date_column, ledgerlock._period_date_kind(tbl)),
        'scope_n', CASE WHEN cfg.scope_column IS NULL THEN 'NULL::text'
                        ELSE pg_catalog.format('n.%I::text', cfg.scope_column) END,
        'final_n', ledgerlock._condition_as(cfg.final_when_sql, 'n'),
        'final_o', ledgerlock._condition_as(cfg.final_when_sql, 'o'))
    FROM ledgerlock.protected_table cfg
    CROSS JOIN LATERAL (SELECT pg_catalog.format('%I.%I', n.nspname, c.relname) AS name
                        FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                        WHERE c.oid = tbl) q
    CROSS JOIN LATERAL (SELECT pg_catalog.string_agg(pg_catalog.format('(%L, %L)', n.nspname, c.relname), ', '
                                                     ORDER BY c.oid) AS list
                        FROM ledgerlock._partition_tree(tbl) p
                        JOIN pg_catalog.pg_class c ON c.oid = p.relid
                        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace) known
    WHERE cfg.tbl = _ll40_values.tbl
$$;
REVOKE ALL ON FUNCTION ledgerlock._ll40_values(regclass) FROM PUBLIC;

-- BEFORE INSERT/UPDATE of a row becoming final: its number, from the statement's range of its series.
-- Extra values: date_step and scope_step (the row's date and scope, refused when the format needs them
-- and they are missing), prefix and suffix (PL/pgSQL expressions over ll_d and ll_scope), digits_of_pos
-- (the position's digits, padded: ledgerlock._number_digits_sql).
CREATE OR REPLACE FUNCTION ledgerlock._ll40_final_body(v jsonb)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT ledgerlock._template($ll$
DECLARE
    ll_d date;
    ll_scope text;
    ll_prefix text;
    ll_suffix text;
    ll_slot text;
    ll_state text;
    ll_pos bigint;
    ll_top bigint;
    ll_chunk bigint;
    ll_from bigint;
    ll_key text;
    ll_held text;
    ll_refused text;  -- refusals are called as expressions: see ledgerlock._refuse
BEGIN
    {{rel_check}}
    {{date_step}}
    {{scope_step}}
    ll_prefix := {{prefix}};
    ll_suffix := {{suffix}};
    -- Where this statement stands in its range of the series: "next,last,chunk" (a hint; see above).
    ll_slot := 'ledgerlock.numbering_' || pg_catalog.md5({{slot_key|L}} || ll_prefix || E'\x1f' || ll_suffix);
    ll_state := pg_catalog.current_setting(ll_slot, true);
    IF ll_state IS NULL OR ll_state = '' THEN
        ll_pos := 1; ll_top := 0; ll_chunk := 0;
    ELSE
        ll_pos := pg_catalog.split_part(ll_state, ',', 1)::bigint;
        ll_top := pg_catalog.split_part(ll_state, ',', 2)::bigint;
        ll_chunk := pg_catalog.split_part(ll_state, ',', 3)::bigint;
    END IF;
    IF ll_pos > ll_top THEN
        ll_chunk := CASE WHEN ll_chunk = 0 THEN 1 ELSE least(ll_chunk * 4, 65536) END;
        -- Fixed order, so two transactions cannot wait for each other: a counter that sorts before one this
        -- transaction already holds is only waited for briefly. (The setting is a hint: a client that changes
        -- it only risks an ordinary deadlock, which PostgreSQL detects.)
        ll_key := {{order_key|L}} || ll_prefix || E'\x1f' || ll_suffix;
        ll_held := pg_catalog.current_setting('ledgerlock.numbering_counters_held', true);
        IF ll_held IS NOT NULL AND ll_held <> '' AND ll_key COLLATE "C" < ll_held COLLATE "C" THEN
            ll_refused := ledgerlock._take_counter_out_of_order({{tbl}}, ll_prefix, ll_suffix, ll_key, ll_held);
        ELSIF ll_held IS NULL OR ll_held = '' THEN
            -- The transaction's first counter: wait in line for it on the series' slot, a row nobody updates,
            -- locked until commit. The next finalizer of the series then finds the counter free, instead of
            -- waiting on the counter's row and re-reading its newest version after each commit (docs/numbering.md,
            -- "Waiting in line"). The counter's row lock still decides; the slot only orders the waiters.
            PERFORM FROM ledgerlock_gate.number_queue AS q
            WHERE q.slot = pg_catalog.hashtext(ll_key COLLATE "C") & {{queue_mask}}
            FOR UPDATE;
        END IF;
        LOOP
            UPDATE ledgerlock.number_counter AS c
            SET last_value = c.last_value + ll_chunk,
                open_from = coalesce(c.open_from, c.last_value),
                open_kind = CASE WHEN c.open_kind IS NULL OR c.open_kind = pg_catalog.lower(TG_OP)
                                 THEN pg_catalog.lower(TG_OP) ELSE 'both' END
            WHERE c.tbl = {{tbl}} AND c.prefix = ll_prefix AND c.suffix = ll_suffix
            RETURNING c.last_value, c.open_from INTO ll_top, ll_from;
            EXIT WHEN FOUND;
            INSERT INTO ledgerlock.number_counter AS c (tbl, prefix, suffix) VALUES ({{tbl}}, ll_prefix, ll_suffix)
            ON CONFLICT ON CONSTRAINT number_counter_pkey DO NOTHING;
        END LOOP;
        ll_pos := ll_top - ll_chunk + 1;
        IF ll_held IS NULL OR ll_held = '' OR ll_key COLLATE "C" > ll_held COLLATE "C" THEN
            ll_held := pg_catalog.set_config('ledgerlock.numbering_counters_held', ll_key, true);
        END IF;
    END IF;
    -- A range opened just now for this one number needs no position kept: a one-row statement (nearly every
    -- finalization) writes no setting. A second row of the statement finds the range open already (ll_from
    -- is not its own start) and keeps one from then on.
    IF ll_chunk > 1 OR ll_from IS DISTINCT FROM ll_top - 1 THEN
        ll_state := pg_catalog.set_config(ll_slot, (ll_pos + 1)::text || ',' || ll_top::text || ',' || ll_chunk::text, true);
    END IF;
    NEW.{{number_column|I}} := ll_prefix || {{digits_of_pos}} || ll_suffix;
    RETURN NEW;
END
$ll$, v)
$fn$;
REVOKE ALL ON FUNCTION ledgerlock._ll40_final_body(jsonb) FROM PUBLIC;

-- BEFORE INSERT of a draft with an empty number: a temporary number (gaps are fine). Extra values: date_step,
-- scope_step, prefix, suffix and digits_of_seq of the draft format (a missing date or scope keeps its token).
CREATE OR REPLACE FUNCTION ledgerlock._ll40_draft_body(v jsonb)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT ledgerlock._template($ll$
DECLARE
    ll_d date;
    ll_scope text;
    ll_seq text := pg_catalog.nextval('ledgerlock.draft_number')::text;
BEGIN
    {{date_step}}
    {{scope_step}}
    NEW.{{number_column|I}} := {{prefix}} || {{digits_of_seq}} || {{suffix}};
    RETURN NEW;
END
$ll$, v)
$fn$;
REVOKE ALL ON FUNCTION ledgerlock._ll40_draft_body(jsonb) FROM PUBLIC;

-- The one query of the settle step (see below), reading ll_new and, for an UPDATE, ll_old. Extra value:
-- old_final, the count of rows that were final before the statement (0 for an INSERT).
-- It counts the rows that became final, reads each number back once into the series of its row (the
-- series ll_40 numbered the row in), matches those against the ranges the counters say this statement
-- opened, closes the ranges and resets their position hints: one pass over the rows, whatever the number
-- of series.
CREATE OR REPLACE FUNCTION ledgerlock._ll40_settle_query(v jsonb)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT ledgerlock._template($q$
        -- Each final row read back once: the series its own date and scope give (what ll_40 numbered it in)
        -- and the sequence number in its number, when the number has that series' shape (digits only, 1 to
        -- 18 of them). A number of any other shape counts as not taken in this statement.
        WITH f AS MATERIALIZED (
            SELECT y.prefix, y.suffix,
                   CASE WHEN pg_catalog.octet_length(y.d) BETWEEN 1 AND 18 AND pg_catalog.ltrim(y.d, '0123456789') = ''
                        THEN y.d::bigint END AS seq
            FROM (SELECT x.prefix, x.suffix, {{digits_of_x}} AS d
                  FROM (SELECT ll_v.prefix, ll_v.suffix, (n.{{number_column|I}})::text COLLATE "C" AS num
                        FROM ll_new AS n
                        -- the series of the row: ll_d and ll_scope are read at the innermost level, where no
                        -- column of the table (which may have its own ll_scope) can be meant
                        CROSS JOIN LATERAL (SELECT ({{prefix_n}}) COLLATE "C" AS prefix,
                                                   ({{suffix_n}}) COLLATE "C" AS suffix
                                            FROM (SELECT {{date_n}} AS ll_d, {{scope_n}} AS ll_scope) AS ll_p) AS ll_v
                        WHERE ({{final_n}}) IS TRUE) AS x
                  OFFSET 0) AS y),  -- OFFSET 0: the digits are cut out once per row, not once per use
        -- Per range this statement opened: how many of its rows carry a number of the range, how many
        -- distinct numbers, the lowest and the highest. The rows are grouped by number first (hashed, no sort)
        -- and joined to the table's open counters by series, so the cost grows with the rows, not rows x ranges.
        -- The join is a FULL JOIN (the rows of no open counter then dropped by a test PostgreSQL does not take
        -- for strict, so it keeps the FULL JOIN), which PostgreSQL runs as a hash or merge join whatever its
        -- estimates: as a LEFT JOIN it was planned as a nested loop over the session's first rows, and one
        -- statement that finalized 3,000 rows in 3,000 series compared 9,000,000 pairs.
        g AS (SELECT f.prefix, f.suffix, f.seq, pg_catalog.count(*) AS k FROM f WHERE f.seq IS NOT NULL
              GROUP BY f.prefix, f.suffix, f.seq),
        r AS (
            SELECT c.prefix, c.suffix, c.open_from AS base, c.last_value AS top, c.open_kind,
                   'ledgerlock.numbering_' || pg_catalog.md5({{slot_key|L}} || c.prefix || E'\x1f' || c.suffix) AS hint,
                   coalesce(pg_catalog.sum(g.k) FILTER (WHERE g.seq > c.open_from AND g.seq <= c.last_value), 0)::bigint
                       AS cnt,
                   pg_catalog.count(g.seq) FILTER (WHERE g.seq > c.open_from AND g.seq <= c.last_value) AS distinct_cnt,
                   pg_catalog.min(g.seq) FILTER (WHERE g.seq > c.open_from AND g.seq <= c.last_value) AS lo,
                   pg_catalog.max(g.seq) FILTER (WHERE g.seq > c.open_from AND g.seq <= c.last_value) AS hi
            FROM (SELECT c.prefix, c.suffix, c.open_from, c.last_value, c.open_kind, true AS ll_open
                  FROM ledgerlock.number_counter c
                  WHERE c.tbl = {{tbl}} AND c.open_from IS NOT NULL AND c.open_kind IN (ll_kind, 'both')) c
            FULL JOIN g ON g.prefix = c.prefix AND g.suffix = c.suffix
            WHERE coalesce(c.ll_open, false)
            GROUP BY c.prefix, c.suffix, c.open_from, c.last_value, c.open_kind),
        u AS (
            UPDATE ledgerlock.number_counter AS c
            SET last_value = r.base + r.cnt, open_from = NULL, open_kind = NULL
            FROM r
            WHERE c.tbl = {{tbl}} AND c.prefix = r.prefix AND c.suffix = r.suffix
            -- the position hints of the closed ranges reset, where there is one: setting a hint that does not
            -- exist would create a setting per series (3,000 series: 3,000 settings, which PostgreSQL 15 keeps
            -- in a sorted array and sorts again at each new one)
            RETURNING r.*, CASE WHEN pg_catalog.current_setting(r.hint, true) <> ''
                                THEN pg_catalog.set_config(r.hint, '', true) END AS hint_reset)
        SELECT (SELECT pg_catalog.count(*) FROM f) AS new_final,
               (SELECT pg_catalog.count(*) FROM ll_new AS n WHERE ({{final_n}}) IS NOT TRUE) AS new_other,
               {{old_final}} AS old_final,
               pg_catalog.array_agg(u.prefix || '{SEQ}' || u.suffix ORDER BY u.prefix, u.suffix) AS series,
               pg_catalog.array_agg(u.base ORDER BY u.prefix, u.suffix) AS bases,
               pg_catalog.array_agg(u.cnt ORDER BY u.prefix, u.suffix) AS cnts,
               pg_catalog.array_agg(u.distinct_cnt ORDER BY u.prefix, u.suffix) AS distinct_cnts,
               pg_catalog.array_agg(u.lo ORDER BY u.prefix, u.suffix) AS los,
               pg_catalog.array_agg(u.hi ORDER BY u.prefix, u.suffix) AS his,
               pg_catalog.bool_or(u.open_kind = 'both') AS mixed
        FROM u INTO ll_got$q$, v)
$fn$;
REVOKE ALL ON FUNCTION ledgerlock._ll40_settle_query(jsonb) FROM PUBLIC;

-- The settle step's look at the first row of a statement that may have made rows final, one read of the
-- transition tables into ll_written, ll_became_final, ll_num, ll_prefix and ll_suffix: how many rows the
-- statement wrote (0, 1, or 2 for more), whether its first row became final when it is the only one (final now
-- and, for an UPDATE, no row final before: the extra value old_none; false for more rows), and that row's
-- number and series (its date and scope are read only then: either may be read from a parent row).
CREATE OR REPLACE FUNCTION ledgerlock._ll40_settle_first_row(v jsonb)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT ledgerlock._template($q$
        SELECT x.written, x.became_final, x.num, ll_v.prefix, ll_v.suffix
        INTO ll_written, ll_became_final, ll_num, ll_prefix, ll_suffix
        FROM ll_new AS n
        CROSS JOIN LATERAL (SELECT (SELECT pg_catalog.count(*) FROM (SELECT FROM ll_new LIMIT 2) AS two) AS written) AS w
        -- whether the row became final matters only when it is the one row written: a statement of more rows
        -- does not read every old row to find out (the test is left to right, and stops at a false one)
        CROSS JOIN LATERAL (SELECT w.written,
                                   w.written = 1 AND ({{final_n}}) IS TRUE AND {{old_none}} AS became_final,
                                   (n.{{number_column|I}})::text AS num) AS x
        -- the series of the row, as in _ll40_settle_query
        CROSS JOIN LATERAL (SELECT ({{prefix_n}}) COLLATE "C" AS prefix, ({{suffix_n}}) COLLATE "C" AS suffix
                            FROM (SELECT CASE WHEN x.became_final THEN {{date_n}} END AS ll_d,
                                         CASE WHEN x.became_final THEN {{scope_n}} END AS ll_scope) AS ll_p) AS ll_v
        LIMIT 1$q$, v)
$fn$;
REVOKE ALL ON FUNCTION ledgerlock._ll40_settle_first_row(jsonb) FROM PUBLIC;

-- AFTER INSERT/UPDATE, once per statement, with the statement's rows as transition tables ll_new (and
-- ll_old): checks the numbers the statement handed out and closes its ranges. The checks come after the
-- query: refusing raises an error, which undoes the closing together with the statement. Extra values:
-- insert_first_row and update_first_row (_ll40_settle_first_row), digits_of_last (the counter's last value
-- as ll_40 writes it), insert_query and update_query (_ll40_settle_query with old_final 0 and counted).
CREATE OR REPLACE FUNCTION ledgerlock._ll40_settle_body(v jsonb)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT ledgerlock._template($ll$
DECLARE
    -- (no initializers: PL/pgSQL prepares each again in every transaction, and most statements leave at 0.)
    ll_kind text;
    ll_written bigint;
    ll_became_final boolean;
    ll_num text;
    ll_prefix text;
    ll_suffix text;
    ll_got record;
    ll_left_final bigint;
    ll_newly_final bigint;
    ll_numbered bigint;
    ll_problem text;
    ll_i integer;
    ll_refused text;  -- refusals are called as expressions: see ledgerlock._refuse
BEGIN
    {{rel_check}}
    -- 0. Nothing to settle, the common case (drafts, edits of drafts, final rows marked paid): no row of the
    --    statement became final and no range of the table is open. Both facts come from state a client cannot
    --    touch. No row became final when none is final now, or, for an UPDATE, when every row was final
    --    before (then the rows that are final now are at most the rows that were: the full checks below
    --    would count no row newly final). The statement's rows are looked at first: a statement that made
    --    a row final goes on without reading the counters, which are as many as the table has series. (One
    --    small query: such a statement leaves after it.) And no range is open when the transaction has
    --    updated no counter: then the counters are not read either (see none_open in _ll40_settle_body).
    IF TG_OP = 'INSERT' THEN
        IF NOT EXISTS (SELECT FROM ll_new AS n WHERE ({{final_n}}) IS TRUE) AND {{none_open}} THEN
            RETURN NULL;
        END IF;
    ELSIF (NOT EXISTS (SELECT FROM ll_new AS n WHERE ({{final_n}}) IS TRUE)
           OR NOT EXISTS (SELECT FROM ll_old AS o WHERE ({{final_o}}) IS NOT TRUE))
          AND {{none_open}} THEN
        RETURN NULL;
    END IF;
    ll_kind := pg_catalog.lower(TG_OP);
    ll_left_final := 0;
    ll_numbered := 0;
    -- The statement's first row: did the one row it wrote become final?
    IF TG_OP = 'INSERT' THEN
        {{insert_first_row}};
    ELSE
        {{update_first_row}};
    END IF;
    IF ll_written = 1 AND ll_became_final THEN
        -- 0a. The one row written became final, the common finalization: proven and closed in one UPDATE of
        --     the counter of the series of the row's own date and scope (found by its key), when that counter
        --     has a range open for this kind of write holding exactly one number and the row carries that
        --     number as ll_40 writes it. That is what the full query and checks prove for the range, from the
        --     same state a client cannot touch (the full checks also accept the number's digits written
        --     another way, so a row this misses goes on to them). Other ranges of the table are not looked
        --     at: a one-row statement opens at most one range, in the series it numbered the row in, so
        --     another open range was opened by an enclosing statement (a trigger's write nested in it), whose
        --     own settle step proves it afterwards; a row moved to another series after ll_40 carries a
        --     number of the first series, which the second series' counter does not match. When any of it
        --     does not hold, nothing is closed and the full query and checks run. (The row trigger kept no
        --     position for a range of one number, so there is none to reset.)
        UPDATE ledgerlock.number_counter AS c
        SET open_from = NULL, open_kind = NULL
        WHERE c.tbl = {{tbl}} AND c.prefix = ll_prefix AND c.suffix = ll_suffix
          AND c.open_from IS NOT NULL AND c.open_kind = ll_kind AND c.last_value = c.open_from + 1
          AND ll_num COLLATE "C" = ll_prefix || {{digits_of_last}} || ll_suffix;
        IF FOUND THEN
            RETURN NULL;
        END IF;
    END IF;
    -- 1. What the statement did: from the transition tables and the counters alone (see above).
    IF TG_OP = 'INSERT' THEN
        {{insert_query}};
    ELSE
        {{update_query}};
        -- rows that stopped being final (a final_when over a mutable column, registered before protect refused
        -- one), looked for when the statement wrote final rows and others (marking a company's invoices
        -- reconciled, final and draft alike): the old and new rows paired by position, as PostgreSQL appends
        -- them, two arrays of booleans zipped; a join of the two transition tables would be planned once per
        -- session, for the rows of its first statement, and pair a later bulk statement in N x N steps
        IF ll_got.old_final > 0 AND ll_got.new_other > 0 THEN
            SELECT pg_catalog.count(*) INTO ll_left_final
            FROM ROWS FROM (pg_catalog.unnest(ARRAY(SELECT ({{final_o}}) IS TRUE FROM ll_old AS o)),
                            pg_catalog.unnest(ARRAY(SELECT ({{final_n}}) IS NOT TRUE FROM ll_new AS n))) AS p(was, isnt)
            WHERE p.was AND p.isnt;
        END IF;
    END IF;
    ll_newly_final := ll_got.new_final - ll_got.old_final + ll_left_final;

    -- 2. The ranges this statement opened (for this kind of write), now closed: prove them.
    IF ll_got.mixed THEN
        -- (the INSERT and UPDATE events of one query share one settle step: an upsert, a MERGE, a query whose
        -- WITH clauses insert and update, or an UPDATE that moves a row it makes final to another partition,
        -- which PostgreSQL runs as an update of the old partition's row and an insert into the new one)
        ll_refused := ledgerlock._refuse('LL009', pg_catalog.format(
            'one statement on %s made rows final both by inserting and by updating them (an INSERT ... ON '
            'CONFLICT DO UPDATE, a MERGE, a query whose WITH clauses insert and update, or an UPDATE that moves '
            'rows to another partition); ledgerlock cannot prove their final numbers gapless', {{tbl}}),
            'make rows final by inserting them in one statement and by updating them in another, or insert them '
            'as drafts and make them final with an UPDATE; give a draft its new date (its partition) in one '
            'UPDATE and make it final in the next');
    END IF;
    IF ll_got.series IS NULL THEN
        IF ll_newly_final > 0 THEN
            ll_refused := ledgerlock._refuse_numbering({{tbl}}, ll_newly_final, 0, 'no numbers were taken from a counter');
        END IF;
        RETURN NULL;
    END IF;
    FOR ll_i IN 1 .. pg_catalog.cardinality(ll_got.series) LOOP
        IF ll_got.cnts[ll_i] <> ll_got.distinct_cnts[ll_i] THEN
            ll_problem := pg_catalog.format('series %s: a number was handed out twice', ll_got.series[ll_i]);
        ELSIF ll_got.cnts[ll_i] > 0 AND (ll_got.los[ll_i] <> ll_got.bases[ll_i] + 1
                                        OR ll_got.his[ll_i] <> ll_got.bases[ll_i] + ll_got.cnts[ll_i]) THEN
            ll_problem := pg_catalog.format('series %s: the numbers handed out (%s to %s, %s rows) leave a hole after %s',
                                            ll_got.series[ll_i], ll_got.los[ll_i], ll_got.his[ll_i],
                                            ll_got.cnts[ll_i], ll_got.bases[ll_i]);
        END IF;
        IF ll_problem IS NOT NULL THEN
            ll_refused := ledgerlock._refuse_numbering({{tbl}}, ll_newly_final, ll_numbered, ll_problem);
        END IF;
        ll_numbered := ll_numbered + ll_got.cnts[ll_i];
    END LOOP;
    IF ll_numbered <> ll_newly_final THEN
        ll_refused := ledgerlock._refuse_numbering({{tbl}}, ll_newly_final, ll_numbered,
                                             'some final rows carry numbers that were not taken in this statement');
    END IF;
    RETURN NULL;
END
$ll$, v || pg_catalog.jsonb_build_object('none_open', ledgerlock._template(
    -- No range of the table is open. Opening one updates its counter in this transaction, and PostgreSQL
    -- counts the rows a transaction updates in each table, in the backend, where no client can lower the
    -- count (pg_stat_get_xact_tuples_updated: this transaction's updates, rolled-back subtransactions
    -- included, plus the session's earlier ones until they are reported, about a second later; more is only
    -- a read of the counters for nothing). A transaction that updated no counter holds no open range, and
    -- the table's counters, as many as it has series, are not read. That count is kept only while
    -- track_counts is on (a superuser's setting); when it is off, the counters are read.
    $q$(pg_catalog.pg_stat_get_xact_tuples_updated('ledgerlock.number_counter'::regclass) = 0
            AND pg_catalog.current_setting('track_counts') = 'on'
           OR NOT EXISTS (SELECT FROM ledgerlock.number_counter c WHERE c.tbl = {{tbl}} AND c.open_from IS NOT NULL))$q$,
    v)))
$fn$;
REVOKE ALL ON FUNCTION ledgerlock._ll40_settle_body(jsonb) FROM PUBLIC;

-- (Re)generate the three trigger functions of a numbered table from its configuration and draft format.
CREATE OR REPLACE FUNCTION ledgerlock._ll40_generate_functions(tbl regclass, draft_format text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cfg ledgerlock.protected_table := ledgerlock._config(tbl);
    v jsonb := ledgerlock._ll40_values(tbl);
    fmt record;
BEGIN
    fmt := ledgerlock._number_format_parts(cfg.number_format, 'number_format', cfg.scope_column IS NOT NULL);
    PERFORM ledgerlock._create_generated_function(ledgerlock._generated_name(tbl, 'll40', 'final'),
        ledgerlock._ll40_final_body(v || pg_catalog.jsonb_build_object(
            'date_step', CASE WHEN fmt.uses_date THEN ledgerlock._template(
                'll_d := {{date_of}}; IF ll_d IS NULL OR NOT pg_catalog.isfinite(ll_d) THEN '
                'll_refused := ledgerlock._refuse_unnumberable({{tbl}}, ledgerlock._audit_row_image(NEW), '
                '{{date_column|L}}, ''date''); END IF;', v) ELSE '' END,
            'scope_step', CASE WHEN fmt.uses_scope THEN ledgerlock._template(
                'll_scope := {{scope_of}}; IF ll_scope IS NULL THEN '
                'll_refused := ledgerlock._refuse_unnumberable({{tbl}}, ledgerlock._audit_row_image(NEW), '
                '{{scope_column|L}}, ''scope''); END IF;', v) ELSE '' END,
            'prefix', ledgerlock._number_part_sql(fmt.prefix_format, false),
            'suffix', ledgerlock._number_part_sql(fmt.suffix_format, false),
            'digits_of_pos', ledgerlock._number_digits_sql('ll_pos::text', fmt.pad))));

    -- the settle step reads each final row back into the series of its own date and scope: the digits
    -- between the prefix and the suffix of that series (NULL when the number does not have them)
    -- (a format without {SCOPE} never reads the scope column, which may be a path through a parent)
    v := v || pg_catalog.jsonb_build_object(
        'date_n', CASE WHEN fmt.uses_date THEN v ->> 'date_n' ELSE 'NULL::date' END,
        'scope_n', CASE WHEN fmt.uses_scope THEN v ->> 'scope_n' ELSE 'NULL::text' END,
        'prefix_n', ledgerlock._number_part_sql(fmt.prefix_format, false),
        'suffix_n', ledgerlock._number_part_sql(fmt.suffix_format, false),
        'digits_of_last', ledgerlock._number_digits_sql('c.last_value::text', fmt.pad),
        'digits_of_x', CASE WHEN fmt.suffix_format = ''
            THEN 'CASE WHEN pg_catalog.starts_with(x.num, x.prefix) '
                 'THEN pg_catalog.substr(x.num, pg_catalog.length(x.prefix) + 1) END'
            ELSE 'CASE WHEN pg_catalog.starts_with(x.num, x.prefix) '
                 'AND pg_catalog."right"(x.num, pg_catalog.length(x.suffix)) = x.suffix '
                 'AND pg_catalog.length(x.num) > pg_catalog.length(x.prefix) + pg_catalog.length(x.suffix) '
                 'THEN pg_catalog.substr(x.num, pg_catalog.length(x.prefix) + 1, pg_catalog.length(x.num) '
                 '- pg_catalog.length(x.prefix) - pg_catalog.length(x.suffix)) END' END);

    fmt := ledgerlock._number_format_parts(draft_format, 'draft_format', cfg.scope_column IS NOT NULL);
    PERFORM ledgerlock._create_generated_function(ledgerlock._generated_name(tbl, 'll40', 'draft'),
        ledgerlock._ll40_draft_body(v || pg_catalog.jsonb_build_object(
            'date_step', CASE WHEN fmt.uses_date THEN ledgerlock._template('ll_d := {{date_of}};', v) ELSE '' END,
            'scope_step', CASE WHEN fmt.uses_scope THEN ledgerlock._template('ll_scope := {{scope_of}};', v) ELSE '' END,
            'prefix', ledgerlock._number_part_sql(fmt.prefix_format, true),
            'suffix', ledgerlock._number_part_sql(fmt.suffix_format, true),
            'digits_of_seq', ledgerlock._number_digits_sql('ll_seq', fmt.pad))));

    PERFORM ledgerlock._create_generated_function(ledgerlock._generated_name(tbl, 'll40', 'settle'),
        ledgerlock._ll40_settle_body(v || pg_catalog.jsonb_build_object(
            'insert_first_row', ledgerlock._ll40_settle_first_row(v || '{"old_none": "true"}'),
            'update_first_row', ledgerlock._ll40_settle_first_row(v || pg_catalog.jsonb_build_object('old_none',
                ledgerlock._template('NOT EXISTS (SELECT FROM ll_old AS o WHERE ({{final_o}}) IS TRUE)', v))),
            'insert_query', ledgerlock._ll40_settle_query(v || '{"old_final": "0::bigint"}'),
            'update_query', ledgerlock._ll40_settle_query(v || pg_catalog.jsonb_build_object('old_final',
                ledgerlock._template('(SELECT pg_catalog.count(*) FROM ll_old AS o WHERE ({{final_o}}) IS TRUE)', v))))));
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._ll40_generate_functions(regclass, text) FROM PUBLIC;

-- Drop the generated functions of a table (its triggers are dropped first), and those no trigger runs any
-- more: generated for a name the table no longer has, or for a table since unprotected.
CREATE OR REPLACE FUNCTION ledgerlock._ll40_drop_functions(tbl regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on  -- its literals hold backslashes
AS $$
BEGIN
    PERFORM ledgerlock._drop_generated_functions(ARRAY(
        SELECT ledgerlock._generated_name(tbl, 'll40', part) FROM pg_catalog.unnest(ARRAY['final', 'draft', 'settle']) part
        WHERE tbl IS NOT NULL
        UNION
        SELECT p.proname FROM pg_catalog.pg_proc p
        WHERE p.pronamespace = 'ledgerlock'::regnamespace AND pg_catalog.starts_with(p.proname, '_ll40_t')
          AND p.proname LIKE ANY (ARRAY['%\_final', '%\_draft', '%\_settle'])
          AND NOT EXISTS (SELECT FROM pg_catalog.pg_trigger t WHERE t.tgfoid = p.oid)));
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._ll40_drop_functions(regclass) FROM PUBLIC;

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
    new_final text := ledgerlock._final_condition(tbl, 'NEW');
    old_final text := ledgerlock._final_condition(tbl, 'OLD');
    rel regclass;
BEGIN
    PERFORM ledgerlock._drop_guard_triggers(tbl, 'll_40_');  -- settle triggers sit on every partition
    IF cfg.number_format IS NULL THEN
        PERFORM ledgerlock._ll40_drop_functions(tbl);
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
    PERFORM ledgerlock._column_type(tbl, cfg.date_column, 'date_column');  -- a clear error when it is gone

    IF NOT EXISTS (SELECT FROM ledgerlock.number_format_history h
                   WHERE h.tbl = _install_40_numbering.tbl
                     AND h.id = (SELECT max(h2.id) FROM ledgerlock.number_format_history h2
                                 WHERE h2.tbl = _install_40_numbering.tbl)
                     AND h.number_format = cfg.number_format AND h.draft_format = draft) THEN
        INSERT INTO ledgerlock.number_format_history (tbl, number_format, draft_format)
        VALUES (tbl, cfg.number_format, draft);
    END IF;

    PERFORM ledgerlock._ll40_generate_functions(tbl, draft);
    PERFORM ledgerlock._create_guard_trigger(tbl, 'll_40_final_number_insert', pg_catalog.format(
        'BEFORE INSERT ON %s FOR EACH ROW WHEN ((%s) IS TRUE) EXECUTE FUNCTION ledgerlock.%I()',
        tbl, new_final, ledgerlock._generated_name(tbl, 'll40', 'final')));
    PERFORM ledgerlock._create_guard_trigger(tbl, 'll_40_final_number_update', pg_catalog.format(
        'BEFORE UPDATE ON %s FOR EACH ROW WHEN ((%s) IS TRUE AND (%s) IS NOT TRUE) EXECUTE FUNCTION ledgerlock.%I()',
        tbl, new_final, old_final, ledgerlock._generated_name(tbl, 'll40', 'final')));
    PERFORM ledgerlock._create_guard_trigger(tbl, 'll_40_draft_number', pg_catalog.format(
        'BEFORE INSERT ON %s FOR EACH ROW WHEN ((%s) IS NOT TRUE AND coalesce(NEW.%I::text, '''') = '''') '
        'EXECUTE FUNCTION ledgerlock.%I()', tbl, new_final, cfg.number_column, ledgerlock._generated_name(tbl, 'll40', 'draft')));
    -- Statement triggers are not passed on to partitions, and a statement on a partition fires only the
    -- partition's: every relation of the tree settles the statements run on it. New partitions get theirs
    -- from the DDL guard or ledgerlock.reinstall_guards(), like the TRUNCATE guard.
    FOR rel IN SELECT p.relid FROM ledgerlock._partition_tree(tbl) p LOOP
        PERFORM ledgerlock._create_guard_trigger(rel, 'll_40_settle_insert', pg_catalog.format(
            'AFTER INSERT ON %s REFERENCING NEW TABLE AS ll_new FOR EACH STATEMENT EXECUTE FUNCTION ledgerlock.%I()',
            rel, ledgerlock._generated_name(tbl, 'll40', 'settle')));
        PERFORM ledgerlock._create_guard_trigger(rel, 'll_40_settle_update', pg_catalog.format(
            'AFTER UPDATE ON %s REFERENCING OLD TABLE AS ll_old NEW TABLE AS ll_new FOR EACH STATEMENT '
            'EXECUTE FUNCTION ledgerlock.%I()', rel, ledgerlock._generated_name(tbl, 'll40', 'settle')));
    END LOOP;
    PERFORM ledgerlock._ll40_drop_functions(NULL);  -- those no trigger runs any more (the table's old name)
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
    PERFORM ledgerlock._drop_guard_triggers(tbl, 'll_40_');  -- settle triggers sit on every partition
    PERFORM ledgerlock._ll40_drop_functions(tbl);
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._uninstall_40_numbering(regclass) FROM PUBLIC;
