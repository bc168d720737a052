//! The shard's own I/O against real sockets on loopback: outbound connects and their
//! fall-backs, ENRP listeners, multicast presences. The test decides every transmit
//! ([`Shard::transmit`]) and reads what the registrar was told ([`Ctx::told`]); the
//! registrar's own outputs stay with it, so these tests hold whatever it does with them.
//! Peers are blocking sockets on threads that hand what they receive over channels;
//! the shard is driven until a condition holds (the guard only stops a hang).
//! SCTP tests return early on a kernel without SCTP (they run in the SCTP lab).

use std::io::{self, Read as _, Write as _};
use std::net::{Ipv4Addr, TcpListener, TcpStream, UdpSocket};
use std::sync::mpsc::{Receiver, channel};

use rserpool::RegistrarId;
use rserpool::registrar::{Config, Router, ShardId};
use rserpool::wire::{EnrpIds, EnrpMessage, PPID_ASAP, PPID_ENRP};

use super::*;
use crate::net;
use crate::runtime::mesh;
use crate::runtime::tcp::{ACCEPT_BACKOFF, HOLD_BACK, TURN_BUDGET};

const GUARD: Duration = Duration::from_secs(20);
const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const FIRST: ConnId = ConnId(ConnId::OUTBOUND);

fn conn(n: u64) -> ConnId {
    ConnId(ConnId::OUTBOUND + n)
}

fn shard(sockets: Sockets) -> Shard {
    shard_with(Config::default(), sockets)
}

fn shard_with(config: Config, sockets: Sockets) -> Shard {
    shard_limited(config, sockets, Default::default())
}

fn shard_limited(
    config: Config,
    sockets: Sockets,
    limits: super::super::limits::ConnLimits,
) -> Shard {
    let signals: Arc<[Signal]> = vec![Signal::new().unwrap()].into();
    let port = mesh::build(signals.clone(), 16).pop().unwrap();
    let (_requests, mut scrape) = scrape::queues(1);
    let registrar = Registrar::new(config, ShardId(0), Router::new(1, 1), 1);
    let stop = Arc::new(AtomicBool::new(false));
    Shard::new(
        0,
        registrar,
        sockets,
        port,
        scrape.pop().unwrap(),
        signals,
        stop,
        IoMode::default(),
        Arc::new(super::super::limits::Limits::new(limits, None)),
        Arc::default(),
    )
    .unwrap()
}

/// A shard with one TCP listener for ENRP, and the listener's address.
fn enrp_tcp_shard() -> (Shard, SocketAddr) {
    let listener = net::socket::tcp_listener("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let s = shard(Sockets {
        tcp: vec![(listener, Protocol::Enrp)],
        ..Sockets::default()
    });
    (s, addr)
}

impl Shard {
    /// Drives the shard's I/O (completions, failed connects, sends) until `done`.
    fn io_until(&mut self, what: &str, mut done: impl FnMut(&mut Self) -> bool) {
        let end = Instant::now() + GUARD;
        loop {
            self.ctx.now = Instant::now();
            self.tcp.unpark(&mut self.ctx);
            self.complete();
            self.tcp.resume(&mut self.ctx, false);
            self.flush();
            if done(self) {
                return;
            }
            assert!(Instant::now() < end, "gave up waiting: {what}");
            // Parked messages want the next turn at once, as in `Shard::run`.
            let wait = if self.tcp.has_parked() {
                Duration::ZERO
            } else {
                Duration::from_millis(100)
            };
            self.ctx.ring.submit_and_wait(Some(wait)).unwrap();
        }
    }

    /// The connection that came up `n`th (from 0), if that many did.
    fn nth_up(&self, n: usize) -> Option<ConnId> {
        self.ctx
            .told
            .iter()
            .filter_map(|t| match t {
                Told::Up(c, _) => Some(*c),
                _ => None,
            })
            .nth(n)
    }

    fn was_told(&self, t: &Told) -> bool {
        self.ctx.told.contains(t)
    }

    /// The connection info `conn` came up with.
    fn up_info(&self, conn: ConnId) -> Option<ConnInfo> {
        self.ctx.told.iter().find_map(|t| match t {
            Told::Up(c, info) if *c == conn => Some(info.clone()),
            _ => None,
        })
    }

    fn wait_up(&mut self, conn: ConnId) -> ConnInfo {
        self.io_until("the connection comes up", |s| s.up_info(conn).is_some());
        self.up_info(conn).unwrap()
    }
}

/// A distinct, well-formed ENRP message.
fn enrp(n: u32) -> Vec<u8> {
    let mut out = Vec::new();
    EnrpMessage::ListRequest {
        ids: EnrpIds {
            sender: RegistrarId(n),
            receiver: RegistrarId(0),
        },
    }
    .encode(&mut out);
    out
}

