-- Rule R2: gapless final numbering - formats, set_number_format, number_gaps.
-- The triggers that hand out numbers, and the installer, are in sql/triggers/r2_numbering_guard.sql.
--
-- A format is text with tokens: {SEQ} or {SEQ:5} (the sequence number, zero-padded to 5 digits), {YYYY},
-- {YY}, {MM} (from the row's date column, never from the clock) and {SCOPE} (the row's scope column). It is
-- split at {SEQ} into a prefix and a suffix format; rendered for a row they name the series:
-- 'INV-{YYYY}-{SEQ:5}' gives the series 'INV-2026-{SEQ}', so numbering restarts every year.

-- Validate a format and split it at {SEQ}. Refuses (22023) a format without exactly one {SEQ}, with an
-- unknown token or a stray brace, or with {SCOPE} right next to {SEQ} (the number could not be read back).
CREATE OR REPLACE FUNCTION ledgerlock._number_format_parts(
    fmt text, parameter text, has_scope boolean,
    OUT prefix_format text, OUT suffix_format text, OUT pad integer, OUT uses_date boolean,
    OUT uses_scope boolean)
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on  -- its literals hold backslashes
AS $$
DECLARE
    tok text;
    seq_tokens text[];
    rest text;
BEGIN
    IF fmt IS NULL OR pg_catalog.btrim(fmt) = '' THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('%s must not be empty', parameter),
            HINT = 'write a format such as INV-{YYYY}-{SEQ:5}';
    END IF;
    FOR tok IN SELECT m[1] FROM pg_catalog.regexp_matches(fmt, '\{([^{}]*)\}', 'g') AS m LOOP
        IF tok !~ '^(SEQ(:[0-9]{1,2})?|YYYY|YY|MM|SCOPE)$' THEN
            RAISE EXCEPTION USING ERRCODE = '22023',
                MESSAGE = pg_catalog.format('%s %L has an unknown token {%s}', parameter, fmt, tok),
                HINT = 'the tokens are {SEQ} or {SEQ:n}, {YYYY}, {YY}, {MM} and {SCOPE}';
        END IF;
    END LOOP;
    rest := pg_catalog.regexp_replace(fmt, '\{(SEQ(:[0-9]{1,2})?|YYYY|YY|MM|SCOPE)\}', '', 'g');
    IF pg_catalog.strpos(rest, '{') > 0 OR pg_catalog.strpos(rest, '}') > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('%s %L has a brace that opens no token', parameter, fmt),
            HINT = 'the tokens are {SEQ} or {SEQ:n}, {YYYY}, {YY}, {MM} and {SCOPE}; other text is copied as is';
    END IF;
    seq_tokens := ARRAY(SELECT m[1] FROM pg_catalog.regexp_matches(fmt, '\{SEQ(?::([0-9]{1,2}))?\}', 'g') AS m);
    IF pg_catalog.cardinality(seq_tokens) <> 1 THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('%s %L must contain {SEQ} exactly once (it has it %s times)', parameter, fmt,
                                        pg_catalog.cardinality(seq_tokens)),
            HINT = 'the format rendered without {SEQ} is the series; {SEQ} is the number within it';
    END IF;
    pad := coalesce(seq_tokens[1]::integer, 1);
    IF pad NOT BETWEEN 1 AND 18 THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('%s %L: {SEQ:%s} pads to between 1 and 18 digits', parameter, fmt, pad);
    END IF;
    IF fmt ~ '\{SCOPE\}\{SEQ' OR fmt ~ '\{SEQ(:[0-9]{1,2})?\}\{SCOPE\}' THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('%s %L puts {SCOPE} right next to {SEQ}', parameter, fmt),
            HINT = 'separate them, e.g. {SCOPE}-{SEQ}, so that a number can be read back into its series';
    END IF;
    uses_scope := pg_catalog.strpos(fmt, '{SCOPE}') > 0;
    IF uses_scope AND NOT has_scope THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('%s %L uses {SCOPE}, but the table has no scope_column', parameter, fmt);
    END IF;
    uses_date := fmt ~ '\{(YYYY|YY|MM)\}';
    prefix_format := pg_catalog.split_part(pg_catalog.regexp_replace(fmt, '\{SEQ(:[0-9]{1,2})?\}', E'\x01'),
                                           E'\x01', 1);
    suffix_format := pg_catalog.split_part(pg_catalog.regexp_replace(fmt, '\{SEQ(:[0-9]{1,2})?\}', E'\x01'),
                                           E'\x01', 2);
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._number_format_parts(text, text, boolean) FROM PUBLIC;

