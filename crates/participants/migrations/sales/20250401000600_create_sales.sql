-- sales: the lead-to-cash flow's orders and their payments. Money is integer cents.
CREATE SCHEMA sales;

-- One per order_creation saga, built on its inventory reservation: PENDING_PAYMENT → PAID once its
-- payment is captured (an open order), or CANCELLED when the saga is undone.
CREATE TABLE sales.orders (
    id             uuid        PRIMARY KEY,
    saga_id        uuid        NOT NULL UNIQUE,
    customer_id    text        NOT NULL,
    sku            text        NOT NULL,
    quantity       bigint      NOT NULL CHECK (quantity > 0),
    amount_cents   bigint      NOT NULL CHECK (amount_cents > 0),
    reservation_id uuid        NOT NULL,
    status         text        NOT NULL CHECK (status IN ('PENDING_PAYMENT', 'PAID', 'CANCELLED')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- The payments captured for orders (a simulated payment processor): CAPTURED, or REFUNDED when the saga
-- is undone.
CREATE TABLE sales.payments (
    id           uuid        PRIMARY KEY,
    order_id     uuid        NOT NULL REFERENCES sales.orders (id),
    amount_cents bigint      NOT NULL CHECK (amount_cents > 0),
    status       text        NOT NULL CHECK (status IN ('CAPTURED', 'REFUNDED')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    refunded_at  timestamptz,
    CHECK ((status = 'REFUNDED') = (refunded_at IS NOT NULL))
);

CREATE INDEX payments_order_id ON sales.payments (order_id);
