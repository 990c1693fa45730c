-- Rule R3, four-eyes: unlocking a hard window (or turning four-eyes off) takes a request filed by one
-- admin and approved by another before it expires. Tables are in migrations/0007_close.sql; they are
-- written only here, by capability-checked functions. Events go to the lock history (_lock_event).

-- ---------------------------------------------------------------------------------------------------
-- Four-eyes unlock of hard windows
-- ---------------------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION ledgerlock._close_setting()
RETURNS ledgerlock.close_setting
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM ledgerlock.close_setting
$$;
REVOKE ALL ON FUNCTION ledgerlock._close_setting() FROM PUBLIC;

-- Turn four-eyes on (and/or change how long a request stays valid): one admin may make unlocking
-- stricter. Turning it off is the opposite: while it is on, that takes a request approved by another
-- admin (request_four_eyes_off + approve_unlock), or one admin alone could remove the second pair of eyes.
CREATE OR REPLACE FUNCTION ledgerlock.set_four_eyes(required boolean, request_ttl interval DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
AS $$
DECLARE
    s ledgerlock.close_setting;
BEGIN
    PERFORM ledgerlock._require_capability('admin', 'set_four_eyes');
    PERFORM ledgerlock._require_unrestricted('set_four_eyes');
    SELECT * INTO s FROM ledgerlock.close_setting FOR UPDATE;
    IF required IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'set_four_eyes: required must be true or false';
    END IF;
    IF request_ttl IS NOT NULL AND request_ttl <= interval '0' THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('set_four_eyes: request_ttl must be positive, not %s', request_ttl);
    END IF;
    IF s.four_eyes_unlock AND NOT required AND NOT ledgerlock._approved_in_this_transaction('four_eyes_off', NULL) THEN
        PERFORM ledgerlock._refuse('LL005',
            'four-eyes unlocking is on: turning it off takes the approval of a second admin',
            'file the request with ledgerlock.request_four_eyes_off(reason); another admin approves it with '
            'ledgerlock.approve_unlock(request_id)');
    END IF;
    UPDATE ledgerlock.close_setting c
    SET four_eyes_unlock = required, unlock_request_ttl = coalesce(request_ttl, c.unlock_request_ttl),
        changed_at = now(), changed_by = session_user;
    PERFORM ledgerlock._lock_event('four_eyes_setting', NULL, NULL, NULL,
        pg_catalog.jsonb_build_object('four_eyes_unlock', required,
            'unlock_request_ttl', coalesce(request_ttl, s.unlock_request_ttl)::text,
            'previous', pg_catalog.jsonb_build_object('four_eyes_unlock', s.four_eyes_unlock,
                                                      'unlock_request_ttl', s.unlock_request_ttl::text)));
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.set_four_eyes(boolean, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.set_four_eyes(boolean, interval)
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

-- Whether an approved request of this action (and window) was approved in the current transaction:
-- the only way past the four-eyes gate. Request rows are written only by this file's functions. The
-- transaction id alone does not say it: requests restored by pg_restore carry another cluster's ids, which
-- this one's transactions reach in turn, and an admin can watch them come; so the approval must also be this
-- session user's and have been made since the transaction began.
CREATE OR REPLACE FUNCTION ledgerlock._approved_in_this_transaction(action text, lock_id bigint)
RETURNS boolean
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (
        SELECT FROM ledgerlock.unlock_request r
        WHERE r.action = _approved_in_this_transaction.action
          AND r.lock_id IS NOT DISTINCT FROM _approved_in_this_transaction.lock_id
          AND r.status = 'approved'
          AND r.decided_txid = pg_catalog.pg_current_xact_id_if_assigned()
          AND r.decided_by = session_user
          AND r.decided_at BETWEEN pg_catalog.now() AND pg_catalog.clock_timestamp())
$$;
REVOKE ALL ON FUNCTION ledgerlock._approved_in_this_transaction(text, bigint) FROM PUBLIC;

-- Whether unlocking this window now takes a four-eyes request (four-eyes on and the window hard).
CREATE OR REPLACE FUNCTION ledgerlock.four_eyes_required(lock_id bigint)
RETURNS boolean
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
AS $$
    SELECT (ledgerlock._close_setting()).four_eyes_unlock
           AND ledgerlock._lock_window_level(four_eyes_required.lock_id) = 'hard'
$$;
REVOKE ALL ON FUNCTION ledgerlock.four_eyes_required(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.four_eyes_required(bigint)
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

-- The gate unlock_period passes through for a hard window: with four-eyes on, only an unlock approved
-- (by a second admin) in this very transaction gets past. LL005 otherwise, naming the way.
CREATE OR REPLACE FUNCTION ledgerlock._assert_unlock_approved(lock_id bigint, level text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF level = 'hard' AND (ledgerlock._close_setting()).four_eyes_unlock
       AND NOT ledgerlock._approved_in_this_transaction('unlock', lock_id) THEN
        PERFORM ledgerlock._refuse('LL005',
            pg_catalog.format('unlocking hard lock #%s takes the approval of a second admin (four-eyes is on)',
                              lock_id),
            pg_catalog.format('file the request with ledgerlock.request_unlock(%s, reason) (CLI: ledgerlock unlock '
                              '%s --reason ...); a different admin approves it with ledgerlock.approve_unlock('
                              'request_id)', lock_id, lock_id));
    END IF;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._assert_unlock_approved(bigint, text) FROM PUBLIC;

-- Mark pending requests whose time is up as expired (database clock), recording each expiry once.
-- Every four-eyes function sweeps first, so an expiry is on record at the latest when anyone looks.
CREATE OR REPLACE FUNCTION ledgerlock.expire_unlock_requests()
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
AS $$
DECLARE
    r ledgerlock.unlock_request;
    n integer := 0;
BEGIN
    PERFORM ledgerlock._require_capability('admin', 'expire_unlock_requests');
    FOR r IN
        UPDATE ledgerlock.unlock_request u
        SET status = 'expired', decided_at = u.expires_at, decided_by = NULL
        WHERE u.status = 'pending' AND u.expires_at <= pg_catalog.clock_timestamp()
        RETURNING u.*
    LOOP
        PERFORM ledgerlock._lock_event('unlock_request_expire', ledgerlock._lock_window_scope(r.lock_id),
            r.lock_id, r.reason, ledgerlock._request_details(r));
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.expire_unlock_requests() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.expire_unlock_requests()
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

CREATE OR REPLACE FUNCTION ledgerlock._request_details(r ledgerlock.unlock_request)
RETURNS jsonb
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.jsonb_build_object('request_id', r.id, 'action', r.action, 'lock_id', r.lock_id,
        'requested_by', r.requested_by, 'requested_at', r.requested_at, 'expires_at', r.expires_at,
        'status', r.status, 'decided_by', r.decided_by, 'decided_at', r.decided_at)
$$;
REVOKE ALL ON FUNCTION ledgerlock._request_details(ledgerlock.unlock_request) FROM PUBLIC;

CREATE OR REPLACE FUNCTION ledgerlock._file_request(action text, lock_id bigint, reason text)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r ledgerlock.unlock_request;
    ttl interval := (ledgerlock._close_setting()).unlock_request_ttl;
BEGIN
    PERFORM ledgerlock.expire_unlock_requests();
    SELECT * INTO r FROM ledgerlock.unlock_request u
    WHERE u.action = _file_request.action AND u.lock_id IS NOT DISTINCT FROM _file_request.lock_id
      AND u.status = 'pending';
    IF FOUND THEN
        PERFORM ledgerlock._refuse('LL004',
            pg_catalog.format('request #%s (%s) by %s is already pending until %s', r.id,
                              coalesce('unlock lock #' || r.lock_id, 'turn four-eyes off'), r.requested_by,
                              r.expires_at),
            pg_catalog.format('another admin approves it with ledgerlock.approve_unlock(%s), or %s withdraws it '
                              'with ledgerlock.withdraw_unlock(%s)', r.id, r.requested_by, r.id));
    END IF;
    INSERT INTO ledgerlock.unlock_request AS u (action, lock_id, reason, expires_at)
    VALUES (action, lock_id, reason, pg_catalog.clock_timestamp() + ttl)
    RETURNING u.* INTO r;
    PERFORM ledgerlock._lock_event('unlock_request', ledgerlock._lock_window_scope(lock_id), lock_id, reason,
                                    ledgerlock._request_details(r));
    RETURN r.id;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._file_request(text, bigint, text) FROM PUBLIC;

-- File a request to unlock a hard window; a different admin approves it before it expires.
CREATE OR REPLACE FUNCTION ledgerlock.request_unlock(lock_id bigint, reason text)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
AS $$
DECLARE
    why text;
    level text;
BEGIN
    PERFORM ledgerlock._require_capability('admin', 'request_unlock');
    why := ledgerlock._require_reason(reason, 'request_unlock');
    level := ledgerlock._lock_window_level(lock_id);
    IF level IS NULL THEN
        PERFORM ledgerlock._refuse('22023',
            pg_catalog.format('request_unlock: lock #%s does not exist or is not active', lock_id),
            'list the active windows with: ledgerlock locks');
    END IF;
    PERFORM ledgerlock._require_scope(ledgerlock._lock_window_scope(lock_id), 'request_unlock');
    IF level <> 'hard' THEN
        PERFORM ledgerlock._refuse('LL004',
            pg_catalog.format('request_unlock: lock #%s is %s; only hard windows need a second admin', lock_id,
                              level),
            pg_catalog.format('unlock it directly with ledgerlock.unlock_period(%s, reason)', lock_id));
    END IF;
    RETURN ledgerlock._file_request('unlock', lock_id, why);
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.request_unlock(bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.request_unlock(bigint, text)
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

-- File a request to turn four-eyes off; a different admin approves it with approve_unlock.
CREATE OR REPLACE FUNCTION ledgerlock.request_four_eyes_off(reason text)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
AS $$
DECLARE
    why text;
BEGIN
    PERFORM ledgerlock._require_capability('admin', 'request_four_eyes_off');
    PERFORM ledgerlock._require_unrestricted('request_four_eyes_off');
    why := ledgerlock._require_reason(reason, 'request_four_eyes_off');
    IF NOT (ledgerlock._close_setting()).four_eyes_unlock THEN
        PERFORM ledgerlock._refuse('LL004', 'request_four_eyes_off: four-eyes unlocking is already off');
    END IF;
    RETURN ledgerlock._file_request('four_eyes_off', NULL, why);
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.request_four_eyes_off(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.request_four_eyes_off(text)
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

-- Why approving this request is refused now, as (sqlstate, message, hint), or nulls when it may go ahead.
-- One place for the conditions, so approve_unlock and record_unlock_refusal cannot disagree.
CREATE OR REPLACE FUNCTION ledgerlock._approval_refusal(r ledgerlock.unlock_request, OUT sqlstate text,
                                                        OUT message text, OUT hint text)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    what text := coalesce('unlock lock #' || r.lock_id, 'turn four-eyes off');
BEGIN
    IF r.status = 'pending' AND r.expires_at <= pg_catalog.clock_timestamp() OR r.status = 'expired' THEN
        sqlstate := 'LL004';
        message := pg_catalog.format('request #%s (%s) by %s expired at %s', r.id, what, r.requested_by,
                                     r.expires_at);
        hint := 'file a new request; requests expire by the database clock (ledgerlock.set_four_eyes sets how long)';
    ELSIF r.status <> 'pending' THEN
        sqlstate := 'LL004';
        message := pg_catalog.format('request #%s (%s) is %s already', r.id, what, r.status);
    ELSIF r.lock_id IS NULL AND ledgerlock._granted_scopes() IS NOT NULL THEN
        sqlstate := 'LL005';  -- a global request: only an admin who is not scope-limited decides it
        message := pg_catalog.format('approving request #%s (%s) changes what every scope shares: %s is limited '
                                     'to %s', r.id, what, session_user, ledgerlock._granted_scopes_text());
        hint := 'ask an admin who is not scope-limited (no ledgerlock.grant_scope names them) to approve it';
    ELSIF r.requested_by = session_user THEN
        sqlstate := 'LL005';
        message := pg_catalog.format('request #%s (%s) was filed by %s, who cannot also approve it: four-eyes '
                                     'needs a different database user', r.id, what, session_user);
        hint := 'ask another member of ledgerlock_admin to run ledgerlock.approve_unlock(' || r.id || ')';
    END IF;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._approval_refusal(ledgerlock.unlock_request) FROM PUBLIC;

-- Approve a request: a different admin than the requester, before it expires. An unlock request unlocks
-- the window with the request's reason; a four_eyes_off request turns four-eyes off. Returns the lock id
-- (null for four_eyes_off).
CREATE OR REPLACE FUNCTION ledgerlock.approve_unlock(request_id bigint)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
AS $$
DECLARE
    r ledgerlock.unlock_request;
    refusal record;
BEGIN
    PERFORM ledgerlock._require_capability('admin', 'approve_unlock');
    PERFORM ledgerlock._require_value(request_id IS NOT NULL, 'approve_unlock', 'the id of an unlock request');
    SELECT * INTO r FROM ledgerlock.unlock_request u WHERE u.id = request_id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM ledgerlock._refuse('22023', pg_catalog.format('unlock request #%s does not exist', request_id),
                                   'list pending requests with: ledgerlock unlock --pending');
    END IF;
    IF r.lock_id IS NOT NULL THEN
        PERFORM ledgerlock._require_scope(ledgerlock._lock_window_scope(r.lock_id), 'approve_unlock');
    END IF;
    refusal := ledgerlock._approval_refusal(r);
    IF refusal.sqlstate IS NOT NULL THEN
        -- The refusal rolls this transaction back, so it cannot be recorded here: the server log keeps it,
        -- and the manager records it afterwards with record_unlock_refusal (which re-checks it).
        RAISE LOG 'ledgerlock: % refused approving request #% filed by %: %', session_user, r.id, r.requested_by,
            refusal.message;
        PERFORM ledgerlock._refuse(refusal.sqlstate, refusal.message, refusal.hint);
    END IF;
    UPDATE ledgerlock.unlock_request u
    SET status = 'approved', decided_at = pg_catalog.clock_timestamp(), decided_by = session_user,
        decided_txid = pg_catalog.pg_current_xact_id()
    WHERE u.id = r.id
    RETURNING u.* INTO r;
    PERFORM ledgerlock._lock_event('unlock_approve', ledgerlock._lock_window_scope(r.lock_id), r.lock_id,
                                    r.reason, ledgerlock._request_details(r));
    IF r.action = 'unlock' THEN
        PERFORM ledgerlock.unlock_period(r.lock_id, r.reason);
    ELSE
        PERFORM ledgerlock.set_four_eyes(false);
    END IF;
    RETURN r.lock_id;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.approve_unlock(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.approve_unlock(bigint)
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

-- Record, in its own transaction, that approving this request is refused for the session user now
-- (same user, expired, already decided). It re-checks the refusal, so it can only record the truth;
-- it returns false (and records nothing) when the approval would in fact go through.
CREATE OR REPLACE FUNCTION ledgerlock.record_unlock_refusal(request_id bigint)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
AS $$
DECLARE
    r ledgerlock.unlock_request;
    refusal record;
BEGIN
    PERFORM ledgerlock._require_capability('admin', 'record_unlock_refusal');
    PERFORM ledgerlock.expire_unlock_requests();
    SELECT * INTO r FROM ledgerlock.unlock_request u WHERE u.id = request_id;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    refusal := ledgerlock._approval_refusal(r);
    IF refusal.sqlstate IS NULL THEN
        RETURN false;
    END IF;
    PERFORM ledgerlock._lock_event('unlock_refuse', ledgerlock._lock_window_scope(r.lock_id), r.lock_id,
        r.reason, ledgerlock._request_details(r) || pg_catalog.jsonb_build_object(
            'refused_user', session_user, 'sqlstate', refusal.sqlstate, 'refusal', refusal.message));
    RETURN true;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.record_unlock_refusal(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.record_unlock_refusal(bigint)
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

-- The requester takes a pending request back.
CREATE OR REPLACE FUNCTION ledgerlock.withdraw_unlock(request_id bigint)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
AS $$
DECLARE
    r ledgerlock.unlock_request;
BEGIN
    PERFORM ledgerlock._require_capability('admin', 'withdraw_unlock');
    PERFORM ledgerlock._require_value(request_id IS NOT NULL, 'withdraw_unlock', 'the id of an unlock request');
    SELECT * INTO r FROM ledgerlock.unlock_request u WHERE u.id = request_id FOR UPDATE;
    IF NOT FOUND OR r.status <> 'pending' THEN
        PERFORM ledgerlock._refuse('LL004',
            pg_catalog.format('unlock request #%s is not pending', request_id));
    END IF;
    IF r.requested_by <> session_user THEN
        PERFORM ledgerlock._refuse('LL005',
            pg_catalog.format('request #%s was filed by %s; only they can withdraw it', r.id, r.requested_by));
    END IF;
    UPDATE ledgerlock.unlock_request u
    SET status = 'withdrawn', decided_at = pg_catalog.clock_timestamp(), decided_by = session_user
    WHERE u.id = r.id
    RETURNING u.* INTO r;
    PERFORM ledgerlock._lock_event('unlock_request_withdraw', ledgerlock._lock_window_scope(r.lock_id),
                                    r.lock_id, r.reason, ledgerlock._request_details(r));
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.withdraw_unlock(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.withdraw_unlock(bigint)
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

-- Requests, newest first (pending only by default). Sweeps expiries first when an admin asks.
CREATE OR REPLACE FUNCTION ledgerlock.unlock_requests(pending_only boolean DEFAULT true)
RETURNS TABLE(id bigint, action text, lock_id bigint, scope text, reason text, requested_by name,
              requested_at timestamptz, expires_at timestamptz, status text, decided_by name,
              decided_at timestamptz)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
AS $$
BEGIN
    IF NOT (ledgerlock.has_capability('controller') OR ledgerlock.has_capability('auditor')) THEN
        PERFORM ledgerlock._require_capability('controller', 'unlock_requests');
    END IF;
    IF ledgerlock.has_capability('admin') THEN
        PERFORM ledgerlock.expire_unlock_requests();
    END IF;
    RETURN QUERY
    SELECT u.id, u.action, u.lock_id, ledgerlock._lock_window_scope(u.lock_id), u.reason, u.requested_by,
           u.requested_at, u.expires_at,
           CASE WHEN u.status = 'pending' AND u.expires_at <= pg_catalog.clock_timestamp() THEN 'expired'
                ELSE u.status END,
           u.decided_by, u.decided_at
    FROM ledgerlock.unlock_request u
    WHERE (NOT pending_only OR (u.status = 'pending' AND u.expires_at > pg_catalog.clock_timestamp()))
      AND (u.lock_id IS NULL OR ledgerlock._scope_granted(ledgerlock._lock_window_scope(u.lock_id)))
    ORDER BY u.id DESC;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.unlock_requests(boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledgerlock.unlock_requests(boolean)
    TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;

