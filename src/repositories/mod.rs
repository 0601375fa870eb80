//! Repositories: the per-workspace list with selection and build state, pages and JSON API.

pub mod load;

use askama::Template;
use askama_web::WebTemplate;
use axum::{Json, extract::State};
use serde::Serialize;
use tower_sessions::Session;

use crate::{
    app::AppState,
    auth::{ApiUser, CurrentUser},
    db::Flag,
    error::{ApiError, AppError},
    pages::{Flash, human_bytes},
    workspaces::{self, WorkspaceView},
};

/// A repository as pages and the API show it.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct RepositoryView {
    pub id: i64,
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
    pub state: String,
    pub progress: String,
    pub indexed_commit: Option<String>,
    pub files: i64,
    pub bytes: i64,
    pub error: Option<String>,
    #[serde(skip)]
    pub workspace_id: i64,
}

impl RepositoryView {
    pub fn size_text(&self) -> String {
        human_bytes(self.size)
    }
    pub fn updated_text(&self) -> &str {
        self.updated_on.get(..10).unwrap_or(&self.updated_on)
    }
}

/// The user's repositories in Active workspaces (Inactive ones have none: they are purged).
pub async fn list_for_user(
    state: &AppState,
    user_id: i64,
) -> Result<Vec<RepositoryView>, AppError> {
    Ok(sqlx::query_as(
        "SELECT r.id, w.slug AS workspace, r.slug, r.name, r.full_name, r.language, r.size, \
           r.is_private, r.updated_on, r.selected, r.state, r.progress, r.indexed_commit, r.files, \
           r.bytes, r.error, r.workspace_id \
         FROM repositories r JOIN workspaces w ON w.id = r.workspace_id \
         WHERE r.user_id = $1 AND w.user_id = $1 AND w.purging = 0 AND w.linked = 1 \
         ORDER BY lower(w.name), lower(r.name), r.id",
    )
    .bind(user_id)
    .fetch_all(&state.db.pool)
    .await?)
}

/// One workspace's section of the page.
pub struct Section {
    pub workspace: WorkspaceView,
    pub repositories: Vec<RepositoryView>,
}

#[derive(Template, WebTemplate)]
#[template(path = "repositories.html")]
pub struct RepositoriesPage {
    user: Option<CurrentUser>,
    flash: Option<Flash>,
    sections: Vec<Section>,
}

/// `GET /repositories`.
pub async fn page(
    State(state): State<AppState>,
    session: Session,
    user: CurrentUser,
) -> Result<RepositoriesPage, AppError> {
    let mut repositories = list_for_user(&state, user.id).await?;
    let sections = workspaces::list_for_user(&state, user.id)
        .await?
        .into_iter()
        .filter(|w| w.status == "active")
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
    })
}

/// `GET /api/v1/repositories`.
pub async fn api_list(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
) -> Result<Json<Vec<RepositoryView>>, ApiError> {
    Ok(Json(list_for_user(&state, user.id).await?))
}
