//! Search across the shards a user may read: the query language, shard readers, ranking
//! across repositories, the results page, the file view and the JSON API.

mod corrections;
pub mod pages;
pub mod query;
pub mod symbols;
pub mod syntax;

use std::{
    fmt::Write as _,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::Serialize;

use crate::{
    error::AppError,
    ids::{RepoId, UserId},
    index::{FileMatch, PreparedQuery, ShardResult, Stop},
    shards::ShardError,
    state::AppState,
    visible::{self, Searchable},
};

/// Files per results page.
pub const PAGE_SIZE: usize = 20;
/// Matching lines shown per file (`match_count` says how many more there are).
pub const LINES_PER_FILE: usize = 5;
/// The results page reads up to this many more matching lines per file, revealed in place
/// on request; the file view has the rest.
pub const MORE_LINES_PER_FILE: usize = 30;
/// ... and this many more in all per page, so a page of long files stays small.
pub const MORE_LINES_PER_PAGE: usize = 200;
/// Results are paged this deep at most; past it, a narrower query is the way on.
pub const MAX_DEPTH: usize = 1000;

/// One matching line of a result.
#[derive(Clone, Debug, Serialize)]
pub struct LineHit {
    pub line: u32,
    pub text: String,
    pub ranges: Vec<[usize; 2]>,
    /// The line defines a symbol the query names (a searched word or a `sym:` match).
    pub definition: bool,
    #[serde(skip)]
    pub before: Option<String>,
    #[serde(skip)]
    pub after: Option<String>,
}

/// One file of the results.
#[derive(Clone, Debug, Serialize)]
pub struct FileHit {
    pub repository: String,
    pub repository_id: RepoId,
    pub path: String,
    pub language: String,
    pub matches: Vec<LineHit>,
    pub match_count: usize,
    /// The next matching lines after `matches`, for the page to reveal in place (only read
    /// when the search asked for them: the JSON answers leave them out).
    #[serde(skip)]
    pub more_matches: Vec<LineHit>,
    /// The commit this answer comes from, and whether Bitbucket's main branch has moved past it.
    pub indexed_commit: String,
    pub bitbucket_ahead: bool,
    #[serde(skip)]
    pub score: f32,
    /// The file within its shard, to fetch its lines once it made the page.
    #[serde(skip)]
    pub doc: u32,
}

/// What a search does beyond ranking one page of files.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Count every matching file instead of stopping once the page is sure.
    pub exact: bool,
    /// Read the files' next matching lines too (`FileHit::more_matches`).
    pub more_lines: bool,
}

/// A page of results.
#[derive(Clone, Debug, Serialize)]
pub struct Results {
    pub results: Vec<FileHit>,
    pub total_files: usize,
    /// False when `total_files` is a lower bound (the search stopped early).
    pub total_exact: bool,
    /// True when the deadline or a limit cut the work: these are the results found by then.
    pub partial: bool,
    pub next_cursor: Option<String>,
    pub took_ms: u64,
    #[serde(skip)]
    pub repository_facets: Vec<(String, usize)>,
    /// Counted over every matching file, like `total_files` ("" is files of no language).
    #[serde(skip)]
    pub language_facets: Vec<(String, usize)>,
    /// Files skipped before this page (from the cursor), for page links.
    #[serde(skip)]
    pub offset: usize,
    /// How many repositories the user has indexed: 0 means there is nothing to search yet.
    #[serde(skip)]
    pub repositories_indexed: usize,
}

/// Why a search could not run: the user's fault (a bad query or cursor) or ours (an index
/// or the database failed). Only the handlers turn these into a status.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("{0}")]
    Query(#[from] query::ParseError),
    #[error("the cursor is not valid for this query")]
    Cursor,
    #[error("{0}")]
    Pattern(String),
    #[error("the index of repository {repo} at {path} could not be read: {detail}")]
    Index {
        repo: RepoId,
        path: String,
        detail: String,
    },
    #[error("database: {0}")]
    Database(String),
    #[error("too many searches are running; try again in a moment")]
    Busy,
}

