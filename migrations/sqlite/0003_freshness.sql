-- Freshness: what Bitbucket's main branch pointed at when last asked (a ref advertisement, no
-- fetch), when that was, since when it is ahead of the indexed commit, and when the poller
-- may ask again (a claim, so several app processes do not ask twice).
ALTER TABLE repositories ADD COLUMN head_commit TEXT;
ALTER TABLE repositories ADD COLUMN checked_at BIGINT;
ALTER TABLE repositories ADD COLUMN ahead_since BIGINT;
ALTER TABLE repositories ADD COLUMN poll_at BIGINT;
-- Failed builds heal: consecutive failures set the backoff of the next scheduled try.
ALTER TABLE repositories ADD COLUMN failures BIGINT NOT NULL DEFAULT 0;
ALTER TABLE repositories ADD COLUMN retry_at BIGINT;
-- A job asked for again while it runs runs once more after it.
ALTER TABLE jobs ADD COLUMN rerun BIGINT NOT NULL DEFAULT 0;
