-- The log as a Merkle tree (RFC 6962) over the chained events in position order: leaf i
-- is the event at position base + 1 + i. The hash of each complete subtree is stored
-- once, at its stored index (README, "Audit log"); rows are only ever inserted, and
-- removing events under retention keeps them.
CREATE TABLE log_tree_hashes (
    idx  bigint PRIMARY KEY,
    hash bytea NOT NULL
);

-- How far the tree has grown: `size` leaves after position `base` (the positions a
-- retention policy had removed before the tree was first built, whose content is gone).
CREATE TABLE log_tree (
    id   bigint PRIMARY KEY CHECK (id = 1),
    base bigint NOT NULL,
    size bigint NOT NULL
);
INSERT INTO log_tree (id, base, size)
SELECT 1, COALESCE(MAX(position), 0), 0 FROM event_checkpoints WHERE kind = 'retention';

-- Signed checkpoints of the tree (C2SP tlog-checkpoint signed notes), one per size.
CREATE TABLE log_tree_checkpoints (
    size      bigint PRIMARY KEY,
    root      bytea NOT NULL,
    note      text NOT NULL,
    signed_at bigint NOT NULL -- Unix microseconds, UTC
);
