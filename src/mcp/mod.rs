//! The knowledge layer for AI assistants: an MCP server (Streamable HTTP) at `/mcp` and its
//! tools.
//!
//! Authenticated before any MCP message is read, by an OAuth access token (`mcp_auth` issues
//! them) or a personal access token; without one, a 401 whose challenge starts the client's
//! sign-in. Every tool sees exactly what the user's search page sees (ready repositories in
//! Active workspaces), someone else's repository is "not found" like a missing one, and every
//! answer stays under one ceiling (`CODELAYER_MCP_ANSWER_BYTES`), saying how to go on when
//! it was cut (`answer`). The tools themselves live in `search`, `browse` and `symbols`;
//! answers name the indexed commit and whether Bitbucket is ahead of it (`freshness_note`).

mod answer;
mod browse;
mod search;
mod symbols;

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
    error::AppError,
    identity::user_for_api_token,
    ids::{CurrentUser, RepoId, UserId},
    mcp_auth, search as code_search,
    state::AppState,
    visible::{self, Searchable},
};

pub use browse::{ListArgs, ReadArgs};
pub use search::SearchArgs;
pub use symbols::{FindSymbolArgs, OutlineArgs};

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

/// The tools.
#[derive(Clone)]
pub struct CodeTools {
    state: AppState,
    tool_router: ToolRouter<Self>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct NoArgs {}

/// A tool's answer: text, or the text of a tool error (the model reads both).
type ToolResult = Result<String, String>;

#[tool_router]
impl CodeTools {
    fn new(state: AppState) -> CodeTools {
        let mut tool_router = Self::tool_router();
        // The descriptions name this server's ceiling, so they are made here, not in the macros.
        let ceiling = state.config.mcp_answer_bytes;
        for (name, description) in [
            ("search_code", search::description(ceiling)),
            ("read_file", browse::read_description(ceiling)),
            ("list_files", browse::list_description(ceiling)),
        ] {
            if let Some(route) = tool_router.map.get_mut(name) {
                route.attr.description = Some(description.into());
            }
        }
        CodeTools { state, tool_router }
    }

    #[tool(
        description = "List the code repositories you can search: each indexed Bitbucket repository as \"<workspace>/<slug>\", with its state, the commit that is indexed and when, the number of files and its main language. Use these names as `repository` in the other tools."
    )]
    async fn list_repositories(
        &self,
        Extension(parts): Extension<Parts>,
        _args: Parameters<NoArgs>,
    ) -> ToolResult {
        self.repositories(&user_of(&parts)?).await
    }

    /// Search code (described by `search::description`).
    #[tool]
    async fn search_code(
        &self,
        Extension(parts): Extension<Parts>,
        Parameters(args): Parameters<SearchArgs>,
    ) -> ToolResult {
        self.search(&user_of(&parts)?, args).await
    }

    /// Read a file (described by `browse::read_description`).
    #[tool]
    async fn read_file(
        &self,
        Extension(parts): Extension<Parts>,
        Parameters(args): Parameters<ReadArgs>,
    ) -> ToolResult {
        self.read(&user_of(&parts)?, args).await
    }

    /// List files (described by `browse::list_description`).
    #[tool]
    async fn list_files(
        &self,
        Extension(parts): Extension<Parts>,
        Parameters(args): Parameters<ListArgs>,
    ) -> ToolResult {
        self.list(&user_of(&parts)?, args).await
    }

    #[tool(
        description = "Find where a symbol is defined (functions, methods, classes, structs, enums, interfaces, traits, types, modules, constants) in Rust, Python, Go, JavaScript, TypeScript, Java, C and C++ code of your indexed repositories. `name` matches part of the name (case-insensitive; exact names first, top-level before nested) or is a /regex/. Returns each definition's repository, path, 1-based line range, kind, enclosing symbol and its first lines, with a link, and the indexed commit."
    )]
    async fn find_symbol(
        &self,
        Extension(parts): Extension<Parts>,
        Parameters(args): Parameters<FindSymbolArgs>,
    ) -> ToolResult {
        self.find_symbol_answer(&user_of(&parts)?, args).await
    }

    #[tool(
        description = "The outline of one file of an indexed repository: its definitions (kind, name, 1-based line range), nested as in the code. Works for Rust, Python, Go, JavaScript, TypeScript, Java, C and C++."
    )]
    async fn file_outline(
        &self,
        Extension(parts): Extension<Parts>,
        Parameters(args): Parameters<OutlineArgs>,
    ) -> ToolResult {
        self.outline_answer(&user_of(&parts)?, args).await
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
                AppError::NotFound => format!(
                    "not found: no indexed repository {name:?} (list_repositories shows yours)"
                ),
                _ => "the repository list could not be read; try again".to_owned(),
            })
    }

    /// Runs `call` on a repository's shard on the blocking pool; index faults are logged and
    /// answered with a sentence.
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
                    tracing::error!(error = %code_search::index_fault(&state, repo_id, &e), "MCP tool could not open an index");
                    return Err("the index could not be read; try again".to_owned());
                }
            };
            call(&shard).map_err(|e| {
                let fault = code_search::index_fault(&state, repo_id, &e);
                tracing::error!(error = %fault, "MCP tool could not read an index");
                "the index could not be read; try again".to_owned()
            })
        })
        .await
        .map_err(|_| "the index could not be read".to_owned())?
    }
}

#[tool_handler(
    router = self.tool_router,
    name = "codelayer",
    instructions = "codelayer searches the code of the Bitbucket repositories you indexed. Start with search_code (its description states the query language exactly); find_symbol finds definitions and file_outline lists a file's; read_file shows a file with line numbers; list_files and list_repositories show what is there. Every answer fits under a ceiling; when one is cut it says how to continue (a cursor, a start_line or an offset)."
)]
impl ServerHandler for CodeTools {}

fn user_of(parts: &Parts) -> Result<CurrentUser, String> {
    parts
        .extensions
        .get::<McpUser>()
        .map(|u| u.0.clone())
        .ok_or_else(|| "not signed in".to_owned())
}

/// Which commit an answer comes from, and whether Bitbucket has moved past it, so an
/// assistant can tell its user the code may have changed.
fn freshness_note(commit: &str, ahead: bool) -> String {
    let short = commit.get(..12).unwrap_or(commit);
    if ahead {
        format!(
            "indexed commit {short}; Bitbucket's main branch has moved past it: the code may have changed (an update is on its way)\n"
        )
    } else {
        format!("indexed commit {short}; up to date with Bitbucket's main branch\n")
    }
}
