//! Connection-level limits: what one client may hold of the registrar's descriptors,
//! memory and time, and the counters of every refusal and closure they cause.
//!
//! The caps on connections are registrar-wide (a client's connections land on any
//! shard), so admission is one small shared table touched only at accept and close,
//! never per message. Timeouts and send backlogs are checked by each shard for its own
//! connections ([`super::tcp`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Descriptors kept out of the connection cap for listeners, rings, eventfds, SCTP
/// sockets, outbound ENRP connections and the metrics endpoint, so that the cap is
/// reached (and clients refused with a clean close) before accept runs out of them.
pub(super) const RESERVED_FDS: u64 = 256;
/// A refusal of the same kind is logged at most this often (with the count since).
const LOG_EVERY: Duration = Duration::from_secs(10);

/// The connection limits an operator configures (`[limits]` in the config file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnLimits {
    /// A TCP message that has started must arrive whole within this, or its
    /// connection is closed (slowloris). SCTP needs none: the kernel hands over whole
    /// messages only.
    pub message_timeout: Duration,
    /// An accepted TCP connection that has not sent one whole message within this is
    /// closed. `None`: never. Connections that sent a message are never idle-closed,
    /// since RSPLIB's pool users keep their registrar connection open, silent,
    /// between resolutions.
    pub idle_timeout: Option<Duration>,
    /// Accepted connections open at once, all shards and listeners together (also
    /// bounded by the open-file limit less 256).
    pub max_connections: usize,
    /// Accepted connections open at once from one source address.
    pub max_connections_per_source: usize,
    /// Unsent bytes one connection may have before it is closed as a slow consumer.
    pub max_unsent_per_connection: usize,
    /// Unsent bytes all of one shard's connections may have together; beyond it the
    /// connections with the largest backlogs are closed first.
    pub max_unsent_per_shard: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            message_timeout: Duration::from_secs(10),
            idle_timeout: Some(Duration::from_secs(60)),
            max_connections: 100_000,
            max_connections_per_source: 1_000,
            max_unsent_per_connection: 4 << 20,
            max_unsent_per_shard: 64 << 20,
        }
    }
}

/// Why a connection was refused at accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// [`ConnLimits::max_connections`].
    Total,
    /// [`ConnLimits::max_connections_per_source`].
    PerSource,
}

/// Why the runtime closed a connection on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Closure {
    MessageTimeout,
    IdleTimeout,
    SlowConsumer,
    ShardBacklog,
}

/// The counters of the connection limits, registrar-wide, since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnCounters {
    /// Accepted connections open now.
    pub open: u64,
    /// Refused at accept: the total cap was reached.
    pub refused_total: u64,
    /// Refused at accept: the per-source cap was reached.
    pub refused_per_source: u64,
    /// Accepts that failed for want of descriptors or memory (EMFILE, ENFILE, ENOBUFS,
    /// ENOMEM).
    pub accept_failures: u64,
    /// Accepted with the spare descriptor while out of descriptors, and closed at once
    /// (so that the client sees a close instead of waiting).
    pub refused_no_descriptors: u64,
    /// Closed: a started message did not arrive whole in time.
    pub closed_message_timeout: u64,
    /// Closed: no whole message in time after accept.
    pub closed_idle_timeout: u64,
    /// Closed: the connection's own backlog passed its cap, or its input was held
    /// back for the message timeout without the backlog halving.
    pub closed_slow_consumer: u64,
    /// Closed: the largest backlog while the shard's total passed its cap.
    pub closed_shard_backlog: u64,
    /// Connections whose TCP framing broke (a Message Length below 4).
    pub broken_framing_tcp: u64,
    /// SCTP associations whose message broke the framing (longer than any message).
    pub broken_framing_sctp: u64,
}

#[derive(Debug, Default)]
struct Counters {
    refused_total: AtomicU64,
    refused_per_source: AtomicU64,
    accept_failures: AtomicU64,
    refused_no_descriptors: AtomicU64,
    closed_message_timeout: AtomicU64,
    closed_idle_timeout: AtomicU64,
    closed_slow_consumer: AtomicU64,
    closed_shard_backlog: AtomicU64,
    broken_framing_tcp: AtomicU64,
    broken_framing_sctp: AtomicU64,
}

/// The limits and their shared state: one per registrar, shared by every shard.
#[derive(Debug)]
pub(super) struct Limits {
    pub(super) config: ConnLimits,
    /// The total cap in force ([`ConnLimits::max_connections`] or less, see
    /// [`Limits::new`]).
    max_connections: usize,
    open: AtomicUsize,
    per_source: Mutex<HashMap<IpAddr, u32>>,
    counters: Counters,
    start: Instant,
    /// Seconds since `start` of the last refusal logged, per [`Refusal`], plus one
    /// (0: never), and the refusals since.
    logged: [(AtomicU64, AtomicU64); 2],
}

