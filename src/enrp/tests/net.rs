//! A virtual network for whole registrars (several shards each), their ENRP
//! connections, and pool elements, on a virtual clock, with seeded delay, loss of ENRP
//! messages, partitions, crashes and restarts. Real encoded messages throughout.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::client::{PeEvent, PoolElementClient};
use crate::enrp::{self, EnrpEvent, PeerAddress};
use crate::ids::{PoolElementId, PoolHandle, RegistrarId};
use crate::registrar::{
    Config, ConnId, ConnInfo, Event, Protocol, Registrar, Router, ShardId, Transmit, Transport,
};
use crate::rng::Rng;
use crate::wire::{
    AsapMessage, PolicyParam, PoolElement, RegistrationLife, SctpTransport, TransportUse,
    UserTransport,
};

pub(super) const ENRP_PORT: u16 = 9901;

/// One end of a virtual connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum End {
    /// Registrar `node`, its shard, the connection's id there.
    Node(usize, usize, ConnId),
    /// Pool element `pe`, its own connection id.
    Pe(usize, u64),
    /// A hand-driven ENRP peer (a test's fake registrar), its connection id.
    Probe(u64),
}

impl End {
    fn node(self) -> Option<usize> {
        match self {
            Self::Node(n, ..) => Some(n),
            Self::Pe(..) | Self::Probe(_) => None,
        }
    }
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Delivery {
    Bytes { to: End, bytes: Vec<u8> },
    Down { to: End },
}

pub(super) struct Node {
    pub(super) id: RegistrarId,
    pub(super) addr: IpAddr,
    pub(super) shards: Vec<Registrar>,
    pub(super) alive: bool,
    /// Messages of shards that must not be delivered (the process is gone).
    pub(super) events: Vec<Event>,
}

impl Node {
    pub(super) fn enrp(&self) -> &enrp::Enrp {
        self.shards[0].enrp().expect("ENRP configured")
    }
}

pub(super) struct Pe {
    pub(super) client: PoolElementClient,
    pub(super) addr: IpAddr,
    pub(super) port: u16,
    /// The PE's registrar connection (its end's id) and which node it goes to.
    pub(super) conn: Option<(u64, usize)>,
    pub(super) alive: bool,
    /// Connections the PE has (its id → the registrar end).
    conns: HashMap<u64, End>,
    /// Server hunt: when the registrar connection is gone this long without an
    /// adoption, register at another registrar (RFC 5352 §3.1; RSPLIB's PEs do).
    pub(super) hunt_at: Option<Instant>,
    pub(super) adopted: usize,
}

pub(super) struct Scope {
    pub(super) now: Instant,
    pub(super) nodes: Vec<Node>,
    pub(super) pes: Vec<Pe>,
    wires: HashMap<End, End>,
    queue: BinaryHeap<Reverse<(Instant, u64, Delivery)>>,
    /// Per direction, when the last message is delivered: transports keep order.
    fifo: HashMap<(End, End), Instant>,
    seq: u64,
    rng: Rng,
    /// ENRP messages lost, per thousand.
    pub(super) loss_per_mille: u64,
    pub(super) delay: (Duration, Duration),
    /// Pairs of nodes that cannot reach each other.
    cut: HashSet<(usize, usize)>,
    next_conn: u64,
    /// When a PE hunts for another registrar after losing its own (None: never).
    pub(super) hunt_after: Option<Duration>,
    pub(super) shards: u16,
    pub(super) config: Config,
    /// What hand-driven peers received, by their connection.
    pub(super) probe_inbox: HashMap<u64, Vec<Vec<u8>>>,
}

fn node_addr(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1 + i as u8))
}

fn pe_addr(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 1, (i / 200) as u8, 1 + (i % 200) as u8))
}

/// The registrar settings the scenarios use: RSPLIB's ENRP timers, keep-alives every
/// second.
pub(super) fn config() -> Config {
    Config {
        keep_alive_interval: Duration::from_secs(1),
        keep_alive_timeout: Duration::from_secs(1),
        enrp: Some(enrp::Config::default()),
        ..Config::default()
    }
}

