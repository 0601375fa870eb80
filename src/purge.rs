//! The deletion cascade: a workspace's or a user's repositories, clones, shards and rows.
//!
//! Purges are durable jobs in steps — mark (done by the caller: from then on the workspace or
//! user is invisible), delete files, delete rows — and every step is idempotent, so a crash
//! anywhere is finished by the next run. Files go as whole directories; SQLite overwrites
//! deleted rows (`secure_delete`) and its WAL is checkpointed and truncated afterwards.

use std::path::Path;

use crate::{
    db::now,
    ids::{RepoId, UserId, WorkspaceId},
    jobs::{JobError, JobKind, dedupe_key},
    layout::Layout,
    state::AppState,
};

/// How long a purge waits for searches that still read a shard before it tries again later.
const READER_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// Removes every file of one repository (clone, shard, builds in progress), then its row.
/// A build of it that is running is waited for (the job is retried), so nothing recreates
/// the files afterwards; deselecting it first keeps new builds from starting.
pub async fn repository(state: &AppState, repo_id: RepoId) -> Result<(), JobError> {
    sqlx::query("UPDATE repositories SET selected = 0 WHERE id = $1")
        .bind(repo_id)
        .execute(&state.db.pool)
        .await
        .map_err(retry)?;
    let sync_key = dedupe_key(JobKind::SyncRepository, repo_id.get());
    sqlx::query("DELETE FROM jobs WHERE dedupe_key = $1 AND state <> 'running'")
        .bind(&sync_key)
        .execute(&state.db.pool)
        .await
        .map_err(retry)?;
    wait_for_running_work(state, std::iter::once(sync_key)).await?;
    remove_repository_files(state, repo_id).await?;
    sqlx::query("DELETE FROM repositories WHERE id = $1")
        .bind(repo_id)
        .execute(&state.db.pool)
        .await
        .map_err(retry)?;
    Ok(())
}

/// The `PurgeWorkspace` job: the workspace row stays (Inactive), everything under it goes.
pub async fn workspace(state: &AppState, workspace_id: WorkspaceId) -> Result<(), JobError> {
    let repos: Vec<RepoId> =
        sqlx::query_scalar("SELECT id FROM repositories WHERE workspace_id = $1")
            .bind(workspace_id)
            .fetch_all(&state.db.pool)
            .await
            .map_err(retry)?;
    wait_for_running_work(
        state,
        std::iter::once(dedupe_key(JobKind::LoadRepositories, workspace_id.get())).chain(
            repos
                .iter()
                .map(|id| dedupe_key(JobKind::SyncRepository, id.get())),
        ),
    )
    .await?;
    for repo_id in repos {
        repository(state, repo_id).await?;
    }
    sqlx::query("DELETE FROM jobs WHERE dedupe_key = $1 AND state <> 'running'")
        .bind(dedupe_key(JobKind::LoadRepositories, workspace_id.get()))
        .execute(&state.db.pool)
        .await
        .map_err(retry)?;
    sqlx::query("UPDATE workspaces SET purging = 0, linked = 0, load_error = NULL WHERE id = $1")
        .bind(workspace_id)
        .execute(&state.db.pool)
        .await
        .map_err(retry)?;
    state.db.checkpoint().await.map_err(retry)?;
    tracing::info!(%workspace_id, "workspace data purged");
    Ok(())
}