fn connect(
    conn: ConnId,
    protocol: Protocol,
    transports: &[Transport],
    addrs: &[IpAddr],
    port: u16,
) -> Transmit {
    Transmit::Connect {
        conn,
        protocol,
        transports: transports.to_vec(),
        addrs: addrs.to_vec(),
        port,
    }
}

/// One length-framed message (reference §2.4), or `None` at the end of the stream.
fn read_frame(r: &mut impl io::Read) -> io::Result<Option<Vec<u8>>> {
    let mut msg = vec![0u8; 4];
    match r.read_exact(&mut msg) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = usize::from(u16::from_be_bytes([msg[2], msg[3]]));
    msg.resize(len.next_multiple_of(4).max(4), 0);
    r.read_exact(&mut msg[4..])?;
    Ok(Some(msg))
}

/// The far end of an outbound connection or association: on a thread, it accepts one,
/// hands over a handle to send with, and passes on everything it reads (`None`: the
/// end), which [`FarEnd::has`] collects into `got`.
struct FarEnd<H, M> {
    handle: Receiver<H>,
    items: Receiver<Option<M>>,
    got: Vec<Option<M>>,
}

impl<H: Send + 'static, M: Send + 'static> FarEnd<H, M> {
    /// `accept` waits for the connection and returns the handle and a reader of the
    /// next item (`None` at the end).
    fn spawn<R>(accept: impl FnOnce() -> (H, R) + Send + 'static) -> Self
    where
        R: FnMut() -> Option<M> + Send + 'static,
    {
        let (htx, handle) = channel();
        let (itx, items) = channel();
        std::thread::spawn(move || {
            let (h, mut read) = accept();
            htx.send(h).unwrap();
            loop {
                let m = read();
                let end = m.is_none();
                if itx.send(m).is_err() || end {
                    return;
                }
            }
        });
        Self {
            handle,
            items,
            got: Vec::new(),
        }
    }

    /// Whether `n` items (or ends) have arrived.
    fn has(&mut self, n: usize) -> bool {
        self.got.extend(self.items.try_iter());
        self.got.len() >= n
    }
}

/// The far end of an outbound TCP connection, reading whole frames.
fn tcp_far_end(listener: TcpListener) -> FarEnd<TcpStream, Vec<u8>> {
    FarEnd::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(GUARD)).unwrap();
        let writer = s.try_clone().unwrap();
        (writer, move || read_frame(&mut s).unwrap_or(None))
    })
}

#[test]
fn an_outbound_tcp_connection_sends_what_waited_carries_enrp_both_ways_and_closes() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut peer = tcp_far_end(listener);
    let mut s = shard(Sockets::default());

    s.transmit(connect(
        FIRST,
        Protocol::Enrp,
        &[Transport::Tcp],
        &[LOCALHOST],
        port,
    ));
    // Transmitted while connecting: they wait, and go first, in order.
    s.transmit(Transmit::Enrp {
        conn: FIRST,
        payload: enrp(1),
    });
    s.transmit(Transmit::Enrp {
        conn: FIRST,
        payload: enrp(2),
    });
    let info = s.wait_up(FIRST);
    assert_eq!(info.transport, Transport::Tcp);
    assert_eq!(info.protocol, Protocol::Enrp);
    assert_eq!(info.peer_addrs, vec![LOCALHOST]);
    assert_eq!(info.peer_port, port);
    assert_eq!(info.local_addrs, vec![LOCALHOST]);
    assert_ne!(info.local_port, 0);
    s.io_until("the waiting messages arrive", |_| peer.has(2));
    assert_eq!(peer.got, vec![Some(enrp(1)), Some(enrp(2))]);

    let mut w = peer.handle.recv_timeout(GUARD).unwrap();
    w.write_all(&enrp(3)).unwrap();
    s.io_until("the peer's message reaches the registrar", |s| {
        s.was_told(&Told::Enrp(FIRST, enrp(3)))
    });

    // Close: what is queued still goes out, then the connection ends.
    s.transmit(Transmit::Enrp {
        conn: FIRST,
        payload: enrp(4),
    });
    s.transmit(Transmit::Close { conn: FIRST });
    assert_eq!(s.ctx.told.last(), Some(&Told::Down(FIRST)));
    s.io_until("the last message and the end arrive", |_| peer.has(4));
    assert_eq!(peer.got[2..], [Some(enrp(4)), None]);
    s.io_until("the connection is released", |s| !s.tcp.has(FIRST));
    assert_eq!(
        s.ctx.told[1..],
        [Told::Enrp(FIRST, enrp(3)), Told::Down(FIRST)]
    );
}

