-- The baseline of finalization: the same INSERT numbered by nextval() of a per-series sequence (what an
-- ERP does today; it leaves a gap on every rollback).
\set scope (:client_id % :series) + 1
INSERT INTO @table@ (company_id, status, issued_on, amount, number)
VALUES (:scope, 'approved', CURRENT_DATE, 100.00,
        'INV-' || :scope || '-' || lpad(nextval(('bench_seq_' || :scope)::regclass)::text, 5, '0'));
