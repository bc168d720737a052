//! Registrar scenarios on a virtual network: several shards, PEs and PUs exchanging real
//! encoded ASAP messages, a virtual clock. No sockets, no sleeps.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use super::*;
use crate::wire::{
    AsapMessage, IpTransport, PolicyParam, PolicyType, PoolElement, RegistrationLife,
    SctpTransport, TransportUse, UserTransport,
};

mod identity;
mod metrics;
mod wire_abuse;

/// Where announces land in the test inbox.
const ANNOUNCE: ConnId = ConnId(u64::MAX);

struct Net {
    now: Instant,
    shards: Vec<Registrar>,
    inbox: HashMap<ConnId, Vec<AsapMessage>>,
    events: Vec<Event>,
}

#[derive(Clone, Copy, Debug)]
struct Client {
    shard: usize,
    conn: ConnId,
    addr: IpAddr,
}

fn addr(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0xc000_0200 + (i % 250) + ((i / 250) << 8)))
}

impl Net {
    fn new(shards: u16, config: Config) -> Self {
        let router = Router::new(shards, 99);
        let shards = (0..shards)
            .map(|s| Registrar::new(config.clone(), ShardId(s), router.clone(), u64::from(s)))
            .collect();
        Self {
            now: Instant::now(),
            shards,
            inbox: HashMap::new(),
            events: Vec::new(),
        }
    }

    fn connect(&mut self, shard: usize, conn: u64, addr: IpAddr) -> Client {
        let info = ConnInfo::new(Transport::Sctp, Protocol::Asap, vec![addr], 40_000);
        let conn = ConnId(conn);
        self.shards[shard].handle_conn_up(self.now, conn, info);
        Client { shard, conn, addr }
    }

    /// A TLS client that proved `identity` with its certificate.
    fn connect_as(&mut self, shard: usize, conn: u64, addr: IpAddr, identity: &str) -> Client {
        let mut info = ConnInfo::new(Transport::Tcp, Protocol::Asap, vec![addr], 40_000);
        info.identity = Some(identity.to_owned());
        let conn = ConnId(conn);
        self.shards[shard].handle_conn_up(self.now, conn, info);
        Client { shard, conn, addr }
    }

    fn disconnect(&mut self, c: Client) {
        self.shards[c.shard].handle_conn_down(self.now, c.conn);
        self.pump();
    }

    fn send(&mut self, c: Client, m: &AsapMessage) {
        let mut bytes = Vec::new();
        m.encode(&mut bytes);
        self.send_raw(c, &bytes);
    }

    /// Delivers `bytes` as the runtime does, lending the connection's send buffer
    /// ([`Registrar::handle_asap_into`]): what the registrar writes into it reaches
    /// the client first (the runtime appends queued transmits after it).
    fn send_raw(&mut self, c: Client, bytes: &[u8]) {
        let mut tx = Vec::new();
        let shard = &mut self.shards[c.shard];
        shard.handle_asap_into(self.now, c.conn, bytes, &mut tx);
        if shard.has_unclocked() {
            shard.handle_written(self.now);
        }
        let mut at = 0;
        while at < tx.len() {
            let crate::wire::framing::Frame::Whole(n) = crate::wire::framing::next(&tx[at..])
            else {
                panic!("the registrar wrote a cut or broken message: {tx:?}");
            };
            let m = AsapMessage::decode(&tx[at..at + n])
                .expect("the registrar writes valid ASAP")
                .message;
            self.inbox.entry(c.conn).or_default().push(m);
            at += n;
        }
        self.pump();
    }

