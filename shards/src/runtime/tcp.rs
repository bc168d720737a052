//! One shard's TCP side: its listeners (ASAP ones shared with SO_REUSEPORT, ENRP ones on
//! shard 0), the connections they accepted and the ones the registrar opened.
//!
//! Per connection one multishot recv is always armed: the kernel puts what arrives into
//! the shard's provided buffers, whole messages are handed to the registrar straight
//! from there and only a message cut by the end of a chunk is copied aside (without
//! provided buffers, a plain recv into the connection's own buffer is re-armed after
//! each). At most one send is in flight; what the registrar transmits meanwhile is appended to a
//! pending buffer and goes out with the next send, so a burst of answers costs one
//! syscall-free submission. Both protocols are framed alike ([`framing`]); a
//! connection's protocol, fixed by its listener or its [`Transmit::Connect`], decides
//! whether its messages go to the registrar's ASAP or ENRP side.
//!
//! [`Transmit::Connect`]: rserpool::registrar::Transmit::Connect

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::conns::ConnTable;
use std::io;
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use rserpool::registrar::{ConnId, ConnInfo, Protocol, Transport};

use super::framing::{self, Frame};
use super::limits::{Closure, Limits};
use super::shard::{Ctx, Token};
use crate::net::ring::{Completion, IoMode, OpBuf};
use crate::net::socket::{self, Sent};
use crate::tls::TlsServer;

// A child of this module, so that its hooks reach the connection's fields.
#[path = "tls.rs"]
mod tls;

/// Receive buffer a connection starts with; it grows only while a larger message is
/// being assembled (up to [`framing::MAX_FRAME`]).
const RX_INITIAL: usize = 4096;
/// Default of [`super::limits::ConnLimits::max_unsent_per_connection`]: a connection
/// whose unsent bytes exceed it is a slow consumer and is closed.
pub(super) const MAX_UNSENT: usize = 4 << 20;
/// Deadlines of the connection limits are checked at most this far apart (and at
/// least four times per timeout), in one sweep over the shard's connections: nothing
/// is added per message but a flag.
const SWEEP_MAX: Duration = Duration::from_secs(1);
/// A connection with more unsent than this (or half its cap, if less) has its input
/// held back (no more receives) until its backlog halves: its requests then wait in
/// the kernel, and TCP's flow control slows the client down, instead of the shard
/// answering requests whose answers nobody reads.
pub(super) const HOLD_BACK: usize = 256 << 10;
/// Messages a connection may have handled in one loop turn. A client that pipelines
/// more waits for the next turn with the rest parked in its receive buffer (its
/// receive stopped meanwhile), so that one turn, and with it every other client's
/// answer, never waits behind thousands of one connection's requests.
pub(super) const TURN_BUDGET: u32 = 32;
/// Waiting connections accepted with the spare descriptor and closed, at most, each
/// time accept runs out of descriptors.
const REFUSE_BATCH: usize = 64;
/// Freed connection buffers after which the shard asks the allocator to return
/// memory to the system ([`crate::net::alloc::collect`]).
const COLLECT_AFTER: usize = 1 << 20;
/// After accept fails for lack of descriptors or memory, wait this long before trying
/// again instead of spinning.
pub(super) const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// A connection the registrar closed gets this long to send what was queued for it.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug)]
struct Listener {
    socket: TcpListener,
    protocol: Protocol,
    /// Accept is not armed until then (after a resource error).
    paused_until: Option<Instant>,
    armed: bool,
    /// A `tls://` listener's credentials.
    tls: Option<Arc<TlsServer>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Open,
    /// The registrar closed it (and was told it is down): what is queued still goes
    /// out, then the socket is shut; anything received is dropped.
    Draining,
    /// Shut down; the entry stays until no operation holds its buffers.
    Closed,
}

#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    protocol: Protocol,
    /// The registered file the socket also is, if any ([`crate::net::ring::Ring::register_fixed`]).
    fixed: Option<u32>,
    /// With provided buffers: the start of a message not yet whole, kept across
    /// receives. Without: the receive buffer, `None` while a recv owns it.
    rx: Option<Vec<u8>>,
    /// Queued behind the send in flight.
    tx_pending: Vec<u8>,
    /// `None` while a send owns it.
    tx_spare: Option<Vec<u8>>,
    tx_inflight: usize,
    ops: u8,
    state: State,
    dirty: bool,
    /// On a `tls://` connection, its TLS state ([`tls`]).
    tls: Option<Box<tls::Session>>,
    /// The source address it was admitted under ([`Limits::admit`]); `None` for the
    /// connections the registrar opened.
    source: Option<IpAddr>,
    /// When it was accepted, or when the message being assembled started.
    since: Instant,
    /// Part of a message (or of a header) is buffered, since `since`.
    partial: bool,
    /// A whole message has arrived on it.
    heard: bool,
    /// A receive is armed (until its final completion).
    receiving: bool,
    /// The ring's number of the armed multishot receive ([`crate::net::ring::Ring::cancel_op`]).
    recv_op: u32,
    /// Its input is held back since then ([`HOLD_BACK`]).
    held: Option<Instant>,
    /// Whole messages wait in `rx` beyond this turn's [`TURN_BUDGET`]; its receive
    /// is stopped until they are handled ([`Tcp::unpark`]).
    parked: bool,
    /// The turn `budget` belongs to, and the messages still allowed in it.
    turn: u32,
    budget: u32,
}

impl Conn {
    /// Bytes queued or in flight on it.
    #[inline]
    fn unsent(&self) -> usize {
        self.tx_pending.len() + self.tx_inflight
    }

    /// `n` bytes were appended to its send buffer: they count in the shard's `unsent`,
    /// and it goes on the `dirty` list of connections with a send to start.
    #[inline]
    fn queued(&mut self, id: ConnId, n: usize, unsent: &mut usize, dirty: &mut Vec<ConnId>) {
        *unsent += n;
        if !self.dirty {
            self.dirty = true;
            dirty.push(id);
        }
    }

    /// Whether it, or the shard (`shard_unsent`), holds more unsent bytes than allowed.
    #[inline]
    fn over_caps(&self, limits: &Limits, shard_unsent: usize) -> bool {
        self.unsent() > limits.max_unsent_per_connection()
            || shard_unsent > limits.max_unsent_per_shard()
    }

    /// Messages it may still have handled in turn `turn`.
    fn budget(&mut self, turn: u32) -> u32 {
        if self.turn != turn {
            self.turn = turn;
            self.budget = TURN_BUDGET;
        }
        self.budget
    }
}

/// An outbound connection whose connect is in flight.
#[derive(Debug)]
struct Connecting {
    stream: TcpStream,
    peer: SocketAddr,
    /// The registrar gave the connection up; the completion only frees the socket.
    cancelled: bool,
}

/// Bytes `write` appended to `pending` (what counts against the unsent caps: a TLS
/// session writes records, not the plaintext it was given).
fn appended(pending: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) -> usize {
    let before = pending.len();
    write(pending);
    pending.len() - before
}

/// How an accepted connection came in: the TLS credentials of its listener (a
/// `tls://` one), and the source address the connection limits admitted it under
/// (`None` for the connections the registrar opened).
#[derive(Debug)]
struct Admitted {
    tls: Option<Arc<TlsServer>>,
    source: Option<IpAddr>,
}

