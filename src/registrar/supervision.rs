//! Keep-alive supervision of the PEs registered through this shard's connections
//! (RFC 5352 §3.4, RSPLIB's transmission interval and timeout).
//!
//! Each supervised PE has one timer: either "send the next keep-alive" or "the
//! acknowledgement is overdue". Each also remembers the PE's last sign of life (its
//! registration or last acknowledgement), from which failure detection is timed.
//!
//! The timers are built for many PEs at rest, where the shard asks for the next deadline
//! on every loop turn and should wake up as seldom as it can:
//! - Every deadline is "now + a constant" (the interval, the timeout, twice the timeout
//!   for an adoption), so each kind arrives in increasing order. They wait in a few FIFO
//!   lanes instead of a sorted tree: a deadline joins the lane whose last deadline is the
//!   latest not after it, so each kind settles in a lane of its own, and the next
//!   deadline is the earliest of the lanes' fronts ([`Supervision::next`], O(1)). One
//!   that fits no lane (a clock going back, more kinds than lanes) is inserted in order.
//! - A timer that is re-armed or stopped is not searched for: each PE's slot has a
//!   generation, changed whenever its timer is, and a timer of another generation is
//!   stale. Stale timers are dropped when they reach the front of their lane, so a
//!   front is always live; until then each costs a few bytes (at most one per
//!   acknowledgement or registration in the last timeout or interval).
//! - Deadlines are rounded up to a grid of slices ([`slice`]: 1/64 of the delay in whole
//!   milliseconds, at most [`MAX_SLICE`]), so one wake-up handles every PE due in the
//!   same slice. A keep-alive, and the detection of a failure, are at most that late:
//!   10 ms of the default 5 s. Metrics are timed from what happened (the keep-alive
//!   sent, the acknowledgement received, the removal decided), never from a deadline.
//!
//! PEs are found by pool handle and PE identifier through a keyed `ahash` map (the keys
//! come from the network); a timer names the PE's slot, so firing needs no lookup.

use std::borrow::Borrow;
use std::collections::hash_map::Entry as MapEntry;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

use super::ConnId;
use crate::handlespace::Hasher;
use crate::ids::{PoolElementId, PoolHandle};

/// Deadlines are rounded up to slices of this fraction of their delay...
const SLICE_DIVISOR: u64 = 64;
/// ...in whole milliseconds, and no longer than this.
const MAX_SLICE: Duration = Duration::from_millis(10);
const MS: u64 = 1_000_000;
/// Timer lanes: one per kind of deadline (interval, timeout, adoption) and a spare.
const LANES: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// Waiting to send the next keep-alive.
    Idle,
    /// A keep-alive is out; the deadline is the timeout.
    Awaiting { sent: Instant },
}

/// A PE's pool handle and identifier, as a map key that can be looked up without
/// cloning the handle: `map.get(&(handle, id) as &dyn AsKey)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Key {
    pub(super) handle: PoolHandle,
    pub(super) id: PoolElementId,
}

/// A PE key, owned ([`Key`]) or borrowed (`(&PoolHandle, PoolElementId)`); hashed and
/// compared by its parts, so a borrowed one finds an owned one.
pub(super) trait AsKey {
    fn parts(&self) -> (&[u8], PoolElementId);
}

impl AsKey for Key {
    fn parts(&self) -> (&[u8], PoolElementId) {
        (self.handle.as_bytes(), self.id)
    }
}

impl AsKey for (&PoolHandle, PoolElementId) {
    fn parts(&self) -> (&[u8], PoolElementId) {
        (self.0.as_bytes(), self.1)
    }
}

impl<'a> Borrow<dyn AsKey + 'a> for Key {
    fn borrow(&self) -> &(dyn AsKey + 'a) {
        self
    }
}

fn hash_parts<H: std::hash::Hasher>((handle, id): (&[u8], PoolElementId), state: &mut H) {
    state.write(handle);
    // The length too, so that no two keys feed the hasher the same stream.
    state.write_u64(((handle.len() as u64) << 32) | u64::from(id.0));
}

impl Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        hash_parts(self.parts(), state);
    }
}

impl Hash for dyn AsKey + '_ {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        hash_parts(self.parts(), state);
    }
}

impl PartialEq for dyn AsKey + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn AsKey + '_ {}

