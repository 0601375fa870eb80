//! Repositories: the per-workspace list with selection and build state, pages and JSON API.

pub mod load;

use askama::Template;
use askama_web::WebTemplate;
use axum::{
    Json,
    extract::{Path, Query, State},
    response::Redirect,
};
use serde::{Deserialize, Serialize};
use tower_sessions::Session;

use crate::{
    db::Flag,
    error::{ApiError, AppError},
    identity::ApiUser,
    ids::{CurrentUser, RepoId, UserId, WorkspaceId},
    jobs::Job,
    state::AppState,
    sync::RepoState,
    view::{Flash, format_clock, format_time, human_bytes},
    workspaces::{self, WorkspaceStatus, WorkspaceView},
};

/// A repository as pages and the API show it.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct RepositoryView {
    pub id: RepoId,
    pub workspace: String,
    pub slug: String,
    pub name: String,
    pub full_name: String,
    pub language: String,
    pub size: i64,
    #[sqlx(try_from = "i64")]
    pub is_private: Flag,
    pub updated_on: String,
    #[sqlx(try_from = "i64")]
    pub selected: Flag,
    #[sqlx(try_from = "String")]
    pub state: RepoState,
    pub progress: String,
    pub indexed_commit: Option<String>,
    /// Bitbucket's main branch head when last checked, and when that was.
    pub head_commit: Option<String>,
    #[serde(serialize_with = "crate::view::serialize_rfc3339")]
    pub checked_at: Option<i64>,
    /// Bitbucket's head has moved past the indexed commit (since `ahead_since`).
    #[sqlx(try_from = "i64")]
    pub bitbucket_ahead: Flag,
    #[serde(serialize_with = "crate::view::serialize_rfc3339")]
    pub ahead_since: Option<i64>,
    pub files: i64,
    pub bytes: i64,
    pub error: Option<String>,
    #[serde(skip)]
    pub workspace_id: WorkspaceId,
    #[serde(skip)]
    pub indexed_at: Option<i64>,
    /// The last build's statistics (JSON of `index::BuildStats`).
    #[serde(skip)]
    pub skipped: String,
    /// The repository's page on Bitbucket.
    #[serde(skip)]
    pub html_url: String,
    /// `progress` as a number from 0 to 100 (a clone's objects, an index build's files).
    #[sqlx(skip)]
    pub progress_percent: Option<u8>,
}

/// "42%" → 42; "12/48 files" → 25; anything else (nothing yet) → None.
fn percent_of(progress: &str) -> Option<u8> {
    let progress = progress.trim();
    if let Some(n) = progress.strip_suffix('%') {
        return n.trim().parse::<u8>().ok().map(|n| n.min(100));
    }
    let (done, total) = progress.split_whitespace().next()?.split_once('/')?;
    let (done, total): (u64, u64) = (done.parse().ok()?, total.parse().ok()?);
    (total > 0).then(|| u8::try_from(done.min(total) * 100 / total).unwrap_or(100))
}

impl RepositoryView {
    fn with_percent(mut self) -> RepositoryView {
        self.progress_percent = if self.state.is_busy() {
            percent_of(&self.progress)
        } else {
            None
        };
        self
    }

    /// Queued, cloning or indexing.
    pub fn busy(&self) -> bool {
        self.state.is_busy()
    }

    /// The progress bar's value (0 while nothing is known yet).
    pub fn percent(&self) -> u8 {
        self.progress_percent.unwrap_or(0)
    }

    /// A search in this repository only.
    pub fn search_href(&self) -> String {
        let q = format!("repo:{}", self.full_name);
        format!(
            "/search?q={}",
            url::form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>()
        )
    }

    pub fn size_text(&self) -> String {
        human_bytes(self.size)
    }
    pub fn updated_text(&self) -> &str {
        self.updated_on.get(..10).unwrap_or(&self.updated_on)
    }

