//! TLS on the TCP side (`tls://` endpoints): a connection accepted on a TLS listener
//! carries a [`Session`], and its bytes pass through rustls's sans-IO state machine on
//! their way between the ring and the framing. Ciphertext received goes in with
//! `read_tls`/`process_new_packets`; the plaintext that comes out is framed exactly as
//! on a plain TCP connection; what the registrar sends is encrypted straight into the
//! connection's pending send buffer (`write_tls`), and so are handshake records, which
//! go out with the next send as answers do.
//!
//! The registrar hears of a TLS connection only once its handshake is done, so that
//! [`ConnInfo::identity`] can carry the client certificate's identity; a connection
//! whose handshake fails is never shown to it. A connection this registrar opens to a
//! peer configured as `tls://` gets a client session instead; the registrar asked for
//! that one, so it knows it from the start, and what it queues waits inside rustls
//! until the handshake is done. Plain connections pay one branch on `Conn::tls` being
//! `None`.

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::sync::Arc;

use rserpool::registrar::{ConnId, ConnInfo, Protocol};

use super::{Conn, Listener, State, Tcp, appended, frames};
use crate::net::ring::Completion;
use crate::runtime::shard::Ctx;
use crate::tls::TlsServer;

/// One connection's TLS state.
#[derive(Debug)]
pub(super) struct Session {
    tls: rustls::Connection,
    server: Arc<TlsServer>,
    /// Decrypted bytes not yet a whole message.
    plain: Vec<u8>,
    /// What the registrar is told once the handshake is done; `None` after that.
    info: Option<ConnInfo>,
    /// The handshake finished (and was counted).
    done: bool,
    /// The handshake failure was counted already.
    failed: bool,
}

impl Session {
    /// A server session with the credentials in force now (later reloads do not
    /// change it).
    pub(super) fn new(server: &Arc<TlsServer>, info: ConnInfo) -> Result<Box<Self>, rustls::Error> {
        let mut tls = rustls::Connection::from(rustls::ServerConnection::new(server.config())?);
        // What the registrar queues is bounded by the connection's own unsent cap.
        tls.set_buffer_limit(Some(super::MAX_UNSENT));
        Ok(Box::new(Self {
            tls,
            server: server.clone(),
            plain: Vec::new(),
            info: Some(info),
            done: false,
            failed: false,
        }))
    }

    /// A client session to a peer registrar dialled over TLS (`config`), whose
    /// certificate must name `peer`'s address. The registrar knows the connection
    /// already (it asked for it); what it queues is sent once the handshake is done.
    fn client(
        server: &Arc<TlsServer>,
        config: Arc<rustls::ClientConfig>,
        peer: std::net::SocketAddr,
    ) -> Result<Box<Self>, rustls::Error> {
        let name = rustls::pki_types::ServerName::IpAddress(peer.ip().into());
        let mut tls = rustls::Connection::from(rustls::ClientConnection::new(config, name)?);
        tls.set_buffer_limit(Some(super::MAX_UNSENT));
        Ok(Box::new(Self {
            tls,
            server: server.clone(),
            plain: Vec::new(),
            info: None,
            done: false,
            failed: false,
        }))
    }

    /// Whether the registrar was told the connection is up (the handshake is done).
    pub(super) fn is_up(&self) -> bool {
        self.info.is_none()
    }

    /// Encrypts a message into `out`.
    pub(super) fn send(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        if let Err(e) = self.tls.writer().write_all(payload) {
            // Only past the buffer limit, where the connection is closed as a slow
            // consumer anyway.
            tracing::debug!(error = %e, "TLS cannot take a message");
        }
        self.write(out);
    }

    /// Queues a close_notify alert into `out` (the registrar closes the connection).
    pub(super) fn close_notify(&mut self, out: &mut Vec<u8>) {
        self.tls.send_close_notify();
        self.write(out);
    }

