-- One finalization per transaction: a document inserted already final, numbered by ledgerlock.
-- Client c works on series (c mod :series) + 1 (its scope), so 8 clients on 8 series never share a counter.
\set scope (:client_id % :series) + 1
INSERT INTO @table@ (company_id, status, issued_on, amount) VALUES (:scope, 'approved', CURRENT_DATE, 100.00);
