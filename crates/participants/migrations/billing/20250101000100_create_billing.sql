-- billing: the plans a user can buy and the orders sagas create for them. Money is integer cents.
CREATE TABLE billing_plans (
    id          text    PRIMARY KEY,
    name        text    NOT NULL,
    price_cents bigint  NOT NULL CHECK (price_cents > 0),
    active      boolean NOT NULL
);

INSERT INTO billing_plans (id, name, price_cents, active) VALUES
    ('basic', 'Basic', 999, true),
    ('pro', 'Pro', 2999, true),
    ('legacy', 'Legacy', 499, false);

CREATE TABLE billing_orders (
    id           uuid        PRIMARY KEY,
    saga_id      uuid        NOT NULL,
    user_id      text        NOT NULL,
    plan_id      text        NOT NULL REFERENCES billing_plans (id),
    amount_cents bigint      NOT NULL CHECK (amount_cents > 0),
    status       text        NOT NULL CHECK (status IN ('PENDING', 'ACTIVE', 'CANCELLED')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- compensations find a saga's order when the forward step's output never reached the coordinator
CREATE INDEX billing_orders_saga_id ON billing_orders (saga_id);