    /// Delivers shard messages until all queues are empty; collects output.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            for i in 0..self.shards.len() {
                while let Some((to, msg)) = self.shards[i].poll_shard() {
                    self.shards[usize::from(to.0)].handle_shard(self.now, msg);
                    moved = true;
                }
                while let Some(t) = self.shards[i].poll_transmit() {
                    let (conn, payload) = match t {
                        Transmit::Asap {
                            conn,
                            payload,
                            served,
                        } => {
                            if let Some(s) = served {
                                self.shards[i].handle_queued(self.now, s);
                            }
                            (conn, payload)
                        }
                        Transmit::Announce { payload } => (ANNOUNCE, payload),
                        other => panic!("a registrar without ENRP sent {other:?}"),
                    };
                    let m = AsapMessage::decode(&payload)
                        .expect("the registrar sends valid ASAP")
                        .message;
                    self.inbox.entry(conn).or_default().push(m);
                }
                while let Some(e) = self.shards[i].poll_event() {
                    self.events.push(e);
                }
            }
            if !moved {
                break;
            }
        }
    }

    /// Moves the clock to `now + d`, firing every timer on the way in order.
    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            let next = self
                .shards
                .iter_mut()
                .filter_map(Registrar::poll_timeout)
                .min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    for s in &mut self.shards {
                        s.handle_timeout(self.now);
                    }
                    self.pump();
                }
                _ => break,
            }
        }
        self.now = end;
    }

    fn take(&mut self, c: Client) -> Vec<AsapMessage> {
        self.inbox.remove(&c.conn).unwrap_or_default()
    }

    fn resolve(&mut self, c: Client, pool: &str, items: Option<u32>) -> AsapMessage {
        self.send(
            c,
            &AsapMessage::HandleResolution {
                subscribe: false,
                handle: pool.into(),
                items,
            },
        );
        let mut got = self.take(c);
        assert_eq!(got.len(), 1, "{got:?}");
        got.remove(0)
    }

    fn resolved_ids(&mut self, c: Client, pool: &str, items: Option<u32>) -> Vec<u32> {
        match self.resolve(c, pool, items) {
            AsapMessage::HandleResolutionResponse {
                elements,
                error: None,
                ..
            } => elements.iter().map(|e| e.id.0).collect(),
            other => panic!("expected a positive answer, got {other:?}"),
        }
    }
}

pub(super) fn element(id: u32, at: IpAddr, policy: PolicyParam) -> PoolElement {
    PoolElement {
        id: PoolElementId(id),
        home: RegistrarId(0),
        registration_life: RegistrationLife(90_000),
        user_transport: UserTransport::Sctp(SctpTransport {
            port: 9000,
            transport_use: TransportUse::DATA_ONLY,
            addresses: vec![at],
        }),
        policy,
        asap_transport: None,
    }
}

fn register(net: &mut Net, c: Client, pool: &str, id: u32, policy: PolicyParam) -> AsapMessage {
    net.send(
        c,
        &AsapMessage::Registration {
            handle: pool.into(),
            element: element(id, c.addr, policy),
        },
    );
    let mut got = net.take(c);
    assert_eq!(got.len(), 1, "{got:?}");
    got.remove(0)
}

fn accepted(m: &AsapMessage) -> bool {
    matches!(
        m,
        AsapMessage::RegistrationResponse {
            rejected: false,
            error: None,
            ..
        }
    )
}

fn config() -> Config {
    Config {
        id: RegistrarId(0x0a0b_0c0d),
        keep_alive_interval: Duration::from_millis(100),
        keep_alive_timeout: Duration::from_millis(100),
        ..Config::default()
    }
}

/// 500 PEs on two shards, each its own association; one PU per shard.
fn big_pool(net: &mut Net, policy: PolicyParam) -> (Vec<Client>, [Client; 2]) {
    let mut pes = Vec::new();
    for i in 1..=500u32 {
        let c = net.connect((i % 2) as usize, u64::from(i), addr(i));
        assert!(accepted(&register(net, c, "pool", i, policy)));
        pes.push(c);
    }
    let pus = [
        net.connect(0, 10_000, addr(9_000)),
        net.connect(1, 10_001, addr(9_001)),
    ];
    (pes, pus)
}

