-- A retention marker names the policy's cutoff and the signed time by which every
-- removed event had been chained (the checkpoint the removal went up to), both covered
-- by its signature; NULL on markers written before.
ALTER TABLE event_checkpoints ADD COLUMN cutoff INTEGER;
ALTER TABLE event_checkpoints ADD COLUMN chained_by INTEGER;
