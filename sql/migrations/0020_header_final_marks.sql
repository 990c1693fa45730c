-- ledgerlock 0020: headers that became final in the current transaction still take lines.
--
-- A header and its lines committed together are one document: an ORM inserts a posted header first, then
-- its lines. R4's header guard records here that a header row became final (inserted final, or updated from
-- not final to final) in this transaction; the lines guard admits line writes to a final header only while
-- such a mark exists for the current transaction. A mark is keyed by the transaction id and the server's
-- start time (a restored or replicated mark from another server can never match), the lines rule and the
-- header's referenced key. An update of a header that was already final (a mutable column) writes no mark.
-- Only ledgerlock's own code writes this table: no client setting or client write creates a mark, and a
-- rolled-back savepoint takes its marks with it. Marks of finished transactions are pruned as new ones come.
-- IF NOT EXISTS: an upgrade that failed midway re-runs its last migration.
CREATE TABLE IF NOT EXISTS ledgerlock.header_final_mark (
    txid        xid8        NOT NULL,
    started     timestamptz NOT NULL,
    rule_id     integer     NOT NULL,
    header_key  jsonb       NOT NULL CHECK (pg_catalog.jsonb_typeof(header_key) = 'array'),
    PRIMARY KEY (txid, rule_id, header_key)
);
REVOKE ALL ON ledgerlock.header_final_mark FROM PUBLIC;
