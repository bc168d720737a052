//! Connection limits under abuse, end to end over TCP on loopback: slowloris and idle
//! connections are closed, per-source caps refuse at accept, never-reading clients are
//! closed while others are served, and broken framing is counted. Limits are set small
//! so the tests are quick; every wait is for a condition, bounded by [`GUARD`].

mod common;

use std::io::{self, Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{GUARD, NO_EXPIRY, element, encode, registrar_config};
use rserpool::wire::AsapMessage;
use rserpool_shards::net::socket::tcp_connect_from;
use rserpool_shards::runtime::{self, ConnCounters, ConnLimits, Handle};
use rserpool_shards::{Endpoint, EnrpEndpoints, RuntimeConfig};

/// One registrar at a time: several would compete for this machine's cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn start(shards: u16, limits: ConnLimits) -> (Handle, SocketAddr) {
    // RUST_LOG=rserpool_shards=debug shows what the shards do.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let config = RuntimeConfig {
        shards,
        pin_cores: false,
        io_mode: Default::default(),
        asap: vec![Endpoint::Tcp("127.0.0.1:0".parse().unwrap())],
        registrar: registrar_config(0x0a0b_0c0d, NO_EXPIRY),
        seed: 7,
        announce_group: None,
    };
    let handle = runtime::start_limited(config, EnrpEndpoints::default(), limits)
        .expect("the runtime starts");
    let addr = handle.tcp_addr().expect("bound");
    (handle, addr)
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(GUARD)).unwrap();
    s.set_write_timeout(Some(GUARD)).unwrap();
    s
}

fn connect_from(from: &str, addr: SocketAddr) -> TcpStream {
    let from: IpAddr = from.parse().unwrap();
    let s = tcp_connect_from(from, addr).expect("connect from a chosen address");
    s.set_read_timeout(Some(GUARD)).unwrap();
    s
}

/// The next message other than a keep-alive.
fn recv(s: &mut TcpStream) -> AsapMessage {
    loop {
        let mut msg = vec![0u8; 4];
        s.read_exact(&mut msg).expect("an answer");
        let len = usize::from(u16::from_be_bytes([msg[2], msg[3]]));
        msg.resize(len.next_multiple_of(4), 0);
        s.read_exact(&mut msg[4..]).expect("a whole answer");
        let m = AsapMessage::decode(&msg).expect("decodable").message;
        if !matches!(m, AsapMessage::EndpointKeepAlive { .. }) {
            return m;
        }
    }
}

fn resolution(items: u32) -> Vec<u8> {
    encode(&AsapMessage::HandleResolution {
        subscribe: false,
        handle: "pool".into(),
        items: Some(items),
    })
}

/// Sends a handle resolution and checks it is answered.
fn served(s: &mut TcpStream) {
    s.write_all(&resolution(1)).expect("send");
    match recv(s) {
        AsapMessage::HandleResolutionResponse { .. } => {}
        other => panic!("expected a handle resolution response, got {other:?}"),
    }
}

