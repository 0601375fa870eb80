//! The knowledge layer for AI assistants: an MCP server (Streamable HTTP) at `/mcp`.
//!
//! Authenticated by a personal access token before any MCP message is read; every tool sees
//! exactly what the token owner's search page sees (ready repositories in Active workspaces),
//! and someone else's repository is "not found", like a missing one.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::{header, request::Parts},
    middleware::Next,
    response::Response,
};
use rmcp::{
    ServerHandler,
    handler::server::{router::tool::ToolRouter, tool::Extension, wrapper::Parameters},
    tool, tool_handler, tool_router,
    transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService, session::never::NeverSessionManager,
    },
};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::{
    identity::user_for_api_token,
    ids::{CurrentUser, RepoId, UserId},
    index::{PathFilter, PathMatcher},
    mcp_auth,
    repositories,
    search::{self, pages::blob_href},
    state::AppState,
    sync::RepoState,
    visible::{self, Searchable},
};

/// Answers are cut here, with a note on how to narrow.
const MAX_ANSWER_BYTES: usize = 200 * 1024;
/// Lines `read_file` returns when no range is asked for.
const DEFAULT_LINES: usize = 400;
/// Entries `list_files` returns at most.
const MAX_LIST: usize = 2000;

/// The token owner, put into the request by `authenticate`.
#[derive(Clone, Debug)]
struct McpUser(CurrentUser);

/// Refuses requests without a live bearer token — an OAuth access token or a personal access
/// token — before MCP sees them: 401 with the challenge that starts an MCP client's sign-in.
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let user = match &token {
        Some(token) => bearer_user(&state, token).await,
        None => None,
    };
    let Some(user) = user else {
        return mcp_auth::metadata::challenge(&state, token.is_some());
    };
    request.extensions_mut().insert(McpUser(user));
    next.run(request).await
}

async fn bearer_user(state: &AppState, token: &str) -> Option<CurrentUser> {
    let found = if token.starts_with(mcp_auth::grants::ACCESS_TOKEN_PREFIX) {
        mcp_auth::grants::user_for_access_token(state, token).await
    } else {
        user_for_api_token(state, token).await
    };
    found.unwrap_or_else(|e| {
        tracing::error!(error = %e, "MCP token check failed");
        None
    })
}

/// The MCP service mounted at `/mcp` (stateless: every request carries its token).
pub fn service(state: AppState) -> StreamableHttpService<CodeTools, NeverSessionManager> {
    let mut config = StreamableHttpServerConfig::default();
    config.legacy_session_mode = false;
    config.json_response = true;
    let mut hosts = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    if let Some(host) = state.config.public_url.host_str() {
        hosts.push(host.to_owned());
    }
    config.allowed_hosts = hosts;
    StreamableHttpService::new(
        move || Ok(CodeTools::new(state.clone())),
        Arc::new(NeverSessionManager::default()),
        config,
    )
}

