//! The buffers of one recvmsg or sendmsg on an SCTP socket, with the SCTP_RCVINFO and
//! SCTP_SNDINFO control messages (RFC 6458 §5.3.4-5.3.5). Boxed, so the pointers the
//! kernel is given stay put while the ring owns them. A multishot recvmsg writes each
//! message into a provided buffer instead, laid out as `struct io_uring_recvmsg_out`,
//! the control messages and the payload ([`Received::parse_provided`]).

use super::{AssocId, MSG_NOTIFICATION, RCVINFO_LEN, SCTP_RCVINFO, SCTP_SNDINFO, SNDINFO_LEN};
use super::{control_len, words_to_bytes};

/// Writes one cmsg carrying SCTP_SNDINFO into `control` and returns its length.
pub(super) fn put_sndinfo(control: &mut [u64; 8], assoc: AssocId, ppid: u32, flags: u16) -> usize {
    let hdr = std::mem::size_of::<libc::cmsghdr>();
    let total = hdr + SNDINFO_LEN;
    let mut bytes = [0u8; 64];
    // cmsghdr: cmsg_len (size_t), cmsg_level (int), cmsg_type (int); data follows,
    // aligned to size_t, which the header size already is.
    bytes[..std::mem::size_of::<usize>()].copy_from_slice(&total.to_ne_bytes());
    let l = std::mem::size_of::<usize>();
    bytes[l..l + 4].copy_from_slice(&libc::IPPROTO_SCTP.to_ne_bytes());
    bytes[l + 4..l + 8].copy_from_slice(&SCTP_SNDINFO.to_ne_bytes());
    let d = &mut bytes[hdr..hdr + SNDINFO_LEN];
    d[2..4].copy_from_slice(&flags.to_ne_bytes());
    // The PPID travels opaque: it is stored in network byte order (RFC 6458 §5.3.4).
    d[4..8].copy_from_slice(&ppid.to_be_bytes());
    d[12..16].copy_from_slice(&assoc.to_ne_bytes());
    for (w, c) in control.iter_mut().zip(bytes.chunks_exact(8)) {
        *w = u64::from_ne_bytes(c.try_into().unwrap_or_default());
    }
    total
}

/// What SCTP_RCVINFO says about a received message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RcvInfo {
    pub assoc: AssocId,
    /// In host byte order.
    pub ppid: u32,
}

/// Finds SCTP_RCVINFO among received control messages.
pub(super) fn find_rcvinfo(control: &[u8]) -> Option<RcvInfo> {
    let hdr = std::mem::size_of::<libc::cmsghdr>();
    let align = std::mem::size_of::<usize>();
    let mut at = 0;
    while at + hdr <= control.len() {
        let len = usize::from_ne_bytes(control[at..at + align].try_into().ok()?);
        let level = i32::from_ne_bytes(control[at + align..at + align + 4].try_into().ok()?);
        let kind = i32::from_ne_bytes(control[at + align + 4..at + align + 8].try_into().ok()?);
        if len < hdr {
            return None;
        }
        if level == libc::IPPROTO_SCTP && kind == SCTP_RCVINFO && len >= hdr + RCVINFO_LEN {
            let d = control.get(at + hdr..at + hdr + RCVINFO_LEN)?;
            return Some(RcvInfo {
                ppid: u32::from_be_bytes(d[8..12].try_into().ok()?),
                assoc: i32::from_ne_bytes(d[24..28].try_into().ok()?),
            });
        }
        at += len.div_ceil(align) * align;
    }
    None
}

/// Room for control messages that a multishot recvmsg reserves at the start of every
/// provided buffer: SCTP_RCVINFO takes CMSG_SPACE(28) = 48 bytes; the rest is slack
/// for a kernel that adds another (a truncated one sets MSG_CTRUNC, and a message
/// whose SCTP_RCVINFO is missing is dropped).
pub const MULTI_CONTROL: usize = 64;
/// `sizeof(struct io_uring_recvmsg_out)`.
const RECVMSG_OUT_LEN: usize = 16;

/// One received message, or a piece of one: its flags, control messages and payload,
/// wherever the kernel wrote them (a [`RecvBuf`], or a provided buffer).
#[derive(Clone, Copy, Debug)]
pub struct Received<'a> {
    flags: libc::c_int,
    control: &'a [u8],
    data: &'a [u8],
}

