-- Leases with fencing (DESIGN.md §3). The instance driving a saga owns it until lease_until (database
-- clock); epoch increases on every takeover, and every write names the owner and epoch it holds, so an
-- instance that lost its lease (paused, partitioned, presumed dead) cannot overwrite its successor.

ALTER TABLE sagas
    ADD COLUMN owner       text,
    ADD COLUMN lease_until timestamptz,
    ADD COLUMN epoch       bigint NOT NULL DEFAULT 0,
    ADD CONSTRAINT sagas_lease_has_owner CHECK ((owner IS NULL) = (lease_until IS NULL));

-- The recovery loop's scan: only the active set is indexed, so the claim stays cheap with millions of
-- finished sagas in the table.
CREATE INDEX sagas_active ON sagas (next_attempt_at NULLS FIRST)
    WHERE status IN ('RUNNING', 'COMPENSATING');

-- Retention deletes the oldest finished sagas first.
CREATE INDEX sagas_finished ON sagas (finished_at) WHERE finished_at IS NOT NULL;

-- Every claim is recorded in the history: which instance continued the saga, at which epoch.
ALTER TABLE saga_events DROP CONSTRAINT saga_events_kind_check;
ALTER TABLE saga_events ADD CONSTRAINT saga_events_kind_check
    CHECK (kind IN ('SAGA_STARTED', 'STEP_SUCCEEDED', 'STEP_FAILED', 'COMPENSATION_STARTED',
                    'STEP_COMPENSATED', 'COMPENSATION_FAILED', 'SAGA_COMPLETED', 'SAGA_COMPENSATED',
                    'SAGA_PARKED', 'SAGA_ABORTED', 'SAGA_RETRIED', 'SAGA_CLAIMED'));
