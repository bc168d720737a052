//! The ENRP server (RFC 5353): the registrars of one operational scope keep one
//! handlespace.
//!
//! [`Enrp`] is a sans-IO state machine that one shard of a registrar runs (shard 0). It
//! reads that shard's replica of the handlespace, which holds every PE of the scope, and
//! changes nothing itself: what peers tell it becomes [`PeerWrite`]s for the pools'
//! writer shards, which check them against the pools' current state and publish them
//! like any other change. In the other direction, every change of the replica that
//! leaves a PE with us as its home becomes an ENRP_HANDLE_UPDATE to every peer
//! ([`Enrp::on_change`]), so the updates sent, the table served and the checksum
//! advertised all come from one source in one order.
//!
//! What it does (RFC 5353 §3, with RSPLIB's behaviour where the two differ; see
//! `enrp::Config` for the timers):
//! - **Peers** come from the configuration (IDs learned from their first PRESENCE),
//!   from ENRP_PRESENCE (unicast or multicast) and from ENRP_LIST_RESPONSE.
//! - **Joining**: the first peer heard while starting is the mentor; its peer list and
//!   whole handle table (in chunks with "more to send") are downloaded, and start-up
//!   ends with the last chunk, or alone after the mentor-discovery time.
//! - **Heartbeats**: an ENRP_PRESENCE with our PE checksum to every peer each cycle; a
//!   peer silent for MAX-TIME-LAST-HEARD is probed, and one that does not answer within
//!   MAX-TIME-NO-RESPONSE is dead.
//! - **Audit**: a PRESENCE whose checksum differs from our view of that peer's PEs
//!   (compared once every shard has applied what the peer sent before it) starts a
//!   download of the peer's own PEs; ours of it that it no longer lists are purged.
//! - **Takeover** of a dead peer that still has PEs: INIT_TAKEOVER to all, the
//!   acknowledgements of every live peer (or the expiry), then TAKEOVER_SERVER and the
//!   adoption of each PE: a keep-alive with the home flag over a new association or
//!   connection to its ASAP transport, then supervision as our own.
//! - **Handle updates** from peers change only PEs whose home the sender is.

mod config;
pub mod dump;
mod metrics;
mod peers;
mod presence;
mod sync;
mod table;
mod takeover;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

pub use config::{Config, PeerAddress, TABLE_CHUNK_CEILING, TakeoverWinner};
pub use metrics::{EnrpMetrics, Refusal};
pub use peers::PeerState;

use crate::handlespace::Handlespace;
use crate::ids::{PoolElementId, PoolHandle, RegistrarId};
use crate::registrar::{ConnId, ConnInfo, Transport};
use crate::rng::Rng;
use crate::wire::{
    CauseCode, DecodeError, EnrpIds, EnrpMessage, EnrpType, LifeUnit, OperationError, PoolElement,
    SctpTransport, UpdateAction,
};
use peers::{Link, Peer, Reach, Static};
use table::Cursor;

/// Where a peer's PE comes from, which decides what it may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// ENRP_HANDLE_UPDATE ADD_PE: the PE (re-)registered at the sender, its home. If
    /// it was ours, it moved there.
    Update,
    /// An audit's table of the sender's own PEs (W=1). One of ours that the sender
    /// claims too (both took it over in a partition, say) goes to the tie-break winner
    /// ([`TakeoverWinner`]), the same on both sides, so exactly one keeps it.
    Audit,
    /// A mentor's whole table (W=0) while joining: any home but ours, and never a PE
    /// we hold as ours.
    Mentor,
}

/// A change of the pools, for a pool's writer shard to apply (and check) on behalf of a
/// peer registrar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerWrite {
    /// A PE as `from` describes it. Except from a mentor, its home must be `from`.
    Update {
        from: RegistrarId,
        handle: PoolHandle,
        element: PoolElement,
        expires: Option<Instant>,
        source: Source,
        /// When the ENRP shard took it off the connection.
        received: Instant,
    },
    /// ENRP_HANDLE_UPDATE DEL_PE (`purge` false), or a PE an audit of `from` found
    /// gone (`purge` true). Applied only while the PE's home is `from`.
    Remove {
        from: RegistrarId,
        handle: PoolHandle,
        id: PoolElementId,
        purge: bool,
    },
    /// ENRP_TAKEOVER_SERVER: `to` took over the PEs of `from`.
    Rehome {
        from: RegistrarId,
        to: RegistrarId,
        handle: PoolHandle,
        id: PoolElementId,
    },
}

