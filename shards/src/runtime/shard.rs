//! One shard: a thread, its ring, its [`Registrar`], its sockets, its end of the mesh.
//!
//! Each loop turn takes the time once (from the CPU's counter between real readings of
//! the clock: [`ServiceClock::turn_start`]), handles the completions and the mesh
//! messages that are ready (a bounded number of each), fires due timers, drains every
//! output of the registrar into sends and mesh queues, and then sleeps in the ring until
//! a completion, the next deadline, or a wake-up from another shard.

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rserpool::registrar::{ConnId, ConnInfo, Protocol, Registrar, Transmit, Transport};

use super::clock::ServiceClock;
use super::dial::{Attempt, Dials, Queued};
use super::limits::Limits;
use super::log;
use super::mesh::{Port, Signal};
use super::reload::Posted;
use super::scrape;
use super::sctp::{self, Sctp};
use super::tcp::Tcp;
use super::udp::{Udp, UdpSockets};
use crate::net::ring::{Completion, IoMode, OpBuf, Ring};

/// Completions handled per turn before timers and outputs get their turn.
const MAX_COMPLETIONS: usize = 1024;
/// A deadline further than this from the turn's start gets its timer measured from the
/// turn's start; a nearer one reads the clock again.
const CLOCK_SLACK: Duration = Duration::from_millis(20);

/// Busy polling: turns without input after which the shard yields its core once.
const BUSY_POLL_YIELD_AFTER: u32 = 1024;
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
    /// The connect of an outbound TCP connection.
    Connect(ConnId),
    PresenceSend,
    PresenceRecv,
    /// The kernel timer of the loop's next deadline, by its number ([`Armed`]).
    Timer(u32),
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
            Self::Connect(c) => (7, c.0),
            Self::PresenceSend => (8, 0),
            Self::PresenceRecv => (9, 0),
            Self::Timer(n) => (10, u64::from(n)),
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
            7 => Self::Connect(ConnId(value)),
            8 => Self::PresenceSend,
            9 => Self::PresenceRecv,
            10 => Self::Timer(value as u32),
            _ => return None,
        })
    }
}

/// What the transports share: the ring, the registrar, the turn's clock and the
/// outbound connections being opened.
#[derive(Debug)]
pub(super) struct Ctx {
    pub(super) ring: Ring,
    pub(super) registrar: Registrar,
    /// The turn's start ([`ServiceClock::turn_start`]).
    pub(super) now: Instant,
    /// The service-time clock read together with `now` ([`ServiceClock::ticks`]).
    pub(super) ticks: u64,
    pub(super) dials: Dials,
    /// The connection limits, shared by every shard.
    pub(super) limits: Arc<Limits>,
    /// Generation of every connection slot ([`ConnId::new`]) and the free slots.
    generations: Vec<u32>,
    free_slots: Vec<u32>,
    /// What the registrar was told, for the tests of this module's I/O.
    #[cfg(test)]
    pub(super) told: Vec<Told>,
}

/// One input of the registrar (tests only).
#[cfg(test)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Told {
    Up(ConnId, ConnInfo),
    Down(ConnId),
    Enrp(ConnId, Vec<u8>),
    Multicast(SocketAddr, Vec<u8>),
}

impl Ctx {
    /// A new connection id, below [`ConnId::OUTBOUND`] (where the registrar's own ids
    /// start): a free slot, so that tables can be indexed by [`ConnId::slot`], and the
    /// slot's next generation, so that the id differs from every earlier one of the
    /// slot (until the generation wraps after 2²⁴ reuses).
    pub(super) fn conn_id(&mut self) -> ConnId {
        let slot = match self.free_slots.pop() {
            Some(s) => s,
            None => {
                self.generations.push(1);
                (self.generations.len() - 1) as u32
            }
        };
        ConnId::new(slot, self.generations[slot as usize])
    }

