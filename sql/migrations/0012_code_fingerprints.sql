-- ledgerlock 0012: fingerprints of ledgerlock's functions as ledgerlock installed them, and the functions the
-- code files no longer define.
--
-- One row per function in schema ledgerlock: `shipped` rows are written at the end of the code script (the
-- functions of sql/functions and sql/triggers as they were just created), `generated` rows when an installer
-- creates a guard trigger on a function it generated for one table or rule. doctor compares each live
-- function (md5 of pg_proc.prosrc, SECURITY DEFINER, its SET clauses) with its row, so a body replaced by
-- hand is reported by name, also to the auditor; the manager checks the shipped rows against its own package.
CREATE TABLE ledgerlock.code_fingerprint (
    fn                  text        PRIMARY KEY,  -- the signature, as regprocedure prints it
    origin              text        NOT NULL CHECK (origin IN ('shipped', 'generated')),
    body_md5            text        NOT NULL CHECK (body_md5 ~ '^[0-9a-f]{32}$'),
    security_definer    boolean     NOT NULL,
    config              text[],                   -- pg_proc.proconfig: the pinned settings
    recorded_at         timestamptz NOT NULL DEFAULT now(),
    recorded_by         name        NOT NULL DEFAULT session_user
);
REVOKE ALL ON ledgerlock.code_fingerprint FROM PUBLIC;
GRANT SELECT ON ledgerlock.code_fingerprint TO ledgerlock_admin, ledgerlock_auditor;

-- Functions the code files no longer define: a code file never drops anything (hooks are listed by
-- ledgerlock._rules(), not discovered by name, so a leftover would only be dead code with the owner's rights).
DROP FUNCTION IF EXISTS ledgerlock._audit_chain_problems(bigint, bigint);  -- replaced by _audit_link_problems
DROP FUNCTION IF EXISTS ledgerlock._ll40_drop_triggers(regclass);  -- _drop_guard_triggers covers partitions
DROP FUNCTION IF EXISTS ledgerlock._uninstall_00_truncate(regclass);  -- unprotect drops every ll_ trigger
DROP FUNCTION IF EXISTS ledgerlock._audit_period_context(regclass, jsonb, jsonb, boolean, text, text);
DROP FUNCTION IF EXISTS ledgerlock._uninstall_90_audit(regclass);  -- unprotect drops every ll_ trigger
