//! The PE farm: thousands of simulated pool elements on one thread and one io_uring.
//!
//! Every PE is a real registration on a real connection (TCP) or association (SCTP)
//! that answers keep-alives as they arrive. One thread drives them all: each link keeps
//! one receive in flight, sends go out one batch at a time per link, and the thread
//! sleeps in the ring between messages. Commands (crash, hang, revive, deregister,
//! register) arrive over a channel with an eventfd wake-up; what happens comes back as
//! [`Notice`]s.

use std::collections::VecDeque;
use std::io;
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam::channel::{self, Receiver, RecvTimeoutError, Sender};
use rserpool::client::{PeEvent, PoolElementClient};
use rserpool::wire::{AsapMessage, CauseCode, PolicyParam};
use rserpool::{PoolElementId, PoolHandle};
use rserpool_shards::net::ring::{Completion, OpBuf, Ring};
use rserpool_shards::net::sctp::{Client as SctpClient, RecvBuf, SendBuf};
use rserpool_shards::net::socket::EventFd;

use crate::conn::{Target, Transport};
use crate::pe::element;

/// ASAP's SCTP payload protocol identifier.
const PPID_ASAP: u32 = 11;
/// Registrations in flight while the farm starts (more would measure queueing).
const START_WINDOW: usize = 8;
/// How often PEs are asked whether a re-registration is due.
const TIMER_TICK: Duration = Duration::from_millis(50);
/// PEs re-register this often, with a registration life three times as long.
const REREGISTER_EVERY: Duration = Duration::from_secs(30);
/// Bytes asked for per TCP receive.
const RECV_CHUNK: usize = 16 * 1024;
/// How long start-up waits for every PE to be registered.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// What to simulate.
#[derive(Clone, Debug)]
pub struct FarmConfig {
    pub target: Target,
    pub pool: PoolHandle,
    /// Pool elements.
    pub pes: u32,
    /// Connections the PEs share, round robin; 0 gives each PE its own (as RSPLIB's
    /// PEs have), which `crash` needs to hit one PE at a time.
    pub links: u32,
    /// PE identifier of the first PE; the others follow.
    pub first_id: u32,
    pub policy: PolicyParam,
}

/// Something to do to one PE (by index, `0..pes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Close the PE's connection as a crashed process's kernel would (TCP FIN, SCTP
    /// SHUTDOWN); every PE sharing it goes too.
    Crash(usize),
    /// Stop answering keep-alives (and re-registering).
    Hang(usize),
    /// Undo a crash or hang: reconnect if needed, answer again, and register.
    Revive(usize),
    /// Send a deregistration.
    Deregister(usize),
    /// Send a registration (a re-registration when registered).
    Register(usize),
    /// Re-register with new policy values (RFC 5352 §3.1 R7: e.g. a new load).
    SetPolicy(usize, PolicyParam),
}

/// What happened, reported by the farm thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notice {
    Registered {
        pe: usize,
        latency: Duration,
    },
    Rejected {
        pe: usize,
        cause: Option<CauseCode>,
    },
    Deregistered {
        pe: usize,
        latency: Duration,
    },
    /// The connection was closed (`at`: just before the close).
    Crashed {
        pe: usize,
        at: Instant,
    },
    /// The PE stopped answering at `at`.
    Hung {
        pe: usize,
        at: Instant,
    },
    /// The registrar (or the network) closed a link the farm had not crashed.
    LinkLost {
        pe: usize,
    },
}

/// Counters kept by the farm thread.
#[derive(Clone, Copy, Debug, Default)]
pub struct FarmStats {
    pub keep_alives_answered: u64,
    pub keep_alives_ignored: u64,
    pub messages_in: u64,
    pub undecodable: u64,
}

/// A running farm; dropping it stops the thread and closes every link.
#[derive(Debug)]
pub struct Farm {
    commands: Sender<Control>,
    notices: Receiver<Notice>,
    wake: Arc<EventFd>,
    thread: Option<JoinHandle<io::Result<FarmStats>>>,
    /// PE identifiers by index.
    pub ids: Vec<PoolElementId>,
    /// Registration latency of every PE at start-up.
    pub registration: Vec<Duration>,
}

#[derive(Debug)]
enum Control {
    Do(Command),
    Stop,
}