impl Scope {
    /// `n` registrars with IDs `ids`, each configured with every other as a static peer.
    pub(super) fn new(ids: &[u32], shards: u16, config: Config, seed: u64) -> Self {
        let mut s = Self {
            now: Instant::now(),
            nodes: Vec::new(),
            pes: Vec::new(),
            wires: HashMap::new(),
            queue: BinaryHeap::new(),
            fifo: HashMap::new(),
            seq: 0,
            rng: Rng::new(seed),
            loss_per_mille: 0,
            delay: (Duration::from_micros(100), Duration::from_micros(300)),
            cut: HashSet::new(),
            next_conn: 0,
            hunt_after: None,
            shards,
            config,
            probe_inbox: HashMap::new(),
        };
        for (i, id) in ids.iter().enumerate() {
            let peers = (0..ids.len()).filter(|&j| j != i).collect::<Vec<_>>();
            let node = s.make_node(i, RegistrarId(*id), &peers);
            s.nodes.push(node);
        }
        for i in 0..ids.len() {
            s.start(i);
        }
        s
    }

    fn make_node(&self, i: usize, id: RegistrarId, peers: &[usize]) -> Node {
        let mut config = self.config.clone();
        config.id = id;
        let e = config.enrp.get_or_insert_with(enrp::Config::default);
        e.endpoints = vec![PeerAddress {
            transport: Transport::Tcp,
            addr: SocketAddr::new(node_addr(i), ENRP_PORT),
        }];
        e.peers = peers
            .iter()
            .map(|&j| PeerAddress {
                transport: Transport::Tcp,
                addr: SocketAddr::new(node_addr(j), ENRP_PORT),
            })
            .collect();
        let router = Router::new(self.shards, 7 + i as u64);
        let shards = (0..self.shards)
            .map(|s| {
                Registrar::new(
                    config.clone(),
                    ShardId(s),
                    router.clone(),
                    u64::from(id.0) * 31 + u64::from(s),
                )
            })
            .collect();
        Node {
            id,
            addr: node_addr(i),
            shards,
            alive: true,
            events: Vec::new(),
        }
    }

    fn start(&mut self, i: usize) {
        for s in 0..self.nodes[i].shards.len() {
            let now = self.now;
            self.nodes[i].shards[s].handle_timeout(now);
        }
        self.pump(i);
    }

    // ---- pool elements -------------------------------------------------------------

    /// A PE of `pool` registering at `node` (shard chosen by the PE's number).
    pub(super) fn add_pe(&mut self, pool: &str, id: u32, node: usize) -> usize {
        let i = self.pes.len();
        let addr = pe_addr(i);
        let element = PoolElement {
            id: PoolElementId(id),
            home: RegistrarId(0),
            registration_life: RegistrationLife(30_000),
            user_transport: UserTransport::Sctp(SctpTransport {
                port: 7000,
                transport_use: TransportUse::DATA_ONLY,
                addresses: vec![addr],
            }),
            policy: PolicyParam::round_robin(),
            asap_transport: None,
        };
        self.pes.push(Pe {
            client: PoolElementClient::new(
                PoolHandle::from(pool),
                element,
                Duration::from_secs(10),
            ),
            addr,
            port: 40_000 + i as u16,
            conn: None,
            alive: true,
            conns: HashMap::new(),
            hunt_at: None,
            adopted: 0,
        });
        self.pe_register_at(i, node);
        i
    }

    fn pe_register_at(&mut self, pe: usize, node: usize) {
        let shard = pe % self.nodes[node].shards.len();
        self.next_conn += 1;
        let pe_conn = self.next_conn;
        self.next_conn += 1;
        let reg_conn = ConnId(self.next_conn);
        let a = End::Pe(pe, pe_conn);
        let b = End::Node(node, shard, reg_conn);
        self.wires.insert(a, b);
        self.wires.insert(b, a);
        let p = &mut self.pes[pe];
        p.conns.insert(pe_conn, b);
        p.conn = Some((pe_conn, node));
        p.hunt_at = None;
        let info = ConnInfo {
            transport: Transport::Sctp,
            protocol: Protocol::Asap,
            peer_addrs: vec![p.addr],
            peer_port: p.port,
            local_addrs: vec![node_addr(node)],
            local_port: 3863,
            identity: None,
        };
        let now = self.now;
        self.nodes[node].shards[shard].handle_conn_up(now, reg_conn, info);
        self.pes[pe].client.register(now);
        self.pe_flush(pe, pe_conn);
        self.pump(node);
    }

