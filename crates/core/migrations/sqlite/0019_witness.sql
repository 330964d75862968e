-- As a witness (C2SP tlog-witness): the latest checkpoint cosigned for each log it
-- witnesses, replaced only by one that extends it (compare-and-set on size and root).
CREATE TABLE witness_checkpoints (
    origin      TEXT PRIMARY KEY,
    size        INTEGER NOT NULL,
    root        BLOB NOT NULL,
    note        TEXT NOT NULL,
    cosigned_at INTEGER NOT NULL -- Unix microseconds, UTC
);
