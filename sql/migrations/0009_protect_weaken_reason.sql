-- ledgerlock 0009: protect() takes weaken_reason (last, default null), so that a re-protect which loosens or
-- removes rules is confirmed and audited; conditions are screened with the parameter they came from.
-- The functions whose signature changed are dropped here; sql/functions/protect.sql creates the new ones.
DROP FUNCTION IF EXISTS ledgerlock.protect(regclass, name, name, text, name, text, name[], text);
DROP FUNCTION IF EXISTS ledgerlock._deparse_condition(regclass, text);
