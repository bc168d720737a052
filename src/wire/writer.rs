//! Encoding: append to a caller's buffer.
//!
//! Padding is the one subtle rule of the format (RFC 5354 §2): every TLV is padded to a
//! multiple of 4, a TLV's Length excludes its own padding, and a parent's Length includes
//! the padding *between* its children but not the padding of its last child. The writer
//! implements this once, lazily: closing a TLV records how many pad bytes it owes, and
//! those bytes are written only when something else is appended. A parent closed right
//! after its last child therefore measures itself without that child's padding, and the
//! debt carries over unchanged (the parent starts 4-aligned, so it owes exactly as much).

/// Appends ASAP/ENRP structures to a `Vec<u8>`. The only place that computes padding.
#[derive(Debug)]
pub struct Writer<'a> {
    buf: &'a mut Vec<u8>,
    /// Zero bytes owed by the last closed TLV, written before the next append.
    pending_pad: usize,
    /// A TLV closed longer than its 16-bit Length can say.
    overflowed: bool,
}

/// A message longer than its 16-bit Message Length can say (RFC 5354 §4): it was not
/// written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("message of {len} bytes exceeds the 16-bit length field")]
pub struct TooLong {
    /// The length the message would have had (header included, final padding excluded).
    pub len: usize,
}

impl<'a> Writer<'a> {
    pub fn new(buf: &'a mut Vec<u8>) -> Self {
        Self {
            buf,
            pending_pad: 0,
            overflowed: false,
        }
    }

    fn settle(&mut self) {
        if self.pending_pad > 0 {
            self.buf.resize(self.buf.len() + self.pending_pad, 0);
            self.pending_pad = 0;
        }
    }

    pub fn put_u8(&mut self, v: u8) {
        self.settle();
        self.buf.push(v);
    }

    pub fn put_u16(&mut self, v: u16) {
        self.settle();
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn put_u32(&mut self, v: u32) {
        self.settle();
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn put_bytes(&mut self, b: &[u8]) {
        self.settle();
        self.buf.extend_from_slice(b);
    }

    /// Writes a TLV: a 16-bit type, a 16-bit length back-patched once `body` has run, then
    /// (lazily) the padding. Message headers use it too: their first two bytes are
    /// `type << 8 | flags` and their length follows the same rule.
    pub fn tlv(&mut self, kind: u16, body: impl FnOnce(&mut Writer<'_>)) {
        self.settle();
        let start = self.buf.len();
        self.buf.extend_from_slice(&kind.to_be_bytes());
        self.buf.extend_from_slice(&[0, 0]);
        body(self);
        // The last child's padding (if any) is still pending, so it is not counted.
        let len = self.buf.len() - start;
        // A body can overflow the 16-bit length only through a caller building a message
        // larger than the format allows; [`try_message`] then refuses the whole message.
        let len16 = u16::try_from(len).unwrap_or_else(|_| {
            self.overflowed = true;
            u16::MAX
        });
        self.buf[start + 2..start + 4].copy_from_slice(&len16.to_be_bytes());
        self.pending_pad = (4 - len % 4) % 4;
    }

    /// Writes the padding still owed. Call once after the outermost message.
    pub fn finish(mut self) {
        self.settle();
    }

    /// Bytes written to the underlying buffer so far (excluding pending padding).
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// Encodes a standalone structure (e.g. one TLV to quote in an error cause) into a new
/// vector, without trailing padding.
pub fn to_vec(body: impl FnOnce(&mut Writer<'_>)) -> Vec<u8> {
    let mut out = Vec::new();
    body(&mut Writer::new(&mut out));
    out
}

/// Encodes one whole message (header, body, final padding) into `out`, unless it (or a
/// TLV in it) would be longer than its 16-bit length field: then `out` is left as it was.
/// The one check that no encoder path can emit a message whose length field lies.
pub fn try_message(
    out: &mut Vec<u8>,
    kind: u8,
    flags: u8,
    body: impl FnOnce(&mut Writer<'_>),
) -> Result<(), TooLong> {
    let start = out.len();
    let mut w = Writer::new(out);
    w.tlv(u16::from(kind) << 8 | u16::from(flags), body);
    let overflowed = w.overflowed;
    // The final padding is excluded, as from the Message Length.
    let len = w.len() - start;
    w.finish();
    if overflowed {
        out.truncate(start);
        return Err(TooLong { len });
    }
    Ok(())
}

/// Encodes one whole message (header, body, final padding) into `out`. For messages that
/// cannot exceed the length field by construction; a message that would is not written
/// (and fails a debug assertion): use [`try_message`] where the size depends on input.
pub fn message(out: &mut Vec<u8>, kind: u8, flags: u8, body: impl FnOnce(&mut Writer<'_>)) {
    let written = try_message(out, kind, flags, body);
    debug_assert!(written.is_ok(), "{written:?}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tlv_pads_and_excludes_own_padding() {
        let mut out = Vec::new();
        let mut w = Writer::new(&mut out);
        w.tlv(0x0009, |w| w.put_bytes(b"abcde"));
        w.finish();
        assert_eq!(out, [0, 9, 0, 9, b'a', b'b', b'c', b'd', b'e', 0, 0, 0]);
    }

    #[test]
    fn parent_counts_inner_padding_but_not_the_last() {
        let mut out = Vec::new();
        let mut w = Writer::new(&mut out);
        w.tlv(0x000c, |w| {
            w.tlv(0x0001, |w| w.put_bytes(b"x")); // 5 long, 3 pad between
            w.tlv(0x0002, |w| w.put_bytes(b"yy")); // 6 long, 2 pad at the end
        });
        w.finish();
        // outer = 4 + 8 + 6 = 18; on the wire 20.
        assert_eq!(out.len(), 20);
        assert_eq!(&out[..4], &[0, 0x0c, 0, 18]);
        assert_eq!(&out[4..8], &[0, 1, 0, 5]);
        assert_eq!(&out[12..16], &[0, 2, 0, 6]);
    }

    #[test]
    fn rfc5354_s4_a_message_longer_than_its_length_field_is_not_written() {
        let mut out = vec![7];
        let body = vec![0; u16::MAX as usize - 4 + 1];
        let e = try_message(&mut out, 0x0e, 0, |w| w.put_bytes(&body)).unwrap_err();
        assert_eq!(e.len, u16::MAX as usize + 1);
        assert_eq!(out, [7], "nothing of the refused message is left");
        // One byte less fits exactly.
        try_message(&mut out, 0x0e, 0, |w| w.put_bytes(&body[1..])).unwrap();
        assert_eq!(&out[1..5], &[0x0e, 0, 0xff, 0xff]);
        assert_eq!(out.len(), 1 + 65_536);
    }

    #[test]
    fn an_overflowing_inner_tlv_refuses_the_message() {
        let mut out = Vec::new();
        let body = vec![0; 70_000];
        let e = try_message(&mut out, 0x0e, 0, |w| {
            w.tlv(0x000d, |w| w.put_bytes(&body));
        });
        assert!(e.is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn message_header_uses_type_and_flags() {
        let mut out = Vec::new();
        message(&mut out, 0x03, 0x01, |w| w.put_u32(7));
        assert_eq!(out, [3, 1, 0, 8, 0, 0, 0, 7]);
    }
}
