-- One single-row INSERT per transaction of a line under a random parent (a draft, dated today).
\set id random(1, :rows)
INSERT INTO @table@ (parent_id, amount) VALUES (:id, 1);
