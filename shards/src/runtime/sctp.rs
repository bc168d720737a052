//! One shard's SCTP side: one-to-many sockets (reference §2.4: RSPLIB's socket style),
//! each association a connection of the registrar.
//!
//! Per socket one recvmsg is always pending and at most one sendmsg is in flight; a
//! one-to-many socket carries every association, so sends wait in one FIFO. An
//! association whose queued bytes pass the slow-consumer limit is aborted.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use rserpool::registrar::{ConnId, ConnInfo, Protocol, Transport};
use rserpool::wire::PPID_ASAP;

use super::shard::{Ctx, Token};
use super::tcp::MAX_UNSENT;
use crate::net::ring::{Completion, OpBuf};
use crate::net::sctp::{self, AssocId, AssocState, Notification, RecvBuf, SCTP_ABORT, SendBuf};

/// Receive buffer: one whole ASAP message (16-bit length) fits; longer SCTP messages
/// arrive in pieces and are put together.
const RX_CAPACITY: usize = 65_536;

#[derive(Debug)]
struct Assoc {
    conn: ConnId,
    /// A message delivered in pieces (no MSG_EOR yet).
    partial: Vec<u8>,
    /// Bytes queued for sending to this association.
    queued: usize,
}

#[derive(Debug)]
struct Queued {
    assoc: AssocId,
    flags: u16,
    data: Vec<u8>,
}

#[derive(Debug)]
struct Socket {
    fd: OwnedFd,
    /// `None` while the recvmsg owns it.
    rx: Option<Box<RecvBuf>>,
    /// `None` while a sendmsg owns it.
    tx: Option<Box<SendBuf>>,
    /// What the send in flight carries (association, bytes).
    inflight: Option<(AssocId, usize)>,
    queue: VecDeque<Queued>,
    assocs: HashMap<AssocId, Assoc>,
}

/// The shard's SCTP sockets.
#[derive(Debug)]
pub(super) struct Sctp {
    sockets: Vec<Socket>,
    /// Which socket and association a connection is.
    conns: HashMap<ConnId, (usize, AssocId)>,
}

impl Sctp {
    pub(super) fn new(fds: Vec<OwnedFd>) -> Self {
        Self {
            sockets: fds
                .into_iter()
                .map(|fd| Socket {
                    fd,
                    rx: Some(RecvBuf::new(RX_CAPACITY)),
                    tx: Some(SendBuf::new()),
                    inflight: None,
                    queue: VecDeque::new(),
                    assocs: HashMap::new(),
                })
                .collect(),
            conns: HashMap::new(),
        }
    }

    pub(super) fn arm(&mut self, ctx: &mut Ctx) -> io::Result<()> {
        for i in 0..self.sockets.len() {
            self.arm_recv(ctx, i)?;
        }
        Ok(())
    }

    fn arm_recv(&mut self, ctx: &mut Ctx, i: usize) -> io::Result<()> {
        let s = &mut self.sockets[i];
        if let Some(rx) = s.rx.take() {
            ctx.ring
                .recvmsg(s.fd.as_raw_fd(), rx, Token::SctpRecv(i).encode())?;
        }
        Ok(())
    }

