//! What a person approved: grants, their authorization codes and tokens, stored as SHA-256
//! hashes. Codes are single-use and a replayed one revokes what it was exchanged for; refresh
//! tokens rotate and a replayed one revokes its grant; access tokens live an hour.

use serde::Serialize;

use super::{ACCESS_TOKEN_SECS, CODE_SECS, REFRESH_TOKEN_SECS};
use crate::{
    auth::{crypto::random_token, hash_api_token},
    db::now,
    error::AppError,
    identity,
    ids::{CurrentUser, UserId},
    state::AppState,
    view::format_time,
};

/// A grant as the account page lists it.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct GrantView {
    pub id: i64,
    pub client_name: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

impl GrantView {
    pub fn created_text(&self) -> String {
        format_time(self.created_at)
    }
    pub fn used_text(&self) -> String {
        self.last_used_at
            .map_or_else(|| "never".to_owned(), format_time)
    }
}

/// The user's grants, oldest first.
pub async fn list_for_user(state: &AppState, user_id: UserId) -> Result<Vec<GrantView>, AppError> {
    Ok(sqlx::query_as(
        "SELECT g.id, c.name AS client_name, g.created_at, g.last_used_at \
         FROM oauth_grants g JOIN oauth_clients c ON c.id = g.client_id \
         WHERE g.user_id = $1 ORDER BY g.id",
    )
    .bind(user_id)
    .fetch_all(&state.db.pool)
    .await?)
}

/// Revokes one of the user's grants (its tokens go with it); someone else's is not found.
pub async fn revoke_for_user(state: &AppState, user_id: UserId, id: i64) -> Result<(), AppError> {
    let deleted = sqlx::query("DELETE FROM oauth_grants WHERE id = $1 AND user_id = $2")
        .bind(id)
        .bind(user_id)
        .execute(&state.db.pool)
        .await?;
    if deleted.rows_affected() == 0 {
        return Err(AppError::NotFound);
    }
    tracing::info!(%user_id, grant = id, "MCP grant revoked");
    Ok(())
}

async fn revoke_grant(state: &AppState, grant_id: i64, why: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM oauth_grants WHERE id = $1")
        .bind(grant_id)
        .execute(&state.db.pool)
        .await?;
    tracing::warn!(grant = grant_id, reason = why, "MCP grant revoked");
    Ok(())
}

/// What a client asked for when the user approved it; the code is returned once.
pub struct CodeRequest<'a> {
    pub user_id: UserId,
    pub client_id: &'a str,
    pub redirect_uri: &'a str,
    pub code_challenge: &'a str,
}

/// Stores a new authorization code for an approval and returns it.
pub async fn create_code(state: &AppState, request: &CodeRequest<'_>) -> Result<String, AppError> {
    let code = format!("clo_{}", random_token(32));
    let at = now();
    sqlx::query(
        "INSERT INTO oauth_codes (code_hash, user_id, client_id, redirect_uri, code_challenge, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(hash_api_token(&code))
    .bind(request.user_id)
    .bind(request.client_id)
    .bind(request.redirect_uri)
    .bind(request.code_challenge)
    .bind(at + CODE_SECS)
    .execute(&state.db.pool)
    .await?;
    sqlx::query("UPDATE oauth_clients SET last_used_at = $1 WHERE id = $2")
        .bind(at)
        .bind(request.client_id)
        .execute(&state.db.pool)
        .await?;
    Ok(code)
}

/// How every access token starts (personal access tokens start `cl_`).
pub const ACCESS_TOKEN_PREFIX: &str = "cla_";

/// A new access and refresh token pair.
#[derive(Debug)]
pub struct Issued {
    pub access_token: String,
    pub refresh_token: String,
}

/// Why a code or refresh token was refused (the token endpoint's `invalid_grant`).
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error("{0}")]
    Invalid(&'static str),
    #[error(transparent)]
    Internal(#[from] AppError),
}

impl From<sqlx::Error> for GrantError {
    fn from(e: sqlx::Error) -> GrantError {
        GrantError::Internal(e.into())
    }
}

/// What the token endpoint checks a code against.
pub struct Exchange<'a> {
    pub code: &'a str,
    pub client_id: &'a str,
    pub redirect_uri: &'a str,
    pub code_verifier: &'a str,
}

