-- ledgerlock 0040: the line finalizers of one series wait in.
--
-- A transaction's first counter is now waited for on a row of ledgerlock_gate.number_queue, locked FOR UPDATE
-- until commit, before the counter row itself is updated (sql/triggers/r2_numbering_guard.sql). Finalizers of
-- one series then wait in line on a row nobody ever updates and find the counter free when their turn comes,
-- instead of all waiting on the counter's row and each re-reading its newest version after the commit before
-- it (docs/numbering.md, "Waiting in line"). A series' slot is hashtext of its key & 4095: two series in one
-- slot only wait for each other. The rows never change. The table is in schema ledgerlock_gate, which no
-- client may use, so no client can take a slot (an advisory lock would let any role stall a series).
CREATE TABLE IF NOT EXISTS ledgerlock_gate.number_queue (
    slot integer PRIMARY KEY
);
INSERT INTO ledgerlock_gate.number_queue (slot) SELECT g FROM generate_series(0, 4095) g ON CONFLICT DO NOTHING;
REVOKE ALL ON ledgerlock_gate.number_queue FROM PUBLIC;
COMMENT ON TABLE ledgerlock_gate.number_queue IS
    'ledgerlock: the slots finalizers of a series wait in line on (FOR UPDATE); the rows never change';