/// The shard's TCP listeners and connections.
#[derive(Debug)]
pub(super) struct Tcp {
    listeners: Vec<Listener>,
    conns: ConnTable<Conn>,
    connecting: HashMap<ConnId, Connecting>,
    dirty: Vec<ConnId>,
    /// Connections draining, oldest first, with the time they are shut regardless.
    draining: VecDeque<(Instant, ConnId)>,
    /// Connections forgotten, for [`Tcp::take_released`].
    released: Vec<(ConnId, Option<u32>)>,
    /// Credentials for the peers dialled over TLS ([`tls`]).
    dial_tls: Option<Arc<TlsServer>>,
    limits: Arc<Limits>,
    /// Unsent bytes of every connection together.
    unsent: usize,
    /// When the connections' deadlines are checked next; `None` without connections.
    next_sweep: Option<Instant>,
    /// The earliest of `next_sweep`, the first draining connection's deadline and the
    /// paused listeners' back-offs ([`Tcp::refresh_due`]): one test instead of three.
    due: Option<Instant>,
    /// `due` was worked out again since [`Tcp::take_deadline`] last took it.
    due_moved: bool,
    /// Buffer bytes freed since the allocator was last asked to return memory.
    freed: usize,
    /// A descriptor held in reserve (`/dev/null`): out of descriptors, it is given up
    /// for a moment to accept the waiting connections and close them.
    spare: Option<std::fs::File>,
    /// The shard's loop turn, for the connections' [`TURN_BUDGET`].
    turn: u32,
    /// Connections with messages parked beyond their budget, in the order they ran out.
    parked: Vec<ConnId>,
}

impl Tcp {
    pub(super) fn new(listeners: Vec<(TcpListener, Protocol)>, limits: Arc<Limits>) -> Self {
        Self {
            listeners: listeners
                .into_iter()
                .map(|(socket, protocol)| Listener {
                    socket,
                    protocol,
                    paused_until: None,
                    armed: false,
                    tls: None,
                })
                .collect(),
            conns: ConnTable::default(),
            connecting: HashMap::new(),
            dirty: Vec::new(),
            draining: VecDeque::new(),
            released: Vec::new(),
            dial_tls: None,
            limits,
            unsent: 0,
            next_sweep: None,
            due: None,
            due_moved: false,
            freed: 0,
            spare: std::fs::File::open("/dev/null").ok(),
            turn: 0,
            parked: Vec::new(),
        }
    }

    /// Unsent bytes of every connection together.
    #[cfg(test)]
    pub(super) fn unsent(&self) -> usize {
        self.unsent
    }

    /// `id`'s unsent bytes, and whether its input is held back ([`HOLD_BACK`]).
    #[cfg(test)]
    pub(super) fn backlog(&self, id: ConnId) -> Option<(usize, bool)> {
        let c = self.conns.get(&id)?;
        Some((c.unsent(), c.held.is_some()))
    }

    /// Whether `id` is one of this shard's TCP connections (open, or being opened).
    pub(super) fn has(&self, id: ConnId) -> bool {
        self.conns.contains_key(&id) || self.connecting.contains_key(&id)
    }

    pub(super) fn arm(&mut self, ctx: &mut Ctx) -> io::Result<()> {
        for i in 0..self.listeners.len() {
            self.arm_accept(ctx, i)?;
        }
        Ok(())
    }

    fn arm_accept(&mut self, ctx: &mut Ctx, i: usize) -> io::Result<()> {
        let l = &mut self.listeners[i];
        ctx.ring
            .accept_multi(l.socket.as_raw_fd(), Token::Accept(i).encode())?;
        l.armed = true;
        l.paused_until = None;
        self.refresh_due();
        Ok(())
    }

    /// The earliest time a paused listener wants to be re-armed, a draining
    /// connection must be shut, or the connections' deadlines are checked; from now on
    /// [`Tcp::deadline_moved`] is false until it moves.
    pub(super) fn take_deadline(&mut self) -> Option<Instant> {
        self.due_moved = false;
        self.due
    }

    /// Whether [`Tcp::take_deadline`] would answer otherwise than it did last: a loop
    /// that keeps the deadline need not ask again until then.
    #[inline]
    pub(super) fn deadline_moved(&self) -> bool {
        self.due_moved
    }

    /// Works [`Tcp::take_deadline`]'s deadline out again; called wherever one of its
    /// parts moves.
    fn refresh_due(&mut self) {
        let paused = self.listeners.iter().filter_map(|l| l.paused_until).min();
        let draining = self.draining.front().map(|&(t, _)| t);
        self.due = [paused, draining, self.next_sweep]
            .into_iter()
            .flatten()
            .min();
        self.due_moved = true;
    }

    /// How often the connections' deadlines are checked.
    fn sweep_every(&self) -> Duration {
        let l = self.limits.config();
        let shortest = l
            .idle_timeout
            .map_or(l.message_timeout, |i| i.min(l.message_timeout));
        (shortest / 4).clamp(Duration::from_millis(1), SWEEP_MAX)
    }

    /// Closes the connections whose message or idle deadline passed; returns freed
    /// memory to the system after enough was freed.
    fn sweep(&mut self, ctx: &mut Ctx) {
        let limits = self.limits.clone();
        let l = limits.config();
        let now = ctx.now;
        let mut due = Vec::new();
        for (id, c) in self.conns.iter() {
            if c.state != State::Open {
                continue;
            }
            // Held back first: its cut message then waits for us, not for the peer.
            if c.held
                .is_some_and(|t| now.saturating_duration_since(t) >= l.message_timeout)
            {
                due.push((id, Closure::SlowConsumer));
            } else if c.held.is_none()
                && c.partial
                && now.saturating_duration_since(c.since) >= l.message_timeout
            {
                due.push((id, Closure::MessageTimeout));
            } else if !c.heard
                && !c.partial
                && c.source.is_some()
                && l.idle_timeout
                    .is_some_and(|t| now.saturating_duration_since(c.since) >= t)
            {
                due.push((id, Closure::IdleTimeout));
            }
        }
        for (id, why) in due {
            let text = match why {
                Closure::MessageTimeout => {
                    "message timeout: a started message did not arrive whole in time"
                }
                Closure::SlowConsumer => {
                    "slow consumer: its answers went unread for the message timeout"
                }
                _ => "idle timeout: no whole message since the connection was accepted",
            };
            tracing::debug!(conn = id.0, "{text}");
            limits.closed(why);
            self.close(ctx, id, text);
        }
        // Also when the last connection went: the shard may now sleep for long.
        if self.freed >= COLLECT_AFTER || (self.freed > 0 && self.conns.is_empty()) {
            self.freed = 0;
            crate::net::alloc::collect();
        }
        // [`Tcp::resume_now`], its caller, works the deadline out again after it.
        self.next_sweep = (!self.conns.is_empty()).then(|| now + self.sweep_every());
    }

