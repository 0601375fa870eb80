//! Read-only bare clones over HTTPS with git2: the main branch only, shallow, credentials
//! handed only to the configured git host, no redirects, bounded size and stall time; and
//! head checks (the ref advertisement alone, as `git ls-remote` reads it) under the same rules.

use std::{
    ffi::CString,
    path::Path,
    sync::atomic::{AtomicBool, AtomicU32, Ordering},
    time::{Duration, Instant},
};

use base64::{Engine, engine::general_purpose::STANDARD};
use git2::{Binding, FetchOptions, Oid, RemoteCallbacks, RemoteRedirect, Repository};
use url::Url;

/// How a fetch failed, in words a page can show.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("Bitbucket refused the git credentials (sign in again if this persists)")]
    Unauthorized,
    #[error(
        "Bitbucket refused access to this repository — your account may have lost read access to it"
    )]
    Forbidden,
    #[error("the repository is larger than the configured limit of {0} bytes")]
    TooLarge(u64),
    #[error("the main branch {0:?} does not exist on Bitbucket")]
    NoBranch(String),
    #[error("git transfer failed: {0}")]
    Git(String),
}

/// Transfer progress, reported while a fetch runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub received_objects: usize,
    pub total_objects: usize,
    pub received_bytes: usize,
}

/// What one fetch needs to know.
pub struct FetchRequest<'a> {
    pub git_dir: &'a Path,
    pub url: &'a Url,
    pub branch: &'a str,
    pub token: &'a str,
    pub max_bytes: u64,
    pub shallow: bool,
}

/// Sets libgit2's socket timeouts once per process, so a stalled transfer fails instead of
/// hanging a worker forever.
pub fn set_timeouts(stall: Duration) {
    let ms = i32::try_from(stall.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: plain integer options of libgit2, set at start-up; libgit2 reads them when it
    // opens a connection, and concurrent reads of an int are harmless.
    #[allow(unsafe_code)]
    unsafe {
        let _ = git2::opts::set_server_connect_timeout_in_milliseconds(ms);
        let _ = git2::opts::set_server_timeout_in_milliseconds(ms);
    }
}

/// Clones (first time) or fetches `branch` into the bare repository at `git_dir` and
/// returns the branch head. The token never lands in the repository's config: the remote
/// is anonymous and the credentials come from a callback.
pub fn fetch(
    request: &FetchRequest<'_>,
    on_progress: &dyn Fn(Progress),
) -> Result<Oid, FetchError> {
    let repo = match Repository::open_bare(request.git_dir) {
        Ok(repo) => repo,
        Err(_) => Repository::init_bare(request.git_dir).map_err(git)?,
    };
    let too_large = AtomicBool::new(false);
    let credential_calls = AtomicU32::new(0);
    let allowed = request.url.clone();
    let mut last_report = Instant::now() - Duration::from_secs(1);

    let mut callbacks = RemoteCallbacks::new();
    callbacks.credentials(|url, _username, _allowed| {
        // Credentials only for the configured host, and only once: a second call means
        // the token was refused, and retrying forever would hang the worker.
        if credential_calls.fetch_add(1, Ordering::SeqCst) > 0 || !same_origin(url, &allowed) {
            return Err(git2::Error::from_str("no credentials for this URL"));
        }
        git2::Cred::userpass_plaintext("x-token-auth", request.token)
    });
    callbacks.transfer_progress(|stats| {
        if stats.received_bytes() as u64 > request.max_bytes {
            too_large.store(true, Ordering::SeqCst);
            return false;
        }
        if last_report.elapsed() >= Duration::from_millis(250) {
            last_report = Instant::now();
            on_progress(Progress {
                received_objects: stats.received_objects(),
                total_objects: stats.total_objects(),
                received_bytes: stats.received_bytes(),
            });
        }
        true
    });
    let mut options = FetchOptions::new();
    options
        .remote_callbacks(callbacks)
        .follow_redirects(RemoteRedirect::None)
        .download_tags(git2::AutotagOption::None);
    if request.shallow {
        options.depth(1);
    }
    let refspec = format!("+refs/heads/{0}:refs/heads/{0}", request.branch);
    let mut remote = repo.remote_anonymous(request.url.as_str()).map_err(git)?;
    let fetched = remote.fetch(&[refspec.as_str()], Some(&mut options), None);
    drop(remote);
    if let Err(e) = fetched {
        tracing::debug!(class = ?e.class(), code = ?e.code(), message = e.message(), "git fetch failed");
        if too_large.load(Ordering::SeqCst) {
            return Err(FetchError::TooLarge(request.max_bytes));
        }
        if credential_calls.load(Ordering::SeqCst) > 1
            || e.class() == git2::ErrorClass::Http && e.message().contains("401")
        {
            return Err(FetchError::Unauthorized);
        }
        if e.class() == git2::ErrorClass::Http && e.message().contains("403") {
            return Err(FetchError::Forbidden);
        }
        if e.message().contains("couldn't find remote ref") {
            return Err(FetchError::NoBranch(request.branch.to_owned()));
        }
        return Err(git(e));
    }
    let head = repo
        .find_reference(&format!("refs/heads/{}", request.branch))
        .map_err(|_| FetchError::NoBranch(request.branch.to_owned()))?
        .target()
        .ok_or_else(|| FetchError::NoBranch(request.branch.to_owned()))?;
    repo.set_head(&format!("refs/heads/{}", request.branch))
        .map_err(git)?;
    Ok(head)
}

/// Why a head check failed.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    #[error("Bitbucket refused the git credentials")]
    Unauthorized,
    /// 429: the git budget is spent for now; the caller slows down.
    #[error("Bitbucket's git rate limit was reached (429)")]
    RateLimited,
    /// 5xx, a refused connection or a stall: worth asking again later, more slowly.
    #[error("Bitbucket's git server is unavailable: {0}")]
    Unavailable(String),
    #[error("git ref advertisement failed: {0}")]
    Git(String),
}

