-- OAuth for MCP clients (issue 15; numbered after it so parallel branches' migrations do not collide).
-- Clients register themselves (RFC 7591) and belong to nobody; everything a person approved
-- hangs off the user and cascades with it. Codes and tokens are stored as SHA-256 hashes.
CREATE TABLE oauth_clients (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    redirect_uris TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT
);

-- One approval of one client by one user: what the account page lists and Revoke deletes.
CREATE TABLE oauth_grants (
    id BIGSERIAL PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    client_id TEXT NOT NULL REFERENCES oauth_clients(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT
);
CREATE INDEX oauth_grants_user ON oauth_grants(user_id);

-- Authorization codes: single use; `grant_id` remembers what a code was exchanged for, so a
-- replayed code revokes it.
CREATE TABLE oauth_codes (
    code_hash TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    client_id TEXT NOT NULL REFERENCES oauth_clients(id) ON DELETE CASCADE,
    redirect_uri TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    grant_id BIGINT REFERENCES oauth_grants(id) ON DELETE CASCADE
);

-- Access and refresh tokens of a grant. A refresh token is rotated on use (`rotated_at` set)
-- and kept until it expires, so presenting it again is recognised as a replay.
CREATE TABLE oauth_tokens (
    token_hash TEXT PRIMARY KEY,
    grant_id BIGINT NOT NULL REFERENCES oauth_grants(id) ON DELETE CASCADE,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    rotated_at BIGINT
);
CREATE INDEX oauth_tokens_grant ON oauth_tokens(grant_id);
CREATE INDEX oauth_tokens_user ON oauth_tokens(user_id);