/// The four tools.
#[derive(Clone)]
pub struct CodeTools {
    state: AppState,
    tool_router: ToolRouter<Self>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct SearchArgs {
    /// The query, in codelayer's query language.
    pub query: String,
    /// Only this repository, as "<workspace>/<slug>".
    pub repository: Option<String>,
    /// Files to return (default 10, at most 50).
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ReadArgs {
    /// The repository, as "<workspace>/<slug>".
    pub repository: String,
    /// The file's path in the repository, e.g. "src/main.rs".
    pub path: String,
    /// First line to return (1-based, default 1).
    pub start_line: Option<u32>,
    /// Last line to return (inclusive).
    pub end_line: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListArgs {
    /// The repository, as "<workspace>/<slug>".
    pub repository: String,
    /// Only paths starting with this prefix, or matching this glob (e.g. "src/**/*.rs").
    pub path_prefix: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct NoArgs {}

type ToolResult = Result<String, String>;

#[tool_router]
impl CodeTools {
    fn new(state: AppState) -> CodeTools {
        CodeTools {
            state,
            tool_router: Self::tool_router(),
        }
    }

    #[tool(
        description = "List the code repositories you can search: each indexed Bitbucket repository as \"<workspace>/<slug>\", with its state, the commit that is indexed, the number of files and its main language. Use the repository names in the other tools."
    )]
    async fn list_repositories(
        &self,
        Extension(parts): Extension<Parts>,
        _args: Parameters<NoArgs>,
    ) -> ToolResult {
        let user = user_of(&parts)?;
        let mut rows: Vec<repositories::RepositoryView> =
            repositories::list_for_user(&self.state, user.id)
                .await
                .map_err(|_| "the repository list could not be read; try again".to_owned())?;
        rows.retain(|r| r.selected.0);
        rows.sort_by(|a, b| (&a.workspace, &a.slug).cmp(&(&b.workspace, &b.slug)));
        let searchable = self.searchable(user.id).await?;
        if rows.is_empty() {
            return Ok("No repositories are indexed yet. Select some under Repositories in codelayer and press \"Create knowledge layer\".".into());
        }
        let mut out = String::new();
        for r in rows {
            let ready = searchable.iter().any(|s| s.id == r.id);
            let (ws, slug, files, language) = (&r.workspace, &r.slug, r.files, &r.language);
            out.push_str(&format!(
                "{ws}/{slug} — {}{}, {files} files{}\n",
                if ready { RepoState::Ready } else { r.state },
                r.indexed_commit
                    .map(|c| format!(", commit {}", c.get(..12).unwrap_or(&c)))
                    .unwrap_or_default(),
                if language.is_empty() {
                    String::new()
                } else {
                    format!(", {language}")
                },
            ));
        }
        Ok(out)
    }

    #[tool(
        description = "Search the code of your indexed repositories. Query language: words must all match (case-insensitive), \"exact phrase\", /regex/ (Rust syntax), filters repo:<name>, workspace:<slug>, path:<text or glob> (alias file:), lang:<language>, case:yes, and - before a word or filter to exclude it. Examples: `parse_config lang:rust`, `\"fn main\" -path:tests/`, `/impl\\s+Display\\s+for/ repo:api`. Returns matching files with 1-based line numbers, the matching lines with a line of context, and a link to each file."
    )]
    async fn search_code(
        &self,
        Extension(parts): Extension<Parts>,
        Parameters(args): Parameters<SearchArgs>,
    ) -> ToolResult {
        let user = user_of(&parts)?;
        let only = match &args.repository {
            Some(name) => Some(self.repository(user.id, name).await?.id),
            None => None,
        };
        let limit = args.limit.unwrap_or(10).clamp(1, 50) as usize;
        let results = search::run_scoped(&self.state, user.id, &args.query, None, limit, only)
            .await
            .map_err(|e| format!("search failed: {e}"))?;
        let base = self.state.config.public_origin();
        let mut out = format!("{} matching files", results.total_files);
        if results.total_files > results.results.len() {
            out.push_str(&format!(
                " (showing the best {}; add words or filters such as path: or lang: to narrow)",
                results.results.len()
            ));
        }
        out.push('\n');
        for file in &results.results {
            let first = file.matches.first().map_or(1, |m| m.line);
            out.push_str(&format!(
                "\n## {} {}{}\n{base}{}\n",
                file.repository,
                file.path,
                if file.language.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", file.language)
                },
                blob_href(file.repository_id, &file.path, &args.query, first),
            ));
            for m in &file.matches {
                if let Some(before) = &m.before {
                    out.push_str(&format!("{:>6}  {before}\n", m.line - 1));
                }
                out.push_str(&format!("{:>6}: {}\n", m.line, m.text));
                if let Some(after) = &m.after {
                    out.push_str(&format!("{:>6}  {after}\n", m.line + 1));
                }
            }
            if file.match_count > file.matches.len() {
                out.push_str(&format!(
                    "        … {} more matching lines\n",
                    file.match_count - file.matches.len()
                ));
            }
        }
        Ok(cut(out, "narrow the query or lower `limit`"))
    }

    #[tool(
        description = "Read a file of an indexed repository at the indexed commit, with 1-based line numbers. Big files come in ranges: pass start_line and end_line to read more. Binary files are refused."
    )]
    async fn read_file(
        &self,
        Extension(parts): Extension<Parts>,
        Parameters(args): Parameters<ReadArgs>,
    ) -> ToolResult {
        let user = user_of(&parts)?;
        let repo = self.repository(user.id, &args.repository).await?;
        let bytes = self
            .shard_call(repo.id, move |shard| {
                shard.read_file(&args.path).map(|b| (b, args))
            })
            .await?;
        let (bytes, args) = bytes;
        let Some(bytes) = bytes else {
            return Err(format!(
                "not found: {} has no indexed file at that path (list_files shows the paths)",
                repo.name()
            ));
        };
        if bytes.contains(&0) {
            return Err("this is a binary file; it cannot be shown as text".into());
        }
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text.lines().collect();
        let start = args.start_line.unwrap_or(1).max(1) as usize;
        let end = args
            .end_line
            .map_or(start + DEFAULT_LINES - 1, |e| e as usize)
            .min(lines.len());
        if start > lines.len().max(1) || end < start {
            return Err(format!(
                "the file has {} lines; ask for a range inside it",
                lines.len()
            ));
        }
        let mut out = format!(
            "{} {} (lines {start}–{end} of {})\n",
            repo.name(),
            args.path,
            lines.len()
        );
        for (i, line) in lines.iter().enumerate().take(end).skip(start - 1) {
            out.push_str(&format!("{:>6}  {line}\n", i + 1));
        }
        if end < lines.len() {
            out.push_str(&format!(
                "… {} more lines: call read_file with start_line={}\n",
                lines.len() - end,
                end + 1
            ));
        }
        Ok(cut(out, "ask for a smaller line range"))
    }

    #[tool(
        description = "List the files of an indexed repository at the indexed commit, optionally only those under a path prefix or matching a glob (e.g. \"src/\" or \"**/*.py\"). Each line gives path, language and size."
    )]
    async fn list_files(
        &self,
        Extension(parts): Extension<Parts>,
        Parameters(args): Parameters<ListArgs>,
    ) -> ToolResult {
        let user = user_of(&parts)?;
        let repo = self.repository(user.id, &args.repository).await?;
        let filter = args.path_prefix.filter(|p| !p.is_empty());
        // Compiled once, before any path is read; a bad glob is the caller's error.
        let glob = match filter
            .as_deref()
            .filter(|p| p.contains(['*', '?', '[', '{']))
        {
            Some(g) => Some(
                PathMatcher::new(&PathFilter::Glob(g.to_owned()))
                    .map_err(|e| format!("the glob was not understood: {e}"))?,
            ),
            None => None,
        };
        // Filtering 200,000 paths is CPU work: it runs beside the shard read, off the runtime.
        let matching = self
            .shard_call(repo.id, move |shard| {
                Ok(shard
                    .list_files()?
                    .into_iter()
                    .filter(|(path, _, _)| match (&filter, &glob) {
                        (None, _) => true,
                        (Some(_), Some(g)) => g.matches(path),
                        (Some(prefix), None) => path.starts_with(prefix.as_str()),
                    })
                    .collect::<Vec<_>>())
            })
            .await?;
        let mut out = format!("{} files in {}\n", matching.len(), repo.name());
        for (path, language, size) in matching.iter().take(MAX_LIST) {
            out.push_str(&format!("{path}\t{language}\t{size}\n"));
        }
        if matching.len() > MAX_LIST {
            out.push_str(&format!(
                "… {} more: pass a narrower path_prefix\n",
                matching.len() - MAX_LIST
            ));
        }
        Ok(cut(out, "pass a narrower path_prefix"))
    }
}

