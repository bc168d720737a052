//! A blocking ASAP connection to a registrar over TCP (each message framed by its own
//! length field, reference §2.4) or over kernel SCTP (one message per SCTP message,
//! PPID 11).

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::str::FromStr;
use std::time::Duration;

use rserpool::PoolHandle;
use rserpool::client::{Resolved, resolution_request};
use rserpool::wire::framing::{self, Frame};
use rserpool::wire::{AsapMessage, PPID_ASAP};
use rserpool_shards::net::sctp::Client as SctpClient;

/// Largest ASAP message (the length field is 16 bits), rounded up to whole words.
const MAX_MESSAGE: usize = framing::MAX_FRAME;

/// The transport to a registrar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Sctp,
}

/// Where to reach a registrar: `tcp://ADDR:PORT`, `sctp://ADDR:PORT`, or a bare
/// `ADDR:PORT` (TCP).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    pub transport: Transport,
    pub addr: SocketAddr,
}

impl Target {
    pub fn tcp(addr: SocketAddr) -> Self {
        Self {
            transport: Transport::Tcp,
            addr,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.transport {
            Transport::Tcp => "tcp",
            Transport::Sctp => "sctp",
        };
        write!(f, "{scheme}://{}", self.addr)
    }
}

impl FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (transport, rest) = match s.split_once("://") {
            Some(("tcp", rest)) => (Transport::Tcp, rest),
            Some(("sctp", rest)) => (Transport::Sctp, rest),
            Some((scheme, _)) => {
                return Err(format!("unknown scheme {scheme:?} (use tcp:// or sctp://)"));
            }
            None => (Transport::Tcp, s),
        };
        let addr = rest
            .parse()
            .map_err(|_| format!("{rest:?} is not an ADDR:PORT (IPv6 as [ADDR]:PORT)"))?;
        Ok(Self { transport, addr })
    }
}

/// One connection (TCP) or association (SCTP) to a registrar or the echo responder.
#[derive(Debug)]
pub struct Conn {
    inner: Inner,
    buf: Vec<u8>,
}

#[derive(Debug)]
enum Inner {
    Tcp(TcpStream),
    Sctp(SctpClient),
}

impl Conn {
    pub fn connect(target: Target) -> io::Result<Self> {
        let inner = match target.transport {
            Transport::Tcp => {
                let stream = TcpStream::connect(target.addr)?;
                stream.set_nodelay(true)?;
                Inner::Tcp(stream)
            }
            Transport::Sctp => Inner::Sctp(SctpClient::connect(target.addr)?),
        };
        let buf = match inner {
            Inner::Tcp(_) => Vec::with_capacity(512),
            // SCTP reads whole messages straight into the buffer.
            Inner::Sctp(_) => vec![0; MAX_MESSAGE],
        };
        Ok(Self { inner, buf })
    }

    /// Another handle on the same connection, with its own receive buffer (for a
    /// reader thread beside a writer).
    pub fn try_clone(&self) -> io::Result<Self> {
        let inner = match &self.inner {
            Inner::Tcp(s) => Inner::Tcp(s.try_clone()?),
            Inner::Sctp(c) => Inner::Sctp(c.try_clone()?),
        };
        let buf = match inner {
            Inner::Tcp(_) => Vec::with_capacity(512),
            Inner::Sctp(_) => vec![0; MAX_MESSAGE],
        };
        Ok(Self { inner, buf })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.inner {
            Inner::Tcp(s) => s.local_addr(),
            Inner::Sctp(c) => c.local_addr(),
        }
    }