    /// A hand-driven peer connects to a registrar's ENRP endpoint from `addr`; returns
    /// its end's id for [`Scope::probe_send`].
    pub(super) fn probe_connect(&mut self, node: usize, addr: IpAddr) -> u64 {
        self.next_conn += 1;
        let mine = self.next_conn;
        self.next_conn += 1;
        let theirs = ConnId(self.next_conn);
        let a = End::Probe(mine);
        let b = End::Node(node, 0, theirs);
        self.wires.insert(a, b);
        self.wires.insert(b, a);
        let info = ConnInfo {
            transport: Transport::Tcp,
            protocol: Protocol::Enrp,
            peer_addrs: vec![addr],
            peer_port: 50_000,
            local_addrs: vec![self.nodes[node].addr],
            local_port: ENRP_PORT,
            identity: None,
        };
        let now = self.now;
        self.nodes[node].shards[0].handle_conn_up(now, theirs, info);
        self.pump(node);
        mine
    }

    /// Sends raw bytes from a hand-driven peer.
    pub(super) fn probe_send(&mut self, probe: u64, bytes: Vec<u8>) {
        self.send(End::Probe(probe), bytes, false);
    }

    /// The PE registers at another registrar (its old connection stays open).
    pub(super) fn move_pe(&mut self, pe: usize, node: usize) {
        self.pe_register_at(pe, node);
    }

    /// The PE process dies: its connections close.
    pub(super) fn kill_pe(&mut self, pe: usize) {
        self.pes[pe].alive = false;
        let conns: Vec<u64> = self.pes[pe].conns.keys().copied().collect();
        for c in conns {
            self.close(End::Pe(pe, c));
        }
    }

    fn pe_flush(&mut self, pe: usize, conn: u64) {
        while let Some(bytes) = self.pes[pe].client.poll_transmit() {
            self.send(End::Pe(pe, conn), bytes, false);
        }
    }

    fn pe_receive(&mut self, pe: usize, conn: u64, bytes: &[u8]) {
        if !self.pes[pe].alive {
            return;
        }
        let Ok(m) = AsapMessage::decode(bytes) else {
            return;
        };
        let now = self.now;
        let event = self.pes[pe].client.handle_message(now, &m.message);
        if let Some(PeEvent::Adopted { .. }) = event {
            let node = self.pes[pe].conns[&conn].node().expect("a registrar");
            let p = &mut self.pes[pe];
            p.conn = Some((conn, node));
            p.hunt_at = None;
            p.adopted += 1;
        }
        self.pe_flush(pe, conn);
    }

    fn pe_timers(&mut self) {
        let now = self.now;
        for pe in 0..self.pes.len() {
            if !self.pes[pe].alive {
                continue;
            }
            if self.pes[pe].hunt_at.is_some_and(|t| t <= now) {
                let target = (0..self.nodes.len()).find(|&n| self.nodes[n].alive);
                if let Some(n) = target {
                    self.pe_register_at(pe, n);
                }
                continue;
            }
            if let Some((conn, _)) = self.pes[pe].conn {
                self.pes[pe].client.handle_timeout(now);
                self.pe_flush(pe, conn);
            }
        }
    }

    // ---- registrars ----------------------------------------------------------------

    /// The registrar process dies: the kernel closes its connections (peers and PEs
    /// see them go down).
    pub(super) fn kill(&mut self, node: usize) {
        self.nodes[node].alive = false;
        let ends: Vec<End> = self
            .wires
            .keys()
            .filter(|e| e.node() == Some(node))
            .copied()
            .collect();
        for e in ends {
            self.close(e);
        }
    }

    /// A registrar comes back at the same address: a fresh process, `id` (the old one,
    /// or a new random one, as RSPLIB picks).
    pub(super) fn restart(&mut self, node: usize, id: u32) {
        let peers: Vec<usize> = (0..self.nodes.len()).filter(|&j| j != node).collect();
        self.nodes[node] = self.make_node(node, RegistrarId(id), &peers);
        self.start(node);
    }

    pub(super) fn partition(&mut self, a: &[usize], b: &[usize]) {
        for &x in a {
            for &y in b {
                self.cut.insert((x, y));
                self.cut.insert((y, x));
            }
        }
    }

    pub(super) fn heal(&mut self) {
        self.cut.clear();
    }

