//! The token endpoint (authorization code with PKCE, refresh with rotation) and token
//! revocation (RFC 7009). Clients are public: they prove themselves with the PKCE verifier
//! and the tokens they hold, never with a secret.

use std::collections::HashMap;

use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{
    ACCESS_TOKEN_SECS, SCOPE,
    grants::{self, Exchange, GrantError, Issued},
    metadata::with_cors,
};
use crate::{auth::crypto::constant_time_eq, state::AppState};

/// Token requests larger than this are refused.
const MAX_BODY_BYTES: usize = 16 * 1024;

/// `POST /oauth/token` (`application/x-www-form-urlencoded`).
pub async fn token(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let answer = match parse_form(&headers, &body) {
        Ok(form) => grant(&state, &form).await,
        Err(e) => Err(e),
    };
    let mut response = match answer {
        Ok(issued) => Json(json!({
            "access_token": issued.access_token,
            "token_type": "Bearer",
            "expires_in": ACCESS_TOKEN_SECS,
            "refresh_token": issued.refresh_token,
            "scope": SCOPE,
        }))
        .into_response(),
        Err(e) => e.into_response(),
    };
    // RFC 6749 §5.1: token responses are never cached.
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    with_cors(response)
}

/// `POST /oauth/revoke`: revokes the grant of an access or refresh token; always 200.
pub async fn revoke(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let response = match parse_form(&headers, &body) {
        Ok(form) => match form.get("token").filter(|t| !t.is_empty()) {
            Some(token) => {
                match grants::revoke_by_token(
                    &state,
                    token,
                    form.get("client_id").map(String::as_str),
                )
                .await
                {
                    Ok(()) => StatusCode::OK.into_response(),
                    Err(e) => OAuthError::server(&e).into_response(),
                }
            }
            None => OAuthError::request("token is missing").into_response(),
        },
        Err(e) => e.into_response(),
    };
    with_cors(response)
}

async fn grant(state: &AppState, form: &HashMap<String, String>) -> Result<Issued, OAuthError> {
    let field = |name: &str| {
        form.get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| OAuthError::request(format!("{name} is missing")))
    };
    let client_id = field("client_id")?;
    if super::clients::find(state, client_id)
        .await
        .map_err(|e| OAuthError::server(&e))?
        .is_none()
    {
        return Err(OAuthError {
            status: StatusCode::UNAUTHORIZED,
            error: "invalid_client",
            description: "unknown client_id: register again".into(),
        });
    }
    let outcome = match field("grant_type")? {
        "authorization_code" => {
            grants::exchange_code(
                state,
                &Exchange {
                    code: field("code")?,
                    client_id,
                    redirect_uri: field("redirect_uri")?,
                    code_verifier: field("code_verifier")?,
                },
            )
            .await
        }
        "refresh_token" => grants::refresh(state, field("refresh_token")?, client_id).await,
        other => {
            return Err(OAuthError {
                status: StatusCode::BAD_REQUEST,
                error: "unsupported_grant_type",
                description: format!(
                    "grant_type {other:?} is not supported (authorization_code, refresh_token)"
                ),
            });
        }
    };
    outcome.map_err(|e| match e {
        GrantError::Invalid(why) => OAuthError {
            status: StatusCode::BAD_REQUEST,
            error: "invalid_grant",
            description: why.into(),
        },
        GrantError::Internal(e) => OAuthError::server(&e),
    })
}

/// The form's fields; `client_id` may come in HTTP Basic instead (its password is ignored:
/// the clients are public).
fn parse_form(headers: &HeaderMap, body: &[u8]) -> Result<HashMap<String, String>, OAuthError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(OAuthError::request("the request is larger than 16 KiB"));
    }
    let mut form: HashMap<String, String> = HashMap::new();
    for (key, value) in url::form_urlencoded::parse(body) {
        // RFC 6749 §3.2: a parameter sent twice makes the request invalid.
        if form.insert(key.to_string(), value.into_owned()).is_some() {
            return Err(OAuthError::request(format!("{key} is given twice")));
        }
    }
    if !form.contains_key("client_id")
        && let Some(id) = basic_user(headers)
    {
        form.insert("client_id".into(), id);
    }
    Ok(form)
}

fn basic_user(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let decoded = STANDARD.decode(value.strip_prefix("Basic ")?).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let user = text.split_once(':').map_or(text.as_str(), |(u, _)| u);
    let user: String = url::form_urlencoded::parse(format!("u={user}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())?;
    (!user.is_empty()).then_some(user)
}

/// Whether `verifier` is a valid PKCE verifier (RFC 7636 §4.1) whose S256 is `challenge`.
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    well_formed && constant_time_eq(computed.as_bytes(), challenge.as_bytes())
}

/// An OAuth error answer: `{"error", "error_description"}`.
#[derive(Debug)]
pub struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
}

impl OAuthError {
    fn request(description: impl Into<String>) -> OAuthError {
        OAuthError {
            status: StatusCode::BAD_REQUEST,
            error: "invalid_request",
            description: description.into(),
        }
    }

    fn server(e: &impl std::fmt::Display) -> OAuthError {
        tracing::error!(error = %e, "OAuth token endpoint failed");
        OAuthError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            error: "server_error",
            description: "something went wrong on our side; try again".into(),
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": self.error, "error_description": self.description})),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256() {
        // RFC 7636 Appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(pkce_matches(verifier, challenge));
        assert!(!pkce_matches(
            verifier,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN"
        ));
        assert!(!pkce_matches("short", challenge));
        assert!(!pkce_matches(&"a".repeat(129), challenge));
    }

    #[test]
    fn client_id_from_basic_auth() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {}", STANDARD.encode("clc_abc:secret")))
                .expect("header"),
        );
        let form = parse_form(&headers, b"grant_type=refresh_token").expect("form");
        assert_eq!(form["client_id"], "clc_abc");
        assert!(
            parse_form(&headers, b"a=1&a=2").is_err(),
            "repeated parameter"
        );
    }
}
