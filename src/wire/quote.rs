//! Quoting received bytes in error causes, so that an answer is never malformed itself.
//!
//! RFC 5354 §3.12 has some causes carry what was received: the unrecognized parameter
//! (0x0001), the unrecognized message (0x0002), the offending TLV (0x0003). A receiver,
//! Wireshark's dissector among them, parses that information as a TLV (or a message), so
//! a quote must be one whole TLV whose Length agrees with the bytes quoted: never a
//! 1–3-byte fragment, never a TLV whose Length runs past the quote. What cannot be quoted
//! whole is not quoted at all; the cause alone still tells the peer what was wrong. And
//! the answer carrying the quotes must fit the 16-bit Message Length (RFC 5354 §4), so
//! quotes and causes are bounded by [`MAX_QUOTE`] and [`MAX_CAUSES`].

use super::error::Span;
use super::reader::pad4;

/// The largest Message Length (RFC 5354 §4: 16 bits, header included, final padding
/// excluded). No encoder emits more.
pub const MAX_MESSAGE_LEN: usize = u16::MAX as usize;

/// Most bytes of quoted information one answer carries, over all its causes: room for
/// the ENRP header (common header and two server IDs, 12 bytes), the Operation Error
/// header and one cause header, so that an ASAP or ENRP ERROR quoting this much still
/// fits [`MAX_MESSAGE_LEN`].
pub const MAX_QUOTE: usize = MAX_MESSAGE_LEN - 12 - 4 - 4;

/// Most causes one answer carries. RFC 5354 §3 asks for one "Unrecognized Parameter"
/// cause per parameter; a message can hold 16,000 of them, and reporting the first few
/// tells the sender as much as reporting all of them.
pub const MAX_CAUSES: usize = 32;

/// `tlv` if it is one whole, consistent TLV of at most `budget` bytes (its Length at
/// least 4 and no more than the bytes given): exactly its Length bytes, without
/// padding. Otherwise nothing: a TLV is quoted whole or not at all.
pub fn quote_tlv(tlv: &[u8], budget: usize) -> &[u8] {
    let [_, _, hi, lo, ..] = *tlv else {
        return &[];
    };
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    if len < 4 || len > budget {
        return &[];
    }
    tlv.get(..len).unwrap_or_default()
}

/// The bytes `span` covers in `message`, as [`quote_tlv`] allows them.
pub fn quote_span(message: &[u8], span: Span, budget: usize) -> &[u8] {
    message
        .get(span.range())
        .map_or(&[][..], |tlv| quote_tlv(tlv, budget))
}

/// A whole received message (its common header has the same layout as a TLV's, RFC 5354
/// §4), without its final padding, for an "Unrecognized Message" cause; nothing if it
/// does not fit `budget` or its Message Length disagrees with the bytes received.
pub fn quote_message(message: &[u8], budget: usize) -> &[u8] {
    quote_tlv(message, budget)
}

/// Bytes a cause quoting `info` adds to an Operation Error: its header, the quote and
/// the padding before the next cause.
pub fn cause_bytes(info: &[u8]) -> usize {
    4 + pad4(info.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc5354_s3_12_a_tlv_is_quoted_whole_or_not_at_all() {
        // Whole and consistent: quoted up to its Length, padding left out.
        let tlv = [0xc0, 0x11, 0, 5, 9, 0, 0, 0];
        assert_eq!(quote_tlv(&tlv, MAX_QUOTE), &tlv[..5]);
        // 1–3 bytes, a Length below 4, a Length past the bytes: nothing.
        for bad in [
            &[0xc0][..],
            &[0xc0, 0x11, 0],
            &[0xc0, 0x11, 0, 3, 1, 2, 3, 4],
        ] {
            assert_eq!(quote_tlv(bad, MAX_QUOTE), &[] as &[u8], "{bad:?}");
        }
        assert_eq!(
            quote_tlv(&[0, 0x0d, 0, 9, 1, 2, 3, 4], MAX_QUOTE),
            &[] as &[u8]
        );
        // Over the budget: nothing.
        assert_eq!(quote_tlv(&tlv, 4), &[] as &[u8]);
    }

    #[test]
    fn a_clipped_span_is_not_quoted() {
        let msg = [0x0e, 0, 0, 12, 0, 0x0d, 0, 200, 1, 2, 3, 4];
        let span = Span { start: 4, len: 8 };
        assert_eq!(quote_span(&msg, span, MAX_QUOTE), &[] as &[u8]);
        let outside = Span { start: 10, len: 8 };
        assert_eq!(quote_span(&msg, outside, MAX_QUOTE), &[] as &[u8]);
    }

    #[test]
    fn an_error_quoting_max_quote_fits_the_length_field() {
        assert_eq!(12 + 4 + cause_bytes(&[0; MAX_QUOTE]), MAX_MESSAGE_LEN + 1);
        // The padding after the last cause is not counted (RFC 5354 §2).
        assert_eq!(12 + 4 + 4 + MAX_QUOTE, MAX_MESSAGE_LEN);
    }
}
