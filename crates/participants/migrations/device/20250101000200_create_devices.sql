-- device: devices allocated to a user's order.
CREATE TABLE devices (
    id         uuid        PRIMARY KEY,
    saga_id    uuid        NOT NULL,
    user_id    text        NOT NULL,
    order_id   uuid        NOT NULL,
    status     text        NOT NULL CHECK (status IN ('ALLOCATED', 'RELEASED')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- compensations find a saga's device when the forward step's output never reached the coordinator
CREATE INDEX devices_saga_id ON devices (saga_id);
