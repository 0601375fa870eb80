//! The Bitbucket Cloud REST client: one place for pagination, rate limits, retries and tokens.
//!
//! Facts it relies on are in shared/BITBUCKET.md. Tokens travel only in the Authorization
//! header and never reach a log line (URLs logged here carry no token).

mod types;

use std::{num::NonZeroU32, sync::Arc, time::Duration};

use backon::{BackoffBuilder, ExponentialBuilder};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use reqwest::{StatusCode, header};
use serde::de::DeserializeOwned;
use url::Url;

pub use types::{BbRepository, BbUser, BbWorkspace, Page, WorkspaceAccess, WorkspaceMembership};

use crate::auth::{
    oauth::describe_transport,
    tokens::{TokenError, TokenKeeper},
};
use crate::ids::UserId;

/// Why a Bitbucket call failed, in words a page can show.
#[derive(Debug, thiserror::Error)]
pub enum BbError {
    #[error("Bitbucket access ended: sign in again")]
    SignInAgain,
    #[error("no access to this on Bitbucket")]
    NoAccess,
    #[error("Bitbucket no longer offers this endpoint (410 Gone)")]
    Gone,
    #[error("Bitbucket kept answering {0}; gave up after several attempts")]
    GaveUp(String),
    #[error("Bitbucket answered {0}")]
    Status(StatusCode),
    #[error("Bitbucket sent an answer codelayer could not read")]
    BadAnswer,
    #[error("{0}")]
    Token(String),
}

impl From<TokenError> for BbError {
    fn from(e: TokenError) -> BbError {
        match e {
            TokenError::SignInAgain => BbError::SignInAgain,
            other => BbError::Token(other.to_string()),
        }
    }
}

/// The longest Retry-After codelayer honours before it tries again anyway.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Retry policy of one call; tests shrink the delays.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    pub min_delay: Duration,
    pub max_delay: Duration,
    pub max_retries: usize,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            min_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            max_retries: 6,
        }
    }
}

/// Whether a person waits for a call (sign-in, a Refresh they clicked) or a job does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    Interactive,
    Background,
}

/// Who a call is made for, and how urgent it is.
#[derive(Clone, Copy, Debug)]
pub struct Caller {
    pub user: UserId,
    pub priority: Priority,
}

impl Caller {
    /// A call a person is waiting for.
    pub fn interactive(user: UserId) -> Caller {
        Caller {
            user,
            priority: Priority::Interactive,
        }
    }

    /// A call a background job makes.
    pub fn background(user: UserId) -> Caller {
        Caller {
            user,
            priority: Priority::Background,
        }
    }
}

/// Background calls may use this share of the hourly budget: the rest is kept for people.
const BACKGROUND_SHARE_PERCENT: u32 = 60;
/// One user's calls may use this share of the hourly budget, so nobody's loop starves others.
const USER_SHARE_PERCENT: u32 = 25;

/// The API client shared by all users of this install.
pub struct Bitbucket {
    http: reqwest::Client,
    api: Url,
    tokens: Arc<TokenKeeper>,
    /// Bitbucket counts OAuth calls against the consumer: one budget for the whole install.
    budget: DefaultDirectRateLimiter,
    /// What background work may take of it (it waits on both).
    background: DefaultDirectRateLimiter,
    /// What each user may take of it.
    per_user: DefaultKeyedRateLimiter<UserId>,
    retry: RetryPolicy,
}

