-- Rule R5: capture every INSERT, UPDATE and DELETE on a protected table into ledgerlock.audit_event,
-- and every lock event (R3's ledgerlock.lock_event: lock, advance, upgrade, unlock, relock, override,
-- skip, scope grants).
--
-- Statement-level AFTER triggers with transition tables: one call per statement, and one set-based
-- INSERT … SELECT that writes every row's event, hash included (a bulk statement costs one trigger
-- call, not one per row). UPDATE pairs the old and new transition rows by position: PostgreSQL appends
-- them pairwise, so an update that changes the primary key (UPDATE … SET id = id + 1) is still paired
-- right, where pairing by key would not be.
-- Trigger arguments: the scope column ('' when none), then the primary-key columns.
-- Rows are read as to_jsonb(alias.*): a bare alias would be taken for a column of the same name.
-- extra_float_digits is pinned so that float columns are captured exactly whatever the client set; other
-- settings cannot lose information in to_jsonb (timestamps carry their offset), json columns are kept as
-- their text (ledgerlock._audit_image, called only for tables that have some), and the hash is computed
-- over the stored text, so verification never depends on settings.
-- Period context (R3): under an override, the event carries the override id, the window written into
-- and the override's reason; a write into an unlocked window carries that window and its unlock reason.
-- Windows are looked up per row only when the statement has an override, or when the row's scope (old or
-- new) has an unlocked window: an admin who reopens a month of one company does not slow every audited
-- write of every other company down (it did: 0.25x while any window anywhere was unlocked).

-- The period context of one written row: the lock window it was written into (through an override, or
-- while the window is unlocked) and the reason that let it through. Windows are looked up only under an
-- override or when the row's scope, old or new, is one of unlocked_scopes (the scopes with an unlocked
-- window, collected once per statement); otherwise this costs nothing.
-- No SET clause so that PostgreSQL inlines it into the capture query (a SET clause would cost a function
-- call per row); it only runs inside audit_capture, whose search_path is pinned, and names are qualified.
CREATE OR REPLACE FUNCTION ledgerlock._audit_period_context(tbl regclass, old_row jsonb, new_row jsonb,
                                                           under_override boolean, unlocked_scopes text[],
                                                           scope_col text, override_reason text,
                                                           session_reason text)
RETURNS TABLE(lock_id bigint, reason text)
LANGUAGE sql
STABLE
AS $$
    SELECT w.id,
           coalesce(override_reason,
                    (SELECT l.unlock_reason FROM ledgerlock.period_lock l WHERE l.id = w.id AND l.status = 'unlocked'),
                    session_reason)
    FROM (SELECT CASE WHEN under_override OR (unlocked_scopes IS NOT NULL AND (
                          CASE WHEN scope_col = '' THEN '*' ELSE coalesce(new_row ->> scope_col, '*') END
                              = ANY (unlocked_scopes)
                          OR CASE WHEN scope_col = '' THEN '*' ELSE coalesce(old_row ->> scope_col, '*') END
                              = ANY (unlocked_scopes)))
                      THEN coalesce(
                          ledgerlock._locking_window(tbl, new_row), ledgerlock._locking_window(tbl, old_row),
                          ledgerlock._unlocked_window(tbl, new_row), ledgerlock._unlocked_window(tbl, old_row))
                 END AS id) w
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_period_context(regclass, jsonb, jsonb, boolean, text[], text, text, text)
    FROM PUBLIC;

-- The image of a row in the trail: to_jsonb, except that a json column is kept as its exact text (a jsonb
-- string): jsonb would drop duplicate keys and reorder, so rewriting '{"a": 1}' as '{"a": 2, "a": 1}' would
-- leave no trace. No SET clause, so that PostgreSQL inlines it into the capture query.
CREATE OR REPLACE FUNCTION ledgerlock._audit_image(r anyelement, json_cols text[])
RETURNS jsonb
LANGUAGE sql
STABLE
AS $$
    SELECT CASE WHEN json_cols IS NULL THEN pg_catalog.to_jsonb(r)
                ELSE pg_catalog.to_jsonb(r) OPERATOR(pg_catalog.||)
                     (SELECT pg_catalog.jsonb_object_agg(c, pg_catalog.to_jsonb(
                                 (pg_catalog.to_json(r) OPERATOR(pg_catalog.->) c)::text))
                      FROM pg_catalog.unnest(json_cols) AS c)
           END
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_image(anyelement, text[]) FROM PUBLIC;

