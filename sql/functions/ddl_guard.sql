-- The DDL guard: event triggers that refuse the DDL which would switch ledgerlock's guards off.
--
-- Row triggers cannot see DDL. A role that owns a protected table (too often the application itself) can
-- DROP or DISABLE a guard trigger, detach or drop a partition, rewrite the table with ALTER COLUMN TYPE
-- ... USING, or add a BEFORE trigger that changes a final row after ledgerlock has checked it. Event
-- triggers need a superuser to be created, so they are not created by `migrate`: a superuser runs
-- `ledgerlock install-ddl-guard` (SELECT ledgerlock.install_ddl_guard()).
--
-- ledgerlock's own installers are let through by a DDL permit: a row of ledgerlock.ddl_permit for the
-- current transaction and the object, inserted right before their DDL and deleted right after. Only the
-- owner of schema ledgerlock can write that table; no client setting opens anything.

-- Grant (granted = true) or withdraw the permit for DDL on one object in this transaction.
CREATE OR REPLACE FUNCTION ledgerlock._ddl_permit(target oid, granted boolean)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF granted THEN
        INSERT INTO ledgerlock.ddl_permit (txid, target) VALUES (pg_catalog.pg_current_xact_id(), target)
        ON CONFLICT DO NOTHING;
    ELSE
        DELETE FROM ledgerlock.ddl_permit p
        WHERE p.txid = pg_catalog.pg_current_xact_id() AND p.target = _ddl_permit.target;
    END IF;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._ddl_permit(oid, boolean) FROM PUBLIC;

-- Does this transaction hold a permit for the relation (or for a partitioned table above it)?
CREATE OR REPLACE FUNCTION ledgerlock._ddl_permitted(rel oid)
RETURNS boolean
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (
        SELECT FROM ledgerlock.ddl_permit p
        WHERE p.txid = pg_catalog.pg_current_xact_id_if_assigned()
          AND (p.target = rel
               OR p.target IN (SELECT a.relid FROM pg_catalog.pg_partition_ancestors(rel::regclass) AS a)))
$$;
REVOKE ALL ON FUNCTION ledgerlock._ddl_permitted(oid) FROM PUBLIC;

-- LL008 for DDL the guard refuses.
CREATE OR REPLACE FUNCTION ledgerlock._refuse_ddl(what text, why text, hint text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ledgerlock._refuse('LL008', pg_catalog.format('%s is refused: %s', what, why), hint);
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._refuse_ddl(text, text, text) FROM PUBLIC;

-- ledgerlock's own objects change only through `ledgerlock migrate` run by a superuser, or through
-- ledgerlock's code (permit on the schema, e.g. protect's scratch view).
CREATE OR REPLACE FUNCTION ledgerlock._ddl_guard_own_object(what text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = session_user)
       OR ledgerlock._ddl_permitted('ledgerlock'::regnamespace::oid) THEN
        RETURN;
    END IF;
    PERFORM ledgerlock._refuse_ddl(what, 'it changes ledgerlock''s own code or tables',
        'upgrade ledgerlock with `ledgerlock migrate` run by a superuser');
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._ddl_guard_own_object(text) FROM PUBLIC;

-- The first of a relation's guards whose definition no longer matches the fingerprint ledgerlock recorded
-- when it installed it (the md5 of pg_get_triggerdef, which names the table: a rename or a new schema shows
-- here), or null. Guards of ledgerlock's own tables carry no fingerprint and are left out.
CREATE OR REPLACE FUNCTION ledgerlock._drifted_guard(rel oid)
RETURNS name
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.tgname FROM pg_catalog.pg_trigger t
    WHERE t.tgrelid = rel AND t.tgparentid = 0 AND NOT t.tgisinternal AND t.tgname ~ '^ll_[0-9]{2}_'
      AND pg_catalog.obj_description(t.oid, 'pg_trigger') IS NOT NULL
      AND pg_catalog.obj_description(t.oid, 'pg_trigger')
          IS DISTINCT FROM 'ledgerlock:'
                           || pg_catalog.md5(ledgerlock._trigger_text(t.tgrelid::regclass, t.tgname))
    ORDER BY t.tgname
    LIMIT 1
$$;
REVOKE ALL ON FUNCTION ledgerlock._drifted_guard(oid) FROM PUBLIC;

