//! bitbucket.org's OAuth 2.0 endpoints: the consent page, the decision that redirects to the
//! consumer's callback, and the token endpoint (authorization code + rotating refresh tokens).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

use super::json::json_response;
use super::state::{Code, random_url_safe};
use super::{FakeBitbucket, Shared};

/// The consumer's name as the consent page shows it.
const CONSUMER_NAME: &str = "codelayer";

/// Parses an `application/x-www-form-urlencoded` body; the last value of a name wins.
pub(super) fn form(body: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn error_page(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<!doctype html><html><head><title>Bitbucket</title></head><body>\
         <h1>Something went wrong</h1><p class=\"error\">{}</p></body></html>",
        escape(message)
    );
    (status, Html(body)).into_response()
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    json_response(
        status,
        &json!({"error": error, "error_description": description}),
    )
}

/// Where the browser goes back to: the `redirect_uri` if sent (it must extend the configured
/// callback), else the configured callback. With no callback configured a sent `redirect_uri`
/// is let through here so that the token endpoint can give Bitbucket's real complaint.
fn resolve_callback(configured: Option<&str>, requested: Option<&str>) -> Result<String, String> {
    let requested = requested.filter(|r| !r.is_empty());
    match (configured, requested) {
        (Some(c), Some(r)) if r.starts_with(c) => Ok(r.to_owned()),
        (Some(_), Some(_)) => Err("Invalid redirect_uri. This integration is misconfigured. \
                                   Contact the vendor for assistance."
            .to_owned()),
        (Some(c), None) => Ok(c.to_owned()),
        (None, Some(r)) => Ok(r.to_owned()),
        (None, None) => Err("No callback uri defined for the OAuth client".to_owned()),
    }
}

/// `GET /site/oauth2/authorize`: the consent page for the user "signed in at bitbucket.org".
/// PKCE parameters and `scope` are ignored, as the real service ignores them.
pub(super) async fn authorize_page(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if q.get("client_id").map(String::as_str) != Some(FakeBitbucket::CLIENT_ID) {
        return error_page(StatusCode::BAD_REQUEST, "Invalid client_id");
    }
    if q.get("response_type").map(String::as_str) != Some("code") {
        return error_page(StatusCode::BAD_REQUEST, "Unsupported response_type");
    }
    let st = shared.lock();
    let callback = match resolve_callback(
        st.callback.as_deref(),
        q.get("redirect_uri").map(String::as_str),
    ) {
        Ok(c) => c,
        Err(msg) => return error_page(StatusCode::BAD_REQUEST, &msg),
    };
    let Some(user) = st.browser_user.as_deref().and_then(|u| st.user(u)) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Nobody is signed in at the fake bitbucket.org (add a user first)",
        );
    };
    let mut hidden = String::new();
    for (name, value) in [
        ("client_id", q.get("client_id")),
        ("state", q.get("state")),
        ("redirect_uri", q.get("redirect_uri")),
    ] {
        if let Some(value) = value {
            hidden.push_str(&format!(
                "<input type=\"hidden\" name=\"{name}\" value=\"{}\">\n",
                escape(value)
            ));
        }
    }
    let page = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Authorize {app}</title></head>\n\
         <body>\n<h1>{app} is requesting access to your Bitbucket account</h1>\n\
         <p>Signed in as <strong class=\"user\">{user}</strong></p>\n\
         <p>Redirects to {cb}</p>\n\
         <ul><li>Read your account information</li><li>Read your workspace membership</li>\
         <li>Read your repositories</li></ul>\n\
         <form method=\"post\" action=\"/site/oauth2/authorize\">\n{hidden}\
         <button type=\"submit\" name=\"decision\" value=\"grant\">Grant access</button>\n\
         <button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button>\n\
         </form>\n</body></html>\n",
        app = CONSUMER_NAME,
        user = escape(&user.user.display_name),
        cb = escape(&callback),
    );
    Html(page).into_response()
}

