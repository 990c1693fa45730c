-- ledgerlock 0033: the names of generated functions come from one helper, ledgerlock._generated_name
-- (sql/functions/00_core.sql); the two per-rule copies go.
DROP FUNCTION IF EXISTS ledgerlock._ll40_function_name(regclass, text);
DROP FUNCTION IF EXISTS ledgerlock._ll20_function_name(regclass);
