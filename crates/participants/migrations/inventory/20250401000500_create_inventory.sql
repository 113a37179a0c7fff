-- inventory: stock and the reservations the lead-to-cash flow holds on it.
CREATE SCHEMA inventory;

-- stock: units on hand; available: units no reservation holds. reserved + available = stock, where
-- reserved is the sum of the HELD reservations of the product.
CREATE TABLE inventory.products (
    sku        text        PRIMARY KEY,
    name       text        NOT NULL,
    stock      bigint      NOT NULL CHECK (stock >= 0),
    available  bigint      NOT NULL CHECK (available >= 0 AND available <= stock),
    updated_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO inventory.products (sku, name, stock, available) VALUES
    ('desk', 'Standing desk', 200, 200),
    ('chair', 'Office chair', 500, 500),
    ('lamp', 'Desk lamp', 5, 5);

-- Units held for one order_creation saga: HELD, or RELEASED when the saga is undone. An order may be
-- built on a reservation only until it expires, 5 minutes after it was made.
CREATE TABLE inventory.reservations (
    id         uuid        PRIMARY KEY,
    saga_id    uuid        NOT NULL UNIQUE,
    sku        text        NOT NULL REFERENCES inventory.products (sku),
    quantity   bigint      NOT NULL CHECK (quantity > 0),
    status     text        NOT NULL CHECK (status IN ('HELD', 'RELEASED')),
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
