//! A blocking one-to-one (SOCK_STREAM) SCTP client, and a listener that accepts such
//! clients, for tests and tools.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use super::msg::{find_rcvinfo, put_sndinfo};
use super::{SCTP_NODELAY, SCTP_RECVRCVINFO, SOL_SCTP, control_len, words_to_bytes};
use crate::net::addr::SockAddr;
use crate::net::socket::{bind, domain, listen, setsockopt, socket};

/// A blocking one-to-one (SOCK_STREAM) SCTP client, for tests and tools.
#[derive(Debug)]
pub struct Client {
    fd: OwnedFd,
}

impl AsRawFd for Client {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

/// A blocking one-to-one (SOCK_STREAM) SCTP listening socket, for tests and tools: e.g.
/// the peer of an association the registrar opens.
#[derive(Debug)]
pub struct Listener {
    fd: OwnedFd,
}

impl Listener {
    pub fn bind(addr: SocketAddr) -> io::Result<Self> {
        let fd = socket(domain(addr), libc::SOCK_STREAM, libc::IPPROTO_SCTP)?;
        let on: libc::c_int = 1;
        setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, &on)?;
        bind(fd.as_raw_fd(), addr)?;
        listen(fd.as_raw_fd())?;
        Ok(Self { fd })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        super::local_addr(self.fd.as_raw_fd())
    }

    /// Waits for the next association.
    pub fn accept(&self) -> io::Result<Client> {
        // SAFETY: accept4(2) may take null address pointers.
        let fd = unsafe {
            libc::accept4(
                self.fd.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by accept4(2) and nothing else owns it.
        let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let on: libc::c_int = 1;
        setsockopt(fd.as_raw_fd(), SOL_SCTP, SCTP_NODELAY, &on)?;
        setsockopt(fd.as_raw_fd(), SOL_SCTP, SCTP_RECVRCVINFO, &on)?;
        Ok(Client { fd })
    }
}

impl Client {
    pub fn connect(to: SocketAddr) -> io::Result<Self> {
        let fd = socket(domain(to), libc::SOCK_STREAM, libc::IPPROTO_SCTP)?;
        let on: libc::c_int = 1;
        setsockopt(fd.as_raw_fd(), SOL_SCTP, SCTP_NODELAY, &on)?;
        setsockopt(fd.as_raw_fd(), SOL_SCTP, SCTP_RECVRCVINFO, &on)?;
        settle_connect(|| connect(fd.as_raw_fd(), to), None)?;
        Ok(Self { fd })
    }

    /// Like [`Client::connect`], giving up after `timeout` (the kernel's wait for the
    /// association is bounded by SO_SNDTIMEO; an unreachable peer otherwise takes the
    /// whole INIT retransmission schedule, minutes).
    pub fn connect_timeout(to: SocketAddr, timeout: Duration) -> io::Result<Self> {
        let fd = socket(domain(to), libc::SOCK_STREAM, libc::IPPROTO_SCTP)?;
        let on: libc::c_int = 1;
        setsockopt(fd.as_raw_fd(), SOL_SCTP, SCTP_NODELAY, &on)?;
        setsockopt(fd.as_raw_fd(), SOL_SCTP, SCTP_RECVRCVINFO, &on)?;
        set_timeout(fd.as_raw_fd(), libc::SO_SNDTIMEO, timeout)?;
        settle_connect(
            || connect(fd.as_raw_fd(), to),
            Some(Instant::now() + timeout),
        )?;
        // Sends are small and the association is up: no bound needed after this.
        set_timeout(fd.as_raw_fd(), libc::SO_SNDTIMEO, Duration::ZERO)?;
        Ok(Self { fd })
    }

    /// The local address of the association (its primary, as bound).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        super::local_addr(self.fd.as_raw_fd())
    }

    /// Every local address of the association, as the peer knows this end
    /// (SCTP_GET_LOCAL_ADDRS; a one-to-one socket has one association, whatever the id).
    pub fn local_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        super::local_addrs(self.fd.as_raw_fd(), 0)
    }

