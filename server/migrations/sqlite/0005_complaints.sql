-- Complaints and disputes, from the web app (queued offline like declarations) or a counter
-- office, and staff answers. `id` is the client's idempotency key; the complaint number is made
-- from `seq`.
CREATE TABLE complaints (
    seq             INTEGER PRIMARY KEY NOT NULL,
    id              TEXT NOT NULL UNIQUE,
    channel         TEXT NOT NULL,
    device_id       TEXT,
    subscription    TEXT NOT NULL,
    kind            TEXT NOT NULL,
    -- The declaration it is about, by its sequence number (from the tracking code quoted).
    about_seq       INTEGER,
    text            TEXT NOT NULL,
    made_at_ms      INTEGER NOT NULL,
    received_at_ms  INTEGER NOT NULL,
    operator        TEXT,
    office          TEXT,
    fingerprint     TEXT NOT NULL,
    answer          TEXT,
    answered_by     TEXT,
    answered_at_ms  INTEGER
) STRICT;

CREATE INDEX complaints_open ON complaints (seq) WHERE answer IS NULL;