#[test]
fn rfc5352_s3_1_registration_is_answered_and_replicated_to_every_shard() {
    let mut net = Net::new(2, config());
    let (_pes, pus) = big_pool(&mut net, PolicyParam::round_robin());
    for s in &net.shards {
        assert_eq!(
            s.handlespace().pool(b"pool").unwrap().len(),
            500,
            "shard {:?}",
            s.shard()
        );
    }
    // Home PR and ASAP transport filled in by the registrar.
    let e = net.shards[0]
        .handlespace()
        .element(b"pool", PoolElementId(7))
        .unwrap();
    assert_eq!(e.home(), RegistrarId(0x0a0b_0c0d));
    assert_eq!(
        e.param().asap_transport.as_ref().unwrap().addresses,
        vec![addr(7)]
    );
    // Either shard answers: 3 PEs (the default), with the overall policy, rotating.
    for pu in pus {
        let m = net.resolve(pu, "pool", None);
        let AsapMessage::HandleResolutionResponse {
            policy, elements, ..
        } = m
        else {
            panic!()
        };
        assert_eq!(policy, Some(PolicyParam::round_robin()));
        assert_eq!(elements.len(), 3);
        assert!(
            elements.iter().all(|e| e.asap_transport.is_none()),
            "as RSPLIB sends them"
        );
        let first = net.resolved_ids(pu, "pool", None);
        let second = net.resolved_ids(pu, "pool", None);
        assert_eq!(first[1], second[0], "round robin advances by one");
    }
}

#[test]
fn handle_resolution_option_sets_the_count_capped_at_128() {
    let mut net = Net::new(2, config());
    let (_pes, [pu, _]) = big_pool(&mut net, PolicyParam::round_robin());
    assert_eq!(net.resolved_ids(pu, "pool", Some(10)).len(), 10);
    assert_eq!(net.resolved_ids(pu, "pool", Some(u32::MAX)).len(), 128);
    assert_eq!(net.resolved_ids(pu, "pool", Some(0)).len(), 3);
    let m = net.resolve(pu, "nope", None);
    let AsapMessage::HandleResolutionResponse {
        error: Some(e),
        elements,
        ..
    } = m
    else {
        panic!()
    };
    assert_eq!(e.code(), Some(CauseCode::UNKNOWN_POOL_HANDLE));
    assert!(elements.is_empty());
}

#[test]
fn a_raised_items_limit_answers_a_whole_500_pe_pool() {
    let mut net = Net::new(
        2,
        Config {
            resolution_items_limit: 1000,
            ..config()
        },
    );
    let (_pes, [pu, _]) = big_pool(&mut net, PolicyParam::round_robin());
    let mut ids = net.resolved_ids(pu, "pool", Some(1000));
    assert_eq!(ids.len(), 500);
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 500, "every PE once");
}

#[test]
fn least_used_policy_choices_are_served() {
    let mut net = Net::new(2, config());
    let mut pes = Vec::new();
    for i in 1..=20u32 {
        let c = net.connect((i % 2) as usize, u64::from(i), addr(i));
        let load = PolicyParam::new(PolicyType::LEAST_USED, &[1000 - i]).unwrap();
        assert!(accepted(&register(&mut net, c, "lu", i, load)));
        pes.push(c);
    }
    let pu = net.connect(1, 999, addr(999));
    assert_eq!(net.resolved_ids(pu, "lu", Some(3)), vec![20, 19, 18]);
}

#[test]
fn rfc5352_s3_1_pool_rules_reject_with_the_rfc_cause() {
    let mut net = Net::new(2, config());
    let a = net.connect(0, 1, addr(1));
    let b = net.connect(1, 2, addr(2));
    assert!(accepted(&register(
        &mut net,
        a,
        "p",
        1,
        PolicyParam::round_robin()
    )));
    let lu = PolicyParam::new(PolicyType::LEAST_USED, &[5]).unwrap();
    let m = register(&mut net, b, "p", 2, lu);
    let AsapMessage::RegistrationResponse {
        rejected: true,
        error: Some(e),
        id,
        ..
    } = m
    else {
        panic!("{m:?}")
    };
    assert_eq!(
        (id, e.code()),
        (
            PoolElementId(2),
            Some(CauseCode::INCONSISTENT_POOLING_POLICY)
        )
    );
    assert_eq!(e.causes[0].info, PolicyParam::round_robin().to_tlv());
    assert!(
        net.shards[1]
            .handlespace()
            .element(b"p", PoolElementId(2))
            .is_none()
    );
}

