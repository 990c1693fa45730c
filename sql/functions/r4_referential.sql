-- Rule R4: referenced rows are frozen, and lines follow their header.
--
-- protect_referenced(parent, child, ...) freezes a parent row while a (matching) child row references it;
-- protect_lines(child, parent, ...) freezes the lines of a frozen header. Both record a rule in
-- ledgerlock.reference_rule and install guards (ll_30_*) on both tables: see sql/triggers/r4_reference_guard.sql.
-- Neither table needs to be protect()ed itself (a project with time entries); rows are then named by the
-- primary key found in the catalog.

-- The row of tbl whose key is `key` (a jsonb object of key columns, or a bare value for a one-column
-- key), as jsonb; null when there is none. One index probe on the key.
CREATE OR REPLACE FUNCTION ledgerlock._ref_fetch(tbl regclass, key jsonb)
RETURNS jsonb
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cols name[] := ledgerlock._key_columns(tbl);
    r jsonb;
BEGIN
    IF cols IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('%s has no primary key; its rows cannot be named by a key', tbl);
    END IF;
    IF pg_catalog.jsonb_typeof(key) <> 'object' THEN
        IF pg_catalog.cardinality(cols) <> 1 THEN
            RAISE EXCEPTION USING ERRCODE = '22023',
                MESSAGE = pg_catalog.format('the key of %s has columns %s; give it as a JSON object', tbl,
                                            pg_catalog.array_to_string(cols, ', '));
        END IF;
        key := pg_catalog.jsonb_build_object(cols[1], key);
    END IF;
    EXECUTE pg_catalog.format(
        'SELECT pg_catalog.to_jsonb(t.*) FROM pg_catalog.jsonb_populate_record(NULL::%s, $1) AS k JOIN %s AS t ON %s',
        tbl, tbl,
        (SELECT pg_catalog.string_agg(pg_catalog.format('t.%1$I = k.%1$I', c), ' AND ') FROM pg_catalog.unnest(cols) c))
        INTO r USING key;
    RETURN r;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._ref_fetch(regclass, jsonb) FROM PUBLIC;

-- Child rows of a 'referenced' rule that reference (and, with a condition, freeze) a parent row.
-- One index probe on the child's foreign key (protect_referenced warns when the index is missing).
CREATE OR REPLACE FUNCTION ledgerlock._ref_referencing(rule_id integer, parent_row jsonb, max_rows integer DEFAULT 1)
RETURNS SETOF jsonb
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r ledgerlock.reference_rule;
BEGIN
    SELECT * INTO STRICT r FROM ledgerlock.reference_rule x WHERE x.id = rule_id;
    RETURN QUERY EXECUTE pg_catalog.format(
        'SELECT pg_catalog.to_jsonb(ll_row.*) FROM pg_catalog.jsonb_populate_record(NULL::%s, $1) AS ll_parent '
        'JOIN %s AS ll_row ON %s WHERE %s LIMIT $2',
        r.parent, r.child,
        (SELECT pg_catalog.string_agg(pg_catalog.format('ll_row.%I = ll_parent.%I', c, p), ' AND ')
         FROM ROWS FROM (pg_catalog.unnest(r.child_columns), pg_catalog.unnest(r.parent_columns)) AS u(c, p)),
        coalesce(r.child_condition_sql, 'true'))
        USING parent_row, max_rows;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._ref_referencing(integer, jsonb, integer) FROM PUBLIC;

-- The foreign key from child to parent: the only one, or the one on fk_columns (in any order).
-- Returns its name and its columns in constraint order; a missing or ambiguous key is a clear error.
CREATE OR REPLACE FUNCTION ledgerlock._ref_foreign_key(parent regclass, child regclass, fk_columns name[],
                                                       OUT fk_name name, OUT child_columns name[],
                                                       OUT parent_columns name[])
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer;
    found_keys text;
    temporal boolean;
