-- ledgerlock 0045: R3's refusal names a row the writer did not write (a line's header, a moved parent's child)
-- as the writer may read it (sql/functions/r3_period_locks.sql, ledgerlock._row_named). _check_window and
-- _refuse_locked take whether the row is the one written; the versions without it go (the functions and the
-- guards are installed again after the migrations, in the same transaction).
DROP FUNCTION IF EXISTS ledgerlock._check_window(regclass, bigint, jsonb, text);
DROP FUNCTION IF EXISTS ledgerlock._refuse_locked(regclass, bigint, jsonb, text);
