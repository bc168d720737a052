//! The farm thread: its links, its PEs, and the ring loop that drives them.

use std::collections::VecDeque;
use std::io;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crossbeam::channel::{Receiver, Sender};
use rserpool::client::{PeEvent, PoolElementClient};
use rserpool::wire::framing::{self, Frame};
use rserpool::wire::{AsapMessage, CauseCode, PPID_ASAP};
use rserpool_shards::net::ring::{Completion, OpBuf, Ring};
use rserpool_shards::net::sctp::{RecvBuf, SendBuf};
use rserpool_shards::net::socket::{EventFd, accepted};

use super::link::{Link, Op, RECV_CHUNK, Sock, token, untoken};
use super::port;
use super::{Command, Control, FarmConfig, FarmStats, Notice};
use crate::conn::{Target, Transport};
use crate::pe::element;

/// Registrations in flight while the farm starts (more would measure queueing).
const START_WINDOW: usize = 8;
/// How often PEs are asked whether a re-registration is due.
const TIMER_TICK: Duration = Duration::from_millis(50);
/// Registrations refused because the PE identifier still belongs to another
/// association (cause 0x000a: the registrar has not yet seen that association of a
/// previous run or phase go) are tried again at the next tick, this often at most.
const SECURITY_RETRIES: u32 = 40;
/// PEs re-register this often, with a registration life three times as long.
const REREGISTER_EVERY: Duration = Duration::from_secs(30);

/// The farm thread's state.
#[derive(Debug)]
pub(super) struct Engine {
    target: Target,
    transport: Transport,
    /// Connections the farm opened first (`0..own`), then the ones registrars opened
    /// to their ports.
    links: Vec<Link>,
    pes: Vec<PoolElementClient>,
    link_of: Vec<usize>,
    /// When each PE's deregistration went out.
    deregistering: Vec<Option<Instant>>,
    /// Per PE: refusals with cause 0x000a in a row, and whether it tries again at the
    /// next tick.
    refused: Vec<(u32, bool)>,
    /// PEs still to register at start-up, and how many of theirs are in flight.
    start_queue: VecDeque<usize>,
    starting: usize,
    /// Listening on the ports of new connections (off after the first failure).
    listen: bool,
    stats: FarmStats,
    /// Boxed: the ring hands boxes back and forth (the kernel points into them).
    #[allow(clippy::vec_box)]
    spare_send: Vec<Box<SendBuf>>,
}

