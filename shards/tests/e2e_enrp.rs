//! ENRP endpoints end to end over loopback TCP: the runtime started in-process with
//! ENRP endpoints, reached by outside clients. What the registrar's ENRP server does
//! with the messages is the core's to test; this checks the runtime's part: binding,
//! reporting, serving the ENRP port and refusing what cannot be framed.

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