    /// What the last build left out on purpose, for people: "2 binary, 1 too large".
    pub fn skipped_text(&self) -> String {
        let Ok(stats) = serde_json::from_str::<crate::index::BuildStats>(&self.skipped) else {
            return String::new();
        };
        let mut parts: Vec<String> = [
            (stats.skipped_binary, "binary"),
            (stats.skipped_large, "too large"),
            (stats.skipped_too_deep, "too deep"),
            (stats.skipped_long_path, "with too long a path"),
            (stats.skipped_over_file_limit, "over the file limit"),
            (stats.skipped_over_byte_limit, "over the byte limit"),
            (stats.submodules, "submodules"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        if let Some(cap) = stats.stopped_at_entries {
            parts.push(format!(
                "the tree has more than {} entries, the rest was not read",
                group_thousands(cap)
            ));
        }
        parts.join(", ")
    }

    /// How fresh the index is, for the page: "indexed abc1234 · checked … · up to date" or
    /// "… · Bitbucket is ahead since …, updating". Empty before the first check.
    pub fn freshness_text(&self) -> String {
        let Some(checked) = self.checked_at.filter(|_| self.selected.0) else {
            return String::new();
        };
        let indexed = self
            .indexed_commit
            .as_deref()
            .map_or("nothing indexed".to_owned(), |c| {
                format!("indexed {}", c.get(..7).unwrap_or(c))
            });
        let verdict = if !self.bitbucket_ahead.0 {
            "up to date".to_owned()
        } else {
            let since = format_clock(self.ahead_since.unwrap_or(checked));
            let head = self.head_commit.as_deref().unwrap_or_default();
            let head = head.get(..7).unwrap_or(head);
            let what = if self.state == RepoState::Failed {
                "the update failed, it is tried again on a schedule"
            } else {
                "updating"
            };
            format!("Bitbucket is ahead since {since} (at {head}), {what}")
        };
        format!("{indexed} · checked {} · {verdict}", format_clock(checked))
    }

    /// What the state column says: "ready · abc1234 · 12 files · 1.2 MB · 2026-…".
    pub fn state_text(&self) -> String {
        match self.state {
            RepoState::Ready => {
                let commit = self
                    .indexed_commit
                    .as_deref()
                    .map_or("empty repository".to_owned(), |c| {
                        c.get(..7).unwrap_or(c).to_owned()
                    });
                format!(
                    "ready · {commit} · {} file{} · {} · {}",
                    self.files,
                    if self.files == 1 { "" } else { "s" },
                    human_bytes(self.bytes),
                    format_time(self.indexed_at.unwrap_or(0))
                )
            }
            RepoState::Cloning | RepoState::Indexing if !self.progress.is_empty() => {
                format!("{} {}", self.state, self.progress)
            }
            other => other.as_str().to_owned(),
        }
    }
}

const LISTED: &str = "SELECT r.id, w.slug AS workspace, r.slug, r.name, r.full_name, r.language, r.size, \
       r.is_private, r.updated_on, r.selected, r.state, r.progress, r.indexed_commit, r.files, \
       r.bytes, r.error, r.workspace_id, r.indexed_at, r.skipped, r.html_url, r.head_commit, \
       r.checked_at, r.ahead_since, CASE WHEN r.head_commit IS NOT NULL \
         AND (r.indexed_commit IS NULL OR r.head_commit <> r.indexed_commit) THEN 1 ELSE 0 END \
         AS bitbucket_ahead \
     FROM repositories r JOIN workspaces w ON w.id = r.workspace_id \
     WHERE r.user_id = $1 AND w.user_id = $1 AND w.purging = 0 AND w.linked = 1";

#[cfg(test)]
mod tests {
    #[test]
    fn progress_as_a_number() {
        assert_eq!(super::percent_of("42%"), Some(42));
        assert_eq!(super::percent_of("12/48 files"), Some(25));
        assert_eq!(super::percent_of("0/0 files"), None);
        assert_eq!(super::percent_of(""), None);
    }
}

/// 1000000 → "1,000,000".
fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The user's repositories in Active workspaces (Inactive ones have none: they are purged).
pub async fn list_for_user(
    state: &AppState,
    user_id: UserId,
) -> Result<Vec<RepositoryView>, AppError> {
    let rows: Vec<RepositoryView> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{LISTED} ORDER BY lower(w.name), lower(r.name), r.id"
    )))
    .bind(user_id)
    .fetch_all(&state.db.pool)
    .await?;
    Ok(rows.into_iter().map(RepositoryView::with_percent).collect())
}

