//! Dynamic client registration (RFC 7591) for public clients, and the redirect URI rules:
//! registered URIs are https, http on a loopback address (any port at request time, RFC
//! 8252 §7.3) or an app's private-use scheme; a request's URI must match one exactly.

use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::json;
use url::Url;

use super::metadata::with_cors;
use crate::{auth::crypto::random_token, db::now, state::AppState};

/// Registration bodies larger than this are refused.
const MAX_BODY_BYTES: usize = 16 * 1024;
/// Redirect URIs one client may register.
const MAX_REDIRECT_URIS: usize = 10;
/// The longest redirect URI accepted, in bytes.
const MAX_URI_BYTES: usize = 2000;
/// The longest client name kept, in characters.
const MAX_NAME_CHARS: usize = 100;
/// Registrations accepted per hour from everyone together: registration needs no account,
/// so this bounds how fast anyone can fill the table.
const REGISTRATIONS_PER_HOUR: i64 = 1000;
/// A client nobody has used for this long (and no grant holds) is forgotten.
const UNUSED_CLIENT_SECS: i64 = 30 * 24 * 3600;

/// A registered client.
#[derive(Clone, Debug)]
pub struct Client {
    pub id: String,
    pub name: String,
    pub redirect_uris: Vec<String>,
}

impl Client {
    /// The registered URI `requested` matches, if any.
    pub fn allows_redirect(&self, requested: &str) -> bool {
        self.redirect_uris
            .iter()
            .any(|registered| redirect_matches(registered, requested))
    }
}

/// The client with this id.
pub async fn find(state: &AppState, client_id: &str) -> Result<Option<Client>, sqlx::Error> {
    let row: Option<(String, String, String)> =
        sqlx::query_as("SELECT id, name, redirect_uris FROM oauth_clients WHERE id = $1")
            .bind(client_id)
            .fetch_optional(&state.db.pool)
            .await?;
    Ok(row.map(|(id, name, uris)| Client {
        id,
        name,
        redirect_uris: serde_json::from_str(&uris).unwrap_or_default(),
    }))
}

#[derive(Deserialize)]
struct Registration {
    redirect_uris: Option<Vec<String>>,
    client_name: Option<String>,
    token_endpoint_auth_method: Option<String>,
    grant_types: Option<Vec<String>>,
    response_types: Option<Vec<String>>,
}

/// `POST /oauth/register`: registers a public client (no secret; PKCE protects its codes).
pub async fn register(State(state): State<AppState>, body: Bytes) -> Response {
    with_cors(match register_client(&state, &body).await {
        Ok(response) => response,
        Err((status, error, description)) => (
            status,
            Json(json!({"error": error, "error_description": description})),
        )
            .into_response(),
    })
}

type RegistrationError = (StatusCode, &'static str, String);

fn invalid(error: &'static str, description: impl Into<String>) -> RegistrationError {
    (StatusCode::BAD_REQUEST, error, description.into())
}

async fn register_client(state: &AppState, body: &[u8]) -> Result<Response, RegistrationError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(invalid(
            "invalid_client_metadata",
            "the registration is larger than 16 KiB",
        ));
    }
    let request: Registration = serde_json::from_slice(body).map_err(|e| {
        invalid(
            "invalid_client_metadata",
            format!("the body must be a JSON object of client metadata: {e}"),
        )
    })?;
    let uris = request.redirect_uris.unwrap_or_default();
    if uris.is_empty() || uris.len() > MAX_REDIRECT_URIS {
        return Err(invalid(
            "invalid_redirect_uri",
            format!("register 1 to {MAX_REDIRECT_URIS} redirect_uris"),
        ));
    }
    for uri in &uris {
        check_redirect_uri(uri).map_err(|why| invalid("invalid_redirect_uri", why))?;
    }
    // A public client: whatever method was asked for, none is registered (RFC 7591 lets the
    // server replace requested values and report the ones it used).
    if let Some(method) = &request.token_endpoint_auth_method {
        tracing::debug!(%method, "client asked for a token endpoint auth method; registered as public");
    }
    let grant_types = request
        .grant_types
        .unwrap_or_else(|| vec!["authorization_code".into(), "refresh_token".into()]);
    if let Some(other) = grant_types
        .iter()
        .find(|g| !matches!(g.as_str(), "authorization_code" | "refresh_token"))
    {
        return Err(invalid(
            "invalid_client_metadata",
            format!("grant type {other:?} is not supported (authorization_code, refresh_token)"),
        ));
    }
    if let Some(other) = request
        .response_types
        .iter()
        .flatten()
        .find(|r| r.as_str() != "code")
    {
        return Err(invalid(
            "invalid_client_metadata",
            format!("response type {other:?} is not supported (code)"),
        ));
    }
    let name = request
        .client_name
        .map(|n| {
            n.chars()
                .filter(|c| !c.is_control())
                .take(MAX_NAME_CHARS)
                .collect::<String>()
                .trim()
                .to_owned()
        })
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "An unnamed application".to_owned());

    let internal = |e: sqlx::Error| {
        tracing::error!(error = %e, "client registration failed");
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "the client could not be stored; try again".to_owned(),
        )
    };
    let created = now();
    let recent: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM oauth_clients WHERE created_at > $1")
            .bind(created - 3600)
            .fetch_one(&state.db.pool)
            .await
            .map_err(internal)?;
    if recent >= REGISTRATIONS_PER_HOUR {
        return Err((
            StatusCode::TOO_MANY_REQUESTS,
            "temporarily_unavailable",
            "too many clients registered in the last hour; try again later".to_owned(),
        ));
    }
    let id = format!("clc_{}", random_token(18));
    sqlx::query(
        "INSERT INTO oauth_clients (id, name, redirect_uris, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(&id)
    .bind(&name)
    .bind(serde_json::to_string(&uris).unwrap_or_default())
    .bind(created)
    .execute(&state.db.pool)
    .await
    .map_err(internal)?;
    tracing::info!(client_id = %id, client_name = %name, "OAuth client registered");
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "client_id": id,
            "client_id_issued_at": created,
            "client_name": name,
            "redirect_uris": uris,
            "grant_types": grant_types,
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
            "scope": super::SCOPE,
        })),
    )
        .into_response())
}

