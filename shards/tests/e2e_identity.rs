//! PE identity, unreachable reports and per-association limits end to end over TCP,
//! with an attacker on another loopback address (127.0.0.2): it takes over nothing,
//! cannot remove a healthy PE by reports, and one connection of its cannot exceed its
//! limits; the legitimate PEs keep working throughout.

mod common;

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::FromRawFd as _;
use std::time::Duration;

use common::{KEEP_ALIVE_TIMEOUT, Kind, Lab, NO_EXPIRY, Peer, registrar_config, wait_until};
use rserpool::PoolElementId;
use rserpool::registrar::Config;
use rserpool::wire::{AsapMessage, CauseCode, IpTransport, UserTransport};
use rserpool_shards::EnrpEndpoints;

const ATTACKER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// A raw ASAP-over-TCP client bound to 127.0.0.2 that never acknowledges keep-alives.
struct Attacker {
    stream: TcpStream,
}

impl Attacker {
    fn connect(to: SocketAddr) -> Self {
        // std cannot bind a TCP client before connecting; libc can.
        // SAFETY: plain socket calls on a descriptor this function owns; the addresses
        // are fully initialised sockaddr_in values of the size passed.
        let fd = unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            assert!(fd >= 0, "socket");
            let sin = |ip: Ipv4Addr, port: u16| libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: port.to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(ip).to_be(),
                },
                sin_zero: [0; 8],
            };
            let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            let local = sin(ATTACKER, 0);
            let rc = libc::bind(fd, (&raw const local).cast(), len);
            assert_eq!(rc, 0, "bind 127.0.0.2: {}", std::io::Error::last_os_error());
            let IpAddr::V4(ip) = to.ip() else {
                panic!("IPv4 lab")
            };
            let remote = sin(ip, to.port());
            let rc = libc::connect(fd, (&raw const remote).cast(), len);
            assert_eq!(rc, 0, "connect: {}", std::io::Error::last_os_error());
            fd
        };
        // SAFETY: `fd` is a connected TCP socket nothing else owns.
        let stream = unsafe { TcpStream::from_raw_fd(fd) };
        stream.set_read_timeout(Some(common::GUARD)).unwrap();
        assert_eq!(
            stream.local_addr().unwrap().ip(),
            IpAddr::V4(ATTACKER),
            "the attacker's own address"
        );
        Self { stream }
    }

    fn send(&mut self, m: &AsapMessage) {
        self.stream.write_all(&common::encode(m)).expect("send");
    }

    /// The next message that is not a keep-alive (those go unanswered).
    fn recv(&mut self) -> AsapMessage {
        loop {
            let mut header = [0u8; 4];
            self.stream.read_exact(&mut header).expect("a message");
            let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
            let mut bytes = header.to_vec();
            bytes.resize(len.max(4), 0);
            self.stream.read_exact(&mut bytes[4..]).expect("its body");
            let m = AsapMessage::decode(&bytes).expect("valid ASAP").message;
            if !matches!(m, AsapMessage::EndpointKeepAlive { .. }) {
                return m;
            }
        }
    }

    /// Registers PE `id` in `pool` with the attacker's own address.
    fn register(&mut self, pool: &str, id: u32) -> AsapMessage {
        let mut element = common::element(Kind::Tcp, id);
        element.user_transport = UserTransport::Tcp(IpTransport {
            port: 20_000,
            reserved: 0,
            address: IpAddr::V4(ATTACKER),
        });
        self.send(&AsapMessage::Registration {
            handle: pool.into(),
            element,
        });
        self.recv()
    }
}

fn refused_with(m: &AsapMessage) -> Option<CauseCode> {
    match m {
        AsapMessage::RegistrationResponse {
            rejected: true,
            error: Some(e),
            ..
        } => e.code(),
        _ => None,
    }
}

fn lab(keep_alive_timeout: Duration, pes: usize, pools: usize) -> Lab {
    let config = Config {
        max_pes_per_association: pes,
        max_pools_per_association: pools,
        ..registrar_config(0x0a0b_0c0d, keep_alive_timeout)
    };
    Lab::with(Kind::Tcp, config, EnrpEndpoints::default())
}

/// A counter of the lab's Prometheus scrape, summed over shards (with extra labels).
fn counter(metrics: SocketAddr, name: &str, labels: &str) -> f64 {
    common::scraped_total(metrics, name, labels)
}

fn deregister(pe: &Peer, pool: &str, id: u32) -> AsapMessage {
    pe.send(&AsapMessage::Deregistration {
        handle: pool.into(),
        id: PoolElementId(id),
    });
    pe.recv()
}

