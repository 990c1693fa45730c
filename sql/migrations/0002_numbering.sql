-- ledgerlock 0002: gapless final numbering (R2) - per-series counters, temporary numbers, format history.
-- The trigger functions and the installer live in sql/triggers/r2_numbering_guard.sql, the public functions
-- (set_number_format, number_gaps) in sql/functions/r2_numbering.sql.

-- One row per series: a table and its format rendered without {SEQ} (split into the text before and
-- after the sequence number). last_value is the last final number handed out and committed with its row,
-- in the same transaction: a rollback gives the number back, a crash loses both together.
--
-- open_from / open_kind exist only inside the statement that finalizes rows: a statement takes a range
-- of numbers (last_value moves to the end of the range) and, when it ends, checks the rows it numbered
-- against the range, gives the unused tail back and closes the range (open_from back to null). A
-- committed row therefore always has open_from null.
CREATE TABLE ledgerlock.number_counter (
    tbl         regclass    NOT NULL,
    prefix      text        COLLATE "C" NOT NULL,
    suffix      text        COLLATE "C" NOT NULL,
    last_value  bigint      NOT NULL DEFAULT 0 CHECK (last_value >= 0),
    open_from   bigint      CHECK (open_from >= 0 AND open_from <= last_value),
    open_kind   text        CHECK (open_kind IN ('insert', 'update', 'both')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tbl, prefix, suffix),
    CHECK ((open_from IS NULL) = (open_kind IS NULL))
) WITH (fillfactor = 50);  -- room on the page, so counter updates stay HOT
REVOKE ALL ON ledgerlock.number_counter FROM PUBLIC;

-- The temporary-number format of each numbered table (drafts inserted with an empty number).
CREATE TABLE ledgerlock.number_setting (
    tbl          regclass   PRIMARY KEY,
    draft_format text       NOT NULL DEFAULT 'DRAFT-{SEQ}'
);
REVOKE ALL ON ledgerlock.number_setting FROM PUBLIC;

-- Every format a table has used, in order: what an auditor reads next to the numbers.
CREATE TABLE ledgerlock.number_format_history (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tbl           regclass    NOT NULL,
    number_format text,
    draft_format  text,
    set_at        timestamptz NOT NULL DEFAULT now(),
    set_by        name        NOT NULL DEFAULT session_user
);
CREATE INDEX ON ledgerlock.number_format_history (tbl, id);
REVOKE ALL ON ledgerlock.number_format_history FROM PUBLIC;

-- Temporary numbers: gaps are fine there, so a plain sequence.
CREATE SEQUENCE ledgerlock.draft_number AS bigint;
REVOKE ALL ON SEQUENCE ledgerlock.draft_number FROM PUBLIC;

-- The series and where each stands, for people: series 'INV-2026-{SEQ}', last number 17.
CREATE VIEW ledgerlock.number_series AS
SELECT c.tbl AS table_name,
       c.prefix || '{SEQ}' || c.suffix AS series,
       c.last_value,
       c.created_at
FROM ledgerlock.number_counter c;
REVOKE ALL ON ledgerlock.number_series FROM PUBLIC;
GRANT SELECT ON ledgerlock.number_series TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;
GRANT SELECT ON ledgerlock.number_format_history TO ledgerlock_admin, ledgerlock_controller, ledgerlock_auditor;