    pub(super) fn on_recv(&mut self, ctx: &mut Ctx, i: usize, c: Completion) {
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
        } else if rx.is_notification() {
            match sctp::parse_notification(rx.data()) {
                Some(n) => self.on_notification(ctx, i, n),
                None => tracing::debug!("short SCTP notification"),
            }
        } else {
            self.on_data(ctx, i, &rx);
        }
        self.sockets[i].rx = Some(rx);
        if let Err(e) = self.arm_recv(ctx, i) {
            tracing::error!(error = %e, "cannot re-arm SCTP recvmsg");
        }
    }

    fn on_data(&mut self, ctx: &mut Ctx, i: usize, rx: &RecvBuf) {
        let Some(info) = rx.rcvinfo() else {
            tracing::debug!("SCTP message without SCTP_RCVINFO dropped");
            return;
        };
        let conn = match self.sockets[i].assocs.get(&info.assoc) {
            Some(a) => a.conn,
            // Data before COMM_UP was seen (it is queued first, so this is a safety net).
            None => self.conn_up(ctx, i, info.assoc),
        };
        let Some(a) = self.sockets[i].assocs.get_mut(&info.assoc) else {
            return;
        };
        if !rx.is_end_of_record() {
            if a.partial.len() + rx.data().len() > RX_CAPACITY {
                tracing::debug!(
                    conn = conn.0,
                    "SCTP message longer than any ASAP message; aborting"
                );
                self.abort(ctx, conn, "oversized message");
                return;
            }
            a.partial.extend_from_slice(rx.data());
            return;
        }
        // RFC 5352 §8.3 / reference §10 D2: ASAP is PPID 11; anything else is not ours.
        if info.ppid != PPID_ASAP {
            tracing::debug!(
                conn = conn.0,
                ppid = info.ppid,
                "SCTP message with a foreign PPID dropped"
            );
            a.partial.clear();
            return;
        }
        if a.partial.is_empty() {
            ctx.registrar.handle_asap(ctx.now, conn, rx.data());
        } else {
            let mut whole = std::mem::take(&mut a.partial);
            whole.extend_from_slice(rx.data());
            ctx.registrar.handle_asap(ctx.now, conn, &whole);
        }
    }

    fn on_notification(&mut self, ctx: &mut Ctx, i: usize, n: Notification) {
        match n {
            Notification::AssocChange { assoc, state } => match state {
                AssocState::CommUp => {
                    if !self.sockets[i].assocs.contains_key(&assoc) {
                        self.conn_up(ctx, i, assoc);
                    }
                }
                // The peer restarted: what it registered before is gone with it.
                AssocState::Restart => {
                    self.conn_down(ctx, i, assoc, "restart");
                    self.conn_up(ctx, i, assoc);
                }
                AssocState::CommLost | AssocState::ShutdownComplete | AssocState::CantStart => {
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

    fn conn_up(&mut self, ctx: &mut Ctx, i: usize, assoc: AssocId) -> ConnId {
        let s = &mut self.sockets[i];
        let addrs = sctp::peer_addrs(s.fd.as_raw_fd(), assoc).unwrap_or_else(|e| {
            tracing::debug!(assoc, error = %e, "SCTP_GET_PEER_ADDRS failed");
            Vec::new()
        });
        let id = ctx.conn_id();
        let info = ConnInfo {
            transport: Transport::Sctp,
            protocol: Protocol::Asap,
            local_addrs: Vec::new(),
            local_port: 0,
            peer_addrs: addrs.iter().map(|a| a.ip().to_canonical()).collect(),
            peer_port: addrs.first().map_or(0, |a| a.port()),
        };
        tracing::debug!(conn = id.0, assoc, peers = ?info.peer_addrs, "SCTP association up");
        ctx.registrar.handle_conn_up(ctx.now, id, info);
        s.assocs.insert(
            assoc,
            Assoc {
                conn: id,
                partial: Vec::new(),
                queued: 0,
            },
        );
        self.conns.insert(id, (i, assoc));
        id
    }

    fn conn_down(&mut self, ctx: &mut Ctx, i: usize, assoc: AssocId, why: &'static str) {
        if let Some(a) = self.sockets[i].assocs.remove(&assoc) {
            tracing::debug!(conn = a.conn.0, assoc, why, "SCTP association down");
            self.conns.remove(&a.conn);
            ctx.registrar.handle_conn_down(ctx.now, a.conn);
        }
    }

    /// Aborts an association (slow consumer, garbage) and forgets it.
    fn abort(&mut self, ctx: &mut Ctx, conn: ConnId, why: &'static str) {
        let Some(&(i, assoc)) = self.conns.get(&conn) else {
            return;
        };
        self.sockets[i].queue.push_back(Queued {
            assoc,
            flags: SCTP_ABORT,
            data: Vec::new(),
        });
        self.conn_down(ctx, i, assoc, why);
    }

    /// Queues an encoded message for `conn`, if it is one of this shard's associations.
    pub(super) fn queue(&mut self, ctx: &mut Ctx, conn: ConnId, data: Vec<u8>) {
        let Some(&(i, assoc)) = self.conns.get(&conn) else {
            // Closed meanwhile: the answer has no one to go to.
            return;
        };
        let s = &mut self.sockets[i];
        let Some(a) = s.assocs.get_mut(&assoc) else {
            return;
        };
        a.queued += data.len();
        if a.queued > MAX_UNSENT {
            tracing::info!(
                conn = conn.0,
                unsent = a.queued,
                "aborting a slow SCTP consumer"
            );
            self.abort(ctx, conn, "slow consumer");
            return;
        }
        s.queue.push_back(Queued {
            assoc,
            flags: 0,
            data,
        });
    }

    /// Starts a sendmsg on every socket with something queued and none in flight.
    pub(super) fn flush(&mut self, ctx: &mut Ctx) {
        for i in 0..self.sockets.len() {
            self.start_send(ctx, i);
        }
    }

    fn start_send(&mut self, ctx: &mut Ctx, i: usize) {
        let s = &mut self.sockets[i];
        if s.tx.is_none() {
            return;
        }
        let Some(q) = s.queue.pop_front() else { return };
        let Some(mut tx) = s.tx.take() else { return };
        let len = q.data.len();
        tx.set(q.assoc, PPID_ASAP, q.flags, q.data);
        s.inflight = Some((q.assoc, len));
        if let Err(e) = ctx
            .ring
            .sendmsg(s.fd.as_raw_fd(), tx, Token::SctpSend(i).encode())
        {
            tracing::error!(error = %e, "cannot start SCTP sendmsg");
            s.tx = Some(SendBuf::new());
            s.inflight = None;
        }
    }

    pub(super) fn on_send(&mut self, ctx: &mut Ctx, i: usize, c: Completion) {
        let OpBuf::Send(mut tx) = c.buf else {
            unreachable!("a sendmsg owns a SendBuf")
        };
        drop(tx.take_data());
        let s = &mut self.sockets[i];
        s.tx = Some(tx);
        if let Some((assoc, len)) = s.inflight.take() {
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
