//! The fake's in-memory world: users, workspaces, repositories, OAuth codes and tokens, and
//! the traffic log. It all sits behind one `std::sync::Mutex` in `Shared`, never held across
//! an `.await`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::FakeUser;

/// A user plus what only the fake needs to know about them.
pub(super) struct UserRecord {
    pub user: FakeUser,
    pub created_on: String,
}

pub(super) struct Member {
    pub user_uuid: String,
    pub permission: String,
    pub added_on: String,
}

pub(super) struct Workspace {
    pub uuid: String,
    pub slug: String,
    pub name: String,
    pub created_on: String,
    pub members: Vec<Member>,
    /// Every fake repository sits in its workspace's one default project.
    pub project_uuid: String,
}

pub(super) struct Repo {
    pub uuid: String,
    pub workspace_uuid: String,
    pub slug: String,
    pub name: String,
    pub created_on: String,
    pub updated_on: String,
    pub mainbranch: Option<String>,
    pub size: u64,
    /// Directory name under the git root. Keyed by uuid, so a rename never moves files.
    pub dir: String,
}

pub(super) struct Code {
    pub user_uuid: String,
    pub expires_at: Instant,
}

pub(super) struct AccessToken {
    pub user_uuid: String,
    pub expires_at: Instant,
    pub revoked: bool,
}

pub(super) struct RefreshToken {
    pub user_uuid: String,
    pub alive: bool,
}

pub(super) struct Fault {
    pub prefix: String,
    pub status: u16,
    pub remaining: usize,
    pub retry_after: Option<u64>,
}

/// What an API call learns about a bad or missing bearer token.
pub(super) const TOKEN_EXPIRED: &str = "Access token expired.";
pub(super) const TOKEN_INVALID: &str =
    "Token is invalid, expired, or not supported for this endpoint.";

pub(super) struct State {
    pub callback: Option<String>,
    pub users: Vec<UserRecord>,
    pub browser_user: Option<String>,
    pub workspaces: Vec<Workspace>,
    pub repos: Vec<Repo>,
    pub codes: HashMap<String, Code>,
    pub access_tokens: HashMap<String, AccessToken>,
    pub refresh_tokens: HashMap<String, RefreshToken>,
    pub issued: Vec<String>,
    pub token_lifetime: u64,
    pub code_lifetime: Duration,
    pub legacy_scopes_field: bool,
    /// Listings leave out the envelope's optional `size`.
    pub omit_page_size: bool,
    pub faults: Vec<Fault>,
    pub latency: Vec<(String, Duration)>,
    pub requests: Vec<(String, Instant)>,
    /// The requests that carried credentials (git asks without first, then answers the 401).
    pub authorized: Vec<(String, Instant)>,
    pub token_grants: Vec<String>,
}

impl State {
    pub fn new() -> State {
        State {
            callback: None,
            users: Vec::new(),
            browser_user: None,
            workspaces: Vec::new(),
            repos: Vec::new(),
            codes: HashMap::new(),
            access_tokens: HashMap::new(),
            refresh_tokens: HashMap::new(),
            issued: Vec::new(),
            token_lifetime: 7200,
            // Bitbucket does not document the code lifetime; ten minutes is the usual figure.
            code_lifetime: Duration::from_secs(600),
            legacy_scopes_field: false,
            omit_page_size: false,
            faults: Vec::new(),
            latency: Vec::new(),
            requests: Vec::new(),
            authorized: Vec::new(),
            token_grants: Vec::new(),
        }
    }

    pub fn user(&self, uuid: &str) -> Option<&UserRecord> {
        self.users.iter().find(|u| u.user.uuid == uuid)
    }

    /// Bitbucket accepts a workspace's slug or its `{uuid}` wherever a path names one.
    pub fn workspace(&self, key: &str) -> Option<&Workspace> {
        self.workspaces
            .iter()
            .find(|w| w.slug == key || w.uuid == key)
    }

    pub fn workspace_mut(&mut self, key: &str) -> Option<&mut Workspace> {
        self.workspaces
            .iter_mut()
            .find(|w| w.slug == key || w.uuid == key)
    }

