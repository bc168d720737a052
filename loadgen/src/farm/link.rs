//! The farm's connections: what one carries and how its ring operations are named.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};

use rserpool_shards::net::sctp::Client as SctpClient;

use crate::conn::{Target, Transport};

use super::port;

/// Bytes asked for per TCP receive.
pub(super) const RECV_CHUNK: usize = 16 * 1024;

/// A connection or association that one or more PEs use.
#[derive(Debug)]
pub(super) struct Link {
    pub(super) sock: Option<Sock>,
    pub(super) fd: RawFd,
    /// Bumped on every reconnect; completions of an older generation are stale.
    pub(super) generation: u32,
    /// TCP bytes received but not yet a whole message (absent while a receive holds it).
    pub(super) rx: Option<Vec<u8>>,
    /// Messages waiting to be sent.
    pub(super) tx: VecDeque<Vec<u8>>,
    pub(super) sending: bool,
    /// PEs whose registrar connection this is, by index.
    pub(super) pes: Vec<usize>,
    /// Crashed on purpose: its end is not news.
    pub(super) crashed: bool,
    /// The link whose local port this connection uses: itself for one the farm opened,
    /// the listening link for one a registrar opened to take PEs over.
    pub(super) port: usize,
    /// For a link the farm opened: every PE that registered from its port, whichever
    /// connection carries it now (a registrar taking PEs over looks for them there).
    pub(super) members: Vec<usize>,
    /// For a TCP link the farm opened: the listener on its local port.
    pub(super) listener: Option<TcpListener>,
}

impl Link {
    pub(super) fn new(sock: Sock, port: usize) -> Self {
        Self {
            fd: sock.fd(),
            sock: Some(sock),
            generation: 0,
            rx: Some(Vec::with_capacity(RECV_CHUNK)),
            tx: VecDeque::new(),
            sending: false,
            pes: Vec::new(),
            crashed: false,
            port,
            members: Vec::new(),
            listener: None,
        }
    }

    /// A connection the farm opened, not one a registrar opened to it.
    pub(super) fn is_own(&self, index: usize) -> bool {
        self.port == index
    }
}

#[derive(Debug)]
pub(super) enum Sock {
    Tcp(TcpStream),
    Sctp(SctpClient),
}

impl Sock {
    /// Connects to `target`; over TCP with `shared`, from a port a listener can share.
    pub(super) fn connect(target: Target, shared: bool) -> io::Result<Self> {
        Ok(match target.transport {
            Transport::Tcp if shared => Sock::Tcp(port::connect_shared(target.addr)?),
            Transport::Tcp => {
                let s = TcpStream::connect(target.addr)?;
                s.set_nodelay(true)?;
                Sock::Tcp(s)
            }
            Transport::Sctp => Sock::Sctp(SctpClient::connect(target.addr)?),
        })
    }

    pub(super) fn fd(&self) -> RawFd {
        match self {
            Sock::Tcp(s) => s.as_raw_fd(),
            Sock::Sctp(c) => c.as_raw_fd(),
        }
    }

    pub(super) fn local_ip(&self) -> io::Result<IpAddr> {
        Ok(match self {
            Sock::Tcp(s) => s.local_addr()?.ip(),
            Sock::Sctp(c) => c.local_addr()?.ip(),
        })
    }

    /// Ends the connection now, as the kernel does when a process dies: a TCP FIN or
    /// an SCTP SHUTDOWN. (Closing alone would not do: the receive in flight holds the
    /// socket open; shutting down also completes that receive.)
    pub(super) fn crash(&self) {
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

/// What a ring operation was for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Op {
    Wake,
    Recv,
    Send,
    /// A connection to a link's listener.
    Accept,
}

pub(super) fn token(op: Op, link: usize, generation: u32) -> u64 {
    let kind = match op {
        Op::Wake => 0u64,
        Op::Recv => 1,
        Op::Send => 2,
        Op::Accept => 3,
    };
    (kind << 62) | (u64::from(generation & 0x3fff_ffff) << 32) | (link as u64 & 0xffff_ffff)
}

pub(super) fn untoken(t: u64) -> (Op, usize, u32) {
    let op = match t >> 62 {
        1 => Op::Recv,
        2 => Op::Send,
        3 => Op::Accept,
        _ => Op::Wake,
    };
    (
        op,
        (t & 0xffff_ffff) as usize,
        ((t >> 32) & 0x3fff_ffff) as u32,
    )
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
            (Op::Accept, 12, 3),
            (Op::Recv, 1 << 20, 0x3fff_ffff),
        ] {
            assert_eq!(untoken(token(op, l, g)), (op, l, g));
        }
    }
}
