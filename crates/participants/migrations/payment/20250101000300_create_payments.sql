-- payment: captured charges and their refunds. Money is integer cents.
CREATE TABLE payments (
    id           uuid        PRIMARY KEY,
    saga_id      uuid        NOT NULL,
    order_id     uuid        NOT NULL,
    user_id      text        NOT NULL,
    amount_cents bigint      NOT NULL CHECK (amount_cents > 0),
    status       text        NOT NULL CHECK (status IN ('CAPTURED', 'REFUNDED')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- compensations find a saga's payment when the forward step's output never reached the coordinator
CREATE INDEX payments_saga_id ON payments (saga_id);
