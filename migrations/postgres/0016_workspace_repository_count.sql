-- How many repositories Bitbucket lists for a workspace not linked yet (NULL: unknown), read
-- when the workspace list is refreshed.
ALTER TABLE workspaces ADD COLUMN bitbucket_repositories BIGINT;