impl From<AppError> for SearchError {
    fn from(e: AppError) -> SearchError {
        SearchError::Database(e.to_string())
    }
}

impl From<SearchError> for AppError {
    fn from(e: SearchError) -> AppError {
        match e {
            SearchError::Query(_) | SearchError::Cursor | SearchError::Pattern(_) => {
                AppError::BadRequest(e.to_string())
            }
            // Logged in full by AppError; the user sees a generic sentence, not blame.
            SearchError::Index { .. } | SearchError::Database(_) => {
                AppError::Internal(e.to_string())
            }
            SearchError::Busy => AppError::Busy(e.to_string()),
        }
    }
}

/// Runs a query over the user's shards and returns one page, best files first.
pub async fn run(
    state: &AppState,
    user_id: UserId,
    text: &str,
    cursor: Option<&str>,
    page_size: usize,
) -> Result<Results, SearchError> {
    run_scoped(state, user_id, text, cursor, page_size, None).await
}

/// Like `run`, limited to one of the user's repositories when `only` is given.
pub async fn run_scoped(
    state: &AppState,
    user_id: UserId,
    text: &str,
    cursor: Option<&str>,
    page_size: usize,
    only: Option<RepoId>,
) -> Result<Results, SearchError> {
    run_at(
        state,
        user_id,
        text,
        decode_offset(cursor)?,
        page_size,
        only,
    )
    .await
}

/// One page of results starting `offset` files deep in the ranking (callers with cursors of
/// their own, like MCP's, say where they are this way). Counts like `run_scoped`.
pub async fn run_at(
    state: &AppState,
    user_id: UserId,
    text: &str,
    offset: usize,
    page_size: usize,
    only: Option<RepoId>,
) -> Result<Results, SearchError> {
    run_counted(
        state,
        user_id,
        text,
        offset,
        page_size,
        only,
        Options::default(),
    )
    .await
}

/// The offset a page cursor names (none or empty: the first page).
pub fn decode_offset(cursor: Option<&str>) -> Result<usize, SearchError> {
    match cursor.filter(|c| !c.is_empty()) {
        Some(c) => decode_cursor(c).ok_or(SearchError::Cursor),
        None => Ok(0),
    }
}

/// Files that must have matched, relative to the files a page needs, before a search may
/// stop counting: the page is chosen among them by the full ranking.
const EARLY_FACTOR: usize = 4;
const EARLY_MIN: usize = 100;

/// A search: `options.exact` counts every matching file (bounded by the deadline); otherwise
/// the search stops once enough files matched for the page, and says the count is a lower
/// bound.
pub async fn run_counted(
    state: &AppState,
    user_id: UserId,
    text: &str,
    offset: usize,
    page_size: usize,
    only: Option<RepoId>,
    options: Options,
) -> Result<Results, SearchError> {
    // What the user may read is decided now, on every request; the cache only saves the
    // search work. Same user, same readable repositories, same request, no shard changed
    // since (the generation is read before the work): the same answer.
    let generation = state.shards.generation();
    let mut repos = visible::readable(state, user_id).await?;
    let repositories_indexed = repos.len();
    if let Some(id) = only {
        repos.retain(|r| r.id == id);
    }
    // Each repository with its indexed commit and Bitbucket's head: an answer also says how
    // fresh each result is, so a head that moved makes it stale even if no shard changed.
    let mut key = format!("{options:?}\u{0}{page_size}\u{0}{offset}\u{0}");
    for r in &repos {
        let head = r.head_commit.as_deref().unwrap_or("-");
        let _ = write!(key, "{}:{}:{head},", r.id, r.indexed_commit);
    }
    key.push('\u{0}');
    key.push_str(text);
    if let Some(kept) = state.recent.get::<Results>(user_id, &key, generation) {
        let mut results = Results {
            took_ms: 0,
            repositories_indexed,
            ..(*kept).clone()
        };
        // Bitbucket may have moved on without any shard changing: freshness is read now.
        for file in &mut results.results {
            if let Some(repo) = repos.iter().find(|r| r.id == file.repository_id) {
                file.indexed_commit.clone_from(&repo.indexed_commit);
                file.bitbucket_ahead = repo.bitbucket_ahead();
            }
        }
        return Ok(results);
    }
    let mut results = compute(state, user_id, repos, text, offset, page_size, options).await?;
    results.repositories_indexed = repositories_indexed;
    // A cut answer is not kept: asking again may find more.
    if !results.partial {
        state
            .recent
            .put(user_id, key, generation, Arc::new(results.clone()));
    }
    Ok(results)
}

