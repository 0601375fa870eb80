//! The deletion cascade: a workspace's or a user's repositories, clones, shards and rows.
//!
//! Purges are durable jobs in steps — mark (done by the caller: from then on the workspace or
//! user is invisible), delete files, delete rows — and every step is idempotent, so a crash
//! anywhere is finished by the next run. Files go as whole directories; SQLite overwrites
//! deleted rows (`secure_delete`) and its WAL is checkpointed and truncated afterwards.

use std::path::{Path, PathBuf};

use crate::{app::AppState, db::now, jobs::JobError};

/// Where a repository's files live under the data dir.
pub fn clone_dir(data_dir: &Path, repo_id: i64) -> PathBuf {
    data_dir.join("git").join(format!("{repo_id}.git"))
}

/// The repository's current index shard.
pub fn shard_dir(data_dir: &Path, repo_id: i64) -> PathBuf {
    data_dir.join("shards").join(repo_id.to_string())
}

/// Removes every file of one repository (clone, shard, builds in progress), then its row.
pub async fn repository(state: &AppState, repo_id: i64) -> Result<(), std::io::Error> {
    state.shards.forget(repo_id);
    remove_repository_files(&state.config.data_dir, repo_id).await?;
    sqlx::query("DELETE FROM jobs WHERE dedupe_key = $1 AND state <> 'running'")
        .bind(format!("sync_repository:{repo_id}"))
        .execute(&state.db.pool)
        .await
        .map_err(std::io::Error::other)?;
    sqlx::query("DELETE FROM repositories WHERE id = $1")
        .bind(repo_id)
        .execute(&state.db.pool)
        .await
        .map_err(std::io::Error::other)?;
    Ok(())
}

/// The `PurgeWorkspace` job: the workspace row stays (Inactive), everything under it goes.
pub async fn workspace(state: &AppState, workspace_id: i64) -> Result<(), JobError> {
    let repos: Vec<i64> = sqlx::query_scalar("SELECT id FROM repositories WHERE workspace_id = $1")
        .bind(workspace_id)
        .fetch_all(&state.db.pool)
        .await
        .map_err(retry)?;
    wait_for_running_work(
        state,
        std::iter::once(format!("load_repositories:{workspace_id}"))
            .chain(repos.iter().map(|id| format!("sync_repository:{id}"))),
    )
    .await?;
    for repo_id in repos {
        repository(state, repo_id).await.map_err(retry)?;
    }
    sqlx::query("DELETE FROM jobs WHERE dedupe_key = $1 AND state <> 'running'")
        .bind(format!("load_repositories:{workspace_id}"))
        .execute(&state.db.pool)
        .await
        .map_err(retry)?;
    sqlx::query("UPDATE workspaces SET purging = 0, linked = 0, load_error = NULL WHERE id = $1")
        .bind(workspace_id)
        .execute(&state.db.pool)
        .await
        .map_err(retry)?;
    state.db.checkpoint().await.map_err(retry)?;
    tracing::info!(workspace_id, "workspace data purged");
    Ok(())
}

/// The `PurgeUser` job: files of every repository, then the user row (rows cascade).
pub async fn user(state: &AppState, user_id: i64) -> Result<(), JobError> {
    let repos: Vec<i64> = sqlx::query_scalar("SELECT id FROM repositories WHERE user_id = $1")
        .bind(user_id)
        .fetch_all(&state.db.pool)
        .await
        .map_err(retry)?;
    let workspaces: Vec<i64> = sqlx::query_scalar("SELECT id FROM workspaces WHERE user_id = $1")
        .bind(user_id)
        .fetch_all(&state.db.pool)
        .await
        .map_err(retry)?;
    wait_for_running_work(
        state,
        workspaces
            .iter()
            .map(|id| format!("load_repositories:{id}"))
            .chain(repos.iter().map(|id| format!("sync_repository:{id}"))),
    )
    .await?;
    for repo_id in &repos {
        state.shards.forget(*repo_id);
        remove_repository_files(&state.config.data_dir, *repo_id)
            .await
            .map_err(retry)?;
    }
    let mut tx = state.db.pool.begin().await.map_err(retry)?;
    for key in [format!("refresh_workspaces:{user_id}")]
        .into_iter()
        .chain(repos.iter().map(|id| format!("sync_repository:{id}")))
    {
        sqlx::query("DELETE FROM jobs WHERE dedupe_key = $1")
            .bind(key)
            .execute(&mut *tx)
            .await
            .map_err(retry)?;
    }
    sqlx::query(
        "DELETE FROM jobs WHERE dedupe_key IN (SELECT 'load_repositories:' || id FROM workspaces WHERE user_id = $1) \
         OR dedupe_key IN (SELECT 'purge_workspace:' || id FROM workspaces WHERE user_id = $1)",
    )
    .bind(user_id)
    .execute(&mut *tx)
    .await
    .map_err(retry)?;
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(user_id)
        .execute(&mut *tx)
        .await
        .map_err(retry)?;
    tx.commit().await.map_err(retry)?;
    state.db.checkpoint().await.map_err(retry)?;
    tracing::info!(user_id, "user purged");
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

async fn remove_repository_files(data_dir: &Path, repo_id: i64) -> Result<(), std::io::Error> {
    let data_dir = data_dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        remove_dir(&clone_dir(&data_dir, repo_id))?;
        remove_dir(&shard_dir(&data_dir, repo_id))?;
        // Builds in progress are named "<repo id>-…" under tmp/.
        let prefix = format!("{repo_id}-");
        if let Ok(entries) = std::fs::read_dir(data_dir.join("tmp")) {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with(&prefix) {
                    remove_dir(&entry.path())?;
                }
            }
        }
        Ok(())
    })
    .await
    .map_err(std::io::Error::other)?
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
