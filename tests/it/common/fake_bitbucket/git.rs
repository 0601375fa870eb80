//! The fake's git side: bare repositories on disk written with git2 (no work tree), and
//! read-only smart HTTP served by `git http-backend` as a CGI behind Bitbucket's auth rules
//! (HTTP Basic `x-token-auth:<access token>`).

use std::collections::BTreeMap;
use std::path::Path as FsPath;
use std::process::Stdio;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::io::AsyncWriteExt as _;

use super::oauth::basic_credentials;
use super::{FakeFile, Shared};

/// The HTTP Basic user name Bitbucket expects with an OAuth access token.
const TOKEN_USER: &str = "x-token-auth";
/// Upload-pack requests stay far below this; it only stops a runaway client.
const MAX_REQUEST_BODY: usize = 256 * 1024 * 1024;

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/{workspace}/{repo}/info/refs", get(info_refs))
        .route("/{workspace}/{repo}/git-upload-pack", post(upload_pack))
        .route("/{workspace}/{repo}/git-receive-pack", post(receive_pack))
}

// ---- repositories on disk -------------------------------------------------------------

pub(super) fn init_bare(path: &FsPath) -> Result<(), git2::Error> {
    git2::Repository::init_bare(path).map(|_| ())
}

/// A bare copy of the repository at `source` (a working tree or bare), borrowing its objects
/// (`git clone --shared`): cheap, and nothing is ever written to `source`.
pub(super) fn clone_shared(source: &FsPath, path: &FsPath) -> Result<(), String> {
    let out = std::process::Command::new("git")
        .args(["clone", "--quiet", "--bare", "--shared"])
        .arg(source)
        .arg(path)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The branch HEAD names, if it names one that exists.
pub(super) fn head_branch(path: &FsPath) -> Option<String> {
    let repo = git2::Repository::open_bare(path).ok()?;
    let head = repo.head().ok()?;
    head.shorthand().ok().map(str::to_owned)
}

/// The tree of `branch`'s head with one file added or replaced.
pub(super) fn tree_with(
    path: &FsPath,
    branch: &str,
    file_path: &str,
    text: &str,
) -> Result<String, git2::Error> {
    let repo = git2::Repository::open_bare(path)?;
    let head = repo.find_reference(&format!("refs/heads/{branch}"))?;
    let baseline = head.peel_to_tree()?;
    let blob = repo.blob(text.as_bytes())?;
    let tree = git2::build::TreeUpdateBuilder::new()
        .upsert(file_path, blob, git2::FileMode::Blob)
        .create_updated(&repo, &baseline)?;
    Ok(tree.to_string())
}

enum Node<'a> {
    File(&'a FakeFile),
    Dir(BTreeMap<&'a str, Node<'a>>),
}

/// Commits exactly `files` as the new tree of `branch` (parent: the branch's previous head)
/// and returns the new commit's id.
pub(super) fn commit_files(
    path: &FsPath,
    branch: &str,
    files: &[(&str, FakeFile)],
    message: &str,
) -> Result<String, git2::Error> {
    let repo = git2::Repository::open_bare(path)?;
    let mut root: BTreeMap<&str, Node> = BTreeMap::new();
    for (file_path, file) in files {
        insert(&mut root, file_path, file)?;
    }
    let tree_id = write_tree(&repo, &root)?;
    let tree = repo.find_tree(tree_id)?;
    let refname = format!("refs/heads/{branch}");
    let parent = match repo.refname_to_id(&refname) {
        Ok(id) => Some(repo.find_commit(id)?),
        Err(e) if e.code() == git2::ErrorCode::NotFound => None,
        Err(e) => return Err(e),
    };
    let sig = git2::Signature::now("Fake Bitbucket", "fake@bitbucket.invalid")?;
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    let id = repo.commit(Some(&refname), &sig, &sig, message, &tree, &parents)?;
    Ok(id.to_string())
}

/// A commit of an existing tree on `branch` (after its current head, if any).
pub(super) fn commit_tree(path: &FsPath, branch: &str, tree: &str) -> Result<String, git2::Error> {
    let repo = git2::Repository::open_bare(path)?;
    let tree = repo.find_tree(git2::Oid::from_str(tree)?)?;
    let refname = format!("refs/heads/{branch}");
    let parent = match repo.refname_to_id(&refname) {
        Ok(id) => Some(repo.find_commit(id)?),
        Err(e) if e.code() == git2::ErrorCode::NotFound => None,
        Err(e) => return Err(e),
    };
    let sig = git2::Signature::now("Fake Bitbucket", "fake@bitbucket.invalid")?;
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    let id = repo.commit(
        Some(&refname),
        &sig,
        &sig,
        "A prepared tree",
        &tree,
        &parents,
    )?;
    Ok(id.to_string())
}

fn insert<'a>(
    dir: &mut BTreeMap<&'a str, Node<'a>>,
    path: &'a str,
    file: &'a FakeFile,
) -> Result<(), git2::Error> {
    let bad = |why: &str| git2::Error::from_str(&format!("bad fake file path {path:?}: {why}"));
    match path.split_once('/') {
        None if path.is_empty() => Err(bad("empty name")),
        None => match dir.insert(path, Node::File(file)) {
            Some(_) => Err(bad("given twice or also used as a directory")),
            None => Ok(()),
        },
        Some(("", _)) => Err(bad("empty directory name")),
        Some((head, rest)) => {
            let child = dir
                .entry(head)
                .or_insert_with(|| Node::Dir(BTreeMap::new()));
            match child {
                Node::Dir(sub) => insert(sub, rest, file),
                Node::File(_) => Err(bad("a parent is also a file")),
            }
        }
    }
}

