//! The end-to-end checks, run over TCP on the host and over SCTP in the SCTP lab.

use std::collections::BTreeSet;

use std::time::Duration;

use rserpool::PoolElementId;
use rserpool::enrp::{self, PeerAddress};
use rserpool::registrar::{Config, Transport};
use rserpool::wire::{AsapMessage, CauseCode, PPID_ASAP, PPID_ENRP};
use rserpool_shards::net::sctp;
use rserpool_shards::runtime::{self, StartError};
use rserpool_shards::{Endpoint, EnrpEndpoints, RuntimeConfig};

use super::{
    GUARD, KEEP_ALIVE_TIMEOUT, Kind, Lab, NO_EXPIRY, Peer, assert_accepted, element, encode,
    register_all, registrar_config, start_registrar, wait_until,
};

/// The PEs of a pool of `size`: round robin hands out the next PE per resolution
/// (RFC 5356 §3.1.1), so `size` resolutions of one PE each visit every PE once.
fn scan(pu: &Peer, pool: &str, size: usize) -> Vec<u32> {
    let mut seen: Vec<u32> = (0..size).flat_map(|_| pu.resolve(pool, Some(1))).collect();
    seen.sort_unstable();
    seen
}

/// PEs in the big pool: 500 on the host; 100 in the SCTP lab, whose emulated CPU
/// (~15x slower) drowns in 500 PEs' keep-alives (10 per PE and second).
fn big_pool(kind: Kind) -> u32 {
    match kind {
        Kind::Tcp => 500,
        Kind::Sctp => 100,
    }
}

/// RFC 5352 §3.1, §3.3, §3.5: 500 PEs register, each on its own connection; PUs on
/// several connections (so on both shards) resolve; every tenth PE drops its connection
/// and vanishes from every answer.
pub fn registration_resolution_and_connection_loss(kind: Kind) {
    let lab = Lab::start(kind);
    let n = big_pool(kind);
    let mut pes = register_all(&lab, "pool", 1..=n);
    let pus: Vec<Peer> = (0..6).map(|_| lab.connect()).collect();

    for pu in &pus {
        let first = pu.resolve("pool", None);
        assert_eq!(first.len(), 3, "max_resolution_items by default");
        let second = pu.resolve("pool", None);
        assert_eq!(first[1], second[0], "round robin starts one PE later");
        assert_eq!(
            pu.resolve("pool", Some(10)).len(),
            10,
            "the Handle Resolution Option count"
        );
        let capped = pu.resolve("pool", Some(1000)).len();
        assert_eq!(capped, n.min(128) as usize, "capped at 128");
        pu.send(&AsapMessage::HandleResolution {
            subscribe: false,
            handle: "nope".into(),
            items: None,
        });
        match pu.recv() {
            AsapMessage::HandleResolutionResponse {
                error: Some(e),
                elements,
                ..
            } => {
                assert_eq!(e.code(), Some(CauseCode::UNKNOWN_POOL_HANDLE));
                assert!(elements.is_empty());
            }
            other => panic!("{other:?}"),
        }
    }
    let all: Vec<u32> = (1..=n).collect();
    for pu in &pus {
        assert_eq!(scan(pu, "pool", all.len()), all, "every PE once per round");
    }

    // Every tenth PE, so the gaps are spread over the round-robin order.
    let (gone, kept): (Vec<_>, Vec<_>) = pes.drain(..).partition(|(id, _)| id % 10 == 0);
    pes = kept;
    assert_eq!(gone.len() as u32, n / 10);
    for (_, pe) in gone {
        pe.close();
    }
    let rest: Vec<u32> = pes.iter().map(|(id, _)| *id).collect();
    // Removal travels from the connection's shard to the pool's owner and on to every
    // replica; each PU sees it once its own shard has it, and then never again.
    for pu in &pus {
        wait_until(&lab, "closed PEs vanish from every answer", || {
            scan(pu, "pool", rest.len()) == rest
        });
    }
    for pu in &pus {
        assert_eq!(
            scan(pu, "pool", rest.len()),
            rest,
            "gone for good, nobody else lost"
        );
    }
    drop(pes);
    lab.finish();
}

