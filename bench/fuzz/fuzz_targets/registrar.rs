//! Stateful fuzzing of the sans-IO registrar: two or three [`Registrar`] shards wired
//! together as the runtime's mesh wires them (per pair of shards a FIFO queue), driven by
//! an operation sequence read from the input: connections coming up and going down (ASAP
//! over SCTP or TCP, ENRP to shard 0, the registrar's own outbound connects answered
//! either way), ASAP and ENRP messages both as arbitrary bytes and as well-formed
//! messages with arbitrary fields over a small set of pools, PE ids and peer ids (so
//! inputs reach registration, takeover and audit paths), the clock moving (timers), and
//! shard messages delivered in arbitrary interleavings.
//!
//! Oracle, besides "never panics":
//! - every transmitted ASAP or ENRP payload decodes with our own codec, and its length
//!   field equals its length without the final padding (RFC 5354 §2);
//! - one input produces a bounded number of transmits and shard messages;
//! - once every shard queue is drained, every shard's replica holds the same PEs (same
//!   encoded records, homes), each home's PE checksum equals the sum recomputed from
//!   the PEs, and the shards' writers together write exactly the replica's PEs.
#![no_main]

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use rserpool::enrp::{self, PeerAddress};
use rserpool::handlespace::{ChecksumSum, Handlespace};
use rserpool::registrar::{
    Config, ConnId, ConnInfo, Protocol, Registrar, Router, ShardId, ShardMsg, Transmit, Transport,
};
use rserpool::wire::{
    AsapMessage, EnrpIds, EnrpMessage, IpTransport, OperationError, PolicyParam, PolicyType,
    PoolElement, PoolEntry, RegistrationLife, SctpTransport, ServerInformation, ServerTransport,
    TransportUse, UpdateAction, UserTransport,
};
use rserpool::{PoolElementId, PoolHandle, RegistrarId};

/// Operations per input: enough to register, churn and take over; few enough that an
/// input stays fast.
const MAX_OPS: usize = 64;
/// Runtime connection ids the harness uses (1..=CONNS).
const CONNS: u64 = 6;
/// Most transmits or shard messages one input (a message, a timer turn, a connection
/// event) may produce, per PE or connection held plus this: a timer turn sends a
/// keep-alive per supervised PE, a table response a message per chunk; anything beyond
/// is a runaway queue.
const OUTPUT_SLACK: usize = 64;

/// Our registrar's id; peers use 2..=4 so takeovers both ways have candidates.
const ME: u32 = 3;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let _ = run(&mut u);
});

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let mut h = Harness::new(u)?;
    for _ in 0..MAX_OPS {
        if u.is_empty() {
            break;
        }
        h.step(u)?;
    }
    h.drain_all();
    h.check_replicas();
    Ok(())
}

struct Harness {
    now: Instant,
    shards: Vec<Registrar>,
    /// `queues[from][to]`: shard messages in flight, FIFO per pair as the mesh keeps them.
    queues: Vec<Vec<VecDeque<ShardMsg>>>,
    /// Per runtime connection: its shard and protocol while it is up.
    conns: BTreeMap<u64, (usize, Protocol)>,
    /// Outbound connections asked for with `Transmit::Connect`, not yet answered.
    connecting: Vec<(ConnId, Protocol)>,
    /// Outputs of the current input (one `handle_*` call and what `collect` fed back),
    /// for the bound.
    outputs: usize,
}

impl Harness {
    fn new(u: &mut Unstructured<'_>) -> Result<Self> {
        let n = u.int_in_range(1..=3u16)?;
        let with_enrp = u.arbitrary::<bool>()?;
        let mut config = Config {
            id: RegistrarId(ME),
            allow_loopback: true,
            enforce_lifetime: u.arbitrary()?,
            announce_interval: u.arbitrary::<bool>()?.then_some(Duration::from_secs(1)),
            ..Config::default()
        };
        config.handlespace.max_pool_elements = 8;
        config.handlespace.max_elements = 32;
        if with_enrp {
            config.enrp = Some(enrp::Config {
                peers: vec![PeerAddress {
                    transport: Transport::Tcp,
                    addr: SocketAddr::new(addr(9), 9901),
                }],
                table_chunk_elements: 2,
                ..enrp::Config::default()
            });
        }
        let router = Router::new(n, 7);
        let shards = (0..n)
            .map(|s| Registrar::new(config.clone(), ShardId(s), router.clone(), u64::from(s)))
            .collect::<Vec<_>>();
        let now = Instant::now();
        let mut h = Self {
            now,
            queues: vec![vec![VecDeque::new(); shards.len()]; shards.len()],
            shards,
            conns: BTreeMap::new(),
            connecting: Vec::new(),
            outputs: 0,
        };
        for s in &mut h.shards {
            s.handle_timeout(now);
        }
        h.collect();
        Ok(h)
    }