impl CodeTools {
    async fn searchable(&self, user_id: UserId) -> Result<Vec<Searchable>, String> {
        visible::readable(&self.state, user_id)
            .await
            .map_err(|_| "the repository list could not be read; try again".to_owned())
    }

    /// One of the user's searchable repositories by "<workspace>/<slug>", else "not found".
    async fn repository(&self, user_id: UserId, name: &str) -> Result<Searchable, String> {
        visible::readable_by_name(&self.state, user_id, name)
            .await
            .map_err(|e| match e {
                crate::error::AppError::NotFound => format!(
                    "not found: no indexed repository {name:?} (list_repositories shows yours)"
                ),
                _ => "the repository list could not be read; try again".to_owned(),
            })
    }

    async fn shard_call<T: Send + 'static>(
        &self,
        repo_id: RepoId,
        call: impl FnOnce(&crate::index::Shard) -> Result<T, crate::index::IndexError> + Send + 'static,
    ) -> Result<T, String> {
        let state = self.state.clone();
        tokio::task::spawn_blocking(move || {
            let shard = match state.shards.get(repo_id) {
                Ok(shard) => shard,
                Err(crate::shards::ShardError::Retired) => {
                    return Err("not found: the repository is being deleted".to_owned());
                }
                Err(crate::shards::ShardError::Index(e)) => {
                    tracing::error!(error = %search::index_fault(&state, repo_id, &e), "MCP tool could not open an index");
                    return Err("the index could not be read; try again".to_owned());
                }
            };
            call(&shard).map_err(|e| {
                let fault = search::index_fault(&state, repo_id, &e);
                tracing::error!(error = %fault, "MCP tool could not read an index");
                "the index could not be read; try again".to_owned()
            })
        })
        .await
        .map_err(|_| "the index could not be read".to_owned())?
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for CodeTools {}

fn user_of(parts: &Parts) -> Result<CurrentUser, String> {
    parts
        .extensions
        .get::<McpUser>()
        .map(|u| u.0.clone())
        .ok_or_else(|| "not signed in".to_owned())
}

/// Cuts an answer at `MAX_ANSWER_BYTES` (on a char boundary) with a note on how to narrow.
fn cut(mut text: String, how: &str) -> String {
    if text.len() <= MAX_ANSWER_BYTES {
        return text;
    }
    let mut at = MAX_ANSWER_BYTES;
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    text.truncate(at);
    text.push_str(&format!("\n\n[answer cut at 200 KB: {how}]\n"));
    text
}
