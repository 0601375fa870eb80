//! The REST API 2.0 (`/2.0/…`): the calling user, their workspaces and the repositories of a
//! workspace, plus the listings Atlassian removed (410 Gone). Bearer tokens only.

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, Uri, header};
use axum::response::Response;
use axum::routing::get;
use serde_json::Value;

use super::Shared;
use super::json::{self, error, gone, json_response, paginate};
use super::state::TOKEN_INVALID;

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/2.0/user", get(current_user))
        .route("/2.0/user/workspaces", get(user_workspaces))
        .route(
            "/2.0/user/workspaces/{workspace}/permission",
            get(workspace_permission),
        )
        .route(
            "/2.0/user/workspaces/{workspace}/permissions/repositories",
            get(repository_permissions),
        )
        .route("/2.0/user/permissions/workspaces", get(removed))
        .route("/2.0/workspaces", get(removed))
        .route("/2.0/workspaces/{workspace}", get(workspace))
        .route("/2.0/repositories", get(removed))
        .route("/2.0/repositories/{workspace}", get(repositories))
        .route("/2.0/repositories/{workspace}/{repo_slug}", get(repository))
}

/// The user behind `Authorization: Bearer …`. Tokens in the query string or body are not
/// looked at: since May 2026 Bitbucket accepts them only in the header.
pub(super) struct Caller {
    uuid: String,
}

impl FromRequestParts<Arc<Shared>> for Caller {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        shared: &Arc<Shared>,
    ) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim().to_owned())
            .ok_or_else(|| error(StatusCode::UNAUTHORIZED, TOKEN_INVALID))?;
        shared
            .lock()
            .check_access_token(&token)
            .map(|uuid| Caller { uuid })
            .map_err(|message| error(StatusCode::UNAUTHORIZED, message))
    }
}

fn params(raw: &Option<String>) -> Vec<(String, String)> {
    raw.as_deref()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// 200 with the body trimmed by `fields=` when the request asked for it.
fn ok(params: &[(String, String)], body: Value) -> Response {
    let body = match param(params, "fields") {
        Some(spec) => json::apply_fields(body, spec),
        None => body,
    };
    json_response(StatusCode::OK, &body)
}

async fn removed() -> Response {
    gone()
}

async fn current_user(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> Response {
    let st = shared.lock();
    match st.user(&caller.uuid) {
        Some(rec) => ok(&params(&raw), json::user(&shared.url, rec)),
        None => error(StatusCode::UNAUTHORIZED, TOKEN_INVALID),
    }
}

async fn user_workspaces(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    uri: Uri,
    RawQuery(raw): RawQuery,
) -> Response {
    let params = params(&raw);
    let admin_filter = match param(&params, "administrator") {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => return error(StatusCode::BAD_REQUEST, "Invalid administrator filter"),
    };
    // Only `slug` sorts here; DevLake recorded `sort=workspace.slug` failing like this.
    let descending = match param(&params, "sort") {
        None | Some("slug") => false,
        Some("-slug") => true,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("Invalid field name: {other}"),
            );
        }
    };
    let st = shared.lock();
    let mut mine: Vec<_> = st
        .workspaces
        .iter()
        .filter_map(|ws| st.permission(ws, &caller.uuid).map(|p| (ws, p)))
        .filter(|(_, p)| admin_filter.is_none_or(|want| (p == "owner") == want))
        .collect();
    mine.sort_by(|a, b| a.0.slug.cmp(&b.0.slug));
    if descending {
        mine.reverse();
    }
    let items = mine
        .into_iter()
        .map(|(ws, p)| json::workspace_access(&shared.url, ws, &p))
        .collect();
    match paginate(&shared.url, uri.path(), &params, items, !st.omit_page_size) {
        Ok(page) => ok(&params, page),
        Err((status, message)) => error(status, message),
    }
}

async fn workspace_permission(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path(workspace): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let st = shared.lock();
    let Some(ws) = st.workspace(&workspace) else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("No workspace with identifier '{workspace}'."),
        );
    };
    let member = ws.members.iter().find(|m| m.user_uuid == caller.uuid);
    match (member, st.user(&caller.uuid)) {
        (Some(m), Some(rec)) => ok(
            &params(&raw),
            json::membership(&shared.url, ws, rec, &m.permission, &m.added_on),
        ),
        _ => error(
            StatusCode::FORBIDDEN,
            "You do not have access to this workspace.",
        ),
    }
}