/// RFC 5352 §3.4-3.5 (reference §6.4): keep-alives every 100 ms; PEs that acknowledge
/// stay, PEs that stop are removed once the timeout passes.
pub fn keep_alives_keep_live_pes_and_remove_silent_ones(kind: Kind) {
    let lab = Lab::with_keep_alive_timeout(kind, KEEP_ALIVE_TIMEOUT);
    let pes = register_all(&lab, "ka", 1..=40);
    let pu = lab.connect();
    assert_eq!(pu.members("ka"), (1..=40).collect());

    let (silent, live) = pes.split_at(10);
    for (_, pe) in silent {
        pe.answer_keep_alives(false);
    }
    let live_ids: BTreeSet<u32> = live.iter().map(|(id, _)| *id).collect();
    wait_until(&lab, "silent PEs are removed", || {
        pu.members("ka") == live_ids
    });

    // Three more keep-alive rounds for every live PE: all acknowledged, all still there.
    let marks: Vec<u64> = live
        .iter()
        .map(|(_, pe)| pe.keep_alives_answered())
        .collect();
    wait_until(&lab, "three more keep-alive rounds", || {
        live.iter()
            .zip(&marks)
            .all(|((_, pe), m)| pe.keep_alives_answered() >= m + 3)
    });
    assert_eq!(pu.members("ka"), live_ids, "live PEs stay");
    lab.finish();
}

/// RFC 5352 §2.2.2, §3.2: a deregistration from a connection that did not register the
/// PE is refused with "rejected due to security considerations" (0x000a); the PE's own
/// deregistration works.
pub fn spoofed_deregistration_is_refused(kind: Kind) {
    let lab = Lab::start(kind);
    let pes = register_all(&lab, "p", 1..=20);
    let pus: Vec<Peer> = (0..4).map(|_| lab.connect()).collect();
    let attacker = lab.connect();
    let dereg = AsapMessage::Deregistration {
        handle: "p".into(),
        id: PoolElementId(8),
    };
    attacker.send(&dereg);
    match attacker.recv() {
        AsapMessage::DeregistrationResponse {
            error: Some(e), id, ..
        } => {
            assert_eq!(e.code(), Some(CauseCode::REJECTED_SECURITY));
            assert_eq!(CauseCode::REJECTED_SECURITY.0, 0x000a);
            assert_eq!(id, PoolElementId(8));
        }
        other => panic!("{other:?}"),
    }
    for pu in &pus {
        assert!(pu.members("p").contains(&8), "the PE stays");
    }

    let (_, pe8) = &pes[7];
    pe8.send(&dereg);
    match pe8.recv() {
        AsapMessage::DeregistrationResponse {
            error: None, id, ..
        } => {
            assert_eq!(id, PoolElementId(8));
        }
        other => panic!("{other:?}"),
    }
    let rest: BTreeSet<u32> = (1..=20).filter(|&i| i != 8).collect();
    for pu in &pus {
        wait_until(&lab, "the deregistered PE vanishes", || {
            pu.members("p") == rest
        });
    }
    lab.finish();
}

