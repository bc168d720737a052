//! One shard's SCTP side: one-to-many sockets (reference §2.4: RSPLIB's socket style),
//! each association a connection of the registrar. A socket serves one protocol: the
//! ASAP ones (PPID 11) on every shard, the ENRP ones (PPID 12) on shard 0; the
//! registrar's outbound associations start from the socket of their protocol.
//!
//! Per socket one multishot recvmsg is always armed: the kernel writes each message (or
//! piece of a longer one, or notification) into one of the ring's provided buffers
//! for SCTP ([`crate::net::ring::Ring::recvmsg_multi`]) and posts a completion, with
//! no submission per message. Where the kernel refuses that (before 6.0, or no
//! provided buffers), one plain recvmsg is pending instead, armed again after every
//! message. A one-to-many socket carries every association, so sends wait in one
//! FIFO; up to [`MAX_SENDS`] sendmsgs are in flight, each to a different association,
//! so that one submission carries the answers of a whole turn while each
//! association's messages still go out in order; a lone message, with nothing in
//! flight, goes out with a plain sendmsg(2) instead. An association whose queued bytes
//! pass the slow-consumer limit is aborted.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};

use rserpool::registrar::{ConnId, ConnInfo, Protocol, Transport};
use rserpool::wire::{PPID_ASAP, PPID_ENRP};

use super::conns::ConnTable;
use super::shard::{Ctx, Token};
use crate::net::ring::{Completion, IoMode, OpBuf};
use crate::net::sctp::{
    self, AssocId, AssocState, Notification, Received, RecvBuf, SCTP_ABORT, SCTP_EOF, SendBuf,
};
use crate::net::socket::Sent;

/// Receive buffer: one whole ASAP or ENRP message (16-bit length) fits; longer SCTP
/// messages arrive in pieces and are put together.
const RX_CAPACITY: usize = 65_536;
/// Associations ended by us whose last notification has not come yet, per socket; past
/// this many the set is cleared (their notifications normally come within seconds, so
/// only a kernel that never sends them would fill it).
const MAX_CLOSING: usize = 65_536;
/// Sendmsgs in flight per socket, at most one per association: io_uring may complete
/// two sends on one socket out of order (one that had to wait for room is retried
/// later), which must not reorder an association's messages.
const MAX_SENDS: usize = 32;
/// How far into its queue a socket looks for a message to an association with no
/// send in flight: a long backlog for one association costs this much per send, not
/// its length.
const SEND_SCAN: usize = 64;
/// Sent messages' buffers up to this size are kept for answers (a resolution answer
/// with a few PEs is a few hundred bytes).
const FREE_CAPACITY: usize = 4096;

/// The hasher of association ids, looked up several times per message: std's SipHash
/// costs tens of instructions per lookup, and its resistance to chosen keys buys
/// nothing here, since the kernel numbers associations (a peer cannot choose its id).
/// The keys are fixed for the same reason.
type AssocHasher = ahash::RandomState;

fn assoc_hasher() -> AssocHasher {
    ahash::RandomState::with_seeds(
        0x243f_6a88_85a3_08d3,
        0x1319_8a2e_0370_7344,
        0xa409_3822_299f_31d0,
        0x082e_fa98_ec4e_6c89,
    )
}

/// The SCTP payload protocol identifier of a protocol's messages.
pub(super) fn ppid(protocol: Protocol) -> u32 {
    match protocol {
        Protocol::Asap => PPID_ASAP,
        Protocol::Enrp => PPID_ENRP,
    }
}

#[derive(Debug)]
struct Assoc {
    conn: ConnId,
    /// Opened by the registrar and not up yet (COMM_UP not seen).
    connecting: bool,
    /// A message delivered in pieces (no MSG_EOR yet).
    partial: Vec<u8>,
    /// Bytes queued for sending to this association.
    queued: usize,
}

#[derive(Debug)]
struct Queued {
    assoc: AssocId,
    ppid: u32,
    flags: u16,
    data: Vec<u8>,
}