/// The `PurgeUser` job: files of every repository, then the user row (rows cascade).
pub async fn user(state: &AppState, user_id: UserId) -> Result<(), JobError> {
    let repos: Vec<RepoId> = sqlx::query_scalar("SELECT id FROM repositories WHERE user_id = $1")
        .bind(user_id)
        .fetch_all(&state.db.pool)
        .await
        .map_err(retry)?;
    let workspaces: Vec<WorkspaceId> =
        sqlx::query_scalar("SELECT id FROM workspaces WHERE user_id = $1")
            .bind(user_id)
            .fetch_all(&state.db.pool)
            .await
            .map_err(retry)?;
    wait_for_running_work(
        state,
        workspaces
            .iter()
            .map(|id| dedupe_key(JobKind::LoadRepositories, id.get()))
            .chain(
                repos
                    .iter()
                    .map(|id| dedupe_key(JobKind::SyncRepository, id.get())),
            ),
    )
    .await?;
    for repo_id in &repos {
        remove_repository_files(state, *repo_id).await?;
    }
    let mut tx = state.db.pool.begin().await.map_err(retry)?;
    for key in [dedupe_key(JobKind::RefreshWorkspaces, user_id.get())]
        .into_iter()
        .chain(
            repos
                .iter()
                .map(|id| dedupe_key(JobKind::SyncRepository, id.get())),
        )
    {
        sqlx::query("DELETE FROM jobs WHERE dedupe_key = $1")
            .bind(key)
            .execute(&mut *tx)
            .await
            .map_err(retry)?;
    }
    for workspace in &workspaces {
        for kind in [JobKind::LoadRepositories, JobKind::PurgeWorkspace] {
            sqlx::query("DELETE FROM jobs WHERE dedupe_key = $1")
                .bind(dedupe_key(kind, workspace.get()))
                .execute(&mut *tx)
                .await
                .map_err(retry)?;
        }
    }
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(user_id)
        .execute(&mut *tx)
        .await
        .map_err(retry)?;
    tx.commit().await.map_err(retry)?;
    state.db.checkpoint().await.map_err(retry)?;
    tracing::info!(%user_id, "user purged");
    Ok(())
}

/// A build or repository load that was already running when the mark was set checked the
/// mark before it began, so it may still write a clone, a shard or rows — after this purge
/// had deleted them, leaving them behind for good. Wait until such work has ended (the mark,
/// or for a user the deleted connection, keeps new work from getting that far; a crashed
/// worker's claim counts only until its lease ends).
async fn wait_for_running_work(
    state: &AppState,
    keys: impl Iterator<Item = String>,
) -> Result<(), JobError> {
    let running: Vec<String> = sqlx::query_scalar(
        "SELECT dedupe_key FROM jobs WHERE state = 'running' AND lease_until >= $1 \
         AND dedupe_key IS NOT NULL",
    )
    .bind(now())
    .fetch_all(&state.db.pool)
    .await
    .map_err(retry)?;
    for key in keys {
        if running.contains(&key) {
            return Err(JobError::Retry(format!(
                "waiting for the running job {key} to end"
            )));
        }
    }
    Ok(())
}

/// Closes the repository's shard readers (waiting for searches that hold one), then deletes
/// its clone, shard and builds in progress: a deleted file that is still open keeps its bytes.
async fn remove_repository_files(state: &AppState, repo_id: RepoId) -> Result<(), JobError> {
    if !state.shards.retire(repo_id, READER_PATIENCE).await {
        return Err(JobError::Retry(format!(
            "a search still reads the index of repository {repo_id}"
        )));
    }
    let layout = state.layout.clone();
    tokio::task::spawn_blocking(move || {
        remove_dir(&layout.clone_dir(repo_id))?;
        remove_dir(&layout.shard_dir(repo_id))?;
        if let Ok(entries) = std::fs::read_dir(layout.tmp_dir()) {
            for entry in entries.flatten() {
                if Layout::is_build_of(&entry.file_name().to_string_lossy(), repo_id) {
                    remove_dir(&entry.path())?;
                }
            }
        }
        Ok::<(), std::io::Error>(())
    })
    .await
    .map_err(retry)?
    .map_err(retry)
}

/// Removes a directory tree; one already gone is fine (the step may be running again).
fn remove_dir(path: &Path) -> Result<(), std::io::Error> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

fn retry(e: impl std::fmt::Display) -> JobError {
    JobError::Retry(e.to_string())
}
