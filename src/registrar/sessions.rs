//! The connection side of a shard: its connections and associations, the PEs
//! registered through each, and their keep-alive supervision.
//!
//! Connections are found without hashing: the runtime's ids carry a small dense slot
//! ([`ConnId::slot`]), which indexes a table of positions. The registrar's own ids
//! ([`ConnId::is_outbound`]), slots beyond [`DENSE_SLOTS`], and a second live id on a
//! taken slot (which the runtime never hands out, but a caller could) go to a map.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use super::conn::Conn;
use super::supervision::Supervision;
use super::{AssociationLimit, ConnId, ConnInfo};
use crate::handlespace::Hasher;
use crate::ids::{PoolElementId, PoolHandle};

/// Slots indexed directly (4 bytes of table each, grown up to the highest slot seen).
const DENSE_SLOTS: usize = 1 << 20;
/// An empty entry of the slot table.
const VACANT: u32 = u32::MAX;

#[derive(Debug)]
pub(super) struct Sessions {
    /// The connections, densely; moved around on removal.
    conns: Vec<(ConnId, Conn)>,
    /// Position in `conns` by slot, or [`VACANT`].
    by_slot: Vec<u32>,
    /// Position in `conns` of the connections not in `by_slot`.
    others: HashMap<ConnId, u32, Hasher>,
    /// Keys the tables of PEs.
    hasher: Hasher,
    /// Keep-alive timers of the PEs registered through these connections.
    pub(super) supervision: Supervision,
    /// PEs of lost connections still to be removed, oldest loss first: a connection
    /// with very many PEs is removed a slice per turn ([`REMOVAL_SLICE`]).
    pub(super) draining: VecDeque<Draining>,
}

/// PEs removed per connection loss at once, and per turn after that (each a message
/// to the pool's writer, which updates every replica): small enough that resolutions
/// between slices wait a fraction of a millisecond.
pub const REMOVAL_SLICE: usize = 256;

/// The PEs of a lost connection not removed yet.
#[derive(Debug)]
pub(super) struct Draining {
    pub(super) conn: ConnId,
    pub(super) pes: Vec<(PoolHandle, PoolElementId)>,
    /// When the connection was lost: the removal is due since then.
    pub(super) since: Instant,
}

impl Default for Sessions {
    fn default() -> Self {
        Self::new(Hasher::new())
    }
}

impl Sessions {
    /// No connection; `hasher` keys the tables of PEs (they come from the network).
    pub(super) fn new(hasher: Hasher) -> Self {
        Self {
            conns: Vec::new(),
            by_slot: Vec::new(),
            others: HashMap::with_hasher(hasher.clone()),
            supervision: Supervision::new(hasher.clone()),
            draining: VecDeque::new(),
            hasher,
        }
    }

    /// A connection is up. One this shard opened (adoption) keeps the PEs already
    /// waiting on it and learns its real addresses.
    pub(super) fn up(&mut self, conn: ConnId, info: ConnInfo) {
        match self.get_mut(conn) {
            Some(c) => c.info = info,
            None => self.insert(conn, Conn::new(info, self.hasher.clone())),
        }
    }

    /// Forgets a connection; returns the PEs registered through it, if it was known.
    pub(super) fn down(&mut self, conn: ConnId) -> Option<Vec<(PoolHandle, PoolElementId)>> {
        self.take(conn).map(|c| c.into_pes().collect())
    }

    #[inline]
    pub(super) fn is_up(&self, conn: ConnId) -> bool {
        self.position(conn).is_some()
    }

    pub(super) fn info(&self, conn: ConnId) -> Option<&ConnInfo> {
        self.get(conn).map(|c| &c.info)
    }

    /// What access control lets `conn` do.
    pub(super) fn grant(&self, conn: ConnId) -> Option<&super::access::Grant> {
        self.get(conn).map(|c| &c.grant)
    }