-- What a rename of a table or of one of its columns (ALTER TABLE ... RENAME [COLUMN], SET SCHEMA: attnum 0
-- for the table) would break, as (what, why, hint) for LL008; no row when nothing reads the old name.
-- ledgerlock reads by name what it guards: the audit trail files a protected table's events under its
-- qualified name (so that a dump restored with new oids still verifies) and keeps its rows as images keyed
-- by column name, so a renamed table's or column's rows would all read as written behind the trail, for good
-- (reinstall_guards does not change the events); the guards and generated checks name the table, its columns
-- and the parent rows a scope or date is read from. A rename of the table is seen in its guards: their
-- recorded fingerprints (the md5 of pg_get_triggerdef, which names the table) no longer match. On a parent
-- some protected table takes its scope or date from, the foreign key's referenced column and the column
-- the child's path names are read by name too (a generated check holds ll_p.<key> and ll_p.<column>).
CREATE OR REPLACE FUNCTION ledgerlock._ddl_renamed(rel oid, attnum integer)
RETURNS TABLE(what text, why text, hint text)
LANGUAGE plpgsql  -- its plan kept for the session: every ALTER TABLE asks (as SQL, planned each time: 1.5 ms)
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on  -- its literals hold backslashes
AS $$
BEGIN
    RETURN QUERY
    SELECT pg_catalog.format('renaming a column of %s (to %I)', rel::regclass, a.attname),
           pg_catalog.format('protected table %s keeps its rows in the audit trail as images keyed by column '
                             'name: the recorded values of the column could no longer be held to the table '
                             '(verification would report it as gone)', r.root),
           pg_catalog.format('have an admin run ledgerlock.unprotect(%L, reason) first (audited), then protect '
                             'the table again', r.root::text)
    FROM (SELECT ledgerlock._protected_root(rel) AS root) r
    JOIN pg_catalog.pg_attribute a ON a.attrelid = rel AND a.attnum = _ddl_renamed.attnum
    WHERE r.root IS NOT NULL AND _ddl_renamed.attnum > 0
    UNION ALL
    SELECT pg_catalog.format('ALTER TABLE %s', rel::regclass),
           pg_catalog.format('guard %s no longer matches the definition ledgerlock installed, which names the '
                             'table (renamed, or moved to another schema)%s', g.tgname,
                             CASE WHEN r.root IS NOT NULL
                                  THEN pg_catalog.format(', and the audit trail files the rows of protected table '
                                                         '%s under its name: they would all read as written '
                                                         'behind the trail', r.root)
                                  ELSE ', and ledgerlock''s checks that read it name it' END),
           'rename it back (to rename a protected table, have an admin unprotect it first, audited, then protect '
           'it again); a guard changed by hand before: SELECT ledgerlock.reinstall_guards()'
    FROM (SELECT ledgerlock._drifted_guard(rel) AS tgname) g
    CROSS JOIN (SELECT ledgerlock._protected_root(rel) AS root) r
    -- a partition is left out: its rows are filed under the table it belongs to (its guards are installed
    -- again instead: see _ddl_guard_command_end)
    WHERE _ddl_renamed.attnum = 0 AND g.tgname IS NOT NULL AND (r.root IS NULL OR r.root = rel)
    UNION ALL
    SELECT pg_catalog.format('renaming a column of %s (to %I)', rel::regclass, a.attname),
           pg_catalog.format('protected table %s takes its %s from %s through %s', p.tbl,
                             CASE WHEN u.path = p.scope_column::text THEN 'scope' ELSE 'date' END,
                             rel::regclass, u.path),
           pg_catalog.format('have an admin unprotect %s (or protect it with columns of its own) first', p.tbl)
    FROM ledgerlock.protected_table p
    CROSS JOIN LATERAL pg_catalog.unnest(ARRAY[p.scope_column::text, p.date_column::text]) AS u(path)
    JOIN pg_catalog.pg_attribute fa ON fa.attrelid = p.tbl AND fa.attname = pg_catalog.split_part(u.path, '.', 1)
                                   AND NOT fa.attisdropped
    JOIN pg_catalog.pg_constraint c ON c.conrelid = p.tbl AND c.contype = 'f' AND c.conkey = ARRAY[fa.attnum]
                                   AND c.confrelid = rel
    JOIN pg_catalog.pg_attribute a ON a.attrelid = rel AND a.attnum = _ddl_renamed.attnum
    WHERE _ddl_renamed.attnum > 0 AND pg_catalog.strpos(u.path, '.') > 0
      AND (c.confkey[1] = _ddl_renamed.attnum
           OR NOT EXISTS (SELECT FROM pg_catalog.pg_attribute pc
                          WHERE pc.attrelid = rel AND NOT pc.attisdropped
                            AND pc.attname = pg_catalog.substr(u.path, pg_catalog.strpos(u.path, '.') + 1)))
    UNION ALL
    -- a referential rule (R4) names its foreign key's columns on both sides, and the child condition's columns
    -- (ll_row.<column> in its deparsed form): renamed, every write the rule checks would fail
    SELECT pg_catalog.format('renaming a column of %s (to %I)', rel::regclass, a.attname),
           pg_catalog.format('the %s rule of %s and %s reads it by name', r.kind, r.parent, r.child),
           pg_catalog.format('have an admin remove the rule first (ledgerlock.unprotect_%s, audited), then define '
                             'it again', r.kind)
    FROM ledgerlock.reference_rule r
    JOIN pg_catalog.pg_attribute a ON a.attrelid = rel AND a.attnum = _ddl_renamed.attnum
    WHERE _ddl_renamed.attnum > 0 AND rel IN (r.parent, r.child)
      AND (EXISTS (SELECT FROM pg_catalog.unnest(r.child_columns) AS c(n)
                   WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_attribute x
                                     WHERE x.attrelid = r.child AND x.attname = c.n AND NOT x.attisdropped))
           OR EXISTS (SELECT FROM pg_catalog.unnest(r.parent_columns) AS c(n)
                      WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_attribute x
                                        WHERE x.attrelid = r.parent AND x.attname = c.n AND NOT x.attisdropped))
           OR EXISTS (SELECT FROM pg_catalog.regexp_matches(coalesce(r.child_condition_sql, ''),
                                                           'll_row\.("(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)', 'g') AS m
                      WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_attribute x
                                        WHERE x.attrelid = r.child AND NOT x.attisdropped
                                          AND x.attname = CASE WHEN pg_catalog.left(m[1], 1) = '"'
                                                               THEN pg_catalog.replace(pg_catalog.substr(m[1], 2, pg_catalog.length(m[1]) - 2),
                                                                                       '""', '"')
                                                               ELSE m[1] END)));
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._ddl_renamed(oid, integer) FROM PUBLIC;

-- The protected table (or partition of one) a relation inherits from by plain inheritance (CREATE TABLE ...
-- INHERITS, ALTER TABLE ... INHERIT), not as a partition; null when none. Reads of the protected table include
-- the rows of such a table, and PostgreSQL fires none of the protected table's triggers for a write to it.
CREATE OR REPLACE FUNCTION ledgerlock._inherited_protected(rel oid)
RETURNS regclass
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT i.inhparent::regclass
    FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
    WHERE i.inhrelid = rel AND NOT c.relispartition AND ledgerlock._protected_root(i.inhparent) IS NOT NULL
    ORDER BY i.inhseqno LIMIT 1
$$;
REVOKE ALL ON FUNCTION ledgerlock._inherited_protected(oid) FROM PUBLIC;

-- The types the columns of protected tables hold, at any depth (ledgerlock._types_held). (A partition has
-- its table's columns.)
CREATE OR REPLACE FUNCTION ledgerlock._protected_types()
RETURNS SETOF oid
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ledgerlock._types_held(ARRAY(SELECT p.tbl::oid FROM ledgerlock.protected_table p))
$$;
REVOKE ALL ON FUNCTION ledgerlock._protected_types() FROM PUBLIC;

-- The labels of the enum types protected columns hold (_protected_types), as {label oid: label}. A label
-- renamed (ALTER TYPE ... RENAME VALUE) changes every row that holds it with no write: _ddl_guard_command_start
-- keeps these before an ALTER TYPE runs, _ddl_guard_command_end compares.
CREATE OR REPLACE FUNCTION ledgerlock._protected_enum_labels()
RETURNS jsonb
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(pg_catalog.jsonb_object_agg(e.oid::text, e.enumlabel), '{}')
    FROM pg_catalog.pg_enum e WHERE e.enumtypid IN (SELECT ledgerlock._protected_types())
$$;
REVOKE ALL ON FUNCTION ledgerlock._protected_enum_labels() FROM PUBLIC;

-- The composite type (a table's row type included) whose relation is rel, when protected columns hold it
-- (_protected_types); null otherwise. An attribute of such a type renamed or dropped (ALTER TYPE ... RENAME
-- ATTRIBUTE, DROP ATTRIBUTE; ALTER TABLE ... RENAME COLUMN, DROP COLUMN of such a table) changes every row that
-- holds it with no write: the DDL guard refuses both, from what PostgreSQL reports of the command itself
-- (the attribute renamed, at ddl_command_end; dropped, at sql_drop), not from state kept in a setting, which
-- code the same ALTER TABLE runs (a CHECK constraint's function) could change. (An attribute added is null in
-- every row: no change.)
CREATE OR REPLACE FUNCTION ledgerlock._protected_composite(rel oid)
RETURNS regtype
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.oid::regtype FROM pg_catalog.pg_type t
    WHERE t.typrelid = rel AND t.typtype = 'c' AND t.oid IN (SELECT ledgerlock._protected_types())
$$;
REVOKE ALL ON FUNCTION ledgerlock._protected_composite(oid) FROM PUBLIC;

-- What the DDL guard compares of protected tables' columns before and after an ALTER TABLE or ALTER TYPE, as
-- {"<relation oid>.<attnum>": {"type": <type oid>, "expr": <expression>}}: what a command can change about
-- every row with no write and no rewrite (_ddl_guard_command_start keeps it, _ddl_guard_command_end compares).
-- - "type", of a protected table's own columns: a type changed by a binary-coercible cast rewrites nothing,
--   and every row reads another value (ALTER COLUMN amount TYPE oid: -5 reads 4294967291; ref TYPE regclass:
--   1259 reads pg_class; note TYPE char: 'a ' equals 'a'). A partition's columns change with its table's.
-- - "expr", of the virtual generated columns of protected tables and their partitions (PostgreSQL 18): such
--   a column stores nothing, so a new expression (ALTER COLUMN ... SET EXPRESSION) changes every row.
CREATE OR REPLACE FUNCTION ledgerlock._protected_columns()
RETURNS jsonb
LANGUAGE plpgsql  -- its plan kept for the session: every ALTER TABLE calls it (as SQL with a SET clause, 0.23 ms)
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- each relation's columns read by their index (OFFSET 0 keeps the subquery per relation): joined, the
    -- planner estimates the registry at 50 tables and reads all of pg_attribute, which a database of many
    -- tables makes long. A partition has virtual columns only where its table has them.
    -- A table's own scope column also keeps its collation ('coll'). A parent's, which a line reads its scope from,
    -- needs nothing here: the parent's guard names it in its WHEN clause, and PostgreSQL refuses to change the
    -- type or the collation of a column a trigger's definition uses.
    RETURN (SELECT coalesce(pg_catalog.jsonb_object_agg(c.key, c.value), '{}')
    FROM ledgerlock.protected_table p
    CROSS JOIN LATERAL (SELECT p.tbl::oid AS relid
                        UNION ALL
                        SELECT x.relid FROM pg_catalog.pg_partition_tree(p.tbl) x
                        WHERE x.relid <> p.tbl
                          AND EXISTS (SELECT FROM pg_catalog.pg_attribute v
                                      WHERE v.attrelid = p.tbl AND v.attnum > 0 AND v.attgenerated = 'v')) t
    CROSS JOIN LATERAL (SELECT a.attrelid::text || '.' || a.attnum::text AS key,
                               pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
                                   'type', CASE WHEN t.relid = p.tbl THEN a.atttypid END,
                                   'coll', CASE WHEN t.relid = p.tbl AND a.attname = p.scope_column
                                                THEN a.attcollation END,
                                   'expr', pg_catalog.pg_get_expr(d.adbin, d.adrelid))) AS value
                        FROM pg_catalog.pg_attribute a
                        LEFT JOIN pg_catalog.pg_attrdef d ON a.attgenerated = 'v' AND d.adrelid = a.attrelid
                                                         AND d.adnum = a.attnum
                        WHERE a.attrelid = t.relid AND a.attnum > 0 AND NOT a.attisdropped
                          AND (t.relid = p.tbl OR a.attgenerated = 'v')
                        OFFSET 0) c
    WHERE ledgerlock._relation_exists(p.tbl));
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._protected_columns() FROM PUBLIC;

