-- The subscriber registry (imported from billing) and every channel's declarations.
-- Times are milliseconds since the Unix epoch; ids are text so one query text serves both backends.

CREATE TABLE meters (
    subscription     TEXT PRIMARY KEY NOT NULL,
    meter_serial     TEXT NOT NULL,
    digits           INTEGER NOT NULL,
    billed_reading   INTEGER,
    billed_at_ms     INTEGER,
    avg_daily_m3     REAL,
    max_hourly_m3    REAL NOT NULL DEFAULT 6,
    phone            TEXT,
    -- The latest reading that counts, in reading time: a declaration (last_seq) or the billed one.
    last_seq         INTEGER,
    last_reading     INTEGER,
    last_read_at_ms  INTEGER,
    updated_at_ms    INTEGER NOT NULL
) STRICT;

CREATE TABLE declarations (
    seq                  INTEGER PRIMARY KEY NOT NULL,
    id                   TEXT NOT NULL UNIQUE,
    channel              TEXT NOT NULL,
    device_id            TEXT,
    subscription         TEXT NOT NULL,
    meter_serial         TEXT NOT NULL,
    reading              INTEGER,
    read_at_ms           INTEGER NOT NULL,
    read_at              TEXT NOT NULL,
    note                 TEXT,
    received_at_ms       INTEGER NOT NULL,
    status               TEXT NOT NULL,
    code                 TEXT,
    -- The consumption first answered, and the current one (recomputed when a reading lands before).
    answered_consumption INTEGER,
    consumption_m3       INTEGER,
    duplicate_of         INTEGER,
    counts               INTEGER NOT NULL,
    fingerprint          TEXT NOT NULL
) STRICT;

CREATE INDEX declarations_chain ON declarations (subscription, read_at_ms) WHERE counts;

CREATE TABLE devices (
    token_hash     TEXT PRIMARY KEY NOT NULL,
    device_id      TEXT NOT NULL,
    subscription   TEXT NOT NULL,
    created_at_ms  INTEGER NOT NULL
) STRICT;
