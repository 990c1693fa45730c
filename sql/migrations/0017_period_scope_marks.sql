-- ledgerlock 0017: R3's high-water mark per scope. A new window re-installs the guards of a table only when it
-- raises the mark the guards give its own scope, so the function that decides it takes the scope; its old
-- signature is dropped here and sql/triggers/r3_period_guard.sql creates the new one.
DROP FUNCTION IF EXISTS ledgerlock._raise_period_marks(date, text[], bigint);
