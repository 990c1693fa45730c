-- Logical replication (docs/replication.md). A subscriber applies its publisher's books verbatim: the
-- protected tables and ledgerlock's own tables arrive as the publisher wrote them (numbers, counters, locks,
-- events, chain). PostgreSQL runs the apply and table-sync workers with session_replication_role = replica,
-- which fires ENABLE ALWAYS and ENABLE REPLICA triggers only; so on a database marked as subscriber every
-- ll_NN_ guard is ENABLE (origin): the workers fire none, local sessions fire all. promote_subscriber() turns
-- them back to ENABLE ALWAYS at cut-over.

-- Is this database a subscriber (ledgerlock.replication_role holds its row)?
CREATE OR REPLACE FUNCTION ledgerlock._is_subscriber()
RETURNS boolean
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT FROM ledgerlock.replication_role r WHERE r.role = 'subscriber')
$$;
REVOKE ALL ON FUNCTION ledgerlock._is_subscriber() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._is_subscriber() TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

-- The pg_trigger.tgenabled every guard has here: 'A' (ALWAYS), or 'O' (origin) on a subscriber.
CREATE OR REPLACE FUNCTION ledgerlock._guard_tgenabled()
RETURNS "char"
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN ledgerlock._is_subscriber() THEN 'O' ELSE 'A' END::"char"
$$;
REVOKE ALL ON FUNCTION ledgerlock._guard_tgenabled() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._guard_tgenabled() TO ledgerlock_admin, ledgerlock_auditor;

-- The ALTER TABLE clause that gives a guard that state.
CREATE OR REPLACE FUNCTION ledgerlock._guard_enable_clause()
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN ledgerlock._is_subscriber() THEN 'ENABLE' ELSE 'ENABLE ALWAYS' END
$$;
REVOKE ALL ON FUNCTION ledgerlock._guard_enable_clause() FROM PUBLIC;

-- ledgerlock's tables that hold books and replicate with the data: the registry, numbering, locks and their
-- history, close state, the trail and its chain. The rest stay local to each database: installed code and
-- its fingerprints, the guards' oids, DDL permits, the mark clock, the static fence and gate tables, yoyo's
-- bookkeeping, this database's replication role and the same-transaction header marks (each valid only in
-- the server life that wrote it). A list, not a pattern: a new table is a decision.
CREATE OR REPLACE FUNCTION ledgerlock._replicated_own_tables()
RETURNS regclass[]
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ARRAY['ledgerlock.protected_table', 'ledgerlock.reference_rule', 'ledgerlock.number_counter',
                 'ledgerlock.number_setting', 'ledgerlock.number_format_history', 'ledgerlock.period_lock',
                 'ledgerlock.period_lock_span', 'ledgerlock.period_override', 'ledgerlock.scope_grant',
                 'ledgerlock.lock_event', 'ledgerlock.fiscal_year_start', 'ledgerlock.close_task',
                 'ledgerlock.close_setting', 'ledgerlock.unlock_request', 'ledgerlock.audit_event',
                 'ledgerlock.audit_chain']::regclass[]
$$;
REVOKE ALL ON FUNCTION ledgerlock._replicated_own_tables() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._replicated_own_tables() TO ledgerlock_admin, ledgerlock_auditor;

-- Every table a publication of these books must carry: the protected tables (with their partitions'
-- root), the tables R4 rules name, and ledgerlock's own book tables.
-- `CREATE PUBLICATION books FOR TABLE <these>` on the publisher; the same tables exist on the subscriber.
CREATE OR REPLACE FUNCTION ledgerlock.publication_tables()
RETURNS SETOF regclass
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
AS $$
    SELECT DISTINCT t FROM (
        SELECT p.tbl FROM ledgerlock.protected_table p
        UNION SELECT r.parent FROM ledgerlock.reference_rule r
        UNION SELECT r.child FROM ledgerlock.reference_rule r
        UNION SELECT pg_catalog.unnest(ledgerlock._replicated_own_tables())) AS u(t)
    ORDER BY 1
$$;
REVOKE ALL ON FUNCTION ledgerlock.publication_tables() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.publication_tables() TO ledgerlock_admin, ledgerlock_auditor;

