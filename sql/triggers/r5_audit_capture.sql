-- Rule R5: capture every INSERT, UPDATE and DELETE on a protected table into ledgerlock.audit_event,
-- and every lock event (R3's ledgerlock.lock_event: lock, advance, upgrade, unlock, relock, override,
-- skip, scope grants).
--
-- Statement-level AFTER triggers with transition tables: one call per statement, and one set-based
-- INSERT ... SELECT that writes every row's event (a bulk statement costs one trigger call, not one per row).
-- Events are stored unhashed: a hash computed here adds nothing an attacker who can rewrite the event
-- cannot recompute before the next seal, so the sealer hashes each event when it links it (r5_audit.sql).
-- UPDATE pairs the old and new transition rows by position: PostgreSQL appends them pairwise, so an update
-- that changes the primary key (UPDATE ... SET id = id + 1) is still paired right, where pairing by key
-- would not be.
-- Trigger arguments: the scope column ('' when none), then the primary-key columns.
-- Rows are read as to_jsonb(alias.*): a bare alias would be taken for a column of the same name.
-- Images are made under pinned output settings, the same wherever ledgerlock makes or reads a row image
-- (the capture, a skipped write's row and its re-post, the baseline, the books check; a test checks
-- the list): extra_float_digits = 1, so that float columns are captured exactly whatever the client set;
-- DateStyle 'ISO, YMD', IntervalStyle postgres, bytea_output hex and lc_monetary C, because to_jsonb
-- writes every type JSON has no form for (ranges, intervals, bytea, money) as its text output, which those
-- settings change: a date range written under 'SQL, DMY' could not be read back by verification, and an
-- interval written under sql_standard would read back as another value. TimeZone = 'UTC': a timestamptz
-- carries its offset, so its value reads back under any zone, but its text is the writer's zone's
-- ('2025-01-01T14:00:00+14:00' under Pacific/Kiritimati), and a key is compared as text: a row keyed by a
-- timestamptz and written under two zones was filed under two keys (events written before this pin are
-- read under their key in UTC: ledgerlock._audit_utc_key). json columns are kept as their text
-- (ledgerlock._audit_image, called only for tables that have some), and the sealer hashes the stored text,
-- so verification never depends on settings.
-- Period context (R3): under an override, the event carries the override id, the window written into
-- and the override's reason; a write into an unlocked window carries that window and its unlock reason.
-- Windows are looked up per row only when the statement has an override, or when the row's scope (old or
-- new) has an unlocked window: an admin who reopens a month of one company does not slow every audited
-- write of every other company down.

-- The lock window a written row went into, when the statement's context says one may exist: under an
-- override (the window it opens), or when the row's scope, old or new, is a key of unlocked_scopes (the
-- scopes with an unlocked window, collected once per statement as a jsonb object, whose keys are sorted: a
-- lookup is a binary search, so a bulk statement costs the same with one company's month reopened or
-- thousands; an array searched element by element made a 100k-row UPDATE of another company 1.3 -> 5.5 s
-- with 1,000 windows unlocked); otherwise null at no cost, which is every write outside a reopened period.
-- VOLATILE and without SET clause, so that PostgreSQL inlines it into the capture query (the functions it
-- calls are volatile; a STABLE function calling them would not be inlined, and would be planned again in
-- every statement); it only runs inside audit_capture, whose search_path is pinned.
CREATE OR REPLACE FUNCTION ledgerlock._audit_window(tbl regclass, old_row jsonb, new_row jsonb,
                                                   under_override boolean, unlocked_scopes jsonb, scope_col text,
                                                   parent_scopes jsonb)
RETURNS bigint
LANGUAGE sql
VOLATILE
AS $$
    SELECT CASE WHEN under_override OR (unlocked_scopes IS NOT NULL AND (
                    (new_row IS NOT NULL AND unlocked_scopes OPERATOR(pg_catalog.?)
                                             ledgerlock._scope_in_image(tbl, new_row, scope_col, parent_scopes))
                    OR (old_row IS NOT NULL AND unlocked_scopes OPERATOR(pg_catalog.?)
                                                ledgerlock._scope_in_image(tbl, old_row, scope_col, parent_scopes))))
                -- the side an INSERT or a DELETE has not (its image is null) lies in no window: not looked up
                THEN coalesce(CASE WHEN new_row IS NOT NULL THEN ledgerlock._locking_window(tbl, new_row) END,
                              CASE WHEN old_row IS NOT NULL THEN ledgerlock._locking_window(tbl, old_row) END,
                              CASE WHEN new_row IS NOT NULL THEN ledgerlock._unlocked_window(tbl, new_row) END,
                              CASE WHEN old_row IS NOT NULL THEN ledgerlock._unlocked_window(tbl, old_row) END)
           END
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_window(regclass, jsonb, jsonb, boolean, jsonb, text, jsonb) FROM PUBLIC;

-- The unlock reason of a window a row was written into while it is unlocked; called only for a row written
-- into a window. Not inlined (it reads a table), so the capture query does not set up the lookup in
-- statements that never need it. Not STRICT: the planner would fold a call with a null argument away
-- without checking the caller's EXECUTE privilege.
CREATE OR REPLACE FUNCTION ledgerlock._audit_unlock_reason(lock_id bigint)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT l.unlock_reason FROM ledgerlock.period_lock l WHERE l.id = lock_id AND l.status = 'unlocked'
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_unlock_reason(bigint) FROM PUBLIC;