impl<'a> Received<'a> {
    /// Parses what a multishot recvmsg (armed with `RecvBuf::prepare_multi`) wrote
    /// into a provided buffer: `buf` is the buffer's first `result` bytes (the
    /// completion's result counts the header, the reserved name and control space and
    /// the payload). `None` if it is shorter than the header and the reserved space.
    pub fn parse_provided(buf: &'a [u8]) -> Option<Self> {
        // `struct io_uring_recvmsg_out` (linux/io_uring.h): namelen, controllen,
        // payloadlen and flags, each a u32; then the reserved name (none here) and
        // control space, then the payload. A length beyond the reserved space or the
        // buffer is what the kernel could have written, not what it did.
        let u32_at = |at: usize| -> Option<usize> {
            Some(u32::from_ne_bytes(buf.get(at..at + 4)?.try_into().ok()?) as usize)
        };
        let (controllen, payloadlen) = (u32_at(4)?, u32_at(8)?);
        let flags = u32_at(12)? as u32 as libc::c_int;
        let control_at = RECVMSG_OUT_LEN;
        let payload_at = control_at + MULTI_CONTROL;
        let payload = buf.get(payload_at..)?;
        Some(Self {
            flags,
            control: &buf[control_at..control_at + controllen.min(MULTI_CONTROL)],
            data: &payload[..payloadlen.min(payload.len())],
        })
    }

    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// The data is an SCTP notification, not a user message.
    pub fn is_notification(&self) -> bool {
        self.flags & MSG_NOTIFICATION != 0
    }

    /// The data ends a message (partial deliveries come without it).
    pub fn is_end_of_record(&self) -> bool {
        self.flags & libc::MSG_EOR != 0
    }

    /// The kernel cut the payload (MSG_TRUNC): SCTP delivers what does not fit in
    /// pieces instead, so this does not happen unless something else asked for it.
    pub fn is_truncated(&self) -> bool {
        self.flags & libc::MSG_TRUNC != 0
    }

    pub fn rcvinfo(&self) -> Option<RcvInfo> {
        find_rcvinfo(self.control)
    }
}

/// The buffers of one recvmsg on an SCTP socket.
pub struct RecvBuf {
    hdr: libc::msghdr,
    iov: libc::iovec,
    control: [u64; 16],
    data: Vec<u8>,
    flags: libc::c_int,
    control_len: usize,
}

impl std::fmt::Debug for RecvBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBuf")
            .field("len", &self.data.len())
            .field("flags", &self.flags)
            .finish()
    }
}

impl RecvBuf {
    pub fn new(capacity: usize) -> Box<Self> {
        Box::new(Self {
            // SAFETY: msghdr and iovec are plain data (null pointers and zero lengths
            // are valid values); `prepare` fills them in before use.
            hdr: unsafe { std::mem::zeroed() },
            // SAFETY: as above.
            iov: unsafe { std::mem::zeroed() },
            control: [0; 16],
            data: Vec::with_capacity(capacity),
            flags: 0,
            control_len: 0,
        })
    }

    /// Points the header at this (boxed, so unmoving) buffer's own fields; the result
    /// is valid while the box lives.
    pub(crate) fn prepare(&mut self) -> *mut libc::msghdr {
        self.data.clear();
        self.flags = 0;
        self.control_len = 0;
        let spare = self.data.spare_capacity_mut();
        self.iov.iov_base = spare.as_mut_ptr().cast();
        self.iov.iov_len = spare.len();
        self.hdr.msg_name = std::ptr::null_mut();
        self.hdr.msg_namelen = 0;
        self.hdr.msg_iov = &raw mut self.iov;
        self.hdr.msg_iovlen = 1;
        self.hdr.msg_control = self.control.as_mut_ptr().cast();
        self.hdr.msg_controllen = std::mem::size_of_val(&self.control) as _;
        self.hdr.msg_flags = 0;
        &raw mut self.hdr
    }

    /// Points the header at nothing but the sizes a multishot recvmsg reserves in each
    /// provided buffer: no name, [`MULTI_CONTROL`] bytes of control messages, and no
    /// iovec (the payload goes to the rest of the provided buffer). The kernel reads
    /// it when the operation is issued; the box keeps it valid until the final
    /// completion all the same.
    pub(crate) fn prepare_multi(&mut self) -> *const libc::msghdr {
        self.data.clear();
        self.flags = 0;
        self.control_len = 0;
        self.hdr.msg_name = std::ptr::null_mut();
        self.hdr.msg_namelen = 0;
        self.hdr.msg_iov = std::ptr::null_mut();
        self.hdr.msg_iovlen = 0;
        self.hdr.msg_control = std::ptr::null_mut();
        self.hdr.msg_controllen = MULTI_CONTROL as _;
        self.hdr.msg_flags = 0;
        &raw const self.hdr
    }