    fn step(&mut self, u: &mut Unstructured<'_>) -> Result<()> {
        let now = self.now;
        match u.int_in_range(0..=9u8)? {
            0 => {
                let id = u.int_in_range(1..=CONNS)?;
                if self.conns.contains_key(&id) {
                    return Ok(());
                }
                let protocol = if u.ratio(1, 4)? {
                    Protocol::Enrp
                } else {
                    Protocol::Asap
                };
                // ENRP lives on shard 0; the runtime accepts it there.
                let shard = match protocol {
                    Protocol::Enrp => 0,
                    Protocol::Asap => u.choose_index(self.shards.len())?,
                };
                let transport = if u.arbitrary()? {
                    Transport::Tcp
                } else {
                    Transport::Sctp
                };
                let peer = addr(u.int_in_range(1..=4)?);
                let info = ConnInfo::new(transport, protocol, vec![peer], 40_000);
                self.conns.insert(id, (shard, protocol));
                self.shards[shard].handle_conn_up(now, ConnId(id), info);
            }
            1 => {
                let id = u.int_in_range(1..=CONNS)?;
                if let Some((shard, _)) = self.conns.remove(&id) {
                    self.shards[shard].handle_conn_down(now, ConnId(id));
                }
            }
            2 | 3 => {
                let Some((id, shard, protocol)) = self.pick_conn(u)? else {
                    return Ok(());
                };
                let bytes = match (protocol, u.int_in_range(0..=3u8)?) {
                    (_, 0) => u.arbitrary::<Vec<u8>>()?,
                    (Protocol::Asap, _) => encode_asap(&asap_message(u)?),
                    (Protocol::Enrp, _) => encode_enrp(&enrp_message(u)?),
                };
                match protocol {
                    // Half through the runtime's direct path: what is written into the
                    // send buffer must be whole, valid messages.
                    Protocol::Asap if u.arbitrary()? => {
                        let mut tx = Vec::new();
                        let shard = &mut self.shards[shard];
                        shard.handle_asap_into(now, id, &bytes, &mut tx);
                        if shard.has_unclocked() {
                            shard.handle_written(now);
                        }
                        let mut at = 0;
                        while at < tx.len() {
                            let Some(l) = tx.get(at + 2..at + 4) else {
                                panic!("a cut header in {tx:02x?}");
                            };
                            let end = at + usize::from(u16::from_be_bytes([l[0], l[1]]))
                                .next_multiple_of(4);
                            assert!(end <= tx.len(), "a cut message in {tx:02x?}");
                            check_asap(&tx[at..end]);
                            self.outputs += 1;
                            at = end;
                        }
                    }
                    Protocol::Asap => self.shards[shard].handle_asap(now, id, &bytes),
                    Protocol::Enrp => self.shards[shard].handle_enrp(now, id, &bytes),
                }
            }
            4 => {
                // The registrar's own connects: up (over the first transport) or failed.
                if self.connecting.is_empty() {
                    return Ok(());
                }
                let i = u.choose_index(self.connecting.len())?;
                let (conn, protocol) = self.connecting.swap_remove(i);
                if u.arbitrary()? {
                    let info = ConnInfo::new(Transport::Tcp, protocol, vec![addr(9)], 9901);
                    self.conns.insert(conn.0, (0, protocol));
                    self.shards[0].handle_conn_up(now, conn, info);
                } else {
                    self.shards[0].handle_conn_down(now, conn);
                }
            }
            5 | 6 => {
                let ms = u.int_in_range(0..=12_000u64)?;
                self.advance(Duration::from_millis(ms));
            }
            7 => {
                // Deliver a few shard messages from one pair: other pairs stay in flight.
                let n = self.shards.len();
                let (from, to) = (u.choose_index(n)?, u.choose_index(n)?);
                for _ in 0..u.int_in_range(1..=4u8)? {
                    let Some(msg) = self.queues[from][to].pop_front() else {
                        break;
                    };
                    self.shards[to].handle_shard(now, msg);
                    self.collect();
                }
            }
            8 => {
                self.drain_all();
                self.check_replicas();
            }
            _ => {
                let from = SocketAddr::new(addr(u.int_in_range(1..=4)?), 9901);
                let bytes = match u.arbitrary::<bool>()? {
                    true => u.arbitrary::<Vec<u8>>()?,
                    false => encode_enrp(&enrp_message(u)?),
                };
                self.shards[0].handle_enrp_multicast(now, from, &bytes);
            }
        }
        self.collect();
        Ok(())
    }

