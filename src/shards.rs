//! Open shard readers: the one place that opens a repository's index, with a bounded cache
//! so a query does not reopen indexes.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use crate::{
    ids::RepoId,
    index::{IndexError, Shard},
    layout::Layout,
};

/// Open shards by repository id, least recently used evicted beyond `capacity`.
pub struct ShardCache {
    capacity: usize,
    layout: Layout,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    clock: u64,
    open: HashMap<RepoId, (Arc<Shard>, u64)>,
}

impl ShardCache {
    pub fn new(layout: Layout, capacity: usize) -> ShardCache {
        ShardCache {
            capacity: capacity.max(1),
            layout,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The open shard of a repository, opening it (blocking I/O) when not cached.
    pub fn get(&self, repo_id: RepoId) -> Result<Arc<Shard>, IndexError> {
        {
            let mut inner = self.lock();
            inner.clock += 1;
            let now = inner.clock;
            if let Some((shard, used)) = inner.open.get_mut(&repo_id) {
                *used = now;
                return Ok(shard.clone());
            }
        }
        let shard = Arc::new(Shard::open(&self.layout.shard_dir(repo_id))?);
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        inner.open.insert(repo_id, (shard.clone(), now));
        while inner.open.len() > self.capacity {
            let oldest = inner
                .open
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(id, _)| *id);
            match oldest {
                Some(id) => inner.open.remove(&id),
                None => break,
            };
        }
        Ok(shard)
    }

    /// Drops a repository's reader (its shard was rebuilt or deleted).
    pub fn forget(&self, repo_id: RepoId) {
        self.lock().open.remove(&repo_id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
