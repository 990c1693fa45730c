-- ledgerlock 0027: verification from a digest reads the seals and the counters' numbers only after it.
-- The seal and counter checks take where to start (a chain link, an event seq): their old signatures go.
DROP FUNCTION IF EXISTS ledgerlock._audit_seal_problems();
DROP FUNCTION IF EXISTS ledgerlock._audit_counter_problems();
DROP FUNCTION IF EXISTS ledgerlock._audit_verify_chain(bigint);  -- it returns from_seq too
