-- The saga log: one row per saga, one row per step, and an append-only event history.
-- Statuses are CHECK-constrained enums mirroring saga_core::status; no extensions are used so the schema
-- stays portable to PostgreSQL-compatible distributed SQL.

CREATE TABLE sagas (
    id                 uuid        PRIMARY KEY,
    saga_type          text        NOT NULL,
    definition_version integer     NOT NULL CHECK (definition_version > 0),
    -- The definition the saga started with; editing definitions/*.yaml never changes a running saga.
    definition         jsonb       NOT NULL,
    status             text        NOT NULL
        CHECK (status IN ('RUNNING', 'COMPENSATING', 'COMPLETED', 'COMPENSATED', 'FAILED')),
    failure_reason     text
        CHECK (failure_reason IN ('STEP_FAILED', 'TIMED_OUT', 'ABORTED', 'COMPENSATION_FAILED', 'FORWARD_FAILED')),
    failure_message    text,
    -- Start payload merged with every succeeded step's output.
    state              jsonb       NOT NULL,
    -- Step being executed or compensated; NULL once terminal.
    current_step       integer,
    idempotency_key    text,
    -- Earliest time of the next call while a retry is scheduled.
    next_attempt_at    timestamptz,
    deadline_at        timestamptz,
    -- Optimistic concurrency: every write names the revision it read and bumps it.
    revision           bigint      NOT NULL DEFAULT 0,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
    finished_at        timestamptz,
    CONSTRAINT sagas_failure_has_message CHECK ((failure_reason IS NULL) = (failure_message IS NULL)),
    CONSTRAINT sagas_finished_iff_terminal
        CHECK ((finished_at IS NOT NULL) = (status IN ('COMPLETED', 'COMPENSATED', 'FAILED')))
);

-- StartSaga's idempotency: one saga per (type, key).
CREATE UNIQUE INDEX sagas_idempotency_key ON sagas (saga_type, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE saga_steps (
    saga_id               uuid        NOT NULL REFERENCES sagas (id) ON DELETE CASCADE,
    step_index            integer     NOT NULL CHECK (step_index >= 0),
    name                  text        NOT NULL,
    participant           text        NOT NULL,
    status                text        NOT NULL
        CHECK (status IN ('PENDING', 'RUNNING', 'SUCCEEDED', 'FAILED', 'COMPENSATING', 'COMPENSATED', 'SKIPPED')),
    attempts              integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    compensation_attempts integer     NOT NULL DEFAULT 0 CHECK (compensation_attempts >= 0),
    output                jsonb,
    last_error            text,
    started_at            timestamptz,
    finished_at           timestamptz,
    PRIMARY KEY (saga_id, step_index)
);

CREATE TABLE saga_events (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    saga_id    uuid        NOT NULL REFERENCES sagas (id) ON DELETE CASCADE,
    kind       text        NOT NULL
        CHECK (kind IN ('SAGA_STARTED', 'STEP_SUCCEEDED', 'STEP_FAILED', 'COMPENSATION_STARTED',
                        'STEP_COMPENSATED', 'COMPENSATION_FAILED', 'SAGA_COMPLETED', 'SAGA_COMPENSATED',
                        'SAGA_PARKED')),
    step_index integer,
    attempt    integer,
    -- The whole event as JSON (saga_core::HistoryEvent).
    detail     jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX saga_events_by_saga ON saga_events (saga_id, id);
