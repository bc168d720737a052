//! Ordered selection: sorted by key, round robin among equal keys.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::{Slot, ensure};
use crate::handlespace::policy::Policy;

/// WRR stride numerator: a PE of weight w advances its pass by `STRIDE / w` when handed
/// out, so PEs are chosen in proportion to their weights, interleaved (stride
/// scheduling). 2^32 keeps every u32 weight distinguishable.
const STRIDE: u64 = 1 << 32;
/// Passes are rebased before they could overflow.
const REBASE_AT: u64 = 1 << 62;

fn stride(weight: u32) -> u64 {
    STRIDE / u64::from(weight.max(1))
}

/// A PE's place in the rings. Its policy is not kept here: the pool passes a lookup
/// into its elements, so that each replica keeps 32 bytes per PE.
#[derive(Clone, Debug)]
struct Node {
    /// Order key while linked into a ring, [`UNLINKED`] otherwise.
    key: u64,
    /// WRR pass.
    pass: u64,
    prev: Slot,
    next: Slot,
    degradation: u32,
}

/// The key of a PE that is in no ring (free, or not selectable). No order key reaches
/// it: keys are loads or priorities (32 bits) or WRR passes (rebased below 2^62).
const UNLINKED: u64 = u64::MAX;

impl Default for Node {
    fn default() -> Self {
        Self {
            key: UNLINKED,
            pass: 0,
            prev: 0,
            next: 0,
            degradation: 0,
        }
    }
}

/// Head and length of one circular list of equal-key PEs. The tail is `head.prev`.
#[derive(Clone, Copy, Debug)]
struct Ring {
    head: Slot,
    len: u32,
}

#[derive(Debug, Default)]
pub(crate) struct Ordered {
    nodes: Vec<Node>,
    rings: BTreeMap<u64, Ring>,
    /// WRR virtual time: the pass of the most recently handed-out PE. Newcomers start
    /// here, so they neither starve nor flood the others.
    vtime: u64,
    /// The pool's policy type keeps every PE's order key as it is when the PE is handed
    /// out ([`Policy::fixed_order`]): selections take [`Ordered::select_fixed`]. Fixed
    /// with the pool, whose PEs all share the type.
    fixed_order: bool,
}

impl Ordered {
    /// The structure of a pool whose policy type is [`Policy::fixed_order`] or not.
    pub(crate) fn new(fixed_order: bool) -> Self {
        Self {
            fixed_order,
            ..Self::default()
        }
    }

    /// Whether selections take [`Ordered::select_fixed`].
    #[inline]
    pub(crate) fn fixed_order(&self) -> bool {
        self.fixed_order
    }

    pub(crate) fn insert(&mut self, slot: Slot, policy: Policy) {
        ensure(&mut self.nodes, slot);
        // Stride scheduling starts a client one stride ahead of virtual time, so heavy
        // PEs go first and the picks interleave from the start.
        let pass = match policy {
            Policy::WeightedRoundRobin { weight } => self.vtime + stride(weight),
            _ => 0,
        };
        self.nodes[slot as usize] = Node {
            pass,
            ..Node::default()
        };
        self.link(slot, policy);
    }

    pub(crate) fn remove(&mut self, slot: Slot) {
        self.unlink(slot);
        if let Some(node) = self.nodes.get_mut(slot as usize) {
            *node = Node::default();
        }
    }

    /// A re-registration keeps the PE's place when its key is unchanged; otherwise it
    /// joins the tail of its new key's list, as a newly handed-out PE would.
    pub(crate) fn update(&mut self, slot: Slot, policy: Policy) {
        let Some(node) = self.nodes.get_mut(slot as usize) else {
            return;
        };
        node.degradation = 0;
        let new_key = policy.order_key(0, node.pass).unwrap_or(UNLINKED);
        if new_key != node.key {
            self.unlink(slot);
            self.link(slot, policy);
        }
    }

    pub(crate) fn degradation(&self, slot: Slot) -> u32 {
        self.nodes.get(slot as usize).map_or(0, |n| n.degradation)
    }

