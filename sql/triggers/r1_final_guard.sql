-- Rule R1: finalized rows are permanent.
-- The trigger fires only for rows whose stored (OLD) version satisfies final_when: the condition is
-- compiled into the trigger's WHEN clause, so draft rows never pay for a function call. An UPDATE fires it
-- only when the row's stored bytes change beyond its exempt columns (ledgerlock._row_changed_beyond_exempt):
-- exact whatever the session's settings; an UPDATE that rewrites the same values, or changes only what may
-- still change on a final row, costs nothing.
-- Trigger arguments: the columns that may still change on a final row (declared mutable columns and
-- generated columns).

CREATE OR REPLACE FUNCTION ledgerlock.guard_final_row()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER  -- reads ledgerlock's registry, which clients cannot
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
AS $$
DECLARE
    ll_refused text;  -- a refusal is called as an expression: see ledgerlock._refuse
BEGIN
    -- the row is named from its image under the capture's pinned settings (ledgerlock._audit_row_image): a
    -- float key printed by the writer's extra_float_digits = -15 named another row (0.3 for
    -- 0.30000000000000004). Made on the refusal only: the WHEN clause calls this function for nothing else.
    IF TG_OP = 'DELETE' THEN
        ll_refused := ledgerlock._refuse_final(TG_RELID, ledgerlock._audit_row_image(OLD), 'deleted');
    -- the WHEN clause saw the stored row change; only exempt columns may have (TG_ARGV is NULL, not empty,
    -- when there are none, which _same_except reads as "no exempt columns")
    ELSIF NOT ledgerlock._same_except(OLD, NEW, TG_ARGV) THEN
        ll_refused := ledgerlock._refuse_final(TG_RELID, ledgerlock._audit_row_image(OLD), 'updated');
    END IF;
    RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
END
$$;
REVOKE ALL ON FUNCTION ledgerlock.guard_final_row() FROM PUBLIC;

-- LL001, naming the row, its number and the way out.
CREATE OR REPLACE FUNCTION ledgerlock._refuse_final(tbl regclass, old_row jsonb, verb text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ll_refused text;  -- a refusal is called as an expression: see ledgerlock._refuse
    mutable name[] := (SELECT p.mutable_columns FROM ledgerlock.protected_table p
                       WHERE p.tbl = ledgerlock._rule_table(_refuse_final.tbl));  -- tbl may be a partition
BEGIN
    ll_refused := ledgerlock._refuse('LL001',
        pg_catalog.format('%s is final and cannot be %s; issue a correcting document instead',
                          ledgerlock.row_label(tbl, old_row), verb),
        CASE WHEN verb = 'updated' AND pg_catalog.cardinality(mutable) > 0
             THEN pg_catalog.format('only %s may still change on a final row',
                                    pg_catalog.array_to_string(mutable, ', '))
        END);
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._refuse_final(regclass, jsonb, text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION ledgerlock._install_10_final(tbl regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    is_final text := ledgerlock._final_condition(tbl, 'OLD');
    exempt text := (SELECT pg_catalog.string_agg(pg_catalog.quote_literal(c), ', ')
                    FROM pg_catalog.unnest(ledgerlock._exempt_columns(tbl)) AS c);
BEGIN
    PERFORM ledgerlock._drop_guard_triggers(tbl, 'll_10_');
    IF is_final IS NULL THEN
        RETURN;
    END IF;
    PERFORM ledgerlock._create_guard_trigger(tbl, 'll_10_final_update', pg_catalog.format(
        'BEFORE UPDATE ON %s FOR EACH ROW WHEN ((%s) AND %s) EXECUTE FUNCTION ledgerlock.guard_final_row(%s)',
        tbl, is_final, ledgerlock._row_changed_beyond_exempt(tbl), coalesce(exempt, '')));
    PERFORM ledgerlock._create_guard_trigger(tbl, 'll_10_final_delete', pg_catalog.format(
        'BEFORE DELETE ON %s FOR EACH ROW WHEN (%s) EXECUTE FUNCTION ledgerlock.guard_final_row()',
        tbl, is_final));
END
$$;
REVOKE ALL ON FUNCTION ledgerlock._install_10_final(regclass) FROM PUBLIC;
