//! An io_uring whose operations own their buffers.
//!
//! The kernel writes into (or reads from) an operation's buffer until its completion
//! arrives, possibly long after the caller has moved on. So every buffer is moved into
//! the [`Ring`] when the operation is pushed and handed back with its [`Completion`];
//! the caller never holds a buffer the kernel may touch. A ring torn down with
//! operations still pending leaks their buffers rather than free memory the kernel may
//! still write (see `Drop`).
//!
//! Only opcodes of Linux 6.1 are used (the SCTP lab runs Debian's 6.1 kernel):
//! multishot accept (5.19), connect (5.5), recv/send (5.6), recvmsg/sendmsg (5.3),
//! read (5.6), cancel-any and cancel-by-fd (5.19), and the extended enter argument for
//! timed waits (5.11).

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use io_uring::{IoUring, cqueue, opcode, squeue, types};

use super::addr::SockAddr;
use super::sctp::{RecvBuf, SendBuf};
use super::udp::Datagram;

/// Submission queue size; the completion queue gets four times as many entries, and
/// the kernel keeps overflowing completions rather than dropping them (IORING_FEAT_NODROP).
const SQ_ENTRIES: u32 = 1024;
/// `user_data` of cancel requests, which own no slot.
const CANCEL: u64 = u64::MAX;

/// A buffer owned by an in-flight operation, returned with its completion.
#[derive(Debug, Default)]
pub enum OpBuf {
    #[default]
    None,
    /// recv/read fill the spare capacity (the length grows by the bytes received); send
    /// sends the whole vector.
    Bytes(Vec<u8>),
    /// An SCTP recvmsg with its control buffer.
    Recv(Box<RecvBuf>),
    /// An SCTP sendmsg with its SCTP_SNDINFO.
    Send(Box<SendBuf>),
    /// The address a connect goes to.
    Addr(Box<ConnectAddr>),
    /// A UDP recvmsg with room for the sender's address.
    Datagram(Box<Datagram>),
}

/// The peer address of a connect in flight (the kernel reads it until the connect
/// completes).
pub struct ConnectAddr(SockAddr);

impl std::fmt::Debug for ConnectAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnectAddr")
    }
}

/// A finished operation (or one shot of a multishot one).
#[derive(Debug)]
pub struct Completion {
    /// The caller's token given when the operation was pushed.
    pub token: u64,
    /// The syscall-style result: non-negative on success, `-errno` on failure.
    pub result: i32,
    /// A multishot operation stays armed and will complete again.
    pub more: bool,
    /// The operation's buffer (only on the final completion of an operation).
    pub buf: OpBuf,
}

impl Completion {
    /// `result` as an `io::Result`.
    pub fn io_result(&self) -> io::Result<u32> {
        if self.result < 0 {
            Err(io::Error::from_raw_os_error(-self.result))
        } else {
            Ok(self.result as u32)
        }
    }
}

#[derive(Debug)]
enum Kind {
    /// The kernel fills `Bytes` spare capacity; the length is set on completion.
    Fill,
    /// recvmsg into a `RecvBuf`.
    RecvMsg,
    /// recvmsg into a `Datagram`.
    RecvFrom,
    /// Nothing to fix up on completion.
    Plain,
}

#[derive(Debug)]
struct Pending {
    token: u64,
    kind: Kind,
    buf: OpBuf,
}

/// One shard's ring.
pub struct Ring {
    uring: IoUring,
    /// Indexed by `user_data`; a slot is freed by the operation's final completion.
    ops: Vec<Option<Pending>>,
    free: Vec<u32>,
    live: usize,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring").field("live", &self.live).finish()
    }
}

/// Checks that this kernel (and any seccomp profile) allows io_uring with the features
/// the shards rely on.
pub fn probe() -> io::Result<()> {
    Ring::new().map(drop)
}

