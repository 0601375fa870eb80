//! Workspaces: the list with Active/Inactive status, Link, Disconnect and Refresh —
//! as pages and as the JSON API.

pub mod refresh;

use askama::Template;
use askama_web::WebTemplate;
use axum::{
    Json,
    extract::{Path, State},
    response::Redirect,
};
use serde::Serialize;
use tower_sessions::Session;

use crate::{
    db::flag,
    error::{ApiError, AppError},
    identity::ApiUser,
    ids::{CurrentUser, UserId, WorkspaceId},
    jobs::Job,
    state::AppState,
    view::{Flash, format_time, human_bytes},
};

/// Active: linked and reachable with the current token; Inactive otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkspaceStatus {
    Active,
    Inactive,
}

impl WorkspaceStatus {
    /// The JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkspaceStatus::Active => "active",
            WorkspaceStatus::Inactive => "inactive",
        }
    }
}

impl std::fmt::Display for WorkspaceStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a workspace is Inactive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum InactiveReason {
    #[serde(rename = "disconnecting")]
    Disconnecting,
    #[serde(rename = "access removed")]
    AccessRemoved,
    #[serde(rename = "sign in again")]
    SignInAgain,
    #[serde(rename = "not linked")]
    NotLinked,
}

impl InactiveReason {
    /// The words the page and the JSON API show.
    pub fn as_str(self) -> &'static str {
        match self {
            InactiveReason::Disconnecting => "disconnecting",
            InactiveReason::AccessRemoved => "access removed",
            InactiveReason::SignInAgain => "sign in again",
            InactiveReason::NotLinked => "not linked",
        }
    }
}

impl std::fmt::Display for InactiveReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A workspace as pages and the API show it.
#[derive(Clone, Debug, Serialize)]
pub struct WorkspaceView {
    pub id: WorkspaceId,
    pub uuid: String,
    pub slug: String,
    pub name: String,
    pub permission: String,
    pub linked: bool,
    pub status: WorkspaceStatus,
    pub reason: Option<InactiveReason>,
    pub repository_count: i64,
    /// How many repositories Bitbucket has for this workspace while it is not linked
    /// (`None`: not known).
    pub bitbucket_repositories: Option<i64>,
    pub refreshed_at: String,
    pub error: Option<String>,
    #[serde(skip)]
    pub purging: bool,
}

#[derive(sqlx::FromRow)]
struct WorkspaceRow {
    id: WorkspaceId,
    uuid: String,
    slug: String,
    name: String,
    permission: String,
    linked: i64,
    reachable: i64,
    purging: i64,
    load_error: Option<String>,
    refreshed_at: i64,
    repository_count: i64,
    bitbucket_repositories: Option<i64>,
}

const SELECT_WORKSPACES: &str = "SELECT w.id, w.uuid, w.slug, w.name, w.permission, w.linked, \
    w.reachable, w.purging, w.load_error, w.refreshed_at, w.bitbucket_repositories, \
    (SELECT COUNT(*) FROM repositories r WHERE r.workspace_id = w.id) AS repository_count \
    FROM workspaces w WHERE w.user_id = $1";

/// Every workspace of the user, with its status.
pub async fn list_for_user(
    state: &AppState,
    user_id: UserId,
) -> Result<Vec<WorkspaceView>, AppError> {
    let rows: Vec<WorkspaceRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT_WORKSPACES} ORDER BY lower(w.name), w.id"
    )))
    .bind(user_id)
    .fetch_all(&state.db.pool)
    .await?;
    let connected = state.tokens.is_connected(user_id).await?;
    Ok(rows.into_iter().map(|r| view(r, connected)).collect())
}

/// One workspace, only if it belongs to the user (anyone else's id is "not found").
pub async fn find_for_user(
    state: &AppState,
    user_id: UserId,
    workspace_id: i64,
) -> Result<WorkspaceView, AppError> {
    let row: WorkspaceRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT_WORKSPACES} AND w.id = $2"
    )))
    .bind(user_id)
    .bind(workspace_id)
    .fetch_optional(&state.db.pool)
    .await?
    .ok_or(AppError::NotFound)?;
    let connected = state.tokens.is_connected(user_id).await?;
    Ok(view(row, connected))
}

