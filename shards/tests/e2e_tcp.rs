//! End-to-end over loopback TCP: the runtime started in-process, driven by blocking
//! clients that frame ASAP by its length field (reference §2.4).

mod common;

use common::Kind;
use common::scenarios;

#[test]
fn tcp_registration_resolution_and_connection_loss() {
    scenarios::registration_resolution_and_connection_loss(Kind::Tcp);
}

#[test]
fn tcp_keep_alives_keep_live_pes_and_remove_silent_ones() {
    scenarios::keep_alives_keep_live_pes_and_remove_silent_ones(Kind::Tcp);
}

#[test]
fn tcp_spoofed_deregistration_is_refused() {
    scenarios::spoofed_deregistration_is_refused(Kind::Tcp);
}

#[test]
fn tcp_malformed_messages_harm_nobody() {
    scenarios::malformed_messages_harm_nobody(Kind::Tcp);
}

/// Without kernel SCTP (this host) an SCTP endpoint is skipped with a warning and TCP
/// is served; with it (the SCTP lab) both are bound.
#[test]
fn sctp_endpoint_is_optional_where_the_kernel_lacks_sctp() {
    use rserpool_shards::{Endpoint, RuntimeConfig, net, runtime};
    let any = "127.0.0.1:0".parse().unwrap();
    let handle = runtime::start(RuntimeConfig {
        shards: 1,
        pin_cores: false,
        io_mode: Default::default(),
        asap: vec![Endpoint::Sctp(any), Endpoint::Tcp(any)],
        registrar: Default::default(),
        seed: 1,
        announce_group: None,
    })
    .expect("starts either way");
    assert!(handle.tcp_addr().is_some());
    assert_eq!(handle.sctp_addr().is_some(), net::sctp::available());
    handle.shutdown().unwrap();
}

#[test]
fn tcp_a_port_in_use_is_refused() {
    scenarios::a_port_in_use_is_refused(Kind::Tcp);
}

/// A client that sends requests but never reads its answers is closed once 4 MiB wait
/// for it; nobody else notices.
#[test]
fn tcp_slow_consumer_is_closed() {
    use std::io::Write as _;
    use std::net::TcpStream;

    use rserpool::wire::AsapMessage;

    let lab = common::Lab::start(Kind::Tcp);
    let pes = common::register_all(&lab, "big", 1..=128);
    let pu = lab.connect();
    // A first request, so that the idle timeout (a connection that never sent a whole
    // message) leaves this pool user alone however long the hog takes.
    assert_eq!(pu.members("big").len(), 128);
    let mut hog = TcpStream::connect(lab.addr).unwrap();
    let request = common::encode(&AsapMessage::HandleResolution {
        subscribe: false,
        handle: "big".into(),
        items: Some(128),
    });
    // Each answer is ~5 KB: the registrar gives up after some thousands, once the
    // kernel's buffers and its own 4 MiB are full. The bound only guards against a hang.
    let mut sent = 0u32;
    let error = loop {
        match hog.write_all(&request) {
            Ok(()) => sent += 1,
            Err(e) => break e,
        }
        assert!(sent < 1_000_000, "the slow consumer was never closed");
    };
    assert!(
        matches!(
            error.kind(),
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
        ),
        "{error}"
    );
    assert_eq!(pu.members("big").len(), 128);
    drop(pes);
    lab.finish();
}

/// Server announces leave from the ASAP port and name the registrar. The group here is
/// a unicast receiver: the sandbox has no multicast route, and the runtime's sending
/// path is the same.
#[test]
fn server_announces_are_sent_when_configured() {
    use rserpool::RegistrarId;
    use rserpool::registrar::Config;
    use rserpool::wire::{AsapMessage, ServerTransport};
    use rserpool_shards::{Endpoint, RuntimeConfig, runtime};
    let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let handle = runtime::start(RuntimeConfig {
        shards: 2,
        pin_cores: false,
        io_mode: Default::default(),
        asap: vec![Endpoint::Tcp("127.0.0.1:0".parse().unwrap())],
        registrar: Config {
            id: RegistrarId(0x0a0b_0c0d),
            announce_interval: Some(std::time::Duration::from_millis(50)),
            ..Config::default()
        },
        seed: 1,
        announce_group: Some(rx.local_addr().unwrap()),
    })
    .expect("starts");
    let tcp = handle.tcp_addr().unwrap();
    for _ in 0..2 {
        let mut buf = [0u8; 512];
        let (n, from) = loop {
            match rx.recv_from(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => break other.expect("an announce arrives"),
            }
        };
        assert_eq!(
            from.port(),
            tcp.port(),
            "sent from the ASAP port (RSPLIB reads it there)"
        );
        let msg = AsapMessage::decode(&buf[..n]).unwrap().message;
        let AsapMessage::ServerAnnounce {
            server_id,
            transports,
            ..
        } = msg
        else {
            panic!("{msg:?}")
        };
        assert_eq!(server_id, RegistrarId(0x0a0b_0c0d));
        assert!(
            matches!(&transports[..], [ServerTransport::Tcp(t)] if t.port == tcp.port()),
            "{transports:?}"
        );
    }
    handle.shutdown().unwrap();
}