    /// Re-arms listeners whose back-off ended; shuts connections that drained too long.
    /// `busy`: completions were left for the next turn; the deadlines then wait, since
    /// bytes that arrived may not have been looked at yet (the shard's own delay must
    /// not count against a client).
    #[inline]
    pub(super) fn resume(&mut self, ctx: &mut Ctx, busy: bool) {
        if self.due.is_some_and(|t| t <= ctx.now) {
            self.resume_now(ctx, busy);
        }
    }

    fn resume_now(&mut self, ctx: &mut Ctx, busy: bool) {
        if !busy && self.next_sweep.is_some_and(|t| t <= ctx.now) {
            self.sweep(ctx);
        }
        while let Some(&(t, id)) = self.draining.front()
            && t <= ctx.now
        {
            self.draining.pop_front();
            if self
                .conns
                .get(&id)
                .is_some_and(|c| c.state == State::Draining)
            {
                tracing::debug!(conn = id.0, "closed TCP connection still not drained");
                self.shut(id);
            }
        }
        for i in 0..self.listeners.len() {
            if self.listeners[i].paused_until.is_some_and(|t| t <= ctx.now)
                && let Err(e) = self.arm_accept(ctx, i)
            {
                tracing::warn!(error = %e, "cannot re-arm accept");
                self.listeners[i].paused_until = Some(ctx.now + ACCEPT_BACKOFF);
            }
        }
        self.refresh_due();
    }

    pub(super) fn on_accept(&mut self, ctx: &mut Ctx, i: usize, c: Completion) {
        if !c.more {
            self.listeners[i].armed = false;
        }
        if c.result < 0 {
            let e = io::Error::from_raw_os_error(-c.result);
            if c.result == -libc::ECANCELED {
                return;
            }
            // Out of descriptors or memory: try again shortly rather than spin.
            self.limits.accept_failed();
            tracing::warn!(error = %e, "accept failed");
            if !c.more {
                self.listeners[i].paused_until = Some(ctx.now + ACCEPT_BACKOFF);
                self.refresh_due();
                if matches!(-c.result, libc::EMFILE | libc::ENFILE) {
                    self.refuse_waiting(i);
                }
            }
            return;
        }
        match socket::accepted(c.result) {
            Ok(a) => {
                let source = a.peer.ip().to_canonical();
                // Refused: the socket is closed at once, so the client sees a clean
                // close (and the refusal is counted and logged by `admit`).
                if self.limits.admit(source).is_ok() {
                    let protocol = self.listeners[i].protocol;
                    let id = ctx.conn_id();
                    tracing::debug!(conn = id.0, peer = %a.peer, ?protocol, "TCP connection accepted");
                    let tls = self.listeners[i].tls.clone();
                    let admitted = Admitted {
                        tls,
                        source: Some(source),
                    };
                    self.add(ctx, id, a.stream, a.peer, protocol, admitted);
                }
            }
            // The peer is already gone again.
            Err(e) => tracing::debug!(error = %e, "accepted connection unusable"),
        }
        if !self.listeners[i].armed
            && self.listeners[i].paused_until.is_none()
            && let Err(e) = self.arm_accept(ctx, i)
        {
            tracing::warn!(error = %e, "cannot re-arm accept");
            self.listeners[i].paused_until = Some(ctx.now + ACCEPT_BACKOFF);
            self.refresh_due();
        }
    }

    /// Out of descriptors (and no accept armed on listener `i`): the spare descriptor
    /// is given up for a moment to accept the connections waiting in the backlog and
    /// close them at once, so that their clients see a close rather than hang until
    /// descriptors are free again.
    fn refuse_waiting(&mut self, i: usize) {
        let Some(spare) = self.spare.take() else {
            return;
        };
        drop(spare);
        let l = &self.listeners[i].socket;
        // Non-blocking only meanwhile: the ring's accepts expect a blocking socket.
        if l.set_nonblocking(true).is_ok() {
            let mut refused = 0;
            while refused < REFUSE_BATCH && l.accept().is_ok() {
                refused += 1;
                self.limits.refused_no_descriptors();
            }
            if let Err(e) = l.set_nonblocking(false) {
                tracing::warn!(error = %e, "cannot make a listener blocking again");
            }
            if refused > 0 {
                tracing::warn!(
                    refused,
                    "out of descriptors: waiting connections accepted and closed"
                );
            }
        }
        self.spare = std::fs::File::open("/dev/null").ok();
    }

    /// A connection is up (accepted, or connected): the registrar hears of it (a TLS
    /// one's once its handshake is done) and its first recv is armed.
    fn add(
        &mut self,
        ctx: &mut Ctx,
        id: ConnId,
        stream: TcpStream,
        peer: SocketAddr,
        protocol: Protocol,
        admitted: Admitted,
    ) {
        let Admitted { tls, source } = admitted;
        let local = stream.local_addr().ok();
        let info = ConnInfo {
            transport: Transport::Tcp,
            protocol,
            local_addrs: local.iter().map(|a| a.ip().to_canonical()).collect(),
            local_port: local.map_or(0, |a| a.port()),
            peer_addrs: vec![peer.ip().to_canonical()],
            peer_port: peer.port(),
            identity: None,
        };
        let tls = match tls {
            None => {
                ctx.conn_up(id, info);
                None
            }
            Some(server) => match tls::Session::new(&server, info) {
                Ok(session) => Some(session),
                Err(e) => {
                    tracing::warn!(conn = id.0, error = %e, "cannot start TLS");
                    self.released.push((id, None));
                    return;
                }
            },
        };
        let fixed = (!id.is_outbound())
            .then_some(id.slot() as u32)
            .filter(|&slot| ctx.ring.register_fixed(slot, stream.as_raw_fd()));
        let rx = if ctx.ring.has_provided() {
            Vec::new()
        } else {
            Vec::with_capacity(RX_INITIAL)
        };
        self.conns.insert(
            id,
            Conn {
                stream,
                protocol,
                fixed,
                rx: Some(rx),
                tx_pending: Vec::new(),
                tx_spare: Some(Vec::new()),
                tx_inflight: 0,
                ops: 0,
                state: State::Open,
                dirty: false,
                tls,
                source,
                since: ctx.now,
                partial: false,
                heard: false,
                receiving: false,
                recv_op: 0,
                held: None,
                parked: false,
                turn: 0,
                budget: 0,
            },
        );
        if self.next_sweep.is_none() {
            self.next_sweep = Some(ctx.now + self.sweep_every());
            self.refresh_due();
        }
        self.arm_recv(ctx, id, 0);
    }

    /// Starts connecting `id` to `to` (one attempt of a [`super::dial`]).
    pub(super) fn connect(&mut self, ctx: &mut Ctx, id: ConnId, to: SocketAddr) -> io::Result<()> {
        let stream = socket::tcp_connecting(to)?;
        ctx.ring
            .connect(stream.as_raw_fd(), to, Token::Connect(id).encode())?;
        tracing::debug!(conn = id.0, peer = %to, "TCP connecting");
        self.connecting.insert(
            id,
            Connecting {
                stream,
                peer: to,
                cancelled: false,
            },
        );
        Ok(())
    }

