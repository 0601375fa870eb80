//! The account: personal access tokens for the API and MCP, the assistants connected over
//! OAuth (listed and revoked here, issued by `mcp_auth`), and disconnecting Bitbucket (which
//! deletes everything codelayer holds about the user).

use askama::Template;
use askama_web::WebTemplate;
use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
    response::Redirect,
};
use serde::{Deserialize, Serialize};
use tower_sessions::Session;

use crate::{
    auth::{crypto::random_token, hash_api_token},
    db::now,
    error::{ApiError, AppError},
    identity::ApiUser,
    ids::{CurrentUser, UserId},
    jobs::Job,
    mcp_auth::grants::{self, GrantView},
    state::AppState,
    view::{Flash, format_time, human_bytes},
};

/// A personal access token as listed (never the secret itself).
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct TokenView {
    pub id: i64,
    pub name: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

impl TokenView {
    pub fn created_text(&self) -> String {
        format_time(self.created_at)
    }
    pub fn used_text(&self) -> String {
        self.last_used_at
            .map_or_else(|| "never".to_owned(), format_time)
    }
}

/// A token just made: the secret is shown this once.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NewToken {
    pub id: i64,
    pub name: String,
    pub token: String,
}

async fn list_tokens(state: &AppState, user_id: UserId) -> Result<Vec<TokenView>, AppError> {
    Ok(sqlx::query_as(
        "SELECT id, name, created_at, last_used_at FROM api_tokens WHERE user_id = $1 ORDER BY id",
    )
    .bind(user_id)
    .fetch_all(&state.db.pool)
    .await?)
}

async fn create_token(state: &AppState, user_id: UserId, name: &str) -> Result<NewToken, AppError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(AppError::BadRequest(
            "Give the token a name of 1 to 100 characters.".into(),
        ));
    }
    let token = format!("cl_{}", random_token(32));
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO api_tokens (user_id, name, token_hash, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(user_id)
    .bind(name)
    .bind(hash_api_token(&token))
    .bind(now())
    .fetch_one(&state.db.pool)
    .await?;
    Ok(NewToken {
        id,
        name: name.to_owned(),
        token,
    })
}

async fn revoke_token(state: &AppState, user_id: UserId, id: i64) -> Result<(), AppError> {
    let deleted = sqlx::query("DELETE FROM api_tokens WHERE id = $1 AND user_id = $2")
        .bind(id)
        .bind(user_id)
        .execute(&state.db.pool)
        .await?;
    if deleted.rows_affected() == 0 {
        return Err(AppError::NotFound);
    }
    Ok(())
}

/// Disconnects Bitbucket: from this moment the user is invisible (marked, sessions and
/// credentials gone); a durable job deletes the files and the remaining rows.
pub async fn disconnect(state: &AppState, user_id: UserId) -> Result<(), AppError> {
    // The job is stored first: a crash right after the mark would otherwise leave a user who
    // can no longer sign in and whose data is never deleted. Should the job run before the
    // mark commits, deleting the user row takes the sessions, tokens and connection with it.
    state.queue.enqueue(&Job::PurgeUser { user_id }).await?;
    let mut tx = state.db.pool.begin().await?;
    sqlx::query("UPDATE users SET purging = 1 WHERE id = $1")
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    // MCP grants go now too (their codes and tokens cascade): no assistant keeps access.
    for table in [
        "sessions",
        "api_tokens",
        "oauth_codes",
        "oauth_tokens",
        "oauth_grants",
        "bitbucket_connections",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE user_id = $1"
        )))
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    state.doorbell.notify_one();
    tracing::info!(%user_id, "Bitbucket disconnected; purging the account");
    Ok(())
}

#[derive(Template, WebTemplate)]
#[template(path = "account.html")]
pub struct AccountPage {
    user: Option<CurrentUser>,
    display_name: String,
    nickname: String,
    connected: bool,
    tokens: Vec<TokenView>,
    grants: Vec<GrantView>,
    new_token: Option<NewToken>,
    flash: Option<Flash>,
    mcp_url: String,
}

impl AccountPage {
    /// The new token where a snippet needs one: pasted in while it is shown, else `<token>`.
    pub fn token_or_placeholder(&self) -> &str {
        self.new_token.as_ref().map_or("<token>", |t| &t.token)
    }
}

const NEW_TOKEN_KEY: &str = "new_token";

/// A new token on its way to being shown once, encrypted for this user.
#[derive(Serialize, Deserialize)]
struct SealedToken {
    id: i64,
    name: String,
    sealed: String,
}

fn new_token_context(user: UserId) -> String {
    format!("new-api-token:{user}")
}

/// `GET /account`.
pub async fn page(
    State(state): State<AppState>,
    session: Session,
    user: CurrentUser,
) -> Result<AccountPage, AppError> {
    let nickname: String = sqlx::query_scalar("SELECT nickname FROM users WHERE id = $1")
        .bind(user.id)
        .fetch_one(&state.db.pool)
        .await?;
    let sealed: Option<SealedToken> = session.remove(NEW_TOKEN_KEY).await.ok().flatten();
    let new_token = sealed.and_then(|t| {
        let token = state
            .secrets
            .open(&t.sealed, &new_token_context(user.id))
            .ok()?;
        Some(NewToken {
            id: t.id,
            name: t.name,
            token,
        })
    });
    Ok(AccountPage {
        display_name: user.display_name.clone(),
        nickname,
        connected: state.tokens.is_connected(user.id).await?,
        tokens: list_tokens(&state, user.id).await?,
        grants: grants::list_for_user(&state, user.id).await?,
        new_token,
        flash: Flash::take(&session).await,
        mcp_url: format!("{}/mcp", state.config.public_origin()),
        user: Some(user),
    })
}