fn view(r: WorkspaceRow, connected: bool) -> WorkspaceView {
    let reason = if r.purging != 0 {
        Some(InactiveReason::Disconnecting)
    } else if r.reachable == 0 {
        Some(InactiveReason::AccessRemoved)
    } else if !connected {
        Some(InactiveReason::SignInAgain)
    } else if r.linked == 0 {
        Some(InactiveReason::NotLinked)
    } else {
        None
    };
    WorkspaceView {
        id: r.id,
        uuid: r.uuid,
        slug: r.slug,
        name: r.name,
        permission: r.permission,
        linked: r.linked != 0,
        status: if reason.is_none() {
            WorkspaceStatus::Active
        } else {
            WorkspaceStatus::Inactive
        },
        reason,
        repository_count: r.repository_count,
        bitbucket_repositories: r.bitbucket_repositories,
        refreshed_at: format_time(r.refreshed_at),
        error: r.load_error,
        purging: r.purging != 0,
    }
}

/// Marks a workspace unlinked and invisible at once, then queues the deletion of its data.
pub async fn start_purge(
    state: &AppState,
    workspace_id: WorkspaceId,
    lost_access: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE workspaces SET purging = 1, linked = 0, \
         reachable = CASE WHEN $2 = 1 THEN 0 ELSE reachable END WHERE id = $1",
    )
    .bind(workspace_id)
    .bind(flag(lost_access))
    .execute(&state.db.pool)
    .await?;
    state.enqueue(&Job::PurgeWorkspace { workspace_id }).await
}

/// Shows why loading a workspace's repositories failed for good.
pub async fn record_load_error(
    state: &AppState,
    workspace_id: WorkspaceId,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE workspaces SET load_error = $2 WHERE id = $1")
        .bind(workspace_id)
        .bind(reason)
        .execute(&state.db.pool)
        .await?;
    Ok(())
}

/// Links a reachable workspace and starts loading its repositories.
async fn link(
    state: &AppState,
    user: &CurrentUser,
    workspace_id: i64,
) -> Result<WorkspaceView, AppError> {
    let ws = find_for_user(state, user.id, workspace_id).await?;
    match ws.reason {
        None | Some(InactiveReason::NotLinked) => {}
        Some(InactiveReason::SignInAgain) => {
            return Err(AppError::BadRequest(
                "Bitbucket access ended: sign in again first.".into(),
            ));
        }
        Some(reason) => {
            return Err(AppError::BadRequest(format!(
                "This workspace cannot be linked now ({reason})."
            )));
        }
    }
    sqlx::query(
        "UPDATE workspaces SET linked = 1, load_error = NULL WHERE id = $1 AND user_id = $2",
    )
    .bind(ws.id)
    .bind(user.id)
    .execute(&state.db.pool)
    .await?;
    state
        .enqueue(&Job::LoadRepositories {
            workspace_id: ws.id,
        })
        .await?;
    find_for_user(state, user.id, workspace_id).await
}

async fn disconnect(
    state: &AppState,
    user: &CurrentUser,
    workspace_id: i64,
) -> Result<WorkspaceView, AppError> {
    let ws = find_for_user(state, user.id, workspace_id).await?;
    if !ws.purging {
        start_purge(state, ws.id, false).await?;
        tracing::info!(user_id = %user.id, workspace_id = %ws.id, "workspace disconnected");
    }
    find_for_user(state, user.id, workspace_id).await
}

/// Re-reads the list from Bitbucket now; a human sentence on failure.
async fn refresh_now(state: &AppState, user: &CurrentUser) -> Result<refresh::Outcome, AppError> {
    refresh::refresh(state, crate::bitbucket::Caller::interactive(user.id))
        .await
        .map_err(|e| AppError::Unavailable(format!("Refreshing from Bitbucket failed: {e}.")))
}

#[derive(Template, WebTemplate)]
#[template(path = "workspaces.html")]
pub struct WorkspacesPage {
    user: Option<CurrentUser>,
    flash: Option<Flash>,
    workspaces: Vec<WorkspaceView>,
    /// Bitbucket's web address, for links to the workspaces there.
    bitbucket_url: String,
}

