-- Rule R5: the audit trail — event hashes, recording events, sealing the chain, digests, verification.
--
-- Evidence model (docs/audit.md):
-- * every event gets its own sha256 when it is written (the writer knows nothing about other writers);
-- * a sealer links committed events into one chain, in seal order: only events of transactions visible
--   to its snapshot, in seq order, appended after the current head. Sealers serialize on a table lock
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
    e.table_name := tbl::text;
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
    e.details := nullif(d - '{reason,actor,context,lock_id,override_id}'::text[], '{}'::jsonb);
    e.event_hash := ledgerlock._audit_event_hash(e.seq, e.at, e.txid, e.table_name, e.row_key, e.scope,
        e.operation, e.old_row, e.new_row, e.db_user, e.actor, e.reason, e.context, e.lock_id, e.override_id,
        e.details);
    INSERT INTO ledgerlock.audit_event SELECT e.*;
    RETURN e.seq;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_event(text, regclass, jsonb, text, jsonb, jsonb, jsonb) FROM PUBLIC;

-- The digest of the chain head: "ll1:<chain_seq>:<chain_hash>" ("ll1:0:000…" for an empty chain).
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

-- Seal: append every committed, unsealed event to the chain, in seq order, after the current head.
-- Returns the number of events sealed. Sealers serialize on a lock of ledgerlock.audit_chain (clients cannot take it); writers never wait.
-- Run it every second or so (`ledgerlock audit seal --every 1s`); audit_digest and verify_audit call it.
CREATE OR REPLACE FUNCTION ledgerlock.audit_seal()
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    snap pg_catalog.pg_snapshot;
    below xid8;
    floor_txid xid8;
    mine xid8 := pg_catalog.pg_current_xact_id_if_assigned();
    head_seq bigint;
    h text;
    n bigint;
    batch_start bigint;
    ev record;
    seqs bigint[] := '{}';
    ev_hashes text[] := '{}';
    links text[] := '{}';
BEGIN
    IF NOT (ledgerlock.has_capability('auditor') OR ledgerlock.has_capability('controller')) THEN
        PERFORM ledgerlock._require_capability('auditor', 'audit_seal');
    END IF;
    IF pg_catalog.current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION USING ERRCODE = '25001',
            MESSAGE = 'sealing the audit chain needs a READ COMMITTED transaction',
            HINT = 'call audit_seal() or audit_digest() outside REPEATABLE READ / SERIALIZABLE transactions';
    END IF;
    -- one sealer at a time; a table lock, because any client could take an advisory key and stall sealing
    LOCK TABLE ledgerlock.audit_chain IN SHARE ROW EXCLUSIVE MODE;
    -- Taken after the lock: this sealer sees the head its predecessor committed, and seals exactly the
    -- events of transactions that had committed when this snapshot was taken.
    snap := pg_catalog.pg_current_snapshot();
    below := pg_catalog.pg_snapshot_xmin(snap);

    SELECT c.chain_seq, c.chain_hash, c.sealed_below INTO head_seq, h, floor_txid
    FROM ledgerlock.audit_chain c ORDER BY c.chain_seq DESC LIMIT 1;
    head_seq := coalesce(head_seq, 0);
    h := coalesce(h, ledgerlock._audit_genesis());
    floor_txid := coalesce(floor_txid, '0'::xid8);
    n := head_seq;
    batch_start := head_seq + 1;

    FOR ev IN
        SELECT e.seq, e.event_hash FROM ledgerlock.audit_event e
        WHERE e.txid >= floor_txid
          AND pg_catalog.pg_visible_in_snapshot(e.txid, snap)
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

    IF n > head_seq THEN
        INSERT INTO ledgerlock.audit_chain (chain_seq, seq, event_hash, batch, txid_floor, sealed_below, chain_hash)
        SELECT head_seq + u.ord, u.seq, u.event_hash, batch_start, floor_txid, below, u.link
        FROM ROWS FROM (pg_catalog.unnest(seqs), pg_catalog.unnest(ev_hashes), pg_catalog.unnest(links))
             WITH ORDINALITY AS u(seq, event_hash, link, ord);
    END IF;
    RETURN n - head_seq;
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