-- An UPDATE whose old rows outnumber its new ones: PostgreSQL runs an UPDATE that moves a row to another
-- partition as a delete from the old one and an insert into the new one, and a BEFORE INSERT trigger that returns
-- nothing there leaves the row deleted. ledgerlock.on_locked = 'skip' does that for a row whose new date lies in
-- a locked window (it skips inserts): an application's UPDATE moving a draft into a locked month deleted it, with
-- no event, and verification reported it missing for good (measured 2026-11-30, PostgreSQL 16). Refused: the
-- statement is undone, as an update into a locked window is in either mode.
CREATE OR REPLACE FUNCTION ledgerlock._audit_refuse_unpaired(tbl regclass, n bigint)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ledgerlock._refuse('LL002', pg_catalog.format(
        'an UPDATE of %s moved %s row(s) to another partition without writing them there: their new dates lie in a '
        'locked window, where ledgerlock.on_locked = ''skip'' skips inserts, and the rows would have been deleted',
        tbl, n),
        'skip mode applies to inserts; an update into a locked window is refused in either mode: give the rows '
        'an open date, or have the window unlocked or overridden');
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_refuse_unpaired(regclass, bigint) FROM PUBLIC;

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

-- A row's image made outside the capture (a write skipped in a locked window keeps its row in its lock
-- event, and ledgerlock.repost_skipped reads it back): to_jsonb under the capture's pinned output settings
-- (see the top of this file).
CREATE OR REPLACE FUNCTION ledgerlock._audit_row_image(r anyelement)
RETURNS jsonb
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
SET extra_float_digits = '1'
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
SET bytea_output = 'hex'
SET lc_monetary = 'C'
SET TimeZone = 'UTC'
AS $$
    SELECT pg_catalog.to_jsonb(r)
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_row_image(anyelement) FROM PUBLIC;

-- The reason of an override this transaction opened; called only when there is one (not STRICT, like
-- ledgerlock._audit_unlock_reason).
CREATE OR REPLACE FUNCTION ledgerlock._audit_override_reason(override_id bigint)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT o.reason FROM ledgerlock.period_override o WHERE o.id = override_id
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_override_reason(bigint) FROM PUBLIC;

