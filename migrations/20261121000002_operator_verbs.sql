-- Operator verbs (AbortSaga, RetrySaga) append their own history events, and ListSagas pages through
-- sagas newest first by id (UUIDv7, time-ordered) filtered by status or type.

ALTER TABLE saga_events DROP CONSTRAINT saga_events_kind_check;
ALTER TABLE saga_events ADD CONSTRAINT saga_events_kind_check
    CHECK (kind IN ('SAGA_STARTED', 'STEP_SUCCEEDED', 'STEP_FAILED', 'COMPENSATION_STARTED',
                    'STEP_COMPENSATED', 'COMPENSATION_FAILED', 'SAGA_COMPLETED', 'SAGA_COMPENSATED',
                    'SAGA_PARKED', 'SAGA_ABORTED', 'SAGA_RETRIED'));

CREATE INDEX sagas_by_status ON sagas (status, id);
CREATE INDEX sagas_by_type ON sagas (saga_type, id);
