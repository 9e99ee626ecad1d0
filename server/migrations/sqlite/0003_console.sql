-- The staff console: operators, their sessions, the audit log, and who declared or reviewed what.

CREATE TABLE operators (
    username       TEXT PRIMARY KEY NOT NULL,
    role           TEXT NOT NULL,
    office         TEXT NOT NULL,
    password_hash  TEXT NOT NULL,
    created_at_ms  INTEGER NOT NULL,
    updated_at_ms  INTEGER NOT NULL
) STRICT;

-- A session is found by the hash of its cookie; the CSRF token is sent back in every form.
CREATE TABLE sessions (
    token_hash     TEXT PRIMARY KEY NOT NULL,
    username       TEXT NOT NULL REFERENCES operators (username) ON DELETE CASCADE,
    csrf           TEXT NOT NULL,
    created_at_ms  INTEGER NOT NULL,
    expires_at_ms  INTEGER NOT NULL
) STRICT;

CREATE TABLE audit (
    seq        INTEGER PRIMARY KEY NOT NULL,
    at_ms      INTEGER NOT NULL,
    username   TEXT NOT NULL,
    action     TEXT NOT NULL,
    detail     TEXT NOT NULL
) STRICT;

-- A declaration made at a counter office records the operator and the office.
ALTER TABLE declarations ADD COLUMN operator TEXT;
ALTER TABLE declarations ADD COLUMN office TEXT;
-- A reviewer's decision on a declaration that needed review. The first outcome (status, code,
-- answered_consumption) stays as answered; the decision is kept beside it.
ALTER TABLE declarations ADD COLUMN review TEXT;
ALTER TABLE declarations ADD COLUMN review_reason TEXT;
ALTER TABLE declarations ADD COLUMN reviewed_by TEXT;
ALTER TABLE declarations ADD COLUMN reviewed_at_ms INTEGER;

CREATE INDEX declarations_review_queue ON declarations (seq) WHERE status = 'needs_review' AND review IS NULL;
CREATE INDEX declarations_office ON declarations (office, received_at_ms) WHERE office IS NOT NULL;