-- What every event of one statement shares: its time, transaction, table name, the client's labels, the
-- override this transaction opened (read straight from R3's period_override, as current_override() does:
-- that function is SECURITY DEFINER with a SET clause, so it cannot be inlined and would re-plan its query
-- in every transaction) and the scopes that have an unlocked window (the keys of a jsonb object; null when
-- none). with_period false (ledgerlock's own state tables) skips the period lookups. The override's reason
-- is read only when there is an override. One row; OFFSET 0 keeps it computed once per statement. No SET
-- clause, so that PostgreSQL inlines it into the capture query.
CREATE OR REPLACE FUNCTION ledgerlock._audit_write_context(tbl oid, with_period boolean)
RETURNS TABLE(at timestamptz, txid xid8, tbl_name text, actor text, reason text, context text, ov bigint,
              ov_reason text, unlocked_scopes jsonb)
LANGUAGE sql
STABLE
AS $$
    SELECT pg_catalog.now(), pg_catalog.pg_current_xact_id(), tbl::regclass::text,
           nullif(pg_catalog.current_setting('ledgerlock.actor', true), ''),
           nullif(pg_catalog.current_setting('ledgerlock.reason', true), ''),
           nullif(pg_catalog.current_setting('ledgerlock.context', true), ''),
           o.ov, CASE WHEN o.ov IS NOT NULL THEN ledgerlock._audit_override_reason(o.ov) END,
           CASE WHEN with_period THEN (SELECT pg_catalog.jsonb_object_agg(l.scope, true)
                                       FROM ledgerlock.period_lock l
                                       WHERE l.status = 'unlocked' AND l.relocked_as IS NULL) END
    FROM (SELECT CASE WHEN with_period THEN (SELECT pg_catalog.max(o.id) FROM ledgerlock.period_override o
                                             WHERE o.txid = pg_catalog.pg_current_xact_id_if_assigned()
                                               AND o.db_user = session_user AND o.at = pg_catalog.now()) END AS ov
          OFFSET 0) o
    OFFSET 0
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_write_context(oid, boolean) FROM PUBLIC;

-- The key an event is filed under, from the row image: {"k1": value}, or every key column of a composite
-- key (ledgerlock._audit_composite_key). No SET clause and no subquery, so that PostgreSQL inlines it into
-- the capture query (a function that is not inlined is parsed and planned again in every statement).
CREATE OR REPLACE FUNCTION ledgerlock._audit_key(r jsonb, k1 text, keys text[])
RETURNS jsonb
LANGUAGE sql
STABLE
AS $$
    SELECT CASE WHEN keys IS NULL THEN pg_catalog.jsonb_build_object(k1, r OPERATOR(pg_catalog.->) k1)
                ELSE ledgerlock._audit_composite_key(r, keys) END
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_key(jsonb, text, text[]) FROM PUBLIC;

-- The key of a row of a table with a composite primary key: every key column, from the row image.
CREATE OR REPLACE FUNCTION ledgerlock._audit_composite_key(r jsonb, keys text[])
RETURNS jsonb
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.jsonb_object_agg(k, r OPERATOR(pg_catalog.->) k) FROM pg_catalog.unnest(keys) AS k
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_composite_key(jsonb, text[]) FROM PUBLIC;

-- The scope an event is filed under, from the row image: its scope column, the scope of its parent row
-- (parent_scope: scope_col names a foreign key path; ledgerlock._scope_in_image reads it from the
-- statement's parent_scopes), '*' without a scope, none for ledgerlock's own settings (period false:
-- table-level, like PROTECT). No SET clause, so that PostgreSQL inlines it; VOLATILE like
-- ledgerlock._scope_in_image, which it calls (a STABLE function calling a volatile one is not inlined).
CREATE OR REPLACE FUNCTION ledgerlock._audit_scope(tbl oid, r jsonb, scope_col text, parent_scope boolean,
                                                   period boolean, parent_scopes jsonb)
RETURNS text
LANGUAGE sql
VOLATILE
AS $$
    SELECT CASE WHEN parent_scope AND NOT r OPERATOR(pg_catalog.?) scope_col
                THEN ledgerlock._scope_in_image(tbl::regclass, r, scope_col, parent_scopes)
                WHEN scope_col <> '' THEN r OPERATOR(pg_catalog.->>) scope_col
                WHEN period THEN '*'
           END
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_scope(oid, jsonb, text, boolean, boolean, jsonb) FROM PUBLIC;

-- One row's event, not hashed (the sealer hashes it): its key and scope come from the new row (the old one
-- for a DELETE); its reason is the override's, else the unlock reason of the window it was written into,
-- else the client's label. The one place where an event is made from a written row: the capture's three
-- queries (INSERT, UPDATE, DELETE) differ only in where their rows come from. A row value, VOLATILE (it
-- takes the event's seq) and without SET clause, so that PostgreSQL inlines it: (...).* then reads each
-- field straight from its expression, and nextval is evaluated once per row.
CREATE OR REPLACE FUNCTION ledgerlock._audit_event_row(tbl oid, operation text, o jsonb, r jsonb, scope_col text,
                                                      k1 text, keys text[], period boolean, at timestamptz,
                                                      txid xid8, tbl_name text, actor text, reason text,
                                                      context text, override_id bigint, override_reason text,
                                                      lock_id bigint, parent_scopes jsonb)
RETURNS ledgerlock.audit_event
LANGUAGE sql
VOLATILE
AS $$
    SELECT ROW(pg_catalog.nextval('ledgerlock.audit_event_seq'), at, txid, tbl, tbl_name,
               ledgerlock._audit_key(coalesce(r, o), k1, keys),
               ledgerlock._audit_scope(tbl, coalesce(r, o), scope_col, pg_catalog.strpos(scope_col, '.') > 0, period,
                                       parent_scopes),
               operation, o, r, session_user, actor,
               coalesce(override_reason,
                        CASE WHEN lock_id IS NOT NULL THEN ledgerlock._audit_unlock_reason(lock_id) END, reason),
               context, lock_id, override_id, NULL::jsonb, NULL::text  -- hashed by the sealer, off the write path
           )::ledgerlock.audit_event
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_event_row(oid, text, jsonb, jsonb, text, text, text[], boolean, timestamptz,
    xid8, text, text, text, text, bigint, text, bigint, jsonb) FROM PUBLIC;

-- One statement per call, one query: the statement's context (time, transaction, labels, the override this
-- transaction opened, the scopes with an unlocked window: one row, computed once), every written row's
-- image, the lock window each row went into (looked up only when that context says one may exist), and the
-- event made of them (ledgerlock._audit_event_row). The branches differ only in where the rows come from (a
-- transition table exists only for its event; an UPDATE pairs one row, up to pair_cap rows, or more, each its
-- own way); each is one plain query PostgreSQL plans once per
-- session and trigger. Its plan does not depend on the values of the trigger's arguments, so it is generic
-- from the first call: planning it (its helpers inlined) costs ~0.9 ms, which PostgreSQL's default would pay
-- again in each of a session's first five statements per trigger before it settles on the same generic plan
-- (a client that opens a connection per request, as Django does by default, paid it on most writes).
CREATE OR REPLACE FUNCTION ledgerlock.audit_capture()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER  -- writes ledgerlock.audit_event, which clients cannot
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
SET plan_cache_mode = force_generic_plan
SET extra_float_digits = '1'
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
SET bytea_output = 'hex'
SET lc_monetary = 'C'
SET TimeZone = 'UTC'
SET gin_fuzzy_search_limit = 0  -- it reads a parent-scoped row's scope (ledgerlock._row_reading_settings())
AS $$
DECLARE
    -- <ll90 arguments> The trigger's arguments (TG_ARGV): the scope column ('' when none), the protected
    -- table's oid (a partition records the table it belongs to, as ledgerlock._rule_table(TG_RELID) names it:
    -- resolved once, at install time, not per statement), the table's json columns (a text[] literal), then
    -- the primary-key columns. An oid that is neither the table's own nor its protected parent's comes from
    -- another cluster (the trigger was restored from a dump): the table is then resolved here. ledgerlock's
    -- state tables pass 0 (their own): their trigger definitions are then the same in every database.
    -- A protected table that is not partitioned runs a copy of this function made for it
    -- (ledgerlock._ll90_capture_body): these declarations taken out, and each ll90_ name written as the
    -- table's value, so that no argument is read per statement and PostgreSQL folds away what cannot apply.
    ll90_scope_col text := TG_ARGV[0];
    ll90_tbl oid := CASE WHEN TG_ARGV[1]::oid IN (TG_RELID, 0) THEN TG_RELID
                         ELSE coalesce(ledgerlock._rule_table(TG_RELID), TG_RELID) END;
    ll90_json_cols text[] := nullif(TG_ARGV[2]::text[], '{}');  -- see ledgerlock._audit_image
    ll90_k1 text := TG_ARGV[3];
    ll90_keys text[] := CASE WHEN TG_NARGS > 4 THEN TG_ARGV[3:TG_NARGS - 1] END;  -- only for composite keys
    ll90_period boolean := TG_TABLE_SCHEMA <> 'ledgerlock';  -- ledgerlock's own state has no lock windows
    -- a change of ledgerlock's own state is a STATE_INSERT/UPDATE/DELETE: readers of the audit log who look
    -- for data changes (INSERT, UPDATE, DELETE) do not get the lock tables' bookkeeping among them
    ll90_op text := CASE WHEN ll90_period THEN '' ELSE 'STATE_' END || TG_OP;
    -- </ll90 arguments>
    pair_cap constant int := 10000;  -- UPDATE: rows paired without a join (see below)
    paired bigint;
    parent_scopes jsonb;  -- a parent-scoped table: its rows' parent scopes, read once per statement
    many boolean;
    q text;
