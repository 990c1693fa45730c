-- One single-row UPDATE per transaction of a random draft document (ids 1..:rows).
\set id random(1, :rows)
UPDATE @table@ SET amount = amount + 1, note = 'bench' WHERE id = :id;
