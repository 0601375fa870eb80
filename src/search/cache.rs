//! A bounded cache of open shard readers, so a query does not reopen indexes.

use std::{
    collections::HashMap,
    path::Path,
    sync::{Arc, Mutex},
};

use crate::index::{IndexError, Shard};

/// Open shards by repository id, least recently used evicted beyond `capacity`.
pub struct ShardCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    clock: u64,
    open: HashMap<i64, (Arc<Shard>, u64)>,
}

impl ShardCache {
    pub fn new(capacity: usize) -> ShardCache {
        ShardCache {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The open shard of a repository, opening it (blocking I/O) when not cached.
    pub fn get(&self, repo_id: i64, dir: &Path) -> Result<Arc<Shard>, IndexError> {
        {
            let mut inner = self.lock();
            inner.clock += 1;
            let now = inner.clock;
            if let Some((shard, used)) = inner.open.get_mut(&repo_id) {
                *used = now;
                return Ok(shard.clone());
            }
        }
        let shard = Arc::new(Shard::open(dir)?);
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
    pub fn forget(&self, repo_id: i64) {
        self.lock().open.remove(&repo_id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}
