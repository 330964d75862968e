-- The console's search of jobs by payload and error text: a trigram index (any
-- substring of three characters or more, case-insensitive) whose rowids are the jobs'
-- rowids, kept by triggers. Contentless: it stores only the index, and a removal
-- names the text that was indexed.
CREATE VIRTUAL TABLE jobs_text USING fts5(payload, last_error, content = '', tokenize = 'trigram');
INSERT INTO jobs_text (rowid, payload, last_error)
    SELECT rowid, payload, coalesce(last_error, '') FROM jobs;

CREATE TRIGGER jobs_text_added AFTER INSERT ON jobs BEGIN
    INSERT INTO jobs_text (rowid, payload, last_error)
        VALUES (new.rowid, new.payload, coalesce(new.last_error, ''));
END;

CREATE TRIGGER jobs_text_changed AFTER UPDATE OF payload, last_error ON jobs
    WHEN new.payload IS NOT old.payload OR new.last_error IS NOT old.last_error BEGIN
    INSERT INTO jobs_text (jobs_text, rowid, payload, last_error)
        VALUES ('delete', old.rowid, old.payload, coalesce(old.last_error, ''));
    INSERT INTO jobs_text (rowid, payload, last_error)
        VALUES (new.rowid, new.payload, coalesce(new.last_error, ''));
END;

CREATE TRIGGER jobs_text_removed AFTER DELETE ON jobs BEGIN
    INSERT INTO jobs_text (jobs_text, rowid, payload, last_error)
        VALUES ('delete', old.rowid, old.payload, coalesce(old.last_error, ''));
END;

-- Succeeded jobs over the last day, summed from the minutes without a scan of them.
CREATE INDEX job_minutes_by_metric ON job_minutes (metric, minute, jobs);

-- The console's counts of unfinished and dead jobs by kind, and its dead jobs grouped by
-- error, read from these indexes alone: no row of the table is visited.
CREATE INDEX jobs_unfinished_by_kind ON jobs (state, kind)
    WHERE state IN ('queued', 'running', 'failed', 'dead');
CREATE INDEX jobs_dead_by_error ON jobs (state, kind, last_error, finished_at, created_at)
    WHERE state = 'dead';
