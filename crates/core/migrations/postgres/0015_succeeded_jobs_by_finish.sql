-- Succeeded jobs by when they finished, for removing those past the job retention
-- period (STUDYHALL_JOB_RETENTION) without a scan of the queue.
CREATE INDEX jobs_succeeded_by_finish ON jobs (finished_at) WHERE state = 'succeeded';
