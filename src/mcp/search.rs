//! `search_code`: the search page's ranking, with every matching line of each file shown in
//! place with `context_lines` around it (merged where they meet), scoped by repository and
//! path, cut at the answer ceiling with a cursor that continues at the exact line it stopped.

use std::collections::HashMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    CodeTools, ToolResult,
    answer::{Answer, cut_line, decode_cursor, encode_cursor, fingerprint},
};
use crate::{
    ids::{CurrentUser, RepoId},
    index::{ExcerptLine, PreparedQuery},
    search::{self, FileHit, SearchError, pages::blob_href, query, syntax},
    view::format_time,
    visible::Searchable,
};

/// Files per answer unless `max_results` says otherwise, and at most.
const DEFAULT_RESULTS: u32 = 10;
const MAX_RESULTS: u32 = 50;
/// Context lines unless `context_lines` says otherwise, and at most.
const DEFAULT_CONTEXT: u32 = 2;
const MAX_CONTEXT: u32 = 10;

#[derive(Debug, Deserialize, JsonSchema)]
pub struct SearchArgs {
    /// The query, in codelayer's query language (see the tool description).
    pub query: String,
    /// Only this repository, as "<workspace>/<slug>" (list_repositories shows them).
    pub repository: Option<String>,
    /// Only paths containing this text or matching this glob, e.g. "src/" or "**/*.py".
    pub path: Option<String>,
    /// Lines of context before and after each matching line, 0 to 10 (default 2). Matches
    /// closer than that share their context.
    pub context_lines: Option<u32>,
    /// Files to return, 1 to 50 (default 10).
    #[serde(alias = "limit")]
    pub max_results: Option<u32>,
    /// The `cursor` a previous answer ended with, to continue exactly where it stopped
    /// (pass the same query, repository and path).
    pub cursor: Option<String>,
}

/// Where an answer stopped: `file` files deep in the ranking, at line `line` of that file
/// (0: its start); `repo` and `path` (hashed) name that file, `args` the search.
#[derive(Debug, Serialize, Deserialize)]
struct Cursor {
    args: String,
    file: usize,
    line: u32,
    repo: i64,
    path: String,
}

/// The tool description: what it does, then the query language from `search::syntax`.
pub fn description(ceiling: usize) -> String {
    format!(
        "Search the code of your indexed repositories (grep-like, over every repository you can read). \
         Returns the best matching files first; for each: repository, path, language, the indexed commit, \
         and every matching line with 1-based line numbers (`  42: text`) and `context_lines` lines around it \
         (`  41  text`; `--` separates groups that are not adjacent). An answer never exceeds about {} KB: \
         when cut or when more files match, it ends with a `cursor` to pass back to continue exactly there.\n\n{}",
        ceiling / 1000,
        syntax::plain_text()
    )
}