impl PeerWrite {
    pub fn handle(&self) -> &PoolHandle {
        match self {
            Self::Update { handle, .. }
            | Self::Remove { handle, .. }
            | Self::Rehome { handle, .. } => handle,
        }
    }
}

/// What the ENRP machine asks of the registrar around it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// One encoded ENRP message for a connection.
    Send { conn: ConnId, payload: Vec<u8> },
    /// Open an ENRP connection to a peer.
    Connect {
        conn: ConnId,
        transport: Transport,
        addrs: Vec<IpAddr>,
        port: u16,
    },
    /// Close an ENRP connection.
    Close { conn: ConnId },
    /// An ENRP_PRESENCE for the multicast group.
    Multicast { payload: Vec<u8> },
    /// A change for the pool's writer.
    Write(PeerWrite),
    /// Takeover: make this PE ours, reach it at its ASAP transport with a keep-alive
    /// whose home flag is set, and supervise it, unless its home is no longer `from`.
    /// `from` is our own ID when we reclaim a PE of our previous life (a restart with
    /// the same ID finds its PEs in the mentor's table).
    Adopt {
        handle: PoolHandle,
        element: PoolElement,
        from: RegistrarId,
        asap: SctpTransport,
    },
    /// Call [`Enrp::on_synced`] with `token` once every shard has handled what this
    /// shard sent it before (so the replica has every peer write issued so far).
    Sync { token: u64 },
}

/// Something that happened, for logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnrpEvent {
    PeerLearned {
        id: RegistrarId,
        conn: Option<ConnId>,
    },
    PeerDead {
        id: RegistrarId,
        pes: usize,
    },
    PeerRemoved {
        id: RegistrarId,
    },
    MentorChosen {
        id: RegistrarId,
    },
    /// Start-up ended: synchronised with `mentor`, or alone.
    Synchronised {
        mentor: Option<RegistrarId>,
    },
    AuditStarted {
        peer: RegistrarId,
        ours: u16,
        theirs: u16,
    },
    AuditDone {
        peer: RegistrarId,
        received: usize,
        purged: usize,
    },
    AuditAbandoned {
        peer: RegistrarId,
    },
    TakeoverStarted {
        target: RegistrarId,
        waiting: usize,
    },
    TakeoverCompleted {
        target: RegistrarId,
        adopted: usize,
        unanswered: usize,
    },
    TakeoverAborted {
        target: RegistrarId,
        why: &'static str,
    },
    /// A message we refused (logged; the counters say how many).
    Refused {
        conn: Option<ConnId>,
        sender: RegistrarId,
        why: Refusal,
    },
    Malformed {
        conn: Option<ConnId>,
        error: DecodeError,
    },
    /// An ENRP_ERROR from a peer.
    ErrorReceived {
        sender: RegistrarId,
        causes: Vec<CauseCode>,
    },
    /// A message too long for its 16-bit length field, not sent (a handle update of a
    /// PE whose pool handle is nearly 64 KiB, which `max_pool_handle_len` allows).
    Oversized {
        conn: ConnId,
        kind: EnrpType,
    },
}

/// A peer as tools and gauges see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerView {
    pub id: RegistrarId,
    pub state: PeerState,
    pub address: Option<SocketAddr>,
    pub transport: Option<Transport>,
}

/// The phase after start (RFC 5353 §3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Not started: the first timer call starts it.
    Idle,
    /// Looking for a mentor until then.
    Startup {
        until: Instant,
        mentor: Option<RegistrarId>,
    },
    Normal,
}

/// Our takeover of a dead peer, waiting for acknowledgements.
#[derive(Debug)]
struct Takeover {
    waiting: HashSet<RegistrarId>,
    deadline: Instant,
}

/// How long a handle table cursor lives without a follow-up request.
const CURSOR_IDLE: Duration = Duration::from_secs(30);
/// First retry of a lost connection to a configured peer; doubles up to the heartbeat.
const RECONNECT_FIRST: Duration = Duration::from_millis(250);