#[test]
fn a_failed_connect_tries_the_next_address_then_reports_down_when_none_is_left() {
    // Bound to 127.0.0.1 only: the same port on 127.0.0.2 refuses.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let refusing = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let mut s = shard(Sockets::default());

    // No SCTP socket for ASAP on this shard: SCTP is skipped; then TCP, one address
    // after the other.
    s.transmit(connect(
        FIRST,
        Protocol::Asap,
        &[Transport::Sctp, Transport::Tcp],
        &[refusing, LOCALHOST],
        port,
    ));
    let info = s.wait_up(FIRST);
    assert_eq!(info.transport, Transport::Tcp);
    assert_eq!(info.protocol, Protocol::Asap);
    assert_eq!(info.peer_addrs, vec![LOCALHOST]);

    s.transmit(connect(
        conn(1),
        Protocol::Enrp,
        &[Transport::Tcp],
        &[refusing],
        port,
    ));
    s.io_until("the refused connection is reported down", |s| {
        s.was_told(&Told::Down(conn(1)))
    });
    assert_eq!(s.up_info(conn(1)), None);

    // Nothing this shard can try: down at once.
    s.transmit(connect(
        conn(2),
        Protocol::Enrp,
        &[Transport::Sctp],
        &[LOCALHOST],
        port,
    ));
    assert_eq!(s.ctx.told.last(), Some(&Told::Down(conn(2))));
    drop(listener);
}

#[test]
fn closing_a_connection_being_opened_reports_it_down_once_and_frees_the_socket() {
    let mut s = shard(Sockets::default());
    let idle = s.ctx.ring.live();
    // TEST-NET-2 (RFC 5737): the SYN goes nowhere (or the route is missing).
    let nowhere = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
    s.transmit(connect(
        FIRST,
        Protocol::Enrp,
        &[Transport::Tcp],
        &[nowhere],
        9,
    ));
    s.transmit(Transmit::Enrp {
        conn: FIRST,
        payload: enrp(1),
    });
    s.transmit(Transmit::Close { conn: FIRST });
    assert_eq!(s.ctx.told, vec![Told::Down(FIRST)]);
    s.io_until("the connect is cancelled", |s| {
        !s.tcp.has(FIRST) && s.ctx.ring.live() == idle
    });
    assert_eq!(s.ctx.told, vec![Told::Down(FIRST)]);
    // The id is gone: transmits on it are dropped.
    s.transmit(Transmit::Enrp {
        conn: FIRST,
        payload: enrp(2),
    });
    assert!(!s.ctx.dials.contains(FIRST));
}

#[test]
fn enrp_listeners_give_enrp_connections_and_broken_framing_closes_them() {
    let any = "127.0.0.1:0".parse().unwrap();
    let asap = net::socket::tcp_listener(any).unwrap();
    let enrp_l = net::socket::tcp_listener(any).unwrap();
    let (asap_addr, enrp_addr) = (asap.local_addr().unwrap(), enrp_l.local_addr().unwrap());
    let mut s = shard(Sockets {
        tcp: vec![(asap, Protocol::Asap), (enrp_l, Protocol::Enrp)],
        ..Sockets::default()
    });

    let mut client = TcpStream::connect(enrp_addr).unwrap();
    client.set_read_timeout(Some(GUARD)).unwrap();
    client.write_all(&enrp(7)).unwrap();
    s.io_until("the message reaches the registrar's ENRP side", |s| {
        s.ctx
            .told
            .iter()
            .any(|t| matches!(t, Told::Enrp(_, m) if *m == enrp(7)))
    });
    let Some(Told::Up(id, info)) = s.ctx.told.first().cloned() else {
        panic!("{:?}", s.ctx.told)
    };
    assert!(!id.is_outbound());
    assert_eq!(info.protocol, Protocol::Enrp);
    assert_eq!(info.transport, Transport::Tcp);
    assert_eq!(info.local_addrs, vec![LOCALHOST]);
    assert_eq!(info.local_port, enrp_addr.port());
    assert_eq!(info.peer_port, client.local_addr().unwrap().port());

    let _pe = TcpStream::connect(asap_addr).unwrap();
    s.io_until("the ASAP connection comes up", |s| s.ctx.told.len() >= 3);
    assert!(matches!(&s.ctx.told[2], Told::Up(_, i) if i.protocol == Protocol::Asap));

    // Message Length 2 is below the header's own 4 bytes.
    client.write_all(&[0x01, 0, 0, 2]).unwrap();
    s.io_until("the ENRP connection is closed", |s| {
        s.was_told(&Told::Down(id))
    });
    let mut rest = Vec::new();
    let ended = match client.read_to_end(&mut rest) {
        Ok(_) => true,
        Err(e) => e.kind() == io::ErrorKind::ConnectionReset,
    };
    assert!(ended);
}