impl Engine {
    pub(super) fn connect(config: &FarmConfig) -> io::Result<Self> {
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
            refused: vec![(0, false); n],
            start_queue: if config.register_at_start {
                (0..n).collect()
            } else {
                VecDeque::new()
            },
            starting: 0,
            listen: config.listen && config.target.transport == Transport::Tcp,
            stats: FarmStats::default(),
            spare_send: Vec::new(),
        };
        for l in 0..links {
            let link = engine.open(l).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("connecting to {} (link {l}): {e}", config.target),
                )
            })?;
            engine.links.push(link);
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
                config.handle_of(i),
                element(id, ip, config.policy),
                REREGISTER_EVERY,
            ));
            engine.link_of.push(l);
            engine.links[l].pes.push(i);
            engine.links[l].members.push(i);
        }
        Ok(engine)
    }

    /// A new connection to the registrar for link `l`, with its listener if the farm
    /// listens.
    fn open(&mut self, l: usize) -> io::Result<Link> {
        let sock = Sock::connect(self.target, self.listen)?;
        let listener = match (&sock, self.listen) {
            (Sock::Tcp(s), true) => match port::listen(s) {
                Ok(listener) => Some(listener),
                Err(e) => {
                    self.listen = false;
                    eprintln!(
                        "rserpool-loadgen: PE farm: cannot listen on {} ({e}), the local port of a \
                         registrar connection; from now on no connection listens, and a registrar \
                         taking these PEs over cannot reach them (--no-pe-listeners: do not try)",
                        s.local_addr()
                            .map_or_else(|_| "?".into(), |a| a.to_string())
                    );
                    None
                }
            },
            _ => None,
        };
        let mut link = Link::new(sock, l);
        link.listener = listener;
        Ok(link)
    }

    pub(super) fn run(
        mut self,
        commands: &Receiver<Control>,
        notices: &Sender<Notice>,
        wake: &EventFd,
    ) -> io::Result<FarmStats> {
        let _ = notices.send(Notice::Started {
            listening: self.listen,
        });
        let mut ring = Ring::new()?;
        ring.read(wake.raw_fd(), Vec::with_capacity(8), token(Op::Wake, 0, 0))?;
        for l in 0..self.links.len() {
            self.arm_recv(&mut ring, l)?;
            self.arm_accept(&mut ring, l)?;
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
                        // A completion from before a reconnect: its buffer just goes, and
                        // so does a connection its old listener took.
                        if op == Op::Accept && c.result >= 0 {
                            drop(accepted(c.result));
                        }
                    }
                    Op::Recv => self.on_recv(&mut ring, l, c, now, notices)?,
                    Op::Send => self.on_send(&mut ring, l, c)?,
                    Op::Accept => self.on_accept(&mut ring, l, &c)?,
                }
            }
            if now >= next_tick {
                next_tick = now + TIMER_TICK;
                for pe in 0..self.pes.len() {
                    if std::mem::take(&mut self.refused[pe].1) {
                        self.pes[pe].register(now);
                        self.flush_pe(&mut ring, pe)?;
                    }
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
                let mut l = l;
                if self.links[l].sock.is_none() && !self.links[l].is_own(l) {
                    // The registrar that took it over is gone too: back to the farm's
                    // own connection from the PE's port.
                    let own = self.links[l].port;
                    self.move_pe(pe, own);
                    l = own;
                }
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

    /// A new connection for the farm's own link `l` (a new local port, so a new
    /// listener too).
    fn reconnect(&mut self, ring: &mut Ring, l: usize) -> io::Result<()> {
        if let Some(old) = self.links[l].listener.take() {
            ring.cancel_fd(old.as_raw_fd())?;
        }
        let fresh = self.open(l)?;
        let link = &mut self.links[l];
        link.fd = fresh.fd;
        link.sock = fresh.sock;
        link.listener = fresh.listener;
        link.generation = link.generation.wrapping_add(1);
        link.rx = Some(Vec::with_capacity(RECV_CHUNK));
        link.tx.clear();
        link.sending = false;
        link.crashed = false;
        self.arm_recv(ring, l)?;
        self.arm_accept(ring, l)
    }

    /// Makes `to` the registrar connection of `pe`.
    fn move_pe(&mut self, pe: usize, to: usize) {
        let from = self.link_of[pe];
        self.links[from].pes.retain(|&p| p != pe);
        self.links[to].pes.push(pe);
        self.link_of[pe] = to;
    }

    fn arm_accept(&mut self, ring: &mut Ring, l: usize) -> io::Result<()> {
        let link = &self.links[l];
        match &link.listener {
            Some(listener) => {
                ring.accept_multi(listener.as_raw_fd(), token(Op::Accept, l, link.generation))
            }
            None => Ok(()),
        }
    }

    /// A registrar connected to the port of link `l` (to take its PEs over): a new link
    /// on the same port, read like any other.
    fn on_accept(&mut self, ring: &mut Ring, l: usize, c: &Completion) -> io::Result<()> {
        if c.result >= 0 {
            match accepted(c.result) {
                Ok(a) => {
                    let index = self.links.len();
                    self.links.push(Link::new(Sock::Tcp(a.stream), l));
                    self.stats.accepted += 1;
                    self.arm_recv(ring, index)?;
                }
                Err(e) => eprintln!("rserpool-loadgen: PE farm: an accepted connection: {e}"),
            }
        }
        if !c.more {
            if c.result < 0 {
                // The multishot accept ended on an error: this port stops listening.
                let e = io::Error::from_raw_os_error(-c.result);
                eprintln!(
                    "rserpool-loadgen: PE farm: accepting on the port of link {l} failed ({e}); \
                     a registrar taking its PEs over cannot reach them"
                );
                self.links[l].listener = None;
            } else {
                self.arm_accept(ring, l)?;
            }
        }
        Ok(())
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
                loop {
                    match framing::next(&buf[at..]) {
                        Frame::Whole(len) => {
                            self.dispatch(ring, l, &buf[at..at + len], now, notices)?;
                            at += len;
                        }
                        Frame::Need(_) => break,
                        Frame::Broken(_) => {
                            // The registrar sent something that cannot be framed: give up
                            // the link.
                            if let Some(sock) = self.links[l].sock.take() {
                                sock.crash();
                            }
                            return Ok(());
                        }
                    }
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
        // RFC 5353 §3.5.2: a registrar taking PEs over reaches them on a new connection
        // to their port with a keep-alive whose home flag is set; that is the one
        // message for a PE that a connection other than its own may carry.
        let home_keep_alive = matches!(msg, AsapMessage::EndpointKeepAlive { home: true, .. });
        let port = self.links[l].port;
        for i in 0..self.links[port].members.len() {
            let pe = self.links[port].members[i];
            let here = self.link_of[pe] == l;
            if !here && !home_keep_alive {
                continue;
            }
            let Some(event) = self.pes[pe].handle_message(now, &msg) else {
                continue;
            };
            let notice = match event {
                PeEvent::Registered { latency } => {
                    self.refused[pe].0 = 0;
                    Some(Notice::Registered {
                        pe,
                        latency,
                        at: now,
                    })
                }
                PeEvent::Rejected(Some(CauseCode::REJECTED_SECURITY))
                    if self.refused[pe].0 < SECURITY_RETRIES =>
                {
                    self.refused[pe] = (self.refused[pe].0 + 1, true);
                    None
                }
                PeEvent::Rejected(cause) => Some(Notice::Rejected { pe, cause }),
                PeEvent::Deregistered => {
                    self.deregistering[pe]
                        .take()
                        .map(|since| Notice::Deregistered {
                            pe,
                            latency: now.saturating_duration_since(since),
                            at: now,
                        })
                }
                // The registrar dropped it; it registered again (counted when answered).
                PeEvent::Dropped => None,
                // The connection the keep-alive came on is its registrar connection
                // from now on: the acknowledgement goes there, and so does the rest.
                PeEvent::Adopted { registrar } => {
                    self.stats.keep_alives_answered += 1;
                    self.stats.adopted += 1;
                    if !here {
                        self.move_pe(pe, l);
                    }
                    Some(Notice::Adopted {
                        pe,
                        registrar,
                        at: now,
                    })
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
            // the handle on this connection, or, with the home flag, behind this port;
            // anything else has one addressee.
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
