//! Ids that carry who owns what.
//!
//! A `UserId` exists only after authentication (the extractors in `identity` load it from a
//! live session or token) or inside a job payload; `WorkspaceId` and `RepoId` exist only when
//! read from a row — in request handling always through a query scoped to the user — or from
//! a job payload. No id is made from a number a request sent, so an operation that takes one
//! cannot be handed an id whose ownership nobody checked.

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[derive(Serialize, Deserialize, sqlx::Type)]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(i64);

        impl $name {
            /// The number, for SQL binds, URLs and logs.
            pub fn get(self) -> i64 {
                self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// A signed-in user (or the user a job works for).
    UserId
);
id_type!(
    /// A workspace row, loaded through its owner.
    WorkspaceId
);
id_type!(
    /// A repository row, loaded through its owner.
    RepoId
);

/// The signed-in user, loaded through the session or a token on every request.
#[derive(Clone, Debug)]
pub struct CurrentUser {
    pub id: UserId,
    pub display_name: String,
}
