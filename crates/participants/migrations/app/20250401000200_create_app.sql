-- app: app records and their packages, stored as files in a directory the service owns (app_upload).
CREATE SCHEMA app;

-- One per app_upload saga: UPLOADING while its package is stored, AVAILABLE once published, DELETED
-- when the upload is undone. At most one live upload per app name and version.
CREATE TABLE app.apps (
    id           uuid        PRIMARY KEY,
    saga_id      uuid        NOT NULL UNIQUE,
    developer_id text        NOT NULL,
    name         text        NOT NULL,
    version      text        NOT NULL,
    status       text        NOT NULL CHECK (status IN ('UPLOADING', 'AVAILABLE', 'DELETED')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX apps_live_version ON app.apps (name, version) WHERE status <> 'DELETED';

-- The files of the storage directory, named by the SHA-256 of their content: `refs` counts the STORED
-- objects with that content, and the file exists while it is above zero. Writing or removing a file
-- happens under this row's lock, so an upload and a deletion of the same content never cross.
CREATE TABLE app.blobs (
    sha256 text    PRIMARY KEY CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    refs   integer NOT NULL CHECK (refs >= 0)
);

-- An app's package: STORED, or DELETED when the upload is undone.
CREATE TABLE app.objects (
    id         uuid        PRIMARY KEY,
    app_id     uuid        NOT NULL REFERENCES app.apps (id),
    saga_id    uuid        NOT NULL UNIQUE,
    sha256     text        NOT NULL REFERENCES app.blobs (sha256),
    size_bytes bigint      NOT NULL CHECK (size_bytes > 0),
    status     text        NOT NULL CHECK (status IN ('STORED', 'DELETED')),
    created_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    CHECK ((status = 'DELETED') = (deleted_at IS NOT NULL))
);

CREATE INDEX objects_app_id ON app.objects (app_id);
