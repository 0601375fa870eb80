//! "The repositories this user may read": one query, used by the search page, the file view,
//! the JSON API and MCP alike. A repository is readable when it is the user's, selected,
//! indexed, in a linked and reachable workspace, and the user's Bitbucket connection is live.

use crate::{
    db::Backend,
    error::AppError,
    ids::{RepoId, UserId},
    state::AppState,
};

/// A repository whose shard the user may search.
#[derive(Clone, Debug, sqlx::FromRow, serde::Deserialize)]
pub struct Searchable {
    pub id: RepoId,
    pub workspace: String,
    pub slug: String,
    pub full_name: String,
    pub indexed_commit: String,
    /// When the indexed commit's shard was built (unix seconds).
    pub indexed_at: Option<i64>,
    pub html_url: String,
    /// Bitbucket's main branch head when last checked.
    pub head_commit: Option<String>,
}

impl Searchable {
    /// True when Bitbucket's main branch has moved past the indexed commit (an update is on
    /// its way): answers from this repository may be out of date.
    pub fn bitbucket_ahead(&self) -> bool {
        self.head_commit
            .as_deref()
            .is_some_and(|head| head != self.indexed_commit)
    }

    /// `<workspace>/<slug>`, how results and MCP name a repository.
    pub fn name(&self) -> String {
        format!("{}/{}", self.workspace, self.slug)
    }
}

/// Who may read what: the joins and conditions every variant below shares.
const READABLE_FROM: &str = "FROM repositories r \
     JOIN workspaces w ON w.id = r.workspace_id AND w.user_id = $1 \
     JOIN bitbucket_connections c ON c.user_id = $1 AND c.status = 'ok' \
     JOIN users u ON u.id = $1 AND u.purging = 0 \
     WHERE r.user_id = $1 AND r.selected = 1 AND r.indexed_commit IS NOT NULL \
       AND w.linked = 1 AND w.reachable = 1 AND w.purging = 0";

/// Where each field of a `Searchable` comes from, for the row and the JSON form alike.
const COLUMNS: [(&str, &str); 8] = [
    ("id", "r.id"),
    ("workspace", "w.slug"),
    ("slug", "r.slug"),
    ("full_name", "r.full_name"),
    ("indexed_commit", "r.indexed_commit"),
    ("indexed_at", "r.indexed_at"),
    ("html_url", "r.html_url"),
    ("head_commit", "r.head_commit"),
];

/// `SELECT <columns> FROM … WHERE …` followed by `condition`, one row per repository.
fn select_rows(condition: &str) -> String {
    let columns: Vec<String> = COLUMNS.iter().map(|(f, e)| format!("{e} AS {f}")).collect();
    format!("SELECT {} {READABLE_FROM} {condition}", columns.join(", "))
}

/// Every repository the user may read, chosen by user id before any query text is read.
///
/// Asked on every search, so the rows come back as one JSON array in one row: a row at a
/// time through the driver cost milliseconds for a few hundred repositories.
pub async fn readable(state: &AppState, user: UserId) -> Result<Vec<Searchable>, AppError> {
    let fields: Vec<String> = COLUMNS.iter().map(|(f, e)| format!("'{f}', {e}")).collect();
    let fields = fields.join(", ");
    let select = match state.db.backend {
        Backend::Sqlite => {
            format!("SELECT json_group_array(json_object({fields})) {READABLE_FROM}")
        }
        Backend::Postgres => {
            format!(
                "SELECT COALESCE(json_agg(json_build_object({fields}))::text, '[]') {READABLE_FROM}"
            )
        }
    };
    let json: String = sqlx::query_scalar(sqlx::AssertSqlSafe(select))
        .bind(user)
        .fetch_one(&state.db.pool)
        .await?;
    let mut repos: Vec<Searchable> = serde_json::from_str(&json)
        .map_err(|e| AppError::Internal(format!("the readable repositories: {e}")))?;
    repos.sort_by_key(|r| r.id);
    Ok(repos)
}

/// One readable repository by the id a request named; anyone else's is "not found".
pub async fn readable_by_id(
    state: &AppState,
    user: UserId,
    repo_id: i64,
) -> Result<Searchable, AppError> {
    sqlx::query_as(sqlx::AssertSqlSafe(select_rows("AND r.id = $2")))
        .bind(user)
        .bind(repo_id)
        .fetch_optional(&state.db.pool)
        .await?
        .ok_or(AppError::NotFound)
}

/// One readable repository by `<workspace>/<slug>` (case-insensitive), else "not found".
pub async fn readable_by_name(
    state: &AppState,
    user: UserId,
    name: &str,
) -> Result<Searchable, AppError> {
    let Some((workspace, slug)) = name.trim().split_once('/') else {
        return Err(AppError::NotFound);
    };
    sqlx::query_as(sqlx::AssertSqlSafe(select_rows(
        "AND lower(w.slug) = lower($2) AND lower(r.slug) = lower($3)",
    )))
    .bind(user)
    .bind(workspace)
    .bind(slug)
    .fetch_optional(&state.db.pool)
    .await?
    .ok_or(AppError::NotFound)
}