/// Redeems an authorization code: once only, by the client it was issued to, with the same
/// redirect URI and the PKCE verifier of its challenge.
pub async fn exchange_code(state: &AppState, ex: &Exchange<'_>) -> Result<Issued, GrantError> {
    let hash = hash_api_token(ex.code);
    let at = now();
    // Burned by the first attempt, whatever its outcome: a code is worth one try.
    let first =
        sqlx::query("UPDATE oauth_codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL")
            .bind(at)
            .bind(&hash)
            .execute(&state.db.pool)
            .await?
            .rows_affected()
            == 1;
    if !first {
        let earlier: Option<Option<i64>> =
            sqlx::query_scalar("SELECT grant_id FROM oauth_codes WHERE code_hash = $1")
                .bind(&hash)
                .fetch_optional(&state.db.pool)
                .await?;
        if let Some(Some(grant_id)) = earlier {
            // RFC 6749 §4.1.2: whoever replays a code may have stolen it; what the first
            // exchange gave out is revoked.
            revoke_grant(state, grant_id, "authorization code used twice").await?;
        }
        return Err(GrantError::Invalid(
            "the authorization code is unknown or was already used",
        ));
    }
    let (user_id, client_id, redirect_uri, challenge, expires_at): (
        UserId,
        String,
        String,
        String,
        i64,
    ) = sqlx::query_as(
        "SELECT user_id, client_id, redirect_uri, code_challenge, expires_at FROM oauth_codes WHERE code_hash = $1",
    )
    .bind(&hash)
    .fetch_one(&state.db.pool)
    .await?;
    if expires_at < at {
        return Err(GrantError::Invalid("the authorization code has expired"));
    }
    if client_id != ex.client_id {
        return Err(GrantError::Invalid(
            "the authorization code was issued to another client",
        ));
    }
    if redirect_uri != ex.redirect_uri {
        return Err(GrantError::Invalid(
            "redirect_uri differs from the one of the authorization request",
        ));
    }
    if !super::token::pkce_matches(ex.code_verifier, &challenge) {
        return Err(GrantError::Invalid(
            "code_verifier does not match the code_challenge",
        ));
    }
    if identity::load_user(state, user_id).await?.is_none() {
        return Err(GrantError::Invalid("the account no longer exists"));
    }
    let mut tx = state.db.pool.begin().await?;
    let grant_id: i64 = sqlx::query_scalar(
        "INSERT INTO oauth_grants (user_id, client_id, created_at, last_used_at) VALUES ($1, $2, $3, $3) RETURNING id",
    )
    .bind(user_id)
    .bind(&client_id)
    .bind(at)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query("UPDATE oauth_codes SET grant_id = $1 WHERE code_hash = $2")
        .bind(grant_id)
        .bind(&hash)
        .execute(&mut *tx)
        .await?;
    let issued = issue(&mut tx, grant_id, user_id, at).await?;
    tx.commit().await?;
    tracing::info!(%user_id, grant = grant_id, %client_id, "MCP client authorized");
    Ok(issued)
}

/// Trades a refresh token for a new pair. The old one is retired, not deleted: presented
/// again it is a replay, and the whole grant is revoked.
pub async fn refresh(
    state: &AppState,
    refresh_token: &str,
    client_id: &str,
) -> Result<Issued, GrantError> {
    let hash = hash_api_token(refresh_token);
    let at = now();
    let row: Option<(i64, UserId, i64, Option<i64>, String)> = sqlx::query_as(
        "SELECT t.grant_id, t.user_id, t.expires_at, t.rotated_at, g.client_id \
         FROM oauth_tokens t JOIN oauth_grants g ON g.id = t.grant_id \
         WHERE t.token_hash = $1 AND t.kind = 'refresh'",
    )
    .bind(&hash)
    .fetch_optional(&state.db.pool)
    .await?;
    let Some((grant_id, user_id, expires_at, rotated_at, owner)) = row else {
        return Err(GrantError::Invalid(
            "the refresh token is unknown or revoked",
        ));
    };
    if owner != client_id {
        return Err(GrantError::Invalid(
            "the refresh token was issued to another client",
        ));
    }
    if rotated_at.is_some() {
        return replayed(state, grant_id).await;
    }
    if expires_at < at {
        return Err(GrantError::Invalid("the refresh token has expired"));
    }
    if identity::load_user(state, user_id).await?.is_none() {
        return Err(GrantError::Invalid("the account no longer exists"));
    }
    let mut tx = state.db.pool.begin().await?;
    let retired = sqlx::query(
        "UPDATE oauth_tokens SET rotated_at = $1 WHERE token_hash = $2 AND rotated_at IS NULL",
    )
    .bind(at)
    .bind(&hash)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if retired != 1 {
        // Another request rotated it this very moment: two holders of one token.
        drop(tx);
        return replayed(state, grant_id).await;
    }
    sqlx::query("UPDATE oauth_grants SET last_used_at = $1 WHERE id = $2")
        .bind(at)
        .bind(grant_id)
        .execute(&mut *tx)
        .await?;
    let issued = issue(&mut tx, grant_id, user_id, at).await?;
    tx.commit().await?;
    Ok(issued)
}

