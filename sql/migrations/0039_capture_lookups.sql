-- ledgerlock 0039: the audit capture's lookups.
--
-- It looks a row's scope up among the scopes with an unlocked window in a jsonb object (a binary search of its
-- sorted keys) instead of an array searched element by element, so a bulk statement costs rows x
-- log(windows), not rows x windows (sql/triggers/r5_audit_capture.sql). The two helpers change type; they are
-- installed again with the functions.
DROP FUNCTION IF EXISTS ledgerlock._audit_window(regclass, jsonb, jsonb, boolean, text[], text);
DROP FUNCTION IF EXISTS ledgerlock._audit_write_context(oid, boolean);
--
-- A parent-scoped table's capture reads its rows' parent scopes once per statement, as a map from foreign key
-- values to scopes (ledgerlock._parent_scope_map_sql), instead of one dynamic query per row: the helpers that
-- carry it take one more argument.
DROP FUNCTION IF EXISTS ledgerlock._audit_window(regclass, jsonb, jsonb, boolean, jsonb, text);
DROP FUNCTION IF EXISTS ledgerlock._audit_scope(oid, jsonb, text, boolean, boolean);
DROP FUNCTION IF EXISTS ledgerlock._scope_in_image(regclass, jsonb, text);
DROP FUNCTION IF EXISTS ledgerlock._audit_event_row(oid, text, jsonb, jsonb, text, text, text[], boolean, timestamptz,
                                                    xid8, text, text, text, text, bigint, text, bigint);