/// `GET /workspaces`.
pub async fn page(
    State(state): State<AppState>,
    session: Session,
    user: CurrentUser,
) -> Result<WorkspacesPage, AppError> {
    Ok(WorkspacesPage {
        workspaces: list_for_user(&state, user.id).await?,
        flash: Flash::take(&session).await,
        user: Some(user),
        bitbucket_url: state
            .config
            .git_url
            .as_str()
            .trim_end_matches('/')
            .to_owned(),
    })
}

/// `POST /workspaces/refresh`.
pub async fn refresh_form(
    State(state): State<AppState>,
    session: Session,
    user: CurrentUser,
) -> Result<Redirect, AppError> {
    let flash = match refresh_now(&state, &user).await {
        Ok(outcome) => Flash::ok(format!(
            "Refreshed from Bitbucket: {} workspace{}.",
            outcome.workspaces,
            if outcome.workspaces == 1 { "" } else { "s" }
        )),
        Err(e) => Flash::error(e.to_string()),
    };
    flash.set(&session).await;
    Ok(Redirect::to("/workspaces"))
}

/// `POST /workspaces/{id}/link`.
pub async fn link_form(
    State(state): State<AppState>,
    session: Session,
    user: CurrentUser,
    Path(id): Path<i64>,
) -> Result<Redirect, AppError> {
    let ws = link(&state, &user, id).await?;
    Flash::ok(format!("Linked {}. Its repositories are loading.", ws.name))
        .set(&session)
        .await;
    Ok(Redirect::to("/repositories"))
}

#[derive(Template, WebTemplate)]
#[template(path = "disconnect_workspace.html")]
pub struct DisconnectPage {
    user: Option<CurrentUser>,
    workspace: WorkspaceView,
    repositories: Vec<(String, String, bool)>,
    total: String,
}

/// `GET /workspaces/{id}/disconnect`: says exactly what will be deleted.
pub async fn confirm_disconnect(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<i64>,
) -> Result<DisconnectPage, AppError> {
    let workspace = find_for_user(&state, user.id, id).await?;
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT full_name, bytes, selected FROM repositories WHERE workspace_id = $1 AND user_id = $2 \
         ORDER BY lower(full_name)",
    )
    .bind(workspace.id)
    .bind(user.id)
    .fetch_all(&state.db.pool)
    .await?;
    let total = rows.iter().map(|(_, b, _)| *b).sum::<i64>();
    Ok(DisconnectPage {
        user: Some(user),
        workspace,
        repositories: rows
            .into_iter()
            .map(|(name, bytes, selected)| (name, human_bytes(bytes), selected != 0))
            .collect(),
        total: human_bytes(total),
    })
}

/// `POST /workspaces/{id}/disconnect`.
pub async fn disconnect_form(
    State(state): State<AppState>,
    session: Session,
    user: CurrentUser,
    Path(id): Path<i64>,
) -> Result<Redirect, AppError> {
    let ws = disconnect(&state, &user, id).await?;
    Flash::ok(format!(
        "Disconnected {}: its repositories and indexes are being deleted.",
        ws.name
    ))
    .set(&session)
    .await;
    Ok(Redirect::to("/workspaces"))
}

/// `GET /api/v1/workspaces`.
pub async fn api_list(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
) -> Result<Json<Vec<WorkspaceView>>, ApiError> {
    Ok(Json(list_for_user(&state, user.id).await?))
}

/// `POST /api/v1/workspaces/refresh`: always re-reads from Bitbucket.
pub async fn api_refresh(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
) -> Result<Json<Vec<WorkspaceView>>, ApiError> {
    refresh_now(&state, &user).await?;
    Ok(Json(list_for_user(&state, user.id).await?))
}

/// `POST /api/v1/workspaces/{id}/link`.
pub async fn api_link(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path(id): Path<i64>,
) -> Result<Json<WorkspaceView>, ApiError> {
    Ok(Json(link(&state, &user, id).await?))
}

/// `POST /api/v1/workspaces/{id}/disconnect`.
pub async fn api_disconnect(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path(id): Path<i64>,
) -> Result<Json<WorkspaceView>, ApiError> {
    Ok(Json(disconnect(&state, &user, id).await?))
}
