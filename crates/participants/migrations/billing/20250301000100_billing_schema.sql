-- billing moves into its own schema (each demo service owns one), and orders gain the statuses of the
-- refund flow: PENDING → ACTIVE (purchase_plan), → CANCELLED (its compensation), ACTIVE → REFUNDED
-- (payment_refund). PAID is an order paid but not yet activated.
CREATE SCHEMA billing;

ALTER TABLE billing_plans SET SCHEMA billing;
ALTER TABLE billing.billing_plans RENAME TO plans;

ALTER TABLE billing_orders SET SCHEMA billing;
ALTER TABLE billing.billing_orders RENAME TO orders;
ALTER INDEX billing.billing_orders_saga_id RENAME TO orders_saga_id;
ALTER TABLE billing.orders DROP CONSTRAINT billing_orders_status_check;
ALTER TABLE billing.orders ADD CONSTRAINT orders_status_check
    CHECK (status IN ('PENDING', 'PAID', 'ACTIVE', 'CANCELLED', 'REFUNDED'));