BEGIN
    WITH fk AS (
        SELECT c.conname,
               pg_catalog.array_agg(ca.attname ORDER BY k.ord) AS ccols,
               pg_catalog.array_agg(pa.attname ORDER BY k.ord) AS pcols,
               -- a temporal foreign key (PostgreSQL 18: FOREIGN KEY (..., PERIOD p)), read where the column exists
               coalesce((pg_catalog.to_jsonb(c.*) ->> 'conperiod')::boolean, false) AS temporal
        FROM pg_catalog.pg_constraint c
        CROSS JOIN LATERAL ROWS FROM (pg_catalog.unnest(c.conkey), pg_catalog.unnest(c.confkey)) WITH ORDINALITY AS k(ck, pk, ord)
        JOIN pg_catalog.pg_attribute ca ON ca.attrelid = c.conrelid AND ca.attnum = k.ck
        JOIN pg_catalog.pg_attribute pa ON pa.attrelid = c.confrelid AND pa.attnum = k.pk
        WHERE c.contype = 'f' AND c.conrelid = child AND c.confrelid = parent AND c.conparentid = 0
        GROUP BY c.oid, c.conname
    ), wanted AS (
        SELECT * FROM fk
        WHERE fk_columns IS NULL
           OR (SELECT pg_catalog.array_agg(x ORDER BY x) FROM pg_catalog.unnest(fk.ccols) x)
            = (SELECT pg_catalog.array_agg(x ORDER BY x) FROM pg_catalog.unnest(fk_columns) x)
    )
    SELECT (SELECT count(*) FROM wanted),
           (SELECT pg_catalog.string_agg(pg_catalog.format('%s (%s)', f.conname,
                                         pg_catalog.array_to_string(f.ccols, ', ')), '; ') FROM fk f),
           w.conname, w.ccols, w.pcols, w.temporal
      INTO n, found_keys, fk_name, child_columns, parent_columns, temporal
    FROM (SELECT 1) AS one LEFT JOIN wanted w ON true
    LIMIT 1;
    IF n = 1 AND temporal THEN
        -- a child row references every parent row of its key whose period overlaps its own; the guards find a
        -- reference by equal columns, and would find none of those
        RAISE EXCEPTION USING ERRCODE = '0A000',
            MESSAGE = pg_catalog.format('%s references %s through %s, a temporal foreign key (PERIOD): a row '
                                        'references the rows of %s whose periods overlap its own, which ledgerlock '
                                        'cannot find by equal columns', child, parent, fk_name, parent),
            HINT = 'reference the parent through a foreign key without PERIOD to protect the reference';
    END IF;
    IF n = 0 THEN
        RAISE EXCEPTION USING ERRCODE = '42830',
            MESSAGE = CASE WHEN found_keys IS NULL
                THEN pg_catalog.format('%s has no foreign key to %s', child, parent)
                ELSE pg_catalog.format('%s has no foreign key to %s on (%s); its foreign keys to %s: %s', child,
                                       parent, pg_catalog.array_to_string(fk_columns, ', '), parent, found_keys) END,
            HINT = pg_catalog.format('add one: ALTER TABLE %s ADD FOREIGN KEY (...) REFERENCES %s', child, parent);
    ELSIF n > 1 THEN
        RAISE EXCEPTION USING ERRCODE = '42830',
            MESSAGE = pg_catalog.format('%s has %s foreign keys to %s: %s; say which with fk_columns', child, n,
                                        parent, found_keys);
    END IF;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._ref_foreign_key(regclass, regclass, name[]) FROM PUBLIC;

