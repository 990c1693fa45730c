-- TRUNCATE would remove final, locked and referenced rows in one stroke, and fires no row triggers:
-- a protected table refuses it. Delete draft rows with DELETE (which the row rules check), or have an
-- admin unprotect the table first (audited).

CREATE OR REPLACE FUNCTION ledgerlock.guard_truncate()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER  -- reads ledgerlock's registry, which clients cannot
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
AS $$
DECLARE
    ll_refused text;  -- a refusal is called as an expression: see ledgerlock._refuse
BEGIN
    ll_refused := ledgerlock._refuse('LL008',
        pg_catalog.format('TRUNCATE of %s is refused: it is protected by ledgerlock', TG_RELID::regclass),
        'delete draft rows with DELETE, or have an admin run ledgerlock.unprotect(table, reason) first');
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.guard_truncate() FROM PUBLIC;

-- Statement triggers are not passed on to partitions, so every partition of a protected partitioned
-- table gets its own TRUNCATE guard (TRUNCATE of one partition fires only that partition's triggers). Its
-- argument names the protected table, so a partition that was detached can be recognised (ddl guard,
-- doctor). New partitions get it from the DDL guard, or from `ledgerlock.reinstall_guards()`.
CREATE OR REPLACE FUNCTION ledgerlock._install_00_truncate(tbl regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    part regclass;
BEGIN
    PERFORM ledgerlock._drop_guard_triggers(tbl, 'll_00_');
    PERFORM ledgerlock._create_guard_trigger(tbl, 'll_00_truncate', pg_catalog.format(
        'BEFORE TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION ledgerlock.guard_truncate()', tbl));
    FOR part IN SELECT p.relid FROM pg_catalog.pg_partition_tree(tbl) p WHERE p.relid <> tbl LOOP
        PERFORM ledgerlock._create_guard_trigger(part, 'll_00_truncate', pg_catalog.format(
            'BEFORE TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION ledgerlock.guard_truncate(%L)',
            part, tbl::oid));
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._install_00_truncate(regclass) FROM PUBLIC;

-- (unprotect's _drop_guard_triggers(tbl, 'll_') reaches every partition: no uninstall hook is needed.)
