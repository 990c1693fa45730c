-- Core helpers every rule shares: refusals, capabilities, row labels, guard-trigger installation.
-- Every function pins search_path (pg_catalog first, pg_temp last) and names ledgerlock objects in full,
-- so that no schema, operator or temporary object a client creates can change what runs here.

-- Raise a ledgerlock refusal: its own SQLSTATE, a message a person understands, and the way out.
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

-- Capabilities come from database roles of the session user, never from anything a client can set.
-- admin > controller; auditor is separate (read-only evidence).
CREATE OR REPLACE FUNCTION ledgerlock.has_capability(capability text)
RETURNS boolean
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE capability
        WHEN 'admin' THEN pg_catalog.pg_has_role(session_user, 'ledgerlock_admin', 'MEMBER')
        WHEN 'controller' THEN pg_catalog.pg_has_role(session_user, 'ledgerlock_admin', 'MEMBER')
                            OR pg_catalog.pg_has_role(session_user, 'ledgerlock_controller', 'MEMBER')
        WHEN 'auditor' THEN pg_catalog.pg_has_role(session_user, 'ledgerlock_admin', 'MEMBER')
                            OR pg_catalog.pg_has_role(session_user, 'ledgerlock_auditor', 'MEMBER')
        ELSE false
    END
$$;
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

-- Text trimmed of invisible characters at both ends, or null when it has no visible character. Invisible:
-- whitespace of every Unicode kind (tab, newlines, NBSP, U+2000..U+200A, U+2028/2029, U+202F, U+205F,
-- U+3000…), control characters (C0, DEL, C1) and format characters (zero-width space and joiners, U+2060..,
-- BOM, soft hyphen, bidi marks, tags). Listed by code point, so the database's locale does not change it.
CREATE OR REPLACE FUNCTION ledgerlock._visible_text(t text)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT nullif(pg_catalog.regexp_replace(t,
        '^[\u0001-\u0020\u007f-\u00a0\u00ad\u061c\u115f\u1160\u1680\u180e\u2000-\u200f\u2028-\u202f\u205f-\u206f\u3000\u3164\ufeff\uffa0\ufff9-\ufffb\U000e0001-\U000e007f]+|'
        '[\u0001-\u0020\u007f-\u00a0\u00ad\u061c\u115f\u1160\u1680\u180e\u2000-\u200f\u2028-\u202f\u205f-\u206f\u3000\u3164\ufeff\uffa0\ufff9-\ufffb\U000e0001-\U000e007f]+$',
        '', 'g'), '')
$$;
REVOKE ALL ON FUNCTION ledgerlock._visible_text(text) FROM PUBLIC;

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

-- The protected table a relation stands for: itself, or the protected partitioned table it is a partition
-- of. Row triggers on a partitioned table run on the leaf partition (TG_RELID is the partition), so every
-- registry lookup from a trigger goes through here.
CREATE OR REPLACE FUNCTION ledgerlock._rule_table(rel regclass)
RETURNS regclass
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(
        (SELECT p.tbl FROM ledgerlock.protected_table p WHERE p.tbl = rel),
        (SELECT p.tbl FROM ledgerlock.protected_table p
         WHERE p.tbl IN (SELECT a.relid FROM pg_catalog.pg_partition_ancestors(rel) AS a) LIMIT 1))
$$;
REVOKE ALL ON FUNCTION ledgerlock._rule_table(regclass) FROM PUBLIC;

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

-- How a row is named in messages and the audit trail: its primary key, as jsonb and as text.
CREATE OR REPLACE FUNCTION ledgerlock.row_key(tbl regclass, r jsonb)
RETURNS jsonb
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.jsonb_object_agg(k, r -> k)
    FROM ledgerlock.protected_table p, pg_catalog.unnest(p.key_columns) AS k
    WHERE p.tbl = ledgerlock._rule_table(row_key.tbl)
$$;
REVOKE ALL ON FUNCTION ledgerlock.row_key(regclass, jsonb) FROM PUBLIC;

-- "invoice id=42 (INV-2026-00017)": table, key, and the final number when the table has one.
CREATE OR REPLACE FUNCTION ledgerlock.row_label(tbl regclass, r jsonb)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.format('%s %s', c.relname,
               pg_catalog.string_agg(pg_catalog.format('%s=%s', k, r ->> k), ' ' ORDER BY o))
           || coalesce(' (' || (r ->> p.number_column::text) || ')', '')
    FROM ledgerlock.protected_table p
    JOIN pg_catalog.pg_class c ON c.oid = p.tbl
    CROSS JOIN LATERAL pg_catalog.unnest(p.key_columns) WITH ORDINALITY AS u(k, o)
    WHERE p.tbl = ledgerlock._rule_table(row_label.tbl)
    GROUP BY c.relname, p.number_column
$$;
REVOKE ALL ON FUNCTION ledgerlock.row_label(regclass, jsonb) FROM PUBLIC;

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
    RETURN pg_catalog.replace(expr, 'll_row.', alias || '.');
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._final_condition(regclass, text) FROM PUBLIC;

-- Columns a guard must not compare: the declared mutable ones, and generated columns (BEFORE triggers
-- see them unset in NEW).
CREATE OR REPLACE FUNCTION ledgerlock._exempt_columns(tbl regclass)
RETURNS name[]
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ARRAY(
        SELECT pg_catalog.unnest(p.mutable_columns)
        UNION
        SELECT a.attname FROM pg_catalog.pg_attribute a
        WHERE a.attrelid = p.tbl AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated <> ''
        ORDER BY 1)
    FROM ledgerlock.protected_table p WHERE p.tbl = _exempt_columns.tbl