#[test]
fn an_attacker_on_another_address_takes_over_nothing() {
    let lab = lab(NO_EXPIRY, 100, 10);
    let server = lab.handle.as_ref().unwrap();
    let metrics = server
        .serve_metrics("127.0.0.1:0".parse().unwrap())
        .unwrap();
    let pes = common::register_all(&lab, "p", 1..=5);
    let mut attacker = Attacker::connect(lab.addr);
    for id in 1..=5 {
        let m = attacker.register("p", id);
        assert_eq!(
            refused_with(&m),
            Some(CauseCode::REJECTED_SECURITY),
            "{m:?}"
        );
    }
    attacker.send(&AsapMessage::Deregistration {
        handle: "p".into(),
        id: PoolElementId(1),
    });
    assert!(matches!(
        attacker.recv(),
        AsapMessage::DeregistrationResponse { error: Some(_), .. }
    ));
    // Pool users still get the legitimate addresses only.
    attacker.send(&AsapMessage::HandleResolution {
        subscribe: false,
        handle: "p".into(),
        items: Some(100),
    });
    match attacker.recv() {
        AsapMessage::HandleResolutionResponse { elements, .. } => {
            assert_eq!(elements.len(), 5);
            for e in elements {
                let UserTransport::Tcp(t) = e.user_transport else {
                    panic!("{e:?}")
                };
                assert_eq!(t.address, common::LOCALHOST, "PE {}", e.id.0);
            }
        }
        other => panic!("{other:?}"),
    }
    // Closing the attacker's connection removes nothing; the owners keep control.
    drop(attacker);
    let pu = lab.connect();
    assert_eq!(pu.members("p").len(), 5);
    let (_, first) = &pes[0];
    assert!(matches!(
        deregister(first, "p", 1),
        AsapMessage::DeregistrationResponse { error: None, .. }
    ));
    wait_until(&lab, "PE 1 is gone", || !pu.members("p").contains(&1));
    assert_eq!(
        counter(
            metrics.addr(),
            "rserpool_registration_takeovers_refused_total",
            ""
        ),
        5.0
    );
    drop(pes);
    lab.finish();
}

#[test]
fn an_attacker_cannot_remove_a_healthy_pe_by_reports() {
    let lab = lab(KEEP_ALIVE_TIMEOUT, 100, 10);
    let server = lab.handle.as_ref().unwrap();
    let metrics = server
        .serve_metrics("127.0.0.1:0".parse().unwrap())
        .unwrap();
    let pes = common::register_all(&lab, "p", 1..=2);
    let pu = lab.connect();
    let mut attackers: Vec<Attacker> = (0..3).map(|_| Attacker::connect(lab.addr)).collect();
    let repeated = || {
        counter(
            metrics.addr(),
            "rserpool_unreachable_reports_repeated_total",
            "",
        )
    };
    for (i, a) in attackers.iter_mut().enumerate() {
        for _ in 0..5 {
            a.send(&AsapMessage::EndpointUnreachable {
                handle: "p".into(),
                id: PoolElementId(1),
            });
        }
        if i == 1 {
            // Each association's repeats count once; the third reporter's first report
            // starts the probe, during which reports wait for its outcome, so it waits
            // until the first two have been seen (their connections may be on other
            // shards than the third's, whose report could otherwise overtake them).
            wait_until(&lab, "the first two attackers' repeats are counted", || {
                repeated() >= 8.0
            });
        }
    }
    // The healthy PE answers the probe and stays.
    let answered = || {
        counter(
            metrics.addr(),
            "rserpool_unreachable_probes_answered_total",
            "",
        )
    };
    wait_until(&lab, "the probe is answered", || answered() >= 1.0);
    assert_eq!(pu.members("p"), [1, 2].into());
    // The first two attackers' repeats at least (the third's may land while the probe
    // is out, when reports wait for its outcome).
    let repeated = repeated();
    assert!(repeated >= 8.0, "{repeated}");
    // A PE that really hangs is removed when reported, at most a keep-alive timeout
    // later.
    let (_, hung) = &pes[1];
    hung.answer_keep_alives(false);
    for a in &mut attackers {
        a.send(&AsapMessage::EndpointUnreachable {
            handle: "p".into(),
            id: PoolElementId(2),
        });
    }
    wait_until(&lab, "PE 2 is removed", || !pu.members("p").contains(&2));
    assert_eq!(pu.members("p"), [1].into());
    drop(attackers);
    drop(pes);
    lab.finish();
}

#[test]
fn one_connection_cannot_exceed_its_limits() {
    let lab = lab(NO_EXPIRY, 10, 3);
    let server = lab.handle.as_ref().unwrap();
    let metrics = server
        .serve_metrics("127.0.0.1:0".parse().unwrap())
        .unwrap();
    let pes = common::register_all(&lab, "a", 1..=2);
    let mut filler = Attacker::connect(lab.addr);
    let mut refused = 0;
    for id in 100..115 {
        let m = filler.register("a", id);
        match refused_with(&m) {
            None => common::assert_accepted(&m, id),
            Some(c) => {
                assert_eq!(c, CauseCode::LACK_OF_RESOURCES);
                refused += 1;
            }
        }
    }
    assert_eq!(refused, 5, "10 of 15 PEs accepted");
    let mut creator = Attacker::connect(lab.addr);
    let created: Vec<bool> = (0..5)
        .map(|i| refused_with(&creator.register(&format!("x{i}"), 200 + i)).is_none())
        .collect();
    assert_eq!(created, [true, true, true, false, false]);
    // The legitimate PEs and other clients are unaffected.
    let pe = lab.connect();
    common::assert_accepted(&pe.register(Kind::Tcp, "a", 3), 3);
    let pu = lab.connect();
    assert_eq!(pu.members("a").len(), 13);
    let m = metrics.addr();
    let limit = |l: &str| {
        counter(
            m,
            "rserpool_association_limit_refusals_total",
            &format!(",limit=\"{l}\""),
        )
    };
    assert_eq!(limit("pes_per_association"), 5.0);
    assert_eq!(limit("pools_per_association"), 2.0);
    // Closing the filler removes its PEs.
    drop(filler);
    wait_until(&lab, "the filler's PEs are gone", || {
        pu.members("a").len() == 3
    });
    drop((pes, pe, creator));
    lab.finish();
}
