//! Conversions between `std::net::SocketAddr` and the kernel's sockaddr structures.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// A sockaddr_in or sockaddr_in6 in storage large enough for either.
#[derive(Clone, Copy)]
pub(crate) struct SockAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl SockAddr {
    pub(crate) fn as_ptr(&self) -> *const libc::sockaddr {
        (&raw const self.storage).cast()
    }

    pub(crate) fn len(&self) -> libc::socklen_t {
        self.len
    }

    /// The sockaddr's bytes, as packed address lists (sctp_connectx) take them.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        // SAFETY: `storage` is plain data, fully initialised, and `len` never exceeds
        // its size.
        unsafe { std::slice::from_raw_parts(self.as_ptr().cast::<u8>(), self.len as usize) }
    }
}

impl From<SocketAddr> for SockAddr {
    fn from(addr: SocketAddr) -> Self {
        // SAFETY: sockaddr_storage is plain data for which all-zero bytes are valid.
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
                // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
                unsafe { std::ptr::write((&raw mut storage).cast(), sin) };
                std::mem::size_of::<libc::sockaddr_in>()
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
                // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
                unsafe { std::ptr::write((&raw mut storage).cast(), sin6) };
                std::mem::size_of::<libc::sockaddr_in6>()
            }
        };
        Self {
            storage,
            len: len as libc::socklen_t,
        }
    }
}

/// Reads one sockaddr_in/sockaddr_in6 from the start of `bytes` (as packed by
/// SCTP_GET_PEER_ADDRS or returned by getsockname); returns it and its length.
pub(crate) fn parse(bytes: &[u8]) -> Option<(SocketAddr, usize)> {
    let family = u16::from_ne_bytes(bytes.get(..2)?.try_into().ok()?);
    match i32::from(family) {
        libc::AF_INET => {
            let b = bytes.get(..std::mem::size_of::<libc::sockaddr_in>())?;
            let port = u16::from_be_bytes([b[2], b[3]]);
            let ip = Ipv4Addr::new(b[4], b[5], b[6], b[7]);
            Some((SocketAddr::V4(SocketAddrV4::new(ip, port)), b.len()))
        }
        libc::AF_INET6 => {
            let b = bytes.get(..std::mem::size_of::<libc::sockaddr_in6>())?;
            let port = u16::from_be_bytes([b[2], b[3]]);
            let flow = u32::from_ne_bytes(b[4..8].try_into().ok()?);
            let ip: [u8; 16] = b[8..24].try_into().ok()?;
            let scope = u32::from_ne_bytes(b[24..28].try_into().ok()?);
            let a = SocketAddrV6::new(Ipv6Addr::from(ip), port, flow, scope);
            Some((SocketAddr::V6(a), b.len()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddr_round_trips() {
        for a in ["127.0.0.1:3863", "[::1]:9901", "[fe80::1%2]:1"] {
            let a: SocketAddr = a.parse().unwrap();
            let sa = SockAddr::from(a);
            assert_eq!(parse(sa.as_bytes()), Some((a, sa.len() as usize)));
        }
    }
}