    /// Another handle on the same association (e.g. for a reader thread).
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(Self {
            fd: self.fd.try_clone()?,
        })
    }

    /// Bounds every later `recv` (a guard against hangs); a `recv` that waited this long
    /// fails with `WouldBlock`. Zero waits for ever.
    pub fn set_read_timeout(&self, d: Duration) -> io::Result<()> {
        set_timeout(self.fd.as_raw_fd(), libc::SO_RCVTIMEO, d)
    }

    /// Sends one message with `ppid`.
    pub fn send(&self, ppid: u32, data: &[u8]) -> io::Result<()> {
        self.send_flags(ppid, 0, data)
    }

    /// Shuts the association down gracefully (RFC 4960 §9.2); a reader on another
    /// handle then sees the end.
    pub fn shutdown(&self) -> io::Result<()> {
        // SAFETY: shutdown(2) takes no pointers.
        let r = unsafe { libc::shutdown(self.fd.as_raw_fd(), libc::SHUT_RDWR) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Aborts the association (RFC 4960 §9.1) instead of shutting it down gracefully:
    /// a zero linger makes the close send ABORT (Linux refuses the SCTP_ABORT send flag
    /// on one-to-one sockets). Other handles on the association (`try_clone`, or an
    /// io_uring operation in flight) keep it open until they go too.
    pub fn abort(self) -> io::Result<()> {
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        setsockopt(
            self.fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger,
        )?;
        drop(self);
        Ok(())
    }

    fn send_flags(&self, ppid: u32, flags: u16, data: &[u8]) -> io::Result<()> {
        let mut control = [0u64; 8];
        let control_len = put_sndinfo(&mut control, 0, ppid, flags);
        let mut iov = libc::iovec {
            iov_base: data.as_ptr().cast_mut().cast(),
            iov_len: data.len(),
        };
        // SAFETY: msghdr is plain data; every pointer is set below.
        let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
        hdr.msg_iov = &raw mut iov;
        hdr.msg_iovlen = 1;
        hdr.msg_control = control.as_mut_ptr().cast();
        hdr.msg_controllen = control_len as _;
        // SAFETY: `hdr` points to `iov` (over `data`, only read) and `control`, all live
        // for the call.
        let r = unsafe { libc::sendmsg(self.fd.as_raw_fd(), &hdr, libc::MSG_NOSIGNAL) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// One recvmsg into `buf`: the bytes read (0 at the end of the association),
    /// whether they end a message, and the message's PPID (from SCTP_RCVINFO, 0 if
    /// absent).
    fn recv_part(&self, buf: &mut [u8]) -> io::Result<(usize, bool, u32)> {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut control = [0u64; 16];
        // SAFETY: msghdr is plain data; every pointer is set below.
        let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
        hdr.msg_iov = &raw mut iov;
        hdr.msg_iovlen = 1;
        hdr.msg_control = control.as_mut_ptr().cast();
        hdr.msg_controllen = std::mem::size_of_val(&control) as _;
        // SAFETY: `hdr` points to `iov` (over `buf`) and `control`, writable and live
        // for the call.
        let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut hdr, 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let len = control_len(&hdr).min(std::mem::size_of_val(&control));
        let bytes = words_to_bytes(&control);
        let ppid = find_rcvinfo(&bytes[..len]).map_or(0, |i| i.ppid);
        Ok((n as usize, hdr.msg_flags & libc::MSG_EOR != 0, ppid))
    }

    /// Receives one whole message into the start of `buf` without allocating; returns
    /// its length and PPID, or `None` at the end of the association. A message longer
    /// than `buf` is an error (`InvalidData`).
    pub fn recv_into(&self, buf: &mut [u8]) -> io::Result<Option<(usize, u32)>> {
        match self.recv_part(buf)? {
            (0, _, _) => Ok(None),
            (n, true, ppid) => Ok(Some((n, ppid))),
            (_, false, _) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("an SCTP message longer than {} bytes", buf.len()),
            )),
        }
    }

    /// Receives one whole message into `buf`; returns its PPID, or `None` at the end of
    /// the association.
    pub fn recv(&self, buf: &mut Vec<u8>) -> io::Result<Option<u32>> {
        buf.clear();
        let mut chunk = vec![0u8; 65_536];
        loop {
            match self.recv_part(&mut chunk)? {
                (0, _, _) => return Ok(None),
                (n, end, ppid) => {
                    buf.extend_from_slice(&chunk[..n]);
                    if end {
                        return Ok(Some(ppid));
                    }
                }
            }
        }
    }
}

/// connect(2) on a blocking socket.
fn connect(fd: std::os::fd::RawFd, to: SocketAddr) -> io::Result<()> {
    let sa = SockAddr::from(to);
    // SAFETY: `sa` holds a sockaddr of the length it reports.
    let r = unsafe { libc::connect(fd, sa.as_ptr(), sa.len()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Runs a blocking `connect` until the association is up, failed, or `deadline` passed.
///
/// A signal, or io_uring task work queued for the thread, can cut the kernel's wait
/// for the association short while the association goes on being set up: the call
/// fails with EINTR, or the kernel restarts it and the restarted call finds the
/// association already there, EALREADY while it is still being set up and EISCONN
/// once it is up. Those are not failures: call again until EISCONN. A wait cut short
/// by SO_SNDTIMEO reports EINPROGRESS: that is the timeout.
fn settle_connect(
    mut connect: impl FnMut() -> io::Result<()>,
    deadline: Option<Instant>,
) -> io::Result<()> {
    let timed_out = |e| io::Error::new(io::ErrorKind::TimedOut, e);
    loop {
        let e = match connect() {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        match e.raw_os_error() {
            Some(libc::EISCONN) => return Ok(()),
            Some(libc::EINTR) => {}
            Some(libc::EALREADY) => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Err(timed_out(e));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Some(libc::EINPROGRESS) => return Err(timed_out(e)),
            _ => return Err(e),
        }
    }
}

/// SO_RCVTIMEO or SO_SNDTIMEO; zero means none. A non-zero timeout shorter than the
/// timeval's resolution is rounded up to 1 µs, so it never turns into "none".
fn set_timeout(fd: std::os::fd::RawFd, which: libc::c_int, d: Duration) -> io::Result<()> {
    let d = if d.is_zero() {
        d
    } else {
        d.max(Duration::from_micros(1))
    };
    let tv = libc::timeval {
        tv_sec: d.as_secs() as libc::time_t,
        tv_usec: d.subsec_micros() as libc::suseconds_t,
    };
    setsockopt(fd, libc::SOL_SOCKET, which, &tv)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connect whose successive calls fail with these errnos (0: succeeds).
    fn calls(
        errnos: &[i32],
    ) -> (
        impl FnMut() -> io::Result<()>,
        std::rc::Rc<std::cell::Cell<usize>>,
    ) {
        let n = std::rc::Rc::new(std::cell::Cell::new(0));
        let (errnos, count) = (errnos.to_vec(), n.clone());
        let f = move || {
            let i = count.get();
            count.set(i + 1);
            match errnos[i] {
                0 => Ok(()),
                e => Err(io::Error::from_raw_os_error(e)),
            }
        };
        (f, n)
    }

    #[test]
    fn an_interrupted_connect_waits_for_the_association() {
        // Cut short by a signal, restarted while the association is set up, then up.
        let (f, n) = calls(&[libc::EINTR, libc::EALREADY, libc::EALREADY, libc::EISCONN]);
        settle_connect(f, None).unwrap();
        assert_eq!(n.get(), 4);
        // Restarted by the kernel after the association came up.
        let (f, n) = calls(&[libc::EISCONN]);
        settle_connect(f, None).unwrap();
        assert_eq!(n.get(), 1);
    }

    #[test]
    fn a_failed_or_timed_out_connect_is_an_error() {
        let (f, _) = calls(&[libc::EINTR, libc::ECONNREFUSED]);
        let e = settle_connect(f, None).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ECONNREFUSED));
        let (f, _) = calls(&[libc::EINPROGRESS]);
        let e = settle_connect(f, None).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        // Still being set up when the deadline passes.
        let (f, n) = calls(&[libc::EALREADY; 64]);
        let e = settle_connect(f, Some(Instant::now())).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(n.get(), 1);
    }
}