/// Whether the registrar closed `s`: reads (discarding) until the end of the stream
/// or a reset; false if it stayed open for [`GUARD`].
fn closed_by_registrar(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

/// Polls the counters until `check` holds.
fn wait_for(handle: &Handle, what: &str, check: impl Fn(&ConnCounters) -> bool) {
    let source = handle.metrics_source();
    let end = Instant::now() + GUARD;
    while !check(&source.connections()) {
        assert!(
            Instant::now() < end,
            "gave up waiting: {what} ({:?})",
            source.connections()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn slowloris_is_closed_after_the_message_timeout_while_a_normal_client_is_served() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let (handle, addr) = start(
        2,
        ConnLimits {
            message_timeout: Duration::from_millis(200),
            ..ConnLimits::default()
        },
    );
    let mut normal = connect(addr);
    served(&mut normal);
    // Announces 65,532 bytes, sends one.
    let mut slow = connect(addr);
    slow.write_all(&[0x03, 0x00, 0xff, 0xfc, 0x00]).unwrap();
    assert!(
        closed_by_registrar(&mut slow),
        "a message that never completes keeps its connection open"
    );
    served(&mut normal);
    let c = handle.metrics_source().connections();
    assert_eq!(c.closed_message_timeout, 1, "{c:?}");
    let text = {
        let mut out = String::new();
        rserpool_shards::metrics::render::connections(&mut out, &c);
        out
    };
    assert!(
        text.contains("rserpool_connections_closed_total{reason=\"message_timeout\"} 1"),
        "{text}"
    );
    handle.shutdown().unwrap();
}

#[test]
fn a_connection_that_never_sends_a_message_is_closed_but_a_silent_pool_user_is_not() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let (handle, addr) = start(
        2,
        ConnLimits {
            idle_timeout: Some(Duration::from_secs(2)),
            ..ConnLimits::default()
        },
    );
    // A pool user: one resolution, then silence (RSPLIB keeps the connection).
    let mut user = connect(addr);
    served(&mut user);
    let mut idle = connect(addr);
    assert!(
        closed_by_registrar(&mut idle),
        "a connection that never sent anything stays open"
    );
    // Silent longer than the idle timeout by now, and still served.
    served(&mut user);
    let c = handle.metrics_source().connections();
    assert_eq!(c.closed_idle_timeout, 1, "{c:?}");
    handle.shutdown().unwrap();
}

#[test]
fn the_per_source_cap_refuses_the_next_connection_from_that_address_only() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let (handle, addr) = start(
        2,
        ConnLimits {
            max_connections_per_source: 2,
            ..ConnLimits::default()
        },
    );
    let mut a1 = connect_from("127.0.0.2", addr);
    let mut a2 = connect_from("127.0.0.2", addr);
    served(&mut a1);
    served(&mut a2);
    let mut a3 = connect_from("127.0.0.2", addr);
    assert!(
        closed_by_registrar(&mut a3),
        "a third connection from 127.0.0.2 is accepted"
    );
    let mut b = connect_from("127.0.0.1", addr);
    served(&mut b);
    let c = handle.metrics_source().connections();
    assert_eq!((c.refused_per_source, c.open), (1, 3), "{c:?}");
    // A closed connection frees its place.
    drop(a1);
    wait_for(&handle, "the closed connection is released", |c| {
        c.open == 2
    });
    let mut a4 = connect_from("127.0.0.2", addr);
    served(&mut a4);
    served(&mut a2);
    handle.shutdown().unwrap();
}

/// A client that pipelines large resolutions and never reads is closed (the counter
/// `closed` says why); a normal client keeps getting answers.
fn never_reading_client_is_closed(limits: ConnLimits, closed: fn(&ConnCounters) -> u64) {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let (handle, addr) = start(1, limits);
    // Eight PEs, so that each answer is several hundred bytes.
    let mut pe = connect(addr);
    for id in 1..=8 {
        pe.write_all(&encode(&AsapMessage::Registration {
            handle: "pool".into(),
            element: element(common::Kind::Tcp, id),
        }))
        .unwrap();
        recv(&mut pe);
    }
    let mut normal = connect(addr);
    served(&mut normal);
    let hog = connect(addr);
    let mut writer = hog.try_clone().unwrap();
    let flood = std::thread::spawn(move || {
        let batch: Vec<u8> = std::iter::repeat_n(resolution(8), 512).flatten().collect();
        // Until the registrar closes it (a write error), at most for GUARD.
        let end = Instant::now() + GUARD;
        while Instant::now() < end && writer.write_all(&batch).is_ok() {}
    });
    wait_for(&handle, "the never-reading client is closed", |c| {
        closed(c) >= 1
    });
    served(&mut normal);
    flood.join().unwrap();
    served(&mut normal);
    drop(hog);
    handle.shutdown().unwrap();
}

#[test]
fn a_never_reading_client_is_closed_at_its_own_backlog_cap() {
    never_reading_client_is_closed(
        ConnLimits {
            max_unsent_per_connection: 64 << 10,
            ..ConnLimits::default()
        },
        |c| c.closed_slow_consumer,
    );
}

#[test]
fn the_largest_backlog_is_closed_when_the_shard_total_passes_its_cap() {
    never_reading_client_is_closed(
        ConnLimits {
            max_unsent_per_shard: 64 << 10,
            ..ConnLimits::default()
        },
        |c| c.closed_shard_backlog,
    );
}

#[test]
fn broken_framing_is_counted_and_closes_only_that_connection() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let (handle, addr) = start(2, ConnLimits::default());
    let mut normal = connect(addr);
    let mut broken = connect(addr);
    // Message Length 2: below the 4-byte header.
    broken.write_all(&[0x03, 0x00, 0x00, 0x02]).unwrap();
    assert!(closed_by_registrar(&mut broken));
    served(&mut normal);
    let c = handle.metrics_source().connections();
    assert_eq!(
        (c.broken_framing_tcp, c.broken_framing_sctp),
        (1, 0),
        "{c:?}"
    );
    handle.shutdown().unwrap();
}