impl Bitbucket {
    pub fn new(
        http: reqwest::Client,
        api: Url,
        tokens: Arc<TokenKeeper>,
        requests_per_hour: u32,
        burst: u32,
        retry: RetryPolicy,
    ) -> Bitbucket {
        let per_hour = NonZeroU32::new(requests_per_hour).unwrap_or(NonZeroU32::MIN);
        // Short bursts (a sign-in, a refresh of a few pages) go out at once; over time the
        // hourly rate holds, so a big refresh slows down instead of meeting 429s.
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        let budget = RateLimiter::direct(Quota::per_hour(per_hour).allow_burst(burst));
        // Shares limit the sustained rate only; a short burst is as large as the install's.
        let share = |percent: u32| {
            let n = requests_per_hour.saturating_mul(percent) / 100;
            Quota::per_hour(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)).allow_burst(burst)
        };
        Bitbucket {
            http,
            api,
            tokens,
            budget,
            background: RateLimiter::direct(share(BACKGROUND_SHARE_PERCENT)),
            per_user: RateLimiter::keyed(share(USER_SHARE_PERCENT)),
            retry,
        }
    }

    /// Waits until the call may go out: within the user's share, within the background
    /// share for jobs, and within the install's budget. Sign-in (no user yet) takes only
    /// the last.
    async fn wait_for_budget(&self, caller: Option<Caller>) {
        if let Some(caller) = caller {
            self.per_user.until_key_ready(&caller.user).await;
            if caller.priority == Priority::Background {
                self.background.until_ready().await;
            }
        }
        self.budget.until_ready().await;
    }

    /// `/2.0/user` with a token that belongs to no stored connection yet (sign-in).
    pub async fn user_with_token(&self, token: &str) -> Result<BbUser, BbError> {
        let url = self.url("/2.0/user")?;
        self.get_with_token(token, &url, None, self.retry).await
    }

    /// The signed-in user's Bitbucket profile.
    pub async fn current_user(&self, caller: Caller) -> Result<BbUser, BbError> {
        let url = self.url("/2.0/user")?;
        self.get(caller, &url).await
    }

    /// Every workspace the user can reach, with the user's permission in each.
    pub async fn workspaces(&self, caller: Caller) -> Result<Vec<BbWorkspace>, BbError> {
        let url = self.url("/2.0/user/workspaces?pagelen=100")?;
        let accesses: Vec<WorkspaceAccess> = self.all_pages(caller, url).await?;
        let mut out = Vec::with_capacity(accesses.len());
        for access in accesses {
            let slug = access.workspace.slug.clone();
            let encoded = urlencode(&slug);
            // The listing has no name; read it, falling back to the slug (the single
            // workspace endpoint answered 410 during Atlassian's brownouts).
            let name = match self
                .get::<types::WorkspaceFull>(
                    caller,
                    &self.url(&format!("/2.0/workspaces/{encoded}"))?,
                )
                .await
            {
                Ok(full) => full
                    .name
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| slug.clone()),
                Err(BbError::SignInAgain) => return Err(BbError::SignInAgain),
                Err(_) => slug.clone(),
            };
            let permission = match self
                .get::<WorkspaceMembership>(
                    caller,
                    &self.url(&format!("/2.0/user/workspaces/{encoded}/permission"))?,
                )
                .await
            {
                Ok(m) => m.permission.unwrap_or_else(|| "member".into()),
                Err(BbError::SignInAgain) => return Err(BbError::SignInAgain),
                Err(_) if access.administrator => "owner".into(),
                Err(_) => "member".into(),
            };
            out.push(BbWorkspace {
                uuid: access.workspace.uuid,
                slug,
                name,
                permission,
            });
        }
        Ok(out)
    }

    /// Every repository of a workspace the user has at least read access to.
    pub async fn repositories(
        &self,
        caller: Caller,
        workspace: &str,
    ) -> Result<Vec<BbRepository>, BbError> {
        let url = self.url(&format!(
            "/2.0/repositories/{}?pagelen=100&role=member",
            urlencode(workspace)
        ))?;
        match self.all_pages(caller, url).await {
            // A non-member may get 403, 404 or an empty page: all mean "no access".
            Err(BbError::Status(StatusCode::NOT_FOUND)) => Err(BbError::NoAccess),
            other => other,
        }
    }

    /// How many repositories `repositories` would list, from the envelope's `size`: one
    /// call, never retried (a count is a nicety); `None` when Bitbucket gave no size.
    pub async fn repository_count(
        &self,
        caller: Caller,
        workspace: &str,
    ) -> Result<Option<u64>, BbError> {
        let url = self.url(&format!(
            "/2.0/repositories/{}?pagelen=1&role=member&fields=size",
            urlencode(workspace)
        ))?;
        let once = RetryPolicy {
            max_retries: 0,
            ..self.retry
        };
        let page: Page<serde::de::IgnoredAny> = self.get_with(caller, &url, once).await?;
        Ok(page.size)
    }

    /// One repository.
    pub async fn repository(
        &self,
        caller: Caller,
        workspace: &str,
        slug: &str,
    ) -> Result<BbRepository, BbError> {
        let url = self.url(&format!(
            "/2.0/repositories/{}/{}",
            urlencode(workspace),
            urlencode(slug)
        ))?;
        self.get(caller, &url).await
    }

    fn url(&self, path_and_query: &str) -> Result<Url, BbError> {
        let base = self.api.as_str().trim_end_matches('/');
        Url::parse(&format!("{base}{path_and_query}")).map_err(|_| BbError::BadAnswer)
    }

    /// Follows `next` links until the last page.
    async fn all_pages<T: DeserializeOwned>(
        &self,
        caller: Caller,
        first: Url,
    ) -> Result<Vec<T>, BbError> {
        let mut out = Vec::new();
        let mut next = Some(first);
        let mut pages = 0;
        while let Some(url) = next {
            let page: Page<T> = self.get(caller, &url).await?;
            out.extend(page.values);
            pages += 1;
            // `next` must stay on the API host: never hand our token to another origin.
            next = match page.next {
                Some(n) => {
                    let n = Url::parse(&n).map_err(|_| BbError::BadAnswer)?;
                    if n.origin() != self.api.origin() || pages > 10_000 {
                        return Err(BbError::BadAnswer);
                    }
                    Some(n)
                }
                None => None,
            };
        }
        Ok(out)
    }

    /// GET with the user's token: refreshes once on 401, then gives up with "sign in again".
    async fn get<T: DeserializeOwned>(&self, caller: Caller, url: &Url) -> Result<T, BbError> {
        self.get_with(caller, url, self.retry).await
    }

    /// `get` with its own retry policy.
    async fn get_with<T: DeserializeOwned>(
        &self,
        caller: Caller,
        url: &Url,
        retry: RetryPolicy,
    ) -> Result<T, BbError> {
        let user_id = caller.user;
        let token = self.tokens.access_token(user_id).await?;
        match self.get_with_token(&token, url, Some(caller), retry).await {
            Err(BbError::Status(StatusCode::UNAUTHORIZED)) => {
                let token = self.tokens.after_unauthorized(user_id, &token).await?;
                match self.get_with_token(&token, url, Some(caller), retry).await {
                    Err(BbError::Status(StatusCode::UNAUTHORIZED)) => {
                        self.tokens
                            .mark_sign_in_again(user_id)
                            .await
                            .map_err(|e| BbError::Token(e.to_string()))?;
                        Err(BbError::SignInAgain)
                    }
                    other => other,
                }
            }
            other => other,
        }
    }

    /// One GET with retries: 429 and 5xx and timeouts back off (capped, jittered, bounded).
    async fn get_with_token<T: DeserializeOwned>(
        &self,
        token: &str,
        url: &Url,
        caller: Option<Caller>,
        retry: RetryPolicy,
    ) -> Result<T, BbError> {
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(retry.min_delay)
            .with_max_delay(retry.max_delay)
            .with_max_times(retry.max_retries)
            .with_jitter()
            .build();
        loop {
            self.wait_for_budget(caller).await;
            let sent = self
                .http
                .get(url.clone())
                .bearer_auth(token)
                .header(header::ACCEPT, "application/json")
                .send()
                .await;
            let (problem, retry_after) = match sent {
                Ok(response) => {
                    let status = response.status();
                    if status.is_success() {
                        return response.json::<T>().await.map_err(|_| BbError::BadAnswer);
                    }
                    match status {
                        StatusCode::TOO_MANY_REQUESTS => {
                            (format!("{status}"), retry_after(response.headers()))
                        }
                        s if s.is_server_error() => (format!("{status}"), None),
                        StatusCode::GONE => return Err(BbError::Gone),
                        StatusCode::FORBIDDEN => return Err(BbError::NoAccess),
                        s => return Err(BbError::Status(s)),
                    }
                }
                Err(e) if e.is_timeout() || e.is_connect() => (describe_transport(&e), None),
                Err(_) => return Err(BbError::BadAnswer),
            };
            let Some(backoff) = delays.next() else {
                tracing::warn!(path = url.path(), %problem, "Bitbucket call gave up");
                return Err(BbError::GaveUp(problem));
            };
            // Honour Retry-After when Bitbucket sends one, but never wait unboundedly.
            let wait = retry_after.map_or(backoff, |r| r.min(MAX_RETRY_AFTER));
            tracing::info!(path = url.path(), %problem, wait_ms = wait.as_millis() as u64, "Bitbucket call will be retried");
            tokio::time::sleep(wait).await;
        }
    }
}

fn retry_after(headers: &header::HeaderMap) -> Option<Duration> {
    headers
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// Percent-encodes one path segment (slugs are safe; uuids carry braces).
pub fn urlencode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes()).collect()
}
