-- The console's search of jobs by payload and error text: trigram indexes (pg_trgm, a
-- trusted extension since PostgreSQL 13: the database's owner may create it) that
-- serve `lower(…) LIKE '%text%'` for any text of three characters or more.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX jobs_payload_text ON jobs USING gin (lower(payload) gin_trgm_ops);
CREATE INDEX jobs_error_text ON jobs USING gin (lower(coalesce(last_error, '')) gin_trgm_ops);

-- Succeeded jobs over the last day, summed from the minutes without a scan of them.
CREATE INDEX job_minutes_by_metric ON job_minutes (metric, minute) INCLUDE (jobs);

-- The console's counts of unfinished and dead jobs by kind, and its dead jobs grouped by
-- error, read from these indexes alone: no row of the table is visited.
CREATE INDEX jobs_unfinished_by_kind ON jobs (state, kind)
    WHERE state IN ('queued', 'running', 'failed', 'dead');
CREATE INDEX jobs_dead_by_error ON jobs (state, kind, last_error, finished_at, created_at)
    WHERE state = 'dead';