#[test]
fn rfc5352_s2_2_1_foreign_addresses_are_refused() {
    let mut net = Net::new(1, config());
    let c = net.connect(0, 1, addr(1));
    let spoof = element(5, addr(77), PolicyParam::round_robin());
    net.send(
        c,
        &AsapMessage::Registration {
            handle: "p".into(),
            element: spoof,
        },
    );
    let m = net.take(c).remove(0);
    let AsapMessage::RegistrationResponse {
        rejected: true,
        error: Some(e),
        ..
    } = m
    else {
        panic!("{m:?}")
    };
    assert_eq!(e.code(), Some(CauseCode::INVALID_VALUES));
    // Loopback only when configured.
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let l = net.connect(0, 2, lo);
    assert!(!accepted(&register(
        &mut net,
        l,
        "p",
        6,
        PolicyParam::round_robin()
    )));
    let mut dev = Net::new(
        1,
        Config {
            allow_loopback: true,
            ..config()
        },
    );
    let l = dev.connect(0, 2, lo);
    assert!(accepted(&register(
        &mut dev,
        l,
        "p",
        6,
        PolicyParam::round_robin()
    )));
}

#[test]
fn rfc5352_s3_2_deregistration_only_from_the_registering_association() {
    let mut net = Net::new(2, config());
    let (pes, [pu, _]) = big_pool(&mut net, PolicyParam::round_robin());
    // PE 8 is on shard 0; an attacker on shard 1 tries to remove it.
    let attacker = net.connect(1, 666, addr(8));
    net.send(
        attacker,
        &AsapMessage::Deregistration {
            handle: "pool".into(),
            id: PoolElementId(8),
        },
    );
    let m = net.take(attacker).remove(0);
    let AsapMessage::DeregistrationResponse { error: Some(e), .. } = m else {
        panic!("{m:?}")
    };
    assert_eq!(e.code(), Some(CauseCode::REJECTED_SECURITY));
    assert!(
        net.events
            .iter()
            .any(|e| matches!(e, Event::SpoofedDeregistration { .. }))
    );
    assert!(
        net.shards
            .iter()
            .all(|s| s.handlespace().element(b"pool", PoolElementId(8)).is_some())
    );
    // The PE itself may.
    let pe8 = pes[7];
    net.send(
        pe8,
        &AsapMessage::Deregistration {
            handle: "pool".into(),
            id: PoolElementId(8),
        },
    );
    let m = net.take(pe8).remove(0);
    assert!(
        matches!(m, AsapMessage::DeregistrationResponse { error: None, .. }),
        "{m:?}"
    );
    assert!(
        net.shards
            .iter()
            .all(|s| s.handlespace().element(b"pool", PoolElementId(8)).is_none())
    );
    for _ in 0..200 {
        assert!(!net.resolved_ids(pu, "pool", Some(5)).contains(&8));
    }
    // Deregistering what is not registered is success.
    net.send(
        pe8,
        &AsapMessage::Deregistration {
            handle: "pool".into(),
            id: PoolElementId(8),
        },
    );
    assert!(matches!(
        net.take(pe8).remove(0),
        AsapMessage::DeregistrationResponse { error: None, .. }
    ));
}

#[test]
fn rfc5352_s3_5_lost_association_removes_its_pes_everywhere() {
    let mut net = Net::new(2, config());
    let (pes, _) = big_pool(&mut net, PolicyParam::round_robin());
    for c in &pes[..100] {
        net.disconnect(*c);
    }
    for s in &net.shards {
        assert_eq!(s.handlespace().pool(b"pool").unwrap().len(), 400);
        assert!(s.handlespace().element(b"pool", PoolElementId(1)).is_none());
    }
    let lost = net.events.iter().filter(|e| {
        matches!(
            e,
            Event::Removed {
                reason: RemovalReason::ConnectionLost,
                ..
            }
        )
    });
    assert_eq!(lost.count(), 100);
}

