-- Registering tables: protect, unprotect, and the installation of every rule's guards.
--
-- A rule plugs in by defining ledgerlock._install_NN_<rule>(tbl regclass) (and, when it creates more than
-- triggers, ledgerlock._uninstall_NN_<rule>(tbl regclass)). protect() runs every installer in NN order, in
-- one transaction: an installer that refuses the configuration rolls the whole call back, so nothing is
-- ever half-installed. Installers drop and recreate their own ll_NN_ triggers, so calling protect again
-- reconfigures cleanly.

-- Validate a final_when condition and return it as PostgreSQL deparses it, columns qualified as ll_row.
-- The condition is admin input executed by the definer: it is screened (one expression, no statement
-- separators or comments) and then parsed by PostgreSQL itself as a view over the table.
CREATE OR REPLACE FUNCTION ledgerlock._deparse_condition(tbl regclass, condition text)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    scratch text := '_ll_deparse_' || pg_catalog.pg_current_xact_id()::text;  -- one per transaction
    view_def text;
    expr text;
    result_type regtype;
BEGIN
    IF condition IS NULL OR pg_catalog.btrim(condition) = '' THEN
        RETURN NULL;
    END IF;
    IF condition ~ '(;|--|/\*)' THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('final_when %L must be a single condition (no ";" and no comments)',
                                        condition);
    END IF;
    PERFORM ledgerlock._ddl_permit('ledgerlock'::regnamespace, true);  -- the scratch view, under the DDL guard
    BEGIN
        -- The second FROM item makes PostgreSQL qualify every column (as ll_row.col) when deparsing.
        EXECUTE pg_catalog.format('CREATE VIEW ledgerlock.%I AS SELECT (%s) AS v '
                                  'FROM %s AS ll_row, (VALUES (1)) AS ll_unused(x)', scratch, condition, tbl);
    EXCEPTION WHEN OTHERS THEN
        RAISE EXCEPTION USING ERRCODE = SQLSTATE,
            MESSAGE = pg_catalog.format('final_when %L is not a valid condition on %s: %s', condition, tbl, SQLERRM);
    END;
    SELECT a.atttypid::regtype INTO result_type FROM pg_catalog.pg_attribute a
    WHERE a.attrelid = pg_catalog.to_regclass('ledgerlock.' || scratch) AND a.attname = 'v';
    view_def := pg_catalog.pg_get_viewdef(pg_catalog.to_regclass('ledgerlock.' || scratch));
    EXECUTE pg_catalog.format('DROP VIEW ledgerlock.%I', scratch);
    PERFORM ledgerlock._ddl_permit('ledgerlock'::regnamespace, false);
    IF result_type <> 'boolean'::regtype THEN
        RAISE EXCEPTION USING ERRCODE = '42804',
            MESSAGE = pg_catalog.format('final_when %L is of type %s, not boolean', condition, result_type),
            HINT = 'write a condition such as: status in (''approved'', ''paid'')';
    END IF;
    expr := pg_catalog.substring(view_def,
        '^\s*SELECT\s+(.*)\s+AS v\s+FROM\s+\S+\s+ll_row,\s+\(\s*VALUES \(1\)\) ll_unused\(x\);?\s*$');
    IF expr IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('final_when %L must be one condition over the columns of %s', condition, tbl);
    END IF;
    RETURN expr;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._deparse_condition(regclass, text) FROM PUBLIC;

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

