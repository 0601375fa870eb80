//! Re-reading a user's workspaces from Bitbucket and reconciling the stored rows.

use std::collections::HashSet;

use crate::{
    bitbucket::{BbError, BbWorkspace, Caller},
    db::{flag, now},
    ids::{UserId, WorkspaceId},
    jobs::{Job, JobError},
    state::AppState,
};

/// What a refresh found.
#[derive(Debug, Default)]
pub struct Outcome {
    pub workspaces: usize,
    /// Set when this was the user's first list and it held exactly one workspace.
    pub auto_linked: Option<WorkspaceId>,
}

/// The `RefreshWorkspaces` job.
pub async fn run(state: &AppState, user_id: UserId) -> Result<(), JobError> {
    refresh(state, Caller::background(user_id))
        .await
        .map(|_| ())
        .map_err(job_error)
}

/// Maps a Bitbucket failure to a job outcome: only transient trouble is retried.
pub fn job_error(e: BbError) -> JobError {
    match e {
        BbError::GaveUp(_) | BbError::Token(_) => JobError::Retry(e.to_string()),
        other => JobError::Permanent(other.to_string()),
    }
}

/// Reads the list, upserts by uuid, turns workspaces no longer listed Inactive (purging
/// their data) and queues a repository load for every Active one.
pub async fn refresh(state: &AppState, caller: Caller) -> Result<Outcome, BbError> {
    let user_id = caller.user;
    let listed = state.bitbucket.workspaces(caller).await?;
    let store = |e: sqlx::Error| BbError::Token(format!("database: {e}"));
    let known: Vec<(WorkspaceId, String, i64)> =
        sqlx::query_as("SELECT id, uuid, reachable FROM workspaces WHERE user_id = $1")
            .bind(user_id)
            .fetch_all(&state.db.pool)
            .await
            .map_err(store)?;
    let first_list = known.is_empty();
    let auto_link = first_list && listed.len() == 1;
    for ws in &listed {
        upsert(state, user_id, ws, auto_link).await.map_err(store)?;
    }
    count_unlinked(state, caller).await.map_err(store)?;

    let listed_uuids: HashSet<&str> = listed.iter().map(|w| w.uuid.as_str()).collect();
    for (id, uuid, reachable) in &known {
        if *reachable != 0 && !listed_uuids.contains(uuid.as_str()) {
            tracing::info!(
                %user_id,
                workspace_id = %id,
                "workspace access removed; purging its data"
            );
            super::start_purge(state, *id, true).await.map_err(store)?;
        }
    }

    let active: Vec<WorkspaceId> = sqlx::query_scalar(
        "SELECT id FROM workspaces WHERE user_id = $1 AND linked = 1 AND reachable = 1 \
         AND purging = 0",
    )
    .bind(user_id)
    .fetch_all(&state.db.pool)
    .await
    .map_err(store)?;
    for workspace_id in &active {
        state
            .enqueue(&Job::LoadRepositories {
                workspace_id: *workspace_id,
            })
            .await
            .map_err(store)?;
    }
    let auto_linked = if auto_link {
        active.first().copied()
    } else {
        None
    };
    Ok(Outcome {
        workspaces: listed.len(),
        auto_linked,
    })
}

/// Asks Bitbucket how many repositories each unlinked workspace has (their lists are read
/// only once linked): one call each per refresh. Unknown (`NULL`) when Bitbucket gives no
/// size or the call fails — a count never fails the refresh.
async fn count_unlinked(state: &AppState, caller: Caller) -> Result<(), sqlx::Error> {
    let unlinked: Vec<(WorkspaceId, String)> = sqlx::query_as(
        "SELECT id, slug FROM workspaces WHERE user_id = $1 AND linked = 0 AND reachable = 1 \
         AND purging = 0",
    )
    .bind(caller.user)
    .fetch_all(&state.db.pool)
    .await?;
    for (id, slug) in unlinked {
        let count = match state.bitbucket.repository_count(caller, &slug).await {
            Ok(count) => count.and_then(|n| i64::try_from(n).ok()),
            Err(e) => {
                tracing::info!(workspace_id = %id, error = %e, "repository count unknown");
                None
            }
        };
        sqlx::query("UPDATE workspaces SET bitbucket_repositories = $2 WHERE id = $1")
            .bind(id)
            .bind(count)
            .execute(&state.db.pool)
            .await?;
    }
    Ok(())
}

async fn upsert(
    state: &AppState,
    user_id: UserId,
    ws: &BbWorkspace,
    link_new: bool,
) -> Result<(), sqlx::Error> {
    // A workspace that comes back after losing access starts unlinked (its data was purged).
    sqlx::query(
        "INSERT INTO workspaces (user_id, uuid, slug, name, permission, linked, reachable, purging, refreshed_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 1, 0, $7) \
         ON CONFLICT (user_id, uuid) DO UPDATE SET slug = excluded.slug, name = excluded.name, \
           permission = excluded.permission, reachable = 1, refreshed_at = excluded.refreshed_at",
    )
    .bind(user_id)
    .bind(&ws.uuid)
    .bind(&ws.slug)
    .bind(&ws.name)
    .bind(&ws.permission)
    .bind(flag(link_new))
    .bind(now())
    .execute(&state.db.pool)
    .await?;
    Ok(())
}
