-- A meter's latest reading is no longer stored beside it: it is the later of its billed reading
-- and the last declaration that counts in its chain, which the `declarations_chain` index finds
-- at the end of the meter's entries. Keeping a copy on the meter cost every declaration an
-- update of a row on a random page of this table (in the database and in the write-ahead log),
-- and every writer (declarations, reviews, imports) had to keep the copy true.
ALTER TABLE meters DROP COLUMN last_seq;
ALTER TABLE meters DROP COLUMN last_reading;
ALTER TABLE meters DROP COLUMN last_read_at_ms;
