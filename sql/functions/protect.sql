-- Registering tables: protect, unprotect, and the installation of every rule's guards.
--
-- The rules are listed by ledgerlock._rules(), each with its installer (and, when it creates more than
-- triggers, its uninstaller). protect() runs every installer in NN order, in one transaction: an installer
-- that refuses the configuration rolls the whole call back, so nothing is ever half-installed. Installers
-- drop and recreate their own ll_NN_ triggers, so calling protect again reconfigures cleanly.

-- The rules, in the order their guards fire (PostgreSQL fires triggers of one timing in name order, and
-- ll_NN_ names them): number, name, the DESIGN rule, and the hooks protect, unprotect, reinstall_guards and
-- why_locked call. why_unprotected: the why hooks also explain rows of tables that are not protected (R4
-- freezes a parent that need not be protected itself). generated_prefix: the names of the trigger functions
-- the rule generates per table or rule. A function rather than a table: the list is code, installed and
-- fingerprinted with the hooks it names, and each name is resolved when it is read, so a missing hook fails
-- the call (42883) instead of being skipped.
CREATE OR REPLACE FUNCTION ledgerlock._rules()
RETURNS TABLE(nn text, name text, design_rule text, install regprocedure, uninstall regprocedure,
              refresh regprocedure, why regprocedure[], why_unprotected boolean, generated_prefix text)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT r.nn, r.name, r.design_rule, r.install::regprocedure, r.uninstall::regprocedure,
           r.refresh::regprocedure, r.why::regprocedure[], r.why_unprotected, r.generated_prefix
    FROM (VALUES
        ('00', 'truncate', 'all', 'ledgerlock._install_00_truncate(regclass)', NULL, NULL, '{}', false, NULL),
        ('10', 'final', 'R1', 'ledgerlock._install_10_final(regclass)', NULL, NULL,
         '{"ledgerlock._why_10_final(regclass,jsonb)"}', false, '_ll10_x'),
        ('20', 'period', 'R3', 'ledgerlock._install_20_period(regclass)', 'ledgerlock._uninstall_20_period(regclass)',
         NULL, '{"ledgerlock._why_20_period(regclass,jsonb)"}', false, '_ll20_t'),
        ('30', 'referential', 'R4', 'ledgerlock._install_30_referential(regclass)',
         'ledgerlock._uninstall_30_referential(regclass)', 'ledgerlock._refresh_30_referential()',
         '{"ledgerlock._why_30_referenced(regclass,jsonb)","ledgerlock._why_31_lines(regclass,jsonb)"}', true,
         '_ll30_r'),
        ('40', 'numbering', 'R2', 'ledgerlock._install_40_numbering(regclass)',
         'ledgerlock._uninstall_40_numbering(regclass)', NULL, '{}', false, '_ll40_t'),
        ('90', 'audit', 'R5', 'ledgerlock._install_90_audit(regclass)', 'ledgerlock._uninstall_90_audit(regclass)',
         NULL, '{}', false, '_ll90_t')
    ) AS r(nn, name, design_rule, install, uninstall, refresh, why, why_unprotected, generated_prefix)
    ORDER BY r.nn
$$;
REVOKE ALL ON FUNCTION ledgerlock._rules() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._rules() TO ledgerlock_admin, ledgerlock_auditor;

-- What a stored expression (a parse tree as text: a view's rule, a trigger's WHEN) converts to text by an
-- output function PostgreSQL marks immutable whose text still follows a session setting: float4, float8 and
-- the geometric types print by extra_float_digits, bytea by bytea_output. PostgreSQL's own check of index
-- expressions lets them by; R1's WHEN clause and R4's guards evaluate final_when and child_condition in the
-- writer's session, where under extra_float_digits = -15 a final row stopped matching. One phrase per type
-- ("converts a double precision value to text, which prints by the session's extra_float_digits"). The
-- converted value's type is the first type its node names before a nested node; a node that names its type
-- only after its argument (a relabel, a field of a row) is judged by every type the expression names.
-- _screen_condition refuses such a condition; doctor reports one stored before it did.
CREATE OR REPLACE FUNCTION ledgerlock._settings_printed(tree text)
RETURNS SETOF text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on  -- its literals hold backslashes
AS $$
    SELECT pg_catalog.format('converts a %s value to text, which prints by the session''s %s',
                             pg_catalog.format_type(b.base, NULL),
                             CASE WHEN b.base = 'pg_catalog.bytea'::pg_catalog.regtype THEN 'bytea_output'
                                  ELSE 'extra_float_digits' END)
    FROM (SELECT DISTINCT ledgerlock._base_type(t.id) AS base
          FROM pg_catalog.regexp_matches(tree, '\{COERCEVIAIO :arg \{\w+([^{]*)', 'g') AS io(m)
          CROSS JOIN LATERAL (
              SELECT x[1]::oid AS id FROM pg_catalog.regexp_matches(io.m[1], ':\w*type(?:id)? (\d+)', 'g') AS x
              UNION ALL
              SELECT x[1]::oid FROM pg_catalog.regexp_matches(tree, ':\w*type(?:id)? (\d+)', 'g') AS x
              WHERE io.m[1] !~ ':\w*type(?:id)? \d+') AS t
          WHERE EXISTS (SELECT FROM pg_catalog.pg_type y WHERE y.oid = t.id)) AS b
    WHERE b.base IN ('pg_catalog.float4'::pg_catalog.regtype, 'pg_catalog.float8'::pg_catalog.regtype,
                     'pg_catalog.bytea'::pg_catalog.regtype, 'pg_catalog.point'::pg_catalog.regtype,
                     'pg_catalog.lseg'::pg_catalog.regtype, 'pg_catalog.line'::pg_catalog.regtype,
                     'pg_catalog.box'::pg_catalog.regtype, 'pg_catalog.path'::pg_catalog.regtype,
                     'pg_catalog.polygon'::pg_catalog.regtype, 'pg_catalog.circle'::pg_catalog.regtype)
    ORDER BY 1