    /// The runtime has forgotten `conn` (and told the registrar it is down): its slot
    /// may be reused, under the next generation. Releasing an id twice, or one that is
    /// not the slot's current one, does nothing; the registrar's own ids are not the
    /// runtime's to free.
    pub(super) fn release_conn(&mut self, conn: ConnId) {
        if conn.is_outbound() {
            return;
        }
        let slot = conn.slot();
        let Some(generation) = self.generations.get_mut(slot) else {
            return;
        };
        if ConnId::new(slot as u32, *generation) == conn {
            let next = ConnId::new(slot as u32, generation.wrapping_add(1));
            // Generation 0 is skipped, so that no id is 0.
            *generation = ((next.0 >> ConnId::SLOT_BITS) as u32).max(1);
            self.free_slots.push(slot as u32);
        }
    }

    pub(super) fn conn_up(&mut self, conn: ConnId, info: ConnInfo) {
        #[cfg(test)]
        self.told.push(Told::Up(conn, info.clone()));
        self.registrar.handle_conn_up(self.now, conn, info);
    }

    pub(super) fn conn_down(&mut self, conn: ConnId) {
        #[cfg(test)]
        self.told.push(Told::Down(conn));
        self.registrar.handle_conn_down(self.now, conn);
    }

    /// One ENRP message received on `conn`.
    pub(super) fn enrp(&mut self, conn: ConnId, message: &[u8]) {
        #[cfg(test)]
        self.told.push(Told::Enrp(conn, message.to_vec()));
        self.registrar.handle_enrp(self.now, conn, message);
    }

    /// One datagram received on the ENRP multicast group.
    pub(super) fn enrp_multicast(&mut self, from: SocketAddr, message: &[u8]) {
        #[cfg(test)]
        self.told.push(Told::Multicast(from, message.to_vec()));
        self.registrar
            .handle_enrp_multicast(self.now, from, message);
    }
}

/// A shard's sockets, bound on the starting thread, each listener with the protocol
/// it serves.
#[derive(Debug, Default)]
pub(super) struct Sockets {
    pub(super) tcp: Vec<(TcpListener, Protocol)>,
    /// `tls://` listeners, with the credentials they serve.
    pub(super) tls: Vec<(TcpListener, Protocol, Arc<crate::tls::TlsServer>)>,
    /// Credentials for peers dialled over TLS.
    pub(super) tls_dial: Option<Arc<crate::tls::TlsServer>>,
    pub(super) sctp: Vec<(OwnedFd, Protocol)>,
    /// Shard 0's multicast sockets.
    pub(super) udp: UdpSockets,
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
    udp: Udp,
    signals: Arc<[Signal]>,
    stop: Arc<AtomicBool>,
    /// Whether this turn had no input at all (no completion, no mesh message).
    idle: bool,
    /// Whether a completion other than a finished send was handled since this was
    /// last cleared (see [`Shard::settle_sends`]).
    input: bool,
    /// The registrar's next timer as of the last wait that asked
    /// ([`Shard::deadline_wait`]).
    next_timer: Option<Instant>,
    /// A deadline may have passed (the loop's timer fired, or one was due when the
    /// loop last went to wait): the next turn checks the registrar's timers and the
    /// TCP side's deadlines. Every turn in busy-poll mode, which arms no timer.
    due: bool,
    /// Busy polling: turns in a row without input.
    idle_turns: u32,
    turns: u32,
    /// A metrics request was seen waiting when the shard was about to sleep.
    scrape_due: bool,
    /// [`Signal::scrapes`] as of the last time the scrape queue was emptied.
    scrapes_seen: u64,
    /// Service times of direct answers ([`ServiceClock`]).
    clock: ServiceClock,
    /// The turn start (`ctx.now`, `ctx.ticks`) of the first direct answer not yet
    /// timed, if it was written outside the turn that times it (see
    /// [`Shard::settle_sends`]).
    unclocked_since: Option<(Instant, u64)>,
    /// The kernel timer that ends the loop's wait by its next deadline, while pending
    /// ([`Shard::arm_timer`]).
    timer: Option<Armed>,
    /// Kernel timers armed so far (wrapping): each one's number.
    timers: u32,
    /// Registrar settings posted by a reload, and the generation last taken.
    posted: Arc<Posted>,
    reloaded: u64,
}

/// The kernel timer pending for the loop's wait ([`Shard::arm_timer`]).
#[derive(Clone, Copy, Debug)]
struct Armed {
    /// The deadline it was armed for.
    at: Instant,
    /// Its operation's number, to remove it ([`Ring::cancel_op`]).
    op: u32,
    /// Its number in its token ([`Token::Timer`]).
    number: u32,
}