    fn cut_between(&self, a: End, b: End) -> bool {
        match (a.node(), b.node()) {
            (Some(x), Some(y)) => self.cut.contains(&(x, y)),
            _ => false,
        }
    }

    /// Closes a connection from one end: the other end hears it go down.
    fn close(&mut self, from: End) {
        if let Some(to) = self.wires.remove(&from) {
            self.wires.remove(&to);
            self.schedule(self.now, Delivery::Down { to });
            self.schedule(self.now, Delivery::Down { to: from });
        }
    }

    fn schedule(&mut self, at: Instant, d: Delivery) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, d)));
    }

    fn send(&mut self, from: End, bytes: Vec<u8>, enrp: bool) {
        let Some(&to) = self.wires.get(&from) else {
            return;
        };
        if self.cut_between(from, to) {
            return;
        }
        if enrp && self.loss_per_mille > 0 && self.rng.below(1000) < self.loss_per_mille {
            return;
        }
        let (lo, hi) = self.delay;
        let spread = (hi - lo).as_micros() as u64;
        let delay = lo + Duration::from_micros(self.rng.below(spread + 1));
        let at = (self.now + delay).max(self.fifo.get(&(from, to)).copied().unwrap_or(self.now));
        self.fifo.insert((from, to), at);
        self.schedule(at, Delivery::Bytes { to, bytes });
    }

    /// Moves every output of a node's shards: shard messages at once, transmits onto
    /// the network, events into the log.
    fn pump(&mut self, node: usize) {
        loop {
            let mut moved = false;
            for s in 0..self.nodes[node].shards.len() {
                while let Some((to, msg)) = self.nodes[node].shards[s].poll_shard() {
                    let now = self.now;
                    self.nodes[node].shards[usize::from(to.0)].handle_shard(now, msg);
                    moved = true;
                }
                while let Some(t) = self.nodes[node].shards[s].poll_transmit() {
                    moved = true;
                    self.transmit(node, s, t);
                }
                while let Some(e) = self.nodes[node].shards[s].poll_event() {
                    self.nodes[node].events.push(e);
                }
            }
            if !moved {
                break;
            }
        }
    }

    fn transmit(&mut self, node: usize, shard: usize, t: Transmit) {
        if !self.nodes[node].alive {
            return;
        }
        match t {
            Transmit::Asap { conn, payload, .. } => {
                self.send(End::Node(node, shard, conn), payload, false);
            }
            Transmit::Enrp { conn, payload } => {
                self.send(End::Node(node, shard, conn), payload, true);
            }
            Transmit::Connect {
                conn,
                protocol,
                addrs,
                port,
                ..
            } => self.connect(node, shard, conn, protocol, &addrs, port),
            Transmit::Close { conn } => self.close(End::Node(node, shard, conn)),
            Transmit::Announce { .. } | Transmit::EnrpMulticast { .. } => {}
        }
    }

    fn connect(
        &mut self,
        node: usize,
        shard: usize,
        conn: ConnId,
        protocol: Protocol,
        addrs: &[IpAddr],
        port: u16,
    ) {
        let me = End::Node(node, shard, conn);
        let target = match protocol {
            Protocol::Enrp => (0..self.nodes.len())
                .find(|&n| {
                    self.nodes[n].alive
                        && port == ENRP_PORT
                        && addrs.contains(&self.nodes[n].addr)
                        && !self.cut.contains(&(node, n))
                })
                .map(|n| {
                    self.next_conn += 1;
                    End::Node(n, 0, ConnId(self.next_conn))
                }),
            Protocol::Asap => (0..self.pes.len())
                .find(|&p| {
                    self.pes[p].alive
                        && self.pes[p].port == port
                        && addrs.contains(&self.pes[p].addr)
                })
                .map(|p| {
                    self.next_conn += 1;
                    End::Pe(p, self.next_conn)
                }),
        };
        let Some(other) = target else {
            self.schedule(self.now, Delivery::Down { to: me });
            return;
        };
        self.wires.insert(me, other);
        self.wires.insert(other, me);
        let now = self.now;
        let (my_addr, my_port) = (node_addr(node), 50_000 + (self.next_conn % 10_000) as u16);
        match other {
            End::Node(n, s, c) => {
                let info = ConnInfo {
                    transport: Transport::Tcp,
                    protocol,
                    peer_addrs: vec![my_addr],
                    peer_port: my_port,
                    local_addrs: vec![self.nodes[n].addr],
                    local_port: ENRP_PORT,
                    identity: None,
                };
                self.nodes[n].shards[s].handle_conn_up(now, c, info);
                self.pump(n);
            }
            End::Pe(p, c) => {
                self.pes[p].conns.insert(c, me);
            }
            End::Probe(_) => {}
        }
        let (peer_addr, peer_port) = match other {
            End::Node(n, ..) => (self.nodes[n].addr, ENRP_PORT),
            End::Pe(p, _) => (self.pes[p].addr, self.pes[p].port),
            End::Probe(_) => (my_addr, 0),
        };
        let info = ConnInfo {
            transport: Transport::Tcp,
            protocol,
            peer_addrs: vec![peer_addr],
            peer_port,
            local_addrs: vec![my_addr],
            local_port: my_port,
            identity: None,
        };
        self.nodes[node].shards[shard].handle_conn_up(now, conn, info);
        self.pump(node);
    }

    fn deliver(&mut self, d: Delivery) {
        let now = self.now;
        match d {
            Delivery::Bytes { to, bytes } => match to {
                End::Node(n, s, c) => {
                    if !self.nodes[n].alive || !self.wires.contains_key(&to) {
                        return;
                    }
                    let proto = if bytes.first().is_some_and(|_| self.is_enrp(to)) {
                        Protocol::Enrp
                    } else {
                        Protocol::Asap
                    };
                    match proto {
                        Protocol::Enrp => self.nodes[n].shards[s].handle_enrp(now, c, &bytes),
                        Protocol::Asap => self.nodes[n].shards[s].handle_asap(now, c, &bytes),
                    }
                    self.pump(n);
                }
                End::Pe(p, c) => {
                    if self.pes[p].conns.contains_key(&c) {
                        self.pe_receive(p, c, &bytes);
                    }
                }
                End::Probe(c) => self.probe_inbox.entry(c).or_default().push(bytes),
            },
            Delivery::Down { to } => match to {
                End::Node(n, s, c) => {
                    if self.nodes[n].alive {
                        self.nodes[n].shards[s].handle_conn_down(now, c);
                        self.pump(n);
                    }
                }
                End::Pe(p, c) => {
                    let pe = &mut self.pes[p];
                    pe.conns.remove(&c);
                    if pe.conn.is_some_and(|(x, _)| x == c) {
                        pe.conn = None;
                        pe.hunt_at = self.hunt_after.map(|d| now + d);
                    }
                }
                End::Probe(_) => {}
            },
        }
    }

    /// Whether a registrar's end of a connection speaks ENRP (the other end is a
    /// registrar).
    fn is_enrp(&self, end: End) -> bool {
        matches!(self.wires.get(&end), Some(End::Node(..) | End::Probe(_)))
    }

    /// Runs the network and every timer for `d` of virtual time.
    pub(super) fn run(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            let node_next = self
                .nodes
                .iter_mut()
                .filter(|n| n.alive)
                .flat_map(|n| n.shards.iter_mut().filter_map(Registrar::poll_timeout))
                .min();
            let pe_next = self
                .pes
                .iter()
                .filter(|p| p.alive)
                .flat_map(|p| {
                    [
                        p.client.poll_timeout().filter(|_| p.conn.is_some()),
                        p.hunt_at,
                    ]
                })
                .flatten()
                .min();
            let net_next = self.queue.peek().map(|Reverse((t, ..))| *t);
            let Some(next) = [node_next, pe_next, net_next].into_iter().flatten().min() else {
                break;
            };
            if next > end {
                break;
            }
            self.now = self.now.max(next);
            while let Some(Reverse((t, ..))) = self.queue.peek() {
                if *t > self.now {
                    break;
                }
                let Some(Reverse((_, _, d))) = self.queue.pop() else {
                    break;
                };
                self.deliver(d);
            }
            for n in 0..self.nodes.len() {
                if !self.nodes[n].alive {
                    continue;
                }
                for s in 0..self.nodes[n].shards.len() {
                    if self.nodes[n].shards[s]
                        .poll_timeout()
                        .is_some_and(|t| t <= self.now)
                    {
                        let now = self.now;
                        self.nodes[n].shards[s].handle_timeout(now);
                    }
                }
                self.pump(n);
            }
            self.pe_timers();
        }
        self.now = end;
    }

    // ---- what to check -------------------------------------------------------------

    /// Every PE each shard of a node holds, with its home.
    pub(super) fn view(
        &self,
        node: usize,
        shard: usize,
    ) -> BTreeMap<(PoolHandle, u32), RegistrarId> {
        self.nodes[node].shards[shard]
            .handlespace()
            .pools()
            .flat_map(|p| {
                p.elements()
                    .map(move |e| ((p.handle().clone(), e.id().0), e.home()))
            })
            .collect()
    }

    /// The live PEs (alive, and connected to a live registrar or adopted by one).
    pub(super) fn live_pes(&self) -> BTreeSet<(PoolHandle, u32)> {
        self.pes
            .iter()
            .filter(|p| p.alive)
            .map(|p| (p.client.handle().clone(), p.client.id().0))
            .collect()
    }

    /// After quiescence: every live registrar's every shard holds exactly the live PEs,
    /// each homed at a live registrar that supervises it, and every registrar's view of
    /// each home's checksum is that home's own. Returns what is wrong.
    pub(super) fn check_converged(&self) -> Result<(), String> {
        let live: Vec<usize> = (0..self.nodes.len())
            .filter(|&n| self.nodes[n].alive)
            .collect();
        let want = self.live_pes();
        let first = self.view(live[0], 0);
        for &n in &live {
            for s in 0..self.nodes[n].shards.len() {
                let v = self.view(n, s);
                let have: BTreeSet<_> = v.keys().cloned().collect();
                if have != want {
                    let missing: Vec<_> = want.difference(&have).collect();
                    let extra: Vec<_> = have.difference(&want).collect();
                    return Err(format!(
                        "node {n} ({}) shard {s}: missing {missing:?}, extra {extra:?}",
                        self.nodes[n].id
                    ));
                }
                if v != first {
                    return Err(format!(
                        "node {n} shard {s} disagrees on homes: {v:?} vs {first:?}"
                    ));
                }
            }
        }
        let ids: HashMap<RegistrarId, usize> =
            live.iter().map(|&n| (self.nodes[n].id, n)).collect();
        for (pe, home) in &first {
            let Some(&n) = ids.get(home) else {
                return Err(format!(
                    "{pe:?} is homed at {home}, which is not a live registrar"
                ));
            };
            let supervised = self.nodes[n]
                .shards
                .iter()
                .filter(|s| s.supervises(&pe.0, PoolElementId(pe.1)))
                .count();
            if supervised != 1 {
                return Err(format!(
                    "{home} is home of {pe:?} but {supervised} shards supervise it"
                ));
            }
            let elsewhere: Vec<RegistrarId> = live
                .iter()
                .filter(|&&m| m != n)
                .filter(|&&m| {
                    self.nodes[m]
                        .shards
                        .iter()
                        .any(|s| s.supervises(&pe.0, PoolElementId(pe.1)))
                })
                .map(|&m| self.nodes[m].id)
                .collect();
            if !elsewhere.is_empty() {
                return Err(format!(
                    "{pe:?} (home {home}) is also supervised by {elsewhere:?}"
                ));
            }
        }
        for &n in &live {
            for &h in &live {
                let own = self.nodes[h].shards[0]
                    .handlespace()
                    .home_checksum(self.nodes[h].id);
                let view = self.nodes[n].shards[0]
                    .handlespace()
                    .home_checksum(self.nodes[h].id);
                if own != view {
                    return Err(format!(
                        "node {n} sees checksum {view:#06x} for {}, which says {own:#06x}",
                        self.nodes[h].id
                    ));
                }
            }
        }
        Ok(())
    }

    /// Handle-resolution answer at a node's shard, as PE IDs.
    pub(super) fn resolve(&mut self, node: usize, shard: usize, pool: &str) -> Vec<u32> {
        let Some(r) = self.nodes[node].shards[shard]
            .handlespace()
            .pool(pool.as_bytes())
        else {
            return Vec::new();
        };
        let mut ids: Vec<u32> = r.elements().map(|e| e.id().0).collect();
        ids.sort_unstable();
        ids
    }

    /// ENRP events a node logged.
    pub(super) fn enrp_events(&self, node: usize) -> Vec<&EnrpEvent> {
        self.nodes[node]
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Enrp(e) => Some(e),
                _ => None,
            })
            .collect()
    }
}