/// ASAP over IPv6: a PE registers from ::1 and a pool user resolves it.
#[test]
fn tcp_over_ipv6() {
    use std::io::{Read, Write};
    use std::net::{IpAddr, Ipv6Addr, TcpStream};

    use rserpool::registrar::Config;
    use rserpool::wire::framing::{self, Frame};
    use rserpool::wire::{
        AsapMessage, PolicyParam, PoolElement, RegistrationLife, SctpTransport, TransportUse,
        UserTransport,
    };
    use rserpool::{PoolElementId, RegistrarId};
    use rserpool_shards::{Endpoint, RuntimeConfig, runtime};

    let handle = runtime::start(RuntimeConfig {
        shards: 2,
        pin_cores: false,
        io_mode: Default::default(),
        asap: vec![Endpoint::Tcp("[::1]:0".parse().unwrap())],
        registrar: Config {
            id: RegistrarId(9),
            allow_loopback: true,
            ..Config::default()
        },
        seed: 3,
        announce_group: None,
    })
    .expect("starts");
    let addr = handle.tcp_addr().unwrap();
    assert!(addr.is_ipv6());
    let exchange = |s: &mut TcpStream, m: &AsapMessage| {
        let mut b = Vec::new();
        m.encode(&mut b);
        s.write_all(&b).unwrap();
        let mut msg = vec![0u8; 4];
        s.read_exact(&mut msg).unwrap();
        let (Frame::Need(total) | Frame::Whole(total)) = framing::next(&msg) else {
            panic!("broken framing: {msg:?}");
        };
        msg.resize(total, 0);
        s.read_exact(&mut msg[4..]).unwrap();
        AsapMessage::decode(&msg).unwrap().message
    };
    let mut pe = TcpStream::connect(addr).unwrap();
    pe.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let element = PoolElement {
        id: PoolElementId(6),
        home: RegistrarId(0),
        registration_life: RegistrationLife(60_000),
        user_transport: UserTransport::Sctp(SctpTransport {
            port: 7000,
            transport_use: TransportUse::DATA_ONLY,
            addresses: vec![IpAddr::V6(Ipv6Addr::LOCALHOST)],
        }),
        policy: PolicyParam::round_robin(),
        asap_transport: None,
    };
    let answer = exchange(
        &mut pe,
        &AsapMessage::Registration {
            handle: "v6".into(),
            element,
        },
    );
    assert!(
        matches!(
            answer,
            AsapMessage::RegistrationResponse {
                rejected: false,
                ..
            }
        ),
        "{answer:?}"
    );
    let mut pu = TcpStream::connect(addr).unwrap();
    pu.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let answer = exchange(
        &mut pu,
        &AsapMessage::HandleResolution {
            subscribe: false,
            handle: "v6".into(),
            items: None,
        },
    );
    let AsapMessage::HandleResolutionResponse { elements, .. } = answer else {
        panic!("{answer:?}")
    };
    let UserTransport::Sctp(t) = &elements[0].user_transport else {
        panic!()
    };
    assert_eq!(t.addresses, vec![IpAddr::V6(Ipv6Addr::LOCALHOST)]);
    handle.shutdown().unwrap();
}

/// Busy-poll mode (SQPOLL, the shards never sleep) serves like the default mode:
/// registrations, resolutions from both shards, removal when the connection closes.
#[test]
fn tcp_busy_poll_mode_serves() {
    use std::collections::BTreeSet;

    use rserpool_shards::EnrpEndpoints;
    use rserpool_shards::net::ring::IoMode;

    let config = common::registrar_config(0x0a0b_0c0d, common::NO_EXPIRY);
    let lab = common::Lab::with_io_mode(
        Kind::Tcp,
        config,
        EnrpEndpoints::default(),
        IoMode::BusyPoll,
    );
    let mut pes = common::register_all(&lab, "busy", 1..=40);
    let pus: Vec<_> = (0..3).map(|_| lab.connect()).collect();
    let all: BTreeSet<u32> = (1..=40).collect();
    for pu in &pus {
        assert_eq!(pu.members("busy"), all);
    }
    let (_, first) = pes.remove(0);
    first.close();
    let rest: BTreeSet<u32> = (2..=40).collect();
    for pu in &pus {
        common::wait_until(&lab, "the lost PE vanishes", || pu.members("busy") == rest);
    }
    drop(pes);
    lab.finish();
}
