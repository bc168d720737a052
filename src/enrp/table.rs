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

/// Bytes of Pool Handle and PE parameters one response can hold: the 16-bit message
/// length less the header and the two server IDs (RFC 5353 §2.3). A chunk never passes
/// it, whatever the handle lengths.
const MESSAGE_ROOM: usize = crate::wire::MAX_MESSAGE_LEN - 12;

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
            // A PE opening a new entry brings its Pool Handle parameter along.
            let opens_entry = entries.last().is_none_or(|l| l.handle != *handle);
            let handle_bytes = (4 + handle.as_bytes().len()).next_multiple_of(4);
            let cost = scratch.len() + if opens_entry { handle_bytes } else { 0 };
            if bytes + cost > MESSAGE_ROOM {
                if count == 0 {
                    // Not even alone would it fit one message (a pool handle of nearly
                    // 64 KiB, which `limits.max_pool_handle_len` allows): it cannot be
                    // sent over ENRP at all.
                    continue;
                }
                self.next_id -= 1;
                return (entries, true);
            }
            bytes += cost;
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

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::handlespace::{self, Handlespace};
    use crate::wire::{
        EnrpIds, EnrpMessage, PolicyParam, PoolElement, RegistrationLife, SctpTransport,
        TransportUse, UserTransport,
    };

    fn pe(id: u32, addresses: usize) -> PoolElement {
        PoolElement {
            id: PoolElementId(id),
            home: RegistrarId(7),
            registration_life: RegistrationLife(90_000),
            user_transport: UserTransport::Sctp(SctpTransport {
                port: 9,
                transport_use: TransportUse::DATA_ONLY,
                addresses: (0..addresses)
                    .map(|a| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + a as u32)))
                    .collect(),
            }),
            policy: PolicyParam::round_robin(),
            asap_transport: None,
        }
    }

    /// RFC 5354 §4: with pool handles as long as the limits allow, every chunk still
    /// fits one message, and every PE that can fit one is sent.
    #[test]
    fn chunks_fit_the_length_field_whatever_the_handle_lengths() {
        let config = handlespace::Config {
            max_handle_len: 65_000,
            ..handlespace::Config::default()
        };
        let mut hs = Handlespace::new(config, 1);
        // Two pools of 20,000-byte handles with PEs of 64 addresses, and one whose
        // handle leaves no room for any PE.
        for (pool, first) in [(b'a', 1), (b'b', 100)] {
            let handle = PoolHandle::new(&[pool; 20_000]);
            for id in first..first + 30 {
                hs.register(&handle, pe(id, 64), None).unwrap();
            }
        }
        hs.register(&PoolHandle::new(&[b'z'; 65_000]), pe(999, 64), None)
            .unwrap();
        let mut cursor = Cursor::new(&hs, false, Instant::now());
        let mut sent = 0;
        loop {
            let (entries, more) = cursor.next_chunk(&hs, RegistrarId(7), 1000);
            sent += entries.iter().map(|e| e.elements.len()).sum::<usize>();
            let m = EnrpMessage::HandleTableResponse {
                ids: EnrpIds {
                    sender: RegistrarId(7),
                    receiver: RegistrarId(8),
                },
                reject: false,
                more,
                entries,
            };
            m.try_encode(&mut Vec::new()).expect("the chunk fits");
            if !more {
                break;
            }
        }
        assert_eq!(sent, 60, "all but the PE whose handle leaves no room");
    }
}