-- A local write to a replicated table of a subscriber (a protected table, or one of ledgerlock's book tables,
-- which every local lock, protect or grant writes) would fork the books from the publisher's: its number,
-- counter, lock id and audit event would collide with the next replicated ones, and apply would stall. On a
-- protected table this trigger is AFTER ROW, so it sorts after the ll_NN_ guards and the rules refuse first;
-- on ledgerlock's tables it is BEFORE ROW, ahead of any key conflict. Not an ll_NN_ guard: it belongs to the
-- subscriber role, not to a rule, and promote_subscriber() drops it. ledgerlock's own installers pass
-- (ledgerlock._subscriber_permit).
CREATE OR REPLACE FUNCTION ledgerlock.guard_subscriber_write()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER  -- reads ledgerlock.ddl_permit, which clients cannot
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
AS $$
BEGIN
    IF ledgerlock._ddl_permitted('ledgerlock.replication_role'::regclass) THEN
        RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;  -- ledgerlock's installers (_subscriber_permit)
    END IF;
    RAISE EXCEPTION USING ERRCODE = '25006',
        MESSAGE = pg_catalog.format('%s of %s is refused on a subscriber: its books are replicated from the '
                                    'publisher', TG_OP, TG_RELID::regclass),
        HINT = 'write on the publisher; at cut-over run SELECT ledgerlock.promote_subscriber() here';
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.guard_subscriber_write() FROM PUBLIC;

-- Let ledgerlock's own installers (reinstall_guards) write its tables on a subscriber in this transaction:
-- what they write there (a number setting that exists, the same format) is what the publisher's did. A DDL
-- permit row, which only the owner of schema ledgerlock can write: no client setting opens it.
CREATE OR REPLACE FUNCTION ledgerlock._subscriber_permit(granted boolean)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ledgerlock._ddl_permit('ledgerlock.replication_role'::regclass, granted)
$$;
REVOKE ALL ON FUNCTION ledgerlock._subscriber_permit(boolean) FROM PUBLIC;

-- Refuse (55000) while a subscription of this database has not finished its initial copy of every table
-- (pg_subscription_rel.srsubstate other than 'r', ready): guards installed from a registry still being copied
-- would miss the rules not yet arrived, silently, and a promoted half-copy would number after missing rows.
-- Each table is copied by its own table-sync worker, in no fixed order, so the protected rows being there
-- says nothing of the registry.
CREATE OR REPLACE FUNCTION ledgerlock._require_initial_copy_done(action text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    pending text;
    sub name;
BEGIN
    SELECT pg_catalog.string_agg(pg_catalog.format('%s (%s)', sr.srrelid::regclass,
                                     CASE sr.srsubstate WHEN 'i' THEN 'not started' WHEN 'd' THEN 'copying'
                                          ELSE 'catching up' END), ', ' ORDER BY sr.srrelid::regclass::text),
           pg_catalog.min(s.subname)
    INTO pending, sub
    FROM pg_catalog.pg_subscription_rel sr
    JOIN pg_catalog.pg_subscription s ON s.oid = sr.srsubid
    WHERE s.subdbid = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database())
      AND sr.srsubstate <> 'r';
    IF pending IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '55000',
            MESSAGE = pg_catalog.format('%s waits for the initial copy of subscription %s: %s', action, sub,
                                        pending),
            HINT = 'run it again when every table of the subscription is ready (SELECT srrelid::regclass, '
                   'srsubstate FROM pg_subscription_rel: all ''r''); ledgerlock replication status lists them';
    END IF;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._require_initial_copy_done(text) FROM PUBLIC;

-- Give every guard the state this database's role asks for (ledgerlock.reinstall_guards() ends with it, so
-- guards re-created by migrate keep it), and keep the subscriber's write barrier on exactly the replicated
-- tables (ledgerlock.publication_tables()) while it is a subscriber.
CREATE OR REPLACE FUNCTION ledgerlock._sync_guard_enable_mode()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    want "char" := ledgerlock._guard_tgenabled();
    r record;