$$;
REVOKE ALL ON FUNCTION ledgerlock._exempt_columns(regclass) FROM PUBLIC;

-- Every guard trigger is created here: ENABLE ALWAYS (session_replication_role = replica does not
-- silence it) and commented with the hash of its definition, so drift is visible (ledgerlock doctor).
CREATE OR REPLACE FUNCTION ledgerlock._create_guard_trigger(tbl regclass, trigger_name name, definition text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tgdef text;
BEGIN
    IF trigger_name !~ '^ll_[0-9]{2}_' THEN
        RAISE EXCEPTION 'guard trigger names start with ll_NN_, not %', trigger_name;
    END IF;
    PERFORM ledgerlock._ddl_permit(tbl, true);  -- the DDL guard lets ledgerlock's own installers through
    EXECUTE pg_catalog.format('CREATE TRIGGER %I %s', trigger_name, definition);
    EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', tbl, trigger_name);
    SELECT pg_catalog.pg_get_triggerdef(t.oid) INTO tgdef
    FROM pg_catalog.pg_trigger t WHERE t.tgrelid = tbl AND t.tgname = trigger_name;
    EXECUTE pg_catalog.format('COMMENT ON TRIGGER %I ON %s IS %L', trigger_name, tbl,
                              'ledgerlock:' || pg_catalog.md5(tgdef));
    PERFORM ledgerlock._record_generated_code(tbl, trigger_name);  -- what doctor compares the function with
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
        WHERE t.tgrelid IN (SELECT p.relid FROM pg_catalog.pg_partition_tree(tbl) p UNION SELECT tbl)
          AND NOT t.tgisinternal AND t.tgparentid = 0 AND pg_catalog.starts_with(t.tgname, prefix)
    LOOP
        EXECUTE pg_catalog.format('DROP TRIGGER %I ON %s', tg, rel);
    END LOOP;
    PERFORM ledgerlock._ddl_permit(tbl, false);
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._drop_guard_triggers(regclass, text) FROM PUBLIC;

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
                THEN 'true' ELSE 'NOT pg_catalog.record_image_eq(OLD, NEW)' END
$$;
REVOKE ALL ON FUNCTION ledgerlock._row_changed_condition(regclass) FROM PUBLIC;

-- ---------------------------------------------------------------------------------------------------
-- Scope grants (RLS, the close, four-eyes and R3 all ask them)

-- The scopes the session user is limited to, or null when it is not limited (no grant row names it or a
-- role it belongs to). Superusers are never limited (pg_has_role would make them members of every role).
CREATE OR REPLACE FUNCTION ledgerlock._granted_scopes()
RETURNS text[]
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN pg_catalog.count(*) = 0 THEN NULL ELSE pg_catalog.array_agg(DISTINCT g.scope) END
    FROM ledgerlock.scope_grant g
    WHERE pg_catalog.pg_has_role(session_user, g.grantee, 'MEMBER')
      AND NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = session_user)
$$;
REVOKE ALL ON FUNCTION ledgerlock._granted_scopes() FROM PUBLIC;

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
            pg_catalog.format('%s on scope %s is not allowed: %s is limited to scopes %s', action, scope,
                              session_user, pg_catalog.array_to_string(ledgerlock._granted_scopes(), ', ')),
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
AS $$
BEGIN
    PERFORM ledgerlock._require_capability('admin', 'grant_scope');
    IF ledgerlock._granted_scopes() IS NOT NULL THEN
        PERFORM ledgerlock._refuse('LL005',
            pg_catalog.format('grant_scope: %s is itself limited to some scopes', session_user),
            'scope grants are managed by an admin who is not scope-limited');
    END IF;
    IF ledgerlock._visible_text(scope) IS NULL THEN
        PERFORM ledgerlock._refuse('LL004', 'grant_scope requires a scope');
    END IF;
    INSERT INTO ledgerlock.scope_grant AS g (grantee, scope) VALUES (grantee, scope)
    ON CONFLICT ON CONSTRAINT scope_grant_pkey DO NOTHING;
    IF FOUND THEN
        INSERT INTO ledgerlock.lock_event (kind, scope, details)
        VALUES ('grant_scope', scope, pg_catalog.jsonb_build_object('grantee', grantee::text));
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
AS $$
BEGIN
    PERFORM ledgerlock._require_capability('admin', 'revoke_scope');
    IF ledgerlock._granted_scopes() IS NOT NULL THEN
        PERFORM ledgerlock._refuse('LL005',
            pg_catalog.format('revoke_scope: %s is itself limited to some scopes', session_user),
            'scope grants are managed by an admin who is not scope-limited');
    END IF;
    DELETE FROM ledgerlock.scope_grant g WHERE g.grantee = revoke_scope.grantee AND g.scope = revoke_scope.scope;
    IF NOT FOUND THEN
        PERFORM ledgerlock._refuse('LL004', pg_catalog.format('%s has no grant on scope %s', grantee, scope));
    END IF;
    INSERT INTO ledgerlock.lock_event (kind, scope, details)
    VALUES ('revoke_scope', scope, pg_catalog.jsonb_build_object('grantee', grantee::text));
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.revoke_scope(regrole, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.revoke_scope(regrole, text)
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
            pg_catalog.format('%s changes what every scope shares: %s is limited to scopes %s', action,
                              session_user, pg_catalog.array_to_string(scopes, ', ')),
            'ask an admin who is not scope-limited (no ledgerlock.grant_scope names them) to do it');
    END IF;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._require_unrestricted(text) FROM PUBLIC;
