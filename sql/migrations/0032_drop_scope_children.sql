-- ledgerlock 0032: _scope_children(regclass) goes. Nothing calls it: a parent's guard is generated at protect
-- time for the tables that take their scope or date from it, and doctor reads the registry itself.
DROP FUNCTION IF EXISTS ledgerlock._scope_children(regclass);