/// RFC 5352 §2.2.14, RFC 5354 §4: malformed messages get an ASAP_ERROR with the RFC
/// cause (or, on TCP, a broken length closes the connection), and nobody else notices.
pub fn malformed_messages_harm_nobody(kind: Kind) {
    let lab = Lab::start(kind);
    let pes = register_all(&lab, "m", 1..=10);
    let pu = lab.connect();
    let bad = lab.connect();
    let all: BTreeSet<u32> = (1..=10).collect();

    let mut reg = encode(&AsapMessage::Registration {
        handle: "m".into(),
        element: element(kind, 99),
    });
    let mut truncated = reg[..reg.len() - 8].to_vec();
    let len = truncated.len() as u16;
    truncated[2..4].copy_from_slice(&len.to_be_bytes());
    reg[6] = 0x40; // the Pool Handle parameter claims 64 bytes and runs past the message
    let mut cases = vec![
        (truncated, CauseCode::INVALID_VALUES),
        (reg, CauseCode::INVALID_VALUES),
        // An unknown type whose action bits (01) ask for a report.
        (vec![0x4f, 0, 0, 4], CauseCode::UNRECOGNIZED_MESSAGE),
    ];
    if kind == Kind::Sctp {
        // Shorter than its own header: only SCTP delivers it as one message.
        cases.push((vec![0x01, 0xff, 0xff], CauseCode::INVALID_VALUES));
    }
    for (bytes, cause) in cases {
        bad.send_raw(&bytes);
        match bad.recv() {
            AsapMessage::Error { error } => assert_eq!(error.code(), Some(cause), "{bytes:02x?}"),
            other => panic!("{bytes:02x?}: expected ASAP_ERROR, got {other:?}"),
        }
    }
    // An unknown type with action bits 00 is dropped silently, and an ERROR is never
    // answered: the next thing on this connection is the answer to a resolution.
    bad.send_raw(&[0x3f, 0, 0, 4]);
    bad.send_raw(&[0x0e, 0, 0, 5, 0, 0, 0, 0]);
    assert_eq!(bad.members("m"), all, "the connection still works");

    // A Message Length below 4 cannot be framed on TCP: the connection is closed.
    bad.send_raw(&[0x05, 0, 0, 2]);
    match kind {
        Kind::Tcp => bad.expect_closed(),
        Kind::Sctp => assert!(matches!(bad.recv(), AsapMessage::Error { .. })),
    }

    if kind == Kind::Sctp {
        // Reference §10 D2: only PPID 11 is ASAP; a message with another is dropped, so
        // the first answer is to the second request (one PE, not the default three).
        let raw = sctp::Client::connect(lab.addr).unwrap();
        raw.set_read_timeout(GUARD).unwrap();
        let ask = |items| {
            encode(&AsapMessage::HandleResolution {
                subscribe: false,
                handle: "m".into(),
                items,
            })
        };
        raw.send(PPID_ENRP, &ask(None)).unwrap();
        raw.send(PPID_ASAP, &ask(Some(1))).unwrap();
        let mut buf = Vec::new();
        assert_eq!(raw.recv(&mut buf).unwrap(), Some(PPID_ASAP));
        match AsapMessage::decode(&buf).unwrap().message {
            AsapMessage::HandleResolutionResponse { elements, .. } => assert_eq!(elements.len(), 1),
            other => panic!("{other:?}"),
        }
    }

    // Everyone else: resolutions answered, no PE lost, registrations still accepted.
    assert_eq!(pu.members("m"), all);
    let late = lab.connect();
    assert_accepted(&late.register(kind, "m", 11), 11);
    let with_late: BTreeSet<u32> = (1..=11).collect();
    wait_until(&lab, "the new PE is visible", || {
        pu.members("m") == with_late
    });
    drop(pes);
    lab.finish();
}

/// A second registrar on a port in use is refused, not let in by SO_REUSEPORT to take
/// a share of the first one's connections.
pub fn a_port_in_use_is_refused(kind: Kind) {
    let lab = Lab::start(kind);
    let endpoint = match kind {
        Kind::Tcp => Endpoint::Tcp(lab.addr),
        Kind::Sctp => Endpoint::Sctp(lab.addr),
    };
    let second = runtime::start(RuntimeConfig {
        shards: 2,
        pin_cores: false,
        io_mode: Default::default(),
        asap: vec![endpoint.clone()],
        registrar: Default::default(),
        seed: 1,
        announce_group: None,
    });
    match second {
        Err(StartError::Listen(e, error)) => {
            assert_eq!(e, endpoint);
            assert_eq!(error.kind(), std::io::ErrorKind::AddrInUse);
        }
        other => panic!("expected a listen error, got {other:?}"),
    }
    lab.finish();
}

/// A registrar of the peering scenario, with ENRP on one endpoint of `kind` and the
/// given static peers. The liveness timers stay long: on a loaded machine (or the
/// emulated SCTP lab) a shorter silence must not pass for a dead peer.
pub fn enrp_registrar(id: u32, kind: Kind, peers: Vec<PeerAddress>) -> (Config, EnrpEndpoints) {
    let any = "127.0.0.1:0".parse().unwrap();
    let config = Config {
        enrp: Some(enrp::Config {
            peers,
            heartbeat: Duration::from_millis(200),
            mentor_discovery: Duration::from_millis(300),
            ..enrp::Config::default()
        }),
        ..registrar_config(id, NO_EXPIRY)
    };
    let listen = vec![match kind {
        Kind::Tcp => Endpoint::Tcp(any),
        Kind::Sctp => Endpoint::Sctp(any),
    }];
    (
        config,
        EnrpEndpoints {
            listen,
            announce_group: None,
        },
    )
}

