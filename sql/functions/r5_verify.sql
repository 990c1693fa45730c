-- Rule R5: verification - the chain and digests (every event hash and link), and the books against the trail
-- (every live row of every protected table and of ledgerlock's own state, lock windows, counters).
-- Recording and sealing the events: r5_audit.sql.

-- Every problem among chain links lo..hi and the events they seal, one row per problem (k = 1: the link,
-- k = 2: its event): the link does not follow from the previous one (or a link is missing), the event is
-- gone, its content no longer matches its hash (the one it was written with, else the one sealed), the
-- hash it was written with differs from the one sealed, it was sealed later than its transaction allows
-- (inserted behind the sealer's back), or it is dated outside what its seal allows: after the seal was
-- closed, or before the earliest start the seal before it left open (back-dated). The genuine seals come
-- as arrays (their batch, closing link, closed_at and the previous seal's open_since, as timestamps and as
-- recorded; from ledgerlock._audit_seals), joined by batch: each event is read once, for its hash and its
-- time.
-- Each link is paired with the previous link and with its event by joins restricted to the chunk's ranges
-- (no window: a window needs the links in order in one process). The layer that keeps only problem links
-- is flattened into the join, so its test of each link and event - both hashes - is the join's filter: a
-- parallel plan runs it in the workers, and only the (rare) problem links reach the leader (OFFSET 0 keeps
-- the naming of problems above). No SET clause on purpose,
-- like the hashing functions: a SET clause forbids inlining, and only inlined into the caller's query can
-- the scan run in parallel. Every name is schema-qualified; only verify_audit (pinned search_path)
-- executes it.
CREATE OR REPLACE FUNCTION ledgerlock._audit_link_problems(lo bigint, hi bigint, seq_lo bigint, seq_hi bigint,
                                                           s_batch bigint[], s_chain bigint[],
                                                           s_closed timestamptz[], s_open timestamptz[],
                                                           s_closed_text text[], s_open_text text[],
                                                           s_prev bigint[])
RETURNS TABLE(seq bigint, chain_seq bigint, k integer, code text, problem text)
LANGUAGE sql
STABLE PARALLEL SAFE
AS $$
    SELECT l.seq, l.chain_seq, v.k, v.code, m.problem
    FROM (SELECT * FROM (
          SELECT c.seq, c.chain_seq, e.txid, e.at, g.closed_text, g.open_text, g.prev,
                 c.chain_seq > 1 AND p.chain_seq IS NULL AS gap,
                 CASE
                     WHEN c.chain_seq > 1 AND p.chain_seq IS NULL THEN NULL  -- reported as a gap, above
                     WHEN c.chain_hash IS DISTINCT FROM ledgerlock._audit_link_hash(
                             CASE WHEN c.chain_seq = 1 THEN ledgerlock._audit_genesis() ELSE p.chain_hash END,
                             c.chain_seq, c.seq, c.event_hash, c.batch, c.txid_floor, c.sealed_below) THEN
                         'link_broken'
                     WHEN c.batch <> c.chain_seq AND (c.batch IS DISTINCT FROM p.batch
                                                      OR c.txid_floor IS DISTINCT FROM p.txid_floor
                                                      OR c.sealed_below IS DISTINCT FROM p.sealed_below) THEN
                         'link_foreign'
                     WHEN c.batch = c.chain_seq AND c.txid_floor IS DISTINCT FROM coalesce(p.sealed_below, '0'::xid8)
                          AND NOT (c.txid_floor = '0'::xid8 AND c.sealed_below < p.sealed_below) THEN
                         'seal_gap'
                 END AS link_code,
                 CASE
                     WHEN e.seq IS NULL THEN 'event_missing'
                     WHEN coalesce(e.event_hash, c.event_hash) IS DISTINCT FROM ledgerlock._audit_event_hash(e.seq,
                             e.at, e.txid, e.table_name, e.row_key, e.scope, e.operation, e.old_row, e.new_row,
                             e.db_user, e.actor, e.reason, e.context, e.lock_id, e.override_id, e.details) THEN
                         'event_modified'
                     WHEN e.event_hash IS NOT NULL AND e.event_hash IS DISTINCT FROM c.event_hash THEN
                         'event_rewritten'
                     WHEN e.txid < c.txid_floor THEN 'event_behind_sealer'
                     WHEN e.at > g.closed_at THEN 'event_after_seal'
                     WHEN e.at < g.open_since THEN 'event_backdated'
                 END AS event_code
          FROM ledgerlock.audit_chain c
          LEFT JOIN ledgerlock.audit_chain p ON p.chain_seq = c.chain_seq - 1 AND p.chain_seq BETWEEN lo - 1 AND hi
          LEFT JOIN ledgerlock.audit_event e ON e.seq = c.seq
               AND e.seq BETWEEN seq_lo AND seq_hi
          LEFT JOIN ROWS FROM (pg_catalog.unnest(s_batch), pg_catalog.unnest(s_chain), pg_catalog.unnest(s_closed),
                               pg_catalog.unnest(s_open), pg_catalog.unnest(s_closed_text),
                               pg_catalog.unnest(s_open_text), pg_catalog.unnest(s_prev))
                    AS g(batch, chain_seq, closed_at, open_since, closed_text, open_text, prev)
               ON g.batch = c.batch AND c.chain_seq < g.chain_seq
          WHERE c.chain_seq BETWEEN lo AND hi) AS x
          WHERE x.gap OR x.link_code IS NOT NULL OR x.event_code IS NOT NULL
          OFFSET 0) l
    CROSS JOIN LATERAL (VALUES
        (1, CASE WHEN l.gap THEN 'link_missing' ELSE l.link_code END),
        (2, l.event_code)) AS v(k, code)
    CROSS JOIN LATERAL (SELECT CASE v.code
        WHEN 'link_missing' THEN pg_catalog.format(
                 'chain link %s is missing: the chain jumps from link %s to link %s (links were deleted)',
                 l.chain_seq - 1,
                 coalesce((SELECT pg_catalog.max(q.chain_seq) FROM ledgerlock.audit_chain q
                           WHERE q.chain_seq < l.chain_seq), 0),
                 l.chain_seq)
        WHEN 'link_broken' THEN pg_catalog.format(
                 'chain link %s (event seq %s) is broken: it does not follow from link %s',
                 l.chain_seq, l.seq, l.chain_seq - 1)
        WHEN 'link_foreign' THEN pg_catalog.format(
                 'chain link %s (event seq %s) does not belong to the seal it claims', l.chain_seq, l.seq)
        WHEN 'seal_gap' THEN pg_catalog.format(
                 'chain link %s (event seq %s) starts a seal that does not follow the previous one',
                 l.chain_seq, l.seq)
        WHEN 'event_missing' THEN pg_catalog.format(
                 'event seq %s (chain link %s) is missing: it was deleted', l.seq, l.chain_seq)
        WHEN 'event_modified' THEN pg_catalog.format(
                 'event seq %s (chain link %s) was modified: its content does not match its hash', l.seq, l.chain_seq)
        WHEN 'event_rewritten' THEN pg_catalog.format(
                 'event seq %s was rewritten: its hash differs from the one sealed in chain link %s',
                 l.seq, l.chain_seq)
        WHEN 'event_behind_sealer' THEN pg_catalog.format(
                 'event seq %s (chain link %s) was inserted behind the sealer: its transaction %s had ended '
                 'before the previous seal', l.seq, l.chain_seq, l.txid)
        WHEN 'event_after_seal' THEN pg_catalog.format(
                 'event seq %s (chain link %s) is dated %s, after the seal that contains it was closed (%s): its '
                 'time was forged', l.seq, l.chain_seq, ledgerlock._audit_time(l.at), l.closed_text)
        WHEN 'event_backdated' THEN pg_catalog.format(
                 'event seq %s (chain link %s) is dated %s, but the seal before it (chain link %s) had seen every '
                 'transaction started before %s: it was back-dated', l.seq, l.chain_seq,
                 ledgerlock._audit_time(l.at), l.prev, l.open_text)
        END AS problem) AS m
    WHERE v.code IS NOT NULL
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_link_problems(bigint, bigint, bigint, bigint, bigint[], bigint[],
                                                      timestamptz[], timestamptz[], text[], text[], bigint[])
    FROM PUBLIC;

-- Problems among events that are not in the chain: a modified unsealed event (one written with its hash:
-- an unhashed event has nothing to differ from until it is sealed), or one whose transaction had ended
-- before the last seal (it would have been sealed: it was inserted behind the sealer's back).
-- recent_only: look only at transactions since the last seal (the index on txid); a full look is needed
-- only when the counts say that older unsealed events exist. same_ids: the last seal's transaction ids
-- are this cluster's (false after a restore into another cluster and before its first seal there), so
-- comparing an event's transaction id with them means something.
-- Planned with the flags known, so that recent_only reads the index on txid.
CREATE OR REPLACE FUNCTION ledgerlock._audit_unsealed_problems(last_below xid8, recent_only boolean, same_ids boolean)
RETURNS TABLE(seq bigint, chain_seq bigint, problem text)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_custom_plan
AS $$
BEGIN
    RETURN QUERY
    SELECT e.seq, NULL::bigint, CASE
        WHEN e.event_hash IS NOT NULL AND e.event_hash IS DISTINCT FROM ledgerlock._audit_event_hash(e.seq, e.at, e.txid, e.table_name,
                e.row_key, e.scope, e.operation, e.old_row, e.new_row, e.db_user, e.actor, e.reason, e.context,
                e.lock_id, e.override_id, e.details) THEN
            pg_catalog.format('event seq %s (not sealed yet) was modified: its content does not match its hash', e.seq)
        WHEN same_ids AND e.txid < last_below THEN
            pg_catalog.format('event seq %s was inserted behind the sealer: its transaction %s had ended before '
                              'the last seal, which does not contain it', e.seq, e.txid)
        END
    FROM ledgerlock.audit_event e
    WHERE (NOT recent_only OR NOT same_ids OR e.txid >= last_below)
      AND NOT EXISTS (SELECT FROM ledgerlock.audit_chain c WHERE c.seq = e.seq);
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_unsealed_problems(xid8, boolean, boolean) FROM PUBLIC;

-- The seals from the one that closed the seal before from_link's batch on, through the SEAL event that closes
-- each (ledgerlock.audit_seal): every link whose event claims to close a seal, whether it does (genuine: the
-- last link of its batch, naming that batch), and for a genuine one the facts its SEAL event records
-- (closed_at), with those of the genuine seal before it (open_since: no transaction started before it was
-- still open then). Each seal is compared with the one before it, so the one before from_link's batch is
-- read too; from a digest only the links after it are. The SEAL events are found by their index
-- (audit_event_seal); their facts are read once per seal, not once per event of the seal.
-- Seals written before SEAL events existed carry none of this: their events are checked by hash only.
CREATE OR REPLACE FUNCTION ledgerlock._audit_seals(from_link bigint)
RETURNS TABLE(chain_seq bigint, batch bigint, seq bigint, d jsonb, genuine boolean, prev jsonb, prev_chain_seq bigint)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_custom_plan  -- planned with the bounds known: from a digest, a few links by index
AS $$
DECLARE
    -- the link that closed the seal before from_link's batch (the link before that batch's first)
    lo bigint := greatest(coalesce((SELECT c.batch - 1 FROM ledgerlock.audit_chain c
                                    WHERE c.chain_seq = greatest(from_link, 1)), from_link), 1);
BEGIN
    RETURN QUERY
    SELECT s.chain_seq, s.batch, s.seq, s.d, s.genuine,
           CASE WHEN s.genuine THEN pg_catalog.lag(s.d) OVER w END,
           CASE WHEN s.genuine THEN pg_catalog.lag(s.chain_seq) OVER w END
    FROM (SELECT c.chain_seq, c.batch, e.seq, e.details AS d,
                 NOT EXISTS (SELECT FROM ledgerlock.audit_chain q WHERE q.chain_seq = c.chain_seq + 1
                                                                    AND q.batch = c.batch)
                 AND (e.details ->> 'batch') = c.batch::text AS genuine
          FROM ledgerlock.audit_chain c
          JOIN ledgerlock.audit_event e ON e.seq = c.seq
          WHERE c.chain_seq >= lo
            AND e.operation = 'SEAL' AND e.table_name IS NULL) s
    WINDOW w AS (PARTITION BY s.genuine ORDER BY s.chain_seq);
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_seals(bigint) FROM PUBLIC;

-- Problems the seals reveal, for the seals closed at or after link from_link (1: every seal):
-- * a SEAL event that does not close its seal: it was forged among the events;
-- * the code in force changing between two seals of one database with no migrate between them: a shipped
--   function rewritten (even if restored since), or the functions differing with no migrate, protect or
--   state change between the two seals to account for it.
-- An event dated outside what its seal allows is found with the chain, as it reads each event anyway
-- (ledgerlock._audit_link_problems).
CREATE OR REPLACE FUNCTION ledgerlock._audit_seal_problems(from_link bigint)
RETURNS TABLE(seq bigint, chain_seq bigint, problem text)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH s AS (SELECT * FROM ledgerlock._audit_seals(from_link))
    SELECT s.seq, s.chain_seq, pg_catalog.format(
               'event seq %s (chain link %s) claims to close a seal but does not: it was forged', s.seq, s.chain_seq)
    FROM s WHERE NOT s.genuine AND s.chain_seq >= from_link
    UNION ALL
    SELECT g.seq, g.chain_seq, CASE
        WHEN (g.d ->> 'code_xid')::bigint > (g.prev ->> 'code_xid')::bigint THEN pg_catalog.format(
            'a shipped ledgerlock function was rewritten between the seals closed by chain links %s and %s, with '
            'no migrate between them: a guard was replaced (and perhaps restored) behind the trail',
            g.prev_chain_seq, g.chain_seq)
        ELSE pg_catalog.format(
            'the ledgerlock functions differ between the seals closed by chain links %s and %s, with no migrate, '
            'protect or state change between them', g.prev_chain_seq, g.chain_seq) END
    FROM s AS g
    WHERE g.genuine AND g.chain_seq >= from_link AND g.prev IS NOT NULL
      AND g.d ->> 'code_home' = g.prev ->> 'code_home'
      AND g.d ->> 'installed' IS NOT DISTINCT FROM g.prev ->> 'installed'
      AND ((g.d ->> 'code_xid')::bigint > (g.prev ->> 'code_xid')::bigint
           OR (g.d ->> 'code_digest' <> g.prev ->> 'code_digest'
               AND NOT EXISTS (SELECT FROM ledgerlock.audit_chain c
                               JOIN ledgerlock.audit_event e ON e.seq = c.seq
                               WHERE c.chain_seq BETWEEN g.prev_chain_seq AND g.chain_seq
                                 AND (e.operation IN ('PROTECT', 'UNPROTECT') OR e.operation LIKE 'STATE%'))))
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_seal_problems(bigint) FROM PUBLIC;

-- Whether transaction ids recorded by a seal with this sealed_below can be compared with this cluster's:
-- a cluster's snapshot xmin never goes backwards, so a current xmin below it means the chain was sealed in
-- another cluster (a dump restored here).
CREATE OR REPLACE FUNCTION ledgerlock._audit_same_xid_space(sealed_below xid8)
RETURNS boolean
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT sealed_below IS NULL OR pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot()) >= sealed_below
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_same_xid_space(xid8) FROM PUBLIC;

-- The chain part of the verification: every link from from_link on and every event it seals, in chunks
-- of `step` links, what the seals from there on reveal, then the unsealed events (from_link > 1: those of
-- transactions since the last seal). Returns the first problem (chain order, then seal problems, then
-- unsealed events by seq), the number of problems, how many events are not sealed, and from_seq: the
-- first event the links before from_link do not fix (sealed from from_link on, or not sealed yet), from
-- which the books' trail checks look. Large trails report progress as NOTICEs ("ll-progress done total").
CREATE OR REPLACE FUNCTION ledgerlock._audit_verify_chain(
    from_link bigint, OUT events bigint, OUT sealed bigint, OUT unsealed bigint, OUT first_seq bigint,
    OUT first_chain_seq bigint, OUT first_problem text, OUT problems bigint, OUT from_seq bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_custom_plan  -- each chunk planned with its own ranges (a generic plan guesses them)
-- the chunk's filter lets only problem links through, which the planner cannot know: priced as if every link
-- crossed from the workers to the leader, a parallel plan loses to a serial one once the joins fit in work_mem
-- (a chunk of 250,000 links then took ~2 s instead of ~1.2 s on 2 cores)
SET parallel_tuple_cost = 0.001
-- a chunk's two hash joins (the links with the links before them, the events with their links) in memory:
-- ~130 MB for 250,000 links, instead of spilling them to temporary files (~4 % of the chain's time)
SET work_mem = '64MB'
AS $$
DECLARE
    step constant bigint := 250000;
    max_chain bigint;
    last_below xid8;
    same_ids boolean;
    lo bigint := greatest(from_link, 1);
    missing bigint := 0;
    recent bigint;
    recent_min bigint;
    p record;
    c_seq bigint;
    c_chain bigint;
    c_problem text;
    c_n bigint;
    c_missing bigint;
    seq_lo bigint;
    seq_hi bigint;
    s_batch bigint[];
    s_chain bigint[];
    s_closed timestamptz[];
    s_open timestamptz[];
    s_closed_text text[];
    s_open_text text[];
    s_prev bigint[];
BEGIN
    problems := 0;
    -- the genuine seals whose links are read, with what their SEAL events allow the events' times to be
    SELECT pg_catalog.array_agg(g.batch), pg_catalog.array_agg(g.chain_seq),
           pg_catalog.array_agg((g.d ->> 'closed_at')::timestamptz),
           pg_catalog.array_agg((g.prev ->> 'open_since')::timestamptz),
           pg_catalog.array_agg(g.d ->> 'closed_at'), pg_catalog.array_agg(g.prev ->> 'open_since'),
           pg_catalog.array_agg(g.prev_chain_seq)
    INTO s_batch, s_chain, s_closed, s_open, s_closed_text, s_open_text, s_prev
    FROM ledgerlock._audit_seals(from_link) g
    WHERE g.genuine AND g.chain_seq >= from_link;
    SELECT c.chain_seq, c.sealed_below INTO max_chain, last_below
    FROM ledgerlock.audit_chain c ORDER BY c.chain_seq DESC LIMIT 1;
    max_chain := coalesce(max_chain, 0);
    same_ids := ledgerlock._audit_same_xid_space(last_below);
    last_below := coalesce(last_below, '0'::xid8);
    -- from a digest on, only the links after it are read: the counts are of those
    sealed := CASE WHEN lo = 1 THEN (SELECT pg_catalog.count(*) FROM ledgerlock.audit_chain)
                   ELSE greatest(max_chain - lo + 1, 0) END;
    events := CASE WHEN lo = 1 THEN (SELECT pg_catalog.count(*) FROM ledgerlock.audit_event) END;

    -- One query per chunk: the first problem in chain order (the link before its event) and the counts.
    -- EXECUTE ... INTO, which runs in parallel on every supported server: on PostgreSQL 18 a static SELECT INTO
    -- of PL/pgSQL ran the same plan serially (2.1 s instead of 1.1 s per chunk on 2 cores); a FOR loop's
    -- cursor never runs in parallel.
    WHILE lo <= max_chain LOOP
        -- the events the chunk's links seal lie in this seq range (+ 0: read the chunk's links, rather than
        -- walk the seq index from an end); with the values known, the plan probes a hash of the links with
        -- a parallel range scan of the events, which are wide and read once
        SELECT pg_catalog.min(c.seq + 0), pg_catalog.max(c.seq + 0) INTO seq_lo, seq_hi
        FROM ledgerlock.audit_chain c WHERE c.chain_seq BETWEEN lo AND lo + step - 1;
        from_seq := least(from_seq, seq_lo);
        EXECUTE $q$
            SELECT x.seq, x.chain_seq, x.problem, pg_catalog.count(*) OVER (),
                   pg_catalog.count(*) FILTER (WHERE x.code = 'event_missing') OVER ()
            FROM ledgerlock._audit_link_problems($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) x
            ORDER BY x.chain_seq, x.k
            LIMIT 1$q$
        INTO c_seq, c_chain, c_problem, c_n, c_missing
        USING lo, lo + step - 1, seq_lo, seq_hi, s_batch, s_chain, s_closed, s_open, s_closed_text, s_open_text, s_prev;
        IF c_n IS NOT NULL THEN  -- a problem was found (EXECUTE leaves FOUND alone)
            IF problems = 0 THEN
                first_seq := c_seq; first_chain_seq := c_chain; first_problem := c_problem;
            END IF;
            problems := problems + c_n;
            missing := missing + c_missing;
        END IF;
        lo := lo + step;
        IF max_chain - from_link > step THEN
            RAISE NOTICE 'll-progress % %', least(lo - 1, max_chain), max_chain;
        END IF;
    END LOOP;

    -- events without a link: those of transactions since the last seal, unless the counts show others
    SELECT pg_catalog.count(*), pg_catalog.min(e.seq) INTO recent, recent_min
    FROM ledgerlock.audit_event e
    WHERE e.txid >= last_below AND NOT EXISTS (SELECT FROM ledgerlock.audit_chain c WHERE c.seq = e.seq);
    unsealed := coalesce(events - (sealed - missing), recent);
    events := coalesce(events, sealed + recent);
    from_seq := coalesce(least(from_seq, recent_min), (SELECT pg_catalog.max(e.seq) + 1 FROM ledgerlock.audit_event e),
                         0);

    -- what the seals' own events reveal (forged seals, code changed behind the trail),
    -- then the unsealed events' problems
    FOR p IN SELECT x.seq, x.chain_seq, x.problem
             FROM (SELECT 1 AS part, s.* FROM ledgerlock._audit_seal_problems(from_link) s
                   UNION ALL
                   SELECT 2, u.* FROM ledgerlock._audit_unsealed_problems(last_below, recent = unsealed, same_ids) u
                   WHERE u.problem IS NOT NULL) x
             ORDER BY x.part, x.chain_seq, x.seq LOOP
        problems := problems + 1;
        IF problems = 1 THEN
            first_seq := p.seq; first_chain_seq := p.chain_seq; first_problem := p.problem;
        END IF;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_verify_chain(bigint) FROM PUBLIC;

-- Whether the chain still passes through a kept digest: null when it does, else the problem.
CREATE OR REPLACE FUNCTION ledgerlock._audit_digest_problem(digest text, OUT seq bigint, OUT chain_seq bigint,
                                                           OUT problem text)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d_seq bigint;
    d_hash text;
    d_found text;
BEGIN
    IF digest !~ '^ll1:[0-9]{1,18}:[0-9a-f]{64}$' THEN  -- a chain position is a bigint
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('%L is not a ledgerlock audit digest', digest),
            HINT = 'a digest looks like ll1:<chain position>:<64 hex digits>, as audit_digest() returns it';
    END IF;
    d_seq := pg_catalog.split_part(digest, ':', 2)::bigint;
    d_hash := pg_catalog.split_part(digest, ':', 3);
    IF d_seq = 0 THEN
        IF d_hash <> ledgerlock._audit_genesis() THEN
            chain_seq := 0;
            problem := 'the digest names an empty chain, but its hash is not the genesis hash';
        END IF;
        RETURN;
    END IF;
    SELECT c.chain_hash, c.seq INTO d_found, seq FROM ledgerlock.audit_chain c WHERE c.chain_seq = d_seq;
    IF d_found IS DISTINCT FROM d_hash THEN
        chain_seq := d_seq;
        problem := CASE WHEN d_found IS NULL THEN pg_catalog.format(
                            'the digest names chain link %s, which no longer exists: the chain was truncated', d_seq)
                        ELSE pg_catalog.format('chain link %s differs from the digest: the chain was rewritten at '
                                               'or before it', d_seq) END;
    END IF;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_digest_problem(text) FROM PUBLIC;

-- Whether the session user may read a problem of the books (ledgerlock._audit_discrepancies): its row, key and
-- values are those of the event it names (seq), which a scope-limited role reads only in its scopes (the
-- row-level security of audit_event); a problem that names no event (a row written behind the trail) or an
-- event of no scope is not among them. limited: ledgerlock._granted_scopes(), null for a role of every scope.
-- Verification itself covers every scope (one chain, one digest): a limited role learns how many problems
-- it is not shown, and an auditor of every scope reads them (until 2026-11-30 a tenant admin of scope 1 read
-- scope 2's invoice amounts in them).
CREATE OR REPLACE FUNCTION ledgerlock._audit_problem_visible(seq bigint, limited text[])
RETURNS boolean
LANGUAGE plpgsql  -- its plan kept for the session: asked once per problem
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN limited IS NULL
        OR EXISTS (SELECT FROM ledgerlock.audit_event e
                   WHERE e.seq = _audit_problem_visible.seq AND e.scope = ANY (limited));
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_problem_visible(bigint, text[]) FROM PUBLIC;

-- What a scope-limited role reads in place of what it is not shown: with a code, a problem of a whole table
-- (row_key null: a table renamed or dropped, a column gone or holding values no event recorded) that names a
-- row outside its scopes, as the table, the column and the code, which concern its rows too; without one,
-- how many problems of rows outside its scopes there are.
CREATE OR REPLACE FUNCTION ledgerlock._audit_withheld(n bigint, code text, table_name text, column_name text)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
AS $$
    SELECT pg_catalog.format(CASE WHEN code IS NULL THEN '%1$s more problem(s) concern rows outside %5$s'
                                  ELSE '%2$s%3$s: %4$s (the details name a row outside %5$s)' END,
                             n, table_name, '.' || column_name, code,
                             pg_catalog.format('%s, to which %s is limited: an auditor of every scope reads them',
                                               ledgerlock._granted_scopes_text(), session_user))
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_withheld(bigint, text, text, text) FROM PUBLIC;

-- Verify the whole trail and the books against it: seal (unless the transaction is read-only, as on a
-- standby: then what is sealed is verified and `unsealed` says how many events wait for a seal),
-- recompute every event hash and every link, given a digest prove the chain still passes through it, then
-- check the live data and ledgerlock's own state against the trail (ledgerlock.audit_discrepancies).
-- Reports the first problem and how many there are; the first 100 problems are also sent as NOTICEs
-- ("ll-problem <text>") for the manager to list.
-- from_digest: the chain only from the digest's link on (the links up to it were proven when the digest
-- was verified, and the digest fixes them), the events since the last seal, and the trail's window checks
-- only for events after those links; the live rows, the state and the counters are checked in full.
CREATE OR REPLACE FUNCTION ledgerlock._audit_verify(digest text, from_digest boolean)
RETURNS TABLE(ok boolean, events bigint, sealed bigint, unsealed bigint, head text, first_broken_seq bigint,
              first_broken_chain_seq bigint, problem text, problems bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d_link bigint := 0;
    from_seq bigint;
    ch record;
    dg_seq bigint;
    dg_chain bigint;
    dg_problem text;
    dp record;
    n_problems bigint;
    shown integer := 0;
    limited text[] := ledgerlock._granted_scopes();  -- a scope-limited role reads its scopes' problems only
    withheld bigint := 0;
BEGIN
    IF digest IS NOT NULL THEN
        PERFORM ledgerlock._audit_digest_problem(digest);  -- a malformed digest is refused before anything runs
    ELSIF from_digest THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'verifying from a digest needs the digest',
            HINT = 'pass a digest kept earlier (ll1:N:HASH), or call verify_audit() to verify everything';
    END IF;
    IF pg_catalog.current_setting('transaction_isolation') = 'read committed'
       AND pg_catalog.current_setting('transaction_read_only') = 'off' THEN
        PERFORM ledgerlock.audit_seal();
    END IF;
    IF digest IS NOT NULL THEN
        SELECT x.seq, x.chain_seq, x.problem INTO dg_seq, dg_chain, dg_problem
        FROM ledgerlock._audit_digest_problem(digest) x;  -- against the chain as sealed now
    END IF;

    IF from_digest THEN
        d_link := pg_catalog.split_part(digest, ':', 2)::bigint;
    END IF;
    ch := ledgerlock._audit_verify_chain(d_link + 1);
    -- from a digest, the trail checks of the books start at the first event its links do not fix
    from_seq := CASE WHEN from_digest THEN ch.from_seq ELSE 0 END;
    events := ch.events; sealed := ch.sealed; unsealed := ch.unsealed;
    n_problems := ch.problems;
    first_broken_seq := ch.first_seq; first_broken_chain_seq := ch.first_chain_seq; problem := ch.first_problem;
    IF ch.first_problem IS NOT NULL THEN
        RAISE NOTICE 'll-problem %', ch.first_problem;
        shown := 1;
    END IF;
    IF dg_problem IS NOT NULL THEN
        n_problems := n_problems + 1;
        RAISE NOTICE 'll-problem %', dg_problem;
        shown := shown + 1;
        IF n_problems = 1 THEN
            first_broken_seq := dg_seq; first_broken_chain_seq := dg_chain; problem := dg_problem;
        END IF;
    END IF;
    FOR dp IN SELECT * FROM ledgerlock._audit_discrepancies(from_seq) LOOP
        n_problems := n_problems + 1;
        IF NOT ledgerlock._audit_problem_visible(dp.seq, limited) THEN
            IF dp.row_key IS NOT NULL THEN
                withheld := withheld + 1;
                CONTINUE;
            END IF;
            dp.problem := ledgerlock._audit_withheld(1, dp.code, dp.table_name, dp.column_name);
            dp.seq := NULL;
        END IF;
        IF problem IS NULL THEN
            first_broken_seq := dp.seq; problem := dp.problem;
        END IF;
        IF shown < 100 THEN
            RAISE NOTICE 'll-problem %', dp.problem;
            shown := shown + 1;
        END IF;
    END LOOP;
    IF withheld > 0 THEN
        problem := coalesce(problem, ledgerlock._audit_withheld(withheld, NULL, NULL, NULL));
        RAISE NOTICE 'll-problem %', ledgerlock._audit_withheld(withheld, NULL, NULL, NULL);
    END IF;

    ok := n_problems = 0;
    head := ledgerlock._audit_head();
    problems := n_problems;
    RETURN NEXT;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_verify(text, boolean) FROM PUBLIC;

CREATE OR REPLACE FUNCTION ledgerlock.verify_audit(digest text DEFAULT NULL)
RETURNS TABLE(ok boolean, events bigint, sealed bigint, unsealed bigint, head text, first_broken_seq bigint,
              first_broken_chain_seq bigint, problem text, problems bigint)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
AS $$
BEGIN
    PERFORM ledgerlock._require_capability('auditor', 'verify_audit');
    RETURN QUERY SELECT * FROM ledgerlock._audit_verify(digest, false);
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.verify_audit(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.verify_audit(text) TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

-- The daily verification of a long trail: what verify_audit does, with the chain read only from a kept
-- digest on (its cost follows what happened since the digest, not the trail's length); the books are
-- checked in full (a row changed behind the trail leaves no event to start from).
CREATE OR REPLACE FUNCTION ledgerlock.verify_audit_from(digest text)
RETURNS TABLE(ok boolean, events bigint, sealed bigint, unsealed bigint, head text, first_broken_seq bigint,
              first_broken_chain_seq bigint, problem text, problems bigint)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
AS $$
BEGIN
    PERFORM ledgerlock._require_capability('auditor', 'verify_audit_from');
    RETURN QUERY SELECT * FROM ledgerlock._audit_verify(digest, true);
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.verify_audit_from(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.verify_audit_from(text)
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

-- Append-only: no UPDATE, DELETE or TRUNCATE of events or links, for anyone, the owner included.
-- ENABLE ALWAYS: session_replication_role = replica does not silence the guards. A superuser can still

-- ---------------------------------------------------------------------------------------------------
-- The books against the trail: every live row of every protected table, and of ledgerlock's own state
-- tables, must be the image its latest event recorded; lock windows must have been respected; number
-- counters must stand where the trail's numbers say.

-- ledgerlock's own state whose rows the trail records like a protected table's (the capture triggers are
-- installed on them by sql/triggers/r5_audit_capture.sql). number_counter is not among them (a counter
-- moves on every finalization: it is checked against the numbers in the trail instead), nor the lock
-- history (ledgerlock.lock_event has its own capture), nor bookkeeping that decides nothing (gates, fences,
-- DDL permits).
CREATE OR REPLACE FUNCTION ledgerlock._audit_state_tables()
RETURNS regclass[]
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ARRAY['ledgerlock.protected_table', 'ledgerlock.reference_rule', 'ledgerlock.number_setting',
                 'ledgerlock.number_format_history', 'ledgerlock.period_lock', 'ledgerlock.period_lock_span',
                 'ledgerlock.period_override', 'ledgerlock.scope_grant', 'ledgerlock.fiscal_year_start',
                 'ledgerlock.close_task', 'ledgerlock.close_setting', 'ledgerlock.unlock_request']::regclass[]
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_state_tables() FROM PUBLIC;

-- The columns a table's events are keyed by: the registry's key columns for a protected table, the
-- primary key for a state table.
CREATE OR REPLACE FUNCTION ledgerlock._audit_key_columns(tbl regclass)
RETURNS text[]
LANGUAGE plpgsql  -- its plan kept for the session: verification names every row it reports by it (as SQL with
                  -- a SET clause, planned at every call: 144 us of each of 100,000 rows, PG 16)
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN coalesce(
        (SELECT p.key_columns::text[] FROM ledgerlock.protected_table p WHERE p.tbl = _audit_key_columns.tbl),
        (SELECT pg_catalog.array_agg(a.attname::text ORDER BY u.o)
         FROM pg_catalog.pg_index i
         CROSS JOIN LATERAL pg_catalog.unnest(i.indkey::smallint[]) WITH ORDINALITY AS u(attnum, o)
         JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = u.attnum
         WHERE i.indrelid = _audit_key_columns.tbl AND i.indisprimary));
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_key_columns(regclass) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._audit_key_columns(regclass)
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;  -- doctor, _audit_zoned_key_columns

-- The key columns of a table whose text depends on the session's TimeZone: a timestamptz, a tstzrange or a
-- tstzmultirange (or a domain over one), as {column: base type}; null when none. The trail files a row under
-- its key's text, and such a value's text carries the offset of the zone it was printed in: the capture
-- prints in UTC (sql/triggers/r5_audit_capture.sql), but events written before it did carry their writer's
-- zone, so verification reads such keys in UTC (ledgerlock._audit_utc_key).
CREATE OR REPLACE FUNCTION ledgerlock._audit_zoned_key_columns(tbl regclass)
RETURNS jsonb
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.jsonb_object_agg(k.k, z.typ)
    FROM pg_catalog.unnest(ledgerlock._audit_key_columns(tbl)) AS k(k)
    JOIN pg_catalog.pg_attribute a ON a.attrelid = tbl AND a.attname = k.k AND NOT a.attisdropped
    JOIN (VALUES ('pg_catalog.timestamptz'::pg_catalog.regtype, 'timestamptz'),
                 ('pg_catalog.tstzrange'::pg_catalog.regtype, 'tstzrange'),
                 ('pg_catalog.tstzmultirange'::pg_catalog.regtype, 'tstzmultirange')) AS z(oid, typ)
      ON z.oid = ledgerlock._base_type(a.atttypid)
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_zoned_key_columns(regclass) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._audit_zoned_key_columns(regclass)
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;  -- `ledgerlock audit log --key`

-- A recorded key with its zoned columns (ledgerlock._audit_zoned_key_columns) printed in UTC, as the capture
-- prints them: the same instant written under '+14:00' and under '+00:00' is one row. Called per event,
-- only for tables that have such columns.
CREATE OR REPLACE FUNCTION ledgerlock._audit_utc_key(k jsonb, zoned jsonb)
RETURNS jsonb
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
SET DateStyle = 'ISO, YMD'
SET TimeZone = 'UTC'
AS $$
DECLARE
    c text;
    v text;
BEGIN
    FOR c IN SELECT pg_catalog.jsonb_object_keys(zoned) LOOP
        v := k ->> c;
        IF pg_catalog.jsonb_typeof(k -> c) = 'string' THEN
            k := pg_catalog.jsonb_set(k, ARRAY[c], CASE zoned ->> c
                     WHEN 'tstzrange' THEN pg_catalog.to_jsonb(v::pg_catalog.tstzrange)
                     WHEN 'tstzmultirange' THEN pg_catalog.to_jsonb(v::pg_catalog.tstzmultirange)
                     ELSE pg_catalog.to_jsonb(v::pg_catalog.timestamptz) END);
        END IF;
    END LOOP;
    RETURN k;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_utc_key(jsonb, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._audit_utc_key(jsonb, jsonb)
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;  -- `ledgerlock audit log --key`

-- What the trail says about each row of a table, one fact per event: the image it left (null: the row is
-- gone). An INSERT, UPDATE or BASELINE leaves its new row; a DELETE (and an UPDATE, under the key the row
-- had before, when it moved the row to another key) leaves the row gone; STATE_... are the same for
-- ledgerlock's own state tables. The lock history files every
-- event under ledgerlock.lock_event, except a skipped import row, filed under the table it was meant for,
-- whose lock_event row is in its details. prio orders the two facts of one event (the old key first).
-- A table is known by the qualified name its events recorded (tname): an oid means nothing in another
-- cluster, and a restored dump gives every table a new one. oids (the oids its events were filed under, see
-- _audit_table_oids) only lets the index on table_oid do the search.
-- No SET clause: inlined into the callers' queries; only ledgerlock's pinned functions execute it.
CREATE OR REPLACE FUNCTION ledgerlock._audit_row_facts(tname text, oids oid[], keys text[])
RETURNS TABLE(row_key jsonb, seq bigint, operation text, image jsonb, prio integer)
LANGUAGE sql
STABLE
AS $$
    SELECT e.row_key, e.seq, e.operation,
           CASE WHEN e.operation NOT IN ('DELETE', 'STATE_DELETE') THEN e.new_row END, 1
    FROM ledgerlock.audit_event e
    WHERE e.table_oid = ANY (oids) AND e.table_name = tname AND e.row_key IS NOT NULL
      AND (e.operation IN ('INSERT', 'UPDATE', 'DELETE', 'BASELINE',
                           'STATE_INSERT', 'STATE_UPDATE', 'STATE_DELETE')
           OR tname = 'ledgerlock.lock_event')
    UNION ALL
    SELECT m.old_key, e.seq, e.operation, NULL, 0
    FROM ledgerlock.audit_event e
    CROSS JOIN LATERAL (SELECT pg_catalog.jsonb_object_agg(k, e.old_row OPERATOR(pg_catalog.->) k) AS old_key
                        FROM pg_catalog.unnest(keys) AS k) m
    WHERE e.table_oid = ANY (oids) AND e.table_name = tname AND e.operation IN ('UPDATE', 'STATE_UPDATE')
      AND (pg_catalog.cardinality(keys) > 1
           OR e.old_row OPERATOR(pg_catalog.->) keys[1] IS DISTINCT FROM e.new_row OPERATOR(pg_catalog.->) keys[1])
      AND m.old_key IS DISTINCT FROM e.row_key
    UNION ALL
    SELECT pg_catalog.jsonb_build_object('id', e.details OPERATOR(pg_catalog.->) 'lock_event'
                                                OPERATOR(pg_catalog.->) 'id'),
           e.seq, e.operation, e.details OPERATOR(pg_catalog.->) 'lock_event', 1
    FROM ledgerlock.audit_event e
    WHERE tname = 'ledgerlock.lock_event' AND e.operation = 'SKIP'
      AND e.details OPERATOR(pg_catalog.?) 'lock_event'
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_row_facts(text, oid[], text[]) FROM PUBLIC;

-- The oids a table's events were filed under: its own, and those it had in the cluster a dump came from.
-- The distinct oids of the trail are read by skipping through the (table_oid, row_key, seq) index, one
-- probe each, and an oid is the table's when its first event there names it (an oid reused by another
-- table in a later cluster is then found through that table's own oid): no scan of the events.
CREATE OR REPLACE FUNCTION ledgerlock._audit_table_oids(tname text)
RETURNS oid[]
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE o(oid) AS (
        SELECT pg_catalog.min(e.table_oid) FROM ledgerlock.audit_event e
        UNION ALL
        SELECT (SELECT pg_catalog.min(e.table_oid) FROM ledgerlock.audit_event e WHERE e.table_oid > o.oid)
        FROM o WHERE o.oid IS NOT NULL
    )
    SELECT ARRAY(SELECT o.oid FROM o
                 WHERE o.oid IS NOT NULL
                   AND (o.oid = pg_catalog.to_regclass(tname)::oid
                        OR (SELECT e.table_name FROM ledgerlock.audit_event e WHERE e.table_oid = o.oid
                            ORDER BY e.table_oid, e.row_key, e.seq LIMIT 1) = tname))
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_table_oids(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._audit_table_oids(text)
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;  -- _audit_oids_of

-- The oids a table's events are filed under, for readers of audit_log that ask for one table's history
-- (`ledgerlock audit log --table`, the console): found first and passed to their query as values, so that
-- PostgreSQL plans it with them (through the (table_oid, row_key, seq) index for a table of few events). A
-- filter on audit_log.table_name finds the same events, but computes the name of every event.
CREATE OR REPLACE FUNCTION ledgerlock._audit_oids_of(tbl regclass)
RETURNS oid[]
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ledgerlock._audit_table_oids(tbl::text)  -- (the qualified name, under this search_path)
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_oids_of(regclass) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._audit_oids_of(regclass)
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

-- The columns of a table whose values two jsonb images can hold as equal numbers printed differently
-- (1.0 and 1.00): an unconstrained numeric, jsonb, arrays, composites, domains, anything not listed. The
-- books compare images with jsonb equality, exact for every other column (strings byte for byte, a
-- numeric with a typmod always printed at its scale), and these columns again as text.
CREATE OR REPLACE FUNCTION ledgerlock._audit_loose_columns(tbl regclass)
RETURNS text[]
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a
                 WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped
                   AND NOT (a.atttypid = ANY ('{bool,int2,int4,int8,float4,float8,oid,text,varchar,bpchar,name,char,
                                               date,time,timetz,timestamp,timestamptz,interval,uuid,bytea,json,
                                               inet,cidr,macaddr,money,regclass,xid8}'::regtype[])
                            OR (a.atttypid = 'numeric'::regtype AND a.atttypmod <> -1))
                 ORDER BY a.attnum)
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_loose_columns(regclass) FROM PUBLIC;

-- The final state of keys that updates moved rows into or out of, replayed in seq order: (key, the event
-- that decided it, its operation, the image; null: no row). One UPDATE statement can move a row onto a
-- key that another row of the same statement leaves later in the statement (SET id = id + 1 in ascending
-- order, under a deferrable key), and the trail does not say where a statement ends; but a row can only
-- be moved onto an occupied key when the occupant leaves within the same statement, so such an arrival
-- marks the key's next departure as the occupant's, not the newcomer's.
CREATE OR REPLACE FUNCTION ledgerlock._audit_moved_keys(tname text, oids oid[])
RETURNS TABLE(row_key jsonb, seq bigint, operation text, image jsonb)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    f record;
    present boolean;
    pending integer;
    zoned jsonb := ledgerlock._audit_zoned_key_columns(pg_catalog.to_regclass(tname));
    -- an event's key as verification compares it (the event's own old and new images agree with it as written)
    k text := CASE WHEN zoned IS NULL THEN '%s' ELSE 'ledgerlock._audit_utc_key(%s, $3)' END;
BEGIN
    FOR f IN EXECUTE pg_catalog.format($q$
        WITH moves AS (
            SELECT e.seq, e.operation, %1$s AS new_key,
                   %2$s AS old_key
            FROM ledgerlock.audit_event e
            WHERE e.table_oid = ANY ($2) AND e.operation IN ('UPDATE', 'STATE_UPDATE')
              AND NOT (e.old_row @> e.row_key) AND e.table_name = $1
        ), keys AS (
            SELECT m.new_key AS k FROM moves m UNION SELECT m.old_key FROM moves m
        )
        SELECT %1$s AS row_key, e.seq, e.operation, 'in' AS kind,
               CASE WHEN e.operation IN ('DELETE', 'STATE_DELETE') THEN NULL ELSE e.new_row END AS image,
               -- one of the moves (the moves' own test, on this event): a lookup in moves would be a scan
               -- of it per event, N x N steps for a statement that moved N keys
               (e.operation IN ('UPDATE', 'STATE_UPDATE') AND NOT (e.old_row @> e.row_key)) IS TRUE AS moved_in
        FROM ledgerlock.audit_event e
        WHERE e.table_oid = ANY ($2) AND %1$s IN (SELECT k FROM keys) AND e.table_name = $1
          AND e.operation IN ('INSERT', 'UPDATE', 'DELETE', 'BASELINE', 'STATE_INSERT', 'STATE_UPDATE', 'STATE_DELETE')
        UNION ALL
        SELECT m.old_key, m.seq, m.operation, 'out', NULL, false FROM moves m
        ORDER BY 1, 2
        $q$, pg_catalog.format(k, 'e.row_key'),
        pg_catalog.format(k, '(SELECT pg_catalog.jsonb_object_agg(k, e.old_row -> k) '
                             'FROM pg_catalog.jsonb_object_keys(e.row_key) AS k)'))
        USING tname, oids, zoned
    LOOP
        IF row_key IS DISTINCT FROM f.row_key THEN
            IF row_key IS NOT NULL THEN
                RETURN NEXT;
            END IF;
            row_key := f.row_key; present := false; pending := 0;
        END IF;
        IF f.kind = 'out' AND pending > 0 THEN
            pending := pending - 1;  -- the occupant left: the newcomer stays
            CONTINUE;
        END IF;
        IF f.moved_in AND present THEN
            pending := pending + 1;
        END IF;
        seq := f.seq; operation := f.operation; image := f.image; present := f.image IS NOT NULL;
    END LOOP;
    IF row_key IS NOT NULL THEN
        RETURN NEXT;
    END IF;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_moved_keys(text, oid[]) FROM PUBLIC;

-- The rows of rel (tbl, or one of its partitions) whose image differs from the latest fact of their key,
-- and (all_facts) the facts of tbl that no row matches: (key, the latest event, live image, recorded
-- image; a null image is an absent or deleted row). Set-based, in one query (one snapshot): the live rows
-- (their key built from the key columns) are hash-joined with the latest event of each key: the first of
-- its key in a backward walk of the (table_oid, row_key, seq) index, or, for a table whose events lie
-- under several oids, the one no later event of the key follows (an anti-join). Keys that updates moved
-- rows into or out of come from _audit_moved_keys instead.
-- Images are compared with jsonb equality and the loose columns (_audit_loose_columns) again as text, so
-- that 1.0 and 1.00 differ; the live images are made under the capture's pinned output settings. The lock
-- history's rows are few and some are filed under other tables (skipped writes): its facts come from
-- _audit_row_facts. Long because it assembles one query for the table's shape (key columns, json and
-- regclass columns, one oid or several, moved keys), so that the query is planned with that table's own
-- columns and index.
CREATE OR REPLACE FUNCTION ledgerlock._audit_row_diff(tbl regclass, rel regclass, all_facts boolean)
RETURNS TABLE(row_key jsonb, seq bigint, operation text, live jsonb, recorded jsonb)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
SET extra_float_digits = '1'
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
SET bytea_output = 'hex'
SET lc_monetary = 'C'
SET TimeZone = 'UTC'
-- the latest events come in key order, and a merge join would sort every live row by its jsonb key to
-- meet them (spilling to disk past work_mem): a hash join reads each side once
SET enable_mergejoin = off
AS $$
DECLARE
    keys text[] := ledgerlock._audit_key_columns(tbl);
    tname text := tbl::text;
    oids oid[];
    json_cols text[] := nullif(ledgerlock._audit_json_columns(tbl), '{}');
    reg_cols text[] := nullif(ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a
                                    WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped
                                      AND a.atttypid = 'regclass'::regtype ORDER BY a.attnum), '{}');
    -- virtual generated columns (PostgreSQL 18 on) hold nothing of their own: PostgreSQL computes them when
    -- they are read, and not for the triggers that capture events (which record them as null). Both images
    -- are compared without them. (Their expression can change without a write: docs/audit.md.)
    virtual_cols text[] := nullif(ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a
                                        WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped
                                          AND a.attgenerated = 'v' ORDER BY a.attnum), '{}');
    -- a full hash join can run in parallel workers (PostgreSQL 16 on), and this session may start some
    parallel_full boolean := pg_catalog.current_setting('server_version_num')::integer >= 160000
                             AND pg_catalog.current_setting('max_parallel_workers_per_gather')::integer > 0;
    zoned jsonb := ledgerlock._audit_zoned_key_columns(tbl);
    moved jsonb[] := '{}';
    moved_filter text;
    m_seqs bigint[] := '{}';
    m_ops text[] := '{}';
    m_images jsonb[] := '{}';
    facts text;
    image text;
BEGIN
    IF keys IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('table %s has no key the audit trail can file its rows under', tbl);
    END IF;
    oids := ledgerlock._audit_table_oids(tname);
    image := CASE WHEN json_cols IS NULL THEN 'pg_catalog.to_jsonb(t.*)'
                  ELSE 'ledgerlock._audit_image(t.*, $2)' END;
    IF reg_cols IS NOT NULL THEN
        image := pg_catalog.format('ledgerlock._audit_dropped_names(%s, $5)', image);
    END IF;
    IF virtual_cols IS NOT NULL THEN
        image := pg_catalog.format('(%s) OPERATOR(pg_catalog.-) $10', image);
    END IF;
    IF tname = 'ledgerlock.lock_event' THEN
        facts := 'SELECT DISTINCT ON (f.row_key) f.row_key, f.seq, f.operation, f.image '
                 'FROM ledgerlock._audit_row_facts($4, $3, $1) f ORDER BY f.row_key, f.seq DESC, f.prio DESC';
    ELSE
        SELECT coalesce(pg_catalog.array_agg(m.row_key), '{}'), coalesce(pg_catalog.array_agg(m.seq), '{}'),
               coalesce(pg_catalog.array_agg(m.operation), '{}'), coalesce(pg_catalog.array_agg(m.image), '{}')
        INTO moved, m_seqs, m_ops, m_images
        FROM ledgerlock._audit_moved_keys(tname, oids) m;
        -- keys moved by an UPDATE are left out of the walk (their facts come from _audit_moved_keys) by a
        -- hashed subplan, only when there are some: a test against the array itself ran through the array
        -- for each event on 16 (8,000 keys moved by one UPDATE: 7 s), and the subplan costs a hash lookup per
        -- event. The key is never null here, so NOT IN is NOT EXISTS.
        moved_filter := CASE WHEN pg_catalog.cardinality(moved) > 0
                             THEN 'AND e.row_key NOT IN (SELECT pg_catalog.unnest($6))' ELSE '' END;
        IF zoned IS NOT NULL THEN
            -- a key with a timestamptz (or tstzrange) column: each event's key read in UTC (events written
            -- before the capture printed in UTC carry their writer's zone), so the index does not order them;
            -- the latest event of each key by a sort
            facts := pg_catalog.format($f$
                (SELECT DISTINCT ON (z.row_key) z.row_key, z.seq, z.operation, z.image
                 FROM (SELECT ledgerlock._audit_utc_key(e.row_key, $11) AS row_key, e.seq, e.operation,
                              CASE WHEN e.operation IN ('DELETE', 'STATE_DELETE') THEN NULL ELSE e.new_row END AS image
                       FROM ledgerlock.audit_event e
                       WHERE e.table_oid = ANY ($3) AND e.table_name = $4 AND e.row_key IS NOT NULL
                         AND e.operation IN ('INSERT', 'UPDATE', 'DELETE', 'BASELINE', 'STATE_INSERT',
                                             'STATE_UPDATE', 'STATE_DELETE')) AS z
                 WHERE true %1$s
                 ORDER BY z.row_key, z.seq DESC)
                $f$, pg_catalog.replace(moved_filter, 'e.row_key', 'z.row_key'));
        ELSIF pg_catalog.cardinality(oids) = 1 AND NOT parallel_full THEN
            -- one oid, in one process: the latest event of each key is the first of its key in a backward
            -- walk of the (table_oid, row_key, seq) index, read once (an anti-join reads the events twice)
            facts := pg_catalog.format($f$
                (SELECT DISTINCT ON (e.row_key) e.row_key, e.seq, e.operation,
                        CASE WHEN e.operation IN ('DELETE', 'STATE_DELETE') THEN NULL ELSE e.new_row END AS image
                 FROM ledgerlock.audit_event e
                 WHERE e.table_oid = ($3)[1] AND e.table_name = $4 AND e.row_key IS NOT NULL
                   AND e.operation IN ('INSERT', 'UPDATE', 'DELETE', 'BASELINE', 'STATE_INSERT', 'STATE_UPDATE',
                                       'STATE_DELETE')
                   %1$s
                 ORDER BY e.row_key DESC, e.seq DESC)
                $f$, moved_filter);
        ELSE
            -- events filed under several oids (a restored dump), where the index no longer orders a key's
            -- events; or with parallel workers and a server that runs a full join in parallel (16 on): the
            -- anti-join and the full join then run in the workers, and the live rows' images are made there
            -- too (1M rows: 4.7 s -> 3.3 s on 2 cores), where the index walk above runs in one process
            facts := pg_catalog.format($f$
                SELECT e.row_key, e.seq, e.operation,
                       CASE WHEN e.operation IN ('DELETE', 'STATE_DELETE') THEN NULL ELSE e.new_row END AS image
                FROM ledgerlock.audit_event e
                WHERE e.table_oid = ANY ($3) AND e.table_name = $4 AND e.row_key IS NOT NULL
                  AND e.operation IN ('INSERT', 'UPDATE', 'DELETE', 'BASELINE', 'STATE_INSERT', 'STATE_UPDATE',
                                      'STATE_DELETE')
                  %1$s
                  AND NOT EXISTS (SELECT FROM ledgerlock.audit_event x
                                  WHERE x.table_oid = ANY ($3) AND x.row_key = e.row_key AND x.seq > e.seq
                                    AND x.table_name = $4
                                    AND x.operation IN ('INSERT', 'UPDATE', 'DELETE', 'BASELINE', 'STATE_INSERT',
                                                        'STATE_UPDATE', 'STATE_DELETE'))
                $f$, moved_filter);
        END IF;
        -- the moved keys' facts, when there are any: a branch of them, even empty, keeps the full join out of
        -- the parallel workers (an Append with a part that cannot be split among them)
        IF pg_catalog.cardinality(moved) > 0 THEN
            facts := facts || $f$
                UNION ALL
                SELECT u.k, u.s, u.o, u.i
                FROM ROWS FROM (pg_catalog.unnest($6), pg_catalog.unnest($7), pg_catalog.unnest($8),
                                pg_catalog.unnest($9)) AS u(k, s, o, i)
                $f$;
        END IF;
    END IF;
    IF virtual_cols IS NOT NULL THEN
        facts := 'SELECT v.row_key, v.seq, v.operation, v.image OPERATOR(pg_catalog.-) $10 AS image FROM ('
                 || facts || ') AS v';
    END IF;
    RETURN QUERY EXECUTE pg_catalog.format($q$
        WITH live AS (
            SELECT pg_catalog.jsonb_build_object(%s) AS row_key, i.ll_img AS img
            FROM (SELECT %s, %s AS ll_img FROM %s AS t) i
        ), facts AS (%s)
        SELECT coalesce(l.row_key, f.row_key), f.seq, f.operation, l.img, f.image
        FROM live l %s JOIN facts f ON f.row_key OPERATOR(pg_catalog.=) l.row_key
        WHERE l.img IS DISTINCT FROM f.image %s
        $q$,
        -- the key from the key columns; from the image where a regclass column may name a dropped table. The
        -- key columns leave the subquery under names of ours (ll_key_1...): the table may have a column ll_img.
        (SELECT pg_catalog.string_agg(CASE WHEN reg_cols IS NULL THEN pg_catalog.format('%L, i.ll_key_%s', k, n)
                                           ELSE pg_catalog.format('%1$L, i.ll_img OPERATOR(pg_catalog.->) %1$L', k) END,
                                      ', ' ORDER BY n)
         FROM pg_catalog.unnest(keys) WITH ORDINALITY AS x(k, n)),
        (SELECT pg_catalog.string_agg(pg_catalog.format('t.%I AS ll_key_%s', k, n), ', ' ORDER BY n)
         FROM pg_catalog.unnest(keys) WITH ORDINALITY AS x(k, n)),
        image, rel, facts, CASE WHEN all_facts THEN 'FULL' ELSE 'LEFT' END,
        (SELECT pg_catalog.string_agg(pg_catalog.format(
                    'OR (l.img -> %1$L)::text IS DISTINCT FROM (f.image -> %1$L)::text', c), ' ')
         FROM pg_catalog.unnest(ledgerlock._audit_loose_columns(tbl)) AS c))
        USING keys, json_cols, oids, tname, reg_cols, moved, m_seqs, m_ops, m_images, virtual_cols, zoned;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_row_diff(regclass, regclass, boolean) FROM PUBLIC;

-- The name the trail knows a table by (its latest event's), when the oid no longer names one; null when no
-- event names it. Events written after the table was gone carry its bare oid as their name: passed over.
CREATE OR REPLACE FUNCTION ledgerlock._audit_name_of(rel oid)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT e.table_name FROM ledgerlock.audit_event e WHERE e.table_oid = rel AND e.table_name <> rel::text
    ORDER BY e.seq DESC LIMIT 1
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_name_of(oid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._audit_name_of(oid) TO ledgerlock_admin, ledgerlock_auditor;  -- doctor

-- A regclass column naming a table dropped since reads as the table's bare oid; the trail still knows the
-- name (its events carry the table's oid), so the live image names it as the recorded image does. Only
-- ledgerlock's own state tables (registry, counters, format history, rules) have regclass columns.
CREATE OR REPLACE FUNCTION ledgerlock._audit_dropped_names(img jsonb, reg_cols text[])
RETURNS jsonb
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c text;
    named text;
BEGIN
    FOREACH c IN ARRAY reg_cols LOOP
        IF img ->> c ~ '^[0-9]+$' THEN
            named := ledgerlock._audit_name_of((img ->> c)::oid);
            IF named IS NOT NULL THEN
                img := pg_catalog.jsonb_set(img, ARRAY[c], pg_catalog.to_jsonb(named));
            END IF;
        END IF;
    END LOOP;
    RETURN img;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_dropped_names(jsonb, text[]) FROM PUBLIC;

-- "invoice id=42": a row as problems name it.
-- keys: the table's key columns (_audit_key_columns), for a caller that names many rows of one table.
CREATE OR REPLACE FUNCTION ledgerlock._audit_row_name(tbl regclass, row_key jsonb, keys text[])
RETURNS text
LANGUAGE plpgsql  -- its plan kept for the session: called for every row verification holds one by one
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN pg_catalog.format('%s %s', (SELECT c.relname FROM pg_catalog.pg_class c WHERE c.oid = tbl),
               (SELECT pg_catalog.string_agg(pg_catalog.format('%s=%s', u.k, row_key ->> u.k), ' ' ORDER BY u.o)
                FROM pg_catalog.unnest(keys) WITH ORDINALITY AS u(k, o)));
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_row_name(regclass, jsonb, text[]) FROM PUBLIC;

CREATE OR REPLACE FUNCTION ledgerlock._audit_row_name(tbl regclass, row_key jsonb)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN ledgerlock._audit_row_name(tbl, row_key, ledgerlock._audit_key_columns(tbl));
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_row_name(regclass, jsonb) FROM PUBLIC;

-- Whether a recorded value holds a key that the same value read into its column's type as the type is now
-- (normalized: jsonb_populate_record, then to_jsonb) lacks, at any depth (array positions alike): an attribute
-- of a composite type the column holds, dropped since the value was recorded (ALTER TYPE ... DROP ATTRIBUTE,
-- which the DDL guard refuses). Reading the value into the type leaves such a key out, so the two read the
-- same while the row lost what the trail recorded. Keys the type gained since are no loss.
CREATE OR REPLACE FUNCTION ledgerlock._json_keys_lost(recorded jsonb, normalized jsonb)
RETURNS boolean
LANGUAGE plpgsql  -- its plan kept for the session: called per row that differs
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN EXISTS (WITH RECURSIVE p(side, path, v) AS (
        SELECT 1, '{}'::text[], recorded
        UNION ALL
        SELECT 2, '{}'::text[], normalized
        UNION ALL
        SELECT p.side, p.path || x.k, x.v
        FROM p CROSS JOIN LATERAL (
            SELECT e.key, e.value
            FROM pg_catalog.jsonb_each(CASE WHEN pg_catalog.jsonb_typeof(p.v) = 'object' THEN p.v END) AS e
            UNION ALL
            SELECT '[]', a.value
            FROM pg_catalog.jsonb_array_elements(CASE WHEN pg_catalog.jsonb_typeof(p.v) = 'array' THEN p.v END) AS a
        ) AS x(k, v)
    )
    SELECT p.path FROM p WHERE p.side = 1 EXCEPT SELECT p.path FROM p WHERE p.side = 2);
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._json_keys_lost(jsonb, jsonb) FROM PUBLIC;

-- Whether a recorded value reads otherwise in its column's type as the type is now (normalized:
-- jsonb_populate_record, then to_jsonb): the column's type was changed under the value with no write, by a cast
-- that rewrites nothing (ALTER COLUMN amount TYPE oid: a recorded -5 reads 4294967291; ledger TYPE regclass: a
-- recorded 1259 reads pg_class; terminal TYPE inet: 10.0.0.1/32 reads 10.0.0.1), which the DDL guard refuses,
-- or by a rewrite, which no row trigger sees (numeric(12,2) to numeric(12,0): 100.50 reads 101). Normalizing is
-- there to read alike what other settings printed otherwise: a value of a type whose text no setting decides
-- must read as recorded; a timestamptz, an interval or a float must read as the same value (the text may differ:
-- the zone it was printed in, its digits); a number may not read as a name (a regclass's text is its search
-- path's). An array, element by element in its element type.
CREATE OR REPLACE FUNCTION ledgerlock._audit_reads_otherwise(typ regtype, recorded jsonb, normalized jsonb)
RETURNS boolean
LANGUAGE plpgsql  -- called per column of a row whose image differs from its event
STABLE
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
SET TimeZone = 'UTC'
AS $$
DECLARE
    base regtype;
    elem regtype;
    was text := recorded OPERATOR(pg_catalog.#>>) '{}';
    reads text := normalized OPERATOR(pg_catalog.#>>) '{}';
BEGIN
    IF pg_catalog.jsonb_typeof(recorded) = 'array' AND pg_catalog.jsonb_typeof(normalized) = 'array' THEN
        SELECT t.typelem INTO elem FROM pg_catalog.pg_type t
        WHERE t.oid = ledgerlock._base_type(typ) AND t.typcategory = 'A' AND t.typelem <> 0;
        RETURN EXISTS (SELECT FROM pg_catalog.jsonb_array_elements(recorded) WITH ORDINALITY AS r(v, i)
                       JOIN pg_catalog.jsonb_array_elements(normalized) WITH ORDINALITY AS n(v, i) ON n.i = r.i
                       WHERE ledgerlock._audit_reads_otherwise(coalesce(elem, typ), r.v, n.v));
    END IF;
    IF pg_catalog.jsonb_typeof(recorded) NOT IN ('number', 'string', 'boolean') OR was IS NOT DISTINCT FROM reads THEN
        RETURN false;
    END IF;
    base := ledgerlock._base_type(typ);
    IF base = ANY ('{int2,int4,int8,oid,numeric,text,varchar,name,uuid,inet,cidr,macaddr,bool,date,time,
                    timestamp}'::pg_catalog.regtype[]) THEN
        RETURN true;
    ELSIF base = ANY ('{timestamptz,interval,float4,float8}'::pg_catalog.regtype[]) THEN
        BEGIN
            RETURN CASE base WHEN 'pg_catalog.timestamptz'::pg_catalog.regtype
                                 THEN was::pg_catalog.timestamptz IS DISTINCT FROM reads::pg_catalog.timestamptz
                             WHEN 'pg_catalog.interval'::pg_catalog.regtype
                                 THEN was::pg_catalog.interval IS DISTINCT FROM reads::pg_catalog.interval
                             ELSE was::pg_catalog.float8 IS DISTINCT FROM reads::pg_catalog.float8 END;
        EXCEPTION WHEN data_exception THEN
            RETURN true;  -- the recorded text is no value of the type
        END;
    END IF;
    RETURN was ~ '^-?[0-9]+$' AND pg_catalog.jsonb_typeof(normalized) = 'string';
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_reads_otherwise(regtype, jsonb, jsonb) FROM PUBLIC;

-- Whether a column of tbl holds a composite value, at any depth (ledgerlock._types_held): only such a table's
-- recorded values can lose a key to a dropped attribute (_json_keys_lost).
CREATE OR REPLACE FUNCTION ledgerlock._holds_composite(tbl regclass)
RETURNS boolean
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT FROM ledgerlock._types_held(ARRAY[tbl::oid]) AS h(oid)
                   JOIN pg_catalog.pg_type t ON t.oid = h.oid
                   WHERE t.typtype = 'c')
$$;
REVOKE ALL ON FUNCTION ledgerlock._holds_composite(regclass) FROM PUBLIC;

-- Every difference between a table's live rows and the trail, one row per problem: 'row_unrecorded' (a
-- row no event wrote), 'row_missing' (a row the trail has, gone without an event), 'row_resurrected' (a
-- row whose latest event removed it), 'row_changed' (one per column that differs). Images that differ
-- as text are compared again column by column as values of the column's type, printed under pinned
-- settings, so that a row written under another TimeZone, IntervalStyle or bytea_output is not taken for
-- a change, while a changed value (1.00 against 1.0 included) is.
-- The table's shape since its rows were recorded, once per column rather than once per row (neither is
-- looked for in rows whose images agree, so it costs nothing otherwise): 'column_unrecorded', a column the
-- latest events of some rows do not have (added since) holding a value in them (a column added with a
-- default: ledgerlock.record_added_columns records those values; null, what such a column reads, is no
-- problem); 'column_gone', a column the trail recorded that the table no longer has (dropped or renamed:
-- the DDL guard refuses both; its recorded values can no longer be held to the table).
CREATE OR REPLACE FUNCTION ledgerlock._audit_data_problems(tbl regclass)
RETURNS TABLE(code text, table_name text, row_key jsonb, column_name text, seq bigint, problem text)
LANGUAGE plpgsql
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
DECLARE
    key_cols text[] := ledgerlock._audit_key_columns(tbl);  -- to name each row it holds one by one
    d record;
    who text;
    norm_live jsonb;
    norm_rec jsonb;
    k text;
    filed_as text;
    absent text[];
    added jsonb := '{}';  -- column -> {n, who, seq, value}: rows that hold a value in a column their events lack
    gone jsonb := '{}';   -- column -> {n, who, seq}: rows whose events hold a column the table lacks
    json_cols text[] := ledgerlock._audit_json_columns(tbl);  -- read once, not per row that differs
    c record;
BEGIN
    table_name := tbl::text;
    -- A table renamed (or moved to another schema) after its events were written: the trail files events
    -- under the table's qualified name as well as its oid (so that a dump restored with new oids still
    -- verifies), so every row would read as written behind the trail. One problem that says so, and how to
    -- undo it, instead of one per row. (Two index probes; the DDL guard refuses such a rename.)
    filed_as := (SELECT e.table_name FROM ledgerlock.audit_event e WHERE e.table_oid = tbl
                 ORDER BY e.table_oid, e.row_key, e.seq LIMIT 1);
    -- A table dropped while protected (where no DDL guard refuses it): its rows are gone with it.
    IF NOT ledgerlock._relation_exists(tbl) THEN
        table_name := coalesce(filed_as, tbl::oid::text);
        code := 'table_dropped';
        problem := pg_catalog.format('%s was dropped while it was protected: the rows its trail records are gone '
                                     'with it', table_name);
        RETURN NEXT;
        RETURN;
    END IF;
    IF filed_as IS DISTINCT FROM tbl::text AND filed_as IS NOT NULL
       AND NOT EXISTS (SELECT FROM ledgerlock.audit_event e WHERE e.table_oid = tbl AND e.table_name = tbl::text) THEN
        code := 'table_renamed';
        problem := pg_catalog.format('%s was renamed since the trail recorded it: its events are filed under %s, so '
                                     'its rows cannot be held to them; rename it back to %s', tbl, filed_as, filed_as);
        RETURN NEXT;
        RETURN;
    END IF;
    FOR d IN SELECT * FROM ledgerlock._audit_row_diff(tbl, tbl, true) LOOP
        row_key := d.row_key;
        seq := d.seq;
        column_name := NULL;
        who := ledgerlock._audit_row_name(tbl, d.row_key, key_cols);
        IF d.seq IS NULL THEN
            code := 'row_unrecorded';
            problem := pg_catalog.format('%s: the row has no audit event (it was written behind the trail)', who);
            RETURN NEXT;
        ELSIF d.live IS NULL THEN
            code := 'row_missing';
            problem := pg_catalog.format('%s is missing: event seq %s (%s) recorded it and no event deleted it',
                                         who, d.seq, d.operation);
            RETURN NEXT;
        ELSIF d.recorded IS NULL THEN
            code := 'row_resurrected';
            problem := pg_catalog.format('%s exists, but event seq %s (%s) removed it', who, d.seq, d.operation);
            RETURN NEXT;
        ELSE
            BEGIN
                EXECUTE pg_catalog.format(
                    'SELECT pg_catalog.to_jsonb(pg_catalog.jsonb_populate_record(NULL::%1$s, $1)), '
                    'pg_catalog.to_jsonb(pg_catalog.jsonb_populate_record(NULL::%1$s, $2))', tbl)
                    INTO norm_live, norm_rec USING d.live, d.recorded;
            EXCEPTION WHEN undefined_table OR undefined_object OR undefined_function OR data_exception THEN
                -- a recorded value that no longer converts (a regclass naming a dropped table; a range an
                -- older release captured under the writer's DateStyle): compare as stored
                norm_live := d.live;
                norm_rec := d.recorded;
            END;
            -- the columns the event lacks, and those it holds that the table lacks: the table's shape changed
            absent := ARRAY(SELECT x FROM pg_catalog.jsonb_object_keys(d.live) AS x
                            WHERE NOT d.recorded OPERATOR(pg_catalog.?) x);
            FOR k IN SELECT x FROM pg_catalog.jsonb_object_keys(d.recorded) AS x
                     WHERE NOT d.live OPERATOR(pg_catalog.?) x LOOP
                gone := pg_catalog.jsonb_set(gone, ARRAY[k],
                            CASE WHEN (gone -> k ->> 'seq')::bigint < d.seq THEN gone -> k  -- the oldest event first
                                 ELSE pg_catalog.jsonb_build_object('who', who, 'seq', d.seq) END
                            OPERATOR(pg_catalog.||)
                            pg_catalog.jsonb_build_object('n', coalesce((gone -> k ->> 'n')::bigint, 0) + 1));
            END LOOP;
            FOR k IN SELECT x FROM pg_catalog.unnest(absent) AS x
                     WHERE pg_catalog.jsonb_typeof(norm_live -> x) IS DISTINCT FROM 'null'
                       -- a json column's image is its text (ledgerlock._audit_image), which reads "null" for null
                       AND NOT (d.live -> x OPERATOR(pg_catalog.=) '"null"'::jsonb
                                AND x = ANY (json_cols)) LOOP
                added := pg_catalog.jsonb_set(added, ARRAY[k],
                             CASE WHEN (added -> k ->> 'seq')::bigint < d.seq THEN added -> k
                                  ELSE pg_catalog.jsonb_build_object('who', who, 'seq', d.seq,
                                                                     'value', norm_live ->> k) END
                             OPERATOR(pg_catalog.||)
                             pg_catalog.jsonb_build_object('n', coalesce((added -> k ->> 'n')::bigint, 0) + 1));
            END LOOP;
            code := 'row_changed';
            FOR k IN SELECT a.attname::text FROM pg_catalog.pg_attribute a
                     WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped
                       AND a.attname::text <> ALL (absent)  -- reported once for the column, below
                       AND ((norm_live -> a.attname::text)::text IS DISTINCT FROM (norm_rec -> a.attname::text)::text
                            -- an attribute of a composite value, dropped since: the normalized values agree
                            OR (pg_catalog.jsonb_typeof(d.recorded -> a.attname::text) IN ('object', 'array')
                                AND ledgerlock._json_keys_lost(d.recorded -> a.attname::text,
                                                               norm_rec -> a.attname::text))
                            -- a value the column's type, changed under it, reads otherwise: the normalized
                            -- values agree
                            OR ((d.recorded -> a.attname::text)::text IS DISTINCT FROM (norm_rec -> a.attname::text)::text
                                AND ledgerlock._audit_reads_otherwise(a.atttypid, d.recorded -> a.attname::text,
                                                                      norm_rec -> a.attname::text)))
                       -- a regclass whose table was dropped since reads as its bare oid: the same reference
                       AND NOT (a.atttypid = 'pg_catalog.regclass'::pg_catalog.regtype
                                AND pg_catalog.jsonb_typeof(d.recorded -> a.attname::text) = 'string'
                                AND norm_live ->> a.attname::text ~ '^[0-9]+$'
                                AND pg_catalog.to_regclass(norm_rec ->> a.attname::text) IS NULL)
                     ORDER BY a.attnum LOOP
                column_name := k;
                problem := pg_catalog.format('%s: %s is %s in the table, %s in event seq %s', who, k,
                                             coalesce(norm_live ->> k, 'null'),
                                             coalesce(CASE WHEN ledgerlock._json_keys_lost(d.recorded -> k, norm_rec -> k)
                                                             OR ledgerlock._audit_reads_otherwise(
                                                                    (SELECT a.atttypid FROM pg_catalog.pg_attribute a
                                                                     WHERE a.attrelid = tbl AND a.attname = k),
                                                                    d.recorded -> k, norm_rec -> k)
                                                           THEN d.recorded ->> k ELSE norm_rec ->> k END, 'null'),
                                             d.seq);
                RETURN NEXT;
            END LOOP;
        END IF;
    END LOOP;
    row_key := NULL;
    FOR c IN SELECT e.key AS col, e.value AS v FROM pg_catalog.jsonb_each(gone) AS e ORDER BY 1 LOOP
        code := 'column_gone';
        column_name := c.col;
        seq := (c.v ->> 'seq')::bigint;
        problem := pg_catalog.format(
            '%s.%I is gone: the trail recorded it for %s row(s) (the oldest: %s, event seq %s), and the table no '
            'longer has it: it was dropped or renamed, and its recorded values can no longer be held to the table',
            tbl, c.col, c.v ->> 'n', c.v ->> 'who', c.v ->> 'seq');
        RETURN NEXT;
    END LOOP;
    FOR c IN SELECT e.key AS col, e.value AS v FROM pg_catalog.jsonb_each(added) AS e ORDER BY 1 LOOP
        code := 'column_unrecorded';
        column_name := c.col;
        seq := (c.v ->> 'seq')::bigint;
        problem := pg_catalog.format(
            '%s.%I holds values the trail never recorded in %s row(s) (the oldest: %s, %s there, not in event seq '
            '%s): the column was added since, or renamed to this name; once it is sure they are the values the '
            'column was added with, an admin records them: SELECT ledgerlock.record_added_columns(%L, <reason>)',
            tbl, c.col, c.v ->> 'n', c.v ->> 'who', coalesce(c.v ->> 'value', 'null'), c.v ->> 'seq', tbl::text);
        RETURN NEXT;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_data_problems(regclass) FROM PUBLIC;

-- Writes the trail shows inside a lock window while the trail shows that window active: an event between
-- the event that created the window's span and the one that removed it, on a row (old or new) of the
-- window's scope, ledger and dates, neither through an override of a soft lock nor changing only mutable
-- columns. The guards refuse such writes, so one in the trail means a guard was bypassed while the window
-- was active (its span deleted and restored, say). The lock's level is the one the trail shows at the time.
-- A row's scope is read from its image; for a table scoped by a parent row, it is the scope the capture
-- recorded on the event (the parent's at the time of the write). A row dated by its parent takes the
-- parent's date as it is now.
CREATE OR REPLACE FUNCTION ledgerlock._audit_window_problems(from_seq bigint)
RETURNS TABLE(code text, table_name text, row_key jsonb, column_name text, seq bigint, problem text)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH spans AS (
        SELECT f.image, f.seq AS from_seq,
               pg_catalog.lead(f.seq) OVER (PARTITION BY f.row_key ORDER BY f.seq, f.prio) AS to_seq
        FROM ledgerlock._audit_row_facts('ledgerlock.period_lock_span',
                                         ledgerlock._audit_table_oids('ledgerlock.period_lock_span'),
                                         ARRAY['scope', 'ledger', 'from_date']) f
    ), windows AS (
        SELECT s.from_seq, s.to_seq, s.image ->> 'scope' AS scope, s.image ->> 'ledger' AS ledger,
               (s.image ->> 'from_date')::date AS from_date, (s.image ->> 'to_date')::date AS to_date,
               (s.image ->> 'lock_id')::bigint AS lock_id
        FROM spans s WHERE s.image IS NOT NULL
    ), tables AS (
        SELECT p.tbl, p.tbl::text AS tname, p.scope_column::text AS scope_column,
               pg_catalog.split_part(p.scope_column::text, '.', 1) AS fk_column,
               p.date_column::text AS date_column, p.ledger,
               p.mutable_columns::text[] AS mutable_columns, ledgerlock._period_date_kind(p.tbl) AS date_kind
        FROM ledgerlock.protected_table p
    ), writes AS (
        SELECT e.seq, t.tbl AS table_oid, e.row_key, e.operation, e.old_row, e.new_row, e.override_id, t.ledger,
               t.mutable_columns, r.scope, r.day
        FROM ledgerlock.audit_event e
        JOIN tables t ON t.tname = e.table_name
        CROSS JOIN LATERAL (
            SELECT CASE WHEN t.scope_column IS NULL THEN '*'
                        WHEN pg_catalog.strpos(t.scope_column, '.') = 0 OR i.img ? t.scope_column
                        THEN coalesce(i.img ->> t.scope_column, '*')
                        -- a parent's scope: the one the capture recorded on the event, for the image it was
                        -- taken from (own) and for an old image that references the same parent; else the
                        -- parent's scope now
                        WHEN i.own OR (i.img -> t.fk_column) IS NOT DISTINCT FROM (e.new_row -> t.fk_column)
                        THEN coalesce(e.scope, ledgerlock._row_scope(t.tbl, i.img))
                        ELSE ledgerlock._row_scope(t.tbl, i.img) END AS scope,
                   CASE WHEN pg_catalog.strpos(t.date_column, '.') > 0 AND NOT i.img ? t.date_column
                        -- a date from a parent row: the parent's date now (its guard froze it while this
                        -- row lay in a locked window)
                        THEN ledgerlock._row_day(t.tbl, i.img)
                        WHEN t.date_kind = 'timestamptz'
                        THEN ((i.img ->> t.date_column)::timestamptz AT TIME ZONE 'UTC')::date
                        ELSE (i.img ->> t.date_column)::date END AS day
            FROM (VALUES (e.old_row, e.new_row IS NULL), (e.new_row, true)) AS i(img, own)
            WHERE i.img IS NOT NULL) r
        WHERE e.operation IN ('INSERT', 'UPDATE', 'DELETE')
          AND e.seq > (SELECT pg_catalog.min(w.from_seq) FROM windows w)
          AND e.seq >= _audit_window_problems.from_seq
    ), months AS (
        -- each window under every month in which its scope has writes (the month of a write's day, an
        -- infinite day being its own month): writes are then joined by (scope, month), so a write meets the
        -- few windows of its month, not every window of its scope (10,000 one-day windows in one scope made
        -- that join quadratic)
        SELECT w.*, m.month
        FROM windows w
        JOIN (SELECT DISTINCT x.scope, pg_catalog.date_trunc('month', x.day::timestamp)::date AS month
              FROM writes x) m
          ON m.scope = w.scope
         AND m.month BETWEEN pg_catalog.date_trunc('month', w.from_date::timestamp)::date AND w.to_date
    )
    SELECT DISTINCT ON (x.seq) 'window_write', x.table_oid::regclass::text, x.row_key, NULL::text, x.seq,
           pg_catalog.format('event seq %s wrote %s into %s of scope %s while lock #%s (%s) held it '
                             '(its window was recorded at event seq %s): a guard was bypassed',
                             x.seq, ledgerlock._audit_row_name(x.table_oid::regclass, x.row_key),
                             ledgerlock._period_text(w.from_date, w.to_date), w.scope, w.lock_id,
                             coalesce(lv.level, 'level unknown'), w.from_seq)
    FROM writes x
    JOIN months w ON w.scope = x.scope AND w.month = pg_catalog.date_trunc('month', x.day::timestamp)::date
                  AND (w.ledger = '*' OR w.ledger = x.ledger)
                  AND x.day BETWEEN w.from_date AND w.to_date
                  AND x.seq > w.from_seq AND (w.to_seq IS NULL OR x.seq < w.to_seq)
    LEFT JOIN LATERAL (
        SELECT l.new_row ->> 'level' AS level FROM ledgerlock.audit_event l
        WHERE l.table_name = 'ledgerlock.period_lock'
          AND l.row_key = pg_catalog.jsonb_build_object('id', w.lock_id) AND l.seq < x.seq AND l.new_row IS NOT NULL
        ORDER BY l.seq DESC LIMIT 1) lv ON true
    WHERE NOT (x.override_id IS NOT NULL AND lv.level = 'soft')
      AND NOT (x.operation = 'UPDATE' AND NOT EXISTS (
              SELECT FROM pg_catalog.jsonb_each(x.new_row) AS n
              WHERE n.value IS DISTINCT FROM x.old_row -> n.key AND NOT n.key = ANY (x.mutable_columns)))
    ORDER BY x.seq
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_window_problems(bigint) FROM PUBLIC;

-- The number of a series that a numbered column's value carries (null: not of this series, or no number).
-- No SET clause: inlined into the callers' queries; only ledgerlock's pinned functions execute it.
CREATE OR REPLACE FUNCTION ledgerlock._audit_series_number(v text, prefix text, suffix text)
RETURNS bigint
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN pg_catalog.left(v, pg_catalog.length(prefix)) OPERATOR(pg_catalog.=) prefix
                 AND pg_catalog.right(v, pg_catalog.length(suffix)) OPERATOR(pg_catalog.=) suffix
                 AND pg_catalog.substr(v, pg_catalog.length(prefix) + 1,
                                       pg_catalog.length(v) - pg_catalog.length(prefix) - pg_catalog.length(suffix))
                     OPERATOR(pg_catalog.~) '^[0-9]{1,18}$'
                THEN pg_catalog.substr(v, pg_catalog.length(prefix) + 1,
                                       pg_catalog.length(v) - pg_catalog.length(prefix)
                                       - pg_catalog.length(suffix))::bigint END
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_series_number(text, text, text) FROM PUBLIC;

-- A series' key in ledgerlock._audit_series_maxima: the prefix's length and the prefix and suffix, which
-- it tells apart.
CREATE OR REPLACE FUNCTION ledgerlock._audit_series_key(prefix text, suffix text)
RETURNS text
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
AS $$
    SELECT pg_catalog.length(prefix)::text OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||) prefix
           OPERATOR(pg_catalog.||) suffix
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_series_key(text, text) FROM PUBLIC;

-- The highest number of each series among values (a numbered column's values, as text: the live rows or
-- the events' new images), with the event that first carried it (seq; null for live rows): a jsonb object
-- keyed by ledgerlock._audit_series_key. A value belongs to series (prefix, suffix) when it is prefix, 1 to 18
-- digits, suffix (ledgerlock._audit_series_number); so it is cut at each (prefix length, suffix length) the
-- table's counters have (lps, lss: few, however many series) and the pieces name its series. One pass over
-- the values, whatever the number of series: a pass per series made a verification of 4,000 series and
-- 4,000 events take 5 s, and from a digest read the whole table once per series.
CREATE OR REPLACE FUNCTION ledgerlock._audit_series_maxima(source text, lps integer[], lss integer[])
RETURNS jsonb
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    maxima jsonb;
BEGIN
    -- source: a query of (seq, v) rows, put together by the caller from names it quoted
    EXECUTE pg_catalog.format($q$
        SELECT pg_catalog.jsonb_object_agg(y.k, pg_catalog.jsonb_build_array(y.m[1], -y.m[2]))
        -- per series, the highest number and, of the events that carried it, the first: the greatest of
        -- [number, -seq], hashed by series (no sort of the values)
        FROM (SELECT x.k, pg_catalog.max(ARRAY[x.n, -x.seq]) AS m
              FROM (SELECT s.seq,
                           ledgerlock._audit_series_key(pg_catalog.left(s.v, sh.lp),
                                                        pg_catalog.right(s.v, sh.ls)) AS k,
                           CASE WHEN pg_catalog.length(s.v) > sh.lp + sh.ls
                                THEN ledgerlock._audit_series_number(s.v, pg_catalog.left(s.v, sh.lp),
                                                                     pg_catalog.right(s.v, sh.ls)) END AS n
                    FROM (%s) AS s
                    CROSS JOIN ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) AS sh(lp, ls)
                    WHERE s.v IS NOT NULL) x
              WHERE x.n IS NOT NULL
              GROUP BY x.k) y
        $q$, source)
        INTO maxima USING lps, lss;
    RETURN coalesce(maxima, '{}');
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_series_maxima(text, integer[], integer[]) FROM PUBLIC;

-- Number counters against the trail: each series' counter must stand at the highest final number the
-- trail shows issued in it (a counter wound back would issue a number twice; one ahead left a gap).
-- from_seq > 0 (from a digest, whose verification found every counter right): a counter that stands at
-- the highest number among the live rows (which the books check proves are their latest images) and the
-- events from from_seq on is right, with no look at older events; any other is checked against the whole
-- trail, as from_seq = 0 checks every counter. Each source is read once per table, not once per series
-- (ledgerlock._audit_series_maxima).
CREATE OR REPLACE FUNCTION ledgerlock._audit_counter_problems(from_seq bigint)
RETURNS TABLE(code text, table_name text, row_key jsonb, column_name text, seq bigint, problem text)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c record;
    t record;
    k text;
    events text;
    issued_all jsonb;
    live jsonb;
    recent jsonb;
    issued bigint;
    issued_seq bigint;
BEGIN
    -- A committed counter has no open range (a statement's settle step closes every range it opened before
    -- the statement ends) and is not below 0. Nothing but ledgerlock's numbering writes counters, and it
    -- writes them so; the table has no CHECK constraints for it, because PostgreSQL would prepare them again
    -- in every finalization (migration 0038). Anything else was written past the numbering.
    FOR c IN SELECT n.tbl, n.prefix, n.suffix, n.last_value, n.open_from, n.open_kind, p.number_column::text AS col
             FROM ledgerlock.number_counter n
             LEFT JOIN ledgerlock.protected_table p ON p.tbl = n.tbl
             WHERE n.open_from IS NOT NULL OR n.open_kind IS NOT NULL OR n.last_value < 0
             ORDER BY n.tbl::text, n.prefix, n.suffix LOOP
        code := 'counter_state'; table_name := c.tbl::text; column_name := c.col; seq := NULL;
        problem := pg_catalog.format('%s: the counter of series %s{SEQ}%s is at %s%s, which no finalization leaves '
                                     'behind: it was written past ledgerlock''s numbering', c.tbl, c.prefix,
                                     c.suffix, c.last_value,
                                     CASE WHEN c.open_from IS NOT NULL OR c.open_kind IS NOT NULL
                                          THEN pg_catalog.format(' with a range open from %s (%s)',
                                                                 coalesce(c.open_from::text, 'nowhere'),
                                                                 coalesce(c.open_kind, 'no kind'))
                                          ELSE '' END);
        RETURN NEXT;
    END LOOP;
    -- per numbered table, the pairs of a prefix length and a suffix length its counters have
    FOR t IN SELECT x.tbl, x.col, pg_catalog.array_agg(x.lp ORDER BY x.lp, x.ls) AS lps,
                    pg_catalog.array_agg(x.ls ORDER BY x.lp, x.ls) AS lss
             FROM (SELECT DISTINCT n.tbl, p.number_column::text AS col, pg_catalog.length(n.prefix) AS lp,
                          pg_catalog.length(n.suffix) AS ls
                   FROM ledgerlock.number_counter n
                   JOIN ledgerlock.protected_table p ON p.tbl = n.tbl AND p.number_column IS NOT NULL
                   -- (a table dropped while protected is one problem of its own: table_dropped)
                   WHERE n.open_from IS NULL AND ledgerlock._relation_exists(n.tbl)) x
             GROUP BY x.tbl, x.col
             ORDER BY x.tbl::text LOOP
        events := pg_catalog.format('SELECT e.seq, e.new_row OPERATOR(pg_catalog.->>) %L AS v '
                                    'FROM ledgerlock.audit_event e WHERE e.table_name = %L '
                                    'AND e.operation IN (''INSERT'', ''UPDATE'', ''BASELINE'')', t.col, t.tbl::text);
        issued_all := NULL;
        IF from_seq > 0 THEN
            live := ledgerlock._audit_series_maxima(
                pg_catalog.format('SELECT NULL::bigint AS seq, t.%I::text AS v FROM %s AS t', t.col, t.tbl),
                t.lps, t.lss);
            recent := ledgerlock._audit_series_maxima(events || ' AND e.seq >= ' || from_seq, t.lps, t.lss);
        END IF;
        FOR c IN SELECT n.prefix, n.suffix, n.last_value
                 FROM ledgerlock.number_counter n
                 WHERE n.tbl = t.tbl AND n.open_from IS NULL
                 ORDER BY n.prefix, n.suffix LOOP
            k := ledgerlock._audit_series_key(c.prefix, c.suffix);
            IF from_seq > 0 THEN
                CONTINUE WHEN c.last_value = coalesce(greatest((live -> k ->> 0)::bigint,
                                                               (recent -> k ->> 0)::bigint), 0);
            END IF;
            IF issued_all IS NULL THEN
                issued_all := ledgerlock._audit_series_maxima(events, t.lps, t.lss);
            END IF;
            issued := (issued_all -> k ->> 0)::bigint;
            issued_seq := (issued_all -> k ->> 1)::bigint;
            CONTINUE WHEN c.last_value = coalesce(issued, 0);
            code := 'counter_mismatch'; table_name := t.tbl::text; column_name := t.col; seq := issued_seq;
            problem := pg_catalog.format('%s: the counter of series %s{SEQ}%s is at %s, the highest number the '
                                         'trail shows issued in it is %s%s', t.tbl, c.prefix, c.suffix,
                                         c.last_value, coalesce(issued, 0), ' (event seq ' || issued_seq || ')');
            RETURN NEXT;
        END LOOP;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_counter_problems(bigint) FROM PUBLIC;

-- Every discrepancy between the books and the trail (data, ledgerlock's state, lock windows, counters),
-- read in one snapshot (a STABLE function runs every query on its caller's snapshot). Writes into lock
-- windows are looked for among events from from_seq on (earlier ones are fixed by a verified digest).
CREATE OR REPLACE FUNCTION ledgerlock._audit_discrepancies(from_seq bigint)
RETURNS TABLE(code text, table_name text, row_key jsonb, column_name text, seq bigint, problem text)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t regclass;
BEGIN
    -- a problem quotes the application's values and keys: shown with their control characters escaped
    -- (ledgerlock._shown), so that none erases or prints over a finding on the auditor's terminal
    FOR t IN SELECT p.tbl FROM ledgerlock.protected_table p ORDER BY p.tbl::text LOOP
        RETURN QUERY SELECT x.code, x.table_name, x.row_key, x.column_name, x.seq, ledgerlock._shown(x.problem)
                     FROM ledgerlock._audit_data_problems(t) x;
    END LOOP;
    FOR t IN SELECT u.t FROM pg_catalog.unnest(ledgerlock._audit_state_tables()
                                               || 'ledgerlock.lock_event'::regclass) AS u(t) LOOP
        RETURN QUERY SELECT x.code, x.table_name, x.row_key, x.column_name, x.seq, ledgerlock._shown(x.problem)
                     FROM ledgerlock._audit_data_problems(t) x;
    END LOOP;
    RETURN QUERY SELECT x.code, x.table_name, x.row_key, x.column_name, x.seq, ledgerlock._shown(x.problem)
                 FROM ledgerlock._audit_window_problems(from_seq) x;
    RETURN QUERY SELECT x.code, x.table_name, x.row_key, x.column_name, x.seq, ledgerlock._shown(x.problem)
                 FROM ledgerlock._audit_counter_problems(from_seq) x;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_discrepancies(bigint) FROM PUBLIC;

-- The same, for people and scripts: every discrepancy with its code, table, key and column.
CREATE OR REPLACE FUNCTION ledgerlock.audit_discrepancies()
RETURNS TABLE(code text, table_name text, row_key jsonb, column_name text, seq bigint, problem text)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
AS $$
BEGIN
    PERFORM ledgerlock._require_capability('auditor', 'audit_discrepancies');
    IF ledgerlock._granted_scopes() IS NULL THEN
        RETURN QUERY SELECT * FROM ledgerlock._audit_discrepancies(0);
        RETURN;
    END IF;
    -- a scope-limited role: the problems of its scopes, and how many others there are
    RETURN QUERY
        WITH d AS (SELECT x.*, ledgerlock._audit_problem_visible(x.seq, ledgerlock._granted_scopes()) AS visible
                   FROM ledgerlock._audit_discrepancies(0) x)
        SELECT d.code, d.table_name, d.row_key, d.column_name, d.seq, d.problem FROM d WHERE d.visible
        UNION ALL
        SELECT d.code, d.table_name, NULL, d.column_name, NULL,
               ledgerlock._audit_withheld(1, d.code, d.table_name, d.column_name)
        FROM d WHERE NOT d.visible AND d.row_key IS NULL
        UNION ALL
        SELECT 'withheld', NULL, NULL, NULL, NULL, ledgerlock._audit_withheld(pg_catalog.count(*), NULL, NULL, NULL)
        FROM d WHERE NOT d.visible AND d.row_key IS NOT NULL HAVING pg_catalog.count(*) > 0;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.audit_discrepancies() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.audit_discrepancies()
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

-- Account for the rows of rel (tbl or one of its partitions) that the trail does not: one BASELINE event
-- per row whose image is not its latest fact (with all_facts, also one per fact whose row is gone, with
-- the row as old_row). Run when a table becomes protected (rows already there), when a partition joins one,
-- and once for tables protected before the trail covered data. Set-based, like the capture: one
-- INSERT ... SELECT.
CREATE OR REPLACE FUNCTION ledgerlock._audit_baseline(tbl regclass, rel regclass, all_facts boolean)
RETURNS bigint
LANGUAGE plpgsql
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
    scope_col text := coalesce(
        (SELECT p.scope_column::text FROM ledgerlock.protected_table p WHERE p.tbl = _audit_baseline.tbl),
        (SELECT 'scope' FROM pg_catalog.pg_attribute a
         WHERE a.attrelid = tbl AND a.attname = 'scope' AND NOT a.attisdropped));
    protected boolean := EXISTS (SELECT FROM ledgerlock.protected_table p WHERE p.tbl = _audit_baseline.tbl);
    -- a parent-scoped table's rows are filed under their parents' scopes, as the capture files them: read
    -- for every row at once (a row gone from the table, rarely here, reads its own parent)
    parent_scopes jsonb := ledgerlock._parent_scopes_of(tbl, rel::text);
    ev_at timestamptz := pg_catalog.now();
    ev_txid xid8 := pg_catalog.pg_current_xact_id();
    tbl_name text := tbl::text;
    actor text := nullif(pg_catalog.current_setting('ledgerlock.actor', true), '');
    reason text := nullif(pg_catalog.current_setting('ledgerlock.reason', true), '');
    context text := nullif(pg_catalog.current_setting('ledgerlock.context', true), '');
    n bigint;
BEGIN
    INSERT INTO ledgerlock.audit_event (seq, at, txid, table_oid, table_name, row_key, scope, operation,
        old_row, new_row, db_user, actor, reason, context, lock_id, override_id, details, event_hash)
    SELECT x.seq, ev_at, ev_txid, tbl, tbl_name, x.row_key, x.scope, 'BASELINE', x.o, x.r, session_user,
           actor, reason, context, NULL, NULL, NULL,
           ledgerlock._audit_event_hash(x.seq, ev_at, ev_txid, tbl_name, x.row_key, x.scope, 'BASELINE', x.o, x.r,
                                        session_user, actor, reason, context, NULL, NULL, NULL)
    FROM (SELECT pg_catalog.nextval('ledgerlock.audit_event_seq') AS seq, d.row_key,
                 CASE WHEN d.live IS NULL THEN d.recorded END AS o, d.live AS r,
                 ledgerlock._audit_scope(tbl, coalesce(d.live, d.recorded), coalesce(scope_col, ''),
                                         pg_catalog.strpos(coalesce(scope_col, ''), '.') > 0, protected,
                                         CASE WHEN d.live IS NOT NULL THEN parent_scopes END) AS scope
          FROM ledgerlock._audit_row_diff(tbl, rel, all_facts) d) x;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._audit_baseline(regclass, regclass, boolean) FROM PUBLIC;

-- Record in the trail the values of columns added to a protected table since some of its rows were last
-- recorded (verification reports them as column_unrecorded): one BASELINE event per such row, with the row
-- as it is, carrying the reason. Only rows that match their latest event in every column the event has: a
-- row changed behind the trail stays reported (row_changed), whatever columns were added. The table is
-- locked against writes (SHARE) while it is read, so no write slips between the read and the events.
-- Returns the number of rows recorded. Run it after ALTER TABLE ... ADD COLUMN ... DEFAULT on a protected
-- table (docs/audit.md, "Changing a protected table's columns").
CREATE OR REPLACE FUNCTION ledgerlock.record_added_columns(tbl regclass, reason text)
RETURNS bigint
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
    cfg ledgerlock.protected_table;
    ev_at timestamptz := pg_catalog.now();
    ev_txid xid8 := pg_catalog.pg_current_xact_id();
    actor text := nullif(pg_catalog.current_setting('ledgerlock.actor', true), '');
    context text := nullif(pg_catalog.current_setting('ledgerlock.context', true), '');
    parent_scopes jsonb;
    n bigint;
BEGIN
    PERFORM ledgerlock._require_capability('admin', 'record_added_columns');
    PERFORM ledgerlock._require_unrestricted('record_added_columns');
    PERFORM ledgerlock._require_value(tbl IS NOT NULL, 'record_added_columns', 'the protected table');
    reason := ledgerlock._require_reason(reason, 'record_added_columns');
    cfg := ledgerlock._config(tbl);
    IF cfg.tbl IS DISTINCT FROM tbl THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('record_added_columns: %s is not a protected table', tbl),
            HINT = CASE WHEN cfg.tbl IS NOT NULL THEN pg_catalog.format('name the protected table, %s', cfg.tbl) END;
    END IF;
    EXECUTE pg_catalog.format('LOCK TABLE %s IN SHARE MODE', tbl);
    parent_scopes := ledgerlock._parent_scopes_of(tbl, tbl::text);  -- as _audit_baseline
    EXECUTE pg_catalog.format($q$
        INSERT INTO ledgerlock.audit_event (seq, at, txid, table_oid, table_name, row_key, scope, operation,
            old_row, new_row, db_user, actor, reason, context, lock_id, override_id, details, event_hash)
        SELECT x.seq, $1, $2, $3, $4, x.row_key, x.scope, 'BASELINE', NULL, x.live, session_user, $5, $6, $7,
               NULL, NULL, x.details,
               ledgerlock._audit_event_hash(x.seq, $1, $2, $4, x.row_key, x.scope, 'BASELINE', NULL, x.live,
                                            session_user, $5, $6, $7, NULL, NULL, x.details)
        FROM (SELECT pg_catalog.nextval('ledgerlock.audit_event_seq') AS seq, d.row_key, d.live,
                     ledgerlock._audit_scope($3, d.live, $8, pg_catalog.strpos($8, '.') > 0, true, $9) AS scope,
                     pg_catalog.jsonb_build_object('recorded_columns', pg_catalog.to_jsonb(a.absent)) AS details
              FROM ledgerlock._audit_row_diff($3, $3, false) AS d
              CROSS JOIN LATERAL (SELECT ARRAY(SELECT k FROM pg_catalog.jsonb_object_keys(d.live) AS k
                                               WHERE NOT d.recorded OPERATOR(pg_catalog.?) k ORDER BY k) AS absent) a
              -- the recorded row read into the table's type as it is now
              CROSS JOIN LATERAL (SELECT pg_catalog.to_jsonb(pg_catalog.jsonb_populate_record(NULL::%1$s, d.recorded))
                                         AS norm_rec) n
              WHERE d.live IS NOT NULL AND d.recorded IS NOT NULL AND pg_catalog.cardinality(a.absent) > 0
                AND NOT EXISTS (SELECT FROM pg_catalog.jsonb_object_keys(d.recorded) AS k
                                WHERE NOT d.live OPERATOR(pg_catalog.?) k)
                -- every column the event has, exactly as it has it (the text of the values as the column's
                -- type prints them: 1.0 and 1.00 differ)
                AND n.norm_rec::text
                    = pg_catalog.to_jsonb(pg_catalog.jsonb_populate_record(NULL::%1$s,
                          d.live OPERATOR(pg_catalog.-) a.absent))::text
                -- and no attribute of a composite value dropped since (which reading it into the type hides)
                AND NOT (%2$L AND ledgerlock._json_keys_lost(d.recorded, n.norm_rec))
                -- nor a value its column's type, changed since, reads otherwise (which reading it hides too)
                AND ((n.norm_rec OPERATOR(pg_catalog.-) a.absent)::text = d.recorded::text  -- read as recorded
                     OR NOT EXISTS (SELECT FROM pg_catalog.jsonb_each(d.recorded) AS e
                                JOIN pg_catalog.pg_attribute t ON t.attrelid = $3 AND t.attname = e.key
                                                              AND NOT t.attisdropped
                                WHERE e.value::text IS DISTINCT FROM (n.norm_rec -> e.key)::text
                                  AND ledgerlock._audit_reads_otherwise(t.atttypid, e.value, n.norm_rec -> e.key)))
              ORDER BY d.row_key) x
        $q$, tbl, ledgerlock._holds_composite(tbl))
        USING ev_at, ev_txid, tbl, tbl::text, actor, reason, context, coalesce(cfg.scope_column::text, ''),
              parent_scopes;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.record_added_columns(regclass, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.record_added_columns(regclass, text) TO ledgerlock_admin;

