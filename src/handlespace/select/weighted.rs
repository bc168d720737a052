//! Weighted random selection without repetition over a Fenwick tree: O(log n) to pick,
//! insert, remove or re-weight.

use super::{Slot, ensure};
use crate::handlespace::policy::Policy;
use crate::rng::Rng;

const NONE: u32 = u32::MAX;
/// Repeated draws tolerated in one selection before switching to lifting.
const MAX_REDRAWS: u32 = 4;

/// A PE's place in the tree and its degradation. Its policy is not kept here (the pool
/// passes a lookup into its elements).
#[derive(Clone, Debug, Default)]
struct Node {
    degradation: u32,
    pos: u32,
}

#[derive(Debug)]
pub(crate) struct Weighted {
    nodes: Vec<Node>,
    /// Dense position → slot.
    dense: Vec<Slot>,
    /// Dense position → current weight.
    weights: Vec<u64>,
    /// Fenwick tree, 1-based: `tree[i]` sums `weights[i - lowbit(i) .. i]`.
    tree: Vec<u64>,
    total: u64,
    /// Scratch for the weights lifted out during one selection.
    lifted: Vec<(usize, u64)>,
}

impl Default for Weighted {
    fn default() -> Self {
        Self {
            nodes: Vec::new(),
            dense: Vec::new(),
            weights: Vec::new(),
            tree: vec![0],
            total: 0,
            lifted: Vec::new(),
        }
    }
}

fn lowbit(i: usize) -> usize {
    i & i.wrapping_neg()
}

impl Weighted {
    pub(crate) fn insert(&mut self, slot: Slot, policy: Policy) {
        ensure(&mut self.nodes, slot);
        let w = policy.weight(0);
        self.nodes[slot as usize] = Node {
            degradation: 0,
            pos: self.dense.len() as u32,
        };
        self.dense.push(slot);
        self.weights.push(w);
        // Appending index i: its node covers (i − lowbit(i), i].
        let i = self.dense.len();
        let v = w + self.prefix(i - 1) - self.prefix(i - lowbit(i));
        self.tree.push(v);
        self.total += w;
    }

    pub(crate) fn remove(&mut self, slot: Slot) {
        let Some(node) = self.nodes.get(slot as usize) else {
            return;
        };
        let p = node.pos as usize;
        if node.pos == NONE || p >= self.dense.len() {
            return;
        }
        let last = self.dense.len() - 1;
        self.set_weight(p, 0);
        if p != last {
            let (moved, w) = (self.dense[last], self.weights[last]);
            self.set_weight(last, 0);
            self.set_weight(p, w);
            self.dense[p] = moved;
            self.nodes[moved as usize].pos = p as u32;
        }
        // The last node of a Fenwick tree covers no other index: dropping it is exact.
        self.dense.pop();
        self.weights.pop();
        self.tree.pop();
        self.nodes[slot as usize] = Node {
            pos: NONE,
            ..Node::default()
        };
    }

    pub(crate) fn update(&mut self, slot: Slot, policy: Policy) {
        let Some(node) = self.nodes.get_mut(slot as usize) else {
            return;
        };
        node.degradation = 0;
        let p = node.pos as usize;
        if p < self.dense.len() {
            self.set_weight(p, policy.weight(0));
        }
    }

    pub(crate) fn degradation(&self, slot: Slot) -> u32 {
        self.nodes.get(slot as usize).map_or(0, |n| n.degradation)
    }

    /// `policy_of` gives the policy of the PE in a slot.
    pub(crate) fn select(
        &mut self,
        n: usize,
        increment: usize,
        rng: &mut Rng,
        out: &mut Vec<Slot>,
        policy_of: impl Fn(Slot) -> Option<Policy>,
    ) {
        let start = out.len();
        self.lifted.clear();
        let mut misses = 0;
        while out.len() - start < n && self.total > 0 {
            let p = self.find(rng.below(self.total));
            let slot = self.dense[p];
            // Drawing again on a repeat is exact sampling without replacement and, in a
            // large pool, rarely needed: three tree descents instead of three descents
            // and six tree updates. When repeats pile up (a few heavy PEs), lift the
            // chosen ones out of the tree instead.
            if out[start..].contains(&slot) {
                misses += 1;
                if misses >= MAX_REDRAWS {
                    self.lift_chosen(&out[start..]);
                }
                continue;
            }
            out.push(slot);
            if !self.lifted.is_empty() {
                self.lift(p);
            }
        }
        for i in 0..self.lifted.len() {
            let (p, w) = self.lifted[i];
            self.set_weight(p, w);
        }
        let picked = out.len() - start;
        for i in 0..increment.min(picked) {
            let slot = out[start + i];
            let Some(policy) = policy_of(slot) else {
                continue;
            };
            let node = &mut self.nodes[slot as usize];
            if let Some(step) = policy.degradation_step() {
                node.degradation = node.degradation.saturating_add(step);
                let (p, w) = (node.pos as usize, policy.weight(node.degradation));
                self.set_weight(p, w);
            }
        }
    }

    /// Takes the chosen PEs' weights out of the tree (restored after the selection).
    fn lift_chosen(&mut self, chosen: &[Slot]) {
        for &slot in chosen {
            let p = self.nodes[slot as usize].pos as usize;
            if self.weights[p] > 0 {
                self.lift(p);
            }
        }
    }

    fn lift(&mut self, p: usize) {
        self.lifted.push((p, self.weights[p]));
        self.set_weight(p, 0);
    }

    fn set_weight(&mut self, p: usize, w: u64) {
        let old = self.weights[p];
        if old == w {
            return;
        }
        self.weights[p] = w;
        self.total = self.total - old + w;
        // Two's-complement delta: the tree's sums stay exact modulo 2^64 and are never
        // negative as wholes.
        let delta = w.wrapping_sub(old);
        let mut i = p + 1;
        while i < self.tree.len() {
            self.tree[i] = self.tree[i].wrapping_add(delta);
            i += lowbit(i);
        }
    }

    fn prefix(&self, mut i: usize) -> u64 {
        let mut s = 0u64;
        while i > 0 {
            s = s.wrapping_add(self.tree[i]);
            i -= lowbit(i);
        }
        s
    }

    /// Dense position whose cumulative weight range contains `r` (`r < total`).
    fn find(&self, mut r: u64) -> usize {
        let n = self.tree.len() - 1;
        let mut pos = 0;
        let mut bit = if n == 0 {
            0
        } else {
            1usize << (usize::BITS - 1 - n.leading_zeros())
        };
        while bit > 0 {
            let next = pos + bit;
            if next <= n && self.tree[next] <= r {
                pos = next;
                r -= self.tree[next];
            }
            bit >>= 1;
        }
        pos.min(n.saturating_sub(1))
    }
}