async fn workspace(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path(workspace): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let st = shared.lock();
    match st.workspace(&workspace) {
        // Private workspaces are invisible to non-members: 404, not 403.
        Some(ws) if st.permission(ws, &caller.uuid).is_some() => {
            ok(&params(&raw), json::workspace(&shared.url, ws))
        }
        _ => error(
            StatusCode::NOT_FOUND,
            &format!("No workspace with identifier '{workspace}'."),
        ),
    }
}

/// Does a member with `permission` pass the `role=` filter of the repository listing?
/// Every member of a fake workspace may read every repository in it. `Err` for an unknown role.
fn role_allows(role: Option<&str>, permission: &str) -> Result<bool, String> {
    match role {
        None | Some("member") => Ok(true),
        Some("contributor") => Ok(permission == "owner" || permission == "collaborator"),
        Some("admin") | Some("owner") => Ok(permission == "owner"),
        Some(other) => Err(format!("Invalid role: {other}")),
    }
}

async fn repositories(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    uri: Uri,
    Path(workspace): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let params = params(&raw);
    let st = shared.lock();
    let Some(ws) = st.workspace(&workspace) else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("No workspace with identifier '{workspace}'."),
        );
    };
    let Some(permission) = st.permission(ws, &caller.uuid) else {
        return error(
            StatusCode::FORBIDDEN,
            "You do not have access to this workspace.",
        );
    };
    let visible = match role_allows(param(&params, "role"), &permission) {
        Ok(v) => v,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    let nickname = st
        .user(&caller.uuid)
        .map(|u| u.user.nickname.clone())
        .unwrap_or_default();
    let mut repos: Vec<_> = st
        .repos
        .iter()
        .filter(|r| visible && r.workspace_uuid == ws.uuid)
        .collect();
    // Sorted by slug so that pages are stable while tests add or rename repositories.
    repos.sort_by(|a, b| a.slug.cmp(&b.slug));
    let items = repos
        .into_iter()
        .map(|r| json::repository(&shared.url, ws, r, &nickname))
        .collect();
    match paginate(&shared.url, uri.path(), &params, items, !st.omit_page_size) {
        Ok(page) => ok(&params, page),
        Err((status, message)) => error(status, message),
    }
}

async fn repository(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path((workspace, repo_slug)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Response {
    let st = shared.lock();
    let (Some(ws), Some(repo)) = (st.workspace(&workspace), st.repo(&workspace, &repo_slug)) else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("Repository {workspace}/{repo_slug} not found"),
        );
    };
    if st.permission(ws, &caller.uuid).is_none() {
        return error(
            StatusCode::FORBIDDEN,
            "You do not have access to this repository.",
        );
    }
    let nickname = st
        .user(&caller.uuid)
        .map(|u| u.user.nickname.clone())
        .unwrap_or_default();
    ok(
        &params(&raw),
        json::repository(&shared.url, ws, repo, &nickname),
    )
}

/// The caller's permission on each repository of a workspace (admin / write / read).
async fn repository_permissions(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    uri: Uri,
    Path(workspace): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let params = params(&raw);
    let st = shared.lock();
    let (Some(ws), Some(rec)) = (st.workspace(&workspace), st.user(&caller.uuid)) else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("No workspace with identifier '{workspace}'."),
        );
    };
    let Some(permission) = st.permission(ws, &caller.uuid) else {
        return error(
            StatusCode::FORBIDDEN,
            "You do not have access to this workspace.",
        );
    };
    let level = match permission.as_str() {
        "owner" => "admin",
        "collaborator" => "write",
        _ => "read",
    };
    let mut repos: Vec<_> = st
        .repos
        .iter()
        .filter(|r| r.workspace_uuid == ws.uuid)
        .collect();
    repos.sort_by(|a, b| a.slug.cmp(&b.slug));
    let user = json::user(&shared.url, rec);
    let items = repos
        .into_iter()
        .map(|r| {
            serde_json::json!({
                "type": "repository_permission",
                "permission": level,
                "user": user,
                "repository": {
                    "type": "repository",
                    "uuid": r.uuid,
                    "name": r.name,
                    "full_name": format!("{}/{}", ws.slug, r.slug),
                },
            })
        })
        .collect();
    match paginate(&shared.url, uri.path(), &params, items, !st.omit_page_size) {
        Ok(page) => ok(&params, page),
        Err((status, message)) => error(status, message),
    }
}
