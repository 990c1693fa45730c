-- Rule R5: the audit trail - event hashes, recording events, sealing the chain, digests (verification: r5_verify.sql).
--
-- Evidence model (docs/audit.md):
-- * writers store events unhashed (a hash computed at write time adds nothing an attacker cannot recompute
--   before the seal); events written by older releases keep the hash they were written with;
-- * a sealer hashes committed events and links them into one chain, in seal order: only events of
--   transactions visible to its snapshot, in seq order, appended after the current head, closed by a SEAL
--   event (its time, the earliest start a later event may have, the code in force). Sealers serialize on a table lock
--   of ledgerlock.audit_chain (no client can take it); writers never wait for them;
-- * audit_digest() seals and returns the head ("ll1:<chain_seq>:<chain_hash>"), to be kept outside the
--   database; verify_audit() recomputes every event hash and every link, and proves a digest.

-- How an event time is hashed and exported: UTC, microseconds, whatever the session's settings.
-- The hashing functions have no SET clause on purpose: PostgreSQL inlines them into the set-based
-- capture and verification queries (a SET clause forbids inlining and costs a call per event). They
-- are independent of TimeZone/DateStyle/IntervalStyle/extra_float_digits by construction (their inputs
-- are text, jsonb, integers, and a timestamptz formatted in UTC); every name is schema-qualified; and
-- only ledgerlock's own pinned functions execute them (no EXECUTE for PUBLIC).
CREATE OR REPLACE FUNCTION ledgerlock._audit_time(at timestamptz)
RETURNS text
LANGUAGE sql
STABLE PARALLEL SAFE
AS $$
    SELECT pg_catalog.to_char(pg_catalog.timezone('UTC', at), 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_time(timestamptz) FROM PUBLIC;

-- The canonical form of an event is a JSON array of its fields, in this order, as PostgreSQL's
-- json_build_array prints it (jsonb values in jsonb's own text form); its sha256 is the event hash.
-- manager/audit_bundle.py recomputes exactly this, without a database.
CREATE OR REPLACE FUNCTION ledgerlock._audit_event_hash(
    seq bigint, at timestamptz, txid xid8, table_name text, row_key jsonb, scope text, operation text,
    old_row jsonb, new_row jsonb, db_user name, actor text, reason text, context text, lock_id bigint,
    override_id bigint, details jsonb)
RETURNS text
LANGUAGE sql
STABLE PARALLEL SAFE
AS $$
    SELECT pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(pg_catalog.json_build_array(
        'll1', seq, ledgerlock._audit_time(at), txid::text, table_name, row_key, scope, operation,
        old_row, new_row, db_user::text, actor, reason, context, lock_id, override_id, details)::text,
        'UTF8')), 'hex')
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_event_hash(bigint, timestamptz, xid8, text, jsonb, text, text, jsonb,
    jsonb, name, text, text, text, bigint, bigint, jsonb) FROM PUBLIC;

-- One chain link: the previous link's hash, this link's position, the sealed event and its seal.
CREATE OR REPLACE FUNCTION ledgerlock._audit_link_hash(prev_hash text, chain_seq bigint, seq bigint,
                                                       event_hash text, batch bigint, txid_floor xid8,
                                                       sealed_below xid8)
RETURNS text
LANGUAGE sql
STABLE PARALLEL SAFE
AS $$
    SELECT pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(pg_catalog.concat_ws('|',
        'll1', prev_hash, chain_seq, seq, event_hash, batch, txid_floor, sealed_below), 'UTF8')), 'hex')
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_link_hash(text, bigint, bigint, text, bigint, xid8, xid8) FROM PUBLIC;

-- The hash before the first link.
CREATE OR REPLACE FUNCTION ledgerlock._audit_genesis()
RETURNS text
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
AS $$ SELECT pg_catalog.repeat('0', 64) $$;
REVOKE ALL ON FUNCTION ledgerlock._audit_genesis() FROM PUBLIC;

-- Record an event that is not a row write of a protected table: protect/unprotect, lock events,
-- number-format changes, skipped writes, unlock requests. Called by ledgerlock's own (definer)
-- functions only; db_user is always session_user, so an event cannot claim another user.
-- details: 'reason', 'actor', 'context', 'lock_id', 'override_id' fill those fields (else the session's
-- ledgerlock.* settings and the open override); any other key is kept in the event's details.
CREATE OR REPLACE FUNCTION ledgerlock._audit_event(operation text, tbl regclass, row_key jsonb, scope text,
                                                   old_row jsonb, new_row jsonb, details jsonb)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