    /// Records a successful recvmsg of `n` bytes.
    pub(crate) fn complete(&mut self, n: usize) {
        let n = n.min(self.data.capacity());
        // SAFETY: the kernel wrote `n` bytes (at most the iovec's length, the spare
        // capacity) at the start of the data buffer.
        unsafe { self.data.set_len(n) };
        self.flags = self.hdr.msg_flags;
        self.control_len = control_len(&self.hdr).min(std::mem::size_of_val(&self.control));
    }

    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The data is an SCTP notification, not a user message.
    pub fn is_notification(&self) -> bool {
        self.flags & MSG_NOTIFICATION != 0
    }

    /// The data ends a message (partial deliveries come without it).
    pub fn is_end_of_record(&self) -> bool {
        self.flags & libc::MSG_EOR != 0
    }

    pub fn rcvinfo(&self) -> Option<RcvInfo> {
        let bytes = words_to_bytes(&self.control);
        find_rcvinfo(&bytes[..self.control_len])
    }

    /// What the last recvmsg received.
    pub fn received(&self) -> Received<'_> {
        // SAFETY: `control` is plain words; viewing its first `control_len` bytes
        // (at most its size, see `complete`) as bytes is valid.
        let control = unsafe {
            std::slice::from_raw_parts(self.control.as_ptr().cast::<u8>(), self.control_len)
        };
        Received {
            flags: self.flags,
            control,
            data: &self.data,
        }
    }
}

/// The buffers of one sendmsg on an SCTP socket: one message with its SCTP_SNDINFO.
pub struct SendBuf {
    hdr: libc::msghdr,
    iov: libc::iovec,
    control: [u64; 8],
    control_len: usize,
    data: Vec<u8>,
    assoc: AssocId,
}

impl std::fmt::Debug for SendBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendBuf")
            .field("len", &self.data.len())
            .finish()
    }
}

impl SendBuf {
    pub fn new() -> Box<Self> {
        Box::new(Self {
            // SAFETY: msghdr and iovec are plain data; `prepare` fills them in.
            hdr: unsafe { std::mem::zeroed() },
            // SAFETY: as above.
            iov: unsafe { std::mem::zeroed() },
            control: [0; 8],
            control_len: 0,
            data: Vec::new(),
            assoc: 0,
        })
    }

    /// Sets the message: `data` to `assoc` with `ppid` (host order) and sinfo `flags`.
    pub fn set(&mut self, assoc: AssocId, ppid: u32, flags: u16, data: Vec<u8>) {
        self.control_len = put_sndinfo(&mut self.control, assoc, ppid, flags);
        self.data = data;
        self.assoc = assoc;
    }

    /// The association of the message last set.
    pub fn assoc(&self) -> AssocId {
        self.assoc
    }

