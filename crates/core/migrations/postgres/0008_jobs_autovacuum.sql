-- Every job row is rewritten three times (claimed, then succeeded or failed), and the
-- claim's partial indexes keep an entry for each dead version until VACUUM removes it.
-- At PostgreSQL's default (vacuum once a fifth of the table is dead) a busy queue
-- claims through hundreds of thousands of dead entries; vacuum this table early.
ALTER TABLE jobs SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 1000,
                      autovacuum_analyze_scale_factor = 0.02);
