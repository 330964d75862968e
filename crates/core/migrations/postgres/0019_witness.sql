-- As a witness (C2SP tlog-witness): the latest checkpoint cosigned for each log it
-- witnesses, replaced only by one that extends it (compare-and-set on size and root).
CREATE TABLE witness_checkpoints (
    origin      text PRIMARY KEY,
    size        bigint NOT NULL,
    root        bytea NOT NULL,
    note        text NOT NULL,
    cosigned_at bigint NOT NULL -- Unix microseconds, UTC
);