/// RFC 5353 §3: two registrars of one scope. B is told of A (as with --peer) and
/// opens the ENRP connection or association to it through its ring; a PE registered at
/// either is resolved at both, and gone from both once its connection is lost.
pub fn peers_share_their_pes(kind: Kind) {
    let (config, enrp) = enrp_registrar(0x10, kind, Vec::new());
    let lab = Lab::with(kind, config, enrp);
    let a = lab.handle.as_ref().unwrap();
    let [a_enrp] = a.enrp_endpoints() else {
        panic!("{:?}", a.enrp_endpoints())
    };
    let transport = match kind {
        Kind::Tcp => Transport::Tcp,
        Kind::Sctp => Transport::Sctp,
    };
    let peer_a = PeerAddress {
        transport,
        addr: a_enrp.addr(),
    };
    let (config, enrp) = enrp_registrar(0x20, kind, vec![peer_a]);
    let (b, b_asap) = start_registrar(kind, config, enrp);

    let pe_a = lab.connect();
    assert_accepted(&pe_a.register(kind, "shared", 1), 1);
    let pu_b = lab.connect_to(b_asap);
    wait_until(&lab, "B resolves the PE registered at A", || {
        pu_b.members_if_any("shared") == BTreeSet::from([1])
    });

    let pe_b = lab.connect_to(b_asap);
    assert_accepted(&pe_b.register(kind, "shared", 2), 2);
    let pu_a = lab.connect();
    wait_until(&lab, "A resolves the PE registered at B", || {
        pu_a.members("shared") == BTreeSet::from([1, 2])
    });
    assert_eq!(pu_b.members("shared"), BTreeSet::from([1, 2]));

    // RFC 5352 §3.5: the connection is lost, the PE is removed, and ENRP tells B.
    pe_a.close();
    wait_until(
        &lab,
        "B drops the PE whose connection to A was lost",
        || pu_b.members("shared") == BTreeSet::from([2]),
    );
    assert_eq!(pu_a.members("shared"), BTreeSet::from([2]));
    b.shutdown().expect("clean shutdown");
    lab.finish();
}

/// RFC 5353 §3.2-3.3: three registrars, B and C told only of A. C learns of B from A's
/// peer list (ENRP_LIST_RESPONSE), and a PE registered at any of the three is resolved
/// at all three.
pub fn three_registrars_resolve_every_pe(kind: Kind) {
    let (config, enrp) = enrp_registrar(0x10, kind, Vec::new());
    let lab = Lab::with(kind, config, enrp);
    let a = lab.handle.as_ref().unwrap();
    let [a_enrp] = a.enrp_endpoints() else {
        panic!("{:?}", a.enrp_endpoints())
    };
    let peer_a = PeerAddress {
        transport: match kind {
            Kind::Tcp => Transport::Tcp,
            Kind::Sctp => Transport::Sctp,
        },
        addr: a_enrp.addr(),
    };
    let (config, enrp) = enrp_registrar(0x20, kind, vec![peer_a]);
    let (b, b_asap) = start_registrar(kind, config, enrp);
    let (config, enrp) = enrp_registrar(0x30, kind, vec![peer_a]);
    let (c, c_asap) = start_registrar(kind, config, enrp);

    let registrars = [lab.addr, b_asap, c_asap];
    let pes: Vec<Peer> = registrars
        .iter()
        .enumerate()
        .map(|(i, &at)| {
            let pe = lab.connect_to(at);
            let id = 100 + i as u32;
            assert_accepted(&pe.register(kind, "three", id), id);
            pe
        })
        .collect();
    let all = BTreeSet::from([100, 101, 102]);
    for (i, &at) in registrars.iter().enumerate() {
        let pu = lab.connect_to(at);
        wait_until(&lab, &format!("registrar {i} resolves every PE"), || {
            pu.members_if_any("three") == all
        });
    }
    drop(pes);
    c.shutdown().expect("clean shutdown");
    b.shutdown().expect("clean shutdown");
    lab.finish();
}
