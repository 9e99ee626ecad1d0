-- The billing feed carries corrections. A reading whose consumption changes after it joined the
-- feed (an earlier reading arrived later, a held reading was approved before it, staff voided the
-- reading before it) gets a new entry for its tracking code, `kind = 'correction'`, that
-- `replaces` the entry before it; a reading staff voided gets `kind = 'void'` (it no longer
-- counts). Entries still never change and positions are never reused: a consumer reads in
-- order, and the latest entry of a tracking code stands. `seq` is no longer unique.
ALTER TABLE billing_feed DROP CONSTRAINT billing_feed_seq_key;
ALTER TABLE billing_feed ADD COLUMN kind TEXT NOT NULL DEFAULT 'reading';
ALTER TABLE billing_feed ADD COLUMN replaces BIGINT;

-- A reading's latest entry: the last of its entries here.
CREATE INDEX billing_feed_by_seq ON billing_feed (seq, position);

-- Staff void an accepted reading that is wrong: it stops counting, with who, when and why.
ALTER TABLE declarations ADD COLUMN voided_by TEXT;
ALTER TABLE declarations ADD COLUMN void_reason TEXT;
ALTER TABLE declarations ADD COLUMN voided_at_ms BIGINT;

-- A held declaration approved as a repeat of one that counts (the same reading, read close by)
-- names it here, and adds nothing to the chain or the bill. `duplicate_of` stays as first answered.
ALTER TABLE declarations ADD COLUMN repeat_of BIGINT;

-- Held declarations by meter and reading time, so that the same reading sent again is found and
-- answered as the one it repeats instead of becoming a second review item.
CREATE INDEX declarations_held ON declarations (subscription, read_at_ms)
    WHERE status = 'needs_review' AND review IS NULL AND duplicate_of IS NULL;
