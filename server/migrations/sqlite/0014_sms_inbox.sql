-- Messages taken from a gateway's inbox API (SMS.ir, Ghasedak, Magfa, IPPanel), kept here before
-- they are judged: some of those APIs hand a message out once only, so it is durable here first.
-- `message_id` is the gateway's id, or one derived from the message, prefixed with the gateway's
-- name; it becomes the declaration's id. Judged by one instance at a time (`claimed_until_ms`),
-- retried while the database or the writer fails (`next_attempt_ms`), done once its reply is
-- queued (`done_at_ms`), or refused for good (`failed_at_ms`, a message with no sender).
CREATE TABLE sms_inbox (
    id               INTEGER PRIMARY KEY NOT NULL,
    message_id       TEXT NOT NULL UNIQUE,
    sender           TEXT NOT NULL,
    recipient        TEXT,
    body             TEXT NOT NULL,
    received_at      TEXT,
    fetched_at_ms    INTEGER NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms  INTEGER NOT NULL,
    claimed_until_ms INTEGER,
    done_at_ms       INTEGER,
    failed_at_ms     INTEGER,
    last_error       TEXT
) STRICT;

CREATE INDEX sms_inbox_due ON sms_inbox (next_attempt_ms) WHERE done_at_ms IS NULL AND failed_at_ms IS NULL;

-- Where each gateway's inbox was read up to (`cursor`, the adapter's own: the last id taken), and
-- which instance reads it now (`holder` until `held_until_ms`): one reader at a time.
CREATE TABLE sms_pull (
    gateway       TEXT PRIMARY KEY NOT NULL,
    cursor        TEXT,
    holder        TEXT,
    held_until_ms INTEGER
) STRICT;
