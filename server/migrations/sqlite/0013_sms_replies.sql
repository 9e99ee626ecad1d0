-- Replies to SMS senders, kept until a gateway has taken them: queued once per message answered
-- (`answers`, so a redelivered message is answered once), claimed by one instance at a time
-- (`claimed_until_ms`), retried with backoff (`next_attempt_ms`), and either sent or failed for
-- good, which the console shows.
CREATE TABLE sms_replies (
    id               INTEGER PRIMARY KEY NOT NULL,
    answers          TEXT NOT NULL UNIQUE,
    recipient        TEXT NOT NULL,
    body             TEXT NOT NULL,
    queued_at_ms     INTEGER NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms  INTEGER NOT NULL,
    claimed_until_ms INTEGER,
    sent_at_ms       INTEGER,
    gateway_ref      TEXT,
    failed_at_ms     INTEGER,
    last_error       TEXT
) STRICT;

CREATE INDEX sms_replies_due ON sms_replies (next_attempt_ms) WHERE sent_at_ms IS NULL AND failed_at_ms IS NULL;
CREATE INDEX sms_replies_failed ON sms_replies (failed_at_ms) WHERE failed_at_ms IS NOT NULL;
