//! A fake Bitbucket Cloud for tests: OAuth (bitbucket.org/site/oauth2), the REST API 2.0 and
//! read-only git smart HTTP, all on one local server. Tests arrange the world (users,
//! workspaces, repositories with real commits) and misbehaviour (expired or revoked tokens,
//! injected faults, latency), then point the app's three Bitbucket base URLs at [`FakeBitbucket::url`].
//!
//! Answers follow /work/shared/BITBUCKET.md and the OpenAPI extract beside it.

// Each test crate uses a different part of this module; unused parts are not mistakes.
#![allow(dead_code)]

mod api;
mod browser;
mod git;
mod json;
mod oauth;
mod state;
mod traffic;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::{get, post};

use state::{Member, Repo, State, UserRecord, Workspace, random_uuid, timestamp};

/// A Bitbucket account. `uuid` carries braces, like every Bitbucket uuid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeUser {
    pub uuid: String,
    pub account_id: String,
    pub nickname: String,
    pub display_name: String,
}

/// One file of a commit made with [`FakeBitbucket::commit`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FakeFile {
    Text(String),
    Bytes(Vec<u8>),
    /// A symbolic link (git mode 120000) whose blob is the target path.
    Symlink(String),
}

impl From<&str> for FakeFile {
    fn from(s: &str) -> FakeFile {
        FakeFile::Text(s.to_owned())
    }
}

/// Handle on a running fake; clones share the same server and world.
#[derive(Clone)]
pub struct FakeBitbucket {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    url: String,
    git_root: PathBuf,
    state: Mutex<State>,
    /// Owns the bare repositories; they vanish with the last handle and the server task.
    _dir: tempfile::TempDir,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .expect("fake Bitbucket state poisoned by an earlier panic")
    }
}

impl FakeBitbucket {
    /// The OAuth consumer key the fake knows.
    pub const CLIENT_ID: &str = "fake-client-id";
    /// The OAuth consumer secret the fake knows.
    pub const CLIENT_SECRET: &str = "fake-client-secret";