async fn compute(
    state: &AppState,
    user_id: UserId,
    repos: Vec<Searchable>,
    text: &str,
    offset: usize,
    page_size: usize,
    options: Options,
) -> Result<Results, SearchError> {
    let started = Instant::now();
    let deadline = started + state.config.search_deadline;
    if offset >= MAX_DEPTH {
        return Err(SearchError::Pattern(format!(
            "results are paged up to {MAX_DEPTH} files deep; narrow the query to see others"
        )));
    }
    let _pass = state
        .search_gate
        .enter(user_id, state.config.search_deadline)
        .await
        .ok_or(SearchError::Busy)?;
    let wanted = offset + page_size;
    // Parsing and compiling (regexes, globs) is CPU work: off the async threads, once per
    // request rather than once per shard.
    let text = text.to_owned();
    let (query, per_shard) = tokio::task::spawn_blocking(move || {
        let query = query::parse(&text)?;
        // Shards rank without reading lines; only the page's files get theirs afterwards.
        let per_shard = PreparedQuery::new(&query.shard_query(0, wanted))
            .map_err(|e| SearchError::Pattern(e.to_string()))?;
        Ok::<_, SearchError>((query, per_shard))
    })
    .await
    .map_err(|e| SearchError::Database(format!("query compilation: {e}")))??;
    let repos: Vec<Searchable> = repos
        .into_iter()
        .filter(|r| query.allows_repository(&r.workspace, &r.slug, &r.full_name))
        .collect();
    // Raised when this future is dropped (the client went away): the shard work stops too.
    let cancelled = CancelOnDrop(Arc::new(AtomicBool::new(false)));
    let mut stop = Stop::new(deadline, cancelled.0.clone());
    if !options.exact {
        stop = stop.after_matches((wanted * EARLY_FACTOR).max(EARLY_MIN));
    }
    let per_shard = Arc::new(per_shard);
    let hits = search_shards(state, repos, per_shard.clone(), stop.clone()).await?;

    let mut total_files = 0;
    let (mut partial, mut early) = (false, false);
    let mut repository_facets = Vec::new();
    let mut languages: std::collections::BTreeMap<String, usize> = Default::default();
    let mut files: Vec<FileHit> = Vec::new();
    for (repo, result) in hits {
        total_files += result.total_files;
        partial |= result.partial || result.truncated;
        early |= result.early;
        if result.total_files > 0 {
            repository_facets.push((repo.name(), result.total_files));
        }
        for (language, n) in result.languages {
            *languages.entry(language).or_default() += n;
        }
        for file in result.files {
            files.push(file_hit(&repo, file));
        }
    }
    files.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.path.len().cmp(&b.path.len()))
            .then_with(|| a.repository.cmp(&b.repository))
            .then_with(|| a.path.cmp(&b.path))
    });
    let results: Vec<FileHit> = files.into_iter().skip(offset).take(page_size).collect();
    let (results, lines_cut) =
        add_lines(state, results, per_shard, stop, options.more_lines).await?;
    partial |= lines_cut;
    let next_cursor = (offset + page_size < total_files
        && results.len() == page_size
        && offset + page_size < MAX_DEPTH)
        .then(|| encode_cursor(offset + page_size));
    repository_facets.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut language_facets: Vec<(String, usize)> = languages.into_iter().collect();
    language_facets.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(Results {
        results,
        total_files,
        total_exact: !partial && !early,
        partial,
        next_cursor,
        took_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        repository_facets,
        language_facets,
        offset,
        repositories_indexed: 0,
    })
}