SET IntervalStyle = 'iso_8601'
SET extra_float_digits = '1'
AS $$
DECLARE
    d jsonb := coalesce(details, '{}');
    e ledgerlock.audit_event;
BEGIN
    IF operation IS NULL OR pg_catalog.btrim(operation) = '' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'an audit event needs an operation';
    END IF;
    e.seq := pg_catalog.nextval('ledgerlock.audit_event_seq');
    e.at := pg_catalog.now();
    e.txid := pg_catalog.pg_current_xact_id();
    e.table_oid := tbl;
    e.table_name := coalesce(d ->> 'table_name', tbl::text);  -- a dropped table's: the name its events knew
    e.row_key := row_key;
    e.scope := scope;
    e.operation := pg_catalog.upper(operation);
    e.old_row := old_row;
    e.new_row := new_row;
    e.db_user := session_user;
    e.actor := coalesce(d ->> 'actor', nullif(pg_catalog.current_setting('ledgerlock.actor', true), ''));
    e.reason := coalesce(d ->> 'reason',
                         nullif(pg_catalog.current_setting('ledgerlock.reason', true), ''));
    e.context := coalesce(d ->> 'context',
                          nullif(pg_catalog.current_setting('ledgerlock.context', true), ''));
    e.lock_id := (d ->> 'lock_id')::bigint;
    e.override_id := coalesce((d ->> 'override_id')::bigint, ledgerlock.current_override());
    e.details := nullif(d - '{reason,actor,context,lock_id,override_id,table_name}'::text[], '{}'::jsonb);
    -- e.event_hash stays null: the sealer hashes the event when it links it
    INSERT INTO ledgerlock.audit_event SELECT e.*;
    RETURN e.seq;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_event(text, regclass, jsonb, text, jsonb, jsonb, jsonb) FROM PUBLIC;

-- The digest of the chain head: "ll1:<chain_seq>:<chain_hash>" ("ll1:0:000..." for an empty chain).
CREATE OR REPLACE FUNCTION ledgerlock._audit_head()
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(
        (SELECT pg_catalog.format('ll1:%s:%s', c.chain_seq, c.chain_hash)
         FROM ledgerlock.audit_chain c ORDER BY c.chain_seq DESC LIMIT 1),
        'll1:0:' || ledgerlock._audit_genesis())
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_head() FROM PUBLIC;