#[derive(Debug)]
struct Socket {
    fd: OwnedFd,
    protocol: Protocol,
    /// The bound port (this end's port of every association).
    port: u16,
    /// Dual-stack (an IPv6 socket also reaches IPv4 peers); an IPv4 one reaches only
    /// IPv4 addresses.
    ipv6: bool,
    /// `None` while the recvmsg owns it (a multishot one only uses its header).
    rx: Option<Box<RecvBuf>>,
    /// The recvmsg is multishot, into provided buffers; false after the kernel refused
    /// that (then single recvmsgs into `rx`).
    multi: bool,
    /// A notification delivered in pieces (no MSG_EOR yet); with provided buffers
    /// longer ones (an ASSOC_CHANGE with the ABORT's cause) can be cut.
    notice: Vec<u8>,
    /// Send buffers no sendmsg owns; boxed as the ring takes them, so that handing one
    /// over moves a pointer, not the buffer the kernel is given the address of.
    #[allow(clippy::vec_box)]
    spare: Vec<Box<SendBuf>>,
    /// The associations a send is in flight to, and its bytes (at most [`MAX_SENDS`],
    /// one per association).
    inflight: Vec<(AssocId, usize)>,
    queue: VecDeque<Queued>,
    assocs: HashMap<AssocId, Assoc, AssocHasher>,
    /// Associations we shut down or aborted, already reported down: what still arrives
    /// for them is dropped instead of starting a new connection.
    closing: HashSet<AssocId, AssocHasher>,
}

/// The shard's SCTP sockets.
#[derive(Debug)]
pub(super) struct Sctp {
    sockets: Vec<Socket>,
    /// Which socket and association a connection is.
    conns: ConnTable<(usize, AssocId)>,
    /// A provided buffer's bytes, copied out so that the buffer goes back to the
    /// kernel at once and the message is handled with the ring free to use.
    scratch: Vec<u8>,
    /// Sent messages' buffers, for the next answers.
    free: Vec<Vec<u8>>,
}

impl Sctp {
    pub(super) fn new(fds: Vec<(OwnedFd, Protocol)>) -> Self {
        Self {
            sockets: fds
                .into_iter()
                .map(|(fd, protocol)| {
                    let bound = sctp::local_addr(fd.as_raw_fd()).ok();
                    Socket {
                        fd,
                        protocol,
                        port: bound.map_or(0, |a| a.port()),
                        ipv6: bound.is_some_and(|a| a.is_ipv6()),
                        // Room for messages once `arm` knows it needs it.
                        rx: Some(RecvBuf::new(0)),
                        multi: false,
                        notice: Vec::new(),
                        spare: Vec::new(),
                        inflight: Vec::new(),
                        queue: VecDeque::new(),
                        assocs: HashMap::with_hasher(assoc_hasher()),
                        closing: HashSet::with_hasher(assoc_hasher()),
                    }
                })
                .collect(),
            conns: ConnTable::default(),
            scratch: Vec::new(),
            free: Vec::new(),
        }
    }

    /// Whether this shard has a socket to open associations of `protocol` from.
    pub(super) fn serves(&self, protocol: Protocol) -> bool {
        self.sockets.iter().any(|s| s.protocol == protocol)
    }

    /// Whether `conn` is one of this shard's associations (up, or being opened).
    pub(super) fn has(&self, conn: ConnId) -> bool {
        self.conns.contains_key(&conn)
    }

    /// Arms every socket's recvmsg: multishot into provided buffers if the ring has
    /// them (set up here, so that a shard without SCTP sockets has none).
    pub(super) fn arm(&mut self, ctx: &mut Ctx) -> io::Result<()> {
        let multi = !self.sockets.is_empty() && ctx.ring.enable_msg_bufs();
        if !self.sockets.is_empty() {
            tracing::debug!(multishot = multi, "SCTP recvmsg armed");
        }
        for i in 0..self.sockets.len() {
            let s = &mut self.sockets[i];
            s.multi = multi;
            if !multi {
                s.rx = Some(RecvBuf::new(RX_CAPACITY));
            }
            self.arm_recv(ctx, i)?;
        }
        Ok(())
    }

