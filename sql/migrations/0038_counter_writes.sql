-- ledgerlock 0038: what a finalization writes.
--
-- The settle step of a numbered table reads its statement's first row once and proves a one-row
-- finalization with one key UPDATE of the counter (sql/triggers/r2_numbering_guard.sql, _ll40_settle_first_row);
-- the template of the one query that did it goes.
DROP FUNCTION IF EXISTS ledgerlock._ll40_settle_one_query(jsonb);

-- The counter rows lose their CHECK constraints. PostgreSQL prepares a table's CHECK constraints again in
-- every statement that writes the table (it reads their stored expression and plans it), and a one-row
-- finalization writes its counter twice (the number, then the closing of its range): the four checks cost
-- about 7 microseconds of server CPU per write (docs/numbering.md). Only ledgerlock's numbering functions
-- write counters, and they write them in range; the settle step proves every range a statement opened, and
-- ledgerlock.verify_audit reports a counter whose committed state has an open range or is below 0
-- (counter_state, sql/functions/r5_verify.sql).
ALTER TABLE ledgerlock.number_counter
    DROP CONSTRAINT IF EXISTS number_counter_check,
    DROP CONSTRAINT IF EXISTS number_counter_check1,
    DROP CONSTRAINT IF EXISTS number_counter_last_value_check,
    DROP CONSTRAINT IF EXISTS number_counter_open_kind_check;