    /// Gives up the connect in flight for `id`, if any.
    pub(super) fn cancel_connect(&mut self, ctx: &mut Ctx, id: ConnId) {
        if let Some(c) = self.connecting.get_mut(&id) {
            c.cancelled = true;
            if let Err(e) = ctx.ring.cancel_fd(c.stream.as_raw_fd()) {
                tracing::warn!(conn = id.0, error = %e, "cannot cancel a TCP connect");
            }
        }
    }

    pub(super) fn on_connect(&mut self, ctx: &mut Ctx, id: ConnId, c: Completion) {
        let Some(pending) = self.connecting.remove(&id) else {
            return;
        };
        if pending.cancelled {
            return;
        }
        if c.result < 0 {
            let e = io::Error::from_raw_os_error(-c.result);
            tracing::debug!(conn = id.0, peer = %pending.peer, error = %e, "TCP connect failed");
            ctx.dials.failed(id);
            return;
        }
        let Some(protocol) = ctx.dials.protocol(id) else {
            return;
        };
        tracing::debug!(conn = id.0, peer = %pending.peer, ?protocol, "TCP connected");
        let waiting = ctx.dials.up(id);
        let admitted = Admitted {
            tls: None,
            source: None,
        };
        self.add(ctx, id, pending.stream, pending.peer, protocol, admitted);
        self.start_tls_client(ctx, id, pending.peer);
        for w in waiting {
            self.queue(ctx, id, &w.payload);
        }
    }

