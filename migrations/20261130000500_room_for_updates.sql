-- A running saga's row and its step rows are rewritten once per step outcome, without touching an
-- indexed column until the saga finishes. Leaving room in each page lets PostgreSQL put the new version
-- next to the old one (a HOT update): no index entry is written for it, and pruning reclaims the old one.
ALTER TABLE sagas SET (fillfactor = 70);
ALTER TABLE saga_steps SET (fillfactor = 70);
