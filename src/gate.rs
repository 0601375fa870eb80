//! Admission for CPU-heavy requests (search): a fixed number run at once, each user holds at
//! most a few of those places, and a request that cannot get in before its deadline is
//! turned away as busy. One user flooding expensive queries therefore waits behind their own
//! requests, while other users and `/healthz` keep being answered. Admitted work runs on a
//! pool of its own, apart from the blocking threads that clone and index.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::ids::UserId;

/// The admission gate.
pub struct Gate {
    global: Arc<Semaphore>,
    per_user: usize,
    users: Mutex<HashMap<UserId, Arc<Semaphore>>>,
}

/// A place inside the gate, given back when dropped.
pub struct Pass {
    _user: OwnedSemaphorePermit,
    _global: OwnedSemaphorePermit,
}

impl Gate {
    /// `slots` requests at once in all, at most `per_user` of them one user's.
    pub fn new(slots: usize, per_user: usize) -> Gate {
        let slots = slots.max(1);
        Gate {
            global: Arc::new(Semaphore::new(slots)),
            per_user: per_user.clamp(1, slots),
            users: Mutex::new(HashMap::new()),
        }
    }

    /// Waits up to `patience` for a place: first among the user's own requests, then among
    /// everyone's. None when the wait ran out.
    pub async fn enter(&self, user: UserId, patience: Duration) -> Option<Pass> {
        let mine = self.semaphore_of(user);
        tokio::time::timeout(patience, async {
            let user_permit = mine.acquire_owned().await.ok()?;
            let global_permit = self.global.clone().acquire_owned().await.ok()?;
            Some(Pass {
                _user: user_permit,
                _global: global_permit,
            })
        })
        .await
        .ok()
        .flatten()
    }

    fn semaphore_of(&self, user: UserId) -> Arc<Semaphore> {
        let mut users = self
            .users
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Forget idle users now and then, so the map stays as small as the active set.
        if users.len() > 1024 {
            let per_user = self.per_user;
            users.retain(|_, s| Arc::strong_count(s) > 1 || s.available_permits() < per_user);
        }
        users
            .entry(user)
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_user)))
            .clone()
    }
}

type Work = Box<dyn FnOnce() + Send>;

/// A fixed set of threads for search work (one per core), fed through a bounded queue.
pub struct Pool {
    queue: std::sync::mpsc::SyncSender<Work>,
}

impl Pool {
    /// Starts `threads` workers; they end when the pool is dropped.
    pub fn new(threads: usize) -> Pool {
        let (queue, work) = std::sync::mpsc::sync_channel::<Work>(1024);
        let work = Arc::new(Mutex::new(work));
        for n in 0..threads.max(1) {
            let work = work.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("search-{n}"))
                .spawn(move || {
                    loop {
                        let next = work
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .recv();
                        match next {
                            // A panic in one piece of work must not take the thread along.
                            Ok(job) => {
                                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                            }
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "starting a search thread failed");
            }
        }
        Pool { queue }
    }

    /// Runs `f` on the pool and waits for its result without blocking the async runtime.
    /// None if the work could not run (the pool is gone, or `f` panicked).
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Work = Box::new(move || {
            let _ = tx.send(f());
        });
        // The queue is bounded; when it is full, waiting for room happens off the runtime's
        // threads (and only then: a blocking task per job costs a thread hand-off).
        match self.queue.try_send(job) {
            Ok(()) => {}
            Err(std::sync::mpsc::TrySendError::Full(job)) => {
                let queue = self.queue.clone();
                tokio::task::spawn_blocking(move || queue.send(job).ok())
                    .await
                    .ok()
                    .flatten()?;
            }
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => return None,
        }
        rx.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(n: i64) -> UserId {
        serde_json::from_value(serde_json::json!(n)).expect("an id")
    }

    #[tokio::test]
    async fn one_user_cannot_take_every_place() {
        let gate = Gate::new(3, 2);
        let wait = Duration::from_millis(50);
        let a1 = gate.enter(user(1), wait).await;
        let a2 = gate.enter(user(1), wait).await;
        assert!(a1.is_some() && a2.is_some());
        assert!(
            gate.enter(user(1), wait).await.is_none(),
            "a third for the same user waits"
        );
        let b = gate.enter(user(2), wait).await;
        assert!(b.is_some(), "another user still gets in");
        assert!(
            gate.enter(user(3), wait).await.is_none(),
            "all places are taken"
        );
        drop(a1);
        assert!(
            gate.enter(user(3), wait).await.is_some(),
            "a freed place is given again"
        );
    }

    #[tokio::test]
    async fn the_pool_runs_work_and_survives_a_panic() {
        let pool = Pool::new(2);
        assert_eq!(pool.run(|| 6 * 7).await, Some(42));
        let panicked: Option<()> = pool.run(|| panic!("a bug")).await;
        assert!(panicked.is_none());
        assert_eq!(pool.run(|| "still here").await, Some("still here"));
    }
}
