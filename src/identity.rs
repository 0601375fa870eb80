//! Who is asking: the signed-in user from the session or a personal access token (the only
//! place a `UserId` is made for a request), the CSRF guard, and error pages with the user's
//! header.

use axum::{
    extract::{FromRequestParts, Request, State},
    http::{Method, header, request::Parts},
    middleware::Next,
    response::{Html, IntoResponse, Response},
};
use tower_sessions::Session;

use crate::{
    auth::{hash_api_token, session_store::USER_ID_KEY},
    db::now,
    error::{ApiError, AppError, ErrorPage},
    ids::{CurrentUser, UserId},
    state::AppState,
};

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let session = Session::from_request_parts(parts, state)
            .await
            .map_err(|_| AppError::Internal("session layer missing".into()))?;
        // A page opened while signed out is where sign-in leads back to.
        let signed_out = match (&parts.method, parts.uri.path_and_query()) {
            (&Method::GET, Some(target)) => AppError::SignedOutAt(target.as_str().to_owned()),
            _ => AppError::SignedOut,
        };
        signed_in(state, &session).await?.ok_or(signed_out)
    }
}

/// The user of this session, if it is signed in to a live account.
pub async fn signed_in(
    state: &AppState,
    session: &Session,
) -> Result<Option<CurrentUser>, AppError> {
    let Some(user_id) = session
        .get::<UserId>(USER_ID_KEY)
        .await
        .map_err(session_error)?
    else {
        return Ok(None);
    };
    let user = load_user(state, user_id).await?;
    if user.is_none() {
        // The account was deleted (or is being deleted) from another device.
        session.flush().await.map_err(session_error)?;
    }
    Ok(user)
}

/// The caller of a JSON API route: a personal access token, else the session.
#[derive(Clone, Debug)]
pub struct ApiUser(pub CurrentUser);

impl FromRequestParts<AppState> for ApiUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(auth) = parts.headers.get(header::AUTHORIZATION) {
            let token = auth
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .ok_or(AppError::SignedOut)?;
            let user = user_for_api_token(state, token)
                .await?
                .ok_or(AppError::SignedOut)?;
            return Ok(ApiUser(user));
        }
        CurrentUser::from_request_parts(parts, state)
            .await
            .map(ApiUser)
            .map_err(ApiError)
    }
}

/// A token's last use is written at most this often: a write on every API request would
/// queue all of them behind SQLite's single writer.
const TOKEN_USE_RECORDED_EVERY_SECS: i64 = 60;

/// The owner of a personal access token (stored as its SHA-256), if the token is live and
/// the account too (one query: it runs on every API request).
pub async fn user_for_api_token(
    state: &AppState,
    token: &str,
) -> Result<Option<CurrentUser>, AppError> {
    let hash = hash_api_token(token);
    let owner: Option<(UserId, Option<i64>, String)> = sqlx::query_as(
        "SELECT t.user_id, t.last_used_at, u.display_name FROM api_tokens t \
         JOIN users u ON u.id = t.user_id AND u.purging = 0 WHERE t.token_hash = $1",
    )
    .bind(&hash)
    .fetch_optional(&state.db.pool)
    .await?;
    let Some((id, last_used, display_name)) = owner else {
        return Ok(None);
    };
    let now = now();
    if last_used.is_none_or(|t| now - t >= TOKEN_USE_RECORDED_EVERY_SECS) {
        sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE token_hash = $2")
            .bind(now)
            .bind(&hash)
            .execute(&state.db.pool)
            .await?;
    }
    Ok(Some(CurrentUser { id, display_name }))
}

/// A live (not purging) account by id, as every way of signing in loads it.
pub async fn load_user(state: &AppState, user_id: UserId) -> Result<Option<CurrentUser>, AppError> {
    let name: Option<String> =
        sqlx::query_scalar("SELECT display_name FROM users WHERE id = $1 AND purging = 0")
            .bind(user_id)
            .fetch_optional(&state.db.pool)
            .await?;
    Ok(name.map(|display_name| CurrentUser {
        id: user_id,
        display_name,
    }))
}

/// Refuses a cookie-authenticated state-changing request that did not come from our origin.
///
/// Bearer-authenticated requests carry no ambient credential, so they need no check.
pub async fn csrf_guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let headers = request.headers();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer "));
    let same_origin = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|o| o == state.config.public_origin())
        || headers
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|s| s == "same-origin");
    // /mcp never reads the cookie: its own guard demands a bearer token (401 otherwise); nor
    // do the OAuth endpoints programs call (`mcp_auth`'s register, token and revoke, named
    // here because this floor cannot import that one).
    let path = request.uri().path();
    let cookieless = path == "/mcp"
        || path.starts_with("/mcp/")
        || ["/oauth/token", "/oauth/register", "/oauth/revoke"].contains(&path);
    if safe || bearer || same_origin || cookieless {
        return next.run(request).await;
    }
    let refused = AppError::Forbidden(
        "This request did not come from a codelayer page, so it was refused.".into(),
    );
    if request.uri().path().starts_with("/api/") {
        ApiError(refused).into_response()
    } else {
        refused.into_response()
    }
}

/// A session-store failure, as an internal error.
pub fn session_error(e: tower_sessions::session::Error) -> AppError {
    AppError::Internal(format!("session: {e}"))
}

/// Re-renders error pages of signed-in users with their header (navigation, name and the
/// sign-out form), which the error itself cannot know.
pub async fn with_signed_in_header(
    State(state): State<AppState>,
    session: Session,
    request: Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    let Some(mut page) = response.extensions_mut().remove::<ErrorPage>() else {
        return response;
    };
    if let Ok(Some(user)) = signed_in(&state, &session).await {
        page.user = Some(user);
        if let Ok(body) = askama::Template::render(&page) {
            let status = response.status();
            let mut again = (status, Html(body)).into_response();
            let referrer = header::REFERRER_POLICY;
            if let Some(policy) = response.headers().get(&referrer).cloned() {
                again.headers_mut().insert(referrer, policy);
            }
            return again;
        }
    }
    response
}