impl Limits {
    /// The limits in force: the total cap is lowered to the open-file limit less
    /// [`RESERVED_FDS`] when that is smaller.
    pub(super) fn new(config: ConnLimits, fd_limit: Option<u64>) -> Self {
        let by_fds = fd_limit.map_or(usize::MAX, |l| {
            usize::try_from(l.saturating_sub(RESERVED_FDS).max(1)).unwrap_or(usize::MAX)
        });
        let max_connections = config.max_connections.min(by_fds);
        if max_connections < config.max_connections {
            tracing::info!(
                configured = config.max_connections,
                max_connections,
                "connection cap lowered to the open-file limit"
            );
        }
        Self {
            config,
            max_connections,
            open: AtomicUsize::new(0),
            per_source: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            start: Instant::now(),
            logged: Default::default(),
        }
    }

    /// Admits a connection from `source` (counted until [`Limits::release`]) or says
    /// why not, counting and logging (rate-limited) the refusal.
    pub(super) fn admit(&self, source: IpAddr) -> Result<(), Refusal> {
        let refusal = if self.open.fetch_add(1, Ordering::Relaxed) >= self.max_connections {
            self.open.fetch_sub(1, Ordering::Relaxed);
            Refusal::Total
        } else {
            let mut map = self.per_source.lock().unwrap_or_else(|p| p.into_inner());
            let n = map.entry(source).or_insert(0);
            if (*n as usize) < self.config.max_connections_per_source {
                *n += 1;
                return Ok(());
            }
            drop(map);
            self.open.fetch_sub(1, Ordering::Relaxed);
            Refusal::PerSource
        };
        let (counter, slot, what, cap) = match refusal {
            Refusal::Total => (
                &self.counters.refused_total,
                0,
                "connection refused: the registrar's connection cap (limits.max_connections) is reached",
                self.max_connections,
            ),
            Refusal::PerSource => (
                &self.counters.refused_per_source,
                1,
                "connection refused: this source's connection cap (limits.max_connections_per_source) is reached",
                self.config.max_connections_per_source,
            ),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let (last, since) = &self.logged[slot];
        let suppressed = since.fetch_add(1, Ordering::Relaxed);
        let now = self.start.elapsed().as_secs() + 1;
        let prev = last.load(Ordering::Relaxed);
        if (prev == 0 || now >= prev + LOG_EVERY.as_secs())
            && last
                .compare_exchange(prev, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            since.store(0, Ordering::Relaxed);
            tracing::warn!(%source, cap, refused_since_last_log = suppressed + 1, "{what}");
        }
        Err(refusal)
    }

    /// A connection [`Limits::admit`]ted from `source` is gone.
    pub(super) fn release(&self, source: IpAddr) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        let mut map = self.per_source.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&source) {
            *n -= 1;
            if *n == 0 {
                map.remove(&source);
            }
        }
    }

    /// An accept failed for want of resources.
    pub(super) fn accept_failed(&self) {
        self.counters
            .accept_failures
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A waiting connection was accepted with the spare descriptor and closed.
    pub(super) fn refused_no_descriptors(&self) {
        self.counters
            .refused_no_descriptors
            .fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn closed(&self, why: Closure) {
        let c = &self.counters;
        match why {
            Closure::MessageTimeout => &c.closed_message_timeout,
            Closure::IdleTimeout => &c.closed_idle_timeout,
            Closure::SlowConsumer => &c.closed_slow_consumer,
            Closure::ShardBacklog => &c.closed_shard_backlog,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// A connection's framing broke (`sctp`: an SCTP association's).
    pub(super) fn broken_framing(&self, sctp: bool) {
        let c = &self.counters;
        if sctp {
            &c.broken_framing_sctp
        } else {
            &c.broken_framing_tcp
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    pub(super) fn counters(&self) -> ConnCounters {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ConnCounters {
            open: self.open.load(Ordering::Relaxed) as u64,
            refused_total: get(&c.refused_total),
            refused_per_source: get(&c.refused_per_source),
            accept_failures: get(&c.accept_failures),
            refused_no_descriptors: get(&c.refused_no_descriptors),
            closed_message_timeout: get(&c.closed_message_timeout),
            closed_idle_timeout: get(&c.closed_idle_timeout),
            closed_slow_consumer: get(&c.closed_slow_consumer),
            closed_shard_backlog: get(&c.closed_shard_backlog),
            broken_framing_tcp: get(&c.broken_framing_tcp),
            broken_framing_sctp: get(&c.broken_framing_sctp),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_refuse_and_release_frees() {
        let l = Limits::new(
            ConnLimits {
                max_connections: 3,
                max_connections_per_source: 2,
                ..ConnLimits::default()
            },
            None,
        );
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(l.admit(a), Ok(()));
        assert_eq!(l.admit(a), Ok(()));
        assert_eq!(l.admit(a), Err(Refusal::PerSource));
        assert_eq!(l.admit(b), Ok(()));
        assert_eq!(l.admit(b), Err(Refusal::Total));
        l.release(a);
        assert_eq!(l.admit(b), Ok(()));
        let c = l.counters();
        assert_eq!((c.open, c.refused_total, c.refused_per_source), (3, 1, 1));
    }

    #[test]
    fn the_total_cap_stays_below_the_open_file_limit() {
        let l = Limits::new(ConnLimits::default(), Some(1024));
        assert_eq!(l.max_connections, 1024 - RESERVED_FDS as usize);
    }
}