/// A client that pipelines more than a turn's budget has the rest parked: another
/// client's message that came in behind them is handled in the same turn, and the
/// parked ones follow in order in later turns.
#[test]
fn a_pipelining_client_cannot_hold_a_turn_beyond_its_budget() {
    let (mut s, addr) = enrp_tcp_shard();
    let mut hog = TcpStream::connect(addr).unwrap();
    s.io_until("the hog's connection comes up", |s| !s.ctx.told.is_empty());
    let mut polite = TcpStream::connect(addr).unwrap();
    s.io_until("the polite connection comes up", |s| s.ctx.told.len() >= 2);
    let (Told::Up(hog_id, _), Told::Up(polite_id, _)) = (&s.ctx.told[0], &s.ctx.told[1]) else {
        panic!("{:?}", s.ctx.told)
    };
    let (hog_id, polite_id) = (*hog_id, *polite_id);

    const PIPELINED: u32 = 10 * TURN_BUDGET;
    let burst: Vec<u8> = (0..PIPELINED).flat_map(enrp).collect();
    hog.write_all(&burst).unwrap();
    polite.write_all(&enrp(PIPELINED)).unwrap();
    // Both are in the registrar's socket buffers before the shard looks.
    std::thread::sleep(Duration::from_millis(100));
    s.io_until("the polite client's message is handled", |s| {
        s.was_told(&Told::Enrp(polite_id, enrp(PIPELINED)))
    });
    let from_hog = |told: &[Told]| {
        told.iter()
            .filter(|t| matches!(t, Told::Enrp(c, _) if *c == hog_id))
            .count()
    };
    let at = s
        .ctx
        .told
        .iter()
        .position(|t| *t == Told::Enrp(polite_id, enrp(PIPELINED)))
        .unwrap();
    let before = from_hog(&s.ctx.told[..at]);
    assert!(
        before <= TURN_BUDGET as usize,
        "{before} of the hog's messages were handled before the polite one"
    );
    s.io_until("every pipelined message is handled", |s| {
        from_hog(&s.ctx.told) == PIPELINED as usize
    });
    let order: Vec<Vec<u8>> = s
        .ctx
        .told
        .iter()
        .filter_map(|t| match t {
            Told::Enrp(c, m) if *c == hog_id => Some(m.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(order, (0..PIPELINED).map(enrp).collect::<Vec<_>>());
    // Once drained it receives again.
    hog.write_all(&enrp(PIPELINED + 1)).unwrap();
    s.io_until("the hog is read again", |s| {
        s.was_told(&Told::Enrp(hog_id, enrp(PIPELINED + 1)))
    });
}

/// A client that does not read its answers has its input held back once more than
/// [`HOLD_BACK`] waits unsent: what it sends after the receive that found the
/// backlog is not read (nor handled) until it has read enough for the backlog to halve.
#[test]
fn a_client_that_does_not_read_is_not_read_until_its_backlog_halves() {
    let (mut s, addr) = enrp_tcp_shard();
    let mut client = TcpStream::connect(addr).unwrap();
    s.io_until("the connection comes up", |s| !s.ctx.told.is_empty());
    let Told::Up(id, _) = s.ctx.told[0] else {
        panic!("{:?}", s.ctx.told)
    };

    // Answers nobody reads, until the kernel's buffers are full and more than
    // HOLD_BACK waits in the shard.
    let chunk = vec![0u8; 60 << 10];
    let mut sent = 0;
    while s.tcp.backlog(id).unwrap().0 <= HOLD_BACK {
        s.transmit(Transmit::Enrp {
            conn: id,
            payload: chunk.clone(),
        });
        sent += chunk.len();
        assert!(sent < 256 << 20, "the kernel took 256 MiB without a reader");
        s.io_until("the sends are started", |_| true);
    }
    // The receive that brings the client's next message is its last one.
    client.write_all(&enrp(1)).unwrap();
    s.io_until("its input is held back", |s| s.tcp.backlog(id).unwrap().1);
    assert!(s.was_told(&Told::Enrp(id, enrp(1))));
    client.write_all(&enrp(2)).unwrap();
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(20));
        s.io_until("a look", |_| true);
    }
    assert!(
        !s.was_told(&Told::Enrp(id, enrp(2))),
        "a held-back connection was read"
    );

    // The client reads everything: the backlog drains, the input is read again.
    let mut reader = client.try_clone().unwrap();
    let drained = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0;
        while got < sent {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        got
    });
    s.io_until("the held-back message is handled", |s| {
        s.was_told(&Told::Enrp(id, enrp(2)))
    });
    assert!(!s.tcp.backlog(id).unwrap().1);
    assert_eq!(drained.join().unwrap(), sent);
}

