//! Sign-in with Bitbucket: the login redirect, the OAuth callback and sign-out.

use axum::{
    extract::{Query, State},
    http::{HeaderValue, header},
    response::{IntoResponse, Redirect, Response},
};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tower_sessions::Session;

use crate::{
    auth::{oauth, session_store::USER_ID_KEY},
    db::now,
    error::AppError,
    identity::session_error as internal,
    ids::UserId,
    state::AppState,
};

/// Session key of the pending OAuth request.
const PENDING_KEY: &str = "oauth_pending";
/// Where a sign-in lands unless it was started from another page.
const DEFAULT_NEXT: &str = "/workspaces";
/// How long a user may take on Bitbucket's consent page.
const PENDING_MAX_AGE_SECS: i64 = 15 * 60;

#[derive(Serialize, Deserialize)]
struct PendingSignIn {
    state: String,
    next: String,
    created_at: i64,
}

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// `GET /auth/login`: remember a random state and send the browser to Bitbucket.
pub async fn login(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<LoginQuery>,
) -> Result<Response, AppError> {
    let Some(oauth) = &state.oauth else {
        return Ok(Redirect::to("/").into_response());
    };
    let (url, csrf_state) = oauth.authorize_url();
    let pending = PendingSignIn {
        state: csrf_state,
        next: safe_next(query.next.as_deref()),
        created_at: now(),
    };
    session
        .insert(PENDING_KEY, pending)
        .await
        .map_err(internal)?;
    Ok(Redirect::to(&url).into_response())
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// `GET /auth/callback`: check the state, exchange the code, upsert user and connection.
pub async fn callback(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<CallbackQuery>,
) -> Response {
    let mut response = match finish_sign_in(&state, &session, query).await {
        Ok(next) => Redirect::to(&next).into_response(),
        Err(e) => e.into_response(),
    };
    // The URL carried a code: it must not leak to any page the user goes to next.
    response.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

async fn finish_sign_in(
    state: &AppState,
    session: &Session,
    query: CallbackQuery,
) -> Result<String, AppError> {
    let Some(oauth) = &state.oauth else {
        return Err(AppError::NotFound);
    };
    // Single use: the pending state is burned whatever happens next.
    let pending: Option<PendingSignIn> = session.remove(PENDING_KEY).await.map_err(internal)?;
    let state_matches = matches!(
        (&pending, &query.state),
        (Some(p), Some(s)) if bool::from(p.state.as_bytes().ct_eq(s.as_bytes()))
    );
    if !state_matches {
        return Err(sign_in_error(
            400,
            "This sign-in link is not valid",
            "It was already used, has expired, or was started in another browser. Start again from the sign-in button.",
        ));
    }
    let pending = pending.expect("checked above");
    if now() - pending.created_at > PENDING_MAX_AGE_SECS {
        return Err(sign_in_error(
            400,
            "The sign-in took too long",
            "Start again from the sign-in button.",
        ));
    }
    if let Some(error) = query.error {
        let message = if error == "access_denied" {
            "You did not grant codelayer access on Bitbucket, so nothing was saved. Try again if that was a mistake."
        } else {
            "Bitbucket did not complete the sign-in. Nothing was saved; try again."
        };
        return Err(sign_in_error(403, "Sign-in was cancelled", message));
    }
    let Some(code) = query.code.filter(|c| !c.is_empty() && c.len() < 4096) else {
        return Err(sign_in_error(
            400,
            "Sign-in failed",
            "Bitbucket sent no code back.",
        ));
    };
    let tokens = oauth.exchange_code(&code).await.map_err(|e| match e {
        oauth::OAuthError::Rejected(_) => sign_in_error(
            400,
            "Bitbucket refused the sign-in",
            "The code from Bitbucket was expired or already used. Nothing was saved; please sign in again.",
        ),
        oauth::OAuthError::Unavailable(reason) => {
            tracing::warn!(%reason, "token exchange failed");
            sign_in_error(
                502,
                "Bitbucket could not be reached",
                "Bitbucket did not answer properly while signing you in. Nothing was saved; try again in a moment.",
            )
        }
    })?;
    let profile = state
        .bitbucket
        .user_with_token(&tokens.access_token)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "reading /2.0/user failed");
            match e {
                // Not a passing fault: the address is wrong, and trying again will not help.
                crate::bitbucket::BbError::Status(axum::http::StatusCode::NOT_FOUND) => {
                    sign_in_error(
                        502,
                        "Bitbucket's API address looks wrong",
                        &wrong_api_url(&state.config.api_url),
                    )
                }
                _ => sign_in_error(
                    502,
                    "Bitbucket could not be reached",
                    "Signed in on Bitbucket, but reading your profile failed. Nothing was saved; try again in a moment.",
                ),
            }
        })?;

    let mut tx = state.db.pool.begin().await?;
    let user_id: UserId = sqlx::query_scalar(
        "INSERT INTO users (bitbucket_uuid, account_id, nickname, display_name, purging, created_at) \
         VALUES ($1, $2, $3, $4, 0, $5) \
         ON CONFLICT (bitbucket_uuid) DO UPDATE SET account_id = excluded.account_id, \
           nickname = excluded.nickname, display_name = excluded.display_name \
         RETURNING id",
    )
    .bind(&profile.uuid)
    .bind(&profile.account_id)
    .bind(&profile.nickname)
    .bind(&profile.display_name)
    .bind(now())
    .fetch_one(&mut *tx)
    .await?;
    let purging: i64 = sqlx::query_scalar("SELECT purging FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_one(&mut *tx)
        .await?;
    if purging != 0 {
        return Err(sign_in_error(
            409,
            "Your previous account is still being deleted",
            "Wait a moment and sign in again.",
        ));
    }
    state.tokens.store_new(&mut *tx, user_id, &tokens).await?;
    tx.commit().await?;

    // A new session id at the privilege change defeats session fixation.
    session.cycle_id().await.map_err(internal)?;
    session
        .insert(USER_ID_KEY, user_id)
        .await
        .map_err(internal)?;
    tracing::info!(%user_id, "signed in");
    Ok(after_sign_in(state, user_id, pending.next).await)
}