    fn arm_recv(&mut self, ctx: &mut Ctx, i: usize) -> io::Result<()> {
        let s = &mut self.sockets[i];
        let Some(rx) = s.rx.take() else {
            return Ok(());
        };
        let fd = s.fd.as_raw_fd();
        let token = Token::SctpRecv(i).encode();
        let armed = if s.multi {
            ctx.ring.recvmsg_multi(fd, rx, token)
        } else {
            ctx.ring.recvmsg(fd, rx, token)
        };
        if armed.is_err() {
            // Never submitted: the buffer went with it.
            s.rx = Some(RecvBuf::new(if s.multi { 0 } else { RX_CAPACITY }));
        }
        armed
    }

    pub(super) fn on_recv(&mut self, ctx: &mut Ctx, i: usize, c: Completion) {
        if self.sockets[i].multi {
            return self.on_recv_multi(ctx, i, c);
        }
        let OpBuf::Recv(rx) = c.buf else {
            unreachable!("a recvmsg owns a RecvBuf")
        };
        if c.result == -libc::ECANCELED {
            self.sockets[i].rx = Some(rx);
            return;
        }
        if c.result < 0 {
            let e = io::Error::from_raw_os_error(-c.result);
            tracing::warn!(error = %e, "SCTP recvmsg failed");
        } else {
            self.on_message(ctx, i, rx.received());
        }
        self.sockets[i].rx = Some(rx);
        if let Err(e) = self.arm_recv(ctx, i) {
            tracing::error!(error = %e, "cannot re-arm SCTP recvmsg");
        }
    }

    /// One completion of a multishot recvmsg: the message is copied out of its
    /// provided buffer, which goes straight back to the kernel, and handled; when the
    /// recvmsg ended it is armed again, or, if the kernel refused it, replaced by
    /// single recvmsgs for good.
    fn on_recv_multi(&mut self, ctx: &mut Ctx, i: usize, c: Completion) {
        if let Some(b) = c.provided {
            let mut scratch = std::mem::take(&mut self.scratch);
            scratch.clear();
            if let Ok(n) = usize::try_from(c.result) {
                scratch.extend_from_slice(ctx.ring.msg_provided(b, n));
            }
            ctx.ring.msg_recycle(b);
            match Received::parse_provided(&scratch) {
                Some(m) => self.on_message(ctx, i, m),
                None if c.result >= 0 => {
                    tracing::debug!(len = c.result, "short multishot SCTP recvmsg result")
                }
                None => {}
            }
            self.scratch = scratch;
        }
        if c.more {
            return;
        }
        let s = &mut self.sockets[i];
        if let OpBuf::Recv(rx) = c.buf {
            s.rx = Some(rx);
        }
        match c.result {
            r if r == -libc::ECANCELED => return,
            r if r == -libc::EINVAL || r == -libc::EOPNOTSUPP => {
                tracing::info!(
                    error = %io::Error::from_raw_os_error(-r),
                    "multishot SCTP recvmsg refused; one recvmsg per message"
                );
                s.multi = false;
                s.rx = Some(RecvBuf::new(RX_CAPACITY));
            }
            // Out of provided buffers: those read meanwhile are back.
            r if r == -libc::ENOBUFS || r >= 0 => {}
            r => {
                let e = io::Error::from_raw_os_error(-r);
                tracing::warn!(error = %e, "SCTP recvmsg failed");
            }
        }
        if let Err(e) = self.arm_recv(ctx, i) {
            tracing::error!(error = %e, "cannot re-arm SCTP recvmsg");
        }
    }