fn write_tree(
    repo: &git2::Repository,
    dir: &BTreeMap<&str, Node>,
) -> Result<git2::Oid, git2::Error> {
    let mut builder = repo.treebuilder(None)?;
    for (name, node) in dir {
        let (oid, mode) = match node {
            Node::Dir(sub) => (write_tree(repo, sub)?, 0o040000),
            Node::File(FakeFile::Text(s)) => (repo.blob(s.as_bytes())?, 0o100644),
            Node::File(FakeFile::Bytes(b)) => (repo.blob(b)?, 0o100644),
            Node::File(FakeFile::Symlink(target)) => (repo.blob(target.as_bytes())?, 0o120000),
        };
        builder.insert(*name, oid, mode)?;
    }
    builder.write()
}

/// Points HEAD at an existing branch (what the main branch setting does on Bitbucket).
pub(super) fn set_head(path: &FsPath, branch: &str) -> Result<(), git2::Error> {
    let repo = git2::Repository::open_bare(path)?;
    let refname = format!("refs/heads/{branch}");
    repo.find_reference(&refname)?;
    repo.set_head(&refname)
}

/// Bytes the repository takes on disk: Bitbucket's `size`.
pub(super) fn disk_size(path: &FsPath) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => disk_size(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

// ---- smart HTTP -----------------------------------------------------------------------

fn text(status: StatusCode, body: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// Why a git request is turned away.
enum Refusal {
    /// No, wrong or dead credentials: git then asks its credential helper (once).
    Unauthorized,
    NotFound,
    Forbidden,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Unauthorized => {
                let mut resp = text(StatusCode::UNAUTHORIZED, "Unauthorized\n");
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"Bitbucket.org HTTP\""),
                );
                resp
            }
            Refusal::NotFound => text(StatusCode::NOT_FOUND, "Repository not found\n"),
            Refusal::Forbidden => text(
                StatusCode::FORBIDDEN,
                "Access denied. You must have read access to this repository.\n",
            ),
        }
    }
}

/// Checks the caller may read `<workspace>/<repo>.git` and returns the repository's
/// directory name under the git root.
fn authorize(
    shared: &Shared,
    headers: &HeaderMap,
    workspace: &str,
    repo: &str,
) -> Result<String, Refusal> {
    let (user, token) = basic_credentials(headers).ok_or(Refusal::Unauthorized)?;
    if user != TOKEN_USER {
        return Err(Refusal::Unauthorized);
    }
    let st = shared.lock();
    let user_uuid = st
        .check_access_token(&token)
        .map_err(|_| Refusal::Unauthorized)?;
    // bitbucket.org answers with and without the `.git` suffix.
    let slug = repo.strip_suffix(".git").unwrap_or(repo);
    let (Some(ws), Some(rec)) = (st.workspace(workspace), st.repo(workspace, slug)) else {
        return Err(Refusal::NotFound);
    };
    if st.permission(ws, &user_uuid).is_none() {
        return Err(Refusal::Forbidden);
    }
    Ok(rec.dir.clone())
}