BEGIN
    -- The table's scope is its parent's (see _scope_in_image): a statement of more than one row reads every
    -- row's parent scope with one query; one row reads its own as _row_scope does (each way is one dynamic
    -- query, and the one-row one is the cheaper: 173 against 203 us for a one-row INSERT, PG 16)
    IF pg_catalog.strpos(ll90_scope_col, '.') > 0 THEN
        IF TG_OP = 'DELETE' THEN
            many := EXISTS (SELECT FROM ll_old OFFSET 1);
        ELSE
            many := EXISTS (SELECT FROM ll_new OFFSET 1);
        END IF;
        q := CASE WHEN many THEN ledgerlock._parent_scope_map_sql(ll90_tbl, TG_OP) END;
        IF q IS NOT NULL THEN
            EXECUTE q INTO parent_scopes;
        END IF;
    END IF;
    -- OFFSET 0 keeps each row's images (x) and then its window (w) computed once: flattened, an image would
    -- be computed for the key, the scope, the image and the window, and the window for its id and its
    -- reason, and neither helper would be inlined (PostgreSQL does not inline a function whose argument is
    -- costly and used more than once)
    IF TG_OP = 'INSERT' THEN
        INSERT INTO ledgerlock.audit_event
        SELECT (ledgerlock._audit_event_row(ll90_tbl, ll90_op, w.o, w.r, ll90_scope_col, ll90_k1, ll90_keys,
                    ll90_period, c.at, c.txid, c.tbl_name, c.actor, c.reason, c.context, c.ov,
                    c.ov_reason, w.lock_id, parent_scopes)).*
        FROM ledgerlock._audit_write_context(ll90_tbl, ll90_period) c
        CROSS JOIN LATERAL (
            SELECT x.o, x.r, ledgerlock._audit_window(ll90_tbl, x.o, x.r, c.ov IS NOT NULL, c.unlocked_scopes,
                                                      ll90_scope_col, parent_scopes) AS lock_id
            FROM (SELECT NULL::jsonb AS o,
                         CASE WHEN ll90_json_cols IS NULL THEN pg_catalog.to_jsonb(ll_n.*)
                              ELSE ledgerlock._audit_image(ll_n.*, ll90_json_cols) END AS r
                  FROM ll_new AS ll_n OFFSET 0) x
            OFFSET 0) w;
    ELSIF TG_OP = 'UPDATE' AND NOT EXISTS (SELECT FROM ll_old OFFSET 1) THEN
        -- one row (or none: an UPDATE that matched no row, as Django's save() tries before it inserts): its old
        -- and new images are the only pair, and a cross join of the two one-row sides makes it without
        -- building the arrays below (a one-row UPDATE 81 -> 77 us of server CPU, PG 16)
        INSERT INTO ledgerlock.audit_event
        SELECT (ledgerlock._audit_event_row(ll90_tbl, ll90_op, w.o, w.r, ll90_scope_col, ll90_k1, ll90_keys,
                    ll90_period, c.at, c.txid, c.tbl_name, c.actor, c.reason, c.context, c.ov,
                    c.ov_reason, w.lock_id, parent_scopes)).*
        FROM ledgerlock._audit_write_context(ll90_tbl, ll90_period) c
        CROSS JOIN LATERAL (
            SELECT x.o, x.r, ledgerlock._audit_window(ll90_tbl, x.o, x.r, c.ov IS NOT NULL, c.unlocked_scopes,
                                                      ll90_scope_col, parent_scopes) AS lock_id
            FROM (SELECT a.o, b.r
                  FROM (SELECT CASE WHEN ll90_json_cols IS NULL THEN pg_catalog.to_jsonb(ll_o.*)
                                    ELSE ledgerlock._audit_image(ll_o.*, ll90_json_cols) END AS o
                        FROM ll_old AS ll_o) a
                  CROSS JOIN (SELECT CASE WHEN ll90_json_cols IS NULL THEN pg_catalog.to_jsonb(ll_n.*)
                                          ELSE ledgerlock._audit_image(ll_n.*, ll90_json_cols) END AS r
                              FROM ll_new AS ll_n) b
                  OFFSET 0) x
            OFFSET 0) w;
        GET DIAGNOSTICS paired = ROW_COUNT;
        IF paired = 0 AND EXISTS (SELECT FROM ll_old) THEN
            PERFORM ledgerlock._audit_refuse_unpaired(ll90_tbl, 1);
        END IF;
    ELSIF TG_OP = 'UPDATE' THEN
        -- an old row with no new one (see ledgerlock._audit_refuse_unpaired): the pairing below would be off
        SELECT o.n - n.n INTO paired FROM (SELECT pg_catalog.count(*) AS n FROM ll_old) o,
                                          (SELECT pg_catalog.count(*) AS n FROM ll_new) n;
        IF paired <> 0 THEN
            PERFORM ledgerlock._audit_refuse_unpaired(ll90_tbl, paired);
        END IF;
        -- old and new transition rows paired by position: PostgreSQL appends them pairwise, so an update
        -- that changes the primary key is still paired right, where pairing by key would not be. No join
        -- pairs them up to pair_cap rows: each side's images are read into an array in order and the two
        -- arrays are zipped (ROWS FROM), which costs the same for any statement. A join of the two
        -- transition tables would be planned once per session (the plan is generic) with the row counts of
        -- the first statement, so after a one-row UPDATE a nested loop would pair a later bulk UPDATE's rows
        -- in N x N steps (8,000 rows took 82 s instead of 0.1 s). A statement of more rows than that writes
        -- nothing here (no seq is taken) and is paired below by a hash join of positions, which holds for
        -- any size (the arrays would have to hold every image in memory, up to 1 GB each).
        INSERT INTO ledgerlock.audit_event
        SELECT (ledgerlock._audit_event_row(ll90_tbl, ll90_op, w.o, w.r, ll90_scope_col, ll90_k1, ll90_keys,
                    ll90_period, c.at, c.txid, c.tbl_name, c.actor, c.reason, c.context, c.ov,
                    c.ov_reason, w.lock_id, parent_scopes)).*
        FROM ledgerlock._audit_write_context(ll90_tbl, ll90_period) c
        CROSS JOIN LATERAL (
            SELECT x.o, x.r, ledgerlock._audit_window(ll90_tbl, x.o, x.r, c.ov IS NOT NULL, c.unlocked_scopes,
                                                      ll90_scope_col, parent_scopes) AS lock_id
            FROM (SELECT p.o, p.r
                  FROM (SELECT ARRAY(SELECT CASE WHEN ll90_json_cols IS NULL THEN pg_catalog.to_jsonb(ll_o.*)
                                                 ELSE ledgerlock._audit_image(ll_o.*, ll90_json_cols) END
                                     FROM ll_old AS ll_o LIMIT pair_cap + 1) AS o,
                               ARRAY(SELECT CASE WHEN ll90_json_cols IS NULL THEN pg_catalog.to_jsonb(ll_n.*)
                                                 ELSE ledgerlock._audit_image(ll_n.*, ll90_json_cols) END
                                     FROM ll_new AS ll_n LIMIT pair_cap + 1) AS r
                        OFFSET 0) a  -- each array made once: flattened, the test and the zip would make it twice
                  CROSS JOIN ROWS FROM (pg_catalog.unnest(a.o), pg_catalog.unnest(a.r)) AS p(o, r)
                  WHERE pg_catalog.cardinality(a.o) <= pair_cap
                  OFFSET 0) x
            OFFSET 0) w;
        GET DIAGNOSTICS paired = ROW_COUNT;
        -- nothing paired: more than pair_cap rows
        IF paired = 0 THEN
            -- a FULL JOIN, which PostgreSQL cannot run as a nested loop, is a hash or merge join whatever the
            -- counts it was planned with (both sides have the same number of rows, so it pairs them as an
            -- inner join would)
            INSERT INTO ledgerlock.audit_event
            SELECT (ledgerlock._audit_event_row(ll90_tbl, ll90_op, w.o, w.r, ll90_scope_col, ll90_k1, ll90_keys,
                        ll90_period, c.at, c.txid, c.tbl_name, c.actor, c.reason, c.context, c.ov,
                        c.ov_reason, w.lock_id, parent_scopes)).*
            FROM ledgerlock._audit_write_context(ll90_tbl, ll90_period) c
            CROSS JOIN LATERAL (
                SELECT x.o, x.r, ledgerlock._audit_window(ll90_tbl, x.o, x.r, c.ov IS NOT NULL, c.unlocked_scopes,
                                                          ll90_scope_col, parent_scopes) AS lock_id
                FROM (SELECT o.r AS o, n.r
                      FROM (SELECT pg_catalog.row_number() OVER () AS pos,
                                   CASE WHEN ll90_json_cols IS NULL THEN pg_catalog.to_jsonb(ll_o.*)
                                        ELSE ledgerlock._audit_image(ll_o.*, ll90_json_cols) END AS r
                            FROM ll_old AS ll_o) o
                      FULL JOIN (SELECT pg_catalog.row_number() OVER () AS pos,
                                        CASE WHEN ll90_json_cols IS NULL THEN pg_catalog.to_jsonb(ll_n.*)
                                             ELSE ledgerlock._audit_image(ll_n.*, ll90_json_cols) END AS r
                                 FROM ll_new AS ll_n) n ON n.pos = o.pos
                      ORDER BY o.pos OFFSET 0) x
                OFFSET 0) w;
        END IF;
    ELSE
        INSERT INTO ledgerlock.audit_event
        SELECT (ledgerlock._audit_event_row(ll90_tbl, ll90_op, w.o, w.r, ll90_scope_col, ll90_k1, ll90_keys,
                    ll90_period, c.at, c.txid, c.tbl_name, c.actor, c.reason, c.context, c.ov,
                    c.ov_reason, w.lock_id, parent_scopes)).*
        FROM ledgerlock._audit_write_context(ll90_tbl, ll90_period) c
        CROSS JOIN LATERAL (
            SELECT x.o, x.r, ledgerlock._audit_window(ll90_tbl, x.o, x.r, c.ov IS NOT NULL, c.unlocked_scopes,
                                                      ll90_scope_col, parent_scopes) AS lock_id
            FROM (SELECT CASE WHEN ll90_json_cols IS NULL THEN pg_catalog.to_jsonb(ll_o.*)
                              ELSE ledgerlock._audit_image(ll_o.*, ll90_json_cols) END AS o,
                         NULL::jsonb AS r
                  FROM ll_old AS ll_o OFFSET 0) x
            OFFSET 0) w;
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.audit_capture() FROM PUBLIC;

-- A table's json columns, in column order (see ledgerlock._audit_image).
CREATE OR REPLACE FUNCTION ledgerlock._audit_json_columns(tbl regclass)
RETURNS text[]
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a
                 WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped
                   AND a.atttypid = 'json'::regtype ORDER BY a.attnum)
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_json_columns(regclass) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._audit_json_columns(regclass) TO ledgerlock_admin, ledgerlock_auditor;