#[test]
fn keep_alives_flow_and_hung_pes_expire_at_100_plus_100_ms() {
    let mut net = Net::new(2, config());
    let (pes, _) = big_pool(&mut net, PolicyParam::round_robin());
    let (hung, healthy) = pes.split_at(50);
    for round in 0..5 {
        net.advance(Duration::from_millis(100));
        // Every live PE got exactly one keep-alive with its PE Identifier; healthy ones ack.
        for (i, &c) in healthy.iter().enumerate() {
            let id = PoolElementId(51 + i as u32);
            let got = net.take(c);
            assert_eq!(got.len(), 1, "round {round}, PE {id:?}: {got:?}");
            let AsapMessage::EndpointKeepAlive {
                server_id,
                id: Some(ka_id),
                home: false,
                ..
            } = &got[0]
            else {
                panic!("{got:?}")
            };
            assert_eq!((*server_id, *ka_id), (RegistrarId(0x0a0b_0c0d), id));
            net.send(
                c,
                &AsapMessage::EndpointKeepAliveAck {
                    handle: "pool".into(),
                    id,
                },
            );
        }
        for &c in hung {
            net.take(c);
        }
    }
    // The hung PEs got their keep-alive at 100 ms and nothing acknowledged it by 200 ms.
    for s in &net.shards {
        assert_eq!(
            s.handlespace().pool(b"pool").unwrap().len(),
            450,
            "shard {:?}",
            s.shard()
        );
        assert!(
            s.handlespace()
                .element(b"pool", PoolElementId(50))
                .is_none()
        );
        assert!(
            s.handlespace()
                .element(b"pool", PoolElementId(51))
                .is_some()
        );
    }
}

#[test]
fn malformed_messages_get_an_rfc_cause_and_harm_nobody() {
    let mut net = Net::new(2, config());
    let (_pes, [pu, _]) = big_pool(&mut net, PolicyParam::round_robin());
    let bad = net.connect(0, 777, addr(777));
    // Truncated, a parameter running past the message, an unknown type that asks for a
    // report, and garbage.
    let mut reg = Vec::new();
    AsapMessage::Registration {
        handle: "pool".into(),
        element: element(9, addr(777), PolicyParam::round_robin()),
    }
    .encode(&mut reg);
    let mut overrun = reg.clone();
    overrun[6] = 0x40; // pool handle length 64 in a 56-byte message
    let cases: Vec<(Vec<u8>, CauseCode)> = vec![
        (reg[..reg.len() - 8].to_vec(), CauseCode::INVALID_VALUES),
        (overrun, CauseCode::INVALID_VALUES),
        (vec![0x4f, 0, 0, 4], CauseCode::UNRECOGNIZED_MESSAGE),
        (vec![0x01, 0xff, 0xff], CauseCode::INVALID_VALUES),
    ];
    for (bytes, cause) in cases {
        net.send_raw(bad, &bytes);
        let got = net.take(bad);
        let [AsapMessage::Error { error }] = &got[..] else {
            panic!("{bytes:02x?}: {got:?}")
        };
        assert_eq!(error.code(), Some(cause), "{bytes:02x?}");
    }
    // An unknown type with action bits 00 is dropped silently; an ERROR is never answered.
    net.send_raw(bad, &[0x3f, 0, 0, 4]);
    net.send_raw(bad, &[0x0e, 0, 0, 5, 0]);
    assert!(net.take(bad).is_empty());
    // Everyone else is unaffected.
    assert_eq!(net.resolved_ids(pu, "pool", Some(500)).len(), 128);
    assert_eq!(
        net.shards[0].handlespace().pool(b"pool").unwrap().len(),
        500
    );
}

/// Two shards and PE 1 of pool "p" registered for 2 s, keep-alives too rare to matter.
fn pe_registered_for_two_seconds() -> (Net, Client) {
    let mut net = Net::new(
        2,
        Config {
            keep_alive_interval: Duration::from_secs(3600),
            ..config()
        },
    );
    let c = net.connect(1, 1, addr(1));
    let mut e = element(1, addr(1), PolicyParam::round_robin());
    e.registration_life = RegistrationLife(2_000);
    net.send(
        c,
        &AsapMessage::Registration {
            handle: "p".into(),
            element: e,
        },
    );
    assert!(accepted(&net.take(c)[0]));
    (net, c)
}

