//! Serving handle tables (RFC 5353 §2.3, §3.2.3, §3.6.3): each requester downloads in
//! chunks with "more to send", through a cursor of its own.
//!
//! A cursor walks pools in handle order and each pool's PEs in identifier order. It
//! snapshots the handles when it starts and one pool's identifiers when it enters that
//! pool, and reads each PE afresh as it sends it, so a PE removed meanwhile is skipped
//! and one changed meanwhile goes out as it is now. Memory per requester: the handles
//! plus one pool's identifiers.

use std::time::Instant;

use crate::handlespace::Handlespace;
use crate::ids::{PoolElementId, PoolHandle, RegistrarId};
use crate::wire::{PoolEntry, Writer};

/// Bytes of PE parameters in one response: well under the 16-bit message length, with
/// room for the header and the pool handles.
const CHUNK_BYTES: usize = 48 * 1024;

#[derive(Debug)]
pub(super) struct Cursor {
    /// W flag: only PEs whose home is us.
    pub(super) owned_only: bool,
    handles: Vec<PoolHandle>,
    next_pool: usize,
    ids: Vec<PoolElementId>,
    next_id: usize,
    pub(super) touched: Instant,
}

impl Cursor {
    pub(super) fn new(hs: &Handlespace, owned_only: bool, now: Instant) -> Self {
        let mut handles: Vec<PoolHandle> = hs.pools().map(|p| p.handle().clone()).collect();
        handles.sort_unstable();
        Self {
            owned_only,
            handles,
            next_pool: 0,
            ids: Vec::new(),
            next_id: 0,
            touched: now,
        }
    }

    /// The next chunk: at most `max` PEs (and [`CHUNK_BYTES`]), each a full Pool
    /// Element parameter with its home and ASAP transport. Returns the entries and
    /// whether more remain.
    pub(super) fn next_chunk(
        &mut self,
        hs: &Handlespace,
        me: RegistrarId,
        max: usize,
    ) -> (Vec<PoolEntry>, bool) {
        let mut entries: Vec<PoolEntry> = Vec::new();
        let mut count = 0;
        let mut bytes = 0;
        let mut scratch = Vec::new();
        loop {
            if self.next_id >= self.ids.len() {
                // Enter the next pool that still exists.
                let Some(handle) = self.handles.get(self.next_pool) else {
                    return (entries, false);
                };
                self.next_pool += 1;
                self.ids.clear();
                self.next_id = 0;
                if let Some(pool) = hs.pool(handle.as_bytes()) {
                    self.ids.extend(pool.elements().map(|e| e.id()));
                    self.ids.sort_unstable();
                }
                continue;
            }
            if count >= max || bytes >= CHUNK_BYTES {
                return (entries, true);
            }
            let handle = &self.handles[self.next_pool - 1];
            let id = self.ids[self.next_id];
            self.next_id += 1;
            let Some(e) = hs.element(handle.as_bytes(), id) else {
                continue;
            };
            if self.owned_only && e.home() != me {
                continue;
            }
            scratch.clear();
            let mut w = Writer::new(&mut scratch);
            e.param().encode(&mut w);
            w.finish();
            bytes += scratch.len();
            count += 1;
            match entries.last_mut() {
                // A pool split across chunks repeats its handle in the next one.
                Some(last) if last.handle == *handle => last.elements.push(e.param().clone()),
                _ => entries.push(PoolEntry {
                    handle: handle.clone(),
                    elements: vec![e.param().clone()],
                }),
            }
        }
    }
}
