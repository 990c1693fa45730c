-- ledgerlock 0038: what a finalization writes.
--
-- The settle step of a numbered table reads its statement's first row once and proves a one-row
-- finalization with one key UPDATE of the counter (sql/triggers/r2_numbering_guard.sql, _ll40_settle_first_row);
-- the template of the one query that did it goes.
DROP FUNCTION IF EXISTS ledgerlock._ll40_settle_one_query(jsonb);
