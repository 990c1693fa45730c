-- Rule R4 guards (ll_30_*): referenced rows are frozen, lines follow their header.
--
-- Each rule in ledgerlock.reference_rule gets small generated trigger functions (_ll30_r<id>_parent,
-- _ll30_r<id>_child, _ll30_r<id>_line) whose probes are static SQL. Why generated: a probe through EXECUTE is
-- parsed and planned on every row, which costs about a third of the UPDATE of an unreferenced parent, while
-- static SQL in a PL/pgSQL function keeps its plan for the session. The templates live here;
-- the installer regenerates them from the rule on every install, so they never drift from their rule.
--
-- Serialization: the foreign key's own check takes FOR KEY SHARE on the parent, which does not
-- conflict with a non-key UPDATE. So the child side takes FOR SHARE on the parent row before a matching child
-- row is written: a concurrent UPDATE or DELETE of the parent waits for the child's transaction and then
-- (READ COMMITTED re-reads the row and the trigger takes a fresh snapshot) sees the child and refuses; a child
-- arriving second waits for the parent's transaction and then references the parent's new state. Lines take
-- FOR SHARE on their header the same way, so a header cannot become final under a line being written.

-- LL003 for an update or delete of a parent that a matching child references (the caller has checked
-- that the update changes more than exempt columns).
CREATE OR REPLACE FUNCTION ledgerlock._ref_refuse_referenced(rule_id integer, op text, old_row jsonb, new_row jsonb,
                                                             child_row jsonb, exempt text[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ll_refused text;  -- a refusal is called as an expression: see ledgerlock._refuse
    r ledgerlock.reference_rule;
    child_label text;
    parent_label text;
    mutable name[];
BEGIN
    SELECT * INTO STRICT r FROM ledgerlock.reference_rule x WHERE x.id = rule_id;
    child_label := ledgerlock._row_named(r.child, child_row);  -- (another tenant's, maybe: "a row of ...")
    parent_label := ledgerlock.row_label(r.parent, old_row);
    mutable := (SELECT p.mutable_columns FROM ledgerlock.protected_table p WHERE p.tbl = r.parent);
    ll_refused := ledgerlock._refuse('LL003',
        pg_catalog.format('%s is referenced by %s and cannot be %s', parent_label, child_label,
                          CASE op WHEN 'DELETE' THEN 'deleted' ELSE 'updated' END),
        pg_catalog.format('delete %s first%s%s; ledgerlock why shows the whole chain', child_label,
            CASE WHEN r.child_condition IS NOT NULL
                 THEN pg_catalog.format(' (or change it so that it no longer matches: %s)', r.child_condition) END,
            CASE WHEN op = 'UPDATE' AND pg_catalog.cardinality(mutable) > 0
                 THEN pg_catalog.format('; only %s may still change', pg_catalog.array_to_string(mutable, ', ')) END));
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._ref_refuse_referenced(integer, text, jsonb, jsonb, jsonb, text[]) FROM PUBLIC;

-- The header of a line is frozen when it is final (header_final, computed under the row lock), lies in a
-- locked period (R3), or is referenced by a matching child of a rule that freezes updates. Refuse then,
-- naming the line, the header and why.
-- "invoice_line id=7 cannot be updated: its header invoice id=3 (INV-2026-00012)" (or "... cannot be moved to
-- invoice id=4: that header"): the subject of a refusal of a line's write because of its header. A header the
-- writer may not read every row of (row-level security: another tenant's) is "a row of invoice"
-- (ledgerlock._row_named).
CREATE OR REPLACE FUNCTION ledgerlock._ref_refusal_subject(r ledgerlock.reference_rule, verb text, line_row jsonb,
                                                           header_row jsonb, is_target boolean)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ledgerlock.row_label(r.child, line_row) || CASE
        WHEN is_target THEN pg_catalog.format(' cannot be moved to %s: that header',
                                              ledgerlock._row_named(r.parent, header_row))
        WHEN ledgerlock._rows_readable(r.parent)
        THEN pg_catalog.format(' cannot be %s: its header %s', verb, ledgerlock.row_label(r.parent, header_row))
        ELSE pg_catalog.format(' cannot be %s: its header, %s,', verb, ledgerlock._row_named(r.parent, header_row)) END
$$;
REVOKE ALL ON FUNCTION ledgerlock._ref_refusal_subject(ledgerlock.reference_rule, text, jsonb, jsonb, boolean) FROM PUBLIC;

CREATE OR REPLACE FUNCTION ledgerlock._ref_check_header(rule_id integer, verb text, line_row jsonb, header_row jsonb,
                                                        header_final boolean, is_target boolean, probe boolean)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ll_refused text;  -- a refusal is called as an expression: see ledgerlock._refuse
    r ledgerlock.reference_rule;
    rr ledgerlock.reference_rule;
    w bigint;
    child_row jsonb;
    child_label text;
BEGIN
    SELECT * INTO STRICT r FROM ledgerlock.reference_rule x WHERE x.id = rule_id;
    -- the words of a refusal (row labels read the catalog) are built only when there is one: _ref_refusal_subject
    IF header_final THEN
        ll_refused := ledgerlock._refuse('LL001',
            ledgerlock._ref_refusal_subject(r, verb, line_row, header_row, is_target)
                || ' is final; issue a correcting document instead',
            'the lines of a final document are part of it; correct it with a new document (credit memo, amendment)');
    END IF;
    -- R3: the header's period, with the same overrides and fence as a write to the header itself, unless the
    -- caller found the header dated after its scope's mark (probe false: no window can cover it; _ref_line_body).
    IF probe AND EXISTS (SELECT FROM ledgerlock.protected_table p WHERE p.tbl = r.parent) THEN
        w := ledgerlock._entered_window(r.parent, header_row);
        IF w IS NOT NULL THEN
            ll_refused := ledgerlock._check_window(r.parent, w, header_row, pg_catalog.format(
                'changed through its lines (%s %s)', ledgerlock.row_label(r.child, line_row),
                CASE WHEN is_target THEN 'cannot be moved to it' ELSE 'cannot be ' || verb END),
                false);  -- the header: not the row written
        END IF;
    END IF;
    FOR rr IN SELECT * FROM ledgerlock.reference_rule x
              WHERE x.kind = 'referenced' AND x.parent = r.parent AND 'update' = ANY (x.operations) ORDER BY x.id LOOP
        SELECT c INTO child_row FROM ledgerlock._ref_referencing(rr.id, header_row, 1) AS c;
        IF child_row IS NOT NULL THEN
            child_label := ledgerlock._row_named(rr.child, child_row);
            ll_refused := ledgerlock._refuse('LL003',
                pg_catalog.format('%s is referenced by %s', ledgerlock._ref_refusal_subject(r, verb, line_row,
                                  header_row, is_target), child_label),
                pg_catalog.format('delete %s first; ledgerlock why shows the whole chain', child_label));
        END IF;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._ref_check_header(integer, text, jsonb, jsonb, boolean, boolean, boolean)
    FROM PUBLIC;

-- A header's referenced key as a mark records it: a jsonb array of its key columns' values. Settings are
-- pinned so that the text of a float or a timestamp key is exact and the same in every session: a rounded
-- key (extra_float_digits = -15) could otherwise make one header's key equal another's.
CREATE OR REPLACE FUNCTION ledgerlock._ref_header_key(header jsonb, cols name[])
RETURNS jsonb
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.jsonb_agg(header OPERATOR(pg_catalog.->) c ORDER BY o)
    FROM pg_catalog.unnest(cols) WITH ORDINALITY AS u(c, o)
$$;
REVOKE ALL ON FUNCTION ledgerlock._ref_header_key(jsonb, name[]) FROM PUBLIC;

-- Write the mark of a header made final in this transaction (rule, key), for _ref_mark_final and the
-- generated _ll30_r<id>_mark functions; called from their SECURITY DEFINER context. Marks of finished
-- transactions (below every snapshot's xmin, or of an earlier server life) are pruned first, skipping any
-- another pruner holds, so that no writer waits.
CREATE OR REPLACE FUNCTION ledgerlock._ref_write_mark(rule_id integer, header_key jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM ledgerlock.header_final_mark m
    WHERE m.ctid = ANY (ARRAY(
        SELECT x.ctid FROM ledgerlock.header_final_mark x
        WHERE x.txid < pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot())
           OR x.started <> pg_catalog.pg_postmaster_start_time()
        LIMIT 64 FOR UPDATE SKIP LOCKED));
    INSERT INTO ledgerlock.header_final_mark (txid, started, rule_id, header_key)
    VALUES (pg_catalog.pg_current_xact_id(), pg_catalog.pg_postmaster_start_time(), _ref_write_mark.rule_id,
            _ref_write_mark.header_key)
    ON CONFLICT DO NOTHING;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._ref_write_mark(integer, jsonb) FROM PUBLIC;

-- The header's side of a lines rule: a header row became final in this transaction (inserted final, or
-- updated from not final to final; the WHEN clauses decide). Record it for the lines guard, which admits
-- line writes to that header until commit: a header and its lines committed together are one document.
-- TG_ARGV: the rule id, then the header columns the lines reference.
CREATE OR REPLACE FUNCTION ledgerlock._ref_mark_final()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER  -- writes ledgerlock.header_final_mark, which clients cannot
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
SET extra_float_digits = '3'
SET TimeZone = 'UTC'
SET IntervalStyle = 'iso_8601'
AS $$
BEGIN
    PERFORM ledgerlock._ref_write_mark(TG_ARGV[0]::integer,
                                       ledgerlock._ref_header_key(pg_catalog.to_jsonb(NEW), TG_ARGV[1:]::name[]));
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._ref_mark_final() FROM PUBLIC;

-- The same mark as _ref_mark_final, generated per lines rule when the header's key columns print the same
-- under every session setting (integers, numeric, text, uuid, date, boolean): the key is then built from
-- NEW's columns directly, without pinning settings or copying the whole row to jsonb, a quarter of the cost
-- of the generic function on every finalization of a header. Values: rule_id, key.
CREATE OR REPLACE FUNCTION ledgerlock._ref_mark_body(v jsonb)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT ledgerlock._template($ll$
BEGIN
    PERFORM ledgerlock._ref_write_mark({{rule_id}}, {{key}});
    RETURN NULL;
END
$ll$, v)
$fn$;
REVOKE ALL ON FUNCTION ledgerlock._ref_mark_body(jsonb) FROM PUBLIC;

-- The header key as a jsonb array built from NEW's columns (the value _ref_header_key reads from the whole
-- row), or NULL when a key column's type prints differently under some session setting (a float under
-- extra_float_digits, a timestamp under TimeZone, an interval under IntervalStyle): those headers keep the
-- generic _ref_mark_final, which pins the settings.
CREATE OR REPLACE FUNCTION ledgerlock._ref_plain_key(tbl regclass, cols name[])
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'pg_catalog.jsonb_build_array(' || pg_catalog.string_agg(pg_catalog.format('NEW.%I', c), ', ' ORDER BY o)
           || ')'
    FROM pg_catalog.unnest(cols) WITH ORDINALITY AS u(c, o)
    HAVING pg_catalog.bool_and(EXISTS (
        SELECT FROM pg_catalog.pg_attribute a
        JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
        LEFT JOIN pg_catalog.pg_type b ON b.oid = t.typbasetype
        WHERE a.attrelid = tbl AND a.attname = u.c AND NOT a.attisdropped
          AND coalesce(b.oid, t.oid) IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype, 'numeric'::regtype,
                                         'text'::regtype, 'varchar'::regtype, 'bpchar'::regtype, 'uuid'::regtype,
                                         'date'::regtype, 'bool'::regtype, 'name'::regtype, 'oid'::regtype)))
$$;
REVOKE ALL ON FUNCTION ledgerlock._ref_plain_key(regclass, name[]) FROM PUBLIC;

-- Did this transaction make this final header final (a mark of _ref_mark_final for this transaction,
-- this server's life, the rule and the header's key)? The lines guard asks only for a final header.
-- Settings pinned as in _ref_mark_final, so that the key reads the same.
CREATE OR REPLACE FUNCTION ledgerlock._ref_final_here(rule_id integer, header anyelement)
RETURNS boolean
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET extra_float_digits = '3'
SET TimeZone = 'UTC'
SET IntervalStyle = 'iso_8601'
AS $$
    SELECT EXISTS (
        SELECT FROM ledgerlock.header_final_mark m, ledgerlock.reference_rule r
        WHERE r.id = _ref_final_here.rule_id
          AND m.txid = pg_catalog.pg_current_xact_id_if_assigned()
          AND m.started = pg_catalog.pg_postmaster_start_time()
          AND m.rule_id = r.id
          AND m.header_key = ledgerlock._ref_header_key(pg_catalog.to_jsonb(header), r.parent_columns))
$$;
REVOKE ALL ON FUNCTION ledgerlock._ref_final_here(integer, anyelement) FROM PUBLIC;

-- "ll_row.a = OLD.x AND ll_row.b = OLD.y": the join of one side's columns to a record's.
CREATE OR REPLACE FUNCTION ledgerlock._ref_match(alias text, cols name[], rec text, rec_cols name[])
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.string_agg(pg_catalog.format('%s.%I = %s.%I', alias, c, rec, rc), ' AND ')
    FROM ROWS FROM (pg_catalog.unnest(cols), pg_catalog.unnest(rec_cols)) AS u(c, rc)
$$;
REVOKE ALL ON FUNCTION ledgerlock._ref_match(text, name[], text, name[]) FROM PUBLIC;

-- "(NEW.a, NEW.b)" - a row of a record's columns, for IS DISTINCT FROM.
CREATE OR REPLACE FUNCTION ledgerlock._ref_tuple(rec text, cols name[])
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT '(' || pg_catalog.string_agg(pg_catalog.format('%s.%I', rec, c), ', ') || ')'
    FROM pg_catalog.unnest(cols) AS c
$$;
REVOKE ALL ON FUNCTION ledgerlock._ref_tuple(text, name[]) FROM PUBLIC;

-- Parent side of a 'referenced' rule: one index probe of the child on the foreign key; refuse when a
-- matching child references the row. An UPDATE that changes only exempt columns (mutable, generated)
-- returns before the probe: no child can object to it. That test is generated (exempt_only), so it reads
-- no catalog at run time: the new row with its exempt columns put back to their old values is compared
-- with the old row whole and exactly (stored bytes), so a column added after generation still counts as
-- a change. Values: child, match (child to OLD), condition, rule_id, exempt_only (empty when the table has
-- no exempt columns).
CREATE OR REPLACE FUNCTION ledgerlock._ref_parent_body(v jsonb)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT ledgerlock._template($ll$
DECLARE
    ll_child jsonb;
    ll_new record;
    ll_refused text;
BEGIN{{exempt_only}}
    SELECT pg_catalog.to_jsonb(ll_row.*) INTO ll_child FROM {{child}} AS ll_row WHERE {{match}} AND ({{condition}}) LIMIT 1;
    IF ll_child IS NOT NULL THEN
        ll_refused := ledgerlock._ref_refuse_referenced({{rule_id}}, TG_OP, pg_catalog.to_jsonb(OLD),
            CASE TG_OP WHEN 'UPDATE' THEN pg_catalog.to_jsonb(NEW) END, ll_child, coalesce(TG_ARGV, '{}'));
    END IF;
    RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
END
$ll$, v)
$fn$;
REVOKE ALL ON FUNCTION ledgerlock._ref_parent_body(jsonb) FROM PUBLIC;

-- The generated test of _ref_parent_body: "only exempt columns changed, return". It first compares the
-- exempt columns alone (one simple expression), so an update that leaves them as they were goes straight to
-- the probe; only when one of them changed is the row copied and compared whole. Only the exempt columns
-- that exist are named (a mutable column dropped since protect is not); empty when there are none.
CREATE OR REPLACE FUNCTION ledgerlock._ref_exempt_only(tbl regclass)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce((
        SELECT pg_catalog.format($ll$
    IF TG_OP = 'UPDATE' AND NOT pg_catalog.record_image_eq(ROW(%s), ROW(%s)) THEN
        ll_new := NEW;%s
        IF pg_catalog.record_image_eq(OLD, ll_new) THEN  -- only exempt columns changed
            RETURN NEW;
        END IF;
    END IF;$ll$,
            pg_catalog.string_agg(pg_catalog.format('OLD.%I', c), ', ' ORDER BY c),
            pg_catalog.string_agg(pg_catalog.format('NEW.%I', c), ', ' ORDER BY c),
            pg_catalog.string_agg(pg_catalog.format('
        ll_new.%1$I := OLD.%1$I;', c), '' ORDER BY c))
        FROM pg_catalog.unnest(ledgerlock._exempt_columns(tbl)) AS c
        WHERE EXISTS (SELECT FROM pg_catalog.pg_attribute a
                      WHERE a.attrelid = tbl AND a.attname = c AND a.attnum > 0 AND NOT a.attisdropped)
        HAVING count(*) > 0), '')
$$;
REVOKE ALL ON FUNCTION ledgerlock._ref_exempt_only(regclass) FROM PUBLIC;

-- Child side of a 'referenced' rule: share-lock the parent row before a matching child row is written.
-- Values: parent, match (parent to NEW).
CREATE OR REPLACE FUNCTION ledgerlock._ref_child_body(v jsonb)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT ledgerlock._template($ll$
BEGIN
    PERFORM 1 FROM {{parent}} AS ll_parent WHERE {{match}} FOR SHARE;
    RETURN NEW;
END
$ll$, v)
$fn$;
REVOKE ALL ON FUNCTION ledgerlock._ref_child_body(jsonb) FROM PUBLIC;

-- Lines: share-lock the header and read whether it is final in the same statement, then let
-- _ref_check_header decide (period and referenced headers). A final header whose finalization this
-- transaction wrote (a mark of _ref_mark_final: this transaction, this server's life) is not final to its
-- lines until commit. Values: parent, header_final (its final_when over ll_row, or false), new_tuple and old_tuple (the line's foreign key), match_old and match_new (the
-- header to the line's OLD and NEW), rule_id, probe (whether the header's period must be looked up: an
-- expression over ll_header, see _ref_probe_sql), referenced (whether a rule freezes the header as referenced:
-- read in every call, as _ref_check_header reads the rules). _ref_check_header is called only when one of
-- the three can refuse. The trigger's arguments (_ref_lines_trigger): the header table's scope marks, then the
-- line's exempt columns.
CREATE OR REPLACE FUNCTION ledgerlock._ref_line_body(v jsonb)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT ledgerlock._template($ll$
DECLARE
    ll_header jsonb;
    ll_final boolean;
    ll_verb text := CASE TG_OP WHEN 'INSERT' THEN 'inserted' WHEN 'DELETE' THEN 'deleted' ELSE 'updated' END;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        -- exact comparison, beyond the exempt columns (generated and mutable; none: an empty array)
        IF ledgerlock._same_except(OLD, NEW, TG_ARGV[2:]) THEN
            RETURN NEW;
        END IF;
        IF {{new_tuple}} IS DISTINCT FROM {{old_tuple}} THEN
            ll_verb := 'moved';
        END IF;
    END IF;
    IF TG_OP <> 'INSERT' THEN
        SELECT pg_catalog.to_jsonb(ll_row.*),
               CASE WHEN coalesce(({{header_final}}), false) THEN NOT ledgerlock._ref_final_here({{rule_id}}, ll_row.*)
                    ELSE false END
        INTO ll_header, ll_final
        FROM {{parent}} AS ll_row WHERE {{match_old}} FOR SHARE;
        IF ll_header IS NOT NULL AND (ll_final OR {{probe}} OR {{referenced}}) THEN
            PERFORM ledgerlock._ref_check_header({{rule_id}}, ll_verb, pg_catalog.to_jsonb(OLD), ll_header, ll_final, false,
                                                 {{probe}});
        END IF;
    END IF;
    IF TG_OP = 'INSERT' OR ll_verb = 'moved' THEN
        ll_header := NULL;
        SELECT pg_catalog.to_jsonb(ll_row.*),
               CASE WHEN coalesce(({{header_final}}), false) THEN NOT ledgerlock._ref_final_here({{rule_id}}, ll_row.*)
                    ELSE false END
        INTO ll_header, ll_final
        FROM {{parent}} AS ll_row WHERE {{match_new}} FOR SHARE;
        IF ll_header IS NOT NULL AND (ll_final OR {{probe}} OR {{referenced}}) THEN
            PERFORM ledgerlock._ref_check_header({{rule_id}}, ll_verb, pg_catalog.to_jsonb(NEW), ll_header, ll_final,
                                                 ll_verb = 'moved', {{probe}});
        END IF;
    END IF;
    RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
END
$ll$, v)
$fn$;
REVOKE ALL ON FUNCTION ledgerlock._ref_line_body(jsonb) FROM PUBLIC;

-- Whether a line's check must look its header's period up (R3): a boolean expression over ll_header (the header
-- row as jsonb) and the line trigger's first two arguments, the header table's scope marks (_ref_lines_trigger:
-- the mark of unlisted scopes, '' for none, then the listed scopes' marks). A header dated after its scope's
-- mark lies in no window: its line's check neither enters the scope's gate nor probes the windows, as R3's own
-- generated checks do for the header (docs/period-locks.md, "The high-water marks"). The header's day and scope
-- are read as ledgerlock._period_coordinates reads them, inline; a header whose date or scope is read from a
-- row of its own parent (a dotted column) is always looked up, and one without a date never.
CREATE OR REPLACE FUNCTION ledgerlock._ref_probe_sql(header regclass)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cfg ledgerlock.protected_table;
    typ oid;
BEGIN
    SELECT * INTO cfg FROM ledgerlock.protected_table p WHERE p.tbl = header;
    IF cfg.date_column IS NULL THEN
        RETURN 'false';
    END IF;
    IF pg_catalog.strpos(cfg.date_column, '.') > 0 OR pg_catalog.strpos(coalesce(cfg.scope_column, ''), '.') > 0 THEN
        RETURN 'true';
    END IF;
    SELECT a.atttypid INTO typ FROM pg_catalog.pg_attribute a
    WHERE a.attrelid = header AND a.attname = cfg.date_column AND NOT a.attisdropped;
    -- R3's mark test (r3_period_guard.sql); '' (no marks) is never cast to a date
    RETURN ledgerlock._mark_test_sql(
        pg_catalog.format('ledgerlock._period_date(ll_header ->> %L, %L)', cfg.date_column,
                          CASE WHEN typ IS NOT NULL THEN ledgerlock._date_kind_of(typ) END),
        CASE WHEN cfg.scope_column IS NULL THEN '''*'''
             ELSE pg_catalog.format('coalesce(ll_header ->> %L, ''*'')', cfg.scope_column) END,
        'nullif(TG_ARGV[0], '''')::date', 'nullif(TG_ARGV[1], '''')::jsonb');
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._ref_probe_sql(regclass) FROM PUBLIC;

-- (Re)generate the trigger functions of one rule from its row: _ll30_r<id>_parent and _child, or _line.
CREATE OR REPLACE FUNCTION ledgerlock._ref_generate_functions(rule_id integer)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r ledgerlock.reference_rule;
BEGIN
    SELECT * INTO STRICT r FROM ledgerlock.reference_rule x WHERE x.id = rule_id;
    IF r.kind = 'referenced' THEN
        PERFORM ledgerlock._create_generated_function(('_ll30_r' || r.id || '_parent')::name,
            ledgerlock._ref_parent_body(pg_catalog.jsonb_build_object(
                'child', r.child::text, 'rule_id', r.id,
                'match', ledgerlock._ref_match('ll_row', r.child_columns, 'OLD', r.parent_columns),
                'condition', coalesce(r.child_condition_sql, 'true'),
                'exempt_only', ledgerlock._ref_exempt_only(r.parent))), ledgerlock._row_reading_settings());
        PERFORM ledgerlock._create_generated_function(('_ll30_r' || r.id || '_child')::name,
            ledgerlock._ref_child_body(pg_catalog.jsonb_build_object(
                'parent', r.parent::text,
                'match', ledgerlock._ref_match('ll_parent', r.parent_columns, 'NEW', r.child_columns))),
            ledgerlock._row_reading_settings());
    ELSE
        IF ledgerlock._ref_plain_key(r.parent, r.parent_columns) IS NOT NULL THEN
            PERFORM ledgerlock._create_generated_function(('_ll30_r' || r.id || '_mark')::name,
                ledgerlock._ref_mark_body(pg_catalog.jsonb_build_object(
                    'rule_id', r.id, 'key', ledgerlock._ref_plain_key(r.parent, r.parent_columns))));
        END IF;
        PERFORM ledgerlock._create_generated_function(('_ll30_r' || r.id || '_line')::name,
            ledgerlock._ref_line_body(pg_catalog.jsonb_build_object(
                'parent', r.parent::text, 'rule_id', r.id,
                'header_final', coalesce((SELECT p.final_when_sql FROM ledgerlock.protected_table p
                                          WHERE p.tbl = r.parent), 'false'),
                'new_tuple', ledgerlock._ref_tuple('NEW', r.child_columns),
                'old_tuple', ledgerlock._ref_tuple('OLD', r.child_columns),
                'match_old', ledgerlock._ref_match('ll_row', r.parent_columns, 'OLD', r.child_columns),
                'match_new', ledgerlock._ref_match('ll_row', r.parent_columns, 'NEW', r.child_columns),
                'probe', ledgerlock._ref_probe_sql(r.parent),
                'referenced', pg_catalog.format(
                    'EXISTS (SELECT FROM ledgerlock.reference_rule ll_x WHERE ll_x.kind = ''referenced'' '
                    'AND ll_x.parent = %L::regclass AND ''update'' = ANY (ll_x.operations))', r.parent::text))),
            ledgerlock._row_reading_settings());
    END IF;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._ref_generate_functions(integer) FROM PUBLIC;

CREATE OR REPLACE FUNCTION ledgerlock._ref_drop_functions(rule_ids integer[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ledgerlock._drop_generated_functions(ARRAY(
        SELECT ('_ll30_r' || id || '_' || part)::name
        FROM pg_catalog.unnest(rule_ids) AS id, pg_catalog.unnest(ARRAY['parent', 'child', 'line', 'mark']) AS part));
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._ref_drop_functions(integer[]) FROM PUBLIC;

-- The definition of a lines rule's trigger on its line table. Its arguments: the header table's scope marks
-- (ledgerlock._period_scope_marks for the header's ledger: the mark of unlisted scopes, then the listed ones; ''
-- and '' when the header has no date), with which the line's check does not probe a header dated after its
-- scope's mark, then the line's exempt columns: generated columns, and the line table's own mutable columns when
-- it is protected (a journal line's reconciliation flag), never the key that ties it to its header. The marks are
-- those of R3's own triggers, computed the same way: under the mark clock (no window change runs meanwhile), and
-- raised by a lock the same way, by re-creating the trigger in place (ledgerlock._ref_raise_marks), which waits
-- for the line table's writers; docs/period-locks.md, "Race-freedom".
CREATE OR REPLACE FUNCTION ledgerlock._ref_lines_trigger(rule_id integer)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r ledgerlock.reference_rule;
    header ledgerlock.protected_table;
    rest text := '';
    listed text := '';
    exempt text;
BEGIN
    SELECT * INTO STRICT r FROM ledgerlock.reference_rule x WHERE x.id = rule_id;
    SELECT * INTO header FROM ledgerlock.protected_table p WHERE p.tbl = r.parent;
    IF header.date_column IS NOT NULL THEN
        PERFORM ledgerlock._tick_mark_clock();  -- see _install_20_period
        SELECT ledgerlock._iso_date(m.rest), m.listed::text INTO rest, listed
        FROM ledgerlock._period_scope_marks(header.ledger) m;
    END IF;
    exempt := (SELECT pg_catalog.string_agg(pg_catalog.quote_literal(c), ', ' ORDER BY c)
               FROM (SELECT a.attname AS c FROM pg_catalog.pg_attribute a
                     WHERE a.attrelid = r.child AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated <> ''
                     UNION
                     SELECT m FROM ledgerlock.protected_table p, pg_catalog.unnest(p.mutable_columns) AS m
                     WHERE p.tbl = r.child) AS x
               WHERE c <> ALL (r.child_columns));
    RETURN pg_catalog.format('BEFORE INSERT OR UPDATE OR DELETE ON %s FOR EACH ROW '
                             'EXECUTE FUNCTION ledgerlock._ll30_r%s_line(%L, %L%s)',
                             r.child, r.id, rest, listed, ', ' || exempt);
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._ref_lines_trigger(integer) FROM PUBLIC;

-- The mark a lines rule's installed trigger gives a scope of its header table (null: no trigger; infinity: no
-- marks, every header is probed): read from the trigger itself, as _period_installed_mark reads R3's.
CREATE OR REPLACE FUNCTION ledgerlock._ref_installed_mark(rule_id integer, scope text)
RETURNS date
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ledgerlock._mark_of_args(a.args[1], a.args[2], _ref_installed_mark.scope, 'infinity')
    FROM ledgerlock.reference_rule x
    JOIN pg_catalog.pg_trigger t ON t.tgrelid = x.child AND t.tgname = 'll_30_r' || x.id || '_lines'
    CROSS JOIN LATERAL (SELECT ledgerlock._trigger_args(t.tgargs) AS args) a
    WHERE x.id = _ref_installed_mark.rule_id
$$;
REVOKE ALL ON FUNCTION ledgerlock._ref_installed_mark(integer, text) FROM PUBLIC;

-- After a new window of a scope (ledgerlock._raise_period_marks): re-create in place the trigger of every lines
-- rule whose header table the window applies to and whose installed mark for the scope it raises.
CREATE OR REPLACE FUNCTION ledgerlock._ref_raise_marks(scope text, to_date date, ledgers text[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r ledgerlock.reference_rule;
BEGIN
    FOR r IN
        SELECT x.* FROM ledgerlock.reference_rule x JOIN ledgerlock.protected_table p ON p.tbl = x.parent
        WHERE x.kind = 'lines' AND p.date_column IS NOT NULL
          AND (_ref_raise_marks.ledgers IS NULL OR p.ledger = ANY (_ref_raise_marks.ledgers))
          AND ledgerlock._relation_exists(x.child) AND ledgerlock._relation_exists(x.parent)
          AND NOT coalesce(ledgerlock._ref_installed_mark(x.id, _ref_raise_marks.scope) >= _ref_raise_marks.to_date,
                           false)
        ORDER BY x.child::oid, x.id
    LOOP
        PERFORM ledgerlock._replace_guard_trigger(r.child, ('ll_30_r' || r.id || '_lines')::name,
                                                  ledgerlock._ref_lines_trigger(r.id));
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._ref_raise_marks(text, date, text[]) FROM PUBLIC;

-- Install the ll_30 guards of one table from every rule it takes part in (as parent, child or line).
CREATE OR REPLACE FUNCTION ledgerlock._ref_install_table(tbl regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r ledgerlock.reference_rule;
    fn text;
    args text;
    cond_new text;
    cond_old text;
    not_null text;
BEGIN
    IF NOT ledgerlock._relation_exists(tbl) THEN
        RETURN;  -- dropped while a rule named it (no DDL guard refused it): its triggers went with it
    END IF;
    PERFORM ledgerlock._drop_guard_triggers(tbl, 'll_30_');
    -- a rule whose other table was dropped guards nothing any more (doctor names it, unprotect_* removes it)
    FOR r IN SELECT * FROM ledgerlock.reference_rule x
             WHERE (x.parent = tbl OR x.child = tbl)
               AND ledgerlock._relation_exists(x.parent) AND ledgerlock._relation_exists(x.child)
             ORDER BY x.id LOOP
        PERFORM ledgerlock._ref_generate_functions(r.id);
        fn := 'ledgerlock._ll30_r' || r.id;
        IF r.kind = 'referenced' AND r.parent = tbl THEN
            args := (SELECT pg_catalog.string_agg(pg_catalog.quote_literal(c), ', ')
                     FROM pg_catalog.unnest(ledgerlock._exempt_columns(tbl)) AS c);
            IF 'update' = ANY (r.operations) THEN
                PERFORM ledgerlock._create_guard_trigger(tbl, ('ll_30_r' || r.id || '_parent_update')::name,
                    pg_catalog.format('BEFORE UPDATE ON %s FOR EACH ROW WHEN (%s) EXECUTE FUNCTION %s_parent(%s)',
                                      tbl, ledgerlock._exempt_change_test(tbl, false, false), fn, coalesce(args, '')));
            END IF;
            IF 'delete' = ANY (r.operations) THEN
                PERFORM ledgerlock._create_guard_trigger(tbl, ('ll_30_r' || r.id || '_parent_delete')::name,
                    pg_catalog.format('BEFORE DELETE ON %s FOR EACH ROW EXECUTE FUNCTION %s_parent()', tbl, fn));
            END IF;
        END IF;
        IF r.kind = 'referenced' AND r.child = tbl THEN
            -- Only a child row that references a parent and matches the condition freezes it, so only
            -- those take the lock: the key comparison and the condition are in the WHEN clause.
            cond_new := coalesce(ledgerlock._condition_as(r.child_condition_sql, 'NEW'), 'true');
            cond_old := coalesce(ledgerlock._condition_as(r.child_condition_sql, 'OLD'), 'true');
            not_null := (SELECT pg_catalog.string_agg(pg_catalog.format('NEW.%I IS NOT NULL', c), ' AND ')
                         FROM pg_catalog.unnest(r.child_columns) AS c);
            PERFORM ledgerlock._create_guard_trigger(tbl, ('ll_30_r' || r.id || '_child_insert')::name,
                pg_catalog.format('BEFORE INSERT ON %s FOR EACH ROW WHEN (%s AND coalesce((%s), false)) '
                                  'EXECUTE FUNCTION %s_child()', tbl, not_null, cond_new, fn));
            PERFORM ledgerlock._create_guard_trigger(tbl, ('ll_30_r' || r.id || '_child_update')::name,
                pg_catalog.format('BEFORE UPDATE ON %s FOR EACH ROW WHEN (%s AND coalesce((%s), false) AND '
                                  '(%s IS DISTINCT FROM %s OR NOT coalesce((%s), false))) '
                                  'EXECUTE FUNCTION %s_child()', tbl, not_null, cond_new,
                                  ledgerlock._ref_tuple('NEW', r.child_columns),
                                  ledgerlock._ref_tuple('OLD', r.child_columns), cond_old, fn));
        END IF;
        IF r.kind = 'lines' AND r.parent = tbl AND ledgerlock._final_condition(tbl, 'NEW') IS NOT NULL THEN
            -- the header becoming final: inserted final, or updated from not final to final; the mark is
            -- written by the rule's generated _mark function, else by the generic one (see _ref_plain_key)
            args := CASE WHEN ledgerlock._ref_plain_key(tbl, r.parent_columns) IS NOT NULL THEN fn || '_mark()'
                         ELSE pg_catalog.format('ledgerlock._ref_mark_final(%L, %s)', r.id,
                                                (SELECT pg_catalog.string_agg(pg_catalog.quote_literal(c), ', ')
                                                 FROM pg_catalog.unnest(r.parent_columns) AS c)) END;
            PERFORM ledgerlock._create_guard_trigger(tbl, ('ll_30_r' || r.id || '_header_insert')::name,
                pg_catalog.format('AFTER INSERT ON %s FOR EACH ROW WHEN (coalesce((%s), false)) '
                                  'EXECUTE FUNCTION %s', tbl, ledgerlock._final_condition(tbl, 'NEW'), args));
            PERFORM ledgerlock._create_guard_trigger(tbl, ('ll_30_r' || r.id || '_header_final')::name,
                pg_catalog.format('AFTER UPDATE ON %s FOR EACH ROW WHEN (coalesce((%s), false) AND NOT '
                                  'coalesce((%s), false)) EXECUTE FUNCTION %s',
                                  tbl, ledgerlock._final_condition(tbl, 'NEW'), ledgerlock._final_condition(tbl, 'OLD'),
                                  args));
        END IF;
        IF r.kind = 'lines' AND r.child = tbl THEN
            PERFORM ledgerlock._create_guard_trigger(tbl, ('ll_30_r' || r.id || '_lines')::name,
                                                     ledgerlock._ref_lines_trigger(r.id));
        END IF;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._ref_install_table(regclass) FROM PUBLIC;

-- Hook run by protect() and reinstall_guards(): this table's guards, and those of its partner tables
-- that are not protected themselves (reinstall_guards only visits protected tables).
CREATE OR REPLACE FUNCTION ledgerlock._install_30_referential(tbl regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t regclass;
BEGIN
    PERFORM ledgerlock._ref_install_table(tbl);
    FOR t IN
        SELECT DISTINCT u.t FROM ledgerlock.reference_rule x, LATERAL (VALUES (x.parent), (x.child)) AS u(t)
        WHERE (x.parent = tbl OR x.child = tbl) AND u.t <> tbl
          AND NOT EXISTS (SELECT FROM ledgerlock.protected_table p WHERE p.tbl = u.t)
    LOOP
        PERFORM ledgerlock._ref_install_table(t);
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._install_30_referential(regclass) FROM PUBLIC;

-- Hook run by reinstall_guards() (and so by `ledgerlock migrate`): the guards of every table in a rule that
-- is not protected itself - protected tables were just refreshed through _install_30_referential.
CREATE OR REPLACE FUNCTION ledgerlock._refresh_30_referential()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t regclass;
BEGIN
    FOR t IN
        SELECT DISTINCT u.t FROM ledgerlock.reference_rule x, LATERAL (VALUES (x.parent), (x.child)) AS u(t)
        WHERE NOT EXISTS (SELECT FROM ledgerlock.protected_table p WHERE p.tbl = u.t)
    LOOP
        PERFORM ledgerlock._ref_install_table(t);
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._refresh_30_referential() FROM PUBLIC;

-- Hook run by unprotect(): the rules this table takes part in go with it (audited), and the partner
-- tables lose their guards for those rules.
CREATE OR REPLACE FUNCTION ledgerlock._uninstall_30_referential(tbl regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ids integer[] := ARRAY(SELECT x.id FROM ledgerlock.reference_rule x WHERE x.parent = tbl OR x.child = tbl);
BEGIN
    PERFORM ledgerlock._drop_guard_triggers(tbl, 'll_30_');
    IF pg_catalog.cardinality(ids) > 0 THEN
        PERFORM ledgerlock._ref_remove(ids, pg_catalog.format('unprotect %s', tbl));
    END IF;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._uninstall_30_referential(regclass) FROM PUBLIC;