    /// A received message, piece of one, or notification.
    fn on_message(&mut self, ctx: &mut Ctx, i: usize, m: Received<'_>) {
        if !m.is_notification() {
            return self.on_data(ctx, i, m);
        }
        let notice = &mut self.sockets[i].notice;
        let n = if notice.is_empty() && m.is_end_of_record() {
            sctp::parse_notification(m.data())
        } else {
            // Pieces of one notification come one after the other (the kernel puts
            // the rest back at the head of the socket's queue).
            if notice.len() + m.data().len() > RX_CAPACITY {
                tracing::debug!("SCTP notification too long; dropped");
                notice.clear();
                return;
            }
            notice.extend_from_slice(m.data());
            if !m.is_end_of_record() {
                return;
            }
            let n = sctp::parse_notification(notice);
            notice.clear();
            n
        };
        match n {
            Some(n) => self.on_notification(ctx, i, n),
            None => tracing::debug!("short SCTP notification"),
        }
    }

    fn on_data(&mut self, ctx: &mut Ctx, i: usize, rx: Received<'_>) {
        let Some(info) = rx.rcvinfo() else {
            tracing::debug!("SCTP message without SCTP_RCVINFO dropped");
            return;
        };
        let s = &self.sockets[i];
        let conn = match s.assocs.get(&info.assoc) {
            Some(a) if a.connecting => {
                let conn = a.conn;
                self.established(ctx, i, info.assoc, conn);
                conn
            }
            Some(a) => a.conn,
            None if s.closing.contains(&info.assoc) => return,
            // Data before COMM_UP was seen (it is queued first, so this is a safety net).
            None => self.conn_up(ctx, i, info.assoc),
        };
        let protocol = self.sockets[i].protocol;
        let Some(a) = self.sockets[i].assocs.get_mut(&info.assoc) else {
            return;
        };
        if rx.is_truncated() {
            tracing::debug!(conn = conn.0, "truncated SCTP message dropped");
            a.partial.clear();
            return;
        }
        if !rx.is_end_of_record() {
            if a.partial.len() + rx.data().len() > RX_CAPACITY {
                tracing::debug!(
                    conn = conn.0,
                    "SCTP message longer than any ASAP or ENRP message; aborting"
                );
                ctx.limits.broken_framing(true);
                self.abort(ctx, conn, "oversized message");
                return;
            }
            a.partial.extend_from_slice(rx.data());
            return;
        }
        // RFC 5352 §8.3 / RFC 5353 §5.4 / reference §10 D2: ASAP is PPID 11, ENRP 12;
        // anything else (ASAP on the ENRP port too) is not for this socket.
        if info.ppid != ppid(protocol) {
            tracing::debug!(
                conn = conn.0,
                ppid = info.ppid,
                ?protocol,
                "SCTP message with a foreign PPID dropped"
            );
            a.partial.clear();
            return;
        }
        let whole;
        let message = if a.partial.is_empty() {
            rx.data()
        } else {
            whole = [std::mem::take(&mut a.partial).as_slice(), rx.data()].concat();
            &whole
        };
        match protocol {
            Protocol::Asap => {
                // A resolution's answer is written straight into a message of its own
                // and queued, not through the registrar's output queue.
                let mut tx = self.free.pop().unwrap_or_default();
                ctx.registrar
                    .handle_asap_into(ctx.now, conn, message, &mut tx);
                if tx.is_empty() {
                    self.free.push(tx);
                } else {
                    self.queue(ctx, conn, PPID_ASAP, tx);
                }
            }
            Protocol::Enrp => ctx.enrp(conn, message),
        }
    }

    fn on_notification(&mut self, ctx: &mut Ctx, i: usize, n: Notification) {
        match n {
            Notification::AssocChange { assoc, state } => match state {
                AssocState::CommUp => match self.sockets[i].assocs.get(&assoc) {
                    Some(a) if a.connecting => {
                        let conn = a.conn;
                        self.established(ctx, i, assoc, conn);
                    }
                    Some(_) => {}
                    None => {
                        // A new association that reuses an id we closed long ago.
                        self.sockets[i].closing.remove(&assoc);
                        self.conn_up(ctx, i, assoc);
                    }
                },
                // The peer restarted: what it registered before is gone with it.
                AssocState::Restart => {
                    self.conn_down(ctx, i, assoc, "restart");
                    self.conn_up(ctx, i, assoc);
                }
                AssocState::CommLost | AssocState::ShutdownComplete | AssocState::CantStart => {
                    self.sockets[i].closing.remove(&assoc);
                    self.conn_down(ctx, i, assoc, "association ended");
                }
                AssocState::Other(s) => {
                    tracing::debug!(assoc, state = s, "SCTP association change")
                }
            },
            // Reference §6.4: RSPLIB treats SHUTDOWN_EVENT as the association's end too.
            Notification::Shutdown { assoc } => self.conn_down(ctx, i, assoc, "peer shut down"),
            Notification::Other { kind } => tracing::debug!(kind, "SCTP notification ignored"),
        }
    }

