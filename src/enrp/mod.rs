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
mod metrics;
mod peers;
mod table;
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
    CauseCode, DecodeError, DecodeErrorKind, EnrpIds, EnrpMessage, EnrpType, ErrorCause, LifeUnit,
    OperationError, PoolElement, SctpTransport, UpdateAction,
};
use peers::{Download, Link, Peer, Reach, Static};
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
    /// whose home flag is set, and supervise it (unless its home is no longer `from`).
    Adopt {
        handle: PoolHandle,
        id: PoolElementId,
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
                state: if !p.is_live() {
                    PeerState::Dead
                } else if p.probe.is_some() {
                    PeerState::Probing
                } else {
                    PeerState::Active
                },
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
    pub fn on_conn_up(&mut self, now: Instant, conn: ConnId, info: ConnInfo, hs: &Handlespace) {
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
        self.send_presence(now, conn, known.unwrap_or_default(), reply, hs);
        let _ = now;
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
                p.download = None;
                self.events
                    .push_back(EnrpEvent::AuditAbandoned { peer: id });
                self.forget_mentor(id);
            }
        }
    }

    /// One ENRP message received on `conn`.
    pub fn on_message(&mut self, now: Instant, conn: ConnId, bytes: &[u8], hs: &Handlespace) {
        if !self.links.contains_key(&conn) {
            // An accepted connection the runtime reported without conn_up: adopt it.
            self.links.insert(
                conn,
                Link {
                    peer: None,
                    info: None,
                    outbound: false,
                },
            );
        }
        let decoded = match EnrpMessage::decode(bytes) {
            Ok(d) => d,
            Err(error) => return self.malformed(Some(conn), bytes, error),
        };
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
        if !decoded.unrecognized.is_empty() && message.kind() != EnrpType::ERROR {
            let causes = decoded
                .unrecognized
                .iter()
                .filter_map(|s| bytes.get(s.range()))
                .map(|tlv| ErrorCause {
                    code: CauseCode::UNRECOGNIZED_PARAMETER,
                    info: tlv.to_vec(),
                })
                .collect();
            self.send(
                conn,
                &EnrpMessage::Error {
                    ids: self.ids_to(ids.sender),
                    error: OperationError { causes },
                },
            );
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
            checksum,
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
        let _ = checksum; // audits run only over connections (as RSPLIB)
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
            self.complete_takeover(now, target, hs);
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

    /// Every shard has caught up with the writes issued before [`Action::Sync`]
    /// `token`: compare a peer's checksum with ours of its PEs.
    pub fn on_synced(&mut self, now: Instant, token: u64, hs: &Handlespace) {
        let Some((peer, theirs)) = self.compares.remove(&token) else {
            return;
        };
        let ours = hs.home_sum(peer).finish_as(self.config.checksum);
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if p.comparing == Some(token) {
            p.comparing = None;
        }
        if ours == theirs {
            p.audit_misses = 0;
            p.audit_after = None;
            return;
        }
        if p.download.is_some() || !p.is_live() || p.audit_after.is_some_and(|t| now < t) {
            return;
        }
        let Some(link) = self.link_for(peer) else {
            return;
        };
        // RFC 5353 §3.6.3: mark what we hold for the peer, ask for its own PEs, purge
        // what it does not send again. Audits that do not converge back off.
        let marked = hs
            .elements_of_home(peer)
            .map(|(h, e)| (h.clone(), e.id()))
            .collect();
        let p = self.peers.get_mut(&peer).expect("checked above");
        if p.audit_misses > 0 {
            let factor = 1u32 << p.audit_misses.min(5);
            p.audit_after = Some(now + self.config.heartbeat * factor);
        }
        p.audit_misses += 1;
        p.download = Some(Download {
            link,
            owned_only: true,
            marked,
            deadline: now + self.config.max_time_no_response,
            received: 0,
            started: now,
        });
        self.metrics.audits_started += 1;
        self.events
            .push_back(EnrpEvent::AuditStarted { peer, ours, theirs });
        let ids = self.ids_to(peer);
        self.send(
            link,
            &EnrpMessage::HandleTableRequest {
                ids,
                owned_only: true,
            },
        );
    }

    // ---- start-up and heartbeats --------------------------------------------------

    fn start(&mut self, now: Instant, hs: &Handlespace) {
        self.phase = if self.statics.is_empty() && !self.config.multicast {
            self.events
                .push_back(EnrpEvent::Synchronised { mentor: None });
            Phase::Normal
        } else {
            Phase::Startup {
                until: now + self.config.mentor_discovery,
                mentor: None,
            }
        };
        for i in 0..self.statics.len() {
            self.connect_static(i);
        }
        // The first multicast presence goes out at once, so a peer on the group can be
        // our mentor; then every cycle.
        self.heartbeat(now, hs);
    }

    /// A mentor whose download failed is a mentor no more; the next peer heard may be.
    fn forget_mentor(&mut self, id: RegistrarId) {
        if let Phase::Startup {
            until,
            mentor: Some(m),
        } = self.phase
            && m == id
        {
            self.phase = Phase::Startup {
                until,
                mentor: None,
            };
        }
    }

    fn end_startup(&mut self, mentor: Option<RegistrarId>) {
        if matches!(self.phase, Phase::Startup { .. }) {
            self.phase = Phase::Normal;
            self.events.push_back(EnrpEvent::Synchronised { mentor });
        }
    }

    fn connect_static(&mut self, i: usize) {
        let conn = self.new_conn();
        let s = &mut self.statics[i];
        s.link = Some(conn);
        s.retry_at = None;
        let address = s.address;
        self.links.insert(
            conn,
            Link {
                peer: s.id,
                info: None,
                outbound: true,
            },
        );
        if let Some(id) = s.id
            && let Some(p) = self.peers.get_mut(&id)
        {
            p.link = Some(conn);
        }
        self.actions.push_back(Action::Connect {
            conn,
            transport: address.transport,
            addrs: vec![address.addr.ip()],
            port: address.addr.port(),
        });
    }

    fn new_conn(&mut self) -> ConnId {
        self.next_conn += 1;
        ConnId(self.next_conn)
    }

    /// RFC 5353 §3.4.1: our PRESENCE to every peer (and every configured peer not heard
    /// from yet), and to the group.
    fn heartbeat(&mut self, now: Instant, hs: &Handlespace) {
        for (receiver, conn) in self.recipients() {
            if self.links.get(&conn).is_some_and(|l| l.info.is_some()) {
                self.send_presence(now, conn, receiver, false, hs);
            } else if receiver != RegistrarId::NONE {
                // Not connected yet: the presence goes out when it is (conn up).
            }
        }
        if self.config.multicast {
            let msg = self.presence(RegistrarId::NONE, false, None, hs);
            if let Some(msg) = msg {
                let mut payload = Vec::new();
                msg.encode(&mut payload);
                self.metrics.on_sent(&payload);
                self.actions.push_back(Action::Multicast { payload });
            }
        }
        // RSPLIB's cycle: the configured period, each drawn within ±12.5 %.
        let base = self.config.heartbeat.as_micros() as u64;
        let jitter = base / 8;
        let period = base - jitter + self.rng.below(2 * jitter + 1);
        self.next_heartbeat = Some(now + Duration::from_micros(period));
    }

    /// Who gets messages sent to "every peer": each live peer on its connection
    /// (opening one where needed), and each configured peer whose ID is unknown, with
    /// Receiving Server's ID 0 (as RSPLIB).
    fn recipients(&mut self) -> Vec<(RegistrarId, ConnId)> {
        let ids: Vec<RegistrarId> = self
            .peers
            .values()
            .filter(|p| p.is_live())
            .map(|p| p.id)
            .collect();
        let mut out: Vec<(RegistrarId, ConnId)> = ids
            .into_iter()
            .filter_map(|id| self.link_for(id).map(|c| (id, c)))
            .collect();
        out.extend(
            self.statics
                .iter()
                .filter(|s| s.id.is_none())
                .filter_map(|s| s.link.map(|c| (RegistrarId::NONE, c))),
        );
        out
    }

    /// The connection to send to `peer` on: its own, another one it talks on, or a new
    /// one to where it said it is.
    fn link_for(&mut self, peer: RegistrarId) -> Option<ConnId> {
        let p = self.peers.get(&peer)?;
        if let Some(c) = p.link.filter(|c| self.links.contains_key(c)) {
            return Some(c);
        }
        let any = self
            .links
            .iter()
            .filter(|(_, l)| l.peer == Some(peer) && l.info.is_some())
            .map(|(c, _)| *c)
            .min();
        if let Some(c) = any {
            if let Some(p) = self.peers.get_mut(&peer) {
                p.link = Some(c);
            }
            return Some(c);
        }
        let reach = p.reach.clone()?;
        let conn = self.new_conn();
        self.links.insert(
            conn,
            Link {
                peer: Some(peer),
                info: None,
                outbound: true,
            },
        );
        if let Some(p) = self.peers.get_mut(&peer) {
            p.link = Some(conn);
        }
        self.actions.push_back(Action::Connect {
            conn,
            transport: reach.transport,
            addrs: reach.addrs,
            port: reach.port,
        });
        Some(conn)
    }

    /// Our Server Information as seen over `conn`: the ENRP endpoint of the
    /// connection's transport, with the connection's local addresses when the endpoint
    /// is a wildcard.
    fn server_info(&self, conn: Option<ConnId>) -> Option<crate::wire::ServerInformation> {
        let info = conn
            .and_then(|c| self.links.get(&c))
            .and_then(|l| l.info.as_ref());
        let transport = info.map(|i| i.transport);
        let endpoint = self
            .config
            .endpoints
            .iter()
            .find(|e| Some(e.transport) == transport)
            .or_else(|| self.config.endpoints.first())?;
        let mut addrs: Vec<IpAddr> = if endpoint.addr.ip().is_unspecified() {
            info.map(|i| i.local_addrs.clone()).unwrap_or_default()
        } else {
            vec![endpoint.addr.ip()]
        };
        addrs.retain(|a| !a.is_unspecified());
        if addrs.is_empty() {
            return None;
        }
        Some(crate::wire::ServerInformation {
            server_id: self.id,
            transport: peers::transport_of(endpoint.transport, &addrs, endpoint.addr.port()),
        })
    }

    fn presence(
        &self,
        receiver: RegistrarId,
        reply_required: bool,
        conn: Option<ConnId>,
        hs: &Handlespace,
    ) -> Option<EnrpMessage> {
        // RSPLIB requires the checksum and the server information in every PRESENCE.
        let info = self.server_info(conn)?;
        Some(EnrpMessage::Presence {
            ids: EnrpIds {
                sender: self.id,
                receiver,
            },
            reply_required,
            checksum: Some(hs.home_sum(self.id).finish_as(self.config.checksum)),
            info: Some(info),
        })
    }

    fn send_presence(
        &mut self,
        _now: Instant,
        conn: ConnId,
        receiver: RegistrarId,
        reply_required: bool,
        hs: &Handlespace,
    ) {
        if let Some(msg) = self.presence(receiver, reply_required, Some(conn), hs) {
            self.send(conn, &msg);
        }
    }

    fn ids_to(&self, receiver: RegistrarId) -> EnrpIds {
        EnrpIds {
            sender: self.id,
            receiver,
        }
    }

    fn send(&mut self, conn: ConnId, msg: &EnrpMessage) {
        let mut payload = Vec::with_capacity(64);
        msg.encode(&mut payload);
        self.metrics.on_sent(&payload);
        self.actions.push_back(Action::Send { conn, payload });
    }

    // ---- liveness ------------------------------------------------------------------

    fn check_peers(&mut self, now: Instant, hs: &Handlespace) {
        let ids: Vec<RegistrarId> = self.peers.keys().copied().collect();
        for id in ids {
            let Some(p) = self.peers.get_mut(&id) else {
                continue;
            };
            if let Some(d) = &p.download
                && d.deadline <= now
            {
                p.download = None;
                self.events
                    .push_back(EnrpEvent::AuditAbandoned { peer: id });
                self.forget_mentor(id);
            }
            let p = self.peers.get_mut(&id).expect("present");
            if let Some(since) = p.dead_since {
                // Another registrar said it takes this one over; if its PEs are still
                // here long after, that takeover never finished: do it ourselves.
                if now >= since + self.config.takeover_expiry * 2 {
                    if hs.home_count(id) > 0 && !self.takeovers.contains_key(&id) {
                        self.start_takeover(now, id, hs);
                    } else if hs.home_count(id) == 0 {
                        self.remove_peer(id);
                    }
                }
                continue;
            }
            match p.probe {
                None if now >= p.last_heard + self.config.max_time_last_heard => {
                    // RFC 5353 §3.4.3: silent too long; ask for a reply.
                    p.probe = Some(now + self.config.max_time_no_response);
                    if let Some(conn) = self.link_for(id) {
                        if self.links.get(&conn).is_some_and(|l| l.info.is_some()) {
                            self.send_presence(now, conn, id, true, hs);
                        }
                    }
                }
                Some(deadline) if now >= deadline => self.peer_dead(now, id, hs),
                _ => {}
            }
        }
    }

    /// RFC 5353 §3.4.3, §3.5: a peer that did not answer is dead; its PEs are taken
    /// over, unless another registrar already does that.
    fn peer_dead(&mut self, now: Instant, id: RegistrarId, hs: &Handlespace) {
        let pes = hs.home_count(id);
        self.events.push_back(EnrpEvent::PeerDead { id, pes });
        if pes == 0 {
            return self.remove_peer(id);
        }
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        p.dead_since = Some(now);
        p.probe = None;
        p.download = None;
        let taker = p.taken_over_by.map(|(t, _)| t);
        let taker_live = taker.is_some_and(|t| self.peers.get(&t).is_some_and(Peer::is_live));
        if !taker_live {
            self.start_takeover(now, id, hs);
        }
    }

    fn remove_peer(&mut self, id: RegistrarId) {
        let Some(p) = self.peers.remove(&id) else {
            return;
        };
        self.takeovers.remove(&id);
        self.cursors.remove(&id);
        self.events.push_back(EnrpEvent::PeerRemoved { id });
        if let Some(i) = p.static_index
            && let Some(s) = self.statics.get_mut(i)
        {
            // A configured peer goes back to "ID unknown" (as RSPLIB) and is kept
            // contacted, so it rejoins when it comes back.
            s.id = None;
            if let Some(c) = s.link
                && let Some(l) = self.links.get_mut(&c)
            {
                l.peer = None;
            }
        }
        // Connections it used are closed; a configured peer's is kept for its return.
        let closing: Vec<ConnId> = self
            .links
            .iter()
            .filter(|(c, l)| {
                l.peer == Some(id) && !self.statics.iter().any(|s| s.link == Some(**c))
            })
            .map(|(c, _)| *c)
            .collect();
        for c in closing {
            if let Some(l) = self.links.get_mut(&c) {
                l.peer = None;
            }
            self.actions.push_back(Action::Close { conn: c });
        }
    }

    // ---- messages --------------------------------------------------------------------

    fn dispatch(&mut self, now: Instant, conn: Option<ConnId>, m: EnrpMessage, hs: &Handlespace) {
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
                    self.complete_takeover(now, target, hs);
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

    #[allow(clippy::too_many_arguments)]
    fn on_presence(
        &mut self,
        now: Instant,
        conn: Option<ConnId>,
        sender: RegistrarId,
        reply_required: bool,
        checksum: Option<u16>,
        reach: Option<Reach>,
        hs: &Handlespace,
    ) {
        let new = !self.peers.contains_key(&sender);
        let p = self
            .peers
            .entry(sender)
            .or_insert_with(|| Peer::new(sender, now));
        p.last_heard = now;
        p.probe = None;
        // RFC 5353 §3.5.1: a takeover target that speaks is alive after all.
        p.dead_since = None;
        p.taken_over_by = None;
        if let Some(r) = reach {
            p.reach = Some(r);
        }
        if let Some(c) = conn
            && p.link.is_none()
        {
            p.link = Some(c);
        }
        if self.takeovers.remove(&sender).is_some() {
            self.metrics.takeovers_aborted += 1;
            self.events.push_back(EnrpEvent::TakeoverAborted {
                target: sender,
                why: "it is alive",
            });
        }
        self.bind_static(sender, conn);
        if new {
            self.events
                .push_back(EnrpEvent::PeerLearned { id: sender, conn });
            // RSPLIB greets a peer learned from a PRESENCE with one requiring a reply.
            if let Some(c) = conn.or_else(|| self.link_for(sender))
                && !reply_required
            {
                self.send_presence(now, c, sender, true, hs);
            }
        }
        if reply_required && let Some(c) = conn.or_else(|| self.link_for(sender)) {
            self.send_presence(now, c, sender, false, hs);
        }
        let Some(conn) = conn else {
            return;
        };
        // RFC 5353 §3.2: the first peer heard while starting is the mentor: its peer
        // list, then its whole handle table.
        if let Phase::Startup {
            until,
            mentor: None,
        } = self.phase
        {
            self.phase = Phase::Startup {
                until,
                mentor: Some(sender),
            };
            self.events
                .push_back(EnrpEvent::MentorChosen { id: sender });
            self.list_request(conn, sender);
            let p = self.peers.get_mut(&sender).expect("inserted above");
            p.download = Some(Download {
                link: conn,
                owned_only: false,
                marked: HashSet::new(),
                deadline: now + self.config.max_time_no_response,
                received: 0,
                started: now,
            });
            let ids = self.ids_to(sender);
            self.send(
                conn,
                &EnrpMessage::HandleTableRequest {
                    ids,
                    owned_only: false,
                },
            );
            return;
        }
        let p = self.peers.get_mut(&sender).expect("inserted above");
        if !p.listed {
            self.list_request(conn, sender);
        }
        // RFC 5353 §3.6: audit, once the shards have applied what came before.
        let p = self.peers.get_mut(&sender).expect("inserted above");
        if let Some(theirs) = checksum
            && p.download.is_none()
            && p.comparing.is_none()
            && p.audit_after.is_none_or(|t| now >= t)
        {
            let token = self.next_token;
            self.next_token += 1;
            p.comparing = Some(token);
            self.compares.insert(token, (sender, theirs));
            self.actions.push_back(Action::Sync { token });
        }
    }

    fn list_request(&mut self, conn: ConnId, peer: RegistrarId) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.listed = true;
        }
        let ids = self.ids_to(peer);
        self.send(conn, &EnrpMessage::ListRequest { ids });
    }

    /// A configured peer is identified by the connection we opened to it, or by its
    /// advertised address.
    fn bind_static(&mut self, id: RegistrarId, conn: Option<ConnId>) {
        let reach = self.peers.get(&id).and_then(|p| p.reach.clone());
        let Some(i) = self.statics.iter().position(|s| {
            s.id == Some(id)
                || (s.id.is_none()
                    && ((conn.is_some() && s.link == conn)
                        || reach
                            .as_ref()
                            .is_some_and(|r| r.overlaps(&Reach::from_address(s.address)))))
        }) else {
            return;
        };
        let s = &mut self.statics[i];
        s.id = Some(id);
        s.backoff = RECONNECT_FIRST;
        let link = s.link;
        if let Some(c) = link
            && let Some(l) = self.links.get_mut(&c)
        {
            l.peer.get_or_insert(id);
        }
        if let Some(p) = self.peers.get_mut(&id) {
            p.static_index = Some(i);
            if let Some(c) = link {
                p.link = Some(c);
            }
            if p.reach.is_none() {
                p.reach = Some(Reach::from_address(self.statics[i].address));
            }
        }
    }

    /// A peer named in an ENRP_LIST_RESPONSE: a new one is greeted (RSPLIB: PRESENCE
    /// without reply required); a known one's address is updated.
    fn learn_listed(
        &mut self,
        now: Instant,
        info: &crate::wire::ServerInformation,
        hs: &Handlespace,
    ) {
        let id = info.server_id;
        if id == RegistrarId::NONE || id == self.id {
            return;
        }
        let advertised: Vec<IpAddr> = match &info.transport {
            crate::wire::ServerTransport::Sctp(s) => s.addresses.clone(),
            crate::wire::ServerTransport::Tcp(t) => vec![t.address],
        };
        let Some(reach) = Reach::from_info(info, &advertised) else {
            return;
        };
        match self.peers.get_mut(&id) {
            Some(p) => {
                if p.static_index.is_none() {
                    p.reach = Some(reach);
                }
            }
            None => {
                let mut p = Peer::new(id, now);
                p.reach = Some(reach);
                self.peers.insert(id, p);
                self.events
                    .push_back(EnrpEvent::PeerLearned { id, conn: None });
                self.bind_static(id, None);
                if let Some(c) = self.link_for(id)
                    && self.links.get(&c).is_some_and(|l| l.info.is_some())
                {
                    self.send_presence(now, c, id, false, hs);
                }
            }
        }
    }

    fn serve_table(
        &mut self,
        now: Instant,
        conn: ConnId,
        requester: RegistrarId,
        owned_only: bool,
        hs: &Handlespace,
    ) {
        let cursor = match self.cursors.remove(&requester) {
            Some(c) if c.owned_only == owned_only => c,
            _ => Cursor::new(hs, owned_only, now),
        };
        let mut cursor = cursor;
        cursor.touched = now;
        let max = self
            .config
            .table_chunk_elements
            .clamp(1, TABLE_CHUNK_CEILING);
        let (entries, more) = cursor.next_chunk(hs, self.id, max);
        if more {
            self.cursors.insert(requester, cursor);
        }
        let msg = EnrpMessage::HandleTableResponse {
            ids: self.ids_to(requester),
            reject: false,
            more,
            entries,
        };
        self.send(conn, &msg);
    }

    #[allow(clippy::too_many_arguments)]
    fn on_table(
        &mut self,
        now: Instant,
        conn: ConnId,
        sender: RegistrarId,
        reject: bool,
        more: bool,
        entries: Vec<crate::wire::PoolEntry>,
        hs: &Handlespace,
    ) {
        let _ = hs;
        let Some(p) = self.peers.get_mut(&sender) else {
            return;
        };
        let Some(d) = p.download.as_mut().filter(|d| d.link == conn) else {
            return;
        };
        if reject {
            p.download = None;
            self.events
                .push_back(EnrpEvent::AuditAbandoned { peer: sender });
            self.forget_mentor(sender);
            return;
        }
        let owned_only = d.owned_only;
        let (unit, floor) = (self.life_unit, self.min_lifetime);
        let mut writes = Vec::new();
        let mut refusals = Vec::new();
        for entry in entries {
            for element in entry.elements {
                d.received += 1;
                d.marked.remove(&(entry.handle.clone(), element.id));
                if element.home == self.id {
                    // RSPLIB skips these too: nobody hands us our own PEs.
                    refusals.push(Refusal::Ours);
                    continue;
                }
                if owned_only && element.home != sender {
                    refusals.push(Refusal::NotItsHome);
                    continue;
                }
                let expires = expiry(unit, floor, now, &element);
                writes.push(PeerWrite::Update {
                    from: sender,
                    handle: entry.handle.clone(),
                    element,
                    expires,
                    source: if owned_only {
                        Source::Audit
                    } else {
                        Source::Mentor
                    },
                    received: now,
                });
            }
        }
        if more {
            d.deadline = now + self.config.max_time_no_response;
        }
        let finished = if more { None } else { p.download.take() };
        for w in writes {
            self.actions.push_back(Action::Write(w));
        }
        for r in refusals {
            self.refuse(Some(conn), sender, r);
        }
        match finished {
            None => {
                let ids = self.ids_to(sender);
                self.send(conn, &EnrpMessage::HandleTableRequest { ids, owned_only });
            }
            Some(d) => {
                let purged = d.marked.len();
                for (handle, id) in d.marked {
                    self.actions.push_back(Action::Write(PeerWrite::Remove {
                        from: sender,
                        handle,
                        id,
                        purge: true,
                    }));
                }
                if owned_only {
                    self.metrics.audits_completed += 1;
                    self.metrics.audit_purged += purged as u64;
                    self.events.push_back(EnrpEvent::AuditDone {
                        peer: sender,
                        received: d.received,
                        purged,
                    });
                } else if matches!(self.phase, Phase::Startup { mentor: Some(m), .. } if m == sender)
                {
                    self.end_startup(Some(sender));
                }
                let _ = d.started;
            }
        }
    }

    fn on_update(
        &mut self,
        now: Instant,
        conn: Option<ConnId>,
        sender: RegistrarId,
        action: UpdateAction,
        handle: PoolHandle,
        element: PoolElement,
    ) {
        // During an audit of the sender, what it updates now is not stale.
        if let Some(d) = self
            .peers
            .get_mut(&sender)
            .and_then(|p| p.download.as_mut())
        {
            d.marked.remove(&(handle.clone(), element.id));
        }
        match action {
            UpdateAction::ADD_PE => {
                if element.home == self.id {
                    return self.refuse(conn, sender, Refusal::Ours);
                }
                if element.home != sender {
                    return self.refuse(conn, sender, Refusal::NotItsHome);
                }
                let expires = expiry(self.life_unit, self.min_lifetime, now, &element);
                self.actions.push_back(Action::Write(PeerWrite::Update {
                    from: sender,
                    handle,
                    element,
                    expires,
                    source: Source::Update,
                    received: now,
                }));
            }
            UpdateAction::DEL_PE => {
                self.actions.push_back(Action::Write(PeerWrite::Remove {
                    from: sender,
                    handle,
                    id: element.id,
                    purge: false,
                }));
            }
            // An unknown action is a value we cannot act on (RFC 5354 §3: invalid).
            _ => {
                if let Some(conn) = conn {
                    let error = OperationError::single(CauseCode::INVALID_VALUES, Vec::new());
                    let ids = self.ids_to(sender);
                    self.send(conn, &EnrpMessage::Error { ids, error });
                }
            }
        }
    }

    // ---- takeover ----------------------------------------------------------------------

    fn start_takeover(&mut self, now: Instant, target: RegistrarId, hs: &Handlespace) {
        let waiting: HashSet<RegistrarId> = self
            .peers
            .values()
            .filter(|p| p.is_live() && p.id != target)
            .map(|p| p.id)
            .collect();
        self.metrics.takeovers_started += 1;
        self.events.push_back(EnrpEvent::TakeoverStarted {
            target,
            waiting: waiting.len(),
        });
        if let Some(p) = self.peers.get_mut(&target) {
            p.dead_since.get_or_insert(now);
        }
        // RFC 5353 §3.5.1: to every peer, the target included (it may be alive).
        let mut receivers = self.recipients();
        if let Some(c) = self.link_for(target) {
            receivers.push((target, c));
        }
        for (receiver, conn) in receivers {
            let ids = self.ids_to(receiver);
            self.send(conn, &EnrpMessage::InitTakeover { ids, target });
        }
        if waiting.is_empty() {
            // Nobody has to agree (RSPLIB waits for an acknowledgement that can never
            // come and gives up; we do not).
            return self.complete_takeover(now, target, hs);
        }
        self.takeovers.insert(
            target,
            Takeover {
                waiting,
                deadline: now + self.config.takeover_expiry,
            },
        );
    }

    fn on_init_takeover(
        &mut self,
        _now: Instant,
        conn: Option<ConnId>,
        initiator: RegistrarId,
        target: RegistrarId,
        hs: &Handlespace,
    ) {
        if target == self.id {
            // RFC 5353 §3.5.1: we are alive; say so to everyone at once.
            for (receiver, c) in self.recipients() {
                if self.links.get(&c).is_some_and(|l| l.info.is_some()) {
                    self.send_presence(_now, c, receiver, false, hs);
                }
            }
            return;
        }
        if self.takeovers.contains_key(&target) {
            if !self.config.takeover_winner.beats(initiator.0, self.id.0) {
                return; // ours wins; the initiator gives way when it hears ours
            }
            self.takeovers.remove(&target);
            self.metrics.takeovers_aborted += 1;
            self.events.push_back(EnrpEvent::TakeoverAborted {
                target,
                why: "another registrar won the tie-break",
            });
        }
        if let Some(p) = self.peers.get_mut(&target) {
            p.taken_over_by = Some((initiator, _now));
        }
        // RSPLIB acknowledges even targets it does not know.
        if let Some(conn) = conn.or_else(|| self.link_for(initiator)) {
            let ids = self.ids_to(initiator);
            self.send(conn, &EnrpMessage::InitTakeoverAck { ids, target });
        }
    }

    /// RFC 5353 §3.5.2: tell the peers, then adopt every PE of the target.
    fn complete_takeover(&mut self, _now: Instant, target: RegistrarId, hs: &Handlespace) {
        let unanswered = self
            .takeovers
            .remove(&target)
            .map_or(0, |t| t.waiting.len());
        for (receiver, conn) in self.recipients() {
            if receiver == target {
                continue;
            }
            let ids = self.ids_to(receiver);
            self.send(conn, &EnrpMessage::TakeoverServer { ids, target });
        }
        let mut adopted = 0;
        for (handle, e) in hs.elements_of_home(target) {
            // A PE without an ASAP transport cannot be reached; it stays until its
            // registration life ends or it registers elsewhere.
            if let Some(asap) = e.param().asap_transport.clone() {
                adopted += 1;
                self.actions.push_back(Action::Adopt {
                    handle: handle.clone(),
                    id: e.id(),
                    from: target,
                    asap,
                });
            }
        }
        self.metrics.takeovers_completed += 1;
        self.metrics.adopted += adopted as u64;
        self.events.push_back(EnrpEvent::TakeoverCompleted {
            target,
            adopted,
            unanswered,
        });
        self.remove_peer(target);
    }

    /// RFC 5353 §3.5.2: `taker` took over `target`; its PEs' home is now `taker`.
    fn on_takeover_server(&mut self, taker: RegistrarId, target: RegistrarId, hs: &Handlespace) {
        if target == self.id {
            // We are alive; PEs that moved come back as ADD_PE from their new home.
            return;
        }
        for (handle, e) in hs.elements_of_home(target) {
            self.actions.push_back(Action::Write(PeerWrite::Rehome {
                from: target,
                to: taker,
                handle: handle.clone(),
                id: e.id(),
            }));
        }
        if self.takeovers.remove(&target).is_some() {
            self.metrics.takeovers_aborted += 1;
            self.events.push_back(EnrpEvent::TakeoverAborted {
                target,
                why: "another registrar completed it",
            });
        }
        if self.peers.contains_key(&target) {
            self.remove_peer(target);
        }
    }

    // ---- errors ------------------------------------------------------------------------

    fn refuse(&mut self, conn: Option<ConnId>, sender: RegistrarId, why: Refusal) {
        self.metrics.on_refused(why);
        self.events
            .push_back(EnrpEvent::Refused { conn, sender, why });
    }

    /// An undecodable message: counted, and answered with ENRP_ERROR and the RFC 5354
    /// cause (quoting the offending TLV, or the message for an unknown type) unless the
    /// RFC says to stay silent or it was itself an error.
    fn malformed(&mut self, conn: Option<ConnId>, bytes: &[u8], error: DecodeError) {
        self.metrics.malformed += 1;
        self.events.push_back(EnrpEvent::Malformed { conn, error });
        let Some(conn) = conn else { return };
        if bytes.first() == Some(&EnrpType::ERROR.0) || !error.should_report() {
            return;
        }
        let info = match error.kind {
            DecodeErrorKind::UnrecognizedMessage(_) => bytes.to_vec(),
            _ => error
                .span
                .and_then(|s| bytes.get(s.range()))
                .map(<[u8]>::to_vec)
                .unwrap_or_default(),
        };
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
    element
        .registration_life
        .to_duration(unit)
        .map(|d| now + d.max(floor))
}
