-- customer: the customers of the lead-to-cash flow and their credit. Money is integer cents.
CREATE SCHEMA customer;

-- used_credit: the sum of the customer's open orders, which may not exceed the credit limit.
CREATE TABLE customer.customers (
    id                 text        PRIMARY KEY,
    name               text        NOT NULL,
    status             text        NOT NULL CHECK (status IN ('ACTIVE', 'SUSPENDED')),
    credit_limit_cents bigint      NOT NULL CHECK (credit_limit_cents >= 0),
    used_credit_cents  bigint      NOT NULL DEFAULT 0 CHECK (used_credit_cents >= 0),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CHECK (used_credit_cents <= credit_limit_cents)
);

INSERT INTO customer.customers (id, name, status, credit_limit_cents) VALUES
    ('acme', 'Acme Corporation', 'ACTIVE', 5000000),
    ('globex', 'Globex', 'ACTIVE', 100000),
    ('initech', 'Initech', 'SUSPENDED', 1000000);

-- The credit each order_creation saga used: USED while its order is open, RESTORED when the saga is
-- undone. A customer's used_credit is the sum of their USED rows.
CREATE TABLE customer.credit_usages (
    id           uuid        PRIMARY KEY,
    saga_id      uuid        NOT NULL UNIQUE,
    customer_id  text        NOT NULL REFERENCES customer.customers (id),
    order_id     uuid        NOT NULL,
    amount_cents bigint      NOT NULL CHECK (amount_cents > 0),
    status       text        NOT NULL CHECK (status IN ('USED', 'RESTORED')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
