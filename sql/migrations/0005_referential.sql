-- ledgerlock 0005: R4, referential locks and lines that follow their header.
-- One row per rule that protect_referenced / protect_lines installed. The guard triggers (ll_30_*) and the
-- per-rule probe functions are generated from these rows by ledgerlock._install_30_referential.

CREATE TABLE ledgerlock.reference_rule (
    id                  integer     GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- 'referenced': the parent is frozen while a matching child references it;
    -- 'lines': the child (a line) is frozen while its parent (the header) is frozen.
    kind                text        NOT NULL CHECK (kind IN ('referenced', 'lines')),
    parent              regclass    NOT NULL,
    child               regclass    NOT NULL,
    fk_name             name        NOT NULL,           -- the foreign key constraint on child
    child_columns       name[]      NOT NULL,           -- its columns, in constraint order
    parent_columns      name[]      NOT NULL,           -- the parent columns they reference
    child_condition     text,                           -- as the admin wrote it
    child_condition_sql text,                           -- deparsed by PostgreSQL, columns as ll_row.<col>
    operations          text[]      NOT NULL DEFAULT '{update,delete}'
                                    CHECK (operations <@ '{update,delete}' AND cardinality(operations) > 0),
    created_at          timestamptz NOT NULL DEFAULT now(),
    created_by          name        NOT NULL DEFAULT session_user,
    CONSTRAINT reference_rule_unique UNIQUE (kind, parent, child, child_columns),
    CONSTRAINT reference_rule_lines_have_no_condition CHECK (kind = 'referenced' OR child_condition IS NULL)
);
REVOKE ALL ON ledgerlock.reference_rule FROM PUBLIC;
GRANT SELECT ON ledgerlock.reference_rule TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;