-- Whether a column's values read the same under type new as they did under type was, when PostgreSQL changes
-- it without a rewrite (a binary-coercible cast): the same type under other domains, text and varchar, bit and
-- varbit. Any other such change (integer to oid or regclass, text to char, cidr to inet) changes what the
-- values print or how they compare.
CREATE OR REPLACE FUNCTION ledgerlock._type_change_keeps_values(was regtype, new regtype)
RETURNS boolean
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT b.was = b.new
           OR ARRAY[b.was, b.new]::oid[] <@ '{text,varchar}'::regtype[]::oid[]
           OR ARRAY[b.was, b.new]::oid[] <@ '{bit,varbit}'::regtype[]::oid[]
    FROM (SELECT ledgerlock._base_type(was) AS was, ledgerlock._base_type(new) AS new) b
$$;
REVOKE ALL ON FUNCTION ledgerlock._type_change_keeps_values(regtype, regtype) FROM PUBLIC;

-- What a command's start keeps for its end (kind: 'enum_labels', 'columns'), in ledgerlock's own table, for
-- this transaction: a setting would do, but code the command itself runs (a CHECK constraint's function during
-- an ALTER TABLE) could change a setting, not this table. Kept as a stack, one entry per command begun: that
-- code may also run DDL of its own (EXECUTE 'ALTER TABLE other ...' in the CHECK function), whose start and end
-- fire inside the command's, after its catalog changes; with one entry per kind, the inner command's start
-- replaced what the outer one kept and its end removed it, and the outer end compared nothing (a column's type
-- changed that way, unrefused). A command's end always comes when its start did (or both roll back with an
-- error), so each end takes the entry on top, its own.
CREATE OR REPLACE FUNCTION ledgerlock._ddl_snapshot_put(kind text, data jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO ledgerlock.ddl_snapshot AS s (txid, kind, data)
    VALUES (pg_catalog.pg_current_xact_id(), kind, pg_catalog.jsonb_build_array(data))
    ON CONFLICT ON CONSTRAINT ddl_snapshot_pkey DO UPDATE SET data = s.data OPERATOR(pg_catalog.||) EXCLUDED.data;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._ddl_snapshot_put(text, jsonb) FROM PUBLIC;

-- What the command's start kept (_ddl_snapshot_put): the entry on top of the stack, removed as it is read;
-- '{}' when nothing was kept (the guard's start trigger was not there yet).
CREATE OR REPLACE FUNCTION ledgerlock._ddl_snapshot_take(kind text)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    kept jsonb;
BEGIN
    IF pg_catalog.pg_current_xact_id_if_assigned() IS NULL THEN
        RETURN '{}';  -- nothing was written in this transaction, so nothing was kept
    END IF;
    SELECT s.data INTO kept FROM ledgerlock.ddl_snapshot s
    WHERE s.txid = pg_catalog.pg_current_xact_id() AND s.kind = _ddl_snapshot_take.kind;
    IF kept IS NULL THEN
        RETURN '{}';
    ELSIF pg_catalog.jsonb_typeof(kept) <> 'array' OR pg_catalog.jsonb_array_length(kept) <= 1 THEN
        DELETE FROM ledgerlock.ddl_snapshot s
        WHERE s.txid = pg_catalog.pg_current_xact_id() AND s.kind = _ddl_snapshot_take.kind;
    ELSE
        UPDATE ledgerlock.ddl_snapshot s SET data = s.data OPERATOR(pg_catalog.-) -1
        WHERE s.txid = pg_catalog.pg_current_xact_id() AND s.kind = _ddl_snapshot_take.kind;
    END IF;
    -- (an entry kept by a release before the stack is the object itself)
    RETURN coalesce(CASE WHEN pg_catalog.jsonb_typeof(kept) = 'array' THEN kept OPERATOR(pg_catalog.->) -1
                         ELSE kept END, '{}');
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._ddl_snapshot_take(text) FROM PUBLIC;

-- ddl_command_start: before an ALTER TYPE, the labels protected columns hold (_protected_enum_labels); before
-- an ALTER TABLE or ALTER TYPE (whose CASCADE alters a typed table's columns), the types of protected tables'
-- columns and the expressions of their virtual generated columns (_protected_columns): kept for the command's
-- end in ledgerlock's own table (_ddl_snapshot_put).
CREATE OR REPLACE FUNCTION ledgerlock._ddl_guard_command_start()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER  -- reads ledgerlock's registry whoever runs the DDL
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
AS $$
BEGIN
    IF TG_TAG = 'ALTER TYPE' THEN
        PERFORM ledgerlock._ddl_snapshot_put('enum_labels', ledgerlock._protected_enum_labels());
    END IF;
    IF TG_TAG IN ('ALTER TABLE', 'ALTER TYPE') THEN
        PERFORM ledgerlock._ddl_snapshot_put('columns', ledgerlock._protected_columns());
    END IF;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._ddl_guard_command_start() FROM PUBLIC;

-- ddl_command_end: CREATE/ALTER on protected tables and their partitions, and on ledgerlock's objects.
CREATE OR REPLACE FUNCTION ledgerlock._ddl_guard_command_end()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER  -- reads ledgerlock's registry whoever runs the DDL; installs guards on new partitions
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
SET standard_conforming_strings = on  -- its literals hold backslashes
AS $$
DECLARE
    cmd record;
    rel oid;
    root regclass;
    bad record;
    hint text;
    held boolean;
    carried text;
    -- what this command's start kept, taken first and once (_ddl_snapshot_take): each end takes its own entry
    labels_kept jsonb := CASE WHEN TG_TAG = 'ALTER TYPE' THEN ledgerlock._ddl_snapshot_take('enum_labels') END;
    columns_kept jsonb := CASE WHEN TG_TAG IN ('ALTER TABLE', 'ALTER TYPE')
                               THEN ledgerlock._ddl_snapshot_take('columns') END;
BEGIN
    FOR cmd IN SELECT * FROM pg_catalog.pg_event_trigger_ddl_commands() LOOP
        IF cmd.schema_name IN ('ledgerlock', 'ledgerlock_gate') THEN
            PERFORM ledgerlock._ddl_guard_own_object(pg_catalog.format('%s %s', cmd.command_tag,
                                                                       cmd.object_identity));
        END IF;
        -- a label of an enum protected columns hold, renamed: every row that holds it changes with no write
        IF cmd.command_tag = 'ALTER TYPE' THEN
            SELECT b.value AS was, e.enumlabel AS now, e.enumtypid::regtype AS typ INTO bad
            FROM pg_catalog.jsonb_each_text(labels_kept) b
            JOIN pg_catalog.pg_enum e ON e.oid = b.key::oid
            WHERE e.enumlabel <> b.value
            LIMIT 1;
            IF FOUND THEN
                PERFORM ledgerlock._refuse_ddl(pg_catalog.format('renaming label %L of %s to %L', bad.was, bad.typ,
                                                                 bad.now),
                    'protected tables hold it: every row that holds it would change, with no write and no audit event',
                    'add a label for the rows to come (ALTER TYPE ... ADD VALUE) and keep this one for the rows that '
                    'hold it');
            END IF;
        END IF;
        -- ALTER SCHEMA ... RENAME TO renames every table in the schema at once: refused as the rename of the
        -- first of them ledgerlock reads by name would be; its partitions of a protected table elsewhere get
        -- their guards installed again, as for a partition's own rename
        IF cmd.command_tag = 'ALTER SCHEMA' AND cmd.classid = 'pg_catalog.pg_namespace'::regclass THEN
            SELECT pg_catalog.format('ALTER SCHEMA ... RENAME TO %s (it holds %s)', cmd.object_identity,
                                     c.oid::regclass) AS what, r.why, r.hint INTO bad
            FROM pg_catalog.pg_class c
            CROSS JOIN LATERAL ledgerlock._ddl_renamed(c.oid, 0) AS r
            WHERE c.relnamespace = cmd.objid AND c.relkind IN ('r', 'p') AND NOT ledgerlock._ddl_permitted(c.oid)
            ORDER BY c.oid
            LIMIT 1;
            IF FOUND THEN
                PERFORM ledgerlock._refuse_ddl(bad.what, bad.why, bad.hint);
            END IF;
            FOR root IN SELECT DISTINCT ledgerlock._protected_root(c.oid) FROM pg_catalog.pg_class c
                        WHERE c.relnamespace = cmd.objid AND c.relispartition
                          AND ledgerlock._protected_root(c.oid) IS NOT NULL
                          AND ledgerlock._drifted_guard(c.oid) IS NOT NULL LOOP
                PERFORM ledgerlock._run_rule_hooks(root, 'install');
            END LOOP;
            CONTINUE;
        END IF;
        -- an attribute of the type a protected table is a typed table of (CREATE TABLE ... OF type), renamed
        -- with CASCADE: the table's column is renamed with it, by no ALTER TABLE
        IF cmd.command_tag = 'ALTER TYPE' AND cmd.classid = 'pg_catalog.pg_class'::regclass AND cmd.objsubid > 0 THEN
            SELECT r.* INTO bad
            FROM pg_catalog.pg_type ty
            JOIN pg_catalog.pg_class t ON t.reloftype = ty.oid
            JOIN pg_catalog.pg_attribute ta ON ta.attrelid = cmd.objid AND ta.attnum = cmd.objsubid
            JOIN pg_catalog.pg_attribute a ON a.attrelid = t.oid AND a.attname = ta.attname AND NOT a.attisdropped
            CROSS JOIN LATERAL ledgerlock._ddl_renamed(t.oid, a.attnum) AS r
            WHERE ty.typrelid = cmd.objid AND NOT ledgerlock._ddl_permitted(t.oid)
            LIMIT 1;
            IF FOUND THEN
                PERFORM ledgerlock._refuse_ddl(bad.what, bad.why, bad.hint);
            END IF;
        END IF;
        -- an attribute of a composite type protected columns hold, renamed (ALTER TYPE ... RENAME ATTRIBUTE,        -- an attribute of a composite type protected columns hold, renamed (ALTER TYPE ... RENAME ATTRIBUTE,
        -- ALTER TABLE ... RENAME COLUMN of a table whose row type they hold: the only commands that report a
        -- column); its drop is refused at sql_drop
        IF cmd.command_tag IN ('ALTER TYPE', 'ALTER TABLE') AND cmd.classid = 'pg_catalog.pg_class'::regclass
           AND cmd.objsubid > 0 AND ledgerlock._protected_composite(cmd.objid) IS NOT NULL THEN
            PERFORM ledgerlock._refuse_ddl(pg_catalog.format('renaming an attribute of %s (to %I)',
                                                             ledgerlock._protected_composite(cmd.objid),
                                                             (SELECT a.attname FROM pg_catalog.pg_attribute a
                                                              WHERE a.attrelid = cmd.objid
                                                                AND a.attnum = cmd.objsubid)),
                'protected tables hold it: every row that holds it would change, with no write and no audit event',
                'add an attribute for the rows to come (ALTER TYPE ... ADD ATTRIBUTE) and keep this one for the '
                'rows that hold it');
        END IF;
        rel := CASE cmd.classid
            WHEN 'pg_catalog.pg_class'::regclass THEN cmd.objid
            WHEN 'pg_catalog.pg_trigger'::regclass
                THEN (SELECT t.tgrelid FROM pg_catalog.pg_trigger t WHERE t.oid = cmd.objid)
            WHEN 'pg_catalog.pg_rewrite'::regclass
                THEN (SELECT r.ev_class FROM pg_catalog.pg_rewrite r WHERE r.oid = cmd.objid)
        END;
        IF rel IS NULL OR ledgerlock._ddl_permitted(rel) THEN
            CONTINUE;
        END IF;
        -- ALTER TABLE ... RENAME TO, SET SCHEMA ('table') and RENAME COLUMN ('table column', objsubid: the
        -- column; no other ALTER TABLE reports a column). A column renamed on a table others inherit from
        -- (INHERITS) is renamed on them too, where they inherit it: each such table is looked at.
        IF cmd.command_tag = 'ALTER TABLE' AND cmd.object_type IN ('table', 'table column') THEN
            WITH RECURSIVE heir(oid) AS (
                SELECT i.inhrelid FROM pg_catalog.pg_inherits i WHERE i.inhparent = rel AND cmd.objsubid > 0
                UNION
                SELECT i.inhrelid FROM heir JOIN pg_catalog.pg_inherits i ON i.inhparent = heir.oid
            )
            SELECT r.* INTO bad
            FROM (SELECT rel AS oid, cmd.objsubid AS attnum
                  UNION ALL
                  SELECT heir.oid, a.attnum FROM heir
                  JOIN pg_catalog.pg_attribute pa ON pa.attrelid = rel AND pa.attnum = cmd.objsubid
                  JOIN pg_catalog.pg_attribute a ON a.attrelid = heir.oid AND a.attname = pa.attname
                                                AND NOT a.attisdropped) AS x
            CROSS JOIN LATERAL ledgerlock._ddl_renamed(x.oid, x.attnum) AS r
            LIMIT 1;
            IF FOUND THEN
                PERFORM ledgerlock._refuse_ddl(bad.what, bad.why, bad.hint);
            END IF;
        END IF;
        -- the foreign key a protected table reads its scope or date through, dropped or made NOT ENFORCED
        -- (PostgreSQL 18): its rows could reference a parent not written yet, or one gone
        IF cmd.command_tag = 'ALTER TABLE' AND cmd.classid = 'pg_catalog.pg_class'::regclass
           AND ledgerlock._protected_root(rel) IS NOT NULL THEN
            hint := ledgerlock._parent_path_problem(ledgerlock._protected_root(rel));
            IF hint IS NOT NULL THEN
                PERFORM ledgerlock._refuse_ddl(pg_catalog.format('ALTER TABLE %s', rel::regclass), hint,
                    pg_catalog.format('keep the foreign key, enforced; to change it, have an admin unprotect %s '
                                      'first (audited), or protect it with columns of its own',
                                      ledgerlock._protected_root(rel)));
            END IF;
        END IF;
        -- row-level security applied to the owner of a table the rules read (ENABLE and FORCE, in either
        -- order): its policies would decide which rows ledgerlock's checks and verification see
        IF cmd.command_tag = 'ALTER TABLE' AND cmd.classid = 'pg_catalog.pg_class'::regclass
           AND ledgerlock._forced_row_security(rel::regclass) = rel  -- (the relation itself)
           AND EXISTS (SELECT FROM ledgerlock._rule_read_relations() x(r, s) WHERE x.r = rel) THEN
            PERFORM ledgerlock._refuse_ddl(pg_catalog.format('FORCE ROW LEVEL SECURITY on %s', rel::regclass),
                pg_catalog.format('ledgerlock''s checks of %s read it as its owner, and its policies would decide '
                                  'which rows they see', (SELECT x.s FROM ledgerlock._rule_read_relations() x(r, s)
                                                          WHERE x.r = rel LIMIT 1)),
                'leave row-level security enabled without FORCE: its policies apply to the application, which '
                'does not own the table (docs/hardening.md)');
        END IF;
        -- a table made to inherit from a protected one: its rows would read as the protected table's, written
        -- past every guard and recorded by no event
        -- a protected table made to inherit from another (PostgreSQL 18 lets a table whose triggers have transition
        -- tables inherit; earlier releases refuse it themselves): a statement on that one would write its rows
        -- without its statement triggers (ledgerlock._inheritance_parent)
        IF cmd.command_tag = 'ALTER TABLE' AND cmd.classid = 'pg_catalog.pg_class'::regclass
           AND ledgerlock._protected_root(rel) = rel AND ledgerlock._inheritance_parent(rel) IS NOT NULL THEN
            PERFORM ledgerlock._refuse_ddl(pg_catalog.format('ALTER TABLE %s', rel::regclass),
                pg_catalog.format('protected table %s would inherit from %s, and a statement on %s writes its rows '
                                  'without firing its statement triggers (the audit capture, the numbering''s settle '
                                  'step)', rel::regclass, ledgerlock._inheritance_parent(rel),
                                  ledgerlock._inheritance_parent(rel)),
                pg_catalog.format('ALTER TABLE %s NO INHERIT %s; to share columns, copy them (LIKE), or protect a '
                                  'partitioned table', rel::regclass, ledgerlock._inheritance_parent(rel)));
        END IF;
        root := ledgerlock._inherited_protected(rel);
        IF root IS NOT NULL THEN
            PERFORM ledgerlock._refuse_ddl(pg_catalog.format('%s %s', cmd.command_tag, rel::regclass),
                pg_catalog.format('it would inherit from protected table %s, whose reads would include its rows, '
                                  'while PostgreSQL fires none of the guards of %s for a write to it', root, root),
                pg_catalog.format('copy the columns instead: CREATE TABLE ... (LIKE %s)', root));
        END IF;
        root := ledgerlock._protected_root(rel);
        -- a partition renamed or moved to another schema: nothing reads its name but its own guards' recorded
        -- definitions, so they are installed again (its rows are filed under the protected table's name)
        IF root IS NOT NULL AND root <> rel AND cmd.command_tag = 'ALTER TABLE' AND cmd.object_type = 'table'
           AND ledgerlock._drifted_guard(rel) IS NOT NULL THEN
            PERFORM ledgerlock._run_rule_hooks(root, 'install');
        END IF;
        IF root IS NULL THEN
            -- a parent a protected table takes its scope or date from: its own guards stay on, and no trigger
            -- or rule of its own may move that column behind them
            SELECT c.child INTO root FROM ledgerlock._period_children(rel::regclass) c LIMIT 1;
            IF root IS NULL THEN
                CONTINUE;
            END IF;
            hint := pg_catalog.format('have an admin unprotect %s (or protect it with columns of its own) first',
                                      root);
            IF cmd.classid IN ('pg_catalog.pg_trigger'::regclass, 'pg_catalog.pg_rewrite'::regclass) THEN
                PERFORM ledgerlock._refuse_ddl(pg_catalog.format('%s %s', cmd.command_tag, cmd.object_identity),
                    pg_catalog.format('protected table %s takes its scope or date from %s, and a trigger or rule '
                                      'of its own could move them after ledgerlock has checked it', root,
                                      rel::regclass), hint);
            END IF;
            SELECT t.tgname INTO bad FROM pg_catalog.pg_trigger t
            WHERE t.tgrelid = rel AND t.tgname ~ '^ll_[0-9]{2}_' AND t.tgenabled <> ledgerlock._guard_tgenabled()
            LIMIT 1;
            IF FOUND THEN
                PERFORM ledgerlock._refuse_ddl(pg_catalog.format('disabling trigger %I on %s', bad.tgname,
                                                                 rel::regclass),
                    pg_catalog.format('it guards the scope or date protected table %s takes from it', root), hint);
            END IF;
            CONTINUE;
        END IF;
        hint := pg_catalog.format('have an admin run ledgerlock.unprotect(%L, reason) first (audited), '
                                  'then protect the table again', root::text);
        IF cmd.classid = 'pg_catalog.pg_trigger'::regclass THEN
            PERFORM ledgerlock._refuse_ddl(pg_catalog.format('%s %s', cmd.command_tag, cmd.object_identity),
                pg_catalog.format('%s is protected by ledgerlock, and a trigger of its own could change a '
                                  'final row after ledgerlock has checked it', root), hint);
        ELSIF cmd.classid = 'pg_catalog.pg_rewrite'::regclass THEN
            PERFORM ledgerlock._refuse_ddl(pg_catalog.format('%s %s', cmd.command_tag, cmd.object_identity),
                pg_catalog.format('%s is protected by ledgerlock, and a rule could redirect its writes', root),
                hint);
        END IF;
        -- Guard triggers stay ENABLE ALWAYS (ENABLE on a subscriber), on the table and on every partition.
        SELECT t.tgrelid::regclass AS tbl, t.tgname INTO bad
        FROM pg_catalog.pg_trigger t
        WHERE t.tgrelid IN (SELECT p.relid FROM ledgerlock._partition_tree(rel::regclass) p)
          AND t.tgname ~ '^ll_[0-9]{2}_' AND t.tgenabled <> ledgerlock._guard_tgenabled()
        LIMIT 1;
        IF FOUND THEN
            PERFORM ledgerlock._refuse_ddl(pg_catalog.format('disabling trigger %I on %s', bad.tgname, bad.tbl),
                pg_catalog.format('it is a ledgerlock guard of protected table %s', root), hint);
        END IF;
        IF (SELECT c.relpersistence FROM pg_catalog.pg_class c WHERE c.oid = rel) <> 'p' THEN
            PERFORM ledgerlock._refuse_ddl(pg_catalog.format('%s %s', cmd.command_tag, cmd.object_identity),
                pg_catalog.format('protected table %s must stay logged: an unlogged table is emptied by a '
                                  'crash and is not replicated', root), hint);
        END IF;
        -- A detached partition keeps its own TRUNCATE guard (whose argument names the protected table)
        -- but no protected table covers it any more.
        SELECT t.tgrelid::regclass AS tbl INTO bad
        FROM pg_catalog.pg_trigger t
        WHERE t.tgname = 'll_00_truncate' AND t.tgnargs = 1
          AND pg_catalog.encode(t.tgargs, 'escape') = root::oid::text || '\000'
          AND ledgerlock._protected_root(t.tgrelid) IS DISTINCT FROM root
        LIMIT 1;
        IF FOUND THEN
            PERFORM ledgerlock._refuse_ddl(pg_catalog.format('detaching partition %s from %s', bad.tbl, root),
                'its final rows would no longer be guarded', hint);
        END IF;
        -- A json column added, dropped or retyped: the audit capture is made again for the table's json
        -- columns (ledgerlock._audit_capture_stale), so it keeps their exact text.
        IF cmd.command_tag = 'ALTER TABLE' AND ledgerlock._audit_capture_stale(root) THEN
            PERFORM ledgerlock._install_90_audit(root);
        END IF;
        -- A new or attached partition gets what PostgreSQL does not pass on (statement triggers: TRUNCATE,
        -- and whatever else a rule installs per partition): every installer runs again. An attached one that
        -- holds rows is refused: they entered the protected table at once, seen by no check (a final row in
        -- a hard-locked month, a number of a series already handed out) and recorded by no event. (Every
        -- partition that was there when the guard was installed has its TRUNCATE guard: install_ddl_guard.)
        FOR bad IN SELECT p.relid::regclass AS tbl FROM pg_catalog.pg_partition_tree(root) p
                   WHERE p.isleaf AND NOT EXISTS (SELECT FROM pg_catalog.pg_trigger t
                                                  WHERE t.tgrelid = p.relid AND t.tgname = 'll_00_truncate') LOOP
            -- a trigger or rule it brings along (its own, or one of a partitioned table attached with it): on the
            -- protected table the guard refuses them (CREATE TRIGGER, CREATE RULE), and a BEFORE UPDATE trigger
            -- that fires after ll_10 could change a final row the final-row guard had accepted
            SELECT x.what INTO carried
            FROM (SELECT pg_catalog.format('trigger %I on %s', t.tgname, t.tgrelid::regclass) AS what, t.tgname AS n
                  FROM pg_catalog.pg_partition_ancestors(bad.tbl) a
                  JOIN pg_catalog.pg_trigger t ON t.tgrelid = a.relid
                  WHERE a.relid <> root AND NOT t.tgisinternal AND t.tgparentid = 0 AND t.tgname !~ '^ll_[0-9]{2}_'
                  UNION ALL
                  SELECT pg_catalog.format('rule %I on %s', r.rulename, r.ev_class::regclass), r.rulename
                  FROM pg_catalog.pg_partition_ancestors(bad.tbl) a
                  JOIN pg_catalog.pg_rewrite r ON r.ev_class = a.relid
                  WHERE a.relid <> root AND r.rulename <> '_RETURN') AS x
            ORDER BY x.n
            LIMIT 1;
            -- an unlogged one (ATTACH PARTITION takes a table as it is: CREATE UNLOGGED TABLE ... PARTITION OF
            -- is refused above)
            IF EXISTS (SELECT FROM pg_catalog.pg_partition_ancestors(bad.tbl) a
                       JOIN pg_catalog.pg_class c ON c.oid = a.relid
                       WHERE a.relid <> root AND c.relpersistence <> 'p') THEN
                PERFORM ledgerlock._refuse_ddl(pg_catalog.format('attaching partition %s to %s', bad.tbl, root),
                    pg_catalog.format('protected table %s must stay logged: an unlogged table is emptied by a crash '
                                      'and is not replicated', root),
                    pg_catalog.format('ALTER TABLE %s SET LOGGED, then attach it', bad.tbl));
            END IF;
            IF carried IS NOT NULL THEN
                PERFORM ledgerlock._refuse_ddl(pg_catalog.format('attaching partition %s to %s', bad.tbl, root),
                    pg_catalog.format('it carries %s, which would run on rows of protected table %s beside '
                                      'ledgerlock''s guards (a BEFORE UPDATE trigger that fires after them could '
                                      'change a final row they accepted)', carried, root),
                    pg_catalog.format('drop it first, then attach the partition (the guard refuses triggers and rules '
                                      'on %s and its partitions)', root));
            END IF;
            EXECUTE pg_catalog.format('SELECT EXISTS (SELECT FROM ONLY %s)', bad.tbl) INTO held;
            IF held THEN
                PERFORM ledgerlock._refuse_ddl(pg_catalog.format('attaching partition %s to %s', bad.tbl, root),
                    'it holds rows that no check of ledgerlock saw and no audit event records',
                    pg_catalog.format('attach it empty, then insert its rows through %s, which checks and records '
                                      'them', root));
            END IF;
        END LOOP;
        IF EXISTS (SELECT FROM pg_catalog.pg_partition_tree(root) p
                   WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_trigger t
                                     WHERE t.tgrelid = p.relid AND t.tgname = 'll_00_truncate')) THEN
            PERFORM ledgerlock._run_rule_hooks(root, 'install');
        END IF;
    END LOOP;
    -- what an ALTER TABLE or ALTER TYPE changed of every row of a protected table with no write and no rewrite
    -- (_protected_columns): a column's type, by a binary-coercible cast (ALTER COLUMN amount TYPE oid); a virtual
    -- generated column's expression (ALTER COLUMN ... SET EXPRESSION, PostgreSQL 18)
    IF TG_TAG IN ('ALTER TABLE', 'ALTER TYPE') THEN
        SELECT (k.value ->> 'type')::oid::regtype AS was_type, a.atttypid::regtype AS now_type,
               k.value ->> 'expr' AS was, pg_catalog.pg_get_expr(d.adbin, d.adrelid) AS now,
               a.attcollation <> (k.value ->> 'coll')::oid AS coll_changed, a.attcollation::regcollation AS coll,
               a.attrelid::regclass AS tbl, a.attname INTO bad
        FROM pg_catalog.jsonb_each(columns_kept) k
        JOIN pg_catalog.pg_attribute a ON a.attrelid = pg_catalog.split_part(k.key, '.', 1)::oid
                                      AND a.attnum = pg_catalog.split_part(k.key, '.', 2)::smallint
                                      AND NOT a.attisdropped
        LEFT JOIN pg_catalog.pg_attrdef d ON a.attgenerated = 'v' AND d.adrelid = a.attrelid AND d.adnum = a.attnum
        LEFT JOIN pg_catalog.pg_collation co ON co.oid = a.attcollation
        WHERE ((k.value ? 'type' AND a.atttypid <> (k.value ->> 'type')::oid
                AND NOT ledgerlock._type_change_keeps_values((k.value ->> 'type')::oid::regtype, a.atttypid::regtype))
               OR (k.value ? 'expr' AND pg_catalog.pg_get_expr(d.adbin, d.adrelid) IS DISTINCT FROM k.value ->> 'expr')
               -- a scope column's collation made nondeterministic (ledgerlock._scope_column_problem)
               OR (k.value ? 'coll' AND a.attcollation <> (k.value ->> 'coll')::oid AND NOT co.collisdeterministic))
          AND NOT ledgerlock._ddl_permitted(a.attrelid)
        ORDER BY k.key
        LIMIT 1;
        IF FOUND AND bad.was_type IS DISTINCT FROM bad.now_type THEN
            PERFORM ledgerlock._refuse_ddl(
                pg_catalog.format('changing the type of column %s.%I (%s to %s)', bad.tbl, bad.attname,
                                  bad.was_type, bad.now_type),
                pg_catalog.format('PostgreSQL changes it without rewriting a row (a binary-coercible cast), so every '
                                  'row of protected table %s would read another value (or compare otherwise: an '
                                  'integer -5 reads 4294967291 as an oid), with no write and no audit event',
                                  bad.tbl),
                'add a column of the new type, or have an admin unprotect the table first (audited)');
        ELSIF FOUND AND bad.coll_changed THEN
            PERFORM ledgerlock._refuse_ddl(
                pg_catalog.format('changing the collation of scope column %s.%I to %s', bad.tbl, bad.attname,
                                  bad.coll),
                pg_catalog.format('%s is nondeterministic: it calls texts that differ equal (''ACME'' and ''acme''), '
                                  'which locks, scope marks and number series tell apart: a row of protected table %s '
                                  'could be written into a locked window of its scope under another spelling',
                                  bad.coll, bad.tbl),
                'keep the scope column''s collation deterministic (protect refuses a scope column of a '
                'nondeterministic collation, for the same reason)');
        ELSIF FOUND THEN
            PERFORM ledgerlock._refuse_ddl(
                pg_catalog.format('changing the expression of virtual generated column %s.%I (%s to %s)', bad.tbl,
                                  bad.attname, bad.was, bad.now),
                pg_catalog.format('the column stores nothing: every row of protected table %s would read another '
                                  'value, with no write and no audit event', ledgerlock._protected_root(bad.tbl)),
                'add a column with the new expression (ALTER TABLE ... ADD COLUMN ... GENERATED ALWAYS AS (...)), '
                'or have an admin unprotect the table first (audited)');
        END IF;
    END IF;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._ddl_guard_command_end() FROM PUBLIC;

-- sql_drop: dropping guard triggers, protected tables, their partitions and columns, ledgerlock objects.
CREATE OR REPLACE FUNCTION ledgerlock._ddl_guard_sql_drop()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER  -- reads ledgerlock's registry whoever runs the DDL
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
AS $$
DECLARE
    obj record;
    rel oid;
    bad record;
    hint text := 'have an admin run ledgerlock.unprotect(table, reason) first (audited)';
BEGIN
    FOR obj IN SELECT * FROM pg_catalog.pg_event_trigger_dropped_objects() LOOP
        IF obj.schema_name IN ('ledgerlock', 'ledgerlock_gate') AND NOT obj.is_temporary THEN
            PERFORM ledgerlock._ddl_guard_own_object(pg_catalog.format('DROP %s %s', obj.object_type,
                                                                       obj.object_identity));
        END IF;
        IF obj.object_type IN ('table', 'table column')
           AND EXISTS (SELECT FROM ledgerlock.protected_table p WHERE p.tbl::oid = obj.objid)
           AND NOT ledgerlock._ddl_permitted(obj.objid) THEN
            PERFORM ledgerlock._refuse_ddl(pg_catalog.format('DROP %s %s', obj.object_type, obj.object_identity),
                'the table is protected by ledgerlock', hint);
        END IF;
        -- the primary key (or unique index) a protected table's rows are named by (ledgerlock._key_problem): an
        -- index is dropped with no table named, so every protected table is looked at (drops of constraints
        -- and indexes only)
        IF obj.object_type IN ('table constraint', 'index') THEN
            SELECT p.tbl, ledgerlock._key_problem(p.tbl) AS problem INTO bad
            FROM ledgerlock.protected_table p
            WHERE ledgerlock._relation_exists(p.tbl) AND NOT ledgerlock._ddl_permitted(p.tbl)
              AND ledgerlock._key_problem(p.tbl) IS NOT NULL
            ORDER BY p.tbl::oid
            LIMIT 1;
            IF FOUND THEN
                PERFORM ledgerlock._refuse_ddl(pg_catalog.format('DROP %s %s', obj.object_type, obj.object_identity),
                    pg_catalog.format('%s: two rows could then carry the key of a final row, and the audit trail, '
                                      'the refusals and verification name rows by it', bad.problem),
                    pg_catalog.format('keep the key; to change it, have an admin unprotect %s first (audited)',
                                      bad.tbl));
            END IF;
        END IF;
        -- the foreign key a protected table reads its scope or date through (dropped, or cascaded to by the drop
        -- of what it references: the parent's key, the parent)
        IF obj.object_type = 'table constraint' THEN
            rel := pg_catalog.to_regclass(pg_catalog.format('%I.%I', obj.address_names[1], obj.address_names[2]));
            IF rel IS NOT NULL AND ledgerlock._protected_root(rel) IS NOT NULL AND NOT ledgerlock._ddl_permitted(rel)
               AND ledgerlock._parent_path_problem(ledgerlock._protected_root(rel)) IS NOT NULL THEN
                PERFORM ledgerlock._refuse_ddl(pg_catalog.format('DROP %s %s', obj.object_type, obj.object_identity),
                    ledgerlock._parent_path_problem(ledgerlock._protected_root(rel)),
                    pg_catalog.format('have an admin unprotect %s first (audited), or protect it with columns of '
                                      'its own', ledgerlock._protected_root(rel)));
            END IF;
        END IF;
        -- an attribute of a composite type protected columns hold (see _protected_composite)
        IF obj.object_type IN ('composite type column', 'table column')
           AND ledgerlock._protected_composite(obj.objid) IS NOT NULL THEN
            PERFORM ledgerlock._refuse_ddl(pg_catalog.format('dropping attribute %I of %s', obj.address_names[3],
                                                             ledgerlock._protected_composite(obj.objid)),
                'protected tables hold it: every row that holds it would change, with no write and no audit event',
                'add an attribute for the rows to come (ALTER TYPE ... ADD ATTRIBUTE) and keep this one for the '
                'rows that hold it');
        END IF;
        -- the column of a parent row a protected table takes its scope or date from
        IF obj.object_type = 'table column' AND NOT ledgerlock._ddl_permitted(obj.objid)
           AND EXISTS (SELECT FROM ledgerlock.protected_table p
                       JOIN pg_catalog.pg_constraint c ON c.conrelid = p.tbl AND c.contype = 'f'
                                                      AND c.confrelid = obj.objid
                                                      AND pg_catalog.cardinality(c.conkey) = 1
                       JOIN pg_catalog.pg_attribute a ON a.attrelid = p.tbl AND a.attnum = c.conkey[1]
                       WHERE a.attname || '.' || obj.address_names[3] IN (p.scope_column, p.date_column)) THEN
            PERFORM ledgerlock._refuse_ddl(pg_catalog.format('DROP %s %s', obj.object_type, obj.object_identity),
                'a protected table takes its scope or date from it', hint);
        END IF;
        IF obj.object_type = 'trigger' AND obj.address_names[3] ~ '^ll_[0-9]{2}_'
           AND obj.address_names[1] <> 'ledgerlock' THEN  -- ledgerlock's own tables: the rule above
            -- the trigger's table: still there, or dropped in this same command
            rel := coalesce(
                pg_catalog.to_regclass(pg_catalog.format('%I.%I', obj.address_names[1], obj.address_names[2])),
                (SELECT d.objid FROM pg_catalog.pg_event_trigger_dropped_objects() d
                 WHERE d.object_type = 'table' AND d.address_names = obj.address_names[1:2] LIMIT 1));
            IF rel IS NULL OR NOT ledgerlock._ddl_permitted(rel) THEN
                PERFORM ledgerlock._refuse_ddl(pg_catalog.format('dropping trigger %s', obj.object_identity),
                    'it is a ledgerlock guard of a protected table', hint);
            END IF;
        END IF;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._ddl_guard_sql_drop() FROM PUBLIC;

-- table_rewrite: ALTER COLUMN TYPE ... USING, SET UNLOGGED and friends rewrite every row without a single
-- row trigger firing.
CREATE OR REPLACE FUNCTION ledgerlock._ddl_guard_table_rewrite()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER  -- reads ledgerlock's registry whoever runs the DDL
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
AS $$
DECLARE
    rel oid := pg_catalog.pg_event_trigger_table_rewrite_oid();
    root regclass := ledgerlock._protected_root(rel);
BEGIN
    IF root IS NOT NULL AND NOT ledgerlock._ddl_permitted(rel) THEN
        PERFORM ledgerlock._refuse_ddl(pg_catalog.format('rewriting %s (%s)', rel::regclass, TG_TAG),
            pg_catalog.format('a rewrite changes every row of protected table %s without any row trigger firing',
                              root),
            pg_catalog.format('have an admin run ledgerlock.unprotect(%L, reason) first (audited), then protect '
                              'the table again', root::text));
    END IF;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._ddl_guard_table_rewrite() FROM PUBLIC;

-- The names of the guard's event triggers (per database).
CREATE OR REPLACE FUNCTION ledgerlock.ddl_guard_events()
RETURNS TABLE(event_trigger name, event text, function regproc)
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    VALUES ('ledgerlock_ddl_guard_end'::name, 'ddl_command_end', 'ledgerlock._ddl_guard_command_end'::regproc),
           ('ledgerlock_ddl_guard_drop'::name, 'sql_drop', 'ledgerlock._ddl_guard_sql_drop'::regproc),
           ('ledgerlock_ddl_guard_rewrite'::name, 'table_rewrite', 'ledgerlock._ddl_guard_table_rewrite'::regproc),
           ('ledgerlock_ddl_guard_start'::name, 'ddl_command_start', 'ledgerlock._ddl_guard_command_start'::regproc)
$$;
REVOKE ALL ON FUNCTION ledgerlock.ddl_guard_events() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.ddl_guard_events() TO ledgerlock_admin, ledgerlock_auditor;

-- Whether the DDL guard is installed but lacks one of its event triggers (installed by a release that had fewer)
-- and this session may create it (a superuser's, running as itself): `ledgerlock migrate` then completes it.
CREATE OR REPLACE FUNCTION ledgerlock._ddl_guard_completable()
RETURNS boolean
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce((SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user), false)
       AND EXISTS (SELECT FROM pg_catalog.pg_event_trigger e
                   JOIN ledgerlock.ddl_guard_events() d ON d.event_trigger = e.evtname)
       AND EXISTS (SELECT FROM ledgerlock.ddl_guard_events() d
                   WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_event_trigger e WHERE e.evtname = d.event_trigger))
$$;
REVOKE ALL ON FUNCTION ledgerlock._ddl_guard_completable() FROM PUBLIC;

-- Create (or recreate) the guard's event triggers, ENABLE ALWAYS. Needs a superuser: not SECURITY DEFINER.
CREATE OR REPLACE FUNCTION ledgerlock.install_ddl_guard()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ev record;
    n integer := 0;
    tbl regclass;
BEGIN
    IF NOT coalesce((SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user), false) THEN
        RAISE EXCEPTION USING ERRCODE = '42501',
            MESSAGE = pg_catalog.format('installing the DDL guard needs a superuser; %s is not one', current_user),
            HINT = 'PostgreSQL lets only superusers create event triggers; see docs/hardening.md for what '
                   'remains uncovered without one';
    END IF;
    -- every partition gets what a partition created without the guard may lack (its TRUNCATE guard), so that
    -- the guard takes a partition without one for a new or attached one (_ddl_guard_command_end)
    FOR tbl IN SELECT p.tbl FROM ledgerlock.protected_table p
               WHERE ledgerlock._relation_exists(p.tbl)
                 AND EXISTS (SELECT FROM pg_catalog.pg_partition_tree(p.tbl) x
                             WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_trigger t
                                               WHERE t.tgrelid = x.relid AND t.tgname = 'll_00_truncate')) LOOP
        PERFORM ledgerlock._run_rule_hooks(tbl, 'install');
    END LOOP;
    FOR ev IN SELECT * FROM ledgerlock.ddl_guard_events() LOOP
        EXECUTE pg_catalog.format('DROP EVENT TRIGGER IF EXISTS %I', ev.event_trigger);
        EXECUTE pg_catalog.format('CREATE EVENT TRIGGER %I ON %s EXECUTE FUNCTION %s()',
                                  ev.event_trigger, ev.event, ev.function);
        EXECUTE pg_catalog.format('ALTER EVENT TRIGGER %I ENABLE ALWAYS', ev.event_trigger);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.install_ddl_guard() FROM PUBLIC;

CREATE OR REPLACE FUNCTION ledgerlock.uninstall_ddl_guard()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ev record;
    n integer := 0;
BEGIN
    FOR ev IN SELECT * FROM ledgerlock.ddl_guard_events() LOOP
        IF EXISTS (SELECT FROM pg_catalog.pg_event_trigger e WHERE e.evtname = ev.event_trigger) THEN
            EXECUTE pg_catalog.format('DROP EVENT TRIGGER %I', ev.event_trigger);
            n := n + 1;
        END IF;
    END LOOP;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.uninstall_ddl_guard() FROM PUBLIC;