/// What a head check found: the branch's commit, or `None` when it is not advertised.
pub type Head = Option<Oid>;

// git2 0.21 connects only with libgit2's default redirect policy, which follows a redirect of
// the first request to any host; the extended call takes the policy. The symbol is part of
// libgit2's public API (include/git2/remote.h) since 1.7, and libgit2-sys links it.
#[allow(unsafe_code)]
unsafe extern "C" {
    fn git_remote_connect_ext(
        remote: *mut libgit2_sys::git_remote,
        direction: libgit2_sys::git_direction,
        opts: *const libgit2_sys::git_remote_connect_options,
    ) -> std::ffi::c_int;
}

/// Reads the main branch's head from the server's smart-HTTP ref advertisement (one GET of
/// `info/refs`, as `git ls-remote` does): no objects are fetched, nothing is written. The
/// token goes with that first request (an `Authorization` header, so a check is one request,
/// not an anonymous one answered 401 and its repeat); it reaches only the configured origin,
/// since no redirect is followed. The credentials callback stays as the fallback, under the
/// rules of [`fetch`]: only for the configured origin, once.
pub fn remote_head(url: &Url, branch: &str, token: &str) -> Result<Head, HeadError> {
    let credential_calls = AtomicU32::new(0);
    let mut callbacks = RemoteCallbacks::new();
    callbacks.credentials(|asked, _username, _allowed| {
        if credential_calls.fetch_add(1, Ordering::SeqCst) > 0 || !same_origin(asked, url) {
            return Err(git2::Error::from_str("no credentials for this URL"));
        }
        git2::Cred::userpass_plaintext("x-token-auth", token)
    });
    // Base64 has no CR, LF or NUL: the header is never malformed, so libgit2 never quotes it
    // (and the token) in an error message.
    let credentials = STANDARD.encode(format!("x-token-auth:{token}"));
    let authorization = CString::new(format!("Authorization: Basic {credentials}"))
        .map_err(|_| HeadError::Git("unreadable header".to_owned()))?;
    let mut headers = [authorization.as_ptr().cast_mut()];
    let proxy = git2::ProxyOptions::new();
    let mut remote = git2::Remote::create_detached(url.as_str())
        .map_err(|e| HeadError::Git(e.message().to_owned()))?;
    let options = libgit2_sys::git_remote_connect_options {
        version: 1, // GIT_REMOTE_CONNECT_OPTIONS_VERSION
        callbacks: callbacks.raw(),
        proxy_opts: proxy.raw(),
        follow_redirects: libgit2_sys::GIT_REMOTE_REDIRECT_NONE,
        custom_headers: libgit2_sys::git_strarray {
            strings: headers.as_mut_ptr(),
            count: headers.len(),
        },
    };
    // SAFETY: `remote` is a live remote; `options`, the callbacks and proxy options it points
    // into (the callbacks' payload is `&callbacks`), and the header array with the C string
    // its one pointer refers to (`headers`, `authorization`) all live until the end of this
    // function and are not moved; `remote`, declared after them, is dropped first. libgit2
    // copies the options, the header strings included, and never writes through the pointers.
    #[allow(unsafe_code)]
    let code =
        unsafe { git_remote_connect_ext(remote.raw(), libgit2_sys::GIT_DIRECTION_FETCH, &options) };
    if code < 0 {
        let e = git2::Error::last_error(code);
        tracing::debug!(class = ?e.class(), code = ?e.code(), message = e.message(), "git ref advertisement failed");
        let message = e.message();
        if credential_calls.load(Ordering::SeqCst) > 1
            || e.code() == git2::ErrorCode::Auth
            || message.contains("401")
        {
            return Err(HeadError::Unauthorized);
        }
        // libgit2 says "unexpected http status code: <n>" for any other status.
        if message.contains("status code: 429") {
            return Err(HeadError::RateLimited);
        }
        if message.contains("status code: 5")
            || matches!(e.class(), git2::ErrorClass::Net | git2::ErrorClass::Os)
        {
            return Err(HeadError::Unavailable(message.to_owned()));
        }
        return Err(HeadError::Git(message.to_owned()));
    }
    let wanted = format!("refs/heads/{branch}");
    let head = remote
        .list()
        .map_err(|e| HeadError::Git(e.message().to_owned()))?
        .iter()
        .find(|h| h.name() == wanted)
        .map(git2::RemoteHead::oid);
    let _ = remote.disconnect();
    Ok(head)
}

fn same_origin(url: &str, allowed: &Url) -> bool {
    Url::parse(url).is_ok_and(|u| u.origin() == allowed.origin())
}

fn git(e: git2::Error) -> FetchError {
    FetchError::Git(e.message().to_owned())
}
