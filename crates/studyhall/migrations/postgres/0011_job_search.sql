-- The console's search of jobs by payload and error text: trigram indexes (pg_trgm, a
-- trusted extension since PostgreSQL 13: the database's owner may create it) that
-- serve `lower(…) LIKE '%text%'` for any text of three characters or more.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX jobs_payload_text ON jobs USING gin (lower(payload) gin_trgm_ops);
CREATE INDEX jobs_error_text ON jobs USING gin (lower(coalesce(last_error, '')) gin_trgm_ops);

-- Succeeded jobs over the last day, summed from the minutes without a scan of them.
CREATE INDEX job_minutes_by_metric ON job_minutes (metric, minute) INCLUDE (jobs);
