//! Registration-life deadlines.
//!
//! A min-heap of (deadline, pool, PE ID), 32 bytes an entry. The handlespace keeps one
//! rule: every PE with a deadline has an entry at or before it. A re-registration that
//! pushes the deadline later adds nothing (the earlier entry still comes first); when
//! that entry comes due, the handlespace finds the PE's deadline moved and schedules
//! it again, once. So a PE that re-registers every 30 s with a 90 s life holds one
//! entry, not one per registration. Entries of PEs that left are skipped when they
//! come due; compaction bounds them. Deadlines arrive nearly in order (now + life), so
//! a push rarely moves past the heap's last level.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Instant;

use crate::ids::{PoolElementId, PoolHandle};

/// One deadline; ordered by time alone.
#[derive(Debug)]
struct Entry {
    at: Instant,
    handle: Arc<PoolHandle>,
    id: PoolElementId,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        self.at.cmp(&other.at)
    }
}

#[derive(Debug, Default)]
pub(crate) struct Expiry {
    heap: BinaryHeap<Reverse<Entry>>,
}

impl Expiry {
    pub(crate) fn schedule(&mut self, at: Instant, handle: Arc<PoolHandle>, id: PoolElementId) {
        self.heap.push(Reverse(Entry { at, handle, id }));
    }

    /// The earliest scheduled deadline. It may be stale (the PE re-registered), so it is
    /// never later than the earliest live one.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|e| e.0.at)
    }

    /// Removes and returns one entry due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Arc<PoolHandle>, PoolElementId)> {
        if self.next()? > now {
            return None;
        }
        self.heap.pop().map(|Reverse(e)| (e.handle, e.id))
    }

    /// Whether stale entries outnumber live PEs enough to rebuild.
    pub(crate) fn wants_compaction(&self, live: usize) -> bool {
        self.heap.len() > 2 * live + 1024
    }

    pub(crate) fn rebuild(
        &mut self,
        live: impl Iterator<Item = (Instant, Arc<PoolHandle>, PoolElementId)>,
    ) {
        let mut entries = std::mem::take(&mut self.heap).into_vec();
        entries.clear();
        entries.extend(live.map(|(at, handle, id)| Reverse(Entry { at, handle, id })));
        entries.shrink_to(entries.len() * 2);
        self.heap = BinaryHeap::from(entries);
    }

    #[cfg(test)]
    pub(crate) fn entries(&self) -> usize {
        self.heap.len()
    }
}
