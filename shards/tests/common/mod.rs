//! A blocking ASAP test client over TCP or SCTP, and the end-to-end scenarios both
//! transports run against a registrar started in-process.
//!
//! Each client connection has a reader thread: it answers ENDPOINT_KEEP_ALIVE at once
//! (while the client is told to) and hands every other message to the test. Waits are
//! on conditions (a message, a counter, what a resolution returns); the timeouts are
//! only guards against hangs.

// Shared by two test crates: each uses a part, and `pub` is for the sibling module.
#![allow(dead_code, unreachable_pub)]

pub mod scenarios;

use std::collections::BTreeSet;
use std::io::{self, Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rserpool::registrar::Config;
use rserpool::wire::{
    AsapMessage, IpTransport, PPID_ASAP, PolicyParam, PoolElement, RegistrationLife, SctpTransport,
    TransportUse, UserTransport,
};
use rserpool::{PoolElementId, RegistrarId};
use rserpool_shards::net::ring::IoMode;
use rserpool_shards::net::sctp;
use rserpool_shards::runtime::{self, Handle};
use rserpool_shards::{Endpoint, EnrpEndpoints, RuntimeConfig};

/// Keep-alives go out every 100 ms during every test, and the clients acknowledge them
/// in the background.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_millis(100);
/// Where a test does not look at keep-alive expiry, an acknowledgement may take this
/// long: every removal it sees then has the cause it tests.
pub const NO_EXPIRY: Duration = Duration::from_secs(3600);
/// Where it does: not 100 ms, because on a shared two-core machine runnable threads
/// were measured waiting 50-280 ms for a core, and a live PE must never look hung
/// because of that. Silent PEs are gone within interval + timeout.
pub const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(1);
/// Guard against a hung registrar; never reached when things work.
pub const GUARD: Duration = Duration::from_secs(20);
pub const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Tcp,
    Sctp,
}

/// One connection's byte stream, as the transport frames it.
trait Wire: Send {
    /// One whole ASAP message; `None` at the end of the connection.
    fn recv(&mut self) -> io::Result<Option<Vec<u8>>>;
    fn send(&mut self, bytes: &[u8]) -> io::Result<()>;
    fn shutdown(&self);
}

impl Wire for TcpStream {
    /// Reference §2.4: the 4-byte header, then pad4(Message Length) − 4 more bytes.
    fn recv(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut msg = vec![0u8; 4];
        match self.read_exact(&mut msg) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let len = usize::from(u16::from_be_bytes([msg[2], msg[3]]));
        assert!(len >= 4, "the registrar sent a broken length {len}");
        msg.resize(len.next_multiple_of(4), 0);
        self.read_exact(&mut msg[4..])?;
        Ok(Some(msg))
    }

    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write_all(bytes)
    }

    fn shutdown(&self) {
        let _ = TcpStream::shutdown(self, Shutdown::Both);
    }
}

impl Wire for sctp::Client {
    fn recv(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut buf = Vec::new();
        match sctp::Client::recv(self, &mut buf)? {
            None => Ok(None),
            Some(PPID_ASAP) => Ok(Some(buf)),
            Some(ppid) => panic!("the registrar sent PPID {ppid}"),
        }
    }

    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        sctp::Client::send(self, PPID_ASAP, bytes)
    }

    fn shutdown(&self) {
        let _ = sctp::Client::shutdown(self);
    }
}

/// Counts keep-alive acknowledgements sent by every client of a lab, so a test can
/// wait for keep-alive rounds to pass.
#[derive(Debug, Default)]
pub struct Progress {
    acks: Mutex<u64>,
    cv: Condvar,
}

impl Progress {
    fn bump(&self) {
        *self.acks.lock().unwrap() += 1;
        self.cv.notify_all();
    }

    pub fn acks(&self) -> u64 {
        *self.acks.lock().unwrap()
    }

    /// Blocks until more than `seen` acknowledgements were sent; returns the count.
    pub fn wait_beyond(&self, seen: u64) -> u64 {
        let guard = self.acks.lock().unwrap();
        let (n, t) = self
            .cv
            .wait_timeout_while(guard, GUARD, |n| *n <= seen)
            .unwrap();
        assert!(!t.timed_out(), "no keep-alive acknowledged for {GUARD:?}");
        *n
    }
}

/// Labs of one test binary run one at a time: two registrars with hundreds of client
/// threads each would compete for this machine's two cores, and keep-alives have only
/// 100 ms to come back.
static SERIAL: Mutex<()> = Mutex::new(());

/// A registrar in this process and the clients talking to it.
pub struct Lab {
    pub kind: Kind,
    pub addr: SocketAddr,
    pub handle: Option<Handle>,
    pub progress: Arc<Progress>,
    _serial: MutexGuard<'static, ()>,
}