-- The capture trigger arguments of a table: its scope column ('' when none), the oid its events are filed
-- under (filed_under; 0: the relation the trigger is on), its json columns, its key columns.
CREATE OR REPLACE FUNCTION ledgerlock._audit_trigger_args(tbl regclass, filed_under oid, scope_col text)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.concat_ws(', ', pg_catalog.quote_literal(coalesce(scope_col, '')),
        pg_catalog.quote_literal(filed_under::text),
        pg_catalog.quote_literal(ledgerlock._audit_json_columns(tbl)::text),
        (SELECT pg_catalog.string_agg(pg_catalog.quote_literal(k), ', ' ORDER BY o)
         FROM pg_catalog.unnest(ledgerlock._audit_key_columns(tbl)) WITH ORDINALITY AS u(k, o)))
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_trigger_args(regclass, oid, text) FROM PUBLIC;

-- The values a protected table's own capture writes in place of audit_capture()'s ll90_ names, as SQL
-- text: what its trigger arguments would say, as literals (so PostgreSQL folds away the branches that cannot
-- apply: another table's json columns, a parent's scope, a composite key), the table itself as TG_RELID
-- (never an oid literal: a restored dump, or a renamed table, runs the function as it is), and what the
-- shared function derives for ledgerlock's own state tables, which keep it (a protected table is never in
-- schema ledgerlock: ledgerlock._check_guardable).
CREATE OR REPLACE FUNCTION ledgerlock._ll90_values(tbl regclass)
RETURNS jsonb
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.jsonb_build_object(
        'll90_scope_col', pg_catalog.quote_literal(coalesce(cfg.scope_column::text, '')) || '::text',
        'll90_tbl', 'TG_RELID',
        'll90_json_cols', coalesce(pg_catalog.quote_literal(nullif(j.cols, '{}')::text) || '::text[]',
                                   'NULL::text[]'),
        'll90_k1', pg_catalog.quote_nullable(k.cols[1]) || '::text',
        'll90_keys', CASE WHEN pg_catalog.cardinality(k.cols) > 1 THEN pg_catalog.quote_literal(k.cols::text) || '::text[]'
                          ELSE 'NULL::text[]' END,
        'll90_period', 'true',
        'll90_op', 'TG_OP')
    FROM ledgerlock.protected_table cfg
    CROSS JOIN LATERAL (SELECT ledgerlock._audit_json_columns(cfg.tbl) AS cols) j
    CROSS JOIN LATERAL (SELECT ledgerlock._audit_key_columns(cfg.tbl) AS cols) k
    WHERE cfg.tbl = _ll90_values.tbl
