-- One single-row UPDATE per transaction of a random even id: the unreferenced parents (odd ids have a child).
\set id 2 * random(1, :rows / 2)
UPDATE @table@ SET amount = amount + 1, note = 'bench' WHERE id = :id;
