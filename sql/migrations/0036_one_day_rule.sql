-- ledgerlock 0036: how a row's date becomes its day is written once (ledgerlock._date_kind_of and
-- ledgerlock._day_sql in sql/functions/00_core.sql); the copies the numbering and the period guards kept go.
DROP FUNCTION IF EXISTS ledgerlock._day_sql(text, name, regtype);
DROP FUNCTION IF EXISTS ledgerlock._period_day_sql(text, name, text);
DROP FUNCTION IF EXISTS ledgerlock._date_kind(regclass);
