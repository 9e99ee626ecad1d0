-- A browser a staff member has signed in from before holds a cookie naming it (OWASP's "device
-- cookie"): its sign-ins are counted against the browser, not against the username, so a guesser
-- hammering a username cannot lock its owner out of the browser they always use.
CREATE TABLE trusted_browsers (
    token_hash     TEXT PRIMARY KEY NOT NULL,
    username       TEXT NOT NULL REFERENCES operators (username) ON DELETE CASCADE,
    created_at_ms  INTEGER NOT NULL,
    expires_at_ms  INTEGER NOT NULL
) STRICT;
