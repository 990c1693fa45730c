-- ledgerlock 0034: the chain check reads each event once, for its hash and for its time against the seal
-- that contains it (sql/functions/r5_verify.sql); the link check with four arguments goes.
DROP FUNCTION IF EXISTS ledgerlock._audit_link_problems(bigint, bigint, bigint, bigint);

-- The SEAL events, which verification reads first (the facts each seal recorded): a few per seal, found
-- without reading the events in between.
CREATE INDEX IF NOT EXISTS audit_event_seal ON ledgerlock.audit_event (seq) WHERE operation = 'SEAL';