/// Forgets clients that nobody used for a month and that no grant holds.
pub async fn delete_unused(state: &AppState) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "DELETE FROM oauth_clients WHERE COALESCE(last_used_at, created_at) < $1 \
         AND NOT EXISTS (SELECT 1 FROM oauth_grants g WHERE g.client_id = oauth_clients.id)",
    )
    .bind(now() - UNUSED_CLIENT_SECS)
    .execute(&state.db.pool)
    .await?
    .rows_affected())
}

/// Schemes a redirect may never use: they run code or read local files in a browser.
const FORBIDDEN_SCHEMES: &[&str] = &[
    "javascript",
    "data",
    "file",
    "vbscript",
    "about",
    "blob",
    "filesystem",
    "ftp",
    "ws",
    "wss",
];

/// Whether `uri` may be registered: an absolute URL without fragment that is https, http on
/// a loopback address, or a private-use scheme of a native app (`cursor://…`, `com.example:/…`).
pub fn check_redirect_uri(uri: &str) -> Result<(), String> {
    if uri.len() > MAX_URI_BYTES {
        return Err(format!(
            "a redirect URI is longer than {MAX_URI_BYTES} bytes"
        ));
    }
    let url = Url::parse(uri).map_err(|e| format!("{uri:?} is not an absolute URL: {e}"))?;
    if url.fragment().is_some() {
        return Err(format!("{uri:?} has a fragment; redirect URIs may not"));
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&url) => Ok(()),
        "http" => Err(format!(
            "{uri:?}: plain http is allowed only on a loopback address (127.0.0.1, [::1], localhost)"
        )),
        scheme if FORBIDDEN_SCHEMES.contains(&scheme) => {
            Err(format!("{uri:?}: the {scheme}: scheme is not allowed"))
        }
        _ => Ok(()),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Whether a requested redirect URI matches a registered one: character for character, except
/// that an http loopback URI may name any port (native apps listen on a port of the moment).
pub fn redirect_matches(registered: &str, requested: &str) -> bool {
    if registered == requested {
        return true;
    }
    let (Ok(a), Ok(b)) = (Url::parse(registered), Url::parse(requested)) else {
        return false;
    };
    a.scheme() == "http"
        && b.scheme() == "http"
        && is_loopback(&a)
        && a.host() == b.host()
        && a.path() == b.path()
        && a.query() == b.query()
        && a.fragment().is_none()
        && b.fragment().is_none()
        && a.username().is_empty()
        && b.username().is_empty()
        && a.password().is_none()
        && b.password().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrable_redirect_uris() {
        for ok in [
            "https://claude.ai/api/mcp/auth_callback",
            "http://127.0.0.1:33418/",
            "http://localhost:8765/callback",
            "http://[::1]/cb",
            "cursor://anysphere.cursor-retrieval/oauth/callback",
            "com.example.app:/oauth",
        ] {
            assert!(check_redirect_uri(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://evil.example/cb",
            "https://app.example/cb#frag",
            "javascript:alert(1)",
            "data:text/html,hi",
            "file:///etc/passwd",
            "/relative",
            "",
        ] {
            assert!(check_redirect_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn exact_match_except_the_loopback_port() {
        let https = "https://app.example/cb";
        assert!(redirect_matches(https, https));
        assert!(!redirect_matches(https, "https://app.example/cb/"));
        assert!(!redirect_matches(https, "https://app.example/cb?x=1"));
        assert!(!redirect_matches(https, "https://app.example:8443/cb"));
        assert!(!redirect_matches(https, "https://APP.example/cb"));
        let loopback = "http://127.0.0.1:1234/callback";
        assert!(redirect_matches(
            loopback,
            "http://127.0.0.1:50111/callback"
        ));
        assert!(redirect_matches(loopback, "http://127.0.0.1/callback"));
        assert!(!redirect_matches(loopback, "http://127.0.0.1:50111/other"));
        assert!(!redirect_matches(
            loopback,
            "http://localhost:1234/callback"
        ));
        assert!(!redirect_matches(
            loopback,
            "https://127.0.0.1:1234/callback"
        ));
        assert!(!redirect_matches(
            loopback,
            "http://user@127.0.0.1:1234/callback"
        ));
        assert!(redirect_matches(
            "http://localhost:1/cb",
            "http://localhost:9/cb"
        ));
    }
}