-- Run every rule's installer (or uninstaller) for one table, in NN order.
CREATE OR REPLACE FUNCTION ledgerlock._run_rule_hooks(tbl regclass, kind text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    hook regproc;
BEGIN
    FOR hook IN
        SELECT p.oid::regproc FROM pg_catalog.pg_proc p
        WHERE p.pronamespace = 'ledgerlock'::regnamespace
          AND p.proname ~ ('^_' || kind || '_[0-9]{2}_')
          AND p.proargtypes = '2205'::oidvector          -- (regclass)
        ORDER BY p.proname
    LOOP
        EXECUTE pg_catalog.format('SELECT %s($1)', hook) USING tbl;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._run_rule_hooks(regclass, text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION ledgerlock.protect(
    tbl regclass,
    date_column name,
    scope_column name DEFAULT NULL,
    final_when text DEFAULT NULL,
    number_column name DEFAULT NULL,
    number_format text DEFAULT NULL,
    mutable_columns name[] DEFAULT '{}',
    ledger text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel record;
    keys name[];
    date_type regtype;
    col name;
    final_sql text;
    before jsonb;  -- the previous configuration, for the audit trail (R5)
BEGIN
    PERFORM ledgerlock._require_capability('admin', 'protect');

    SELECT c.relname, c.relkind, c.relowner, n.nspname INTO rel
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.oid = tbl;
    IF rel.relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION USING ERRCODE = '42809',
            MESSAGE = pg_catalog.format('protect: %s is not a table', tbl);
    END IF;
    IF ledgerlock._rule_table(tbl) IS DISTINCT FROM tbl AND ledgerlock._rule_table(tbl) IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('protect: %s is a partition of protected table %s, whose rules it follows',
                                        tbl, ledgerlock._rule_table(tbl));
    END IF;
    IF rel.nspname IN ('ledgerlock', 'pg_catalog', 'information_schema') THEN
        RAISE EXCEPTION USING ERRCODE = '42809',
            MESSAGE = pg_catalog.format('protect: %s is a system or ledgerlock table', tbl);
    END IF;
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

    date_type := ledgerlock._column_type(tbl, date_column, 'date_column');
    IF date_type NOT IN ('date'::regtype, 'timestamp without time zone'::regtype,
                         'timestamp with time zone'::regtype) THEN
        RAISE EXCEPTION USING ERRCODE = '42804',
            MESSAGE = pg_catalog.format('date_column: %s.%I is of type %s; it must be a date or a timestamp',
                                        tbl, date_column, date_type);
    END IF;
    IF scope_column IS NOT NULL THEN
        PERFORM ledgerlock._column_type(tbl, scope_column, 'scope_column');
    END IF;
    IF number_column IS NOT NULL THEN
        PERFORM ledgerlock._column_type(tbl, number_column, 'number_column');
    END IF;
    FOREACH col IN ARRAY coalesce(mutable_columns, '{}') LOOP
        PERFORM ledgerlock._column_type(tbl, col, 'mutable_columns');
        IF col = date_column OR col = scope_column OR col = number_column OR col = ANY (keys) THEN
            RAISE EXCEPTION USING ERRCODE = '22023',
                MESSAGE = pg_catalog.format('mutable_columns: %I cannot be mutable: it is the key, date, scope '
                                            'or number of the row', col);
        END IF;
    END LOOP;
    final_sql := ledgerlock._deparse_condition(tbl, final_when);
    before := (SELECT pg_catalog.to_jsonb(p) FROM ledgerlock.protected_table p WHERE p.tbl = protect.tbl);

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
    PERFORM ledgerlock._audit_event('PROTECT', tbl, NULL, NULL, before,
        (SELECT pg_catalog.to_jsonb(p) FROM ledgerlock.protected_table p WHERE p.tbl = protect.tbl), NULL);
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.protect(regclass, name, name, text, name, text, name[], text) FROM PUBLIC;
-- Members of any ledgerlock role may call it and get a clear LL005 when they lack the capability;
-- everyone else is stopped by the missing EXECUTE privilege (42501).
GRANT EXECUTE ON FUNCTION ledgerlock.protect(regclass, name, name, text, name, text, name[], text)
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

CREATE OR REPLACE FUNCTION ledgerlock.unprotect(tbl regclass, reason text)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ledgerlock._require_capability('admin', 'unprotect');
    PERFORM ledgerlock._require_reason(reason, 'unprotect');
    IF (ledgerlock._config(tbl)).tbl <> tbl THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('unprotect: %s is a partition of protected table %s', tbl,
                                        ledgerlock._rule_table(tbl)),
            HINT = 'unprotect the partitioned table; its partitions follow it';
    END IF;
    PERFORM ledgerlock._run_rule_hooks(tbl, 'uninstall');
    PERFORM ledgerlock._drop_guard_triggers(tbl, 'll_');
    PERFORM ledgerlock._audit_event('UNPROTECT', tbl, NULL, NULL,
        (SELECT pg_catalog.to_jsonb(p) FROM ledgerlock.protected_table p WHERE p.tbl = unprotect.tbl), NULL,
        pg_catalog.jsonb_build_object('reason', pg_catalog.btrim(reason)));
    DELETE FROM ledgerlock.protected_table p WHERE p.tbl = unprotect.tbl;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.unprotect(regclass, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.unprotect(regclass, text)
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

-- Re-run every installer on every protected table, then every rule's refresh hook
-- (ledgerlock._refresh_NN_<rule>(), for guards a rule keeps on tables outside the registry, such as the
-- parent of a referential rule): `ledgerlock migrate` calls it after new code is installed, so guard
-- triggers always match the installed version. Returns the number of protected tables.
CREATE OR REPLACE FUNCTION ledgerlock.reinstall_guards()
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t regclass;
    hook regproc;
    n integer := 0;
BEGIN
    PERFORM ledgerlock._require_capability('admin', 'reinstall_guards');
    FOR t IN SELECT p.tbl FROM ledgerlock.protected_table p ORDER BY p.tbl::oid LOOP
        PERFORM ledgerlock._run_rule_hooks(t, 'install');
        n := n + 1;
    END LOOP;
    FOR hook IN
        SELECT p.oid::regproc FROM pg_catalog.pg_proc p
        WHERE p.pronamespace = 'ledgerlock'::regnamespace AND p.proname ~ '^_refresh_[0-9]{2}_'
          AND p.pronargs = 0
        ORDER BY p.proname
    LOOP
        EXECUTE pg_catalog.format('SELECT %s()', hook);
    END LOOP;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.reinstall_guards() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.reinstall_guards() TO ledgerlock_admin;