-- The earliest start a transaction whose events the next seals may contain can have: every transaction
-- still open now, or started from now on (a transaction's events carry its start, now()). Read before the
-- sealer's snapshot, so a transaction that snapshot cannot see is either open now or starts later. Null when
-- the owner cannot see every backend's transaction start (no pg_read_all_stats) or a prepared transaction
-- (whose start is not listed) exists: then the next seals carry no lower bound. The margin of one second
-- covers a transaction that has started but not yet published its start.
CREATE OR REPLACE FUNCTION ledgerlock._audit_open_since()
RETURNS timestamptz
LANGUAGE sql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN pg_catalog.pg_has_role(current_user, 'pg_read_all_stats', 'USAGE')
                     AND NOT EXISTS (SELECT FROM pg_catalog.pg_prepared_xacts x
                                     WHERE x.database = pg_catalog.current_database())
                THEN LEAST(pg_catalog.clock_timestamp(),
                           (SELECT pg_catalog.min(a.xact_start) FROM pg_catalog.pg_stat_activity a
                            WHERE a.datname = pg_catalog.current_database()))
                     - interval '1 second'
           END
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_open_since() FROM PUBLIC;

-- The code in force, as a seal records it: a digest of every function of schema ledgerlock (body,
-- SECURITY DEFINER, pinned settings: what the code fingerprints hold), the newest transaction that wrote
-- a shipped one (a function replaced and then restored between two seals leaves a newer one, though its
-- body is back), where the code lives (database and schema oids: a restore writes every function anew),
-- and the code release installed (a migrate legitimately rewrites the functions). The caller has a
-- transaction id: row writers' ids are read relative to it.
CREATE OR REPLACE FUNCTION ledgerlock._audit_code_state()
RETURNS jsonb
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.jsonb_build_object(
        'code_digest', pg_catalog.md5(pg_catalog.string_agg(pg_catalog.concat_ws(':', p.oid::regprocedure::text,
                           pg_catalog.md5(p.prosrc), p.prosecdef, p.proconfig::text), ',' ORDER BY p.oid::regprocedure::text)),
        'code_xid', pg_catalog.max(x.full_xid) FILTER (WHERE NOT EXISTS (
                        SELECT FROM ledgerlock._rules() r WHERE pg_catalog.starts_with(p.proname, r.generated_prefix))),
        'code_home', pg_catalog.concat_ws('/', (SELECT d.oid FROM pg_catalog.pg_database d
                                               WHERE d.datname = pg_catalog.current_database()),
                                          'ledgerlock'::regnamespace::oid),
        'installed', (SELECT i.digest || '@' || ledgerlock._audit_time(i.applied_at) FROM ledgerlock.installed_code i
                      ORDER BY i.applied_at DESC LIMIT 1))
    FROM pg_catalog.pg_proc p
    -- the 64-bit id of the row's writer, from its 32-bit xmin and ours (a frozen row, xmin 2, counts as none)
    CROSS JOIN LATERAL (SELECT pg_catalog.pg_current_xact_id()::text::bigint AS me, p.xmin::text::bigint AS xmin) i
    CROSS JOIN LATERAL (SELECT CASE WHEN i.xmin > 2
                                    THEN i.me - ((i.me % 4294967296) - i.xmin + 4294967296) % 4294967296
                               END AS full_xid) x
    WHERE p.pronamespace = 'ledgerlock'::regnamespace
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_code_state() FROM PUBLIC;

-- Seal: hash every committed, unsealed event and append it to the chain, in seq order, after the current
-- head; then a SEAL event closes the seal (its last link): when it was closed, the earliest start an event
-- sealed later may have, and the code in force (ledgerlock._audit_code_state). Returns the number of events
-- sealed (the SEAL event aside). Sealers serialize on a lock of ledgerlock.audit_chain (clients cannot take
-- it); writers never wait. Run it every second (`ledgerlock audit seal --every 1`); audit_digest and
-- verify_audit call it. An event written before hashing moved here keeps the hash it was written with.
CREATE OR REPLACE FUNCTION ledgerlock.audit_seal()
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
AS $$
DECLARE
    snap pg_catalog.pg_snapshot;
    closed_at timestamptz;
    open_since timestamptz;
    below xid8;
    floor_txid xid8;
    mine xid8 := pg_catalog.pg_current_xact_id_if_assigned();
    head_seq bigint;
    h text;
    n bigint;
    batch_start bigint;
    ev record;
    seal ledgerlock.audit_event;
    seqs bigint[] := '{}';
    ev_hashes text[] := '{}';
    links text[] := '{}';
    head_event bigint;
    was_open xid8[];
    was_next xid8;
    todo bigint[];
BEGIN
    IF NOT (ledgerlock.has_capability('auditor') OR ledgerlock.has_capability('controller')) THEN
        PERFORM ledgerlock._require_capability('auditor', 'audit_seal');
    END IF;
    IF ledgerlock._is_subscriber() THEN
        RETURN 0;  -- a subscriber's chain is the publisher's, replicated link by link
    END IF;
    IF pg_catalog.current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION USING ERRCODE = '25001',
            MESSAGE = 'sealing the audit chain needs a READ COMMITTED transaction',
            HINT = 'call audit_seal() or audit_digest() outside REPEATABLE READ / SERIALIZABLE transactions';
    END IF;
    -- one sealer at a time; a gate no client can name (migration 0035), because any client could take an
    -- advisory key, or hold a lock on audit_chain through PREPARE, and stall sealing
    LOCK TABLE ledgerlock_gate.sealer IN SHARE ROW EXCLUSIVE MODE;
    -- Read before the snapshot (a fresh read of the activity, not one cached earlier in this transaction).
    PERFORM pg_catalog.pg_stat_clear_snapshot();
    open_since := ledgerlock._audit_open_since();
    -- Taken after the lock: this sealer sees the head its predecessor committed, and seals exactly the
    -- events of transactions that had committed when this snapshot was taken.
    snap := pg_catalog.pg_current_snapshot();
    below := pg_catalog.pg_snapshot_xmin(snap);

    SELECT c.chain_seq, c.chain_hash, c.sealed_below, c.seq INTO head_seq, h, floor_txid, head_event
    FROM ledgerlock.audit_chain c ORDER BY c.chain_seq DESC LIMIT 1;
    -- what the last seal could not seal yet: the events of transactions that had no id yet at its snapshot,
    -- and of those still open then (its own event's next_txid and open_txids); null when it did not record them
    -- (a release before 2026-11-30, or no seal yet)
    SELECT (e.details ->> 'next_txid')::xid8,
           ARRAY(SELECT pg_catalog.jsonb_array_elements_text(e.details -> 'open_txids')::xid8)
    INTO was_next, was_open
    FROM ledgerlock.audit_event e
    WHERE e.seq = head_event AND e.operation = 'SEAL' AND e.details ? 'open_txids' AND e.details ? 'next_txid';
    head_seq := coalesce(head_seq, 0);
    h := coalesce(h, ledgerlock._audit_genesis());
    floor_txid := coalesce(floor_txid, '0'::xid8);
    IF below < floor_txid THEN
        -- this cluster's transaction ids are below the last seal's: the chain was sealed in another cluster
        -- (a dump restored here); this seal starts the new id space, ids of the two are never compared
        floor_txid := '0'::xid8;
        was_open := NULL;
    ELSIF below < was_next AND NOT below = ANY (was_open) THEN
        was_open := NULL;  -- likewise: in one cluster, a transaction running now began after that seal or was open
    END IF;
    n := head_seq;
    batch_start := head_seq + 1;

    -- The events to seal are among those of the transactions that had no id yet at the last seal's snapshot
    -- and of those open then (its own included): any other transaction had ended, committed (sealed then) or
    -- rolled back. Both read by the index on txid. Without them, every event since the oldest transaction then
    -- open is read and compared with the chain: an application's transaction that wrote a row and stayed open (a
    -- batch job, a session left idle in transaction) made each seal re-read every event since, 85 ms a seal after
    -- 200,000 events on PostgreSQL 16, growing with the open hours.
    IF was_open IS NULL THEN
        todo := ARRAY(SELECT e.seq FROM ledgerlock.audit_event e
                      WHERE e.txid >= floor_txid AND NOT EXISTS (SELECT FROM ledgerlock.audit_chain c
                                                                 WHERE c.seq = e.seq));
    ELSE
        todo := ARRAY(SELECT e.seq FROM ledgerlock.audit_event e WHERE e.txid >= was_next
                      UNION ALL
                      SELECT e.seq FROM ledgerlock.audit_event e WHERE e.txid = ANY (was_open) AND e.txid < was_next);
    END IF;
    FOR ev IN
        SELECT e.seq, coalesce(e.event_hash, ledgerlock._audit_event_hash(e.seq, e.at, e.txid, e.table_name,
                   e.row_key, e.scope, e.operation, e.old_row, e.new_row, e.db_user, e.actor, e.reason, e.context,
                   e.lock_id, e.override_id, e.details)) AS event_hash
        FROM ledgerlock.audit_event e
        WHERE e.seq = ANY (todo)
          AND e.txid >= floor_txid  -- a transaction that ended before the last seal's snapshot, which sealed it
          -- committed before the snapshot; or an id this cluster has not reached: an event restored from
          -- another cluster (its row is visible, so it committed)
          AND (pg_catalog.pg_visible_in_snapshot(e.txid, snap) OR e.txid >= pg_catalog.pg_snapshot_xmax(snap))
          AND e.txid IS DISTINCT FROM mine
          AND NOT EXISTS (SELECT FROM ledgerlock.audit_chain c WHERE c.seq = e.seq)
        ORDER BY e.seq
    LOOP
        n := n + 1;
        h := ledgerlock._audit_link_hash(h, n, ev.seq, ev.event_hash, batch_start, floor_txid, below);
        seqs := seqs || ev.seq;
        ev_hashes := ev_hashes || ev.event_hash;
        links := links || h;
    END LOOP;
    -- every event sealed here committed before the query above read it: none can be dated later than this
    closed_at := pg_catalog.clock_timestamp();
    IF n = head_seq THEN
        RETURN 0;
    END IF;

    -- the seal's own event, written and linked by this transaction (its id is above this seal's snapshot)
    seal.seq := pg_catalog.nextval('ledgerlock.audit_event_seq');
    seal.at := pg_catalog.now();
    seal.txid := pg_catalog.pg_current_xact_id();
    seal.operation := 'SEAL';
    seal.db_user := session_user;
    seal.details := ledgerlock._audit_code_state() || pg_catalog.jsonb_build_object(
        'batch', batch_start, 'events', n - head_seq, 'closed_at', ledgerlock._audit_time(closed_at),
        'open_since', ledgerlock._audit_time(open_since),
        -- where the next seal looks for the events this one could not seal yet: those of transactions that had no
        -- id at its snapshot (next_txid and after), of those open then, and of its own
        'next_txid', pg_catalog.pg_snapshot_xmax(snap)::text,
        'open_txids', ARRAY(SELECT x::text FROM pg_catalog.pg_snapshot_xip(snap) AS x
                            UNION SELECT mine::text WHERE mine IS NOT NULL ORDER BY 1));
    INSERT INTO ledgerlock.audit_event SELECT seal.*;
    n := n + 1;
    seqs := seqs || seal.seq;
    ev_hashes := ev_hashes || ledgerlock._audit_event_hash(seal.seq, seal.at, seal.txid, NULL, NULL, NULL,
        seal.operation, NULL, NULL, seal.db_user, NULL, NULL, NULL, NULL, NULL, seal.details);
    h := ledgerlock._audit_link_hash(h, n, seal.seq, ev_hashes[pg_catalog.cardinality(ev_hashes)], batch_start,
                                     floor_txid, below);
    links := links || h;

    INSERT INTO ledgerlock.audit_chain (chain_seq, seq, event_hash, batch, txid_floor, sealed_below, chain_hash)
    SELECT head_seq + u.ord, u.seq, u.event_hash, batch_start, floor_txid, below, u.link
    FROM ROWS FROM (pg_catalog.unnest(seqs), pg_catalog.unnest(ev_hashes), pg_catalog.unnest(links))
         WITH ORDINALITY AS u(seq, event_hash, link, ord);
    RETURN n - head_seq - 1;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.audit_seal() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.audit_seal() TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

