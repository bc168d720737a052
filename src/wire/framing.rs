//! ASAP and ENRP over TCP: each message framed by its own header (reference §2.4).
//!
//! RFC 5352 left the TCP mapping to a document that was never published; the framing
//! used is "read the 4-byte common header (RFC 5354 §4), then pad4(Message Length) − 4
//! more bytes". The registrar's runtime, its `dump` client, the load generator and the
//! tests all cut a TCP byte stream into messages with [`next`].

/// Bytes one framed message can take: a 16-bit Message Length, padded to 4.
pub const MAX_FRAME: usize = 65_536;

/// What the start of a receive buffer holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A whole message of this many bytes (padding included).
    Whole(usize),
    /// Not yet a whole message: the buffer must grow to this many bytes (4 while the
    /// header is incomplete; never more than [`MAX_FRAME`]).
    Need(usize),
    /// The Message Length is below the header's own 4 bytes: nothing after this point
    /// can be framed.
    Broken(u16),
}

/// Frames the message at the start of `buf`.
///
/// ```
/// use rserpool::wire::framing::{self, Frame};
/// // A 5-byte message occupies 8 bytes on the wire.
/// assert_eq!(framing::next(&[5, 0, 0, 5, 1]), Frame::Need(8));
/// assert_eq!(framing::next(&[5, 0, 0, 5, 1, 0, 0, 0, 6]), Frame::Whole(8));
/// ```
pub fn next(buf: &[u8]) -> Frame {
    let [_, _, hi, lo, ..] = *buf else {
        return Frame::Need(4);
    };
    let len = u16::from_be_bytes([hi, lo]);
    if len < 4 {
        return Frame::Broken(len);
    }
    let total = usize::from(len).next_multiple_of(4);
    if buf.len() < total {
        Frame::Need(total)
    } else {
        Frame::Whole(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_2_4_frames_by_the_padded_message_length() {
        assert_eq!(next(&[]), Frame::Need(4));
        assert_eq!(next(&[5, 0, 0]), Frame::Need(4));
        assert_eq!(next(&[5, 0, 0, 16]), Frame::Need(16));
        assert_eq!(next(&[5, 0, 0, 4, 9]), Frame::Whole(4));
        // Message Length 5 occupies 8 bytes on the wire.
        assert_eq!(next(&[5, 0, 0, 5, 1, 0, 0]), Frame::Need(8));
        assert_eq!(next(&[5, 0, 0, 5, 1, 0, 0, 0, 7]), Frame::Whole(8));
        assert_eq!(next(&[5, 0, 0xff, 0xff]), Frame::Need(MAX_FRAME));
    }

    #[test]
    fn a_length_below_the_header_breaks_framing() {
        for len in 0..4u8 {
            assert_eq!(next(&[5, 0, 0, len]), Frame::Broken(u16::from(len)));
        }
    }

    #[test]
    fn every_encoded_message_frames_as_itself() {
        for m in crate::wire::samples::asap_messages() {
            let mut b = Vec::new();
            m.encode(&mut b);
            assert_eq!(next(&b), Frame::Whole(b.len()), "{m:?}");
            b.extend_from_slice(&[5, 0]);
            assert_eq!(next(&b), Frame::Whole(b.len() - 2), "{m:?}");
        }
    }
}