#[derive(Deserialize)]
pub struct TokenForm {
    name: String,
    /// "assistants" when made for an assistant: the page opens at the snippets.
    #[serde(default)]
    then: Option<String>,
}

/// `POST /account/tokens`.
pub async fn create_form(
    State(state): State<AppState>,
    session: Session,
    user: CurrentUser,
    axum::Form(form): axum::Form<TokenForm>,
) -> Result<Redirect, AppError> {
    match create_token(&state, user.id, &form.name).await {
        Ok(token) => {
            // Shown once on the next page view, then gone from the session too; sealed while
            // it rests there, so the sessions table never holds a usable token.
            let sealed = SealedToken {
                id: token.id,
                sealed: state
                    .secrets
                    .seal(&token.token, &new_token_context(user.id)),
                name: token.name,
            };
            session
                .insert(NEW_TOKEN_KEY, sealed)
                .await
                .map_err(|e| AppError::Internal(e.to_string()))?;
        }
        Err(AppError::BadRequest(msg)) => Flash::error(msg).set(&session).await,
        Err(e) => return Err(e),
    }
    Ok(Redirect::to(
        if form.then.as_deref() == Some("assistants") {
            "/account#assistant-token"
        } else {
            "/account#tokens"
        },
    ))
}

/// `POST /account/tokens/{id}/revoke`.
pub async fn revoke_form(
    State(state): State<AppState>,
    session: Session,
    user: CurrentUser,
    Path(id): Path<i64>,
) -> Result<Redirect, AppError> {
    revoke_token(&state, user.id, id).await?;
    Flash::ok("Token revoked.").set(&session).await;
    Ok(Redirect::to("/account#tokens"))
}

/// `POST /account/grants/{id}/revoke`: disconnects an assistant.
pub async fn revoke_grant_form(
    State(state): State<AppState>,
    session: Session,
    user: CurrentUser,
    Path(id): Path<i64>,
) -> Result<Redirect, AppError> {
    grants::revoke_for_user(&state, user.id, id).await?;
    Flash::ok("Access revoked: the assistant must be approved again to read your code.")
        .set(&session)
        .await;
    Ok(Redirect::to("/account#assistants"))
}

#[derive(Template, WebTemplate)]
#[template(path = "disconnect_account.html")]
pub struct DisconnectPage {
    user: Option<CurrentUser>,
    workspaces: Vec<(String, i64)>,
    repositories: i64,
    indexed: String,
    tokens: usize,
    assistants: usize,
}

/// `GET /account/disconnect`: what disconnecting Bitbucket deletes.
pub async fn confirm_disconnect(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<DisconnectPage, AppError> {
    let workspaces: Vec<(String, i64)> = sqlx::query_as(
        "SELECT w.name, (SELECT COUNT(*) FROM repositories r WHERE r.workspace_id = w.id) \
         FROM workspaces w WHERE w.user_id = $1 ORDER BY lower(w.name)",
    )
    .bind(user.id)
    .fetch_all(&state.db.pool)
    .await?;
    // SUM of a BIGINT is NUMERIC on PostgreSQL, which the Any driver cannot decode: cast back.
    let (repositories, bytes): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), CAST(COALESCE(SUM(bytes), 0) AS BIGINT) FROM repositories WHERE user_id = $1",
    )
    .bind(user.id)
    .fetch_one(&state.db.pool)
    .await?;
    Ok(DisconnectPage {
        tokens: list_tokens(&state, user.id).await?.len(),
        assistants: grants::list_for_user(&state, user.id).await?.len(),
        user: Some(user),
        workspaces,
        repositories,
        indexed: human_bytes(bytes),
    })
}

/// `POST /account/disconnect`.
pub async fn disconnect_form(
    State(state): State<AppState>,
    session: Session,
    user: CurrentUser,
) -> Result<Redirect, AppError> {
    disconnect(&state, user.id).await?;
    let _ = session.flush().await;
    Ok(Redirect::to("/?disconnected=1"))
}

/// `GET /api/v1/account/tokens`.
pub async fn api_list(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
) -> Result<Json<Vec<TokenView>>, ApiError> {
    Ok(Json(list_tokens(&state, user.id).await?))
}

/// `POST /api/v1/account/tokens` with `{"name": …}`.
pub async fn api_create(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Json(form): Json<TokenForm>,
) -> Result<(StatusCode, Json<NewToken>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(create_token(&state, user.id, &form.name).await?),
    ))
}

/// `DELETE /api/v1/account/tokens/{id}`.
pub async fn api_revoke(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    revoke_token(&state, user.id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/account/disconnect`.
pub async fn api_disconnect(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
) -> Result<StatusCode, ApiError> {
    disconnect(&state, user.id).await?;
    Ok(StatusCode::ACCEPTED)
}

/// `GET /api/v1/account/grants`: the assistants connected over OAuth.
pub async fn api_grants(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
) -> Result<Json<Vec<GrantView>>, ApiError> {
    Ok(Json(grants::list_for_user(&state, user.id).await?))
}

/// `DELETE /api/v1/account/grants/{id}`.
pub async fn api_revoke_grant(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    grants::revoke_for_user(&state, user.id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