BEGIN
    IF want = 'O' THEN  -- a subscriber: the guards are being installed from the replicated registry
        PERFORM ledgerlock._require_initial_copy_done('installing the guards of a subscriber');
    END IF;
    PERFORM ledgerlock._ddl_permit('ledgerlock'::regnamespace, true);  -- the DDL guard: ledgerlock's own tables
    FOR r IN
        SELECT t.tgrelid::regclass AS rel, t.tgname FROM pg_catalog.pg_trigger t
        WHERE t.tgname ~ '^ll_[0-9]{2}_' AND NOT t.tgisinternal AND t.tgparentid = 0 AND t.tgenabled <> want
    LOOP
        PERFORM ledgerlock._ddl_permit(r.rel, true);
        EXECUTE pg_catalog.format('ALTER TABLE %s %s TRIGGER %I', r.rel, ledgerlock._guard_enable_clause(),
                                  r.tgname);
        PERFORM ledgerlock._ddl_permit(r.rel, false);
    END LOOP;
    FOR r IN
        SELECT t.tgrelid::regclass AS rel FROM pg_catalog.pg_trigger t
        WHERE t.tgname = 'll_subscriber_write' AND NOT t.tgisinternal AND t.tgparentid = 0
          AND (want = 'A' OR t.tgrelid NOT IN (SELECT ledgerlock.publication_tables()))
    LOOP
        PERFORM ledgerlock._ddl_permit(r.rel, true);
        EXECUTE pg_catalog.format('DROP TRIGGER ll_subscriber_write ON %s', r.rel);
        PERFORM ledgerlock._ddl_permit(r.rel, false);
    END LOOP;
    IF want = 'O' THEN
        FOR r IN
            SELECT p.t AS rel FROM ledgerlock.publication_tables() AS p(t)
            WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_trigger t
                              WHERE t.tgrelid = p.t AND t.tgname = 'll_subscriber_write')
        LOOP
            PERFORM ledgerlock._ddl_permit(r.rel, true);
            -- BEFORE on ledgerlock's tables: a local lock or grant must meet this sentence, not a key taken
            -- from a sequence the publisher has already used
            EXECUTE pg_catalog.format('CREATE TRIGGER ll_subscriber_write %s INSERT OR UPDATE OR DELETE ON %s '
                                      'FOR EACH ROW EXECUTE FUNCTION ledgerlock.guard_subscriber_write()',
                                      CASE WHEN r.rel = ANY (ledgerlock._replicated_own_tables()) THEN 'BEFORE'
                                           ELSE 'AFTER' END, r.rel);
            PERFORM ledgerlock._ddl_permit(r.rel, false);
        END LOOP;
    END IF;
    PERFORM ledgerlock._ddl_permit('ledgerlock'::regnamespace, false);
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._sync_guard_enable_mode() FROM PUBLIC;

-- Mark this database as the subscriber of another ledgerlock database, before CREATE SUBSCRIPTION: its
-- guards become ENABLE (origin), and ledgerlock's book tables are emptied of what the install wrote (the
-- baseline event, default settings), so that the initial copy brings the publisher's rows without a
-- conflict. Refused on a database that already keeps books of its own.
CREATE OR REPLACE FUNCTION ledgerlock.become_subscriber()
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
AS $$
DECLARE
    t regclass;
