-- ledgerlock 0041: every protected table that is not partitioned gets a capture function of its own.
--
-- R5's capture (sql/triggers/r5_audit_capture.sql) is generated per table from the shipped
-- ledgerlock.audit_capture(), with the table's scope column, json columns and key written in as literals: no
-- trigger argument is read per statement, and PostgreSQL folds away the branches that cannot apply to the
-- table. The helper that creates generated functions now also pins the settings the capture runs under; it
-- takes one more argument and is installed again with the functions.
DROP FUNCTION IF EXISTS ledgerlock._create_generated_function(name, text);
