//! The search page, the file view and `GET /api/v1/search`.

use askama::Template;
use askama_web::WebTemplate;
use axum::{
    Json,
    extract::{Path, Query as QueryString, State},
};
use serde::Deserialize;

use crate::{
    error::{ApiError, AppError},
    identity::ApiUser,
    ids::{CurrentUser, RepoId},
    state::AppState,
    view::human_bytes,
    visible,
};

use std::collections::HashMap;

use crate::index::Symbol;

use super::{
    FileHit, LineHit, Options, PAGE_SIZE, Results, SearchError, decode_offset, index_fault, query,
    run_counted,
};

#[derive(Deserialize)]
pub struct SearchParams {
    #[serde(default)]
    q: String,
    cursor: Option<String>,
    /// `exact=1`: count every matching file instead of stopping once the page is sure.
    exact: Option<String>,
}

impl SearchParams {
    fn exact(&self) -> bool {
        matches!(self.exact.as_deref(), Some("1" | "true" | "yes"))
    }
}

/// A line cut into plain and highlighted pieces, for the template.
pub struct Piece {
    pub text: String,
    pub mark: bool,
    /// In the file view: where this identifier is defined (go to definition).
    pub link: Option<String>,
}

/// Splits `text` at byte `ranges` (clamped to char boundaries).
pub fn pieces(text: &str, ranges: &[[usize; 2]]) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut at = 0;
    for [start, end] in ranges {
        let (start, end) = (floor(text, *start), floor(text, *end));
        if start < at || end <= start {
            continue;
        }
        if start > at {
            out.push(Piece {
                text: text[at..start].to_owned(),
                mark: false,
                link: None,
            });
        }
        out.push(Piece {
            text: text[start..end].to_owned(),
            mark: true,
            link: None,
        });
        at = end;
    }
    if at < text.len() {
        out.push(Piece {
            text: text[at..].to_owned(),
            mark: false,
            link: None,
        });
    }
    out
}

