-- The audit chain: every event gets a position in one append-only sequence and the
-- SHA-256 hash of its canonical content and the previous event's hash (hex). Events
-- stored before this migration are chained at startup, in (created_at, id) order.
ALTER TABLE events ADD COLUMN position bigint;
ALTER TABLE events ADD COLUMN hash text;
CREATE UNIQUE INDEX events_by_position ON events (position);
CREATE INDEX events_unchained ON events (created_at, id) WHERE position IS NULL;

-- The end of the chain: the last position given out and its hash. Writers update it in
-- the transaction that stores their events.
CREATE TABLE event_chain_head (
    id       bigint PRIMARY KEY CHECK (id = 1),
    position bigint NOT NULL,
    hash     text    NOT NULL
);
INSERT INTO event_chain_head (id, position, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

-- Signed statements about the chain: a checkpoint (the hash at `position`) or a
-- retention marker (positions first_position..position removed by policy, `hash` the
-- last removed one's).
CREATE TABLE event_checkpoints (
    kind           text    NOT NULL CHECK (kind IN ('checkpoint', 'retention')),
    position       bigint NOT NULL,
    first_position bigint,
    hash           text    NOT NULL,
    signed_at      bigint NOT NULL, -- Unix microseconds, UTC
    signature      text    NOT NULL, -- Ed25519, base64
    PRIMARY KEY (kind, position)
);
