//! The echo floor: a responder that answers every request with a canned answer and does
//! nothing else, so that a registrar's latency can be set against the bare transport
//! round trip with the registrar's own message sizes, in the same run.
//!
//! What it answers, by the message type byte alone, except for the two messages that
//! let PEs register at it as at a registrar (so the same `resolve` command runs against
//! it, PE farm and all):
//!
//! | request | answer |
//! | --- | --- |
//! | ASAP_REGISTRATION | a positive ASAP_REGISTRATION_RESPONSE for its handle and PE |
//! | ASAP_DEREGISTRATION | an ASAP_DEREGISTRATION_RESPONSE for its handle and PE |
//! | ASAP_ENDPOINT_KEEP_ALIVE_ACK | nothing |
//! | anything else (a handle resolution, say) | the canned answer |
//!
//! It keeps no state: a registration is acknowledged and forgotten, no keep-alive is
//! ever sent (so no acknowledgement arrives either), and every PE stays "registered"
//! for as long as its connection lasts. That is the simplest behaviour a `resolve` run
//! cannot tell from a registrar's, and nothing in it can fail with load or time.
//!
//! Over TCP the responder takes each connection on a thread of its own and frames the
//! stream with the core's [`rserpool::wire::framing`]. Over SCTP it mirrors one shard of the registrar's
//! runtime minus the registrar: one one-to-many socket (PPID 11), one thread, one
//! io_uring with one recvmsg always pending and one sendmsg in flight.
//!
//! A floor set against a registrar in another process runs in another process too
//! ([`EchoProcess`]), so that both round trips cross the same boundary: between
//! threads of one process a switch keeps the address space, which can only flatter the
//! floor.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::io::{self, Write};
use std::io::{BufRead as _, BufReader, Read as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use rserpool::wire::framing::MAX_FRAME;
use rserpool::wire::{AsapMessage, AsapType, PPID_ASAP, PolicyParam};
use rserpool::{PoolHandle, RegistrarId};
use rserpool_shards::net::ring::{OpBuf, Ring};
use rserpool_shards::net::sctp::{self, RecvBuf, SendBuf};
use rserpool_shards::net::socket::EventFd;

use crate::conn::{Target, Transport, read_frame};
use crate::pe::element;

/// The registrar identifier the canned answer names as the PEs' home.
const HOME: RegistrarId = RegistrarId(0x00ec_0000);

/// What the responder sends back (see the module documentation).
#[derive(Clone, Debug)]
pub struct Answers {
    canned: Vec<u8>,
}

impl Answers {
    /// Answers resolutions with `canned` (e.g. a registrar's own answer, replayed).
    pub fn new(canned: Vec<u8>) -> Self {
        Self { canned }
    }

    /// Answers resolutions as a registrar holding `items` of the load generator's PEs
    /// in `pool` would (round robin, each PE with one SCTP address of `addr`'s family,
    /// no ASAP transport: reference §4.7), so that clients accept the answer and it has
    /// the size of a real one.
    pub fn resolution(pool: &PoolHandle, items: u32, addr: IpAddr) -> Self {
        let policy = PolicyParam::round_robin();
        let elements = (1..=items.max(1))
            .map(|id| {
                let mut e = element(id, addr, policy);
                e.home = HOME;
                e
            })
            .collect();
        let mut canned = Vec::new();
        // Flags 0, the overall policy and the PEs, as the registrar sends it
        // (src/registrar/asap.rs: "RSPLIB clients need the overall policy").
        AsapMessage::HandleResolutionResponse {
            accepted: false,
            handle: pool.clone(),
            policy: Some(policy),
            elements,
            error: None,
        }
        .encode(&mut canned);
        Self { canned }
    }

    /// The answer to a resolution (or to anything the table does not name).
    pub fn canned(&self) -> &[u8] {
        &self.canned
    }

    /// What to send back for `request`, if anything.
    pub fn answer(&self, request: &[u8]) -> Option<Cow<'_, [u8]>> {
        let kind = AsapType(*request.first()?);
        if kind == AsapType::ENDPOINT_KEEP_ALIVE_ACK {
            return None;
        }
        if kind != AsapType::REGISTRATION && kind != AsapType::DEREGISTRATION {
            return Some(Cow::Borrowed(&self.canned));
        }
        let reply = match AsapMessage::decode(request).ok()?.message {
            AsapMessage::Registration { handle, element } => AsapMessage::RegistrationResponse {
                rejected: false,
                handle,
                id: element.id,
                error: None,
            },
            AsapMessage::Deregistration { handle, id } => AsapMessage::DeregistrationResponse {
                handle,
                id,
                error: None,
            },
            _ => return None,
        };
        let mut out = Vec::with_capacity(64);
        reply.encode(&mut out);
        Some(Cow::Owned(out))
    }
}