    fn pick_conn(&self, u: &mut Unstructured<'_>) -> Result<Option<(ConnId, usize, Protocol)>> {
        if self.conns.is_empty() {
            return Ok(None);
        }
        let i = u.choose_index(self.conns.len())?;
        let (&id, &(shard, protocol)) = self.conns.iter().nth(i).expect("index in range");
        Ok(Some((ConnId(id), shard, protocol)))
    }

    /// Fires every timer up to `now + d`, in order, as the runtime does.
    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            let next = self.shards.iter_mut().filter_map(Registrar::poll_timeout).min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    for s in &mut self.shards {
                        s.handle_timeout(self.now);
                    }
                    self.collect();
                }
                _ => break,
            }
        }
        self.now = end;
    }

    fn drain_all(&mut self) {
        loop {
            let mut moved = false;
            for from in 0..self.shards.len() {
                for to in 0..self.shards.len() {
                    while let Some(msg) = self.queues[from][to].pop_front() {
                        self.shards[to].handle_shard(self.now, msg);
                        self.collect();
                        moved = true;
                    }
                }
            }
            if !moved {
                break;
            }
        }
    }

    /// Takes every shard's outputs: shard messages into the queues, transmits checked.
    fn collect(&mut self) {
        for i in 0..self.shards.len() {
            while let Some((to, msg)) = self.shards[i].poll_shard() {
                let to = usize::from(to.0);
                assert!(to < self.shards.len(), "shard message to shard {to}");
                self.queues[i][to].push_back(msg);
                self.outputs += 1;
            }
            while let Some(t) = self.shards[i].poll_transmit() {
                self.outputs += 1;
                match t {
                    Transmit::Asap {
                        payload, served, ..
                    } => {
                        if let Some(s) = served {
                            self.shards[i].handle_queued(self.now, s);
                        }
                        check_asap(&payload);
                        self.shards[i].recycle(payload);
                    }
                    Transmit::Announce { payload } => check_asap(&payload),
                    Transmit::Enrp { payload, .. } | Transmit::EnrpMulticast { payload } => {
                        check_enrp(&payload)
                    }
                    Transmit::Connect { conn, protocol, .. } => {
                        assert_eq!(i, 0, "only the ENRP shard connects");
                        assert!(conn.is_outbound(), "connect with a runtime id {conn:?}");
                        self.connecting.push((conn, protocol));
                    }
                    Transmit::Close { conn } => {
                        // The runtime closes it (or gives up connecting) and reports it
                        // down.
                        let pending = self.connecting.iter().position(|&(c, _)| c == conn);
                        if let Some(p) = pending.filter(|_| i == 0) {
                            self.connecting.swap_remove(p);
                            self.shards[i].handle_conn_down(self.now, conn);
                        } else if self.conns.get(&conn.0).is_some_and(|&(s, _)| s == i) {
                            self.conns.remove(&conn.0);
                            self.shards[i].handle_conn_down(self.now, conn);
                        }
                    }
                }
            }
            while self.shards[i].poll_event().is_some() {}
        }
        self.check_outputs();
        self.outputs = 0;
    }

    /// Outputs stay proportional to what the registrar holds.
    fn check_outputs(&self) {
        let held: usize = self
            .shards
            .iter()
            .map(|s| s.handlespace().element_count() + s.gauges().connections)
            .sum();
        let bound = OUTPUT_SLACK + 8 * held;
        assert!(
            self.outputs <= bound,
            "{} outputs from one input while holding {held}",
            self.outputs
        );
        let in_flight: usize = self.queues.iter().flatten().map(VecDeque::len).sum();
        assert!(
            in_flight <= 16 * (OUTPUT_SLACK + 8 * held) * MAX_OPS,
            "{in_flight} shard messages in flight"
        );
        for s in &self.shards {
            let g = s.gauges();
            assert!(
                g.connections <= CONNS as usize + 64,
                "{} connections on shard {:?}",
                g.connections,
                s.shard()
            );
        }
    }

    /// With every queue drained, every replica is the same handlespace.
    fn check_replicas(&self) {
        let first = snapshot(self.shards[0].handlespace());
        for s in &self.shards[1..] {
            let other = snapshot(s.handlespace());
            assert_eq!(
                first,
                other,
                "replica of {:?} differs from shard 0's",
                s.shard()
            );
        }
        let written: usize = self
            .shards
            .iter()
            .map(|s| s.gauges().written_elements)
            .sum();
        assert_eq!(
            written,
            first.len(),
            "writers hold other PEs than the replicas"
        );
        for s in &self.shards {
            check_checksums(s.handlespace());
        }
    }
}

