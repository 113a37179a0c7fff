-- Labels and work done by hand (issue 14).
--
-- A saga's labels are business keys its caller knows it by (orderId = 123), given at StartSaga and never
-- changed. One row per label: ListSagas finds the sagas with one label by walking
-- saga_labels_by_value newest first, so a page costs its own rows however many sagas carry the label.
-- Plain btree indexes only, so the schema stays portable to PostgreSQL-compatible distributed SQL.
CREATE TABLE saga_labels (
    saga_id uuid NOT NULL REFERENCES sagas (id) ON DELETE CASCADE,
    key     text NOT NULL,
    value   text NOT NULL,
    PRIMARY KEY (saga_id, key)
);

CREATE INDEX saga_labels_by_value ON saga_labels (key, value, saga_id);

-- What an operator did by hand for a step a saga parked at (ResolveSaga): outcome, note, reason, who,
-- when (saga_core::Resolution as JSON); NULL for a step nobody resolved.
ALTER TABLE saga_steps ADD COLUMN resolution jsonb;

ALTER TABLE saga_events DROP CONSTRAINT saga_events_kind_check;
ALTER TABLE saga_events ADD CONSTRAINT saga_events_kind_check
    CHECK (kind IN ('SAGA_STARTED', 'STEP_SUCCEEDED', 'STEP_FAILED', 'COMPENSATION_STARTED',
                    'STEP_COMPENSATED', 'COMPENSATION_FAILED', 'SAGA_COMPLETED', 'SAGA_COMPENSATED',
                    'SAGA_PARKED', 'SAGA_ABORTED', 'SAGA_RETRIED', 'SAGA_CLAIMED', 'SAGA_QUARANTINED',
                    'STEP_RESOLVED'));
