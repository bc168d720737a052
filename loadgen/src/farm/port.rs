//! A TCP registrar connection whose local port also takes connections.
//!
//! RFC 5353 §3.5.2: a registrar that takes over a dead peer's PEs reaches each one at
//! its ASAP transport, the address and port of its registrar connection as the dead
//! registrar saw it; over TCP the taker connects there. So a TCP PE that is to survive
//! a takeover listens on the local port of its registrar connection: the connected
//! socket and a listener share the port, both with SO_REUSEPORT. Linux allows that
//! (same user), keeps delivering the connection's segments to the connected socket by
//! its 4-tuple, and hands new SYNs to the listener.

use std::io;
use std::mem::size_of;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Connects to `to` from a socket that shares its (kernel-chosen) local port, so that
/// [`listen`] can bind the same port afterwards.
pub(super) fn connect_shared(to: SocketAddr) -> io::Result<TcpStream> {
    let (domain, any) = if to.is_ipv4() {
        (libc::AF_INET, SocketAddr::from(([0u8; 4], 0)))
    } else {
        (libc::AF_INET6, SocketAddr::from(([0u16; 8], 0)))
    };
    // SAFETY: socket(2) takes no pointers.
    let fd = unsafe { libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2) and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let on: libc::c_int = 1;
    for opt in [libc::SO_REUSEADDR, libc::SO_REUSEPORT] {
        // SAFETY: `on` is a live c_int and the length says so.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&raw const on).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // Bound before connecting: bind picks a port no other socket uses, where connect
    // alone may share one with connections elsewhere (whose owners did not agree to
    // share it with a listener, so the listener could not have it).
    let (addr, len) = sockaddr(any);
    // SAFETY: `addr` is a live sockaddr_storage holding a sockaddr of `len` bytes.
    if unsafe { libc::bind(fd.as_raw_fd(), (&raw const addr).cast(), len) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let (addr, len) = sockaddr(to);
    // SAFETY: as for bind.
    if unsafe { libc::connect(fd.as_raw_fd(), (&raw const addr).cast(), len) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let stream = TcpStream::from(fd);
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A listener on the local address and port of `conn` (made by [`connect_shared`]).
pub(super) fn listen(conn: &TcpStream) -> io::Result<TcpListener> {
    // SO_REUSEADDR and SO_REUSEPORT, as the connection has them.
    rserpool_shards::net::socket::tcp_listener(conn.local_addr()?)
}

fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero bytes are a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in and aligned for it.
            unsafe { (&raw mut storage).cast::<libc::sockaddr_in>().write(sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in6 and aligned for it.
            unsafe { (&raw mut storage).cast::<libc::sockaddr_in6>().write(sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    #[test]
    fn the_connection_and_a_listener_share_the_local_port() {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut conn = connect_shared(server.local_addr().unwrap()).unwrap();
        let (mut far, _) = server.accept().unwrap();
        let listener = listen(&conn).unwrap();
        assert_eq!(listener.local_addr().unwrap(), conn.local_addr().unwrap());

        // A newcomer reaches the listener; the connection still carries its own bytes.
        let mut newcomer = TcpStream::connect(conn.local_addr().unwrap()).unwrap();
        let (mut accepted, _) = listener.accept().unwrap();
        newcomer.write_all(b"new").unwrap();
        far.write_all(b"old").unwrap();
        let mut b = [0; 3];
        accepted.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"new");
        conn.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"old");
    }

    #[test]
    fn many_connections_each_get_a_port_of_their_own() {
        // Plain connections elsewhere hold ports that a socket which only connects may
        // be given too (then its listener fails); with these numbers that happens in
        // about one run of four, so a regression shows soon if not at once.
        let elsewhere = TcpListener::bind("127.0.0.2:0").unwrap();
        let _plain: Vec<TcpStream> = (0..100)
            .map(|_| TcpStream::connect(elsewhere.local_addr().unwrap()).unwrap())
            .collect();
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let pairs: Vec<_> = (0..100)
            .map(|_| {
                let c = connect_shared(server.local_addr().unwrap()).unwrap();
                let l = listen(&c).unwrap();
                (c, l)
            })
            .collect();
        assert_eq!(pairs.len(), 100);
    }
}