/// A supervised PE.
#[derive(Clone, Debug)]
struct Pe {
    key: Key,
    conn: ConnId,
    phase: Phase,
    alive: Instant,
    /// The keep-alive out is a probe after unreachable reports (or answers for one):
    /// its acknowledgement voids the reports.
    probed: bool,
}

/// What [`Supervision::probe`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Probe {
    /// The PE was waiting for its next keep-alive: send one now; its acknowledgement
    /// is due by the deadline given.
    Send,
    /// A keep-alive is already out: its acknowledgement (or its timeout) decides.
    Pending,
    /// The PE has not answered since the given limit: do not wait for it.
    Silent,
    /// Not supervised on that connection.
    Unknown,
}

#[derive(Clone, Debug)]
struct Slot {
    /// Changed whenever the slot's timer is (re-armed, fired and not re-armed, freed):
    /// only a timer of the current generation is live.
    generation: u32,
    /// The lane of its last timer.
    lane: u8,
    pe: Option<Pe>,
}

#[derive(Clone, Copy, Debug)]
struct Timer {
    /// Nanoseconds after the epoch.
    at: u64,
    slot: u32,
    generation: u32,
}

#[derive(Debug)]
pub(super) struct Supervision {
    /// The slot of every supervised PE.
    index: HashMap<Key, u32, Hasher>,
    slots: Vec<Slot>,
    /// Slots free for reuse.
    free: Vec<u32>,
    /// Timers in deadline order within each lane; every front is live.
    lanes: [VecDeque<Timer>; LANES],
    /// The deadline at the back of each lane (0 once it is empty).
    tails: [u64; LANES],
    /// The origin of timer times and of the slice grid: the first time seen. (A time
    /// before it counts as it: already past.)
    epoch: Option<Instant>,
    /// The last deadline filed, `(from, at)`, and its time: the timers armed in one
    /// loop turn share `from` (now) and mostly `at`, so they skip the arithmetic.
    last: Option<(Instant, Instant, u64)>,
}

impl Default for Supervision {
    fn default() -> Self {
        Self::new(Hasher::new())
    }
}

/// A timer that fired. Its PE stays supervised, without a timer, until it is handed
/// back to [`Supervision::sent`] or [`Supervision::release`].
#[derive(Debug)]
pub(super) struct Due {
    pub(super) handle: PoolHandle,
    pub(super) id: PoolElementId,
    pub(super) conn: ConnId,
    pub(super) phase: Phase,
    /// The PE's last sign of life.
    pub(super) alive: Instant,
    slot: u32,
    generation: u32,
}

