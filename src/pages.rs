//! Pages that belong to no single capability: the start page, the account page, the stylesheet.

use askama::Template;
use askama_web::WebTemplate;
use axum::{
    extract::State,
    http::header,
    response::{IntoResponse, Redirect, Response},
};
use tower_sessions::Session;

use crate::{
    app::AppState,
    auth::{self, CurrentUser},
    error::AppError,
};

#[derive(Template, WebTemplate)]
#[template(path = "home.html")]
struct HomePage {
    user: Option<CurrentUser>,
    disconnected: bool,
    configured: bool,
    callback_url: String,
    public_url: String,
}

#[derive(serde::Deserialize)]
pub struct HomeQuery {
    disconnected: Option<String>,
}

/// `GET /`: sign-in for visitors, set-up steps when no OAuth consumer is configured.
pub async fn home(
    State(state): State<AppState>,
    session: Session,
    axum::extract::Query(query): axum::extract::Query<HomeQuery>,
) -> Result<Response, AppError> {
    if auth::signed_in(&state, &session).await?.is_some() {
        return Ok(Redirect::to("/workspaces").into_response());
    }
    Ok(HomePage {
        user: None,
        disconnected: query.disconnected.is_some(),
        configured: state.oauth.is_some(),
        callback_url: state.config.callback_url(),
        public_url: state.config.public_origin(),
    }
    .into_response())
}

/// `GET /static/app.css`, built into the binary so the app serves everything it needs.
pub async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../static/app.css"),
    )
}

/// `GET /static/app.js`: live repository states (no inline script: the CSP forbids it).
pub async fn script() -> impl IntoResponse {
    javascript(include_str!("../static/app.js"))
}

#[derive(Template, WebTemplate)]
#[template(path = "search_help.html")]
pub struct SearchHelpPage {
    user: Option<CurrentUser>,
}

/// `GET /search/help`: the query language.
pub async fn search_help(user: CurrentUser) -> SearchHelpPage {
    SearchHelpPage { user: Some(user) }
}

/// `GET /static/vendor/highlight.min.js` (highlight.js 11.12, BSD-3-Clause, vendored) and
/// `GET /static/blob.js`, which applies it to the file view.
pub async fn highlight_js() -> impl IntoResponse {
    javascript(include_str!("../static/vendor/highlight.min.js"))
}

/// `GET /static/blob.js`.
pub async fn blob_js() -> impl IntoResponse {
    javascript(include_str!("../static/blob.js"))
}

fn javascript(body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
}

/// A one-time message shown on the next page after an action.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Flash {
    pub error: bool,
    pub text: String,
}

impl Flash {
    const KEY: &'static str = "flash";

    pub fn ok(text: impl Into<String>) -> Flash {
        Flash {
            error: false,
            text: text.into(),
        }
    }

    pub fn error(text: impl Into<String>) -> Flash {
        Flash {
            error: true,
            text: text.into(),
        }
    }

    /// Keeps the message for the next page this session loads.
    pub async fn set(self, session: &Session) {
        if let Err(e) = session.insert(Self::KEY, self).await {
            tracing::warn!(error = %e, "could not store a flash message");
        }
    }

    /// The pending message, removed as it is read.
    pub async fn take(session: &Session) -> Option<Flash> {
        session.remove(Self::KEY).await.ok().flatten()
    }
}

/// A stored timestamp for people: "2026-11-25 10:53 UTC" (empty for 0).
pub fn format_time(unix: i64) -> String {
    if unix <= 0 {
        return String::new();
    }
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

/// Byte counts for people: "532 B", "14.2 KB", "3.1 MB".
pub fn human_bytes(bytes: i64) -> String {
    const UNITS: [&str; 4] = ["KB", "MB", "GB", "TB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = "B";
    for u in UNITS {
        if value < 1000.0 {
            break;
        }
        value /= 1000.0;
        unit = u;
    }
    format!("{value:.1} {unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_naturally() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(14_200), "14.2 KB");
        assert_eq!(human_bytes(3_100_000), "3.1 MB");
    }

    #[test]
    fn times_are_utc_minutes() {
        assert_eq!(format_time(0), "");
        assert_eq!(format_time(1_764_068_000), "2025-11-25 10:53 UTC");
    }
}
