//! The registrar as a sans-IO state machine: one [`Registrar`] per shard, driven by the
//! runtime.
//!
//! Inputs are `handle_*(now, …)`: a connection coming up or going down, an ASAP message
//! received on one, a message from another shard, a timer. Outputs are drained with the
//! `poll_*` methods: transmits, messages to other shards, the next deadline, events for
//! logs and metrics. Nothing here reads a clock, touches a socket or blocks.
//!
//! A shard's `Registrar` composes one type per role:
//! - the connection side (`sessions`): connections, the PEs registered through them
//!   and their keep-alive supervision, with the ASAP server procedures that need only
//!   the shard's own state (`asap`);
//! - the writer (`writer`) of the pools this shard writes: the only code that changes
//!   them, publishing every change to the other shards;
//! - the replica: the shard's full copy of the handlespace, from which it answers
//!   resolutions;
//! - the announcer (`announce`, shard 0 only);
//! - the ENRP server ([`crate::enrp::Enrp`], shard 0 only, when configured), which
//!   reads shard 0's replica and sends the peers' changes to the pools' writers.
//!
//! Each shard counts what it does in its own [`Metrics`] ([`Registrar::metrics`]) and
//! reports what it holds as [`Gauges`]; the runtime copies and merges them when
//! scraped. The one duration the registrar cannot time itself, request received →
//! answer queued on the socket, comes back through [`Registrar::handle_queued`].
//!
//! See [`shard`] for how the shards divide the work.

pub mod access;
mod announce;
mod asap;
mod conn;
mod enrp;
mod metrics;
mod out;
mod rate;
mod reload;
mod sessions;
pub mod shard;
mod supervision;
mod writer;

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

pub use metrics::{
    AnswerMetrics, DETECTION_BOUNDS, Gauges, Histogram, LATENCY_BOUNDS, Metrics, nanos_of,
};
pub use rate::{Limited, RateLimit};
pub use reload::Reloadable;
pub use sessions::REMOVAL_SLICE;
pub use shard::{ConnId, Origin, RemovalReason, Router, ShardId, ShardMsg};

use crate::handlespace::{self, Handlespace};
use crate::ids::{PoolElementId, PoolHandle, RegistrarId};
use crate::wire::{CauseCode, DecodeError, LifeUnit};
use announce::Announcer;
use out::Outputs;
use sessions::Sessions;
use writer::Writer;

/// RSPLIB's hard cap on PEs in one handle resolution response, and ours by default
/// ([`Config::resolution_items_limit`]).
pub const MAX_RESOLUTION_ITEMS: u32 = 128;
/// The highest [`Config::resolution_items_limit`] allowed. Answers also stop short of
/// the 64 KiB message size, whatever the limit.
pub const RESOLUTION_ITEMS_CEILING: u32 = 1024;

