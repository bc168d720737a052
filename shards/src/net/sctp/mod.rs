//! Kernel SCTP: the registrar's one-to-many socket, its notifications, the recvmsg and
//! sendmsg buffers its ring operations own ([`RecvBuf`], [`SendBuf`]), non-blocking
//! association set-up ([`connectx`]), and a small blocking one-to-one [`Client`] and
//! [`Listener`].
//!
//! Socket API per RFC 6458; constants and layouts from the Linux UAPI header
//! `/usr/include/linux/sctp.h` where the libc crate lacks them.

mod client;
mod msg;

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::addr;
use super::socket::{bind, domain, listen, setsockopt, socket};

pub use client::{Client, Listener};
pub use msg::{MULTI_CONTROL, RcvInfo, Received, RecvBuf, SendBuf};

// linux/socket.h: SOL_SCTP == IPPROTO_SCTP.
const SOL_SCTP: libc::c_int = 132;
// linux/sctp.h socket options.
const SCTP_NODELAY: libc::c_int = 3;
const SCTP_RECVRCVINFO: libc::c_int = 32;
const SCTP_GET_PEER_ADDRS: libc::c_int = 108;
const SCTP_GET_LOCAL_ADDRS: libc::c_int = 109;
const SCTP_SOCKOPT_CONNECTX3: libc::c_int = 111;
const SCTP_EVENT: libc::c_int = 127;
// linux/sctp.h `enum sctp_cmsg_type`.
const SCTP_SNDINFO: libc::c_int = 2;
const SCTP_RCVINFO: libc::c_int = 3;
// linux/sctp.h: `#define SCTP_FUTURE_ASSOC 0`.
const SCTP_FUTURE_ASSOC: i32 = 0;
// linux/sctp.h `enum sctp_sn_type` (SCTP_SN_TYPE_BASE = 1 << 15).
const SCTP_ASSOC_CHANGE: u16 = 0x8001;
const SCTP_SHUTDOWN_EVENT: u16 = 0x8005;
// linux/sctp.h `enum sctp_msg_flags`.
const MSG_NOTIFICATION: libc::c_int = 0x8000;
/// linux/sctp.h `enum sctp_sinfo_flags`: send an ABORT to the peer (RFC 6458 §5.3.4).
pub const SCTP_ABORT: u16 = 1 << 2;
/// linux/sctp.h `enum sctp_sinfo_flags`: `SCTP_EOF = MSG_FIN`, shut the association
/// down gracefully once what is queued has been sent (RFC 6458 §5.3.4).
pub const SCTP_EOF: u16 = 0x200;

/// linux/sctp.h `struct sctp_event` (RFC 6458 §6.2.2).
#[repr(C)]
#[derive(Clone, Copy)]
struct SctpEvent {
    se_assoc_id: i32,
    se_type: u16,
    se_on: u8,
}

/// linux/sctp.h `struct sctp_sndinfo` is 16 bytes: sid u16, flags u16, ppid u32 (network
/// order), context u32, assoc_id i32. `struct sctp_rcvinfo` is 28 bytes with the PPID at
/// offset 8 and the association at offset 24.
const SNDINFO_LEN: usize = 16;
const RCVINFO_LEN: usize = 28;

/// An association's id on a one-to-many socket (`sctp_assoc_t`).
pub type AssocId = i32;

/// True for the errors socket(2) gives on a kernel without SCTP.
pub fn is_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EPROTONOSUPPORT | libc::ESOCKTNOSUPPORT | libc::EAFNOSUPPORT)
    )
}

/// Whether this kernel speaks SCTP (the sctp module is loaded or loadable).
pub fn available() -> bool {
    match socket(libc::AF_INET, libc::SOCK_SEQPACKET, libc::IPPROTO_SCTP) {
        Ok(_) => true,
        Err(e) => !is_unsupported(&e),
    }
}

/// Fails with EADDRINUSE if an SCTP socket listens on `addr` (see
/// [`crate::net::socket::check_port_free`] for why).
pub fn check_port_free(addr: SocketAddr) -> io::Result<()> {
    let fd = socket(domain(addr), libc::SOCK_SEQPACKET, libc::IPPROTO_SCTP)?;
    if addr.is_ipv6() {
        let off: libc::c_int = 0;
        setsockopt(fd.as_raw_fd(), libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, &off)?;
    }
    // Without SO_REUSEADDR: Linux SCTP lets a reusing bind through its fast path even
    // onto a listening port (and SCTP has no TIME_WAIT to tolerate).
    bind(fd.as_raw_fd(), addr)
}