impl Shard {
    /// Builds the shard and arms its first operations (wake-up read, accepts, SCTP and
    /// multicast receives); fails if the ring cannot be set up.
    // Each argument is one thing the starting thread hands over; bundling them would
    // only rename the list.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        index: usize,
        registrar: Registrar,
        sockets: Sockets,
        mesh: Port,
        scrape: crossbeam::channel::Receiver<scrape::Request>,
        signals: Arc<[Signal]>,
        stop: Arc<AtomicBool>,
        io_mode: IoMode,
        limits: Arc<Limits>,
        posted: Arc<Posted>,
    ) -> std::io::Result<Self> {
        let mut ctx = Ctx {
            ring: Ring::with_mode(io_mode)?,
            registrar,
            now: Instant::now(),
            ticks: 0,
            dials: Dials::default(),
            limits: limits.clone(),
            generations: Vec::new(),
            free_slots: Vec::new(),
            #[cfg(test)]
            told: Vec::new(),
        };
        let mut tcp = Tcp::new(sockets.tcp, limits);
        tcp.listen_tls(sockets.tls, sockets.tls_dial);
        let mut sctp = Sctp::new(sockets.sctp);
        let mut udp = Udp::new(sockets.udp);
        ctx.ring.read(
            signals[index].eventfd().raw_fd(),
            Vec::with_capacity(8),
            Token::Wake.encode(),
        )?;
        tcp.arm(&mut ctx)?;
        sctp.arm(&mut ctx)?;
        udp.arm(&mut ctx)?;
        Ok(Self {
            index,
            ctx,
            mesh,
            scrape,
            tcp,
            sctp,
            udp,
            signals,
            stop,
            idle: false,
            input: false,
            next_timer: None,
            due: false,
            idle_turns: 0,
            turns: 0,
            scrape_due: false,
            scrapes_seen: 0,
            clock: ServiceClock::new(Instant::now()),
            unclocked_since: None,
            timer: None,
            timers: 0,
            posted,
            reloaded: 0,
        })
    }

    pub(super) fn run(mut self) {
        // Starts the registrar's own timers (announces).
        self.ctx.now = Instant::now();
        self.ctx.registrar.handle_timeout(self.ctx.now);
        loop {
            (self.ctx.now, self.ctx.ticks) = self.clock.turn_start();
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
        if self.posted.newer_than(self.reloaded) {
            self.reload();
        }
        // Connections that ran out of their budget last turn go first.
        self.tcp.unpark(&mut self.ctx);
        let mut busy = self.complete();

        let Self { ctx, mesh, .. } = self;
        let mut messages = 0;
        busy |= mesh.recv(MAX_MESH, |msg| {
            messages += 1;
            ctx.registrar.handle_shard(ctx.now, msg);
        });
        self.idle &= messages == 0;

        // Deadlines are checked when one may have passed ([`Shard::due`]); most turns
        // (a request and its answer) come before any.
        if std::mem::take(&mut self.due) {
            self.on_deadlines(busy);
        }
        self.drain_outputs();
        self.flush();
        if self.ctx.registrar.has_unclocked() {
            // Service time of the answers written straight into send buffers ends
            // now, with their sends started; it began with the turn that read the
            // first of them.
            let (at, ticks) = self
                .unclocked_since
                .take()
                .unwrap_or((self.ctx.now, self.ctx.ticks));
            let took = self.clock.nanos_since(ticks, at);
            self.ctx.registrar.handle_written_after_nanos(took);
        }
        self.release_closed();
        // Every 64th turn (and before the shard sleeps, see `wait`): metrics can wait
        // a few turns, and looking costs a few atomic loads.
        self.turns = self.turns.wrapping_add(1);
        if (self.turns.is_multiple_of(64) || std::mem::take(&mut self.scrape_due))
            && self.scrape_waiting()
        {
            self.answer_scrapes();
        }
        // Parked messages want another turn, but are not input left unread: the
        // connections' deadlines above were not held up by them.
        busy || self.tcp.has_parked()
    }

    /// The registrar's timers and the TCP side's deadlines that passed. The registrar's
    /// next timer is the one the last wait asked for: one set since (by input handled
    /// before sleeping) is seen when this turn ends, at worst a turn late.
    #[inline(never)]
    fn on_deadlines(&mut self, busy: bool) {
        if self.next_timer.is_some_and(|t| t <= self.ctx.now) {
            self.ctx.registrar.handle_timeout(self.ctx.now);
        }
        self.tcp.resume(&mut self.ctx, busy);
    }

    /// Applies the configuration posted last ([`Posted`]). Out of line, as the other
    /// rare parts of a turn: inlined, their locals would grow every turn's stack frame.
    #[cold]
    #[inline(never)]
    fn reload(&mut self) {
        if let Some((generation, r, done)) = self.posted.since(self.reloaded) {
            self.reloaded = generation;
            self.ctx.registrar.reload(&r);
            let _ = done.send(self.index);
        }
    }

    /// Answers the metrics requests waiting in the scrape queue.
    #[cold]
    #[inline(never)]
    fn answer_scrapes(&mut self) {
        // Requests queued after this load are seen (at worst as a spurious turn) by
        // the next look.
        self.scrapes_seen = self.signals[self.index].scrapes();
        while let Ok(req) = self.scrape.try_recv() {
            req.answer(self.index as u16, &self.ctx.registrar);
        }
    }

    /// Handles the completions that are ready (up to [`MAX_COMPLETIONS`]) and starts
    /// the next attempt of the connects that failed; returns whether more are ready.
    #[inline(always)]
    fn complete(&mut self) -> bool {
        let mut n = 0;
        while n < MAX_COMPLETIONS
            && let Some(c) = self.ctx.ring.next_completion()
        {
            n += 1;
            if let Some(c) = c {
                self.dispatch(c);
            }
        }
        self.idle = n == 0;
        self.redial();
        n == MAX_COMPLETIONS
    }

    /// Gives back the slots (and registered files) of connections that closed.
    #[inline]
    fn release_closed(&mut self) {
        if self.tcp.has_released() {
            self.release_closed_now();
        }
    }

    fn release_closed_now(&mut self) {
        for (id, fixed) in self.tcp.take_released() {
            if let Some(f) = fixed {
                self.ctx.ring.unregister_fixed(f);
            }
            self.ctx.release_conn(id);
        }
    }

    /// Starts the sends that queued messages wait for.
    #[inline]
    fn flush(&mut self) {
        if self.sctp.has_sockets() {
            return self.flush_both();
        }
        // TCP alone: its flush comes last, so that its rare paths are calls in tail
        // position and its common one (one connection, everything sent at once)
        // needs no stack frame.
        self.tcp.flush(&mut self.ctx);
    }

    /// [`Shard::flush`] with SCTP sockets too.
    #[inline(never)]
    fn flush_both(&mut self) {
        self.tcp.flush(&mut self.ctx);
        self.sctp.flush(&mut self.ctx);
    }

    fn dispatch(&mut self, c: Completion) {
        let token = Token::decode(c.token);
        if let Some(Token::Recv(id)) = token {
            // The completion that brings requests, handled apart from the rest: with
            // them inlined alongside, it would share their registers and stack frame.
            self.input = true;
            return self.tcp.on_recv(&mut self.ctx, id, c);
        }
        self.dispatch_other(token, c);
    }

    /// [`Shard::dispatch`] for every completion but a TCP receive's.
    #[inline(never)]
    fn dispatch_other(&mut self, token: Option<Token>, c: Completion) {
        let ctx = &mut self.ctx;
        self.input |= !matches!(token, Some(Token::Send(_) | Token::SctpSend(_))) || c.result < 0;
        match token {
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
            Some(Token::Connect(id)) => self.tcp.on_connect(ctx, id, c),
            Some(Token::Announce) => self.udp.on_announce_sent(&c),
            Some(Token::PresenceSend) => self.udp.on_presence_sent(&c),
            Some(Token::PresenceRecv) => self.udp.on_presence_recv(ctx, c),
            // A removed timer's completion (or one that fired before its removal) is
            // not the pending one's.
            Some(Token::Timer(n)) => {
                if self.timer.is_some_and(|t| t.number == n) {
                    self.timer = None;
                }
                self.due = true;
            }
            None => tracing::error!(token = c.token, "completion with an unknown token"),
        }
    }

    /// Moves everything the registrar produced to sockets, the mesh and the log.
    #[inline]
    fn drain_outputs(&mut self) {
        if self.ctx.registrar.has_output() {
            self.drain_outputs_now();
        }
    }

    fn drain_outputs_now(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(t) = self.ctx.registrar.poll_transmit() {
                progressed = true;
                self.transmit(t);
            }
            while let Some((to, msg)) = self.ctx.registrar.poll_shard() {
                progressed = true;
                self.mesh.send(to, msg);
            }
            while let Some(e) = self.ctx.registrar.poll_event() {
                progressed = true;
                log::event(self.index, &e);
            }
            // Closing a slow consumer above may have produced more.
            if !progressed {
                break;
            }
        }
    }

    fn transmit(&mut self, t: Transmit) {
        match t {
            Transmit::Asap {
                conn,
                payload,
                served,
            } => {
                self.send(conn, Protocol::Asap, payload);
                // Service time ends when the answer is queued on its socket.
                if let Some(served) = served {
                    self.ctx.registrar.handle_queued(Instant::now(), served);
                }
            }
            Transmit::Enrp { conn, payload } => self.send(conn, Protocol::Enrp, payload),
            Transmit::Connect {
                conn,
                protocol,
                transports,
                addrs,
                port,
            } => self.connect(conn, protocol, transports, addrs, port),
            Transmit::Close { conn } => self.close(conn),
            Transmit::Announce { payload } => self.udp.announce(&mut self.ctx, payload),
            Transmit::EnrpMulticast { payload } => self.udp.presence(&mut self.ctx, payload),
        }
    }

    /// Queues one message on `conn`, wherever it is: being opened, TCP, or SCTP.
    fn send(&mut self, conn: ConnId, protocol: Protocol, payload: Vec<u8>) {
        let ctx = &mut self.ctx;
        match ctx.dials.queue(conn, protocol, payload) {
            Queued::Waiting => {}
            Queued::Overflow => {
                tracing::info!(
                    conn = conn.0,
                    "too much waiting for a connection being opened; giving it up"
                );
                self.close(conn);
            }
            Queued::NotDialing(payload) => {
                if self.tcp.queue(ctx, conn, &payload) {
                    ctx.registrar.recycle(payload);
                } else {
                    self.sctp.queue(ctx, conn, sctp::ppid(protocol), payload);
                }
            }
        }
    }

    /// Starts opening a connection the registrar asked for ([`Transmit::Connect`]).
    fn connect(
        &mut self,
        conn: ConnId,
        protocol: Protocol,
        transports: Vec<Transport>,
        addrs: Vec<IpAddr>,
        port: u16,
    ) {
        if !conn.is_outbound()
            || self.ctx.dials.contains(conn)
            || self.tcp.has(conn)
            || self.sctp.has(conn)
        {
            tracing::warn!(
                conn = conn.0,
                "connect under an id that is not the registrar's or is in use; ignored"
            );
            return;
        }
        tracing::debug!(
            conn = conn.0,
            ?protocol,
            ?transports,
            ?addrs,
            port,
            "connecting"
        );
        self.ctx
            .dials
            .insert(conn, protocol, transports, addrs, port);
        self.next_attempt(conn);
    }

    /// Starts the next attempt of every dial whose attempt failed.
    fn redial(&mut self) {
        if !self.ctx.dials.has_failed() {
            return;
        }
        for conn in self.ctx.dials.take_failed() {
            self.next_attempt(conn);
        }
    }

    /// Starts `conn`'s next attempt; attempts that cannot start are skipped. With none
    /// left, the registrar hears that the connection is down.
    fn next_attempt(&mut self, conn: ConnId) {
        let Some(protocol) = self.ctx.dials.protocol(conn) else {
            return;
        };
        while let Some(attempt) = self.ctx.dials.next_attempt(conn) {
            let started = match &attempt {
                Attempt::Tcp(to) => self.tcp.connect(&mut self.ctx, conn, *to),
                Attempt::Sctp(_) if !self.sctp.serves(protocol) => {
                    tracing::debug!(
                        conn = conn.0,
                        ?protocol,
                        "no SCTP socket for this protocol; SCTP skipped"
                    );
                    continue;
                }
                Attempt::Sctp(to) => self.sctp.connect(conn, protocol, to),
                Attempt::Exhausted => {
                    tracing::debug!(conn = conn.0, "every transport and address failed");
                    self.ctx.dials.remove(conn);
                    self.ctx.conn_down(conn);
                    return;
                }
            };
            match started {
                Ok(()) => return,
                Err(e) => {
                    tracing::debug!(conn = conn.0, ?attempt, error = %e, "connect not started")
                }
            }
        }
    }

    /// Closes a connection the registrar is done with ([`Transmit::Close`]).
    fn close(&mut self, conn: ConnId) {
        let ctx = &mut self.ctx;
        if ctx.dials.contains(conn) {
            let trying = ctx.dials.trying(conn);
            ctx.dials.remove(conn);
            match trying {
                Some(Transport::Tcp) => self.tcp.cancel_connect(ctx, conn),
                Some(Transport::Sctp) => self.sctp.abort(ctx, conn, "closed while connecting"),
                None => {}
            }
            ctx.conn_down(conn);
        } else if !self.tcp.close_gracefully(ctx, conn) && !self.sctp.close(ctx, conn) {
            tracing::debug!(conn = conn.0, "close of an unknown connection");
        }
    }

    fn wait(&mut self, busy: bool, overflow_waiting: bool) {
        if self.ctx.ring.mode() == IoMode::BusyPoll {
            // No timer: every turn looks at the deadlines.
            self.next_timer = self.ctx.registrar.poll_timeout();
            self.due = true;
            // Never sleep: hand what was pushed to the SQPOLL thread (a system call only
            // if it fell asleep) and look again.
            if let Err(e) = self.ctx.ring.submit() {
                tracing::error!(error = %e, "io_uring submit failed");
            }
            // A long run of turns without input lets the other threads of this core
            // run (a system call, but only when there has been nothing to do).
            self.idle_turns = if self.idle { self.idle_turns + 1 } else { 0 };
            if self.idle_turns >= BUSY_POLL_YIELD_AFTER {
                self.idle_turns = 0;
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
            return;
        }
        let mut timeout = self.deadline_wait();
        if overflow_waiting {
            timeout = Some(timeout.map_or(OVERFLOW_RETRY, |t| t.min(OVERFLOW_RETRY)));
        }
        if busy {
            timeout = Some(Duration::ZERO);
        }
        let sleeping = timeout != Some(Duration::ZERO);
        if sleeping && self.settle_sends() {
            // Something came in: a full turn first.
            return;
        }
        let signal = &self.signals[self.index];
        if sleeping {
            signal.park();
            self.scrape_due = self.scrape_waiting();
            if self.mesh.has_incoming() || self.scrape_due || self.stop.load(Ordering::SeqCst) {
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

    /// The wait's limit for the next deadline ([`Shard::arm_timer`]). While neither
    /// the registrar's next timer nor the TCP side's deadline moved since the last
    /// wait, whose timer is still pending, that timer still ends the wait in time.
    #[inline]
    fn deadline_wait(&mut self) -> Option<Duration> {
        if self.timer.is_some()
            && self.ctx.registrar.timeout_unchanged()
            && !self.tcp.deadline_moved()
        {
            return None;
        }
        self.deadline_wait_now()
    }

    /// [`Shard::deadline_wait`] looking at the deadlines again. A wait that a
    /// deadline, not a completion, may end (one already due, or no timer) makes the
    /// next turn check them.
    #[inline(never)]
    fn deadline_wait_now(&mut self) -> Option<Duration> {
        self.next_timer = self.ctx.registrar.poll_timeout();
        let deadline = match (self.next_timer, self.tcp.take_deadline()) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        let limit = self.arm_timer(deadline);
        self.due |= limit.is_some();
        limit
    }

    /// Makes sure the wait ends by deadline `d`: a kernel timer pending for `d` or
    /// earlier is left alone (most turns: the connections' sweep and the registrar's
    /// next timer stay the deadline from turn to turn, and a wait with no time limit
    /// needs no timespec); otherwise one is armed for `d`, in place of a later one. A
    /// timer that fires before the deadline it was armed for (one armed when the
    /// deadline was nearer) ends a wait early, and the next wait arms another. Returns
    /// the wait's limit: none while a timer is pending; zero if `d` is due.
    #[inline]
    fn arm_timer(&mut self, d: Instant) -> Option<Duration> {
        if self.timer.is_some_and(|t| t.at <= d) {
            return None;
        }
        self.arm_timer_now(d)
    }

    /// [`Shard::arm_timer`] arming the timer. Measured from the turn's start, a far
    /// deadline's timer is late by the turn's own time (microseconds); only a near one
    /// needs the clock read again.
    #[inline(never)]
    fn arm_timer_now(&mut self, d: Instant) -> Option<Duration> {
        let mut left = d.saturating_duration_since(self.ctx.now);
        if left <= CLOCK_SLACK {
            left = d.saturating_duration_since(Instant::now());
        }
        if left.is_zero() {
            return Some(Duration::ZERO);
        }
        if let Some(t) = self.timer.take()
            && let Err(e) = self.ctx.ring.cancel_op(t.op)
        {
            // It fires at its time: one spurious turn.
            tracing::error!(error = %e, "cannot remove the loop's timer");
        }
        self.timers = self.timers.wrapping_add(1);
        match self
            .ctx
            .ring
            .timeout(left, Token::Timer(self.timers).encode())
        {
            Ok(op) => {
                self.timer = Some(Armed {
                    at: d,
                    op,
                    number: self.timers,
                });
                None
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot arm the loop's timer; waiting with a limit");
                Some(left)
            }
        }
    }

    /// Whether a metrics request may wait in the scrape queue.
    #[inline]
    fn scrape_waiting(&self) -> bool {
        self.signals[self.index].scrapes() != self.scrapes_seen
    }

    /// Before sleeping: submits what this turn pushed and handles the sends that
    /// finished at once (a send to a socket with room completes during the submission),
    /// so that an answer costs one turn rather than one for the request and one for
    /// its send's completion. Returns whether anything but finished sends came in,
    /// which wants a full turn (timers, the registrar's outputs) before sleeping.
    fn settle_sends(&mut self) -> bool {
        if !self.ctx.ring.unsubmitted() {
            return false;
        }
        if let Err(e) = self.ctx.ring.submit() {
            tracing::error!(error = %e, "io_uring submit failed");
            return false;
        }
        if !self.ctx.ring.ready() {
            return false;
        }
        self.input = false;
        let unclocked = self.ctx.registrar.has_unclocked();
        self.complete();
        if !unclocked && self.ctx.registrar.has_unclocked() {
            // Answered before the turn that times them: from this turn's start.
            self.unclocked_since = Some((self.ctx.now, self.ctx.ticks));
        }
        if self.input {
            return true;
        }
        // What a send completion can start: the next send on its connection, the
        // release of a connection that drained.
        self.drain_outputs();
        self.flush();
        self.release_closed();
        false
    }

    /// Stops every socket, cancels what is pending and waits (briefly) for the buffers.
    fn shutdown(mut self) {
        self.tcp.close_all();
        self.ctx.dials.clear();
        if let Err(e) = self.ctx.ring.cancel_all() {
            tracing::warn!(error = %e, "cannot cancel pending operations");
        }
        let end = Instant::now() + SHUTDOWN_GRACE;
        while self.ctx.ring.live() > 0 && Instant::now() < end {
            let _ = self
                .ctx
                .ring
                .submit_and_wait(Some(Duration::from_millis(10)));
            while self.ctx.ring.next_completion().is_some() {}
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

#[cfg(test)]
mod tests;

#[cfg(test)]
mod token_tests {
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
            Token::Announce,
            Token::Connect(ConnId(ConnId::OUTBOUND + 5)),
            Token::PresenceSend,
            Token::PresenceRecv,
            Token::Timer(u32::MAX),
        ] {
            assert_eq!(Token::decode(t.encode()), Some(t));
        }
        assert_eq!(Token::decode(u64::MAX), None);
    }
}
