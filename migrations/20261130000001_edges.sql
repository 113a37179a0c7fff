-- Correctness at the edges (issue 9).
--
-- A step remembers how often an operator retried it (its delivery generation, sent with every call so a
-- participant runs a step again after a refusal it recorded in an earlier generation), and whether an
-- attempt may have taken effect without its OK being recorded (kept across operator retries).
ALTER TABLE saga_steps
    ADD COLUMN generation    integer NOT NULL DEFAULT 0 CHECK (generation >= 0),
    ADD COLUMN maybe_applied boolean NOT NULL DEFAULT false;

-- A saga row this version cannot decode (e.g. a definition snapshot written by a newer version during a
-- rolling upgrade) is set aside for a while instead of poisoning every claim batch.
ALTER TABLE saga_events DROP CONSTRAINT saga_events_kind_check;
ALTER TABLE saga_events ADD CONSTRAINT saga_events_kind_check
    CHECK (kind IN ('SAGA_STARTED', 'STEP_SUCCEEDED', 'STEP_FAILED', 'COMPENSATION_STARTED',
                    'STEP_COMPENSATED', 'COMPENSATION_FAILED', 'SAGA_COMPLETED', 'SAGA_COMPENSATED',
                    'SAGA_PARKED', 'SAGA_ABORTED', 'SAGA_RETRIED', 'SAGA_CLAIMED', 'SAGA_QUARANTINED'));

-- Retention deletes only sagas that finished for good: parked (FAILED) sagas are the dead-letter set and
-- stay until an operator resolves them.
DROP INDEX sagas_finished;
CREATE INDEX sagas_finished ON sagas (finished_at) WHERE status IN ('COMPLETED', 'COMPENSATED');