/// Sets its flag when dropped: a search whose request is gone stops its shard work.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Searches shards in parallel on the blocking pool (one task per core-sized chunk).
async fn search_shards(
    state: &AppState,
    repos: Vec<Searchable>,
    query: Arc<PreparedQuery>,
    stop: Stop,
) -> Result<Vec<(Searchable, ShardResult)>, SearchError> {
    let per_chunk = repos.len().div_ceil(search_threads()).max(1);
    let mut tasks = Vec::new();
    for chunk in repos.chunks(per_chunk) {
        let chunk = chunk.to_vec();
        let query = query.clone();
        let state = state.clone();
        let stop = stop.clone();
        let pool = state.search_pool.clone();
        tasks.push(tokio::spawn(async move {
            pool.run(move || {
                let mut out = Vec::with_capacity(chunk.len());
                for repo in chunk {
                    if stop.reached() {
                        // Shards not looked at make the answer partial, like a stopped shard.
                        out.push((
                            repo,
                            ShardResult {
                                partial: true,
                                ..ShardResult::default()
                            },
                        ));
                        continue;
                    }
                    let shard = match state.shards.get(repo.id) {
                        Ok(shard) => shard,
                        // Being deleted this moment: it leaves the results like it leaves the list.
                        Err(ShardError::Retired) => continue,
                        Err(ShardError::Index(e)) => return Err(index_fault(&state, repo.id, &e)),
                    };
                    let result = shard.search_until(&query, &stop).map_err(|e| match e {
                        crate::index::IndexError::BadPattern(m) => SearchError::Pattern(m),
                        other => index_fault(&state, repo.id, &other),
                    })?;
                    out.push((repo, result));
                }
                Ok::<_, SearchError>(out)
            })
            .await
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        let result = task.await.ok().flatten();
        all.extend(result.ok_or_else(|| SearchError::Database("a search task failed".into()))??);
    }
    Ok(all)
}

/// A shard that cannot be opened or read is our fault: named with its path for the log.
pub fn index_fault(state: &AppState, repo: RepoId, e: &impl std::fmt::Display) -> SearchError {
    SearchError::Index {
        repo,
        path: state.layout.shard_dir(repo).display().to_string(),
        detail: e.to_string(),
    }
}

fn file_hit(repo: &Searchable, file: FileMatch) -> FileHit {
    FileHit {
        doc: file.doc,
        repository: repo.name(),
        repository_id: repo.id,
        path: file.path,
        language: file.language,
        match_count: file.match_count,
        indexed_commit: repo.indexed_commit.clone(),
        bitbucket_ahead: repo.bitbucket_ahead(),
        score: file.score,
        matches: file.matches.into_iter().map(line_hit).collect(),
        more_matches: Vec::new(),
    }
}

fn line_hit(m: crate::index::LineMatch) -> LineHit {
    LineHit {
        line: m.line,
        text: m.text,
        ranges: m.ranges.into_iter().map(|(s, e)| [s, e]).collect(),
        definition: m.definition,
        before: m.before,
        after: m.after,
    }
}

/// Fills in the matching lines of the files that made the page (only these are read a
/// second time: ranking needed no lines), split between the search threads; with `more`,
/// then the next ones, within `MORE_LINES_PER_FILE` and `MORE_LINES_PER_PAGE`.
async fn add_lines(
    state: &AppState,
    files: Vec<FileHit>,
    query: Arc<PreparedQuery>,
    stop: Stop,
    more: bool,
) -> Result<(Vec<FileHit>, bool), SearchError> {
    let per_task = files.len().div_ceil(search_threads()).max(1);
    let mut tasks = Vec::new();
    let mut files = files.into_iter();
    loop {
        let chunk: Vec<FileHit> = files.by_ref().take(per_task).collect();
        if chunk.is_empty() {
            break;
        }
        let (state, query, stop) = (state.clone(), query.clone(), stop.clone());
        let pool = state.search_pool.clone();
        tasks.push(tokio::spawn(async move {
            pool.run(move || shown_lines(&state, chunk, &query, &stop))
                .await
        }));
    }
    let (mut out, mut partial) = (Vec::new(), false);
    for task in tasks {
        let (chunk, cut) = task
            .await
            .ok()
            .flatten()
            .ok_or_else(|| SearchError::Database("a search task failed".into()))??;
        out.extend(chunk);
        partial |= cut;
    }
    if !more {
        return Ok((out, partial));
    }
    let pool = state.search_pool.clone();
    let state = state.clone();
    let out = pool
        .run(move || more_lines(&state, out, &query, &stop))
        .await
        .ok_or_else(|| SearchError::Database("a search task failed".into()))??;
    Ok((out, partial))
}

/// How many search threads share one request's shards.
fn search_threads() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
}

/// The first `LINES_PER_FILE` matching lines of each file (a file whose repository is being
/// deleted leaves the page); true when the stop came first for some.
fn shown_lines(
    state: &AppState,
    files: Vec<FileHit>,
    query: &PreparedQuery,
    stop: &Stop,
) -> Result<(Vec<FileHit>, bool), SearchError> {
    let mut partial = false;
    let mut out = Vec::with_capacity(files.len());
    for mut file in files {
        if stop.reached() {
            partial = true;
            out.push(file);
            continue;
        }
        let Some((lines, count)) = file_lines(state, &file, query, LINES_PER_FILE)? else {
            continue;
        };
        file.matches = lines.into_iter().map(line_hit).collect();
        file.match_count = count;
        out.push(file);
    }
    Ok((out, partial))
}

/// Up to `limit` matching lines of a result file and the count of all; None when its
/// repository is being deleted (the file leaves the page).
fn file_lines(
    state: &AppState,
    file: &FileHit,
    query: &PreparedQuery,
    limit: usize,
) -> Result<Option<(Vec<crate::index::LineMatch>, usize)>, SearchError> {
    let shard = match state.shards.get(file.repository_id) {
        Ok(shard) => shard,
        Err(ShardError::Retired) => return Ok(None),
        Err(ShardError::Index(e)) => return Err(index_fault(state, file.repository_id, &e)),
    };
    shard
        .lines(file.doc, query, limit)
        .map(Some)
        .map_err(|e| index_fault(state, file.repository_id, &e))
}

/// The next matching lines after the shown ones, files in page order until the page's
/// budget is spent.
fn more_lines(
    state: &AppState,
    mut files: Vec<FileHit>,
    query: &PreparedQuery,
    stop: &Stop,
) -> Result<Vec<FileHit>, SearchError> {
    let mut budget = MORE_LINES_PER_PAGE;
    for file in &mut files {
        let wanted = MORE_LINES_PER_FILE.min(budget);
        if file.match_count <= LINES_PER_FILE || wanted == 0 || stop.reached() {
            continue;
        }
        // Read again with a larger limit rather than cut the first answer: which lines
        // lead (definitions first) depends on the limit, and the shown ones are always
        // among the larger set.
        let Some((all, _)) = file_lines(state, file, query, LINES_PER_FILE + wanted)? else {
            continue;
        };
        let shown: Vec<u32> = file.matches.iter().map(|m| m.line).collect();
        file.more_matches = all
            .into_iter()
            .filter(|l| !shown.contains(&l.line))
            .map(line_hit)
            .collect();
        budget = budget.saturating_sub(file.more_matches.len());
    }
    Ok(files)
}

fn encode_cursor(offset: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("o{offset}"))
}

fn decode_cursor(cursor: &str) -> Option<usize> {
    let raw = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let offset: usize = std::str::from_utf8(&raw)
        .ok()?
        .strip_prefix('o')?
        .parse()
        .ok()?;
    (offset < MAX_DEPTH).then_some(offset)
}
