//! Shapes of Bitbucket Cloud's answers (shared/BITBUCKET.md); unknown fields are ignored.

use serde::Deserialize;

/// The pagination envelope; `next` is absent on the last page, `size` (the number of values
/// on all pages) is optional.
#[derive(Debug, Deserialize)]
pub struct Page<T> {
    #[serde(default = "Vec::new")]
    pub values: Vec<T>,
    pub next: Option<String>,
    pub size: Option<u64>,
}

/// `GET /2.0/user`.
#[derive(Clone, Debug, Deserialize)]
pub struct BbUser {
    pub uuid: String,
    #[serde(default)]
    pub account_id: String,
    #[serde(default)]
    pub nickname: String,
    #[serde(default)]
    pub display_name: String,
}

/// One entry of `GET /2.0/user/workspaces`.
#[derive(Debug, Deserialize)]
pub struct WorkspaceAccess {
    #[serde(default)]
    pub administrator: bool,
    pub workspace: WorkspaceBase,
}

#[derive(Debug, Deserialize)]
pub struct WorkspaceBase {
    pub uuid: String,
    pub slug: String,
}

/// `GET /2.0/workspaces/<slug>`: only the name is needed.
#[derive(Debug, Deserialize)]
pub struct WorkspaceFull {
    pub name: Option<String>,
}

/// `GET /2.0/user/workspaces/<slug>/permission`; the schema does not declare `permission`,
/// so it is optional here.
#[derive(Debug, Deserialize)]
pub struct WorkspaceMembership {
    pub permission: Option<String>,
}

/// A workspace as codelayer stores it.
#[derive(Clone, Debug)]
pub struct BbWorkspace {
    pub uuid: String,
    pub slug: String,
    pub name: String,
    pub permission: String,
}

/// One repository of `GET /2.0/repositories/<workspace>`.
#[derive(Clone, Debug, Deserialize)]
pub struct BbRepository {
    pub uuid: String,
    pub slug: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub full_name: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub language: String,
    #[serde(default)]
    pub size: i64,
    #[serde(default)]
    pub is_private: bool,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub updated_on: String,
    pub mainbranch: Option<Branch>,
    #[serde(default)]
    pub links: RepoLinks,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Branch {
    pub name: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct RepoLinks {
    pub html: Option<Href>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Href {
    pub href: String,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}
