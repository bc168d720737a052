//! Per-pool selection structures. Every operation is O(1) or O(log n) in the pool size,
//! so that a 50,000-PE pool costs about what a 500-PE pool does:
//!
//! - [`Ordered`]: RR, WRR, PRIO and the least-used family. A sorted map from order key to
//!   a circular list of the PEs with that key. Handing out a PE moves it to the tail of
//!   its list (RSPLIB: it gets the newest sequence number), which is the round robin
//!   among equals; a PE whose key changes (degradation, WRR pass) moves lists.
//! - [`Weighted`]: the weighted random family, a Fenwick tree of weights.
//! - [`Uniform`]: Random, a dense array and a partial Fisher–Yates shuffle.

mod ordered;
mod uniform;
mod weighted;

pub(crate) use ordered::Ordered;
pub(crate) use uniform::Uniform;
pub(crate) use weighted::Weighted;

use super::policy::{Class, Policy};
use crate::rng::Rng;

/// Slot index of a PE inside its pool.
pub(crate) type Slot = u32;

/// The selection structure of one pool; all its PEs share one policy type.
#[derive(Debug)]
pub(crate) enum Selector {
    Ordered(Ordered),
    Weighted(Weighted),
    Uniform(Uniform),
}

impl Selector {
    /// The structure for a pool of `policy`'s type.
    pub(crate) fn new(policy: Policy) -> Self {
        match policy.class() {
            Class::Ordered => Self::Ordered(Ordered::new(policy.fixed_order())),
            Class::Weighted => Self::Weighted(Weighted::default()),
            Class::Uniform => Self::Uniform(Uniform::default()),
        }
    }

    pub(crate) fn insert(&mut self, slot: Slot, policy: Policy) {
        match self {
            Self::Ordered(s) => s.insert(slot, policy),
            Self::Weighted(s) => s.insert(slot, policy),
            Self::Uniform(s) => s.insert(slot),
        }
    }

    pub(crate) fn remove(&mut self, slot: Slot) {
        match self {
            Self::Ordered(s) => s.remove(slot),
            Self::Weighted(s) => s.remove(slot),
            Self::Uniform(s) => s.remove(slot),
        }
    }

    /// Re-registration: new policy values, degradation reset (RFC 5356 §4.2.2).
    pub(crate) fn update(&mut self, slot: Slot, policy: Policy) {
        match self {
            Self::Ordered(s) => s.update(slot, policy),
            Self::Weighted(s) => s.update(slot, policy),
            Self::Uniform(_) => {}
        }
    }

    /// Appends up to `n` distinct selectable PEs to `out`, best first, and advances the
    /// selection state of the first `increment` of them. `policy_of` gives the policy of
    /// the PE in a slot (the structures keep none, to stay small).
    pub(crate) fn select(
        &mut self,
        n: usize,
        increment: usize,
        rng: &mut Rng,
        out: &mut Vec<Slot>,
        policy_of: impl Fn(Slot) -> Option<Policy>,
    ) {
        match self {
            Self::Ordered(s) if s.fixed_order() => {
                s.select_fixed(n, increment, |slot| out.push(slot))
            }
            Self::Ordered(s) => s.select(n, increment, out, policy_of),
            Self::Weighted(s) => s.select(n, increment, rng, out, policy_of),
            Self::Uniform(s) => s.select(n, rng, out),
        }
    }

    /// Accumulated degradation of a PE (0 for policies without one).
    pub(crate) fn degradation(&self, slot: Slot) -> u32 {
        match self {
            Self::Ordered(s) => s.degradation(slot),
            Self::Weighted(s) => s.degradation(slot),
            Self::Uniform(_) => 0,
        }
    }
}

/// Grows a per-slot vector so that `slot` is a valid index.
fn ensure<T: Default + Clone>(v: &mut Vec<T>, slot: Slot) {
    let need = slot as usize + 1;
    if v.len() < need {
        v.resize(need, T::default());
    }
}
