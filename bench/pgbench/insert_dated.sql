-- One single-row INSERT per transaction: a draft document of scope :scope dated :day (an open day that lies
-- before the last locked day, so the period check cannot be skipped by a date filter and really runs).
INSERT INTO @table@ (company_id, issued_on, amount, note) VALUES (:scope, :day, 100.00, 'bench');