    /// `policy_of` gives the policy of the PE in a slot.
    ///
    /// The first PE handed out is the head of the first ring, and with most policies it
    /// stays in that ring (RR always): advancing it then only moves the ring's head on,
    /// done here through the ring the walk already holds instead of looking it up again.
    pub(crate) fn select(
        &mut self,
        n: usize,
        increment: usize,
        out: &mut Vec<Slot>,
        policy_of: impl Fn(Slot) -> Option<Policy>,
    ) {
        let start = out.len();
        // The first ring through `first_entry`, one descent: a whole iterator over the
        // map sets up both of its ends, and round robin never needs a second ring.
        let mut first = self.rings.first_entry().map(|e| (*e.key(), e.into_mut()));
        if let Some((key, ring)) = &first {
            Self::walk(&self.nodes, **ring, start + n, out);
            if out.len() - start < n {
                let rest = (Bound::Excluded(*key), Bound::Unbounded);
                let key = *key;
                for ring in self.rings.range(rest).map(|(_, r)| *r) {
                    if out.len() - start == n {
                        break;
                    }
                    Self::walk(&self.nodes, ring, start + n, out);
                }
                first = self.rings.get_mut(&key).map(|r| (key, r));
            }
        }
        let picked = out.len() - start;
        let advanced = increment.min(picked);
        let mut i = 0;
        if advanced > 0
            && let Some((key, ring)) = first
        {
            i = 1;
            let slot = out[start];
            if let Some(policy) = policy_of(slot) {
                let node = &mut self.nodes[slot as usize];
                let new_key = Self::step(node, &mut self.vtime, policy);
                if new_key == node.key && key == node.key && ring.head == slot {
                    ring.head = node.next;
                } else {
                    self.rekey(slot, policy, new_key);
                }
            }
        }
        for i in i..advanced {
            let slot = out[start + i];
            if let Some(policy) = policy_of(slot) {
                self.advance(slot, policy);
            }
        }
        if self.vtime >= REBASE_AT {
            self.rebase(policy_of);
        }
    }

    /// [`Ordered::select`] for a pool whose policy keeps every PE's order key when it is
    /// handed out ([`Policy::fixed_order`]): calls `visit` with up to `n` PEs, best first,
    /// and advances the first `increment` of them, exactly as `select` does, without
    /// consulting their policies. A handed-out PE only becomes the newest of its key, and
    /// the PEs handed out from a ring are its first ones, in order: advancing them moves
    /// the ring's head on past them ([`Ordered::hand_out`]).
    #[inline(always)]
    pub(crate) fn select_fixed(&mut self, n: usize, increment: usize, mut visit: impl FnMut(Slot)) {
        debug_assert!(self.fixed_order);
        // The first ring through `first_entry`, one descent: round robin and pools whose
        // best key is shared by enough PEs never need a second ring.
        let Some(mut first) = self.rings.first_entry() else {
            return;
        };
        let key = *first.key();
        let taken = Self::hand_out(&self.nodes, first.get_mut(), n, increment, &mut visit);
        if taken < n {
            Self::hand_out_rest(
                &self.nodes,
                &mut self.rings,
                key,
                n - taken,
                increment.saturating_sub(taken),
                visit,
            );
        }
    }

    /// [`Ordered::select_fixed`] past the first ring, whose key is `after`: up to `n`
    /// more PEs, `advance` of them still to advance. Out of line, as rarely needed.
    #[inline(never)]
    fn hand_out_rest(
        nodes: &[Node],
        rings: &mut BTreeMap<u64, Ring>,
        after: u64,
        mut n: usize,
        mut advance: usize,
        mut visit: impl FnMut(Slot),
    ) {
        for ring in rings.range_mut((Bound::Excluded(after), Bound::Unbounded)) {
            if n == 0 {
                break;
            }
            let taken = Self::hand_out(nodes, ring.1, n, advance, &mut visit);
            n -= taken;
            advance = advance.saturating_sub(taken);
        }
    }

    /// Calls `visit` with up to `n` PEs of `ring` from its head, and moves the head on
    /// past the first `advance` of them: each becomes the newest of the ring, in turn
    /// (all of them: the same head again). Returns how many it handed out. Always
    /// inlined, so that `visit` (an answer's encoder) is too.
    #[inline(always)]
    fn hand_out(
        nodes: &[Node],
        ring: &mut Ring,
        n: usize,
        advance: usize,
        visit: &mut impl FnMut(Slot),
    ) -> usize {
        let count = (ring.len as usize).min(n);
        let advance = advance.min(count);
        let mut s = ring.head;
        for i in 0..count {
            if i == advance {
                ring.head = s;
            }
            visit(s);
            s = nodes[s as usize].next;
        }
        if advance == count {
            ring.head = s;
        }
        count
    }

    /// Appends the PEs of `ring` in order until `out` holds `end` slots. How many is
    /// known before the first, so `out` grows once rather than being tested per PE.
    fn walk(nodes: &[Node], ring: Ring, end: usize, out: &mut Vec<Slot>) {
        let count = (ring.len as usize).min(end.saturating_sub(out.len()));
        let mut s = ring.head;
        out.extend((0..count).map(|_| {
            let slot = s;
            s = nodes[s as usize].next;
            slot
        }));
    }