/// A listener paused after a failed accept is re-armed after [`ACCEPT_BACKOFF`]: the
/// shard's next wake-up comes that soon, not at the connections' next sweep (a second
/// away with the default timeouts).
#[test]
fn a_paused_listener_brings_the_shards_next_wake_up_forward() {
    let (mut s, addr) = enrp_tcp_shard();
    let _client = TcpStream::connect(addr).unwrap();
    s.io_until("the connection comes up", |s| !s.ctx.told.is_empty());
    let swept = s
        .tcp
        .take_deadline()
        .expect("a sweep is due with a connection");
    assert!(swept > s.ctx.now + ACCEPT_BACKOFF, "{swept:?}");
    assert!(!s.tcp.deadline_moved(), "taken");
    // The accept fails for want of memory (and its multishot ends).
    let failed = Completion {
        token: Token::Accept(0).encode(),
        result: -libc::ENOMEM,
        more: false,
        buf: OpBuf::None,
        provided: None,
    };
    s.tcp.on_accept(&mut s.ctx, 0, failed);
    assert!(s.tcp.deadline_moved(), "the loop must arm its timer again");
    assert_eq!(
        s.tcp.take_deadline(),
        Some(s.ctx.now + ACCEPT_BACKOFF),
        "the back-off's end is the next deadline"
    );
    // Once it passed, the listener takes connections again.
    std::thread::sleep(ACCEPT_BACKOFF);
    let _second = TcpStream::connect(addr).unwrap();
    s.io_until("the second connection comes up", |s| {
        s.ctx
            .told
            .iter()
            .filter(|t| matches!(t, Told::Up(..)))
            .count()
            == 2
    });
    assert!(
        s.tcp
            .take_deadline()
            .is_some_and(|d| d > s.ctx.now + ACCEPT_BACKOFF)
    );
}

/// One connection with something to send: its bytes go out with a plain send(2), no
/// ring operation (so no completion to handle); with two, both go through the ring.
#[test]
fn a_lone_connections_bytes_go_out_without_a_ring_operation() {
    let (mut s, addr) = enrp_tcp_shard();
    let mut ids = Vec::new();
    let mut clients = Vec::new();
    for n in 1..=2 {
        let c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(GUARD)).unwrap();
        clients.push(c);
        s.io_until("the connection comes up", |s| s.ctx.told.len() == n);
        let Told::Up(id, _) = s.ctx.told[n - 1] else {
            panic!("{:?}", s.ctx.told)
        };
        ids.push(id);
    }

    let live = s.ctx.ring.live();
    s.transmit(Transmit::Enrp {
        conn: ids[0],
        payload: enrp(1),
    });
    s.flush();
    assert_eq!(s.ctx.ring.live(), live, "a ring operation for a lone send");
    assert_eq!(s.tcp.unsent(), 0);
    assert_eq!(read_frame(&mut clients[0]).unwrap(), Some(enrp(1)));

    for (n, id) in (2..).zip(&ids) {
        s.transmit(Transmit::Enrp {
            conn: *id,
            payload: enrp(n),
        });
    }
    s.flush();
    assert_eq!(
        s.ctx.ring.live(),
        live + 2,
        "two sends, two ring operations"
    );
    s.io_until("both sends complete", |s| s.ctx.ring.live() == live);
    assert_eq!(s.tcp.unsent(), 0);
    for (n, c) in (2..).zip(&mut clients) {
        assert_eq!(read_frame(c).unwrap(), Some(enrp(n)));
    }
}

/// Multicast with loopback unicast stand-ins (the receiver joins a group only when
/// given one; the sending path is the same).
/// Resolutions are answered straight into the connection's send buffer: those answers
/// go out in order, and count towards its backlog, so that a client that does not read
/// is held back like one whose answers were queued.
#[test]
fn answers_written_into_the_send_buffer_are_sent_in_order_and_count_towards_the_backlog() {
    use rserpool::wire::AsapMessage;
    const REQUESTS: usize = 200_000;
    let listener = net::socket::tcp_listener("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let config = Config {
        allow_loopback: true,
        ..Config::default()
    };
    let mut s = shard_with(
        config,
        Sockets {
            tcp: vec![(listener, Protocol::Asap)],
            ..Sockets::default()
        },
    );
    let pe = register_pe(&mut s, addr);

    let mut pu = TcpStream::connect(addr).unwrap();
    pu.set_read_timeout(Some(GUARD)).unwrap();
    let mut request = Vec::new();
    AsapMessage::HandleResolution {
        subscribe: false,
        handle: "p".into(),
        items: Some(1),
    }
    .encode(&mut request);
    let mut writer = pu.try_clone().unwrap();
    std::thread::spawn(move || {
        for _ in 0..REQUESTS {
            if writer.write_all(&request).is_err() {
                return;
            }
        }
    });
    // The pool user reads nothing yet: its answers fill the kernel's buffers, then
    // the connection's backlog, until its input is held back.
    let mut id = None;
    s.io_until("the pool user is held back", |s| {
        s.drain_outputs();
        s.flush();
        // The second connection up: the PE's was the first.
        id = id.or_else(|| s.nth_up(1));
        id.and_then(|id| s.tcp.backlog(id))
            .is_some_and(|(_, held)| held)
    });
    assert!(
        s.tcp.unsent() >= HOLD_BACK,
        "the shard counted {} unsent bytes",
        s.tcp.unsent()
    );
    // Now it reads: every answer arrives, positive and whole, and the input resumes.
    let (done_tx, done) = channel();
    std::thread::spawn(move || {
        let mut n = 0;
        while n < REQUESTS {
            let Ok(Some(frame)) = read_frame(&mut pu) else {
                break;
            };
            match AsapMessage::decode(&frame).map(|d| d.message) {
                Ok(AsapMessage::HandleResolutionResponse {
                    error: None,
                    elements,
                    ..
                }) if elements.len() == 1 => n += 1,
                other => panic!("answer {n}: {other:?}"),
            }
        }
        done_tx.send(n).unwrap();
    });
    let mut answered = None;
    s.io_until("every answer is read", |s| {
        s.drain_outputs();
        s.flush();
        answered = done.try_recv().ok();
        answered.is_some()
    });
    assert_eq!(answered, Some(REQUESTS));
    assert_eq!(s.tcp.unsent(), 0);
    drop(pe);
}

