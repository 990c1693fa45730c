-- One transaction: a draft header of scope :scope dated :day with one line under it (the line's date is the
-- header's), then the header deleted, its line with it (ON DELETE CASCADE).
BEGIN;
INSERT INTO @table@ (company_id, issued_on, amount, note) VALUES (:scope, :day, 100.00, 'bench') RETURNING id \gset
INSERT INTO @lines@ (parent_id, company_id, amount) VALUES (:id, :scope, 1);
DELETE FROM @table@ WHERE id = :id;
END;