impl Ring {
    pub fn new() -> io::Result<Self> {
        // Cooperative task running and a single issuer save interrupts and locking; a
        // kernel without them (before 5.19 / 6.0) still works with the plain setup.
        let uring = IoUring::builder()
            .setup_cqsize(SQ_ENTRIES * 4)
            .setup_submit_all()
            .setup_coop_taskrun()
            .setup_taskrun_flag()
            .setup_single_issuer()
            .build(SQ_ENTRIES)
            .or_else(|_| {
                IoUring::builder()
                    .setup_cqsize(SQ_ENTRIES * 4)
                    .build(SQ_ENTRIES)
            })?;
        if !uring.params().is_feature_ext_arg() || !uring.params().is_feature_nodrop() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "io_uring lacks timed waits (IORING_FEAT_EXT_ARG) or NODROP; Linux 5.11+ needed",
            ));
        }
        Ok(Self {
            uring,
            ops: Vec::new(),
            free: Vec::new(),
            live: 0,
        })
    }

    /// Operations not yet completed.
    pub fn live(&self) -> usize {
        self.live
    }

    /// Multishot accept on a listening socket; each completion's result is a new fd.
    pub fn accept_multi(&mut self, fd: RawFd, token: u64) -> io::Result<()> {
        let entry = opcode::AcceptMulti::new(types::Fd(fd))
            .flags(libc::SOCK_CLOEXEC)
            .build();
        self.push(entry, token, Kind::Plain, OpBuf::None)
    }

    /// Connects a (non-blocking) stream socket to `addr`; the result is 0 once connected.
    pub fn connect(&mut self, fd: RawFd, addr: std::net::SocketAddr, token: u64) -> io::Result<()> {
        let addr = Box::new(ConnectAddr(SockAddr::from(addr)));
        let entry = opcode::Connect::new(types::Fd(fd), addr.0.as_ptr(), addr.0.len()).build();
        self.push(entry, token, Kind::Plain, OpBuf::Addr(addr))
    }

    /// Receives into `buf`'s spare capacity (which must not be empty).
    pub fn recv(&mut self, fd: RawFd, mut buf: Vec<u8>, token: u64) -> io::Result<()> {
        let spare = buf.spare_capacity_mut();
        assert!(!spare.is_empty(), "recv needs spare capacity");
        let len = u32::try_from(spare.len()).unwrap_or(u32::MAX);
        let entry = opcode::Recv::new(types::Fd(fd), spare.as_mut_ptr().cast(), len).build();
        self.push(entry, token, Kind::Fill, OpBuf::Bytes(buf))
    }

    /// Reads into `buf`'s spare capacity (an eventfd's counter).
    pub fn read(&mut self, fd: RawFd, mut buf: Vec<u8>, token: u64) -> io::Result<()> {
        let spare = buf.spare_capacity_mut();
        assert!(!spare.is_empty(), "read needs spare capacity");
        let len = u32::try_from(spare.len()).unwrap_or(u32::MAX);
        let entry = opcode::Read::new(types::Fd(fd), spare.as_mut_ptr().cast(), len).build();
        self.push(entry, token, Kind::Fill, OpBuf::Bytes(buf))
    }

    /// Sends all of `buf` (the completion tells how much went).
    pub fn send(&mut self, fd: RawFd, buf: Vec<u8>, token: u64) -> io::Result<()> {
        let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        // MSG_NOSIGNAL: a peer that reset must give EPIPE, not kill the process.
        let entry = opcode::Send::new(types::Fd(fd), buf.as_ptr(), len)
            .flags(libc::MSG_NOSIGNAL)
            .build();
        self.push(entry, token, Kind::Plain, OpBuf::Bytes(buf))
    }

    /// recvmsg into an SCTP receive buffer.
    pub fn recvmsg(&mut self, fd: RawFd, mut buf: Box<RecvBuf>, token: u64) -> io::Result<()> {
        let entry = opcode::RecvMsg::new(types::Fd(fd), buf.prepare()).build();
        self.push(entry, token, Kind::RecvMsg, OpBuf::Recv(buf))
    }

    /// recvmsg of one UDP datagram and its source address.
    pub fn recvmsg_from(
        &mut self,
        fd: RawFd,
        mut buf: Box<Datagram>,
        token: u64,
    ) -> io::Result<()> {
        let entry = opcode::RecvMsg::new(types::Fd(fd), buf.prepare()).build();
        self.push(entry, token, Kind::RecvFrom, OpBuf::Datagram(buf))
    }

    /// sendmsg of an SCTP send buffer.
    pub fn sendmsg(&mut self, fd: RawFd, mut buf: Box<SendBuf>, token: u64) -> io::Result<()> {
        let entry = opcode::SendMsg::new(types::Fd(fd), buf.prepare())
            .flags(libc::MSG_NOSIGNAL as u32)
            .build();
        self.push(entry, token, Kind::Plain, OpBuf::Send(buf))
    }

    /// Asks the kernel to cancel every pending operation (each then completes, usually
    /// with `-ECANCELED`).
    pub fn cancel_all(&mut self) -> io::Result<()> {
        let entry = opcode::AsyncCancel2::new(types::CancelBuilder::any())
            .build()
            .user_data(CANCEL);
        self.push_entry(&entry)
    }

    /// Asks the kernel to cancel every pending operation on `fd` (each then completes,
    /// usually with `-ECANCELED`).
    pub fn cancel_fd(&mut self, fd: RawFd) -> io::Result<()> {
        let entry = opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fd(fd)).all())
            .build()
            .user_data(CANCEL);
        self.push_entry(&entry)
    }

    /// Submits what was pushed and waits until a completion is ready, `timeout` passed
    /// (`None`: no limit; zero: do not wait) or a signal arrived.
    pub fn submit_and_wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let submitter = self.uring.submitter();
        let r = match timeout {
            Some(d) if d.is_zero() => submitter.submit(),
            Some(d) => {
                let ts = types::Timespec::from(d);
                let args = types::SubmitArgs::new().timespec(&ts);
                submitter.submit_with_args(1, &args)
            }
            None => submitter.submit_and_wait(1),
        };
        match r {
            Ok(_) => Ok(()),
            // A timeout, a signal, or a full completion queue: all mean "look at the
            // completion queue now".
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Moves up to `max` completions into `out`; returns how many.
    pub fn complete(&mut self, max: usize, out: &mut Vec<Completion>) -> usize {
        let mut n = 0;
        let Self {
            uring,
            ops,
            free,
            live,
            ..
        } = self;
        for cqe in uring.completion().take(max) {
            n += 1;
            let slot = cqe.user_data();
            if slot == CANCEL {
                continue;
            }
            let result = cqe.result();
            let more = cqueue::more(cqe.flags());
            let Some(entry) = ops.get_mut(slot as usize) else {
                continue;
            };
            if more {
                if let Some(p) = entry {
                    out.push(Completion {
                        token: p.token,
                        result,
                        more,
                        buf: OpBuf::None,
                    });
                }
                continue;
            }
            let Some(mut p) = entry.take() else {
                continue;
            };
            free.push(slot as u32);
            *live -= 1;
            if result > 0 {
                match (&p.kind, &mut p.buf) {
                    (Kind::Fill, OpBuf::Bytes(v)) => {
                        let filled = (result as usize).min(v.capacity() - v.len());
                        // SAFETY: the kernel wrote `result` bytes into the spare capacity
                        // this operation was given (never more than it was told), so
                        // those bytes are initialised.
                        unsafe { v.set_len(v.len() + filled) };
                    }
                    (Kind::RecvMsg, OpBuf::Recv(r)) => r.complete(result as usize),
                    (Kind::RecvFrom, OpBuf::Datagram(d)) => d.complete(result as usize),
                    _ => {}
                }
            }
            out.push(Completion {
                token: p.token,
                result,
                more: false,
                buf: p.buf,
            });
        }
        n
    }

    fn push(&mut self, entry: squeue::Entry, token: u64, kind: Kind, buf: OpBuf) -> io::Result<()> {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.ops.push(None);
                (self.ops.len() - 1) as u32
            }
        };
        let entry = entry.user_data(u64::from(slot));
        if let Err(e) = self.push_entry(&entry) {
            // Never submitted: the buffer can be dropped.
            self.free.push(slot);
            return Err(e);
        }
        // Moving a Vec or Box does not move the heap memory the entry points into.
        self.ops[slot as usize] = Some(Pending { token, kind, buf });
        self.live += 1;
        Ok(())
    }

    fn push_entry(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        // SAFETY: every buffer an entry points to is owned by `self.ops` from the push
        // until its final completion is reaped (or leaked by `Drop`), so it outlives the
        // kernel's use of it; file descriptors are only numbers to the kernel and a stale
        // one fails the operation rather than touching memory.
        unsafe {
            if self.uring.submission().push(entry).is_ok() {
                return Ok(());
            }
            self.uring.submit()?;
            self.uring
                .submission()
                .push(entry)
                .map_err(|_| io::Error::other("io_uring submission queue stays full"))
        }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        if self.live > 0 {
            // The kernel may still complete these after the ring's fd is closed; their
            // buffers must stay valid forever.
            for p in self.ops.drain(..).flatten() {
                std::mem::forget(p.buf);
            }
        }
    }
}
