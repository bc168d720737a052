//! A blocking ASAP connection over TCP: each message framed by its own length field
//! (reference §2.4).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use rserpool::wire::AsapMessage;

/// One TCP connection to a registrar (or to the echo responder).
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn connect(addr: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buf: Vec::with_capacity(512),
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.stream.local_addr()
    }

    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.stream.set_read_timeout(t)
    }

    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(Self {
            stream: self.stream.try_clone()?,
            buf: Vec::with_capacity(512),
        })
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    pub fn send(&mut self, m: &AsapMessage) -> io::Result<()> {
        let mut b = Vec::with_capacity(64);
        m.encode(&mut b);
        self.send_bytes(&b)
    }

    /// Reads one whole framed message into an internal buffer and returns it.
    pub fn recv_bytes(&mut self) -> io::Result<&[u8]> {
        let mut head = [0u8; 4];
        self.stream.read_exact(&mut head)?;
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        if len < 4 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "message length below 4",
            ));
        }
        let total = len.div_ceil(4) * 4;
        self.buf.clear();
        self.buf.extend_from_slice(&head);
        self.buf.resize(total, 0);
        self.stream.read_exact(&mut self.buf[4..])?;
        Ok(&self.buf)
    }

    pub fn recv(&mut self) -> io::Result<AsapMessage> {
        let bytes = self.recv_bytes()?;
        AsapMessage::decode(bytes)
            .map(|d| d.message)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}
