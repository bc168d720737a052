//! What a peer's handle update costs a registrar, beside what a resolution costs it:
//! one shard's `Registrar` (the ENRP shard, which is also every pool's writer with one
//! shard), a 500-PE pool of its own, and a peer whose ADD_PEs re-register PEs of the
//! peer's own 500-PE pool, alternating policy values so every one changes something.
//! Inputs and outputs as the runtime moves them (decoded, applied, answers drained); no
//! sockets, so kernel time is not in these figures (see bench/enrp-figures.sh).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use rserpool::enrp::{self, PeerAddress};
use rserpool::registrar::{
    Config, ConnId, ConnInfo, Protocol, Registrar, Router, ShardId, Transport,
};
use rserpool::wire::{
    AsapMessage, EnrpIds, EnrpMessage, PolicyParam, PolicyType, SctpTransport, ServerInformation,
    ServerTransport, TransportUse, UpdateAction,
};
use rserpool::{PoolHandle, RegistrarId};
use rserpool_bench::element;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ME: RegistrarId = RegistrarId(1);
const PEER: RegistrarId = RegistrarId(2);
const PES: u32 = 500;

fn drain(r: &mut Registrar) {
    while r.poll_transmit().is_some() {}
    while r.poll_shard().is_some() {}
    while r.poll_event().is_some() {}
}

fn encode_enrp(m: &EnrpMessage) -> Vec<u8> {
    let mut b = Vec::new();
    m.encode(&mut b);
    b
}

fn setup() -> (Registrar, Instant) {
    let addr = |i: u8| IpAddr::V4(Ipv4Addr::new(192, 0, 2, i));
    let config = Config {
        id: ME,
        enrp: Some(enrp::Config {
            endpoints: vec![PeerAddress {
                transport: Transport::Tcp,
                addr: (addr(1), 9901).into(),
            }],
            ..enrp::Config::default()
        }),
        ..Config::default()
    };
    let mut r = Registrar::new(config, ShardId(0), Router::new(1, 1), 7);
    let now = Instant::now();
    r.handle_timeout(now);
    // Our own pool: 500 PEs over one connection.
    let pes = ConnId(1);
    r.handle_conn_up(
        now,
        pes,
        ConnInfo::new(
            Transport::Tcp,
            Protocol::Asap,
            (1..=250).map(addr).collect(),
            4000,
        ),
    );
    for id in 1..=PES {
        let mut e = element(id, PolicyParam::round_robin());
        e.user_transport = rserpool::wire::UserTransport::Sctp(SctpTransport {
            port: 9000,
            transport_use: TransportUse::DATA_ONLY,
            addresses: vec![addr((id % 250 + 1) as u8)],
        });
        let mut b = Vec::new();
        AsapMessage::Registration {
            handle: PoolHandle::from("Own"),
            element: e,
        }
        .encode(&mut b);
        r.handle_asap(now, pes, &b);
    }
    // The peer: an ENRP connection and its PRESENCE.
    let peer = ConnId(2);
    r.handle_conn_up(
        now,
        peer,
        ConnInfo::new(Transport::Tcp, Protocol::Enrp, vec![addr(2)], 50_000),
    );
    let presence = EnrpMessage::Presence {
        ids: EnrpIds {
            sender: PEER,
            receiver: ME,
        },
        reply_required: false,
        checksum: Some(0xffff),
        info: Some(ServerInformation {
            server_id: PEER,
            transport: ServerTransport::Tcp(rserpool::wire::IpTransport {
                port: 9901,
                reserved: 0,
                address: addr(2),
            }),
        }),
    };
    r.handle_enrp(now, peer, &encode_enrp(&presence));
    drain(&mut r);
    (r, now)
}

fn update(id: u32, load: u32) -> Vec<u8> {
    let mut e = element(
        id,
        PolicyParam::new(PolicyType::LEAST_USED, &[load]).unwrap(),
    );
    e.home = PEER;
    e.asap_transport = Some(SctpTransport {
        port: 5000,
        transport_use: TransportUse::DATA_ONLY,
        addresses: vec![IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1))],
    });
    encode_enrp(&EnrpMessage::HandleUpdate {
        ids: EnrpIds {
            sender: PEER,
            receiver: ME,
        },
        takeover_suggested: false,
        action: UpdateAction::ADD_PE,
        handle: PoolHandle::from("PeerPool"),
        element: e,
    })
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("enrp");
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));
    let (mut r, now) = setup();
    // The peer's pool, 500 PEs, present before timing.
    let updates: Vec<Vec<u8>> = (1..=PES)
        .flat_map(|id| [update(id, id), update(id, id + 1)])
        .collect();
    for u in &updates {
        r.handle_enrp(now, ConnId(2), u);
    }
    drain(&mut r);
    let mut i = 0;
    g.bench_function("peer ADD_PE applied (500-PE pool)", |b| {
        b.iter(|| {
            r.handle_enrp(now, ConnId(2), black_box(&updates[i % updates.len()]));
            i += 1;
            drain(&mut r);
        })
    });
    let mut req = Vec::new();
    AsapMessage::HandleResolution {
        subscribe: false,
        handle: PoolHandle::from("Own"),
        items: Some(3),
    }
    .encode(&mut req);
    let pu = ConnId(3);
    r.handle_conn_up(
        now,
        pu,
        ConnInfo::new(
            Transport::Tcp,
            Protocol::Asap,
            vec![IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1))],
            6000,
        ),
    );
    g.bench_function("resolution of 3 (500-PE pool)", |b| {
        b.iter(|| {
            r.handle_asap(now, pu, black_box(&req));
            drain(&mut r);
        })
    });
    g.finish();
    assert_eq!(
        r.handlespace().pool(b"PeerPool").map(|p| p.len()),
        Some(PES as usize),
        "every update applied"
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