impl Farm {
    /// Connects, registers every PE (a few at a time) and returns
    /// once all are registered; a rejection or a lost link is an error.
    pub fn start(config: FarmConfig) -> io::Result<Self> {
        let (commands, command_rx) = channel::unbounded();
        let (notice_tx, notices) = channel::unbounded();
        let wake = Arc::new(EventFd::new()?);
        let ids: Vec<PoolElementId> = (0..config.pes)
            .map(|i| PoolElementId(config.first_id.wrapping_add(i)))
            .collect();
        let thread_wake = wake.clone();
        let thread_config = config.clone();
        // The engine holds raw socket buffers, so it is built on its own thread.
        let thread = std::thread::Builder::new()
            .name("pe-farm".into())
            .spawn(move || {
                Engine::connect(&thread_config)?.run(&command_rx, &notice_tx, &thread_wake)
            })?;
        let mut farm = Self {
            commands,
            notices,
            wake,
            thread: Some(thread),
            ids,
            registration: Vec::with_capacity(config.pes as usize),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while farm.registration.len() < config.pes as usize {
            let left = deadline.saturating_duration_since(Instant::now());
            match farm.notices.recv_timeout(left) {
                Ok(Notice::Registered { latency, .. }) => farm.registration.push(latency),
                Ok(Notice::Rejected { pe, cause }) => {
                    return Err(io::Error::other(format!(
                        "the registrar rejected PE {} (cause {cause:?})",
                        farm.ids[pe].0
                    )));
                }
                Ok(Notice::LinkLost { pe }) => {
                    return Err(io::Error::other(format!(
                        "the registrar closed the connection of PE {} during registration",
                        farm.ids[pe].0
                    )));
                }
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "only {} of {} PEs registered within {START_TIMEOUT:?}",
                            farm.registration.len(),
                            config.pes
                        ),
                    ));
                }
                Err(RecvTimeoutError::Disconnected) => return Err(farm.join_error()),
            }
        }
        Ok(farm)
    }

    /// Hands `command` to the farm thread.
    pub fn send(&self, command: Command) {
        if self.commands.send(Control::Do(command)).is_ok() {
            self.wake.notify();
        }
    }

    /// The notices reported so far and from now on.
    pub fn notices(&self) -> &Receiver<Notice> {
        &self.notices
    }

    /// Stops the thread, closing every link, and returns its counters.
    pub fn stop(mut self) -> io::Result<FarmStats> {
        self.halt()
    }

    fn halt(&mut self) -> io::Result<FarmStats> {
        let _ = self.commands.send(Control::Stop);
        self.wake.notify();
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| io::Error::other("the PE farm thread panicked"))?,
            None => Ok(FarmStats::default()),
        }
    }

    fn join_error(&mut self) -> io::Error {
        match self.halt() {
            Err(e) => e,
            Ok(_) => io::Error::other("the PE farm stopped"),
        }
    }
}

impl Drop for Farm {
    fn drop(&mut self) {
        let _ = self.halt();
    }
}

/// A connection or association one or more PEs use.
#[derive(Debug)]
struct Link {
    sock: Option<Sock>,
    fd: RawFd,
    /// Bumped on every reconnect; completions of an older generation are stale.
    generation: u32,
    /// TCP bytes received but not yet a whole message (absent while a receive holds it).
    rx: Option<Vec<u8>>,
    /// Messages waiting to be sent.
    tx: VecDeque<Vec<u8>>,
    sending: bool,
    /// PEs on this link, by index.
    pes: Vec<usize>,
    /// Crashed on purpose: its end is not news.
    crashed: bool,
}

#[derive(Debug)]
enum Sock {
    Tcp(TcpStream),
    Sctp(SctpClient),
}

impl Sock {
    fn connect(target: Target) -> io::Result<Self> {
        Ok(match target.transport {
            Transport::Tcp => {
                let s = TcpStream::connect(target.addr)?;
                s.set_nodelay(true)?;
                Sock::Tcp(s)
            }
            Transport::Sctp => Sock::Sctp(SctpClient::connect(target.addr)?),
        })
    }

    fn fd(&self) -> RawFd {
        match self {
            Sock::Tcp(s) => s.as_raw_fd(),
            Sock::Sctp(c) => c.as_raw_fd(),
        }
    }