-- The chain head to keep outside the database. For members of a ledgerlock role it seals first, so it
-- covers every event committed before the call. Anyone else gets the head as last sealed (an
-- application must not be able to hold the sealer's lock in an idle transaction).
CREATE OR REPLACE FUNCTION ledgerlock.audit_digest()
RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
AS $$
BEGIN
    IF ledgerlock.has_capability('auditor') OR ledgerlock.has_capability('controller') THEN
        PERFORM ledgerlock.audit_seal();
    END IF;
    RETURN ledgerlock._audit_head();
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.audit_digest() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.audit_digest() TO PUBLIC;

-- disable them, which is why digests are kept outside the database.
CREATE OR REPLACE FUNCTION ledgerlock.guard_audit_append_only()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ledgerlock._refuse('LL006',
        pg_catalog.format('%s of %s is refused: the audit trail is append-only', TG_OP, TG_RELID::regclass),
        'a wrong event is corrected by a new change, which is audited in turn; nothing is ever rewritten');
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.guard_audit_append_only() FROM PUBLIC;

DO $guards$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['ledgerlock.audit_event', 'ledgerlock.audit_chain'] LOOP
        EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS ll_90_append_only ON %s', t);
        EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS ll_90_no_truncate ON %s', t);
        EXECUTE pg_catalog.format('CREATE TRIGGER ll_90_append_only BEFORE UPDATE OR DELETE ON %s '
                                  'FOR EACH ROW EXECUTE FUNCTION ledgerlock.guard_audit_append_only()', t);
        EXECUTE pg_catalog.format('CREATE TRIGGER ll_90_no_truncate BEFORE TRUNCATE ON %s '
                                  'FOR EACH STATEMENT EXECUTE FUNCTION ledgerlock.guard_audit_append_only()', t);
        EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ALWAYS TRIGGER ll_90_append_only', t);
        EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ALWAYS TRIGGER ll_90_no_truncate', t);
    END LOOP;
END
$guards$;

-- The events of one scope and period exactly as they are hashed (jsonb as text, times in UTC, the table
-- name as recorded), with their chain links: what an auditor's bundle carries. Runs with the caller's
-- rights, so row-level security decides which events the caller may export.
CREATE OR REPLACE FUNCTION ledgerlock.audit_export(scope text, from_date date, to_date date)
RETURNS TABLE(seq bigint, at text, txid text, table_name text, row_key text, scope text, operation text,
              old_row text, new_row text, db_user text, actor text, reason text, context text, lock_id bigint,
              override_id bigint, details text, event_hash text, chain_seq bigint, chain_hash text)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT e.seq, ledgerlock._audit_time(e.at), e.txid::text, e.table_name, e.row_key::text, e.scope,
           e.operation, e.old_row::text, e.new_row::text, e.db_user::text, e.actor, e.reason, e.context,
           e.lock_id, e.override_id, e.details::text, coalesce(e.event_hash, c.event_hash), c.chain_seq,
           c.chain_hash
    FROM ledgerlock.audit_event e
    LEFT JOIN ledgerlock.audit_chain c ON c.seq = e.seq
    WHERE e.scope = audit_export.scope
      AND e.at >= from_date::timestamp AT TIME ZONE 'UTC'
      AND e.at < (to_date + 1)::timestamp AT TIME ZONE 'UTC'
    ORDER BY c.chain_seq NULLS LAST, e.seq
$$;
REVOKE ALL ON FUNCTION ledgerlock.audit_export(text, date, date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.audit_export(text, date, date)
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;
GRANT EXECUTE ON FUNCTION ledgerlock._audit_time(timestamptz) TO ledgerlock_admin, ledgerlock_controller,
    ledgerlock_auditor;