    pub fn workspace_by_uuid(&self, uuid: &str) -> Option<&Workspace> {
        self.workspaces.iter().find(|w| w.uuid == uuid)
    }

    /// A repository by workspace (slug or uuid) and repository (slug or uuid).
    pub fn repo(&self, workspace: &str, repo: &str) -> Option<&Repo> {
        let ws = self.workspace(workspace)?;
        self.repos
            .iter()
            .find(|r| r.workspace_uuid == ws.uuid && (r.slug == repo || r.uuid == repo))
    }

    pub fn repo_mut(&mut self, workspace: &str, repo: &str) -> Option<&mut Repo> {
        let ws_uuid = self.workspace(workspace)?.uuid.clone();
        self.repos
            .iter_mut()
            .find(|r| r.workspace_uuid == ws_uuid && (r.slug == repo || r.uuid == repo))
    }

    /// The user's permission in a workspace, or `None` for a non-member.
    pub fn permission(&self, ws: &Workspace, user_uuid: &str) -> Option<String> {
        ws.members
            .iter()
            .find(|m| m.user_uuid == user_uuid)
            .map(|m| m.permission.clone())
    }

    /// Mints a fresh access + refresh token pair for the user and remembers both.
    pub fn issue_tokens(&mut self, user_uuid: &str) -> (String, String) {
        // Bitbucket's access tokens regularly exceed 2,500 characters: 1,950 random bytes
        // give 2,600 URL-safe characters, so an app storing them in a short column fails here.
        let access = random_url_safe(1950);
        let refresh = random_url_safe(30);
        let lifetime = Duration::from_secs(self.token_lifetime);
        self.access_tokens.insert(
            access.clone(),
            AccessToken {
                user_uuid: user_uuid.to_owned(),
                expires_at: Instant::now() + lifetime,
                revoked: false,
            },
        );
        self.refresh_tokens.insert(
            refresh.clone(),
            RefreshToken {
                user_uuid: user_uuid.to_owned(),
                alive: true,
            },
        );
        self.issued.push(access.clone());
        self.issued.push(refresh.clone());
        (access, refresh)
    }

    /// The user behind a bearer token, or the error message Bitbucket gives for it.
    pub fn check_access_token(&self, token: &str) -> Result<String, &'static str> {
        let rec = self.access_tokens.get(token).ok_or(TOKEN_INVALID)?;
        if rec.revoked {
            return Err(TOKEN_INVALID);
        }
        if Instant::now() >= rec.expires_at {
            return Err(TOKEN_EXPIRED);
        }
        Ok(rec.user_uuid.clone())
    }

    /// Delay configured for the longest prefix matching the path, if any.
    pub fn latency_for(&self, path: &str) -> Option<Duration> {
        self.latency
            .iter()
            .filter(|(prefix, _)| path.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, delay)| *delay)
            .filter(|d| !d.is_zero())
    }

    /// Consumes one injected fault for the path, oldest first.
    pub fn take_fault(&mut self, path: &str) -> Option<(u16, Option<u64>)> {
        let idx = self
            .faults
            .iter()
            .position(|f| f.remaining > 0 && path.starts_with(f.prefix.as_str()))?;
        let fault = &mut self.faults[idx];
        fault.remaining -= 1;
        let answer = (fault.status, fault.retry_after);
        if fault.remaining == 0 {
            self.faults.remove(idx);
        }
        Some(answer)
    }
}

/// `n` random bytes as unpadded URL-safe base64.
pub(super) fn random_url_safe(n: usize) -> String {
    let mut buf = vec![0u8; n];
    rand::fill(&mut buf[..]);
    URL_SAFE_NO_PAD.encode(buf)
}

/// A random version-4 UUID without braces.
pub(super) fn random_uuid() -> String {
    let mut b = [0u8; 16];
    rand::fill(&mut b[..]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Now, in the shape Bitbucket prints timestamps: `2018-11-14T19:15:05.058566+00:00`.
pub(super) fn timestamp() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}+00:00",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}
