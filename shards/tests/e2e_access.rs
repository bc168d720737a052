//! Access control end to end over loopback TCP: clients on other loopback addresses
//! (127.0.0.2, 127.0.0.3) refused by the rules get cause 0x000a, the allowed ones are
//! served, and the metrics endpoint counts each denial under its rule.

mod common;

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::FromRawFd as _;

use common::{
    GUARD, Kind, Lab, NO_EXPIRY, assert_accepted, element, encode, registrar_config, wait_until,
};
use rserpool::registrar::access::{Op, Ops, Rule, Rules, Verdict};
use rserpool::wire::{AsapMessage, CauseCode, EnrpIds, EnrpMessage, IpTransport, UserTransport};
use rserpool::{PoolElementId, RegistrarId};
use rserpool_shards::Endpoint;
use rserpool_shards::EnrpEndpoints;

/// A TCP connection to `to` from `local` (any port): std cannot bind before connecting.
fn connect_from(local: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let sockaddr = |a: SocketAddrV4| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    let SocketAddr::V4(to) = to else {
        panic!("the lab listens on IPv4")
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: a new socket; the addresses are valid sockaddr_in values of `len` bytes
    // that live across the calls; the descriptor is owned by the TcpStream from then on.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let stream = TcpStream::from_raw_fd(fd);
        let here = sockaddr(SocketAddrV4::new(local, 0));
        let rc = libc::bind(fd, (&raw const here).cast(), len);
        assert_eq!(rc, 0, "bind {local}: {}", std::io::Error::last_os_error());
        let there = sockaddr(to);
        let rc = libc::connect(fd, (&raw const there).cast(), len);
        assert_eq!(rc, 0, "connect {to}: {}", std::io::Error::last_os_error());
        stream.set_read_timeout(Some(GUARD)).unwrap();
        stream
    }
}

/// One message framed by its length (ASAP and ENRP over TCP alike); `None` once the
/// registrar has closed the connection.
fn read_message(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = [0u8; 4];
    match s.read_exact(&mut head) {
        Ok(()) => {}
        Err(e)
            if e.kind() == std::io::ErrorKind::WouldBlock
                || e.kind() == std::io::ErrorKind::TimedOut =>
        {
            panic!("nothing within {GUARD:?}")
        }
        Err(_) => return None,
    }
    let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
    let mut msg = head.to_vec();
    msg.resize(len.next_multiple_of(4).max(4), 0);
    s.read_exact(&mut msg[4..]).unwrap();
    msg.truncate(len);
    Some(msg)
}

/// Sends `m` and returns the answer (these clients register nothing, so no keep-alive
/// comes in between).
fn ask(s: &mut TcpStream, m: &AsapMessage) -> AsapMessage {
    s.write_all(&encode(m)).unwrap();
    let msg = read_message(s).expect("an answer");
    AsapMessage::decode(&msg).unwrap().message
}

/// A registration into "Pool" of PE `id` at `at`, the address of its own connection.
fn registration_at(id: u32, at: Ipv4Addr) -> AsapMessage {
    let mut own = element(Kind::Tcp, id);
    own.user_transport = UserTransport::Tcp(IpTransport {
        port: 20_000,
        reserved: 0,
        address: at.into(),
    });
    AsapMessage::Registration {
        handle: "Pool".into(),
        element: own,
    }
}

fn resolution(pool: &str) -> AsapMessage {
    AsapMessage::HandleResolution {
        subscribe: false,
        handle: pool.into(),
        items: Some(10),
    }
}

fn cause(m: &AsapMessage) -> Option<CauseCode> {
    let error = match m {
        AsapMessage::RegistrationResponse { error, .. }
        | AsapMessage::HandleResolutionResponse { error, .. } => error,
        other => panic!("not a response: {other:?}"),
    };
    error.as_ref().and_then(|e| e.code())
}

fn rule(name: &str, verdict: Verdict, op: Op, from: Option<&str>, pool: Option<&str>) -> Rule {
    Rule {
        name: name.into(),
        verdict,
        ops: Ops::NONE.with(op),
        from: from.map(|f| f.parse().unwrap()).into_iter().collect(),
        identity: None,
        pools: pool.map(|p| p.parse().unwrap()).into_iter().collect(),
    }
}