$$;
REVOKE ALL ON FUNCTION ledgerlock._ll90_values(regclass) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._ll90_values(regclass) TO ledgerlock_admin, ledgerlock_auditor;

-- A table's own capture, from the body of audit_capture() (src) and the table's values (vals:
-- ledgerlock._ll90_values): the argument declarations (between the <ll90 arguments> marks) taken out, and
-- every ll90_ name replaced by its value. The one capture query stays in one place, and the package's drift
-- check still reads it there; the manager also derives each table's copy from its own package's text with
-- this function, and compares (manager/doctor.py). One pass: the body is cut at its ll90_ names and put
-- together again with their values, so a value written in (a column may be named ll90_tbl) is never read as
-- a name to replace.
CREATE OR REPLACE FUNCTION ledgerlock._ll90_derive(src text, vals jsonb)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on  -- its literals hold backslashes
AS $$
DECLARE
    body text := pg_catalog.regexp_replace(src, '\n[^\n]*<ll90 arguments>.*</ll90 arguments>[^\n]*', '');
    name_re constant text := '\mll90_\w+\M';
    parts text[] := pg_catalog.regexp_split_to_array(body, name_re);
    names text[] := ARRAY(SELECT m.found[1]
                          FROM pg_catalog.regexp_matches(body, '(' || name_re || ')', 'g')
                               WITH ORDINALITY AS m(found, i)
                          ORDER BY m.i);
    made text := parts[1];