#[test]
fn registration_life_expires_and_the_pe_is_told() {
    let (mut net, c) = pe_registered_for_two_seconds();
    net.advance(Duration::from_millis(1_999));
    assert!(
        net.shards[0]
            .handlespace()
            .element(b"p", PoolElementId(1))
            .is_some()
    );
    net.advance(Duration::from_millis(2));
    assert!(
        net.shards
            .iter()
            .all(|s| s.handlespace().pool(b"p").is_none())
    );
    assert!(matches!(
        net.take(c)[..],
        [AsapMessage::DeregistrationResponse { error: None, .. }]
    ));
}

#[test]
fn rfc5352_s3_5_unreachable_reports_from_three_associations_probe_then_remove() {
    let mut net = Net::new(2, config());
    let (_pes, _pus) = big_pool(&mut net, PolicyParam::round_robin());
    for i in 0..3 {
        assert!(
            net.shards[0]
                .handlespace()
                .element(b"pool", PoolElementId(4))
                .is_some(),
            "after {i}"
        );
        let report = AsapMessage::EndpointUnreachable {
            handle: "pool".into(),
            id: PoolElementId(4),
        };
        // Three reporters (one reporter's repeats count once).
        let reporter = net.connect(i % 2, 20_000 + i as u64, addr(9_100 + i as u32));
        net.send(reporter, &report);
    }
    // PE 4 answers keep-alives but not this probe: removed once it is overdue.
    net.advance(net.shards[0].config().keep_alive_timeout + Duration::from_millis(20));
    assert!(
        net.shards
            .iter()
            .all(|s| s.handlespace().element(b"pool", PoolElementId(4)).is_none())
    );
}

#[test]
fn tcp_user_transport_pools_work_too() {
    let mut net = Net::new(1, config());
    let c = net.connect(0, 1, addr(1));
    let mut e = element(1, addr(1), PolicyParam::round_robin());
    e.user_transport = UserTransport::Tcp(IpTransport {
        port: 80,
        reserved: 0,
        address: addr(1),
    });
    net.send(
        c,
        &AsapMessage::Registration {
            handle: "web".into(),
            element: e,
        },
    );
    assert!(accepted(&net.take(c)[0]));
    assert_eq!(net.resolved_ids(c, "web", None), vec![1]);
}

#[test]
fn with_enrp_a_pe_rsplib_peers_could_not_parse_is_refused() {
    let register_dccp = |config: Config| {
        let mut net = Net::new(1, config);
        let c = net.connect(0, 1, addr(1));
        let mut e = element(1, addr(1), PolicyParam::round_robin());
        e.user_transport = UserTransport::Dccp(crate::wire::DccpTransport {
            port: 80,
            reserved: 0,
            service_code: 7,
            address: addr(1),
        });
        net.send(
            c,
            &AsapMessage::Registration {
                handle: "dccp".into(),
                element: e,
            },
        );
        net.take(c).remove(0)
    };
    assert!(accepted(&register_dccp(config())), "alone: any transport");
    let mut with_enrp = config();
    with_enrp.enrp = Some(crate::enrp::Config::default());
    let m = register_dccp(with_enrp.clone());
    let AsapMessage::RegistrationResponse {
        rejected: true,
        error: Some(error),
        ..
    } = m
    else {
        panic!("{m:?}");
    };
    assert_eq!(error.code(), Some(CauseCode::INVALID_VALUES));
    with_enrp.enrp.as_mut().unwrap().rsplib_compatible = false;
    assert!(accepted(&register_dccp(with_enrp)), "switched off");
}

