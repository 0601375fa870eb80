//! Discovery: the 401 challenge `/mcp` answers with, the protected-resource metadata it points
//! at (RFC 9728), and the authorization-server metadata (RFC 8414) that names our endpoints.

use axum::{
    Json,
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use super::{SCOPE, resource_url};
use crate::state::AppState;

/// Where the protected-resource metadata lives, as the challenge names it.
pub fn resource_metadata_url(state: &AppState) -> String {
    format!(
        "{}/.well-known/oauth-protected-resource",
        state.config.public_origin()
    )
}

/// The 401 of `/mcp`: `WWW-Authenticate: Bearer resource_metadata="…"`, with
/// `error="invalid_token"` when a token was sent but is not (or no longer) valid.
pub fn challenge(state: &AppState, token_sent: bool) -> Response {
    let error = if token_sent {
        "error=\"invalid_token\", "
    } else {
        ""
    };
    let value = format!(
        "Bearer {error}resource_metadata=\"{}\"",
        resource_metadata_url(state)
    );
    let mut response = (
        StatusCode::UNAUTHORIZED,
        "Sign in: an MCP client discovers codelayer's OAuth server through the \
         WWW-Authenticate header (or send a personal access token as Authorization: Bearer <token>)",
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&value) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    with_cors(response)
}

/// `GET /.well-known/oauth-protected-resource` (also under `/mcp`): RFC 9728.
pub async fn protected_resource(State(state): State<AppState>) -> Response {
    let document = json!({
        "resource": resource_url(&state),
        "authorization_servers": [state.config.public_origin()],
        "scopes_supported": [SCOPE],
        "bearer_methods_supported": ["header"],
        "resource_name": "codelayer",
        "resource_documentation": format!("{}/search/help", state.config.public_origin()),
    });
    metadata(document)
}

/// `GET /.well-known/oauth-authorization-server`: RFC 8414.
pub async fn authorization_server(State(state): State<AppState>) -> Response {
    let base = state.config.public_origin();
    let document = json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}/oauth/authorize"),
        "token_endpoint": format!("{base}/oauth/token"),
        "registration_endpoint": format!("{base}/oauth/register"),
        "revocation_endpoint": format!("{base}/oauth/revoke"),
        "scopes_supported": [SCOPE],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["none"],
        "revocation_endpoint_auth_methods_supported": ["none"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
    });
    metadata(document)
}

fn metadata(document: Value) -> Response {
    let mut response = Json(document).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    with_cors(response)
}

/// Discovery, registration and tokens may be fetched by an assistant running in a browser
/// page of another origin; none of them reads a cookie, so any origin may read the answer.
pub fn with_cors(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("WWW-Authenticate"),
    );
    response
}

/// `OPTIONS` on the program-facing endpoints: the CORS preflight.
pub async fn preflight() -> Response {
    let mut response = with_cors(StatusCode::NO_CONTENT.into_response());
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type, mcp-protocol-version"),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    response
}