    fn local_ip(&self) -> io::Result<std::net::IpAddr> {
        Ok(match self {
            Sock::Tcp(s) => s.local_addr()?.ip(),
            Sock::Sctp(c) => c.local_addr()?.ip(),
        })
    }

    /// Ends the connection now, as the kernel does when a process dies: a TCP FIN or
    /// an SCTP SHUTDOWN. (Closing alone would not do: the receive in flight holds the
    /// socket open; shutting down also completes that receive.)
    fn crash(&self) {
        match self {
            Sock::Tcp(s) => {
                let _ = s.shutdown(Shutdown::Both);
            }
            Sock::Sctp(c) => {
                let _ = c.shutdown();
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Wake,
    Recv,
    Send,
}

fn token(op: Op, link: usize, generation: u32) -> u64 {
    let kind = match op {
        Op::Wake => 0u64,
        Op::Recv => 1,
        Op::Send => 2,
    };
    (kind << 62) | (u64::from(generation & 0x3fff_ffff) << 32) | (link as u64 & 0xffff_ffff)
}

fn untoken(t: u64) -> (Op, usize, u32) {
    let op = match t >> 62 {
        1 => Op::Recv,
        2 => Op::Send,
        _ => Op::Wake,
    };
    (
        op,
        (t & 0xffff_ffff) as usize,
        ((t >> 32) & 0x3fff_ffff) as u32,
    )
}

/// The farm thread's state.
#[derive(Debug)]
struct Engine {
    target: Target,
    transport: Transport,
    links: Vec<Link>,
    pes: Vec<PoolElementClient>,
    link_of: Vec<usize>,
    /// When each PE's deregistration went out.
    deregistering: Vec<Option<Instant>>,
    /// PEs still to register at start-up, and how many of theirs are in flight.
    start_queue: VecDeque<usize>,
    starting: usize,
    stats: FarmStats,
    /// Boxed: the ring hands boxes back and forth (the kernel points into them).
    #[allow(clippy::vec_box)]
    spare_send: Vec<Box<SendBuf>>,
}

impl Engine {
    fn connect(config: &FarmConfig) -> io::Result<Self> {
        let n = config.pes as usize;
        let links = if config.links == 0 {
            n
        } else {
            (config.links as usize).clamp(1, n.max(1))
        };
        let mut engine = Self {
            target: config.target,
            transport: config.target.transport,
            links: Vec::with_capacity(links),
            pes: Vec::with_capacity(n),
            link_of: Vec::with_capacity(n),
            deregistering: vec![None; n],
            start_queue: (0..n).collect(),
            starting: 0,
            stats: FarmStats::default(),
            spare_send: Vec::new(),
        };
        for l in 0..links {
            let sock = Sock::connect(config.target).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("connecting to {} (link {l}): {e}", config.target),
                )
            })?;
            engine.links.push(Link {
                fd: sock.fd(),
                sock: Some(sock),
                generation: 0,
                rx: Some(Vec::with_capacity(RECV_CHUNK)),
                tx: VecDeque::new(),
                sending: false,
                pes: Vec::new(),
                crashed: false,
            });
        }
        for i in 0..n {
            let l = i % links;
            // Only addresses of the registering connection are accepted (RFC 5352 §2.2.1).
            let ip = engine.links[l]
                .sock
                .as_ref()
                .map_or(Ok(std::net::Ipv4Addr::LOCALHOST.into()), Sock::local_ip)?;
            let id = config.first_id.wrapping_add(i as u32);
            engine.pes.push(PoolElementClient::new(
                config.pool.clone(),
                element(id, ip, config.policy),
                REREGISTER_EVERY,
            ));
            engine.link_of.push(l);
            engine.links[l].pes.push(i);
        }
        Ok(engine)
    }

