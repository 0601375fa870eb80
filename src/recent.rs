//! The most recent answers of each user, kept until a shard changes: a person paging back and
//! forth, a page reloaded, an assistant asking the same thing twice get the answer at once.

use std::{
    any::Any,
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
};

use crate::ids::UserId;

type Answer = Arc<dyn Any + Send + Sync>;
/// A user's answers, oldest first: (request, shard generation, answer).
type Answers = VecDeque<(String, u64, Answer)>;

/// Recent answers by user and request, valid for one shard generation.
pub struct Recent {
    per_user: usize,
    users: Mutex<HashMap<UserId, Answers>>,
}

impl Recent {
    /// Keeps `per_user` answers for each user (0 turns the cache off).
    pub fn new(per_user: usize) -> Recent {
        Recent {
            per_user,
            users: Mutex::new(HashMap::new()),
        }
    }

    /// The answer to `key` computed at `generation`, if kept.
    pub fn get<T: Any + Send + Sync>(
        &self,
        user: UserId,
        key: &str,
        generation: u64,
    ) -> Option<Arc<T>> {
        let users = self.lock();
        let (_, _, answer) = users
            .get(&user)?
            .iter()
            .find(|(k, g, _)| k == key && *g == generation)?;
        answer.clone().downcast::<T>().ok()
    }

    /// Keeps an answer, forgetting the user's oldest beyond the limit.
    pub fn put<T: Any + Send + Sync>(
        &self,
        user: UserId,
        key: String,
        generation: u64,
        answer: Arc<T>,
    ) {
        if self.per_user == 0 {
            return;
        }
        let mut users = self.lock();
        // Bounded by the active set: a user's entries go when all are stale.
        if users.len() > 10_000 {
            users.retain(|_, answers| answers.iter().any(|(_, g, _)| *g == generation));
        }
        let answers = users.entry(user).or_default();
        answers.retain(|(k, g, _)| *k != key && *g == generation);
        answers.push_back((key, generation, answer));
        while answers.len() > self.per_user {
            answers.pop_front();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<UserId, Answers>> {
        self.users
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(n: i64) -> UserId {
        serde_json::from_value(serde_json::json!(n)).expect("an id")
    }

    #[test]
    fn answers_last_until_the_generation_changes() {
        let recent = Recent::new(2);
        recent.put(user(1), "q=a".into(), 7, Arc::new(41u32));
        assert_eq!(recent.get::<u32>(user(1), "q=a", 7).as_deref(), Some(&41));
        assert!(
            recent.get::<u32>(user(2), "q=a", 7).is_none(),
            "another user's is not shared"
        );
        assert!(
            recent.get::<u32>(user(1), "q=a", 8).is_none(),
            "a shard changed"
        );
        recent.put(user(1), "q=b".into(), 7, Arc::new(1u32));
        recent.put(user(1), "q=c".into(), 7, Arc::new(2u32));
        assert!(
            recent.get::<u32>(user(1), "q=a", 7).is_none(),
            "the oldest went"
        );
        assert!(Recent::new(0).get::<u32>(user(1), "q=a", 7).is_none());
    }
}
