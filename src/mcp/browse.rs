//! The tools that browse without a query: `list_repositories`, `read_file` (numbered lines,
//! a range, the ceiling) and `list_files` (prefix or glob, a limit, "N more").

use schemars::JsonSchema;
use serde::Deserialize;

use super::{
    CodeTools, ToolResult,
    answer::{Answer, cut_line},
    freshness_note,
};
use crate::{
    ids::CurrentUser,
    index::{PathFilter, PathMatcher},
    repositories,
    sync::RepoState,
    view::format_time,
};

/// Lines `read_file` returns from `start_line` when no `end_line` is given.
const DEFAULT_LINES: u32 = 500;
/// A line longer than this is shown cut, with how many bytes were left out.
const MAX_LINE_BYTES: usize = 2000;
/// Paths `list_files` returns unless `limit` says otherwise, and at most.
const DEFAULT_LIST: u32 = 200;
const MAX_LIST: u32 = 2000;
/// The longest glob accepted.
const MAX_GLOB_BYTES: usize = 1024;

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ReadArgs {
    /// The repository, as "<workspace>/<slug>".
    pub repository: String,
    /// The file's path in the repository, e.g. "src/main.rs".
    pub path: String,
    /// First line to return (1-based, default 1).
    pub start_line: Option<u32>,
    /// Last line to return, inclusive (default: start_line + 499, or where the answer
    /// ceiling cuts).
    pub end_line: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListArgs {
    /// The repository, as "<workspace>/<slug>".
    pub repository: String,
    /// Only paths matching this glob: `*` within a folder, `**` across folders, `?` one
    /// character; without a "/" it matches any one path segment ("*.py" = "**/*.py").
    pub glob: Option<String>,
    /// Only paths starting with this, e.g. "src/" (a glob here works like `glob`).
    pub path_prefix: Option<String>,
    /// Paths to return, 1 to 2000 (default 200).
    pub limit: Option<u32>,
    /// Paths to skip, to page on (an answer that stops early says which offset is next).
    pub offset: Option<u32>,
}

/// `read_file`'s description.
pub fn read_description(ceiling: usize) -> String {
    format!(
        "Read a file of an indexed repository at its indexed commit, with 1-based line numbers (`  12  text`). \
         Returns start_line to end_line (default: {DEFAULT_LINES} lines from start_line), never more than about {} KB: \
         when cut, the answer says which start_line continues. Lines longer than {MAX_LINE_BYTES} bytes are cut and say so. \
         Binary files are refused; a missing file is \"not found\" (list_files and search_code show the paths).",
        ceiling / 1000
    )
}

/// `list_files`' description.
pub fn list_description(ceiling: usize) -> String {
    format!(
        "List the files of an indexed repository at its indexed commit, sorted by path: one line each with path, \
         language and size in bytes. Narrow with `glob` (e.g. \"src/**/*.rs\", \"*.py\") and/or `path_prefix` \
         (e.g. \"src/\"); `limit` paths per answer (default {DEFAULT_LIST}, at most {MAX_LIST}, and never more than about {} KB); \
         the answer says how many more there are and which `offset` continues.",
        ceiling / 1000
    )
}

impl CodeTools {
    pub(super) async fn repositories(&self, user: &CurrentUser) -> ToolResult {
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
        let mut answer = Answer::new(self.state.config.mcp_answer_bytes);
        let total = rows.len();
        for (n, r) in rows.into_iter().enumerate() {
            let readable = searchable.iter().find(|s| s.id == r.id);
            let (ws, slug, files, language) = (&r.workspace, &r.slug, r.files, &r.language);
            let line = format!(
                "{ws}/{slug} — {}{}{}, {files} files{}\n",
                if readable.is_some() {
                    RepoState::Ready
                } else {
                    r.state
                },
                r.indexed_commit
                    .map(|c| format!(", commit {}", c.get(..12).unwrap_or(&c)))
                    .unwrap_or_default(),
                readable
                    .and_then(|s| s.indexed_at)
                    .map(|t| format!(", indexed {}", format_time(t)))
                    .unwrap_or_default(),
                if language.is_empty() {
                    String::new()
                } else {
                    format!(", {language}")
                },
            );
            if !answer.add(&line) {
                answer.always(&format!(
                    "[cut at the answer ceiling: {} more repositories; name one in search_code's `repository` to work with it]\n",
                    total - n
                ));
                break;
            }
        }
        Ok(answer.finish())
    }

    pub(super) async fn read(&self, user: &CurrentUser, args: ReadArgs) -> ToolResult {
        let repo = self.repository(user.id, &args.repository).await?;
        let path = args.path.clone();
        let bytes = self
            .shard_call(repo.id, move |shard| shard.read_file(&path))
            .await?;
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
        let total = lines.len();
        let start = args.start_line.unwrap_or(1).max(1) as usize;
        let end = args
            .end_line
            .map_or(start + DEFAULT_LINES as usize - 1, |e| e as usize)
            .min(total);
        if start > total.max(1) || end < start {
            return Err(format!(
                "the file has {total} lines; ask for a range inside it (start_line 1 to {total})"
            ));
        }
        let mut answer = Answer::new(self.state.config.mcp_answer_bytes);
        answer.always(&format!(
            "{} {} ({}commit {}, {total} lines) lines {start}–{end}:\n",
            repo.name(),
            args.path,
            match crate::index::language_of(&args.path) {
                "" => String::new(),
                l => format!("{l}, "),
            },
            repo.indexed_commit
                .get(..12)
                .unwrap_or(&repo.indexed_commit),
        ));
        answer.always(&freshness_note(
            &repo.indexed_commit,
            repo.bitbucket_ahead(),
        ));
        for (i, line) in lines.iter().enumerate().take(end).skip(start - 1) {
            let n = i + 1;
            if !answer.add(&format!("{n:>6}  {}\n", cut_line(line, MAX_LINE_BYTES))) {
                answer.always(&format!(
                    "[cut at the answer ceiling of {} bytes: lines {n}–{end} are not shown; call read_file with start_line={n}]\n",
                    self.state.config.mcp_answer_bytes
                ));
                return Ok(answer.finish());
            }
        }
        if end < total {
            answer.always(&format!(
                "… {} more lines: call read_file with start_line={}\n",
                total - end,
                end + 1
            ));
        }
        Ok(answer.finish())
    }

    pub(super) async fn list(&self, user: &CurrentUser, args: ListArgs) -> ToolResult {
        let repo = self.repository(user.id, &args.repository).await?;
        let mut prefix = args.path_prefix.filter(|p| !p.is_empty());
        let mut glob = args.glob.filter(|g| !g.is_empty());
        // A prefix with wildcards is a glob (as this tool always took it).
        if glob.is_none()
            && prefix
                .as_deref()
                .is_some_and(|p| p.contains(['*', '?', '[', '{']))
        {
            glob = prefix.take();
        }
        if glob.as_ref().is_some_and(|g| g.len() > MAX_GLOB_BYTES) {
            return Err(format!("the glob is longer than {MAX_GLOB_BYTES} bytes"));
        }
        // Compiled once, before any path is read; a bad glob is the caller's error.
        let matcher = match &glob {
            Some(g) => Some(
                PathMatcher::new(&PathFilter::Glob(g.clone()))
                    .map_err(|e| format!("the glob was not understood: {e}"))?,
            ),
            None => None,
        };
        let limit = args.limit.unwrap_or(DEFAULT_LIST).clamp(1, MAX_LIST) as usize;
        let offset = args.offset.unwrap_or(0) as usize;
        let filter = prefix.clone();
        // Filtering 200,000 paths is CPU work: it runs beside the shard read, off the runtime.
        let matching = self
            .shard_call(repo.id, move |shard| {
                Ok(shard
                    .list_files()?
                    .into_iter()
                    .filter(|(path, _, _)| {
                        filter.as_deref().is_none_or(|p| path.starts_with(p))
                            && matcher.as_ref().is_none_or(|m| m.matches(path))
                    })
                    .collect::<Vec<_>>())
            })
            .await?;
        let total = matching.len();
        let mut narrowed = Vec::new();
        if let Some(p) = &prefix {
            narrowed.push(format!("starting with {p:?}"));
        }
        if let Some(g) = &glob {
            narrowed.push(format!("matching {g:?}"));
        }
        let mut answer = Answer::new(self.state.config.mcp_answer_bytes);
        answer.always(&format!(
            "{total} file{} in {}{}{} (commit {}):\n",
            if total == 1 { "" } else { "s" },
            repo.name(),
            if narrowed.is_empty() { "" } else { " " },
            narrowed.join(" and "),
            repo.indexed_commit
                .get(..12)
                .unwrap_or(&repo.indexed_commit),
        ));
        let mut next = offset;
        for (path, language, size) in matching.iter().skip(offset).take(limit) {
            let language = if language.is_empty() { "-" } else { language };
            if !answer.add(&format!("{path}\t{language}\t{size}\n")) {
                break;
            }
            next += 1;
        }
        if next < total {
            answer.always(&format!(
                "… {} more: call list_files with offset={next}{}\n",
                total - next,
                if next - offset < limit {
                    " (this answer stopped at the answer ceiling)"
                } else {
                    ""
                }
            ));
        }
        Ok(answer.finish())
    }
}
