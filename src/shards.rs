//! Open shard readers: the one place that opens a repository's index, with a bounded cache
//! so a query does not reopen indexes.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, Weak},
    time::{Duration, Instant},
};

use crate::{
    ids::RepoId,
    index::{ContentCache, IndexError, Shard},
    layout::Layout,
};

/// Open shards by repository id, least recently used evicted beyond `capacity`.
pub struct ShardCache {
    capacity: usize,
    /// Decoded file content, shared by the open shards.
    content: Arc<ContentCache>,
    layout: Layout,
    inner: Mutex<Inner>,
    /// Bumped whenever a shard is replaced or retired: answers computed before are stale.
    generation: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct Inner {
    clock: u64,
    open: HashMap<RepoId, (Arc<Shard>, u64)>,
    /// Every reader handed out, cached or not, to tell whether a search still holds one.
    lent: HashMap<RepoId, Vec<Weak<Shard>>>,
    /// Repositories being purged: their shards are not opened again.
    retired: HashSet<RepoId>,
}

/// Why a shard cannot be handed out.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// The repository is being deleted.
    #[error("the repository is being deleted")]
    Retired,
    #[error(transparent)]
    Index(#[from] IndexError),
}

impl ShardCache {
    pub fn new(layout: Layout, capacity: usize, content: Arc<ContentCache>) -> ShardCache {
        ShardCache {
            capacity: capacity.max(1),
            content,
            layout,
            inner: Mutex::new(Inner::default()),
            generation: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The open shard of a repository, opening it (blocking I/O) when not cached.
    pub fn get(&self, repo_id: RepoId) -> Result<Arc<Shard>, ShardError> {
        {
            let mut inner = self.lock();
            if inner.retired.contains(&repo_id) {
                return Err(ShardError::Retired);
            }
            inner.clock += 1;
            let now = inner.clock;
            if let Some((shard, used)) = inner.open.get_mut(&repo_id) {
                *used = now;
                return Ok(shard.clone());
            }
        }
        let shard = Arc::new(Shard::open_cached(
            &self.layout.shard_dir(repo_id),
            self.content.clone(),
        )?);
        let mut inner = self.lock();
        // Retired while it was being opened: the purge must not find it held.
        if inner.retired.contains(&repo_id) {
            return Err(ShardError::Retired);
        }
        let lent = inner.lent.entry(repo_id).or_default();
        lent.retain(|w| w.strong_count() > 0);
        lent.push(Arc::downgrade(&shard));
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

    /// Drops a repository's cached reader: a new shard was installed in its place (which
    /// also ends a retirement: the id is in use again).
    pub fn forget(&self, repo_id: RepoId) {
        self.bump();
        let mut inner = self.lock();
        inner.open.remove(&repo_id);
        inner.retired.remove(&repo_id);
    }

    /// Before a repository's files are deleted: no reader is opened for it any more, and this
    /// waits (up to `patience`) until searches still holding one have let go, so no deleted
    /// file stays open. Returns false if one was still held when patience ran out.
    pub async fn retire(&self, repo_id: RepoId, patience: Duration) -> bool {
        self.bump();
        {
            let mut inner = self.lock();
            inner.retired.insert(repo_id);
            inner.open.remove(&repo_id);
        }
        let started = Instant::now();
        loop {
            let held = {
                let mut inner = self.lock();
                let lent = inner.lent.entry(repo_id).or_default();
                lent.retain(|w| w.strong_count() > 0);
                let held = !lent.is_empty();
                if !held {
                    inner.lent.remove(&repo_id);
                }
                held
            };
            if !held {
                return true;
            }
            if started.elapsed() >= patience {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Changes whenever any shard changes; an answer computed at one generation is valid
    /// while it lasts.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    fn bump(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
