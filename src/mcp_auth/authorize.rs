//! The authorization endpoint: the consent page where a signed-in person approves a named
//! client (signed-out people sign in with Bitbucket first and come back here), and the
//! redirect back to the client with a single-use code bound to its PKCE challenge.

use askama::Template;
use askama_web::WebTemplate;
use axum::{
    Form,
    extract::{OriginalUri, Query, State},
    http::{HeaderValue, header},
    response::{IntoResponse, Redirect, Response},
};
use serde::{Deserialize, Serialize};
use tower_sessions::Session;
use url::Url;

use super::{
    clients::{self, Client},
    grants::{self, CodeRequest},
    resource_url,
};
use crate::{error::AppError, identity, ids::CurrentUser, state::AppState};

/// Where an authorization request may be sent back to after sign-in (`signin`'s own limit
/// on `next` is 2 KiB).
const MAX_RETURN_PATH: usize = 2000;

/// The parameters of an authorization request (RFC 6749 §4.1.1, RFC 7636, RFC 8707), carried
/// from the page to its form unchanged.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct AuthorizeParams {
    #[serde(default)]
    pub response_type: String,
    #[serde(default)]
    pub client_id: String,
    #[serde(default)]
    pub redirect_uri: String,
    pub state: Option<String>,
    #[serde(default)]
    pub code_challenge: String,
    #[serde(default)]
    pub code_challenge_method: String,
    pub scope: Option<String>,
    pub resource: Option<String>,
}

/// A request whose client and redirect URI are known good.
struct Checked {
    client: Client,
}

/// Why a request is refused: on our own page when the client or its redirect URI cannot be
/// trusted (never redirect to an unchecked URI), else back at the client with an error code.
enum Refusal {
    Page(AppError),
    Redirect(Response),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Page(e) => e.into_response(),
            Refusal::Redirect(r) => r,
        }
    }
}

async fn check(state: &AppState, p: &AuthorizeParams) -> Result<Checked, Refusal> {
    let page = |title: &str, message: &str| {
        Refusal::Page(AppError::BadRequest(format!("{title}. {message}")))
    };
    let client = clients::find(state, &p.client_id)
        .await
        .map_err(|e| Refusal::Page(e.into()))?
        .ok_or_else(|| {
            page(
                "This application is unknown",
                "The application that sent you here is not registered with codelayer (or was forgotten). Start connecting it again from the application.",
            )
        })?;
    if p.redirect_uri.is_empty() || !client.allows_redirect(&p.redirect_uri) {
        return Err(page(
            "This authorization request is not valid",
            "The application asked to send you back to an address it did not register, so codelayer stopped here. Start connecting it again from the application.",
        ));
    }
    let back = |error: &str, description: &str| {
        Refusal::Redirect(back_to_client(
            state,
            &p.redirect_uri,
            &[("error", error), ("error_description", description)],
            p.state.as_deref(),
        ))
    };
    if p.response_type != "code" {
        return Err(back(
            "unsupported_response_type",
            "response_type must be code",
        ));
    }
    if p.code_challenge_method != "S256" {
        return Err(back(
            "invalid_request",
            "PKCE is required: send code_challenge with code_challenge_method=S256",
        ));
    }
    let challenge_ok = p.code_challenge.len() == 43
        && p.code_challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !challenge_ok {
        return Err(back(
            "invalid_request",
            "code_challenge must be the base64url SHA-256 of the verifier (43 characters)",
        ));
    }
    if let Some(resource) = p.resource.as_deref().filter(|r| !r.is_empty())
        && !is_our_resource(state, resource)
    {
        return Err(back(
            "invalid_target",
            "resource must be this server's MCP endpoint",
        ));
    }
    // Other scopes a client asks for are not refused but not granted either (RFC 6749
    // §3.3): the token answer names the one scope there is.
    Ok(Checked { client })
}

fn is_our_resource(state: &AppState, resource: &str) -> bool {
    let ours = resource_url(state);
    let origin = state.config.public_origin();
    [ours.as_str(), origin.as_str()].contains(&resource.trim_end_matches('/'))
}