impl Supervision {
    /// No PE supervised; `hasher` keys the map of PEs.
    pub(super) fn new(hasher: Hasher) -> Self {
        Self {
            index: HashMap::with_hasher(hasher),
            slots: Vec::new(),
            free: Vec::new(),
            lanes: Default::default(),
            tails: [0; LANES],
            epoch: None,
            last: None,
        }
    }

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
        self.set(Key { handle, id }, conn, Phase::Idle, alive, at);
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
        let phase = Phase::Awaiting { sent };
        self.set(Key { handle, id }, conn, phase, sent, deadline);
    }

    /// Stops supervising; returns the PE's last sign of life if it was supervised.
    pub(super) fn stop(&mut self, handle: &PoolHandle, id: PoolElementId) -> Option<Instant> {
        let slot = self.index.remove(&(handle, id) as &dyn AsKey)?;
        let pe = self.free_slot(slot)?;
        Some(pe.alive)
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
        if let Some(pe) = self.find_mut(handle, id)
            && pe.conn == conn
        {
            pe.alive = pe.alive.max(alive);
        }
    }

    /// PEs supervised.
    pub(super) fn len(&self) -> usize {
        self.index.len()
    }

    pub(super) fn conn_of(&self, handle: &PoolHandle, id: PoolElementId) -> Option<ConnId> {
        let slot = *self.index.get(&(handle, id) as &dyn AsKey)?;
        self.pe(slot).map(|pe| pe.conn)
    }

    pub(super) fn is_supervised(&self, handle: &PoolHandle, id: PoolElementId) -> bool {
        self.index.contains_key(&(handle, id) as &dyn AsKey)
    }

    /// A keep-alive went out at `now` (the timer `due` fired): the acknowledgement is due
    /// by `deadline`.
    pub(super) fn sent(&mut self, due: &Due, now: Instant, deadline: Instant) {
        if let Some(pe) = self.fired_mut(due) {
            pe.phase = Phase::Awaiting { sent: now };
            self.arm(due.slot, now, deadline);
        }
    }

    /// Stops supervising the PE of a timer that fired (it timed out, or is no longer
    /// registered through its connection).
    pub(super) fn release(&mut self, due: &Due) {
        if self.fired_mut(due).is_some()
            && let Some(pe) = self.free_slot(due.slot)
        {
            self.index.remove(&pe.key);
        }
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
        let slot = *self.index.get(&(handle, id) as &dyn AsKey)?;
        let pe = self.slots.get_mut(slot as usize)?.pe.as_mut()?;
        if pe.conn != conn {
            return None;
        }
        let Phase::Awaiting { sent } = pe.phase else {
            return None;
        };
        pe.phase = Phase::Idle;
        pe.alive = now;
        self.arm(slot, now, next);
        Some(sent)
    }

    /// Unreachable reports ask for a probe of a PE supervised on `conn` (RFC 5352
    /// §3.5): if it showed a sign of life since `recent` and is between keep-alives,
    /// a keep-alive goes out at `now`, due back by `deadline`; the acknowledgement of
    /// whichever keep-alive is out then says [`Supervision::take_probed`].
    pub(super) fn probe(
        &mut self,
        handle: &PoolHandle,
        id: PoolElementId,
        conn: ConnId,
        recent: Instant,
        now: Instant,
        deadline: Instant,
    ) -> Probe {
        let Some(&slot) = self.index.get(&(handle, id) as &dyn AsKey) else {
            return Probe::Unknown;
        };
        let Some(pe) = self
            .slots
            .get_mut(slot as usize)
            .and_then(|s| s.pe.as_mut())
        else {
            return Probe::Unknown;
        };
        if pe.conn != conn {
            return Probe::Unknown;
        }
        if pe.alive < recent {
            return Probe::Silent;
        }
        pe.probed = true;
        if matches!(pe.phase, Phase::Awaiting { .. }) {
            return Probe::Pending;
        }
        pe.phase = Phase::Awaiting { sent: now };
        self.arm(slot, now, deadline);
        Probe::Send
    }

    /// Whether the keep-alive just acknowledged was a probe (and forgets it).
    pub(super) fn take_probed(&mut self, handle: &PoolHandle, id: PoolElementId) -> bool {
        self.find_mut(handle, id)
            .is_some_and(|pe| std::mem::take(&mut pe.probed))
    }

    /// The earliest deadline (rounded up to its slice). O(1): called on every loop turn.
    pub(super) fn next(&self) -> Option<Instant> {
        let at = self
            .lanes
            .iter()
            .filter_map(|lane| lane.front().map(|t| t.at))
            .min()?;
        // Past the end of time (584 years on): never.
        self.epoch?.checked_add(Duration::from_nanos(at))
    }

    /// Takes the earliest timer due at `now`; its PE waits for [`Supervision::sent`] or
    /// [`Supervision::release`].
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<Due> {
        let now = since(self.epoch?, now);
        loop {
            let (lane, at) = self
                .lanes
                .iter()
                .enumerate()
                .filter_map(|(i, lane)| lane.front().map(|t| (i, t.at)))
                .min_by_key(|&(i, at)| (at, i))?;
            if at > now {
                return None;
            }
            let timer = self.lanes[lane].pop_front()?;
            self.purge(lane);
            // Fronts are live; should one not be, it is simply dropped.
            let Some(slot) = self.slots.get(timer.slot as usize) else {
                continue;
            };
            if slot.generation != timer.generation {
                continue;
            }
            let Some(pe) = &slot.pe else {
                continue;
            };
            return Some(Due {
                handle: pe.key.handle.clone(),
                id: pe.key.id,
                conn: pe.conn,
                phase: pe.phase,
                alive: pe.alive,
                slot: timer.slot,
                generation: timer.generation,
            });
        }
    }

    /// Supervises the PE `key` (from scratch, or anew if it already is): `phase`, its
    /// last sign of life `alive`, its timer at `at`.
    fn set(&mut self, key: Key, conn: ConnId, phase: Phase, alive: Instant, at: Instant) {
        let slot = match self.index.entry(key) {
            MapEntry::Occupied(o) => {
                let slot = *o.get();
                if let Some(pe) = self
                    .slots
                    .get_mut(slot as usize)
                    .and_then(|s| s.pe.as_mut())
                {
                    pe.conn = conn;
                    pe.phase = phase;
                    pe.alive = alive;
                    pe.probed = false;
                }
                slot
            }
            MapEntry::Vacant(v) => {
                let slot = match self.free.pop() {
                    Some(s) => s,
                    None => {
                        let Ok(s) = u32::try_from(self.slots.len()) else {
                            // 2³² PEs on one shard: far beyond any handlespace limit.
                            return;
                        };
                        self.slots.push(Slot {
                            generation: 0,
                            lane: 0,
                            pe: None,
                        });
                        s
                    }
                };
                if let Some(s) = self.slots.get_mut(slot as usize) {
                    s.pe = Some(Pe {
                        key: v.key().clone(),
                        conn,
                        phase,
                        alive,
                        probed: false,
                    });
                }
                v.insert(slot);
                slot
            }
        };
        // `alive` is now or a little before: the delay is about the interval or timeout.
        self.arm(slot, alive, at);
    }

    fn find_mut(&mut self, handle: &PoolHandle, id: PoolElementId) -> Option<&mut Pe> {
        let slot = *self.index.get(&(handle, id) as &dyn AsKey)?;
        self.slots.get_mut(slot as usize)?.pe.as_mut()
    }

    fn pe(&self, slot: u32) -> Option<&Pe> {
        self.slots.get(slot as usize)?.pe.as_ref()
    }

    /// The PE of a timer that fired, if nothing touched it since.
    fn fired_mut(&mut self, due: &Due) -> Option<&mut Pe> {
        let slot = self.slots.get_mut(due.slot as usize)?;
        if slot.generation != due.generation {
            return None;
        }
        slot.pe.as_mut()
    }

    /// Empties a slot (its timer goes stale) and returns what it held. The caller keeps
    /// `index` in step.
    fn free_slot(&mut self, slot: u32) -> Option<Pe> {
        let s = self.slots.get_mut(slot as usize)?;
        let pe = s.pe.take()?;
        s.generation = s.generation.wrapping_add(1);
        let lane = s.lane;
        self.free.push(slot);
        self.purge(usize::from(lane));
        Some(pe)
    }

    /// Gives `slot` a timer at `at` (rounded up to its slice; the delay runs from `from`),
    /// replacing the one it had.
    fn arm(&mut self, slot: u32, from: Instant, at: Instant) {
        let at = match self.last {
            Some((f, a, ns)) if f == from && a == at => ns,
            _ => {
                let epoch = *self.epoch.get_or_insert(from);
                let ns = since(epoch, at);
                let ns = round_up(ns, ns.saturating_sub(since(epoch, from)));
                self.last = Some((from, at, ns));
                ns
            }
        };
        let Some(s) = self.slots.get_mut(slot as usize) else {
            return;
        };
        s.generation = s.generation.wrapping_add(1);
        let (generation, old) = (s.generation, s.lane);
        let lane = self.push(Timer {
            at,
            slot,
            generation,
        });
        if let Some(s) = self.slots.get_mut(slot as usize) {
            s.lane = lane;
        }
        // The timer this one replaces is stale now.
        self.purge(usize::from(old));
    }

    /// Files a timer: at the back of the lane whose last deadline is the latest not after
    /// it (an empty lane if none is), else in order into the lane that ends first.
    /// Returns the lane.
    fn push(&mut self, timer: Timer) -> u8 {
        let mut best: Option<(usize, u64)> = None;
        for (i, &tail) in self.tails.iter().enumerate() {
            if tail <= timer.at && best.is_none_or(|(_, b)| tail > b) {
                best = Some((i, tail));
            }
        }
        let i = match best {
            Some((i, _)) => {
                self.lanes[i].push_back(timer);
                self.tails[i] = timer.at;
                i
            }
            None => {
                let i = (0..LANES).min_by_key(|&i| self.tails[i]).unwrap_or(0);
                let lane = &mut self.lanes[i];
                let pos = lane.partition_point(|t| t.at <= timer.at);
                lane.insert(pos, timer);
                i
            }
        };
        // LANES is far below 256.
        i as u8
    }

    /// Drops the stale timers at the front of a lane.
    fn purge(&mut self, i: usize) {
        let Some(lane) = self.lanes.get_mut(i) else {
            return;
        };
        while let Some(t) = lane.front() {
            let live = self
                .slots
                .get(t.slot as usize)
                .is_some_and(|s| s.generation == t.generation && s.pe.is_some());
            if live {
                return;
            }
            lane.pop_front();
        }
        self.tails[i] = 0;
    }
}

