//! One shard: a thread, its ring, its [`Registrar`], its sockets, its end of the mesh.
//!
//! Each loop turn reads the clock once, handles the completions and the mesh messages
//! that are ready (a bounded number of each), fires due timers, drains every output of
//! the registrar into sends and mesh queues, and then sleeps in the ring until a
//! completion, the next deadline, or a wake-up from another shard.

use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rserpool::registrar::{ConnId, Event, Registrar, Transmit};

use super::mesh::{Port, Signal};
use super::scrape;
use super::sctp::Sctp;
use super::tcp::Tcp;
use crate::net::ring::{Completion, OpBuf, Ring};

/// Completions handled per turn before timers and outputs get their turn.
const MAX_COMPLETIONS: usize = 1024;
/// Mesh messages handled per turn.
const MAX_MESH: usize = 4096;
/// How long a shard with messages waiting for room in a full queue sleeps before it
/// retries (the receiver is busy, so it will have drained some by then).
const OVERFLOW_RETRY: Duration = Duration::from_millis(1);
/// How long shutdown waits for cancelled operations to hand their buffers back.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// What a completion belongs to, packed into its 64-bit token: the kind in the top
/// byte, a connection id or socket index below.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Token {
    Wake,
    Accept(usize),
    Recv(ConnId),
    Send(ConnId),
    SctpRecv(usize),
    SctpSend(usize),
    Announce,
}

const KIND_SHIFT: u32 = 56;
const VALUE_MASK: u64 = (1 << KIND_SHIFT) - 1;

impl Token {
    pub(super) fn encode(self) -> u64 {
        let (kind, value) = match self {
            Self::Wake => (0, 0),
            Self::Accept(i) => (1, i as u64),
            Self::Recv(c) => (2, c.0),
            Self::Send(c) => (3, c.0),
            Self::SctpRecv(i) => (4, i as u64),
            Self::SctpSend(i) => (5, i as u64),
            Self::Announce => (6, 0),
        };
        debug_assert!(value <= VALUE_MASK);
        (kind << KIND_SHIFT) | (value & VALUE_MASK)
    }

    fn decode(token: u64) -> Option<Self> {
        let value = token & VALUE_MASK;
        Some(match token >> KIND_SHIFT {
            0 => Self::Wake,
            1 => Self::Accept(value as usize),
            2 => Self::Recv(ConnId(value)),
            3 => Self::Send(ConnId(value)),
            4 => Self::SctpRecv(value as usize),
            5 => Self::SctpSend(value as usize),
            6 => Self::Announce,
            _ => return None,
        })
    }
}

/// What the transports share: the ring, the registrar and the turn's clock.
#[derive(Debug)]
pub(super) struct Ctx {
    pub(super) ring: Ring,
    pub(super) registrar: Registrar,
    pub(super) now: Instant,
    next_conn: u64,
}

impl Ctx {
    /// A new connection id, unique within the shard (never reused).
    pub(super) fn conn_id(&mut self) -> ConnId {
        self.next_conn += 1;
        ConnId(self.next_conn)
    }
}

/// A shard's sockets, bound on the starting thread.
#[derive(Debug, Default)]
pub(super) struct Sockets {
    pub(super) tcp: Vec<TcpListener>,
    pub(super) sctp: Vec<OwnedFd>,
    /// Shard 0's UDP socket for server announces, connected to the group.
    pub(super) announce: Option<std::net::UdpSocket>,
}

#[derive(Debug)]
pub(super) struct Shard {
    index: usize,
    ctx: Ctx,
    mesh: Port,
    /// Metrics requests, answered between turns (at most [`scrape::QUEUE`] wait).
    scrape: crossbeam::channel::Receiver<scrape::Request>,
    tcp: Tcp,
    sctp: Sctp,
    signals: Arc<[Signal]>,
    stop: Arc<AtomicBool>,
    completions: Vec<Completion>,
    announce: Option<std::net::UdpSocket>,
    /// An announce is in flight (at most one; a slower one is skipped, not queued).
    announcing: bool,
}