#[test]
fn rfc5352_s2_2_1_foreign_addresses_are_stripped_from_what_pus_get() {
    let mut net = Net::new(2, config());
    let c = net.connect(0, 1, addr(1));
    let mut e = element(1, addr(1), PolicyParam::round_robin());
    if let UserTransport::Sctp(s) = &mut e.user_transport {
        s.addresses.push(addr(66));
    }
    net.send(
        c,
        &AsapMessage::Registration {
            handle: "p".into(),
            element: e,
        },
    );
    assert!(accepted(&net.take(c)[0]));
    let pu = net.connect(1, 2, addr(2));
    let AsapMessage::HandleResolutionResponse { elements, .. } = net.resolve(pu, "p", None) else {
        panic!()
    };
    let UserTransport::Sctp(s) = &elements[0].user_transport else {
        panic!()
    };
    assert_eq!(s.addresses, vec![addr(1)]);
}

#[test]
fn rfc5352_s3_6_server_announces_when_asked_from_one_shard() {
    use crate::wire::ServerTransport;
    let sctp = SctpTransport {
        port: 3863,
        transport_use: TransportUse::DATA_ONLY,
        addresses: vec![addr(1)],
    };
    let config = Config {
        announce_interval: Some(Duration::from_secs(1)),
        announce_transports: vec![ServerTransport::Sctp(sctp.clone())],
        ..config()
    };
    let mut net = Net::new(2, config);
    for s in &mut net.shards {
        s.handle_timeout(net.now);
    }
    net.pump();
    net.advance(Duration::from_millis(3_500));
    let got = net.inbox.remove(&ANNOUNCE).unwrap_or_default();
    assert_eq!(
        got.len(),
        4,
        "at 0, 1, 2 and 3 s, from shard 0 only: {got:?}"
    );
    let AsapMessage::ServerAnnounce {
        server_id,
        transports,
        ..
    } = &got[0]
    else {
        panic!()
    };
    assert_eq!(
        (*server_id, transports.clone()),
        (RegistrarId(0x0a0b_0c0d), vec![ServerTransport::Sctp(sctp)])
    );
    // Off by default.
    let mut quiet = Net::new(1, super::tests::config());
    quiet.shards[0].handle_timeout(quiet.now);
    quiet.pump();
    quiet.advance(Duration::from_secs(10));
    assert!(!quiet.inbox.contains_key(&ANNOUNCE));
}

#[test]
fn client_pool_elements_live_through_keep_alives_and_reregistrations() {
    use crate::client::{PeEvent, PeState, PoolElementClient, Resolved, resolution_request};
    let mut net = Net::new(2, config());
    let mut pes: Vec<(Client, PoolElementClient)> = (1..=20u32)
        .map(|i| {
            let c = net.connect((i % 2) as usize, u64::from(i), addr(i));
            let mut e = element(i, addr(i), PolicyParam::round_robin());
            e.registration_life = RegistrationLife(3_000);
            (
                c,
                PoolElementClient::new("pool".into(), e, Duration::from_secs(1)),
            )
        })
        .collect();
    // Runs every client until nothing more is said, like a PE's event loop.
    let run = |net: &mut Net, pes: &mut Vec<(Client, PoolElementClient)>| {
        let mut events = Vec::new();
        loop {
            let mut quiet = true;
            for (c, pe) in pes.iter_mut() {
                pe.handle_timeout(net.now);
                while let Some(bytes) = pe.poll_transmit() {
                    net.send_raw(*c, &bytes);
                    quiet = false;
                }
                for m in net.take(*c) {
                    events.extend(pe.handle_message(net.now, &m));
                    quiet = false;
                }
            }
            if quiet {
                return events;
            }
        }
    };
    for (_, pe) in pes.iter_mut() {
        pe.register(net.now);
    }
    let events = run(&mut net, &mut pes);
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, PeEvent::Registered { .. }))
            .count(),
        20
    );
    pes[0].1.set_hung(true);
    // Ten seconds: 100 keep-alive rounds, 10 re-registrations, a 3 s life that would
    // have ended three times over.
    for _ in 0..100 {
        net.advance(Duration::from_millis(100));
        run(&mut net, &mut pes);
    }
    assert!(
        pes[1..]
            .iter()
            .all(|(_, pe)| pe.state() == PeState::Registered)
    );
    let pu = net.connect(1, 99, addr(99));
    let mut req = Vec::new();
    resolution_request(&"pool".into(), Some(50), &mut req);
    net.send_raw(pu, &req);
    let Some(Resolved::Elements { elements, .. }) = Resolved::from_message(net.take(pu).remove(0))
    else {
        panic!()
    };
    let mut ids: Vec<u32> = elements.iter().map(|e| e.id.0).collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        (2..=20).collect::<Vec<_>>(),
        "the hung PE 1 is gone, the others live"
    );
    // Deregistration through the client.
    pes[1].1.deregister();
    let events = run(&mut net, &mut pes);
    assert!(events.contains(&PeEvent::Deregistered));
    assert_eq!(net.shards[0].handlespace().pool(b"pool").unwrap().len(), 18);
}