/// Registers PE 1 of pool "p" with the shard's ASAP listener at `addr`; the PE's
/// connection (kept open: closing it would remove the PE).
fn register_pe(s: &mut Shard, addr: SocketAddr) -> TcpStream {
    use rserpool::wire::{
        AsapMessage, IpTransport, PolicyParam, PoolElement, RegistrationLife, UserTransport,
    };
    let mut pe = TcpStream::connect(addr).unwrap();
    let mut registration = Vec::new();
    AsapMessage::Registration {
        handle: "p".into(),
        element: PoolElement {
            id: rserpool::PoolElementId(1),
            home: RegistrarId(0),
            registration_life: RegistrationLife(600_000),
            user_transport: UserTransport::Tcp(IpTransport {
                port: 9000,
                reserved: 0,
                address: LOCALHOST,
            }),
            policy: PolicyParam::round_robin(),
            asap_transport: None,
        },
    }
    .encode(&mut registration);
    pe.write_all(&registration).unwrap();
    s.io_until("the PE is registered", |s| {
        s.ctx.registrar.handlespace().pool(b"p").is_some()
    });
    pe
}

/// A pool user whose requests arrive one per receive (each handled in place, without
/// the general framing path) is held back all the same once its answers pile up past
/// the hold-back mark: its receive stops, and what it sends then is not read. (The
/// shard starts no send here, so that the answers pile up in it, not in the kernel.)
#[test]
fn requests_arriving_one_by_one_are_held_back_once_their_answers_pile_up() {
    // Positive answers, written straight into the send buffer.
    one_by_one_until_held_back("p");
}

/// The same with negative answers (no such pool), which go through the registrar's
/// queue before they count in the connection's backlog.
#[test]
fn requests_arriving_one_by_one_are_held_back_once_their_queued_answers_pile_up() {
    one_by_one_until_held_back("no-such-pool");
}

fn one_by_one_until_held_back(pool: &str) {
    use rserpool::wire::{AsapMessage, AsapType};
    let listener = net::socket::tcp_listener("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let config = Config {
        allow_loopback: true,
        ..Config::default()
    };
    // Held back past 8 KiB; a slow consumer past 16 KiB.
    let limits = super::super::limits::ConnLimits {
        max_unsent_per_connection: 16 << 10,
        ..Default::default()
    };
    let sockets = Sockets {
        tcp: vec![(listener, Protocol::Asap)],
        ..Sockets::default()
    };
    let mut s = shard_limited(config, sockets, limits);
    let _pe = register_pe(&mut s, addr);
    s.drain_outputs();
    s.flush();
    let mut pu = TcpStream::connect(addr).unwrap();
    pu.set_nodelay(true).unwrap();
    let mut request = Vec::new();
    AsapMessage::HandleResolution {
        subscribe: false,
        handle: pool.into(),
        items: Some(1),
    }
    .encode(&mut request);
    let received = |s: &Shard| {
        s.ctx
            .registrar
            .metrics()
            .received(AsapType::HANDLE_RESOLUTION)
    };
    // Turns that handle what arrives but start no send, until `done`.
    let turns_until = |s: &mut Shard, what: &str, done: &dyn Fn(&Shard) -> bool| {
        let end = Instant::now() + GUARD;
        while !done(s) {
            assert!(Instant::now() < end, "gave up waiting: {what}");
            s.ctx
                .ring
                .submit_and_wait(Some(Duration::from_millis(10)))
                .unwrap();
            s.ctx.now = Instant::now();
            s.tcp.unpark(&mut s.ctx);
            s.complete();
            // Queued answers into the connection's send buffer, but no send started.
            s.drain_outputs();
        }
    };
    // The second connection up: the PE's was the first.
    turns_until(&mut s, "the pool user's connection is up", &|s| {
        s.nth_up(1).is_some()
    });
    let id = s.nth_up(1).unwrap();
    let held = |s: &Shard| s.tcp.backlog(id).unwrap().1;
    // One request at a time, each handled before the next is sent.
    let mut n = 0;
    while !held(&s) {
        assert!(n < 10_000, "the pool user's input was never held back");
        pu.write_all(&request).unwrap();
        n += 1;
        turns_until(&mut s, "the request is handled", &|s| received(s) == n);
    }
    let (unsent, _) = s.tcp.backlog(id).unwrap();
    assert!(
        unsent > 8 << 10 && unsent < 9 << 10,
        "{unsent} bytes unsent"
    );
    assert!(n > 10, "held back after {n} requests");
    // Not read any more, and still open (not a slow consumer).
    pu.write_all(&request).unwrap();
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(20));
        s.ctx.ring.submit_and_wait(Some(Duration::ZERO)).unwrap();
        s.tcp.unpark(&mut s.ctx);
        s.complete();
    }
    assert_eq!(received(&s), n, "a held-back connection was read");
    assert!(s.tcp.has(id));
}