    /// The PE was handed out: it becomes the newest of its key, and policies with
    /// per-selection state (degradation, WRR pass) update it.
    fn advance(&mut self, slot: Slot, policy: Policy) {
        let new_key = Self::step(&mut self.nodes[slot as usize], &mut self.vtime, policy);
        self.rekey(slot, policy, new_key);
    }

    /// A handed-out PE's per-selection state moves on (degradation, WRR pass and
    /// virtual time); returns its new order key.
    fn step(node: &mut Node, vtime: &mut u64, policy: Policy) -> u64 {
        if let Some(step) = policy.degradation_step() {
            node.degradation = node.degradation.saturating_add(step);
        }
        if let Policy::WeightedRoundRobin { weight } = policy {
            *vtime = (*vtime).max(node.pass);
            node.pass = node.pass.saturating_add(stride(weight));
        }
        policy
            .order_key(node.degradation, node.pass)
            .unwrap_or(UNLINKED)
    }

    /// A handed-out PE whose order key is now `new_key` becomes the newest of it.
    /// Out of line: with its map lookups and relinking it would cost
    /// [`Ordered::select`]'s fast path registers and stack.
    #[inline(never)]
    fn rekey(&mut self, slot: Slot, policy: Policy, new_key: u64) {
        let old_key = self.nodes[slot as usize].key;
        if new_key == old_key
            && let Some(ring) = self.rings.get_mut(&old_key)
            && ring.head == slot
        {
            // Moving the head to the tail of a circular list is one step.
            ring.head = self.nodes[slot as usize].next;
            return;
        }
        self.unlink(slot);
        self.link(slot, policy);
    }

    /// Links a PE at the tail of its key's ring (if it is selectable at all).
    fn link(&mut self, slot: Slot, policy: Policy) {
        let node = &self.nodes[slot as usize];
        let Some(key) = policy.order_key(node.degradation, node.pass) else {
            self.nodes[slot as usize].key = UNLINKED;
            return;
        };
        self.nodes[slot as usize].key = key;
        match self.rings.get_mut(&key) {
            None => {
                self.rings.insert(key, Ring { head: slot, len: 1 });
                let n = &mut self.nodes[slot as usize];
                n.prev = slot;
                n.next = slot;
            }
            Some(ring) => {
                let head = ring.head;
                ring.len += 1;
                let tail = self.nodes[head as usize].prev;
                self.nodes[tail as usize].next = slot;
                self.nodes[head as usize].prev = slot;
                let n = &mut self.nodes[slot as usize];
                n.prev = tail;
                n.next = head;
            }
        }
    }

    fn unlink(&mut self, slot: Slot) {
        let Some(node) = self.nodes.get_mut(slot as usize) else {
            return;
        };
        let key = std::mem::replace(&mut node.key, UNLINKED);
        if key == UNLINKED {
            return;
        }
        let (prev, next) = (node.prev, node.next);
        let Some(ring) = self.rings.get_mut(&key) else {
            return;
        };
        if ring.len <= 1 {
            self.rings.remove(&key);
            return;
        }
        ring.len -= 1;
        if ring.head == slot {
            ring.head = next;
        }
        self.nodes[prev as usize].next = next;
        self.nodes[next as usize].prev = prev;
    }

    /// Subtracts the smallest pass from every WRR pass, keeping the order. O(n), once per
    /// ~2^30 selections.
    #[cold]
    #[inline(never)]
    fn rebase(&mut self, policy_of: impl Fn(Slot) -> Option<Policy>) {
        let base = self
            .rings
            .keys()
            .next()
            .copied()
            .unwrap_or(self.vtime)
            .min(self.vtime);
        let order: Vec<Slot> = self
            .rings
            .values()
            .flat_map(|r| {
                let mut s = r.head;
                let nodes = &self.nodes;
                (0..r.len).map(move |_| {
                    let cur = s;
                    s = nodes[s as usize].next;
                    cur
                })
            })
            .collect();
        for node in &mut self.nodes {
            node.pass = node.pass.saturating_sub(base);
        }
        self.vtime -= base;
        self.rings.clear();
        for s in order {
            self.nodes[s as usize].key = UNLINKED;
            if let Some(policy) = policy_of(s) {
                self.link(s, policy);
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn force_vtime(&mut self, v: u64) {
        self.vtime = v;
    }
}
