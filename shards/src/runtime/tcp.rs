//! One shard's TCP side: its SO_REUSEPORT listeners and the connections they accepted.
//!
//! Per connection one recv is always pending into the connection's own buffer, and at
//! most one send is in flight; what the registrar transmits meanwhile is appended to a
//! pending buffer and goes out with the next send, so a burst of answers costs one
//! syscall-free submission.

use std::collections::HashMap;
use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use rserpool::registrar::{ConnId, ConnInfo, Protocol, Transport};

use super::framing::{self, Frame};
use super::shard::{Ctx, Token};
use crate::net::ring::{Completion, OpBuf};
use crate::net::socket;

/// Receive buffer a connection starts with; it grows only while a larger message is
/// being assembled (up to [`framing::MAX_FRAME`]).
const RX_INITIAL: usize = 4096;
/// A connection whose unsent bytes exceed this is a slow consumer and is closed.
pub(super) const MAX_UNSENT: usize = 4 << 20;
/// After accept fails for lack of descriptors or memory, wait this long before trying
/// again instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

#[derive(Debug)]
struct Listener {
    socket: TcpListener,
    /// Accept is not armed until then (after a resource error).
    paused_until: Option<Instant>,
    armed: bool,
}

#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    /// `None` while a recv owns it.
    rx: Option<Vec<u8>>,
    /// Queued behind the send in flight.
    tx_pending: Vec<u8>,
    /// `None` while a send owns it.
    tx_spare: Option<Vec<u8>>,
    tx_inflight: usize,
    ops: u8,
    closing: bool,
    dirty: bool,
}

/// The shard's TCP listeners and connections.
#[derive(Debug)]
pub(super) struct Tcp {
    listeners: Vec<Listener>,
    conns: HashMap<ConnId, Conn>,
    dirty: Vec<ConnId>,
}

impl Tcp {
    pub(super) fn new(listeners: Vec<TcpListener>) -> Self {
        Self {
            listeners: listeners
                .into_iter()
                .map(|socket| Listener {
                    socket,
                    paused_until: None,
                    armed: false,
                })
                .collect(),
            conns: HashMap::new(),
            dirty: Vec::new(),
        }
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
        Ok(())
    }