    /// What the registrar is told of an association that is up.
    fn info(s: &Socket, assoc: AssocId) -> ConnInfo {
        let fd = s.fd.as_raw_fd();
        let peers = sctp::peer_addrs(fd, assoc).unwrap_or_else(|e| {
            tracing::debug!(assoc, error = %e, "SCTP_GET_PEER_ADDRS failed");
            Vec::new()
        });
        let locals = sctp::local_addrs(fd, assoc).unwrap_or_else(|e| {
            tracing::debug!(assoc, error = %e, "SCTP_GET_LOCAL_ADDRS failed");
            Vec::new()
        });
        ConnInfo {
            transport: Transport::Sctp,
            protocol: s.protocol,
            local_addrs: locals.iter().map(|a| a.ip().to_canonical()).collect(),
            local_port: s.port,
            identity: None,
            peer_addrs: peers.iter().map(|a| a.ip().to_canonical()).collect(),
            peer_port: peers.first().map_or(0, |a| a.port()),
        }
    }

    /// A peer's association is up: it becomes a new connection.
    fn conn_up(&mut self, ctx: &mut Ctx, i: usize, assoc: AssocId) -> ConnId {
        let s = &mut self.sockets[i];
        let id = ctx.conn_id();
        let info = Self::info(s, assoc);
        tracing::debug!(conn = id.0, assoc, peers = ?info.peer_addrs, protocol = ?s.protocol, "SCTP association up");
        ctx.conn_up(id, info);
        s.assocs.insert(
            assoc,
            Assoc {
                conn: id,
                connecting: false,
                partial: Vec::new(),
                queued: 0,
            },
        );
        self.conns.insert(id, (i, assoc));
        id
    }

    /// An association the registrar opened is up: the registrar hears of it, and what
    /// it transmitted meanwhile goes out first.
    fn established(&mut self, ctx: &mut Ctx, i: usize, assoc: AssocId, conn: ConnId) {
        let s = &mut self.sockets[i];
        if let Some(a) = s.assocs.get_mut(&assoc) {
            a.connecting = false;
        }
        let info = Self::info(s, assoc);
        tracing::debug!(conn = conn.0, assoc, peers = ?info.peer_addrs, protocol = ?s.protocol, "SCTP association established");
        let waiting = ctx.dials.up(conn);
        ctx.conn_up(conn, info);
        for w in waiting {
            self.queue(ctx, conn, ppid(w.protocol), w.payload);
        }
    }

    fn conn_down(&mut self, ctx: &mut Ctx, i: usize, assoc: AssocId, why: &'static str) {
        if let Some(a) = self.sockets[i].assocs.remove(&assoc) {
            self.conns.remove(&a.conn);
            ctx.release_conn(a.conn);
            if a.connecting {
                tracing::debug!(
                    conn = a.conn.0,
                    assoc,
                    why,
                    "SCTP association not established"
                );
                ctx.dials.failed(a.conn);
            } else {
                tracing::debug!(conn = a.conn.0, assoc, why, "SCTP association down");
                ctx.conn_down(a.conn);
            }
        }
    }