impl CodeTools {
    pub(super) async fn search(&self, user: &CurrentUser, args: SearchArgs) -> ToolResult {
        query::parse(&args.query).map_err(|e| explain(&args.query, &e))?;
        let context = args.context_lines.unwrap_or(DEFAULT_CONTEXT);
        if context > MAX_CONTEXT {
            return Err(format!(
                "context_lines is at most {MAX_CONTEXT} (got {context})"
            ));
        }
        let page = args
            .max_results
            .unwrap_or(DEFAULT_RESULTS)
            .clamp(1, MAX_RESULTS) as usize;
        let only = match &args.repository {
            Some(name) if !name.trim().is_empty() => Some(self.repository(user.id, name).await?.id),
            _ => None,
        };
        let path = args.path.as_deref().filter(|p| !p.is_empty());
        let text = match path {
            Some(p) => format!(
                "{} path:\"{}\"",
                args.query,
                p.replace('\\', "\\\\").replace('"', "\\\"")
            ),
            None => args.query.clone(),
        };
        let search_id = fingerprint(&[
            &args.query,
            args.repository.as_deref().unwrap_or(""),
            path.unwrap_or(""),
        ]);
        let start = match args.cursor.as_deref().filter(|c| !c.is_empty()) {
            Some(c) => {
                let cursor: Cursor = decode_cursor(c).ok_or(
                    "the cursor is not one this tool made; pass it back exactly as it was given",
                )?;
                if cursor.args != search_id {
                    return Err("the cursor belongs to another search: pass the same query, repository and path as the call that returned it".into());
                }
                Some(cursor)
            }
            None => None,
        };
        let offset = start.as_ref().map_or(0, |c| c.file);

        let results = search::run_at(&self.state, user.id, &text, offset, page, only)
            .await
            .map_err(|e| match e {
                SearchError::Query(e) => explain(&text, &e),
                SearchError::Pattern(m) => format!("invalid query: {m}"),
                SearchError::Busy => "too many searches are running; try again in a moment".into(),
                other => {
                    tracing::error!(error = %other, "MCP search failed");
                    "the search failed on our side; try again".into()
                }
            })?;
        if let Some(c) = &start {
            // A cursor made mid-file names that file: it must still be the one at its place.
            let same = c.repo == 0
                || results.results.first().is_some_and(|f| {
                    f.repository_id.get() == c.repo && fingerprint(&[&f.path]) == c.path
                });
            if !same {
                return Err("the cursor no longer fits: a repository was re-indexed since it was made. Run the search again without cursor.".into());
            }
        }
        let repos: HashMap<RepoId, Searchable> = self
            .searchable(user.id)
            .await?
            .into_iter()
            .map(|r| (r.id, r))
            .collect();
        let excerpts = self.excerpts(&text, &results.results, context).await?;

        let mut answer = Answer::new(self.state.config.mcp_answer_bytes);
        answer.always(&summary(&results, offset, &repos));
        let base = self.state.config.public_origin();
        let mut stopped: Option<(usize, u32)> = None;
        'files: for (k, (hit, lines)) in results.results.iter().zip(&excerpts).enumerate() {
            let from = match (&start, k) {
                (Some(c), 0) => c.line,
                _ => 0,
            };
            let shown: Vec<&ExcerptLine> = lines.iter().filter(|l| l.line >= from).collect();
            // The link opens the file view at the first match shown.
            let anchor = shown
                .iter()
                .find(|l| l.is_match())
                .or(shown.first())
                .map(|l| l.line);
            let header = file_header(hit, &repos, from, &args.query, &base, anchor);
            let first_len = shown.first().map_or(0, |l| l.text.len() + 10);
            if !answer.fits(header.len() + first_len) {
                stopped = Some((offset + k, from));
                break;
            }
            answer.add(&header);
            let mut previous: Option<u32> = None;
            for line in shown {
                let gap = if previous.is_some_and(|p| line.line > p + 1) {
                    "    --\n"
                } else {
                    ""
                };
                let mark = if line.is_match() { ':' } else { ' ' };
                let rendered = format!("{gap}{:>6}{mark} {}\n", line.line, line.text);
                if !answer.add(&rendered) {
                    stopped = Some((offset + k, line.line));
                    break 'files;
                }
                previous = Some(line.line);
            }
        }

        let cursor_at = |file: usize, line: u32, hit: Option<&FileHit>| {
            encode_cursor(&Cursor {
                args: search_id.clone(),
                file,
                line,
                repo: hit.map_or(0, |h| h.repository_id.get()),
                path: hit.map_or_else(String::new, |h| fingerprint(&[&h.path])),
            })
        };
        let shown_to = offset + results.results.len();
        if let Some((file, line)) = stopped {
            let hit = results.results.get(file - offset);
            let place = match (hit, line) {
                (Some(h), 0) => format!("{} {}", h.repository, h.path),
                (Some(h), l) => format!("{} {} line {l}", h.repository, h.path),
                (None, _) => "the next file".into(),
            };
            answer.always(&format!(
                "\n[cut at the answer ceiling of {} bytes; the rest starts at {place}. To continue, call search_code again with the same arguments and cursor: {}]\n",
                self.state.config.mcp_answer_bytes,
                cursor_at(file, line, hit)
            ));
        } else if results.next_cursor.is_some() {
            // The next page's first file is not known yet: the cursor names none, and the
            // next call checks nothing about it.
            answer.always(&format!(
                "\n[{} more matching files. To continue, call search_code again with the same arguments and cursor: {}]\n",
                results.total_files.saturating_sub(shown_to),
                encode_cursor(&Cursor {
                    args: search_id.clone(),
                    file: shown_to,
                    line: 0,
                    repo: 0,
                    path: String::new(),
                })
            ));
        } else if results.total_files > shown_to {
            answer.always(&format!(
                "\n[{} more matching files are past the paging depth of {}: add words or filters (path:, lang:, repo:) to narrow]\n",
                results.total_files - shown_to,
                search::MAX_DEPTH
            ));
        }
        if results.partial {
            answer.always(
                "[the search stopped at its deadline: more files may match than are counted]\n",
            );
        }
        Ok(answer.finish())
    }

    /// Each file's matching lines with their context, read from the shards off the runtime.
    async fn excerpts(
        &self,
        text: &str,
        files: &[FileHit],
        context: u32,
    ) -> Result<Vec<Vec<ExcerptLine>>, String> {
        let text = text.to_owned();
        let wanted: Vec<(RepoId, String)> = files
            .iter()
            .map(|f| (f.repository_id, f.path.clone()))
            .collect();
        let state = self.state.clone();
        tokio::task::spawn_blocking(move || {
            let parsed = query::parse(&text).map_err(|e| e.to_string())?;
            let prepared =
                PreparedQuery::new(&parsed.shard_query(0, 0)).map_err(|e| e.to_string())?;
            let mut out = Vec::with_capacity(wanted.len());
            for (repo, path) in wanted {
                // A shard retired or unreadable since the search: the file shows no lines.
                let content = state
                    .shards
                    .get(repo)
                    .ok()
                    .and_then(|shard| shard.read_file(&path).ok().flatten());
                out.push(content.map_or_else(Vec::new, |c| prepared.excerpt(&c, context as usize)));
            }
            Ok::<_, String>(out)
        })
        .await
        .map_err(|_| "the search failed on our side; try again".to_owned())?
    }
}