    fn run(
        mut self,
        commands: &Receiver<Control>,
        notices: &Sender<Notice>,
        wake: &EventFd,
    ) -> io::Result<FarmStats> {
        let mut ring = Ring::new()?;
        ring.read(wake.raw_fd(), Vec::with_capacity(8), token(Op::Wake, 0, 0))?;
        for l in 0..self.links.len() {
            self.arm_recv(&mut ring, l)?;
        }
        let now = Instant::now();
        while self.starting < START_WINDOW
            && let Some(pe) = self.start_queue.pop_front()
        {
            self.starting += 1;
            self.pes[pe].register(now);
            self.flush_pe(&mut ring, pe)?;
        }
        let mut completions = Vec::with_capacity(1024);
        let mut next_tick = Instant::now() + TIMER_TICK;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            ring.submit_and_wait(Some(wait))?;
            completions.clear();
            ring.complete(4096, &mut completions);
            let now = Instant::now();
            for c in completions.drain(..) {
                let (op, l, generation) = untoken(c.token);
                match op {
                    Op::Wake => {
                        let mut stop = false;
                        while let Ok(ctl) = commands.try_recv() {
                            match ctl {
                                Control::Stop => stop = true,
                                Control::Do(cmd) => self.command(&mut ring, cmd, notices)?,
                            }
                        }
                        if stop {
                            return Ok(self.stats);
                        }
                        let mut buf = match c.buf {
                            OpBuf::Bytes(b) => b,
                            _ => Vec::with_capacity(8),
                        };
                        buf.clear();
                        ring.read(wake.raw_fd(), buf, token(Op::Wake, 0, 0))?;
                    }
                    _ if self.links.get(l).is_none_or(|k| k.generation != generation) => {
                        // A completion from before a reconnect: its buffer just goes.
                    }
                    Op::Recv => self.on_recv(&mut ring, l, c, now, notices)?,
                    Op::Send => self.on_send(&mut ring, l, c)?,
                }
            }
            if now >= next_tick {
                next_tick = now + TIMER_TICK;
                for pe in 0..self.pes.len() {
                    if self.pes[pe].poll_timeout().is_some_and(|t| t <= now) {
                        self.pes[pe].handle_timeout(now);
                        self.flush_pe(&mut ring, pe)?;
                    }
                }
            }
        }
    }

    fn command(
        &mut self,
        ring: &mut Ring,
        cmd: Command,
        notices: &Sender<Notice>,
    ) -> io::Result<()> {
        let pe = match cmd {
            Command::Crash(pe)
            | Command::Hang(pe)
            | Command::Revive(pe)
            | Command::Deregister(pe)
            | Command::Register(pe)
            | Command::SetPolicy(pe, _) => pe,
        };
        if pe >= self.pes.len() {
            return Ok(());
        }
        let l = self.link_of[pe];
        match cmd {
            Command::Crash(_) => {
                let link = &mut self.links[l];
                if let Some(sock) = link.sock.take() {
                    link.crashed = true;
                    let at = Instant::now();
                    sock.crash();
                    drop(sock);
                    let _ = notices.send(Notice::Crashed { pe, at });
                }
            }
            Command::Hang(_) => {
                self.pes[pe].set_hung(true);
                let _ = notices.send(Notice::Hung {
                    pe,
                    at: Instant::now(),
                });
            }
            Command::Revive(_) => {
                self.pes[pe].set_hung(false);
                if self.links[l].sock.is_none() {
                    self.reconnect(ring, l)?;
                    // Every PE of the link comes back.
                    let now = Instant::now();
                    for other in self.links[l].pes.clone() {
                        self.pes[other].register(now);
                        self.flush_pe(ring, other)?;
                    }
                } else {
                    self.pes[pe].register(Instant::now());
                    self.flush_pe(ring, pe)?;
                }
            }
            Command::Deregister(_) => {
                self.deregistering[pe] = Some(Instant::now());
                self.pes[pe].deregister();
                self.flush_pe(ring, pe)?;
            }
            Command::Register(_) => {
                self.pes[pe].register(Instant::now());
                self.flush_pe(ring, pe)?;
            }
            Command::SetPolicy(_, policy) => {
                self.pes[pe].update_policy(Instant::now(), policy);
                self.flush_pe(ring, pe)?;
            }
        }
        Ok(())
    }

    fn reconnect(&mut self, ring: &mut Ring, l: usize) -> io::Result<()> {
        let sock = Sock::connect(self.target)?;
        let link = &mut self.links[l];
        link.fd = sock.fd();
        link.sock = Some(sock);
        link.generation = link.generation.wrapping_add(1);
        link.rx = Some(Vec::with_capacity(RECV_CHUNK));
        link.tx.clear();
        link.sending = false;
        link.crashed = false;
        self.arm_recv(ring, l)
    }

    fn arm_recv(&mut self, ring: &mut Ring, l: usize) -> io::Result<()> {
        self.arm_recv_with(ring, l, None)
    }

    /// Arms the link's receive, reusing `sctp_buf` (the last one) when given.
    fn arm_recv_with(
        &mut self,
        ring: &mut Ring,
        l: usize,
        sctp_buf: Option<Box<RecvBuf>>,
    ) -> io::Result<()> {
        let link = &mut self.links[l];
        let t = token(Op::Recv, l, link.generation);
        match self.transport {
            Transport::Tcp => {
                let mut buf = link.rx.take().unwrap_or_default();
                buf.reserve(RECV_CHUNK);
                ring.recv(link.fd, buf, t)
            }
            Transport::Sctp => {
                ring.recvmsg(link.fd, sctp_buf.unwrap_or_else(|| RecvBuf::new(65_536)), t)
            }
        }
    }

    fn on_recv(
        &mut self,
        ring: &mut Ring,
        l: usize,
        c: Completion,
        now: Instant,
        notices: &Sender<Notice>,
    ) -> io::Result<()> {
        if c.result <= 0 {
            let link = &mut self.links[l];
            link.sock = None;
            if !link.crashed {
                for &pe in &link.pes {
                    let _ = notices.send(Notice::LinkLost { pe });
                }
            }
            return Ok(());
        }
        let mut reuse: Option<Box<RecvBuf>> = None;
        match (self.transport, c.buf) {
            (Transport::Tcp, OpBuf::Bytes(mut buf)) => {
                let mut at = 0;
                while let Some(len) = whole_frame(&buf[at..]) {
                    self.dispatch(ring, l, &buf[at..at + len], now, notices)?;
                    at += len;
                }
                if framing_broken(&buf[at..]) {
                    // The registrar sent something that cannot be framed: give up the link.
                    if let Some(sock) = self.links[l].sock.take() {
                        sock.crash();
                    }
                    return Ok(());
                }
                buf.drain(..at);
                self.links[l].rx = Some(buf);
            }
            (Transport::Sctp, OpBuf::Recv(rb)) => {
                if !rb.is_notification() && rb.is_end_of_record() {
                    let data = rb.data().to_vec();
                    self.dispatch(ring, l, &data, now, notices)?;
                }
                reuse = Some(rb);
            }
            _ => {}
        }
        if self.links[l].sock.is_some() {
            self.arm_recv_with(ring, l, reuse)?;
        }
        Ok(())
    }

    fn dispatch(
        &mut self,
        ring: &mut Ring,
        l: usize,
        bytes: &[u8],
        now: Instant,
        notices: &Sender<Notice>,
    ) -> io::Result<()> {
        self.stats.messages_in += 1;
        let Ok(decoded) = AsapMessage::decode(bytes) else {
            self.stats.undecodable += 1;
            return Ok(());
        };
        let msg = decoded.message;
        for i in 0..self.links[l].pes.len() {
            let pe = self.links[l].pes[i];
            let Some(event) = self.pes[pe].handle_message(now, &msg) else {
                continue;
            };
            let notice = match event {
                PeEvent::Registered { latency } => Some(Notice::Registered { pe, latency }),
                PeEvent::Rejected(cause) => Some(Notice::Rejected { pe, cause }),
                PeEvent::Deregistered => {
                    self.deregistering[pe]
                        .take()
                        .map(|since| Notice::Deregistered {
                            pe,
                            latency: now.saturating_duration_since(since),
                        })
                }
                // The registrar dropped it; it registered again (counted when answered).
                PeEvent::Dropped => None,
                // Adopted by a registrar that took its home's PEs over: the connection
                // the keep-alive came on is its registrar connection from now on.
                PeEvent::Adopted { .. } => {
                    self.stats.keep_alives_answered += 1;
                    None
                }
                PeEvent::KeepAlive { answered } => {
                    if answered {
                        self.stats.keep_alives_answered += 1;
                    } else {
                        self.stats.keep_alives_ignored += 1;
                    }
                    None
                }
            };
            if matches!(
                notice,
                Some(Notice::Registered { .. } | Notice::Rejected { .. })
            ) && self.starting > 0
                && self.start_queue.len() + self.starting > 0
            {
                self.starting -= 1;
                if let Some(next) = self.start_queue.pop_front() {
                    self.starting += 1;
                    self.pes[next].register(now);
                    self.flush_pe(ring, next)?;
                }
            }
            if let Some(n) = notice {
                let _ = notices.send(n);
            }
            self.flush_pe(ring, pe)?;
            // A keep-alive without a PE Identifier (RFC 5352's form) is for every PE of
            // the handle on this connection; anything else has one addressee.
            if !matches!(msg, AsapMessage::EndpointKeepAlive { id: None, .. }) {
                break;
            }
        }
        Ok(())
    }

    /// Queues what `pe` has to send and starts sending if the link is idle.
    fn flush_pe(&mut self, ring: &mut Ring, pe: usize) -> io::Result<()> {
        let l = self.link_of[pe];
        while let Some(b) = self.pes[pe].poll_transmit() {
            self.links[l].tx.push_back(b);
        }
        self.pump(ring, l)
    }

    fn pump(&mut self, ring: &mut Ring, l: usize) -> io::Result<()> {
        let link = &mut self.links[l];
        if link.sending || link.sock.is_none() {
            return Ok(());
        }
        let t = token(Op::Send, l, link.generation);
        match self.transport {
            Transport::Tcp => {
                // One send for everything queued (the stream keeps the messages apart).
                let Some(mut batch) = link.tx.pop_front() else {
                    return Ok(());
                };
                for b in link.tx.drain(..) {
                    batch.extend_from_slice(&b);
                }
                link.sending = true;
                ring.send(link.fd, batch, t)
            }
            Transport::Sctp => {
                let Some(data) = link.tx.pop_front() else {
                    return Ok(());
                };
                let mut sb = self.spare_send.pop().unwrap_or_else(SendBuf::new);
                sb.set(0, PPID_ASAP, 0, data);
                link.sending = true;
                ring.sendmsg(link.fd, sb, t)
            }
        }
    }

    fn on_send(&mut self, ring: &mut Ring, l: usize, c: Completion) -> io::Result<()> {
        self.links[l].sending = false;
        match c.buf {
            OpBuf::Bytes(mut sent) if c.result >= 0 => {
                let n = (c.result as usize).min(sent.len());
                if n < sent.len() {
                    // A short send: the rest goes first.
                    sent.drain(..n);
                    self.links[l].tx.push_front(sent);
                }
            }
            OpBuf::Send(mut sb) => {
                drop(sb.take_data());
                self.spare_send.push(sb);
            }
            _ => {}
        }
        if c.result < 0 {
            // A failed send loses messages: end the link, whose receive then reports it
            // lost (unless the farm crashed it on purpose).
            let link = &mut self.links[l];
            link.tx.clear();
            if let Some(sock) = &link.sock {
                sock.crash();
            }
            return Ok(());
        }
        self.pump(ring, l)
    }
}

