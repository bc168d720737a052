//! The metrics listener as an HTTP server: idle and slow clients cannot hold scrapes
//! back, and `/healthz` and `/readyz` say whether the registrar lives and is ready.

mod common;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{GUARD, Kind, Lab};

/// A generous client timeout: a scrape behind idle clients on the old one-at-a-time
/// server took 2 s per idle client, so 20 of them made it miss this by far.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// One GET; the status code and the body.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    s.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response)
        .unwrap_or_else(|e| panic!("GET {path}: no whole answer within {CLIENT_TIMEOUT:?}: {e}"));
    let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("a status line: {head}"));
    (code, body.to_owned())
}

/// One raw request; the whole response.
fn raw(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    s.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).expect("a whole response");
    response
}

#[test]
fn scrapes_complete_while_idle_and_slow_clients_hold_connections() {
    let lab = Lab::start(Kind::Tcp);
    let server = lab.serve_metrics();
    let addr = server.addr();
    // Twenty clients that connect and send nothing.
    let idle: Vec<TcpStream> = (0..20).map(|_| TcpStream::connect(addr).unwrap()).collect();
    // One that sends its request a byte at a time, slower than any deadline allows.
    let slow = TcpStream::connect(addr).unwrap();
    let dribble = std::thread::spawn(move || {
        let mut slow = slow;
        for b in b"GET /metrics HTTP/1.1\r\n\r\n" {
            if slow.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1500));
        }
    });
    let (code, body) = get(addr, "/metrics");
    assert_eq!(code, 200);
    assert!(body.contains("rserpool_up 1"), "{body}");
    let (code, body) = get(addr, "/healthz");
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    // The idle ones are closed at the head timeout, and counted.
    let end = Instant::now() + GUARD;
    loop {
        let (_, body) = get(addr, "/metrics");
        let cut: u64 = body
            .lines()
            .find_map(|l| {
                l.strip_prefix("rserpool_metrics_http_closed_total{reason=\"head_timeout\"} ")
            })
            .unwrap_or_else(|| panic!("no head_timeout series: {body}"))
            .parse()
            .unwrap();
        if cut >= idle.len() as u64 {
            break;
        }
        assert!(
            Instant::now() < end,
            "{cut} idle clients counted as cut off"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(idle);
    drop(server);
    dribble.join().unwrap();
    lab.finish();
}

#[test]
fn healthz_answers_and_readyz_follows_the_shards() {
    let lab = Lab::start(Kind::Tcp);
    let server = lab.serve_metrics();
    let addr = server.addr();
    assert_eq!(get(addr, "/healthz"), (200, "ok\n".to_owned()));
    assert_eq!(get(addr, "/readyz"), (200, "ready\n".to_owned()));
    let head = raw(addr, "HEAD /readyz HTTP/1.1\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("Content-Length: 6\r\n"), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "no body: {head}");
    let post = raw(addr, "POST /healthz HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
    // Stopped shards answer no snapshot request: alive, not ready.
    lab.finish();
    assert_eq!(get(addr, "/healthz"), (200, "ok\n".to_owned()));
    let (code, body) = get(addr, "/readyz");
    assert_eq!(code, 503);
    assert!(
        body.starts_with("not ready: shard(s) 0, 1 did not answer"),
        "{body}"
    );
    assert_eq!(body.lines().count(), 1, "one line: {body}");
}

/// RFC 5353 §3.2: a registrar told of a peer is ready once its start-up is over: with
/// a reachable mentor, when the mentor's handle table is in; with none (and a mentor
/// discovery time longer than the test), not at all.
#[test]
fn readyz_waits_for_the_enrp_start_up() {
    use common::scenarios::enrp_registrar;
    use rserpool::enrp::PeerAddress;
    use rserpool::registrar::Transport;

    let long = |mut c: rserpool::registrar::Config| {
        if let Some(e) = c.enrp.as_mut() {
            e.mentor_discovery = Duration::from_secs(3600);
        }
        c
    };
    // A: no peers, so its start-up is over at once.
    let (config, enrp) = enrp_registrar(0x10, Kind::Tcp, Vec::new());
    let lab = Lab::with(Kind::Tcp, config, enrp);
    let a = lab.handle.as_ref().unwrap();
    let a_metrics = a.serve_metrics("127.0.0.1:0".parse().unwrap()).unwrap();
    assert_eq!(get(a_metrics.addr(), "/readyz").0, 200);

    // C: its one peer does not exist (a port just freed), so it waits for a mentor.
    let nobody = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gone = PeerAddress {
        transport: Transport::Tcp,
        addr: nobody.local_addr().unwrap(),
    };
    drop(nobody);
    let (config, enrp) = enrp_registrar(0x30, Kind::Tcp, vec![gone]);
    let (c, _) = common::start_registrar(Kind::Tcp, long(config), enrp);
    let c_metrics = c.serve_metrics("127.0.0.1:0".parse().unwrap()).unwrap();
    let (code, body) = get(c_metrics.addr(), "/readyz");
    assert_eq!(code, 503, "{body}");
    assert!(
        body.starts_with("not ready: ENRP start-up not over"),
        "{body}"
    );

    // B: A is its mentor; ready once A's table is downloaded.
    let peer_a = PeerAddress {
        transport: Transport::Tcp,
        addr: a.enrp_endpoints()[0].addr(),
    };
    let (config, enrp) = enrp_registrar(0x20, Kind::Tcp, vec![peer_a]);
    let (b, _) = common::start_registrar(Kind::Tcp, long(config), enrp);
    let b_metrics = b.serve_metrics("127.0.0.1:0".parse().unwrap()).unwrap();
    let end = Instant::now() + GUARD;
    loop {
        let (code, body) = get(b_metrics.addr(), "/readyz");
        if code == 200 {
            break;
        }
        assert!(Instant::now() < end, "B never ready: {body}");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop((b_metrics, c_metrics, a_metrics));
    b.shutdown().unwrap();
    c.shutdown().unwrap();
    lab.finish();
}
