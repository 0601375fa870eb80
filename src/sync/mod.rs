//! The knowledge-layer build of one repository: fetch the main branch into a bare clone,
//! build a shard from the commit's tree under tmp/, swap it in atomically, record the result.
//!
//! Runs as the `SyncRepository` job; git and tantivy work happens on the blocking pool, and
//! progress goes to the repository row as it happens so the page can show it live.

use std::{path::PathBuf, time::Duration};

use serde::Serialize;
use tokio::sync::watch;
use url::Url;

use crate::{
    auth::tokens::TokenError,
    bitbucket::urlencode,
    db::now,
    git,
    ids::{RepoId, UserId},
    index::{self, BuildStats},
    jobs::JobError,
    state::AppState,
};

/// Where a repository's knowledge layer stands; stored as text in `repositories.state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RepoState {
    /// Listed, not selected.
    Available,
    Queued,
    Cloning,
    Indexing,
    Ready,
    Failed,
}

impl RepoState {
    /// The stored and JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            RepoState::Available => "available",
            RepoState::Queued => "queued",
            RepoState::Cloning => "cloning",
            RepoState::Indexing => "indexing",
            RepoState::Ready => "ready",
            RepoState::Failed => "failed",
        }
    }
}

impl RepoState {
    /// Queued, cloning or indexing: work on it is under way.
    pub fn is_busy(self) -> bool {
        matches!(
            self,
            RepoState::Queued | RepoState::Cloning | RepoState::Indexing
        )
    }
}

impl std::fmt::Display for RepoState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for RepoState {
    type Error = String;
    fn try_from(s: String) -> Result<RepoState, String> {
        [
            RepoState::Available,
            RepoState::Queued,
            RepoState::Cloning,
            RepoState::Indexing,
            RepoState::Ready,
            RepoState::Failed,
        ]
        .into_iter()
        .find(|state| state.as_str() == s)
        .ok_or_else(|| format!("unknown repository state {s:?}"))
    }
}

#[derive(sqlx::FromRow)]
struct Target {
    user_id: UserId,
    workspace: String,
    slug: String,
    main_branch: Option<String>,
    indexed_commit: Option<String>,
}

/// The `SyncRepository` job.
pub async fn run(state: &AppState, repo_id: RepoId) -> Result<(), JobError> {
    let db = |e: sqlx::Error| JobError::Retry(format!("database: {e}"));
    let target: Option<Target> = sqlx::query_as(
        "SELECT r.user_id, w.slug AS workspace, r.slug, r.main_branch, r.indexed_commit \
         FROM repositories r JOIN workspaces w ON w.id = r.workspace_id \
         WHERE r.id = $1 AND r.selected = 1 AND w.linked = 1 AND w.purging = 0",
    )
    .bind(repo_id)
    .fetch_optional(&state.db.pool)
    .await
    .map_err(db)?;
    // Deselected, disconnected or deleted meanwhile: nothing to build.
    let Some(target) = target else {
        return Ok(());
    };
    match build(state, repo_id, &target).await {
        Ok(()) => Ok(()),
        Err(reason) => {
            tracing::warn!(%repo_id, %reason, "knowledge layer build failed");
            // The worker records the failure on the row: the user sees the reason and Retry.
            Err(JobError::Permanent(reason))
        }
    }
}

/// Shows a build's failure on the repository row, with the reason (the page offers Retry),
/// and when the schedule tries again: after one poll interval, doubling with every failure in
/// a row, at most the sync interval apart.
pub async fn mark_failed(
    state: &AppState,
    repo_id: RepoId,
    reason: &str,
) -> Result<(), sqlx::Error> {
    let failures: i64 = sqlx::query_scalar("SELECT failures FROM repositories WHERE id = $1")
        .bind(repo_id)
        .fetch_optional(&state.db.pool)
        .await?
        .unwrap_or(0)
        + 1;
    let delay = retry_delay(
        state.config.poll_interval,
        state.config.sync_interval,
        failures,
    );
    sqlx::query(
        "UPDATE repositories SET state = $2, progress = '', error = $3, failures = $4, \
           retry_at = $5 WHERE id = $1",
    )
    .bind(repo_id)
    .bind(RepoState::Failed.as_str())
    .bind(reason)
    .bind(failures)
    .bind(now() + i64::try_from(delay.as_secs()).unwrap_or(i64::MAX / 2))
    .execute(&state.db.pool)
    .await?;
    Ok(())
}

/// `base × 2^(failures − 1)`, capped at `cap` (and never below `base`).
pub fn retry_delay(base: Duration, cap: Duration, failures: i64) -> Duration {
    let exponent = u32::try_from(failures.clamp(1, 32) - 1).unwrap_or(0);
    base.saturating_mul(2u32.saturating_pow(exponent))
        .min(cap.max(base))
}