/// One listed repository by the id a request named, only if it is the user's.
pub async fn find_for_user(
    state: &AppState,
    user_id: UserId,
    repo_id: i64,
) -> Result<RepositoryView, AppError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("{LISTED} AND r.id = $2")))
        .bind(user_id)
        .bind(repo_id)
        .fetch_optional(&state.db.pool)
        .await?
        .map(RepositoryView::with_percent)
        .ok_or(AppError::NotFound)
}

/// One workspace's section of the page.
pub struct Section {
    pub workspace: WorkspaceView,
    pub repositories: Vec<RepositoryView>,
}

/// The filter box and "Tick all shown" without JavaScript (with it, both work in place).
#[derive(Deserialize)]
pub struct ListParams {
    #[serde(default)]
    filter: String,
    /// `tick=shown`: the rows the filter shows come ticked.
    tick: Option<String>,
}

/// The filter box reads this much of what was typed.
const MAX_FILTER_CHARS: usize = 200;

#[derive(Template, WebTemplate)]
#[template(path = "repositories.html")]
pub struct RepositoriesPage {
    user: Option<CurrentUser>,
    flash: Option<Flash>,
    sections: Vec<Section>,
    /// Repositories being built now, and their average progress.
    building: usize,
    building_percent: u8,
    filter: String,
    tick_shown: bool,
}

impl RepositoriesPage {
    /// Whether the filter shows this row: it names every word (like the live filter).
    pub fn shown(&self, r: &RepositoryView) -> bool {
        let name = format!("{} {}", r.name, r.full_name).to_lowercase();
        self.filter
            .to_lowercase()
            .split_whitespace()
            .all(|word| name.contains(word))
    }

    /// Whether the row's box is ticked: selected before, or "Tick all shown" asked for it.
    pub fn ticked(&self, r: &RepositoryView) -> bool {
        r.selected.0 || (self.tick_shown && self.shown(r))
    }

    /// This page with the shown rows ticked.
    pub fn tick_href(&self) -> String {
        let filter: String = url::form_urlencoded::byte_serialize(self.filter.as_bytes()).collect();
        format!("/repositories?filter={filter}&tick=shown")
    }
}

/// `GET /repositories`.
pub async fn page(
    State(state): State<AppState>,
    session: Session,
    user: CurrentUser,
    Query(params): Query<ListParams>,
) -> Result<RepositoriesPage, AppError> {
    let mut repositories = list_for_user(&state, user.id).await?;
    let busy: Vec<u64> = repositories
        .iter()
        .filter(|r| r.busy())
        .map(|r| u64::from(r.percent()))
        .collect();
    let building = busy.len();
    let building_percent = (busy.iter().sum::<u64>())
        .checked_div(busy.len() as u64)
        .map_or(0, |p| u8::try_from(p).unwrap_or(100));
    let sections = workspaces::list_for_user(&state, user.id)
        .await?
        .into_iter()
        .filter(|w| w.status == WorkspaceStatus::Active)
        .map(|workspace| {
            let mine;
            (mine, repositories) = repositories
                .drain(..)
                .partition(|r| r.workspace_id == workspace.id);
            Section {
                workspace,
                repositories: mine,
            }
        })
        .collect();
    Ok(RepositoriesPage {
        flash: Flash::take(&session).await,
        user: Some(user),
        sections,
        building,
        building_percent,
        filter: params.filter.chars().take(MAX_FILTER_CHARS).collect(),
        tick_shown: params.tick.as_deref() == Some("shown"),
    })
}

/// `GET /api/v1/repositories`.
pub async fn api_list(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
) -> Result<Json<Vec<RepositoryView>>, ApiError> {
    Ok(Json(list_for_user(&state, user.id).await?))
}

