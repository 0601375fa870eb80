//! Pages that belong to no single capability: the start page, the query-language help and
//! the static assets built into the binary.

use askama::Template;
use askama_web::WebTemplate;
use axum::{
    extract::State,
    http::header,
    response::{IntoResponse, Redirect, Response},
};
use tower_sessions::Session;

use crate::{error::AppError, identity, ids::CurrentUser, search::syntax, state::AppState};

#[derive(Template, WebTemplate)]
#[template(path = "home.html")]
struct HomePage {
    user: Option<CurrentUser>,
    disconnected: bool,
    configured: bool,
    callback_url: String,
    public_url: String,
    /// Where sign-in leads: the page opened while signed out, if any.
    sign_in_href: String,
    continues: bool,
}

#[derive(serde::Deserialize)]
pub struct HomeQuery {
    disconnected: Option<String>,
    next: Option<String>,
}

/// `GET /`: sign-in for visitors, set-up steps when no OAuth consumer is configured.
pub async fn home(
    State(state): State<AppState>,
    session: Session,
    axum::extract::Query(query): axum::extract::Query<HomeQuery>,
) -> Result<Response, AppError> {
    if identity::signed_in(&state, &session).await?.is_some() {
        return Ok(Redirect::to("/workspaces").into_response());
    }
    // `/auth/login` checks `next` in full; only local paths are passed on at all.
    let next = query
        .next
        .filter(|n| n.starts_with('/') && !n.starts_with("//"));
    let sign_in_href = match &next {
        Some(n) => format!(
            "/auth/login?next={}",
            url::form_urlencoded::byte_serialize(n.as_bytes()).collect::<String>()
        ),
        None => "/auth/login".to_owned(),
    };
    Ok(HomePage {
        user: None,
        sign_in_href,
        continues: next.is_some(),
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
    forms: &'static [syntax::Form],
    examples: &'static [(&'static str, &'static str)],
    notes: String,
}

/// `GET /search/help`: the query language, from the description MCP's tools carry too.
pub async fn search_help(user: CurrentUser) -> SearchHelpPage {
    SearchHelpPage {
        user: Some(user),
        forms: syntax::FORMS,
        examples: syntax::EXAMPLES,
        notes: syntax::notes(),
    }
}

/// `GET /static/vendor/highlight.min.js` (highlight.js 11.12, BSD-3-Clause, vendored).
pub async fn highlight_js() -> impl IntoResponse {
    javascript(include_str!("../static/vendor/highlight.min.js"))
}

/// `GET /static/code.js`: syntax colouring of the file view and of result snippets.
pub async fn code_js() -> impl IntoResponse {
    javascript(include_str!("../static/code.js"))
}

/// `GET /static/site.js`: keyboard shortcuts and copy buttons on every page.
pub async fn site_js() -> impl IntoResponse {
    javascript(include_str!("../static/site.js"))
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