/// A running echo responder; dropping it stops it (over TCP it stops accepting, and
/// connections already taken are served until their clients close them).
#[derive(Debug)]
pub struct EchoResponder {
    /// Where it listens (the port resolved if 0 was asked for).
    pub target: Target,
    answer_bytes: usize,
    stop: Arc<AtomicBool>,
    wake: Option<Arc<EventFd>>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl EchoResponder {
    /// Listens at `listen` (TCP or SCTP; port 0 picks one) and answers with `answers`.
    pub fn start(listen: Target, answers: Answers) -> io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let answer_bytes = answers.canned.len();
        match listen.transport {
            Transport::Tcp => {
                let listener = TcpListener::bind(listen.addr)?;
                let target = Target::tcp(listener.local_addr()?);
                let flag = stop.clone();
                let thread = std::thread::Builder::new()
                    .name("echo-tcp".into())
                    .spawn(move || accept_tcp(&listener, &Arc::new(answers), &flag))?;
                Ok(Self {
                    target,
                    answer_bytes,
                    stop,
                    wake: None,
                    thread: Some(thread),
                })
            }
            Transport::Sctp => {
                let fd = sctp::listener(listen.addr, false)?;
                let target = Target {
                    transport: Transport::Sctp,
                    addr: sctp::local_addr(fd.as_raw_fd())?,
                };
                let wake = Arc::new(EventFd::new()?);
                let thread_wake = wake.clone();
                let thread = std::thread::Builder::new()
                    .name("echo-sctp".into())
                    .spawn(move || serve_sctp(&fd, &answers, &thread_wake))?;
                Ok(Self {
                    target,
                    answer_bytes,
                    stop,
                    wake: Some(wake),
                    thread: Some(thread),
                })
            }
        }
    }

    /// Starts a responder for the floor of a run against `registrar`, in this process,
    /// where [`crate::echo::beside`] puts it.
    pub fn beside(registrar: Target, answers: Answers) -> io::Result<Self> {
        Self::start(beside(registrar), answers)
    }

    /// Size of the canned answer in bytes.
    pub fn answer_bytes(&self) -> usize {
        self.answer_bytes
    }

    /// Serves until the process ends, or returns the error that stopped it.
    pub fn wait(mut self) -> io::Result<()> {
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| io::Error::other("the echo responder panicked"))?,
            None => Ok(()),
        }
    }
}

impl Drop for EchoResponder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        match &self.wake {
            // The SCTP thread ends at once and closes the socket.
            Some(w) => {
                w.notify();
                if let Some(t) = self.thread.take() {
                    let _ = t.join();
                }
            }
            // Unblocks accept; the thread then ends on its own.
            None => drop(TcpStream::connect(self.target.addr)),
        }
    }
}

/// Where the floor of a run against `registrar` listens: on the registrar's address
/// and transport when that address is local (so both round trips take the same path),
/// else on loopback; any free port.
pub fn beside(registrar: Target) -> Target {
    let ip = registrar.addr.ip();
    let local = UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok();
    let ip = match ip {
        _ if local => ip,
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
    };
    Target {
        transport: registrar.transport,
        addr: SocketAddr::new(ip, 0),
    }
}

/// An echo responder in a process of its own: `program echo --listen URI --answer-hex
/// HEX`, `program` being the load generator's binary. Stopped when dropped, and killed
/// with this process however it ends.
#[derive(Debug)]
pub struct EchoProcess {
    /// Where it listens.
    pub target: Target,
    answer_bytes: usize,
    child: Child,
}

