-- The registry keyed by its subscription alone: a WITHOUT ROWID table is one b-tree ordered by the
-- key, so finding a meter and moving its latest reading (once per declaration) walk one tree
-- instead of the key's index and then the table. The rows are small, as such tables want.

CREATE TABLE meters_by_subscription (
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
) STRICT, WITHOUT ROWID;

INSERT INTO meters_by_subscription (subscription, meter_serial, digits, billed_reading, billed_at_ms, avg_daily_m3,
    max_hourly_m3, phone, last_seq, last_reading, last_read_at_ms, updated_at_ms)
SELECT subscription, meter_serial, digits, billed_reading, billed_at_ms, avg_daily_m3,
    max_hourly_m3, phone, last_seq, last_reading, last_read_at_ms, updated_at_ms
FROM meters;

DROP TABLE meters;
ALTER TABLE meters_by_subscription RENAME TO meters;
