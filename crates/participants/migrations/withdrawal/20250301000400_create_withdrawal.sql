-- withdrawal: merchants withdraw their balance to a bank account. Money is integer cents.
CREATE SCHEMA withdrawal;

-- available: free to withdraw; frozen: held by withdrawals in flight.
CREATE TABLE withdrawal.merchants (
    id              text        PRIMARY KEY,
    available_cents bigint      NOT NULL CHECK (available_cents >= 0),
    frozen_cents    bigint      NOT NULL DEFAULT 0 CHECK (frozen_cents >= 0),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

INSERT INTO withdrawal.merchants (id, available_cents) VALUES
    ('acme', 1000000),
    ('globex', 250000);

-- One per withdrawal saga. FROZEN → TRANSFERRED → DEDUCTED → COMPLETED, each step undone by its
-- compensation in reverse, down to CANCELLED.
CREATE TABLE withdrawal.withdrawals (
    id           uuid        PRIMARY KEY,
    saga_id      uuid        NOT NULL UNIQUE,
    merchant_id  text        NOT NULL REFERENCES withdrawal.merchants (id),
    amount_cents bigint      NOT NULL CHECK (amount_cents > 0),
    status       text        NOT NULL
                             CHECK (status IN ('FROZEN', 'TRANSFERRED', 'DEDUCTED', 'COMPLETED', 'CANCELLED')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- The simulated bank. Like many real ones it does what it is told: two requests are two transfers, so
-- only the participant's barrier keeps a retried step from paying twice. A transfer can be reversed.
CREATE TABLE withdrawal.bank_transfers (
    id            uuid        PRIMARY KEY,
    withdrawal_id uuid        NOT NULL REFERENCES withdrawal.withdrawals (id),
    amount_cents  bigint      NOT NULL CHECK (amount_cents > 0),
    status        text        NOT NULL CHECK (status IN ('SENT', 'REVERSED')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    reversed_at   timestamptz,
    CHECK ((status = 'REVERSED') = (reversed_at IS NOT NULL))
);

CREATE INDEX bank_transfers_withdrawal_id ON withdrawal.bank_transfers (withdrawal_id);