/// A one-to-many (SOCK_SEQPACKET) listening socket as RSPLIB uses (reference §2.4),
/// dual-stack when `addr` is IPv6, with association and shutdown notifications and the
/// SCTP_RCVINFO of every message (RFC 6458 §5.3.5) turned on.
pub fn listener(addr: SocketAddr, reuse_port: bool) -> io::Result<OwnedFd> {
    let fd = socket(domain(addr), libc::SOCK_SEQPACKET, libc::IPPROTO_SCTP)?;
    let raw = fd.as_raw_fd();
    let on: libc::c_int = 1;
    if addr.is_ipv6() {
        let off: libc::c_int = 0;
        setsockopt(raw, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, &off)?;
    }
    setsockopt(raw, libc::SOL_SOCKET, libc::SO_REUSEADDR, &on)?;
    if reuse_port {
        setsockopt(raw, libc::SOL_SOCKET, libc::SO_REUSEPORT, &on)?;
    }
    setsockopt(raw, SOL_SCTP, SCTP_NODELAY, &on)?;
    setsockopt(raw, SOL_SCTP, SCTP_RECVRCVINFO, &on)?;
    for se_type in [SCTP_ASSOC_CHANGE, SCTP_SHUTDOWN_EVENT] {
        let ev = SctpEvent {
            se_assoc_id: SCTP_FUTURE_ASSOC,
            se_type,
            se_on: 1,
        };
        setsockopt(raw, SOL_SCTP, SCTP_EVENT, &ev)?;
    }
    bind(raw, addr)?;
    listen(raw)?;
    Ok(fd)
}

/// The address a socket is bound to (the port resolved when 0 was asked for).
pub fn local_addr(fd: RawFd) -> io::Result<SocketAddr> {
    let mut buf = [0u64; 16];
    let mut len = std::mem::size_of_val(&buf) as libc::socklen_t;
    // SAFETY: `buf` is writable for `len` bytes and aligned for any sockaddr.
    let r = unsafe { libc::getsockname(fd, buf.as_mut_ptr().cast(), &mut len) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let bytes = words_to_bytes(&buf);
    addr::parse(&bytes[..(len as usize).min(bytes.len())])
        .map(|(a, _)| a)
        .ok_or_else(|| io::Error::other("getsockname returned an unknown address family"))
}

/// All addresses of the peer of `assoc` (RFC 6458 §8.3, SCTP_GET_PEER_ADDRS).
pub fn peer_addrs(fd: RawFd, assoc: AssocId) -> io::Result<Vec<SocketAddr>> {
    assoc_addrs(fd, assoc, SCTP_GET_PEER_ADDRS)
}

/// This end's addresses of `assoc` (RFC 6458 §8.4, sctp_getladdrs: SCTP_GET_LOCAL_ADDRS).
pub fn local_addrs(fd: RawFd, assoc: AssocId) -> io::Result<Vec<SocketAddr>> {
    assoc_addrs(fd, assoc, SCTP_GET_LOCAL_ADDRS)
}

/// linux/sctp.h `struct sctp_getaddrs_old`, the argument of SCTP_SOCKOPT_CONNECTX3:
/// `addr_num` carries the byte length of the packed addresses there.
#[repr(C)]
struct ConnectX {
    assoc_id: AssocId,
    addr_num: libc::c_int,
    addrs: *const u8,
}

/// Starts an association to a peer reachable at `addrs` (all its addresses, one port)
/// from the one-to-many socket `fd`, without waiting for it: sctp_connectx (RFC 6458
/// §9.9) as lksctp-tools implements it, through SCTP_SOCKOPT_CONNECTX3, which hands
/// back the new association's id even when the kernel answers EINPROGRESS. The
/// outcome arrives later as an SCTP_ASSOC_CHANGE notification for that id (COMM_UP,
/// or CANT_START).
pub fn connectx(fd: RawFd, addrs: &[SocketAddr]) -> io::Result<AssocId> {
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no address to connect to",
        ));
    }
    let packed: Vec<u8> = addrs
        .iter()
        .flat_map(|a| addr::SockAddr::from(*a).as_bytes().to_vec())
        .collect();
    let mut arg = ConnectX {
        assoc_id: 0,
        addr_num: libc::c_int::try_from(packed.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many addresses"))?,
        addrs: packed.as_ptr(),
    };
    let mut len = std::mem::size_of::<ConnectX>() as libc::socklen_t;
    // The kernel waits for the association unless the file is O_NONBLOCK. The flag is
    // set only for this call: left on, an io_uring recvmsg or sendmsg that the ring
    // retries from a worker thread (after a second EAGAIN) would fail with EAGAIN
    // instead of waiting, and a failed send loses its message.
    let _nonblocking = NonBlocking::set(fd)?;
    // SAFETY: `arg` is a live, writable sctp_getaddrs_old of the length passed; its
    // `addrs` points to `packed`, `addr_num` bytes that outlive the call.
    let r = unsafe {
        libc::getsockopt(
            fd,
            SOL_SCTP,
            SCTP_SOCKOPT_CONNECTX3,
            (&raw mut arg).cast(),
            &mut len,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(e);
        }
    }
    Ok(arg.assoc_id)
}

/// O_NONBLOCK on a file until dropped.
struct NonBlocking {
    fd: RawFd,
    flags: libc::c_int,
}

impl NonBlocking {
    fn set(fd: RawFd) -> io::Result<Self> {
        // SAFETY: fcntl(F_GETFL) takes no pointers.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fcntl(F_SETFL) takes no pointers.
        if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { fd, flags })
    }
}