/// Length of the whole framed ASAP message at the start of `buf`, if there is one
/// (reference §2.4: the padded Message Length).
fn whole_frame(buf: &[u8]) -> Option<usize> {
    let [_, _, hi, lo, ..] = *buf else {
        return None;
    };
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    let total = len.next_multiple_of(4);
    (len >= 4 && buf.len() >= total).then_some(total)
}

/// A Message Length below the header's own 4 bytes: nothing after it can be framed.
fn framing_broken(buf: &[u8]) -> bool {
    matches!(*buf, [_, _, hi, lo, ..] if u16::from_be_bytes([hi, lo]) < 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for (op, l, g) in [
            (Op::Recv, 0, 0),
            (Op::Send, 499, 7),
            (Op::Wake, 0, 0),
            (Op::Recv, 1 << 20, 0x3fff_ffff),
        ] {
            assert_eq!(untoken(token(op, l, g)), (op, l, g));
        }
    }

    #[test]
    fn frames_by_the_padded_length() {
        assert_eq!(whole_frame(&[]), None);
        assert_eq!(whole_frame(&[5, 0, 0, 5, 1, 0, 0]), None);
        assert_eq!(whole_frame(&[5, 0, 0, 5, 1, 0, 0, 0, 9]), Some(8));
        assert!(framing_broken(&[5, 0, 0, 3]));
        assert!(!framing_broken(&[5, 0, 0, 4]));
    }
}