async fn info_refs(
    State(shared): State<Arc<Shared>>,
    Path((workspace, repo)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let query = query.unwrap_or_default();
    let service = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "service")
        .map(|(_, v)| v.into_owned());
    // Read-only fake: no pushes, and no dumb-HTTP protocol either.
    if service.as_deref() != Some("git-upload-pack") {
        return text(
            StatusCode::FORBIDDEN,
            "Only git-upload-pack is served here\n",
        );
    }
    let dir = match authorize(&shared, &headers, &workspace, &repo) {
        Ok(dir) => dir,
        Err(refusal) => return refusal.into_response(),
    };
    run_backend(
        &shared,
        "GET",
        &format!("/{dir}/info/refs"),
        &query,
        &headers,
        Bytes::new(),
    )
    .await
}

async fn upload_pack(
    State(shared): State<Arc<Shared>>,
    Path((workspace, repo)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let dir = match authorize(&shared, &headers, &workspace, &repo) {
        Ok(dir) => dir,
        Err(refusal) => return refusal.into_response(),
    };
    let Ok(body) = axum::body::to_bytes(body, MAX_REQUEST_BODY).await else {
        return text(StatusCode::BAD_REQUEST, "Could not read the request body\n");
    };
    run_backend(
        &shared,
        "POST",
        &format!("/{dir}/git-upload-pack"),
        "",
        &headers,
        body,
    )
    .await
}

async fn receive_pack() -> Response {
    text(StatusCode::FORBIDDEN, "This fake Bitbucket is read-only\n")
}

/// Runs `git http-backend` for one request and turns its CGI answer into a response.
async fn run_backend(
    shared: &Shared,
    method: &str,
    path_info: &str,
    query: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let header_str = |name: &HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("http-backend")
        // A clean environment: the developer's git config must not change what is served.
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &shared.git_root)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_PROJECT_ROOT", &shared.git_root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", path_info)
        .env("QUERY_STRING", query)
        .env("REQUEST_METHOD", method)
        .env("REMOTE_USER", TOKEN_USER)
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if method == "POST" {
        cmd.env("CONTENT_LENGTH", body.len().to_string());
    }
    if let Some(v) = header_str(&header::CONTENT_TYPE) {
        cmd.env("CONTENT_TYPE", v);
    }
    // http-backend inflates gzip request bodies itself when told about them.
    if let Some(v) = header_str(&header::CONTENT_ENCODING) {
        cmd.env("HTTP_CONTENT_ENCODING", v);
    }
    // Protocol v2 is negotiated through this header.
    if let Some(v) = headers.get("git-protocol").and_then(|v| v.to_str().ok()) {
        cmd.env("HTTP_GIT_PROTOCOL", v);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => panic!("fake Bitbucket: cannot run `git http-backend`: {e}"),
    };
    let stdin = child.stdin.take();
    // Feed stdin while reading stdout, so a large request cannot deadlock on full pipes.
    let feed = async move {
        if let Some(mut stdin) = stdin {
            // A backend that exits early closes the pipe; its output says why.
            let _ = stdin.write_all(&body).await;
        }
    };
    let ((), output) = tokio::join!(feed, child.wait_with_output());
    let output = match output {
        Ok(o) => o,
        Err(e) => panic!("fake Bitbucket: `git http-backend` failed: {e}"),
    };
    if !output.stderr.is_empty() {
        eprintln!(
            "fake Bitbucket: git http-backend {path_info}: {}",
            String::from_utf8_lossy(&output.stderr).trim_end()
        );
    }
    parse_cgi(&output.stdout)
}

/// Splits a CGI answer into its header block (with `Status:`) and body.
fn parse_cgi(out: &[u8]) -> Response {
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4))
        .into_iter()
        .chain(
            out.windows(2)
                .position(|w| w == b"\n\n")
                .map(|i| (i, i + 2)),
        )
        .min_by_key(|(i, _)| *i);
    let Some((head_end, body_start)) = split else {
        return text(
            StatusCode::BAD_GATEWAY,
            "git http-backend gave no CGI headers\n",
        );
    };
    let mut status = StatusCode::OK;
    let mut resp_headers = HeaderMap::new();
    for line in String::from_utf8_lossy(&out[..head_end]).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value
                .split_whitespace()
                .next()
                .and_then(|c| c.parse::<u16>().ok());
            status = code
                .and_then(|c| StatusCode::from_u16(c).ok())
                .unwrap_or(StatusCode::BAD_GATEWAY);
        } else if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value),
        ) {
            resp_headers.append(n, v);
        }
    }
    let mut resp = (status, Body::from(out[body_start..].to_vec())).into_response();
    resp.headers_mut().extend(resp_headers);
    resp
}
