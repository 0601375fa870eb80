//! The OAuth authorization server for MCP clients, per the MCP authorization spec: a person
//! adds `<public url>/mcp` to an assistant, the assistant discovers this server, registers
//! itself, sends the browser to a consent page and gets tokens — nobody copies a token.
//!
//! - `metadata`: RFC 9728 protected-resource and RFC 8414 authorization-server metadata, and
//!   the `WWW-Authenticate` challenge `/mcp` answers a missing or dead token with;
//! - `clients`: RFC 7591 dynamic registration of public clients, redirect URI rules;
//! - `authorize`: the consent page (authorization code with PKCE S256);
//! - `token`: the token and revocation endpoints (refresh tokens rotate);
//! - `grants`: what a person approved, the tokens stored as hashes, their verification.
//!
//! Sign-in is Bitbucket's, through `signin`'s `next` parameter; who is signed in comes from
//! `identity`. Personal access tokens stay in `identity` and keep working beside these.

pub mod authorize;
pub mod clients;
pub mod grants;
pub mod metadata;
pub mod token;

use axum::{
    Router,
    routing::{get, options, post},
};

use crate::state::AppState;

/// The one scope: read the code the user can read, through MCP.
pub const SCOPE: &str = "mcp";
/// How long an access token lives (seconds); the client refreshes after that.
pub const ACCESS_TOKEN_SECS: i64 = 3600;
/// How long a refresh token lives unused (seconds); each use makes a new one.
pub const REFRESH_TOKEN_SECS: i64 = 30 * 24 * 3600;
/// How long an authorization code may wait for its exchange (seconds).
pub const CODE_SECS: i64 = 300;

/// The routes of the authorization server. The endpoints programs call (register, token,
/// revoke) read no cookie; `identity::csrf_guard` lets their POSTs through by path.
pub fn routes() -> Router<AppState> {
    let preflight = options(metadata::preflight);
    Router::new()
        .route(
            "/.well-known/oauth-protected-resource",
            get(metadata::protected_resource).merge(preflight.clone()),
        )
        .route(
            "/.well-known/oauth-protected-resource/mcp",
            get(metadata::protected_resource).merge(preflight.clone()),
        )
        .route(
            "/.well-known/oauth-authorization-server",
            get(metadata::authorization_server).merge(preflight.clone()),
        )
        .route(
            "/oauth/register",
            post(clients::register).merge(preflight.clone()),
        )
        .route(
            "/oauth/authorize",
            get(authorize::page).post(authorize::decide),
        )
        .route("/oauth/token", post(token::token).merge(preflight.clone()))
        .route("/oauth/revoke", post(token::revoke).merge(preflight))
}

/// The resource the tokens are for: `<public url>/mcp`.
pub fn resource_url(state: &AppState) -> String {
    format!("{}/mcp", state.config.public_origin())
}
