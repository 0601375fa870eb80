-- Every row hangs off a user; foreign keys cascade so a purge cannot leave orphans.
-- Flags are BIGINT 0/1 on both engines: sqlx's Any driver cannot decode SQLite booleans.
CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    bitbucket_uuid TEXT NOT NULL UNIQUE,
    account_id TEXT NOT NULL,
    nickname TEXT NOT NULL,
    display_name TEXT NOT NULL,
    purging BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

CREATE TABLE bitbucket_connections (
    user_id INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    access_token TEXT NOT NULL,
    refresh_token TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    status TEXT NOT NULL DEFAULT 'ok',
    refresh_lock_until BIGINT NOT NULL DEFAULT 0,
    updated_at BIGINT NOT NULL
);

CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    user_id INTEGER REFERENCES users(id) ON DELETE CASCADE,
    data TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_id);

CREATE TABLE workspaces (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    uuid TEXT NOT NULL,
    slug TEXT NOT NULL,
    name TEXT NOT NULL,
    permission TEXT NOT NULL,
    linked BIGINT NOT NULL DEFAULT 0,
    reachable BIGINT NOT NULL DEFAULT 1,
    purging BIGINT NOT NULL DEFAULT 0,
    load_error TEXT,
    refreshed_at BIGINT NOT NULL,
    UNIQUE (user_id, uuid)
);

CREATE TABLE repositories (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    workspace_id INTEGER NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    uuid TEXT NOT NULL,
    slug TEXT NOT NULL,
    name TEXT NOT NULL,
    full_name TEXT NOT NULL,
    language TEXT NOT NULL,
    size BIGINT NOT NULL,
    is_private BIGINT NOT NULL,
    updated_on TEXT NOT NULL,
    main_branch TEXT,
    html_url TEXT NOT NULL,
    selected BIGINT NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'available',
    progress TEXT NOT NULL DEFAULT '',
    indexed_commit TEXT,
    files BIGINT NOT NULL DEFAULT 0,
    bytes BIGINT NOT NULL DEFAULT 0,
    skipped TEXT NOT NULL DEFAULT '{}',
    indexed_at BIGINT,
    error TEXT,
    UNIQUE (workspace_id, uuid)
);
CREATE INDEX repositories_user ON repositories(user_id);

CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    dedupe_key TEXT UNIQUE,
    state TEXT NOT NULL DEFAULT 'queued',
    attempts BIGINT NOT NULL DEFAULT 0,
    max_attempts BIGINT NOT NULL,
    run_after BIGINT NOT NULL,
    lease_until BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX jobs_ready ON jobs(state, run_after);

CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT
);