impl Lab {
    /// Two shards, loopback allowed, keep-alives every [`KEEP_ALIVE_INTERVAL`] that never
    /// expire ([`NO_EXPIRY`]).
    pub fn start(kind: Kind) -> Self {
        Self::with_keep_alive_timeout(kind, NO_EXPIRY)
    }

    pub fn with_keep_alive_timeout(kind: Kind, keep_alive_timeout: Duration) -> Self {
        Self::with(
            kind,
            registrar_config(0x0a0b_0c0d, keep_alive_timeout),
            EnrpEndpoints::default(),
        )
    }

    /// A lab around a registrar with these settings and ENRP endpoints.
    pub fn with(kind: Kind, registrar: Config, enrp: EnrpEndpoints) -> Self {
        Self::with_io_mode(kind, registrar, enrp, IoMode::default())
    }

    /// A lab around a registrar whose shards wait for I/O in `io_mode`.
    pub fn with_io_mode(
        kind: Kind,
        registrar: Config,
        enrp: EnrpEndpoints,
        io_mode: IoMode,
    ) -> Self {
        let serial = SERIAL
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // RUST_LOG=rserpool_shards=debug shows what the shards do.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let (handle, addr) = start_registrar_in(kind, registrar, enrp, io_mode);
        Self {
            kind,
            addr,
            handle: Some(handle),
            progress: Arc::default(),
            _serial: serial,
        }
    }

    pub fn connect(&self) -> Peer {
        self.connect_to(self.addr)
    }

    /// A client of another registrar (over the lab's transport), whose keep-alive
    /// acknowledgements count in the lab's [`Progress`] too.
    pub fn connect_to(&self, addr: SocketAddr) -> Peer {
        let (reader, writer): (Box<dyn Wire>, Box<dyn Wire>) = match self.kind {
            Kind::Tcp => {
                let s = TcpStream::connect(addr).expect("TCP connect");
                s.set_nodelay(true).unwrap();
                (Box::new(s.try_clone().unwrap()), Box::new(s))
            }
            Kind::Sctp => {
                let c = sctp::Client::connect(addr).expect("SCTP connect");
                (Box::new(c.try_clone().unwrap()), Box::new(c))
            }
        };
        Peer::new(reader, writer, self.progress.clone())
    }

    /// Serves the registrar's metrics and health endpoints on a free loopback port.
    pub fn serve_metrics(&self) -> rserpool_shards::metrics::Server {
        self.handle
            .as_ref()
            .unwrap()
            .serve_metrics("127.0.0.1:0".parse().unwrap())
            .expect("the metrics endpoint starts")
    }

    /// Stops the registrar and checks it stopped cleanly.
    pub fn finish(mut self) {
        self.handle
            .take()
            .unwrap()
            .shutdown()
            .expect("clean shutdown");
    }
}

/// A lab registrar's settings: loopback allowed, keep-alives every
/// [`KEEP_ALIVE_INTERVAL`], unacknowledged for at most `keep_alive_timeout`.
pub fn registrar_config(id: u32, keep_alive_timeout: Duration) -> Config {
    Config {
        id: RegistrarId(id),
        allow_loopback: true,
        keep_alive_interval: KEEP_ALIVE_INTERVAL,
        keep_alive_timeout,
        ..Config::default()
    }
}

/// Starts a registrar of two shards serving ASAP over `kind` on loopback; returns it and
/// its ASAP address.
pub fn start_registrar(kind: Kind, registrar: Config, enrp: EnrpEndpoints) -> (Handle, SocketAddr) {
    start_registrar_in(kind, registrar, enrp, IoMode::default())
}

/// [`start_registrar`] with the shards waiting for I/O in `io_mode`.
pub fn start_registrar_in(
    kind: Kind,
    registrar: Config,
    enrp: EnrpEndpoints,
    io_mode: IoMode,
) -> (Handle, SocketAddr) {
    let any = "127.0.0.1:0".parse().unwrap();
    let endpoint = match kind {
        Kind::Tcp => Endpoint::Tcp(any),
        Kind::Sctp => Endpoint::Sctp(any),
    };
    let config = RuntimeConfig {
        shards: 2,
        pin_cores: false,
        io_mode,
        asap: vec![endpoint],
        registrar,
        seed: 7,
        announce_group: None,
    };
    let handle = runtime::start_with(config, enrp).expect("the runtime starts");
    let addr = match kind {
        Kind::Tcp => handle.tcp_addr(),
        Kind::Sctp => handle.sctp_addr(),
    }
    .expect("the endpoint is bound");
    assert_ne!(addr.port(), 0, "port 0 resolves to the real port");
    (handle, addr)
}

/// One client connection (a PE or a PU).
pub struct Peer {
    writer: Arc<Mutex<Box<dyn Wire>>>,
    inbox: Receiver<io::Result<AsapMessage>>,
    answer: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
}