/// The registrar's ASAP settings. Defaults follow RSPLIB's registrar where the RFCs
/// give no value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// This registrar's ENRP server ID (non-zero).
    pub id: RegistrarId,
    /// Time from a PE's registration or last acknowledgement to the next keep-alive.
    pub keep_alive_interval: Duration,
    /// How long a keep-alive may go unacknowledged before the PE is removed.
    pub keep_alive_timeout: Duration,
    /// PEs per handle resolution when the request does not ask for a number
    /// (RSPLIB's `MaxHandleResolutionItems`); requests are capped at
    /// [`Config::resolution_items_limit`].
    pub max_resolution_items: u32,
    /// Most PEs in one answer, whatever the request asks for: RSPLIB's 128 by default
    /// ([`MAX_RESOLUTION_ITEMS`]), up to [`RESOLUTION_ITEMS_CEILING`]. Raising it lets a
    /// client see a whole 500-PE pool in one answer (the load generator's failover
    /// scenario does).
    pub resolution_items_limit: u32,
    /// Endpoint-unreachable reports after which a PE is removed (RFC 5352
    /// MAX-BAD-PE-REPORT; RSPLIB 3).
    pub max_bad_pe_reports: u32,
    /// Unit of Registration Life on the wire.
    pub life_unit: LifeUnit,
    /// Remove owned PEs whose registration life ends (RFC 5352 §3.2); RSPLIB relies on
    /// keep-alives alone.
    pub enforce_lifetime: bool,
    /// Shortest registration life honoured (reference §10 D1 safety floor).
    pub min_lifetime: Duration,
    /// Accept loopback addresses in registrations (development and tests); otherwise a
    /// PE must offer an address of wider scope, as RSPLIB's default demands.
    pub allow_loopback: bool,
    /// Send ASAP_SERVER_ANNOUNCE this often (RFC 5352 §3.6; RSPLIB: 1 s); `None`: never.
    pub announce_interval: Option<Duration>,
    /// The ASAP transports announced: the registrar's SCTP and TCP endpoints. The runtime
    /// fills these in from what it bound.
    pub announce_transports: Vec<crate::wire::ServerTransport>,
    /// Handlespace limits and selection settings.
    pub handlespace: handlespace::Config,
    /// ENRP with peer registrars (shard 0 runs it); `None`: this registrar is alone.
    pub enrp: Option<crate::enrp::Config>,
    /// Per-association limit on handle resolutions (RSPLIB's `-maxhrrate`); one over it
    /// is answered with cause 0x000a. `None` (the default, as RSPLIB's): unlimited.
    pub resolution_rate: Option<RateLimit>,
    /// Per-association limit on endpoint-unreachable reports (RSPLIB's `-maxeurate`,
    /// unlimited there); one over it is dropped, as RSPLIB does. Default
    /// [`DEFAULT_UNREACHABLE_RATE`].
    pub unreachable_rate: Option<RateLimit>,
    /// Most bytes of pool element parameters in one handle resolution answer, on top of
    /// [`Config::resolution_items_limit`] (it bites on PEs with many addresses). Default
    /// [`crate::wire::MAX_MESSAGE_LEN`]: whatever fits one message.
    pub resolution_answer_bytes: usize,
    /// Most PEs one association may have registered (or be registering) at once;
    /// beyond it a registration is refused with cause 0x0006 (Lack of Resources), so
    /// one client cannot fill the handlespace. RSPLIB's PEs use one association each.
    pub max_pes_per_association: usize,
    /// Most pools one association may have created and still hold PEs in; beyond it a
    /// registration that would create another is refused with cause 0x0006. Joining
    /// an existing pool is not limited by this (only by
    /// [`Config::max_pes_per_association`]).
    pub max_pools_per_association: usize,
    /// Who may register, resolve, report and peer ([`access`]); default: everyone.
    pub access: access::Rules,
}

/// Default of [`Config::max_pes_per_association`]: a hundredth of the default
/// handlespace, far above what a PE (one) or the load generator's links need.
pub const DEFAULT_MAX_PES_PER_ASSOCIATION: usize = 10_000;
/// Default of [`Config::max_pools_per_association`].
pub const DEFAULT_MAX_POOLS_PER_ASSOCIATION: usize = 1_000;

/// The default [`Config::unreachable_rate`]: 10 reports a second, 50 at once, per
/// association. A client reports a PE once per failure it saw (reference §6.5), so
/// this never bites an honest one, yet bounds what one association costs the writers.
pub const DEFAULT_UNREACHABLE_RATE: RateLimit = RateLimit {
    per_second: 10,
    burst: 50,
};