impl Shard {
    /// Builds the shard and arms its first operations (wake-up read, accepts, SCTP
    /// receives); fails if the ring cannot be set up.
    pub(super) fn new(
        index: usize,
        registrar: Registrar,
        sockets: Sockets,
        mesh: Port,
        scrape: crossbeam::channel::Receiver<scrape::Request>,
        signals: Arc<[Signal]>,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<Self> {
        let mut ctx = Ctx {
            ring: Ring::new()?,
            registrar,
            now: Instant::now(),
            next_conn: 0,
        };
        let announce = sockets.announce;
        let mut tcp = Tcp::new(sockets.tcp);
        let mut sctp = Sctp::new(sockets.sctp);
        ctx.ring.read(
            signals[index].eventfd().raw_fd(),
            Vec::with_capacity(8),
            Token::Wake.encode(),
        )?;
        tcp.arm(&mut ctx)?;
        sctp.arm(&mut ctx)?;
        Ok(Self {
            index,
            ctx,
            mesh,
            scrape,
            tcp,
            sctp,
            signals,
            stop,
            completions: Vec::with_capacity(MAX_COMPLETIONS),
            announce,
            announcing: false,
        })
    }

    pub(super) fn run(mut self) {
        // Starts the registrar's own timers (announces).
        self.ctx.now = Instant::now();
        self.ctx.registrar.handle_timeout(self.ctx.now);
        loop {
            self.ctx.now = Instant::now();
            if self.stop.load(Ordering::Acquire) {
                break;
            }
            let busy = self.turn();
            let waiting = self.mesh.flush();
            self.wait(busy, waiting);
        }
        self.shutdown();
    }

    /// One turn; returns whether input was left over for the next.
    fn turn(&mut self) -> bool {
        let mut busy = self
            .ctx
            .ring
            .complete(MAX_COMPLETIONS, &mut self.completions)
            == MAX_COMPLETIONS;
        let mut completions = std::mem::take(&mut self.completions);
        for c in completions.drain(..) {
            self.dispatch(c);
        }
        self.completions = completions;

        let Self { ctx, mesh, .. } = self;
        busy |= mesh.recv(MAX_MESH, |msg| ctx.registrar.handle_shard(ctx.now, msg));

        if ctx.registrar.poll_timeout().is_some_and(|t| t <= ctx.now) {
            ctx.registrar.handle_timeout(ctx.now);
        }
        self.tcp.resume(&mut self.ctx);
        self.drain_outputs();
        self.tcp.flush(&mut self.ctx);
        self.sctp.flush(&mut self.ctx);
        // Once per turn, not per message: an empty queue costs one atomic load.
        while let Ok(req) = self.scrape.try_recv() {
            req.answer(self.index as u16, &self.ctx.registrar);
        }
        busy
    }

    fn dispatch(&mut self, c: Completion) {
        let ctx = &mut self.ctx;
        match Token::decode(c.token) {
            Some(Token::Wake) => {
                // Another shard queued messages (or shutdown); they are read this turn.
                if let OpBuf::Bytes(mut buf) = c.buf {
                    buf.clear();
                    let fd = self.signals[self.index].eventfd().raw_fd();
                    if c.result != -libc::ECANCELED
                        && let Err(e) = ctx.ring.read(fd, buf, Token::Wake.encode())
                    {
                        tracing::error!(error = %e, "cannot re-arm the wake-up read");
                    }
                }
            }
            Some(Token::Accept(i)) => self.tcp.on_accept(ctx, i, c),
            Some(Token::Recv(id)) => self.tcp.on_recv(ctx, id, c),
            Some(Token::Send(id)) => self.tcp.on_send(ctx, id, c),
            Some(Token::SctpRecv(i)) => self.sctp.on_recv(ctx, i, c),
            Some(Token::SctpSend(i)) => self.sctp.on_send(ctx, i, c),
            Some(Token::Announce) => {
                self.announcing = false;
                if c.result < 0 && c.result != -libc::ECANCELED {
                    let e = std::io::Error::from_raw_os_error(-c.result);
                    tracing::debug!(error = %e, "server announce not sent");
                }
            }
            None => tracing::error!(token = c.token, "completion with an unknown token"),
        }
    }

    /// Moves everything the registrar produced to sockets, the mesh and the log.
    fn drain_outputs(&mut self) {
        let ctx = &mut self.ctx;
        loop {
            let mut progressed = false;
            while let Some(t) = ctx.registrar.poll_transmit() {
                progressed = true;
                match t {
                    Transmit::Asap {
                        conn,
                        payload,
                        served,
                    } => {
                        if !self.tcp.queue(ctx, conn, &payload) {
                            self.sctp.queue(ctx, conn, payload);
                        }
                        // Service time ends when the answer is queued on its socket.
                        if let Some(served) = served {
                            ctx.registrar.handle_queued(Instant::now(), served);
                        }
                    }
                    Transmit::Enrp { .. }
                    | Transmit::Connect { .. }
                    | Transmit::Close { .. }
                    | Transmit::EnrpMulticast { .. } => {
                        tracing::debug!("ENRP transmits are not served by this runtime yet");
                    }
                    Transmit::Announce { payload } => {
                        if let Some(udp) = &self.announce
                            && !self.announcing
                        {
                            use std::os::fd::AsRawFd;
                            match ctx
                                .ring
                                .send(udp.as_raw_fd(), payload, Token::Announce.encode())
                            {
                                Ok(()) => self.announcing = true,
                                Err(e) => tracing::debug!(error = %e, "server announce not queued"),
                            }
                        }
                    }
                }
            }
            while let Some((to, msg)) = ctx.registrar.poll_shard() {
                progressed = true;
                self.mesh.send(to, msg);
            }
            while let Some(e) = ctx.registrar.poll_event() {
                progressed = true;
                log_event(self.index, &e);
            }
            // Closing a slow consumer above may have produced more.
            if !progressed {
                break;
            }
        }
    }

    fn wait(&mut self, busy: bool, overflow_waiting: bool) {
        let deadline = match (self.ctx.registrar.poll_timeout(), self.tcp.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if overflow_waiting {
            timeout = Some(timeout.map_or(OVERFLOW_RETRY, |t| t.min(OVERFLOW_RETRY)));
        }
        if busy {
            timeout = Some(Duration::ZERO);
        }
        let signal = &self.signals[self.index];
        let sleeping = timeout != Some(Duration::ZERO);
        if sleeping {
            signal.park();
            if self.mesh.has_incoming()
                || !self.scrape.is_empty()
                || self.stop.load(Ordering::SeqCst)
            {
                timeout = Some(Duration::ZERO);
            }
        }
        if let Err(e) = self.ctx.ring.submit_and_wait(timeout) {
            tracing::error!(error = %e, "io_uring wait failed");
        }
        if sleeping {
            signal.unpark();
        }
    }

    /// Stops every socket, cancels what is pending and waits (briefly) for the buffers.
    fn shutdown(mut self) {
        self.tcp.close_all();
        if let Err(e) = self.ctx.ring.cancel_all() {
            tracing::warn!(error = %e, "cannot cancel pending operations");
        }
        let end = Instant::now() + SHUTDOWN_GRACE;
        while self.ctx.ring.live() > 0 && Instant::now() < end {
            let _ = self
                .ctx
                .ring
                .submit_and_wait(Some(Duration::from_millis(10)));
            self.ctx.ring.complete(usize::MAX, &mut self.completions);
            self.completions.clear();
        }
        if self.ctx.ring.live() > 0 {
            tracing::warn!(
                pending = self.ctx.ring.live(),
                "operations still pending at shutdown; their buffers are leaked"
            );
        }
        tracing::debug!(shard = self.index, "shard stopped");
    }
}

fn log_event(shard: usize, e: &Event) {
    match e {
        Event::Registered { handle, id, conn } => {
            tracing::debug!(shard, %handle, id = id.0, conn = conn.0, "PE registered");
        }
        Event::RegistrationRejected { handle, id, cause } => {
            tracing::debug!(shard, %handle, id = id.0, %cause, "registration rejected");
        }
        Event::Removed { handle, id, reason } => {
            tracing::debug!(shard, %handle, id = id.0, ?reason, "PE removed");
        }
        Event::SpoofedDeregistration { conn, handle, id } => {
            tracing::warn!(shard, conn = conn.0, %handle, id = id.0, "deregistration from a connection that did not register the PE (RFC 5352 §2.2.2)");
        }
        Event::Malformed { conn, error } => {
            tracing::debug!(shard, conn = conn.0, ?error, "malformed ASAP message");
        }
        Event::Unexpected { conn, kind } => {
            tracing::debug!(shard, conn = conn.0, %kind, "unexpected ASAP message");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for t in [
            Token::Wake,
            Token::Accept(3),
            Token::Recv(ConnId(1 << 40)),
            Token::Send(ConnId(7)),
            Token::SctpRecv(0),
            Token::SctpSend(2),
        ] {
            assert_eq!(Token::decode(t.encode()), Some(t));
        }
        assert_eq!(Token::decode(u64::MAX), None);
    }
}