CREATE OR REPLACE FUNCTION ledgerlock.audit_capture()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER  -- writes ledgerlock.audit_event, which clients cannot
SET search_path = pg_catalog, pg_temp
SET extra_float_digits = '1'
AS $$
DECLARE
    -- TG_ARGV: the scope column ('' when none), the protected table's oid (a partition records the table
    -- it belongs to, as ledgerlock._rule_table(TG_RELID) names it: resolved once, at install time, not per
    -- statement), the table's json columns (a text[] literal), then the primary-key columns.
    scope_col text := TG_ARGV[0];
    tbl oid := TG_ARGV[1]::oid;
    json_cols text[] := nullif(TG_ARGV[2]::text[], '{}');  -- see ledgerlock._audit_image
    k1 text := TG_ARGV[3];
    keys text[] := CASE WHEN TG_NARGS > 4 THEN TG_ARGV[3:TG_NARGS - 1] END;  -- only for composite keys
BEGIN
    -- One statement per call, everything in it (one SPI execution, a plan cached for the session): the
    -- event context, then one event per row. The period context (R3): the override this transaction opened
    -- is read straight from R3's period_override, exactly as ledgerlock.current_override() does (that
    -- function is SECURITY DEFINER with a SET clause, so it cannot be inlined: calling it re-plans its
    -- query in every transaction, which was the largest single cost of an audited write); windows are
    -- looked up per row only under an override or for rows of a scope with an unlocked window.
    IF TG_OP = 'INSERT' THEN
        INSERT INTO ledgerlock.audit_event (seq, at, txid, table_oid, table_name, row_key, scope, operation,
            old_row, new_row, db_user, actor, reason, context, lock_id, override_id, details, event_hash)
        SELECT x.seq, c.at, c.txid, tbl, c.tbl_name, x.row_key, x.scope, 'INSERT', x.o, x.r, session_user,
               c.actor, w.reason, c.context, w.lock_id, c.ov, NULL,
               ledgerlock._audit_event_hash(x.seq, c.at, c.txid, c.tbl_name, x.row_key, x.scope, 'INSERT', x.o,
                   x.r, session_user, c.actor, w.reason, c.context, w.lock_id, c.ov, NULL)
        FROM (SELECT pg_catalog.now() AS at, pg_catalog.pg_current_xact_id() AS txid,
                     tbl::regclass::text AS tbl_name,
                     nullif(pg_catalog.current_setting('ledgerlock.actor', true), '') AS actor,
                     nullif(pg_catalog.current_setting('ledgerlock.reason', true), '') AS reason,
                     nullif(pg_catalog.current_setting('ledgerlock.context', true), '') AS context,
                     o.id AS ov, o.reason AS ov_reason,
                     (SELECT pg_catalog.array_agg(l.scope) FROM ledgerlock.period_lock l
                      WHERE l.status = 'unlocked' AND l.relocked_as IS NULL) AS unlocked_scopes
              FROM (SELECT) AS d
              LEFT JOIN LATERAL (SELECT o.id, o.reason FROM ledgerlock.period_override o
                                 WHERE o.txid = pg_catalog.pg_current_xact_id_if_assigned()
                                   AND o.db_user = session_user
                                 ORDER BY o.id DESC LIMIT 1) AS o ON true
              OFFSET 0) c
        CROSS JOIN LATERAL (
              SELECT pg_catalog.nextval('ledgerlock.audit_event_seq') AS seq, t.o, t.r,
                     CASE WHEN keys IS NULL THEN pg_catalog.jsonb_build_object(k1, t.r -> k1)
                          ELSE (SELECT pg_catalog.jsonb_object_agg(k, t.r -> k) FROM pg_catalog.unnest(keys) AS k)
                     END AS row_key,
                     CASE WHEN scope_col = '' THEN '*' ELSE t.r ->> scope_col END AS scope
              FROM (SELECT NULL::jsonb AS o, CASE WHEN json_cols IS NULL THEN pg_catalog.to_jsonb(ll_n.*) ELSE ledgerlock._audit_image(ll_n.*, json_cols) END AS r FROM ll_new AS ll_n) t
              OFFSET 0) x
        CROSS JOIN LATERAL ledgerlock._audit_period_context(tbl, x.o, x.r, c.ov IS NOT NULL, c.unlocked_scopes,
                                                            scope_col, c.ov_reason, c.reason) w;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO ledgerlock.audit_event (seq, at, txid, table_oid, table_name, row_key, scope, operation,
            old_row, new_row, db_user, actor, reason, context, lock_id, override_id, details, event_hash)
        SELECT x.seq, c.at, c.txid, tbl, c.tbl_name, x.row_key, x.scope, 'UPDATE', x.o, x.r, session_user,
               c.actor, w.reason, c.context, w.lock_id, c.ov, NULL,
               ledgerlock._audit_event_hash(x.seq, c.at, c.txid, c.tbl_name, x.row_key, x.scope, 'UPDATE', x.o,
                   x.r, session_user, c.actor, w.reason, c.context, w.lock_id, c.ov, NULL)
        FROM (SELECT pg_catalog.now() AS at, pg_catalog.pg_current_xact_id() AS txid,
                     tbl::regclass::text AS tbl_name,
                     nullif(pg_catalog.current_setting('ledgerlock.actor', true), '') AS actor,
                     nullif(pg_catalog.current_setting('ledgerlock.reason', true), '') AS reason,
                     nullif(pg_catalog.current_setting('ledgerlock.context', true), '') AS context,
                     o.id AS ov, o.reason AS ov_reason,
                     (SELECT pg_catalog.array_agg(l.scope) FROM ledgerlock.period_lock l
                      WHERE l.status = 'unlocked' AND l.relocked_as IS NULL) AS unlocked_scopes
              FROM (SELECT) AS d
              LEFT JOIN LATERAL (SELECT o.id, o.reason FROM ledgerlock.period_override o
                                 WHERE o.txid = pg_catalog.pg_current_xact_id_if_assigned()
                                   AND o.db_user = session_user
                                 ORDER BY o.id DESC LIMIT 1) AS o ON true
              OFFSET 0) c
        CROSS JOIN LATERAL (
              SELECT pg_catalog.nextval('ledgerlock.audit_event_seq') AS seq, t.o, t.r,
                     CASE WHEN keys IS NULL THEN pg_catalog.jsonb_build_object(k1, t.r -> k1)
                          ELSE (SELECT pg_catalog.jsonb_object_agg(k, t.r -> k) FROM pg_catalog.unnest(keys) AS k)
                     END AS row_key,
                     CASE WHEN scope_col = '' THEN '*' ELSE t.r ->> scope_col END AS scope
              FROM (SELECT o.r AS o, n.r
                    FROM (SELECT pg_catalog.row_number() OVER () AS pos, CASE WHEN json_cols IS NULL THEN pg_catalog.to_jsonb(ll_o.*) ELSE ledgerlock._audit_image(ll_o.*, json_cols) END AS r
                          FROM ll_old AS ll_o) o
                    JOIN (SELECT pg_catalog.row_number() OVER () AS pos, CASE WHEN json_cols IS NULL THEN pg_catalog.to_jsonb(ll_n.*) ELSE ledgerlock._audit_image(ll_n.*, json_cols) END AS r
                          FROM ll_new AS ll_n) n ON n.pos = o.pos
                    ORDER BY o.pos) t
              OFFSET 0) x
        CROSS JOIN LATERAL ledgerlock._audit_period_context(tbl, x.o, x.r, c.ov IS NOT NULL, c.unlocked_scopes,
                                                            scope_col, c.ov_reason, c.reason) w;
    ELSE
        INSERT INTO ledgerlock.audit_event (seq, at, txid, table_oid, table_name, row_key, scope, operation,
            old_row, new_row, db_user, actor, reason, context, lock_id, override_id, details, event_hash)
        SELECT x.seq, c.at, c.txid, tbl, c.tbl_name, x.row_key, x.scope, 'DELETE', x.o, x.r, session_user,
               c.actor, w.reason, c.context, w.lock_id, c.ov, NULL,
               ledgerlock._audit_event_hash(x.seq, c.at, c.txid, c.tbl_name, x.row_key, x.scope, 'DELETE', x.o,
                   x.r, session_user, c.actor, w.reason, c.context, w.lock_id, c.ov, NULL)
        FROM (SELECT pg_catalog.now() AS at, pg_catalog.pg_current_xact_id() AS txid,
                     tbl::regclass::text AS tbl_name,
                     nullif(pg_catalog.current_setting('ledgerlock.actor', true), '') AS actor,
                     nullif(pg_catalog.current_setting('ledgerlock.reason', true), '') AS reason,
                     nullif(pg_catalog.current_setting('ledgerlock.context', true), '') AS context,
                     o.id AS ov, o.reason AS ov_reason,
                     (SELECT pg_catalog.array_agg(l.scope) FROM ledgerlock.period_lock l
                      WHERE l.status = 'unlocked' AND l.relocked_as IS NULL) AS unlocked_scopes
              FROM (SELECT) AS d
              LEFT JOIN LATERAL (SELECT o.id, o.reason FROM ledgerlock.period_override o
                                 WHERE o.txid = pg_catalog.pg_current_xact_id_if_assigned()
                                   AND o.db_user = session_user
                                 ORDER BY o.id DESC LIMIT 1) AS o ON true
              OFFSET 0) c
        CROSS JOIN LATERAL (
              SELECT pg_catalog.nextval('ledgerlock.audit_event_seq') AS seq, t.o, t.r,
                     CASE WHEN keys IS NULL THEN pg_catalog.jsonb_build_object(k1, t.o -> k1)
                          ELSE (SELECT pg_catalog.jsonb_object_agg(k, t.o -> k) FROM pg_catalog.unnest(keys) AS k)
                     END AS row_key,
                     CASE WHEN scope_col = '' THEN '*' ELSE t.o ->> scope_col END AS scope
              FROM (SELECT CASE WHEN json_cols IS NULL THEN pg_catalog.to_jsonb(ll_o.*) ELSE ledgerlock._audit_image(ll_o.*, json_cols) END AS o, NULL::jsonb AS r FROM ll_old AS ll_o) t
              OFFSET 0) x
        CROSS JOIN LATERAL ledgerlock._audit_period_context(tbl, x.o, x.r, c.ov IS NOT NULL, c.unlocked_scopes,
                                                            scope_col, c.ov_reason, c.reason) w;
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.audit_capture() FROM PUBLIC;

