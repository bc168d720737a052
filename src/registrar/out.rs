//! What a shard's roles produce, queued for the runtime to drain, and the counters they
//! bump on the way.

use std::collections::VecDeque;

use super::{ConnId, Event, Metrics, Router, Served, ShardId, ShardMsg, Transmit};
use crate::handlespace::Record;
use crate::ids::{PoolHandle, RegistrarId};
use crate::wire::{AsapMessage, Fit, PoolElement};

/// Spent buffers kept for reuse, and the largest kept.
const SPARE_BUFFERS: usize = 256;
const SPARE_CAPACITY: usize = 8192;

#[derive(Debug)]
pub(super) struct Outputs {
    shard: ShardId,
    router: Router,
    pub(super) transmits: VecDeque<Transmit>,
    pub(super) to_shards: VecDeque<(ShardId, ShardMsg)>,
    /// Messages to this same shard, handled before an input call returns.
    pub(super) local: VecDeque<ShardMsg>,
    pub(super) events: VecDeque<Event>,
    pub(super) metrics: Metrics,
    /// Spent message buffers handed back by the runtime ([`super::Registrar::recycle`]),
    /// so that answers are encoded without allocating.
    spare: Vec<Vec<u8>>,
    /// Changes of this shard's replica to PEs whose home is this registrar (the ID),
    /// kept only on the shard that runs ENRP, which turns them into handle updates.
    pub(super) changes: Option<(RegistrarId, Vec<Change>)>,
}

/// A PE added or updated (`deleted` false), or removed, in the replica.
#[derive(Debug)]
pub(super) struct Change {
    pub(super) handle: PoolHandle,
    pub(super) element: PoolElement,
    pub(super) deleted: bool,
}

impl Outputs {
    pub(super) fn new(shard: ShardId, router: Router) -> Self {
        Self {
            shard,
            router,
            transmits: VecDeque::new(),
            to_shards: VecDeque::new(),
            local: VecDeque::new(),
            events: VecDeque::new(),
            metrics: Metrics::default(),
            spare: Vec::new(),
            changes: None,
        }
    }

    /// Records a change of the replica, if changes of our own PEs are kept here (the
    /// record is decoded only then).
    pub(super) fn changed(&mut self, handle: &PoolHandle, record: &Record, deleted: bool) {
        if let Some((me, c)) = &mut self.changes
            && record.home() == *me
        {
            c.push(Change {
                handle: handle.clone(),
                element: record.param(),
                deleted,
            });
        }
    }

    pub(super) fn shard(&self) -> ShardId {
        self.shard
    }

    pub(super) fn router(&self) -> &Router {
        &self.router
    }

    pub(super) fn send_shard(&mut self, to: ShardId, msg: ShardMsg) {
        if to == self.shard {
            self.local.push_back(msg);
        } else {
            self.to_shards.push_back((to, msg));
        }
    }

    /// Sends `msg` to the writer of `handle`'s pool.
    pub(super) fn send_writer(&mut self, handle: &PoolHandle, msg: ShardMsg) {
        let writer = self.router.writer(handle.as_bytes());
        self.send_shard(writer, msg);
    }

    /// Sends a replica update to every other shard (a clone each: a shared record and
    /// a handle).
    pub(super) fn publish(&mut self, msg: ShardMsg) {
        for s in 0..self.router.shards() {
            let s = ShardId(s);
            if s != self.shard {
                self.to_shards.push_back((s, msg.clone()));
            }
        }
    }

    pub(super) fn transmit(&mut self, conn: ConnId, message: &AsapMessage) {
        self.transmit_served(conn, message, None);
    }

    /// Encodes and queues an answer, counting it and the error causes it carries.
    pub(super) fn transmit_served(
        &mut self,
        conn: ConnId,
        message: &AsapMessage,
        served: Option<Served>,
    ) {
        use AsapMessage as M;
        if let M::Error { error }
        | M::RegistrationResponse {
            error: Some(error), ..
        }
        | M::DeregistrationResponse {
            error: Some(error), ..
        }
        | M::HandleResolutionResponse {
            error: Some(error), ..
        } = message
        {
            for c in &error.causes {
                self.metrics.on_error_cause(c.code);
            }
        }
        let mut payload = self.buffer();
        // Answers echo and quote what was received: make them fit the length field.
        let fit = message.encode_answer(&mut payload);
        if fit != Fit::Whole {
            self.metrics.answers.on_fitted(fit);
            let kind = message.kind();
            self.events
                .push_back(Event::AnswerFitted { conn, kind, fit });
        }
        self.push_asap(conn, payload, served);
    }

    /// An empty buffer to encode a message into: a recycled one if there is one.
    pub(super) fn buffer(&mut self) -> Vec<u8> {
        self.spare.pop().unwrap_or_else(|| Vec::with_capacity(256))
    }

    /// Keeps a spent buffer for [`Outputs::buffer`] (a bounded number of them, none
    /// grown large).
    pub(super) fn recycle(&mut self, mut buf: Vec<u8>) {
        if self.spare.len() < SPARE_BUFFERS && buf.capacity() <= SPARE_CAPACITY {
            buf.clear();
            self.spare.push(buf);
        }
    }

    /// Queues an encoded message (every ASAP transmit goes through here, for the count).
    pub(super) fn push_asap(&mut self, conn: ConnId, payload: Vec<u8>, served: Option<Served>) {
        self.metrics.on_sent(&payload);
        self.transmits.push_back(Transmit::Asap {
            conn,
            payload,
            served,
        });
    }
}
