//! The registrar appliance's runtime: thread-per-core on io_uring.
//!
//! [`runtime::start`] spawns one thread per shard, pinned to a core, each with its own
//! io_uring ring and its own [`rserpool::registrar::Registrar`]. Shards talk over
//! bounded queues with an eventfd wake-up; every socket operation goes through the ring.
//! All `unsafe` lives in [`net`], each block with a `// SAFETY:` comment.
//! [`metrics`] serves the shards' statistics to Prometheus
//! ([`runtime::Handle::serve_metrics`]).

pub mod config;
pub mod dump;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod runtime;
pub mod service;
pub mod tls;

use std::net::SocketAddr;

/// Where the registrar serves ASAP or ENRP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// Over TCP, each message framed by its own length field (reference §2.4).
    Tcp(SocketAddr),
    /// Over kernel SCTP (one-to-many socket; ASAP is PPID 11, ENRP PPID 12).
    Sctp(SocketAddr),
    /// Over TLS over TCP (rustls), framed as over TCP inside it ([`tls`]).
    Tls(SocketAddr),
}

impl Endpoint {
    pub fn addr(&self) -> SocketAddr {
        match *self {
            Self::Tcp(a) | Self::Sctp(a) | Self::Tls(a) => a,
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(a) => write!(f, "tcp://{a}"),
            Self::Sctp(a) => write!(f, "sctp://{a}"),
            Self::Tls(a) => write!(f, "tls://{a}"),
        }
    }
}

/// Everything the runtime needs, validated.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Number of shards (threads), at least 1.
    pub shards: u16,
    /// Pin shard i to core i (modulo the cores available).
    pub pin_cores: bool,
    /// How shards wait for I/O: sleep in the kernel (default), or busy-poll with a
    /// kernel SQPOLL thread per shard (no system calls while busy; whole cores).
    pub io_mode: net::ring::IoMode,
    /// Listening endpoints; a port of 0 picks a free one (see [`runtime::Handle`]).
    pub asap: Vec<Endpoint>,
    /// The ASAP registrar's settings.
    pub registrar: rserpool::registrar::Config,
    /// Seeds the policies' randomness and the shard routing key.
    pub seed: u64,
    /// UDP multicast group for ASAP_SERVER_ANNOUNCE (RSPLIB: 239.0.0.50:3863); `None`:
    /// no announces. The interval is `registrar.announce_interval`.
    pub announce_group: Option<SocketAddr>,
}

/// Where shard 0 serves ENRP (RFC 5353) to peer registrars; the ENRP settings proper
/// (peers, timers) are `RuntimeConfig::registrar.enrp`. Given to
/// [`runtime::start_with`] beside the [`RuntimeConfig`] (code that builds a
/// `RuntimeConfig` field by field, as the load generator does, stays as it is).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnrpEndpoints {
    /// Listening endpoints (RSPLIB's `-enrp`); a port of 0 picks a free one (see
    /// [`runtime::Handle::enrp_endpoints`]). None: no peer can connect to us.
    pub listen: Vec<Endpoint>,
    /// UDP multicast group for ENRP_PRESENCE (RSPLIB's `-enrpannounce`, 239.0.0.51:9901),
    /// sent from the first ENRP endpoint's port; `None`: peers only by address.
    pub announce_group: Option<SocketAddr>,
}