-- Change a table's final number format (and optionally its temporary-number format). Only numbers handed
-- out from now on follow it: numbers already given stay as they are. A format whose series (the text around
-- {SEQ}) is unchanged continues its counter (a new padding, say); a new series starts at 1.
CREATE OR REPLACE FUNCTION ledgerlock.set_number_format(tbl regclass, format text, draft_format text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
AS $$
DECLARE
    cfg ledgerlock.protected_table;
    before jsonb;
BEGIN
    PERFORM ledgerlock._require_capability('admin', 'set_number_format');
    PERFORM ledgerlock._require_value(tbl IS NOT NULL, 'set_number_format', 'a table');
    PERFORM ledgerlock._require_unrestricted('set_number_format');
    IF format IS NULL OR pg_catalog.btrim(format) = '' THEN
        -- numbering off is a weakening: protect(..., number_column => NULL, weaken_reason => ...) says so
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('set_number_format: the format must not be empty (numbering of %s stays on)',
                                        tbl),
            HINT = 'give a format such as INV-{YYYY}-{SEQ:5}; numbering is turned off only by protect without '
                   'number_column, with a weaken_reason';
    END IF;
    cfg := ledgerlock._config(tbl);
    IF cfg.number_column IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('set_number_format: %s has no number_column', tbl),
            HINT = 'protect the table again with number_column => ... and number_format => ...';
    END IF;
    before := pg_catalog.jsonb_build_object('number_format', cfg.number_format, 'draft_format',
        (SELECT s.draft_format FROM ledgerlock.number_setting s WHERE s.tbl = set_number_format.tbl));
    UPDATE ledgerlock.protected_table p SET number_format = set_number_format.format
    WHERE p.tbl = set_number_format.tbl;
    IF draft_format IS NOT NULL THEN
        INSERT INTO ledgerlock.number_setting AS s (tbl, draft_format) VALUES (tbl, draft_format)
        ON CONFLICT ON CONSTRAINT number_setting_pkey DO UPDATE SET draft_format = EXCLUDED.draft_format;
    END IF;
    PERFORM ledgerlock._install_40_numbering(tbl);  -- validates both formats and reinstalls the triggers
    PERFORM ledgerlock._audit_event('NUMBER_FORMAT', tbl, NULL, NULL, before,
        pg_catalog.jsonb_build_object('number_format', format, 'draft_format',
            (SELECT s.draft_format FROM ledgerlock.number_setting s WHERE s.tbl = set_number_format.tbl)), NULL);
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.set_number_format(regclass, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.set_number_format(regclass, text, text)
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

-- Whether the session user may see a series of tbl (prefix, suffix: its counter's). A scope-limited role
-- (grant_scope) sees the series its scopes have: a format with {SCOPE} gives each company a series of its
-- own, whose counter says how many invoices that company finalized, and the trail's row-level security hides
-- the other companies' events from such a role (until 2026-11-30 number_series and number_gaps showed it
-- every company's). A series no {SCOPE} format of the table renders is shared by every scope, and shown.
-- limited: ledgerlock._granted_scopes(), read once by the caller (null: a role of every scope, shown all).
CREATE OR REPLACE FUNCTION ledgerlock._series_visible(tbl regclass, prefix text, suffix text, limited text[])
RETURNS boolean
LANGUAGE plpgsql
STABLE
SECURITY DEFINER  -- reads the table's formats whoever asks (the number_series view calls it as its reader)
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
SET standard_conforming_strings = on  -- its literals hold backslashes
AS $$
DECLARE
    fmt text;
    parts record;
BEGIN
    IF limited IS NULL THEN
        RETURN true;
    END IF;
    FOR fmt IN SELECT x.f FROM (SELECT h.number_format AS f FROM ledgerlock.number_format_history h
                                WHERE h.tbl = _series_visible.tbl
                                UNION
                                SELECT p.number_format FROM ledgerlock.protected_table p
                                WHERE p.tbl = _series_visible.tbl) x
               WHERE pg_catalog.strpos(x.f, '{SCOPE}') > 0 LOOP
        parts := ledgerlock._number_format_parts(fmt, 'number_format', true);
        IF prefix ~ ledgerlock._series_pattern(parts.prefix_format, NULL::text[])
           AND suffix ~ ledgerlock._series_pattern(parts.suffix_format, NULL::text[]) THEN
            -- a series of this scoped format: shown when it is one of the role's scopes'
            RETURN prefix ~ ledgerlock._series_pattern(parts.prefix_format, limited)
                   AND suffix ~ ledgerlock._series_pattern(parts.suffix_format, limited);
        END IF;
    END LOOP;
    RETURN true;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._series_visible(regclass, text, text, text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._series_visible(regclass, text, text, text[])
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;  -- the number_series view

-- A part of a format around {SEQ} (ledgerlock._number_format_parts) as an anchored regular expression: its
-- text as is, a date token as the digits to_char writes for it (4 for {YYYY}, 2 for {YY} and {MM}: fixed
-- widths, so that {SCOPE}{YYYY} of scope 1 cannot read as scope 12's), {SCOPE} as one of scopes (null: any).
CREATE OR REPLACE FUNCTION ledgerlock._series_pattern(part text, scopes text[])
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on  -- its literals hold backslashes
AS $$
    WITH meta(re) AS (SELECT '([.^$*+?()\[\]{}|\\-])')  -- what a literal must escape
    SELECT '^' || pg_catalog.replace(
                      pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(
                          pg_catalog.regexp_replace(part, meta.re, '\\\1', 'g'),
                          '\{YYYY\}', '[0-9]{4}'), '\{YY\}', '[0-9]{2}'), '\{MM\}', '[0-9]{2}'),
                      '\{SCOPE\}',
                      CASE WHEN scopes IS NULL THEN '.*'
                           ELSE '(?:' || coalesce((SELECT pg_catalog.string_agg(
                                                              pg_catalog.regexp_replace(g, meta.re, '\\\1', 'g'), '|')
                                                   FROM pg_catalog.unnest(scopes) AS g), 'a^') || ')' END) || '$'
    FROM meta
$$;
REVOKE ALL ON FUNCTION ledgerlock._series_pattern(text, text[]) FROM PUBLIC;

-- Gaps and duplicates in the final numbers, per series; empty when every series runs 1..last without a
-- hole or a repeat. Read in one snapshot (STABLE), so a concurrent finalization is either wholly in or out.
--   gap        numbers first..last are carried by no final row (last = the counter: taken but not present)
--   duplicate  number first is carried by several final rows (detail names them)
--   ahead      final rows carry numbers first..last beyond the counter, which would hand them out again
-- Final rows whose number belongs to no series of the table (numbers from before numbering) are not read.
CREATE OR REPLACE FUNCTION ledgerlock.number_gaps(tbl regclass DEFAULT NULL)
RETURNS TABLE(table_name regclass, series text, kind text, first_number bigint, last_number bigint, detail text)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
AS $$
DECLARE
    cfg ledgerlock.protected_table;
    key_expr text;
    limited text[] := ledgerlock._granted_scopes();  -- a scope-limited role sees its scopes' series
BEGIN
    IF NOT (ledgerlock.has_capability('auditor') OR ledgerlock.has_capability('controller')) THEN
        PERFORM ledgerlock._require_capability('auditor', 'number_gaps');
    END IF;
    FOR cfg IN
        SELECT * FROM ledgerlock.protected_table p
        WHERE (number_gaps.tbl IS NULL OR p.tbl = number_gaps.tbl)
          AND ledgerlock._relation_exists(p.tbl)  -- a table dropped while protected: verify_audit and doctor say so
          AND (p.number_format IS NOT NULL OR EXISTS (SELECT FROM ledgerlock.number_counter c WHERE c.tbl = p.tbl))
          AND p.number_column IS NOT NULL AND p.final_when_sql IS NOT NULL
        ORDER BY p.tbl::text
    LOOP
        SELECT 'pg_catalog.jsonb_build_object(' || pg_catalog.string_agg(pg_catalog.format('%L, t.%I', k, k), ', ')
               || ')' INTO key_expr
        FROM pg_catalog.unnest(cfg.key_columns) AS k;
        RETURN QUERY EXECUTE pg_catalog.format($q$
            WITH c AS (  -- the series the caller may see (ledgerlock._series_visible)
                SELECT c.prefix, c.suffix, c.last_value FROM ledgerlock.number_counter c
                WHERE c.tbl = $1 AND ($2 IS NULL OR ledgerlock._series_visible(c.tbl, c.prefix, c.suffix, $2))),
            lens AS (SELECT DISTINCT pg_catalog.length(c.prefix) AS pl FROM c),
            f AS (
                SELECT (t.%1$I)::text COLLATE "C" AS num, %2$s AS k FROM %3$s AS t
                WHERE (%4$s) IS TRUE AND t.%1$I IS NOT NULL),
            m AS (   -- each number read back into its series (the longest that fits) and its sequence number
                SELECT DISTINCT ON (f.num, f.k) c.prefix, c.suffix, c.last_value, f.num, f.k,
                       pg_catalog.substr(f.num, c.pl + 1,
                                         pg_catalog.length(f.num) - c.pl - pg_catalog.length(c.suffix)) AS digits
                FROM f CROSS JOIN lens
                JOIN (SELECT c.*, pg_catalog.length(c.prefix) AS pl FROM c) c
                  ON c.pl = lens.pl AND c.prefix = pg_catalog."left"(f.num, lens.pl)
                WHERE pg_catalog.length(f.num) > c.pl + pg_catalog.length(c.suffix)
                  AND pg_catalog."right"(f.num, pg_catalog.length(c.suffix)) = c.suffix
                ORDER BY f.num, f.k, pg_catalog.length(c.prefix) + pg_catalog.length(c.suffix) DESC),
            s AS (
                SELECT m.prefix || '{SEQ}' || m.suffix AS series, m.last_value, m.num, m.k,
                       m.digits::numeric AS seq
                FROM m WHERE m.digits ~ '^[0-9]+$'),
            present AS (SELECT DISTINCT s.series, s.seq FROM s),
            holes AS (
                SELECT p.series, p.prev + 1 AS first_seq, p.seq - 1 AS last_seq, false AS at_end
                FROM (SELECT present.*, coalesce(pg_catalog.lag(present.seq) OVER w, 0) AS prev
                      FROM present WINDOW w AS (PARTITION BY present.series ORDER BY present.seq)) p
                WHERE p.seq > p.prev + 1
                UNION ALL
                SELECT c.prefix || '{SEQ}' || c.suffix, coalesce(x.top, 0) + 1, c.last_value, true
                FROM c LEFT JOIN (SELECT present.series, max(present.seq) AS top FROM present
                                  GROUP BY present.series) x ON x.series = c.prefix || '{SEQ}' || c.suffix
                WHERE coalesce(x.top, 0) < c.last_value)
            SELECT $1, h.series, 'gap', h.first_seq::bigint, h.last_seq::bigint,
                   CASE WHEN h.first_seq = h.last_seq THEN pg_catalog.format('number %%s is missing', h.first_seq)
                        ELSE pg_catalog.format('numbers %%s to %%s are missing', h.first_seq, h.last_seq) END
                   || CASE WHEN h.at_end THEN ' (the counter has handed them out)' ELSE '' END
            FROM holes h
            UNION ALL
            SELECT $1, s.series, 'duplicate', s.seq::bigint, s.seq::bigint,
                   pg_catalog.format('number %%s is carried by %%s final rows: %%s', s.seq, pg_catalog.count(*),
                                     pg_catalog.string_agg(s.num || ' ' || s.k::text, ', ' ORDER BY s.k::text))
            FROM s GROUP BY s.series, s.seq HAVING pg_catalog.count(*) > 1
            UNION ALL
            SELECT $1, s.series, 'ahead', min(s.seq)::bigint, max(s.seq)::bigint,
                   pg_catalog.format('final rows carry numbers up to %%s, beyond the counter (%%s), which would '
                                     'hand them out again', max(s.seq), min(s.last_value))
            FROM s WHERE s.seq > s.last_value GROUP BY s.series
            ORDER BY 2, 4, 3
            $q$, cfg.number_column, key_expr, cfg.tbl, ledgerlock._condition_as(cfg.final_when_sql, 't'))
        USING cfg.tbl, limited;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.number_gaps(regclass) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.number_gaps(regclass)
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;