-- Record a rule event in the audit trail when R5 is installed.
CREATE OR REPLACE FUNCTION ledgerlock._ref_audit(operation text, tbl regclass, details jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ledgerlock._audit_event(operation, tbl, NULL, NULL, NULL, NULL, details);
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._ref_audit(text, regclass, jsonb) FROM PUBLIC;

-- Before the ll_30 guards of some tables are (re)installed: when one of them is the line table of a lines rule,
-- whose trigger carries marks computed under the mark clock (ledgerlock._ref_lines_trigger), take the clock
-- first, before any table lock, in the order a lock operation takes them (no deadlock with one). Other rules
-- never wait for it: a referential rule made while protect() of another table holds the clock goes ahead.
CREATE OR REPLACE FUNCTION ledgerlock._ref_lines_clock(tables regclass[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF EXISTS (SELECT FROM ledgerlock.reference_rule x WHERE x.kind = 'lines' AND x.child = ANY (tables)) THEN
        PERFORM ledgerlock._tick_mark_clock();
    END IF;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._ref_lines_clock(regclass[]) FROM PUBLIC;

-- Create or reconfigure one rule and install its guards on both tables.
CREATE OR REPLACE FUNCTION ledgerlock._ref_define(kind text, parent regclass, child regclass, fk_columns name[],
                                                  child_condition text, operations text[])
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    fk record;
    cond_sql text;
    ops text[];
    rule_id integer;
BEGIN
    PERFORM ledgerlock._require_value(parent IS NOT NULL AND child IS NOT NULL,
                                      CASE kind WHEN 'lines' THEN 'protect_lines' ELSE 'protect_referenced' END,
                                      'a parent table and a child table');
    PERFORM ledgerlock._check_guardable(parent, 'parent');
    PERFORM ledgerlock._check_guardable(child, 'child');
    fk := ledgerlock._ref_foreign_key(parent, child, fk_columns);
    ops := ARRAY(SELECT DISTINCT pg_catalog.lower(pg_catalog.btrim(o)) FROM pg_catalog.unnest(operations) o ORDER BY 1);
    IF pg_catalog.cardinality(ops) = 0 OR NOT ops <@ ARRAY['update', 'delete'] THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('operations %s: give update, delete or both', operations);
    END IF;
    IF child_condition IS NOT NULL AND pg_catalog.btrim(child_condition) <> '' THEN
        cond_sql := ledgerlock._deparse_condition(child, child_condition, 'child_condition', '{}');
    END IF;

    -- The parent-side check is one probe of the child on the foreign key: it needs an index leading
    -- with those columns, or every update of the parent scans the child.
    IF kind = 'referenced' AND NOT EXISTS (
        SELECT FROM pg_catalog.pg_index i
        WHERE i.indrelid = child AND i.indpred IS NULL
          AND (SELECT pg_catalog.array_agg(a.attname ORDER BY a.attname)
               FROM pg_catalog.unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
               JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
               WHERE k.ord <= pg_catalog.cardinality(fk.child_columns))
            = (SELECT pg_catalog.array_agg(c ORDER BY c) FROM pg_catalog.unnest(fk.child_columns) c))
    THEN
        RAISE WARNING USING
            MESSAGE = pg_catalog.format('%s has no index leading with (%s): every update or delete of %s will '
                                        'scan %s', child, pg_catalog.array_to_string(fk.child_columns, ', '),
                                        parent, child),
            HINT = pg_catalog.format('CREATE INDEX ON %s (%s)', child,
                                     (SELECT pg_catalog.string_agg(pg_catalog.quote_ident(c), ', ')
                                      FROM pg_catalog.unnest(fk.child_columns) c));
    END IF;

    INSERT INTO ledgerlock.reference_rule AS r
        (kind, parent, child, fk_name, child_columns, parent_columns, child_condition, child_condition_sql, operations)
    VALUES (kind, parent, child, fk.fk_name, fk.child_columns, fk.parent_columns,
            nullif(pg_catalog.btrim(child_condition), ''), cond_sql, ops)
    ON CONFLICT ON CONSTRAINT reference_rule_unique DO UPDATE SET
        fk_name = EXCLUDED.fk_name, parent_columns = EXCLUDED.parent_columns,
        child_condition = EXCLUDED.child_condition, child_condition_sql = EXCLUDED.child_condition_sql,
        operations = EXCLUDED.operations, created_at = now(), created_by = session_user
    RETURNING r.id INTO rule_id;

    PERFORM ledgerlock._ref_lines_clock(ARRAY[parent, child]);
    PERFORM ledgerlock._ref_install_table(parent);
    IF child <> parent THEN
        PERFORM ledgerlock._ref_install_table(child);
    END IF;
    PERFORM ledgerlock._ref_audit('protect_' || kind, parent,
        (SELECT pg_catalog.to_jsonb(r) - 'created_at' FROM ledgerlock.reference_rule r WHERE r.id = rule_id));
    RETURN rule_id;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._ref_define(text, regclass, regclass, name[], text, text[]) FROM PUBLIC;

-- Remove rules: their triggers on both tables, then their generated functions.
CREATE OR REPLACE FUNCTION ledgerlock._ref_remove(rule_ids integer[], reason text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t regclass;
    r ledgerlock.reference_rule;
    tables regclass[];
BEGIN
    tables := ARRAY(SELECT DISTINCT u.t FROM ledgerlock.reference_rule x, LATERAL (VALUES (x.parent), (x.child)) u(t)
                    WHERE x.id = ANY (rule_ids));
    FOR r IN DELETE FROM ledgerlock.reference_rule x WHERE x.id = ANY (rule_ids) RETURNING * LOOP
        PERFORM ledgerlock._ref_audit('unprotect_' || r.kind, r.parent,
                                      pg_catalog.to_jsonb(r) - 'created_at' || pg_catalog.jsonb_build_object('reason', reason));
    END LOOP;
    PERFORM ledgerlock._ref_lines_clock(tables);
    FOREACH t IN ARRAY tables LOOP
        PERFORM ledgerlock._ref_install_table(t);
    END LOOP;
    PERFORM ledgerlock._ref_drop_functions(rule_ids);
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._ref_remove(integer[], text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION ledgerlock.protect_referenced(
    parent regclass,
    child regclass,
    fk_columns name[] DEFAULT NULL,
    child_condition text DEFAULT NULL,
    operations text[] DEFAULT '{update,delete}')
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
AS $$
BEGIN
    PERFORM ledgerlock._require_capability('admin', 'protect_referenced');
    PERFORM ledgerlock._require_unrestricted('protect_referenced');
    PERFORM ledgerlock._ref_define('referenced', parent, child, fk_columns, child_condition,
                                   coalesce(operations, '{update,delete}'));
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.protect_referenced(regclass, regclass, name[], text, text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.protect_referenced(regclass, regclass, name[], text, text[])
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

CREATE OR REPLACE FUNCTION ledgerlock.protect_lines(child regclass, parent regclass, fk_columns name[] DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
AS $$
BEGIN
    PERFORM ledgerlock._require_capability('admin', 'protect_lines');
    PERFORM ledgerlock._require_unrestricted('protect_lines');
    PERFORM ledgerlock._ref_define('lines', parent, child, fk_columns, NULL, '{update,delete}');
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.protect_lines(regclass, regclass, name[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.protect_lines(regclass, regclass, name[])
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

-- Removing a rule is admin-only, needs a reason, and is audited. (unprotect of either table removes
-- its rules, too.)
CREATE OR REPLACE FUNCTION ledgerlock.unprotect_referenced(parent regclass, child regclass, reason text)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
AS $$
DECLARE
    ids integer[];
BEGIN
    PERFORM ledgerlock._require_capability('admin', 'unprotect_referenced');
    PERFORM ledgerlock._require_unrestricted('unprotect_referenced');
    reason := ledgerlock._require_reason(reason, 'unprotect_referenced');
    ids := ARRAY(SELECT r.id FROM ledgerlock.reference_rule r
                 WHERE r.kind = 'referenced' AND r.parent = unprotect_referenced.parent
                   AND r.child = unprotect_referenced.child);
    IF pg_catalog.cardinality(ids) = 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('%s is not protected as referenced by %s', parent, child);
    END IF;
    PERFORM ledgerlock._ref_remove(ids, reason);
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.unprotect_referenced(regclass, regclass, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.unprotect_referenced(regclass, regclass, text)
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

CREATE OR REPLACE FUNCTION ledgerlock.unprotect_lines(child regclass, parent regclass, reason text)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
AS $$
DECLARE
    ids integer[];
BEGIN
    PERFORM ledgerlock._require_capability('admin', 'unprotect_lines');
    PERFORM ledgerlock._require_unrestricted('unprotect_lines');
    reason := ledgerlock._require_reason(reason, 'unprotect_lines');
    ids := ARRAY(SELECT r.id FROM ledgerlock.reference_rule r
                 WHERE r.kind = 'lines' AND r.parent = unprotect_lines.parent AND r.child = unprotect_lines.child);
    IF pg_catalog.cardinality(ids) = 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('%s is not protected as lines of %s', child, parent);
    END IF;
    PERFORM ledgerlock._ref_remove(ids, reason);
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.unprotect_lines(regclass, regclass, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.unprotect_lines(regclass, regclass, text)
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;
