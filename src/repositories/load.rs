//! Loading a workspace's repository list from Bitbucket and reconciling the stored rows.

use std::collections::HashSet;

use crate::{
    bitbucket::{BbError, BbRepository, Caller},
    db::{flag, now},
    ids::{RepoId, UserId, WorkspaceId},
    jobs::{Job, JobError},
    purge,
    state::AppState,
    workspaces,
};

/// The `LoadRepositories` job: upsert by uuid (a rename keeps its id), purge the vanished.
pub async fn run(state: &AppState, workspace_id: WorkspaceId) -> Result<(), JobError> {
    let db = |e: sqlx::Error| JobError::Retry(format!("database: {e}"));
    let row: Option<(UserId, String)> = sqlx::query_as(
        "SELECT user_id, slug FROM workspaces WHERE id = $1 AND linked = 1 AND reachable = 1 \
         AND purging = 0",
    )
    .bind(workspace_id)
    .fetch_optional(&state.db.pool)
    .await
    .map_err(db)?;
    // Unlinked or gone meanwhile: nothing to load.
    let Some((user_id, slug)) = row else {
        return Ok(());
    };
    let listed = match state
        .bitbucket
        .repositories(Caller::background(user_id), &slug)
        .await
    {
        Ok(listed) => listed,
        Err(BbError::NoAccess) => {
            tracing::info!(
                %workspace_id,
                "no access to the workspace's repositories any more"
            );
            workspaces::start_purge(state, workspace_id, true)
                .await
                .map_err(db)?;
            return Ok(());
        }
        Err(e) => {
            sqlx::query("UPDATE workspaces SET load_error = $2 WHERE id = $1")
                .bind(workspace_id)
                .bind(format!("Loading repositories failed: {e}"))
                .execute(&state.db.pool)
                .await
                .map_err(db)?;
            return Err(workspaces::refresh::job_error(e));
        }
    };
    // One transaction: the page never shows half a list (it stops waiting once it sees one).
    let mut tx = state.db.pool.begin().await.map_err(db)?;
    let mut first_branches = Vec::new();
    for repo in &listed {
        if let Some(repo_id) = upsert(&mut tx, user_id, workspace_id, repo)
            .await
            .map_err(db)?
        {
            first_branches.push(repo_id);
        }
    }
    tx.commit().await.map_err(db)?;
    // The head checks watch the main branch; an empty repository has none until its
    // first push, which only this list shows.
    for repo_id in first_branches {
        state
            .enqueue(&Job::SyncRepository { repo_id })
            .await
            .map_err(db)?;
    }
    let listed_uuids: HashSet<&str> = listed.iter().map(|r| r.uuid.as_str()).collect();
    let known: Vec<(RepoId, String)> =
        sqlx::query_as("SELECT id, uuid FROM repositories WHERE workspace_id = $1")
            .bind(workspace_id)
            .fetch_all(&state.db.pool)
            .await
            .map_err(db)?;
    let mut purged = false;
    for (repo_id, uuid) in known {
        if !listed_uuids.contains(uuid.as_str()) {
            tracing::info!(
                %workspace_id,
                %repo_id,
                "repository gone from Bitbucket; purging it"
            );
            purge::repository(state, repo_id).await?;
            purged = true;
        }
    }
    if purged {
        state.db.checkpoint().await.map_err(db)?;
    }
    sqlx::query("UPDATE workspaces SET load_error = NULL, refreshed_at = $2 WHERE id = $1")
        .bind(workspace_id)
        .bind(now())
        .execute(&state.db.pool)
        .await
        .map_err(db)?;
    Ok(())
}

/// Stores one listed repository; returns its id when it is selected and has just gained a
/// main branch (an empty repository's first push).
async fn upsert(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    user_id: UserId,
    workspace_id: WorkspaceId,
    repo: &BbRepository,
) -> Result<Option<RepoId>, sqlx::Error> {
    let before: Option<(RepoId, i64, Option<String>)> = sqlx::query_as(
        "SELECT id, selected, main_branch FROM repositories WHERE workspace_id = $1 AND uuid = $2",
    )
    .bind(workspace_id)
    .bind(&repo.uuid)
    .fetch_optional(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO repositories (user_id, workspace_id, uuid, slug, name, full_name, language, size, \
           is_private, updated_on, main_branch, html_url) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT (workspace_id, uuid) DO UPDATE SET slug = excluded.slug, name = excluded.name, \
           full_name = excluded.full_name, language = excluded.language, size = excluded.size, \
           is_private = excluded.is_private, updated_on = excluded.updated_on, \
           main_branch = excluded.main_branch, html_url = excluded.html_url",
    )
    .bind(user_id)
    .bind(workspace_id)
    .bind(&repo.uuid)
    .bind(&repo.slug)
    .bind(if repo.name.is_empty() { &repo.slug } else { &repo.name })
    .bind(&repo.full_name)
    .bind(&repo.language)
    .bind(repo.size)
    .bind(flag(repo.is_private))
    .bind(&repo.updated_on)
    .bind(repo.mainbranch.as_ref().map(|b| b.name.clone()))
    .bind(repo.links.html.as_ref().map(|h| h.href.clone()).unwrap_or_default())
    .execute(&mut **tx)
    .await?;
    Ok(match before {
        Some((id, 1, None)) if repo.mainbranch.is_some() => Some(id),
        _ => None,
    })
}