/// A refresh token presented a second time: two parties hold it, so neither keeps the grant.
async fn replayed(state: &AppState, grant_id: i64) -> Result<Issued, GrantError> {
    revoke_grant(state, grant_id, "refresh token used twice").await?;
    Err(GrantError::Invalid(
        "the refresh token was already used; the grant is revoked, authorize again",
    ))
}

async fn issue(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    grant_id: i64,
    user_id: UserId,
    at: i64,
) -> Result<Issued, sqlx::Error> {
    let issued = Issued {
        access_token: format!("{ACCESS_TOKEN_PREFIX}{}", random_token(32)),
        refresh_token: format!("clr_{}", random_token(32)),
    };
    for (token, kind, lifetime) in [
        (&issued.access_token, "access", ACCESS_TOKEN_SECS),
        (&issued.refresh_token, "refresh", REFRESH_TOKEN_SECS),
    ] {
        sqlx::query(
            "INSERT INTO oauth_tokens (token_hash, grant_id, user_id, kind, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(hash_api_token(token))
        .bind(grant_id)
        .bind(user_id)
        .bind(kind)
        .bind(at + lifetime)
        .execute(&mut **tx)
        .await?;
    }
    Ok(issued)
}

/// The user an unexpired access token was issued for, if its grant and account are live.
pub async fn user_for_access_token(
    state: &AppState,
    token: &str,
) -> Result<Option<CurrentUser>, AppError> {
    let at = now();
    let row: Option<(UserId, i64, Option<i64>)> = sqlx::query_as(
        "SELECT t.user_id, t.grant_id, g.last_used_at FROM oauth_tokens t \
         JOIN oauth_grants g ON g.id = t.grant_id \
         WHERE t.token_hash = $1 AND t.kind = 'access' AND t.expires_at > $2",
    )
    .bind(hash_api_token(token))
    .bind(at)
    .fetch_optional(&state.db.pool)
    .await?;
    let Some((user_id, grant_id, last_used)) = row else {
        return Ok(None);
    };
    // "Last used" to the minute is enough: most requests need no write.
    if last_used.is_none_or(|t| at - t >= 60) {
        sqlx::query("UPDATE oauth_grants SET last_used_at = $1 WHERE id = $2")
            .bind(at)
            .bind(grant_id)
            .execute(&state.db.pool)
            .await?;
    }
    identity::load_user(state, user_id).await
}

/// Revokes the grant a token (access or refresh) belongs to, if the client holds it; an
/// unknown token is no error (RFC 7009 §2.2).
pub async fn revoke_by_token(
    state: &AppState,
    token: &str,
    client_id: Option<&str>,
) -> Result<(), AppError> {
    let row: Option<(i64, String)> = sqlx::query_as(
        "SELECT t.grant_id, g.client_id FROM oauth_tokens t JOIN oauth_grants g ON g.id = t.grant_id \
         WHERE t.token_hash = $1",
    )
    .bind(hash_api_token(token))
    .fetch_optional(&state.db.pool)
    .await?;
    if let Some((grant_id, owner)) = row
        && client_id.is_none_or(|c| c == owner)
    {
        revoke_grant(state, grant_id, "revoked by its client").await?;
    }
    Ok(())
}

/// Deletes expired tokens and codes, and clients nobody uses (hourly).
pub async fn delete_expired(state: &AppState) -> Result<(), sqlx::Error> {
    let at = now();
    sqlx::query("DELETE FROM oauth_tokens WHERE expires_at < $1")
        .bind(at)
        .execute(&state.db.pool)
        .await?;
    // Used codes stay a day past expiry so a late replay still revokes what it gave out.
    sqlx::query("DELETE FROM oauth_codes WHERE expires_at < $1")
        .bind(at - 24 * 3600)
        .execute(&state.db.pool)
        .await?;
    super::clients::delete_unused(state).await?;
    Ok(())
}