impl EchoProcess {
    /// Starts `program`'s responder at `listen` (port 0 picks one) answering
    /// resolutions with `answer`, and returns once it listens.
    pub fn start(program: &Path, listen: Target, answer: &[u8]) -> io::Result<Self> {
        let mut cmd = Command::new(program);
        cmd.args(["echo", "--listen", &listen.to_string(), "--answer-hex"])
            .arg(rserpool::hex::encode(answer))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        rserpool_shards::net::process::die_with_parent(&mut cmd);
        let mut child = cmd.spawn().map_err(|e| {
            io::Error::new(e.kind(), format!("starting {}: {e}", program.display()))
        })?;
        // Its first line names the address (`echo_cmd`); it writes no other.
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            BufReader::new(out).read_line(&mut line)?;
        }
        let target = line
            .strip_prefix("echo responder on ")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|uri| uri.parse::<Target>().ok());
        match target {
            Some(target) => Ok(Self {
                target,
                answer_bytes: answer.len(),
                child,
            }),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                let mut why = String::new();
                if let Some(mut err) = child.stderr.take() {
                    let _ = err.read_to_string(&mut why);
                }
                Err(io::Error::other(format!(
                    "the echo responder at {listen} did not start: {}",
                    why.trim()
                )))
            }
        }
    }

    /// Size of the canned answer in bytes.
    pub fn answer_bytes(&self) -> usize {
        self.answer_bytes
    }

    /// The responder's process ID.
    pub fn id(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for EchoProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn accept_tcp(listener: &TcpListener, answers: &Arc<Answers>, stop: &AtomicBool) -> io::Result<()> {
    for stream in listener.incoming() {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let Ok(mut s) = stream else { continue };
        let answers = answers.clone();
        std::thread::spawn(move || echo_tcp(&mut s, &answers));
    }
    Ok(())
}

/// One connection: whole messages in, answers out, until either side stops.
fn echo_tcp(s: &mut TcpStream, answers: &Answers) {
    let _ = s.set_nodelay(true);
    let mut request = Vec::with_capacity(512);
    while read_frame(s, &mut request).is_ok() {
        if let Some(a) = answers.answer(&request)
            && s.write_all(&a).is_err()
        {
            return;
        }
    }
}

/// What a ring operation of the SCTP responder was for.
const RECV: u64 = 1;
const SEND: u64 = 2;
const WAKE: u64 = 3;

/// The SCTP responder's loop: one recvmsg always pending, one sendmsg in flight, the
/// answers waiting in order; a notification or a message delivered in pieces (longer
/// than any ASAP message, so never a request) gets no answer. Ends when `wake` fires.
fn serve_sctp(fd: &OwnedFd, answers: &Answers, wake: &EventFd) -> io::Result<()> {
    let raw = fd.as_raw_fd();
    let mut ring = Ring::new()?;
    ring.recvmsg(raw, RecvBuf::new(MAX_FRAME), RECV)?;
    ring.read(wake.raw_fd(), Vec::with_capacity(8), WAKE)?;
    let mut spare = Some(SendBuf::new());
    let mut queue: VecDeque<(sctp::AssocId, Vec<u8>)> = VecDeque::new();
    let mut free: Vec<Vec<u8>> = Vec::new();
    let mut done = Vec::new();
    loop {
        ring.submit_and_wait(None)?;
        ring.complete(usize::MAX, &mut done);
        for c in done.drain(..) {
            match (c.token, c.buf) {
                (WAKE, _) => return Ok(()),
                (RECV, OpBuf::Recv(rb)) => {
                    if c.result < 0 {
                        return Err(io::Error::from_raw_os_error(-c.result));
                    }
                    if !rb.is_notification()
                        && rb.is_end_of_record()
                        && let (Some(info), Some(a)) = (rb.rcvinfo(), answers.answer(rb.data()))
                    {
                        let mut out = free.pop().unwrap_or_default();
                        out.clear();
                        out.extend_from_slice(&a);
                        queue.push_back((info.assoc, out));
                    }
                    ring.recvmsg(raw, rb, RECV)?;
                }
                // A failed send means the association is gone; its answer goes with it.
                (SEND, OpBuf::Send(mut sb)) => {
                    free.push(sb.take_data());
                    spare = Some(sb);
                }
                _ => {}
            }
        }
        if !queue.is_empty()
            && let Some(mut sb) = spare.take()
            && let Some((assoc, data)) = queue.pop_front()
        {
            sb.set(assoc, PPID_ASAP, 0, data);
            ring.sendmsg(raw, sb, SEND)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use rserpool::PoolElementId;
    use rserpool::client::{Resolved, resolution_request};

    use super::*;

    fn pool() -> PoolHandle {
        PoolHandle::from("LoadPool")
    }

    #[test]
    fn a_resolution_gets_the_canned_answer_with_the_pes_asked_for() {
        let answers = Answers::resolution(&pool(), 3, Ipv4Addr::new(192, 0, 2, 1).into());
        let mut req = Vec::new();
        resolution_request(&pool(), Some(3), &mut req);
        let a = answers.answer(&req).unwrap();
        assert_eq!(&*a, answers.canned());
        let msg = AsapMessage::decode(&a).unwrap().message;
        match Resolved::from_message(msg) {
            Some(Resolved::Elements { elements, .. }) => assert_eq!(elements.len(), 3),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn registrations_are_acknowledged_and_keep_alive_acks_ignored() {
        let answers = Answers::new(vec![6, 0, 0, 4]);
        let ask = |m: AsapMessage| {
            let mut b = Vec::new();
            m.encode(&mut b);
            answers
                .answer(&b)
                .map(|a| AsapMessage::decode(&a).unwrap().message)
        };
        let e = element(7, Ipv4Addr::LOCALHOST.into(), PolicyParam::round_robin());
        assert_eq!(
            ask(AsapMessage::Registration {
                handle: pool(),
                element: e,
            }),
            Some(AsapMessage::RegistrationResponse {
                rejected: false,
                handle: pool(),
                id: PoolElementId(7),
                error: None,
            })
        );
        assert_eq!(
            ask(AsapMessage::Deregistration {
                handle: pool(),
                id: PoolElementId(7),
            }),
            Some(AsapMessage::DeregistrationResponse {
                handle: pool(),
                id: PoolElementId(7),
                error: None,
            })
        );
        assert_eq!(
            ask(AsapMessage::EndpointKeepAliveAck {
                handle: pool(),
                id: PoolElementId(7),
            }),
            None
        );
    }

    #[test]
    fn malformed_requests_never_panic() {
        let answers = Answers::new(vec![6, 0, 0, 4]);
        assert!(answers.answer(&[]).is_none());
        // A registration that does not decode gets nothing; anything else the canned
        // answer, whatever it holds.
        assert!(answers.answer(&[1, 0, 0, 4]).is_none());
        assert!(answers.answer(&[2, 0, 0, 9, 1]).is_none());
        assert_eq!(answers.answer(&[0x42]).as_deref(), Some(&[6, 0, 0, 4][..]));
    }

    #[test]
    fn the_tcp_responder_answers_until_dropped() {
        let answers = Answers::resolution(&pool(), 2, Ipv4Addr::LOCALHOST.into());
        let canned = answers.canned().to_vec();
        let echo = EchoResponder::start("tcp://127.0.0.1:0".parse().unwrap(), answers).unwrap();
        let mut conn = crate::conn::Conn::connect(echo.target).unwrap();
        for _ in 0..3 {
            match conn.resolve(&pool(), Some(2)).unwrap() {
                Resolved::Elements { elements, .. } => assert_eq!(elements.len(), 2),
                other => panic!("{other:?}"),
            }
        }
        let mut req = Vec::new();
        resolution_request(&pool(), None, &mut req);
        conn.send_bytes(&req).unwrap();
        assert_eq!(conn.recv_bytes().unwrap(), &canned[..]);
        drop(echo);
    }

    #[test]
    fn the_floor_listens_on_a_local_registrar_address_else_on_loopback() {
        let local: Target = "tcp://127.0.0.1:4000".parse().unwrap();
        assert_eq!(beside(local).addr, "127.0.0.1:0".parse().unwrap());
        // 192.0.2.1 (documentation range) is on no interface here.
        let remote: Target = "sctp://192.0.2.1:4000".parse().unwrap();
        let b = beside(remote);
        assert_eq!(b.transport, Transport::Sctp);
        assert_eq!(b.addr, "127.0.0.1:0".parse().unwrap());
    }
}
