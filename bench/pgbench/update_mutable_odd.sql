-- One single-row UPDATE per transaction of the mutable column of a random odd id: a referenced parent.
\set id 2 * random(1, :rows / 2) - 1
UPDATE @table@ SET paid = NOT paid WHERE id = :id;