/// `sum(rserpool_access_denied_total{rule,op})` from the metrics endpoint.
fn denied(metrics: SocketAddr, rule: &str, op: &str) -> f64 {
    common::scraped_total(
        metrics,
        "rserpool_access_denied_total",
        &format!(",rule=\"{rule}\",op=\"{op}\""),
    )
}

#[test]
fn only_allowed_sources_register_and_resolve_and_denials_are_counted_per_rule() {
    let rules = Rules::new(
        vec![
            rule(
                "pe",
                Verdict::Allow,
                Op::Register,
                Some("127.0.0.1"),
                Some("Pool"),
            ),
            rule("strangers", Verdict::Deny, Op::Register, None, None),
            rule(
                "no-resolve",
                Verdict::Deny,
                Op::Resolve,
                Some("127.0.0.3"),
                None,
            ),
            rule("pu", Verdict::Allow, Op::Resolve, None, None),
        ],
        Verdict::Deny,
    );
    let config = rserpool::registrar::Config {
        access: rules,
        ..registrar_config(0x0a0b_0c0d, NO_EXPIRY)
    };
    let lab = Lab::with(Kind::Tcp, config, EnrpEndpoints::default());
    let server = lab.serve_metrics();
    let metrics = server.addr();
    assert_eq!(denied(metrics, "strangers", "register"), 0.0);
    assert_eq!(denied(metrics, "no-resolve", "resolve"), 0.0);

    // 127.0.0.2 may not register into "Pool"...
    // (with its own address, so that nothing but the rules stands in its way).
    let mut stranger = connect_from(Ipv4Addr::new(127, 0, 0, 2), lab.addr);
    let answer = ask(
        &mut stranger,
        &registration_at(2, Ipv4Addr::new(127, 0, 0, 2)),
    );
    assert!(
        matches!(
            answer,
            AsapMessage::RegistrationResponse { rejected: true, .. }
        ),
        "{answer:?}"
    );
    assert_eq!(cause(&answer), Some(CauseCode::REJECTED_SECURITY));

    // ...127.0.0.1 may.
    let pe = lab.connect();
    assert_accepted(&pe.register(Kind::Tcp, "Pool", 1), 1);
    // The same PE may not go into another pool: nobody may register there.
    let other = pe.register(Kind::Tcp, "Other", 1);
    assert_eq!(cause(&other), Some(CauseCode::REJECTED_SECURITY));

    // Everyone resolves (the stranger too, and sees only the allowed PE)...
    let answer = ask(&mut stranger, &resolution("Pool"));
    match &answer {
        AsapMessage::HandleResolutionResponse {
            elements,
            error: None,
            ..
        } => assert_eq!(elements.iter().map(|e| e.id.0).collect::<Vec<_>>(), [1]),
        other => panic!("expected the pool, got {other:?}"),
    }
    // ...except 127.0.0.3.
    let mut blocked = connect_from(Ipv4Addr::new(127, 0, 0, 3), lab.addr);
    let answer = ask(&mut blocked, &resolution("Pool"));
    assert!(
        matches!(answer, AsapMessage::HandleResolutionResponse { accepted: false, ref elements, .. } if elements.is_empty()),
        "{answer:?}"
    );
    assert_eq!(cause(&answer), Some(CauseCode::REJECTED_SECURITY));

    // Counted per rule: the stranger's registration and the PE's into "Other" by
    // "strangers", the resolution by "no-resolve". Each answer was queued after its
    // count on the same shard, so the scrape sees them.
    assert_eq!(denied(metrics, "strangers", "register"), 2.0);
    assert_eq!(denied(metrics, "no-resolve", "resolve"), 1.0);
    assert_eq!(denied(metrics, "pu", "resolve"), 0.0);
    assert_eq!(denied(metrics, "default", "register"), 0.0);
    drop(server);
    lab.finish();
}

