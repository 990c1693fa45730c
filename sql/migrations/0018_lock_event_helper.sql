-- One helper writes the lock history: ledgerlock._lock_event (sql/functions/00_core.sql) replaces
-- ledgerlock._close_event, which only the close and four-eyes functions used.
DROP FUNCTION IF EXISTS ledgerlock._close_event(text, text, bigint, text, jsonb);
