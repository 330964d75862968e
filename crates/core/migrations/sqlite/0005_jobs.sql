-- The durable job queue. A job is queued, then running under a lease, then succeeded;
-- a failure waits (failed, run_at in the future) and retries; too many failures: dead.
CREATE TABLE jobs (
    id           TEXT   PRIMARY KEY,
    kind         TEXT   NOT NULL,
    payload      TEXT   NOT NULL, -- JSON
    state        TEXT   NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'dead')),
    attempts     BIGINT NOT NULL DEFAULT 0,
    max_attempts BIGINT NOT NULL,
    run_at       BIGINT NOT NULL, -- Unix µs: not before
    lease_until  BIGINT,          -- while running: reclaimable after this
    last_error   TEXT,
    created_at   BIGINT NOT NULL,
    finished_at  BIGINT
);
CREATE INDEX jobs_runnable ON jobs (run_at) WHERE state IN ('queued', 'failed');
CREATE INDEX jobs_leased ON jobs (lease_until) WHERE state = 'running';
CREATE INDEX jobs_by_state ON jobs (state, created_at, id);
CREATE INDEX jobs_by_time ON jobs (created_at, id);
