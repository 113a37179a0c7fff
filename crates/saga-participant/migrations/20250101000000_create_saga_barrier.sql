-- The idempotency barrier of a saga participant (saga-participant SDK). One row per
-- (participant service, saga, step, direction), written in the same transaction as the step's business
-- work, so a repeated request finds the first answer instead of doing the work twice.
CREATE TABLE saga_barrier (
    service         text        NOT NULL,
    saga_id         uuid        NOT NULL,
    step            text        NOT NULL,
    direction       text        NOT NULL CHECK (direction IN ('execute', 'compensate')),
    -- succeeded: the handler ran and its output is stored
    -- refused:   the forward handler refused; its work was rolled back, the refusal is replayed
    -- cancelled: the compensation arrived first, so the forward step must never run
    -- skipped:   the compensation had nothing to undo, the handler was not called
    outcome         text        NOT NULL CHECK (outcome IN ('succeeded', 'refused', 'cancelled', 'skipped')),
    -- NULL on the execute row a compensation writes on behalf of a forward step that never arrived
    idempotency_key text,
    output          jsonb,
    error_code      text        CHECK (error_code IN ('ABORTED', 'FAILED_PRECONDITION', 'INVALID_ARGUMENT',
                                                      'NOT_FOUND', 'ALREADY_EXISTS', 'PERMISSION_DENIED',
                                                      'OUT_OF_RANGE')),
    error_message   text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (service, saga_id, step, direction),
    CHECK (outcome NOT IN ('refused', 'cancelled') OR direction = 'execute'),
    CHECK (outcome <> 'skipped' OR direction = 'compensate'),
    CHECK ((outcome = 'refused') = (error_code IS NOT NULL AND error_message IS NOT NULL))
);