    /// Starts an association for `conn` to `addrs` from the socket of `protocol`; the
    /// outcome comes as a notification (COMM_UP, or CANT_START).
    pub(super) fn connect(
        &mut self,
        conn: ConnId,
        protocol: Protocol,
        addrs: &[SocketAddr],
    ) -> io::Result<()> {
        let Some(i) = self.sockets.iter().position(|s| s.protocol == protocol) else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("no {protocol:?} SCTP socket"),
            ));
        };
        let s = &mut self.sockets[i];
        let reachable: Vec<SocketAddr> = addrs
            .iter()
            .copied()
            .filter(|a| s.ipv6 || a.is_ipv4())
            .collect();
        let assoc = sctp::connectx(s.fd.as_raw_fd(), &reachable)?;
        tracing::debug!(conn = conn.0, assoc, peers = ?reachable, ?protocol, "SCTP association starting");
        s.closing.remove(&assoc);
        s.assocs.insert(
            assoc,
            Assoc {
                conn,
                connecting: true,
                partial: Vec::new(),
                queued: 0,
            },
        );
        self.conns.insert(conn, (i, assoc));
        Ok(())
    }

    /// Aborts an association (slow consumer, garbage, or the registrar gave up opening
    /// it) and forgets it.
    pub(super) fn abort(&mut self, ctx: &mut Ctx, conn: ConnId, why: &'static str) {
        self.end(ctx, conn, SCTP_ABORT, why);
    }

    /// The registrar closes `conn`: what is queued for it goes out, then the
    /// association shuts down (SCTP_EOF); the registrar is told it is down now. Returns
    /// false if `conn` is not an association of this shard.
    pub(super) fn close(&mut self, ctx: &mut Ctx, conn: ConnId) -> bool {
        if !self.conns.contains_key(&conn) {
            return false;
        }
        self.end(ctx, conn, SCTP_EOF, "closed by the registrar");
        true
    }

    /// Queues SCTP_ABORT or SCTP_EOF for `conn` behind what is queued, and forgets it.
    fn end(&mut self, ctx: &mut Ctx, conn: ConnId, flags: u16, why: &'static str) {
        let Some(&(i, assoc)) = self.conns.get(&conn) else {
            return;
        };
        let s = &mut self.sockets[i];
        s.queue.push_back(Queued {
            assoc,
            ppid: 0,
            flags,
            data: Vec::new(),
        });
        if s.closing.len() >= MAX_CLOSING {
            s.closing.clear();
        }
        s.closing.insert(assoc);
        self.conn_down(ctx, i, assoc, why);
    }

    /// Queues an encoded message for `conn`, if it is one of this shard's associations.
    pub(super) fn queue(&mut self, ctx: &mut Ctx, conn: ConnId, ppid: u32, data: Vec<u8>) {
        let Some(&(i, assoc)) = self.conns.get(&conn) else {
            // Closed meanwhile: the answer has no one to go to.
            return;
        };
        let s = &mut self.sockets[i];
        let Some(a) = s.assocs.get_mut(&assoc) else {
            return;
        };
        a.queued += data.len();
        if a.queued > ctx.limits.max_unsent_per_connection() {
            tracing::info!(
                conn = conn.0,
                unsent = a.queued,
                "aborting a slow SCTP consumer"
            );
            ctx.limits.closed(super::limits::Closure::SlowConsumer);
            self.abort(ctx, conn, "slow consumer");
            return;
        }
        s.queue.push_back(Queued {
            assoc,
            ppid,
            flags: 0,
            data,
        });
    }

    /// Whether the shard has SCTP sockets (else [`Sctp::flush`] has nothing to do).
    #[inline]
    pub(super) fn has_sockets(&self) -> bool {
        !self.sockets.is_empty()
    }

    /// Starts the sendmsgs that every socket's queue allows.
    #[inline]
    pub(super) fn flush(&mut self, ctx: &mut Ctx) {
        if self.has_sockets() {
            self.flush_now(ctx);
        }
    }

    fn flush_now(&mut self, ctx: &mut Ctx) {
        for i in 0..self.sockets.len() {
            self.start_send(ctx, i);
        }
    }

    /// Starts a sendmsg for each queued message (oldest first, within the first
    /// [`SEND_SCAN`]) to an association with none in flight, up to [`MAX_SENDS`].
    fn start_send(&mut self, ctx: &mut Ctx, i: usize) {
        let s = &mut self.sockets[i];
        if s.queue.len() == 1 && s.inflight.is_empty() && ctx.ring.mode() == IoMode::Interrupt {
            // One message to send: a plain sendmsg(2) instead of a ring operation (the
            // same one system call as the submission it replaces, without the
            // operation's completion to handle afterwards). More than one go through
            // the ring, which submits them all in one call.
            let Some(q) = s.queue.pop_front() else { return };
            let (assoc, len) = (q.assoc, q.data.len());
            let mut tx = s.spare.pop().unwrap_or_else(SendBuf::new);
            tx.set(q.assoc, q.ppid, q.flags, q.data);
            match tx.send_now(s.fd.as_raw_fd()) {
                Sent::NoRoom => {
                    // The ring's sendmsg waits for room.
                    let data = tx.take_data();
                    s.spare.push(tx);
                    s.queue.push_front(Queued { data, ..q });
                }
                sent => {
                    if let Sent::Failed(e) = sent {
                        // The association is failing; its COMM_LOST notification follows.
                        tracing::debug!(assoc, error = %e, "SCTP sendmsg failed");
                    }
                    if let Some(a) = s.assocs.get_mut(&assoc) {
                        a.queued = a.queued.saturating_sub(len);
                    }
                    Self::recycle(&mut self.free, s, tx);
                    return;
                }
            }
        }
        let mut at = 0;
        while s.inflight.len() < MAX_SENDS && at < s.queue.len().min(SEND_SCAN) {
            let assoc = s.queue[at].assoc;
            if s.inflight.iter().any(|&(a, _)| a == assoc) {
                at += 1;
                continue;
            }
            let Some(q) = s.queue.remove(at) else { break };
            let mut tx = s.spare.pop().unwrap_or_else(SendBuf::new);
            let len = q.data.len();
            tx.set(q.assoc, q.ppid, q.flags, q.data);
            match ctx
                .ring
                .sendmsg(s.fd.as_raw_fd(), tx, Token::SctpSend(i).encode())
            {
                Ok(()) => s.inflight.push((assoc, len)),
                Err(e) => {
                    // The message is lost; the association's count forgets it.
                    tracing::error!(error = %e, "cannot start SCTP sendmsg");
                    if let Some(a) = s.assocs.get_mut(&assoc) {
                        a.queued = a.queued.saturating_sub(len);
                    }
                    break;
                }
            }
        }
    }

    /// Keeps a sent message's buffers for the next answers (a bounded number of each).
    fn recycle(free: &mut Vec<Vec<u8>>, s: &mut Socket, mut tx: Box<SendBuf>) {
        let mut data = tx.take_data();
        if free.len() < MAX_SENDS && data.capacity() <= FREE_CAPACITY {
            data.clear();
            free.push(data);
        }
        if s.spare.len() < MAX_SENDS {
            s.spare.push(tx);
        }
    }

    pub(super) fn on_send(&mut self, ctx: &mut Ctx, i: usize, c: Completion) {
        let OpBuf::Send(tx) = c.buf else {
            unreachable!("a sendmsg owns a SendBuf")
        };
        let assoc = tx.assoc();
        let s = &mut self.sockets[i];
        Self::recycle(&mut self.free, s, tx);
        if let Some(at) = s.inflight.iter().position(|&(a, _)| a == assoc) {
            let (_, len) = s.inflight.swap_remove(at);
            if let Some(a) = s.assocs.get_mut(&assoc) {
                a.queued = a.queued.saturating_sub(len);
            }
            if c.result < 0 && c.result != -libc::ECANCELED {
                // The association is failing; its COMM_LOST notification follows.
                let e = io::Error::from_raw_os_error(-c.result);
                tracing::debug!(assoc, error = %e, "SCTP sendmsg failed");
            }
        }
        self.start_send(ctx, i);
    }
}