fn floor(text: &str, mut i: usize) -> usize {
    i = i.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

impl LineHit {
    pub fn pieces(&self) -> Vec<Piece> {
        pieces(&self.text, &self.ranges)
    }
}

/// One line of a result snippet: a match, or context around one.
pub struct SnippetLine {
    pub number: u32,
    pub pieces: Vec<Piece>,
    pub hit: bool,
    /// The line defines a searched identifier (or a `sym:` match).
    pub definition: bool,
}

/// Consecutive lines of a result file; the page puts a separator between snippets.
pub struct Snippet {
    pub lines: Vec<SnippetLine>,
}

/// Merges matches and their context lines into snippets: each line once (a match wins over
/// the same line as context), in order, split where lines are left out.
pub fn snippets(matches: &[LineHit]) -> Vec<Snippet> {
    let context = |number: u32, text: &str| SnippetLine {
        number,
        pieces: pieces(text, &[]),
        hit: false,
        definition: false,
    };
    let mut lines = std::collections::BTreeMap::new();
    for m in matches {
        if let Some(before) = &m.before
            && m.line > 1
        {
            lines
                .entry(m.line - 1)
                .or_insert_with(|| context(m.line - 1, before));
        }
        if let Some(after) = &m.after {
            lines
                .entry(m.line + 1)
                .or_insert_with(|| context(m.line + 1, after));
        }
        lines.insert(
            m.line,
            SnippetLine {
                number: m.line,
                pieces: m.pieces(),
                hit: true,
                definition: m.definition,
            },
        );
    }
    let mut out: Vec<Snippet> = Vec::new();
    for (number, line) in lines {
        match out.last_mut() {
            Some(s) if s.lines.last().is_some_and(|l| l.number + 1 == number) => {
                s.lines.push(line);
            }
            _ => out.push(Snippet { lines: vec![line] }),
        }
    }
    out
}

impl FileHit {
    pub fn href(&self, q: &str, line: u32) -> String {
        blob_href(self.repository_id, &self.path, q, line)
    }

    /// The bodies of the file's code table: the snippets shown, then — when more lines were
    /// read — all of them merged, which the page swaps in when "more" is opened.
    pub fn bodies(&self) -> Vec<(&'static str, Vec<Snippet>)> {
        if self.more_matches.is_empty() {
            return vec![("lines", snippets(&self.matches))];
        }
        let all: Vec<LineHit> = self
            .matches
            .iter()
            .chain(&self.more_matches)
            .cloned()
            .collect();
        vec![
            ("lines fewer", snippets(&self.matches)),
            ("lines all", snippets(&all)),
        ]
    }

    /// Matching lines not shown at first (the file view marks them all).
    pub fn more(&self) -> usize {
        self.match_count.saturating_sub(self.matches.len())
    }

    /// Matching lines neither shown nor revealed by "more": only the file view has them.
    pub fn beyond(&self) -> usize {
        self.more().saturating_sub(self.more_matches.len())
    }

    /// The file view at the last match the page has, where the others follow.
    pub fn more_href(&self, q: &str) -> String {
        let last = self
            .matches
            .iter()
            .chain(&self.more_matches)
            .map(|m| m.line)
            .max();
        self.href(q, last.unwrap_or(1))
    }
}

/// Link to the file view at a line, carrying the query for highlighting.
pub fn blob_href(repo_id: RepoId, path: &str, q: &str, line: u32) -> String {
    let path: String = path
        .split('/')
        .map(|s| crate::bitbucket::urlencode(s).replace('+', "%20"))
        .collect::<Vec<_>>()
        .join("/");
    let q: String = url::form_urlencoded::byte_serialize(q.as_bytes()).collect();
    format!("/repos/{repo_id}/blob/{path}?q={q}#L{line}")
}

#[derive(Template, WebTemplate)]
#[template(path = "search.html")]
pub struct SearchPage {
    user: Option<CurrentUser>,
    q: String,
    error: Option<String>,
    /// Where in the query the error is (characters from 0), to point at it.
    error_at: Option<usize>,
    results: Option<Results>,
}

/// A link in the row of page numbers; `href` is `None` for the current page and for gaps.
pub struct PageLink {
    pub label: String,
    pub href: Option<String>,
    pub current: bool,
}

impl SearchPage {
    /// Spaces up to the error's position, then a caret: drawn under the query.
    pub fn caret(&self) -> Option<String> {
        let at = self.error_at?;
        (!self.q.contains('\n') && at <= self.q.chars().count())
            .then(|| format!("{}^", " ".repeat(at)))
    }

    fn page_href(&self, offset: usize) -> String {
        let q: String = url::form_urlencoded::byte_serialize(self.q.as_bytes()).collect();
        if offset == 0 {
            format!("/search?q={q}")
        } else {
            format!("/search?q={q}&cursor={}", super::encode_cursor(offset))
        }
    }

    /// The previous page, if this is not the first.
    pub fn previous_href(&self) -> Option<String> {
        let r = self.results.as_ref()?;
        (r.offset > 0).then(|| self.page_href(r.offset.saturating_sub(PAGE_SIZE)))
    }

    /// Page numbers: the first, the last and two either side of this one, "…" between.
    pub fn page_links(&self) -> Vec<PageLink> {
        let Some(r) = &self.results else {
            return Vec::new();
        };
        let reachable = r.total_files.min(super::MAX_DEPTH);
        let pages = reachable.div_ceil(PAGE_SIZE).max(r.offset / PAGE_SIZE + 1);
        if pages <= 1 {
            return Vec::new();
        }
        let current = r.offset / PAGE_SIZE;
        let mut out = Vec::new();
        for page in 0..pages {
            if page == 0 || page + 1 == pages || page.abs_diff(current) <= 2 {
                out.push(PageLink {
                    label: (page + 1).to_string(),
                    href: (page != current).then(|| self.page_href(page * PAGE_SIZE)),
                    current: page == current,
                });
            } else if out.last().is_some_and(|l| l.label != "…") {
                out.push(PageLink {
                    label: "…".to_owned(),
                    href: None,
                    current: false,
                });
            }
        }
        out
    }

    fn narrow(&self, filter: &str) -> String {
        let q = format!("{} {filter}", self.q.trim());
        let q: String = url::form_urlencoded::byte_serialize(q.as_bytes()).collect();
        format!("/search?q={q}")
    }

    /// Link to the query with a `repo:` filter added (a facet).
    pub fn narrow_repo(&self, name: &str) -> String {
        self.narrow(&format!("repo:{}", name.rsplit('/').next().unwrap_or(name)))
    }

    /// Link to the query with a `lang:` filter added (a facet).
    pub fn narrow_lang(&self, lang: &str) -> String {
        self.narrow(&format!("lang:{lang}"))
    }

    /// Link to this page of the query, counting every matching file.
    pub fn exact_href(&self) -> String {
        let offset = self.results.as_ref().map_or(0, |r| r.offset);
        format!("{}&exact=1", self.page_href(offset))
    }

    /// Link to the next page of results.
    pub fn next_href(&self, cursor: &str) -> String {
        let q: String = url::form_urlencoded::byte_serialize(self.q.as_bytes()).collect();
        format!("/search?q={q}&cursor={cursor}")
    }

    /// A language facet's name: files of no language are "other" (a count, not a link: no
    /// filter selects them).
    pub fn language_name(lang: &str) -> &str {
        if lang.is_empty() { "other" } else { lang }
    }
}

/// `GET /search?q=`.
pub async fn page(
    State(state): State<AppState>,
    user: CurrentUser,
    QueryString(params): QueryString<SearchParams>,
) -> Result<SearchPage, AppError> {
    let exact = params.exact();
    let q = params.q;
    let (results, error, error_at) = if q.trim().is_empty() {
        (None, None, None)
    } else {
        let searched = match decode_offset(params.cursor.as_deref()) {
            Ok(offset) => {
                let options = Options {
                    exact,
                    more_lines: true,
                };
                run_counted(&state, user.id, &q, offset, PAGE_SIZE, None, options).await
            }
            Err(e) => Err(e),
        };
        match searched {
            Ok(results) => (Some(results), None, None),
            Err(e @ (SearchError::Index { .. } | SearchError::Database(_))) => {
                return Err(e.into());
            }
            Err(SearchError::Query(e)) => (None, Some(e.to_string()), Some(e.position)),
            Err(e) => (None, Some(e.to_string()), None),
        }
    };
    Ok(SearchPage {
        user: Some(user),
        q,
        error,
        error_at,
        results,
    })
}

/// `GET /api/v1/search?q=&cursor=`.
pub async fn api(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    QueryString(params): QueryString<SearchParams>,
) -> Result<Json<Results>, ApiError> {
    if params.q.len() > query::MAX_QUERY_BYTES {
        return Err(AppError::BadRequest(format!(
            "the query is longer than {} bytes",
            query::MAX_QUERY_BYTES
        ))
        .into());
    }
    Ok(Json(
        run_counted(
            &state,
            user.id,
            &params.q,
            decode_offset(params.cursor.as_deref()).map_err(AppError::from)?,
            PAGE_SIZE,
            None,
            Options {
                exact: params.exact(),
                more_lines: false,
            },
        )
        .await
        .map_err(AppError::from)?,
    ))
}

/// One line of the file view.
pub struct ViewLine {
    pub number: usize,
    pub pieces: Vec<Piece>,
}

#[derive(Template, WebTemplate)]
#[template(path = "blob.html")]
pub struct BlobPage {
    user: Option<CurrentUser>,
    repository: String,
    path: String,
    commit: String,
    language: String,
    bitbucket_url: String,
    notice: Option<String>,
    lines: Vec<ViewLine>,
    q: String,
    /// The file's definitions, in file order with their depth.
    outline: Vec<Symbol>,
}

impl BlobPage {
    /// The lines that hold a match, for the jump list above the file (at most 100).
    pub fn matching(&self) -> Vec<usize> {
        self.lines
            .iter()
            .filter(|l| l.pieces.iter().any(|p| p.mark))
            .map(|l| l.number)
            .take(100)
            .collect()
    }
}

/// `GET /repos/{id}/blob/{*path}`: the file at the indexed commit, from the shard only.
pub async fn blob(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((repo_id, path)): Path<(i64, String)>,
    QueryString(params): QueryString<SearchParams>,
) -> Result<BlobPage, AppError> {
    let repo = visible::readable_by_id(&state, user.id, repo_id).await?;
    let repo_id = repo.id;
    let (shard, file) = {
        let state = state.clone();
        let wanted = path.clone();
        tokio::task::spawn_blocking(move || {
            let shard = state.shards.get(repo_id).map_err(|e| match e {
                crate::shards::ShardError::Retired => AppError::NotFound,
                crate::shards::ShardError::Index(e) => index_fault(&state, repo_id, &e).into(),
            })?;
            let file = shard
                .read_file(&wanted)
                .map_err(|e| AppError::from(index_fault(&state, repo_id, &e)))?;
            Ok::<_, AppError>((shard, file))
        })
        .await
        .map_err(|e| AppError::Internal(e.to_string()))??
    };
    let bitbucket_url = format!(
        "{}/src/{}/{}",
        repo.html_url.trim_end_matches('/'),
        repo.indexed_commit,
        path.split('/')
            .map(crate::bitbucket::urlencode)
            .collect::<Vec<_>>()
            .join("/")
    );
    let mut outline = Vec::new();
    let (notice, lines) = match file {
        Some(bytes) => {
            // Highlighting compiles a regex and scans every line, and the definitions are
            // looked up per identifier: CPU work, off the runtime.
            let q = params.q.clone();
            let (wanted, slug) = (path.clone(), repo.slug.clone());
            let view;
            (view, outline) = tokio::task::spawn_blocking(move || {
                let (notice, mut lines) = view_lines(&bytes, &q);
                link_definitions(&shard, repo_id, &slug, &wanted, &mut lines);
                ((notice, lines), shard.outline(&wanted))
            })
            .await
            .map_err(|e| AppError::Internal(e.to_string()))?;
            view
        }
        None => {
            // Not in the shard: skipped on purpose (binary, too large) or not there at all.
            let skipped = skipped_reason(&state, repo_id, &repo.indexed_commit, &path).await;
            match skipped {
                Some(reason) => (Some(reason), Vec::new()),
                None => return Err(AppError::NotFound),
            }
        }
    };
    Ok(BlobPage {
        user: Some(user),
        repository: repo.name(),
        language: crate::index::language_of(&path).to_owned(),
        path,
        commit: repo.indexed_commit,
        bitbucket_url,
        notice,
        lines,
        q: params.q,
        outline,
    })
}

/// Identifiers linked per file view at most (distinct names looked up); past it, the rest
/// of the file stays plain text.
const MAX_LINKED_NAMES: usize = 5000;

/// Links each identifier of the view that the repository defines to its definition: one
/// definition → the file view at its line; several → a `sym:` search in this repository.
/// A definition's own name is left plain; a highlighted match that is a whole identifier
/// is linked too.
fn link_definitions(
    shard: &crate::index::Shard,
    repo_id: RepoId,
    slug: &str,
    path: &str,
    lines: &mut [ViewLine],
) {
    let ident = regex::Regex::new(r"[A-Za-z_$][A-Za-z0-9_$]*").ok();
    let Some(ident) = ident else { return };
    let mut targets: HashMap<String, Option<String>> = HashMap::new();
    let mut target = |name: &str, line: usize| -> Option<String> {
        if !targets.contains_key(name) {
            if targets.len() >= MAX_LINKED_NAMES {
                return None;
            }
            let defs = shard.definitions_named(name, 2);
            let href = match defs.as_slice() {
                [] => None,
                [one] => Some(blob_href(repo_id, &one.path, "", one.line)),
                _ => {
                    let q = format!("sym:/^{}$/ repo:{slug}", regex::escape(name));
                    let q: String = url::form_urlencoded::byte_serialize(q.as_bytes()).collect();
                    Some(format!("/search?q={q}"))
                }
            };
            targets.insert(name.to_owned(), href);
        }
        let href = targets.get(name)?.as_ref()?;
        // The definition itself needs no link to itself.
        let number = u32::try_from(line).unwrap_or(u32::MAX);
        (*href != blob_href(repo_id, path, "", number)).then(|| href.clone())
    };
    for line in lines.iter_mut() {
        let mut out = Vec::with_capacity(line.pieces.len());
        for mut piece in std::mem::take(&mut line.pieces) {
            if piece.mark {
                if ident
                    .find(&piece.text)
                    .is_some_and(|m| m.len() == piece.text.len())
                {
                    piece.link = target(&piece.text, line.number);
                }
                out.push(piece);
                continue;
            }
            let mut at = 0;
            for m in ident.find_iter(&piece.text) {
                let Some(href) = target(m.as_str(), line.number) else {
                    continue;
                };
                if m.start() > at {
                    out.push(plain(&piece.text[at..m.start()], None));
                }
                out.push(plain(m.as_str(), Some(href)));
                at = m.end();
            }
            if at < piece.text.len() {
                out.push(plain(&piece.text[at..], None));
            }
        }
        line.pieces = out;
    }
}

fn plain(text: &str, link: Option<String>) -> Piece {
    Piece {
        text: text.to_owned(),
        mark: false,
        link,
    }
}

/// The file view shows at most this many lines, each cut at `MAX_VIEW_LINE_BYTES`.
const MAX_VIEW_LINES: usize = 20_000;
const MAX_VIEW_LINE_BYTES: usize = 10_000;

/// The file's lines for the view with the query's matches marked, and a notice when the
/// file is longer (or wider) than the view shows.
fn view_lines(bytes: &[u8], q: &str) -> (Option<String>, Vec<ViewLine>) {
    let text = String::from_utf8_lossy(bytes);
    let marker = if q.trim().is_empty() {
        None
    } else {
        highlighter(q)
    };
    let mut cut_lines = false;
    let lines: Vec<ViewLine> = text
        .lines()
        .take(MAX_VIEW_LINES)
        .enumerate()
        .map(|(i, line)| {
            let line = if line.len() > MAX_VIEW_LINE_BYTES {
                cut_lines = true;
                let mut end = MAX_VIEW_LINE_BYTES;
                while !line.is_char_boundary(end) {
                    end -= 1;
                }
                &line[..end]
            } else {
                line
            };
            ViewLine {
                number: i + 1,
                pieces: match &marker {
                    Some(re) => pieces(
                        line,
                        &re.find_iter(line)
                            .map(|m| [m.start(), m.end()])
                            .filter(|[s, e]| e > s)
                            .take(50)
                            .collect::<Vec<_>>(),
                    ),
                    None => vec![Piece {
                        text: line.to_owned(),
                        mark: false,
                        link: None,
                    }],
                },
            }
        })
        .collect();
    let total = text.lines().count();
    let notice = if total > lines.len() {
        Some(format!(
            "This file has {total} lines; the first {} are shown here. The whole file is on Bitbucket.",
            lines.len()
        ))
    } else if cut_lines {
        Some(format!(
            "Lines longer than {MAX_VIEW_LINE_BYTES} bytes are cut here. The whole file is on Bitbucket."
        ))
    } else {
        None
    };
    (notice, lines)
}

/// A regex marking what the query's positive terms match, for the file view.
fn highlighter(q: &str) -> Option<regex::Regex> {
    let query = query::parse(q).ok()?;
    let sq = query.shard_query(1, 1);
    let alternatives: Vec<String> = sq.must.iter().map(|p| format!("(?:{})", p.regex)).collect();
    if alternatives.is_empty() {
        return None;
    }
    regex::RegexBuilder::new(&alternatives.join("|"))
        .case_insensitive(!query.case_sensitive)
        .size_limit(4 * 1024 * 1024)
        .build()
        .ok()
}

/// Why a file of the indexed commit is not in the shard, if it is in the commit at all.
async fn skipped_reason(
    state: &AppState,
    repo_id: RepoId,
    commit: &str,
    path: &str,
) -> Option<String> {
    let git_dir = state.layout.clone_dir(repo_id);
    let (commit, path) = (commit.to_owned(), path.to_owned());
    let limit = state.config.max_file_bytes;
    tokio::task::spawn_blocking(move || {
        let repo = git2::Repository::open_bare(git_dir).ok()?;
        let tree = repo
            .find_commit(git2::Oid::from_str(&commit).ok()?)
            .ok()?
            .tree()
            .ok()?;
        let entry = tree.get_path(std::path::Path::new(&path)).ok()?;
        // The size comes from the object header: a huge blob is never inflated to learn it.
        let (size, kind) = repo.odb().ok()?.read_header(entry.id()).ok()?;
        if kind != git2::ObjectType::Blob {
            return None;
        }
        if size as u64 > limit {
            return Some(format!(
                "This file is {} — larger than the indexing limit, so it is not shown.",
                human_bytes(i64::try_from(size).unwrap_or(i64::MAX))
            ));
        }
        let blob = repo.find_blob(entry.id()).ok()?;
        Some(if blob.is_binary() {
            "This is a binary file, so it is not shown.".to_owned()
        } else {
            "This file was not indexed.".to_owned()
        })
    })
    .await
    .ok()
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(line: u32, before: Option<&str>, after: Option<&str>) -> LineHit {
        LineHit {
            line,
            text: format!("hit {line}"),
            ranges: vec![[0, 3]],
            before: before.map(str::to_owned),
            after: after.map(str::to_owned),
            definition: false,
        }
    }

    #[test]
    fn close_matches_share_one_snippet_and_far_ones_are_split() {
        // Matches on 15 and 16 (their context overlaps), then 22, then 35.
        let matches = [
            hit(15, Some("c14"), Some("c16")),
            hit(16, Some("c15"), Some("c17")),
            hit(22, Some("c21"), Some("c23")),
            hit(35, Some("c34"), None),
        ];
        let snippets = snippets(&matches);
        let numbers: Vec<Vec<u32>> = snippets
            .iter()
            .map(|s| s.lines.iter().map(|l| l.number).collect())
            .collect();
        assert_eq!(
            numbers,
            [vec![14, 15, 16, 17], vec![21, 22, 23], vec![34, 35]]
        );
        // Line 16 is a match, not the context copy of it.
        let sixteen = &snippets[0].lines[2];
        assert!(sixteen.hit && sixteen.pieces.iter().any(|p| p.mark));
        assert!(!snippets[0].lines[0].hit);
    }

    #[test]
    fn the_first_line_has_no_line_zero_before_it() {
        let numbers: Vec<u32> = snippets(&[hit(1, Some("?"), None)])[0]
            .lines
            .iter()
            .map(|l| l.number)
            .collect();
        assert_eq!(numbers, [1]);
    }
}
