-- ledgerlock 0037: a write through a line builds the words of a refusal only when it is refused. The period
-- check of the header is now ledgerlock._entered_window (sql/functions/r3_period_locks.sql) followed by
-- _check_window with the words; the function that took the words first goes.
DROP FUNCTION IF EXISTS ledgerlock._assert_period_open(regclass, jsonb, text);
