//! The tools over definitions: `find_symbol` (where a name is defined, across the user's
//! repositories) and `file_outline` (one file's definitions), both under the answer ceiling.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{CodeTools, ToolResult, answer::Answer, freshness_note};
use crate::{ids::CurrentUser, search};

#[derive(Debug, Deserialize, JsonSchema)]
pub struct FindSymbolArgs {
    /// The symbol's name, or part of it (case-insensitive); or a /regex/ (case-sensitive).
    pub name: String,
    /// Only this kind: function, method, class, struct, enum, interface, trait, type,
    /// module, macro or constant.
    pub kind: Option<String>,
    /// Only this repository, as "<workspace>/<slug>".
    pub repository: Option<String>,
    /// Definitions to return (default 10, at most 50).
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct OutlineArgs {
    /// The repository, as "<workspace>/<slug>".
    pub repository: String,
    /// The file's path in the repository, e.g. "src/main.rs".
    pub path: String,
}

impl CodeTools {
    pub(super) async fn find_symbol_answer(
        &self,
        user: &CurrentUser,
        args: FindSymbolArgs,
    ) -> ToolResult {
        let only = match &args.repository {
            Some(name) => Some(self.repository(user.id, name).await?.id),
            None => None,
        };
        let limit = args.limit.unwrap_or(10).clamp(1, 50) as usize;
        let found = search::symbols::find(
            &self.state,
            user.id,
            &args.name,
            args.kind.as_deref(),
            only,
            limit,
        )
        .await
        .map_err(|e| format!("symbol search failed: {e}"))?;
        if found.symbols.is_empty() {
            return Ok(format!(
                "No definition matches {:?}. Try part of the name, or search_code for uses.",
                args.name
            ));
        }
        let state = self.state.clone();
        let hits = found.symbols.clone();
        let context = tokio::task::spawn_blocking(move || {
            search::symbols::definition_context(&state, &hits, 4)
        })
        .await
        .unwrap_or_default();
        let repos = self.searchable(user.id).await?;
        let base = self.state.config.public_origin();
        let mut answer = Answer::new(self.state.config.mcp_answer_bytes);
        let mut head = format!("{} definitions", found.total);
        if found.total > found.symbols.len() {
            head.push_str(&format!(
                " (showing the best {}; give the exact name, a kind or a repository to narrow)",
                found.symbols.len()
            ));
        }
        head.push('\n');
        answer.always(&head);
        let mut named = Vec::new();
        for (i, hit) in found.symbols.iter().enumerate() {
            let s = &hit.symbol;
            let mut block = format!(
                "\n## {} {} {} — {} {}, lines {}–{}{}\n{base}{}\n",
                s.kind,
                s.name,
                s.container
                    .as_deref()
                    .map(|c| format!("(in {c})"))
                    .unwrap_or_default(),
                hit.repository,
                s.path,
                s.start_line,
                s.end_line,
                if s.language.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", s.language)
                },
                hit.url,
            );
            if !named.contains(&hit.repository_id) {
                named.push(hit.repository_id);
                if let Some(r) = repos.iter().find(|r| r.id == hit.repository_id) {
                    block.push_str(&format!(
                        "{}: {}",
                        r.name(),
                        freshness_note(&r.indexed_commit, r.bitbucket_ahead())
                    ));
                }
            }
            for (n, line) in context.get(i).into_iter().flatten().enumerate() {
                block.push_str(&format!("{:>6}  {line}\n", s.line as usize + n));
            }
            if !answer.add(&block) {
                answer.always(&format!(
                    "\n[cut at the answer ceiling of {} bytes: {} more definitions not shown; lower `limit` or give a repository]\n",
                    self.state.config.mcp_answer_bytes,
                    found.symbols.len() - i
                ));
                break;
            }
        }
        Ok(answer.finish())
    }

    pub(super) async fn outline_answer(&self, user: &CurrentUser, args: OutlineArgs) -> ToolResult {
        let repo = self.repository(user.id, &args.repository).await?;
        let path = args.path.clone();
        let (exists, outline) = self
            .shard_call(repo.id, move |shard| {
                Ok((shard.read_file(&path)?.is_some(), shard.outline(&path)))
            })
            .await?;
        if !exists {
            return Err(format!(
                "not found: {} has no indexed file at that path (list_files shows the paths)",
                repo.name()
            ));
        }
        let mut answer = Answer::new(self.state.config.mcp_answer_bytes);
        answer.always(&format!(
            "{} {} — {} definitions\n{}",
            repo.name(),
            args.path,
            outline.len(),
            freshness_note(&repo.indexed_commit, repo.bitbucket_ahead())
        ));
        if outline.is_empty() {
            answer.always(
                "(none found: the language has no grammar here, or the file defines nothing)\n",
            );
        }
        for (i, s) in outline.iter().enumerate() {
            let line = format!(
                "{}{} {}  lines {}–{}\n",
                "  ".repeat(s.depth.min(16) as usize),
                s.kind,
                s.name,
                s.start_line,
                s.end_line
            );
            if !answer.add(&line) {
                answer.always(&format!(
                    "[cut at the answer ceiling of {} bytes: {} more definitions from line {}; read_file shows the file in ranges]\n",
                    self.state.config.mcp_answer_bytes,
                    outline.len() - i,
                    s.start_line
                ));
                break;
            }
        }
        Ok(answer.finish())
    }
}
