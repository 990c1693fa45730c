-- ledgerlock 0013: one row-identity core, generated guard functions named without oids.
--
-- R4 named rows, read keys and checked tables through its own copies of the core's functions; callers use
-- the core now (_key_columns, row_key, row_label, _exempt_columns, _check_guardable).
DROP FUNCTION IF EXISTS ledgerlock._ref_key_columns(regclass);
DROP FUNCTION IF EXISTS ledgerlock._ref_row_key(regclass, jsonb);
DROP FUNCTION IF EXISTS ledgerlock._ref_label(regclass, jsonb);
DROP FUNCTION IF EXISTS ledgerlock._ref_exempt_columns(regclass);
DROP FUNCTION IF EXISTS ledgerlock._ref_check_table(regclass, text);
-- R2's generated functions are named and filled by the table's name (a restored database has new oids):
-- the oid-based name helper and relation check go, the generator takes no date kind (the core knows it).
-- The functions generated under the old names are pruned by the next install (ledgerlock migrate runs it).
DROP FUNCTION IF EXISTS ledgerlock._ll40_function(regclass, text);
DROP FUNCTION IF EXISTS ledgerlock._ll40_check_relation(regclass, oid);
DROP FUNCTION IF EXISTS ledgerlock._ll40_generate_functions(regclass, text, text);
DROP FUNCTION IF EXISTS ledgerlock._ll40_drop_triggers(regclass);

-- The oid each protected table had when its guards were last installed. Guard triggers may carry a table's
-- oid in their arguments; after pg_dump/pg_restore the table has a new one (the regclass column follows
-- the table by name, relid keeps the old number), so `ledgerlock migrate` sees which tables were restored
-- and installs their guards again.
CREATE TABLE ledgerlock.guard_install (
    tbl     regclass    PRIMARY KEY,
    relid   oid         NOT NULL
);
COMMENT ON TABLE ledgerlock.guard_install IS
    'the oid of each protected table when its guards were installed; another oid means a restored table';
REVOKE ALL ON ledgerlock.guard_install FROM PUBLIC;
GRANT SELECT ON ledgerlock.guard_install TO ledgerlock_admin, ledgerlock_auditor;
