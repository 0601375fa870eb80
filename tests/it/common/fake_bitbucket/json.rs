//! JSON the fake answers with: Bitbucket's object shapes (after the official OpenAPI
//! description's examples), its error bodies, the pagination envelope and `fields=` trimming.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::state::{Repo, UserRecord, Workspace};

/// Where Atlassian announced the removal of the cross-workspace listings.
const CHANGE_2770_URL: &str =
    "https://developer.atlassian.com/cloud/bitbucket/changelog/#CHANGE-2770";

pub(super) fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp
}

/// Bitbucket's error envelope: `{"type": "error", "error": {"message": …}}`.
pub(super) fn error(status: StatusCode, message: &str) -> Response {
    json_response(
        status,
        &json!({"type": "error", "error": {"message": message}}),
    )
}

/// The answer of the endpoints removed by CHANGE-2770 (since April 2026).
pub(super) fn gone() -> Response {
    json_response(
        StatusCode::GONE,
        &json!({
            "type": "error",
            "error": {
                "message": "CHANGE-2770 - Functionality has been deprecated",
                "detail": "Please read the changelog entry for more details.",
                "data": {"announcement_url": CHANGE_2770_URL}
            }
        }),
    )
}

fn href(url: String) -> Value {
    json!({ "href": url })
}

pub(super) fn user(base: &str, rec: &UserRecord) -> Value {
    let u = &rec.user;
    json!({
        "type": "user",
        "uuid": u.uuid,
        "account_id": u.account_id,
        "nickname": u.nickname,
        "display_name": u.display_name,
        "account_status": "active",
        "created_on": rec.created_on,
        "links": {
            "self": href(format!("{base}/2.0/users/{}", enc(&u.uuid))),
            "avatar": href(format!("{base}/account/{}/avatar/", u.nickname)),
            "html": href(format!("{base}/{}/", enc(&u.uuid))),
        }
    })
}

/// The short form embedded in memberships: no `created_on`.
fn user_summary(base: &str, rec: &UserRecord) -> Value {
    let mut v = user(base, rec);
    if let Some(obj) = v.as_object_mut() {
        obj.remove("created_on");
        obj.remove("account_status");
    }
    v
}

/// `workspace_base`: what `/2.0/user/workspaces` embeds. No `name` (per the swagger example).
pub(super) fn workspace_base(base: &str, ws: &Workspace) -> Value {
    json!({
        "type": "workspace_base",
        "uuid": ws.uuid,
        "slug": ws.slug,
        "links": {
            "avatar": href(format!("{base}/workspaces/{}/avatar/", ws.slug)),
            "self": href(format!("{base}/2.0/workspaces/{}", ws.slug)),
        }
    })
}

/// The full `workspace` object of `GET /2.0/workspaces/{slug}`.
pub(super) fn workspace(base: &str, ws: &Workspace) -> Value {
    let s = &ws.slug;
    json!({
        "type": "workspace",
        "uuid": ws.uuid,
        "name": ws.name,
        "slug": s,
        "is_private": true,
        "is_privacy_enforced": false,
        "forking_mode": "allow_forks",
        "created_on": ws.created_on,
        "updated_on": ws.created_on,
        "links": {
            "avatar": href(format!("{base}/workspaces/{s}/avatar/")),
            "html": href(format!("{base}/{s}/")),
            "members": href(format!("{base}/2.0/workspaces/{s}/members")),
            "owners": href(format!("{base}/2.0/workspaces/{s}/members?q=permission%3D%22owner%22")),
            "projects": href(format!("{base}/2.0/workspaces/{s}/projects")),
            "repositories": href(format!("{base}/2.0/repositories/{s}")),
            "snippets": href(format!("{base}/2.0/snippets/{s}")),
            "self": href(format!("{base}/2.0/workspaces/{s}")),
        }
    })
}

pub(super) fn workspace_access(base: &str, ws: &Workspace, permission: &str) -> Value {
    json!({
        "type": "workspace_access",
        "administrator": permission == "owner",
        "workspace": workspace_base(base, ws),
    })
}

pub(super) fn membership(
    base: &str,
    ws: &Workspace,
    rec: &UserRecord,
    permission: &str,
    added_on: &str,
) -> Value {
    let mut short_ws = workspace(base, ws);
    if let Some(obj) = short_ws.as_object_mut() {
        obj.retain(|k, _| matches!(k.as_str(), "type" | "uuid" | "slug" | "name" | "links"));
    }
    json!({
        "type": "workspace_membership",
        "permission": permission,
        "added_on": added_on,
        "last_accessed": added_on,
        "user": user_summary(base, rec),
        "workspace": short_ws,
        "links": {
            "self": href(format!("{base}/2.0/workspaces/{}/members/{}", ws.slug, enc(&rec.user.uuid))),
        }
    })
}

