-- Limits slow a guesser down with growing delays instead of a wall at the end of a fixed window
-- (`limits.rs`): a key's count starts again once it has been quiet for a whole window, and the
-- next try waits from its last failure, so the row keeps the time of its last failure.
ALTER TABLE identity_failures RENAME COLUMN window_started_ms TO last_failure_ms;
DROP INDEX identity_failures_by_window;
CREATE INDEX identity_failures_by_last ON identity_failures (last_failure_ms);