impl Drop for NonBlocking {
    fn drop(&mut self) {
        // SAFETY: fcntl(F_SETFL) takes no pointers.
        if unsafe { libc::fcntl(self.fd, libc::F_SETFL, self.flags) } < 0 {
            tracing::error!(error = %io::Error::last_os_error(), "cannot clear O_NONBLOCK");
        }
    }
}

/// SCTP_GET_PEER_ADDRS or SCTP_GET_LOCAL_ADDRS of `assoc`.
fn assoc_addrs(fd: RawFd, assoc: AssocId, optname: libc::c_int) -> io::Result<Vec<SocketAddr>> {
    // struct sctp_getaddrs { sctp_assoc_t assoc_id; __u32 addr_num; __u8 addrs[]; } with
    // room for 32 sockaddr_in6.
    let mut buf = [0u64; 1 + 32 * 28 / 8];
    buf[0] = u64::from_ne_bytes({
        let mut h = [0u8; 8];
        h[..4].copy_from_slice(&assoc.to_ne_bytes());
        h
    });
    let mut len = std::mem::size_of_val(&buf) as libc::socklen_t;
    // SAFETY: `buf` is writable for `len` bytes and starts with the assoc_id the kernel
    // reads.
    let r = unsafe { libc::getsockopt(fd, SOL_SCTP, optname, buf.as_mut_ptr().cast(), &mut len) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let bytes = words_to_bytes(&buf);
    let count = u32::from_ne_bytes(bytes[4..8].try_into().unwrap_or_default());
    // The length the kernel returns counts the 8-byte header for SCTP_GET_PEER_ADDRS
    // but not for SCTP_GET_LOCAL_ADDRS (net/sctp/socket.c says so: "We should have
    // accounted for sizeof(struct sctp_getaddrs) too, but we can't change it anymore").
    let end = match optname {
        SCTP_GET_LOCAL_ADDRS => 8 + len as usize,
        _ => len as usize,
    };
    let mut rest = &bytes[8..end.clamp(8, bytes.len())];
    let mut out = Vec::new();
    for _ in 0..count {
        let Some((a, n)) = addr::parse(rest) else {
            break;
        };
        out.push(a);
        rest = &rest[n..];
    }
    Ok(out)
}

/// `msg_controllen` is a size_t on glibc and a socklen_t on musl.
#[allow(clippy::unnecessary_cast)]
fn control_len(hdr: &libc::msghdr) -> usize {
    hdr.msg_controllen as usize
}

fn words_to_bytes<const N: usize>(words: &[u64; N]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_ne_bytes()).collect()
}

/// What an association change notification reports (RFC 6458 §6.1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AssocState {
    CommUp,
    CommLost,
    Restart,
    ShutdownComplete,
    CantStart,
    Other(u16),
}

/// An SCTP notification the registrar acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notification {
    AssocChange {
        assoc: AssocId,
        state: AssocState,
    },
    /// The peer sent SHUTDOWN (RFC 6458 §6.1.5).
    Shutdown {
        assoc: AssocId,
    },
    Other {
        kind: u16,
    },
}

/// Parses `struct sctp_notification` (linux/sctp.h): sn_type u16, sn_flags u16,
/// sn_length u32, then the event.
pub fn parse_notification(data: &[u8]) -> Option<Notification> {
    let kind = u16::from_ne_bytes(data.get(..2)?.try_into().ok()?);
    let i32_at = |at: usize| -> Option<i32> {
        Some(i32::from_ne_bytes(data.get(at..at + 4)?.try_into().ok()?))
    };
    Some(match kind {
        // struct sctp_assoc_change: ..., sac_state u16 at 8, ..., sac_assoc_id at 16.
        SCTP_ASSOC_CHANGE => {
            let state = u16::from_ne_bytes(data.get(8..10)?.try_into().ok()?);
            let state = match state {
                0 => AssocState::CommUp,
                1 => AssocState::CommLost,
                2 => AssocState::Restart,
                3 => AssocState::ShutdownComplete,
                4 => AssocState::CantStart,
                s => AssocState::Other(s),
            };
            Notification::AssocChange {
                assoc: i32_at(16)?,
                state,
            }
        }
        // struct sctp_shutdown_event: sse_assoc_id at 8.
        SCTP_SHUTDOWN_EVENT => Notification::Shutdown { assoc: i32_at(8)? },
        kind => Notification::Other { kind },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_parse() {
        let mut n = vec![0u8; 20];
        n[..2].copy_from_slice(&SCTP_ASSOC_CHANGE.to_ne_bytes());
        n[8..10].copy_from_slice(&1u16.to_ne_bytes());
        n[16..20].copy_from_slice(&42i32.to_ne_bytes());
        assert_eq!(
            parse_notification(&n),
            Some(Notification::AssocChange {
                assoc: 42,
                state: AssocState::CommLost
            })
        );
        assert_eq!(parse_notification(&n[..10]), None);
        let mut s = vec![0u8; 12];
        s[..2].copy_from_slice(&SCTP_SHUTDOWN_EVENT.to_ne_bytes());
        s[8..12].copy_from_slice(&5i32.to_ne_bytes());
        assert_eq!(
            parse_notification(&s),
            Some(Notification::Shutdown { assoc: 5 })
        );
    }
}