BEGIN
    PERFORM ledgerlock._require_capability('admin', 'become_subscriber');
    PERFORM ledgerlock._require_unrestricted('become_subscriber');
    IF ledgerlock._is_subscriber() THEN
        RETURN;
    END IF;
    IF EXISTS (SELECT FROM ledgerlock.protected_table) OR EXISTS (SELECT FROM ledgerlock.lock_event)
       OR EXISTS (SELECT FROM ledgerlock.period_lock) THEN
        RAISE EXCEPTION USING ERRCODE = '55000',
            MESSAGE = 'this database keeps books of its own (protected tables or period locks): it cannot '
                      'become the subscriber of another ledgerlock database',
            HINT = 'subscribe a new database: create the schema there, run ledgerlock migrate, then '
                   'SELECT ledgerlock.become_subscriber()';
    END IF;
    FOREACH t IN ARRAY ledgerlock._replicated_own_tables() LOOP
        CONTINUE WHEN t IN ('ledgerlock.audit_event'::regclass, 'ledgerlock.audit_chain'::regclass);
        EXECUTE pg_catalog.format('DELETE FROM %s', t);
    END LOOP;
    -- the trail goes last (emptying the settings above was recorded in it); its append-only guards step
    -- aside for this one statement each, in this transaction
    PERFORM ledgerlock._ddl_permit('ledgerlock'::regnamespace, true);  -- the DDL guard: ledgerlock's own tables
    FOREACH t IN ARRAY ARRAY['ledgerlock.audit_chain', 'ledgerlock.audit_event']::regclass[] LOOP
        EXECUTE pg_catalog.format('ALTER TABLE %s DISABLE TRIGGER ll_90_append_only', t);
        EXECUTE pg_catalog.format('DELETE FROM %s', t);
        EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ALWAYS TRIGGER ll_90_append_only', t);
    END LOOP;
    PERFORM ledgerlock._ddl_permit('ledgerlock'::regnamespace, false);
    INSERT INTO ledgerlock.replication_role (role) VALUES ('subscriber');
    PERFORM ledgerlock._sync_guard_enable_mode();
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.become_subscriber() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.become_subscriber() TO ledgerlock_admin;

-- Cut-over: the publisher has stopped and its last changes are applied; the subscription is disabled or
-- dropped. The guards become ENABLE ALWAYS again (re-installed from the replicated registry, with this
-- database's own lock marks), and the sequences, which logical replication does not carry, continue after
-- the replicated rows: the audit seq, every identity of ledgerlock's tables, the draft numbers. Returns
-- what it advanced.
CREATE OR REPLACE FUNCTION ledgerlock.promote_subscriber()
RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
SET standard_conforming_strings = on  -- its literals hold backslashes
AS $$
DECLARE
    sub name;
    r record;
    top bigint;
    done jsonb := '{}';
BEGIN
    PERFORM ledgerlock._require_capability('admin', 'promote_subscriber');
    PERFORM ledgerlock._require_unrestricted('promote_subscriber');
    IF NOT ledgerlock._is_subscriber() THEN
        RAISE EXCEPTION USING ERRCODE = '55000', MESSAGE = 'this database is not a ledgerlock subscriber',
            HINT = 'promote_subscriber() is run once, on the subscriber, at cut-over';
    END IF;
    SELECT s.subname INTO sub FROM pg_catalog.pg_subscription s
    WHERE s.subdbid = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database())
      AND s.subenabled LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '55000',
            MESSAGE = pg_catalog.format('subscription %s still applies the publisher''s changes here', sub),
            HINT = pg_catalog.format('stop writes on the publisher, wait until the subscriber has caught up, then '
                                     'ALTER SUBSCRIPTION %I DISABLE (or DROP SUBSCRIPTION %I) and promote', sub, sub);
    END IF;
    PERFORM ledgerlock._require_initial_copy_done('promote_subscriber');
    DELETE FROM ledgerlock.replication_role;
    PERFORM ledgerlock.reinstall_guards();  -- ends with _sync_guard_enable_mode(): ENABLE ALWAYS again
    SELECT pg_catalog.max(e.seq) INTO top FROM ledgerlock.audit_event e;
    IF top IS NOT NULL THEN
        PERFORM pg_catalog.setval('ledgerlock.audit_event_seq', top);
        done := done || pg_catalog.jsonb_build_object('ledgerlock.audit_event_seq', top);
    END IF;
    FOR r IN
        SELECT a.attrelid::regclass AS tbl, a.attname,
               pg_catalog.pg_get_serial_sequence(a.attrelid::regclass::text, a.attname) AS seq
        FROM pg_catalog.pg_attribute a
        WHERE a.attrelid = ANY (ledgerlock._replicated_own_tables()) AND a.attnum > 0 AND NOT a.attisdropped
          AND pg_catalog.pg_get_serial_sequence(a.attrelid::regclass::text, a.attname) IS NOT NULL
    LOOP
        EXECUTE pg_catalog.format('SELECT pg_catalog.max(%I) FROM %s', r.attname, r.tbl) INTO top;
        IF top IS NOT NULL THEN
            PERFORM pg_catalog.setval(r.seq, top);
            done := done || pg_catalog.jsonb_build_object(r.seq, top);
        END IF;
    END LOOP;
    -- draft numbers carry no series: continuing after the largest trailing number of any numbered row
    -- keeps them unique whatever the draft format
    top := NULL;
    FOR r IN SELECT p.tbl, p.number_column FROM ledgerlock.protected_table p WHERE p.number_column IS NOT NULL LOOP
        EXECUTE pg_catalog.format('SELECT GREATEST(%s::bigint, pg_catalog.max((pg_catalog.regexp_match('
                                  '%I::text, ''(\d{1,18})\D*$''))[1]::bigint)) FROM %s', coalesce(top, 0),
                                  r.number_column, r.tbl) INTO top;
    END LOOP;
    IF top IS NOT NULL AND top > 0 THEN
        PERFORM pg_catalog.setval('ledgerlock.draft_number',
                                  GREATEST(top, (SELECT s.last_value FROM ledgerlock.draft_number s)));
        done := done || pg_catalog.jsonb_build_object('ledgerlock.draft_number', top);
    END IF;
    RETURN done;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.promote_subscriber() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.promote_subscriber() TO ledgerlock_admin;

