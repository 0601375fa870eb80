//! The OAuth 2.0 authorization-code flow against Bitbucket Cloud, with the `oauth2` crate.
//!
//! Bitbucket Cloud has no PKCE (BCLOUD-23469) and takes scopes from the consumer, so the
//! authorize URL carries only client id, state and the configured redirect URI. The client
//! authenticates with HTTP Basic. The HTTP client used here never follows redirects.

use std::time::Duration;

use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet, EndpointSet,
    HttpRequest, HttpResponse, RedirectUrl, RefreshToken, RequestTokenError, TokenResponse,
    TokenUrl,
    basic::{BasicClient, BasicErrorResponseType},
};

use crate::config::{Config, OAuthClient};

type ConfiguredClient =
    BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

/// A freshly issued token pair.
#[derive(Clone)]
pub struct TokenSet {
    pub access_token: String,
    /// `None` when Bitbucket did not send one (keep the old one then).
    pub refresh_token: Option<String>,
    pub expires_in: Duration,
}

/// Why a token request failed.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// Bitbucket refused the grant (expired, replayed or revoked): the user must sign in again.
    #[error("Bitbucket refused the authorization ({0})")]
    Rejected(String),
    /// Bitbucket could not be reached or answered something unusable; trying later may work.
    #[error("Bitbucket could not be reached ({0})")]
    Unavailable(String),
}

/// The configured OAuth consumer.
#[derive(Clone)]
pub struct OAuth {
    client: ConfiguredClient,
    http: reqwest::Client,
}

impl OAuth {
    /// Builds the client from configuration; `http` must not follow redirects.
    pub fn new(config: &Config, consumer: &OAuthClient, http: reqwest::Client) -> OAuth {
        let base = config.auth_url.as_str().trim_end_matches('/');
        let client = BasicClient::new(ClientId::new(consumer.client_id.clone()))
            .set_client_secret(ClientSecret::new(consumer.client_secret.clone()))
            .set_auth_uri(
                AuthUrl::new(format!("{base}/site/oauth2/authorize")).expect("validated base URL"),
            )
            .set_token_uri(
                TokenUrl::new(format!("{base}/site/oauth2/access_token"))
                    .expect("validated base URL"),
            )
            .set_redirect_uri(RedirectUrl::new(config.callback_url()).expect("validated URL"));
        OAuth { client, http }
    }

    /// The URL to send the browser to, and the random state to remember in the session.
    pub fn authorize_url(&self) -> (String, String) {
        let (url, state) = self.client.authorize_url(CsrfToken::new_random).url();
        (url.to_string(), state.secret().clone())
    }

    /// Exchanges an authorization code for tokens.
    pub async fn exchange_code(&self, code: &str) -> Result<TokenSet, OAuthError> {
        let http = self.adapter();
        let answer = self
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .request_async(&http)
            .await;
        token_set(answer)
    }

    /// Trades a refresh token for a new pair (Bitbucket rotates the refresh token).
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenSet, OAuthError> {
        let http = self.adapter();
        let token = RefreshToken::new(refresh_token.to_owned());
        let answer = self
            .client
            .exchange_refresh_token(&token)
            .request_async(&http)
            .await;
        token_set(answer)
    }

    /// oauth2 takes any async function as its HTTP client: ours is reqwest 0.13.
    fn adapter(
        &self,
    ) -> impl Fn(
        HttpRequest,
    )
        -> std::pin::Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send>> {
        let http = self.http.clone();
        move |request: HttpRequest| {
            let http = http.clone();
            Box::pin(async move {
                let request = reqwest::Request::try_from(request).map_err(HttpError::Transport)?;
                let response = http.execute(request).await.map_err(HttpError::Transport)?;
                let mut builder = oauth2::http::Response::builder().status(response.status());
                for (name, value) in response.headers() {
                    builder = builder.header(name, value);
                }
                let body = response.bytes().await.map_err(HttpError::Transport)?;
                builder.body(body.to_vec()).map_err(|_| HttpError::Invalid)
            })
        }
    }
}

/// A transport failure of the token endpoint.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0}")]
    Transport(reqwest::Error),
    #[error("the answer could not be read")]
    Invalid,
}

type TokenAnswer = Result<
    oauth2::basic::BasicTokenResponse,
    RequestTokenError<HttpError, oauth2::basic::BasicErrorResponse>,
>;

fn token_set(answer: TokenAnswer) -> Result<TokenSet, OAuthError> {
    match answer {
        Ok(tokens) => Ok(TokenSet {
            access_token: tokens.access_token().secret().clone(),
            refresh_token: tokens.refresh_token().map(|t| t.secret().clone()),
            expires_in: tokens.expires_in().unwrap_or(Duration::from_secs(3600)),
        }),
        Err(RequestTokenError::ServerResponse(err)) => match err.error() {
            BasicErrorResponseType::InvalidGrant
            | BasicErrorResponseType::InvalidClient
            | BasicErrorResponseType::UnauthorizedClient => {
                Err(OAuthError::Rejected(err.error().to_string()))
            }
            other => Err(OAuthError::Unavailable(format!(
                "token endpoint said {other}"
            ))),
        },
        Err(RequestTokenError::Request(HttpError::Transport(e))) => {
            Err(OAuthError::Unavailable(describe_transport(&e)))
        }
        Err(RequestTokenError::Request(HttpError::Invalid)) => {
            Err(OAuthError::Unavailable("unreadable answer".into()))
        }
        Err(RequestTokenError::Parse(_, _)) => Err(OAuthError::Unavailable(
            "the token endpoint sent an answer that is not a token".into(),
        )),
        Err(RequestTokenError::Other(msg)) => Err(OAuthError::Unavailable(msg)),
    }
}

/// A short, secret-free description of a transport error (reqwest errors may carry URLs).
pub fn describe_transport(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else if let Some(status) = e.status() {
        format!("HTTP {status}")
    } else {
        "network error".into()
    }
}