$$;
REVOKE ALL ON FUNCTION ledgerlock._settings_printed(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._settings_printed(text) TO ledgerlock_admin, ledgerlock_auditor;  -- doctor

-- Screen a condition (final_when, child_condition) that ledgerlock's definer code will run later
-- (number_gaps, why_locked, the R4 guards): it may call only immutable PostgreSQL built-ins, so that it
-- can neither reach ledgerlock's internals nor depend on the clock or the session; and a final_when may not
-- read a mutable column (a final row would stop being final by changing it). view_oid is the scratch view
-- _deparse_condition made of the condition; 22023 names every offender.
CREATE OR REPLACE FUNCTION ledgerlock._screen_condition(tbl regclass, view_oid oid, parameter text, condition text,
                                                        expr text, mutable_columns name[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on  -- its literals hold backslashes
AS $$
DECLARE
    tree text := (SELECT r.ev_action::text FROM pg_catalog.pg_rewrite r WHERE r.ev_class = view_oid);
    offenders text[];
    scratch text := '_ll_screen_' || pg_catalog.pg_current_xact_id()::text;
BEGIN
    -- Columns read: the view's dependencies on the table's columns.
    offenders := ARRAY(
        SELECT pg_catalog.format('reads %I, a mutable column: a final row could stop being final by changing it',
                                 a.attname)
        FROM pg_catalog.pg_depend d
        JOIN pg_catalog.pg_rewrite r ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = r.oid
        JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
        WHERE r.ev_class = view_oid AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid = tbl
          AND a.attname = ANY (coalesce(mutable_columns, '{}'))
        ORDER BY a.attnum);
    -- Virtual generated columns read (PostgreSQL 18 on): triggers evaluate the condition over rows in which
    -- PostgreSQL has not computed them.
    offenders := offenders || ARRAY(
        SELECT pg_catalog.format('reads %I, a virtual generated column, which PostgreSQL does not compute for '
                                 'the triggers that evaluate the condition', a.attname)
        FROM pg_catalog.pg_depend d
        JOIN pg_catalog.pg_rewrite r ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = r.oid
        JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
        WHERE r.ev_class = view_oid AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid = tbl
          AND a.attgenerated = 'v'
        ORDER BY a.attnum);
    -- Functions and operators: read from the stored parse tree, since pg_depend records no dependency on
    -- built-ins (they are pinned).
    offenders := offenders || ARRAY(
        SELECT pg_catalog.format('calls %s, which is %s', p.oid::regprocedure,
            CASE WHEN p.pronamespace <> 'pg_catalog'::regnamespace THEN 'not a PostgreSQL built-in'
                 WHEN p.prokind <> 'f' OR p.proretset THEN 'not a plain function'
                 WHEN p.provolatile = 'v' THEN 'volatile'
                 ELSE 'stable' END)
        FROM (SELECT DISTINCT m[1]::oid AS id
              FROM pg_catalog.regexp_matches(tree, ':(?:funcid|aggfnoid|winfnoid) (\d+)', 'g') AS m) f
        JOIN pg_catalog.pg_proc p ON p.oid = f.id
        WHERE p.pronamespace <> 'pg_catalog'::regnamespace OR p.provolatile <> 'i' OR p.prokind <> 'f'
           OR p.proretset
        ORDER BY p.oid::regprocedure::text);
    offenders := offenders || ARRAY(
        SELECT pg_catalog.format('uses operator %s, which is %s', o.oid::regoperator,
            CASE WHEN o.oprnamespace <> 'pg_catalog'::regnamespace OR p.pronamespace <> 'pg_catalog'::regnamespace
                 THEN 'not a PostgreSQL built-in'
                 WHEN p.provolatile = 'v' THEN 'volatile' ELSE 'stable' END)
        FROM (SELECT m[1]::oid AS id
              FROM pg_catalog.regexp_matches(tree, ':opno (\d+)', 'g') AS m
              UNION
              SELECT pg_catalog.unnest(pg_catalog.string_to_array(m[1], ' '))::oid
              FROM pg_catalog.regexp_matches(tree, ':opnos \(o ([\d ]+)\)', 'g') AS m) f
        JOIN pg_catalog.pg_operator o ON o.oid = f.id
        JOIN pg_catalog.pg_proc p ON p.oid = o.oprcode
        WHERE o.oprnamespace <> 'pg_catalog'::regnamespace OR p.pronamespace <> 'pg_catalog'::regnamespace
           OR p.provolatile <> 'i'
        ORDER BY o.oid::regoperator::text);
    -- Values converted to text whose text follows a session setting though PostgreSQL calls it immutable.
    offenders := offenders || ARRAY(SELECT ledgerlock._settings_printed(tree));
    -- A domain's CHECK constraints run arbitrary functions on a cast to it.
    offenders := offenders || ARRAY(
        SELECT pg_catalog.format('casts to domain %s, whose checks run code', t.oid::regtype)
        FROM pg_catalog.pg_depend d
        JOIN pg_catalog.pg_rewrite r ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = r.oid
        JOIN pg_catalog.pg_type t ON d.refclassid = 'pg_catalog.pg_type'::regclass AND t.oid = d.refobjid
        WHERE r.ev_class = view_oid AND t.typtype = 'd'
        ORDER BY 1);
    IF pg_catalog.cardinality(offenders) > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('%s %L %s', parameter, condition, pg_catalog.array_to_string(offenders, '; ')),
            HINT = 'use the stored columns, constants, operators and immutable built-in functions only, e.g. '
                   'status in (''approved'', ''paid'') and coalesce(note, '''') <> ''void''';
    END IF;
    -- What the walk above does not name: text conversions whose result depends on session settings (a date
    -- read as text follows DateStyle). PostgreSQL's own check of index expressions covers them: the
    -- condition is indexed on an empty copy of the table.
    BEGIN
        EXECUTE pg_catalog.format('CREATE TABLE ledgerlock.%I (LIKE %s)', scratch, tbl);
        EXECUTE pg_catalog.format('CREATE INDEX ON ledgerlock.%I ((%s))', scratch,
                                  ledgerlock._condition_as(expr, ''));
        EXECUTE pg_catalog.format('DROP TABLE ledgerlock.%I', scratch);
    EXCEPTION WHEN invalid_object_definition THEN  -- 42P17: functions in index expression must be IMMUTABLE
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('%s %L converts values through text in a way that depends on session '
                                        'settings (DateStyle, TimeZone...)', parameter, condition),
            HINT = 'compare typed values instead, e.g. issued_on >= date ''2025-01-01''';
    END;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._screen_condition(regclass, oid, text, text, text, name[]) FROM PUBLIC;

-- Validate a condition (final_when of protect, child_condition of protect_referenced: parameter names it)
-- and return it as PostgreSQL deparses it, columns qualified as ll_row. The condition is admin input that
-- the definer runs: it is screened (one expression, no statement separators or comments), parsed by
-- PostgreSQL itself as a view over the table, and its functions, operators and columns checked
-- (_screen_condition) before it is kept.
CREATE OR REPLACE FUNCTION ledgerlock._deparse_condition(tbl regclass, condition text, parameter text,
                                                         mutable_columns name[])
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on  -- its literals hold backslashes
AS $$
DECLARE
    scratch text := '_ll_deparse_' || pg_catalog.pg_current_xact_id()::text;  -- one per transaction
    view_oid oid;
    view_def text;
    expr text;
    result_type regtype;
BEGIN
    IF condition IS NULL OR pg_catalog.btrim(condition) = '' THEN
        RETURN NULL;
    END IF;
    IF condition ~ '(;|--|/\*)' THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('%s %L must be a single condition (no ";" and no comments)',
                                        parameter, condition);
    END IF;
    PERFORM ledgerlock._ddl_permit('ledgerlock'::regnamespace, true);  -- scratch objects, under the DDL guard
    BEGIN
        -- The second FROM item makes PostgreSQL qualify every column (as ll_row.col) when deparsing. It has
        -- no column, so none of the table's can be ambiguous with it (it had one, x: a table's column x was).
        EXECUTE pg_catalog.format('CREATE VIEW ledgerlock.%I AS SELECT (%s) AS v '
                                  'FROM %s AS ll_row, (SELECT) AS ll_unused', scratch, condition, tbl);
    EXCEPTION WHEN OTHERS THEN
        RAISE EXCEPTION USING ERRCODE = SQLSTATE,
            MESSAGE = pg_catalog.format('%s %L is not a valid condition on %s: %s', parameter, condition, tbl,
                                        SQLERRM);
    END;
    view_oid := pg_catalog.to_regclass('ledgerlock.' || scratch);
    SELECT a.atttypid::regtype INTO result_type FROM pg_catalog.pg_attribute a
    WHERE a.attrelid = view_oid AND a.attname = 'v';
    view_def := pg_catalog.pg_get_viewdef(view_oid);
    IF result_type <> 'boolean'::regtype THEN
        RAISE EXCEPTION USING ERRCODE = '42804',
            MESSAGE = pg_catalog.format('%s %L is of type %s, not boolean', parameter, condition, result_type),
            HINT = 'write a condition such as: status in (''approved'', ''paid'')';
    END IF;
    expr := pg_catalog.substring(view_def,
        -- the table's name may hold spaces ("Doc Header"): anything up to the alias
        '^\s*SELECT\s+(.*)\s+AS v\s+FROM\s+.+\s+ll_row,\s+\(\s*SELECT\s*\)\s+ll_unused;?\s*$');
    IF expr IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('%s %L must be one condition over the columns of %s', parameter, condition,
                                        tbl);
    END IF;
    PERFORM ledgerlock._screen_condition(tbl, view_oid, parameter, condition, expr, mutable_columns);
    EXECUTE pg_catalog.format('DROP VIEW ledgerlock.%I', scratch);
    PERFORM ledgerlock._ddl_permit('ledgerlock'::regnamespace, false);
    RETURN expr;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._deparse_condition(regclass, text, text, name[]) FROM PUBLIC;

-- A column of the table, or a clear error naming the parameter.
CREATE OR REPLACE FUNCTION ledgerlock._column_type(tbl regclass, col name, parameter text)
RETURNS regtype
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t regtype;
BEGIN
    SELECT a.atttypid::regtype INTO t FROM pg_catalog.pg_attribute a
    WHERE a.attrelid = tbl AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped;
    IF t IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '42703',
            MESSAGE = pg_catalog.format('%s: table %s has no column %I', parameter, tbl, col);
    END IF;
    RETURN t;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._column_type(regclass, name, text) FROM PUBLIC;

-- 22023 for a generated column named as the date, scope or number of a table's rows (_generated_problem),
-- with the expression it is computed from: the columns that expression reads can be named instead.
CREATE OR REPLACE FUNCTION ledgerlock._check_not_generated(tbl regclass, col name, parameter text)
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    problem text := ledgerlock._generated_problem(tbl, col, true);
BEGIN
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('%s: %s', parameter, problem),
            HINT = CASE WHEN parameter = 'number_column'
                        THEN 'ledgerlock writes the number into it: name a plain text column'
                        ELSE pg_catalog.format('name the column %I is computed from (%s), or make %I a plain column',
                                               col, (SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid)
                                                     FROM pg_catalog.pg_attrdef d JOIN pg_catalog.pg_attribute a
                                                       ON a.attrelid = d.adrelid AND a.attnum = d.adnum
                                                     WHERE d.adrelid = tbl AND a.attname = col), col) END;
    END IF;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._check_not_generated(regclass, name, text) FROM PUBLIC;

-- Why a column of type typ cannot hold a scope, or null when it can. A scope is compared as text with the
-- scopes that lock windows and scope grants name, so one value must print one way whatever the session:
-- integers, text, varchar and uuids do, and domains over them. A float prints by the client's
-- extra_float_digits (1.5 as '2' under -15), two equal numerics print differently ('1.5', '1.50'), a char(n)
-- keeps its padding in the row's image ('B1  ', which a lock of 'B1' does not name), and other types print
-- by DateStyle, TimeZone, IntervalStyle or bytea_output: a client could write a row of a locked scope under a
-- text no lock names. protect refuses such a column; doctor reports one already there.
CREATE OR REPLACE FUNCTION ledgerlock._scope_type_problem(typ regtype)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN b IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype, 'text'::regtype, 'varchar'::regtype,
                           'uuid'::regtype) THEN NULL
                WHEN b IN ('float4'::regtype, 'float8'::regtype)
                THEN 'a float prints by the client''s extra_float_digits'
                WHEN b = 'numeric'::regtype THEN 'equal numbers print differently (1.5 and 1.50)'
                WHEN b = 'bpchar'::regtype
                THEN 'a char(n) keeps its padding in the row''s image (''B1  '', which a lock of ''B1'' does not name)'
                ELSE 'its text can depend on the client''s settings' END
    FROM (SELECT ledgerlock._base_type(typ) AS b) AS base