/// The `repository` object. `caller_nickname` goes into the https clone link, as
/// bitbucket.org does for a signed-in caller (`https://nick@bitbucket.org/ws/repo.git`).
pub(super) fn repository(base: &str, ws: &Workspace, repo: &Repo, caller_nickname: &str) -> Value {
    let full = format!("{}/{}", ws.slug, repo.slug);
    let host = base.strip_prefix("http://").unwrap_or(base);
    let mainbranch = match &repo.mainbranch {
        Some(name) => json!({"type": "branch", "name": name}),
        None => Value::Null,
    };
    json!({
        "type": "repository",
        "uuid": repo.uuid,
        "slug": repo.slug,
        "name": repo.name,
        "full_name": full,
        "is_private": true,
        "scm": "git",
        "description": "",
        "language": "",
        "size": repo.size,
        "created_on": repo.created_on,
        "updated_on": repo.updated_on,
        "has_issues": false,
        "has_wiki": false,
        "fork_policy": "no_public_forks",
        "mainbranch": mainbranch,
        "owner": {
            "type": "team",
            "uuid": ws.uuid,
            "username": ws.slug,
            "display_name": ws.name,
        },
        "workspace": {
            "type": "workspace",
            "uuid": ws.uuid,
            "slug": ws.slug,
            "name": ws.name,
            "links": {
                "self": href(format!("{base}/2.0/workspaces/{}", ws.slug)),
                "html": href(format!("{base}/{}/", ws.slug)),
            }
        },
        // Every fake repository sits in its workspace's default project.
        "project": {
            "type": "project",
            "key": "PROJ",
            "uuid": ws.project_uuid,
            "name": "Default project",
            "links": {
                "html": href(format!("{base}/{}/workspace/projects/PROJ", ws.slug)),
            }
        },
        "links": {
            "self": href(format!("{base}/2.0/repositories/{full}")),
            "html": href(format!("{base}/{full}")),
            "avatar": href(format!("{base}/{full}/avatar/32/")),
            "commits": href(format!("{base}/2.0/repositories/{full}/commits")),
            "clone": [
                {"name": "https", "href": format!("http://{caller_nickname}@{host}/{full}.git")},
                {"name": "ssh", "href": format!("git@{host}:{full}.git")},
            ],
        }
    })
}

/// Percent-encodes a uuid's braces for use in a URL path.
pub(super) fn enc(uuid: &str) -> String {
    uuid.replace('{', "%7B").replace('}', "%7D")
}

/// Builds one page of Bitbucket's envelope. `next`/`previous` are absolute URLs that repeat
/// the request's query with only `page` changed, as the real service does. `Err` carries the
/// status and message of Bitbucket's error for a bad `pagelen` or `page`. `size` (the count
/// over all pages) is optional in Bitbucket's envelope: `with_size` false leaves it out.
pub(super) fn paginate(
    base: &str,
    path: &str,
    params: &[(String, String)],
    items: Vec<Value>,
    with_size: bool,
) -> Result<Value, (StatusCode, &'static str)> {
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    // Bitbucket answers 400 "Invalid pagelen" beyond its maximum (100) rather than clamping.
    let pagelen = match get("pagelen") {
        None => 10,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=100).contains(&n) => n,
            _ => return Err((StatusCode::BAD_REQUEST, "Invalid pagelen")),
        },
    };
    let page = match get("page") {
        None => 1,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if n >= 1 => n,
            _ => return Err((StatusCode::BAD_REQUEST, "Invalid page")),
        },
    };
    let size = items.len();
    let start = (page - 1).saturating_mul(pagelen);
    if page > 1 && start >= size {
        return Err((StatusCode::NOT_FOUND, "Invalid page"));
    }
    let values: Vec<Value> = items.into_iter().skip(start).take(pagelen).collect();
    let link = |p: usize| {
        let mut ser = url::form_urlencoded::Serializer::new(String::new());
        let mut saw_page = false;
        for (k, v) in params {
            if k == "page" {
                saw_page = true;
                ser.append_pair("page", &p.to_string());
            } else {
                ser.append_pair(k, v);
            }
        }
        if !saw_page {
            ser.append_pair("page", &p.to_string());
        }
        format!("{base}{path}?{}", ser.finish())
    };
    let mut env = Map::new();
    env.insert("pagelen".into(), json!(pagelen));
    if with_size {
        env.insert("size".into(), json!(size));
    }
    env.insert("page".into(), json!(page));
    if start + pagelen < size {
        env.insert("next".into(), json!(link(page + 1)));
    }
    if page > 1 {
        env.insert("previous".into(), json!(link(page - 1)));
    }
    env.insert("values".into(), Value::Array(values));
    Ok(Value::Object(env))
}

/// Applies Bitbucket's partial-response parameter: `fields=a,b.c` keeps only those paths
/// (so a client that forgets `next` loses it, as BITBUCKET.md warns), `-a.b` removes one,
/// `+a` asks for extras (a no-op here: every answer is already complete). `*` matches any key;
/// a path through an array applies to each element.
pub(super) fn apply_fields(value: Value, spec: &str) -> Value {
    let mut keep: Vec<Vec<&str>> = Vec::new();
    let mut drop: Vec<Vec<&str>> = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        // `+extra` asks for more than the default: every answer here is already complete.
        if let Some(rest) = item.strip_prefix('-') {
            drop.push(rest.split('.').collect());
        } else if !item.starts_with('+') {
            keep.push(item.split('.').collect());
        }
    }
    let mut value = if keep.is_empty() {
        value
    } else {
        select(value, &keep)
    };
    for path in &drop {
        remove(&mut value, path);
    }
    value
}

fn select(value: Value, paths: &[Vec<&str>]) -> Value {
    if paths.iter().any(std::vec::Vec::is_empty) {
        return value;
    }
    match value {
        Value::Object(obj) => {
            let mut out = Map::new();
            for (key, child) in obj {
                let sub: Vec<Vec<&str>> = paths
                    .iter()
                    .filter(|p| p[0] == key || p[0] == "*")
                    .map(|p| p[1..].to_vec())
                    .collect();
                if !sub.is_empty() {
                    out.insert(key, select(child, &sub));
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(|v| select(v, paths)).collect()),
        other => other,
    }
}

fn remove(value: &mut Value, path: &[&str]) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    match value {
        Value::Object(obj) if rest.is_empty() => {
            if *first == "*" {
                obj.clear();
            } else {
                obj.remove(*first);
            }
        }
        Value::Object(obj) => {
            for (key, child) in obj.iter_mut() {
                if key == first || *first == "*" {
                    remove(child, rest);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| remove(v, path)),
        _ => {}
    }
}
