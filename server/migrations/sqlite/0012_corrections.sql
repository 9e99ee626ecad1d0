-- A subscriber's correction of a mistyped reading (the sync API's `corrects`): the new
-- declaration names the one it replaced, which is voided in the same transaction. Kept on the new
-- row so that a replay answers the same `supersedes` as the first answer.
ALTER TABLE declarations ADD COLUMN supersedes TEXT;