$$;
REVOKE ALL ON FUNCTION ledgerlock._scope_type_problem(regtype) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._scope_type_problem(regtype) TO ledgerlock_admin, ledgerlock_auditor;  -- doctor

-- Why column col of rel cannot hold a scope, or null when it can: its type (_scope_type_problem), or its
-- collation. A nondeterministic collation (CREATE COLLATION ... deterministic = false: case- or
-- accent-insensitive) makes values that print differently equal: the application's own queries read 'ACME' and
-- 'acme' as one company, while a lock, a scope mark and a number series name the text, so a row of a locked
-- company written as 'ACME' passed a lock of 'acme' (measured 2026-11-30 on PostgreSQL 15, ICU). A deterministic
-- collation, whatever its order, calls two texts equal only when they are the same bytes.
CREATE OR REPLACE FUNCTION ledgerlock._scope_column_problem(rel regclass, col name)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(ledgerlock._scope_type_problem(a.atttypid),
                    CASE WHEN NOT co.collisdeterministic
                         THEN pg_catalog.format('its collation %s is nondeterministic: values it calls equal (''ACME'' '
                                                'and ''acme'') are different scopes to a lock', a.attcollation::regcollation)
                    END)
    FROM pg_catalog.pg_attribute a
    LEFT JOIN pg_catalog.pg_collation co ON co.oid = a.attcollation
    WHERE a.attrelid = rel AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped
$$;
REVOKE ALL ON FUNCTION ledgerlock._scope_column_problem(regclass, name) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._scope_column_problem(regclass, name) TO ledgerlock_admin, ledgerlock_auditor;  -- doctor

-- Where a scope_column's values live: the column of tbl, or the parent's column it names
-- (ledgerlock._scope_path), with its type. No row for a column that does not exist.
CREATE OR REPLACE FUNCTION ledgerlock._scope_source(tbl regclass, scope_column text)
RETURNS TABLE(rel regclass, col name, typ regtype)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT a.attrelid::regclass, a.attname, a.atttypid::regtype
    FROM (SELECT 1) AS one
    LEFT JOIN LATERAL ledgerlock._scope_path(tbl, scope_column) sp ON true
    JOIN pg_catalog.pg_attribute a ON a.attrelid = coalesce(sp.parent, tbl)
                                  AND a.attname = coalesce(sp.parent_column, scope_column)
                                  AND a.attnum > 0 AND NOT a.attisdropped