#[test]
fn unreachable_reports_from_a_denied_source_are_dropped_and_counted() {
    let rules = Rules::new(
        vec![rule(
            "no-reports",
            Verdict::Deny,
            Op::Unreachable,
            Some("127.0.0.2"),
            None,
        )],
        Verdict::Allow,
    );
    let config = rserpool::registrar::Config {
        access: rules,
        max_bad_pe_reports: 1,
        ..registrar_config(0x0a0b_0c0d, NO_EXPIRY)
    };
    let lab = Lab::with(Kind::Tcp, config, EnrpEndpoints::default());
    let server = lab.serve_metrics();
    let pe = lab.connect();
    assert_accepted(&pe.register(Kind::Tcp, "Pool", 1), 1);
    let report = AsapMessage::EndpointUnreachable {
        handle: "Pool".into(),
        id: PoolElementId(1),
    };
    // One report would remove the PE (max_bad_pe_reports = 1); this one is dropped.
    let here = Ipv4Addr::new(127, 0, 0, 2);
    let mut reporter = connect_from(here, lab.addr);
    reporter.write_all(&encode(&report)).unwrap();
    // A registration into the same pool from the same connection reaches the pool's
    // writer after the report would have, and its answer comes back after the
    // writer's changes reached this connection's shard: the resolution then shows
    // whether the report removed PE 1.
    let answer = ask(&mut reporter, &registration_at(2, here));
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
    let answer = ask(&mut reporter, &resolution("Pool"));
    let AsapMessage::HandleResolutionResponse { elements, .. } = &answer else {
        panic!("{answer:?}")
    };
    let mut ids: Vec<u32> = elements.iter().map(|e| e.id.0).collect();
    ids.sort_unstable();
    assert_eq!(ids, [1, 2], "PE 1 was not removed");
    assert_eq!(denied(server.addr(), "no-reports", "unreachable"), 1.0);
    // From an allowed source the same report counts: PE 1 answered keep-alives
    // lately, so the registrar checks it with a keep-alive (see e2e_identity) rather
    // than removing it at once.
    let pu = lab.connect();
    pu.send(&report);
    assert_accepted(&pu.register(Kind::Tcp, "Pool", 3), 3);
    wait_until(&lab, "the allowed report is acted on", || {
        common::scraped_total(server.addr(), "rserpool_unreachable_probes_total", "") == 1.0
    });
    assert_eq!(denied(server.addr(), "no-reports", "unreachable"), 1.0);
    drop(server);
    lab.finish();
}

#[test]
fn enrp_connections_from_a_denied_source_are_closed_unanswered() {
    let rules = Rules::new(
        vec![
            rule("peers", Verdict::Allow, Op::Enrp, Some("127.0.0.1"), None),
            rule("no-peers", Verdict::Deny, Op::Enrp, None, None),
        ],
        Verdict::Allow,
    );
    let id = RegistrarId(0x0a0b_0c0d);
    let config = rserpool::registrar::Config {
        access: rules,
        enrp: Some(rserpool::enrp::Config::default()),
        ..registrar_config(id.0, NO_EXPIRY)
    };
    let endpoints = EnrpEndpoints {
        listen: vec![Endpoint::Tcp("127.0.0.1:0".parse().unwrap())],
        announce_group: None,
    };
    let lab = Lab::with(Kind::Tcp, config, endpoints);
    let handle = lab.handle.as_ref().unwrap();
    let [Endpoint::Tcp(enrp)] = handle.enrp_endpoints() else {
        panic!("{:?}", handle.enrp_endpoints())
    };
    let server = handle
        .serve_metrics("127.0.0.1:0".parse().unwrap())
        .unwrap();
    let mut request = Vec::new();
    EnrpMessage::ListRequest {
        ids: EnrpIds {
            sender: RegistrarId(0x99),
            receiver: id,
        },
    }
    .encode(&mut request);

    let mut stranger = connect_from(Ipv4Addr::new(127, 0, 0, 2), *enrp);
    // The registrar may close before or after this arrives; either way, no answer.
    let _ = stranger.write_all(&request);
    assert_eq!(
        read_message(&mut stranger),
        None,
        "closed without an answer"
    );

    let mut peer = connect_from(Ipv4Addr::LOCALHOST, *enrp);
    peer.write_all(&request).unwrap();
    let answer = read_message(&mut peer).expect("an answer");
    let answer = EnrpMessage::decode(&answer).unwrap().message;
    assert!(
        matches!(answer, EnrpMessage::ListResponse { .. }),
        "{answer:?}"
    );

    assert_eq!(denied(server.addr(), "no-peers", "enrp"), 1.0);
    assert_eq!(denied(server.addr(), "peers", "enrp"), 0.0);
    drop(server);
    lab.finish();
}