async fn build(state: &AppState, repo_id: RepoId, target: &Target) -> Result<(), String> {
    let db = |e: sqlx::Error| format!("database: {e}");
    let layout = &state.layout;
    let Some(branch) = target.main_branch.clone() else {
        // An empty repository: ready, with nothing indexed.
        state.shards.forget(repo_id);
        remove_dir(layout.shard_dir(repo_id)).await;
        record(state, repo_id, None, &BuildStats::default())
            .await
            .map_err(db)?;
        return Ok(());
    };

    set_state(state, repo_id, RepoState::Cloning, "")
        .await
        .map_err(db)?;
    let url = clone_url(&state.config.git_url, &target.workspace, &target.slug)?;
    let head = match fetch(state, repo_id, target.user_id, &url, &branch, None).await {
        Err(FetchFailure::Unauthorized(token)) => {
            // Once more with a refreshed token; a second refusal is final.
            let fresh = state
                .tokens
                .after_unauthorized(target.user_id, &token)
                .await
                .map_err(token_message)?;
            fetch(state, repo_id, target.user_id, &url, &branch, Some(fresh)).await
        }
        other => other,
    }
    .map_err(|e| e.to_string())?;

    let head_hex = head.to_string();
    let shard = layout.shard_dir(repo_id);
    // A shard of an older format is rebuilt even when the branch has not moved.
    if target.indexed_commit.as_deref() == Some(head_hex.as_str())
        && index::shard_is_current(&shard)
    {
        tracing::info!(%repo_id, "main branch unchanged; nothing to rebuild");
        set_state(state, repo_id, RepoState::Ready, "")
            .await
            .map_err(db)?;
        // The fetch just read Bitbucket's head: that is a check too.
        sqlx::query(
            "UPDATE repositories SET error = NULL, synced_at = $2, failures = 0, retry_at = NULL, \
               head_commit = $3, checked_at = $2, ahead_since = NULL WHERE id = $1",
        )
        .bind(repo_id)
        .bind(now())
        .bind(&head_hex)
        .execute(&state.db.pool)
        .await
        .map_err(db)?;
        return Ok(());
    }

    set_state(state, repo_id, RepoState::Indexing, "")
        .await
        .map_err(db)?;
    let tmp = layout.build_dir(repo_id, &crate::auth::crypto::random_token(6));
    let (tx, rx) = watch::channel((0u64, 0u64));
    let reporter = report_progress(state, repo_id, rx, |(done, total)| {
        format!("{done}/{total} files")
    });
    let git_dir = layout.clone_dir(repo_id);
    let limits = state.config.index_limits();
    let out = tmp.clone();
    let previous = shard.clone();
    let built = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(out.parent().unwrap_or(&out)).map_err(|e| e.to_string())?;
        index::build_shard(
            &git_dir,
            head,
            &out,
            &limits,
            Some(&previous),
            &|done, total| {
                let _ = tx.send((done, total));
            },
        )
        .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| format!("indexing stopped: {e}"))?;
    reporter.abort();
    let stats = match built {
        Ok(stats) => stats,
        Err(e) => {
            remove_dir(tmp).await;
            return Err(format!("indexing failed: {e}"));
        }
    };
    swap_in(&tmp, &shard)
        .await
        .map_err(|e| format!("installing the index failed: {e}"))?;
    // Recorded before the readers are dropped: a search between the two would otherwise
    // keep (in the recent-answers cache) new content labelled with the old commit.
    let recorded = record(state, repo_id, Some(&head_hex), &stats).await;
    state.shards.forget(repo_id);
    recorded.map_err(db)?;
    tracing::info!(
        %repo_id,
        files = stats.files,
        bytes = stats.bytes,
        ms = stats.duration_ms,
        "repository indexed"
    );
    Ok(())
}

enum FetchFailure {
    /// The token that git refused (to refresh once).
    Unauthorized(String),
    Other(String),
}

impl std::fmt::Display for FetchFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchFailure::Unauthorized(_) => {
                f.write_str(&git::FetchError::Unauthorized.to_string())
            }
            FetchFailure::Other(reason) => f.write_str(reason),
        }
    }
}

