-- notification: the outbox of the notifications sagas ask for. Delivering them (mail, push) is a
-- dispatcher's job outside the demo: a row here is a notification that will be sent.
CREATE SCHEMA notification;

CREATE TABLE notification.outbox (
    id         uuid        PRIMARY KEY,
    saga_id    uuid        NOT NULL,
    topic      text        NOT NULL CHECK (topic IN ('APP_AVAILABLE', 'ORDER_CREATED')),
    recipient  text        NOT NULL,
    -- the app or order the notification is about
    subject_id uuid        NOT NULL,
    message    text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX outbox_subject_id ON notification.outbox (subject_id);
