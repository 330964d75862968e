-- A stream ended to admit a newer one of its viewer (STUDYHALL_STREAM_POLICY=kick_oldest)
-- names that stream, so that its heartbeats answer 410 "replaced" rather than 404.
ALTER TABLE streams ADD COLUMN replaced_by TEXT;
