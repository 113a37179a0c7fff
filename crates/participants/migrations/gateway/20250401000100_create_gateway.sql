-- gateway: a payment gateway's orders (payment_create) and the simulated payment channel that takes the
-- money. Money is integer cents.
CREATE SCHEMA gateway;

-- The channels the gateway routes payments to: each takes payments up to its limit, if enabled.
CREATE TABLE gateway.channels (
    id               text    PRIMARY KEY,
    max_amount_cents bigint  NOT NULL CHECK (max_amount_cents > 0),
    enabled          boolean NOT NULL
);

INSERT INTO gateway.channels (id, max_amount_cents, enabled) VALUES
    ('card', 1000000, true),
    ('wallet', 50000, true),
    ('bank_transfer', 10000000, false);

-- One per payment_create saga: CREATED → PAID once the channel has taken the money, or CANCELLED.
CREATE TABLE gateway.orders (
    id           uuid        PRIMARY KEY,
    saga_id      uuid        NOT NULL UNIQUE,
    payer_id     text        NOT NULL,
    channel_id   text        NOT NULL REFERENCES gateway.channels (id),
    amount_cents bigint      NOT NULL CHECK (amount_cents > 0),
    status       text        NOT NULL CHECK (status IN ('CREATED', 'PAID', 'CANCELLED')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- The simulated channel's own records. CREATED: it accepted the request; PAID: it took the money;
-- CANCELLED: the gateway cancelled it (a paid one is given back). Like real channels it knows a payment
-- by the merchant's order number, so a repeated request for one order is the same payment (`requests`
-- counts the asks).
CREATE TABLE gateway.channel_payments (
    id           uuid        PRIMARY KEY,
    order_id     uuid        NOT NULL UNIQUE REFERENCES gateway.orders (id),
    channel_id   text        NOT NULL REFERENCES gateway.channels (id),
    amount_cents bigint      NOT NULL CHECK (amount_cents > 0),
    status       text        NOT NULL CHECK (status IN ('CREATED', 'PAID', 'CANCELLED')),
    requests     integer     NOT NULL DEFAULT 1 CHECK (requests > 0),
    created_at   timestamptz NOT NULL DEFAULT now(),
    paid_at      timestamptz,
    cancelled_at timestamptz,
    CHECK ((status = 'CANCELLED') = (cancelled_at IS NOT NULL))
);