#[test]
fn enrp_multicast_datagrams_reach_the_registrar_and_presences_go_to_the_group() {
    let group = UdpSocket::bind("127.0.0.1:0").unwrap();
    group.set_nonblocking(true).unwrap();
    let presence = net::udp::multicast_sender(group.local_addr().unwrap(), 0).unwrap();
    let from_port = presence.local_addr().unwrap().port();
    let presence_rx = net::udp::multicast_receiver("127.0.0.1:0".parse().unwrap()).unwrap();
    let rx_addr = presence_rx.local_addr().unwrap();
    let mut s = shard(Sockets {
        udp: UdpSockets {
            presence: Some(presence),
            presence_rx: Some(presence_rx),
            announce: None,
        },
        ..Sockets::default()
    });

    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.send_to(&enrp(9), rx_addr).unwrap();
    let told = Told::Multicast(peer.local_addr().unwrap(), enrp(9));
    s.io_until("the datagram reaches the registrar", |s| s.was_told(&told));

    s.transmit(Transmit::EnrpMulticast { payload: enrp(10) });
    let mut buf = [0u8; 512];
    let mut got = None;
    s.io_until("the presence arrives", |_| {
        got = group.recv_from(&mut buf).ok();
        got.is_some()
    });
    let (n, from) = got.unwrap();
    assert_eq!(buf[..n], enrp(10));
    assert_eq!(from.port(), from_port);
}

/// The far end of an outbound SCTP association (a one-to-one listener), reading each
/// message with its PPID.
fn sctp_far_end(listener: net::sctp::Listener) -> FarEnd<net::sctp::Client, (u32, Vec<u8>)> {
    FarEnd::spawn(move || {
        let c = listener.accept().unwrap();
        c.set_read_timeout(GUARD).unwrap();
        let sender = c.try_clone().unwrap();
        (sender, move || {
            let mut buf = Vec::new();
            c.recv(&mut buf).unwrap_or(None).map(|ppid| (ppid, buf))
        })
    })
}

#[test]
fn an_outbound_sctp_association_carries_enrp_with_ppid_12_and_shuts_down_on_close() {
    if !net::sctp::available() {
        eprintln!("skipped: this kernel has no SCTP");
        return;
    }
    let any = "127.0.0.1:0".parse().unwrap();
    let enrp_socket = net::sctp::listener(any, false).unwrap();
    let enrp_port = net::sctp::local_addr(std::os::fd::AsRawFd::as_raw_fd(&enrp_socket))
        .unwrap()
        .port();
    let listener = net::sctp::Listener::bind(any).unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut peer = sctp_far_end(listener);
    let mut s = shard(Sockets {
        sctp: vec![(enrp_socket, Protocol::Enrp)],
        ..Sockets::default()
    });

    s.transmit(connect(
        FIRST,
        Protocol::Enrp,
        &[Transport::Sctp, Transport::Tcp],
        &[LOCALHOST],
        port,
    ));
    s.transmit(Transmit::Enrp {
        conn: FIRST,
        payload: enrp(1),
    });
    let info = s.wait_up(FIRST);
    assert_eq!(info.transport, Transport::Sctp);
    assert_eq!(info.protocol, Protocol::Enrp);
    assert_eq!(info.peer_addrs, vec![LOCALHOST]);
    assert_eq!(info.peer_port, port);
    assert!(info.local_addrs.contains(&LOCALHOST), "{info:?}");
    assert_eq!(info.local_port, enrp_port);
    s.io_until("the waiting message arrives", |_| peer.has(1));
    assert_eq!(peer.got, vec![Some((PPID_ENRP, enrp(1)))]);

    // ASAP (PPID 11) on an ENRP association is dropped; ENRP reaches the registrar.
    let c = peer.handle.recv_timeout(GUARD).unwrap();
    c.send(PPID_ASAP, &enrp(2)).unwrap();
    c.send(PPID_ENRP, &enrp(3)).unwrap();
    s.io_until("the ENRP message reaches the registrar", |s| {
        s.was_told(&Told::Enrp(FIRST, enrp(3)))
    });
    assert!(!s.was_told(&Told::Enrp(FIRST, enrp(2))));

    s.transmit(Transmit::Enrp {
        conn: FIRST,
        payload: enrp(4),
    });
    s.transmit(Transmit::Close { conn: FIRST });
    assert_eq!(s.ctx.told.last(), Some(&Told::Down(FIRST)));
    s.io_until("the last message and the shutdown arrive", |_| peer.has(3));
    assert_eq!(peer.got[1..], [Some((PPID_ENRP, enrp(4))), None]);
    assert_eq!(
        s.ctx
            .told
            .iter()
            .filter(|t| **t == Told::Down(FIRST))
            .count(),
        1
    );
}