$$;
REVOKE ALL ON FUNCTION ledgerlock._scope_source(regclass, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._scope_source(regclass, text) TO ledgerlock_admin, ledgerlock_auditor;  -- doctor

-- 42804 for a scope_column (its path already checked by _check_scope_column) that cannot hold a scope.
CREATE OR REPLACE FUNCTION ledgerlock._check_scope_type(tbl regclass, scope_column name)
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s record := ledgerlock._scope_source(tbl, scope_column);
    problem text := ledgerlock._scope_column_problem(s.rel, s.col);
BEGIN
    IF problem IS NOT NULL AND ledgerlock._scope_type_problem(s.typ) IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '42804',
            MESSAGE = pg_catalog.format('scope_column: %s.%I has a nondeterministic collation; a scope must compare '
                                        'equal only to the same text', s.rel, s.col),
            DETAIL = pg_catalog.format('a scope is compared as text with the scopes locks name, and %s', problem),
            HINT = pg_catalog.format('give the column a deterministic collation (ALTER TABLE %s ALTER COLUMN %I TYPE '
                                     '%s COLLATE "default"), or scope by a company id', s.rel, s.col, s.typ);
    ELSIF problem IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '42804',
            MESSAGE = pg_catalog.format('scope_column: %s.%I is of type %s; a scope must be an integer, text or '
                                        'uuid column', s.rel, s.col, s.typ),
            DETAIL = pg_catalog.format('a scope is compared as text with the scopes locks name, and %s', problem),
            HINT = 'scope by an integer, text or uuid column (a company id or code)';
    END IF;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._check_scope_type(regclass, name) FROM PUBLIC;

-- A scope_column: a column of the table, or 'fk_column.parent_column' (the scope is the parent_column of the
-- row the foreign key on fk_column references: ledgerlock._scope_path). One hop: a parent's own parent is
-- not followed, so that a write reads its scope with one index probe. The parent gets guards of its own
-- (ledgerlock._ll20_<key>_parent), so ledgerlock's installer must own it as it owns the table.
CREATE OR REPLACE FUNCTION ledgerlock._check_scope_column(tbl regclass, scope_column name, number_format text)
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    fk name := pg_catalog.split_part(scope_column, '.', 1);
    pcol text := pg_catalog.substr(scope_column, pg_catalog.strpos(scope_column, '.') + 1);
    fks regclass[];
    parent regclass;
    unenforced name;
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_attribute a
               WHERE a.attrelid = tbl AND a.attname = scope_column AND a.attnum > 0 AND NOT a.attisdropped)
       OR pg_catalog.strpos(scope_column, '.') = 0 THEN
        PERFORM ledgerlock._column_type(tbl, scope_column, 'scope_column');
        PERFORM ledgerlock._check_not_generated(tbl, scope_column, 'scope_column');
        RETURN;
    END IF;
    IF pg_catalog.strpos(pcol, '.') > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('scope_column: %L follows more than one foreign key; a scope comes from '
                                        'the table or from the row one foreign key references '
                                        '(''fk_column.parent_column'')', scope_column);
    END IF;
    PERFORM ledgerlock._column_type(tbl, fk, 'scope_column');
    SELECT pg_catalog.array_agg(c.confrelid::regclass ORDER BY c.oid),
           (pg_catalog.array_agg(c.conname ORDER BY c.oid) FILTER (WHERE NOT ledgerlock._fk_enforced(c.oid)))[1]
      INTO fks, unenforced
    FROM pg_catalog.pg_constraint c JOIN pg_catalog.pg_attribute a ON a.attrelid = tbl AND a.attname = fk
    WHERE c.conrelid = tbl AND c.contype = 'f' AND c.conkey = ARRAY[a.attnum]
      AND NOT ledgerlock._fk_partition_clone(c.oid);
    IF fks IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('scope_column: %s.%I is not a single-column foreign key, so %L names no '
                                        'parent row to take the scope from', tbl, fk, scope_column),
            HINT = pg_catalog.format('ALTER TABLE %s ADD FOREIGN KEY (%I) REFERENCES <parent>, or name a column of '
                                     '%s', tbl, fk, tbl);
    ELSIF pg_catalog.cardinality(fks) > 1 THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('scope_column: %s.%I has %s foreign keys (to %s); the scope must come from '
                                        'one parent', tbl, fk, pg_catalog.cardinality(fks),
                                        pg_catalog.array_to_string(fks, ', '));
    END IF;
    parent := fks[1];
    IF unenforced IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('%L: the foreign key %I of %s.%I is NOT ENFORCED, so a row may reference a '
                                        'parent that does not exist, and take its scope or date when that parent '
                                        'is written', scope_column, unenforced, tbl, fk),
            HINT = pg_catalog.format('ALTER TABLE %s ALTER CONSTRAINT %I ENFORCED', tbl, unenforced);
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_attribute a
                   WHERE a.attrelid = parent AND a.attname = pcol AND a.attnum > 0 AND NOT a.attisdropped) THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('scope_column: %I references %s, which has no column %I', fk, parent, pcol);
    END IF;
    IF NOT pg_catalog.pg_has_role(current_user, (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = parent),
                                  'USAGE') THEN
        RAISE EXCEPTION USING ERRCODE = '42501',
            MESSAGE = pg_catalog.format('scope_column: the scope of %s comes from %s, which ledgerlock (installed '
                                        'as %s) does not own, so it cannot guard its scope column', tbl, parent,
                                        current_user),
            HINT = pg_catalog.format('ALTER TABLE %s OWNER TO %I', parent, current_user);
    END IF;
    PERFORM ledgerlock._check_row_security(parent, 'scope_column');
    IF pg_catalog.strpos(coalesce(number_format, ''), '{SCOPE') > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('number_format: {SCOPE} needs a scope column of %s itself; its scope comes '
                                        'from %s', tbl, parent),
            HINT = 'number the series without {SCOPE}, or add the scope column to the table';
    END IF;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._check_scope_column(regclass, name, text) FROM PUBLIC;

-- A date column of the table, or 'fk_column.parent_column': the date of the row the foreign key on fk_column
-- references (a journal line dated by its entry), validated as a parent scope is (_check_scope_column). A
-- numbered table keeps its date on itself (its number's year is written when the row is), and a scope and a
-- date that both come from a parent come through one foreign key (one parent row share-locked per write).
CREATE OR REPLACE FUNCTION ledgerlock._check_date_column(tbl regclass, date_column name, scope_column name,
                                                         number_column name)
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    fk name := pg_catalog.split_part(date_column, '.', 1);
    pcol text := pg_catalog.substr(date_column, pg_catalog.strpos(date_column, '.') + 1);
    dp record;
    sp record;
    date_type regtype;
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_attribute a
               WHERE a.attrelid = tbl AND a.attname = date_column AND a.attnum > 0 AND NOT a.attisdropped)
       OR pg_catalog.strpos(date_column, '.') = 0 THEN
        date_type := ledgerlock._column_type(tbl, date_column, 'date_column');
        PERFORM ledgerlock._check_not_generated(tbl, date_column, 'date_column');
        IF date_type NOT IN ('date'::regtype, 'timestamp without time zone'::regtype,
                             'timestamp with time zone'::regtype) THEN
            RAISE EXCEPTION USING ERRCODE = '42804',
                MESSAGE = pg_catalog.format('date_column: %s.%I is of type %s; it must be a date or a timestamp',
                                            tbl, date_column, date_type);
        END IF;
        RETURN;
    END IF;
    IF pg_catalog.strpos(pcol, '.') > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('date_column: %L follows more than one foreign key; a date comes from the '
                                        'table or from the row one foreign key references '
                                        '(''fk_column.parent_column'')', date_column);
    END IF;
    PERFORM ledgerlock._column_type(tbl, fk, 'date_column');
    SELECT * INTO dp FROM ledgerlock._scope_path(tbl, date_column);
    IF NOT FOUND THEN
        -- the same sentences as a parent scope's (which foreign key, which column is missing)
        BEGIN
            PERFORM ledgerlock._check_scope_column(tbl, date_column, NULL);
        EXCEPTION WHEN invalid_parameter_value THEN
            DECLARE
                m text;
                h text;
            BEGIN
                GET STACKED DIAGNOSTICS m = MESSAGE_TEXT, h = PG_EXCEPTION_HINT;
                RAISE EXCEPTION USING ERRCODE = '22023',
                    MESSAGE = pg_catalog.regexp_replace(pg_catalog.regexp_replace(m, '^scope_column:', 'date_column:'),
                                                        'the scope', 'the date'),
                    HINT = h;
            END;
        END;
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('date_column: %L names no parent row of %s', date_column, tbl);
    END IF;
    PERFORM ledgerlock._check_scope_column(tbl, date_column, NULL);  -- one foreign key, an owned parent
    date_type := (SELECT a.atttypid::regtype FROM pg_catalog.pg_attribute a
                  WHERE a.attrelid = dp.parent AND a.attname = dp.parent_column);
    IF date_type NOT IN ('date'::regtype, 'timestamp without time zone'::regtype,
                         'timestamp with time zone'::regtype) THEN
        RAISE EXCEPTION USING ERRCODE = '42804',
            MESSAGE = pg_catalog.format('date_column: %s.%I is of type %s; it must be a date or a timestamp',
                                        dp.parent, dp.parent_column, date_type);
    END IF;
    IF number_column IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('number_column: the date of %s comes from %s; a numbered table keeps its '
                                        'date on itself', tbl, dp.parent),
            HINT = 'add the date column to the table, or number the parent instead';
    END IF;
    SELECT * INTO sp FROM ledgerlock._scope_path(tbl, scope_column);
    IF FOUND AND sp.fk_column <> dp.fk_column THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('scope_column and date_column: the scope of %s comes through %I and its '
                                        'date through %I; both must come through the same foreign key', tbl,
                                        sp.fk_column, dp.fk_column);
    END IF;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._check_date_column(regclass, name, name, name) FROM PUBLIC;