    /// Sets what access control lets `conn` do.
    pub(super) fn set_grant(&mut self, conn: ConnId, grant: super::access::Grant) {
        if let Some(c) = self.get_mut(conn) {
            c.grant = grant;
        }
    }

    /// Works out every connection's grant again (the access rules changed).
    pub(super) fn regrant(&mut self, grant: impl Fn(&ConnInfo) -> super::access::Grant) {
        for (_, c) in &mut self.conns {
            c.grant = grant(&c.info);
        }
    }

    /// Whether `conn` registered the PE (confirmed by the pool's writer).
    pub(super) fn has(&self, conn: ConnId, handle: &PoolHandle, id: PoolElementId) -> bool {
        self.get(conn).is_some_and(|c| c.has(handle, id))
    }

    /// Records a PE as registered through `conn`; false if the connection is gone.
    pub(super) fn add(&mut self, conn: ConnId, handle: PoolHandle, id: PoolElementId) -> bool {
        match self.get_mut(conn) {
            Some(c) => {
                c.add(handle, id);
                true
            }
            None => false,
        }
    }

    /// PEs registered through `conn`, if it is up.
    #[cfg(test)]
    pub(super) fn pes(&self, conn: ConnId) -> Option<usize> {
        self.get(conn).map(Conn::len)
    }

    /// Pools `conn` created and still has PEs in, if it is up.
    #[cfg(test)]
    pub(super) fn pools_created(&self, conn: ConnId) -> Option<usize> {
        self.get(conn).map(Conn::pools_created)
    }

    /// Checks a registration through `conn` against the per-association limits
    /// ([`Conn::admit`]); a connection that is gone admits nothing (and needs no
    /// limit: the registration is dropped).
    pub(super) fn admit(
        &mut self,
        conn: ConnId,
        handle: &PoolHandle,
        id: PoolElementId,
        pool_exists: bool,
        limits: (usize, usize),
    ) -> Option<Result<(), AssociationLimit>> {
        let c = self.get_mut(conn)?;
        Some(c.admit(handle, id, pool_exists, limits.0, limits.1))
    }

    /// The writer answered a registration through `conn` ([`Conn::answered`]).
    pub(super) fn answered(&mut self, conn: ConnId, handle: &PoolHandle, accepted: bool) {
        if let Some(c) = self.get_mut(conn) {
            c.answered(handle, accepted);
        }
    }

    /// When the next slice of a lost connection's PEs is due (the loss: already).
    pub(super) fn next_drain(&self) -> Option<Instant> {
        self.draining.front().map(|d| d.since)
    }

    /// The PE is no longer registered through `conn`; false if it was not.
    pub(super) fn remove(&mut self, conn: ConnId, handle: &PoolHandle, id: PoolElementId) -> bool {
        self.get_mut(conn).is_some_and(|c| c.remove(handle, id))
    }

    /// Connections and associations served.
    pub(super) fn len(&self) -> usize {
        self.conns.len()
    }

    fn get(&self, conn: ConnId) -> Option<&Conn> {
        let i = self.position(conn)?;
        self.conns.get(i).map(|(_, c)| c)
    }

    fn get_mut(&mut self, conn: ConnId) -> Option<&mut Conn> {
        let i = self.position(conn)?;
        self.conns.get_mut(i).map(|(_, c)| c)
    }

    /// Where `conn` is in `conns`. Inlined: every message asks, through
    /// [`Sessions::is_up`].
    #[inline]
    fn position(&self, conn: ConnId) -> Option<usize> {
        if let Some(&i) = dense(conn).and_then(|s| self.by_slot.get(s))
            && self
                .conns
                .get(i as usize)
                .is_some_and(|(id, _)| *id == conn)
        {
            return Some(i as usize);
        }
        self.others.get(&conn).map(|&i| i as usize)
    }