impl Config {
    /// When the registration life of one of our own PEs, starting at `now`, ends: `None`
    /// when lifetimes are not enforced (RSPLIB relies on keep-alives) or it is infinite.
    pub fn own_expiry(&self, now: Instant, life: crate::wire::RegistrationLife) -> Option<Instant> {
        if self.enforce_lifetime {
            life.deadline(now, self.life_unit, self.min_lifetime)
        } else {
            None
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            id: RegistrarId(1),
            keep_alive_interval: Duration::from_secs(5),
            keep_alive_timeout: Duration::from_secs(5),
            max_resolution_items: 3,
            resolution_items_limit: MAX_RESOLUTION_ITEMS,
            max_bad_pe_reports: 3,
            life_unit: LifeUnit::Milliseconds,
            enforce_lifetime: true,
            min_lifetime: Duration::from_secs(1),
            allow_loopback: false,
            announce_interval: None,
            announce_transports: Vec::new(),
            handlespace: handlespace::Config::default(),
            enrp: None,
            resolution_rate: None,
            unreachable_rate: Some(DEFAULT_UNREACHABLE_RATE),
            resolution_answer_bytes: crate::wire::MAX_MESSAGE_LEN,
            max_pes_per_association: DEFAULT_MAX_PES_PER_ASSOCIATION,
            max_pools_per_association: DEFAULT_MAX_POOLS_PER_ASSOCIATION,
            access: access::Rules::default(),
        }
    }
}

/// The transport a connection uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    Sctp,
    Tcp,
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Sctp => "sctp",
            Self::Tcp => "tcp",
        })
    }
}

/// The protocol a connection speaks, fixed by the endpoint it was accepted on or the
/// [`Transmit::Connect`] that opened it: ASAP with pool elements and users (PPID 11),
/// ENRP with peer registrars (PPID 12).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Asap,
    Enrp,
}

/// What the runtime knows about a new connection or association.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnInfo {
    pub transport: Transport,
    pub protocol: Protocol,
    /// The peer's addresses: all paths of an SCTP association, the one of a TCP
    /// connection.
    pub peer_addrs: Vec<IpAddr>,
    pub peer_port: u16,
    /// This end's addresses on the connection (SCTP: the association's local addresses;
    /// TCP: the local address) and port; ENRP advertises them in Server Information.
    pub local_addrs: Vec<IpAddr>,
    pub local_port: u16,
    /// The identity the peer proved: on a TLS connection with a verified client
    /// certificate, the certificate's subject common name, else its first DNS name.
    /// `None` without TLS or without a client certificate.
    pub identity: Option<String>,
}

impl ConnInfo {
    /// A connection with no local address known (tests, tools).
    pub fn new(
        transport: Transport,
        protocol: Protocol,
        peer_addrs: Vec<IpAddr>,
        peer_port: u16,
    ) -> Self {
        Self {
            transport,
            protocol,
            peer_addrs,
            peer_port,
            local_addrs: Vec::new(),
            local_port: 0,
            identity: None,
        }
    }
}

/// Something for the runtime to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transmit {
    /// One ASAP message (PPID 11 on SCTP; length-framed on TCP).
    Asap {
        conn: ConnId,
        payload: Vec<u8>,
        /// The request this answers, if its service time is measured: the runtime
        /// hands it back with [`Registrar::handle_queued`] once the message is queued.
        served: Option<Served>,
    },
    /// One ENRP message (PPID 12 on SCTP; length-framed on TCP like ASAP).
    Enrp { conn: ConnId, payload: Vec<u8> },
    /// Open a connection (TCP) or association (SCTP) to `addrs` (all addresses of one
    /// peer) at `port`, speaking `protocol`, and call it `conn` (an id from the
    /// registrar's own range, [`ConnId::is_outbound`]). `transports` are tried in order
    /// until one connects; one the runtime does not serve (no kernel SCTP, or no
    /// endpoint of that protocol over it) is skipped. Messages transmitted on `conn`
    /// before it is up wait until it is. The runtime reports the outcome with
    /// [`Registrar::handle_conn_up`] (whose [`ConnInfo::transport`] says which
    /// transport connected) or [`Registrar::handle_conn_down`]; after
    /// `handle_conn_down` the id is never used again.
    Connect {
        conn: ConnId,
        protocol: Protocol,
        transports: Vec<Transport>,
        addrs: Vec<IpAddr>,
        port: u16,
    },
    /// Close a connection (SCTP: shut the association down) once what is queued for it
    /// has been sent; the runtime then reports [`Registrar::handle_conn_down`].
    Close { conn: ConnId },
    /// An ASAP_SERVER_ANNOUNCE for the announce multicast group, sent from a UDP socket
    /// bound to the ASAP SCTP port (RSPLIB reads the port from the UDP source).
    Announce { payload: Vec<u8> },
    /// An ENRP_PRESENCE for the ENRP multicast group (RSPLIB: 239.0.0.51:9901), sent
    /// from a UDP socket bound to the ENRP port.
    EnrpMulticast { payload: Vec<u8> },
}

