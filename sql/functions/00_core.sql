-- Core helpers every rule shares: refusals, capabilities, row labels, guard-trigger installation.
-- Every function pins search_path (pg_catalog first, pg_temp last) and names ledgerlock objects in full,
-- so that no schema, operator or temporary object a client creates can change what runs here.

-- Raise a ledgerlock refusal: its own SQLSTATE, a message a person understands, and the way out.
-- Call it, and every helper between a guard and it, as an expression (`refused := ledgerlock._refuse(...)` into a
-- text variable, arguments without subqueries) rather than with PERFORM: PERFORM runs a query, whose text
-- PostgreSQL adds to the error's CONTEXT, which ORMs print with the message; an expression adds one
-- "PL/pgSQL function ... line N" frame and no SQL.
CREATE OR REPLACE FUNCTION ledgerlock._refuse(sqlstate text, message text, hint text DEFAULT NULL,
                                              detail text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- RAISE options cannot be null, and an empty one still prints as "HINT:": raise only what there is.
    IF hint IS NULL AND detail IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = sqlstate, MESSAGE = message;
    ELSIF detail IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = sqlstate, MESSAGE = message, HINT = hint;
    ELSIF hint IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = sqlstate, MESSAGE = message, DETAIL = detail;
    ELSE
        RAISE EXCEPTION USING ERRCODE = sqlstate, MESSAGE = message, HINT = hint, DETAIL = detail;
    END IF;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._refuse(text, text, text, text) FROM PUBLIC;

-- Whether role who acts as role grp: holds its privileges (a membership that inherits) or may SET ROLE to it,
-- directly or through roles it belongs to. Not through a grant of ADMIN alone, which PostgreSQL 16 on gives a
-- CREATEROLE role over every role it creates: the cloud admin who created a tenant admin's role, or
-- ledgerlock_scoped, does not become limited by it. (15 has no SET option: any membership counts there.) No SET
-- clause, so that it is inlined; the row-level security policies call it too (migration 0044, which creates it
-- first: the migrations run before the functions are installed).
CREATE OR REPLACE FUNCTION ledgerlock._acts_as(who name, grp oid)
RETURNS boolean
LANGUAGE sql
STABLE
AS $$
    SELECT pg_catalog.pg_has_role(who, grp, 'USAGE')
        OR pg_catalog.pg_has_role(who, grp, CASE WHEN pg_catalog.current_setting('server_version_num')::integer
                                                      OPERATOR(pg_catalog.>=) 160000 THEN 'SET' ELSE 'MEMBER' END)
$$;
REVOKE ALL ON FUNCTION ledgerlock._acts_as(name, oid) FROM PUBLIC;
-- (the row-level security policies of migration 0044 call it, as the reading role: a ledgerlock role, or a
-- member of pg_read_all_data, which reads every table and is held to the policies like any other reader)
GRANT EXECUTE ON FUNCTION ledgerlock._acts_as(name, oid)
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor, pg_read_all_data;

-- Capabilities come from database roles of the session user, never from anything a client can set: the
-- ledgerlock role it acts as (ledgerlock._acts_as: not a grant of ADMIN alone, which neither gives the role's
-- privileges nor lets it SET ROLE). admin > controller; auditor is separate (read-only evidence).
-- SECURITY DEFINER so that every role may ask it (_acts_as is not PUBLIC's); it reads session_user only.
CREATE OR REPLACE FUNCTION ledgerlock.has_capability(capability text)
RETURNS boolean
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
AS $$
    SELECT CASE capability
        WHEN 'admin' THEN ledgerlock._acts_as(session_user, 'ledgerlock_admin'::regrole)
        WHEN 'controller' THEN ledgerlock._acts_as(session_user, 'ledgerlock_admin'::regrole)
                            OR ledgerlock._acts_as(session_user, 'ledgerlock_controller'::regrole)
        WHEN 'auditor' THEN ledgerlock._acts_as(session_user, 'ledgerlock_admin'::regrole)
                            OR ledgerlock._acts_as(session_user, 'ledgerlock_auditor'::regrole)
        ELSE false
    END
$$;
REVOKE ALL ON FUNCTION ledgerlock.has_capability(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.has_capability(text) TO PUBLIC;

CREATE OR REPLACE FUNCTION ledgerlock._require_capability(capability text, action text)
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT ledgerlock.has_capability(capability) THEN
        PERFORM ledgerlock._refuse('LL005',
            pg_catalog.format('%s requires the ledgerlock_%s role; %s is not a member', action, capability,
                              session_user),
            pg_catalog.format('ask a DBA to GRANT ledgerlock_%s TO %I', capability, session_user));
    END IF;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._require_capability(text, text) FROM PUBLIC;

-- The characters a terminal or a log acts on instead of showing, as the inside of a regular expression's
-- bracket: control characters (C0 but NUL, DEL, C1) and format characters (soft hyphen, the Arabic letter
-- mark, the Mongolian vowel separator, the zero-width space, joiners and bidi marks, the line and paragraph
-- separators, the bidi embeddings and overrides, U+2060.. with the isolates, the BOM, the interlinear
-- annotations, the tags). Listed by code point, so neither the locale nor the encoding changes it (in another
-- encoding than UTF8 a code point past it matches nothing). _visible_text trims them with the blanks;
-- _shown writes them as escapes.
CREATE OR REPLACE FUNCTION ledgerlock._unshown_chars()
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on  -- its literals hold backslashes
AS $$
    SELECT '\u0001-\u001f\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff'
           '\ufff9-\ufffb\U000e0001-\U000e007f'
$$;
REVOKE ALL ON FUNCTION ledgerlock._unshown_chars() FROM PUBLIC;

-- Text trimmed of invisible characters at both ends, or null when it has no visible character. Invisible:
-- whitespace of every Unicode kind (space, NBSP, U+1680, U+2000..U+200A, U+202F, U+205F, U+3000, and the
-- Hangul fillers, which print blank) and the characters of _unshown_chars (tab, newlines, the other controls,
-- the zero-width and bidi characters, tags).
CREATE OR REPLACE FUNCTION ledgerlock._visible_text(t text)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on  -- its literals hold backslashes
AS $$
    SELECT nullif(pg_catalog.regexp_replace(t, '^' || c || '+|' || c || '+$', '', 'g'), '')
    FROM (SELECT '[\u0020\u00a0\u115f\u1160\u1680\u2000-\u200a\u202f\u205f\u3000\u3164\uffa0'
                 || ledgerlock._unshown_chars() || ']' AS c) AS blank
$$;
REVOKE ALL ON FUNCTION ledgerlock._visible_text(text) FROM PUBLIC;

-- A text for people, with the characters of _unshown_chars written as escapes (\x1b, \r, \n, \u202e). What
-- verification reports quotes the application's values (a tampered note, a key), and a row's label its key:
-- a value holding ESC [1A ESC [2K or a CR erased or printed over the finding in the auditor's psql, and made
-- a refusal two lines in a log, as the manager's own output did before it escaped them (manager/output.py,
-- printable, which escapes these and every other format, private-use or unassigned character). A text
-- without them is returned as it is.
CREATE OR REPLACE FUNCTION ledgerlock._shown(v text)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on  -- its literals hold backslashes
AS $$
    SELECT CASE WHEN v !~ cls THEN v ELSE
               (SELECT pg_catalog.string_agg(
                           CASE WHEN x.c !~ cls THEN x.c
                                WHEN x.c = E'\n' THEN '\n' WHEN x.c = E'\r' THEN '\r' WHEN x.c = E'\t' THEN '\t'
                                WHEN pg_catalog.ascii(x.c) < 256
                                THEN '\x' || pg_catalog.lpad(pg_catalog.to_hex(pg_catalog.ascii(x.c)), 2, '0')
                                WHEN pg_catalog.ascii(x.c) < 65536
                                THEN '\u' || pg_catalog.lpad(pg_catalog.to_hex(pg_catalog.ascii(x.c)), 4, '0')
                                ELSE '\U' || pg_catalog.lpad(pg_catalog.to_hex(pg_catalog.ascii(x.c)), 8, '0') END,
                           '' ORDER BY x.o)
                FROM pg_catalog.regexp_split_to_table(v, '') WITH ORDINALITY AS x(c, o)) END
    FROM (SELECT '[' || ledgerlock._unshown_chars() || ']' AS cls) AS unshown
$$;
REVOKE ALL ON FUNCTION ledgerlock._shown(text) FROM PUBLIC;


-- A reason without a visible character (_visible_text) is refused everywhere a reason is required (LL007);
-- the reason kept is trimmed of invisible characters at both ends.
CREATE OR REPLACE FUNCTION ledgerlock._require_reason(reason text, action text)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    visible text := ledgerlock._visible_text(reason);
BEGIN
    IF visible IS NULL THEN
        PERFORM ledgerlock._refuse('LL007', pg_catalog.format('%s requires a reason', action),
                                   'pass a reason with a visible character; it is kept in the audit trail');
    END IF;
    RETURN visible;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._require_reason(text, text) FROM PUBLIC;

-- An argument a call cannot do without: "approve_unlock requires the id of an unlock request" (22023), instead
-- of a message with a hole where the null was printed ("unlock request # does not exist").
CREATE OR REPLACE FUNCTION ledgerlock._require_value(present boolean, action text, what text)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF present IS NOT TRUE THEN
        PERFORM ledgerlock._refuse('22023', pg_catalog.format('%s requires %s', action, what));
    END IF;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._require_value(boolean, text, text) FROM PUBLIC;

-- The protected table a relation stands for: itself, or the protected partitioned table it is a partition
-- of. Row triggers on a partitioned table run on the leaf partition (TG_RELID is the partition), so every
-- registry lookup from a trigger goes through here.
-- PL/pgSQL, as the catalog readers below on the write path are: the session keeps its plans. A SQL function
-- with a SET clause is planned again whenever a new statement calls it (80-100 us a call on 16, against ~5).
CREATE OR REPLACE FUNCTION ledgerlock._rule_table(rel regclass)
RETURNS regclass
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t regclass;
BEGIN
    SELECT p.tbl INTO t FROM ledgerlock.protected_table p WHERE p.tbl = rel;
    IF NOT FOUND THEN  -- a partition: the protected table it belongs to
        SELECT p.tbl INTO t FROM ledgerlock.protected_table p
        WHERE p.tbl IN (SELECT a.relid FROM pg_catalog.pg_partition_ancestors(rel) AS a) LIMIT 1;
    END IF;
    RETURN t;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._rule_table(regclass) FROM PUBLIC;

-- Whether a relation exists. A protected table dropped where no DDL guard refuses it (a managed service
-- without a superuser) leaves its registry row behind: the installers pass it by (reinstall_guards, a lock
-- raising the marks, number_gaps), while verify_audit and doctor report it and unprotect retires it. No SET
-- clause, so that PostgreSQL inlines it.
CREATE OR REPLACE FUNCTION ledgerlock._relation_exists(rel oid)
RETURNS boolean
LANGUAGE sql
STABLE
AS $$
    SELECT EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid = rel)
$$;
REVOKE ALL ON FUNCTION ledgerlock._relation_exists(oid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._relation_exists(oid) TO ledgerlock_admin, ledgerlock_auditor;  -- doctor

-- A table and its partitions, all levels, the table itself at level 0 whether it is partitioned or not
-- (pg_partition_tree lists nothing for a table that is not partitioned). No SET clause, names qualified:
-- inlined into its callers' queries.
CREATE OR REPLACE FUNCTION ledgerlock._partition_tree(tbl regclass)
RETURNS TABLE(relid regclass, level integer)
LANGUAGE sql
STABLE
AS $$
    SELECT tbl, 0 UNION SELECT p.relid, p.level FROM pg_catalog.pg_partition_tree(tbl) p
$$;
REVOKE ALL ON FUNCTION ledgerlock._partition_tree(regclass) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._partition_tree(regclass) TO ledgerlock_admin, ledgerlock_auditor;  -- doctor

-- The registry row of a protected table (or of the protected table a partition belongs to), or a clear
-- error.
CREATE OR REPLACE FUNCTION ledgerlock._config(tbl regclass)
RETURNS ledgerlock.protected_table
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cfg ledgerlock.protected_table;
BEGIN
    SELECT * INTO cfg FROM ledgerlock.protected_table p WHERE p.tbl = ledgerlock._rule_table(_config.tbl);
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('table %s is not protected by ledgerlock', tbl),
            HINT = 'protect it first with ledgerlock.protect(...)';
    END IF;
    RETURN cfg;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._config(regclass) FROM PUBLIC;

-- ---------------------------------------------------------------------------------------------------
-- A row's scope. scope_column names a column of the table itself, or 'fk_column.parent_column': the scope
-- is the parent_column of the row its foreign key fk_column references (one hop: journal entry -> ledger,
-- whose entity_id is the scope). A column of the table whose name contains the dot wins.

-- Whether a foreign key constraint is one PostgreSQL made for a partition of the table it references: a
-- foreign key to a partitioned table is stored once per partition too, on the same referencing table, each
-- with the one to the partitioned table as its parent. The referencing table still has one foreign key.
-- (A partition of a partitioned referencing table has its own clone, on itself: that one is not skipped.)
-- PL/pgSQL, as the catalog readers on the write path are (see _rule_table): _scope_path calls it, and as a SQL
-- function with a SET clause it was planned again at every call (~100 us, tripling _scope_path's cost).
CREATE OR REPLACE FUNCTION ledgerlock._fk_partition_clone(con oid)
RETURNS boolean
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN EXISTS (SELECT FROM pg_catalog.pg_constraint c JOIN pg_catalog.pg_constraint p ON p.oid = c.conparentid
                   WHERE c.oid = _fk_partition_clone.con AND p.conrelid = c.conrelid);
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._fk_partition_clone(oid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._fk_partition_clone(oid) TO ledgerlock_admin, ledgerlock_auditor;  -- doctor

-- The parent a scope comes from, read from the catalog: the table's one single-column foreign key on
-- fk_column, the parent's referenced column, and its scope column. No row when scope_column is null, a column
-- of the table, or does not resolve (protect refuses such a declaration).
CREATE OR REPLACE FUNCTION ledgerlock._scope_path(tbl regclass, scope_column text)
RETURNS TABLE(fk_column name, parent regclass, parent_key name, parent_key_type regtype, parent_column name)
LANGUAGE plpgsql  -- see _rule_table: as one SQL query this was planned again on every call (0.4-0.6 ms)
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF scope_column IS NULL OR pg_catalog.strpos(scope_column, '.') = 0 THEN
        RETURN;
    END IF;
    RETURN QUERY
    SELECT a.attname, c.confrelid::regclass, pa.attname, pa.atttypid::regtype, pc.attname
    FROM (SELECT pg_catalog.split_part(_scope_path.scope_column, '.', 1) AS fk,
                 pg_catalog.substr(_scope_path.scope_column, pg_catalog.strpos(_scope_path.scope_column, '.') + 1) AS pcol
         ) d
    JOIN pg_catalog.pg_attribute a ON a.attrelid = tbl AND a.attname = d.fk AND a.attnum > 0 AND NOT a.attisdropped
    JOIN pg_catalog.pg_constraint c ON c.conrelid = tbl AND c.contype = 'f' AND c.conkey = ARRAY[a.attnum]
                                   AND NOT ledgerlock._fk_partition_clone(c.oid)
    JOIN pg_catalog.pg_attribute pa ON pa.attrelid = c.confrelid AND pa.attnum = c.confkey[1]
    JOIN pg_catalog.pg_attribute pc ON pc.attrelid = c.confrelid AND pc.attname = d.pcol AND pc.attnum > 0
                                   AND NOT pc.attisdropped
    WHERE pg_catalog.strpos(_scope_path.scope_column, '.') > 0
      AND NOT EXISTS (SELECT FROM pg_catalog.pg_attribute x
                      WHERE x.attrelid = tbl AND x.attname = _scope_path.scope_column AND NOT x.attisdropped)
    ORDER BY c.oid
    LIMIT 1;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._scope_path(regclass, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._scope_path(regclass, text) TO ledgerlock_admin, ledgerlock_auditor;  -- doctor's orphan check

-- The table rel inherits from by plain inheritance (INHERITS, ALTER TABLE ... INHERIT; not as a partition),
-- the first in its order; null when none. A statement on that table writes rel's rows too, and PostgreSQL
-- fires rel's row triggers for them but not its statement triggers, which only a statement naming rel fires:
-- a protected table's audit capture and the numbering's settle step would not run. protect refuses such a
-- table, the DDL guard an INHERIT of a protected one (before PostgreSQL 18 the server refuses it itself: the
-- capture's triggers have transition tables), doctor reports one.
CREATE OR REPLACE FUNCTION ledgerlock._inheritance_parent(rel oid)
RETURNS regclass
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT i.inhparent::regclass
    FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
    WHERE i.inhrelid = rel AND NOT c.relispartition
    ORDER BY i.inhseqno LIMIT 1
$$;
REVOKE ALL ON FUNCTION ledgerlock._inheritance_parent(oid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._inheritance_parent(oid) TO ledgerlock_admin, ledgerlock_auditor;  -- doctor

-- What is wrong with the key a protected table's rows are named by (the registry's key_columns, its primary
-- key when it was protected), as a sentence; null while a unique index that PostgreSQL checks at once, on
-- exactly those columns and on every row, holds it. Without one, two rows could carry the key of a final
-- row: the trail, the refusals and verification name rows by it. The DDL guard refuses a drop that leaves a
-- protected table so, doctor reports one.
CREATE OR REPLACE FUNCTION ledgerlock._key_problem(tbl regclass)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    keys name[] := (SELECT p.key_columns FROM ledgerlock.protected_table p WHERE p.tbl = _key_problem.tbl);
BEGIN
    IF keys IS NULL OR EXISTS (
        SELECT FROM pg_catalog.pg_index i
        WHERE i.indrelid = tbl AND i.indisunique AND i.indimmediate AND i.indpred IS NULL AND i.indexprs IS NULL
          AND i.indnkeyatts = pg_catalog.cardinality(keys)
          AND NOT EXISTS (SELECT FROM pg_catalog.unnest((i.indkey::int2[])[0:i.indnkeyatts - 1]) AS k(n)
                          JOIN pg_catalog.pg_attribute a ON a.attrelid = tbl AND a.attnum = k.n
                          WHERE a.attname <> ALL (keys))) THEN
        RETURN NULL;
    END IF;
    RETURN pg_catalog.format('%s has no primary key or unique index on (%s), the key its rows are named by', tbl,
                             pg_catalog.array_to_string(keys, ', '));
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._key_problem(regclass) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._key_problem(regclass) TO ledgerlock_admin, ledgerlock_auditor;  -- doctor

-- Whether PostgreSQL enforces the foreign key con (PostgreSQL 18 lets a foreign key be NOT ENFORCED: its
-- rows may then reference no row at all; the column pg_constraint.conenforced is read through to_jsonb, so
-- that this reads the same on servers before 18, where every foreign key is enforced). False when con is gone.
CREATE OR REPLACE FUNCTION ledgerlock._fk_enforced(con oid)
RETURNS boolean
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce((SELECT coalesce((pg_catalog.to_jsonb(c.*) OPERATOR(pg_catalog.->>) 'conenforced')::boolean,
                                     true)
                     FROM pg_catalog.pg_constraint c WHERE c.oid = con), false)
$$;
REVOKE ALL ON FUNCTION ledgerlock._fk_enforced(oid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._fk_enforced(oid) TO ledgerlock_admin, ledgerlock_auditor;  -- doctor

-- What is wrong with the foreign key a protected table's scope or date is read through ('fk_column.column'),
-- as a sentence; null when each such path resolves through an enforced foreign key (and for a table that
-- reads neither from a parent). A path broken this way (the foreign key dropped, or made NOT ENFORCED) lets
-- a row reference a parent that does not exist yet, and take a date in a locked window when that parent is
-- inserted, or keep a row whose parent is gone: the DDL guard refuses it, doctor reports it.
CREATE OR REPLACE FUNCTION ledgerlock._parent_path_problem(tbl regclass)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    path text;
    con oid;
BEGIN
    FOR path IN SELECT u.p FROM ledgerlock.protected_table t
                CROSS JOIN LATERAL pg_catalog.unnest(ARRAY[t.scope_column::text, t.date_column::text]) AS u(p)
                WHERE t.tbl = _parent_path_problem.tbl AND pg_catalog.strpos(u.p, '.') > 0
                  AND NOT EXISTS (SELECT FROM pg_catalog.pg_attribute x  -- a column of that name: its own
                                  WHERE x.attrelid = t.tbl AND x.attname = u.p AND NOT x.attisdropped) LOOP
        SELECT c.oid INTO con
        FROM pg_catalog.pg_attribute a
        JOIN pg_catalog.pg_constraint c ON c.conrelid = tbl AND c.contype = 'f' AND c.conkey = ARRAY[a.attnum]
                                       AND NOT ledgerlock._fk_partition_clone(c.oid)
        WHERE a.attrelid = tbl AND a.attname = pg_catalog.split_part(path, '.', 1) AND NOT a.attisdropped
        ORDER BY c.oid
        LIMIT 1;
        IF con IS NULL OR NOT EXISTS (SELECT FROM ledgerlock._scope_path(tbl, path)) THEN
            RETURN pg_catalog.format('%s reads %L through the foreign key on %s.%I, which is gone', tbl, path, tbl,
                                     pg_catalog.split_part(path, '.', 1));
        ELSIF NOT ledgerlock._fk_enforced(con) THEN
            RETURN pg_catalog.format('%s reads %L through foreign key %I, which is NOT ENFORCED', tbl, path,
                                     (SELECT c.conname FROM pg_catalog.pg_constraint c WHERE c.oid = con));
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._parent_path_problem(regclass) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._parent_path_problem(regclass) TO ledgerlock_admin, ledgerlock_auditor;  -- doctor

-- The foreign key path a protected table's scope takes from its parent row (no row when its scope is its
-- own): what _parent_scope_sql and _parent_scope_map_sql build their queries from. A SQL function without a
-- SET clause, so that PostgreSQL inlines it into their query (qualified, not callable by PUBLIC).
CREATE OR REPLACE FUNCTION ledgerlock._parent_scope_path(tbl regclass)
RETURNS TABLE(fk_column name, parent regclass, parent_key name, parent_key_type regtype, parent_column name)
LANGUAGE sql
STABLE
AS $$
    SELECT * FROM ledgerlock._scope_path(tbl, (
        SELECT c.scope_column FROM ledgerlock.protected_table c  -- c.tbl would shadow the argument: qualified
        WHERE c.tbl OPERATOR(pg_catalog.=) ledgerlock._rule_table(_parent_scope_path.tbl)))
$$;
REVOKE ALL ON FUNCTION ledgerlock._parent_scope_path(regclass) FROM PUBLIC;

-- The query that reads the scope a row takes from its parent row ($1: the row as jsonb): '*' when its foreign
-- key is null or the parent's scope column is, null when no such parent row exists (a deferred foreign key, a
-- parent deleted in this transaction). for_share share-locks the parent row, so that its scope cannot move
-- until the caller's transaction ends (the period guard: a write and a move of its parent serialize). Null
-- when the table's scope is not a parent's. The period guard gets it as a trigger argument: resolved once,
-- at install, not on every write.
CREATE OR REPLACE FUNCTION ledgerlock._parent_scope_sql(tbl regclass, for_share boolean)
RETURNS text
LANGUAGE plpgsql  -- see _rule_table: the capture of a parent-scoped table calls it for every row
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p record;
BEGIN
    SELECT * INTO p FROM ledgerlock._parent_scope_path(tbl);
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    RETURN pg_catalog.format('SELECT CASE WHEN $1 ->> %L IS NULL THEN ''*'' ELSE (SELECT coalesce(pg_catalog.to_jsonb('
                             'll_p.%I) #>> ''{}'', ''*'') FROM %s AS ll_p WHERE ll_p.%I = ($1 ->> %L)::%s%s) END',
                             p.fk_column, p.parent_column, p.parent, p.parent_key, p.fk_column, p.parent_key_type,
                             CASE WHEN for_share THEN ' FOR SHARE' ELSE '' END);
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._parent_scope_sql(regclass, boolean) FROM PUBLIC;

-- The same for many rows at once: a query that returns a jsonb object mapping the text of each foreign key
-- value in the relations named by sources (SQL names: the capture's transition tables ll_new and ll_old, or a
-- table) to its parent's scope, '*' when that is null; a value whose parent row does not exist is left out, a
-- null key too (the row's scope is '*' either way, as _row_scope reads it). Null when the table's scope is not
-- a parent's.
CREATE OR REPLACE FUNCTION ledgerlock._parent_scope_map_over(tbl regclass, sources text[])
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p record;
BEGIN
    SELECT * INTO p FROM ledgerlock._parent_scope_path(tbl);
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    -- the key as the row image holds it: to_jsonb of the value, as text (what r ->> fk reads)
    RETURN pg_catalog.format('SELECT coalesce(pg_catalog.jsonb_object_agg(k.k, coalesce(pg_catalog.to_jsonb(ll_p.%I) '
                             '#>> ''{}'', ''*'')), ''{}'') FROM (%s) k JOIN %s AS ll_p ON ll_p.%I = k.k::%s',
                             p.parent_column,
                             (SELECT pg_catalog.string_agg(pg_catalog.format(
                                         'SELECT pg_catalog.to_jsonb(t.%I) #>> ''{}'' AS k FROM %s AS t',
                                         p.fk_column, src), ' UNION ')
                              FROM pg_catalog.unnest(sources) AS src),
                             p.parent, p.parent_key, p.parent_key_type);
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._parent_scope_map_over(regclass, text[]) FROM PUBLIC;

-- The map itself for every row of one relation (a table, or a copy of one): what protect's baseline and
-- record_added_columns file rows under, as the capture files a write. Null when the table's scope is not a
-- parent's.
CREATE OR REPLACE FUNCTION ledgerlock._parent_scopes_of(tbl regclass, rel text)
RETURNS jsonb
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    q text := ledgerlock._parent_scope_map_over(tbl, ARRAY[rel]);
    m jsonb;
BEGIN
    IF q IS NOT NULL THEN
        EXECUTE q INTO m;
    END IF;
    RETURN m;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._parent_scopes_of(regclass, text) FROM PUBLIC;

-- For every row a statement wrote (op: the capture trigger's TG_OP; ll_new and ll_old, as the audit capture
-- names its transition tables). The audit capture runs it once per statement: read row by row, a
-- parent-scoped table's 20,000-row INSERT took 1.6 s against 0.13 s with a scope column of its own (PG 16).
CREATE OR REPLACE FUNCTION ledgerlock._parent_scope_map_sql(tbl regclass, op text)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ledgerlock._parent_scope_map_over(tbl, CASE op WHEN 'INSERT' THEN ARRAY['ll_new']
                                                          WHEN 'DELETE' THEN ARRAY['ll_old']
                                                          ELSE ARRAY['ll_new', 'll_old'] END)
$$;
REVOKE ALL ON FUNCTION ledgerlock._parent_scope_map_sql(regclass, text) FROM PUBLIC;

-- The scope a row takes from its parent row (see _parent_scope_sql), or a clear error when the declared
-- foreign key is gone.
CREATE OR REPLACE FUNCTION ledgerlock._parent_scope(tbl regclass, r jsonb, for_share boolean)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    q text := ledgerlock._parent_scope_sql(tbl, for_share);
    s text;
BEGIN
    IF q IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('the scope of %s comes from a parent row through %s, which is no longer a '
                                        'foreign key', tbl, (ledgerlock._config(tbl)).scope_column),
            HINT = 'restore the foreign key, or protect the table again with another scope_column';
    END IF;
    EXECUTE q INTO s USING r;
    RETURN s;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._parent_scope(regclass, jsonb, boolean) FROM PUBLIC;

-- The scope of a row of a protected table, as the period guard reads it: its scope column's value ('*' when
-- the table has none or the value is null), or its parent's (ledgerlock._parent_scope; '*' when the parent
-- row is missing). For explanations and evidence; the guards read it inline.
CREATE OR REPLACE FUNCTION ledgerlock._row_scope(tbl regclass, r jsonb)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    col text := (ledgerlock._config(tbl)).scope_column;
BEGIN
    IF col IS NULL OR r ? col OR pg_catalog.strpos(col, '.') = 0 THEN
        RETURN coalesce(r ->> col, '*');
    END IF;
    RETURN coalesce(ledgerlock._parent_scope(tbl, r, false), '*');
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._row_scope(regclass, jsonb) FROM PUBLIC;

-- The scope of a row image given the table's scope column as the audit capture holds it ('' when none): its
-- column's value for a column of the table; for a parent's, from parent_scopes, the statement's map of its
-- foreign key values to their parents' scopes (ledgerlock._parent_scope_map_sql), or through
-- ledgerlock._row_scope when there is none. Called by the capture query only for a row it must place: when
-- some window is unlocked, or for the event's scope of a parent-scoped table. PL/pgSQL (its plan kept for the
-- session), so that the capture query holds one call, not its body: inlined (a SQL function), it made the
-- query's expressions larger, which PostgreSQL sets up again in every statement (+5.6 us on every one-row
-- audited write, PG 16); as a SQL function that is not inlined (STABLE over the volatile _row_scope) it was
-- planned again at each call (two calls per row whenever any window of any scope was unlocked: a one-row
-- audited INSERT 49 -> 80 us).
CREATE OR REPLACE FUNCTION ledgerlock._scope_in_image(tbl regclass, r jsonb, scope_col text, parent_scopes jsonb)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF scope_col = '' THEN
        RETURN '*';
    END IF;
    IF r IS NULL OR r ? scope_col OR pg_catalog.strpos(scope_col, '.') = 0 THEN
        RETURN coalesce(r ->> scope_col, '*');
    END IF;
    IF parent_scopes IS NULL THEN
        RETURN ledgerlock._row_scope(tbl, r);
    END IF;
    RETURN coalesce(parent_scopes ->> (r ->> pg_catalog.split_part(scope_col, '.', 1)), '*');
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._scope_in_image(regclass, jsonb, text, jsonb) FROM PUBLIC;

-- A row's date may come from its parent the same way: date_column 'fk_column.parent_column' (a journal line
-- dated by its entry), through the same foreign key as a parent scope when both do (protect checks it).

-- How the rules read a date column of type typ as a day: 'date', 'timestamp' (its date part) or 'timestamptz'
-- (its date in UTC, whatever the session's TimeZone). protect accepts no other type for a date_column.
-- No SET clause, so that PostgreSQL inlines it (a call with one cost ~20 us on 16, on the write path); every
-- name and operator is qualified, and it is not callable by PUBLIC (tests/hardening: such helpers run only
-- inside a caller whose search_path is pinned).
CREATE OR REPLACE FUNCTION ledgerlock._date_kind_of(typ regtype)
RETURNS text
LANGUAGE sql
IMMUTABLE
AS $$
    SELECT CASE WHEN typ OPERATOR(pg_catalog.=) 'pg_catalog.date'::pg_catalog.regtype THEN 'date'
                WHEN typ OPERATOR(pg_catalog.=) 'pg_catalog.timestamptz'::pg_catalog.regtype THEN 'timestamptz'
                ELSE 'timestamp' END
$$;
REVOKE ALL ON FUNCTION ledgerlock._date_kind_of(regtype) FROM PUBLIC;

-- The day of the date column col of a row aliased `alias` (OLD, NEW, a transition row, a parent row), as SQL
-- for a trigger's WHEN clause or a generated function; kind: ledgerlock._date_kind_of. The one place that
-- says how a row's date becomes its day: the numbering, the period guards and protect's checks all use it.
CREATE OR REPLACE FUNCTION ledgerlock._day_sql(alias text, col name, kind text)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE kind WHEN 'date' THEN pg_catalog.format('%s.%I', alias, col)
                     WHEN 'timestamp' THEN pg_catalog.format('(%s.%I)::date', alias, col)
                     ELSE pg_catalog.format('((%s.%I) AT TIME ZONE ''UTC'')::date', alias, col) END
$$;
REVOKE ALL ON FUNCTION ledgerlock._day_sql(text, name, text) FROM PUBLIC;

-- How a row of a protected table dated by its parent row reads that day: the foreign key column (fk), the
-- day as an expression over the parent row ll_p (day_sql: its UTC date for a timestamptz), and the rest of
-- the query, "FROM <parent> AS ll_p WHERE ll_p.<key> = <the row's foreign key>", the row given as rec: '$1'
-- (the row as jsonb, for a dynamic query) or a record (NEW, OLD, in generated code). for_share share-locks
-- the parent row, so that its date cannot move until the caller's transaction ends. No row when the table's
-- date is not a parent's. The one place both the generic guard's query (_parent_date_sql) and the generated
-- checks' (_ll20_parent_read_sql) are built from.
CREATE OR REPLACE FUNCTION ledgerlock._parent_day_source(tbl regclass, rec text, for_share boolean)
RETURNS TABLE(fk name, day_sql text, from_sql text)
LANGUAGE plpgsql  -- see _rule_table: _row_day reads it for a row at a time
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY
    SELECT p.fk_column, ledgerlock._day_sql('ll_p', p.parent_column, ledgerlock._date_kind_of(a.atttypid)),
           pg_catalog.format('FROM %s AS ll_p WHERE ll_p.%I = %s::%s%s', p.parent, p.parent_key,
                             CASE WHEN rec = '$1' THEN pg_catalog.format('($1 ->> %L)', p.fk_column)
                                  ELSE pg_catalog.format('%s.%I', rec, p.fk_column) END,
                             p.parent_key_type, CASE WHEN for_share THEN ' FOR SHARE' ELSE '' END)
    FROM ledgerlock._scope_path(tbl, (SELECT c.date_column FROM ledgerlock.protected_table c
                                      WHERE c.tbl = ledgerlock._rule_table(_parent_day_source.tbl))) p
    JOIN pg_catalog.pg_attribute a ON a.attrelid = p.parent AND a.attname = p.parent_column;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._parent_day_source(regclass, text, boolean) FROM PUBLIC;

-- The query that reads the day a row takes from its parent row ($1: the row as jsonb), as ISO text: '' when
-- its foreign key is null or the parent's date is, null when no such parent row exists. for_share
-- share-locks the parent row (see _parent_scope_sql). Null when the table's date is not a parent's.
CREATE OR REPLACE FUNCTION ledgerlock._parent_date_sql(tbl regclass, for_share boolean)
RETURNS text
LANGUAGE plpgsql  -- see _rule_table
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (SELECT pg_catalog.format('SELECT CASE WHEN $1 ->> %L IS NULL THEN '''' ELSE (SELECT coalesce('
                                     'pg_catalog.to_jsonb(%s) #>> ''{}'', '''') %s) END', d.fk, d.day_sql, d.from_sql)
            FROM ledgerlock._parent_day_source(tbl, '$1', for_share) d);
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._parent_date_sql(regclass, boolean) FROM PUBLIC;

-- The day of a row of a protected table, as the period guard reads it: its date column's (null when null),
-- or its parent's (null when the parent row or its date is missing). For explanations and evidence.
CREATE OR REPLACE FUNCTION ledgerlock._row_day(tbl regclass, r jsonb)
RETURNS date
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    col text := (ledgerlock._config(tbl)).date_column;
    q text;
    d text;
BEGIN
    IF r ? col OR pg_catalog.strpos(col, '.') = 0 THEN
        RETURN ledgerlock._period_date(r ->> col, ledgerlock._period_date_kind(tbl));
    END IF;
    q := ledgerlock._parent_date_sql(tbl, false);
    IF q IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('the date of %s comes from a parent row through %s, which is no longer a '
                                        'foreign key', tbl, col),
            HINT = 'restore the foreign key, or protect the table again with another date_column';
    END IF;
    EXECUTE q INTO d USING r;
    RETURN nullif(d, '')::date;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._row_day(regclass, jsonb) FROM PUBLIC;

-- The protected tables whose scope or date (or both, through one foreign key) comes from a row of this table
-- (or of a table it is a partition of), for the parent's guard: scope_from and date_from name the parent's
-- columns (null when the child keeps that on itself; own_scope and own_date then name the child's column).
-- A loop over the registry's rows that name a parent (a dot in the column): the parent's guard reads it on every
-- call, and as one query joining _scope_path laterally over the registry it cost ~0.9 ms a call (PG 16).
CREATE OR REPLACE FUNCTION ledgerlock._period_children(parent regclass)
RETURNS TABLE(child regclass, fk_column name, fk_type regtype, parent_key name, scope_from name, date_from name,
              own_scope text, own_date text, ledger text)
LANGUAGE plpgsql  -- see _rule_table
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p record;
    ss record;
    ds record;
    -- the table, and the tables it is a partition of (none for a table that is not a partition)
    lineage regclass[] := parent || ARRAY(SELECT a.relid FROM pg_catalog.pg_partition_ancestors(parent) AS a);
BEGIN
    FOR p IN
        SELECT x.tbl, x.scope_column::text AS sc, x.date_column::text AS dc, x.ledger
        FROM ledgerlock.protected_table x
        WHERE pg_catalog.strpos(x.scope_column::text, '.') > 0 OR pg_catalog.strpos(x.date_column::text, '.') > 0
        ORDER BY x.tbl::oid
    LOOP
        ss := NULL;
        ds := NULL;
        SELECT * INTO ss FROM ledgerlock._scope_path(p.tbl, p.sc);
        SELECT * INTO ds FROM ledgerlock._scope_path(p.tbl, p.dc);
        CONTINUE WHEN NOT coalesce(coalesce(ss.parent, ds.parent) = ANY (lineage), false);
        child := p.tbl;
        fk_column := coalesce(ss.fk_column, ds.fk_column);
        SELECT fa.atttypid::regtype INTO fk_type FROM pg_catalog.pg_attribute fa
        WHERE fa.attrelid = p.tbl AND fa.attname = fk_column;
        CONTINUE WHEN NOT FOUND;
        parent_key := coalesce(ss.parent_key, ds.parent_key);
        scope_from := ss.parent_column;
        date_from := ds.parent_column;
        own_scope := CASE WHEN ss.fk_column IS NULL THEN p.sc END;
        own_date := CASE WHEN ds.fk_column IS NULL THEN p.dc END;
        ledger := p.ledger;
        RETURN NEXT;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._period_children(regclass) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._period_children(regclass) TO ledgerlock_admin, ledgerlock_auditor;  -- doctor

-- Every parent some protected table takes its scope or date from, with one such child: for doctor, which
-- checks the parent's owner, privileges and guards as it checks a protected table's.
CREATE OR REPLACE FUNCTION ledgerlock._period_parents()
RETURNS TABLE(parent regclass, child regclass)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT DISTINCT ON (x.parent) x.parent, x.child
    FROM (SELECT sp.parent, p.tbl AS child FROM ledgerlock.protected_table p
          CROSS JOIN LATERAL ledgerlock._scope_path(p.tbl, p.scope_column) sp
          UNION ALL
          SELECT dp.parent, p.tbl FROM ledgerlock.protected_table p
          CROSS JOIN LATERAL ledgerlock._scope_path(p.tbl, p.date_column) dp) x
    ORDER BY x.parent, x.child::oid
$$;
REVOKE ALL ON FUNCTION ledgerlock._period_parents() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._period_parents() TO ledgerlock_admin, ledgerlock_auditor;  -- doctor

-- The tables ledgerlock's own code reads with its owner's rights besides the rows a trigger is given, each
-- with the table whose rules read it: protected tables and their partitions (verification reads every row;
-- R2 and R4 probe them), the parents a scope or date is read from (R3), and both tables of a referential
-- rule and their partitions (R4 probes the child for a parent's references, and a line's header).
CREATE OR REPLACE FUNCTION ledgerlock._rule_read_relations()
RETURNS TABLE(rel regclass, serves regclass)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.relid, x.serves
    FROM (SELECT p.tbl AS tbl, p.tbl AS serves FROM ledgerlock.protected_table p
          UNION SELECT pp.parent, pp.child FROM ledgerlock._period_parents() pp
          UNION SELECT r.parent, r.parent FROM ledgerlock.reference_rule r
          UNION SELECT r.child, r.parent FROM ledgerlock.reference_rule r) x
    CROSS JOIN LATERAL ledgerlock._partition_tree(x.tbl) t
    WHERE ledgerlock._relation_exists(x.tbl)
$$;
REVOKE ALL ON FUNCTION ledgerlock._rule_read_relations() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._rule_read_relations() TO ledgerlock_admin, ledgerlock_auditor;  -- doctor

-- ---------------------------------------------------------------------------------------------------
-- Row identity: how every rule names a row, reads its condition, and knows which table it belongs to.

-- The protected table a relation is, or is a partition of (null when neither), for callers that hold an
-- oid (event triggers, pg_trigger rows).
CREATE OR REPLACE FUNCTION ledgerlock._protected_root(rel oid)
RETURNS regclass
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ledgerlock._rule_table(rel::regclass)
$$;
REVOKE ALL ON FUNCTION ledgerlock._protected_root(oid) FROM PUBLIC;

-- The key columns of a table: from the registry when it is protected (or a partition of a protected
-- table), else its primary key; null when it has neither. R4 guards tables that need not be protected.
CREATE OR REPLACE FUNCTION ledgerlock._key_columns(tbl regclass)
RETURNS name[]
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(
        (SELECT p.key_columns FROM ledgerlock.protected_table p WHERE p.tbl = ledgerlock._rule_table(_key_columns.tbl)),
        (SELECT pg_catalog.array_agg(a.attname ORDER BY k.ord)
         FROM pg_catalog.pg_index i
         CROSS JOIN LATERAL pg_catalog.unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
         JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
         WHERE i.indrelid = _key_columns.tbl AND i.indisprimary))
$$;
REVOKE ALL ON FUNCTION ledgerlock._key_columns(regclass) FROM PUBLIC;

-- A key column's value as the audit trail records it. to_jsonb prints numbers, text and datetimes in forms
-- of its own, and every other type by its output function, under the session's settings: a date range in
-- a trigger's to_jsonb(NEW) reads '[01/01/2025,01/01/2026)' under DateStyle 'SQL, DMY', an interval follows
-- IntervalStyle, bytea bytea_output, money lc_monetary; and a timestamptz, in JSON's form, carries the
-- offset of the session's TimeZone (the trail's is UTC). Such a value is read back under the settings it
-- was printed with (the caller's: the image was made in the same session) and printed again as the capture
-- prints it (ledgerlock._audit_row_image), so that a message and a lock event name the row as its audit
-- events do. Read as the type's base type: a domain's checks are the table's business, not a label's. A
-- value that does not read back (an image made under other settings than the caller's) is left as it is.
CREATE OR REPLACE FUNCTION ledgerlock._key_value(tbl regclass, col text, v jsonb)
RETURNS jsonb
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    typ text;
    pinned jsonb;
BEGIN
    IF pg_catalog.jsonb_typeof(v) IS DISTINCT FROM 'string' THEN
        RETURN v;  -- a number, a boolean, null; an array or object is printed element by element
    END IF;
    SELECT pg_catalog.format_type(t.oid, NULL) INTO typ
    FROM pg_catalog.pg_attribute a
    JOIN pg_catalog.pg_type t ON t.oid = ledgerlock._base_type(a.atttypid)
    WHERE a.attrelid = tbl AND a.attname = col AND NOT a.attisdropped
      AND (t.typcategory IN ('R', 'T', 'G') OR t.oid IN ('pg_catalog.bytea'::pg_catalog.regtype,
                                                          'pg_catalog.money'::pg_catalog.regtype,
                                                          'pg_catalog.timestamptz'::pg_catalog.regtype));
    IF typ IS NULL THEN
        RETURN v;
    END IF;
    BEGIN  -- (a block of its own: only this statement pays for the subtransaction an EXCEPTION clause starts)
        EXECUTE pg_catalog.format('SELECT ledgerlock._audit_row_image(CAST($1 AS %s))', typ) INTO pinned
            USING v #>> '{}';
    EXCEPTION WHEN data_exception THEN
        RETURN v;
    END;
    RETURN pinned;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._key_value(regclass, text, jsonb) FROM PUBLIC;

-- Whether the session user may read every row of tbl, as ledgerlock's checks read it: it holds SELECT on tbl,
-- and tbl's row-level security does not apply to it (no policies; a superuser, a BYPASSRLS role, the owner:
-- FORCE ROW LEVEL SECURITY is refused on the tables the rules read). Otherwise ledgerlock names none of its
-- rows to that user (why_locked, a referenced row's refusal), as PostgreSQL leaves the key out of its own
-- foreign-key errors then: a tenant's session does not learn the keys, numbers and locks of another tenant's.
CREATE OR REPLACE FUNCTION ledgerlock._rows_readable(tbl regclass)
RETURNS boolean
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.has_table_privilege(session_user, tbl, 'SELECT')
           AND (NOT c.relrowsecurity OR r.rolsuper OR r.rolbypassrls
                OR (NOT c.relforcerowsecurity AND pg_catalog.pg_has_role(session_user, c.relowner, 'USAGE')))
    FROM pg_catalog.pg_class c, pg_catalog.pg_roles r
    WHERE c.oid = tbl AND r.rolname = session_user
$$;
REVOKE ALL ON FUNCTION ledgerlock._rows_readable(regclass) FROM PUBLIC;

-- How a row is named in messages and the audit trail: its key ({"id": 42}); the whole row when the table
-- has no key at all.
CREATE OR REPLACE FUNCTION ledgerlock.row_key(tbl regclass, r jsonb)
RETURNS jsonb
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce((SELECT pg_catalog.jsonb_object_agg(k, ledgerlock._key_value(tbl, k, r -> k))
                     FROM pg_catalog.unnest(ledgerlock._key_columns(tbl)) AS k), r)
$$;
REVOKE ALL ON FUNCTION ledgerlock.row_key(regclass, jsonb) FROM PUBLIC;

-- "invoice id=42 (INV-2026-00017)": table, key, and the final number when the table has one; a table that
-- is not protected is named by its primary key ("time_entry id=7"), or by every column when it has none. The
-- characters of a key that a terminal acts on are escapes (ledgerlock._shown): a label is one line.
CREATE OR REPLACE FUNCTION ledgerlock.row_label(tbl regclass, r jsonb)
RETURNS text
LANGUAGE plpgsql  -- whose plans the session keeps: as one SQL query it was planned again on every refusal (1 ms)
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    root regclass := ledgerlock._rule_table(tbl);
    cols name[] := ledgerlock._key_columns(tbl);
    label text;
BEGIN
    SELECT pg_catalog.format('%s %s', c.relname,
               pg_catalog.string_agg(pg_catalog.format('%s=%s', e.key, e.value #>> '{}'), ' ' ORDER BY e.ord, e.key))
    INTO label
    FROM pg_catalog.pg_class c
    CROSS JOIN LATERAL (SELECT k.key::text AS key, ledgerlock._key_value(tbl, k.key, r -> k.key) AS value, k.ord
                        FROM pg_catalog.unnest(cols) WITH ORDINALITY AS k(key, ord)
                        UNION ALL
                        SELECT j.key, j.value, 0 FROM pg_catalog.jsonb_each(r) AS j WHERE cols IS NULL) AS e
    WHERE c.oid = coalesce(root, tbl)
    GROUP BY c.relname;
    -- one line, whatever the key holds: a refusal is logged and read in psql (ledgerlock._shown)
    RETURN ledgerlock._shown(label || coalesce(' (' || (r ->> (SELECT p.number_column::text
                                                             FROM ledgerlock.protected_table p
                                                             WHERE p.tbl = root)) || ')', ''));
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.row_label(regclass, jsonb) FROM PUBLIC;

-- How ledgerlock names a row to the session user: by its label, or as "a row of sale_line" when the user may
-- not read every row of its table (ledgerlock._rows_readable).
CREATE OR REPLACE FUNCTION ledgerlock._row_named(tbl regclass, r jsonb)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN ledgerlock._rows_readable(tbl) THEN ledgerlock.row_label(tbl, r)
                ELSE 'a row of ' || (SELECT c.relname::text FROM pg_catalog.pg_class c
                                     WHERE c.oid = coalesce(ledgerlock._rule_table(tbl), tbl)) END
$$;
REVOKE ALL ON FUNCTION ledgerlock._row_named(regclass, jsonb) FROM PUBLIC;

-- A stored condition (final_when or child_condition, deparsed by PostgreSQL when it was declared, columns
-- qualified as ll_row.<col>) over another alias: OLD, NEW, a query's alias, or '' for bare column names.
-- Only qualifier tokens change: string literals and quoted identifiers are copied as they are, so a
-- literal that contains "ll_row." keeps its value.
CREATE OR REPLACE FUNCTION ledgerlock._condition_as(condition text, alias text)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on  -- its literals hold backslashes
AS $$
    -- Tokens: a string literal ('it''s'; deparsed text doubles quotes, never escapes them), a quoted
    -- identifier ("A b"), a word with the dot after it (ll_row.), or any other character. Of the
    -- alternatives the longest match is taken, so a quote always starts a whole literal.
    SELECT pg_catalog.string_agg(CASE WHEN m.tok[1] = 'll_row.'
                                      THEN CASE WHEN alias = '' THEN '' ELSE alias || '.' END
                                      ELSE m.tok[1] END, '' ORDER BY m.n)
    FROM pg_catalog.regexp_matches(condition,
             '(''(?:[^'']|'''')*''|"(?:[^"]|"")*"|[[:alpha:]_][[:alnum:]_$]*\.?|.)', 'g')
         WITH ORDINALITY AS m(tok, n)
$$;
REVOKE ALL ON FUNCTION ledgerlock._condition_as(text, text) FROM PUBLIC;

-- The final_when condition of a table as a trigger WHEN clause over OLD or NEW.
CREATE OR REPLACE FUNCTION ledgerlock._final_condition(tbl regclass, alias text)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    expr text := (SELECT p.final_when_sql FROM ledgerlock.protected_table p WHERE p.tbl = _final_condition.tbl);
BEGIN
    IF alias NOT IN ('OLD', 'NEW') THEN
        RAISE EXCEPTION 'alias must be OLD or NEW, not %', alias;
    END IF;
    IF expr IS NULL THEN
        RETURN NULL;
    END IF;
    RETURN ledgerlock._condition_as(expr, alias);
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._final_condition(regclass, text) FROM PUBLIC;

-- Columns a guard must not compare: the declared mutable ones (when the table is protected), and generated
-- columns (BEFORE triggers see them unset in NEW).
CREATE OR REPLACE FUNCTION ledgerlock._exempt_columns(tbl regclass)
RETURNS name[]
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ARRAY(
        SELECT pg_catalog.unnest(p.mutable_columns) FROM ledgerlock.protected_table p WHERE p.tbl = _exempt_columns.tbl
        UNION
        SELECT a.attname FROM pg_catalog.pg_attribute a
        WHERE a.attrelid = _exempt_columns.tbl AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated <> ''
        ORDER BY 1)
$$;
REVOKE ALL ON FUNCTION ledgerlock._exempt_columns(regclass) FROM PUBLIC;

-- Why a column of the table cannot be one a rule reads from the row inside its triggers (the date, the
-- scope, the number, the columns a condition reads); null when it can. PostgreSQL does not compute a virtual
-- generated column (PostgreSQL 18 on) while triggers run: they read it as null, so a scope read that way
-- puts every row in no scope, under no lock. A stored one is computed only after the BEFORE triggers, which
-- read the date and the scope (R3's skip in on_locked = 'skip', R2's numbering).
CREATE OR REPLACE FUNCTION ledgerlock._generated_problem(tbl regclass, col name, stored_too boolean)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE a.attgenerated
               WHEN 'v' THEN pg_catalog.format('%s.%I is a virtual generated column: PostgreSQL does not compute '
                                               'it for triggers, where ledgerlock''s rules would read it as null',
                                               tbl, col)
               WHEN 's' THEN CASE WHEN stored_too THEN pg_catalog.format(
                                 '%s.%I is a generated column: PostgreSQL computes it only after the BEFORE '
                                 'triggers in which ledgerlock''s rules read it', tbl, col) END END
    FROM pg_catalog.pg_attribute a
    WHERE a.attrelid = tbl AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped
$$;
REVOKE ALL ON FUNCTION ledgerlock._generated_problem(regclass, name, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._generated_problem(regclass, name, boolean) TO ledgerlock_admin, ledgerlock_auditor;  -- doctor

-- The type a domain is built on, through domains over domains; any other type itself. A value prints as its
-- base type does, and casting to the base type runs no domain CHECK (which is the column owner's code).
CREATE OR REPLACE FUNCTION ledgerlock._base_type(typ regtype)
RETURNS regtype
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE d AS (SELECT t.oid, t.typbasetype FROM pg_catalog.pg_type t WHERE t.oid = typ
                         UNION ALL
                         SELECT t.oid, t.typbasetype FROM d JOIN pg_catalog.pg_type t ON t.oid = d.typbasetype)
    SELECT d.oid::regtype FROM d WHERE d.typbasetype = 0
$$;
REVOKE ALL ON FUNCTION ledgerlock._base_type(regtype) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._base_type(regtype)
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;  -- doctor, _audit_zoned_key_columns

-- The first relation of a table's partition tree (the table itself included) on which row-level security
-- applies to its owner (ENABLE and FORCE ROW LEVEL SECURITY); null when none. ledgerlock's checks and its
-- verification read the tables they guard with their owner's rights: a policy applied to them decides
-- which rows they see, often by a setting any client may change (current_setting('app.tenant')), and a
-- check that does not see the row that refuses a write lets the write through.
CREATE OR REPLACE FUNCTION ledgerlock._forced_row_security(tbl regclass)
RETURNS regclass
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.relid
    FROM ledgerlock._partition_tree(tbl) t
    JOIN pg_catalog.pg_class c ON c.oid = t.relid
    WHERE c.relrowsecurity AND c.relforcerowsecurity
    ORDER BY t.level, t.relid LIMIT 1
$$;
REVOKE ALL ON FUNCTION ledgerlock._forced_row_security(regclass) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._forced_row_security(regclass) TO ledgerlock_admin, ledgerlock_auditor;  -- doctor

-- 22023 for a table a rule reads (protect's table and the parent its scope or date comes from; both tables
-- of a referential rule) on which row-level security applies to its owner (_forced_row_security).
CREATE OR REPLACE FUNCTION ledgerlock._check_row_security(tbl regclass, parameter text)
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    forced regclass := ledgerlock._forced_row_security(tbl);
BEGIN
    IF forced IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('%s: %s has FORCE ROW LEVEL SECURITY: its policies would decide which of its '
                                        'rows ledgerlock''s checks see, which read it as its owner', parameter,
                                        forced),
            HINT = pg_catalog.format('ALTER TABLE %s NO FORCE ROW LEVEL SECURITY (its policies still apply to the '
                                     'application, which does not own it: docs/hardening.md)', forced);
    END IF;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._check_row_security(regclass, text) FROM PUBLIC;

-- A table a rule may guard: an ordinary or partitioned table, not ledgerlock's or the system's, whose
-- owner the installing role can act as (guards are created as that role).
CREATE OR REPLACE FUNCTION ledgerlock._check_guardable(tbl regclass, parameter text)
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel record;
BEGIN
    SELECT c.relkind, c.relowner, n.nspname INTO rel
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = tbl;
    IF rel.relkind NOT IN ('r', 'p')
       OR rel.nspname IN ('ledgerlock', 'ledgerlock_gate', 'pg_catalog', 'information_schema') THEN
        RAISE EXCEPTION USING ERRCODE = '42809',
            MESSAGE = pg_catalog.format('%s: %s is not a table ledgerlock can guard', parameter, tbl);
    END IF;
    IF NOT pg_catalog.pg_has_role(current_user, rel.relowner, 'USAGE') THEN
        RAISE EXCEPTION USING ERRCODE = '42501',
            MESSAGE = pg_catalog.format('%s: %s is owned by %s; ledgerlock is installed as %s, which cannot create '
                                        'its guards on it', parameter, tbl, rel.relowner::regrole, current_user),
            HINT = pg_catalog.format('ALTER TABLE %s OWNER TO %I', tbl, current_user);
    END IF;
    PERFORM ledgerlock._check_row_security(tbl, parameter);
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._check_guardable(regclass, text) FROM PUBLIC;

-- The definition of a relation's trigger as pg_get_triggerdef prints it, whoever asks: the WHEN clause's constants
-- (a mark) in ISO, names unquoted: what ledgerlock fingerprints a guard by (_finish_guard_trigger), checks it
-- against (_drifted_guard, doctor) and reads a mark back from (_period_installed_mark, _parent_installed_mark).
-- Null when the trigger does not exist.
CREATE OR REPLACE FUNCTION ledgerlock._trigger_text(tbl regclass, tgname name)
RETURNS text
LANGUAGE plpgsql  -- see _rule_table: doctor reads every guard through it
STABLE
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
SET DateStyle = 'ISO, YMD'  -- pg_get_triggerdef prints the WHEN clause's constants in the session's styles
SET IntervalStyle = 'postgres'
SET extra_float_digits = 1
AS $$
BEGIN
    RETURN (SELECT pg_catalog.pg_get_triggerdef(t.oid) FROM pg_catalog.pg_trigger t
            WHERE t.tgrelid = _trigger_text.tbl AND t.tgname = _trigger_text.tgname);
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._trigger_text(regclass, name) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._trigger_text(regclass, name) TO ledgerlock_admin, ledgerlock_auditor;  -- doctor

-- What every guard trigger gets once created or replaced (by _create_guard_trigger, or R3's
-- _replace_guard_trigger), inside the installer's DDL permit: ENABLE ALWAYS (ENABLE, origin, on a
-- logical-replication subscriber: sql/functions/replication.sql), its definition's hash as its comment, and
-- the fingerprint of the generated function it calls.
CREATE OR REPLACE FUNCTION ledgerlock._finish_guard_trigger(tbl regclass, trigger_name name)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE pg_catalog.format('ALTER TABLE %s %s TRIGGER %I', tbl, ledgerlock._guard_enable_clause(), trigger_name);
    EXECUTE pg_catalog.format('COMMENT ON TRIGGER %I ON %s IS %L', trigger_name, tbl,
                              'ledgerlock:' || pg_catalog.md5(ledgerlock._trigger_text(tbl, trigger_name)));
    PERFORM ledgerlock._record_generated_code(tbl, trigger_name);  -- what doctor compares the function with
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._finish_guard_trigger(regclass, name) FROM PUBLIC;

-- Every guard trigger is created here: ENABLE ALWAYS (session_replication_role = replica does not
-- silence it) and commented with the hash of its definition, so drift is visible (ledgerlock doctor).
CREATE OR REPLACE FUNCTION ledgerlock._create_guard_trigger(tbl regclass, trigger_name name, definition text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF trigger_name !~ '^ll_[0-9]{2}_' THEN
        RAISE EXCEPTION 'guard trigger names start with ll_NN_, not %', trigger_name;
    END IF;
    PERFORM ledgerlock._ddl_permit(tbl, true);  -- the DDL guard lets ledgerlock's own installers through
    EXECUTE pg_catalog.format('CREATE TRIGGER %I %s', trigger_name, definition);
    -- the oid the guards of the protected table were made for (see ledgerlock._restored_tables)
    INSERT INTO ledgerlock.guard_install AS g (tbl, relid)
    SELECT r, r::oid FROM ledgerlock._rule_table(tbl) AS r WHERE r IS NOT NULL
    ON CONFLICT ON CONSTRAINT guard_install_pkey DO UPDATE SET relid = EXCLUDED.relid
    WHERE g.relid IS DISTINCT FROM EXCLUDED.relid;
    PERFORM ledgerlock._finish_guard_trigger(tbl, trigger_name);
    PERFORM ledgerlock._ddl_permit(tbl, false);
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._create_guard_trigger(regclass, name, text) FROM PUBLIC;

-- Drop the guard triggers of one rule (prefix ll_NN_) or of all rules (prefix 'll_'), on the table and on
-- every partition of it.
CREATE OR REPLACE FUNCTION ledgerlock._drop_guard_triggers(tbl regclass, prefix text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel regclass;
    tg name;
BEGIN
    PERFORM ledgerlock._ddl_permit(tbl, true);  -- the DDL guard lets ledgerlock's own installers through
    -- The whole partition tree: statement-level guards are created on every partition (PostgreSQL does not
    -- pass them down), while row-level ones exist once on the parent (partitions hold clones, tgparentid <> 0,
    -- which go with it).
    FOR rel, tg IN
        SELECT t.tgrelid::regclass, t.tgname FROM pg_catalog.pg_trigger t
        WHERE t.tgrelid IN (SELECT p.relid FROM ledgerlock._partition_tree(tbl) p)
          AND NOT t.tgisinternal AND t.tgparentid = 0 AND pg_catalog.starts_with(t.tgname, prefix)
    LOOP
        EXECUTE pg_catalog.format('DROP TRIGGER %I ON %s', tg, rel);
    END LOOP;
    IF prefix = 'll_' THEN  -- every rule's guards are gone (unprotect)
        DELETE FROM ledgerlock.guard_install g WHERE g.tbl = _drop_guard_triggers.tbl;
    END IF;
    PERFORM ledgerlock._ddl_permit(tbl, false);
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._drop_guard_triggers(regclass, text) FROM PUBLIC;

-- Protected tables whose guards were installed when the table had another oid (restored from a dump), or
-- before ledgerlock recorded it: `ledgerlock migrate` installs their guards again.
CREATE OR REPLACE FUNCTION ledgerlock._restored_tables()
RETURNS SETOF regclass
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT p.tbl FROM ledgerlock.protected_table p
    LEFT JOIN ledgerlock.guard_install g ON g.tbl = p.tbl
    WHERE g.relid IS DISTINCT FROM p.tbl::oid
    ORDER BY p.tbl::oid
$$;
REVOKE ALL ON FUNCTION ledgerlock._restored_tables() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._restored_tables() TO ledgerlock_admin, ledgerlock_auditor;

-- ---------------------------------------------------------------------------------------------------
-- Generated trigger functions (R2 numbering, R4 references): rendered from named templates, created and
-- dropped through one pair of helpers that hold the DDL permit on schema ledgerlock.

-- A table's key in the names of the functions generated for it: 't' and 16 hex digits of the md5 of its
-- schema-qualified name. Names survive pg_dump/pg_restore (oids do not); a renamed table gets new ones at
-- its next install.
CREATE OR REPLACE FUNCTION ledgerlock._table_key(tbl regclass)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 't' || pg_catalog."left"(pg_catalog.md5(pg_catalog.format('%I.%I', n.nspname, c.relname)), 16)
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.oid = tbl
$$;
REVOKE ALL ON FUNCTION ledgerlock._table_key(regclass) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._table_key(regclass) TO ledgerlock_admin, ledgerlock_auditor;

-- The name of a function generated for a table by one rule for one part: ledgerlock._<rule>_<key>_<part>
-- (R2: _ll40_<key>_final, _draft, _settle; R3: _ll20_<key>_insert; R5: _ll90_<key>_capture), keyed by the
-- table's name, never its oid, so that a restored database runs them as they are.
CREATE OR REPLACE FUNCTION ledgerlock._generated_name(tbl regclass, rule text, part text)
RETURNS name
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ('_' || rule || '_' || ledgerlock._table_key(tbl) || '_' || part)::name
$$;
REVOKE ALL ON FUNCTION ledgerlock._generated_name(regclass, text, text) FROM PUBLIC;

-- The text of a template with its named placeholders filled in, in one pass (a value that contains a
-- placeholder is not filled again): {{name}} takes the value as SQL text, {{name|L}} as a quoted literal,
-- {{name|I}} as a quoted identifier. A placeholder without a value is an error, so a template never leaves
-- a hole; a null value is one too, except that {{name|L}} writes NULL.
CREATE OR REPLACE FUNCTION ledgerlock._template(body text, vals jsonb)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on  -- its literals hold backslashes
AS $$
DECLARE
    pattern constant text := '\{\{([a-z_][a-z0-9_]*)(\|[LI])?\}\}';
    parts text[] := pg_catalog.regexp_split_to_array(body, pattern);
    out text := parts[1];
    m text[];
    i integer := 1;
    v text;
BEGIN
    FOR m IN SELECT x FROM pg_catalog.regexp_matches(body, pattern, 'g') AS x LOOP
        IF NOT vals ? m[1] THEN
            RAISE EXCEPTION 'template placeholder {{%}} has no value', m[1];
        END IF;
        v := vals ->> m[1];
        v := CASE m[2] WHEN '|L' THEN pg_catalog.quote_nullable(v)
                       WHEN '|I' THEN pg_catalog.quote_ident(v)
                       ELSE v END;
        IF v IS NULL THEN
            RAISE EXCEPTION 'template placeholder {{%}} is null', m[1];
        END IF;
        i := i + 1;
        out := out || v || parts[i];
    END LOOP;
    RETURN out;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._template(text, jsonb) FROM PUBLIC;

-- What a guard that reads a user's rows pins (R3's checks and parent guards, R4's, the capture; the shipped one,
-- guard_period_row, says the same in its SET clause; tests/hardening/test_hostile_settings.py holds
-- them to it). gin_fuzzy_search_limit = 0: under a limit a GIN index scan returns a random subset of its rows,
-- and a probe that a GIN index served (R4's child_condition with an operator of the index) found no
-- referencing row. extra_float_digits = 1: such a guard makes images of rows (to_jsonb) whose keys it records
-- (the first row an override lets into a window, a row skipped under on_locked = 'skip': lock_event, and the
-- trail's copy of it) and names in refusals; under -15 a float key 0.30000000000000004 was recorded as 0.3.
-- R1's and R2's guards read nothing but the row and ledgerlock's tables and record no key: they pay nothing.
CREATE OR REPLACE FUNCTION ledgerlock._row_reading_settings()
RETURNS text[]
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT '{gin_fuzzy_search_limit=0,extra_float_digits=1}'::text[]
$$;
REVOKE ALL ON FUNCTION ledgerlock._row_reading_settings() FROM PUBLIC;

-- The types the columns of the relations rels hold, directly or through domains, arrays, composite types and
-- ranges, at any depth: what a change of a type (an enum label, a composite's attribute) reaches.
CREATE OR REPLACE FUNCTION ledgerlock._types_held(rels oid[])
RETURNS SETOF oid
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE typ(oid) AS (
        SELECT DISTINCT a.atttypid FROM pg_catalog.pg_attribute a
        WHERE a.attrelid = ANY (rels) AND a.attnum > 0 AND NOT a.attisdropped
        UNION
        -- what a type holds: a domain its base type, an array its elements, a composite type its attributes, a
        -- range or multirange its subtype
        SELECT held.oid
        FROM typ JOIN pg_catalog.pg_type t ON t.oid = typ.oid
        CROSS JOIN LATERAL (SELECT t.typbasetype WHERE t.typtype = 'd'
                            UNION ALL SELECT t.typelem WHERE t.typcategory = 'A' AND t.typelem <> 0
                            UNION ALL SELECT a.atttypid FROM pg_catalog.pg_attribute a
                                      WHERE t.typtype = 'c' AND a.attrelid = t.typrelid AND a.attnum > 0
                                        AND NOT a.attisdropped
                            UNION ALL SELECT r.rngsubtype FROM pg_catalog.pg_range r
                                      WHERE r.rngtypid = t.oid OR r.rngmultitypid = t.oid) held(oid)
    )
    SELECT typ.oid FROM typ
$$;
REVOKE ALL ON FUNCTION ledgerlock._types_held(oid[]) FROM PUBLIC;

-- Refuse to (re)generate ledgerlock.<fn>() for a table when the guards of another table run it: functions
-- generated for a table are named after its name (_table_key), so a table renamed without the DDL guard keeps
-- running the functions of its old name, and a new table given that name would replace what the renamed
-- one's guards check (a parent's guard would look for the new table's children, a capture would file the
-- old table's rows as the new one's). Names without a table key (R4's, by rule id) are not looked at.
CREATE OR REPLACE FUNCTION ledgerlock._refuse_taken_generated_name(fn name)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    key text := (pg_catalog.regexp_match(fn, '^_ll[0-9]+_(t[0-9a-f]{16})_'))[1];
    other regclass;
BEGIN
    IF key IS NULL THEN
        RETURN;
    END IF;
    -- a partition's guards run its tree's functions: its own name and those of its ancestors are looked at
    SELECT t.tgrelid::regclass INTO other
    FROM pg_catalog.pg_proc p
    JOIN pg_catalog.pg_trigger t ON t.tgfoid = p.oid
    WHERE p.pronamespace = 'ledgerlock'::regnamespace AND p.proname = fn AND p.pronargs = 0
      AND ledgerlock._table_key(t.tgrelid) <> key
      AND NOT EXISTS (SELECT FROM pg_catalog.pg_partition_ancestors(t.tgrelid) AS a(rel)
                      WHERE ledgerlock._table_key(a.rel) = key)
    ORDER BY t.tgparentid <> 0, t.tgrelid
    LIMIT 1;
    IF other IS NULL THEN
        RETURN;
    END IF;
    PERFORM ledgerlock._refuse('55000',
        pg_catalog.format('ledgerlock.%I is generated for a table of this name, and the guards of %s, renamed '
                          'since, still run it: replacing it would change what they check', fn, other),
        CASE WHEN ledgerlock._protected_root(other) IS NOT NULL
             THEN pg_catalog.format('rename %s back (ledgerlock doctor prints the command: its audit trail files '
                                    'its rows under its old name), or give this table another name', other)
             ELSE pg_catalog.format('have an admin run SELECT ledgerlock.reinstall_guards() first: it names the '
                                    'guards of %s after its new name', other) END);
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._refuse_taken_generated_name(name) FROM PUBLIC;

-- Create (or replace) a generated trigger function ledgerlock.<fn>() from its PL/pgSQL body: SECURITY
-- DEFINER (guards read ledgerlock's tables, which clients cannot), search_path and quote_all_identifiers
-- pinned (docs/hardening.md, "Names"), no EXECUTE for PUBLIC. settings: more settings to pin, as
-- pg_proc.proconfig holds them ('name=value'; R5's capture takes the shipped capture's own:
-- sql/triggers/r5_audit_capture.sql; the other guards that read a user's rows, _row_reading_settings());
-- search_path and quote_all_identifiers are pinned whatever they say.
CREATE OR REPLACE FUNCTION ledgerlock._create_generated_function(fn name, body text, settings text[] DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    more text := (SELECT pg_catalog.string_agg(pg_catalog.format(' SET %s = %L', pg_catalog.split_part(s, '=', 1),
                                                                 pg_catalog.substr(s, pg_catalog.strpos(s, '=') + 1)),
                                               '' ORDER BY o)
                  FROM pg_catalog.unnest(settings) WITH ORDINALITY AS u(s, o)
                  WHERE pg_catalog.lower(pg_catalog.split_part(s, '=', 1)) NOT IN ('search_path', 'quote_all_identifiers'));
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.unnest(settings) AS s WHERE s !~ '^[A-Za-z_][A-Za-z0-9_.]*=') THEN
        RAISE EXCEPTION 'a generated function''s settings are name=value, not %', settings;
    END IF;
    PERFORM ledgerlock._refuse_taken_generated_name(fn);
    PERFORM ledgerlock._ddl_permit('ledgerlock'::regnamespace::oid, true);  -- the DDL guard lets it through
    EXECUTE pg_catalog.format('CREATE OR REPLACE FUNCTION ledgerlock.%I() RETURNS trigger LANGUAGE plpgsql '
                              'SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET quote_all_identifiers = off%s '
                              'AS %L', fn,
                              coalesce(more, ''), body);
    EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION ledgerlock.%I() FROM PUBLIC', fn);
    PERFORM ledgerlock._ddl_permit('ledgerlock'::regnamespace::oid, false);
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._create_generated_function(name, text, text[]) FROM PUBLIC;

-- Drop generated trigger functions ledgerlock.<fn>() that exist (their triggers are gone first), with their
-- fingerprints.
CREATE OR REPLACE FUNCTION ledgerlock._drop_generated_functions(fns name[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    gone regprocedure;
BEGIN
    PERFORM ledgerlock._ddl_permit('ledgerlock'::regnamespace::oid, true);  -- the DDL guard lets it through
    -- only those that exist: DROP ... IF EXISTS would send a NOTICE per missing one to whoever called
    -- reinstall_guards() or migrate (three per table that is not numbered); their fingerprints go with them
    FOR gone IN SELECT p.oid FROM pg_catalog.pg_proc p
              WHERE p.pronamespace = 'ledgerlock'::regnamespace AND p.proname = ANY (fns) AND p.pronargs = 0 LOOP
        DELETE FROM ledgerlock.code_fingerprint f WHERE f.fn = gone::text AND f.origin = 'generated';
        EXECUTE pg_catalog.format('DROP FUNCTION %s', gone);
    END LOOP;
    PERFORM ledgerlock._ddl_permit('ledgerlock'::regnamespace::oid, false);
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._drop_generated_functions(name[]) FROM PUBLIC;

-- Whether two versions of a row are the same in every column but the exempt ones, compared exactly: the
-- stored bytes (record_image_eq), never text a client setting shapes (extra_float_digits rounds floats,
-- json keeps duplicate keys that jsonb drops). Columns are read from the catalog at each call, so a column
-- added after protect() is compared too. Guards call it only after a WHEN clause saw the row change.
CREATE OR REPLACE FUNCTION ledgerlock._same_except(o anyelement, n anyelement, exempt text[])
RETURNS boolean
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cols text[];
    same boolean;
BEGIN
    IF pg_catalog.record_image_eq(o, n) THEN
        RETURN true;
    END IF;
    IF coalesce(pg_catalog.cardinality(exempt), 0) = 0 THEN
        RETURN false;
    END IF;
    SELECT pg_catalog.array_agg(pg_catalog.quote_ident(a.attname) ORDER BY a.attnum) INTO cols
    FROM pg_catalog.pg_attribute a
    WHERE a.attrelid = (SELECT t.typrelid FROM pg_catalog.pg_type t WHERE t.oid = pg_catalog.pg_typeof(o))
      AND a.attnum > 0 AND NOT a.attisdropped AND a.attname <> ALL (exempt);
    IF cols IS NULL THEN
        RETURN true;  -- every column is exempt
    END IF;
    EXECUTE pg_catalog.format('SELECT pg_catalog.record_image_eq(ROW(($1).%s), ROW(($2).%s))',
                              pg_catalog.array_to_string(cols, ', ($1).'), pg_catalog.array_to_string(cols, ', ($2).'))
    INTO same USING o, n;
    RETURN same;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._same_except(anyelement, anyelement, text[]) FROM PUBLIC;

-- The WHEN condition of a BEFORE UPDATE guard that lets an UPDATE which changes no stored byte through
-- without a function call. PostgreSQL forbids whole-row NEW in a BEFORE trigger's WHEN clause when the
-- table has generated columns: such tables get no filter, and the guard function compares.
CREATE OR REPLACE FUNCTION ledgerlock._row_changed_condition(tbl regclass)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN EXISTS (SELECT FROM pg_catalog.pg_attribute a
                             WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated <> '')
                THEN 'true' ELSE 'NOT pg_catalog.record_image_eq(OLD.*, NEW.*)' END
$$;
REVOKE ALL ON FUNCTION ledgerlock._row_changed_condition(regclass) FROM PUBLIC;

-- The comparison a WHEN clause calls to learn whether a row changed beyond a set of exempt columns, created
-- when missing: ledgerlock._ll10_x<key>_changed(o, n) is true when n, with its exempt columns put back to
-- their old values (PL/pgSQL field assignments to its own copy of the argument: exact for every type, no
-- trip through jsonb), differs from o compared whole and byte for byte (*=, record_image_eq), so a column
-- added after the trigger still counts as a change. A WHEN clause calls it rather than holding the expression
-- because PostgreSQL prepares a trigger's WHEN again in every statement that fires the trigger, whatever its
-- first conjunct decides: the expression inline cost every UPDATE of a protected table ~3 us per trigger to
-- prepare, the call ~0.3 (docs/performance.md, "The exempt-column comparison"); PL/pgSQL prepares the body
-- only for the rows that reach it, which the clause's first conjunct (final, backdated) already filtered.
-- One function per set of column names, shared by every table with that set (its arguments are
-- polymorphic: PL/pgSQL compiles it per row type, so it is created without checking its body, which needs
-- a row type). R1 owns it (its generated prefix, its fingerprint); R3's update guard calls it too. PUBLIC
-- may execute it: a WHEN clause runs with the rights of whoever writes the table, and it only compares its
-- two arguments. It pins no search_path: its body names nothing that is looked up there (its one operator
-- is schema-qualified; the rest are its arguments' fields), and a SET clause made each call save and restore
-- the settings, ~1.5 us on PostgreSQL 16 (docs/hardening.md, "The comparisons PUBLIC may call").
CREATE OR REPLACE FUNCTION ledgerlock._changed_beyond_function(exempt text[])
RETURNS name
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cols text[] := ARRAY(SELECT DISTINCT c COLLATE "C" FROM pg_catalog.unnest(exempt) AS c ORDER BY 1);
    fn name := ('_ll10_x' || pg_catalog."left"(pg_catalog.md5(pg_catalog.array_to_string(cols, E'\x1f')), 16)
                || '_changed')::name;
    config text[];  -- no SET clause (above)
    body text;
BEGIN
    body := E'\nBEGIN\n'
            || (SELECT pg_catalog.string_agg(pg_catalog.format(E'    n.%1$I := o.%1$I;\n', c), '' ORDER BY c COLLATE "C")
                FROM pg_catalog.unnest(cols) AS c)
            || E'    RETURN NOT (o OPERATOR(pg_catalog.*=) n);\nEND\n';
    -- Its fingerprint first, as it will be: the row is the function's lock until commit (installers in parallel
    -- queue on it, and _drop_unused_comparisons skips it), a lock no application can take or hold
    INSERT INTO ledgerlock.code_fingerprint AS f (fn, origin, body_md5, security_definer, config)
    VALUES (pg_catalog.format('ledgerlock.%I(anyelement,anyelement)', fn), 'generated', pg_catalog.md5(body), false,
            config)
    ON CONFLICT ON CONSTRAINT code_fingerprint_pkey DO UPDATE SET
        body_md5 = EXCLUDED.body_md5, security_definer = EXCLUDED.security_definer, config = EXCLUDED.config,
        recorded_at = now(), recorded_by = session_user
    WHERE f.origin = 'generated';
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_proc p
                   WHERE p.pronamespace = 'ledgerlock'::regnamespace AND p.proname = fn
                     AND p.prosrc = body AND NOT p.prosecdef AND p.proconfig IS NOT DISTINCT FROM config) THEN
        PERFORM ledgerlock._ddl_permit('ledgerlock'::regnamespace::oid, true);  -- the DDL guard lets it through
        -- (this function's SET clause puts the setting back when it returns)
        PERFORM pg_catalog.set_config('check_function_bodies', 'off', true);
        EXECUTE pg_catalog.format('CREATE OR REPLACE FUNCTION ledgerlock.%I(o anyelement, n anyelement) '
                                  'RETURNS boolean LANGUAGE plpgsql STABLE SECURITY INVOKER AS %L', fn, body);
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION ledgerlock.%I(anyelement, anyelement) TO PUBLIC', fn);
        PERFORM ledgerlock._ddl_permit('ledgerlock'::regnamespace::oid, false);
    END IF;
    RETURN fn;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._changed_beyond_function(text[]) FROM PUBLIC;

-- Drop R1's comparisons (_changed_beyond_function) that no trigger's WHEN clause calls any more (the orphans
-- of _orphan_generated_functions among them), with their fingerprints: run once guards have been installed or
-- removed (protect, reinstall, unprotect). Each is dropped holding its fingerprint row, the lock
-- _changed_beyond_function takes to create it, and checked again then, so a concurrent installer about to
-- call it keeps it; one whose row another transaction holds is left for a later call (SKIP LOCKED: waiting
-- could deadlock with an installer holding its own set's row). A comparison in use is never locked by this.
CREATE OR REPLACE FUNCTION ledgerlock._drop_unused_comparisons()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    unused regprocedure;
BEGIN
    FOR unused IN SELECT o.fn FROM ledgerlock._orphan_generated_functions() AS o(fn)
              WHERE pg_catalog.starts_with((SELECT p.proname FROM pg_catalog.pg_proc p WHERE p.oid = o.fn), '_ll10_x')
              ORDER BY 1 LOOP
        CONTINUE WHEN NOT EXISTS (SELECT FROM ledgerlock.code_fingerprint f
                                  WHERE f.fn = unused::text AND f.origin = 'generated' FOR UPDATE SKIP LOCKED)
                   OR unused NOT IN (SELECT o.fn FROM ledgerlock._orphan_generated_functions() AS o(fn));
        DELETE FROM ledgerlock.code_fingerprint f WHERE f.fn = unused::text AND f.origin = 'generated';
        PERFORM ledgerlock._ddl_permit('ledgerlock'::regnamespace::oid, true);  -- the DDL guard lets it through
        EXECUTE pg_catalog.format('DROP FUNCTION %s', unused);
        PERFORM ledgerlock._ddl_permit('ledgerlock'::regnamespace::oid, false);
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._drop_unused_comparisons() FROM PUBLIC;

-- The WHEN test of an update guard that lets exempt columns change (R1's final rows, R3's locked windows, R4's
-- referenced parents): the row changed, and not only in its exempt columns, so that an update of only
-- mutable columns (paid, reconciled, an ORM's auto-updated timestamp), or of nothing, does not even call the
-- guard. as_call: a call of the set's comparison (_changed_beyond_function, created here when missing), for a
-- clause whose first conjunct lets few rows reach it (R1: final rows; R3: backdated ones); otherwise the
-- expression itself (R4's parent guard, whose clause is this test alone: it runs for every UPDATE, and a
-- PL/pgSQL call per row measured slower under 8 writers than preparing the expression, docs/performance.md,
-- "The exempt-column comparison"). The call is exact for every type. The expression puts the exempt values
-- back through jsonb, and can only err towards calling the guard: a value whose trip through jsonb is not
-- exact (a float's -0) leaves the rows unequal, and the guard's own test of its exempt columns decides; exempt
-- columns of a type not known to make that trip without an error keep the plain condition there (any byte
-- changed). Tables with generated columns keep it too in a BEFORE trigger (the condition is 'true' there:
-- NEW's generated columns are not computed yet; an AFTER trigger, R3's, sees them).
-- One comparison, nothing before it: a shortcut for the common case (the exempt columns unchanged, compared
-- as ROW()s) cost every UPDATE of the table ~3 us more to prepare than it ever saved (docs/performance.md,
-- "Enforcement only").
CREATE OR REPLACE FUNCTION ledgerlock._exempt_change_test(tbl regclass, after_trigger boolean, as_call boolean)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cond text := CASE WHEN after_trigger THEN 'NOT pg_catalog.record_image_eq(OLD.*, NEW.*)'
                      ELSE ledgerlock._row_changed_condition(tbl) END;
    cols text[];
    all_plain boolean;
BEGIN
    SELECT pg_catalog.array_agg(a.attname::text ORDER BY a.attname::text), pg_catalog.bool_and(coalesce(b.oid, t.oid) IN (
               'int2'::regtype, 'int4'::regtype, 'int8'::regtype, 'numeric'::regtype, 'float4'::regtype,
               'float8'::regtype, 'text'::regtype, 'varchar'::regtype, 'bpchar'::regtype, 'uuid'::regtype,
               'date'::regtype, 'timestamp'::regtype, 'timestamptz'::regtype, 'bool'::regtype))
    INTO cols, all_plain
    FROM pg_catalog.unnest(ledgerlock._exempt_columns(tbl)) AS e(c)
    JOIN pg_catalog.pg_attribute a ON a.attrelid = tbl AND a.attname = e.c AND a.attnum > 0 AND NOT a.attisdropped
    JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
    LEFT JOIN pg_catalog.pg_type b ON b.oid = t.typbasetype;
    IF cond = 'true' OR cols IS NULL THEN
        RETURN cond;
    ELSIF as_call THEN
        RETURN pg_catalog.format('ledgerlock.%I(OLD.*, NEW.*)', ledgerlock._changed_beyond_function(cols));
    ELSIF NOT all_plain THEN
        RETURN cond;
    END IF;
    RETURN pg_catalog.format('NOT pg_catalog.record_image_eq(OLD.*, pg_catalog.jsonb_populate_record(NEW.*, '
                             'pg_catalog.jsonb_build_object(%s)))',
                             (SELECT pg_catalog.string_agg(pg_catalog.format('%L, OLD.%I', c, c), ', ')
                              FROM pg_catalog.unnest(cols) AS c));
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._exempt_change_test(regclass, boolean, boolean) FROM PUBLIC;

-- R1's and R3's test (the call): see _exempt_change_test.
CREATE OR REPLACE FUNCTION ledgerlock._row_changed_beyond_exempt(tbl regclass, after_trigger boolean DEFAULT false)
RETURNS text
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ledgerlock._exempt_change_test(tbl, after_trigger, true)
$$;
REVOKE ALL ON FUNCTION ledgerlock._row_changed_beyond_exempt(regclass, boolean) FROM PUBLIC;

-- ---------------------------------------------------------------------------------------------------
-- The lock history
-- ---------------------------------------------------------------------------------------------------

-- Every lock event is written here (the audit chains them): windows locked, upgraded, unlocked and
-- relocked, rows skipped and re-posted, scope grants, checklist changes, fiscal-year and four-eyes
-- settings, unlock requests, approvals, expiries, withdrawals and recorded refusals. The one exception is
-- the override event (_period_admits), written once per override and window with ON CONFLICT.
CREATE OR REPLACE FUNCTION ledgerlock._lock_event(kind text, scope text, lock_id bigint, reason text,
                                                  details jsonb)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO ledgerlock.lock_event (lock_id, scope, kind, reason, details)
    VALUES (lock_id, scope, kind, reason, coalesce(details, '{}'))
$$;
REVOKE ALL ON FUNCTION ledgerlock._lock_event(text, text, bigint, text, jsonb) FROM PUBLIC;

-- ---------------------------------------------------------------------------------------------------
-- Scope grants (RLS, the close, four-eyes and R3 all ask them)

-- Whether a role acts as ledgerlock_scoped (ledgerlock._acts_as), and is no superuser: limited in every
-- database of the cluster. False where the role does not exist (an install whose roles a DBA created before
-- migration 0044: `ledgerlock sql --roles | psql` adds it; doctor says so).
CREATE OR REPLACE FUNCTION ledgerlock._scoped_everywhere(who oid)
RETURNS boolean
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT FROM pg_catalog.pg_roles s, pg_catalog.pg_roles r
                   WHERE s.rolname = 'ledgerlock_scoped' AND r.oid = who AND NOT r.rolsuper
                     AND ledgerlock._acts_as(r.rolname, s.oid))
$$;
REVOKE ALL ON FUNCTION ledgerlock._scoped_everywhere(oid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._scoped_everywhere(oid)
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;  -- _granted_scopes, doctor

-- The scopes the session user is limited to, or null when it is not limited: no grant row names it or a role
-- it belongs to, and it is not a member of ledgerlock_scoped (the cluster's mark of a limited role, which
-- limits it to no scope in a database where no grant names it: migration 0044). Superusers are never
-- limited (pg_has_role would make them members of every role).
-- A row with the empty scope (no scope is empty: grant_scope and the lock functions refuse one) is what
-- revoke_scope leaves when it takes a role's last scope: the role stays limited, to no scope, until an
-- admin lifts the limit (lift_scope_limit). The array is then empty, never null.
-- The row-level security policies on the lock tables, the trail and the close ask the same (migration 0044).
CREATE OR REPLACE FUNCTION ledgerlock._granted_scopes()
RETURNS text[]
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN pg_catalog.count(g.grantee) > 0
                THEN coalesce(pg_catalog.array_agg(DISTINCT g.scope) FILTER (WHERE g.scope <> ''), '{}')
                WHEN ledgerlock._scoped_everywhere(me.oid) THEN '{}'::text[] END
    FROM (SELECT r.oid, r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = session_user) AS me
    LEFT JOIN ledgerlock.scope_grant g ON ledgerlock._acts_as(session_user, g.grantee) AND NOT me.rolsuper
    GROUP BY me.oid
$$;
REVOKE ALL ON FUNCTION ledgerlock._granted_scopes() FROM PUBLIC;
-- (the console shows a person's limit; it reveals nothing but the caller's own grants)
GRANT EXECUTE ON FUNCTION ledgerlock._granted_scopes() TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

-- The session user's limit, in words, for a refusal: 'scopes 1, 7', or 'no scope'.
CREATE OR REPLACE FUNCTION ledgerlock._granted_scopes_text()
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce('scopes ' || nullif(pg_catalog.array_to_string(ledgerlock._granted_scopes(), ', '), ''),
                    'no scope')
$$;
REVOKE ALL ON FUNCTION ledgerlock._granted_scopes_text() FROM PUBLIC;

CREATE OR REPLACE FUNCTION ledgerlock._scope_granted(scope text)
RETURNS boolean
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT g IS NULL OR scope = ANY (g) FROM ledgerlock._granted_scopes() AS g
$$;
REVOKE ALL ON FUNCTION ledgerlock._scope_granted(text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION ledgerlock._require_scope(scope text, action text)
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT ledgerlock._scope_granted(scope) THEN
        PERFORM ledgerlock._refuse('LL005',
            pg_catalog.format('%s on scope %s is not allowed: %s is limited to %s', action, scope,
                              session_user, ledgerlock._granted_scopes_text()),
            'an unrestricted admin can run ledgerlock.grant_scope(role, scope)');
    END IF;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._require_scope(text, text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION ledgerlock.grant_scope(grantee regrole, scope text)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
AS $$
BEGIN
    PERFORM ledgerlock._require_capability('admin', 'grant_scope');
    IF ledgerlock._granted_scopes() IS NOT NULL THEN
        PERFORM ledgerlock._refuse('LL005',
            pg_catalog.format('grant_scope: %s is itself limited to some scopes', session_user),
            'scope grants are managed by an admin who is not scope-limited');
    END IF;
    IF ledgerlock._visible_text(scope) IS NULL THEN
        PERFORM ledgerlock._refuse('22023', 'grant_scope requires a scope');
    END IF;
    INSERT INTO ledgerlock.scope_grant AS g (grantee, scope) VALUES (grantee, scope)
    ON CONFLICT ON CONSTRAINT scope_grant_pkey DO NOTHING;
    IF FOUND THEN
        -- a role limited to no scope (its last scope revoked) now holds one
        DELETE FROM ledgerlock.scope_grant g WHERE g.grantee = grant_scope.grantee AND g.scope = '';
        PERFORM ledgerlock._lock_event('grant_scope', scope, NULL, NULL,
                                       pg_catalog.jsonb_build_object('grantee', grantee::text));
    END IF;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.grant_scope(regrole, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.grant_scope(regrole, text)
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

CREATE OR REPLACE FUNCTION ledgerlock.revoke_scope(grantee regrole, scope text)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
AS $$
BEGIN
    PERFORM ledgerlock._require_capability('admin', 'revoke_scope');
    PERFORM ledgerlock._require_value(grantee IS NOT NULL AND ledgerlock._visible_text(scope) IS NOT NULL, 'revoke_scope',
                                      'a role and a scope');
    IF ledgerlock._granted_scopes() IS NOT NULL THEN
        PERFORM ledgerlock._refuse('LL005',
            pg_catalog.format('revoke_scope: %s is itself limited to some scopes', session_user),
            'scope grants are managed by an admin who is not scope-limited');
    END IF;
    -- the role's grant rows first: two admins revoking its last two scopes at once would each see the other's
    -- still granted, and neither would leave the mark below (the second now waits, then sees it took the last)
    PERFORM FROM ledgerlock.scope_grant g WHERE g.grantee = revoke_scope.grantee FOR UPDATE;
    DELETE FROM ledgerlock.scope_grant g
    WHERE g.grantee = revoke_scope.grantee AND g.scope = revoke_scope.scope AND g.scope <> '';
    IF NOT FOUND THEN
        PERFORM ledgerlock._refuse('LL004', pg_catalog.format('%s has no grant on scope %s', grantee, scope));
    END IF;
    -- its last scope: the role stays limited, to no scope (a role with no grant row is not limited at all, so
    -- taking a tenant admin's last company away made it the admin of every company)
    IF NOT EXISTS (SELECT FROM ledgerlock.scope_grant g WHERE g.grantee = revoke_scope.grantee) THEN
        INSERT INTO ledgerlock.scope_grant (grantee, scope) VALUES (grantee, '');
    END IF;
    PERFORM ledgerlock._lock_event('revoke_scope', scope, NULL, NULL,
                                   pg_catalog.jsonb_build_object('grantee', grantee::text));
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.revoke_scope(regrole, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.revoke_scope(regrole, text)
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

-- Make a role that revoke_scope left limited to no scope unlimited: an admin or controller of every scope.
-- On purpose and with a reason, by an admin who is not limited itself; refused while the role still holds a
-- scope (revoke it first).
CREATE OR REPLACE FUNCTION ledgerlock.lift_scope_limit(grantee regrole, reason text)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
AS $$
DECLARE
    held text;
BEGIN
    PERFORM ledgerlock._require_capability('admin', 'lift_scope_limit');
    PERFORM ledgerlock._require_value(grantee IS NOT NULL, 'lift_scope_limit', 'a role');
    PERFORM ledgerlock._require_value(ledgerlock._visible_text(reason) IS NOT NULL, 'lift_scope_limit', 'a reason');
    PERFORM ledgerlock._require_unrestricted('lift_scope_limit');
    SELECT pg_catalog.string_agg(g.scope, ', ' ORDER BY g.scope) INTO held
    FROM ledgerlock.scope_grant g WHERE g.grantee = lift_scope_limit.grantee AND g.scope <> '';
    IF held IS NOT NULL THEN
        PERFORM ledgerlock._refuse('LL004', pg_catalog.format('%s still holds scopes %s', grantee, held),
                                   'revoke them first (ledgerlock.revoke_scope)');
    END IF;
    DELETE FROM ledgerlock.scope_grant g WHERE g.grantee = lift_scope_limit.grantee AND g.scope = '';
    IF NOT FOUND AND ledgerlock._scoped_everywhere(grantee::oid) THEN
        PERFORM ledgerlock._refuse('LL004',
            pg_catalog.format('%s is limited in every database of the cluster: it is a member of ledgerlock_scoped',
                              grantee),
            pg_catalog.format('grant it scopes here, or have a role with ADMIN on ledgerlock_scoped run REVOKE '
                              'ledgerlock_scoped FROM %s (it is then unlimited wherever no grant names it)', grantee));
    ELSIF NOT FOUND THEN
        PERFORM ledgerlock._refuse('LL004', pg_catalog.format('%s is not limited to scopes', grantee));
    END IF;
    PERFORM ledgerlock._lock_event('lift_scope_limit', NULL, NULL, reason,
                                   pg_catalog.jsonb_build_object('grantee', grantee::text));
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.lift_scope_limit(regrole, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.lift_scope_limit(regrole, text)
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;


-- Everything every scope shares (the registry, R4 rules, guards, number formats, four-eyes, the default
-- fiscal year) is changed only by an admin who is not scope-limited: a tenant admin (grant_scope) manages
-- its own scopes' locks and nothing else (LL005).
CREATE OR REPLACE FUNCTION ledgerlock._require_unrestricted(action text)
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    scopes text[] := ledgerlock._granted_scopes();
BEGIN
    IF scopes IS NOT NULL THEN
        PERFORM ledgerlock._refuse('LL005',
            pg_catalog.format('%s changes what every scope shares: %s is limited to %s', action,
                              session_user, ledgerlock._granted_scopes_text()),
            'ask an admin who is not scope-limited (no ledgerlock.grant_scope names them) to do it');
    END IF;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._require_unrestricted(text) FROM PUBLIC;
