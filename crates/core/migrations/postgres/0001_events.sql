-- Activity events. The public id is a UUIDv7 and pages are keyed on (created_at, id).
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE events (
    id          uuid   PRIMARY KEY,
    component   text   NOT NULL,
    data        text   NOT NULL, -- JSON exactly as posted (json would re-encode it)
    email       text   NOT NULL,
    environment text   NOT NULL,
    message     text   NOT NULL,
    created_at  bigint NOT NULL  -- Unix microseconds, UTC
);

CREATE INDEX events_by_time        ON events (created_at, id);
CREATE INDEX events_by_email       ON events (email, created_at, id);
CREATE INDEX events_by_environment ON events (environment, created_at, id);
CREATE INDEX events_by_component   ON events (component, created_at, id);
-- Substring search on message (case-sensitive LIKE '%x%').
CREATE INDEX events_message_trgm   ON events USING gin (message gin_trgm_ops);

CREATE TABLE event_idempotency_keys (
    scope       text   NOT NULL, -- the caller, '' when unknown
    key         text   NOT NULL,
    fingerprint text   NOT NULL, -- sha256 of the validated request
    event_id    uuid   NOT NULL REFERENCES events (id) DEFERRABLE INITIALLY DEFERRED,
    created_at  bigint NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX event_idempotency_keys_by_time ON event_idempotency_keys (created_at);
