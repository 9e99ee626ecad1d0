-- A meter's latest reading is no longer stored beside it: it is the later of its billed reading
-- and the last declaration that counts in its chain, which the `declarations_chain` index finds
-- at the end of the meter's entries. Keeping a copy on the meter cost every declaration an
-- update of a row on a random page of this table (in the database and in the write-ahead log),
-- and every writer (declarations, reviews, imports) had to keep the copy true.
ALTER TABLE meters DROP COLUMN last_seq;
ALTER TABLE meters DROP COLUMN last_reading;
ALTER TABLE meters DROP COLUMN last_read_at_ms;

-- The latest declaration is the chain's last entry in (reading time, seq). PostgreSQL orders
-- equal keys by where their rows lie, not by seq, so seq joins the key: the latest is then one
-- step back from the end of the meter's entries, with no sort.
DROP INDEX declarations_chain;
CREATE INDEX declarations_chain ON declarations (subscription, read_at_ms, seq) WHERE counts;
