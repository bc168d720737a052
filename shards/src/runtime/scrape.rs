//! Metrics snapshots from the shards, without touching their per-message path.
//!
//! Each shard keeps its counters and histograms in its own
//! [`Registrar`](rserpool::registrar::Registrar), updated on its own thread. A scrape
//! sends every shard a request over a small bounded queue and wakes it like a mesh
//! message would; the shard answers between two loop turns with a copy of its figures
//! (a few kilobytes), and the scraper merges the copies. A shard that does not answer
//! in time is reported missing, never waited for beyond the deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::channel::{self, Receiver, Sender, TrySendError};
use rserpool::registrar::{Gauges, Metrics, Registrar};

use super::limits::{ConnCounters, Limits};
use super::mesh::Signal;

/// Scrape requests one shard queues at most (more are answered as "missing").
pub(super) const QUEUE: usize = 4;

/// A shard's figures at one moment.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// The shard's index.
    pub shard: u16,
    /// Its counters and histograms since it started.
    pub metrics: Metrics,
    /// What it holds now.
    pub gauges: Gauges,
    /// Its messages to other shards that found the receiver's queue full and waited in
    /// its own overflow list (the mesh's spills), since it started.
    pub mesh_spills: u64,
    /// Times its overflow list was full, so that it waited for other shards to read.
    pub mesh_waits: u64,
    /// Whether its ENRP start-up is over (RFC 5353 §3.2: the mentor's handle table
    /// downloaded, or no mentor heard within the discovery time, or no peers to ask);
    /// `None` on a shard that runs no ENRP server.
    pub enrp_synchronised: Option<bool>,
}

/// A request for one [`Snapshot`], answered into `reply`.
#[derive(Debug)]
pub(super) struct Request {
    reply: Sender<Snapshot>,
}

impl Request {
    /// Answers from the shard's thread; never blocks (the reply queue has room for
    /// every shard, and a scraper that gave up is simply gone).
    pub(super) fn answer(self, shard: u16, registrar: &Registrar) {
        let _ = self.reply.try_send(Snapshot {
            shard,
            metrics: registrar.metrics().clone(),
            gauges: registrar.gauges(),
            // Read by the scraper from the shard's signal ([`MetricsSource::collect`]).
            mesh_spills: 0,
            mesh_waits: 0,
            enrp_synchronised: registrar.enrp().map(|e| e.is_synchronised()),
        });
    }
}

/// The shard ends of the scrape queues, one per shard, in shard order.
pub(super) fn queues(n: usize) -> (Vec<Sender<Request>>, Vec<Receiver<Request>>) {
    (0..n).map(|_| channel::bounded(QUEUE)).unzip()
}

/// Collects snapshots from a running registrar's shards; cheap to clone and usable
/// from any thread ([`crate::runtime::Handle::metrics_source`]).
#[derive(Clone, Debug)]
pub struct MetricsSource {
    requests: Arc<[Sender<Request>]>,
    signals: Arc<[Signal]>,
    limits: Arc<Limits>,
    /// The TLS credentials, whose handshake counts are process-wide.
    tls: Option<Arc<crate::tls::TlsServer>>,
}

impl MetricsSource {
    pub(super) fn new(
        requests: Arc<[Sender<Request>]>,
        signals: Arc<[Signal]>,
        limits: Arc<Limits>,
    ) -> Self {
        Self {
            requests,
            signals,
            limits,
            tls: None,
        }
    }

    /// The same, also reporting `tls`'s handshake counts.
    pub(super) fn with_tls(mut self, tls: Option<Arc<crate::tls::TlsServer>>) -> Self {
        self.tls = tls;
        self
    }

    /// The TLS handshake and reload counts (process-wide, not per shard); `None`
    /// without TLS.
    pub fn tls_figures(&self) -> Option<crate::tls::TlsFigures> {
        self.tls.as_ref().map(|t| t.figures())
    }

    /// The connection limits' counters, registrar-wide (read without asking the
    /// shards: they are atomics).
    pub fn connections(&self) -> ConnCounters {
        self.limits.counters()
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.requests.len()
    }

    /// Asks every shard for its figures and waits at most `timeout` in all. Entry `i`
    /// is shard `i`'s snapshot, or `None` if it did not answer in time (busy for that
    /// long, or stopped).
    pub fn collect(&self, timeout: Duration) -> Vec<Option<Snapshot>> {
        let n = self.requests.len();
        let (reply, answers) = channel::bounded(n.max(1));
        let mut asked = 0;
        for (tx, signal) in self.requests.iter().zip(self.signals.iter()) {
            match tx.try_send(Request {
                reply: reply.clone(),
            }) {
                Ok(()) => {
                    asked += 1;
                    signal.scrape_queued();
                    signal.wake_if_parked();
                }
                // Stopped, or earlier scrapes still unanswered: it counts as missing.
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {}
            }
        }
        drop(reply);
        let deadline = Instant::now() + timeout;
        let mut out: Vec<Option<Snapshot>> = vec![None; n];
        for _ in 0..asked {
            match answers.recv_deadline(deadline) {
                Ok(mut s) => {
                    let i = usize::from(s.shard);
                    if let Some(signal) = self.signals.get(i) {
                        let mesh = signal.counters();
                        (s.mesh_spills, s.mesh_waits) = (mesh.spills, mesh.waits);
                    }
                    if let Some(slot) = out.get_mut(i) {
                        *slot = Some(s);
                    }
                }
                Err(_) => break,
            }
        }
        out
    }
}