    /// Takes the message bytes back (to reuse the allocation).
    pub fn take_data(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.data)
    }

    /// Sends the message on SCTP socket `fd` with sendmsg(2), without waiting (the
    /// system call itself, as [`crate::net::socket::send_now`]).
    pub fn send_now(&mut self, fd: std::os::fd::RawFd) -> crate::net::socket::Sent {
        let hdr = self.prepare();
        let flags = (libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) as usize;
        let args = [fd as usize, hdr as usize, flags, 0, 0, 0];
        // SAFETY: sendmsg(fd, hdr, flags): `prepare` points the header at this
        // buffer's own iovec, control data and bytes, all alive and unmoved during the
        // call, which only reads them.
        let r = unsafe { crate::net::syscall::syscall6(libc::SYS_sendmsg, args) };
        crate::net::socket::Sent::of(r)
    }

    pub(crate) fn prepare(&mut self) -> *const libc::msghdr {
        self.iov.iov_base = self.data.as_mut_ptr().cast();
        self.iov.iov_len = self.data.len();
        self.hdr.msg_name = std::ptr::null_mut();
        self.hdr.msg_namelen = 0;
        self.hdr.msg_iov = &raw mut self.iov;
        self.hdr.msg_iovlen = 1;
        self.hdr.msg_control = self.control.as_mut_ptr().cast();
        self.hdr.msg_controllen = self.control_len as _;
        self.hdr.msg_flags = 0;
        &raw const self.hdr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sndinfo_is_found_where_rcvinfo_would_be_read_back() {
        // A control buffer as the kernel writes it for SCTP_RCVINFO.
        let hdr = std::mem::size_of::<libc::cmsghdr>();
        let mut bytes = vec![0u8; hdr + RCVINFO_LEN];
        bytes[..8].copy_from_slice(&(hdr + RCVINFO_LEN).to_ne_bytes());
        bytes[8..12].copy_from_slice(&libc::IPPROTO_SCTP.to_ne_bytes());
        bytes[12..16].copy_from_slice(&SCTP_RCVINFO.to_ne_bytes());
        bytes[hdr + 8..hdr + 12].copy_from_slice(&11u32.to_be_bytes());
        bytes[hdr + 24..hdr + 28].copy_from_slice(&7i32.to_ne_bytes());
        assert_eq!(find_rcvinfo(&bytes), Some(RcvInfo { assoc: 7, ppid: 11 }));
        assert_eq!(find_rcvinfo(&bytes[..hdr]), None);
    }

    /// A provided buffer as a multishot recvmsg fills it: `struct io_uring_recvmsg_out`,
    /// `MULTI_CONTROL` bytes of control space (`control` at its start), the payload.
    fn provided(control: &[u8], payload: &[u8], flags: libc::c_int) -> Vec<u8> {
        let mut b = Vec::new();
        for v in [0, control.len(), payload.len(), flags as usize] {
            b.extend_from_slice(&(v as u32).to_ne_bytes());
        }
        b.extend_from_slice(control);
        b.resize(RECVMSG_OUT_LEN + MULTI_CONTROL, 0);
        b.extend_from_slice(payload);
        b
    }

    fn rcvinfo_cmsg(assoc: AssocId, ppid: u32) -> Vec<u8> {
        let hdr = std::mem::size_of::<libc::cmsghdr>();
        let mut c = vec![0u8; hdr + RCVINFO_LEN];
        c[..8].copy_from_slice(&(hdr + RCVINFO_LEN).to_ne_bytes());
        c[8..12].copy_from_slice(&libc::IPPROTO_SCTP.to_ne_bytes());
        c[12..16].copy_from_slice(&SCTP_RCVINFO.to_ne_bytes());
        c[hdr + 8..hdr + 12].copy_from_slice(&ppid.to_be_bytes());
        c[hdr + 24..hdr + 28].copy_from_slice(&assoc.to_ne_bytes());
        c
    }

    #[test]
    fn a_provided_buffer_parses_into_rcvinfo_payload_and_flags() {
        let buf = provided(&rcvinfo_cmsg(9, 11), b"request", libc::MSG_EOR);
        let m = Received::parse_provided(&buf).unwrap();
        assert_eq!(m.rcvinfo(), Some(RcvInfo { assoc: 9, ppid: 11 }));
        assert_eq!(m.data(), b"request");
        assert!(m.is_end_of_record() && !m.is_notification() && !m.is_truncated());

        // A piece of a longer message: no MSG_EOR.
        let piece = provided(&rcvinfo_cmsg(9, 11), &[1; 100], 0);
        let m = Received::parse_provided(&piece).unwrap();
        assert!(!m.is_end_of_record());
        assert_eq!(m.data().len(), 100);

        // A notification has no SCTP_RCVINFO.
        let mut n = vec![0u8; 20];
        n[..2].copy_from_slice(&super::super::SCTP_ASSOC_CHANGE.to_ne_bytes());
        n[16..20].copy_from_slice(&3i32.to_ne_bytes());
        let buf = provided(&[], &n, MSG_NOTIFICATION | libc::MSG_EOR);
        let m = Received::parse_provided(&buf).unwrap();
        assert!(m.is_notification() && m.is_end_of_record());
        assert_eq!(m.rcvinfo(), None);
        assert_eq!(
            super::super::parse_notification(m.data()),
            Some(super::super::Notification::AssocChange {
                assoc: 3,
                state: super::super::AssocState::CommUp
            })
        );

        // Lengths past the buffer are what the kernel could not write: cut to it.
        let mut cut = provided(&rcvinfo_cmsg(1, 11), b"abc", libc::MSG_EOR);
        cut[8..12].copy_from_slice(&5000u32.to_ne_bytes());
        assert_eq!(Received::parse_provided(&cut).unwrap().data(), b"abc");
        cut[4..8].copy_from_slice(&5000u32.to_ne_bytes());
        assert_eq!(
            Received::parse_provided(&cut).unwrap().control.len(),
            MULTI_CONTROL
        );
        // Shorter than the header and the reserved space: nothing to read.
        assert!(Received::parse_provided(&buf[..RECVMSG_OUT_LEN + MULTI_CONTROL - 1]).is_none());
        assert!(Received::parse_provided(&[0; 8]).is_none());
    }
}
