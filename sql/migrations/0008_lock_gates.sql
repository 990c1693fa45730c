-- ledgerlock 0008: locks no client can take - the scope gates that order period-lock changes against the
-- writers of a scope, and the mark clock that orders every computation of R3's high-water marks.
--
-- Advisory lock keys are one global space: any client can take any key, so a writer/locker protocol built
-- on them can be stalled by `SELECT pg_advisory_lock(<key>)`. A relation lock cannot: LOCK TABLE needs a
-- privilege on the table, and clients have none on these. Relation locks also queue fairly (a waiting lock
-- change is not overtaken by writers that arrive after it), which row locks do not.

-- 64 empty tables, one per hash bucket of the scope (hashtext(scope) & 63). A writer that reads the windows
-- of a scope holds ROW EXCLUSIVE on its gate to the end of its transaction; a lock change takes SHARE ROW
-- EXCLUSIVE (which conflicts with writers and with other lock changes of the bucket) and holds it to commit.
-- Two scopes that share a bucket only wait for each other; they never see each other's windows.
DO $$
BEGIN
    FOR b IN 0..63 LOOP
        EXECUTE format('CREATE TABLE ledgerlock.%I ()', 'scope_gate_' || lpad(b::text, 2, '0'));
        EXECUTE format('REVOKE ALL ON ledgerlock.%I FROM PUBLIC', 'scope_gate_' || lpad(b::text, 2, '0'));
        EXECUTE format('COMMENT ON TABLE ledgerlock.%I IS %L', 'scope_gate_' || lpad(b::text, 2, '0'),
                       'ledgerlock lock gate of the scopes whose hashtext(scope) & 63 = ' || b
                       || '; never holds rows, only locks');
    END LOOP;
END
$$;

-- The high-water mark of a table (the last day of any active window that applies to it) is written into
-- its ll_20 triggers. Every operation that creates windows or installs those triggers updates this one
-- row first: a concurrent one waits for it to commit and then (READ COMMITTED) sees its windows, or
-- (REPEATABLE READ, SERIALIZABLE) fails with 40001 instead of computing a mark from an older snapshot.
CREATE TABLE ledgerlock.period_mark_clock (
    id          integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    generation  bigint  NOT NULL DEFAULT 0
);
INSERT INTO ledgerlock.period_mark_clock DEFAULT VALUES;
REVOKE ALL ON ledgerlock.period_mark_clock FROM PUBLIC;
COMMENT ON TABLE ledgerlock.period_mark_clock IS
    'one row; updated by every operation that creates lock windows or installs R3 guards, so they serialize';
