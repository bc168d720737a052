//! The dump's one blocking connection to a registrar's ENRP endpoint: TCP, each message
//! framed by its own length (as ASAP, reference §2.4), or a one-to-one SCTP association
//! with PPID 12, as RSPLIB's `hsdump` opens.

use std::io::{self, Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use rserpool::RegistrarId;
use rserpool::wire::{
    IpTransport, PPID_ENRP, SctpTransport, ServerInformation, ServerTransport, TransportUse,
};

use crate::Endpoint;
use crate::net::sctp;
use crate::runtime::framing::{self, Frame};

/// One whole message as received, with its SCTP PPID (`None` over TCP).
pub(super) struct Received {
    pub(super) bytes: Vec<u8>,
    pub(super) ppid: Option<u32>,
}

pub(super) enum Conn {
    Tcp { stream: TcpStream, rx: Vec<u8> },
    Sctp(sctp::Client),
}

impl Conn {
    /// Connects within `timeout`.
    pub(super) fn open(target: &Endpoint, timeout: Duration) -> io::Result<Self> {
        Ok(match *target {
            Endpoint::Tcp(a) => {
                let stream = TcpStream::connect_timeout(&a, timeout)?;
                stream.set_nodelay(true)?;
                Self::Tcp {
                    stream,
                    rx: Vec::with_capacity(4096),
                }
            }
            Endpoint::Sctp(a) => Self::Sctp(sctp::Client::connect_timeout(a, timeout)?),
            // Refused when the target is parsed.
            Endpoint::Tls(_) => return Err(io::Error::other("dump does not speak TLS")),
        })
    }

    /// Our end of the connection as ENRP Server Information: its local addresses and
    /// port. RSPLIB ignores a PRESENCE whose transport differs from the association it
    /// came on.
    pub(super) fn server_information(&self, id: RegistrarId) -> io::Result<ServerInformation> {
        let transport = match self {
            Self::Tcp { stream, .. } => {
                let local = stream.local_addr()?;
                ServerTransport::Tcp(IpTransport {
                    port: local.port(),
                    reserved: 0,
                    address: local.ip().to_canonical(),
                })
            }
            Self::Sctp(c) => {
                let primary = c.local_addr()?;
                // Every address of the association, the primary first.
                let mut all = c.local_addrs().unwrap_or_default();
                all.retain(|a| a.ip() != primary.ip());
                all.insert(0, primary);
                ServerTransport::Sctp(SctpTransport {
                    port: primary.port(),
                    transport_use: TransportUse::DATA_ONLY,
                    addresses: canonical(&all),
                })
            }
        };
        Ok(ServerInformation {
            server_id: id,
            transport,
        })
    }

    pub(super) fn send(&mut self, message: &[u8]) -> io::Result<()> {
        match self {
            // Encoded messages end padded to 4 bytes: the framing the peer reads.
            Self::Tcp { stream, .. } => stream.write_all(message),
            Self::Sctp(c) => c.send(PPID_ENRP, message),
        }
    }

    /// The next whole message, `None` once the registrar closed the connection. At
    /// `deadline` fails with `TimedOut`; a TCP stream that cannot be framed fails with
    /// `InvalidData`.
    pub(super) fn recv(&mut self, deadline: Instant) -> io::Result<Option<Received>> {
        let left = || {
            let d = deadline.saturating_duration_since(Instant::now());
            if d.is_zero() {
                Err(io::Error::from(io::ErrorKind::TimedOut))
            } else {
                Ok(d)
            }
        };
        match self {
            Self::Tcp { stream, rx } => loop {
                match framing::next(rx) {
                    Frame::Whole(n) => {
                        let bytes = rx.drain(..n).collect();
                        return Ok(Some(Received { bytes, ppid: None }));
                    }
                    Frame::Broken(len) => {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("a message length of {len}, shorter than the header"),
                        ));
                    }
                    Frame::Need(_) => {}
                }
                stream.set_read_timeout(Some(left()?))?;
                let mut buf = [0u8; 16 << 10];
                match stream.read(&mut buf) {
                    Ok(0) if rx.is_empty() => return Ok(None),
                    Ok(0) => {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the connection closed in the middle of a message",
                        ));
                    }
                    Ok(n) => rx.extend_from_slice(&buf[..n]),
                    Err(e) => return Err(timed_out(e)),
                }
            },
            Self::Sctp(c) => {
                c.set_read_timeout(left()?)?;
                let mut bytes = Vec::new();
                match c.recv(&mut bytes) {
                    Ok(Some(ppid)) => Ok(Some(Received {
                        bytes,
                        ppid: Some(ppid),
                    })),
                    Ok(None) => Ok(None),
                    Err(e) => Err(timed_out(e)),
                }
            }
        }
    }
}

/// A receive timeout reports `WouldBlock`; it is the deadline passing.
fn timed_out(e: io::Error) -> io::Error {
    match e.kind() {
        io::ErrorKind::WouldBlock => io::Error::from(io::ErrorKind::TimedOut),
        _ => e,
    }
}

fn canonical(addrs: &[SocketAddr]) -> Vec<IpAddr> {
    addrs.iter().map(|a| a.ip().to_canonical()).collect()
}
