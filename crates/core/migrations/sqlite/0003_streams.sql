-- Stream leases. A viewer's row is what concurrent starts lock (PostgreSQL) and holds
-- the per-viewer limit override (NULL: the default).
CREATE TABLE stream_viewers (
    viewer       TEXT PRIMARY KEY,
    stream_limit INTEGER
);

CREATE TABLE streams (
    viewer     TEXT    NOT NULL,
    id         TEXT    NOT NULL,
    started_at INTEGER NOT NULL, -- Unix µs, the database's clock
    expires_at INTEGER NOT NULL, -- the lease: counts until then unless ended
    ended_at   INTEGER,
    metadata   TEXT    NOT NULL, -- JSON object of the seed's fields
    PRIMARY KEY (viewer, id)
);
CREATE INDEX streams_live ON streams (viewer, expires_at) WHERE ended_at IS NULL;