    /// Moves every record rustls has ready into `out`.
    fn write(&mut self, out: &mut Vec<u8>) {
        while self.tls.wants_write() {
            match self.tls.write_tls(out) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }

    /// Feeds received ciphertext; the plaintext joins [`Session::plain`]. `Ok(true)`:
    /// the peer sent close_notify.
    fn feed(&mut self, mut data: &[u8]) -> Result<bool, rustls::Error> {
        let mut closed = false;
        while !data.is_empty() {
            match self.tls.read_tls(&mut data) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return Err(rustls::Error::General(e.to_string())),
            }
            let state = self.tls.process_new_packets()?;
            let n = state.plaintext_bytes_to_read();
            if n > 0 {
                let at = self.plain.len();
                self.plain.resize(at + n, 0);
                if let Err(e) = self.tls.reader().read_exact(&mut self.plain[at..]) {
                    return Err(rustls::Error::General(e.to_string()));
                }
            }
            closed |= state.peer_has_closed();
        }
        Ok(closed)
    }

    /// Counts a handshake that did not finish, once.
    fn count_failure(&mut self) {
        if !self.done && !self.failed {
            self.failed = true;
            self.server.handshake_failed();
        }
    }
}

/// Whether the registrar must be told `conn` is down: it was told it is up. A TLS
/// connection closed before its handshake finished was never shown to it, and counts
/// as a failed handshake.
pub(super) fn told_up(conn: &mut Conn) -> bool {
    match conn.tls.as_deref_mut() {
        None => true,
        Some(s) => {
            s.count_failure();
            s.is_up()
        }
    }
}

impl Tcp {
    /// Adds listeners whose connections speak TLS with `server`'s credentials, and the
    /// credentials for peers dialled over TLS.
    pub(in crate::runtime) fn listen_tls(
        &mut self,
        listeners: Vec<(TcpListener, Protocol, Arc<TlsServer>)>,
        dial: Option<Arc<TlsServer>>,
    ) {
        self.dial_tls = dial;
        self.listeners.extend(
            listeners
                .into_iter()
                .map(|(socket, protocol, server)| Listener {
                    socket,
                    protocol,
                    paused_until: None,
                    armed: false,
                    tls: Some(server),
                }),
        );
    }

    /// An outbound connection is up: if its peer is dialled over TLS, the handshake
    /// starts (its ClientHello queued); a session that cannot start closes it.
    pub(super) fn start_tls_client(
        &mut self,
        ctx: &mut Ctx,
        id: ConnId,
        peer: std::net::SocketAddr,
    ) {
        let Some(server) = &self.dial_tls else { return };
        let Some(config) = server.client_for(peer) else {
            return;
        };
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        match Session::client(server, config, peer) {
            Ok(mut session) => {
                let n = appended(&mut conn.tx_pending, |p| session.write(p));
                conn.tls = Some(session);
                conn.queued(id, n, &mut self.unsent, &mut self.dirty);
            }
            Err(e) => {
                tracing::warn!(conn = id.0, %peer, error = %e, "cannot start TLS to a peer");
                self.close(ctx, id, "TLS not started");
            }
        }
    }

    /// One completion of a TLS connection's multishot recv (the counterpart of
    /// `on_recv_provided`, whose operation count it has already settled).
    pub(super) fn on_recv_tls(&mut self, ctx: &mut Ctx, id: ConnId, c: Completion, ended: bool) {
        let fed = match (c.provided, c.result) {
            (Some(b), n) if n > 0 => {
                let fed = match self.conns.get_mut(&id) {
                    Some(conn) if conn.state == State::Open => conn
                        .tls
                        .as_deref_mut()
                        .map(|s| s.feed(ctx.ring.provided(b, n as usize))),
                    _ => None,
                };
                ctx.ring.recycle(b);
                fed
            }
            (b, _) => {
                if let Some(b) = b {
                    ctx.ring.recycle(b);
                }
                None
            }
        };
        if self
            .conns
            .get(&id)
            .is_some_and(|conn| conn.state == State::Closed)
        {
            self.release_if_idle(id);
            return;
        }
        if let Some(fed) = fed
            && !self.tls_received(ctx, id, fed)
        {
            return;
        }
        if !ended {
            return;
        }
        match c.result {
            0 => self.close(ctx, id, "peer closed"),
            r if r == -libc::ENOBUFS || r > 0 => self.arm_recv(ctx, id, 0),
            r => {
                let e = std::io::Error::from_raw_os_error(-r);
                tracing::debug!(conn = id.0, error = %e, "recv failed");
                self.close(ctx, id, "recv failed");
            }
        }
    }

