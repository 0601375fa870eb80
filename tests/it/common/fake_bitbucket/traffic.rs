//! What every request goes through first: it is logged (path, arrival time and, for the
//! token endpoint, the grant type), then delayed and/or failed as a test asked.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Shared;
use super::json::{error, gone};
use super::oauth::form;

pub(super) const TOKEN_PATH: &str = "/site/oauth2/access_token";

pub(super) async fn observe(
    State(shared): State<Arc<Shared>>,
    req: Request,
    next: Next,
) -> Response {
    let arrived = Instant::now();
    let path = req.uri().path().to_owned();
    // The grant type is read here rather than in the handler so that token requests are
    // counted even when a fault is injected, like every other request.
    let (req, grant) = if path == TOKEN_PATH && req.method() == Method::POST {
        let (parts, body) = req.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, 1 << 20).await else {
            return error(StatusCode::BAD_REQUEST, "Unreadable request body");
        };
        let grant = form(&bytes).remove("grant_type").unwrap_or_default();
        (Request::from_parts(parts, Body::from(bytes)), Some(grant))
    } else {
        (req, None)
    };
    let (delay, fault) = {
        let mut st = shared.lock();
        st.requests.push((path.clone(), arrived));
        if req.headers().contains_key(header::AUTHORIZATION) {
            st.authorized.push((path.clone(), arrived));
        }
        if let Some(grant) = grant {
            st.token_grants.push(grant);
        }
        (st.latency_for(&path), st.take_fault(&path))
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    match fault {
        Some((status, retry_after)) => fault_response(status, retry_after),
        None => next.run(req).await,
    }
}

fn fault_response(status: u16, retry_after: Option<u64>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = match status {
        // Bitbucket's rate limit answer is plain text, not its JSON error.
        StatusCode::TOO_MANY_REQUESTS => (
            status,
            [(header::CONTENT_TYPE, "text/plain")],
            "Rate limit for this resource has been exceeded",
        )
            .into_response(),
        // The brownouts answered 410 with the CHANGE-2770 body even on kept endpoints.
        StatusCode::GONE => gone(),
        _ => error(
            status,
            status.canonical_reason().unwrap_or("Injected fault"),
        ),
    };
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}