/// Every PE of a replica: (handle, id) → (home, encoded record).
fn snapshot(hs: &Handlespace) -> BTreeMap<(Vec<u8>, u32), (u32, Vec<u8>)> {
    let mut m = BTreeMap::new();
    for pool in hs.pools() {
        for e in pool.elements() {
            let key = (pool.handle().as_bytes().to_vec(), e.id().0);
            m.insert(key, (e.home().0, e.encoded().to_vec()));
        }
    }
    assert_eq!(m.len(), hs.element_count(), "element count");
    m
}

/// Each home's kept checksum sum and count equal those recomputed from its PEs.
fn check_checksums(hs: &Handlespace) {
    let mut sums: BTreeMap<u32, (ChecksumSum, usize)> = BTreeMap::new();
    for pool in hs.pools() {
        for e in pool.elements() {
            let s = sums.entry(e.home().0).or_default();
            s.0 += ChecksumSum::of_element(pool.handle(), e.id());
            s.1 += 1;
        }
    }
    for (&home, &(sum, count)) in &sums {
        let home = RegistrarId(home);
        assert_eq!(hs.home_sum(home), sum, "checksum of home {home:?}");
        assert_eq!(hs.home_count(home), count, "PE count of home {home:?}");
    }
    for (home, count) in hs.homes() {
        if count > 0 {
            assert!(
                sums.contains_key(&home.0),
                "home {home:?} counted but holds no PE"
            );
        }
    }
}

fn check_asap(payload: &[u8]) {
    check_length(payload);
    if let Err(e) = AsapMessage::decode(payload) {
        panic!("the registrar sent ASAP it cannot decode ({e:?}): {payload:02x?}");
    }
}

fn check_enrp(payload: &[u8]) {
    check_length(payload);
    if let Err(e) = EnrpMessage::decode(payload) {
        panic!("the registrar sent ENRP it cannot decode ({e:?}): {payload:02x?}");
    }
}

fn check_length(payload: &[u8]) {
    assert!(payload.len() >= 4, "short message {payload:02x?}");
    let field = usize::from(u16::from_be_bytes([payload[2], payload[3]]));
    // The Message Length excludes the final padding (RFC 5354 §2); RSPLIB rejects a
    // payload that is not exactly pad4(Message Length).
    assert!(
        field >= 4,
        "length field below the header in {payload:02x?}"
    );
    assert_eq!(
        field.next_multiple_of(4),
        payload.len(),
        "length field of {payload:02x?}"
    );
}

fn encode_asap(m: &AsapMessage) -> Vec<u8> {
    let mut b = Vec::new();
    m.encode(&mut b);
    b
}

fn encode_enrp(m: &EnrpMessage) -> Vec<u8> {
    let mut b = Vec::new();
    m.encode(&mut b);
    b
}

fn addr(i: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, i))
}

fn handle(u: &mut Unstructured<'_>) -> Result<PoolHandle> {
    Ok(match u.int_in_range(0..=7u8)? {
        0 => PoolHandle::new(&u.arbitrary::<Vec<u8>>()?),
        i => {
            PoolHandle::from(["A", "B", "EchoPool", "x", "pool-5", "P6", "P7"][usize::from(i - 1)])
        }
    })
}

fn pe_id(u: &mut Unstructured<'_>) -> Result<PoolElementId> {
    Ok(PoolElementId(match u.int_in_range(0..=9u8)? {
        0 => u.arbitrary()?,
        i => u32::from(i),
    }))
}

fn registrar_id(u: &mut Unstructured<'_>) -> Result<RegistrarId> {
    Ok(RegistrarId(match u.int_in_range(0..=5u8)? {
        5 => u.arbitrary()?,
        i => u32::from(i),
    }))
}