    /// Ciphertext received into the connection's own buffer (without provided buffers).
    pub(super) fn on_recv_tls_owned(&mut self, ctx: &mut Ctx, id: ConnId, mut rx: Vec<u8>) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let fed = conn.tls.as_deref_mut().map(|s| s.feed(&rx));
        rx.clear();
        conn.rx = Some(rx);
        if let Some(fed) = fed
            && self.tls_received(ctx, id, fed)
        {
            self.arm_recv(ctx, id, 0);
        }
    }

    /// After ciphertext went in: a failure closes the connection (its alert sent if
    /// nothing else is in flight), a finished handshake shows the connection to the
    /// registrar, whole messages go to it, and records rustls wrote are queued.
    /// Returns false if the connection was closed.
    fn tls_received(
        &mut self,
        ctx: &mut Ctx,
        id: ConnId,
        fed: Result<bool, rustls::Error>,
    ) -> bool {
        let Some(conn) = self.conns.get_mut(&id) else {
            return false;
        };
        let Some(session) = conn.tls.as_deref_mut() else {
            return true;
        };
        let closed = match fed {
            Ok(closed) => closed,
            Err(e) => {
                let peer = session
                    .info
                    .as_ref()
                    .and_then(|i| i.peer_addrs.first().copied());
                tracing::debug!(conn = id.0, ?peer, handshaking = !session.is_up(), error = %e, "TLS failed");
                session.count_failure();
                self.unsent += appended(&mut conn.tx_pending, |p| session.write(p));
                if conn.tx_inflight == 0 {
                    // Best effort: the alert tells the client why.
                    let _ = (&conn.stream).write(&conn.tx_pending);
                }
                self.close(ctx, id, "TLS error");
                return false;
            }
        };
        if !session.done && !session.tls.is_handshaking() {
            session.done = true;
            let cert = session.tls.peer_certificates().and_then(|c| c.first());
            // A client certificate only where we are the server.
            let inbound = session.info.is_some();
            session.server.handshake_done(inbound && cert.is_some());
            tracing::debug!(conn = id.0, inbound, version = ?session.tls.protocol_version(), "TLS handshake done");
            if let Some(mut info) = session.info.take() {
                info.identity = cert.and_then(crate::tls::identity);
                tracing::debug!(conn = id.0, identity = ?info.identity, "TLS client");
                ctx.conn_up(id, info);
            }
        }
        if session.is_up() && !session.plain.is_empty() {
            let protocol = conn.protocol;
            let taken = frames(&session.plain, |message| match protocol {
                Protocol::Asap => ctx.registrar.handle_asap(ctx.now, id, message),
                Protocol::Enrp => ctx.enrp(id, message),
            });
            match taken {
                Ok((at, _)) => {
                    session.plain.drain(..at);
                    let partial = !session.plain.is_empty();
                    conn.heard |= at > 0;
                    // As `Tcp::track_partial` (the session borrows the connection).
                    if partial != conn.partial {
                        conn.partial = partial;
                        if partial {
                            conn.since = ctx.now;
                        }
                    }
                }
                Err(len) => {
                    self.broken_framing(ctx, id, len);
                    return false;
                }
            }
        }
        let n = appended(&mut conn.tx_pending, |p| session.write(p));
        if !conn.tx_pending.is_empty() {
            conn.queued(id, n, &mut self.unsent, &mut self.dirty);
        }
        if closed {
            self.close(ctx, id, "peer closed");
            return false;
        }
        true
    }
}
