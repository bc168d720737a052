//! An io_uring whose operations own their buffers.
//!
//! The kernel writes into (or reads from) an operation's buffer until its completion
//! arrives, possibly long after the caller has moved on. So every buffer is moved into
//! the [`Ring`] when the operation is pushed and handed back with its [`Completion`];
//! the caller never holds a buffer the kernel may touch. A ring torn down with
//! operations still pending leaks their buffers rather than free memory the kernel may
//! still write (see `Drop`).
//!
//! Only what Linux 6.1 has is used (the SCTP lab runs Debian's 6.1 kernel): multishot
//! accept (5.19), connect (5.5), recv/send (5.6), multishot recv into a provided-buffer
//! ring (6.0, 5.19), recvmsg/sendmsg (5.3), multishot recvmsg (6.0), read (5.6), cancel-any and cancel-by-fd
//! (5.19), registered files (5.13 sparse tables), cooperative
//! task running for a single issuer (5.19, 6.0) and the extended enter argument for
//! timed waits (5.11).
//!
//! Two modes ([`IoMode`]): by default the shard sleeps in `io_uring_enter` when it has
//! nothing to do, and completions are run cooperatively (COOP_TASKRUN), so a busy shard
//! collects many per system call. With [`IoMode::BusyPoll`], a kernel thread
//! polls the submission queue (SQPOLL) and the shard spins on the completion queue:
//! no system calls at all while busy, at the price of two whole cores.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use io_uring::{IoUring, cqueue, opcode, squeue, types};

/// How a shard waits for I/O.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IoMode {
    /// Sleep in the kernel when idle; completions are collected when the shard enters
    /// the ring (one system call per loop turn, however many completions).
    #[default]
    Interrupt,
    /// A kernel thread polls the submission queue (SQPOLL) and the shard never sleeps:
    /// it spins on its completion queue, its mesh and its timers. For appliances that
    /// can give the registrar whole cores (each shard takes its core and the kernel
    /// thread another).
    BusyPoll,
}

use super::addr::SockAddr;
use super::sctp::{RecvBuf, SendBuf};
use super::udp::Datagram;