impl Peer {
    fn new(mut reader: Box<dyn Wire>, writer: Box<dyn Wire>, progress: Arc<Progress>) -> Self {
        let writer = Arc::new(Mutex::new(writer));
        let answer = Arc::new(AtomicBool::new(true));
        let answered = Arc::new(AtomicU64::new(0));
        let (tx, inbox) = channel();
        let (w, a, n) = (writer.clone(), answer.clone(), answered.clone());
        std::thread::Builder::new()
            .stack_size(128 << 10)
            .spawn(move || {
                loop {
                    let bytes = match reader.recv() {
                        Ok(Some(b)) => b,
                        Ok(None) => return,
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    };
                    let m = AsapMessage::decode(&bytes)
                        .unwrap_or_else(|e| {
                            panic!("the registrar sent undecodable {bytes:02x?}: {e:?}")
                        })
                        .message;
                    if let AsapMessage::EndpointKeepAlive {
                        handle,
                        id: Some(id),
                        ..
                    } = &m
                    {
                        // RFC 5352 §3.4 / reference §6.4 KA2: acknowledge on the same association.
                        if a.load(Ordering::SeqCst) {
                            let ack = AsapMessage::EndpointKeepAliveAck {
                                handle: handle.clone(),
                                id: *id,
                            };
                            if w.lock().unwrap().send(&encode(&ack)).is_err() {
                                return;
                            }
                            n.fetch_add(1, Ordering::SeqCst);
                            progress.bump();
                        }
                        continue;
                    }
                    if tx.send(Ok(m)).is_err() {
                        return;
                    }
                }
            })
            .expect("spawn a reader");
        Self {
            writer,
            inbox,
            answer,
            answered,
        }
    }

    pub fn send(&self, m: &AsapMessage) {
        self.send_raw(&encode(m));
    }

    pub fn send_raw(&self, bytes: &[u8]) {
        self.writer.lock().unwrap().send(bytes).expect("send");
    }

    /// The next message that is not a keep-alive.
    pub fn recv(&self) -> AsapMessage {
        match self.inbox.recv_timeout(GUARD) {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => panic!("connection failed: {e}"),
            Err(RecvTimeoutError::Timeout) => panic!("no answer within {GUARD:?}"),
            Err(RecvTimeoutError::Disconnected) => panic!("the registrar closed the connection"),
        }
    }

    /// Waits for the registrar to close this connection.
    pub fn expect_closed(&self) {
        match self.inbox.recv_timeout(GUARD) {
            Ok(Ok(m)) => panic!("expected the connection to close, got {m:?}"),
            Ok(Err(_)) | Err(RecvTimeoutError::Disconnected) => {}
            Err(RecvTimeoutError::Timeout) => panic!("the connection stayed open for {GUARD:?}"),
        }
    }

    /// Stops (or resumes) acknowledging keep-alives, as a hung PE would.
    pub fn answer_keep_alives(&self, yes: bool) {
        self.answer.store(yes, Ordering::SeqCst);
    }

    pub fn keep_alives_answered(&self) -> u64 {
        self.answered.load(Ordering::SeqCst)
    }

    /// Closes the connection from this side.
    pub fn close(self) {
        self.writer.lock().unwrap().shutdown();
    }

    /// Registers PE `id` in `pool` with this connection's address; returns the answer.
    pub fn register(&self, kind: Kind, pool: &str, id: u32) -> AsapMessage {
        self.send(&AsapMessage::Registration {
            handle: pool.into(),
            element: element(kind, id),
        });
        self.recv()
    }

    /// A handle resolution; panics unless it is answered positively.
    pub fn resolve(&self, pool: &str, items: Option<u32>) -> Vec<u32> {
        self.send(&AsapMessage::HandleResolution {
            subscribe: false,
            handle: pool.into(),
            items,
        });
        match self.recv() {
            AsapMessage::HandleResolutionResponse {
                elements,
                error: None,
                ..
            } => elements.iter().map(|e| e.id.0).collect(),
            other => panic!("expected a positive handle resolution response, got {other:?}"),
        }
    }

    /// The whole pool when it has at most 128 PEs (one resolution returns them all).
    pub fn members(&self, pool: &str) -> BTreeSet<u32> {
        self.resolve(pool, Some(128)).into_iter().collect()
    }