    /// The earliest time a paused listener wants to be re-armed.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.listeners.iter().filter_map(|l| l.paused_until).min()
    }

    /// Re-arms listeners whose back-off ended.
    pub(super) fn resume(&mut self, ctx: &mut Ctx) {
        for i in 0..self.listeners.len() {
            if self.listeners[i].paused_until.is_some_and(|t| t <= ctx.now)
                && let Err(e) = self.arm_accept(ctx, i)
            {
                tracing::warn!(error = %e, "cannot re-arm accept");
                self.listeners[i].paused_until = Some(ctx.now + ACCEPT_BACKOFF);
            }
        }
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
            tracing::warn!(error = %e, "accept failed");
            if !c.more {
                self.listeners[i].paused_until = Some(ctx.now + ACCEPT_BACKOFF);
            }
            return;
        }
        match socket::accepted(c.result) {
            Ok(a) => self.add(ctx, a),
            // The peer is already gone again.
            Err(e) => tracing::debug!(error = %e, "accepted connection unusable"),
        }
        if !self.listeners[i].armed
            && self.listeners[i].paused_until.is_none()
            && let Err(e) = self.arm_accept(ctx, i)
        {
            tracing::warn!(error = %e, "cannot re-arm accept");
            self.listeners[i].paused_until = Some(ctx.now + ACCEPT_BACKOFF);
        }
    }

    fn add(&mut self, ctx: &mut Ctx, a: socket::Accepted) {
        let id = ctx.conn_id();
        let info = ConnInfo {
            transport: Transport::Tcp,
            protocol: Protocol::Asap,
            local_addrs: Vec::new(),
            local_port: 0,
            peer_addrs: vec![a.peer.ip().to_canonical()],
            peer_port: a.peer.port(),
        };
        tracing::debug!(conn = id.0, peer = %a.peer, "TCP connection accepted");
        ctx.registrar.handle_conn_up(ctx.now, id, info);
        self.conns.insert(
            id,
            Conn {
                stream: a.stream,
                rx: Some(Vec::with_capacity(RX_INITIAL)),
                tx_pending: Vec::new(),
                tx_spare: Some(Vec::new()),
                tx_inflight: 0,
                ops: 0,
                closing: false,
                dirty: false,
            },
        );
        self.arm_recv(ctx, id, 0);
    }

    /// Arms a recv with room for at least `need` buffered bytes.
    fn arm_recv(&mut self, ctx: &mut Ctx, id: ConnId, need: usize) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let Some(mut rx) = conn.rx.take() else { return };
        let want = need
            .min(framing::MAX_FRAME)
            .max(rx.len() + 1024)
            .max(RX_INITIAL);
        if rx.capacity() < want {
            rx.reserve_exact(want - rx.len());
        }
        match ctx
            .ring
            .recv(conn.stream.as_raw_fd(), rx, Token::Recv(id).encode())
        {
            Ok(()) => conn.ops += 1,
            Err(e) => {
                tracing::warn!(conn = id.0, error = %e, "cannot arm recv");
                conn.rx = Some(Vec::new());
                self.close(ctx, id, "recv not armed");
            }
        }
    }

    pub(super) fn on_recv(&mut self, ctx: &mut Ctx, id: ConnId, c: Completion) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        conn.ops -= 1;
        let OpBuf::Bytes(mut rx) = c.buf else {
            unreachable!("a recv owns bytes")
        };
        if conn.closing {
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
        // Every whole message in the buffer goes to the registrar; a partial one waits.
        let mut at = 0;
        let need = loop {
            match framing::next(&rx[at..]) {
                Frame::Whole(n) => {
                    ctx.registrar.handle_asap(ctx.now, id, &rx[at..at + n]);
                    at += n;
                }
                Frame::Need(n) => break n,
                Frame::Broken(len) => {
                    tracing::debug!(
                        conn = id.0,
                        len,
                        "Message Length below 4 breaks TCP framing"
                    );
                    conn.rx = Some(rx);
                    self.close(ctx, id, "broken framing");
                    return;
                }
            }
        };
        rx.drain(..at);
        if rx.is_empty() && rx.capacity() > 4 * RX_INITIAL {
            rx = Vec::with_capacity(RX_INITIAL);
        }
        conn.rx = Some(rx);
        self.arm_recv(ctx, id, need);
    }

    /// Queues an encoded message; returns false if `id` is not a TCP connection here.
    pub(super) fn queue(&mut self, ctx: &mut Ctx, id: ConnId, payload: &[u8]) -> bool {
        let Some(conn) = self.conns.get_mut(&id) else {
            return false;
        };
        if conn.closing {
            return true;
        }
        conn.tx_pending.extend_from_slice(payload);
        if conn.tx_pending.len() + conn.tx_inflight > MAX_UNSENT {
            tracing::info!(
                conn = id.0,
                unsent = conn.tx_pending.len() + conn.tx_inflight,
                "closing a slow consumer"
            );
            self.close(ctx, id, "slow consumer");
            return true;
        }
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push(id);
        }
        true
    }

    /// Starts a send on every connection with queued bytes and none in flight.
    pub(super) fn flush(&mut self, ctx: &mut Ctx) {
        for id in std::mem::take(&mut self.dirty) {
            if let Some(conn) = self.conns.get_mut(&id) {
                conn.dirty = false;
                self.start_send(ctx, id);
            }
        }
    }

    fn start_send(&mut self, ctx: &mut Ctx, id: ConnId) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if conn.closing || conn.tx_pending.is_empty() {
            return;
        }
        let Some(mut buf) = conn.tx_spare.take() else {
            return; // in flight; its completion sends the rest
        };
        std::mem::swap(&mut buf, &mut conn.tx_pending);
        conn.tx_inflight = buf.len();
        match ctx
            .ring
            .send(conn.stream.as_raw_fd(), buf, Token::Send(id).encode())
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

    pub(super) fn on_send(&mut self, ctx: &mut Ctx, id: ConnId, c: Completion) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        conn.ops -= 1;
        conn.tx_inflight = 0;
        let OpBuf::Bytes(mut buf) = c.buf else {
            unreachable!("a send owns bytes")
        };
        if conn.closing {
            conn.tx_spare = Some(buf);
            self.release_if_idle(id);
            return;
        }
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
            buf.extend_from_slice(&conn.tx_pending);
            std::mem::swap(&mut buf, &mut conn.tx_pending);
        }
        buf.clear();
        if buf.capacity() > MAX_UNSENT / 16 {
            buf = Vec::new();
        }
        conn.tx_spare = Some(buf);
        self.start_send(ctx, id);
    }

    /// Closes a connection: the registrar forgets it now (its PEs are removed, RFC 5352
    /// §3.5), the socket once no operation uses its buffers any more.
    pub(super) fn close(&mut self, ctx: &mut Ctx, id: ConnId, why: &'static str) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if conn.closing {
            return;
        }
        conn.closing = true;
        tracing::debug!(conn = id.0, why, "TCP connection closed");
        // Completes the pending recv (and any send) so the buffers come back.
        let _ = conn.stream.shutdown(Shutdown::Both);
        ctx.registrar.handle_conn_down(ctx.now, id);
        self.release_if_idle(id);
    }

    fn release_if_idle(&mut self, id: ConnId) {
        if self.conns.get(&id).is_some_and(|c| c.closing && c.ops == 0) {
            self.conns.remove(&id);
        }
    }

    /// Shutdown: every socket stops; the ring's cancel returns the buffers.
    pub(super) fn close_all(&mut self) {
        for conn in self.conns.values_mut() {
            conn.closing = true;
            let _ = conn.stream.shutdown(Shutdown::Both);
        }
    }
}
