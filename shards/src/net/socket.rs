//! Listening sockets, accepted and outbound connections, and the shards' wake-up eventfds.
//!
//! Once a socket exists it is held as a std type (`TcpListener`, `TcpStream`, `File`),
//! so everything after creation is safe std code.

use std::fs::File;
use std::io::{self, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::addr::SockAddr;
use super::syscall::syscall6;

/// Backlog of every listening socket (the kernel caps it at `net.core.somaxconn`).
const BACKLOG: libc::c_int = 4096;

/// Creates a socket and takes ownership of the descriptor.
pub(crate) fn socket(
    domain: libc::c_int,
    kind: libc::c_int,
    proto: libc::c_int,
) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes no pointers.
    let fd = unsafe { libc::socket(domain, kind | libc::SOCK_CLOEXEC, proto) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2) and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// setsockopt with a plain value.
pub(crate) fn setsockopt<T: Copy>(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: `value` points to a live `T` of exactly the length passed.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

pub(crate) fn bind(fd: RawFd, addr: SocketAddr) -> io::Result<()> {
    let sa = SockAddr::from(addr);
    // SAFETY: `sa` holds a sockaddr of the length it reports.
    let r = unsafe { libc::bind(fd, sa.as_ptr(), sa.len()) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

pub(crate) fn listen(fd: RawFd) -> io::Result<()> {
    // SAFETY: listen(2) takes no pointers.
    let r = unsafe { libc::listen(fd, BACKLOG) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

pub(crate) fn domain(addr: SocketAddr) -> libc::c_int {
    if addr.is_ipv6() {
        libc::AF_INET6
    } else {
        libc::AF_INET
    }
}

/// A TCP listener that shares its address with the other shards' listeners: with
/// SO_REUSEPORT the kernel spreads incoming connections over them.
pub fn tcp_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let fd = socket(domain(addr), libc::SOCK_STREAM, libc::IPPROTO_TCP)?;
    let on: libc::c_int = 1;
    setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, &on)?;
    setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEPORT, &on)?;
    bind(fd.as_raw_fd(), addr)?;
    listen(fd.as_raw_fd())?;
    Ok(TcpListener::from(fd))
}

/// Fails with EADDRINUSE if anything listens on `addr`. SO_REUSEPORT would otherwise let
/// a second registrar (same user) join the first one's port and silently take half of
/// its connections.
pub fn check_port_free(addr: SocketAddr) -> io::Result<()> {
    let fd = socket(domain(addr), libc::SOCK_STREAM, libc::IPPROTO_TCP)?;
    let on: libc::c_int = 1;
    // SO_REUSEADDR alone tolerates TIME_WAIT leftovers, not a listener.
    setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, &on)?;
    bind(fd.as_raw_fd(), addr)
}

/// A non-blocking TCP socket for an outbound connection to `to` (the ring connects it).
pub fn tcp_connecting(to: SocketAddr) -> io::Result<TcpStream> {
    let fd = socket(
        domain(to),
        libc::SOCK_STREAM | libc::SOCK_NONBLOCK,
        libc::IPPROTO_TCP,
    )?;
    let stream = TcpStream::from(fd);
    // Every ASAP and ENRP exchange is a small message waiting for its answer.
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A blocking TCP connection to `to` from a local port that a listener may share: the
/// socket has SO_REUSEADDR and SO_REUSEPORT and is bound (to a port nobody else uses)
/// before it connects, so [`tcp_listener`] on its local address succeeds afterwards.
///
/// RFC 5353 §3.5.2: a registrar that takes over a dead peer's PEs reaches each one at
/// its ASAP transport, the address and port of its registrar connection as the dead
/// registrar saw it; over TCP the taker connects there. A TCP PE that is to survive a
/// takeover therefore listens on the local port of its registrar connection; Linux
/// keeps delivering the connection's segments to it by its 4-tuple and hands new SYNs
/// to the listener. (Connecting without binding first may be given a port that other
/// connections share, whose owners did not agree to share it with a listener.)
pub fn tcp_connect_shared_port(to: SocketAddr) -> io::Result<TcpStream> {
    let fd = socket(domain(to), libc::SOCK_STREAM, libc::IPPROTO_TCP)?;
    let on: libc::c_int = 1;
    for opt in [libc::SO_REUSEADDR, libc::SO_REUSEPORT] {
        setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, opt, &on)?;
    }
    let any = if to.is_ipv4() {
        SocketAddr::from(([0u8; 4], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    bind(fd.as_raw_fd(), any)?;
    let sa = SockAddr::from(to);
    // SAFETY: `sa` holds a sockaddr of the length it reports.
    if unsafe { libc::connect(fd.as_raw_fd(), sa.as_ptr(), sa.len()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let stream = TcpStream::from(fd);
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A blocking TCP connection to `to` from source address `from` (any port), for tests
/// and tools that play clients on several addresses (e.g. 127.0.0.2 on loopback).
pub fn tcp_connect_from(from: std::net::IpAddr, to: SocketAddr) -> io::Result<TcpStream> {
    let fd = socket(domain(to), libc::SOCK_STREAM, libc::IPPROTO_TCP)?;
    bind(fd.as_raw_fd(), SocketAddr::new(from, 0))?;
    let sa = SockAddr::from(to);
    // SAFETY: `sa` holds a sockaddr of the length it reports.
    if unsafe { libc::connect(fd.as_raw_fd(), sa.as_ptr(), sa.len()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let stream = TcpStream::from(fd);
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// What a send that does not wait did ([`send_now`], [`super::sctp::SendBuf::send_now`]).
#[derive(Debug)]
pub enum Sent {
    /// The socket took this many bytes (for SCTP, the whole message).
    Bytes(usize),
    /// The socket has no room now; a send that waits (the ring's) must take over.
    NoRoom,
    Failed(io::Error),
}

impl Sent {
    /// The outcome of a send system call's result `r`: the bytes taken, or `-errno`.
    pub(crate) fn of(r: isize) -> Self {
        if r >= 0 {
            return Self::Bytes(r as usize);
        }
        match -r as i32 {
            libc::EAGAIN | libc::EINTR | libc::ENOBUFS => Self::NoRoom,
            errno => Self::Failed(io::Error::from_raw_os_error(errno)),
        }
    }
}

/// Sends `bytes` on stream socket `fd` with send(2), without waiting. The system call
/// itself ([`syscall6`]): libc's `send` wrapper adds thread-cancellation bookkeeping on
/// every call, which nothing here uses.
#[inline]
pub fn send_now(fd: RawFd, bytes: &[u8]) -> Sent {
    let flags = (libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) as usize;
    let args = [
        fd as usize,
        bytes.as_ptr() as usize,
        bytes.len(),
        flags,
        0,
        0,
    ];
    // SAFETY: sendto(fd, buf, len, flags, NULL, 0): the pointer and length are those of
    // `bytes`, which the kernel only reads during the call; no address.
    Sent::of(unsafe { syscall6(libc::SYS_sendto, args) })
}

/// A connection returned by accept.
#[derive(Debug)]
pub struct Accepted {
    pub stream: TcpStream,
    pub peer: SocketAddr,
}

/// Takes ownership of the descriptor an accept completion returned and prepares it:
/// Nagle off, because every ASAP exchange is a small request waiting for its answer.
pub fn accepted(fd: i32) -> io::Result<Accepted> {
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(-fd));
    }
    // SAFETY: a successful accept completion hands over a new descriptor that nothing
    // else owns.
    let stream = TcpStream::from(unsafe { OwnedFd::from_raw_fd(fd) });
    stream.set_nodelay(true)?;
    let peer = stream.peer_addr()?;
    Ok(Accepted { stream, peer })
}

/// Raises this process's open-file limit to its hard limit (every connection is a
/// descriptor; the usual soft limit of 1024 is far below what a registrar serves).
/// Returns the new limit.
pub fn raise_fd_limit() -> io::Result<u64> {
    // SAFETY: all-zero is a valid rlimit, and getrlimit fills the one it is given.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: `lim` is a live, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } < 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: `lim` is a live rlimit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(lim.rlim_cur)
}

/// An eventfd one shard waits on (a read is always pending in its ring) and others
/// write to wake it.
#[derive(Debug)]
pub struct EventFd(File);

impl EventFd {
    /// Blocking on purpose: io_uring turns a read on a non-blocking eventfd with a zero
    /// counter into -EAGAIN instead of waiting for it.
    pub fn new() -> io::Result<Self> {
        // SAFETY: eventfd(2) takes no pointers.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by eventfd(2) and nothing else owns it.
        Ok(Self(File::from(unsafe { OwnedFd::from_raw_fd(fd) })))
    }

    /// Adds one to the counter, completing the pending read.
    pub fn notify(&self) {
        // Cannot block: the counter would have to reach 2^64 - 2.
        if let Err(e) = (&self.0).write_all(&1u64.to_ne_bytes()) {
            tracing::error!(error = %e, "eventfd write failed");
        }
    }

    pub fn raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}