/// Submission queue size; the completion queue gets four times as many entries, and
/// the kernel keeps overflowing completions rather than dropping them (IORING_FEAT_NODROP).
const SQ_ENTRIES: u32 = 1024;
/// How long the SQPOLL thread spins without work before it sleeps (busy-poll mode).
const SQPOLL_IDLE_MS: u32 = 60_000;
/// Registered-file slots; connections with a slot beyond use their plain fd.
pub const FIXED_FILES: u32 = 4096;
/// Provided receive buffers ([`BufRing`]): how many and how big. Memory is reserved
/// for all of them, but a page costs RSS only once the kernel has written to it.
const PROVIDED_BUFFERS: u16 = 512;
const PROVIDED_SIZE: usize = 2048;
/// Buffer group id of the shard's provided-buffer ring.
const GROUP: u16 = 0;
/// The provided buffers of multishot SCTP recvmsgs ([`Ring::recvmsg_multi`]), a group of
/// their own, set up only on a shard with SCTP sockets ([`Ring::enable_msg_bufs`]).
/// Not TCP's group: each message takes a whole buffer however short (a TCP chunk
/// fills one), and a burst on an SCTP socket must not leave TCP connections without.
/// 2 KiB holds the header, [`super::sctp::MULTI_CONTROL`] and up to 1,968 bytes of
/// payload: every ASAP request and answer of ordinary size; longer messages (ENRP
/// handle tables, registrations with many addresses) come in pieces, which the SCTP
/// runtime puts together. 128 of them are more than the messages that arrive between
/// two turns of a busy shard (one per pool user in flight, plus keep-alive acks); when
/// they run out the recvmsg ends (ENOBUFS) and is armed again, which costs one more
/// submission, not a message. 256 KiB per shard, touched once (zeroed) like group 0.
const MSG_GROUP: u16 = 1;
const MSG_BUFFERS: u16 = 128;
const MSG_SIZE: usize = 2048;
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
    /// How long a timeout waits (the kernel reads it when the timeout is submitted).
    Timespec(Box<types::Timespec>),
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
    /// A multishot recv's provided buffer holding the data ([`Ring::provided`]); it
    /// must be handed back with [`Ring::recycle`].
    pub provided: Option<u16>,
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
    /// The completion queue, read through a mapping of our own (see [`Cq`]).
    cq: Cq,
    mode: IoMode,
    /// The provided receive buffers, if the kernel took them.
    bufs: Option<BufRing>,
    /// The provided buffers of SCTP recvmsgs, once asked for and if the kernel took them.
    msg_bufs: Option<BufRing>,
    /// Whether the fixed-file table is registered.
    fixed: bool,
    /// Indexed by `user_data`; a slot is freed by the operation's final completion.
    ops: Vec<Option<Pending>>,
    free: Vec<u32>,
    live: usize,
    /// Operations were pushed since the last submission ([`Ring::unsubmitted`]).
    pushed: bool,
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
        Self::with_mode(IoMode::Interrupt)
    }

    /// A ring for `mode`. Interrupt mode asks for deferred task running on a single
    /// issuer and falls back to older setups on kernels without (before 6.1, 6.0);
    /// busy-poll mode needs SQPOLL and fails without it.
    pub fn with_mode(mode: IoMode) -> io::Result<Self> {
        let uring = match mode {
            // Not DEFER_TASKRUN: with it, receives stalled in our tests (a shard slept
            // in the kernel with data received and its completion never posted), so
            // completions are run cooperatively instead, at the next transition to
            // the kernel, which batches them nearly as well.
            IoMode::Interrupt => IoUring::builder()
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
                })?,
            IoMode::BusyPoll => IoUring::builder()
                .setup_cqsize(SQ_ENTRIES * 4)
                .setup_submit_all()
                .setup_sqpoll(SQPOLL_IDLE_MS)
                .build(SQ_ENTRIES)
                .map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("busy-poll mode needs io_uring SQPOLL, which failed: {e}"),
                    )
                })?,
        };
        if !uring.params().is_feature_ext_arg() || !uring.params().is_feature_nodrop() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "io_uring lacks timed waits (IORING_FEAT_EXT_ARG) or NODROP; Linux 5.11+ needed",
            ));
        }
        let cq = Cq::new(&uring)?;
        // Optional speed-ups; each works without the others.
        let fixed = uring.submitter().register_files_sparse(FIXED_FILES).is_ok();
        let bufs = BufRing::new(&uring, GROUP, PROVIDED_BUFFERS, PROVIDED_SIZE)
            .inspect_err(|e| tracing::debug!(error = %e, "no provided-buffer ring; plain recvs"))
            .ok();
        Ok(Self {
            uring,
            cq,
            mode,
            bufs,
            msg_bufs: None,
            fixed,
            ops: Vec::new(),
            free: Vec::new(),
            live: 0,
            pushed: false,
        })
    }

    pub fn mode(&self) -> IoMode {
        self.mode
    }

    /// Whether multishot recvs into provided buffers are available ([`Ring::recv_multi`]).
    pub fn has_provided(&self) -> bool {
        self.bufs.is_some()
    }

    /// Registers `fd` as fixed file `index` (replacing what was there), so that
    /// operations on it skip the kernel's descriptor lookup; false if that failed (the
    /// plain fd still works). One system call, once per connection.
    pub fn register_fixed(&mut self, index: u32, fd: RawFd) -> bool {
        self.fixed
            && index < FIXED_FILES
            && self
                .uring
                .submitter()
                .register_files_update(index, &[fd])
                .is_ok_and(|n| n == 1)
    }

    /// Empties fixed file `index` (its socket closes once no operation holds it).
    pub fn unregister_fixed(&mut self, index: u32) {
        if self.fixed && index < FIXED_FILES {
            let _ = self.uring.submitter().register_files_update(index, &[-1]);
        }
    }

    /// The bytes a multishot recv put into provided buffer `id`.
    pub fn provided(&self, id: u16, len: usize) -> &[u8] {
        match &self.bufs {
            Some(b) => b.get(id, len),
            None => &[],
        }
    }

    /// Hands provided buffer `id` back to the kernel.
    #[inline]
    pub fn recycle(&mut self, id: u16) {
        if let Some(b) = &mut self.bufs {
            b.recycle(id);
        }
    }

    /// Sets up the provided buffers of multishot recvmsgs (group `MSG_GROUP`) unless
    /// done already; false if the kernel refused them (then only [`Ring::recvmsg`]).
    pub fn enable_msg_bufs(&mut self) -> bool {
        if self.msg_bufs.is_none() {
            self.msg_bufs = BufRing::new(&self.uring, MSG_GROUP, MSG_BUFFERS, MSG_SIZE)
                .inspect_err(|e| {
                    tracing::debug!(error = %e, "no provided buffers for recvmsg; single recvmsgs")
                })
                .ok();
        }
        self.msg_bufs.is_some()
    }

    /// The bytes a multishot recvmsg put into its provided buffer `id`: `len` is the
    /// completion's result (header, reserved control space and payload).
    pub fn msg_provided(&self, id: u16, len: usize) -> &[u8] {
        match &self.msg_bufs {
            Some(b) => b.get(id, len),
            None => &[],
        }
    }

    /// Hands provided buffer `id` of a multishot recvmsg back to the kernel.
    pub fn msg_recycle(&mut self, id: u16) {
        if let Some(b) = &mut self.msg_bufs {
            b.recycle(id);
        }
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

    /// Multishot recv into the provided buffers: completes once per chunk received
    /// (with [`Completion::provided`]) until it ends (`more` false: EOF, an error, or
    /// no free buffer, `-ENOBUFS`, after which it must be armed again). `fixed` names
    /// a registered file ([`Ring::register_fixed`]) instead of `fd`.
    ///
    /// Returns the operation's number, for [`Ring::cancel_op`] while it is pending.
    pub fn recv_multi(&mut self, fd: RawFd, fixed: Option<u32>, token: u64) -> io::Result<u32> {
        let entry = match fixed {
            Some(i) => opcode::RecvMulti::new(types::Fixed(i), GROUP).build(),
            None => opcode::RecvMulti::new(types::Fd(fd), GROUP).build(),
        };
        self.push_op(entry, token, Kind::Plain, OpBuf::None)
    }

    /// Sends all of `buf` on registered file `fixed`, or on `fd` (see [`Ring::send`]).
    #[inline(always)]
    pub fn send_on(
        &mut self,
        fd: RawFd,
        fixed: Option<u32>,
        buf: Vec<u8>,
        token: u64,
    ) -> io::Result<()> {
        let Some(i) = fixed else {
            return self.send(fd, buf, token);
        };
        let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        let entry = opcode::Send::new(types::Fixed(i), buf.as_ptr(), len)
            .flags(libc::MSG_NOSIGNAL)
            .build();
        self.push(entry, token, Kind::Plain, OpBuf::Bytes(buf))
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

    /// Multishot recvmsg into the provided buffers of [`Ring::enable_msg_bufs`] (which
    /// must have returned true): completes once per message or piece of one (with
    /// [`Completion::provided`], parsed by [`super::sctp::Received::parse_provided`])
    /// until it ends (`more` false: an error, or no free buffer, `-ENOBUFS`, after which
    /// it must be armed again). `buf` only holds the header that sizes the control
    /// space, and comes back with the final completion. A kernel before 6.0 fails it
    /// with `-EINVAL`.
    pub fn recvmsg_multi(
        &mut self,
        fd: RawFd,
        mut buf: Box<RecvBuf>,
        token: u64,
    ) -> io::Result<()> {
        let entry =
            opcode::RecvMsgMulti::new(types::Fd(fd), buf.prepare_multi(), MSG_GROUP).build();
        self.push(entry, token, Kind::Plain, OpBuf::Recv(buf))
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

    /// A timer: completes with `-ETIME` once `after` has passed (on the monotonic clock,
    /// from its submission), or with `-ECANCELED` if [`Ring::cancel_op`] got to it first.
    /// Returns the operation's number, for [`Ring::cancel_op`].
    pub fn timeout(&mut self, after: Duration, token: u64) -> io::Result<u32> {
        let ts = Box::new(types::Timespec::from(after));
        let entry = opcode::Timeout::new(&raw const *ts).build();
        self.push_op(entry, token, Kind::Plain, OpBuf::Timespec(ts))
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

    /// Asks the kernel to cancel operation `op` (a number [`Ring::recv_multi`] returned),
    /// which then completes, usually with `-ECANCELED`. Only while `op` is pending (its
    /// final completion not yet taken): its number is reused after. A number freed while
    /// the cancel waits to be submitted is safe: the cancel runs before anything pushed
    /// after it, so it finds nothing rather than a newer operation.
    pub fn cancel_op(&mut self, op: u32) -> io::Result<()> {
        let entry = opcode::AsyncCancel2::new(types::CancelBuilder::user_data(u64::from(op)))
            .build()
            .user_data(CANCEL);
        self.push_entry(&entry)
    }

    /// Submits what was pushed and waits until a completion is ready, `timeout` passed
    /// (`None`: no limit; zero: do not wait) or a signal arrived.
    pub fn submit_and_wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        // Nothing to submit, nothing overflowed or waiting to be run, no wait: no
        // system call.
        if timeout.is_some_and(|d| d.is_zero())
            && self.uring.submission().is_empty()
            && !self.taskrun()
        {
            return Ok(());
        }
        self.pushed = false;
        if self.mode == IoMode::Interrupt {
            let r = self.enter(timeout);
            if r >= 0 {
                return Ok(());
            }
            return Self::waited(io::Error::from_raw_os_error(-r as i32));
        }
        match self.submit_general(timeout) {
            Ok(_) => Ok(()),
            Err(e) => Self::waited(e),
        }
    }

    /// What a failed enter means to [`Ring::submit_and_wait`].
    #[cold]
    fn waited(e: io::Error) -> io::Result<()> {
        match e.raw_os_error() {
            // A timeout, a signal, or a full completion queue: all mean "look at the
            // completion queue now".
            Some(libc::ETIME | libc::EINTR | libc::EBUSY) => Ok(()),
            _ => Err(e),
        }
    }

    /// `io_uring_enter` (submit, and wait unless `timeout` is zero) through the io-uring
    /// crate's submitter, which also wakes a sleeping SQPOLL thread.
    fn submit_general(&mut self, timeout: Option<Duration>) -> io::Result<usize> {
        let submitter = self.uring.submitter();
        match timeout {
            Some(d) if d.is_zero() => submitter.submit(),
            Some(d) => {
                let ts = types::Timespec::from(d);
                let args = types::SubmitArgs::new().timespec(&ts);
                submitter.submit_with_args(1, &args)
            }
            None => submitter.submit_and_wait(1),
        }
    }

    /// `io_uring_enter` for a ring without SQPOLL, called directly: the submitter's
    /// general checks (SQPOLL wake-ups, polled I/O, the registered ring index) cost
    /// about as much again as the system call's own user-space part, once or twice per
    /// loop turn. Submits what was pushed; unless `timeout` is zero, waits for one
    /// completion at most that long (`None`: no limit). Returns the system call's
    /// result: what was submitted, or `-errno`.
    fn enter(&mut self, timeout: Option<Duration>) -> isize {
        const GETEVENTS: u32 = 1 << 0;
        const EXT_ARG: u32 = 1 << 3;
        // struct __kernel_timespec and struct io_uring_getevents_arg (linux/io_uring.h).
        #[repr(C)]
        struct KernelTimespec {
            sec: i64,
            nsec: i64,
        }
        #[repr(C)]
        struct GeteventsArg {
            sigmask: u64,
            sigmask_sz: u32,
            pad: u32,
            ts: u64,
        }
        let ts;
        let arg;
        let sq = self.uring.submission();
        let to_submit = sq.len() as u32;
        let (min_complete, flags, argp, argsz): (u32, u32, *const libc::c_void, usize) =
            match timeout {
                None => (1, GETEVENTS, std::ptr::null(), 0),
                // Overflowed completions are moved back into the queue by a GETEVENTS
                // enter.
                Some(d) if d.is_zero() => {
                    let flags = if sq.cq_overflow() { GETEVENTS } else { 0 };
                    (0, flags, std::ptr::null(), 0)
                }
                Some(d) => {
                    ts = KernelTimespec {
                        sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                        nsec: i64::from(d.subsec_nanos()),
                    };
                    arg = GeteventsArg {
                        sigmask: 0,
                        sigmask_sz: 8,
                        pad: 0,
                        ts: std::ptr::from_ref(&ts) as u64,
                    };
                    (
                        1,
                        GETEVENTS | EXT_ARG,
                        std::ptr::from_ref(&arg).cast(),
                        std::mem::size_of::<GeteventsArg>(),
                    )
                }
            };
        drop(sq);
        let args = [
            self.uring.as_raw_fd() as usize,
            to_submit as usize,
            min_complete as usize,
            flags as usize,
            argp as usize,
            argsz,
        ];
        // SAFETY: the ring's own descriptor; `arg` and the timespec it points to live
        // until the call returns, and the kernel only reads them. What is submitted
        // was pushed under `push_entry`'s guarantees.
        unsafe { super::syscall::syscall6(libc::SYS_io_uring_enter, args) }
    }

    /// Whether the kernel has completions to run that only an enter collects
    /// (IORING_SQ_TASKRUN, or overflowed completions).
    fn taskrun(&mut self) -> bool {
        self.uring.submission().taskrun() || self.uring.submission().cq_overflow()
    }

    /// Whether operations were pushed since the last submission: a flag, not a look at
    /// the queue (the crate's view of it loads both ends and stores one back). A
    /// submission that left some behind counts as made (they go with the next).
    #[inline]
    pub fn unsubmitted(&self) -> bool {
        self.pushed
    }

    /// Whether completions wait in the completion queue.
    #[inline]
    pub fn ready(&mut self) -> bool {
        self.cq.arrived() != 0
    }

    /// Submits what was pushed without waiting; in busy-poll mode the SQPOLL thread
    /// takes it without a system call (unless it fell asleep).
    pub fn submit(&mut self) -> io::Result<()> {
        self.submit_and_wait(Some(Duration::ZERO))
    }

    /// Moves up to `max` completions into `out`; returns how many.
    pub fn complete(&mut self, max: usize, out: &mut Vec<Completion>) -> usize {
        let mut n = 0;
        while n < max
            && let Some(c) = self.next_completion()
        {
            n += 1;
            out.extend(c);
        }
        n
    }

    /// Takes the completion at the head of the queue, if any: `Some(None)` for one
    /// that carries nothing for the caller (a cancel request's, or a stale slot's).
    /// One at a time, so that the caller can handle it (and push new operations)
    /// before taking the next, without a list in between.
    #[inline(always)]
    pub fn next_completion(&mut self) -> Option<Option<Completion>> {
        let cqe = self.cq.pop()?;
        Some(self.finish(&cqe))
    }

    /// The [`Completion`] of `cqe`, with its operation's buffer if it was the final one.
    #[inline(always)]
    fn finish(&mut self, cqe: &cqueue::Entry) -> Option<Completion> {
        let slot = cqe.user_data();
        if slot == CANCEL {
            return None;
        }
        let result = cqe.result();
        let flags = cqe.flags();
        let entry = self.ops.get_mut(slot as usize)?;
        if cqueue::more(flags) {
            let p = entry.as_ref()?;
            return Some(Completion {
                token: p.token,
                result,
                more: true,
                buf: OpBuf::None,
                provided: cqueue::buffer_select(flags),
            });
        }
        let mut p = entry.take()?;
        self.free.push(slot as u32);
        self.live -= 1;
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
        Some(Completion {
            token: p.token,
            result,
            more: false,
            buf: p.buf,
            provided: cqueue::buffer_select(flags),
        })
    }

    #[inline]
    fn push(&mut self, entry: squeue::Entry, token: u64, kind: Kind, buf: OpBuf) -> io::Result<()> {
        self.push_op(entry, token, kind, buf).map(drop)
    }

    /// [`Ring::push`], returning the operation's number (its `user_data`).
    #[inline(always)]
    fn push_op(
        &mut self,
        entry: squeue::Entry,
        token: u64,
        kind: Kind,
        buf: OpBuf,
    ) -> io::Result<u32> {
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
        Ok(slot)
    }

    #[inline(always)]
    fn push_entry(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        // SAFETY: every buffer an entry points to is owned by `self.ops` from the push
        // until its final completion is reaped (or leaked by `Drop`), so it outlives the
        // kernel's use of it; file descriptors are only numbers to the kernel and a stale
        // one fails the operation rather than touching memory.
        unsafe {
            if self.uring.submission().push(entry).is_ok() {
                self.pushed = true;
                return Ok(());
            }
            self.uring.submit()?;
            self.uring
                .submission()
                .push(entry)
                .map_err(|_| io::Error::other("io_uring submission queue stays full"))?;
        }
        self.pushed = true;
        Ok(())
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        if self.live > 0 {
            // The kernel may still write into the provided buffers too.
            if let Some(b) = self.bufs.take() {
                std::mem::forget(b);
            }
            if let Some(b) = self.msg_bufs.take() {
                std::mem::forget(b);
            }
            // The kernel may still complete these after the ring's fd is closed; their
            // buffers must stay valid forever.
            for p in self.ops.drain(..).flatten() {
                std::mem::forget(p.buf);
            }
        }
    }
}

/// The completion queue, through a second mapping of the kernel's ring made here.
///
/// The io-uring crate's `CompletionQueue` is a view made afresh for each look: it loads
/// the kernel's head (which only we write) and tail through the crate's pointers, and
/// stores the head back when it is dropped, even when it found nothing. Its pointers
/// are not public, so this maps the same ring again and keeps the head, which only we
/// change, at hand: a look is one load of the tail, and a completion taken one store of
/// the head. Nothing else reads completions (the crate's view is never made), so the
/// two never disagree about the head.
struct Cq {
    /// The kernel's head, which the kernel reads to know which slots it may fill again.
    khead: *const AtomicU32,
    /// The kernel's tail: the entries before it are written.
    ktail: *const AtomicU32,
    cqes: *const cqueue::Entry,
    mask: u32,
    /// Entries taken so far (wrapping); the kernel's head always holds it.
    head: u32,
    map: *mut libc::c_void,
    len: usize,
}

impl Cq {
    fn new(uring: &IoUring) -> io::Result<Self> {
        // struct io_uring_params and struct io_cqring_offsets (linux/io_uring.h).
        #[repr(C)]
        struct Params {
            sq_entries: u32,
            cq_entries: u32,
            flags_to_resv: [u32; 8],
            sq_off: [u32; 10],
            cq_off: CqOffsets,
        }
        #[repr(C)]
        struct CqOffsets {
            head: u32,
            tail: u32,
            ring_mask: u32,
            ring_entries: u32,
            overflow: u32,
            cqes: u32,
            flags: u32,
            resv1: u32,
            user_addr: u64,
        }
        const IORING_OFF_CQ_RING: libc::off_t = 0x800_0000;
        const _: () = assert!(std::mem::size_of::<Params>() == 120);
        const _: () = assert!(std::mem::size_of::<io_uring::Parameters>() == 120);
        // SAFETY: `Parameters` is documented as a transparent wrapper of the kernel's
        // `io_uring_params`, which `Params` spells out (same size, checked above, and
        // the same alignment, that of its one u64).
        let p = unsafe { &*std::ptr::from_ref(uring.params()).cast::<Params>() };
        let off = &p.cq_off;
        let len = off.cqes as usize + p.cq_entries as usize * std::mem::size_of::<cqueue::Entry>();
        // SAFETY: a fresh shared mapping of the ring's completion queue, as the crate
        // maps it (with one ring mapping for both queues, the kernel gives that one for
        // either offset); nothing is overwritten.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                uring.as_raw_fd(),
                IORING_OFF_CQ_RING,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let at = |o: u32| map.cast::<u8>().wrapping_add(o as usize);
        let khead = at(off.head).cast::<AtomicU32>().cast_const();
        let ktail = at(off.tail).cast::<AtomicU32>().cast_const();
        // SAFETY: the kernel's offsets lie inside the mapping; the mask is set before
        // the ring is handed out and never changes, and no completion is taken yet.
        let (mask, head) = unsafe {
            (
                at(off.ring_mask).cast::<u32>().read(),
                (*khead).load(Ordering::Relaxed),
            )
        };
        Ok(Self {
            khead,
            ktail,
            cqes: at(off.cqes).cast::<cqueue::Entry>().cast_const(),
            mask,
            head,
            map,
            len,
        })
    }

    /// How many completions wait.
    #[inline(always)]
    fn arrived(&self) -> u32 {
        // SAFETY: the tail lies inside the mapping, which lives as long as `self`.
        // Acquire: the entries the kernel wrote before it moved the tail are visible.
        let tail = unsafe { (*self.ktail).load(Ordering::Acquire) };
        tail.wrapping_sub(self.head)
    }

    /// Takes the completion at the head, if any, and gives its slot back to the kernel.
    #[inline(always)]
    fn pop(&mut self) -> Option<cqueue::Entry> {
        if self.arrived() == 0 {
            return None;
        }
        // SAFETY: the entry at the head is inside the mapping (masked) and was written
        // by the kernel before it moved the tail past it (loaded with Acquire); the
        // kernel does not write it again until the head moves on, which the release
        // store publishes only after the entry is copied.
        unsafe {
            let cqe = (*self.cqes.add((self.head & self.mask) as usize)).clone();
            self.head = self.head.wrapping_add(1);
            (*self.khead).store(self.head, Ordering::Release);
            Some(cqe)
        }
    }
}

impl Drop for Cq {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once; the ring's memory stays
        // for the crate's own mapping as long as that is there.
        unsafe { libc::munmap(self.map, self.len) };
    }
}

/// A ring of provided receive buffers (IORING_REGISTER_PBUF_RING): the kernel picks a
/// free one for each chunk a multishot recv receives, and the shard hands it back
/// once it has read it. The entry ring and the buffers live as long as the `Ring`
/// (or forever, if it is dropped with operations pending).
struct BufRing {
    /// `entries` ring entries, page aligned as the kernel wants.
    ring: std::ptr::NonNull<types::BufRingEntry>,
    ring_layout: std::alloc::Layout,
    /// `entries` buffers of `size` bytes, back to back.
    mem: std::ptr::NonNull<u8>,
    mem_layout: std::alloc::Layout,
    entries: u16,
    size: usize,
    /// Our copy of the tail: entries added so far (wrapping).
    tail: u16,
}

impl BufRing {
    fn new(uring: &IoUring, group: u16, entries: u16, size: usize) -> io::Result<Self> {
        assert!(entries.is_power_of_two());
        let ring_layout = std::alloc::Layout::from_size_align(
            usize::from(entries) * std::mem::size_of::<types::BufRingEntry>(),
            4096,
        )
        .map_err(io::Error::other)?;
        let mem_layout = std::alloc::Layout::from_size_align(usize::from(entries) * size, 4096)
            .map_err(io::Error::other)?;
        // SAFETY: both layouts have a non-zero size. Zeroed memory is a valid ring (all
        // entries empty, tail 0) and valid bytes.
        let (ring, mem) = unsafe {
            (
                std::alloc::alloc_zeroed(ring_layout).cast::<types::BufRingEntry>(),
                std::alloc::alloc_zeroed(mem_layout),
            )
        };
        let (Some(ring), Some(mem)) = (std::ptr::NonNull::new(ring), std::ptr::NonNull::new(mem))
        else {
            return Err(io::ErrorKind::OutOfMemory.into());
        };
        let mut b = Self {
            ring,
            ring_layout,
            mem,
            mem_layout,
            entries,
            size,
            tail: 0,
        };
        // SAFETY: the ring memory is page aligned, `entries` long, and outlives the
        // registration (it is freed only when `Ring` drops without pending operations,
        // after the io_uring itself is gone, or leaked).
        let registered = unsafe {
            uring
                .submitter()
                .register_buf_ring_with_flags(ring.as_ptr() as u64, entries, group, 0)
        };
        if let Err(e) = registered {
            b.free();
            return Err(e);
        }
        for id in 0..entries {
            b.recycle(id);
        }
        Ok(b)
    }

    fn get(&self, id: u16, len: usize) -> &[u8] {
        if id >= self.entries {
            return &[];
        }
        let len = len.min(self.size);
        // SAFETY: buffer `id` lies inside `mem`; the kernel wrote `len` bytes into it
        // and does not touch it again until it is recycled, which needs `&mut self`.
        unsafe {
            std::slice::from_raw_parts(self.mem.as_ptr().add(usize::from(id) * self.size), len)
        }
    }

    #[inline(always)]
    fn recycle(&mut self, id: u16) {
        if id >= self.entries {
            return;
        }
        let mask = self.entries - 1;
        // SAFETY: the index is masked into the ring; the entry at the tail is not read
        // by the kernel until the tail moves past it, which the release store below
        // publishes after the entry is written.
        unsafe {
            let entry = &mut *self.ring.as_ptr().add(usize::from(self.tail & mask));
            entry.set_addr(self.mem.as_ptr().add(usize::from(id) * self.size) as u64);
            entry.set_len(self.size as u32);
            entry.set_bid(id);
            self.tail = self.tail.wrapping_add(1);
            let tail = types::BufRingEntry::tail(self.ring.as_ptr()).cast_mut();
            std::sync::atomic::AtomicU16::from_ptr(tail)
                .store(self.tail, std::sync::atomic::Ordering::Release);
        }
    }

    fn free(&mut self) {
        // SAFETY: allocated in `new` with these layouts; called once, when the kernel
        // no longer uses the memory.
        unsafe {
            std::alloc::dealloc(self.ring.as_ptr().cast(), self.ring_layout);
            std::alloc::dealloc(self.mem.as_ptr(), self.mem_layout);
        }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // Dropped with its `Ring` after every operation completed (otherwise forgotten):
        // the io_uring (and its registration) is gone by then, as `Ring` drops its
        // fields after `Ring::drop`... the uring field is dropped first (declared first).
        self.free();
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    use super::*;
    use crate::net::sctp::Received;

    fn seqpacket_pair() -> (OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors.
        let r = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        };
        assert_eq!(r, 0, "{}", io::Error::last_os_error());
        // SAFETY: socketpair returned two fresh descriptors that nothing else owns.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    fn send(fd: &OwnedFd, data: &[u8]) {
        // SAFETY: `data` is readable for its length.
        let n = unsafe { libc::send(fd.as_raw_fd(), data.as_ptr().cast(), data.len(), 0) };
        assert_eq!(n, data.len() as isize, "{}", io::Error::last_os_error());
    }

    /// Reaps completions until one with `more` false (or `limit` of them); returns the
    /// payloads read from the provided buffers (recycled at once), and the final one.
    fn reap(ring: &mut Ring, limit: usize) -> (Vec<Vec<u8>>, Option<Completion>) {
        let mut got = Vec::new();
        let mut out = Vec::new();
        while got.len() < limit {
            ring.submit_and_wait(Some(Duration::from_secs(5))).unwrap();
            if ring.complete(usize::MAX, &mut out) == 0 {
                panic!("no completion within 5 s ({} messages so far)", got.len());
            }
            for c in out.drain(..) {
                if let Some(b) = c.provided {
                    let m = Received::parse_provided(ring.msg_provided(b, c.result as usize))
                        .expect("a whole recvmsg header");
                    assert!(!m.is_notification());
                    got.push(m.data().to_vec());
                    ring.msg_recycle(b);
                }
                if !c.more {
                    return (got, Some(c));
                }
            }
        }
        (got, None)
    }

    /// Messages sent back to back are each delivered, in order, into provided buffers
    /// by one multishot recvmsg; past the group's buffers it ends with ENOBUFS and,
    /// armed again, delivers the rest.
    #[test]
    fn multishot_recvmsg_delivers_every_message_in_order_and_ends_without_buffers() {
        let mut ring = Ring::new().unwrap();
        if !ring.enable_msg_bufs() {
            eprintln!("SKIP: this kernel has no provided-buffer rings");
            return;
        }
        let (a, b) = seqpacket_pair();
        let total = usize::from(MSG_BUFFERS) + 20;
        for i in 0..total {
            send(&a, format!("message {i}").as_bytes());
        }
        ring.recvmsg_multi(b.as_raw_fd(), RecvBuf::new(0), 7)
            .unwrap();
        let (first, end) = reap(&mut ring, total);
        let end = end.expect("the recvmsg ends when the buffers run out");
        assert_eq!(end.result, -libc::ENOBUFS);
        assert_eq!(end.token, 7);
        assert!(matches!(end.buf, OpBuf::Recv(_)), "the header comes back");
        assert_eq!(first.len(), usize::from(MSG_BUFFERS));
        let OpBuf::Recv(rx) = end.buf else {
            unreachable!()
        };
        ring.recvmsg_multi(b.as_raw_fd(), rx, 7).unwrap();
        let (rest, end) = reap(&mut ring, total - first.len());
        assert!(end.is_none(), "still armed: {end:?}");
        let all: Vec<String> = first
            .into_iter()
            .chain(rest)
            .map(|m| String::from_utf8(m).unwrap())
            .collect();
        let want: Vec<String> = (0..total).map(|i| format!("message {i}")).collect();
        assert_eq!(all, want);
        // A message longer than a buffer's payload space: a datagram socket cuts it
        // (SCTP would deliver it in pieces instead).
        let long = vec![0x5a; MSG_SIZE];
        send(&a, &long);
        let mut out = Vec::new();
        ring.submit_and_wait(Some(Duration::from_secs(5))).unwrap();
        ring.complete(usize::MAX, &mut out);
        let c = out.pop().expect("one completion");
        let b = c.provided.expect("in a provided buffer");
        let m = Received::parse_provided(ring.msg_provided(b, c.result as usize)).unwrap();
        assert!(m.is_truncated());
        assert_eq!(
            m.data().len(),
            MSG_SIZE - 16 - crate::net::sctp::MULTI_CONTROL
        );
        assert!(m.data().iter().all(|&x| x == 0x5a));
        ring.msg_recycle(b);
        drop(a);
        ring.cancel_all().unwrap();
    }
}