/// A network of `shards` with pool "p" of one round-robin PE, registered through
/// connection 1 on shard 0.
fn one_pe_pool(shards: u16) -> (Net, Client) {
    let mut net = Net::new(shards, config());
    let pe = net.connect(0, 1, addr(1));
    assert!(accepted(&register(
        &mut net,
        pe,
        "p",
        1,
        PolicyParam::round_robin()
    )));
    (net, pe)
}

fn resolution_request(pool: &str) -> Vec<u8> {
    let mut req = Vec::new();
    AsapMessage::HandleResolution {
        subscribe: false,
        handle: pool.into(),
        items: None,
    }
    .encode(&mut req);
    req
}

#[test]
fn answers_written_into_the_send_buffer_encode_like_queued_ones() {
    // Two registrars with the same seed and pool: one answers through the queue, the
    // other into the runtime's buffer; the bytes must be the same, answer after answer
    // (the round robin advancing alike).
    let mut queued = Net::new(1, config());
    let mut direct = Net::new(1, config());
    for net in [&mut queued, &mut direct] {
        for i in 1..=5 {
            let c = net.connect(0, u64::from(i), addr(i));
            assert!(accepted(&register(
                net,
                c,
                "p",
                i,
                PolicyParam::round_robin()
            )));
        }
    }
    let pu = ConnId(100);
    for net in [&mut queued, &mut direct] {
        net.connect(0, pu.0, addr(100));
    }
    let req = resolution_request("p");
    let now = queued.now;
    for _ in 0..7 {
        queued.shards[0].handle_asap(now, pu, &req);
        let Some(Transmit::Asap { payload, .. }) = queued.shards[0].poll_transmit() else {
            panic!("a queued answer");
        };
        let mut tx = Vec::new();
        direct.shards[0].handle_asap_into(now, pu, &req, &mut tx);
        assert!(direct.shards[0].poll_transmit().is_none());
        assert_eq!(tx, payload);
    }
}

#[test]
fn an_answer_is_not_written_ahead_of_one_still_queued() {
    let (mut net, _) = one_pe_pool(1);
    let pu = net.connect(0, 2, addr(2));
    let now = net.now;
    let shard = &mut net.shards[0];
    // A negative answer (no such pool) waits in the queue...
    shard.handle_asap(now, pu.conn, &resolution_request("none"));
    // ... so the positive one after it is queued behind it, not written ahead.
    let mut tx = Vec::new();
    shard.handle_asap_into(now, pu.conn, &resolution_request("p"), &mut tx);
    assert!(tx.is_empty(), "written ahead of a queued answer");
    let mut order = Vec::new();
    while let Some(t) = shard.poll_transmit() {
        let Transmit::Asap { payload, .. } = t else {
            panic!("{t:?}")
        };
        match AsapMessage::decode(&payload).unwrap().message {
            AsapMessage::HandleResolutionResponse { error, .. } => order.push(error.is_none()),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(order, [false, true]);
    // With the queue drained, the next answer goes into the buffer; a negative one
    // (no such pool) still goes to the queue and leaves the buffer as it was.
    shard.handle_asap_into(now, pu.conn, &resolution_request("p"), &mut tx);
    let written = tx.len();
    assert!(written > 0);
    shard.handle_asap_into(now, pu.conn, &resolution_request("none"), &mut tx);
    assert_eq!(tx.len(), written);
    assert!(shard.poll_transmit().is_some());
}