#[test]
fn an_sctp_association_that_cannot_start_falls_back_to_tcp() {
    if !net::sctp::available() {
        eprintln!("skipped: this kernel has no SCTP");
        return;
    }
    let any = "127.0.0.1:0".parse().unwrap();
    let enrp_socket = net::sctp::listener(any, false).unwrap();
    // Only TCP listens on this port: the SCTP INIT is answered with an ABORT.
    let listener = TcpListener::bind(any).unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut s = shard(Sockets {
        sctp: vec![(enrp_socket, Protocol::Enrp)],
        ..Sockets::default()
    });
    s.transmit(connect(
        FIRST,
        Protocol::Enrp,
        &[Transport::Sctp, Transport::Tcp],
        &[LOCALHOST],
        port,
    ));
    let info = s.wait_up(FIRST);
    assert_eq!(info.transport, Transport::Tcp);
    assert_eq!(s.ctx.told.len(), 1, "{:?}", s.ctx.told);
}

#[test]
fn enrp_sctp_sockets_give_enrp_associations_and_drop_asap() {
    if !net::sctp::available() {
        eprintln!("skipped: this kernel has no SCTP");
        return;
    }
    let any = "127.0.0.1:0".parse().unwrap();
    let enrp_socket = net::sctp::listener(any, false).unwrap();
    let addr = net::sctp::local_addr(std::os::fd::AsRawFd::as_raw_fd(&enrp_socket)).unwrap();
    let mut s = shard(Sockets {
        sctp: vec![(enrp_socket, Protocol::Enrp)],
        ..Sockets::default()
    });
    let client = net::sctp::Client::connect(addr).unwrap();
    client.send(PPID_ASAP, &enrp(5)).unwrap();
    client.send(PPID_ENRP, &enrp(6)).unwrap();
    s.io_until("the ENRP message reaches the registrar", |s| {
        s.ctx
            .told
            .iter()
            .any(|t| matches!(t, Told::Enrp(_, m) if *m == enrp(6)))
    });
    let Some(Told::Up(id, info)) = s.ctx.told.first().cloned() else {
        panic!("{:?}", s.ctx.told)
    };
    assert_eq!(info.protocol, Protocol::Enrp);
    assert_eq!(info.transport, Transport::Sctp);
    assert_eq!(info.local_port, addr.port());
    assert_eq!(s.ctx.told[1..], [Told::Enrp(id, enrp(6))]);
}

mod tls;

/// The loop's wait ends by its next deadline through one kernel timer: a later
/// deadline keeps the pending timer, an earlier one replaces it (the removed one's
/// completion is not taken for the new one's), the timer fires no earlier than its
/// deadline, and a deadline already due means no sleep.
#[test]
fn the_wait_ends_by_the_next_deadline_through_one_kernel_timer() {
    let (mut s, _addr) = enrp_tcp_shard();
    let live = s.ctx.ring.live();
    s.ctx.now = Instant::now();
    let first = s.ctx.now + Duration::from_millis(60);
    assert_eq!(s.arm_timer(first), None, "armed: the wait needs no limit");
    let armed = s.timer.expect("a timer is pending");
    assert_eq!(armed.at, first);
    // A later deadline: the pending timer ends the wait first, and is kept.
    assert_eq!(s.arm_timer(first + Duration::from_millis(10)), None);
    assert_eq!(
        s.timer.map(|t| (t.at, t.number)),
        Some((first, armed.number))
    );
    // An earlier one replaces it.
    let sooner = s.ctx.now + Duration::from_millis(30);
    assert_eq!(s.arm_timer(sooner), None);
    let replaced = s.timer.expect("a timer is pending");
    assert_eq!(replaced.at, sooner);
    assert_ne!(replaced.number, armed.number);
    // Waiting with no limit of its own, the shard wakes at the timer.
    let end = Instant::now() + GUARD;
    while s.timer.is_some() {
        assert!(Instant::now() < end, "gave up waiting for the timer");
        s.ctx.ring.submit_and_wait(None).unwrap();
        s.complete();
    }
    assert!(
        Instant::now() >= sooner,
        "the timer fired before its deadline"
    );
    // The removed timer completed too (cancelled): neither is pending.
    assert_eq!(s.ctx.ring.live(), live);
    // A due deadline (at the next turn's start): no timer, no sleep.
    s.ctx.now = Instant::now();
    assert_eq!(s.arm_timer(sooner), Some(Duration::ZERO));
    assert!(s.timer.is_none());
}