-- Statement triggers are not passed on to partitions, and a statement that names a partition fires that
-- partition's statement triggers only: every partition (at every level) gets its own capture triggers,
-- recording the protected table (its oid is the second argument). New partitions get them from the DDL
-- guard (which runs every installer when a partition is created or attached) or from reinstall_guards().
CREATE OR REPLACE FUNCTION ledgerlock._install_90_audit(tbl regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cfg ledgerlock.protected_table := ledgerlock._config(tbl);
    args text := pg_catalog.concat_ws(', ', pg_catalog.quote_literal(coalesce(cfg.scope_column::text, '')),
        pg_catalog.quote_literal(cfg.tbl::oid::text),
        pg_catalog.quote_literal(ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a
                                       WHERE a.attrelid = cfg.tbl AND a.attnum > 0 AND NOT a.attisdropped
                                         AND a.atttypid = 'json'::regtype ORDER BY a.attnum)::text),
        (SELECT pg_catalog.string_agg(pg_catalog.quote_literal(k), ', ' ORDER BY o)
         FROM pg_catalog.unnest(cfg.key_columns) WITH ORDINALITY AS u(k, o)));
    rel regclass;
BEGIN
    PERFORM ledgerlock._drop_guard_triggers(cfg.tbl, 'll_90_');
    FOR rel IN SELECT p.relid FROM pg_catalog.pg_partition_tree(cfg.tbl) p
               UNION ALL SELECT cfg.tbl WHERE pg_catalog.pg_partition_root(cfg.tbl) IS NULL LOOP
        PERFORM ledgerlock._create_guard_trigger(rel, 'll_90_audit_insert', pg_catalog.format(
            'AFTER INSERT ON %s REFERENCING NEW TABLE AS ll_new FOR EACH STATEMENT '
            'EXECUTE FUNCTION ledgerlock.audit_capture(%s)', rel, args));
        PERFORM ledgerlock._create_guard_trigger(rel, 'll_90_audit_update', pg_catalog.format(
            'AFTER UPDATE ON %s REFERENCING OLD TABLE AS ll_old NEW TABLE AS ll_new FOR EACH STATEMENT '
            'EXECUTE FUNCTION ledgerlock.audit_capture(%s)', rel, args));
        PERFORM ledgerlock._create_guard_trigger(rel, 'll_90_audit_delete', pg_catalog.format(
            'AFTER DELETE ON %s REFERENCING OLD TABLE AS ll_old FOR EACH STATEMENT '
            'EXECUTE FUNCTION ledgerlock.audit_capture(%s)', rel, args));
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._install_90_audit(regclass) FROM PUBLIC;

