-- device moves into its own schema and gains device_creation: per-user quotas, a simulated container
-- runtime, and devices provisioned in a container rather than allocated to an order.
CREATE SCHEMA device;

ALTER TABLE devices SET SCHEMA device;
ALTER TABLE device.devices
    ALTER COLUMN order_id DROP NOT NULL,
    ADD COLUMN container_id uuid,
    DROP CONSTRAINT devices_status_check;
-- ALLOCATED: bound to a purchased order (purchase_plan). PROVISIONING → READY: created in a container
-- (device_creation). RELEASED: given back, by a compensation or a refund.
ALTER TABLE device.devices ADD CONSTRAINT devices_status_check CHECK (
    (order_id IS NOT NULL AND container_id IS NULL AND status IN ('ALLOCATED', 'RELEASED'))
    OR (order_id IS NULL AND container_id IS NOT NULL AND status IN ('PROVISIONING', 'READY', 'RELEASED'))
);
-- a refund releases the devices of an order
CREATE INDEX devices_order_id ON device.devices (order_id);

-- How many provisioned devices a user may have. A user without a row gets the default on first use.
CREATE TABLE device.quotas (
    user_id      text        PRIMARY KEY,
    max_devices  integer     NOT NULL DEFAULT 3 CHECK (max_devices >= 0),
    used_devices integer     NOT NULL DEFAULT 0 CHECK (used_devices >= 0),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CHECK (used_devices <= max_devices)
);

-- The simulated container runtime: what it is running, and for which saga.
CREATE TABLE device.containers (
    id         uuid        PRIMARY KEY,
    saga_id    uuid        NOT NULL,
    user_id    text        NOT NULL,
    status     text        NOT NULL CHECK (status IN ('RUNNING', 'DESTROYED')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- compensations find a saga's container when the forward step's output never reached the coordinator
CREATE INDEX containers_saga_id ON device.containers (saga_id);