/// Nanoseconds from `epoch` to `t`: 0 if `t` is before it.
fn since(epoch: Instant, t: Instant) -> u64 {
    t.checked_duration_since(epoch).map_or(0, super::nanos_of)
}

/// The slice a deadline `delay` ns ahead is rounded up to, in ns: 1/64 of the delay in
/// whole milliseconds, at most [`MAX_SLICE`]; zero (no rounding) below 64 ms.
fn slice(delay: u64) -> u64 {
    let max = MAX_SLICE.as_millis() as u64;
    (delay / SLICE_DIVISOR / MS).min(max) * MS
}

/// A deadline `at` ns after the epoch, `delay` ns ahead, rounded up to its slice.
fn round_up(at: u64, delay: u64) -> u64 {
    let slice = slice(delay);
    match at.checked_rem(slice) {
        Some(0) | None => at,
        Some(rem) => at.saturating_add(slice - rem),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn key(id: u32) -> (PoolHandle, PoolElementId) {
        (PoolHandle::from("pool"), PoolElementId(id))
    }

    const C: ConnId = ConnId(7);

    /// Pops everything due at `now`: (PE id, phase was idle).
    fn fire(s: &mut Supervision, now: Instant) -> Vec<(u32, bool)> {
        let mut got = Vec::new();
        while let Some(d) = s.pop_due(now) {
            got.push((d.id.0, d.phase == Phase::Idle));
            s.release(&d);
        }
        got
    }

    #[test]
    fn slices_are_a_64th_of_the_delay_in_whole_ms_at_most_10() {
        let ns = |d: Duration| d.as_nanos() as u64;
        assert_eq!(slice(ns(ms(63))), 0);
        assert_eq!(slice(ns(ms(100))), ns(ms(1)));
        assert_eq!(slice(ns(ms(320))), ns(ms(5)));
        assert_eq!(slice(ns(ms(1_000))), ns(ms(10)));
        assert_eq!(slice(ns(ms(5_000))), ns(MAX_SLICE));
        assert_eq!(slice(u64::MAX), ns(MAX_SLICE));
        assert_eq!(round_up(ns(ms(5_001)), ns(ms(5_000))), ns(ms(5_010)));
        assert_eq!(round_up(ns(ms(5_010)), ns(ms(5_000))), ns(ms(5_010)));
        assert_eq!(round_up(ns(ms(5_001)), ns(ms(50))), ns(ms(5_001)));
        assert_eq!(round_up(u64::MAX - 1, ns(ms(5_000))), u64::MAX);
    }

    #[test]
    fn pes_due_in_one_slice_fire_in_one_wake_up() {
        let t0 = Instant::now();
        let mut s = Supervision::default();
        // Registered 1 ms apart, keep-alive 5 s later: ten per 10 ms slice.
        for i in 0..30u32 {
            let (h, id) = key(i);
            let at = t0 + ms(u64::from(i));
            s.start(h, id, C, at + ms(5_000), at);
        }
        assert_eq!(s.next(), Some(t0 + ms(5_000)));
        assert_eq!(fire(&mut s, t0 + ms(5_000)), vec![(0, true)]);
        assert_eq!(s.next(), Some(t0 + ms(5_010)));
        let second = fire(&mut s, t0 + ms(5_010));
        assert_eq!(
            second.iter().map(|f| f.0).collect::<Vec<_>>(),
            (1..=10).collect::<Vec<_>>()
        );
        assert_eq!(s.next(), Some(t0 + ms(5_020)));
        assert_eq!(s.len(), 19);
    }

    #[test]
    fn acknowledged_and_stopped_timers_go_stale_and_never_fire() {
        let t0 = Instant::now();
        let mut s = Supervision::default();
        for i in 1..=3u32 {
            let (h, id) = key(i);
            s.start(h, id, C, t0 + ms(100), t0);
        }
        // All three fire; keep-alives out, due back by 200 ms.
        let mut dues = Vec::new();
        while let Some(d) = s.pop_due(t0 + ms(100)) {
            dues.push(d);
        }
        assert_eq!(dues.len(), 3);
        for d in &dues {
            s.sent(d, t0 + ms(100), t0 + ms(200));
        }
        // PE 1 acknowledges at 130 ms (next keep-alive at 230), PE 2 is stopped.
        let (h, id) = key(1);
        assert_eq!(
            s.acked(&h, id, C, t0 + ms(130), t0 + ms(230)),
            Some(t0 + ms(100))
        );
        assert_eq!(
            s.acked(&h, id, C, t0 + ms(131), t0 + ms(231)),
            None,
            "no keep-alive out"
        );
        assert_eq!(s.stop(&key(2).0, key(2).1), Some(t0));
        assert!(!s.is_supervised(&key(2).0, key(2).1));
        // Only PE 3 times out at 200 ms; PE 1's keep-alive is next, at 230.
        assert_eq!(fire(&mut s, t0 + ms(200)), vec![(3, false)]);
        assert_eq!(s.next(), Some(t0 + ms(230)));
        assert_eq!(s.len(), 1);
        assert_eq!(s.conn_of(&h, id), Some(C));
        assert_eq!(fire(&mut s, t0 + ms(10_000)), vec![(1, true)]);
        assert_eq!((s.len(), s.next()), (0, None));
    }

    #[test]
    fn deadlines_of_several_kinds_and_out_of_order_all_fire_in_order() {
        let t0 = Instant::now();
        let mut s = Supervision::default();
        // Interval 1 s, timeout 5 s, adoptions 10 s, and a clock that goes back:
        // more kinds than lanes.
        let mut want = Vec::new();
        let mut id = 0u32;
        for step in 0..40u64 {
            let now = t0 + ms(step * 7);
            for delay in [1_000, 5_000, 10_000, 3_000, 7_000] {
                id += 1;
                let (h, pe) = key(id);
                let at = now + ms(delay);
                if delay == 10_000 {
                    s.start_awaiting(h, pe, C, now, at);
                } else {
                    s.start(h, pe, C, at, now);
                }
                let rounded = round_up(since(t0, at), ms(delay).as_nanos() as u64);
                want.push((t0 + Duration::from_nanos(rounded), id));
            }
            // Late news from an earlier moment.
            id += 1;
            let (h, pe) = key(id);
            s.start(h, pe, C, t0 + ms(1_000), t0);
            want.push((t0 + ms(1_000), id));
        }
        want.sort();
        let mut got = Vec::new();
        while let Some(next) = s.next() {
            while let Some(d) = s.pop_due(next) {
                got.push((next, d.id.0));
                s.release(&d);
            }
        }
        let mut got_sorted = got.clone();
        got_sorted.sort();
        assert_eq!(got_sorted, want);
        assert!(
            got.windows(2).all(|w| w[0].0 <= w[1].0),
            "in deadline order"
        );
    }

    #[test]
    fn a_restart_replaces_the_timer_and_a_freed_slot_is_reused() {
        let t0 = Instant::now();
        let mut s = Supervision::default();
        let (h, id) = key(1);
        s.start(h.clone(), id, C, t0 + ms(100), t0);
        s.start(h.clone(), id, ConnId(8), t0 + ms(300), t0 + ms(200));
        assert_eq!(s.conn_of(&h, id), Some(ConnId(8)));
        assert_eq!(s.next(), Some(t0 + ms(300)), "the first timer went stale");
        assert_eq!(s.stop(&h, id), Some(t0 + ms(200)));
        assert_eq!(s.next(), None);
        s.start(h.clone(), PoolElementId(2), C, t0 + ms(400), t0 + ms(300));
        assert_eq!(s.slots.len(), 1, "slot reused");
        // A `Due` handed back twice changes nothing.
        let d = s.pop_due(t0 + ms(400)).unwrap();
        s.release(&d);
        s.release(&d);
        s.sent(&d, t0 + ms(400), t0 + ms(500));
        assert_eq!((s.len(), s.next()), (0, None));
    }

    /// What a random step does (times in ms after the start).
    #[derive(Clone, Debug)]
    enum Op {
        Start {
            id: u8,
            delay: u16,
        },
        Awaiting {
            id: u8,
            delay: u16,
        },
        Stop {
            id: u8,
        },
        Ack {
            id: u8,
            delay: u16,
        },
        /// The clock moves on by `by` and every due timer fires; idle PEs get a
        /// keep-alive with `timeout` (at least 1 ms), unless `drop` says to release them.
        Advance {
            by: u16,
            timeout: u16,
            drop: bool,
        },
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        let id = 0u8..12;
        let delay = 0u16..3_000;
        prop_oneof![
            (id.clone(), delay.clone()).prop_map(|(id, delay)| Op::Start { id, delay }),
            (id.clone(), delay.clone()).prop_map(|(id, delay)| Op::Awaiting { id, delay }),
            id.clone().prop_map(|id| Op::Stop { id }),
            (id, delay).prop_map(|(id, delay)| Op::Ack { id, delay }),
            (0u16..400, 1u16..3_000, any::<bool>()).prop_map(|(by, timeout, drop)| Op::Advance {
                by,
                timeout,
                drop
            }),
        ]
    }

    /// The naive model: every PE's phase and deadline (rounded the same way).
    #[derive(Debug, Default)]
    struct Model {
        pes: std::collections::BTreeMap<u8, (Phase, u64)>,
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

        #[test]
        fn random_operations_agree_with_a_naive_model(
            ops in proptest::collection::vec(op(), 1..150)
        ) {
            let t0 = Instant::now();
            let at = |n: u64| t0 + Duration::from_nanos(n);
            let mut s = Supervision::default();
            let mut m = Model::default();
            let mut now = 0u64;
            // The first timer fixes the epoch at t0; it never fires (and is on the grid).
            let far = ms(1_000_000_000).as_nanos() as u64;
            s.start(PoolHandle::from("x"), PoolElementId(999), C, at(far), t0);
            for op in ops {
                match op {
                    Op::Start { id, delay } | Op::Awaiting { id, delay } => {
                        let d = ms(u64::from(delay)).as_nanos() as u64;
                        let (h, pe) = key(u32::from(id));
                        let phase = if matches!(op, Op::Start { .. }) {
                            s.start(h, pe, C, at(now + d), at(now));
                            Phase::Idle
                        } else {
                            s.start_awaiting(h, pe, C, at(now), at(now + d));
                            Phase::Awaiting { sent: at(now) }
                        };
                        m.pes.insert(id, (phase, round_up(now + d, d)));
                    }
                    Op::Stop { id } => {
                        let (h, pe) = key(u32::from(id));
                        proptest::prop_assert_eq!(s.stop(&h, pe).is_some(), m.pes.remove(&id).is_some());
                    }
                    Op::Ack { id, delay } => {
                        let d = ms(u64::from(delay)).as_nanos() as u64;
                        let (h, pe) = key(u32::from(id));
                        let got = s.acked(&h, pe, C, at(now), at(now + d));
                        let want = match m.pes.get(&id) {
                            Some(&(Phase::Awaiting { sent }, _)) => Some(sent),
                            _ => None,
                        };
                        if want.is_some() {
                            m.pes.insert(id, (Phase::Idle, round_up(now + d, d)));
                        }
                        proptest::prop_assert_eq!(got, want);
                    }
                    Op::Advance { by, timeout, drop } => {
                        now += ms(u64::from(by)).as_nanos() as u64;
                        let want: Vec<(u8, Phase)> = m
                            .pes
                            .iter()
                            .filter(|(_, p)| p.1 <= now)
                            .map(|(&id, p)| (id, p.0))
                            .collect();
                        let mut fired = Vec::new();
                        let mut last = 0;
                        while let Some(d) = s.pop_due(at(now)) {
                            let id = d.id.0 as u8;
                            let deadline = m.pes[&id].1;
                            proptest::prop_assert!(deadline >= last, "in deadline order");
                            last = deadline;
                            fired.push((id, d.phase));
                            let t = ms(u64::from(timeout)).as_nanos() as u64;
                            if d.phase == Phase::Idle && !drop {
                                s.sent(&d, at(now), at(now + t));
                                m.pes.insert(id, (Phase::Awaiting { sent: at(now) }, round_up(now + t, t)));
                            } else {
                                s.release(&d);
                                m.pes.remove(&id);
                            }
                        }
                        fired.sort_by_key(|f| f.0);
                        proptest::prop_assert_eq!(fired, want, "everything due fired, once");
                    }
                }
                proptest::prop_assert_eq!(s.len(), m.pes.len() + 1);
                let next = m.pes.values().map(|p| p.1).min().unwrap_or(far);
                proptest::prop_assert_eq!(s.next(), Some(at(next.min(far))));
            }
        }
    }
}