fn policy(u: &mut Unstructured<'_>) -> Result<PolicyParam> {
    let kind = *u.choose(PolicyType::ALL)?;
    let n = u.int_in_range(0..=2usize)?;
    let values: Vec<u32> = (0..n).map(|_| u.arbitrary()).collect::<Result<_>>()?;
    Ok(PolicyParam::new(kind, &values).unwrap_or_else(PolicyParam::round_robin))
}

fn element(u: &mut Unstructured<'_>) -> Result<PoolElement> {
    let at = addr(u.int_in_range(1..=4)?);
    let port = u.arbitrary()?;
    let user_transport = match u.int_in_range(0..=3u8)? {
        0 => UserTransport::Tcp(IpTransport {
            port,
            reserved: 0,
            address: at,
        }),
        1 => UserTransport::Udp(IpTransport {
            port,
            reserved: 0,
            address: at,
        }),
        _ => UserTransport::Sctp(SctpTransport {
            port,
            transport_use: TransportUse::DATA_ONLY,
            addresses: vec![at],
        }),
    };
    Ok(PoolElement {
        id: pe_id(u)?,
        home: registrar_id(u)?,
        registration_life: RegistrationLife(match u.int_in_range(0..=3u8)? {
            0 => u.arbitrary()?,
            1 => u32::MAX,
            _ => 30_000,
        }),
        user_transport,
        policy: policy(u)?,
        asap_transport: None,
    })
}

fn asap_message(u: &mut Unstructured<'_>) -> Result<AsapMessage> {
    Ok(match u.int_in_range(0..=5u8)? {
        0 | 1 => AsapMessage::Registration {
            handle: handle(u)?,
            element: element(u)?,
        },
        2 => AsapMessage::Deregistration {
            handle: handle(u)?,
            id: pe_id(u)?,
        },
        3 => AsapMessage::HandleResolution {
            subscribe: u.arbitrary()?,
            handle: handle(u)?,
            items: u.arbitrary()?,
        },
        4 => AsapMessage::EndpointKeepAliveAck {
            handle: handle(u)?,
            id: pe_id(u)?,
        },
        _ => AsapMessage::EndpointUnreachable {
            handle: handle(u)?,
            id: pe_id(u)?,
        },
    })
}

fn enrp_message(u: &mut Unstructured<'_>) -> Result<EnrpMessage> {
    let ids = EnrpIds {
        sender: registrar_id(u)?,
        receiver: if u.arbitrary()? {
            RegistrarId(ME)
        } else {
            registrar_id(u)?
        },
    };
    Ok(match u.int_in_range(0..=8u8)? {
        0 | 1 => EnrpMessage::Presence {
            ids,
            reply_required: u.arbitrary()?,
            checksum: u.arbitrary()?,
            info: Some(ServerInformation {
                server_id: ids.sender,
                transport: ServerTransport::Tcp(IpTransport {
                    port: 9901,
                    reserved: 0,
                    address: addr(u.int_in_range(1..=4)?),
                }),
            }),
        },
        2 => EnrpMessage::HandleTableRequest {
            ids,
            owned_only: u.arbitrary()?,
        },
        3 => {
            let n = u.int_in_range(0..=3u8)?;
            let mut entries = Vec::new();
            for _ in 0..n {
                let k = u.int_in_range(1..=3u8)?;
                entries.push(PoolEntry {
                    handle: handle(u)?,
                    elements: (0..k).map(|_| element(u)).collect::<Result<_>>()?,
                });
            }
            EnrpMessage::HandleTableResponse {
                ids,
                reject: u.ratio(1, 8)?,
                more: u.arbitrary()?,
                entries,
            }
        }
        4 | 5 => EnrpMessage::HandleUpdate {
            ids,
            takeover_suggested: u.arbitrary()?,
            action: if u.arbitrary()? {
                UpdateAction::ADD_PE
            } else {
                UpdateAction::DEL_PE
            },
            handle: handle(u)?,
            element: element(u)?,
        },
        6 => EnrpMessage::InitTakeover {
            ids,
            target: registrar_id(u)?,
        },
        7 => EnrpMessage::InitTakeoverAck {
            ids,
            target: registrar_id(u)?,
        },
        _ => match u.int_in_range(0..=2u8)? {
            0 => EnrpMessage::TakeoverServer {
                ids,
                target: registrar_id(u)?,
            },
            1 => EnrpMessage::ListRequest { ids },
            _ => EnrpMessage::Error {
                ids,
                error: OperationError { causes: Vec::new() },
            },
        },
    })
}
