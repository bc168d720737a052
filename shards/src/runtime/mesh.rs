//! The mesh between shards: one inbound queue per shard, which every other shard sends
//! to, and a wake-up per shard.
//!
//! Memory is linear in the shard count and nothing when idle: a queue is a linked list
//! of small blocks taken as messages arrive and given back as they are read (not a ring
//! allocated up front for every pair of shards). Each sender's messages still reach a
//! receiver in the order sent, which `rserpool::registrar::shard` relies on (a writer's
//! updates reach every replica in order, and an ENRP barrier `Sync` comes after the
//! updates sent before it): one queue keeps the order of each producer.
//!
//! Every queue is bounded. A receiver's queue takes [`QUEUE_CAPACITY`] messages; past
//! that a sender keeps its messages for that receiver in its own overflow list, in
//! order, and retries them every loop turn (a *spill*, counted). A sender's overflow
//! lists together are bounded too: when they are full, the sender waits for receivers
//! to make room, which holds its own input back. Two shards waiting for each other
//! would wait for ever, so a waiting sender says so ([`Signal`]), and one whose
//! receivers are all waiting as well stops waiting and spills past the bound for the
//! rest of its loop turn (whatever its registrar produced in that turn), after which it
//! reads its own queue and frees the others.
//!
//! A sleeping shard is woken through its eventfd, but only when it said it was going
//! to sleep ("parked"): a busy shard picks messages up on its next turn without any
//! syscall.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};
use std::time::Duration;

use crossbeam::channel::{Receiver, Sender, TryRecvError, TrySendError, unbounded};
use rserpool::registrar::{ShardId, ShardMsg};

use crate::net::socket::EventFd;

/// Messages a shard's queue holds before senders keep theirs in their overflow lists;
/// also the most messages one sender keeps there before it waits.
pub(super) const QUEUE_CAPACITY: usize = 16_384;

/// Spins of a waiting sender before it sleeps between attempts.
const WAIT_SPINS: u32 = 64;
/// Sleep between attempts of a sender waiting for room.
const WAIT_SLEEP: Duration = Duration::from_micros(50);

/// How a shard is woken, and what its end of the mesh counts.
#[derive(Debug)]
pub(crate) struct Signal {
    parked: AtomicBool,
    eventfd: EventFd,
    /// Set while the shard waits for room in other shards' queues.
    waiting: AtomicBool,
    /// Set once the shard's port is gone (it stopped): messages for it are dropped.
    closed: AtomicBool,
    /// Counted by the shard itself, read by scrapes.
    spills: AtomicU64,
    waits: AtomicU64,
    /// Messages put in the shard's queue so far (by every sender); the shard compares
    /// it with what it took to know, in one load, whether anything waits.
    delivered: AtomicU64,
    /// Metrics requests put in the shard's scrape queue so far: like `delivered`, one
    /// load tells the shard whether one waits (a channel's own emptiness test costs
    /// several).
    scrapes: AtomicU64,
}

/// What one shard's end of the mesh has counted since the start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct MeshCounters {
    /// Messages that found the receiver's queue full and went to the sender's overflow
    /// list.
    pub(crate) spills: u64,
    /// Times the sender's overflow list was full, so that it waited for room.
    pub(crate) waits: u64,
}

impl Signal {
    pub(crate) fn new() -> io::Result<Self> {
        Ok(Self {
            parked: AtomicBool::new(false),
            eventfd: EventFd::new()?,
            waiting: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            spills: AtomicU64::new(0),
            waits: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            scrapes: AtomicU64::new(0),
        })
    }

    pub(crate) fn eventfd(&self) -> &EventFd {
        &self.eventfd
    }

    /// Called by the shard itself before it checks its queues one last time and sleeps.
    pub(crate) fn park(&self) {
        self.parked.store(true, Ordering::SeqCst);
        // Pairs with the fence in `wake_if_parked`: either the sender sees `parked`, or
        // the shard's last look at its queues sees the message.
        fence(Ordering::SeqCst);
    }

    pub(crate) fn unpark(&self) {
        self.parked.store(false, Ordering::Relaxed);
    }

    /// Called by a sender after it queued messages.
    pub(crate) fn wake_if_parked(&self) {
        fence(Ordering::SeqCst);
        // Only the sender that flips the flag writes, so a burst costs one syscall.
        if self.parked.swap(false, Ordering::SeqCst) {
            self.eventfd.notify();
        }
    }

    /// A metrics request was queued for the shard; called before
    /// [`Signal::wake_if_parked`], whose fence orders the two. Release: a shard that
    /// sees the count sees the request in its queue.
    pub(crate) fn scrape_queued(&self) {
        self.scrapes.fetch_add(1, Ordering::Release);
    }

