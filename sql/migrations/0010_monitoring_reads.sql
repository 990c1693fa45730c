-- ledgerlock 0010: what `ledgerlock doctor` and `ledgerlock status` read, readable by the monitoring roles.
--
-- doctor judges drifted function bodies against the installed code's digest: without it, a guard function
-- replaced by a superuser went unreported when doctor ran as the auditor (the documented monitoring setup).
-- The table holds digests and versions only; writing it stays the owner's (migrate).
GRANT SELECT ON ledgerlock.installed_code TO ledgerlock_admin, ledgerlock_auditor;
-- `ledgerlock status` run by them reads the applied migrations here (yoyo's own tables stay the owner's).
GRANT SELECT ON ledgerlock.installed_migration TO ledgerlock_admin, ledgerlock_auditor;