/// A request whose service time the registrar measures: from `received` (the `now` of
/// the input that carried it, i.e. when the runtime took it off the socket) to the
/// answer being queued for sending, which only the runtime can time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Served {
    pub kind: ServiceKind,
    pub received: Instant,
}

/// Which service-time histogram a [`Served`] request goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceKind {
    HandleResolution,
    Registration,
}

/// Something that happened, for logs and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Registered {
        handle: PoolHandle,
        id: PoolElementId,
        conn: ConnId,
    },
    RegistrationRejected {
        handle: PoolHandle,
        id: PoolElementId,
        cause: CauseCode,
    },
    Removed {
        handle: PoolHandle,
        id: PoolElementId,
        reason: RemovalReason,
    },
    /// A deregistration from a connection that did not register the PE (RFC 5352 §2.2.2).
    SpoofedDeregistration {
        conn: ConnId,
        handle: PoolHandle,
        id: PoolElementId,
    },
    /// A message that could not be decoded.
    Malformed { conn: ConnId, error: DecodeError },
    /// Something ENRP did or saw.
    Enrp(crate::enrp::EnrpEvent),
    /// A writer refused a peer's change (RFC 5353: a peer changes only PEs whose home it
    /// is; the pool rules hold for peers too).
    PeerRefused {
        from: RegistrarId,
        handle: PoolHandle,
        id: PoolElementId,
        why: crate::enrp::Refusal,
        cause: Option<CauseCode>,
    },
    /// A well-formed message a registrar does not expect (e.g. a response).
    Unexpected {
        conn: ConnId,
        kind: crate::wire::AsapType,
    },
    /// A request over its association's rate limit ([`Config::resolution_rate`],
    /// [`Config::unreachable_rate`]).
    RateLimited { conn: ConnId, kind: Limited },
    /// An answer too long for its 16-bit length field was sent without its quotes, or
    /// replaced by an ASAP_ERROR (it echoed a huge Pool Handle).
    AnswerFitted {
        conn: ConnId,
        kind: crate::wire::AsapType,
        fit: crate::wire::Fit,
    },
    /// A registration of a PE another association of this registrar registered, still
    /// alive: refused with cause 0x000a (the PE identifier belongs to its association).
    TakeoverRefused {
        conn: ConnId,
        owner: ConnId,
        handle: PoolHandle,
        id: PoolElementId,
    },
    /// A registration refused by a per-association limit (cause 0x0006).
    LimitReached {
        conn: ConnId,
        limit: AssociationLimit,
        handle: PoolHandle,
        id: PoolElementId,
    },
    /// Enough endpoint-unreachable reports for a PE that answered keep-alives
    /// recently: it is probed with a keep-alive instead of being removed at once.
    Probing {
        handle: PoolHandle,
        id: PoolElementId,
    },
    /// Access control denied a request, an ENRP connection or a presence (logged at
    /// most once a second per shard: `suppressed` denials came since the last one).
    AccessDenied {
        op: access::Op,
        /// The rule's name, or `default`.
        rule: String,
        conn: Option<ConnId>,
        /// The source address where there is no connection (or for ENRP).
        peer: Option<IpAddr>,
        handle: Option<PoolHandle>,
        suppressed: u64,
    },
}

/// A per-association limit ([`Config::max_pes_per_association`],
/// [`Config::max_pools_per_association`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AssociationLimit {
    /// PEs registered through one association.
    Pes,
    /// Pools one association created.
    Pools,
}

impl AssociationLimit {
    /// Every limit, in declaration order.
    pub const ALL: [Self; 2] = [Self::Pes, Self::Pools];

