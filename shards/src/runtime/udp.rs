//! Shard 0's UDP side: ASAP server announces sent to their multicast group, ENRP
//! presences sent to theirs and heard from it.
//!
//! A sender has at most one datagram in flight: announces and presences repeat on a
//! timer, so one that finds the previous still going is skipped, not queued.

use std::net::UdpSocket;
use std::os::fd::AsRawFd;

use super::shard::{Ctx, Token};
use crate::net::ring::{Completion, OpBuf};
use crate::net::udp::Datagram;

/// Receive buffer: the largest UDP payload.
const RX_CAPACITY: usize = 65_536;

/// The UDP sockets bound at start, all on shard 0.
#[derive(Debug, Default)]
pub(super) struct UdpSockets {
    /// Server announces, connected to the ASAP announce group.
    pub(super) announce: Option<UdpSocket>,
    /// ENRP presences out, connected to the ENRP group.
    pub(super) presence: Option<UdpSocket>,
    /// ENRP presences in, bound to the ENRP group.
    pub(super) presence_rx: Option<UdpSocket>,
}

#[derive(Debug)]
struct Sender {
    socket: UdpSocket,
    busy: bool,
    what: &'static str,
}

impl Sender {
    fn new(socket: UdpSocket, what: &'static str) -> Self {
        Self {
            socket,
            busy: false,
            what,
        }
    }

    fn send(&mut self, ctx: &mut Ctx, payload: Vec<u8>, token: Token) {
        if self.busy {
            tracing::debug!(
                what = self.what,
                "previous datagram still in flight; skipped"
            );
            return;
        }
        match ctx
            .ring
            .send(self.socket.as_raw_fd(), payload, token.encode())
        {
            Ok(()) => self.busy = true,
            Err(e) => tracing::debug!(what = self.what, error = %e, "datagram not queued"),
        }
    }

    fn on_send(&mut self, c: &Completion) {
        self.busy = false;
        if c.result < 0 && c.result != -libc::ECANCELED {
            let e = std::io::Error::from_raw_os_error(-c.result);
            tracing::debug!(what = self.what, error = %e, "datagram not sent");
        }
    }
}

#[derive(Debug)]
struct Receiver {
    socket: UdpSocket,
    /// `None` while the recvmsg owns it.
    buf: Option<Box<Datagram>>,
}

/// Shard 0's multicast senders and receiver (other shards have none).
#[derive(Debug)]
pub(super) struct Udp {
    announce: Option<Sender>,
    presence: Option<Sender>,
    presence_rx: Option<Receiver>,
}

impl Udp {
    pub(super) fn new(sockets: UdpSockets) -> Self {
        Self {
            announce: sockets.announce.map(|s| Sender::new(s, "server announce")),
            presence: sockets.presence.map(|s| Sender::new(s, "ENRP presence")),
            presence_rx: sockets.presence_rx.map(|socket| Receiver {
                socket,
                buf: Some(Datagram::new(RX_CAPACITY)),
            }),
        }
    }

    pub(super) fn arm(&mut self, ctx: &mut Ctx) -> std::io::Result<()> {
        if let Some(r) = &mut self.presence_rx
            && let Some(buf) = r.buf.take()
        {
            ctx.ring
                .recvmsg_from(r.socket.as_raw_fd(), buf, Token::PresenceRecv.encode())?;
        }
        Ok(())
    }

    /// An ASAP_SERVER_ANNOUNCE for the ASAP group (dropped without an announce socket).
    pub(super) fn announce(&mut self, ctx: &mut Ctx, payload: Vec<u8>) {
        if let Some(s) = &mut self.announce {
            s.send(ctx, payload, Token::Announce);
        }
    }

    /// An ENRP message for the ENRP group (dropped without a presence socket).
    pub(super) fn presence(&mut self, ctx: &mut Ctx, payload: Vec<u8>) {
        match &mut self.presence {
            Some(s) => s.send(ctx, payload, Token::PresenceSend),
            None => tracing::debug!("ENRP multicast without a multicast group; dropped"),
        }
    }

    pub(super) fn on_announce_sent(&mut self, c: &Completion) {
        if let Some(s) = &mut self.announce {
            s.on_send(c);
        }
    }

    pub(super) fn on_presence_sent(&mut self, c: &Completion) {
        if let Some(s) = &mut self.presence {
            s.on_send(c);
        }
    }

    /// A datagram from the ENRP group goes to the registrar; the next recvmsg is armed.
    pub(super) fn on_presence_recv(&mut self, ctx: &mut Ctx, c: Completion) {
        let OpBuf::Datagram(buf) = c.buf else {
            unreachable!("a UDP recvmsg owns a Datagram")
        };
        let Some(r) = &mut self.presence_rx else {
            return;
        };
        r.buf = Some(buf);
        if c.result == -libc::ECANCELED {
            return;
        }
        if c.result < 0 {
            let e = std::io::Error::from_raw_os_error(-c.result);
            tracing::debug!(error = %e, "ENRP multicast recvmsg failed");
        } else if let Some(d) = &r.buf {
            match d.from() {
                _ if d.truncated() => tracing::debug!("oversized ENRP multicast datagram dropped"),
                Some(from) if !d.data().is_empty() => ctx.enrp_multicast(from, d.data()),
                _ => {}
            }
        }
        if let Err(e) = self.arm(ctx) {
            tracing::error!(error = %e, "cannot re-arm the ENRP multicast recvmsg");
        }
    }
}