    /// Starts the server on 127.0.0.1 with a free port, on the current tokio runtime.
    pub async fn start() -> FakeBitbucket {
        let dir = tempfile::Builder::new()
            .prefix("fake-bitbucket-")
            .tempdir()
            .expect("fake Bitbucket: cannot create its temp dir");
        let git_root = dir.path().join("git");
        std::fs::create_dir_all(&git_root).expect("fake Bitbucket: cannot create the git root");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("fake Bitbucket: cannot bind 127.0.0.1:0");
        let addr = listener
            .local_addr()
            .expect("fake Bitbucket: no local address");
        let shared = Arc::new(Shared {
            url: format!("http://{addr}"),
            git_root,
            state: Mutex::new(State::new()),
            _dir: dir,
        });
        let app = Router::new()
            .route(
                "/site/oauth2/authorize",
                get(oauth::authorize_page).post(oauth::authorize_decision),
            )
            .route(traffic::TOKEN_PATH, post(oauth::access_token))
            .merge(api::routes())
            .merge(git::routes())
            // Unknown paths, `/site/oauth2/revoke` among them (no such documented endpoint).
            .fallback(|| async {
                json::error(axum::http::StatusCode::NOT_FOUND, "Resource not found")
            })
            .layer(axum::middleware::from_fn_with_state(
                shared.clone(),
                traffic::observe,
            ))
            .with_state(shared.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("fake Bitbucket: server stopped: {e}");
            }
        });
        FakeBitbucket { shared }
    }

    /// `http://127.0.0.1:PORT`, no trailing slash: the auth, API and git base URL at once.
    pub fn url(&self) -> String {
        self.shared.url.clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.lock()
    }

    /// The callback URL configured on the OAuth consumer.
    pub fn set_callback(&self, url: &str) {
        self.lock().callback = Some(url.to_owned());
    }

    /// Creates an account. The first one added is also the one signed in to the browser.
    pub fn add_user(&self, display_name: &str) -> FakeUser {
        let mut st = self.lock();
        let base: String = display_name
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_lowercase())
            .collect();
        let base = if base.is_empty() {
            "user".to_owned()
        } else {
            base
        };
        let mut nickname = base.clone();
        let mut n = 1;
        while st.users.iter().any(|u| u.user.nickname == nickname) {
            n += 1;
            nickname = format!("{base}{n}");
        }
        let id = random_uuid();
        let user = FakeUser {
            uuid: format!("{{{id}}}"),
            // Atlassian account ids look like `712020:<uuid>` nowadays.
            account_id: format!("712020:{}", random_uuid()),
            nickname,
            display_name: display_name.to_owned(),
        };
        if st.browser_user.is_none() {
            st.browser_user = Some(user.uuid.clone());
        }
        st.users.push(UserRecord {
            user: user.clone(),
            created_on: timestamp(),
        });
        user
    }

    /// Who is signed in at bitbucket.org, i.e. who the consent page grants for.
    pub fn sign_in_browser(&self, user: &FakeUser) {
        let mut st = self.lock();
        assert!(
            st.user(&user.uuid).is_some(),
            "fake Bitbucket: unknown user {user:?}"
        );
        st.browser_user = Some(user.uuid.clone());
    }

    /// Creates a workspace and returns its uuid (with braces).
    pub fn add_workspace(&self, slug: &str, name: &str) -> String {
        let mut st = self.lock();
        assert!(
            st.workspace(slug).is_none(),
            "fake Bitbucket: workspace {slug:?} exists already"
        );
        let uuid = format!("{{{}}}", random_uuid());
        st.workspaces.push(Workspace {
            uuid: uuid.clone(),
            slug: slug.to_owned(),
            name: name.to_owned(),
            created_on: timestamp(),
            members: Vec::new(),
            project_uuid: format!("{{{}}}", random_uuid()),
        });
        uuid
    }

    /// Makes `user` a member with `permission` ("owner" | "collaborator" | "member"),
    /// replacing any earlier permission.
    pub fn add_member(&self, workspace: &str, user: &FakeUser, permission: &str) {
        assert!(
            matches!(permission, "owner" | "collaborator" | "member"),
            "fake Bitbucket: unknown permission {permission:?}"
        );
        let mut st = self.lock();
        assert!(
            st.user(&user.uuid).is_some(),
            "fake Bitbucket: unknown user {user:?}"
        );
        let ws = st
            .workspace_mut(workspace)
            .unwrap_or_else(|| panic!("fake Bitbucket: no workspace {workspace:?}"));
        ws.members.retain(|m| m.user_uuid != user.uuid);
        ws.members.push(Member {
            user_uuid: user.uuid.clone(),
            permission: permission.to_owned(),
            added_on: timestamp(),
        });
    }

    /// Takes `user` out of the workspace: its API answers and git then refuse them.
    pub fn remove_member(&self, workspace: &str, user: &FakeUser) {
        let mut st = self.lock();
        let ws = st
            .workspace_mut(workspace)
            .unwrap_or_else(|| panic!("fake Bitbucket: no workspace {workspace:?}"));
        ws.members.retain(|m| m.user_uuid != user.uuid);
    }

    /// Creates an empty private repository (no commits, `mainbranch` null); returns its uuid.
    pub fn add_repo(&self, workspace: &str, slug: &str) -> String {
        self.add_repo_made(workspace, slug, |path| {
            git::init_bare(path).map_err(|e| e.to_string())
        })
    }

    /// Creates a private repository holding a copy of the git repository at `source` (its
    /// objects borrowed, never written to); its HEAD's branch is the main branch.
    pub fn add_repo_from(&self, workspace: &str, slug: &str, source: &std::path::Path) -> String {
        let uuid = self.add_repo_made(workspace, slug, |path| git::clone_shared(source, path));
        let path = self.repo_path(workspace, slug);
        let mut st = self.lock();
        let repo = st
            .repo_mut(workspace, slug)
            .unwrap_or_else(|| panic!("fake Bitbucket: {workspace}/{slug} vanished"));
        repo.mainbranch = git::head_branch(&path);
        uuid
    }

    /// Adds a repository whose bare directory `make` creates at the path it is given.
    fn add_repo_made(
        &self,
        workspace: &str,
        slug: &str,
        make: impl FnOnce(&std::path::Path) -> Result<(), String>,
    ) -> String {
        let mut st = self.lock();
        let ws_uuid = st
            .workspace(workspace)
            .unwrap_or_else(|| panic!("fake Bitbucket: no workspace {workspace:?}"))
            .uuid
            .clone();
        assert!(
            st.repo(workspace, slug).is_none(),
            "fake Bitbucket: repository {workspace}/{slug} exists already"
        );
        let id = random_uuid();
        let dir = format!("{id}.git");
        let path = self.shared.git_root.join(&dir);
        make(&path)
            .unwrap_or_else(|e| panic!("fake Bitbucket: cannot create {}: {e}", path.display()));
        let now = timestamp();
        st.repos.push(Repo {
            uuid: format!("{{{id}}}"),
            workspace_uuid: ws_uuid,
            slug: slug.to_owned(),
            name: slug.to_owned(),
            created_on: now.clone(),
            updated_on: now,
            mainbranch: None,
            size: git::disk_size(&path),
            dir,
        });
        format!("{{{id}}}")
    }

    fn repo_path(&self, workspace: &str, slug: &str) -> PathBuf {
        let st = self.lock();
        let repo = st
            .repo(workspace, slug)
            .unwrap_or_else(|| panic!("fake Bitbucket: no repository {workspace}/{slug}"));
        self.shared.git_root.join(&repo.dir)
    }

    /// The bare repository behind `workspace/slug`, for tests that write objects themselves.
    pub fn git_dir(&self, workspace: &str, slug: &str) -> PathBuf {
        self.repo_path(workspace, slug)
    }

    /// Commits an existing tree object (e.g. made with `git mktree` in [`Self::git_dir`])
    /// to `branch`, which becomes the main branch if there is none; returns the sha.
    pub fn commit_tree(&self, workspace: &str, slug: &str, branch: &str, tree: &str) -> String {
        let path = self.repo_path(workspace, slug);
        let sha = git::commit_tree(&path, branch, tree)
            .unwrap_or_else(|e| panic!("fake Bitbucket: cannot commit tree {tree}: {e}"));
        let mut st = self.lock();
        let repo = st
            .repo_mut(workspace, slug)
            .unwrap_or_else(|| panic!("fake Bitbucket: {workspace}/{slug} vanished"));
        if repo.mainbranch.is_none() {
            git::set_head(&path, branch)
                .unwrap_or_else(|e| panic!("fake Bitbucket: cannot set HEAD: {e}"));
            repo.mainbranch = Some(branch.to_owned());
        }
        repo.updated_on = timestamp();
        repo.size = git::disk_size(&path);
        sha
    }

    /// Replaces the whole tree of `branch` with exactly `files` in a new commit and returns
    /// its sha. The first branch ever committed becomes the main branch and HEAD.
    pub fn commit(
        &self,
        workspace: &str,
        slug: &str,
        branch: &str,
        files: &[(&str, FakeFile)],
    ) -> String {
        let path = self.repo_path(workspace, slug);
        let message = format!("Update {branch} ({} files)", files.len());
        let sha = git::commit_files(&path, branch, files, &message).unwrap_or_else(|e| {
            panic!("fake Bitbucket: cannot commit to {workspace}/{slug} {branch}: {e}")
        });
        let mut st = self.lock();
        let repo = st
            .repo_mut(workspace, slug)
            .unwrap_or_else(|| panic!("fake Bitbucket: {workspace}/{slug} vanished"));
        if repo.mainbranch.is_none() {
            git::set_head(&path, branch)
                .unwrap_or_else(|e| panic!("fake Bitbucket: cannot set HEAD: {e}"));
            repo.mainbranch = Some(branch.to_owned());
        }
        repo.updated_on = timestamp();
        repo.size = git::disk_size(&path);
        sha
    }

    /// Pushes a commit to `branch` that adds (or replaces) one file and keeps every other
    /// file; returns its sha.
    pub fn add_file(
        &self,
        workspace: &str,
        slug: &str,
        branch: &str,
        file_path: &str,
        text: &str,
    ) -> String {
        let path = self.repo_path(workspace, slug);
        let tree = git::tree_with(&path, branch, file_path, text).unwrap_or_else(|e| {
            panic!("fake Bitbucket: cannot add {file_path} to {workspace}/{slug} {branch}: {e}")
        });
        self.commit_tree(workspace, slug, branch, &tree)
    }

    /// Makes an existing branch the main branch (and HEAD).
    pub fn set_main_branch(&self, workspace: &str, slug: &str, branch: &str) {
        let path = self.repo_path(workspace, slug);
        git::set_head(&path, branch).unwrap_or_else(|e| {
            panic!("fake Bitbucket: {workspace}/{slug} has no branch {branch:?}: {e}")
        });
        let mut st = self.lock();
        if let Some(repo) = st.repo_mut(workspace, slug) {
            repo.mainbranch = Some(branch.to_owned());
            repo.updated_on = timestamp();
        }
    }

    /// Deletes the repository from the API and from disk.
    pub fn delete_repo(&self, workspace: &str, slug: &str) {
        let path = self.repo_path(workspace, slug);
        let mut st = self.lock();
        let uuid = st.repo(workspace, slug).map(|r| r.uuid.clone());
        st.repos.retain(|r| Some(&r.uuid) != uuid.as_ref());
        drop(st);
        std::fs::remove_dir_all(&path)
            .unwrap_or_else(|e| panic!("fake Bitbucket: cannot delete {}: {e}", path.display()));
    }

    /// Renames a repository: same uuid, new slug and name; the old slug stops answering.
    pub fn rename_repo(&self, workspace: &str, slug: &str, new_slug: &str) {
        let mut st = self.lock();
        assert!(
            st.repo(workspace, new_slug).is_none(),
            "fake Bitbucket: {workspace}/{new_slug} exists already"
        );
        let repo = st
            .repo_mut(workspace, slug)
            .unwrap_or_else(|| panic!("fake Bitbucket: no repository {workspace}/{slug}"));
        repo.slug = new_slug.to_owned();
        repo.name = new_slug.to_owned();
        repo.updated_on = timestamp();
    }

    /// `expires_in` (seconds) of access tokens issued from now on; default 7200.
    pub fn set_token_lifetime(&self, secs: u64) {
        self.lock().token_lifetime = secs;
    }

    /// How long authorization codes stay valid; default ten minutes.
    pub fn set_code_lifetime(&self, lifetime: Duration) {
        self.lock().code_lifetime = lifetime;
    }

    /// Answer tokens with the pre-May-2026 field name `scopes` instead of `scope`.
    pub fn set_legacy_scopes_field(&self, on: bool) {
        self.lock().legacy_scopes_field = on;
    }

    /// Leave the optional `size` out of every listing's envelope (Bitbucket may).
    pub fn set_omit_page_size(&self, on: bool) {
        self.lock().omit_page_size = on;
    }

    /// The user revoked the app's grant: every access and refresh token of theirs dies.
    pub fn revoke_user(&self, user: &FakeUser) {
        let mut st = self.lock();
        for t in st.access_tokens.values_mut() {
            if t.user_uuid == user.uuid {
                t.revoked = true;
            }
        }
        for t in st.refresh_tokens.values_mut() {
            if t.user_uuid == user.uuid {
                t.alive = false;
            }
        }
    }

    /// Expires the user's access tokens now; their refresh tokens keep working.
    pub fn expire_access_tokens(&self, user: &FakeUser) {
        let now = Instant::now();
        let mut st = self.lock();
        for t in st.access_tokens.values_mut() {
            if t.user_uuid == user.uuid {
                t.expires_at = now;
            }
        }
    }

    /// The next `times` requests whose path starts with `path_prefix` get `status`:
    /// 429 as Bitbucket's plain-text rate-limit answer, 410 with the CHANGE-2770 body, any
    /// other status with Bitbucket's error JSON. `Retry-After` is added when given.
    pub fn fail_next(
        &self,
        path_prefix: &str,
        status: u16,
        times: usize,
        retry_after: Option<u64>,
    ) {
        assert!(
            (100..=999).contains(&status),
            "fake Bitbucket: {status} is no HTTP status"
        );
        if times > 0 {
            self.lock().faults.push(state::Fault {
                prefix: path_prefix.to_owned(),
                status,
                remaining: times,
                retry_after,
            });
        }
    }

    /// The next `times` ref advertisements of `workspace/slug` (`GET /<ws>/<slug>.git/info/refs`,
    /// what `git ls-remote` and the start of every fetch ask for) answer 429 with Bitbucket's
    /// plain-text rate-limit body, as its git endpoint does over budget.
    pub fn fail_git_refs(&self, workspace: &str, slug: &str, times: usize) {
        self.fail_next(&Self::git_refs_path(workspace, slug), 429, times, None);
    }

    /// The path of a repository's ref advertisement, as the request log records it.
    pub fn git_refs_path(workspace: &str, slug: &str) -> String {
        format!("/{workspace}/{slug}.git/info/refs")
    }

    /// The path of a repository's pack request (a fetch or clone, never a head check).
    pub fn git_pack_path(workspace: &str, slug: &str) -> String {
        format!("/{workspace}/{slug}.git/git-upload-pack")
    }

    /// Every request's path and arrival time, oldest first (faulted ones too).
    pub fn request_log(&self) -> Vec<(String, Instant)> {
        self.lock().requests.clone()
    }

    /// Like [`Self::request_log`], only the requests that carried credentials. For git these
    /// count the operations (a head check, a fetch's advertisement): a fetch asks without
    /// credentials first and repeats the request after the 401, which the log counts both of.
    pub fn authorized_log(&self) -> Vec<(String, Instant)> {
        self.lock().authorized.clone()
    }

    /// Delays every request whose path starts with `path_prefix` (the longest matching prefix
    /// wins; `Duration::ZERO` removes the delay).
    pub fn set_latency(&self, path_prefix: &str, delay: Duration) {
        let mut st = self.lock();
        st.latency.retain(|(p, _)| p != path_prefix);
        st.latency.push((path_prefix.to_owned(), delay));
    }

    /// How many requests arrived whose path starts with `path_prefix` (faulted ones too).
    pub fn requests(&self, path_prefix: &str) -> usize {
        self.request_times(path_prefix).len()
    }

    /// Arrival times of the requests whose path starts with `path_prefix`, oldest first.
    pub fn request_times(&self, path_prefix: &str) -> Vec<Instant> {
        self.lock()
            .requests
            .iter()
            .filter(|(path, _)| path.starts_with(path_prefix))
            .map(|(_, at)| *at)
            .collect()
    }

    /// How many token requests carried `grant_type` (faulted and refused ones too).
    pub fn token_requests(&self, grant_type: &str) -> usize {
        self.lock()
            .token_grants
            .iter()
            .filter(|g| *g == grant_type)
            .count()
    }

    /// Every access and refresh token ever issued, so tests can look for leaks.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.lock().issued.clone()
    }

    /// Plays the browser on the consent page behind `authorize_url` and clicks
    /// "Grant access"; returns the callback URL Bitbucket redirects to.
    pub async fn grant_consent(&self, authorize_url: &str) -> String {
        browser::consent(authorize_url, "grant").await
    }

    /// Like [`FakeBitbucket::grant_consent`], clicking "Deny".
    pub async fn deny_consent(&self, authorize_url: &str) -> String {
        browser::consent(authorize_url, "deny").await
    }
}
