//! Registration-life deadlines.
//!
//! A (re-)registration appends its deadline; nothing is removed when a PE re-registers or
//! leaves. When a deadline passes, the handlespace checks the PE's current deadline and
//! skips stale entries. Deadlines arrive nearly in order (now + life), so scheduling
//! touches only the newest, cache-hot end of the map, and re-registration in a
//! 50,000-PE pool costs what it costs in a small one. Stale entries are bounded by
//! compaction.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::ids::{PoolElementId, PoolHandle};

#[derive(Debug, Default)]
pub(crate) struct Expiry {
    buckets: BTreeMap<Instant, Vec<(PoolHandle, PoolElementId)>>,
    entries: usize,
}

impl Expiry {
    pub(crate) fn schedule(&mut self, at: Instant, handle: &PoolHandle, id: PoolElementId) {
        self.buckets
            .entry(at)
            .or_default()
            .push((handle.clone(), id));
        self.entries += 1;
    }

    /// The earliest scheduled deadline. It may be stale (the PE re-registered), so it is
    /// never later than the earliest live one.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.buckets.keys().next().copied()
    }

    /// Removes and returns the entries due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Vec<(PoolHandle, PoolElementId)>> {
        let (&at, _) = self.buckets.first_key_value()?;
        if at > now {
            return None;
        }
        let (_, v) = self.buckets.pop_first()?;
        self.entries -= v.len();
        Some(v)
    }

    /// Whether stale entries outnumber live PEs enough to rebuild.
    pub(crate) fn wants_compaction(&self, live: usize) -> bool {
        self.entries > 2 * live + 1024
    }

    pub(crate) fn rebuild(
        &mut self,
        live: impl Iterator<Item = (Instant, PoolHandle, PoolElementId)>,
    ) {
        self.buckets.clear();
        self.entries = 0;
        for (at, handle, id) in live {
            self.schedule(at, &handle, id);
        }
    }

    #[cfg(test)]
    pub(crate) fn entries(&self) -> usize {
        self.entries
    }
}