BEGIN
    FOR i IN 1 .. pg_catalog.cardinality(names) LOOP
        IF NOT vals ? names[i] THEN
            RAISE EXCEPTION 'a table''s audit capture cannot be made: % of audit_capture() has no value', names[i];
        END IF;
        made := made || (vals ->> names[i]) || parts[i + 1];
    END LOOP;
    IF EXISTS (SELECT FROM pg_catalog.unnest(parts) AS p(part) WHERE p.part ~ 'll90_') THEN
        RAISE EXCEPTION 'a table''s audit capture cannot be made: audit_capture() holds an ll90_ name that is '
                        'not a whole word';
    END IF;
    RETURN made;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._ll90_derive(text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._ll90_derive(text, jsonb) TO ledgerlock_admin, ledgerlock_auditor;

-- The body of a protected table's own capture function: derived (ledgerlock._ll90_derive) from
-- ledgerlock.audit_capture() as installed. Refused while that function differs from what ledgerlock
-- installed: a capture redefined by hand is not copied onto every table.
CREATE OR REPLACE FUNCTION ledgerlock._ll90_capture_body(tbl regclass)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    body text;
BEGIN
    SELECT p.prosrc INTO body FROM pg_catalog.pg_proc p
    JOIN ledgerlock.code_fingerprint f ON f.fn = p.oid::regprocedure::text AND f.origin = 'shipped'
    WHERE p.oid = 'ledgerlock.audit_capture()'::regprocedure
      AND (f.body_md5, f.security_definer, f.config)
          IS NOT DISTINCT FROM (pg_catalog.md5(p.prosrc), p.prosecdef, p.proconfig);
    IF body IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '55000',
            MESSAGE = pg_catalog.format('the audit capture of %s cannot be made: ledgerlock.audit_capture() '
                                        'differs from the function ledgerlock installed', tbl),
            HINT = 'ledgerlock doctor; then ledgerlock migrate (after DELETE FROM ledgerlock.installed_code)';
    END IF;
    RETURN ledgerlock._ll90_derive(body, ledgerlock._ll90_values(tbl));
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._ll90_capture_body(regclass) FROM PUBLIC;

-- A table that is not partitioned runs a capture function made for it (ledgerlock._ll90_capture_body), created
-- here and fingerprinted with its triggers, so doctor and the seals see it changed by hand. A partition tree
-- runs the shared ledgerlock.audit_capture(), with the table's values as trigger arguments: statement
-- triggers are not passed on to partitions, and a statement that names a partition fires that partition's
-- statement triggers only, so every partition (at every level) gets its own capture triggers, recording the
-- protected table (its oid is the second argument). New partitions get them from the DDL guard (which runs
-- every installer when a partition is created or attached) or from reinstall_guards().
-- A relation that had no capture triggers yet (the table is being protected, or a partition joins it)
-- gets a baseline of the rows it already holds, so that verification accounts for every row; a
-- reinstall over existing triggers records nothing (it must not absorb a change made behind the trail).
CREATE OR REPLACE FUNCTION ledgerlock._install_90_audit(tbl regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cfg ledgerlock.protected_table := ledgerlock._config(tbl);
    own boolean := pg_catalog.pg_partition_root(cfg.tbl) IS NULL;  -- not partitioned
    gen name := ledgerlock._generated_name(cfg.tbl, 'll90', 'capture');
    capture text;
    rels regclass[] := ARRAY(SELECT p.relid FROM pg_catalog.pg_partition_tree(cfg.tbl) p
                             UNION ALL SELECT cfg.tbl WHERE own);
    new_rels regclass[];
    rel regclass;
BEGIN
    new_rels := ARRAY(SELECT r FROM pg_catalog.unnest(rels) AS r
                      WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_trigger t
                                        WHERE t.tgrelid = r AND t.tgname = 'll_90_audit_insert'));
    PERFORM ledgerlock._drop_guard_triggers(cfg.tbl, 'll_90_');
    IF own THEN
        PERFORM ledgerlock._create_generated_function(gen, ledgerlock._ll90_capture_body(cfg.tbl),
            (SELECT p.proconfig FROM pg_catalog.pg_proc p WHERE p.oid = 'ledgerlock.audit_capture()'::regprocedure));
        -- its one argument, unread, records the json columns it was made for (_audit_capture_stale)
        capture := pg_catalog.format('ledgerlock.%I(%L)', gen, ledgerlock._audit_json_columns(cfg.tbl)::text);
    ELSE
        capture := pg_catalog.format('ledgerlock.audit_capture(%s)',
                                     ledgerlock._audit_trigger_args(cfg.tbl, cfg.tbl, cfg.scope_column::text));
    END IF;
    FOREACH rel IN ARRAY rels LOOP
        PERFORM ledgerlock._create_guard_trigger(rel, 'll_90_audit_insert', pg_catalog.format(
            'AFTER INSERT ON %s REFERENCING NEW TABLE AS ll_new FOR EACH STATEMENT EXECUTE FUNCTION %s', rel,
            capture));
        PERFORM ledgerlock._create_guard_trigger(rel, 'll_90_audit_update', pg_catalog.format(
            'AFTER UPDATE ON %s REFERENCING OLD TABLE AS ll_old NEW TABLE AS ll_new FOR EACH STATEMENT '
            'EXECUTE FUNCTION %s', rel, capture));
        PERFORM ledgerlock._create_guard_trigger(rel, 'll_90_audit_delete', pg_catalog.format(
            'AFTER DELETE ON %s REFERENCING OLD TABLE AS ll_old FOR EACH STATEMENT EXECUTE FUNCTION %s', rel,
            capture));
    END LOOP;
    IF cfg.tbl = ANY (new_rels) THEN
        PERFORM ledgerlock._audit_baseline(cfg.tbl, cfg.tbl, true);
    ELSE
        FOREACH rel IN ARRAY new_rels LOOP
            PERFORM ledgerlock._audit_baseline(cfg.tbl, rel, false);
        END LOOP;
    END IF;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._install_90_audit(regclass) FROM PUBLIC;

-- Whether the capture of a protected table was made for other json columns than the table has now (a json
-- column was added, dropped or retyped since): its events would hold such a column as jsonb, which drops a
-- duplicate key unnoticed, and verification, which reads the table's json columns as they are, would take
-- each such row for changed. Read from the capture triggers' arguments: the one argument of a table's own
-- capture, the third of the shared one's. The DDL guard makes the capture again after such an ALTER TABLE;
-- without it, doctor reports it.
CREATE OR REPLACE FUNCTION ledgerlock._audit_capture_stale(tbl regclass)
RETURNS boolean
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (
        SELECT FROM pg_catalog.pg_trigger t
        CROSS JOIN LATERAL (SELECT ledgerlock._trigger_args(t.tgargs) AS args) a
        WHERE t.tgname = 'll_90_audit_insert'
          AND t.tgrelid IN (SELECT p.relid FROM ledgerlock._partition_tree(tbl) p)
          AND a.args[CASE WHEN t.tgnargs = 1 THEN 1 ELSE 3 END]
              IS DISTINCT FROM ledgerlock._audit_json_columns(tbl)::text)
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_capture_stale(regclass) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._audit_capture_stale(regclass) TO ledgerlock_admin, ledgerlock_auditor;

-- Unprotect: the capture triggers go (on every partition too), then the table's own capture function.
CREATE OR REPLACE FUNCTION ledgerlock._uninstall_90_audit(tbl regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ledgerlock._drop_guard_triggers(tbl, 'll_90_');
    PERFORM ledgerlock._drop_generated_functions(ARRAY[ledgerlock._generated_name(tbl, 'll90', 'capture')]);
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._uninstall_90_audit(regclass) FROM PUBLIC;

-- Lock events (R3) become audit events: operation = the kind in capitals (LOCK, ADVANCE, UPGRADE, UNLOCK,
-- RELOCK, OVERRIDE, SKIP, GRANT_SCOPE, REVOKE_SCOPE...), the lock_event row as new_row. A skipped write is
-- filed under the table it was meant for, with the row that was not written, and its lock_event row in the
-- details (so that verification finds every lock_event row in the trail).
CREATE OR REPLACE FUNCTION ledgerlock.audit_capture_lock_event()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
SET extra_float_digits = '1'
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
SET bytea_output = 'hex'
SET lc_monetary = 'C'
SET TimeZone = 'UTC'
AS $$
DECLARE
    ev_at timestamptz := pg_catalog.now();
    ev_txid xid8 := pg_catalog.pg_current_xact_id();
BEGIN
    INSERT INTO ledgerlock.audit_event (seq, at, txid, table_oid, table_name, row_key, scope, operation,
        old_row, new_row, db_user, actor, reason, context, lock_id, override_id, details, event_hash)
    SELECT x.seq, ev_at, ev_txid, x.tbl, x.tbl_name, x.row_key, x.scope, x.operation, NULL, x.r, session_user,
           x.actor, x.reason, x.context, x.lock_id, x.override_id, x.details, NULL  -- hashed by the sealer
    FROM (SELECT pg_catalog.nextval('ledgerlock.audit_event_seq') AS seq,
                 pg_catalog.upper(e.kind) AS operation,
                 CASE WHEN e.kind = 'skip' THEN pg_catalog.to_regclass(e.details ->> 'table')
                      ELSE 'ledgerlock.lock_event'::regclass END AS tbl,
                 CASE WHEN e.kind = 'skip' THEN e.details ->> 'table' ELSE 'ledgerlock.lock_event' END AS tbl_name,
                 CASE WHEN e.kind = 'skip' THEN e.details -> 'key'
                      ELSE pg_catalog.jsonb_build_object('id', e.id) END AS row_key,
                 CASE WHEN e.kind = 'skip' THEN e.details -> 'row' ELSE pg_catalog.to_jsonb(e.*) END AS r,
                 e.scope, e.actor, e.reason, e.context, e.lock_id,
                 (e.details ->> 'override_id')::bigint AS override_id,
                 CASE WHEN e.kind = 'skip' THEN pg_catalog.jsonb_build_object('lock_event', pg_catalog.to_jsonb(e.*))
                 END AS details
          FROM ll_new e ORDER BY e.id OFFSET 0) x;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.audit_capture_lock_event() FROM PUBLIC;

DROP TRIGGER IF EXISTS ll_90_audit_lock_event ON ledgerlock.lock_event;
CREATE TRIGGER ll_90_audit_lock_event AFTER INSERT ON ledgerlock.lock_event
    REFERENCING NEW TABLE AS ll_new FOR EACH STATEMENT EXECUTE FUNCTION ledgerlock.audit_capture_lock_event();
ALTER TABLE ledgerlock.lock_event ENABLE ALWAYS TRIGGER ll_90_audit_lock_event;

-- ledgerlock's own state (the tables ledgerlock._audit_state_tables() lists) is captured like a protected
-- table, so that verification can hold the live locks, spans, grants, settings and registry to the trail.
-- ENABLE ALWAYS, like the other guards of ledgerlock's tables. The migrate that installs them first records
-- a baseline of what the tables hold, and of the protected tables and the lock history (a database that
-- was protected before its trail covered the data); a later migrate records none, which would absorb a
-- change made behind the trail.
DO $state$
DECLARE
    t regclass;
    args text;
    first_install boolean := NOT EXISTS (SELECT FROM pg_catalog.pg_trigger g
                                 WHERE g.tgrelid = 'ledgerlock.close_setting'::regclass
                                   AND g.tgname = 'll_90_audit_insert');
BEGIN
    FOREACH t IN ARRAY ledgerlock._audit_state_tables() LOOP
        args := ledgerlock._audit_trigger_args(t, 0, (SELECT 'scope' FROM pg_catalog.pg_attribute a
                                                      WHERE a.attrelid = t AND a.attname = 'scope'
                                                        AND NOT a.attisdropped));
        EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS ll_90_audit_insert ON %s', t);
        EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS ll_90_audit_update ON %s', t);
        EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS ll_90_audit_delete ON %s', t);
        EXECUTE pg_catalog.format('CREATE TRIGGER ll_90_audit_insert AFTER INSERT ON %s REFERENCING NEW TABLE AS '
                                  'll_new FOR EACH STATEMENT EXECUTE FUNCTION ledgerlock.audit_capture(%s)', t, args);
        EXECUTE pg_catalog.format('CREATE TRIGGER ll_90_audit_update AFTER UPDATE ON %s REFERENCING OLD TABLE AS '
                                  'll_old NEW TABLE AS ll_new FOR EACH STATEMENT '
                                  'EXECUTE FUNCTION ledgerlock.audit_capture(%s)', t, args);
        EXECUTE pg_catalog.format('CREATE TRIGGER ll_90_audit_delete AFTER DELETE ON %s REFERENCING OLD TABLE AS '
                                  'll_old FOR EACH STATEMENT EXECUTE FUNCTION ledgerlock.audit_capture(%s)', t, args);
        EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ALWAYS TRIGGER ll_90_audit_insert', t);
        EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ALWAYS TRIGGER ll_90_audit_update', t);
        EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ALWAYS TRIGGER ll_90_audit_delete', t);
    END LOOP;
    IF first_install THEN
        FOR t IN SELECT u.t FROM pg_catalog.unnest(ledgerlock._audit_state_tables()
                                                   || 'ledgerlock.lock_event'::regclass
                                                   || ARRAY(SELECT p.tbl FROM ledgerlock.protected_table p))
                     AS u(t) LOOP
            PERFORM ledgerlock._audit_baseline(t, t, true);
        END LOOP;
    END IF;
END
$state$;