    fn insert(&mut self, conn: ConnId, c: Conn) {
        let Ok(i) = u32::try_from(self.conns.len()) else {
            // 2³² connections on one shard: no runtime gets there.
            return;
        };
        self.conns.push((conn, c));
        match dense(conn) {
            Some(s) if self.by_slot.get(s).is_none_or(|&p| p == VACANT) => {
                if s >= self.by_slot.len() {
                    self.by_slot.resize(s + 1, VACANT);
                }
                self.by_slot[s] = i;
            }
            _ => {
                self.others.insert(conn, i);
            }
        }
    }

    /// Removes `conn`; the last connection takes its place in `conns`.
    fn take(&mut self, conn: ConnId) -> Option<Conn> {
        let i = self.position(conn)?;
        self.unlink(conn, i);
        let (_, c) = self.conns.swap_remove(i);
        if let Some(&(moved, _)) = self.conns.get(i) {
            let from = self.conns.len();
            self.unlink(moved, from);
            self.link(moved, i);
        }
        Some(c)
    }

    /// Forgets that `conn` is at `i`.
    fn unlink(&mut self, conn: ConnId, i: usize) {
        match dense(conn).and_then(|s| self.by_slot.get_mut(s)) {
            Some(p) if *p as usize == i => *p = VACANT,
            _ => {
                self.others.remove(&conn);
            }
        }
    }

    /// Records that `conn` is at `i` (it was just unlinked).
    fn link(&mut self, conn: ConnId, i: usize) {
        let Ok(i) = u32::try_from(i) else {
            return;
        };
        match dense(conn).and_then(|s| self.by_slot.get_mut(s)) {
            Some(p) if *p == VACANT => *p = i,
            _ => {
                self.others.insert(conn, i);
            }
        }
    }
}

/// The slot a runtime-assigned id is indexed by.
fn dense(conn: ConnId) -> Option<usize> {
    let s = conn.slot();
    (!conn.is_outbound() && s < DENSE_SLOTS).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::super::{Protocol, Transport};
    use super::*;

    fn info(port: u16) -> ConnInfo {
        ConnInfo::new(Transport::Tcp, Protocol::Asap, Vec::new(), port)
    }

    #[test]
    fn runtime_ids_by_slot_and_the_rest_by_map_survive_removals_in_any_order() {
        let mut s = Sessions::default();
        let ids = [
            ConnId::new(0, 0),
            ConnId::new(5, 3),
            // Same slot as the one before, another generation: both live.
            ConnId::new(5, 4),
            ConnId(ConnId::OUTBOUND + 1),
            ConnId::new((DENSE_SLOTS + 7) as u32, 0),
            ConnId::new(1, 1),
        ];
        for (n, &c) in ids.iter().enumerate() {
            s.up(c, info(n as u16));
            assert!(s.add(c, PoolHandle::from("p"), PoolElementId(n as u32 + 1)));
        }
        assert_eq!(s.len(), ids.len());
        let check = |s: &Sessions, gone: &[ConnId]| {
            for (n, &c) in ids.iter().enumerate() {
                let live = !gone.contains(&c);
                assert_eq!(s.is_up(c), live, "{c:?}");
                assert_eq!(s.info(c).map(|i| i.peer_port), live.then_some(n as u16));
                let handle = PoolHandle::from("p");
                assert_eq!(s.has(c, &handle, PoolElementId(n as u32 + 1)), live);
            }
        };
        check(&s, &[]);
        // A stale generation of a live slot is not that connection.
        assert!(!s.is_up(ConnId::new(0, 1)));
        let mut gone = Vec::new();
        for &c in &[ids[1], ids[0], ids[4], ids[3], ids[5]] {
            let pes = s.down(c).unwrap();
            assert_eq!(pes.len(), 1);
            assert_eq!(s.down(c), None);
            gone.push(c);
            check(&s, &gone);
        }
        assert_eq!(s.len(), 1);
        // A reused slot.
        s.up(ConnId::new(5, 9), info(99));
        assert_eq!(s.info(ConnId::new(5, 9)).map(|i| i.peer_port), Some(99));
        assert_eq!(s.info(ids[2]).map(|i| i.peer_port), Some(2));
    }
}