    /// Metrics requests queued for the shard so far ([`Signal::scrape_queued`]).
    #[inline]
    pub(crate) fn scrapes(&self) -> u64 {
        self.scrapes.load(Ordering::Acquire)
    }

    /// Wakes the shard whatever it is doing (shutdown).
    pub(crate) fn wake(&self) {
        self.eventfd.notify();
    }

    /// The shard's mesh counters (any thread).
    pub(crate) fn counters(&self) -> MeshCounters {
        MeshCounters {
            spills: self.spills.load(Ordering::Relaxed),
            waits: self.waits.load(Ordering::Relaxed),
        }
    }
}

/// One shard's end of the mesh.
#[derive(Debug)]
pub(crate) struct Port {
    me: usize,
    /// Every shard's queue (this one's unused), shared by all ports.
    queues: Arc<[Sender<ShardMsg>]>,
    inbox: Receiver<ShardMsg>,
    /// Messages taken from `inbox` so far (see [`Signal`]'s `delivered`).
    received: u64,
    capacity: usize,
    /// Per receiver.
    dests: Vec<Dest>,
    /// Messages in all overflow lists.
    spilled: usize,
    /// Receivers with messages in their overflow list.
    backlog: Vec<u16>,
    /// Receivers sent to since the last wake-up round.
    touched: Vec<u16>,
    /// The receivers were all found waiting too: until the end of this loop turn
    /// ([`Port::flush`]), spill without waiting.
    overbound: bool,
    signals: Arc<[Signal]>,
}

/// A port's state for one receiver.
#[derive(Debug, Default)]
struct Dest {
    /// Messages that found its queue full, in the order sent.
    overflow: VecDeque<ShardMsg>,
    /// In `touched`.
    touched: bool,
}

/// Builds the ports of `signals.len()` shards, each taking `capacity` messages in its
/// queue before senders spill, and each sender keeping at most `capacity` spilled ones.
pub(crate) fn build(signals: Arc<[Signal]>, capacity: usize) -> Vec<Port> {
    let n = signals.len();
    let (queues, inboxes): (Vec<_>, Vec<_>) = (0..n).map(|_| unbounded()).unzip();
    let queues: Arc<[Sender<ShardMsg>]> = queues.into();
    inboxes
        .into_iter()
        .enumerate()
        .map(|(me, inbox)| Port {
            me,
            queues: queues.clone(),
            inbox,
            received: 0,
            capacity: capacity.max(1),
            dests: (0..n).map(|_| Dest::default()).collect(),
            spilled: 0,
            backlog: Vec::new(),
            touched: Vec::new(),
            overbound: false,
            signals: signals.clone(),
        })
        .collect()
}

impl Port {
    /// Queues `msg` for shard `to`. It waits only when the overflow lists are full (see
    /// the module's documentation).
    pub(crate) fn send(&mut self, to: ShardId, msg: ShardMsg) {
        let to = usize::from(to.0);
        if to >= self.queues.len() || to == self.me {
            tracing::error!(to, "message for a shard that is not another one");
            return;
        }
        self.touch(to);
        let mut msg = msg;
        // Behind what already waits for that receiver, to keep the order.
        if self.dests[to].overflow.is_empty() {
            match self.push(to, msg) {
                None => return,
                Some(m) => msg = m,
            }
        }
        if self.spilled >= self.capacity && !self.overbound {
            self.wait_for_room();
            if self.dests[to].overflow.is_empty() {
                match self.push(to, msg) {
                    None => return,
                    Some(m) => msg = m,
                }
            }
        }
        self.signals[self.me].spills.fetch_add(1, Ordering::Relaxed);
        if self.dests[to].overflow.is_empty() {
            self.backlog.push(to as u16);
        }
        self.dests[to].overflow.push_back(msg);
        self.spilled += 1;
    }

    /// Retries the overflow lists and wakes every shard that got messages; returns
    /// whether messages are still waiting for room. Called once per loop turn.
    #[inline]
    pub(crate) fn flush(&mut self) -> bool {
        self.overbound = false;
        // Most turns send nothing to other shards.
        if self.backlog.is_empty() && self.touched.is_empty() {
            return false;
        }
        self.flush_now()
    }

    fn flush_now(&mut self) -> bool {
        self.retry_overflow();
        self.wake_touched();
        self.spilled > 0
    }