    /// Arms the connection's recv: a multishot one into the provided buffers, or else
    /// a plain one with room for at least `need` buffered bytes.
    fn arm_recv(&mut self, ctx: &mut Ctx, id: ConnId, need: usize) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if ctx.ring.has_provided() {
            let token = Token::Recv(id).encode();
            match ctx
                .ring
                .recv_multi(conn.stream.as_raw_fd(), conn.fixed, token)
            {
                Ok(op) => {
                    conn.ops += 1;
                    conn.receiving = true;
                    conn.recv_op = op;
                }
                Err(e) => {
                    tracing::warn!(conn = id.0, error = %e, "cannot arm recv");
                    self.close(ctx, id, "recv not armed");
                }
            }
            return;
        }
        let Some(mut rx) = conn.rx.take() else { return };
        // Room for what may come, not for what a header announced: the buffer at most
        // doubles per receive, so a large announced length costs only what arrived.
        let want = need
            .min(framing::MAX_FRAME)
            .min((rx.len() * 2).max(RX_INITIAL))
            .max(rx.len() + 1024)
            .max(RX_INITIAL);
        if rx.capacity() < want {
            rx.reserve_exact(want - rx.len());
        }
        match ctx
            .ring
            .recv(conn.stream.as_raw_fd(), rx, Token::Recv(id).encode())
        {
            Ok(()) => {
                conn.ops += 1;
                conn.receiving = true;
            }
            Err(e) => {
                tracing::warn!(conn = id.0, error = %e, "cannot arm recv");
                conn.rx = Some(Vec::new());
                self.close(ctx, id, "recv not armed");
            }
        }
    }

    /// A receive's completion. The common chunk ([`Tcp::on_request`]) is handled here
    /// and anything else out of line ([`Tcp::on_recv_other`]), so that the common one
    /// pays neither for the registers nor for the stack frame of the rest.
    pub(super) fn on_recv(&mut self, ctx: &mut Ctx, id: ConnId, c: Completion) {
        if c.more
            && c.result > 0
            && let Some(b) = c.provided
            && matches!(c.buf, OpBuf::None)
            && self.on_request(ctx, id, b, c.result as usize)
        {
            // Nothing in it to drop (its buffer is none).
            std::mem::forget(c);
            return;
        }
        self.on_recv_other(ctx, id, c);
    }

    /// [`Tcp::on_recv`] for every completion [`Tcp::on_request`] did not take.
    #[inline(never)]
    fn on_recv_other(&mut self, ctx: &mut Ctx, id: ConnId, c: Completion) {
        if c.provided.is_some() || matches!(c.buf, OpBuf::None) {
            return self.on_recv_provided(ctx, id, c);
        }
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        conn.ops -= 1;
        conn.receiving = false;
        let OpBuf::Bytes(mut rx) = c.buf else {
            unreachable!("a recv owns bytes")
        };
        if conn.state == State::Closed {
            conn.rx = Some(rx);
            self.release_if_idle(id);
            return;
        }
        match c.result {
            0 => {
                conn.rx = Some(rx);
                self.close(ctx, id, "peer closed");
                return;
            }
            r if r < 0 => {
                conn.rx = Some(rx);
                let e = io::Error::from_raw_os_error(-r);
                tracing::debug!(conn = id.0, error = %e, "recv failed");
                self.close(ctx, id, "recv failed");
                return;
            }
            _ => {}
        }
        if conn.state == State::Draining {
            // The registrar is done with it: only the peer's close matters now.
            rx.clear();
            conn.rx = Some(rx);
            self.arm_recv(ctx, id, 0);
            return;
        }
        if conn.tls.is_some() {
            return self.on_recv_tls_owned(ctx, id, rx);
        }
        // Every whole message in the buffer goes to the registrar; a partial one waits.
        let protocol = conn.protocol;
        let taken = frames(&rx, |message| match protocol {
            Protocol::Asap => ctx.registrar.handle_asap(ctx.now, id, message),
            Protocol::Enrp => ctx.enrp(id, message),
        });
        let (at, need) = match taken {
            Ok(t) => t,
            Err(len) => {
                conn.rx = Some(rx);
                self.broken_framing(ctx, id, len);
                return;
            }
        };
        conn.heard |= at > 0;
        rx.drain(..at);
        if rx.is_empty() && rx.capacity() > 4 * RX_INITIAL {
            rx = Vec::with_capacity(RX_INITIAL);
        }
        Self::track_partial(conn, !rx.is_empty(), ctx.now);
        conn.rx = Some(rx);
        if conn.unsent() > Self::hold_back_at(&self.limits) {
            // Not re-armed until the backlog halves ([`Tcp::resume_recv`]).
            conn.held = Some(ctx.now);
            return;
        }
        self.arm_recv(ctx, id, need);
    }

    /// One completion of a multishot recv that [`Tcp::on_request`] did not take: the
    /// chunk is read from its provided buffer (which goes straight back to the
    /// kernel), and the recv is armed again if it ended for want of buffers.
    fn on_recv_provided(&mut self, ctx: &mut Ctx, id: ConnId, mut c: Completion) {
        // A multishot receive's completions carry no buffer of the operation's: no
        // drop to work out at the end.
        if !matches!(c.buf, OpBuf::None) {
            drop(std::mem::take(&mut c.buf));
        }
        let ended = !c.more;
        let turn = self.turn;
        let Some(conn) = self.conns.get_mut(&id) else {
            if let Some(b) = c.provided {
                ctx.ring.recycle(b);
            }
            return;
        };
        if ended {
            conn.ops -= 1;
            conn.receiving = false;
        }
        if conn.tls.is_some() {
            return self.on_recv_tls(ctx, id, c, ended);
        }
        let was_parked = conn.parked;
        let outcome = match (c.provided, c.result) {
            (Some(b), n) if n > 0 => {
                let outcome = if conn.state == State::Open {
                    Self::deliver(ctx, id, conn, b, n as usize, turn)
                } else {
                    Ok(0)
                };
                ctx.ring.recycle(b);
                outcome
            }
            (b, _) => {
                if let Some(b) = b {
                    ctx.ring.recycle(b);
                }
                Ok(0)
            }
        };
        if conn.state == State::Closed {
            self.release_if_idle(id);
            return;
        }
        let answered = match outcome {
            Ok(answered) => answered,
            Err(len) => {
                self.broken_framing(ctx, id, len);
                return;
            }
        };
        if answered > 0 {
            // Answers the registrar wrote straight into `tx_pending`.
            conn.queued(id, answered, &mut self.unsent, &mut self.dirty);
        }
        let conn = if answered > 0 && conn.over_caps(&self.limits, self.unsent) {
            if self.over_limits(ctx, id) {
                return;
            }
            let Some(conn) = self.conns.get_mut(&id) else {
                return;
            };
            conn
        } else {
            conn
        };
        // Its receive stops while messages are parked ([`Tcp::unpark`] handles them)
        // or while its input is held back; it is stopped already if either was so
        // before this chunk.
        let held_before = conn.held.is_some();
        let newly_held = !held_before
            && conn.state == State::Open
            && conn.unsent() > Self::hold_back_at(&self.limits);
        if newly_held {
            conn.held = Some(ctx.now);
            tracing::trace!(conn = id.0, "input held back");
        }
        let newly_parked = conn.parked && !was_parked;
        if newly_parked {
            self.parked.push(id);
        }
        let stop = (newly_parked || newly_held) && !held_before && !was_parked;
        if stop
            && !ended
            && let Err(e) = ctx.ring.cancel_op(conn.recv_op)
        {
            tracing::warn!(conn = id.0, error = %e, "cannot stop a connection's receive");
        }
        if !ended {
            return;
        }
        match c.result {
            0 => {
                if conn.parked || conn.held.is_some() {
                    // What arrived before the close is still handled.
                    let queued = (&mut self.unsent, &mut self.dirty);
                    let _ = Self::handle_parked(ctx, id, conn, &mut { u32::MAX }, queued);
                }
                self.close(ctx, id, "peer closed");
            }
            // Held back or parked: [`Tcp::resume_recv`] or [`Tcp::unpark`] arms it again.
            _ if conn.held.is_some() || conn.parked => {}
            r if r == -libc::ENOBUFS || r == -libc::ECANCELED || r > 0 => self.arm_recv(ctx, id, 0),
            r => {
                let e = io::Error::from_raw_os_error(-r);
                tracing::debug!(conn = id.0, error = %e, "recv failed");
                self.close(ctx, id, "recv failed");
            }
        }
    }

    /// The common chunk of a multishot receive that stays armed: one whole ASAP message
    /// in provided buffer `b` (`len` bytes) on an open plain connection with nothing
    /// kept, parked or held back, within its turn's budget. It goes to the registrar in
    /// place, without the framing loop and the bookkeeping of kept and parked bytes of
    /// [`Tcp::deliver`], and `b` goes back to the kernel. Returns false, having changed
    /// nothing, for any other chunk: the general path takes it.
    #[inline(always)]
    fn on_request(&mut self, ctx: &mut Ctx, id: ConnId, b: u16, len: usize) -> bool {
        let turn = self.turn;
        let Some(conn) = self.conns.get_mut(&id) else {
            return false;
        };
        if conn.state != State::Open
            || conn.tls.is_some()
            || conn.protocol != Protocol::Asap
            || conn.parked
            || conn.held.is_some()
            || conn.partial
            || conn.rx.as_ref().is_some_and(|rx| !rx.is_empty())
        {
            return false;
        }
        let budget = conn.budget(turn);
        let chunk = ctx.ring.provided(b, len);
        if budget == 0 || framing::next(chunk) != Frame::Whole(len) {
            return false;
        }
        conn.budget = budget - 1;
        conn.heard = true;
        let before = conn.tx_pending.len();
        ctx.registrar
            .handle_asap_into(ctx.now, id, chunk, &mut conn.tx_pending);
        ctx.ring.recycle(b);
        let answered = conn.tx_pending.len() - before;
        if answered > 0 {
            conn.queued(id, answered, &mut self.unsent, &mut self.dirty);
        }
        // Answers that went through the registrar's queue (refusals, negative answers)
        // count too, once queued here: a backlog past the mark holds the input back
        // whatever this message's answer was. A connection past its own cap is past
        // the mark too (which is at most half the cap): only the shard's cap is asked
        // apart here, [`Tcp::answers_pile_up`] tells which it was.
        let queued = answered > 0;
        if (queued && self.unsent > self.limits.max_unsent_per_shard())
            || conn.unsent() > Self::hold_back_at(&self.limits)
        {
            self.answers_pile_up(ctx, id, queued);
        }
        true
    }

    /// After [`Tcp::on_request`] left a backlog beyond the hold-back mark, or queued
    /// answers (`queued`) past the shard's cap: what the general path does then for a
    /// connection that was neither parked nor held back, with its receive armed. The
    /// caps' consequences ([`Tcp::over_limits`]) if answers were queued past one, then
    /// the hold-back, which stops the receive.
    #[cold]
    #[inline(never)]
    fn answers_pile_up(&mut self, ctx: &mut Ctx, id: ConnId, queued: bool) {
        let over_caps = queued
            && self
                .conns
                .get(&id)
                .is_some_and(|c| c.over_caps(&self.limits, self.unsent));
        if over_caps && self.over_limits(ctx, id) {
            return;
        }
        let hold_back_at = Self::hold_back_at(&self.limits);
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if conn.state == State::Open && conn.held.is_none() && conn.unsent() > hold_back_at {
            conn.held = Some(ctx.now);
            tracing::trace!(conn = id.0, "input held back");
            if let Err(e) = ctx.ring.cancel_op(conn.recv_op) {
                tracing::warn!(conn = id.0, error = %e, "cannot stop a connection's receive");
            }
        }
    }

    /// Hands every whole message of `len` bytes in provided buffer `b` (after what
    /// `conn` kept of an earlier chunk) to the registrar, up to its budget in `turn`,
    /// and keeps the rest (a cut message, or the messages beyond the budget: the
    /// connection is then parked). The registrar writes its answers to resolutions
    /// straight into the connection's pending send buffer
    /// ([`rserpool::registrar::Registrar::handle_asap_into`]); returns how many bytes
    /// it wrote there. An `Err` carries the Message Length that breaks the framing.
    fn deliver(
        ctx: &mut Ctx,
        id: ConnId,
        conn: &mut Conn,
        b: u16,
        len: usize,
        turn: u32,
    ) -> Result<usize, u16> {
        let mut budget = conn.budget(turn);
        let Ctx {
            ring,
            registrar,
            now,
            ..
        } = ctx;
        let chunk = ring.provided(b, len);
        let rx = conn.rx.get_or_insert_with(Vec::new);
        if conn.parked || conn.held.is_some() {
            // Its budget ran out this turn, or its input is held back (this chunk came
            // before its receive stopped): the chunk waits with what is parked.
            rx.extend_from_slice(chunk);
            return Ok(0);
        }
        let kept = !rx.is_empty();
        if kept {
            rx.extend_from_slice(chunk);
        }
        let data: &[u8] = if kept { rx } else { chunk };
        let protocol = conn.protocol;
        let tx = &mut conn.tx_pending;
        let before = tx.len();
        let (rest, need) = frames_within(data, &mut budget, |message| match protocol {
            Protocol::Asap => registrar.handle_asap_into(*now, id, message, tx),
            Protocol::Enrp => {
                #[cfg(test)]
                ctx.told
                    .push(super::shard::Told::Enrp(id, message.to_vec()));
                registrar.handle_enrp(*now, id, message);
            }
        })?;
        conn.budget = budget;
        conn.heard |= rest > 0;
        if kept {
            rx.drain(..rest);
            if rx.is_empty() && rx.capacity() > 4 * RX_INITIAL {
                *rx = Vec::new();
            } else if rx.capacity() > 4 * rx.len().max(RX_INITIAL) {
                // What is left of a large buffer after a large message.
                rx.shrink_to(2 * rx.len().max(RX_INITIAL));
            }
        } else if rest < chunk.len() {
            rx.extend_from_slice(&chunk[rest..]);
        }
        if need == 0 {
            // Whole messages wait for our next turn, not for the peer: no deadline.
            conn.parked = true;
            Self::track_partial(conn, false, *now);
        } else {
            let partial = !rx.is_empty();
            Self::track_partial(conn, partial, *now);
        }
        Ok(conn.tx_pending.len() - before)
    }

    /// Hands up to `*budget` of the messages parked in `conn`'s receive buffer to the
    /// registrar (counted off the budget); returns what [`frames_within`] does. The
    /// answers the registrar writes straight into `conn`'s send buffer are counted in
    /// `unsent` and `conn` is put on the `dirty` list; the caller checks the limits.
    fn handle_parked(
        ctx: &mut Ctx,
        id: ConnId,
        conn: &mut Conn,
        budget: &mut u32,
        (unsent, dirty): (&mut usize, &mut Vec<ConnId>),
    ) -> Result<usize, u16> {
        let before = conn.tx_pending.len();
        let rx = conn.rx.get_or_insert_with(Vec::new);
        let protocol = conn.protocol;
        let tls = conn.tls.is_some();
        let tx = &mut conn.tx_pending;
        let (rest, need) = frames_within(rx, budget, |message| match protocol {
            // A TLS connection's answers are encrypted on their way into `tx_pending`:
            // they go through the queue.
            Protocol::Asap if tls => ctx.registrar.handle_asap(ctx.now, id, message),
            Protocol::Asap => ctx.registrar.handle_asap_into(ctx.now, id, message, tx),
            Protocol::Enrp => {
                #[cfg(test)]
                ctx.told
                    .push(super::shard::Told::Enrp(id, message.to_vec()));
                ctx.registrar.handle_enrp(ctx.now, id, message);
            }
        })?;
        rx.drain(..rest);
        conn.heard |= rest > 0;
        if need != 0 {
            conn.parked = false;
            let partial = !rx.is_empty();
            Self::track_partial(conn, partial, ctx.now);
        }
        let answered = conn.tx_pending.len() - before;
        if answered > 0 {
            conn.queued(id, answered, unsent, dirty);
        }
        Ok(need)
    }

    /// Whether a connection has messages parked beyond its budget.
    pub(super) fn has_parked(&self) -> bool {
        !self.parked.is_empty()
    }

    /// Starts a loop turn: every connection parked beyond its budget has its waiting
    /// messages handled, up to a new budget, and receives again once none is left.
    pub(super) fn unpark(&mut self, ctx: &mut Ctx) {
        self.turn = self.turn.wrapping_add(1);
        if self.parked.is_empty() {
            return;
        }
        let turn = self.turn;
        let mut parked = std::mem::take(&mut self.parked);
        let mut broken = Vec::new();
        let mut resumed = Vec::new();
        let unsent_before = self.unsent;
        let hold_back_at = Self::hold_back_at(&self.limits);
        parked.retain(|&id| {
            let Some(conn) = self.conns.get_mut(&id) else {
                return false;
            };
            if !conn.parked || conn.state != State::Open {
                conn.parked = false;
                return false;
            }
            let mut budget = conn.budget(turn);
            let queued = (&mut self.unsent, &mut self.dirty);
            let outcome = Self::handle_parked(ctx, id, conn, &mut budget, queued);
            conn.budget = budget;
            if outcome.is_ok() && conn.held.is_none() && conn.unsent() > hold_back_at {
                // Its answers wait unread: once its parked messages are handled, no
                // receive until they drain ([`Tcp::resume_recv`]).
                conn.held = Some(ctx.now);
                tracing::trace!(conn = id.0, "input held back");
            }
            match outcome {
                Ok(0) => true,
                Ok(_) if conn.held.is_some() => false,
                Ok(_) => {
                    if !conn.receiving {
                        resumed.push(id);
                    }
                    false
                }
                Err(len) => {
                    broken.push((id, len));
                    false
                }
            }
        });
        if self.unsent > unsent_before {
            // Answers written this pass may have passed a connection's or the shard's
            // cap on unsent bytes (every connection that got some is on the dirty list).
            let over: Vec<ConnId> = self
                .dirty
                .iter()
                .copied()
                .filter(|id| {
                    self.conns
                        .get(id)
                        .is_some_and(|c| c.over_caps(&self.limits, self.unsent))
                })
                .collect();
            for id in over {
                self.over_limits(ctx, id);
            }
        }
        self.parked = parked;
        for id in resumed {
            if self.conns.get(&id).is_some_and(|c| c.state == State::Open) {
                self.arm_recv(ctx, id, 0);
            }
        }
        for (id, len) in broken {
            self.broken_framing(ctx, id, len);
        }
    }

    /// Closes `id`, whose framing broke (a Message Length of `len`, below 4), and
    /// counts it.
    fn broken_framing(&mut self, ctx: &mut Ctx, id: ConnId, len: u16) {
        tracing::debug!(
            conn = id.0,
            len,
            "Message Length below 4 breaks TCP framing"
        );
        self.limits.broken_framing(false);
        self.close(ctx, id, "broken framing");
    }

    /// Unsent bytes beyond which a connection's input is held back.
    fn hold_back_at(limits: &Limits) -> usize {
        HOLD_BACK.min(limits.max_unsent_per_connection() / 2)
    }

    /// Receives again on a connection whose input was held back, once its backlog has
    /// halved.
    #[inline(never)]
    fn resume_recv(&mut self, ctx: &mut Ctx, id: ConnId) {
        let at = Self::hold_back_at(&self.limits) / 2;
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if conn.state != State::Open || conn.held.is_none() || conn.unsent() > at {
            return;
        }
        conn.held = None;
        tracing::trace!(conn = id.0, receiving = conn.receiving, "input resumed");
        // A message cut while held waited for us: its deadline starts now.
        if conn.partial {
            conn.since = ctx.now;
        }
        if conn.rx.as_ref().is_some_and(|rx| !rx.is_empty()) && !conn.parked {
            // What came while it was held waits: the next turn handles it and then
            // receives again ([`Tcp::unpark`]).
            conn.parked = true;
            self.parked.push(id);
            return;
        }
        // A cancelled receive still to complete re-arms itself; a parked connection
        // receives again once its parked messages are handled.
        if !conn.receiving && !conn.parked {
            self.arm_recv(ctx, id, 0);
        }
    }

    /// Notes whether part of a message is buffered, and since when (for
    /// [`super::limits::ConnLimits::message_timeout`]): a compare per receive, a write
    /// only when a message is cut or completed.
    fn track_partial(conn: &mut Conn, partial: bool, now: Instant) {
        if partial != conn.partial {
            conn.partial = partial;
            if partial {
                conn.since = now;
            }
        }
    }

    /// Queues an encoded message; returns false if `id` is not a TCP connection here.
    pub(super) fn queue(&mut self, ctx: &mut Ctx, id: ConnId, payload: &[u8]) -> bool {
        let Some(conn) = self.conns.get_mut(&id) else {
            return false;
        };
        if conn.state != State::Open {
            return true;
        }
        let n = appended(&mut conn.tx_pending, |p| match conn.tls.as_deref_mut() {
            None => p.extend_from_slice(payload),
            Some(session) => session.send(payload, p),
        });
        conn.queued(id, n, &mut self.unsent, &mut self.dirty);
        self.over_limits(ctx, id);
        true
    }

    /// After bytes were queued on `id`: closes it if it is a slow consumer, and the
    /// largest backlogs if the shard's unsent bytes passed their cap. Returns whether
    /// `id` was closed.
    fn over_limits(&mut self, ctx: &mut Ctx, id: ConnId) -> bool {
        let Some(conn) = self.conns.get(&id) else {
            return true;
        };
        let unsent = conn.unsent();
        if unsent > self.limits.max_unsent_per_connection() {
            tracing::info!(
                conn = id.0,
                unsent,
                "closing a slow consumer (limits.max_unsent_per_connection)"
            );
            self.limits.closed(Closure::SlowConsumer);
            self.close(ctx, id, "slow consumer");
            return true;
        }
        if self.unsent > self.limits.max_unsent_per_shard() {
            self.shed(ctx);
            return self.conns.get(&id).is_none_or(|c| c.state != State::Open);
        }
        false
    }

    /// The shard's connections together have more unsent than
    /// [`super::limits::ConnLimits::max_unsent_per_shard`]: the ones with the largest
    /// backlogs (the slowest consumers) are closed until they fit again.
    fn shed(&mut self, ctx: &mut Ctx) {
        let cap = self.limits.max_unsent_per_shard();
        while self.unsent > cap {
            let largest = self
                .conns
                .iter()
                .filter(|(_, c)| c.state == State::Open)
                .map(|(id, c)| (c.unsent(), id))
                .max();
            let Some((unsent, id)) = largest.filter(|&(n, _)| n > 0) else {
                break;
            };
            tracing::info!(
                conn = id.0,
                unsent,
                shard_unsent = self.unsent,
                "closing the largest backlog: the shard's unsent bytes passed limits.max_unsent_per_shard"
            );
            self.limits.closed(Closure::ShardBacklog);
            self.close(ctx, id, "shard backlog");
        }
    }

    /// Starts a send on every connection with queued bytes and none in flight.
    #[inline(always)]
    pub(super) fn flush(&mut self, ctx: &mut Ctx) {
        if self.dirty.is_empty() {
            return;
        }
        if self.dirty.len() == 1 && ctx.ring.mode() == IoMode::Interrupt {
            // One connection to send on: a plain send(2) instead of a ring operation
            // (the same one system call as the submission it replaces, without the
            // operation's completion to handle afterwards). More than one go through
            // the ring, which submits them all in one call.
            let id = self.dirty[0];
            self.dirty.clear();
            return self.send_direct(ctx, id);
        }
        self.flush_all(ctx);
    }

    /// [`Tcp::flush`] through the ring, for every dirty connection.
    #[inline(never)]
    fn flush_all(&mut self, ctx: &mut Ctx) {
        // The list keeps its allocation from turn to turn.
        let mut dirty = std::mem::take(&mut self.dirty);
        for id in dirty.drain(..) {
            if let Some(conn) = self.conns.get_mut(&id) {
                conn.dirty = false;
                self.start_send(ctx, id);
            }
        }
        if self.dirty.is_empty() {
            self.dirty = dirty;
        } else {
            self.dirty.append(&mut dirty);
        }
    }

    #[inline(always)]
    fn start_send(&mut self, ctx: &mut Ctx, id: ConnId) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if conn.state == State::Closed || conn.tx_pending.is_empty() {
            return;
        }
        let Some(mut buf) = conn.tx_spare.take() else {
            return; // in flight; its completion sends the rest
        };
        std::mem::swap(&mut buf, &mut conn.tx_pending);
        conn.tx_inflight = buf.len();
        let token = Token::Send(id).encode();
        match ctx
            .ring
            .send_on(conn.stream.as_raw_fd(), conn.fixed, buf, token)
        {
            Ok(()) => conn.ops += 1,
            Err(e) => {
                tracing::warn!(conn = id.0, error = %e, "cannot start send");
                conn.tx_spare = Some(Vec::new());
                conn.tx_inflight = 0;
                self.close(ctx, id, "send not started");
            }
        }
    }

    /// Sends `id`'s queued bytes with send(2), without waiting, and takes it off the
    /// dirty list; what the socket does not take at once goes through the ring
    /// ([`Tcp::start_send`]). Whatever follows the common case (everything sent) is out
    /// of line and called last, so that the common case needs no stack frame.
    #[inline(always)]
    fn send_direct(&mut self, ctx: &mut Ctx, id: ConnId) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        conn.dirty = false;
        if conn.state == State::Closed || conn.tx_pending.is_empty() || conn.tx_spare.is_none() {
            // Nothing to send, or a send in flight, whose completion sends the rest.
            return;
        }
        let len = conn.tx_pending.len();
        let sent = match socket::send_now(conn.stream.as_raw_fd(), &conn.tx_pending) {
            Sent::Bytes(n) => n.min(len),
            Sent::NoRoom => return self.send_rest(ctx, id, 0),
            Sent::Failed(e) => return self.send_failed(ctx, id, e),
        };
        self.unsent -= sent;
        if sent < len {
            return self.send_rest(ctx, id, sent);
        }
        conn.tx_pending.clear();
        if conn.tx_pending.capacity() > MAX_UNSENT / 16 || conn.state == State::Draining {
            return self.sent_all(ctx, id);
        }
        if conn.held.is_some() {
            self.resume_recv(ctx, id);
        }
    }

    /// [`Tcp::send_direct`] sent `sent` bytes of `id`'s queue, not all: the rest goes
    /// through the ring.
    #[cold]
    #[inline(never)]
    fn send_rest(&mut self, ctx: &mut Ctx, id: ConnId, sent: usize) {
        if sent > 0
            && let Some(conn) = self.conns.get_mut(&id)
        {
            conn.tx_pending.drain(..sent);
        }
        self.start_send(ctx, id);
    }

    /// [`Tcp::send_direct`]'s send(2) failed.
    #[cold]
    #[inline(never)]
    fn send_failed(&mut self, ctx: &mut Ctx, id: ConnId, e: io::Error) {
        tracing::debug!(conn = id.0, error = %e, "send failed");
        self.close(ctx, id, "send failed");
    }

    /// [`Tcp::send_direct`] sent all of `id`'s queue, which had grown large or was
    /// the last of a connection the registrar closed.
    #[cold]
    #[inline(never)]
    fn sent_all(&mut self, ctx: &mut Ctx, id: ConnId) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if conn.tx_pending.capacity() > MAX_UNSENT / 16 {
            conn.tx_pending = Vec::new();
        }
        if conn.state == State::Draining {
            tracing::debug!(conn = id.0, "closed TCP connection drained");
            self.shut(id);
            return;
        }
        if conn.held.is_some() {
            self.resume_recv(ctx, id);
        }
    }

    pub(super) fn on_send(&mut self, ctx: &mut Ctx, id: ConnId, c: Completion) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        conn.ops -= 1;
        let inflight = std::mem::take(&mut conn.tx_inflight);
        let OpBuf::Bytes(mut buf) = c.buf else {
            unreachable!("a send owns bytes")
        };
        if conn.state == State::Closed {
            // Its bytes left the count when it was shut.
            conn.tx_spare = Some(buf);
            self.release_if_idle(id);
            return;
        }
        self.unsent = self.unsent.saturating_sub(inflight);
        if c.result < 0 {
            conn.tx_spare = Some(buf);
            let e = io::Error::from_raw_os_error(-c.result);
            tracing::debug!(conn = id.0, error = %e, "send failed");
            self.close(ctx, id, "send failed");
            return;
        }
        let sent = (c.result as usize).min(buf.len());
        if sent < buf.len() {
            // A short send: the rest goes first, ahead of what was queued meanwhile.
            buf.drain(..sent);
            self.unsent += buf.len();
            buf.extend_from_slice(&conn.tx_pending);
            std::mem::swap(&mut buf, &mut conn.tx_pending);
        }
        buf.clear();
        if buf.capacity() > MAX_UNSENT / 16 {
            buf = Vec::new();
        }
        conn.tx_spare = Some(buf);
        if conn.state == State::Draining && conn.tx_pending.is_empty() {
            tracing::debug!(conn = id.0, "closed TCP connection drained");
            self.shut(id);
            return;
        }
        self.start_send(ctx, id);
        self.resume_recv(ctx, id);
    }

    /// Closes a connection: the registrar forgets it now (its PEs are removed, RFC 5352
    /// §3.5), the socket once no operation uses its buffers any more.
    pub(super) fn close(&mut self, ctx: &mut Ctx, id: ConnId, why: &'static str) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        match conn.state {
            State::Closed => return,
            State::Open => {
                if tls::told_up(conn) {
                    ctx.conn_down(id);
                }
            }
            // The registrar was told when it closed the connection.
            State::Draining => {}
        }
        tracing::debug!(conn = id.0, why, "TCP connection closed");
        self.shut(id);
    }

    /// The registrar closes `id` ([`rserpool::registrar::Transmit::Close`]): it is told
    /// the connection is down now; what is queued still goes out (for up to
    /// [`DRAIN_GRACE`]), then the socket is shut. Returns false if `id` is not a TCP
    /// connection of this shard.
    pub(super) fn close_gracefully(&mut self, ctx: &mut Ctx, id: ConnId) -> bool {
        let Some(conn) = self.conns.get_mut(&id) else {
            return false;
        };
        if conn.state != State::Open {
            return true;
        }
        ctx.conn_down(id);
        if let Some(session) = conn.tls.as_deref_mut() {
            let n = appended(&mut conn.tx_pending, |p| session.close_notify(p));
            conn.queued(id, n, &mut self.unsent, &mut self.dirty);
        }
        if conn.tx_inflight == 0 && conn.tx_pending.is_empty() {
            tracing::debug!(conn = id.0, "TCP connection closed by the registrar");
            self.shut(id);
        } else {
            conn.state = State::Draining;
            self.draining.push_back((ctx.now + DRAIN_GRACE, id));
            self.refresh_due();
        }
        true
    }

    /// Shuts the socket down (completing the pending recv, and any send, so the buffers
    /// come back) and forgets it once they have.
    fn shut(&mut self, id: ConnId) {
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.state = State::Closed;
            let _ = conn.stream.shutdown(Shutdown::Both);
            // Nothing more is sent: what was queued is freed now, and what is in
            // flight leaves the count (its buffer comes back with its completion).
            self.unsent = self.unsent.saturating_sub(conn.unsent());
            conn.tx_inflight = 0;
            self.freed += conn.tx_pending.capacity();
            conn.tx_pending = Vec::new();
            if let Some(rx) = &mut conn.rx {
                self.freed += rx.capacity();
                *rx = Vec::new();
            }
        }
        self.release_if_idle(id);
    }

    fn release_if_idle(&mut self, id: ConnId) {
        if self
            .conns
            .get(&id)
            .is_some_and(|c| c.state == State::Closed && c.ops == 0)
        {
            let Some(conn) = self.conns.remove(&id) else {
                return;
            };
            if let Some(source) = conn.source {
                self.limits.release(source);
            }
            self.freed += conn.tx_spare.as_ref().map_or(0, Vec::capacity)
                + conn.rx.as_ref().map_or(0, Vec::capacity);
            self.released.push((id, conn.fixed));
        }
    }

    /// Whether a connection was forgotten since the last [`Tcp::take_released`].
    pub(super) fn has_released(&self) -> bool {
        !self.released.is_empty()
    }

    /// Connections forgotten since the last call, whose ids may be reused
    /// ([`Ctx::release_conn`]), with their registered files to empty.
    pub(super) fn take_released(&mut self) -> impl Iterator<Item = (ConnId, Option<u32>)> + '_ {
        self.released.drain(..)
    }

    /// Shutdown: every socket stops; the ring's cancel returns the buffers.
    pub(super) fn close_all(&mut self) {
        for conn in self.conns.values_mut() {
            conn.state = State::Closed;
            let _ = conn.stream.shutdown(Shutdown::Both);
        }
        for c in self.connecting.values_mut() {
            c.cancelled = true;
        }
    }
}

/// Hands every whole message at the start of `data` to `handle`, in order. Returns the
/// bytes they took and what the first message not yet whole needs ([`Frame::Need`]),
/// or the Message Length that breaks the framing.
fn frames(data: &[u8], handle: impl FnMut(&[u8])) -> Result<(usize, usize), u16> {
    frames_within(data, &mut { u32::MAX }, handle)
}

/// [`frames`] for at most `*budget` messages, counted off it: when the budget runs out
/// before the whole messages do, the need returned is 0.
fn frames_within(
    data: &[u8],
    budget: &mut u32,
    mut handle: impl FnMut(&[u8]),
) -> Result<(usize, usize), u16> {
    let mut at = 0;
    loop {
        match framing::next(&data[at..]) {
            Frame::Whole(_) if *budget == 0 => return Ok((at, 0)),
            Frame::Whole(n) => {
                *budget -= 1;
                handle(&data[at..at + n]);
                at += n;
            }
            Frame::Need(n) => return Ok((at, n)),
            Frame::Broken(len) => return Err(len),
        }
    }
}