-- Run every rule's installer (kind 'install') or uninstaller ('uninstall') for one table, in NN order.
CREATE OR REPLACE FUNCTION ledgerlock._run_rule_hooks(tbl regclass, kind text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    hook regprocedure;
BEGIN
    IF kind NOT IN ('install', 'uninstall') THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('rule hooks are install or uninstall, not %L', kind);
    END IF;
    FOR hook IN
        SELECT CASE kind WHEN 'install' THEN r.install ELSE r.uninstall END FROM ledgerlock._rules() r ORDER BY r.nn
    LOOP
        CONTINUE WHEN hook IS NULL;
        EXECUTE pg_catalog.format('SELECT %s($1)', hook::oid::regproc) USING tbl;
    END LOOP;
    PERFORM ledgerlock._drop_unused_comparisons();  -- a set of exempt columns no guard tests any more
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._run_rule_hooks(regclass, text) FROM PUBLIC;

-- What a new configuration of a protected table takes away from the one in force: `weakened` loosens a rule
-- over rows already there (final_when, key, date, scope, numbering or ledger changed or removed, mutable
-- columns added); `removed` only drops something (mutable columns), which is stricter but still a change
-- the caller must have meant. Both read as "final_when (status = 'paid') removed".
CREATE OR REPLACE FUNCTION ledgerlock._protect_changes(was ledgerlock.protected_table, will ledgerlock.protected_table,
                                                       OUT weakened text[], OUT removed text[])
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    added name[];
    dropped name[];
BEGIN
    weakened := '{}';
    IF was.final_when_sql IS NOT NULL AND will.final_when_sql IS NULL THEN
        weakened := weakened || pg_catalog.format('final_when (%s) removed', was.final_when);
    ELSIF was.final_when_sql IS DISTINCT FROM will.final_when_sql AND was.final_when_sql IS NOT NULL THEN
        weakened := weakened || pg_catalog.format('final_when (%s) changed to (%s)', was.final_when, will.final_when);
    END IF;
    IF was.key_columns IS DISTINCT FROM will.key_columns THEN
        weakened := weakened || pg_catalog.format('key (%s) changed to (%s)',
            pg_catalog.array_to_string(was.key_columns, ', '), pg_catalog.array_to_string(will.key_columns, ', '));
    END IF;
    IF was.date_column IS DISTINCT FROM will.date_column THEN
        weakened := weakened || pg_catalog.format('date_column %s changed to %s', was.date_column, will.date_column);
    END IF;
    IF was.scope_column IS DISTINCT FROM will.scope_column THEN
        weakened := weakened || CASE WHEN will.scope_column IS NULL
            THEN pg_catalog.format('scope_column %s removed', was.scope_column)
            ELSE pg_catalog.format('scope_column %s changed to %s', coalesce(was.scope_column::text, '(none)'),
                                   will.scope_column) END;
    END IF;
    IF was.number_column IS NOT NULL AND was.number_column IS DISTINCT FROM will.number_column THEN
        weakened := weakened || CASE WHEN will.number_column IS NULL
            THEN pg_catalog.format('number_column %s removed', was.number_column)
            ELSE pg_catalog.format('number_column %s changed to %s', was.number_column, will.number_column) END;
    END IF;
    IF was.number_format IS NOT NULL AND was.number_format IS DISTINCT FROM will.number_format THEN
        weakened := weakened || CASE WHEN will.number_format IS NULL
            THEN pg_catalog.format('number_format %s removed', was.number_format)
            ELSE pg_catalog.format('number_format %s changed to %s', was.number_format, will.number_format) END;
    END IF;
    added := ARRAY(SELECT c FROM pg_catalog.unnest(will.mutable_columns) c WHERE c <> ALL (was.mutable_columns)
                   ORDER BY c);
    IF pg_catalog.cardinality(added) > 0 THEN
        weakened := weakened || pg_catalog.format('mutable columns %s added', pg_catalog.array_to_string(added, ', '));
    END IF;
    IF was.ledger IS NOT NULL AND was.ledger IS DISTINCT FROM will.ledger THEN
        weakened := weakened || CASE WHEN will.ledger IS NULL THEN pg_catalog.format('ledger %s removed', was.ledger)
            ELSE pg_catalog.format('ledger %s changed to %s', was.ledger, will.ledger) END;
    END IF;
    dropped := ARRAY(SELECT c FROM pg_catalog.unnest(was.mutable_columns) c WHERE c <> ALL (will.mutable_columns)
                     ORDER BY c);
    removed := CASE WHEN pg_catalog.cardinality(dropped) > 0
        THEN ARRAY[pg_catalog.format('mutable columns %s removed', pg_catalog.array_to_string(dropped, ', '))]
        ELSE '{}' END;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._protect_changes(ledgerlock.protected_table, ledgerlock.protected_table) FROM PUBLIC;

-- R1 and R3 against one admin: the rules over rows already final, or lying in an active hard window, are
-- never loosened (unprotect, or a weakening re-protect) short of a superuser. The table is locked against
-- writers first (SHARE ROW EXCLUSIVE, what the guards' DDL takes anyway), so no row becomes final between
-- this look and the change. final_tail / locked_tail end the LL001 / LL002 sentences.
CREATE OR REPLACE FUNCTION ledgerlock._assert_rules_may_loosen(cfg ledgerlock.protected_table, action text,
                                                               final_tail text, locked_tail text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r jsonb;
    lk ledgerlock.period_lock;
    day_expr text;
BEGIN
    IF (SELECT a.rolsuper FROM pg_catalog.pg_roles a WHERE a.rolname = session_user) THEN
        RETURN;  -- superusers cannot be stopped, only recorded (the audit event names them)
    END IF;
    EXECUTE pg_catalog.format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', cfg.tbl);
    IF cfg.final_when_sql IS NOT NULL THEN
        EXECUTE pg_catalog.format('SELECT pg_catalog.to_jsonb(ll_row.*) FROM %s AS ll_row WHERE (%s) IS TRUE LIMIT 1',
                                  cfg.tbl, cfg.final_when_sql) INTO r;
        IF r IS NOT NULL THEN
            PERFORM ledgerlock._refuse('LL001',
                pg_catalog.format('%s: %s holds final rows (%s and maybe more)%s', action, cfg.tbl,
                                  ledgerlock.row_label(cfg.tbl, r), final_tail),
                'final rows are permanent: issue a correcting document instead; only a superuser can retire a table '
                'that holds final rows');
        END IF;
    END IF;
    -- The row's accounting date as the guards compute it (ledgerlock._period_date), as an expression.
    day_expr := CASE WHEN EXISTS (SELECT FROM ledgerlock._scope_path(cfg.tbl, cfg.date_column))
        THEN pg_catalog.format('ledgerlock._row_day(%L, pg_catalog.to_jsonb(ll_row.*))', cfg.tbl)
        ELSE ledgerlock._day_sql('ll_row', cfg.date_column, ledgerlock._period_date_kind(cfg.tbl)) END;
    FOR lk IN
        SELECT * FROM ledgerlock.period_lock l
        WHERE l.status = 'active' AND l.level = 'hard'
          AND (l.ledgers IS NULL OR cfg.ledger = ANY (l.ledgers))
          AND (cfg.scope_column IS NOT NULL OR l.scope = '*')
        ORDER BY l.id
    LOOP
        EXECUTE pg_catalog.format('SELECT pg_catalog.to_jsonb(ll_row.*) FROM %s AS ll_row WHERE %s AND %s BETWEEN $2 AND $3 '
                                  'LIMIT 1', cfg.tbl,
                                  CASE WHEN cfg.scope_column IS NULL THEN 'true'
                                       WHEN EXISTS (SELECT FROM ledgerlock._scope_path(cfg.tbl, cfg.scope_column))
                                       THEN pg_catalog.format('ledgerlock._row_scope(%L, pg_catalog.to_jsonb(ll_row.*)) = $1',
                                                              cfg.tbl)
                                       ELSE pg_catalog.format(
                                      'coalesce(pg_catalog.to_jsonb(ll_row.%I) #>> ''{}'', ''*'') = $1',
                                      cfg.scope_column) END,
                                  day_expr)
            INTO r USING lk.scope, lk.from_date, lk.to_date;
        IF r IS NOT NULL THEN
            PERFORM ledgerlock._refuse('LL002',
                pg_catalog.format('%s: %s lies in it, %s', ledgerlock._lock_message(lk),
                                  ledgerlock.row_label(cfg.tbl, r), locked_tail),
                pg_catalog.format('hard lock #%s: unlock it first with ledgerlock.unlock_period(%s, ''<reason>'') '
                                  '(with four-eyes on: request_unlock and a second admin), then %s, then '
                                  'ledgerlock.relock(%s)', lk.id, lk.id, action, lk.id),
                pg_catalog.format('lock_id=%s', lk.id));
        END IF;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._assert_rules_may_loosen(ledgerlock.protected_table, text, text, text) FROM PUBLIC;

-- Protect a table, or reconfigure it. A reconfiguration that takes anything away (_protect_changes) says
-- what and needs weaken_reason (kept in the audit trail); one that loosens the rules over final rows or rows
-- in a hard window is refused (_assert_rules_may_loosen). Long because it validates every argument first,
-- so that nothing is half-applied.
CREATE OR REPLACE FUNCTION ledgerlock.protect(
    tbl regclass,
    date_column name,
    scope_column name DEFAULT NULL,
    final_when text DEFAULT NULL,
    number_column name DEFAULT NULL,
    number_format text DEFAULT NULL,
    mutable_columns name[] DEFAULT '{}',
    ledger text DEFAULT NULL,
    weaken_reason text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
AS $$
DECLARE
    rel record;
    keys name[];
    col name;
    final_sql text;
    was ledgerlock.protected_table;
    will ledgerlock.protected_table;
    weakened text[] := '{}';
    removed text[] := '{}';
    why text;
    before jsonb;  -- the previous configuration, for the audit trail (R5)
BEGIN
    PERFORM ledgerlock._require_capability('admin', 'protect');
    PERFORM ledgerlock._require_unrestricted('protect');
    PERFORM ledgerlock._require_value(tbl IS NOT NULL, 'protect', 'a table');
    PERFORM ledgerlock._require_value(date_column IS NOT NULL, 'protect',
                                      'a date column (the date that places a row in a lock window)');
    -- the mark clock before any table lock, in the order lock operations take them (no deadlock with one)
    PERFORM ledgerlock._tick_mark_clock();

    SELECT c.relname, c.relkind, c.relowner, n.nspname INTO rel
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.oid = tbl;
    IF rel.relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION USING ERRCODE = '42809',
            MESSAGE = pg_catalog.format('protect: %s is not a table', tbl);
    END IF;
    IF EXISTS (SELECT FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
               WHERE i.inhparent = tbl AND NOT c.relispartition) THEN
        -- (the DDL guard refuses a table made to inherit from a protected one: _inherited_protected)
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('protect: %s has tables inheriting from it (%s), whose rows read as its own '
                                        'but are written past its guards', tbl,
                                        (SELECT pg_catalog.string_agg(i.inhrelid::regclass::text, ', '
                                                                      ORDER BY i.inhrelid::regclass::text)
                                         FROM pg_catalog.pg_inherits i WHERE i.inhparent = tbl)),
            HINT = 'move their rows into the table and drop them (or ALTER TABLE ... NO INHERIT), or protect a '
                   'partitioned table, whose partitions ledgerlock guards';
    END IF;
    IF ledgerlock._inheritance_parent(tbl) IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('protect: %s inherits from %s, and a statement on %s writes its rows without '
                                        'firing its statement triggers (the audit capture, the numbering''s settle '
                                        'step)', tbl, ledgerlock._inheritance_parent(tbl),
                                        ledgerlock._inheritance_parent(tbl)),
            HINT = pg_catalog.format('ALTER TABLE %s NO INHERIT %s (or protect a partitioned table, whose '
                                     'partitions ledgerlock guards)', tbl, ledgerlock._inheritance_parent(tbl));
    END IF;
    IF ledgerlock._rule_table(tbl) IS DISTINCT FROM tbl AND ledgerlock._rule_table(tbl) IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('protect: %s is a partition of protected table %s, whose rules it follows',
                                        tbl, ledgerlock._rule_table(tbl));
    END IF;
    IF rel.nspname IN ('ledgerlock', 'ledgerlock_gate', 'pg_catalog', 'information_schema') THEN
        RAISE EXCEPTION USING ERRCODE = '42809',
            MESSAGE = pg_catalog.format('protect: %s is a system or ledgerlock table', tbl);
    END IF;
    PERFORM ledgerlock._check_row_security(tbl, 'protect');
    IF NOT pg_catalog.pg_has_role(current_user, rel.relowner, 'USAGE') THEN
        RAISE EXCEPTION USING ERRCODE = '42501',
            MESSAGE = pg_catalog.format('protect: %s is owned by %s, but ledgerlock is installed as %s, which '
                                        'cannot create its guards on it', tbl, rel.relowner::regrole, current_user),
            HINT = pg_catalog.format('ALTER TABLE %s OWNER TO %I (the owner must be a role applications '
                                     'cannot log in as; see docs/hardening.md)', tbl, current_user);
    END IF;

    SELECT pg_catalog.array_agg(a.attname ORDER BY k.ord) INTO keys
    FROM pg_catalog.pg_index i
    CROSS JOIN LATERAL pg_catalog.unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
    JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
    WHERE i.indrelid = tbl AND i.indisprimary;
    IF keys IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('protect: %s has no primary key; ledgerlock names rows by their key '
                                        'in errors and in the audit trail', tbl),
            HINT = pg_catalog.format('ALTER TABLE %s ADD PRIMARY KEY (...)', tbl);
    END IF;

    IF scope_column IS NOT NULL THEN
        PERFORM ledgerlock._check_scope_column(tbl, scope_column, number_format);
        PERFORM ledgerlock._check_scope_type(tbl, scope_column);
    END IF;
    PERFORM ledgerlock._check_date_column(tbl, date_column, scope_column, number_column);
    IF number_column IS NOT NULL THEN
        PERFORM ledgerlock._column_type(tbl, number_column, 'number_column');
        PERFORM ledgerlock._check_not_generated(tbl, number_column, 'number_column');
    END IF;
    FOREACH col IN ARRAY coalesce(mutable_columns, '{}') LOOP
        PERFORM ledgerlock._column_type(tbl, col, 'mutable_columns');
        IF col = date_column OR col = scope_column OR col = number_column OR col = ANY (keys)
           OR col = (SELECT sp.fk_column FROM ledgerlock._scope_path(tbl, scope_column) sp)
           OR col = (SELECT dp.fk_column FROM ledgerlock._scope_path(tbl, date_column) dp) THEN
            RAISE EXCEPTION USING ERRCODE = '22023',
                MESSAGE = pg_catalog.format('mutable_columns: %I cannot be mutable: it is the key, date, scope '
                                            'or number of the row', col);
        END IF;
    END LOOP;
    final_sql := ledgerlock._deparse_condition(tbl, final_when, 'final_when', coalesce(mutable_columns, '{}'));
    SELECT * INTO was FROM ledgerlock.protected_table p WHERE p.tbl = protect.tbl;
    before := CASE WHEN was.tbl IS NOT NULL THEN pg_catalog.to_jsonb(was) END;
    IF weaken_reason IS NOT NULL THEN
        why := ledgerlock._require_reason(weaken_reason, 'protect');
    END IF;
    IF was.tbl IS NOT NULL THEN
        will := was;
        will.date_column := date_column;
        will.scope_column := scope_column;
        will.final_when := nullif(pg_catalog.btrim(final_when), '');
        will.final_when_sql := final_sql;
        will.number_column := number_column;
        will.number_format := number_format;
        will.mutable_columns := coalesce(mutable_columns, '{}');
        will.ledger := ledger;
        will.key_columns := keys;
        SELECT c.weakened, c.removed INTO weakened, removed FROM ledgerlock._protect_changes(was, will) AS c;
        IF pg_catalog.cardinality(weakened || removed) > 0 THEN
            IF why IS NULL THEN
                PERFORM ledgerlock._refuse('22023',
                    pg_catalog.format('protect would %s of %s: %s',
                                      CASE WHEN pg_catalog.cardinality(weakened) > 0 THEN 'weaken the rules'
                                           ELSE 'change the rules' END,
                                      tbl, pg_catalog.array_to_string(weakened || removed, '; ')),
                    'pass every setting to keep it; to take these away on purpose, pass weaken_reason => ''<why>'' '
                    '(CLI: --weaken-reason), which the audit trail keeps');
            END IF;
            IF pg_catalog.cardinality(weakened) > 0 THEN
                PERFORM ledgerlock._assert_rules_may_loosen(was, 'protect',
                    ', so its final_when, key, date, scope, numbering and mutable columns cannot be loosened',
                    pg_catalog.format('so the rules of %s cannot be loosened', tbl));
            END IF;
        END IF;
    END IF;

    INSERT INTO ledgerlock.protected_table AS p
        (tbl, date_column, scope_column, final_when, final_when_sql, number_column, number_format,
         mutable_columns, ledger, key_columns)
    VALUES (tbl, date_column, scope_column, nullif(pg_catalog.btrim(final_when), ''), final_sql, number_column,
            number_format, coalesce(mutable_columns, '{}'), ledger, keys)
    ON CONFLICT ON CONSTRAINT protected_table_pkey DO UPDATE SET
        date_column = EXCLUDED.date_column, scope_column = EXCLUDED.scope_column,
        final_when = EXCLUDED.final_when, final_when_sql = EXCLUDED.final_when_sql,
        number_column = EXCLUDED.number_column, number_format = EXCLUDED.number_format,
        mutable_columns = EXCLUDED.mutable_columns, ledger = EXCLUDED.ledger, key_columns = EXCLUDED.key_columns,
        protected_at = now(), protected_by = session_user;

    PERFORM ledgerlock._run_rule_hooks(tbl, 'install');
    -- a parent the table took its scope from before: its guards go when no child names it any more
    PERFORM ledgerlock._install_20_scope_parent(sp.parent) FROM ledgerlock._scope_path(tbl, was.scope_column) sp;
    PERFORM ledgerlock._install_20_scope_parent(dp.parent) FROM ledgerlock._scope_path(tbl, was.date_column) dp;
    PERFORM ledgerlock._audit_event('PROTECT', tbl, NULL, NULL, before,
        (SELECT pg_catalog.to_jsonb(p) FROM ledgerlock.protected_table p WHERE p.tbl = protect.tbl),
        CASE WHEN why IS NOT NULL THEN pg_catalog.jsonb_build_object('reason', why,
            'weakened', weakened, 'removed', removed) END);
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.protect(regclass, name, name, text, name, text, name[], text, text) FROM PUBLIC;
-- Members of any ledgerlock role may call it and get a clear LL005 when they lack the capability;
-- everyone else is stopped by the missing EXECUTE privilege (42501).
GRANT EXECUTE ON FUNCTION ledgerlock.protect(regclass, name, name, text, name, text, name[], text, text)
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

-- unprotect of a table dropped while protected. Its registry row's key is a regclass, which prints the bare
-- oid once the table is gone, so the deletion the capture records is filed under the oid, not under the name
-- the row's earlier events carry: the UNPROTECT event and a STATE_DELETE of the registry row under that name
-- are written here, filed under the name (which is also how verification names the table's kept rows: number
-- settings, counters; ledgerlock._audit_dropped_names). The referential rules that name the table go too, as
-- unprotect_* removes them (their other tables' guards installed again); the functions generated for the table,
-- which no trigger runs any more, are pruned. Counters and format history stay,
-- as for any unprotected table.
CREATE OR REPLACE FUNCTION ledgerlock._retire_dropped_table(tbl regclass, reason text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    named text := ledgerlock._audit_name_of(tbl);
    reg jsonb := (SELECT pg_catalog.to_jsonb(p) FROM ledgerlock.protected_table p
                  WHERE p.tbl = _retire_dropped_table.tbl);
BEGIN
    IF reg IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '42P01',
            MESSAGE = pg_catalog.format('unprotect: relation with oid %s does not exist and is not protected',
                                        tbl::oid);
    END IF;
    named := coalesce(named, tbl::oid::text);
    reg := pg_catalog.jsonb_set(reg, '{tbl}', pg_catalog.to_jsonb(named));
    -- the rules first, as unprotect's uninstall hooks go before its event
    PERFORM ledgerlock._ref_remove(ARRAY(SELECT x.id FROM ledgerlock.reference_rule x
                                         WHERE x.parent = _retire_dropped_table.tbl
                                            OR x.child = _retire_dropped_table.tbl ORDER BY x.id), reason);
    PERFORM ledgerlock._audit_event('UNPROTECT', tbl, NULL, NULL, reg, NULL,
        pg_catalog.jsonb_build_object('reason', reason, 'dropped', true, 'table_name', named));
    DELETE FROM ledgerlock.protected_table p WHERE p.tbl = _retire_dropped_table.tbl;
    PERFORM ledgerlock._audit_event('STATE_DELETE', 'ledgerlock.protected_table'::regclass,
        pg_catalog.jsonb_build_object('tbl', named), NULL, reg, NULL,
        pg_catalog.jsonb_build_object('reason', reason, 'dropped', true));
    PERFORM ledgerlock._prune_guards();
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._retire_dropped_table(regclass, text) FROM PUBLIC;

-- Unprotect a table: refused over final rows or rows in an active hard window (_assert_rules_may_loosen).
CREATE OR REPLACE FUNCTION ledgerlock.unprotect(tbl regclass, reason text)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
AS $$
DECLARE
    cfg ledgerlock.protected_table;
BEGIN
    PERFORM ledgerlock._require_capability('admin', 'unprotect');
    PERFORM ledgerlock._require_unrestricted('unprotect');
    reason := ledgerlock._require_reason(reason, 'unprotect');
    -- the mark clock before any table lock, as in protect: the lines triggers of the table's other rules are
    -- re-created with marks computed under it (ledgerlock._ref_lines_trigger)
    PERFORM ledgerlock._tick_mark_clock();
    IF NOT ledgerlock._relation_exists(tbl) THEN
        -- a table dropped while protected (no DDL guard refused it; doctor names it by its oid): its triggers
        -- went with it, so its registry row and the rules that name it are retired, on the record
        PERFORM ledgerlock._retire_dropped_table(tbl, reason);
        RETURN;
    END IF;
    cfg := ledgerlock._config(tbl);
    IF cfg.tbl <> tbl THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('unprotect: %s is a partition of protected table %s', tbl,
                                        ledgerlock._rule_table(tbl)),
            HINT = 'unprotect the partitioned table; its partitions follow it';
    END IF;
    PERFORM ledgerlock._assert_rules_may_loosen(cfg, 'unprotect', ' and cannot be unprotected',
                                                pg_catalog.format('so %s cannot be unprotected', tbl));
    PERFORM ledgerlock._run_rule_hooks(tbl, 'uninstall');
    PERFORM ledgerlock._drop_guard_triggers(tbl, 'll_');
    PERFORM ledgerlock._drop_unused_comparisons();
    PERFORM ledgerlock._audit_event('UNPROTECT', tbl, NULL, NULL,
        (SELECT pg_catalog.to_jsonb(p) FROM ledgerlock.protected_table p WHERE p.tbl = unprotect.tbl), NULL,
        pg_catalog.jsonb_build_object('reason', reason));
    DELETE FROM ledgerlock.protected_table p WHERE p.tbl = unprotect.tbl;
    -- the parent the table took its scope from loses its guards if no other child names it; the table, if it
    -- is itself such a parent, gets back the guards _drop_guard_triggers took
    PERFORM ledgerlock._install_20_scope_parent(sp.parent) FROM ledgerlock._scope_path(tbl, cfg.scope_column) sp;
    PERFORM ledgerlock._install_20_scope_parent(dp.parent) FROM ledgerlock._scope_path(tbl, cfg.date_column) dp;
    PERFORM ledgerlock._install_20_scope_parent(tbl);
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.unprotect(regclass, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.unprotect(regclass, text)
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

-- Guard triggers no rule accounts for: an ll_NN_ trigger on a table that is neither protected (nor a
-- partition of one), nor one of ledgerlock's own tables (their append-only guards), nor a table an R4 rule
-- names under that rule's number (the parent and child of a referential rule need not be protected): a
-- detached partition, a table whose registry row was removed by hand, a rule since removed.
CREATE OR REPLACE FUNCTION ledgerlock._orphan_guard_triggers()
RETURNS TABLE(rel regclass, tgname name)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.tgrelid::regclass, t.tgname FROM pg_catalog.pg_trigger t
    JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
    WHERE pg_catalog.starts_with(t.tgname, 'll_') AND t.tgname::text ~ '^ll_[0-9]{2}_'
      AND NOT t.tgisinternal AND t.tgparentid = 0
      AND c.relnamespace <> 'ledgerlock'::regnamespace
      AND NOT EXISTS (SELECT FROM ledgerlock._guarded_relations() g WHERE g.rel = t.tgrelid)
      AND NOT (t.tgname IN ('ll_20_scope_parent_update', 'll_20_scope_parent_delete')
               AND EXISTS (SELECT FROM ledgerlock._period_children(t.tgrelid::regclass)))
      AND NOT EXISTS (SELECT FROM ledgerlock.reference_rule x
                      WHERE pg_catalog.starts_with(t.tgname, 'll_30_r' || x.id || '_')
                        AND (t.tgrelid IN (x.parent, x.child)
                             OR EXISTS (SELECT FROM pg_catalog.pg_partition_ancestors(t.tgrelid) a
                                        WHERE a.relid IN (x.parent, x.child))))
    ORDER BY 1, 2
$$;
REVOKE ALL ON FUNCTION ledgerlock._orphan_guard_triggers() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._orphan_guard_triggers() TO ledgerlock_admin, ledgerlock_auditor;

-- Functions a rule generated (named with its generated_prefix, not shipped) that no trigger runs or calls in
-- its WHEN clause any more (R1's comparisons: _changed_beyond_function): their table was unprotected or
-- dropped, or their rule removed.
CREATE OR REPLACE FUNCTION ledgerlock._orphan_generated_functions()
RETURNS SETOF regprocedure
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
    WHERE p.pronamespace = 'ledgerlock'::regnamespace
      AND EXISTS (SELECT FROM ledgerlock._rules() r WHERE pg_catalog.starts_with(p.proname, r.generated_prefix))
      AND NOT EXISTS (SELECT FROM ledgerlock.code_fingerprint f
                      WHERE f.fn = p.oid::regprocedure::text AND f.origin = 'shipped')
      AND NOT EXISTS (SELECT FROM pg_catalog.pg_trigger t WHERE t.tgfoid = p.oid)
      AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend d
                      WHERE d.refclassid = 'pg_catalog.pg_proc'::regclass AND d.refobjid = p.oid
                        AND d.classid = 'pg_catalog.pg_trigger'::regclass)
    ORDER BY 1
$$;
REVOKE ALL ON FUNCTION ledgerlock._orphan_generated_functions() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._orphan_generated_functions() TO ledgerlock_admin, ledgerlock_auditor;

-- Drop what no rule accounts for any more (install-then-prune): orphaned guard triggers first, then the
-- generated functions no trigger runs, with their fingerprints. Returns how many objects went.
CREATE OR REPLACE FUNCTION ledgerlock._prune_guards()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    o record;
    fn regprocedure;
    n integer := 0;
BEGIN
    FOR o IN SELECT * FROM ledgerlock._orphan_guard_triggers() LOOP
        PERFORM ledgerlock._ddl_permit(o.rel, true);  -- the DDL guard lets ledgerlock's own installers through
        EXECUTE pg_catalog.format('DROP TRIGGER %I ON %s', o.tgname, o.rel);
        PERFORM ledgerlock._ddl_permit(o.rel, false);
        n := n + 1;
    END LOOP;
    PERFORM ledgerlock._ddl_permit('ledgerlock'::regnamespace::oid, true);
    FOR fn IN SELECT * FROM ledgerlock._orphan_generated_functions() LOOP
        EXECUTE pg_catalog.format('DROP FUNCTION %s', fn);
        n := n + 1;
    END LOOP;
    PERFORM ledgerlock._ddl_permit('ledgerlock'::regnamespace::oid, false);
    DELETE FROM ledgerlock.code_fingerprint f
    WHERE f.origin = 'generated' AND pg_catalog.to_regprocedure(f.fn) IS NULL;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._prune_guards() FROM PUBLIC;

-- Re-run every installer on every protected table, then every rule's refresh hook (for guards a rule keeps
-- on tables outside the registry, such as the parent of a referential rule), then prune what no rule
-- accounts for any more: `ledgerlock migrate` calls it after new code is installed, so guard triggers always
-- match the installed version. Returns the number of protected tables.
CREATE OR REPLACE FUNCTION ledgerlock.reinstall_guards()
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
AS $$
DECLARE
    t regclass;
    hook regprocedure;
    n integer := 0;
BEGIN
    PERFORM ledgerlock._require_capability('admin', 'reinstall_guards');
    PERFORM ledgerlock._require_unrestricted('reinstall_guards');
    PERFORM ledgerlock._subscriber_permit(true);  -- on a subscriber, installers still write ledgerlock's tables
    -- the mark clock before any table lock, in the order lock operations take them (no deadlock with one)
    PERFORM ledgerlock._tick_mark_clock();
    FOR t IN SELECT p.tbl FROM ledgerlock.protected_table p WHERE ledgerlock._relation_exists(p.tbl)
             ORDER BY p.tbl::oid LOOP
        PERFORM ledgerlock._run_rule_hooks(t, 'install');
        n := n + 1;
    END LOOP;
    FOR hook IN SELECT r.refresh FROM ledgerlock._rules() r WHERE r.refresh IS NOT NULL ORDER BY r.nn LOOP
        EXECUTE pg_catalog.format('SELECT %s()', hook::oid::regproc);
    END LOOP;
    PERFORM ledgerlock._prune_guards();
    PERFORM ledgerlock._sync_guard_enable_mode();  -- ENABLE ALWAYS, or ENABLE on a subscriber
    PERFORM ledgerlock._subscriber_permit(false);
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.reinstall_guards() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.reinstall_guards() TO ledgerlock_admin;
