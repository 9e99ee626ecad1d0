-- The billing feed: every reading that starts to count for billing (accepted, or approved on
-- review), once, in the order it started to count. A position is never reused and a row never
-- changes, so a cursor over positions neither skips nor repeats. The consumption is the one
-- known when the reading joined the feed.
CREATE TABLE billing_feed (
    position        INTEGER PRIMARY KEY NOT NULL,
    seq             INTEGER NOT NULL UNIQUE,
    consumption_m3  INTEGER,
    added_at_ms     INTEGER NOT NULL
) STRICT;

INSERT INTO billing_feed (position, seq, consumption_m3, added_at_ms)
SELECT ROW_NUMBER() OVER (ORDER BY seq), seq, consumption_m3, received_at_ms FROM declarations WHERE counts;
