-- Functions the code files no longer define. One helper writes the lock history: ledgerlock._lock_event
-- (sql/functions/00_core.sql) replaces ledgerlock._close_event, which only the close and four-eyes used.
DROP FUNCTION IF EXISTS ledgerlock._close_event(text, text, bigint, text, jsonb);
-- The trigger functions render the parts of a number format inline; nothing called this.
DROP FUNCTION IF EXISTS ledgerlock._render_number_part(text, date, text);
