//! UDP multicast: the ASAP announce and ENRP presence senders, the ENRP presence
//! receiver, and the buffer of one received datagram with its source address.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

use super::addr;
use super::socket::{bind, domain, setsockopt, socket};

/// RSPLIB's multicast TTL for announces and presences.
const MULTICAST_TTL: u32 = 30;

/// A UDP socket that sends to a multicast group: bound to `from_port` on every
/// address (RSPLIB takes the sender's ASAP or ENRP port from the datagram's source
/// port, reference §10 D6), connected to the group, TTL as RSPLIB (30), looped back so
/// that local receivers hear it too.
pub fn multicast_sender(group: SocketAddr, from_port: u16) -> io::Result<UdpSocket> {
    let any: SocketAddr = match group {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, from_port).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, from_port).into(),
    };
    let fd = socket(domain(any), libc::SOCK_DGRAM | libc::SOCK_NONBLOCK, 0)?;
    let one: libc::c_int = 1;
    setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, &one)?;
    bind(fd.as_raw_fd(), any)?;
    let udp = UdpSocket::from(fd);
    match group {
        SocketAddr::V4(_) => {
            udp.set_multicast_ttl_v4(MULTICAST_TTL)?;
            udp.set_multicast_loop_v4(true)?;
        }
        SocketAddr::V6(_) => udp.set_multicast_loop_v6(true)?,
    }
    udp.connect(group)?;
    Ok(udp)
}

/// A UDP socket that hears a multicast group: bound to the group's address and port
/// with SO_REUSEADDR (so other registrars on the host can listen too, and only the
/// group's datagrams arrive), joined on the interface the kernel routes the group to.
/// A unicast `group` is bound as it is, without a join (tests use loopback).
pub fn multicast_receiver(group: SocketAddr) -> io::Result<UdpSocket> {
    let fd = socket(domain(group), libc::SOCK_DGRAM, 0)?;
    let one: libc::c_int = 1;
    setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, &one)?;
    bind(fd.as_raw_fd(), group)?;
    let udp = UdpSocket::from(fd);
    match group.ip() {
        std::net::IpAddr::V4(g) if g.is_multicast() => {
            udp.join_multicast_v4(&g, &Ipv4Addr::UNSPECIFIED)?;
        }
        std::net::IpAddr::V6(g) if g.is_multicast() => udp.join_multicast_v6(&g, 0)?,
        _ => {}
    }
    Ok(udp)
}

/// The buffers of one recvmsg on a UDP socket: the datagram and its source address.
/// Boxed, so the pointers the kernel is given stay put while the ring owns it.
pub struct Datagram {
    hdr: libc::msghdr,
    iov: libc::iovec,
    name: libc::sockaddr_storage,
    name_len: usize,
    data: Vec<u8>,
}

impl std::fmt::Debug for Datagram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Datagram")
            .field("len", &self.data.len())
            .field("from", &self.from())
            .finish()
    }
}

impl Datagram {
    pub fn new(capacity: usize) -> Box<Self> {
        Box::new(Self {
            // SAFETY: msghdr, iovec and sockaddr_storage are plain data (null pointers
            // and zero lengths are valid values); `prepare` fills them in before use.
            hdr: unsafe { std::mem::zeroed() },
            // SAFETY: as above.
            iov: unsafe { std::mem::zeroed() },
            // SAFETY: as above.
            name: unsafe { std::mem::zeroed() },
            name_len: 0,
            data: Vec::with_capacity(capacity),
        })
    }

    /// Points the header at this (boxed, so unmoving) buffer's own fields; the result
    /// is valid while the box lives.
    pub(crate) fn prepare(&mut self) -> *mut libc::msghdr {
        self.data.clear();
        self.name_len = 0;
        let spare = self.data.spare_capacity_mut();
        self.iov.iov_base = spare.as_mut_ptr().cast();
        self.iov.iov_len = spare.len();
        self.hdr.msg_name = (&raw mut self.name).cast();
        self.hdr.msg_namelen = std::mem::size_of_val(&self.name) as libc::socklen_t;
        self.hdr.msg_iov = &raw mut self.iov;
        self.hdr.msg_iovlen = 1;
        self.hdr.msg_control = std::ptr::null_mut();
        self.hdr.msg_controllen = 0;
        self.hdr.msg_flags = 0;
        &raw mut self.hdr
    }

    /// Records a successful recvmsg of `n` bytes.
    pub(crate) fn complete(&mut self, n: usize) {
        let n = n.min(self.data.capacity());
        // SAFETY: the kernel wrote `n` bytes (at most the iovec's length, the spare
        // capacity) at the start of the data buffer.
        unsafe { self.data.set_len(n) };
        self.name_len = (self.hdr.msg_namelen as usize).min(std::mem::size_of_val(&self.name));
    }

    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The datagram was longer than the buffer (and cut).
    pub fn truncated(&self) -> bool {
        self.hdr.msg_flags & libc::MSG_TRUNC != 0
    }

    /// The sender's address and port.
    pub fn from(&self) -> Option<SocketAddr> {
        // SAFETY: `name` is plain data of exactly this many bytes.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                (&raw const self.name).cast::<u8>(),
                std::mem::size_of_val(&self.name),
            )
        };
        addr::parse(&bytes[..self.name_len]).map(|(a, _)| a)
    }
}
