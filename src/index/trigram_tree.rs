//! A boolean condition on the trigrams a file contains, kept small while it is built.

use std::collections::HashSet;

/// Most trigram leaves in a condition; beyond, AND branches are dropped (a weaker condition
/// is still correct) and an OR becomes no constraint.
pub(super) const MAX_LEAVES: usize = 512;

/// A condition on a file's trigrams.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Q {
    /// No constraint: every file is a candidate.
    All,
    /// The file contains this (folded) trigram.
    Tri(u32),
    /// All of these hold.
    And(Vec<Q>),
    /// One of these holds.
    Or(Vec<Q>),
}

impl Q {
    /// Both conditions.
    pub(crate) fn and(self, other: Q) -> Q {
        Q::and_all([self, other])
    }

    /// All of the conditions. Past [`MAX_LEAVES`] further ones are dropped (a weaker
    /// condition is still correct), which keeps building linear.
    pub(super) fn and_all(items: impl IntoIterator<Item = Q>) -> Q {
        let mut parts = Parts::default();
        for q in items {
            match q {
                Q::All => {}
                Q::And(v) => v.into_iter().for_each(|q| parts.push(q)),
                q => parts.push(q),
            }
        }
        match parts.list.len() {
            0 => Q::All,
            1 => parts.list.swap_remove(0),
            _ => Q::And(parts.list),
        }
    }

    /// One of the conditions; no constraint once it grows past [`MAX_LEAVES`].
    pub(super) fn or_all(items: impl IntoIterator<Item = Q>) -> Q {
        let mut parts = Parts::default();
        for q in items {
            match q {
                Q::All => return Q::All,
                Q::Or(v) => v.into_iter().for_each(|q| parts.push(q)),
                q => parts.push(q),
            }
            if parts.leaves > MAX_LEAVES {
                return Q::All;
            }
        }
        match parts.list.len() {
            0 => Q::All,
            1 => parts.list.swap_remove(0),
            _ => Q::Or(parts.list),
        }
    }

    /// Number of trigram leaves.
    pub(super) fn leaves(&self) -> usize {
        match self {
            Q::All => 0,
            Q::Tri(_) => 1,
            Q::And(v) | Q::Or(v) => v.iter().map(Q::leaves).sum(),
        }
    }

    /// A weaker condition with at most `budget` leaves (dropping AND branches is safe).
    pub(super) fn prune(self, budget: usize) -> Q {
        if self.leaves() <= budget {
            return self;
        }
        match self {
            Q::And(v) => {
                let mut left = budget;
                let mut kept = Vec::new();
                for q in v {
                    let q = q.prune(left);
                    left -= q.leaves();
                    kept.push(q);
                }
                Q::and_all(kept)
            }
            _ => Q::All,
        }
    }
}

/// Distinct sub-conditions being collected, with their leaf count.
#[derive(Default)]
struct Parts {
    list: Vec<Q>,
    seen: HashSet<Q>,
    leaves: usize,
}

impl Parts {
    fn push(&mut self, q: Q) {
        if self.leaves <= MAX_LEAVES && !self.seen.contains(&q) {
            self.leaves += q.leaves();
            self.seen.insert(q.clone());
            self.list.push(q);
        }
    }
}