    /// A snake_case name, for metric labels and logs.
    pub fn label(self) -> &'static str {
        match self {
            Self::Pes => "pes_per_association",
            Self::Pools => "pools_per_association",
        }
    }
}

/// One shard of the registrar.
#[derive(Debug)]
pub struct Registrar {
    config: Config,
    /// This shard's full copy of the handlespace; the writer changes the pools this
    /// shard writes in place, the other shards' writers through [`ShardMsg`]s.
    replica: Handlespace,
    sessions: Sessions,
    writer: Writer,
    announcer: Announcer,
    /// Shard 0's ENRP server, when ENRP is configured.
    enrp: Option<crate::enrp::Enrp>,
    /// Barriers out to the other shards for ENRP: token → answers still missing.
    syncs: HashMap<u64, u16>,
    /// Connections this shard opened to adopt PEs, by ASAP transport.
    adopting: HashMap<(Vec<IpAddr>, u16), ConnId>,
    next_outbound: u64,
    out: Outputs,
    /// Per-association rate limits of ASAP requests.
    rates: rate::RateLimiter,
    /// Access control's refused ENRP connections and log limiter.
    gate: access::Gate,
    /// Answers written into the runtime's send buffers, not yet timed.
    unclocked: Unclocked,
    /// [`Registrar::poll_timeout`]'s last answer, while no input since could have
    /// changed it.
    next_timer: Option<Option<Instant>>,
}

/// Resolutions answered straight into a send buffer ([`Registrar::handle_asap_into`])
/// whose service time is recorded when the runtime hands them to the socket
/// ([`Registrar::handle_written`]).
#[derive(Debug, Default)]
struct Unclocked {
    /// When their requests were read (the `now` of the input).
    received: Option<Instant>,
    count: u64,
}

impl Unclocked {
    fn add(&mut self, received: Instant) {
        self.received.get_or_insert(received);
        self.count += 1;
    }
}

impl Registrar {
    /// `seed` drives the handlespace's random policies; `router` must be the same on
    /// every shard.
    pub fn new(config: Config, shard: ShardId, router: Router, seed: u64) -> Self {
        let enrp = config
            .enrp
            .clone()
            .filter(|_| shard == ShardId(0))
            .map(|c| {
                crate::enrp::Enrp::new(
                    config.id,
                    c,
                    config.life_unit,
                    config.min_lifetime,
                    seed ^ 0x656e_7270,
                )
            });
        let mut out = Outputs::new(shard, router);
        if enrp.is_some() {
            out.changes = Some((config.id, Vec::new()));
        }
        out.metrics.access_denied = access::Denials::new(&config.access);
        Self {
            replica: Handlespace::new(config.handlespace.clone(), seed),
            announcer: Announcer::new(&config, shard),
            config,
            sessions: Sessions::default(),
            writer: Writer::default(),
            enrp,
            syncs: HashMap::new(),
            adopting: HashMap::new(),
            next_outbound: ConnId::OUTBOUND,
            out,
            rates: rate::RateLimiter::default(),
            gate: access::Gate::default(),
            unclocked: Unclocked::default(),
            next_timer: None,
        }
    }

    /// Whether this shard keeps the PE alive with keep-alives.
    pub fn supervises(&self, handle: &PoolHandle, id: PoolElementId) -> bool {
        self.sessions.supervision.is_supervised(handle, id)
    }

