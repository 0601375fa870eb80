//! Symbol lookups across the repositories a user may read: `GET /api/v1/symbols`, the MCP
//! tools `find_symbol` and `file_outline`, and the file view's go-to-definition links.

use std::time::Instant;

use axum::{
    Json,
    extract::{Query as QueryString, State},
};
use serde::{Deserialize, Serialize};

use crate::{
    error::{ApiError, AppError},
    identity::ApiUser,
    ids::{RepoId, UserId},
    index::{Pattern, Symbol, SymbolKind, SymbolQuery},
    shards::ShardError,
    state::AppState,
    visible::{self, Searchable},
};

use super::{SearchError, index_fault, pages::blob_href, query::MAX_QUERY_BYTES};

/// Definitions one lookup returns at most.
pub const MAX_SYMBOLS: usize = 200;
/// Definitions returned when no limit is asked for.
pub const DEFAULT_SYMBOLS: usize = 50;

/// One definition in one of the user's repositories.
#[derive(Clone, Debug, Serialize)]
pub struct SymbolHit {
    pub repository: String,
    pub repository_id: RepoId,
    #[serde(flatten)]
    pub symbol: Symbol,
    /// The file view at the definition.
    pub url: String,
}

/// The answer of a symbol lookup, best first.
#[derive(Clone, Debug, Serialize)]
pub struct SymbolResults {
    pub symbols: Vec<SymbolHit>,
    /// Definitions that matched, including those not returned.
    pub total: usize,
    pub took_ms: u64,
}

/// What to look for: `name` (part of a symbol's name, case-insensitive) or `/regex/`.
pub fn name_pattern(q: &str) -> Result<Pattern, SearchError> {
    let q = q.trim();
    if q.is_empty() {
        return Err(SearchError::Pattern(
            "say which symbol: a name or /regex/".into(),
        ));
    }
    if q.len() > MAX_QUERY_BYTES {
        return Err(SearchError::Pattern(format!(
            "the name is longer than {MAX_QUERY_BYTES} bytes"
        )));
    }
    Ok(
        match q.strip_prefix('/').and_then(|r| r.strip_suffix('/')) {
            Some(regex) if !regex.is_empty() => Pattern {
                regex: regex.to_owned(),
                case_sensitive: true,
                literal: false,
            },
            _ => Pattern {
                regex: regex::escape(q),
                case_sensitive: false,
                literal: true,
            },
        },
    )
}

/// The definitions matching `q` in the user's repositories (only `only`, when given).
pub async fn find(
    state: &AppState,
    user_id: UserId,
    q: &str,
    kind: Option<&str>,
    only: Option<RepoId>,
    limit: usize,
) -> Result<SymbolResults, SearchError> {
    let started = Instant::now();
    let pattern = name_pattern(q)?;
    let kind = match kind.map(str::trim).filter(|k| !k.is_empty()) {
        Some(k) => Some(SymbolKind::parse(k).ok_or_else(|| {
            SearchError::Pattern(format!(
                "unknown kind {k:?}: function, method, class, struct, enum, interface, trait, type, module, macro, constant"
            ))
        })?),
        None => None,
    };
    let limit = limit.clamp(1, MAX_SYMBOLS);
    let _pass = state
        .search_gate
        .enter(user_id, state.config.search_deadline)
        .await
        .ok_or(SearchError::Busy)?;
    let mut repos = visible::readable(state, user_id).await?;
    if let Some(id) = only {
        repos.retain(|r| r.id == id);
    }
    let literal = pattern.literal.then(|| q.trim().to_ascii_lowercase());
    let query = SymbolQuery {
        pattern,
        kind,
        languages: Vec::new(),
        limit,
    };
    let state2 = state.clone();
    let (mut hits, total) = tokio::task::spawn_blocking(move || {
        let mut hits = Vec::new();
        let mut total = 0;
        for repo in repos {
            let shard = match state2.shards.get(repo.id) {
                Ok(shard) => shard,
                Err(ShardError::Retired) => continue,
                Err(ShardError::Index(e)) => return Err(index_fault(&state2, repo.id, &e)),
            };
            let (found, matched) = shard.find_symbols(&query).map_err(|e| match e {
                crate::index::IndexError::BadPattern(m) => SearchError::Pattern(m),
                other => index_fault(&state2, repo.id, &other),
            })?;
            total += matched;
            hits.extend(found.into_iter().map(|s| hit(&repo, s)));
        }
        Ok::<_, SearchError>((hits, total))
    })
    .await
    .map_err(|e| SearchError::Database(format!("symbol task: {e}")))??;
    // Each shard gave its best; the same order across shards picks the overall best.
    hits.sort_by_key(|h| {
        let name = h.symbol.name.to_ascii_lowercase();
        let closeness = match &literal {
            Some(l) if name == *l => 0,
            Some(l) if name.starts_with(l.as_str()) => 1,
            _ => 2,
        };
        (
            closeness,
            h.symbol.depth > 0 || h.symbol.kind == "method",
            h.symbol.name.len(),
            h.symbol.path.len(),
            h.repository.clone(),
            h.symbol.path.clone(),
            h.symbol.line,
        )
    });
    hits.truncate(limit);
    Ok(SymbolResults {
        symbols: hits,
        total,
        took_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

fn hit(repo: &Searchable, symbol: Symbol) -> SymbolHit {
    SymbolHit {
        repository: repo.name(),
        repository_id: repo.id,
        url: blob_href(repo.id, &symbol.path, "", symbol.line),
        symbol,
    }
}

#[derive(Deserialize)]
pub struct SymbolParams {
    #[serde(default)]
    q: String,
    /// `<workspace>/<slug>`: only this repository.
    repository: Option<String>,
    kind: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/v1/symbols?q=&repository=&kind=&limit=`: definitions, best first.
pub async fn api(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    QueryString(params): QueryString<SymbolParams>,
) -> Result<Json<SymbolResults>, ApiError> {
    let only = match params
        .repository
        .as_deref()
        .filter(|r| !r.trim().is_empty())
    {
        // Someone else's repository is "not found", like a missing one.
        Some(name) => Some(visible::readable_by_name(&state, user.id, name).await?.id),
        None => None,
    };
    Ok(Json(
        find(
            &state,
            user.id,
            &params.q,
            params.kind.as_deref(),
            only,
            params.limit.unwrap_or(DEFAULT_SYMBOLS),
        )
        .await
        .map_err(AppError::from)?,
    ))
}

/// Lines of context shown with a definition (MCP), each cut to this many bytes.
const CONTEXT_LINE_BYTES: usize = 200;

/// The first `lines` lines of each definition (from its name's line), read from the shards;
/// blocking work. A file that cannot be read gets no context rather than failing the rest.
pub fn definition_context(state: &AppState, hits: &[SymbolHit], lines: usize) -> Vec<Vec<String>> {
    hits.iter()
        .map(|h| {
            let Ok(shard) = state.shards.get(h.repository_id) else {
                return Vec::new();
            };
            let Ok(Some(bytes)) = shard.read_file(&h.symbol.path) else {
                return Vec::new();
            };
            String::from_utf8_lossy(&bytes)
                .lines()
                .skip(h.symbol.line.saturating_sub(1) as usize)
                .take(lines)
                .map(|l| {
                    let mut end = l.len().min(CONTEXT_LINE_BYTES);
                    while !l.is_char_boundary(end) {
                        end -= 1;
                    }
                    l[..end].to_owned()
                })
                .collect()
        })
        .collect()
}
