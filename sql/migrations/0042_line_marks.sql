-- ledgerlock 0042: a write through a line (R4, protect_lines) no longer looks up the period of a header dated
-- after its scope's mark. The line trigger carries the header table's scope marks as its first two arguments
-- (ledgerlock._ref_lines_trigger; re-created with the rule's generated function by `migrate`'s
-- reinstall_guards), the generated function tests them, and ledgerlock._ref_check_header takes its verdict as a
-- seventh argument. Its old signature goes.
DROP FUNCTION IF EXISTS ledgerlock._ref_check_header(integer, text, jsonb, jsonb, boolean, boolean);
