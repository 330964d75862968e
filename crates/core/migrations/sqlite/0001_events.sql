-- Activity events. `seq` is the rowid the trigram index points at; the public id is a
-- UUIDv7 and pages are keyed on (created_at, id).
CREATE TABLE events (
    seq         INTEGER PRIMARY KEY,
    id          TEXT    NOT NULL UNIQUE,
    component   TEXT    NOT NULL,
    data        TEXT    NOT NULL,
    email       TEXT    NOT NULL,
    environment TEXT    NOT NULL,
    message     TEXT    NOT NULL,
    created_at  INTEGER NOT NULL -- Unix microseconds, UTC
);

CREATE INDEX events_by_time        ON events (created_at, id);
CREATE INDEX events_by_email       ON events (email, created_at, id);
CREATE INDEX events_by_environment ON events (environment, created_at, id);
CREATE INDEX events_by_component   ON events (component, created_at, id);

-- Substring search on message: an FTS5 trigram index kept in step by triggers.
-- case_sensitive 1 matches the seed's case-sensitive LIKE, and lets GLOB use the index.
CREATE VIRTUAL TABLE events_message USING fts5(
    message, content = 'events', content_rowid = 'seq', tokenize = 'trigram case_sensitive 1'
);
CREATE TRIGGER events_message_insert AFTER INSERT ON events BEGIN
    INSERT INTO events_message (rowid, message) VALUES (new.seq, new.message);
END;
CREATE TRIGGER events_message_delete AFTER DELETE ON events BEGIN
    INSERT INTO events_message (events_message, rowid, message) VALUES ('delete', old.seq, old.message);
END;

CREATE TABLE event_idempotency_keys (
    scope       TEXT    NOT NULL, -- the caller, '' when unknown
    key         TEXT    NOT NULL,
    fingerprint TEXT    NOT NULL, -- sha256 of the validated request
    event_id    TEXT    NOT NULL REFERENCES events (id) DEFERRABLE INITIALLY DEFERRED,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX event_idempotency_keys_by_time ON event_idempotency_keys (created_at);
