-- ledgerlock 0035: the locks that order ledgerlock's operations move to a schema no client may use.
--
-- 0008 put the scope gates in schema ledgerlock, trusting that a client without privileges on a table cannot
-- lock it. It can: PREPARE parses its statement, and parse analysis locks every table it names (an INSERT's
-- target ROW EXCLUSIVE) to the end of the transaction, before any privilege on the table is checked. So the
-- application could hold `PREPARE s AS INSERT INTO ledgerlock.scope_gate_57 DEFAULT VALUES` in an open
-- transaction and stall every lock change of that bucket's scopes, and do the same to the sealer
-- (audit_chain) and to migrate (installed_code). What parse analysis does check first is USAGE on the schema
-- of a name: every client has it on ledgerlock (its functions and views), and none has it on ledgerlock_gate,
-- so no client can name a gate, let alone lock it.
CREATE SCHEMA IF NOT EXISTS ledgerlock_gate;
REVOKE ALL ON SCHEMA ledgerlock_gate FROM PUBLIC;
COMMENT ON SCHEMA ledgerlock_gate IS
    'ledgerlock''s lock gates: empty tables that only ever hold locks; no client may use this schema';

-- (re-runnable, like every migration: a gate already moved is left where it is)
DO $$
BEGIN
    FOR b IN 0..63 LOOP
        IF to_regclass(format('ledgerlock.%I', 'scope_gate_' || lpad(b::text, 2, '0'))) IS NOT NULL THEN
            EXECUTE format('ALTER TABLE ledgerlock.%I SET SCHEMA ledgerlock_gate',
                           'scope_gate_' || lpad(b::text, 2, '0'));
        END IF;
    END LOOP;
END
$$;

-- one sealer at a time (audit_seal); one installer at a time (migrate)
CREATE TABLE IF NOT EXISTS ledgerlock_gate.sealer ();
REVOKE ALL ON ledgerlock_gate.sealer FROM PUBLIC;
COMMENT ON TABLE ledgerlock_gate.sealer IS 'ledgerlock lock gate of the sealer; never holds rows, only locks';
CREATE TABLE IF NOT EXISTS ledgerlock_gate.installer ();
REVOKE ALL ON ledgerlock_gate.installer FROM PUBLIC;
COMMENT ON TABLE ledgerlock_gate.installer IS 'ledgerlock lock gate of migrate; never holds rows, only locks';
