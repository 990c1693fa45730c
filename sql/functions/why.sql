-- Explaining locks: ledgerlock.why_locked(tbl, key) answers "why will this row not change, and what is
-- the way back?" It gathers the rows of every why hook the rules list (ledgerlock._rules(): functions
-- (tbl regclass, key jsonb) RETURNS TABLE(rule text, summary text, details jsonb, way_back text)), in NN
-- order. A reason that exists because of another row (a payment referencing the invoice, the header of a
-- line) names that row in details->'because_of' = {"table": ..., "key": ...}; why_locked then explains that
-- row too, one level deeper, so the answer is the whole chain (invoice <- payment <- deposit <- reconciliation).

-- R1: the row is final. Since when and by whom come from the audit trail (R5); by whom only for the trail's
-- readers (ledgerlock._details_shown).
CREATE OR REPLACE FUNCTION ledgerlock._why_10_final(tbl regclass, key jsonb)
RETURNS TABLE(rule text, summary text, details jsonb, way_back text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    cfg ledgerlock.protected_table;
    r jsonb;
    is_final boolean;
    since timestamptz;
    by_user text;
    by_actor text;
    number text;
    shown boolean;
BEGIN
    SELECT * INTO cfg FROM ledgerlock.protected_table p WHERE p.tbl = _why_10_final.tbl;
    IF NOT FOUND OR cfg.final_when_sql IS NULL THEN
        RETURN;
    END IF;
    r := ledgerlock._ref_fetch(tbl, key);
    IF r IS NULL THEN
        RETURN;
    END IF;
    EXECUTE pg_catalog.format('SELECT (%s) FROM pg_catalog.jsonb_populate_record(NULL::%s, $1) AS ll_row',
                              cfg.final_when_sql, tbl) INTO is_final USING r;
    IF NOT coalesce(is_final, false) THEN
        RETURN;
    END IF;
    BEGIN  -- the last write that made the row final: among the row's events under every oid the trail files
           -- the table's name under (a restored dump's carry the old cluster's oid), through the (table_oid,
           -- row_key, seq) index
        EXECUTE pg_catalog.format(
            'SELECT a.at, a.db_user::text, a.actor FROM ledgerlock.audit_event a '
            'CROSS JOIN LATERAL pg_catalog.jsonb_populate_record(NULL::%1$s, a.new_row) AS ll_row '
            'CROSS JOIN LATERAL pg_catalog.jsonb_populate_record(NULL::%1$s, a.old_row) AS ll_old '
            'WHERE a.table_oid = ANY (ledgerlock._audit_table_oids($1::text)) AND a.table_name = $1::text '
            'AND a.row_key = $2 AND a.new_row IS NOT NULL AND coalesce((%2$s), false) '
            'AND (a.old_row IS NULL OR NOT coalesce((%3$s), false)) ORDER BY a.seq DESC LIMIT 1',
            tbl, cfg.final_when_sql, ledgerlock._condition_as(cfg.final_when_sql, 'll_old'))
            INTO since, by_user, by_actor USING tbl, ledgerlock.row_key(tbl, r);
    EXCEPTION WHEN undefined_column OR undefined_table OR datatype_mismatch THEN
        since := NULL;  -- an audit trail of another shape: say unknown rather than fail
    END;
    number := r ->> cfg.number_column::text;
    shown := ledgerlock._details_shown(ledgerlock._row_scope(tbl, r));  -- who did it: the trail's readers only
    rule := 'final';
    summary := pg_catalog.format('final (%s) since %s%s%s', cfg.final_when,
                                 coalesce(pg_catalog.to_char(since, 'YYYY-MM-DD HH24:MI:SS TZ'), 'an unknown time'),
                                 CASE WHEN shown THEN ' by ' || coalesce(by_user || coalesce(' for ' || by_actor, ''),
                                                                         'an unknown user') ELSE '' END,
                                 coalesce(', number ' || number, ''));
    details := pg_catalog.jsonb_build_object('final_when', cfg.final_when, 'since', since, 'number', number,
                                             'mutable_columns', cfg.mutable_columns)
               || CASE WHEN shown THEN pg_catalog.jsonb_build_object('by', by_user, 'actor', by_actor)
                       ELSE '{}' END;
    way_back := 'a final row is never unlocked: issue a correcting document (credit memo, amendment) instead'
                || CASE WHEN pg_catalog.cardinality(cfg.mutable_columns) > 0
                        THEN pg_catalog.format('; only %s may still change',
                                               pg_catalog.array_to_string(cfg.mutable_columns, ', '))
                        ELSE '' END;
    RETURN NEXT;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._why_10_final(regclass, jsonb) FROM PUBLIC;

