-- TRUNCATE would remove final, locked and referenced rows in one stroke, and fires no row triggers:
-- a protected table refuses it. Delete draft rows with DELETE (which the row rules check), or have an
-- admin unprotect the table first (audited).

CREATE OR REPLACE FUNCTION ledgerlock.guard_truncate()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER  -- reads ledgerlock's registry, which clients cannot
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ledgerlock._refuse('LL008',
        pg_catalog.format('TRUNCATE of %s is refused: it is protected by ledgerlock', TG_RELID::regclass),
        'delete draft rows with DELETE, or have an admin run ledgerlock.unprotect(table, reason) first');
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.guard_truncate() FROM PUBLIC;

CREATE OR REPLACE FUNCTION ledgerlock._install_00_truncate(tbl regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ledgerlock._drop_guard_triggers(tbl, 'll_00_');
    PERFORM ledgerlock._create_guard_trigger(tbl, 'll_00_truncate', pg_catalog.format(
        'BEFORE TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION ledgerlock.guard_truncate()', tbl));
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._install_00_truncate(regclass) FROM PUBLIC;