-- (unprotect's _drop_guard_triggers(tbl, 'll_') reaches every partition's capture triggers.)

-- Lock events (R3) become audit events: operation = the kind in capitals (LOCK, ADVANCE, UPGRADE, UNLOCK,
-- RELOCK, OVERRIDE, SKIP, GRANT_SCOPE, REVOKE_SCOPE…), the lock_event row as new_row. A skipped write is
-- filed under the table it was meant for, with the row that was not written.
CREATE OR REPLACE FUNCTION ledgerlock.audit_capture_lock_event()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET extra_float_digits = '1'
AS $$
DECLARE
    ev_at timestamptz := pg_catalog.now();
    ev_txid xid8 := pg_catalog.pg_current_xact_id();
BEGIN
    INSERT INTO ledgerlock.audit_event (seq, at, txid, table_oid, table_name, row_key, scope, operation,
        old_row, new_row, db_user, actor, reason, context, lock_id, override_id, details, event_hash)
    SELECT x.seq, ev_at, ev_txid, x.tbl, x.tbl_name, x.row_key, x.scope, x.operation, NULL, x.r, session_user,
           x.actor, x.reason, x.context, x.lock_id, x.override_id, NULL,
           ledgerlock._audit_event_hash(x.seq, ev_at, ev_txid, x.tbl_name, x.row_key, x.scope, x.operation, NULL,
               x.r, session_user, x.actor, x.reason, x.context, x.lock_id, x.override_id, NULL)
    FROM (SELECT pg_catalog.nextval('ledgerlock.audit_event_seq') AS seq,
                 pg_catalog.upper(e.kind) AS operation,
                 CASE WHEN e.kind = 'skip' THEN pg_catalog.to_regclass(e.details ->> 'table')
                      ELSE 'ledgerlock.lock_event'::regclass END AS tbl,
                 CASE WHEN e.kind = 'skip' THEN e.details ->> 'table' ELSE 'ledgerlock.lock_event' END AS tbl_name,
                 CASE WHEN e.kind = 'skip' THEN e.details -> 'key'
                      ELSE pg_catalog.jsonb_build_object('id', e.id) END AS row_key,
                 CASE WHEN e.kind = 'skip' THEN e.details -> 'row' ELSE pg_catalog.to_jsonb(e.*) END AS r,
                 e.scope, e.actor, e.reason, e.context, e.lock_id,
                 (e.details ->> 'override_id')::bigint AS override_id
          FROM ll_new e ORDER BY e.id OFFSET 0) x;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.audit_capture_lock_event() FROM PUBLIC;

DROP TRIGGER IF EXISTS ll_90_audit_lock_event ON ledgerlock.lock_event;
CREATE TRIGGER ll_90_audit_lock_event AFTER INSERT ON ledgerlock.lock_event
    REFERENCING NEW TABLE AS ll_new FOR EACH STATEMENT EXECUTE FUNCTION ledgerlock.audit_capture_lock_event();
ALTER TABLE ledgerlock.lock_event ENABLE ALWAYS TRIGGER ll_90_audit_lock_event;