-- R4: matching child rows reference the row (up to 20 per rule).
CREATE OR REPLACE FUNCTION ledgerlock._why_30_referenced(tbl regclass, key jsonb)
RETURNS TABLE(rule text, summary text, details jsonb, way_back text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    r jsonb := ledgerlock._ref_fetch(tbl, key);
    rr ledgerlock.reference_rule;
    c jsonb;
    readable boolean;
    label text;
BEGIN
    IF r IS NULL THEN
        RETURN;
    END IF;
    FOR rr IN SELECT * FROM ledgerlock.reference_rule x WHERE x.kind = 'referenced' AND x.parent = tbl ORDER BY x.id
    LOOP
        readable := ledgerlock._rows_readable(rr.child);
        FOR c IN SELECT * FROM ledgerlock._ref_referencing(rr.id, r, 20) LOOP
            label := ledgerlock._row_named(rr.child, c);
            rule := 'referenced';
            summary := pg_catalog.format('referenced by %s%s', label,
                CASE WHEN 'update' = ANY (rr.operations) THEN '' ELSE ' (it may change, not be deleted)' END);
            details := pg_catalog.jsonb_build_object(
                'rule_id', rr.id, 'child_table', rr.child::text, 'foreign_key', rr.fk_name,
                'child_condition', rr.child_condition, 'operations', rr.operations,
                'child_key', CASE WHEN readable THEN ledgerlock.row_key(rr.child, c) END,
                'because_of', CASE WHEN readable THEN pg_catalog.jsonb_build_object(
                    'table', rr.child::text, 'key', ledgerlock.row_key(rr.child, c)) END);
            way_back := pg_catalog.format('delete %s first', label)
                || CASE WHEN rr.child_condition IS NOT NULL
                        THEN pg_catalog.format(', or change it so that it no longer matches: %s', rr.child_condition)
                        ELSE '' END;
            RETURN NEXT;
        END LOOP;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._why_30_referenced(regclass, jsonb) FROM PUBLIC;

-- R4 lines: the row is a line of a header that is frozen (final, in a locked period, or referenced).
CREATE OR REPLACE FUNCTION ledgerlock._why_31_lines(tbl regclass, key jsonb)
RETURNS TABLE(rule text, summary text, details jsonb, way_back text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    line jsonb := ledgerlock._ref_fetch(tbl, key);
    rr ledgerlock.reference_rule;
    header jsonb;
    header_key jsonb;
    label text;
BEGIN
    IF line IS NULL THEN
        RETURN;
    END IF;
    FOR rr IN SELECT * FROM ledgerlock.reference_rule x WHERE x.kind = 'lines' AND x.child = tbl ORDER BY x.id LOOP
        header := ledgerlock._ref_fetch_by(rr.parent, rr.parent_columns,
            (SELECT pg_catalog.jsonb_object_agg(p, line -> c::text)
             FROM ROWS FROM (pg_catalog.unnest(rr.child_columns), pg_catalog.unnest(rr.parent_columns)) AS u(c, p)));
        CONTINUE WHEN header IS NULL OR NOT ledgerlock._ref_header_frozen(rr.parent, header);
        header_key := CASE WHEN ledgerlock._rows_readable(rr.parent) THEN ledgerlock.row_key(rr.parent, header) END;
        label := ledgerlock._row_named(rr.parent, header);
        rule := 'lines';
        summary := pg_catalog.format('a line of %s, which is frozen', label);
        details := pg_catalog.jsonb_build_object('rule_id', rr.id, 'header_table', rr.parent::text,
            'header_key', header_key,
            'because_of', CASE WHEN header_key IS NOT NULL
                               THEN pg_catalog.jsonb_build_object('table', rr.parent::text, 'key', header_key) END);
        way_back := pg_catalog.format('lines follow their header: %s must stop being frozen first', label);
        RETURN NEXT;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._why_31_lines(regclass, jsonb) FROM PUBLIC;

-- A row of tbl by the given columns (e.g. the referenced columns of a foreign key), as jsonb.
CREATE OR REPLACE FUNCTION ledgerlock._ref_fetch_by(tbl regclass, cols name[], vals jsonb)
RETURNS jsonb
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r jsonb;
BEGIN
    EXECUTE pg_catalog.format(
        'SELECT pg_catalog.to_jsonb(t.*) FROM pg_catalog.jsonb_populate_record(NULL::%s, $1) AS k JOIN %s AS t ON %s',
        tbl, tbl, ledgerlock._ref_match('t', cols, 'k', cols)) INTO r USING vals;
    RETURN r;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._ref_fetch_by(regclass, name[], jsonb) FROM PUBLIC;

-- Whether a header freezes its lines now: the same three tests the line guard makes.
CREATE OR REPLACE FUNCTION ledgerlock._ref_header_frozen(tbl regclass, header jsonb)
RETURNS boolean
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    final_sql text := (SELECT p.final_when_sql FROM ledgerlock.protected_table p WHERE p.tbl = _ref_header_frozen.tbl);
    yes boolean;
BEGIN
    IF final_sql IS NOT NULL THEN
        EXECUTE pg_catalog.format('SELECT coalesce((%s), false) FROM pg_catalog.jsonb_populate_record(NULL::%s, $1) '
                                  'AS ll_row', final_sql, tbl) INTO yes USING header;
        IF yes THEN
            RETURN true;
        END IF;
    END IF;
    -- R3: a window locking the header's date
    IF EXISTS (SELECT FROM ledgerlock.protected_table p WHERE p.tbl = _ref_header_frozen.tbl) THEN
        IF ledgerlock._locking_window(tbl, header) IS NOT NULL THEN
            RETURN true;
        END IF;
    END IF;
    RETURN EXISTS (SELECT FROM ledgerlock.reference_rule x
                   WHERE x.kind = 'referenced' AND x.parent = tbl AND 'update' = ANY (x.operations)
                     AND EXISTS (SELECT FROM ledgerlock._ref_referencing(x.id, header, 1)));
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._ref_header_frozen(regclass, jsonb) FROM PUBLIC;

-- One row and, depth first, the rows its reasons come from.
CREATE OR REPLACE FUNCTION ledgerlock._why_walk(tbl regclass, key jsonb, level integer, seen text[])
RETURNS TABLE(depth integer, table_name regclass, row_key jsonb, row_label text, rule text, summary text,
              details jsonb, way_back text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r jsonb := ledgerlock._ref_fetch(tbl, key);
    hook regprocedure;
    x record;
    nxt jsonb;
BEGIN
    IF r IS NULL THEN
        RETURN;
    END IF;
    FOR hook IN
        SELECT h.fn FROM ledgerlock._rules() r CROSS JOIN LATERAL pg_catalog.unnest(r.why) WITH ORDINALITY AS h(fn, i)
        -- a rule explains rows of protected tables, and of other tables too when it says so (R4)
        WHERE r.why_unprotected OR EXISTS (SELECT FROM ledgerlock.protected_table t WHERE t.tbl = _why_walk.tbl)
        ORDER BY r.nn, h.i
    LOOP
        FOR x IN EXECUTE pg_catalog.format('SELECT * FROM %s($1, $2)', hook::oid::regproc)
                 USING tbl, ledgerlock.row_key(tbl, r) LOOP
            depth := level;
            table_name := tbl;
            row_key := ledgerlock.row_key(tbl, r);
            row_label := ledgerlock.row_label(tbl, r);
            rule := x.rule;
            summary := x.summary;
            details := x.details;
            way_back := x.way_back;
            RETURN NEXT;
            nxt := x.details -> 'because_of';
            IF nxt IS NOT NULL AND pg_catalog.jsonb_typeof(nxt) = 'object' AND level < 10
               AND NOT (nxt::text = ANY (seen))
               AND ledgerlock._rows_readable((nxt ->> 'table')::regclass) THEN
                RETURN QUERY SELECT * FROM ledgerlock._why_walk((nxt ->> 'table')::regclass, nxt -> 'key', level + 1,
                                                                 seen || nxt::text);
            END IF;
        END LOOP;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._why_walk(regclass, jsonb, integer, text[]) FROM PUBLIC;

-- Every reason the row is frozen now, as a tree in depth-first order (depth 0: the row itself; depth 1:
-- the rows those reasons come from; ...). No row means the row can be changed. Anyone may ask about a
-- table they may read.
CREATE OR REPLACE FUNCTION ledgerlock.why_locked(tbl regclass, key jsonb)
RETURNS TABLE(depth integer, table_name regclass, row_key jsonb, row_label text, rule text, summary text,
              details jsonb, way_back text)
LANGUAGE plpgsql
SECURITY DEFINER  -- reads ledgerlock's rules and audit trail, which clients cannot
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
-- it probes the user's tables as the guards do, so under what they pin (ledgerlock._row_reading_settings()):
-- a GIN scan under a gin_fuzzy_search_limit found no referencing row, and why_locked said nothing held it
SET gin_fuzzy_search_limit = 0
SET extra_float_digits = 1
AS $$
DECLARE
    r jsonb;
BEGIN
    PERFORM ledgerlock._require_value(tbl IS NOT NULL AND key IS NOT NULL, 'why_locked', 'a table and a row''s key');
    IF NOT pg_catalog.has_table_privilege(session_user, tbl, 'SELECT') THEN
        RAISE EXCEPTION USING ERRCODE = '42501',
            MESSAGE = pg_catalog.format('permission denied: %s may not read %s', session_user, tbl);
    ELSIF NOT ledgerlock._rows_readable(tbl) THEN
        RAISE EXCEPTION USING ERRCODE = '42501',
            MESSAGE = pg_catalog.format('permission denied: row-level security on %s applies to %s, and why_locked '
                                        'reads rows as ledgerlock''s checks do, every one of them', tbl, session_user),
            HINT = 'ask a role the table''s policies do not restrict (its owner, a BYPASSRLS role)';
    END IF;
    r := ledgerlock._ref_fetch(tbl, key);
    IF r IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'P0002',
            MESSAGE = pg_catalog.format('%s has no row with key %s', tbl, key);
    END IF;
    RETURN QUERY SELECT * FROM ledgerlock._why_walk(tbl, key, 0,
        ARRAY[pg_catalog.jsonb_build_object('table', tbl::text, 'key', ledgerlock.row_key(tbl, r))::text]);
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.why_locked(regclass, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.why_locked(regclass, jsonb) TO PUBLIC;
