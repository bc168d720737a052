//! ENRP end to end over loopback TCP: the runtime started in-process with ENRP
//! endpoints, reached by outside clients and by another registrar. The ENRP procedures
//! are the core's to test (on its virtual network); this checks the runtime's part:
//! binding, reporting, serving the ENRP port, refusing what cannot be framed, and
//! carrying two registrars' ENRP over a connection one of them opened.

mod common;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use rserpool::RegistrarId;
use rserpool::registrar::Config;
use rserpool_shards::runtime::{self, Handle, StartError};
use rserpool_shards::{Endpoint, EnrpEndpoints, RuntimeConfig, net};

/// Guard against a hung registrar; never reached when things work.
const GUARD: Duration = Duration::from_secs(20);

fn start(enrp: Vec<Endpoint>) -> Result<Handle, StartError> {
    runtime::start_with(
        RuntimeConfig {
            shards: 2,
            pin_cores: false,
            io_mode: Default::default(),
            asap: vec![Endpoint::Tcp("127.0.0.1:0".parse().unwrap())],
            registrar: Config {
                id: RegistrarId(0x0a0b_0c0d),
                ..Config::default()
            },
            seed: 1,
            announce_group: None,
        },
        EnrpEndpoints {
            listen: enrp,
            announce_group: None,
        },
    )
}

fn any() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

#[test]
fn the_enrp_port_is_bound_reported_and_served_apart_from_asap() {
    let handle = start(vec![Endpoint::Tcp(any())]).expect("starts");
    let [Endpoint::Tcp(enrp)] = handle.enrp_endpoints() else {
        panic!("{:?}", handle.enrp_endpoints())
    };
    let enrp = *enrp;
    assert_ne!(enrp.port(), 0, "port 0 resolves to the real port");
    assert_ne!(Some(enrp), handle.tcp_addr(), "ENRP has a port of its own");
    assert_eq!(
        handle.endpoints().len(),
        1,
        "ASAP endpoints stay as they were"
    );

    // The runtime reads what arrives there: a Message Length below the header's own 4
    // bytes breaks the framing, and the connection is closed.
    let mut peer = TcpStream::connect(enrp).expect("the ENRP port accepts");
    peer.set_read_timeout(Some(GUARD)).unwrap();
    peer.write_all(&[0x01, 0, 0, 2]).unwrap();
    let mut rest = Vec::new();
    match peer.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
    handle.shutdown().expect("clean shutdown");
}

#[test]
fn an_enrp_port_in_use_is_refused_naming_the_endpoint() {
    let first = start(vec![Endpoint::Tcp(any())]).expect("starts");
    let taken = first.enrp_endpoints()[0].clone();
    match start(vec![taken.clone()]) {
        Err(e @ StartError::ListenEnrp(..)) => {
            let StartError::ListenEnrp(ep, error) = &e else {
                unreachable!()
            };
            assert_eq!(*ep, taken);
            assert_eq!(error.kind(), std::io::ErrorKind::AddrInUse);
            let text = e.to_string();
            assert!(
                text.contains("ENRP") && text.contains(&taken.to_string()),
                "{text}"
            );
        }
        other => panic!("expected an ENRP listen error, got {other:?}"),
    }
    first.shutdown().expect("clean shutdown");
}

/// Without kernel SCTP (this host) an SCTP ENRP endpoint is skipped with a warning and
/// TCP is served; with it (the SCTP lab) both are bound.
#[test]
fn an_sctp_enrp_endpoint_is_optional_where_the_kernel_lacks_sctp() {
    let handle = start(vec![Endpoint::Sctp(any()), Endpoint::Tcp(any())]).expect("starts");
    let e = handle.enrp_endpoints();
    assert!(e.iter().any(|e| matches!(e, Endpoint::Tcp(_))), "{e:?}");
    assert_eq!(
        e.iter()
            .any(|e| matches!(e, Endpoint::Sctp(a) if a.port() != 0)),
        net::sctp::available(),
        "{e:?}"
    );
    handle.shutdown().expect("clean shutdown");
}

#[test]
fn tcp_peers_share_their_pes() {
    common::scenarios::peers_share_their_pes(common::Kind::Tcp);
}

#[test]
fn three_tcp_registrars_resolve_every_pe() {
    common::scenarios::three_registrars_resolve_every_pe(common::Kind::Tcp);
}

/// RFC 5353 §3.1: registrars that know no peer find each other through ENRP presences
/// on the multicast group (as RSPLIB's -enrpannounce), then talk over a connection one
/// of them opens. The group's datagrams leave by the default route, so the ENRP
/// endpoints use this host's address on it. Skipped where there is no multicast route.
#[test]
fn peers_find_each_other_on_the_enrp_multicast_group() {
    find_each_other_on_the_group(false);
}

/// The same with wildcard ENRP endpoints: no connection says which address a multicast
/// presence should advertise, so the runtime gives the registrar the host's interface
/// addresses (loopback last), and the first is where the peer connects.
#[test]
fn peers_with_wildcard_endpoints_find_each_other_on_the_enrp_multicast_group() {
    find_each_other_on_the_group(true);
}

fn find_each_other_on_the_group(wildcard: bool) {
    use std::collections::BTreeSet;
    use std::net::{IpAddr, Ipv4Addr};

    use common::{
        Kind, Lab, NO_EXPIRY, assert_accepted, registrar_config, start_registrar, wait_until,
    };
    use rserpool::enrp;

    // A free port for the group, so that concurrent runs do not hear each other.
    let port = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|u| u.local_addr())
        .unwrap()
        .port();
    let group: SocketAddr = (Ipv4Addr::new(239, 255, 77, 51), port).into();
    let route = std::net::UdpSocket::bind("0.0.0.0:0").and_then(|u| {
        u.connect(group)?;
        u.local_addr()
    });
    let local = match route {
        Ok(a) if !a.ip().is_loopback() && !a.ip().is_unspecified() => a.ip(),
        other => {
            eprintln!("SKIP: no multicast route to {group} ({other:?})");
            return;
        }
    };
    let listen = if wildcard {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        local
    };
    let registrar = |id| {
        let config = Config {
            enrp: Some(enrp::Config {
                heartbeat: Duration::from_millis(200),
                mentor_discovery: Duration::from_millis(300),
                ..enrp::Config::default()
            }),
            ..registrar_config(id, NO_EXPIRY)
        };
        let endpoints = EnrpEndpoints {
            listen: vec![Endpoint::Tcp((listen, 0).into())],
            announce_group: Some(group),
        };
        (config, endpoints)
    };
    let (config, endpoints) = registrar(0x10);
    let lab = Lab::with(Kind::Tcp, config, endpoints);
    let (config, endpoints) = registrar(0x20);
    let (b, b_asap) = start_registrar(Kind::Tcp, config, endpoints);

    let pe = lab.connect();
    assert_accepted(&pe.register(Kind::Tcp, "heard", 1), 1);
    let pu = lab.connect_to(b_asap);
    wait_until(&lab, "B resolves the PE registered at A", || {
        pu.members_if_any("heard") == BTreeSet::from([1])
    });
    b.shutdown().expect("clean shutdown");
    lab.finish();
}
