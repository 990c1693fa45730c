-- ledgerlock 0016: `ledgerlock status` for every ledgerlock role.
--
-- status reads which code and which migrations are installed; admins and auditors may since 0010, and a
-- controller (who locks periods) asks the same question before a close. Digests, versions and migration
-- names only; writing them stays the owner's (migrate).
GRANT SELECT ON ledgerlock.installed_code TO ledgerlock_controller;
GRANT SELECT ON ledgerlock.installed_migration TO ledgerlock_controller;