/// The ENRP server of one registrar.
#[derive(Debug)]
pub struct Enrp {
    id: RegistrarId,
    config: Config,
    life_unit: LifeUnit,
    min_lifetime: Duration,
    rng: Rng,
    phase: Phase,
    peers: BTreeMap<RegistrarId, Peer>,
    statics: Vec<Static>,
    links: HashMap<ConnId, Link>,
    next_conn: u64,
    /// Handle table downloads we serve, by requester.
    cursors: HashMap<RegistrarId, Cursor>,
    /// Checksum comparisons waiting for the shards: token → (peer, its checksum).
    compares: HashMap<u64, (RegistrarId, u16)>,
    next_token: u64,
    next_heartbeat: Option<Instant>,
    takeovers: BTreeMap<RegistrarId, Takeover>,
    actions: VecDeque<Action>,
    events: VecDeque<EnrpEvent>,
    metrics: EnrpMetrics,
}

/// The first connection id ENRP uses for connections it opens; sessions' outbound
/// connections count from [`ConnId::OUTBOUND`].
const ENRP_CONN_BASE: u64 = ConnId::OUTBOUND + (1 << 40);

impl Enrp {
    /// `life_unit` and `min_lifetime` turn a peer PE's Registration Life into its
    /// expiry (RSPLIB: milliseconds); `seed` jitters the heartbeat.
    pub fn new(
        id: RegistrarId,
        config: Config,
        life_unit: LifeUnit,
        min_lifetime: Duration,
        seed: u64,
    ) -> Self {
        let statics = config
            .peers
            .iter()
            .map(|&address| Static {
                address,
                id: None,
                link: None,
                retry_at: None,
                backoff: RECONNECT_FIRST,
            })
            .collect();
        Self {
            id,
            config,
            life_unit,
            min_lifetime,
            rng: Rng::new(seed),
            phase: Phase::Idle,
            peers: BTreeMap::new(),
            statics,
            links: HashMap::new(),
            next_conn: ENRP_CONN_BASE,
            cursors: HashMap::new(),
            compares: HashMap::new(),
            next_token: 1,
            next_heartbeat: None,
            takeovers: BTreeMap::new(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
            metrics: EnrpMetrics::default(),
        }
    }

    pub fn id(&self) -> RegistrarId {
        self.id
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn metrics(&self) -> &EnrpMetrics {
        &self.metrics
    }

    /// Whether start-up (the mentor download) is over.
    pub fn is_synchronised(&self) -> bool {
        self.phase == Phase::Normal
    }

    /// Every peer we know, and the configured ones not heard from yet.
    pub fn peers(&self) -> Vec<PeerView> {
        let mut out: Vec<PeerView> = self
            .peers
            .values()
            .map(|p| PeerView {
                id: p.id,
                state: p.state(),
                address: p
                    .reach
                    .as_ref()
                    .and_then(|r| r.addrs.first().map(|a| SocketAddr::new(*a, r.port))),
                transport: p.reach.as_ref().map(|r| r.transport),
            })
            .collect();
        out.extend(
            self.statics
                .iter()
                .filter(|s| s.id.is_none())
                .map(|s| PeerView {
                    id: RegistrarId::NONE,
                    state: PeerState::Unidentified,
                    address: Some(s.address.addr),
                    transport: Some(s.address.transport),
                }),
        );
        out
    }

    /// Peers by state, in [`PeerState::ALL`] order (cheap: no allocation).
    pub fn peer_counts(&self) -> [usize; 4] {
        let mut n = [0; 4];
        for p in self.peers.values() {
            n[p.state() as usize] += 1;
        }
        n[PeerState::Unidentified as usize] =
            self.statics.iter().filter(|s| s.id.is_none()).count();
        n
    }

    /// Whether `conn` is one of ENRP's connections.
    pub fn owns(&self, conn: ConnId) -> bool {
        self.links.contains_key(&conn)
    }

    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    #[must_use]
    pub fn poll_event(&mut self) -> Option<EnrpEvent> {
        self.events.pop_front()
    }

    // ---- inputs -------------------------------------------------------------------

    /// An ENRP connection came up: one accepted from a peer, or one we opened.
    pub fn on_conn_up(&mut self, conn: ConnId, info: ConnInfo, hs: &Handlespace) {
        let link = self.links.entry(conn).or_insert(Link {
            peer: None,
            info: None,
            outbound: false,
        });
        link.info = Some(info);
        if !link.outbound {
            return;
        }
        // Ours: introduce ourselves at once (RSPLIB stays silent for its 5 s start-up;
        // being heard first lets the peer become our mentor in milliseconds).
        let known = link.peer;
        let reply = known.is_none_or(|p| self.peers.get(&p).is_none_or(|p| p.probe.is_some()));
        self.send_presence(conn, known.unwrap_or_default(), reply, hs);
    }

    /// An ENRP connection closed or failed.
    pub fn on_conn_down(&mut self, now: Instant, conn: ConnId) {
        let Some(link) = self.links.remove(&conn) else {
            return;
        };
        for s in &mut self.statics {
            if s.link == Some(conn) {
                s.link = None;
                s.retry_at = Some(now + s.backoff);
                s.backoff = (s.backoff * 2).min(self.config.heartbeat);
            }
        }
        if let Some(id) = link.peer
            && let Some(p) = self.peers.get_mut(&id)
        {
            if p.link == Some(conn) {
                p.link = None;
            }
            if p.download.as_ref().is_some_and(|d| d.link == conn) {
                self.abandon_download(id);
            }
        }
    }

    /// One ENRP message received on `conn`.
    pub fn on_message(&mut self, now: Instant, conn: ConnId, bytes: &[u8], hs: &Handlespace) {
        // An accepted connection the runtime reported without conn_up: adopt it.
        self.links.entry(conn).or_insert(Link {
            peer: None,
            info: None,
            outbound: false,
        });
        let decoded = match EnrpMessage::decode(bytes) {
            Ok(d) => d,
            Err(error) => return self.malformed(Some(conn), bytes, error),
        };
        // RFC 5354 §3, bounded so that the ERROR fits (see `wire::quote`).
        let unrecognized = decoded.unrecognized_error(bytes);
        let message = decoded.message;
        self.metrics.on_received(message.kind());
        let ids = message.ids();
        if ids.sender == self.id || ids.sender == RegistrarId::NONE {
            // Our own echo, or a sender that cannot be a peer (RFC 5353 §2.1).
            return;
        }
        // One connection, one peer: a message claiming another sender is refused.
        let link = self.links.get_mut(&conn).map(|l| &mut l.peer);
        match link {
            Some(Some(bound)) if *bound != ids.sender => {
                return self.refuse(Some(conn), ids.sender, Refusal::WrongSender);
            }
            Some(slot @ None) => *slot = Some(ids.sender),
            _ => {}
        }
        if let Some(error) = unrecognized
            && message.kind() != EnrpType::ERROR
        {
            let ids = self.ids_to(ids.sender);
            self.send(conn, &EnrpMessage::Error { ids, error });
        }
        // Any message from a known peer is a sign of life (RFC 5353 §3.4.2).
        if let Some(p) = self.peers.get_mut(&ids.sender) {
            p.last_heard = now;
            p.probe = None;
            if p.link.is_none() {
                p.link = Some(conn);
            }
        }
        self.dispatch(now, Some(conn), message, hs);
    }

    /// One ENRP message from the multicast group; only PRESENCE is taken there (as
    /// RSPLIB), its address from the UDP source.
    pub fn on_multicast(&mut self, now: Instant, from: SocketAddr, bytes: &[u8], hs: &Handlespace) {
        let Ok(decoded) = EnrpMessage::decode(bytes) else {
            self.metrics.malformed += 1;
            return;
        };
        let EnrpMessage::Presence {
            ids,
            reply_required,
            // Audits run only over connections (as RSPLIB's).
            checksum: _,
            info: Some(info),
        } = decoded.message
        else {
            return;
        };
        self.metrics.on_received(EnrpType::PRESENCE);
        if ids.sender == self.id || ids.sender == RegistrarId::NONE || info.server_id != ids.sender
        {
            return;
        }
        let Some(reach) = Reach::from_info(&info, &[from.ip()]) else {
            return;
        };
        self.on_presence(now, None, ids.sender, reply_required, None, Some(reach), hs);
    }

    /// Timers: start-up, heartbeats, liveness, downloads, takeovers, reconnects.
    pub fn on_timeout(&mut self, now: Instant, hs: &Handlespace) {
        if self.phase == Phase::Idle {
            self.start(now, hs);
        }
        if let Phase::Startup { until, .. } = self.phase
            && now >= until
        {
            self.end_startup(None);
        }
        for i in 0..self.statics.len() {
            if self.statics[i].link.is_none() && self.statics[i].retry_at.is_some_and(|t| t <= now)
            {
                self.connect_static(i);
            }
        }
        if self.next_heartbeat.is_some_and(|t| t <= now) {
            self.heartbeat(now, hs);
        }
        self.check_peers(now, hs);
        let expired: Vec<RegistrarId> = self
            .takeovers
            .iter()
            .filter(|(_, t)| t.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for target in expired {
            // Silence is consent: a peer that did not acknowledge within the expiry is
            // unreachable from here (RSPLIB drops the takeover instead, which leaves the
            // PEs unsupervised until they expire).
            self.complete_takeover(target, hs);
        }
        self.cursors.retain(|_, c| now < c.touched + CURSOR_IDLE);
    }

    /// When [`Enrp::on_timeout`] wants to run next (`None` before the first call).
    pub fn next_timeout(&self) -> Option<Instant> {
        if self.phase == Phase::Idle {
            return None;
        }
        let mut next: Vec<Instant> = Vec::new();
        if let Phase::Startup { until, .. } = self.phase {
            next.push(until);
        }
        next.extend(self.next_heartbeat);
        next.extend(
            self.statics
                .iter()
                .filter(|s| s.link.is_none())
                .filter_map(|s| s.retry_at),
        );
        for p in self.peers.values() {
            if let Some(d) = &p.download {
                next.push(d.deadline);
            }
            match (p.dead_since, p.probe) {
                // While our takeover runs, its own deadline is the one that matters.
                (Some(_), _) if self.takeovers.contains_key(&p.id) => {}
                (Some(since), _) => next.push(since + self.config.takeover_expiry * 2),
                (None, Some(deadline)) => next.push(deadline),
                (None, None) => next.push(p.last_heard + self.config.max_time_last_heard),
            }
        }
        next.extend(self.takeovers.values().map(|t| t.deadline));
        next.extend(self.cursors.values().map(|c| c.touched + CURSOR_IDLE));
        next.into_iter().min()
    }

    /// A change of the replica this machine reads: a PE whose home is us was added or
    /// updated (`deleted` false) or removed. Becomes ADD_PE / DEL_PE to every peer
    /// (RFC 5353 §3.3.1).
    pub fn on_change(&mut self, handle: &PoolHandle, element: &PoolElement, deleted: bool) {
        if element.home != self.id {
            return;
        }
        let action = if deleted {
            UpdateAction::DEL_PE
        } else {
            UpdateAction::ADD_PE
        };
        for (receiver, conn) in self.recipients() {
            let msg = EnrpMessage::HandleUpdate {
                ids: EnrpIds {
                    sender: self.id,
                    receiver,
                },
                takeover_suggested: false,
                action,
                handle: handle.clone(),
                element: element.clone(),
            };
            self.send(conn, &msg);
            self.metrics.updates_sent += 1;
        }
    }

    pub(super) fn ids_to(&self, receiver: RegistrarId) -> EnrpIds {
        EnrpIds {
            sender: self.id,
            receiver,
        }
    }

    pub(super) fn send(&mut self, conn: ConnId, msg: &EnrpMessage) {
        let mut payload = Vec::with_capacity(64);
        // Quotes (`wire::quote`) and table chunks are bounded; only a handle update with
        // a handle near 64 KiB can still overflow: never sent with a lying length.
        if msg.try_encode(&mut payload).is_err() {
            let kind = msg.kind();
            self.events.push_back(EnrpEvent::Oversized { conn, kind });
            return;
        }
        self.metrics.on_sent(&payload);
        self.actions.push_back(Action::Send { conn, payload });
    }

    // ---- messages --------------------------------------------------------------------

    pub(super) fn dispatch(
        &mut self,
        now: Instant,
        conn: Option<ConnId>,
        m: EnrpMessage,
        hs: &Handlespace,
    ) {
        let sender = m.ids().sender;
        match m {
            EnrpMessage::Presence {
                reply_required,
                checksum,
                info,
                ..
            } => {
                let seen: Vec<IpAddr> = conn
                    .and_then(|c| self.links.get(&c))
                    .and_then(|l| l.info.as_ref())
                    .map(|i| i.peer_addrs.clone())
                    .unwrap_or_default();
                let reach = match &info {
                    // RSPLIB would crash on a mismatch (§7 Q11); we ignore the info.
                    Some(i) if i.server_id == sender => Reach::from_info(i, &seen),
                    _ => None,
                };
                self.on_presence(now, conn, sender, reply_required, checksum, reach, hs);
            }
            EnrpMessage::ListRequest { .. } => {
                let Some(conn) = conn else { return };
                // RSPLIB answers even while starting, with every peer it knows.
                let servers = self
                    .peers
                    .values()
                    .filter(|p| p.is_live())
                    .filter_map(|p| p.reach.as_ref().map(|r| r.to_server_information(p.id)))
                    .collect();
                let msg = EnrpMessage::ListResponse {
                    ids: self.ids_to(sender),
                    reject: false,
                    servers,
                };
                self.send(conn, &msg);
            }
            EnrpMessage::ListResponse {
                reject, servers, ..
            } => {
                if reject {
                    return;
                }
                for info in servers {
                    self.learn_listed(now, &info, hs);
                }
            }
            EnrpMessage::HandleTableRequest { owned_only, .. } => {
                let Some(conn) = conn else { return };
                self.serve_table(now, conn, sender, owned_only, hs);
            }
            EnrpMessage::HandleTableResponse {
                reject,
                more,
                entries,
                ..
            } => {
                let Some(conn) = conn else { return };
                self.on_table(now, conn, sender, reject, more, entries, hs);
            }
            EnrpMessage::HandleUpdate {
                action,
                handle,
                element,
                ..
            } => self.on_update(now, conn, sender, action, handle, element),
            EnrpMessage::InitTakeover { target, .. } => {
                self.on_init_takeover(now, conn, sender, target, hs);
            }
            EnrpMessage::InitTakeoverAck { target, .. } => {
                let done = match self.takeovers.get_mut(&target) {
                    Some(t) => {
                        t.waiting.remove(&sender);
                        t.waiting.is_empty()
                    }
                    None => false,
                };
                if done {
                    self.complete_takeover(target, hs);
                }
            }
            EnrpMessage::TakeoverServer { target, .. } => {
                self.on_takeover_server(sender, target, hs);
            }
            EnrpMessage::Error { error, .. } => {
                // Never answered (RFC 5353 §3.7); RSPLIB ignores them too.
                let causes = error.causes.iter().map(|c| c.code).collect();
                self.events
                    .push_back(EnrpEvent::ErrorReceived { sender, causes });
            }
        }
    }

    // ---- errors ------------------------------------------------------------------------

    pub(super) fn refuse(&mut self, conn: Option<ConnId>, sender: RegistrarId, why: Refusal) {
        self.metrics.on_refused(why);
        self.events
            .push_back(EnrpEvent::Refused { conn, sender, why });
    }

    /// An undecodable message: counted, and answered with ENRP_ERROR and the RFC 5354
    /// cause (quoting the offending TLV, or the message for an unknown type) unless the
    /// RFC says to stay silent or it was itself an error.
    pub(super) fn malformed(&mut self, conn: Option<ConnId>, bytes: &[u8], error: DecodeError) {
        self.metrics.malformed += 1;
        self.events.push_back(EnrpEvent::Malformed { conn, error });
        let Some(conn) = conn else { return };
        if bytes.first() == Some(&EnrpType::ERROR.0) || !error.should_report() {
            return;
        }
        let info = error.cause_info(bytes);
        // The sender's ID, if the message got that far.
        let sender = bytes
            .get(4..8)
            .map(|b| RegistrarId(u32::from_be_bytes([b[0], b[1], b[2], b[3]])))
            .unwrap_or_default();
        let ids = self.ids_to(sender);
        let error = OperationError::single(error.cause(), info);
        self.send(conn, &EnrpMessage::Error { ids, error });
    }
}

/// The expiry of a peer's PE: its Registration Life from now (as RSPLIB), never shorter
/// than the safety floor; none for an infinite life.
fn expiry(unit: LifeUnit, floor: Duration, now: Instant, element: &PoolElement) -> Option<Instant> {
    element.registration_life.deadline(now, unit, floor)
}
