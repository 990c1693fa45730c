-- One single-row INSERT per transaction: a draft document of scope :scope, dated today (open period).
INSERT INTO @table@ (company_id, issued_on, amount, note) VALUES (:scope, CURRENT_DATE, 100.00, 'bench');