async fn fetch(
    state: &AppState,
    repo_id: RepoId,
    user_id: UserId,
    url: &Url,
    branch: &str,
    token: Option<String>,
) -> Result<git2::Oid, FetchFailure> {
    let token = match token {
        Some(t) => t,
        None => state
            .tokens
            .access_token(user_id)
            .await
            .map_err(|e| FetchFailure::Other(token_message(e)))?,
    };
    let (tx, rx) = watch::channel(git::Progress::default());
    let reporter = report_progress(state, repo_id, rx, |p| {
        (p.received_objects * 100)
            .checked_div(p.total_objects)
            .map_or_else(String::new, |percent| format!("{percent}%"))
    });
    let git_dir: PathBuf = state.layout.clone_dir(repo_id);
    let (url, branch, max_bytes) = (url.clone(), branch.to_owned(), state.config.max_repo_bytes);
    let used = token.clone();
    let fetched = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(git_dir.parent().unwrap_or(&git_dir))
            .map_err(|e| git::FetchError::Git(e.to_string()))?;
        git::fetch(
            &git::FetchRequest {
                git_dir: &git_dir,
                url: &url,
                branch: &branch,
                token: &used,
                max_bytes,
                shallow: true,
            },
            &|p| {
                let _ = tx.send(p);
            },
        )
    })
    .await;
    reporter.abort();
    match fetched {
        Ok(Ok(head)) => Ok(head),
        Ok(Err(git::FetchError::Unauthorized)) => Err(FetchFailure::Unauthorized(token)),
        Ok(Err(e)) => Err(FetchFailure::Other(e.to_string())),
        Err(e) => Err(FetchFailure::Other(format!("clone stopped: {e}"))),
    }
}

/// Copies the latest progress value into the row twice a second while work runs.
fn report_progress<T: Clone + Send + Sync + 'static>(
    state: &AppState,
    repo_id: RepoId,
    mut rx: watch::Receiver<T>,
    text: impl Fn(T) -> String + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let pool = state.db.pool.clone();
    tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let value = rx.borrow_and_update().clone();
            let _ = sqlx::query("UPDATE repositories SET progress = $2 WHERE id = $1")
                .bind(repo_id)
                .bind(text(value))
                .execute(&pool)
                .await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}

async fn set_state(
    state: &AppState,
    repo_id: RepoId,
    new: RepoState,
    progress: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE repositories SET state = $2, progress = $3 WHERE id = $1")
        .bind(repo_id)
        .bind(new.as_str())
        .bind(progress)
        .execute(&state.db.pool)
        .await?;
    Ok(())
}

async fn record(
    state: &AppState,
    repo_id: RepoId,
    commit: Option<&str>,
    stats: &BuildStats,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE repositories SET state = $7, progress = '', error = NULL, indexed_commit = $2, \
         files = $3, bytes = $4, skipped = $5, indexed_at = $6, synced_at = $6, failures = 0, \
         retry_at = NULL, head_commit = $2, checked_at = $6, ahead_since = NULL WHERE id = $1",
    )
    .bind(repo_id)
    .bind(commit)
    .bind(i64::try_from(stats.files).unwrap_or(i64::MAX))
    .bind(i64::try_from(stats.bytes).unwrap_or(i64::MAX))
    .bind(serde_json::to_string(stats).unwrap_or_default())
    .bind(now())
    .bind(RepoState::Ready.as_str())
    .execute(&state.db.pool)
    .await?;
    Ok(())
}

/// Puts the new shard in place in one step: an atomic exchange with the old one (which
/// then goes), or a plain rename the first time. A crash leaves either shard whole.
async fn swap_in(new: &std::path::Path, current: &std::path::Path) -> std::io::Result<()> {
    let (new, current) = (new.to_path_buf(), current.to_path_buf());
    tokio::task::spawn_blocking(move || {
        if let Some(parent) = current.parent() {
            std::fs::create_dir_all(parent)?;
        }
        if current.exists() {
            rustix::fs::renameat_with(
                rustix::fs::CWD,
                &new,
                rustix::fs::CWD,
                &current,
                rustix::fs::RenameFlags::EXCHANGE,
            )?;
            // `new` now holds the old shard.
            std::fs::remove_dir_all(&new)
        } else {
            std::fs::rename(&new, &current)
        }
    })
    .await
    .map_err(std::io::Error::other)?
}

async fn remove_dir(path: PathBuf) {
    let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(path)).await;
}

/// `<git url>/<workspace>/<slug>.git`, each part percent-encoded.
pub fn clone_url(base: &Url, workspace: &str, slug: &str) -> Result<Url, String> {
    let base = base.as_str().trim_end_matches('/');
    Url::parse(&format!(
        "{base}/{}/{}.git",
        urlencode(workspace),
        urlencode(slug)
    ))
    .map_err(|e| format!("bad clone URL: {e}"))
}

fn token_message(e: TokenError) -> String {
    e.to_string()
}