    /// Hands up to `max` received messages to `f`; returns whether more are waiting.
    pub(crate) fn recv(&mut self, max: usize, mut f: impl FnMut(ShardMsg)) -> bool {
        // The common case, nothing new, costs one load.
        if !self.has_incoming() {
            return false;
        }
        for _ in 0..max {
            match self.inbox.try_recv() {
                Ok(msg) => {
                    self.received += 1;
                    f(msg);
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return false,
            }
        }
        self.has_incoming()
    }

    /// Whether any message is waiting to be received: more were delivered to this
    /// shard than it took.
    pub(crate) fn has_incoming(&self) -> bool {
        self.signals[self.me].delivered.load(Ordering::SeqCst) != self.received
    }

    /// Puts `msg` in `to`'s queue if it has room (or drops it if `to` stopped);
    /// otherwise hands it back.
    fn push(&self, to: usize, msg: ShardMsg) -> Option<ShardMsg> {
        if self.signals[to].closed.load(Ordering::Acquire) {
            return None;
        }
        let queue = &self.queues[to];
        if queue.len() >= self.capacity {
            return Some(msg);
        }
        match queue.try_send(msg) {
            Ok(()) => {
                // After the message is in: a receiver that sees the count finds it.
                self.signals[to].delivered.fetch_add(1, Ordering::SeqCst);
                None
            }
            Err(TrySendError::Disconnected(_)) => None,
            Err(TrySendError::Full(msg)) => Some(msg),
        }
    }

    fn touch(&mut self, to: usize) {
        if !std::mem::replace(&mut self.dests[to].touched, true) {
            self.touched.push(to as u16);
        }
    }

    fn wake_touched(&mut self) {
        for to in self.touched.drain(..) {
            let to = usize::from(to);
            self.dests[to].touched = false;
            self.signals[to].wake_if_parked();
        }
    }

    /// Moves what fits from the overflow lists to the queues, each list in order up to
    /// its first refusal: the cost is what moves, plus one per receiver.
    fn retry_overflow(&mut self) {
        let mut i = 0;
        while i < self.backlog.len() {
            let to = usize::from(self.backlog[i]);
            let mut moved = 0;
            while let Some(msg) = self.dests[to].overflow.pop_front() {
                if let Some(msg) = self.push(to, msg) {
                    self.dests[to].overflow.push_front(msg);
                    break;
                }
                moved += 1;
            }
            self.spilled -= moved;
            if moved > 0 {
                self.touch(to);
            }
            let overflow = &mut self.dests[to].overflow;
            if overflow.is_empty() {
                // A burst's list gives its memory back once it is over.
                if overflow.capacity() > 1024 {
                    *overflow = VecDeque::new();
                }
                self.backlog.swap_remove(i);
            } else {
                i += 1;
            }
        }
    }

    /// Waits until the overflow lists have room: retries them, waking the receivers,
    /// until one of them has read enough. Gives up when every receiver it waits for
    /// waits too (or has stopped): the lists then go past their bound until the end of
    /// this loop turn, after which this shard reads its own queue again.
    fn wait_for_room(&mut self) {
        let me = &self.signals[self.me];
        me.waits.fetch_add(1, Ordering::Relaxed);
        me.waiting.store(true, Ordering::SeqCst);
        let mut spins = 0u32;
        loop {
            self.retry_overflow();
            self.wake_touched();
            if self.spilled < self.capacity {
                break;
            }
            // Pairs with the store above: of two shards waiting for each other, at
            // least one sees the other's flag.
            let signals = &self.signals;
            let stuck = self
                .backlog
                .iter()
                .all(|&to| signals[usize::from(to)].waiting.load(Ordering::SeqCst));
            if stuck {
                self.overbound = true;
                break;
            }
            if spins < WAIT_SPINS {
                spins += 1;
                std::thread::yield_now();
            } else {
                std::thread::sleep(WAIT_SLEEP);
            }
        }
        self.signals[self.me].waiting.store(false, Ordering::SeqCst);
    }
}

impl Drop for Port {
    /// Senders drop what they have for a stopped shard (a waiting one stops waiting).
    fn drop(&mut self) {
        self.signals[self.me].closed.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rserpool::PoolElementId;

    fn msg(id: u32) -> ShardMsg {
        ShardMsg::Delete {
            handle: "p".into(),
            id: PoolElementId(id),
        }
    }

    fn id(m: &ShardMsg) -> u32 {
        match m {
            ShardMsg::Delete { id, .. } => id.0,
            _ => unreachable!(),
        }
    }

    fn signals(n: usize) -> Arc<[Signal]> {
        (0..n).map(|_| Signal::new().unwrap()).collect()
    }

    #[test]
    fn a_full_queue_overflows_locally_and_keeps_fifo_order() {
        let signals = signals(2);
        let mut ports = build(signals.clone(), 4);
        let mut b = ports.pop().unwrap();
        let mut a = ports.pop().unwrap();
        for i in 0..7 {
            a.send(ShardId(1), msg(i));
        }
        assert!(a.flush(), "three messages wait for room");
        assert_eq!(signals[0].counters().spills, 3);
        let mut got = Vec::new();
        while b.recv(3, |m| got.push(id(&m))) || a.flush() || b.has_incoming() {}
        assert_eq!(got, (0..7).collect::<Vec<_>>());
        assert!(!a.flush());
    }

    #[test]
    fn each_senders_order_survives_a_shared_queue() {
        let signals = signals(3);
        let mut ports = build(signals.clone(), 4);
        let mut c = ports.pop().unwrap();
        let mut b = ports.pop().unwrap();
        let mut a = ports.pop().unwrap();
        for i in 0..5 {
            a.send(ShardId(2), msg(i));
            b.send(ShardId(2), msg(100 + i));
        }
        let mut got = Vec::new();
        loop {
            let more = c.recv(1, |m| got.push(id(&m)));
            if !(more | a.flush() | b.flush() | c.has_incoming()) {
                break;
            }
        }
        let from_a: Vec<u32> = got.iter().copied().filter(|&i| i < 100).collect();
        let from_b: Vec<u32> = got.iter().copied().filter(|&i| i >= 100).collect();
        assert_eq!(from_a, (0..5).collect::<Vec<_>>());
        assert_eq!(from_b, (100..105).collect::<Vec<_>>());
    }

    #[test]
    fn a_spilled_receiver_does_not_hold_back_the_others() {
        let signals = signals(3);
        let mut ports = build(signals, 2);
        let mut c = ports.pop().unwrap();
        let mut b = ports.pop().unwrap();
        let mut a = ports.pop().unwrap();
        for i in 0..4 {
            a.send(ShardId(1), msg(i));
        }
        a.send(ShardId(2), msg(9));
        let mut got = Vec::new();
        c.recv(10, |m| got.push(id(&m)));
        assert_eq!(got, [9], "went straight to its queue");
        got.clear();
        while b.recv(1, |m| got.push(id(&m))) || a.flush() || b.has_incoming() {}
        assert_eq!(got, [0, 1, 2, 3]);
    }

    #[test]
    fn two_shards_with_full_lists_waiting_for_each_other_go_past_the_bound() {
        let signals = signals(2);
        let mut ports = build(signals.clone(), 2);
        let mut b = ports.pop().unwrap();
        let mut a = ports.pop().unwrap();
        // b's queue and a's overflow list are full; b "waits" for room at a.
        for i in 0..4 {
            a.send(ShardId(1), msg(i));
        }
        signals[1].waiting.store(true, Ordering::SeqCst);
        a.send(ShardId(1), msg(4));
        assert_eq!(
            signals[0].counters(),
            MeshCounters {
                spills: 3,
                waits: 1
            }
        );
        signals[1].waiting.store(false, Ordering::SeqCst);
        let mut got = Vec::new();
        while b.recv(8, |m| got.push(id(&m))) || a.flush() || b.has_incoming() {}
        assert_eq!(got, (0..5).collect::<Vec<_>>());
    }

    /// As when both shards lose connections with many PEs at once: each turn's outputs
    /// are many times the bounds, for each other, before either reads.
    #[test]
    fn two_shards_flooding_each_other_in_one_turn_both_finish() {
        const N: u32 = 20_000;
        let signals = signals(2);
        let ports = build(signals, 4);
        let threads: Vec<_> = ports
            .into_iter()
            .enumerate()
            .map(|(me, mut port)| {
                std::thread::spawn(move || {
                    let other = ShardId(1 - me as u16);
                    for i in 0..N {
                        port.send(other, msg(i));
                    }
                    let mut got = Vec::new();
                    loop {
                        port.recv(64, |m| got.push(id(&m)));
                        let waiting = port.flush();
                        if got.len() == N as usize && !waiting {
                            return got;
                        }
                        std::thread::yield_now();
                    }
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), (0..N).collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_waiting_sender_resumes_when_the_receiver_reads() {
        let signals = signals(2);
        let mut ports = build(signals.clone(), 2);
        let mut b = ports.pop().unwrap();
        let mut a = ports.pop().unwrap();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            while got.len() < 100 {
                b.recv(8, |m| got.push(id(&m)));
                std::thread::yield_now();
            }
            got
        });
        for i in 0..100 {
            a.send(ShardId(1), msg(i));
        }
        while a.flush() {
            std::thread::yield_now();
        }
        assert_eq!(reader.join().unwrap(), (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn messages_for_a_stopped_shard_are_dropped() {
        let signals = signals(2);
        let mut ports = build(signals, 1);
        drop(ports.pop());
        let mut a = ports.pop().unwrap();
        for i in 0..10 {
            a.send(ShardId(1), msg(i));
        }
        assert!(!a.flush());
    }

    #[test]
    fn only_a_parked_shard_is_woken() {
        let signals = signals(2);
        let s = &signals[1];
        s.wake_if_parked();
        assert!(!s.parked.load(Ordering::SeqCst));
        s.park();
        s.wake_if_parked();
        assert!(!s.parked.load(Ordering::SeqCst), "the sender unparked it");
    }
}