/// The first lines: how many files match, which are shown, and the commits they come from.
fn summary(
    results: &search::Results,
    offset: usize,
    repos: &HashMap<RepoId, Searchable>,
) -> String {
    let mut out = format!(
        "{}{} matching file{}",
        results.total_files,
        if results.total_exact { "" } else { "+" },
        if results.total_files == 1 { "" } else { "s" }
    );
    if !results.results.is_empty() {
        out.push_str(&format!(
            " (files {}–{} below)",
            offset + 1,
            offset + results.results.len()
        ));
    }
    out.push('\n');
    let mut named: Vec<RepoId> = Vec::new();
    for hit in &results.results {
        if !named.contains(&hit.repository_id) {
            named.push(hit.repository_id);
        }
    }
    for id in named {
        if let Some(r) = repos.get(&id) {
            out.push_str(&format!(
                "{}: indexed commit {}{}; {}\n",
                r.name(),
                r.indexed_commit,
                r.indexed_at
                    .map(|t| format!(" at {}", format_time(t)))
                    .unwrap_or_default(),
                if r.bitbucket_ahead() {
                    "Bitbucket's main branch has moved past it: the code may have changed (an update is on its way)"
                } else {
                    "up to date with Bitbucket's main branch"
                }
            ));
        }
    }
    out
}

fn file_header(
    hit: &FileHit,
    repos: &HashMap<RepoId, Searchable>,
    from: u32,
    query: &str,
    base: &str,
    first_line: Option<u32>,
) -> String {
    let mut facts = Vec::new();
    if !hit.language.is_empty() {
        facts.push(hit.language.clone());
    }
    if hit.match_count > 0 {
        facts.push(format!(
            "{} matching line{}",
            hit.match_count,
            if hit.match_count == 1 { "" } else { "s" }
        ));
    }
    if let Some(r) = repos.get(&hit.repository_id) {
        facts.push(format!(
            "commit {}",
            r.indexed_commit.get(..12).unwrap_or(&r.indexed_commit)
        ));
    }
    if from > 0 {
        facts.push(format!("continued from line {from}"));
    }
    format!(
        "\n## {} {} ({})\n{base}{}\n",
        hit.repository,
        cut_line(&hit.path, 1000),
        facts.join(", "),
        blob_href(hit.repository_id, &hit.path, query, first_line.unwrap_or(1)),
    )
}

/// A query the parser refused, as a tool error an agent can act on: the message, the query
/// with a caret under the spot, and the corrected query when the fix is obvious.
pub fn explain(input: &str, e: &query::ParseError) -> String {
    let chars: Vec<char> = input
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    // A window of the query around the spot, so a 4 KiB query does not fill the answer.
    let from = e.position.saturating_sub(60);
    let to = (e.position + 60).min(chars.len());
    let shown: String = chars[from.min(to)..to].iter().collect();
    let lead = if from > 0 { "…" } else { "" };
    let mut out = format!(
        "invalid query: {} (at character {}, counting from 0)\n  {lead}{shown}\n  {}^\n",
        e.message,
        e.position,
        " ".repeat(e.position - from.min(e.position) + lead.chars().count())
    );
    match &e.suggestion {
        Some(fixed) => out.push_str(&format!("corrected query: {fixed}\n")),
        None => out.push_str("The query language is in this tool's description.\n"),
    }
    out
}
