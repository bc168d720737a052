//! The connection side of a shard: its connections and associations, the PEs
//! registered through each, and their keep-alive supervision.

use std::collections::HashMap;

use super::conn::Conn;
use super::supervision::Supervision;
use super::{ConnId, ConnInfo};
use crate::ids::{PoolElementId, PoolHandle};

#[derive(Debug, Default)]
pub(super) struct Sessions {
    conns: HashMap<ConnId, Conn>,
    /// Keep-alive timers of the PEs registered through these connections.
    pub(super) supervision: Supervision,
}

impl Sessions {
    /// A connection is up. One this shard opened (adoption) keeps the PEs already
    /// waiting on it and learns its real addresses.
    pub(super) fn up(&mut self, conn: ConnId, info: ConnInfo) {
        match self.conns.get_mut(&conn) {
            Some(c) => c.info = info,
            None => {
                self.conns.insert(conn, Conn::new(info));
            }
        }
    }

    /// Forgets a connection; returns the PEs registered through it, if it was known.
    pub(super) fn down(&mut self, conn: ConnId) -> Option<Vec<(PoolHandle, PoolElementId)>> {
        self.conns.remove(&conn).map(|c| c.into_pes().collect())
    }

    pub(super) fn is_up(&self, conn: ConnId) -> bool {
        self.conns.contains_key(&conn)
    }

    pub(super) fn info(&self, conn: ConnId) -> Option<&ConnInfo> {
        self.conns.get(&conn).map(|c| &c.info)
    }

    /// Whether `conn` registered the PE (confirmed by the pool's writer).
    pub(super) fn has(&self, conn: ConnId, handle: &PoolHandle, id: PoolElementId) -> bool {
        self.conns.get(&conn).is_some_and(|c| c.has(handle, id))
    }

    /// Records a PE as registered through `conn`; false if the connection is gone.
    pub(super) fn add(&mut self, conn: ConnId, handle: PoolHandle, id: PoolElementId) -> bool {
        match self.conns.get_mut(&conn) {
            Some(c) => {
                c.add(handle, id);
                true
            }
            None => false,
        }
    }

    /// The PE is no longer registered through `conn`; false if it was not.
    pub(super) fn remove(&mut self, conn: ConnId, handle: &PoolHandle, id: PoolElementId) -> bool {
        self.conns
            .get_mut(&conn)
            .is_some_and(|c| c.remove(handle, id))
    }

    /// Connections and associations served.
    pub(super) fn len(&self) -> usize {
        self.conns.len()
    }
}