    /// Bounds every later receive; `None` waits for ever.
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match &self.inner {
            Inner::Tcp(s) => s.set_read_timeout(t),
            // A zero timeval means no timeout for SO_RCVTIMEO.
            Inner::Sctp(c) => c.set_read_timeout(t.unwrap_or(Duration::ZERO)),
        }
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.inner {
            Inner::Tcp(s) => s.write_all(bytes),
            Inner::Sctp(c) => c.send(PPID_ASAP, bytes),
        }
    }

    pub fn send(&mut self, m: &AsapMessage) -> io::Result<()> {
        let mut b = Vec::with_capacity(64);
        m.encode(&mut b);
        self.send_bytes(&b)
    }

    /// Reads one whole message into an internal buffer and returns it.
    pub fn recv_bytes(&mut self) -> io::Result<&[u8]> {
        match &mut self.inner {
            Inner::Tcp(s) => {
                read_frame(s, &mut self.buf)?;
                Ok(&self.buf)
            }
            Inner::Sctp(c) => loop {
                match c.recv_into(&mut self.buf)? {
                    None => return Err(io::ErrorKind::UnexpectedEof.into()),
                    Some((n, PPID_ASAP)) => return Ok(&self.buf[..n]),
                    // Not ASAP (e.g. PPID 0 from a non-conforming peer is still taken,
                    // anything else skipped).
                    Some((n, 0)) => return Ok(&self.buf[..n]),
                    Some(_) => continue,
                }
            },
        }
    }

    pub fn recv(&mut self) -> io::Result<AsapMessage> {
        let bytes = self.recv_bytes()?;
        AsapMessage::decode(bytes)
            .map(|d| d.message)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// Resolves `handle` (asking for `items` PEs with the Handle Resolution Option) and
    /// reads the answer; anything but a resolution answer is an error.
    pub fn resolve(&mut self, handle: &PoolHandle, items: Option<u32>) -> io::Result<Resolved> {
        let mut req = Vec::with_capacity(64);
        resolution_request(handle, items, &mut req);
        self.send_bytes(&req)?;
        let msg = self.recv()?;
        Resolved::from_message(msg).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "the answer to a handle resolution was something else",
            )
        })
    }

    /// Shuts the connection down for every handle on it (a TCP FIN, an SCTP
    /// SHUTDOWN): a send or receive blocked on another handle returns.
    pub fn shutdown(&self) {
        match &self.inner {
            Inner::Tcp(s) => {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
            Inner::Sctp(c) => {
                let _ = c.shutdown();
            }
        }
    }

    /// Closes the connection abruptly: a TCP FIN, an SCTP ABORT.
    pub fn crash(self) {
        match self.inner {
            Inner::Tcp(s) => drop(s),
            Inner::Sctp(c) => {
                let _ = c.abort();
            }
        }
    }
}

/// Reads one whole framed message (reference §2.4) from a TCP stream into `buf`,
/// replacing what it held. A Message Length below 4 is `InvalidData`; the end of the
/// stream, even between messages, is `UnexpectedEof`.
pub fn read_frame(s: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.clear();
    loop {
        match framing::next(buf) {
            Frame::Whole(_) => return Ok(()),
            Frame::Need(n) => {
                let at = buf.len();
                buf.resize(n, 0);
                s.read_exact(&mut buf[at..])?;
            }
            Frame::Broken(len) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("Message Length {len} is below the header's 4 bytes"),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_with_and_without_scheme() {
        let t: Target = "sctp://192.0.2.1:3863".parse().unwrap();
        assert_eq!(t.transport, Transport::Sctp);
        assert_eq!(t.to_string(), "sctp://192.0.2.1:3863");
        let t: Target = "127.0.0.1:9".parse().unwrap();
        assert_eq!(t, Target::tcp("127.0.0.1:9".parse().unwrap()));
        let t: Target = "tcp://[::1]:9".parse().unwrap();
        assert_eq!(t.addr, "[::1]:9".parse().unwrap());
        assert!(
            "udp://1.2.3.4:5"
                .parse::<Target>()
                .unwrap_err()
                .contains("udp")
        );
        assert!(
            "sctp://nowhere"
                .parse::<Target>()
                .unwrap_err()
                .contains("nowhere")
        );
    }

    #[test]
    fn frames_are_read_whole_and_broken_ones_refused() {
        let mut buf = Vec::new();
        let mut wire: &[u8] = &[5, 0, 0, 5, 1, 0, 0, 0, 6, 0, 0, 4, 7, 0, 0, 3];
        read_frame(&mut wire, &mut buf).unwrap();
        assert_eq!(buf, [5, 0, 0, 5, 1, 0, 0, 0]);
        read_frame(&mut wire, &mut buf).unwrap();
        assert_eq!(buf, [6, 0, 0, 4]);
        let e = read_frame(&mut wire, &mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        let e = read_frame(&mut &[][..], &mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }
}