    /// Shard 0's ENRP server, if ENRP is configured.
    pub fn enrp(&self) -> Option<&crate::enrp::Enrp> {
        self.enrp.as_ref()
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn shard(&self) -> ShardId {
        self.out.shard()
    }

    /// The pool-to-writer map all shards share.
    pub fn router(&self) -> &Router {
        self.out.router()
    }

    /// This shard's replica of the handlespace.
    pub fn handlespace(&self) -> &Handlespace {
        &self.replica
    }

    /// This shard's counters and histograms (a copy, with ENRP's on the ENRP shard).
    pub fn metrics(&self) -> Metrics {
        let mut m = self.out.metrics.clone();
        if let Some(e) = &self.enrp {
            m.enrp.merge(e.metrics());
        }
        m
    }

    /// What this shard holds now: pools and PEs it writes and replicates, connections,
    /// supervised PEs. Cheap (no iteration).
    pub fn gauges(&self) -> Gauges {
        Gauges {
            written_pools: self.writer.pools(),
            written_elements: self.writer.elements(),
            replica_pools: self.replica.pool_count(),
            replica_elements: self.replica.element_count(),
            connections: self.sessions.len(),
            supervised: self.sessions.supervision.len(),
            enrp_peers: self.enrp.as_ref().map_or([0; 4], |e| e.peer_counts()),
        }
    }

    /// The answer to a [`Served`] request (from [`Transmit::Asap`]) was queued for
    /// sending at `now`: records its service time.
    pub fn handle_queued(&mut self, now: Instant, served: Served) {
        let took = now.saturating_duration_since(served.received);
        match served.kind {
            ServiceKind::HandleResolution => self.out.metrics.handle_resolution.record(took),
            ServiceKind::Registration => self.out.metrics.registration.record(took),
        }
    }

    pub fn handle_conn_up(&mut self, now: Instant, conn: ConnId, info: ConnInfo) {
        self.next_timer = None;
        if info.protocol == Protocol::Enrp && self.refuse_enrp_conn(now, conn, &info) {
            return self.drain_local(now);
        }
        let grant = self.grant(&info);
        match (&mut self.enrp, info.protocol) {
            (Some(enrp), Protocol::Enrp) => enrp.on_conn_up(conn, info, &self.replica),
            // ENRP is off: an ENRP connection has nobody to talk to.
            (None, Protocol::Enrp) => self.out.transmits.push_back(Transmit::Close { conn }),
            (_, Protocol::Asap) => self.sessions.up(conn, info),
        }
        if let Some(grant) = grant {
            self.sessions.set_grant(conn, grant);
        }
        self.drain_local(now);
    }

    /// The connection closed or the association is lost: every PE registered through it
    /// is removed (RFC 5352 §3.5; RSPLIB does the same).
    pub fn handle_conn_down(&mut self, now: Instant, conn: ConnId) {
        self.next_timer = None;
        self.gate.forget(conn);
        match &mut self.enrp {
            Some(enrp) if enrp.owns(conn) => enrp.on_conn_down(now, conn),
            _ => {
                self.adopting.retain(|_, c| *c != conn);
                self.rates.forget(conn);
                self.on_conn_down(now, conn);
            }
        }
        self.drain_local(now);
    }

    /// One ASAP message received on `conn`.
    pub fn handle_asap(&mut self, now: Instant, conn: ConnId, bytes: &[u8]) {
        self.next_timer = None;
        self.on_asap(now, conn, bytes, None);
        self.drain_local(now);
    }

    /// [`Registrar::handle_asap`] for a runtime that lends `conn`'s send buffer: a
    /// positive answer to a plain HANDLE_RESOLUTION (the request that matters most) is
    /// appended to `tx`, framed and ready to send, instead of being queued for
    /// [`Registrar::poll_transmit`]; everything else is queued as usual. Only while
    /// nothing is queued, so that `conn`'s answers keep their order. Its service time
    /// is recorded by [`Registrar::handle_written`], which the runtime calls once it
    /// has handed `tx` to the socket.
    pub fn handle_asap_into(&mut self, now: Instant, conn: ConnId, bytes: &[u8], tx: &mut Vec<u8>) {
        let direct = self.out.transmits.is_empty().then_some(tx);
        if !self.on_asap(now, conn, bytes, direct) {
            self.next_timer = None;
            self.drain_local(now);
        }
    }

    /// Whether answers written by [`Registrar::handle_asap_into`] wait for
    /// [`Registrar::handle_written`].
    pub fn has_unclocked(&self) -> bool {
        self.unclocked.count > 0
    }

    /// The answers [`Registrar::handle_asap_into`] wrote since the last call were handed
    /// to their sockets at `now`: records their service times.
    pub fn handle_written(&mut self, now: Instant) {
        if let Some(received) = self.unclocked.received {
            self.handle_written_after_nanos(nanos_of(now.saturating_duration_since(received)));
        }
    }

    /// [`Registrar::handle_written`] for a runtime that measured the time itself (with
    /// a cheaper clock): the answers written since the last call took `nanos` from
    /// their request's input to their send.
    pub fn handle_written_after_nanos(&mut self, nanos: u64) {
        let Unclocked { count, .. } = std::mem::take(&mut self.unclocked);
        if count > 0 {
            self.out
                .metrics
                .handle_resolution
                .record_nanos_n(nanos, count);
        }
    }

    /// One ENRP message received on `conn` (a connection whose [`ConnInfo::protocol`] is
    /// [`Protocol::Enrp`]).
    pub fn handle_enrp(&mut self, now: Instant, conn: ConnId, bytes: &[u8]) {
        self.next_timer = None;
        if let Some(enrp) = &mut self.enrp
            && !self.gate.refused(conn)
        {
            enrp.on_message(now, conn, bytes, &self.replica);
        }
        self.drain_local(now);
    }

    /// One ENRP message received on the ENRP multicast group from `from` (the UDP
    /// source address and port).
    pub fn handle_enrp_multicast(
        &mut self,
        now: Instant,
        from: std::net::SocketAddr,
        bytes: &[u8],
    ) {
        self.next_timer = None;
        if self.enrp.is_some() && self.refuse_presence(now, from.ip()) {
            return;
        }
        if let Some(enrp) = &mut self.enrp {
            enrp.on_multicast(now, from, bytes, &self.replica);
        }
        self.drain_local(now);
    }

    /// A message from another shard.
    pub fn handle_shard(&mut self, now: Instant, msg: ShardMsg) {
        self.next_timer = None;
        self.on_shard(now, msg);
        self.drain_local(now);
    }

    /// Timers: keep-alives to send, acknowledgements overdue, registration lives ended,
    /// announces; and the next slice of a lost connection's PEs to remove. The runtime calls it once when the shard starts, then whenever
    /// [`Registrar::poll_timeout`] is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.next_timer = None;
        self.on_drain(now);
        self.on_keep_alive_timers(now);
        self.writer.expire(&mut self.replica, &mut self.out, now);
        self.announcer.on_timeout(now, &self.config, &mut self.out);
        if let Some(enrp) = &mut self.enrp
            && enrp.next_timeout().is_none_or(|t| t <= now)
        {
            enrp.on_timeout(now, &self.replica);
        }
        self.drain_local(now);
    }

