-- payment moves into its own schema; a payment is SUCCESS once captured, REFUNDING while a refund saga
-- holds it, REFUNDED once the provider has returned the money.
CREATE SCHEMA payment;

ALTER TABLE payments SET SCHEMA payment;
ALTER TABLE payment.payments DROP CONSTRAINT payments_status_check;
UPDATE payment.payments SET status = 'SUCCESS' WHERE status = 'CAPTURED';
ALTER TABLE payment.payments
    ADD CONSTRAINT payments_status_check CHECK (status IN ('SUCCESS', 'REFUNDING', 'REFUNDED')),
    -- the payment_refund saga that moved it to REFUNDING: only that saga may move it on or back
    ADD COLUMN refunding_saga_id uuid,
    ADD CONSTRAINT payments_refunding_check CHECK ((status = 'REFUNDING') = (refunding_saga_id IS NOT NULL));

-- The simulated payment provider's refunds. The provider is idempotent on its own: one refund per
-- payment, whoever asks and however often (`requests` counts the asks).
CREATE TABLE payment.provider_refunds (
    id           uuid        PRIMARY KEY,
    payment_id   uuid        NOT NULL UNIQUE REFERENCES payment.payments (id),
    amount_cents bigint      NOT NULL CHECK (amount_cents > 0),
    requests     integer     NOT NULL DEFAULT 1 CHECK (requests > 0),
    created_at   timestamptz NOT NULL DEFAULT now()
);
