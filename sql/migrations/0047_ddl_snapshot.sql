-- ledgerlock 0047: what the DDL guard reads at a command's start and compares at its end (the labels of the
-- enums protected columns hold, the expressions of their virtual generated columns) is kept in a table of
-- ledgerlock's, one row per transaction and kind, instead of a setting: code the same command runs (a CHECK
-- constraint's function, during an ALTER TABLE) can change a setting, and cannot write this table
-- (sql/functions/ddl_guard.sql, ledgerlock._ddl_snapshot_put and _take). Each database keeps its own (a
-- subscriber's is not replicated): rows live only from a command's start to its end.
CREATE TABLE IF NOT EXISTS ledgerlock.ddl_snapshot (
    txid    xid8    NOT NULL,
    kind    text    NOT NULL,
    data    jsonb   NOT NULL,
    PRIMARY KEY (txid, kind)
);
REVOKE ALL ON ledgerlock.ddl_snapshot FROM PUBLIC;
