-- Failed identity attempts (a wrong meter serial, a wrong console password), counted where every
-- instance that shares this database sees them: one row per key, whose window starts again once
-- it has ended. Only a store shared by several instances (PostgreSQL) uses it; one SQLite
-- process keeps its counters in memory.
CREATE TABLE identity_failures (
    key               TEXT PRIMARY KEY,
    window_started_ms BIGINT NOT NULL,
    failures          BIGINT NOT NULL
);
CREATE INDEX identity_failures_by_window ON identity_failures (window_started_ms);
