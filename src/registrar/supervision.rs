//! Keep-alive supervision of the PEs registered through this shard's connections
//! (RFC 5352 §3.4, RSPLIB's transmission interval and timeout).
//!
//! Each supervised PE has one timer: either "send the next keep-alive" or "the
//! acknowledgement is overdue". Each also remembers the PE's last sign of life (its
//! registration or last acknowledgement), from which failure detection is timed.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use super::ConnId;
use crate::ids::{PoolElementId, PoolHandle};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// Waiting to send the next keep-alive.
    Idle,
    /// A keep-alive is out; the deadline is the timeout.
    Awaiting { sent: Instant },
}

#[derive(Clone, Debug)]
struct Entry {
    conn: ConnId,
    phase: Phase,
    at: Instant,
    seq: u64,
    alive: Instant,
}

type Key = (PoolHandle, PoolElementId);

#[derive(Debug, Default)]
pub(super) struct Supervision {
    entries: HashMap<Key, Entry>,
    timers: BTreeMap<(Instant, u64), Key>,
    seq: u64,
}

/// A timer that fired.
#[derive(Debug)]
pub(super) struct Due {
    pub(super) handle: PoolHandle,
    pub(super) id: PoolElementId,
    pub(super) conn: ConnId,
    pub(super) phase: Phase,
    /// The PE's last sign of life.
    pub(super) alive: Instant,
}

impl Supervision {
    /// Starts (or restarts) supervising a PE that registered at `alive`: the first
    /// keep-alive goes out at `at`.
    pub(super) fn start(
        &mut self,
        handle: PoolHandle,
        id: PoolElementId,
        conn: ConnId,
        at: Instant,
        alive: Instant,
    ) {
        self.set(handle, id, conn, Phase::Idle, at, alive);
    }

    /// Starts supervising a PE with a keep-alive already sent at `sent` (a takeover's
    /// first one): its acknowledgement is due by `deadline`.
    pub(super) fn start_awaiting(
        &mut self,
        handle: PoolHandle,
        id: PoolElementId,
        conn: ConnId,
        sent: Instant,
        deadline: Instant,
    ) {
        self.set(handle, id, conn, Phase::Awaiting { sent }, deadline, sent);
    }

    /// Stops supervising; returns the PE's last sign of life if it was supervised.
    pub(super) fn stop(&mut self, handle: &PoolHandle, id: PoolElementId) -> Option<Instant> {
        let e = self.entries.remove(&(handle.clone(), id))?;
        self.timers.remove(&(e.at, e.seq));
        Some(e.alive)
    }

    /// The PE registered again through `conn` at `alive` (a sign of life; the timer
    /// stays as it is).
    pub(super) fn alive(
        &mut self,
        handle: &PoolHandle,
        id: PoolElementId,
        conn: ConnId,
        alive: Instant,
    ) {
        if let Some(e) = self.entries.get_mut(&(handle.clone(), id))
            && e.conn == conn
        {
            e.alive = e.alive.max(alive);
        }
    }

    /// PEs supervised.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn conn_of(&self, handle: &PoolHandle, id: PoolElementId) -> Option<ConnId> {
        self.entries.get(&(handle.clone(), id)).map(|e| e.conn)
    }

    pub(super) fn is_supervised(&self, handle: &PoolHandle, id: PoolElementId) -> bool {
        self.entries.contains_key(&(handle.clone(), id))
    }

    /// A keep-alive went out (the timer `due` fired): the acknowledgement is due by
    /// `deadline`.
    pub(super) fn sent(&mut self, due: Due, now: Instant, deadline: Instant) {
        let phase = Phase::Awaiting { sent: now };
        self.set(due.handle, due.id, due.conn, phase, deadline, due.alive);
    }

    /// An acknowledgement arrived on `conn` at `now`. Returns when the keep-alive it
    /// answers was sent, if one was out; the next goes out at `next`.
    pub(super) fn acked(
        &mut self,
        handle: &PoolHandle,
        id: PoolElementId,
        conn: ConnId,
        now: Instant,
        next: Instant,
    ) -> Option<Instant> {
        let e = self.entries.get(&(handle.clone(), id))?;
        if e.conn != conn {
            return None;
        }
        let Phase::Awaiting { sent } = e.phase else {
            return None;
        };
        self.set(handle.clone(), id, conn, Phase::Idle, next, now);
        Some(sent)
    }

    pub(super) fn next(&self) -> Option<Instant> {
        self.timers.keys().next().map(|(t, _)| *t)
    }

    /// Removes and returns the first timer due at `now`.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<Due> {
        let (&(at, _), _) = self.timers.first_key_value()?;
        if at > now {
            return None;
        }
        let (_, key) = self.timers.pop_first()?;
        let e = self.entries.remove(&key)?;
        Some(Due {
            handle: key.0,
            id: key.1,
            conn: e.conn,
            phase: e.phase,
            alive: e.alive,
        })
    }

    fn set(
        &mut self,
        handle: PoolHandle,
        id: PoolElementId,
        conn: ConnId,
        phase: Phase,
        at: Instant,
        alive: Instant,
    ) {
        let key = (handle, id);
        if let Some(old) = self.entries.get(&key) {
            self.timers.remove(&(old.at, old.seq));
        }
        self.seq += 1;
        self.timers.insert((at, self.seq), key.clone());
        self.entries.insert(
            key,
            Entry {
                conn,
                phase,
                at,
                seq: self.seq,
                alive,
            },
        );
    }
}
