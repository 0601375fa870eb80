//! Where things live under DATA_DIR: the one place that knows the layout.
//!
//! ```text
//! DATA_DIR/git/<repo_id>.git   bare clones
//! DATA_DIR/shards/<repo_id>/   the index of the repository's current commit
//! DATA_DIR/tmp/<repo_id>-<r>/  builds in progress (emptied at start-up)
//! ```

use std::path::{Path, PathBuf};

use crate::ids::RepoId;

/// The data directory and the paths inside it.
#[derive(Clone, Debug)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Layout {
        Layout { root: root.into() }
    }

    /// DATA_DIR itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A repository's bare clone.
    pub fn clone_dir(&self, repo: RepoId) -> PathBuf {
        self.root.join("git").join(format!("{repo}.git"))
    }

    /// A repository's current index shard.
    pub fn shard_dir(&self, repo: RepoId) -> PathBuf {
        self.root.join("shards").join(repo.to_string())
    }

    /// Where builds in progress live.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// A fresh directory name for a build of `repo` (named so a purge can find it).
    pub fn build_dir(&self, repo: RepoId, random: &str) -> PathBuf {
        self.tmp_dir().join(format!("{repo}-{random}"))
    }

    /// True when a tmp/ entry belongs to a build of `repo`.
    pub fn is_build_of(name: &str, repo: RepoId) -> bool {
        name.strip_prefix(&format!("{repo}-")).is_some()
    }

    /// Empties tmp/: builds that a crash interrupted are never resumed, only redone.
    pub fn clear_tmp(&self) -> std::io::Result<()> {
        let tmp = self.tmp_dir();
        match std::fs::remove_dir_all(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        std::fs::create_dir_all(tmp)
    }
}
