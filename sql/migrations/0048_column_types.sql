-- ledgerlock 0048: the DDL guard keeps the types of protected tables' columns at an ALTER TABLE's (or ALTER
-- TYPE's) start beside the expressions of their virtual generated columns, and refuses a type changed by a
-- binary-coercible cast, which rewrites nothing (sql/functions/ddl_guard.sql, ledgerlock._protected_columns).
-- The function that kept the expressions alone goes (the functions are installed again after the migrations,
-- in the same transaction).
DROP FUNCTION IF EXISTS ledgerlock._protected_virtual_expressions();
