-- When a repository was last fetched (rebuilt or found unchanged): drives the re-sync schedule.
ALTER TABLE repositories ADD COLUMN synced_at BIGINT;
