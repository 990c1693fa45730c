-- ledgerlock 0006: hardening - the DDL permit that lets ledgerlock's own code (and nothing else) change
-- guard triggers while the DDL guard (`ledgerlock install-ddl-guard`) is installed.
--
-- A permit is a row for the current transaction and one object (a protected table, or schema ledgerlock
-- for ledgerlock's own scratch objects). ledgerlock's installers insert it right before their DDL and
-- delete it right after, inside the same transaction, so no other session ever sees one and no client
-- setting can create one: only the owner of schema ledgerlock may write this table.
CREATE TABLE ledgerlock.ddl_permit (
    txid    xid8    NOT NULL,
    target  oid     NOT NULL,
    PRIMARY KEY (txid, target)
);
REVOKE ALL ON ledgerlock.ddl_permit FROM PUBLIC;
