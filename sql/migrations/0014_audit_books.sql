-- ledgerlock 0014: the audit verifies the books, not only the trail. Chain problems are reported by code
-- (sql/functions/r5_audit.sql), so the function that lists them returns one more column: it is dropped here
-- and created again by the code step.
DROP FUNCTION IF EXISTS ledgerlock._audit_link_problems(bigint, bigint, bigint, bigint);
DROP FUNCTION IF EXISTS ledgerlock._audit_unsealed_problems(xid8, boolean);