/// Reads the workspace list right away, so the first page is not empty; with exactly one
/// workspace (linked automatically) the user goes straight to its repositories.
async fn after_sign_in(state: &AppState, user_id: UserId, next: String) -> String {
    let caller = crate::bitbucket::Caller::interactive(user_id);
    match crate::workspaces::refresh::refresh(state, caller).await {
        Ok(outcome) if outcome.auto_linked.is_some() && next == DEFAULT_NEXT => {
            "/repositories".to_owned()
        }
        Ok(_) => next,
        Err(e) => {
            tracing::warn!(%user_id, error = %e, "reading workspaces at sign-in failed; queued");
            if let Err(e) = state
                .enqueue(&crate::jobs::Job::RefreshWorkspaces { user_id })
                .await
            {
                tracing::warn!(%user_id, error = %e, "queueing the workspace refresh failed");
            }
            next
        }
    }
}

/// `POST /auth/logout`: ends the session.
pub async fn logout(session: Session) -> Result<Redirect, AppError> {
    session.flush().await.map_err(internal)?;
    Ok(Redirect::to("/"))
}

/// Only a same-site relative path is honoured after sign-in (no open redirect).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(char::is_control)
                && n.len() < 2048 =>
        {
            n.to_owned()
        }
        _ => DEFAULT_NEXT.to_owned(),
    }
}

/// What a person (often the operator) needs when the API answered 404 for the profile.
fn wrong_api_url(api_url: &url::Url) -> String {
    format!(
        "Signed in on Bitbucket, but Bitbucket's API at {api_url} answered 404 Not Found for \
         /2.0/user, so codelayer could not read your profile. BITBUCKET_API_URL is probably \
         wrong (for Bitbucket Cloud it is https://api.bitbucket.org). Nothing was saved."
    )
}

/// At start-up: the usual ways of getting `BITBUCKET_API_URL` wrong, in the log before anyone
/// signs in (no request: Bitbucket's budget is for people). Sign-in names a 404 as well.
pub fn check_api_url(api_url: &url::Url) {
    let mistake = if api_url.host_str() == Some("bitbucket.org") {
        Some("the API lives at https://api.bitbucket.org, not https://bitbucket.org")
    } else if api_url.path().contains("/2.0") {
        Some("leave /2.0 out: codelayer adds it to every call")
    } else {
        None
    };
    if let Some(mistake) = mistake {
        tracing::warn!(%api_url, "BITBUCKET_API_URL looks wrong: {mistake}; sign-in will fail until it is fixed");
    }
}

fn sign_in_error(status: u16, title: &str, message: &str) -> AppError {
    AppError::SignIn {
        status: axum::http::StatusCode::from_u16(status)
            .unwrap_or(axum::http::StatusCode::BAD_REQUEST),
        title: title.to_owned(),
        message: message.to_owned(),
    }
}
