-- The device a stream plays on (optional): a device starting a new stream replaces its
-- own active one. A stream ended to admit another (the same device's, or any under
-- STUDYHALL_STREAM_POLICY=kick_oldest) names that stream and its device, so that its
-- heartbeats answer 410 "replaced" rather than 404.
ALTER TABLE streams ADD COLUMN device_id TEXT;
ALTER TABLE streams ADD COLUMN replaced_by TEXT;
ALTER TABLE streams ADD COLUMN replaced_by_device TEXT;
