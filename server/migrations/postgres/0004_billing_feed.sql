-- The billing feed: every reading that starts to count for billing (accepted, or approved on
-- review), once, in the order it started to count. A position is never reused and a row never
-- changes, so a cursor over positions neither skips nor repeats. The consumption is the one
-- known when the reading joined the feed.
CREATE TABLE billing_feed (
    position        BIGINT PRIMARY KEY,
    seq             BIGINT NOT NULL UNIQUE,
    consumption_m3  BIGINT,
    added_at_ms     BIGINT NOT NULL
);

INSERT INTO billing_feed (position, seq, consumption_m3, added_at_ms)
SELECT ROW_NUMBER() OVER (ORDER BY seq), seq, consumption_m3, received_at_ms FROM declarations WHERE counts;

-- The last position handed out. Transactions overlap on PostgreSQL: a sequence would let a
-- reader see position 8 committed while 7 is still in flight, and skip 7 for good. Taking the
-- next positions from this row, as the last step before commit, holds its lock until the commit,
-- so positions become visible in order.
CREATE TABLE billing_position (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    last  BIGINT NOT NULL
);
INSERT INTO billing_position (id, last) SELECT 1, COUNT(*) FROM billing_feed;
