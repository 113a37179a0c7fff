-- How many deliveries each barrier row answered from its record instead of running the handler again:
-- duplicates (retries whose first answer was lost, concurrent repeats) and late forward steps fenced off
-- by their compensation.
ALTER TABLE saga_barrier ADD COLUMN replays integer NOT NULL DEFAULT 0 CHECK (replays >= 0);