/// The client's redirect URI with `pairs`, `state` and our issuer added (RFC 9207).
fn back_to_client(
    state: &AppState,
    redirect_uri: &str,
    pairs: &[(&str, &str)],
    client_state: Option<&str>,
) -> Response {
    let Ok(mut url) = Url::parse(redirect_uri) else {
        return AppError::BadRequest("The redirect address is not valid.".into()).into_response();
    };
    {
        let mut query = url.query_pairs_mut();
        query.extend_pairs(pairs);
        if let Some(s) = client_state {
            query.append_pair("state", s);
        }
        query.append_pair("iss", &state.config.public_origin());
    }
    let mut response = Redirect::to(url.as_str()).into_response();
    // The URL carries a code: it must not travel on in a Referer.
    response.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

#[derive(Template, WebTemplate)]
#[template(path = "oauth_consent.html")]
pub struct ConsentPage {
    user: Option<CurrentUser>,
    client_name: String,
    /// Where the browser goes after the decision, shown so a person can judge the name.
    redirect_to: String,
    params: AuthorizeParams,
}

/// `GET /oauth/authorize`: the consent page, or sign-in first.
pub async fn page(
    State(state): State<AppState>,
    session: Session,
    OriginalUri(uri): OriginalUri,
    Query(params): Query<AuthorizeParams>,
) -> Result<Response, AppError> {
    let checked = match check(&state, &params).await {
        Ok(c) => c,
        Err(refusal) => return Ok(refusal.into_response()),
    };
    let Some(user) = identity::signed_in(&state, &session).await? else {
        let here = uri
            .path_and_query()
            .map_or_else(|| "/oauth/authorize".to_owned(), ToString::to_string);
        if here.len() > MAX_RETURN_PATH {
            return Err(AppError::BadRequest(
                "This authorization request is too long to come back to after sign-in. Sign in first, then connect the application again.".into(),
            ));
        }
        let next: String = url::form_urlencoded::byte_serialize(here.as_bytes()).collect();
        return Ok(Redirect::to(&format!("/auth/login?next={next}")).into_response());
    };
    Ok(ConsentPage {
        user: Some(user),
        client_name: checked.client.name,
        redirect_to: describe_redirect(&params.redirect_uri),
        params,
    }
    .into_response())
}

/// Scheme and host of a redirect URI (the path adds nothing a person can judge).
fn describe_redirect(uri: &str) -> String {
    match Url::parse(uri) {
        Ok(url) => match url.host_str() {
            Some(host) => match url.port() {
                Some(port) => format!("{}://{host}:{port}", url.scheme()),
                None => format!("{}://{host}", url.scheme()),
            },
            None => format!("{}:", url.scheme()),
        },
        Err(_) => uri.to_owned(),
    }
}

#[derive(Deserialize)]
pub struct Decision {
    decision: String,
    #[serde(flatten)]
    params: AuthorizeParams,
}

/// `POST /oauth/authorize`: Approve or Deny from the consent page (CSRF-guarded like every
/// form); everything is checked again, the page's fields are not trusted.
pub async fn decide(
    State(state): State<AppState>,
    user: CurrentUser,
    Form(form): Form<Decision>,
) -> Result<Response, AppError> {
    let params = form.params;
    if let Err(refusal) = check(&state, &params).await {
        return Ok(refusal.into_response());
    }
    if form.decision != "approve" {
        tracing::info!(user_id = %user.id, client_id = %params.client_id, "MCP client denied");
        return Ok(back_to_client(
            &state,
            &params.redirect_uri,
            &[
                ("error", "access_denied"),
                ("error_description", "the user denied access"),
            ],
            params.state.as_deref(),
        ));
    }
    let code = grants::create_code(
        &state,
        &CodeRequest {
            user_id: user.id,
            client_id: &params.client_id,
            redirect_uri: &params.redirect_uri,
            code_challenge: &params.code_challenge,
        },
    )
    .await?;
    Ok(back_to_client(
        &state,
        &params.redirect_uri,
        &[("code", &code)],
        params.state.as_deref(),
    ))
}
