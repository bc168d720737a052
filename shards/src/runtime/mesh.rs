//! The mesh between shards: one bounded FIFO per ordered pair of shards, and a wake-up
//! per shard.
//!
//! One queue per (from, to) keeps each owner's updates in order at every replica
//! (`rserpool::registrar::shard`). A sender never blocks: when a queue is full the
//! messages wait in the sender's own overflow list and are retried every loop turn, so
//! two busy shards cannot deadlock on each other. A sleeping shard is woken through its
//! eventfd, but only when it said it was going to sleep ("parked"): a busy shard picks
//! messages up on its next turn without any syscall.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering, fence};

use crossbeam::channel::{Receiver, Sender, TryRecvError, TrySendError, bounded};
use rserpool::registrar::{ShardId, ShardMsg};

use crate::net::socket::EventFd;

/// Messages one queue holds before the sender starts using its overflow list.
pub(super) const QUEUE_CAPACITY: usize = 16_384;

/// How a shard is woken.
#[derive(Debug)]
pub(crate) struct Signal {
    parked: AtomicBool,
    eventfd: EventFd,
}

impl Signal {
    pub(crate) fn new() -> io::Result<Self> {
        Ok(Self {
            parked: AtomicBool::new(false),
            eventfd: EventFd::new()?,
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

    /// Wakes the shard whatever it is doing (shutdown).
    pub(crate) fn wake(&self) {
        self.eventfd.notify();
    }
}

/// One shard's end of the mesh.
#[derive(Debug)]
pub(crate) struct Port {
    out: Vec<Option<Sender<ShardMsg>>>,
    inbox: Vec<Receiver<ShardMsg>>,
    overflow: Vec<VecDeque<ShardMsg>>,
    touched: Vec<bool>,
    signals: Arc<[Signal]>,
    /// The inbox to start reading from next turn, so no sender starves the others.
    next_inbox: usize,
}

/// Builds the ports of `signals.len()` shards.
pub(crate) fn build(signals: Arc<[Signal]>, capacity: usize) -> Vec<Port> {
    let n = signals.len();
    let mut ports: Vec<Port> = (0..n)
        .map(|_| Port {
            out: (0..n).map(|_| None).collect(),
            inbox: Vec::new(),
            overflow: (0..n).map(|_| VecDeque::new()).collect(),
            touched: vec![false; n],
            signals: signals.clone(),
            next_inbox: 0,
        })
        .collect();
    for from in 0..n {
        for to in 0..n {
            if from != to {
                let (s, r) = bounded(capacity);
                ports[from].out[to] = Some(s);
                ports[to].inbox.push(r);
            }
        }
    }
    ports
}

impl Port {
    /// Queues `msg` for shard `to` without blocking.
    pub(crate) fn send(&mut self, to: ShardId, msg: ShardMsg) {
        let to = usize::from(to.0);
        let Some(Some(tx)) = self.out.get(to) else {
            tracing::error!(to, "message for a shard that does not exist");
            return;
        };
        self.touched[to] = true;
        if !self.overflow[to].is_empty() {
            // Keep FIFO order behind what already waits.
            self.overflow[to].push_back(msg);
            return;
        }
        match tx.try_send(msg) {
            Ok(()) => {}
            Err(TrySendError::Full(msg)) => self.overflow[to].push_back(msg),
            // The receiver is gone only during shutdown.
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Retries the overflow lists and wakes every shard that got messages; returns
    /// whether messages are still waiting for room.
    pub(crate) fn flush(&mut self) -> bool {
        let mut waiting = false;
        for to in 0..self.out.len() {
            let Some(tx) = &self.out[to] else { continue };
            let q = &mut self.overflow[to];
            while let Some(msg) = q.pop_front() {
                match tx.try_send(msg) {
                    Ok(()) => {}
                    Err(TrySendError::Full(msg)) => {
                        q.push_front(msg);
                        break;
                    }
                    Err(TrySendError::Disconnected(_)) => q.clear(),
                }
            }
            waiting |= !q.is_empty();
            if std::mem::take(&mut self.touched[to]) {
                self.signals[to].wake_if_parked();
            }
        }
        waiting
    }

    /// Hands up to `max` received messages to `f`; returns whether more are waiting.
    pub(crate) fn recv(&mut self, max: usize, mut f: impl FnMut(ShardMsg)) -> bool {
        let n = self.inbox.len();
        if n == 0 {
            return false;
        }
        let per_inbox = max.div_ceil(n).max(1);
        let mut more = false;
        for k in 0..n {
            let rx = &self.inbox[(self.next_inbox + k) % n];
            let mut taken = 0;
            loop {
                if taken == per_inbox {
                    more |= !rx.is_empty();
                    break;
                }
                match rx.try_recv() {
                    Ok(msg) => {
                        taken += 1;
                        f(msg);
                    }
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
        }
        self.next_inbox = (self.next_inbox + 1) % n;
        more
    }

    /// Whether any message is waiting to be received.
    pub(crate) fn has_incoming(&self) -> bool {
        self.inbox.iter().any(|r| !r.is_empty())
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

    #[test]
    fn a_full_queue_overflows_locally_and_keeps_fifo_order() {
        let signals: Arc<[Signal]> = (0..2).map(|_| Signal::new().unwrap()).collect();
        let mut ports = build(signals, 4);
        let mut b = ports.pop().unwrap();
        let mut a = ports.pop().unwrap();
        for i in 0..10 {
            a.send(ShardId(1), msg(i));
        }
        assert!(a.flush(), "six messages wait for room");
        let mut got = Vec::new();
        while b.recv(3, |m| got.push(id(&m))) || a.flush() || b.has_incoming() {}
        assert_eq!(got, (0..10).collect::<Vec<_>>());
        assert!(!a.flush());
    }

    #[test]
    fn only_a_parked_shard_is_woken() {
        let signals: Arc<[Signal]> = (0..2).map(|_| Signal::new().unwrap()).collect();
        let s = &signals[1];
        s.wake_if_parked();
        assert!(!s.parked.load(Ordering::SeqCst));
        s.park();
        s.wake_if_parked();
        assert!(!s.parked.load(Ordering::SeqCst), "the sender unparked it");
    }
}