/// Selects repositories (all must be the user's, else 404) and queues the build of those
/// not built or building yet; returns how many it queued.
async fn select_and_build(
    state: &AppState,
    user: &CurrentUser,
    ids: &[i64],
) -> Result<usize, AppError> {
    if ids.is_empty() {
        return Err(AppError::BadRequest(
            "Select at least one repository.".into(),
        ));
    }
    if ids.len() > 10_000 {
        return Err(AppError::BadRequest(
            "Too many repositories in one request.".into(),
        ));
    }
    let mut mine = Vec::with_capacity(ids.len());
    for id in ids {
        match find_for_user(state, user.id, *id).await {
            Ok(repo) => mine.push(repo),
            Err(AppError::NotFound) => {
                tracing::info!(user_id = %user.id, repo_id = id, "selection of a repository that is not the user's");
                return Err(AppError::NotFound);
            }
            Err(e) => return Err(e),
        }
    }
    let mut queued = 0;
    for repo in &mine {
        // Ticked and already ready (or on its way): nothing to build; "Sync now" is for that.
        if repo.selected.0 && repo.state != RepoState::Failed && repo.state != RepoState::Available
        {
            continue;
        }
        if queue_sync(state, user.id, repo.id, true).await? {
            queued += 1;
        }
    }
    Ok(queued)
}

/// Marks a repository queued and adds its sync job; false when it was busy already.
async fn queue_sync(
    state: &AppState,
    user_id: UserId,
    repo_id: RepoId,
    select: bool,
) -> Result<bool, AppError> {
    let updated = sqlx::query(
        "UPDATE repositories SET selected = CASE WHEN $3 = 1 THEN 1 ELSE selected END, \
           state = $4, progress = '', error = NULL \
         WHERE id = $1 AND user_id = $2 AND (selected = 1 OR $3 = 1) \
           AND state NOT IN ($5, $6)",
    )
    .bind(repo_id)
    .bind(user_id)
    .bind(i64::from(select))
    .bind(RepoState::Queued.as_str())
    .bind(RepoState::Cloning.as_str())
    .bind(RepoState::Indexing.as_str())
    .execute(&state.db.pool)
    .await?;
    if updated.rows_affected() == 1 {
        state.enqueue(&Job::SyncRepository { repo_id }).await?;
        return Ok(true);
    }
    // A build is running: asked for now, it runs once more after it (it may have started
    // before what the user wants to see), instead of the request being dropped.
    let building: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM repositories WHERE id = $1 AND user_id = $2 AND selected = 1 \
           AND state IN ($3, $4)",
    )
    .bind(repo_id)
    .bind(user_id)
    .bind(RepoState::Cloning.as_str())
    .bind(RepoState::Indexing.as_str())
    .fetch_optional(&state.db.pool)
    .await?;
    if building.is_some() {
        state.enqueue(&Job::SyncRepository { repo_id }).await?;
    }
    Ok(false)
}

/// `POST /repositories/index` (form with repeated `ids`): "Create knowledge layer".
pub async fn index_form(
    State(state): State<AppState>,
    session: Session,
    user: CurrentUser,
    body: axum::body::Bytes,
) -> Result<Redirect, AppError> {
    let ids: Result<Vec<i64>, _> = url::form_urlencoded::parse(&body)
        .filter(|(k, _)| k == "ids")
        .map(|(_, v)| v.parse::<i64>())
        .collect();
    let ids = ids.map_err(|_| AppError::BadRequest("The selection was not understood.".into()))?;
    let flash = match select_and_build(&state, &user, &ids).await {
        Ok(0) => Flash::ok(
            "The ticked repositories are ready or being built already; \"Sync now\" fetches one again."
                .to_owned(),
        ),
        Ok(n) => Flash::ok(format!(
            "Building the knowledge layer for {n} repositor{}. Progress shows below.",
            if n == 1 { "y" } else { "ies" }
        )),
        Err(AppError::BadRequest(msg)) => Flash::error(msg),
        Err(e) => return Err(e),
    };
    flash.set(&session).await;
    Ok(Redirect::to("/repositories"))
}