/// `POST /site/oauth2/authorize`: the user's click on the consent page.
pub(super) async fn authorize_decision(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let f = form(&body);
    if f.get("client_id").map(String::as_str) != Some(FakeBitbucket::CLIENT_ID) {
        return error_page(StatusCode::BAD_REQUEST, "Invalid client_id");
    }
    let mut st = shared.lock();
    let callback = match resolve_callback(
        st.callback.as_deref(),
        f.get("redirect_uri").map(String::as_str),
    ) {
        Ok(c) => c,
        Err(msg) => return error_page(StatusCode::BAD_REQUEST, &msg),
    };
    let Ok(mut target) = url::Url::parse(&callback) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "The callback URL is not a valid URL",
        );
    };
    let Some(user_uuid) = st.browser_user.clone() else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Nobody is signed in at bitbucket.org",
        );
    };
    match f.get("decision").map(String::as_str) {
        Some("grant") => {
            let code = random_url_safe(18);
            let expires_at = Instant::now() + st.code_lifetime;
            st.codes.insert(
                code.clone(),
                Code {
                    user_uuid,
                    expires_at,
                },
            );
            target.query_pairs_mut().append_pair("code", &code);
        }
        Some("deny") => {
            target
                .query_pairs_mut()
                .append_pair("error", "access_denied")
                .append_pair(
                    "error_description",
                    "The user denied access to the consumer",
                );
        }
        _ => return error_page(StatusCode::BAD_REQUEST, "Missing decision"),
    }
    if let Some(state) = f.get("state") {
        target.query_pairs_mut().append_pair("state", state);
    }
    found(target.as_str())
}

/// A plain 302, which is what bitbucket.org sends (axum's `Redirect` has no 302 helper).
fn found(location: &str) -> Response {
    let mut resp = StatusCode::FOUND.into_response();
    match HeaderValue::from_str(location) {
        Ok(v) => {
            resp.headers_mut().insert(header::LOCATION, v);
            resp
        }
        Err(_) => error_page(StatusCode::BAD_REQUEST, "Unusable callback URL"),
    }
}

/// True when the request carries HTTP Basic `CLIENT_ID:CLIENT_SECRET`; `None` when it carries
/// no Basic credentials at all.
fn client_authenticated(headers: &HeaderMap) -> Option<bool> {
    let (user, pass) = basic_credentials(headers)?;
    Some(user == FakeBitbucket::CLIENT_ID && pass == FakeBitbucket::CLIENT_SECRET)
}

/// `(user, password)` from an `Authorization: Basic …` header.
pub(super) fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (user, pass) = decoded.split_once(':')?;
    Some((user.to_owned(), pass.to_owned()))
}

/// `POST /site/oauth2/access_token`.
pub(super) async fn access_token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match client_authenticated(&headers) {
        None => {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "Client credentials missing; authenticate with HTTP Basic key:secret",
            );
        }
        Some(false) => {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "Invalid OAuth client credentials",
            );
        }
        Some(true) => {}
    }
    let f = form(&body);
    let mut st = shared.lock();
    if st.callback.is_none() {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "No callback uri defined for the OAuth client",
        );
    }
    let grant = f.get("grant_type").map(String::as_str).unwrap_or("");
    let user_uuid = match grant {
        "authorization_code" => {
            let code = f.get("code").map(String::as_str).unwrap_or("");
            // Removed on first sight: a code is single-use whether or not this use succeeds.
            match st.codes.remove(code) {
                Some(c) if Instant::now() < c.expires_at => c.user_uuid,
                Some(_) => {
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        "The authorization code has expired",
                    );
                }
                None => {
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        "The authorization code is invalid or has already been used",
                    );
                }
            }
        }
        "refresh_token" => {
            let rt = f.get("refresh_token").map(String::as_str).unwrap_or("");
            match st.refresh_tokens.get_mut(rt) {
                // Rotation: the old refresh token dies the moment it is used.
                Some(rec) if rec.alive => {
                    rec.alive = false;
                    rec.user_uuid.clone()
                }
                _ => {
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        "Invalid refresh_token",
                    );
                }
            }
        }
        "" => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Missing grant_type",
            );
        }
        other => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                &format!("Unsupported grant_type: {other}"),
            );
        }
    };
    let (access, refresh) = st.issue_tokens(&user_uuid);
    // Since May 2026 the field is `scope`; older answers said `scopes` (a switch keeps both testable).
    let scope_field = if st.legacy_scopes_field {
        "scopes"
    } else {
        "scope"
    };
    let body = json!({
        "access_token": access,
        scope_field: "account repository",
        "expires_in": st.token_lifetime,
        "refresh_token": refresh,
        "token_type": "bearer",
        "state": grant,
    });
    drop(st);
    let mut resp = json_response(StatusCode::OK, &body);
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Minimal HTML escaping for text and attribute values.
pub(super) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Inverse of [`escape`], for the test helper that reads the consent form back.
pub(super) fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}