-- Every problem among chain links lo..hi and the events they seal, one row per problem (k = 1: the link,
-- k = 2: its event): the link does not follow from the previous one (or a link is missing), the event is
-- gone, its content no longer matches its hash, its hash differs from the one sealed, or it was sealed
-- later than its transaction allows (inserted behind the sealer's back).
-- Each link is paired with the previous link and with its event by joins restricted to the chunk's ranges
-- (no window: a window needs the links in order in one process). The per-link work — both hashes — is
-- done inside the OFFSET 0 subquery, so that a parallel plan computes it in the workers and the leader only
-- sees the (rare) problems; the message of a missing link, which looks for the link before the gap, is
-- built above it. No SET clause on purpose, like the hashing functions: a SET clause forbids inlining, and
-- only inlined into verify_audit's query can the scan run in parallel. Every name is schema-qualified;
-- only verify_audit (pinned search_path) executes it.
CREATE OR REPLACE FUNCTION ledgerlock._audit_link_problems(lo bigint, hi bigint, seq_lo bigint, seq_hi bigint)
RETURNS TABLE(seq bigint, chain_seq bigint, k integer, problem text)
LANGUAGE sql
STABLE PARALLEL SAFE
AS $$
    SELECT l.seq, l.chain_seq, v.k, v.problem
    FROM (SELECT c.seq, c.chain_seq,
                 c.chain_seq > 1 AND p.chain_seq IS NULL AS gap,
                 CASE
                     WHEN c.chain_seq > 1 AND p.chain_seq IS NULL THEN NULL  -- reported as a gap, above
                     WHEN c.chain_hash IS DISTINCT FROM ledgerlock._audit_link_hash(
                             CASE WHEN c.chain_seq = 1 THEN ledgerlock._audit_genesis() ELSE p.chain_hash END,
                             c.chain_seq, c.seq, c.event_hash, c.batch, c.txid_floor, c.sealed_below) THEN
                         pg_catalog.format('chain link %s (event seq %s) is broken: it does not follow from link %s',
                                           c.chain_seq, c.seq, c.chain_seq - 1)
                     WHEN c.batch <> c.chain_seq AND (c.batch IS DISTINCT FROM p.batch
                                                      OR c.txid_floor IS DISTINCT FROM p.txid_floor
                                                      OR c.sealed_below IS DISTINCT FROM p.sealed_below) THEN
                         pg_catalog.format('chain link %s (event seq %s) does not belong to the seal it claims',
                                           c.chain_seq, c.seq)
                     WHEN c.batch = c.chain_seq AND c.txid_floor IS DISTINCT FROM coalesce(p.sealed_below, '0'::xid8)
                     THEN
                         pg_catalog.format('chain link %s (event seq %s) starts a seal that does not follow the '
                                           'previous one', c.chain_seq, c.seq)
                 END AS link_problem,
                 CASE
                     WHEN e.seq IS NULL THEN
                         pg_catalog.format('event seq %s (chain link %s) is missing: it was deleted', c.seq, c.chain_seq)
                     WHEN e.event_hash IS DISTINCT FROM ledgerlock._audit_event_hash(e.seq, e.at, e.txid, e.table_name,
                             e.row_key, e.scope, e.operation, e.old_row, e.new_row, e.db_user, e.actor, e.reason,
                             e.context, e.lock_id, e.override_id, e.details) THEN
                         pg_catalog.format('event seq %s (chain link %s) was modified: its content does not match '
                                           'its hash', c.seq, c.chain_seq)
                     WHEN e.event_hash IS DISTINCT FROM c.event_hash THEN
                         pg_catalog.format('event seq %s was rewritten: its hash differs from the one sealed in chain '
                                           'link %s', c.seq, c.chain_seq)
                     WHEN e.txid < c.txid_floor THEN
                         pg_catalog.format('event seq %s (chain link %s) was inserted behind the sealer: its '
                                           'transaction %s had ended before the previous seal', c.seq, c.chain_seq,
                                           e.txid)
                 END AS event_problem
          FROM ledgerlock.audit_chain c
          LEFT JOIN ledgerlock.audit_chain p ON p.chain_seq = c.chain_seq - 1 AND p.chain_seq BETWEEN lo - 1 AND hi
          LEFT JOIN ledgerlock.audit_event e ON e.seq = c.seq
               AND e.seq BETWEEN seq_lo AND seq_hi
          WHERE c.chain_seq BETWEEN lo AND hi
          OFFSET 0) l
    CROSS JOIN LATERAL (VALUES
        (1, CASE WHEN l.gap THEN pg_catalog.format(
                 'chain link %s is missing: the chain jumps from link %s to link %s (links were deleted)',
                 l.chain_seq - 1,
                 coalesce((SELECT pg_catalog.max(q.chain_seq) FROM ledgerlock.audit_chain q
                           WHERE q.chain_seq < l.chain_seq), 0),
                 l.chain_seq)
            ELSE l.link_problem END),
        (2, l.event_problem)) AS v(k, problem)
    WHERE (l.gap OR l.link_problem IS NOT NULL OR l.event_problem IS NOT NULL) AND v.problem IS NOT NULL
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_link_problems(bigint, bigint, bigint, bigint) FROM PUBLIC;

-- Problems among events that are not in the chain: a modified unsealed event, or one whose transaction
-- had ended before the last seal (it would have been sealed: it was inserted behind the sealer's back).
-- recent_only: look only at transactions since the last seal (the index on txid); a full look is needed
-- only when the counts say that older unsealed events exist.
CREATE OR REPLACE FUNCTION ledgerlock._audit_unsealed_problems(last_below xid8, recent_only boolean)
RETURNS TABLE(seq bigint, chain_seq bigint, problem text)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT e.seq, NULL::bigint, CASE
        WHEN e.event_hash IS DISTINCT FROM ledgerlock._audit_event_hash(e.seq, e.at, e.txid, e.table_name,
                e.row_key, e.scope, e.operation, e.old_row, e.new_row, e.db_user, e.actor, e.reason, e.context,
                e.lock_id, e.override_id, e.details) THEN
            pg_catalog.format('event seq %s (not sealed yet) was modified: its content does not match its hash', e.seq)
        WHEN e.txid < last_below THEN
            pg_catalog.format('event seq %s was inserted behind the sealer: its transaction %s had ended before '
                              'the last seal, which does not contain it', e.seq, e.txid)
        END
    FROM ledgerlock.audit_event e
    WHERE (NOT recent_only OR e.txid >= last_below)
      AND NOT EXISTS (SELECT FROM ledgerlock.audit_chain c WHERE c.seq = e.seq)
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_unsealed_problems(xid8, boolean) FROM PUBLIC;

-- Verify the whole trail: seal, recompute every event hash and every link, and, given a digest, prove
-- the chain still passes through it. Reports the first broken event (chain order, then unsealed events by
-- seq) and how many problems there are. Large trails report progress as NOTICEs ("ll-progress done total").
CREATE OR REPLACE FUNCTION ledgerlock.verify_audit(digest text DEFAULT NULL)
RETURNS TABLE(ok boolean, events bigint, sealed bigint, unsealed bigint, head text, first_broken_seq bigint,
              first_broken_chain_seq bigint, problem text, problems bigint)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_custom_plan  -- each chunk planned with its own ranges (a generic plan guesses them)
AS $$
DECLARE
    step constant bigint := 250000;
    d_seq bigint;
    d_hash text;
    d_found text;
    max_chain bigint;
    last_below xid8;
    lo bigint := 1;
    missing bigint := 0;
    recent bigint;
    p record;
    c_seq bigint;
    c_chain bigint;
    c_problem text;
    c_n bigint;
    c_missing bigint;
    seq_lo bigint;
    seq_hi bigint;
    n_problems bigint := 0;
BEGIN
    PERFORM ledgerlock._require_capability('auditor', 'verify_audit');
    IF digest IS NOT NULL THEN
        IF digest !~ '^ll1:[0-9]+:[0-9a-f]{64}$' THEN
            RAISE EXCEPTION USING ERRCODE = '22023',
                MESSAGE = pg_catalog.format('%L is not a ledgerlock audit digest', digest),
                HINT = 'a digest looks like ll1:<chain position>:<64 hex digits>, as audit_digest() returns it';
        END IF;
        d_seq := pg_catalog.split_part(digest, ':', 2)::bigint;
        d_hash := pg_catalog.split_part(digest, ':', 3);
    END IF;
    IF pg_catalog.current_setting('transaction_isolation') = 'read committed' THEN
        PERFORM ledgerlock.audit_seal();
    END IF;

    SELECT c.chain_seq, c.sealed_below INTO max_chain, last_below
    FROM ledgerlock.audit_chain c ORDER BY c.chain_seq DESC LIMIT 1;
    max_chain := coalesce(max_chain, 0);
    last_below := coalesce(last_below, '0'::xid8);
    sealed := (SELECT pg_catalog.count(*) FROM ledgerlock.audit_chain);
    events := (SELECT pg_catalog.count(*) FROM ledgerlock.audit_event);

    -- One query per chunk: the first problem in chain order (the link before its event) and the counts.
    -- A SELECT INTO may run in parallel (a FOR loop's cursor may not).
    WHILE lo <= max_chain LOOP
        -- the events the chunk's links seal lie in this seq range (+ 0: read the chunk's links, rather than
        -- walk the seq index from an end); with the values known, the plan probes a hash of the links with
        -- a parallel range scan of the events, which are wide and read once
        SELECT pg_catalog.min(c.seq + 0), pg_catalog.max(c.seq + 0) INTO seq_lo, seq_hi
        FROM ledgerlock.audit_chain c WHERE c.chain_seq BETWEEN lo AND lo + step - 1;
        SELECT x.seq, x.chain_seq, x.problem, pg_catalog.count(*) OVER (),
               pg_catalog.count(*) FILTER (WHERE x.k = 2 AND x.problem LIKE '% is missing: it was deleted') OVER ()
        INTO c_seq, c_chain, c_problem, c_n, c_missing
        FROM ledgerlock._audit_link_problems(lo, lo + step - 1, seq_lo, seq_hi) x
        ORDER BY x.chain_seq, x.k
        LIMIT 1;
        IF FOUND THEN
            IF n_problems = 0 THEN
                first_broken_seq := c_seq; first_broken_chain_seq := c_chain; problem := c_problem;
            END IF;
            n_problems := n_problems + c_n;
            missing := missing + c_missing;
        END IF;
        lo := lo + step;
        IF max_chain > step THEN
            RAISE NOTICE 'll-progress % %', least(lo - 1, max_chain), max_chain;
        END IF;
    END LOOP;

    -- events without a link: those of transactions since the last seal, unless the counts show others
    unsealed := events - (sealed - missing);
    recent := (SELECT pg_catalog.count(*) FROM ledgerlock.audit_event e
               WHERE e.txid >= last_below AND NOT EXISTS (SELECT FROM ledgerlock.audit_chain c WHERE c.seq = e.seq));
    FOR p IN SELECT * FROM ledgerlock._audit_unsealed_problems(last_below, recent = unsealed) x
             WHERE x.problem IS NOT NULL ORDER BY x.seq LOOP
        n_problems := n_problems + 1;
        IF n_problems = 1 THEN
            first_broken_seq := p.seq; first_broken_chain_seq := p.chain_seq; problem := p.problem;
        END IF;
    END LOOP;

    IF digest IS NOT NULL AND d_seq > 0 THEN
        SELECT c.chain_hash INTO d_found FROM ledgerlock.audit_chain c WHERE c.chain_seq = d_seq;
        IF d_found IS DISTINCT FROM d_hash THEN
            n_problems := n_problems + 1;
            IF n_problems = 1 THEN
                SELECT (SELECT c.seq FROM ledgerlock.audit_chain c WHERE c.chain_seq = d_seq), d_seq,
                       CASE WHEN d_found IS NULL THEN pg_catalog.format(
                                'the digest names chain link %s, which no longer exists: the chain was truncated',
                                d_seq)
                            ELSE pg_catalog.format('chain link %s differs from the digest: the chain was '
                                                   'rewritten at or before it', d_seq) END
                INTO first_broken_seq, first_broken_chain_seq, problem;
            END IF;
        END IF;
    ELSIF digest IS NOT NULL AND d_hash <> ledgerlock._audit_genesis() THEN
        n_problems := n_problems + 1;
        IF n_problems = 1 THEN
            first_broken_chain_seq := 0;
            problem := 'the digest names an empty chain, but its hash is not the genesis hash';
        END IF;
    END IF;

    ok := n_problems = 0;
    head := ledgerlock._audit_head();
    problems := n_problems;
    RETURN NEXT;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.verify_audit(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.verify_audit(text) TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

-- Append-only: no UPDATE, DELETE or TRUNCATE of events or links, for anyone, the owner included.
-- ENABLE ALWAYS: session_replication_role = replica does not silence the guards. A superuser can still
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
           e.lock_id, e.override_id, e.details::text, e.event_hash, c.chain_seq, c.chain_hash
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