    /// Like [`Peer::members`], but a pool the registrar does not know is empty.
    pub fn members_if_any(&self, pool: &str) -> BTreeSet<u32> {
        self.send(&AsapMessage::HandleResolution {
            subscribe: false,
            handle: pool.into(),
            items: Some(128),
        });
        match self.recv() {
            AsapMessage::HandleResolutionResponse {
                elements,
                error: None,
                ..
            } => elements.iter().map(|e| e.id.0).collect(),
            AsapMessage::HandleResolutionResponse { error: Some(_), .. } => BTreeSet::new(),
            other => panic!("expected a handle resolution response, got {other:?}"),
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Ok(w) = self.writer.lock() {
            w.shutdown();
        }
    }
}

pub fn encode(m: &AsapMessage) -> Vec<u8> {
    let mut out = Vec::new();
    m.encode(&mut out);
    out
}

/// A PE on loopback, reachable over the lab's transport, round robin.
pub fn element(kind: Kind, id: u32) -> PoolElement {
    let user_transport = match kind {
        Kind::Tcp => UserTransport::Tcp(IpTransport {
            port: 20_000,
            reserved: 0,
            address: LOCALHOST,
        }),
        Kind::Sctp => UserTransport::Sctp(SctpTransport {
            port: 20_000,
            transport_use: TransportUse::DATA_ONLY,
            addresses: vec![LOCALHOST],
        }),
    };
    PoolElement {
        id: PoolElementId(id),
        home: RegistrarId(0),
        registration_life: RegistrationLife(600_000),
        user_transport,
        policy: PolicyParam::round_robin(),
        asap_transport: None,
    }
}

/// Checks a registration was accepted (R=0, no error) for `id`.
pub fn assert_accepted(m: &AsapMessage, id: u32) {
    match m {
        AsapMessage::RegistrationResponse {
            rejected: false,
            error: None,
            id: got,
            ..
        } if got.0 == id => {}
        other => panic!("PE {id}: expected R=0, got {other:?}"),
    }
}

/// Connects and registers PEs `ids` in `pool`, one connection each.
pub fn register_all(lab: &Lab, pool: &str, ids: impl IntoIterator<Item = u32>) -> Vec<(u32, Peer)> {
    ids.into_iter()
        .map(|id| {
            let pe = lab.connect();
            assert_accepted(&pe.register(lab.kind, pool, id), id);
            (id, pe)
        })
        .collect()
}

/// Repeats `check` until it returns true; between tries, waits for the PEs'
/// keep-alive traffic to move on (a sign of time passing on the registrar's side).
/// The value of one series (its name and labels, then a space) in a scrape of the
/// Prometheus endpoint at `metrics`.
pub fn scraped(metrics: SocketAddr, series: &str) -> f64 {
    let text = scrape_text(metrics);
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .unwrap_or_else(|| panic!("{series}is not in the scrape:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// The registrar's figure: `name{shard="N"<labels>}` summed over the shards, as a
/// query's `sum()` would (`labels` is empty or starts with a comma).
pub fn scraped_total(metrics: SocketAddr, name: &str, labels: &str) -> f64 {
    sum_over_shards(&scrape_text(metrics), name, labels)
}

/// [`scraped_total`] of a scrape's text; panics if no shard has the series.
pub fn sum_over_shards(text: &str, name: &str, labels: &str) -> f64 {
    let prefix = format!("{name}{{shard=\"");
    let tail = format!("\"{labels}}} ");
    let values: Vec<f64> = text
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|l| {
            let (shard, rest) = l.split_once(&tail)?;
            shard.parse::<u16>().ok()?;
            rest.trim().parse().ok()
        })
        .collect();
    assert!(
        !values.is_empty(),
        "{name}{{shard=\"N\"{labels}}} is not in the scrape:\n{text}"
    );
    values.iter().sum()
}

fn scrape_text(metrics: SocketAddr) -> String {
    let mut s = TcpStream::connect(metrics).unwrap();
    s.set_read_timeout(Some(GUARD)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text
}

pub fn wait_until(lab: &Lab, what: &str, mut check: impl FnMut() -> bool) {
    let end = Instant::now() + GUARD;
    let mut seen = lab.progress.acks();
    while !check() {
        assert!(Instant::now() < end, "gave up waiting: {what}");
        seen = lab.progress.wait_beyond(seen);
    }
}

/// Where promtool is: `PROMTOOL`, else `promtool` on the PATH. `None` (with a SKIP line)
/// if it is missing outside CI; in CI (`CI` set) a missing promtool fails the test.
/// `.ci/test-all` installs it (Debian package `prometheus`).
pub fn promtool() -> Option<std::path::PathBuf> {
    use std::path::PathBuf;
    use std::process::{Command, Stdio};
    let path =
        std::env::var_os("PROMTOOL").map_or_else(|| PathBuf::from("promtool"), PathBuf::from);
    let runs = Command::new(&path)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if runs {
        return Some(path);
    }
    let why = format!(
        "{} does not run (install the Debian package prometheus, or set PROMTOOL=/path)",
        path.display()
    );
    assert!(std::env::var_os("CI").is_none(), "CI needs promtool: {why}");
    // Written to stderr directly: libtest would swallow `println!`.
    let _ = writeln!(io::stderr(), "SKIP: {why}");
    None
}
