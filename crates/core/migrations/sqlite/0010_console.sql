-- The console: operators' sessions, job kinds an operator paused, every error of every
-- job with the worker that held it, and per-minute job outcomes and timings.

-- A session is a random cookie; only its SHA-256 is stored, so the table leaks no
-- cookie. Logging out deletes the row.
CREATE TABLE console_sessions (
    id         TEXT   PRIMARY KEY, -- SHA-256 of the cookie, hex
    operator   TEXT   NOT NULL,
    role       TEXT   NOT NULL CHECK (role IN ('operator', 'reader')),
    csrf       TEXT   NOT NULL,    -- the token every form of the session sends back
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);

-- Workers claim no job of a paused kind.
CREATE TABLE job_kinds_paused (
    kind      TEXT   PRIMARY KEY,
    paused_by TEXT   NOT NULL,
    paused_at BIGINT NOT NULL
);

ALTER TABLE jobs ADD COLUMN started_at BIGINT; -- Unix µs: the latest attempt's claim
ALTER TABLE jobs ADD COLUMN lease_holder TEXT;  -- the worker of the latest attempt

CREATE TABLE job_errors (
    job_id  TEXT   NOT NULL,
    at      BIGINT NOT NULL, -- Unix µs
    attempt BIGINT NOT NULL,
    holder  TEXT,
    error   TEXT   NOT NULL,
    PRIMARY KEY (job_id, at)
);

-- Per kind and minute: jobs that succeeded, failed and died (bucket 0), and how long
-- jobs waited once due and ran, as counts per logarithmic bucket (quarter octaves of µs).
CREATE TABLE job_minutes (
    kind   TEXT   NOT NULL,
    minute BIGINT NOT NULL, -- Unix minutes
    metric TEXT   NOT NULL CHECK (metric IN ('succeeded', 'failed', 'dead', 'wait', 'run')),
    bucket BIGINT NOT NULL,
    jobs   BIGINT NOT NULL,
    PRIMARY KEY (kind, minute, metric, bucket)
);
CREATE INDEX job_minutes_by_minute ON job_minutes (minute);
