-- ledgerlock 0039: the audit capture looks a row's scope up among the scopes with an unlocked window in a
-- jsonb object (a binary search of its sorted keys) instead of an array searched element by element, so a
-- bulk statement costs rows x log(windows), not rows x windows (sql/triggers/r5_audit_capture.sql). The two
-- helpers change type; they are installed again with the functions.
DROP FUNCTION IF EXISTS ledgerlock._audit_window(regclass, jsonb, jsonb, boolean, text[], text);
DROP FUNCTION IF EXISTS ledgerlock._audit_write_context(oid, boolean);