/// `POST /repositories/{id}/sync`: "Sync now" and "Retry".
pub async fn sync_form(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<i64>,
) -> Result<Redirect, AppError> {
    let repo = find_for_user(&state, user.id, id).await?;
    queue_sync(&state, user.id, repo.id, false).await?;
    Ok(Redirect::to(&format!("/repositories#repo-{id}")))
}

/// Body of `POST /api/v1/repositories/index`.
#[derive(Deserialize)]
pub struct IndexRequest {
    ids: Vec<i64>,
}

/// `POST /api/v1/repositories/index`.
pub async fn api_index(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Json(request): Json<IndexRequest>,
) -> Result<Json<Vec<RepositoryView>>, ApiError> {
    select_and_build(&state, &user, &request.ids).await?;
    Ok(Json(list_for_user(&state, user.id).await?))
}

/// `POST /api/v1/repositories/{id}/sync`.
pub async fn api_sync(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path(id): Path<i64>,
) -> Result<Json<RepositoryView>, ApiError> {
    let repo = find_for_user(&state, user.id, id).await?;
    if !repo.selected.0 {
        return Err(
            AppError::BadRequest("Select the repository for indexing first.".into()).into(),
        );
    }
    queue_sync(&state, user.id, repo.id, false).await?;
    Ok(Json(find_for_user(&state, user.id, id).await?))
}

/// At start-up: builds and purges a crash interrupted get their job back (their job row may be gone
/// if the crash came between steps; the dedupe key keeps this from doubling work).
pub async fn resume_interrupted(state: &AppState) -> Result<(), sqlx::Error> {
    let stuck: Vec<RepoId> = sqlx::query_scalar(
        "SELECT id FROM repositories WHERE selected = 1 AND state IN ($1, $2, $3)",
    )
    .bind(RepoState::Queued.as_str())
    .bind(RepoState::Cloning.as_str())
    .bind(RepoState::Indexing.as_str())
    .fetch_all(&state.db.pool)
    .await?;
    for repo_id in stuck {
        state
            .ensure_queued(&Job::SyncRepository { repo_id })
            .await?;
    }
    // A crash between marking a purge and queueing it must not leave it undone.
    let workspaces: Vec<WorkspaceId> =
        sqlx::query_scalar("SELECT id FROM workspaces WHERE purging = 1")
            .fetch_all(&state.db.pool)
            .await?;
    for workspace_id in workspaces {
        state
            .ensure_queued(&Job::PurgeWorkspace { workspace_id })
            .await?;
    }
    let users: Vec<UserId> = sqlx::query_scalar("SELECT id FROM users WHERE purging = 1")
        .fetch_all(&state.db.pool)
        .await?;
    for user_id in users {
        state.ensure_queued(&Job::PurgeUser { user_id }).await?;
    }
    Ok(())
}

/// Fetches every selected repository again once per sync interval. A repository whose
/// first build failed waits for the user's Retry (its error is on the page).
pub async fn resync_on_schedule(state: AppState) {
    let interval = state.config.sync_interval;
    let mut tick = tokio::time::interval(interval.min(std::time::Duration::from_secs(60)));
    loop {
        tick.tick().await;
        let due = crate::db::now() - i64::try_from(interval.as_secs()).unwrap_or(i64::MAX);
        let repos: Result<Vec<RepoId>, _> = sqlx::query_scalar(
            "SELECT r.id FROM repositories r JOIN workspaces w ON w.id = r.workspace_id \
             WHERE r.selected = 1 AND r.state IN ($2, $3) AND r.synced_at IS NOT NULL \
               AND r.synced_at < $1 AND w.linked = 1 AND w.purging = 0",
        )
        .bind(due)
        .bind(RepoState::Ready.as_str())
        .bind(RepoState::Failed.as_str())
        .fetch_all(&state.db.pool)
        .await;
        match repos {
            Ok(repos) => {
                for repo_id in repos {
                    // Queued by id: the job itself checks the head before rebuilding.
                    if let Err(e) = state.ensure_queued(&Job::SyncRepository { repo_id }).await {
                        tracing::warn!(error = %e, "scheduling a sync failed");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "finding repositories to sync failed"),
        }
    }
}
