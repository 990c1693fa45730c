-- ledgerlock 0049: the number_series view shows a scope-limited role the series of its scopes only
-- (ledgerlock._series_visible, sql/functions/r2_numbering.sql: a format with {SCOPE} gives each company a
-- series of its own, whose counter says how many invoices it finalized). The functions are installed right
-- after the migrations, in the same transaction: where they do not exist yet (a new database), placeholders
-- let the view name them, and no session ever reads the view with them.
DO $$
BEGIN
    IF pg_catalog.to_regprocedure('ledgerlock._granted_scopes()') IS NULL THEN
        CREATE FUNCTION ledgerlock._granted_scopes() RETURNS text[] LANGUAGE sql STABLE
        AS 'SELECT ''{}''::text[]';
    END IF;
    IF pg_catalog.to_regprocedure('ledgerlock._series_visible(regclass, text, text, text[])') IS NULL THEN
        CREATE FUNCTION ledgerlock._series_visible(tbl regclass, prefix text, suffix text, limited text[])
        RETURNS boolean LANGUAGE sql STABLE AS 'SELECT false';
    END IF;
END
$$;
CREATE OR REPLACE VIEW ledgerlock.number_series AS
SELECT c.tbl AS table_name,
       c.prefix || '{SEQ}' || c.suffix AS series,
       c.last_value,
       c.created_at
FROM ledgerlock.number_counter c
-- the caller's scopes read once (an InitPlan); a role of every scope calls nothing per series
WHERE (SELECT ledgerlock._granted_scopes()) IS NULL
   OR ledgerlock._series_visible(c.tbl, c.prefix, c.suffix, (SELECT ledgerlock._granted_scopes()));
