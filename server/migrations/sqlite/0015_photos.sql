-- Meter photos, at most one per declaration (`declaration_id`, the declaration's id), sent by
-- the phone that made it after the reading itself. `sha256` is of the upload as sent, so a retry
-- is known for one; `bytes` is the picture without its metadata (`crate::photo`). Deleted after
-- the operator's retention (`received_at_ms`).
CREATE TABLE photos (
    declaration_id TEXT PRIMARY KEY NOT NULL,
    sha256         TEXT NOT NULL,
    media_type     TEXT NOT NULL,
    width          INTEGER NOT NULL,
    height         INTEGER NOT NULL,
    bytes          BLOB NOT NULL,
    received_at_ms INTEGER NOT NULL
) STRICT;

CREATE INDEX photos_received ON photos (received_at_ms);
