-- The delivery generation of the execute attempt that wrote the row (StepRequest.generation): 0 until an
-- operator retries the step. A refusal recorded in an earlier generation is not replayed to a later one:
-- the operator asked to try again, so the step runs afresh. A success is replayed whatever the generation.
ALTER TABLE saga_barrier ADD COLUMN generation integer NOT NULL DEFAULT 0 CHECK (generation >= 0);