-- Doctor: the replication role of this database and the subscriptions applying into it. A subscription that
-- carries protected tables without ledgerlock's book tables (or into a database not marked as subscriber)
-- would renumber, refuse or leave evidence that cannot verify.
CREATE OR REPLACE FUNCTION ledgerlock._doctor_replication()
RETURNS TABLE(severity text, check_name text, object text, finding text, why text, fix text)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s record;
    missing text;
BEGIN
    IF ledgerlock._is_subscriber() THEN
        RETURN QUERY SELECT 'info', 'replication', pg_catalog.current_database()::text,
            'this database is a ledgerlock subscriber: its guards fire for local sessions only (ENABLE), and '
            'local writes to protected tables are refused until cut-over',
            'the apply worker applies the publisher''s books verbatim; a role that may set '
            'session_replication_role (see the bypass check) can skip the guards here',
            'at cut-over: ALTER SUBSCRIPTION ... DISABLE, then SELECT ledgerlock.promote_subscriber()';
    END IF;
    FOR s IN
        SELECT sb.oid, sb.subname,
               ARRAY(SELECT sr.srrelid::regclass FROM pg_catalog.pg_subscription_rel sr WHERE sr.srsubid = sb.oid)
                   AS rels
        FROM pg_catalog.pg_subscription sb
        WHERE sb.subdbid = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database())
        ORDER BY sb.subname
    LOOP
        SELECT pg_catalog.string_agg(t::text, ', ' ORDER BY t::text) INTO missing
        FROM pg_catalog.unnest(ledgerlock._replicated_own_tables()) AS u(t) WHERE t <> ALL (s.rels);
        IF missing IS NOT NULL THEN
            RETURN QUERY SELECT 'critical', 'replication', s.subname::text,
                pg_catalog.format('subscription %s does not replicate ledgerlock''s tables %s', s.subname, missing),
                'without the publisher''s counters, locks, events and chain the subscriber renumbers nothing '
                'correctly at cut-over and its evidence cannot verify',
                'on the publisher: ALTER PUBLICATION ... ADD TABLE each of SELECT ledgerlock.publication_tables(); '
                'here: ALTER SUBSCRIPTION ' || pg_catalog.quote_ident(s.subname) || ' REFRESH PUBLICATION';
        ELSIF NOT ledgerlock._is_subscriber() THEN
            RETURN QUERY SELECT 'critical', 'replication', s.subname::text,
                pg_catalog.format('subscription %s applies ledgerlock''s tables into a database not marked as '
                                  'subscriber', s.subname),
                'guards that are ENABLE ALWAYS renumber and refuse what the publisher accepted, and stall apply',
                'SELECT ledgerlock.become_subscriber() before CREATE SUBSCRIPTION (see docs/replication.md)';
        END IF;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._doctor_replication() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock._doctor_replication() TO ledgerlock_admin, ledgerlock_auditor;
