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

/// The connection limits an operator configures (`[limits]` in the config file); all
/// can change while running ([`super::Handle::reload`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
    /// The limits in force, each its own atomic: read (never written) by every shard
    /// per message, written only by a reload, so a shard never waits for a lock here.
    live: Live,
    /// The total cap's ceiling from the open-file limit (see [`Limits::new`]).
    by_fds: usize,
    open: AtomicUsize,
    per_source: Mutex<HashMap<IpAddr, u32>>,
    counters: Counters,
    start: Instant,
    /// Seconds since `start` of the last refusal logged, per [`Refusal`], plus one
    /// (0: never), and the refusals since.
    logged: [(AtomicU64, AtomicU64); 2],
}

/// [`ConnLimits`] as atomics; the total cap is the one in force (see [`Limits::new`]).
#[derive(Debug, Default)]
struct Live {
    message_timeout_us: AtomicU64,
    /// 0: none.
    idle_timeout_us: AtomicU64,
    configured_max_connections: AtomicUsize,
    max_connections: AtomicUsize,
    max_connections_per_source: AtomicUsize,
    max_unsent_per_connection: AtomicUsize,
    max_unsent_per_shard: AtomicUsize,
}

impl Limits {
    /// The limits in force: the total cap is lowered to the open-file limit less
    /// [`RESERVED_FDS`] when that is smaller.
    pub(super) fn new(config: ConnLimits, fd_limit: Option<u64>) -> Self {
        let by_fds = fd_limit.map_or(usize::MAX, |l| {
            usize::try_from(l.saturating_sub(RESERVED_FDS).max(1)).unwrap_or(usize::MAX)
        });
        let limits = Self {
            live: Live::default(),
            by_fds,
            open: AtomicUsize::new(0),
            per_source: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            start: Instant::now(),
            logged: Default::default(),
        };
        limits.set(config);
        limits
    }

    /// Puts `config` in force: new connections are admitted under the new caps, and
    /// every shard uses the new timeouts and backlog caps from its next check on.
    /// Connections already open over a lowered cap stay open.
    pub(super) fn set(&self, config: ConnLimits) {
        let max_connections = config.max_connections.min(self.by_fds);
        let before = self.live.configured_max_connections.load(Ordering::Relaxed);
        if max_connections < config.max_connections && config.max_connections != before {
            tracing::info!(
                configured = config.max_connections,
                max_connections,
                "connection cap lowered to the open-file limit"
            );
        }
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let l = &self.live;
        let r = Ordering::Relaxed;
        l.message_timeout_us
            .store(micros(config.message_timeout), r);
        l.idle_timeout_us
            .store(config.idle_timeout.map_or(0, micros), r);
        l.configured_max_connections
            .store(config.max_connections, r);
        l.max_connections.store(max_connections, r);
        l.max_connections_per_source
            .store(config.max_connections_per_source, r);
        l.max_unsent_per_connection
            .store(config.max_unsent_per_connection, r);
        l.max_unsent_per_shard.store(config.max_unsent_per_shard, r);
    }

    /// The limits in force, as configured (the total cap before the open-file limit).
    pub(super) fn config(&self) -> ConnLimits {
        let l = &self.live;
        let r = Ordering::Relaxed;
        ConnLimits {
            message_timeout: Duration::from_micros(l.message_timeout_us.load(r)),
            idle_timeout: match l.idle_timeout_us.load(r) {
                0 => None,
                us => Some(Duration::from_micros(us)),
            },
            max_connections: l.configured_max_connections.load(r),
            max_connections_per_source: l.max_connections_per_source.load(r),
            max_unsent_per_connection: l.max_unsent_per_connection.load(r),
            max_unsent_per_shard: l.max_unsent_per_shard.load(r),
        }
    }

    /// [`ConnLimits::max_unsent_per_connection`] in force (one load: asked per message).
    pub(super) fn max_unsent_per_connection(&self) -> usize {
        self.live.max_unsent_per_connection.load(Ordering::Relaxed)
    }

    /// [`ConnLimits::max_unsent_per_shard`] in force.
    pub(super) fn max_unsent_per_shard(&self) -> usize {
        self.live.max_unsent_per_shard.load(Ordering::Relaxed)
    }

    /// The total cap in force.
    fn max_connections(&self) -> usize {
        self.live.max_connections.load(Ordering::Relaxed)
    }

    /// Admits a connection from `source` (counted until [`Limits::release`]) or says
    /// why not, counting and logging (rate-limited) the refusal.
    pub(super) fn admit(&self, source: IpAddr) -> Result<(), Refusal> {
        let per_source_cap = self.live.max_connections_per_source.load(Ordering::Relaxed);
        let refusal = if self.open.fetch_add(1, Ordering::Relaxed) >= self.max_connections() {
            self.open.fetch_sub(1, Ordering::Relaxed);
            Refusal::Total
        } else {
            let mut map = self.per_source.lock().unwrap_or_else(|p| p.into_inner());
            let n = map.entry(source).or_insert(0);
            if (*n as usize) < per_source_cap {
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
                self.max_connections(),
            ),
            Refusal::PerSource => (
                &self.counters.refused_per_source,
                1,
                "connection refused: this source's connection cap (limits.max_connections_per_source) is reached",
                per_source_cap,
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
        assert_eq!(l.max_connections(), 1024 - RESERVED_FDS as usize);
    }

    #[test]
    fn new_caps_apply_to_the_next_admission() {
        let l = Limits::new(ConnLimits::default(), None);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        assert_eq!(l.admit(a), Ok(()));
        let lowered = ConnLimits {
            max_connections_per_source: 1,
            idle_timeout: None,
            message_timeout: Duration::from_millis(1500),
            ..ConnLimits::default()
        };
        l.set(lowered);
        assert_eq!(l.config(), lowered);
        assert_eq!(l.admit(a), Err(Refusal::PerSource));
        l.set(ConnLimits::default());
        assert_eq!(l.admit(a), Ok(()));
    }
}