    /// Whether anything waits for [`Registrar::poll_transmit`],
    /// [`Registrar::poll_shard`] or [`Registrar::poll_event`].
    pub fn has_output(&self) -> bool {
        !(self.out.transmits.is_empty()
            && self.out.to_shards.is_empty()
            && self.out.events.is_empty())
    }

    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.transmits.pop_front()
    }

    /// Hands back the buffer of a message from [`Registrar::poll_transmit`] once its
    /// bytes are sent or copied: later answers are encoded into it instead of a new
    /// allocation.
    pub fn recycle(&mut self, buf: Vec<u8>) {
        self.out.recycle(buf);
    }

    #[must_use]
    pub fn poll_shard(&mut self) -> Option<(ShardId, ShardMsg)> {
        self.out.to_shards.pop_front()
    }

    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.out.events.pop_front()
    }

    /// When [`Registrar::handle_timeout`] wants to run next. Computed again only after
    /// an input that may have changed it (a resolution changes none).
    #[must_use]
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        if let Some(t) = self.next_timer {
            return t;
        }
        let t = self.next_timeout();
        self.next_timer = Some(t);
        t
    }

    /// Whether [`Registrar::poll_timeout`] would answer as it did last time: no input
    /// since could have moved the next timer (a runtime that keeps the last answer
    /// need not ask again).
    #[inline]
    pub fn timeout_unchanged(&self) -> bool {
        self.next_timer.is_some()
    }

    fn next_timeout(&self) -> Option<Instant> {
        fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        }
        let mut t = earliest(self.sessions.supervision.next(), self.replica.next_expiry());
        t = earliest(t, self.announcer.next());
        // The PEs of a lost connection still to remove: due at once.
        t = earliest(t, self.sessions.next_drain());
        if let Some(e) = &self.enrp {
            t = earliest(t, e.next_timeout());
        }
        t
    }

    /// Routes a shard message to the role it is for.
    fn on_shard(&mut self, now: Instant, msg: ShardMsg) {
        match msg {
            ShardMsg::Register {
                origin,
                handle,
                element,
                expires,
                received,
                identity,
            } => self.writer.register(
                &mut self.replica,
                &mut self.out,
                origin,
                handle,
                element,
                expires,
                received,
                identity,
            ),
            ShardMsg::Registered {
                origin,
                handle,
                id,
                result,
                received,
            } => {
                let served = Served {
                    kind: ServiceKind::Registration,
                    received,
                };
                if let Some((_, conn)) = origin.local() {
                    self.on_registered(now, served, conn, handle, id, result);
                }
            }
            ShardMsg::Remove {
                origin,
                handle,
                id,
                reason,
            } => self
                .writer
                .remove(&mut self.replica, &mut self.out, origin, handle, id, reason),
            ShardMsg::Removed {
                origin,
                handle,
                id,
                reason,
            } => {
                if let Some((_, conn)) = origin.local() {
                    self.on_removed(now, conn, handle, id, reason);
                }
            }
            ShardMsg::Unreachable {
                handle,
                id,
                reporter,
            } => self.writer.unreachable(
                &mut self.replica,
                &mut self.out,
                self.config.max_bad_pe_reports,
                reporter,
                &handle,
                id,
            ),
            ShardMsg::Probe { origin, handle, id } => {
                if let Some((_, conn)) = origin.local() {
                    self.on_probe(now, conn, handle, id);
                }
            }
            ShardMsg::ProbeAnswered { origin, handle, id } => {
                self.writer.probe_answered(origin, &handle, id);
            }
            // Replica updates: the writer checked them; a replica only mirrors them.
            ShardMsg::Upsert { handle, record } => {
                self.out.changed(&handle, &record, false);
                let _ = self.replica.insert(&handle, record, None);
            }
            ShardMsg::Delete { handle, id } => {
                if let Some(e) = self.replica.deregister(handle.as_bytes(), id) {
                    self.out.changed(&handle, e.record(), true);
                }
            }
            ShardMsg::Peer(write) => {
                let me = self.config.id;
                let winner = self
                    .config
                    .enrp
                    .as_ref()
                    .map(|e| e.takeover_winner)
                    .unwrap_or_default();
                self.writer
                    .peer(&mut self.replica, &mut self.out, now, me, winner, write);
            }
            ShardMsg::Adopt {
                origin,
                handle,
                element,
                from,
                expires,
            } => {
                let me = self.config.id;
                self.writer.adopt(
                    &mut self.replica,
                    &mut self.out,
                    me,
                    origin,
                    handle,
                    element,
                    from,
                    expires,
                );
            }
            ShardMsg::Sync { token, reply_to } => {
                self.out.send_shard(reply_to, ShardMsg::Synced { token });
            }
            ShardMsg::Synced { token } => {
                if let Some(left) = self.syncs.get_mut(&token) {
                    *left -= 1;
                    if *left == 0 {
                        self.syncs.remove(&token);
                        if let Some(enrp) = &mut self.enrp {
                            enrp.on_synced(now, token, &self.replica);
                        }
                    }
                }
            }
        }
    }

    fn drain_local(&mut self, now: Instant) {
        // Bounded: each local message produces at most a few more, none of them local
        // loops (register → registered, remove → removed); ENRP's actions produce shard
        // messages and transmits, and ENRP hears of the changes they made.
        loop {
            while let Some(msg) = self.out.local.pop_front() {
                self.on_shard(now, msg);
            }
            if !self.drain_enrp(now) {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests;
