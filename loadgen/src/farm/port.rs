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
use std::net::{SocketAddr, TcpListener, TcpStream};

/// Connects to `to` from a socket that shares its (kernel-chosen) local port, so that
/// [`listen`] can bind the same port afterwards.
pub(super) fn connect_shared(to: SocketAddr) -> io::Result<TcpStream> {
    rserpool_shards::net::socket::tcp_connect_shared_port(to)
}

/// A listener on the local address and port of `conn` (made by [`connect_shared`]).
pub(super) fn listen(conn: &TcpStream) -> io::Result<TcpListener> {
    // SO_REUSEADDR and SO_REUSEPORT, as the connection has them.
    rserpool_shards::net::socket::tcp_listener(conn.local_addr()?)
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
