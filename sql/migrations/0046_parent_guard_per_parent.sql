-- ledgerlock 0046: the guard of a parent row its children take their date or scope from is generated per parent
-- (ledgerlock._ll20_<key>_parent, sql/triggers/r3_period_guard.sql); the shared ledgerlock.guard_scope_parent()
-- goes, and the parents' two triggers that ran it with it (through the DDL guard's permit, as ledgerlock's own
-- installers drop guards). The guards are installed again after the migrations, in the same transaction: no
-- other session ever sees a parent without them.
DO $$
DECLARE
    rel oid;
BEGIN
    IF pg_catalog.to_regprocedure('ledgerlock.guard_scope_parent()') IS NULL THEN
        RETURN;  -- a release before parent scopes, or this migration ran already
    END IF;
    FOR rel IN SELECT DISTINCT t.tgrelid FROM pg_catalog.pg_trigger t
               WHERE t.tgfoid = 'ledgerlock.guard_scope_parent()'::pg_catalog.regprocedure LOOP
        PERFORM ledgerlock._ddl_permit(rel, true);
    END LOOP;
    PERFORM ledgerlock._ddl_permit('ledgerlock'::pg_catalog.regnamespace::oid, true);
    DROP FUNCTION ledgerlock.guard_scope_parent() CASCADE;
    DELETE FROM ledgerlock.ddl_permit p WHERE p.txid = pg_catalog.pg_current_xact_id();
END
$$;
