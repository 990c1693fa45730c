-- ledgerlock 0029: the audit capture writes every event of a statement with one query, whatever its period
-- context. The per-row helpers of its former looked-up path go: the event is made by
-- ledgerlock._audit_event_row (a row value, inlined) and the window by ledgerlock._audit_window.
DROP FUNCTION IF EXISTS ledgerlock._audit_period_context(regclass, jsonb, jsonb, boolean, text[], text, text, text);
DROP FUNCTION IF EXISTS ledgerlock._audit_row_event(bigint, oid, text, jsonb, jsonb, text, text, text[], timestamptz,
                                                    xid8, text, text, text, text, bigint, bigint);
