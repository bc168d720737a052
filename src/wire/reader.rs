//! Decoding: a bounds-checked cursor over a borrowed message and a TLV walker.
//!
//! Every reader holds the whole message and a window `[pos, end)` into it, so the spans
//! it reports are offsets from the message's first byte without any rebasing. A window
//! never extends past its parent's: a child TLV's window is cut from its parent's. Every
//! span handed out lies inside the message.

use super::codes::ParamType;
use super::error::{DecodeError, DecodeErrorKind, Span};

/// Rounds a TLV length up to the next multiple of 4 (RFC 5354 §2).
pub(crate) fn pad4(len: usize) -> usize {
    len.saturating_add(3) & !3
}

fn offset16(v: usize) -> u16 {
    // A message is at most 65535 bytes long, so offsets inside it fit.
    u16::try_from(v).unwrap_or(u16::MAX)
}

/// A cursor over the window `[pos, end)` of a message. Reads return `None` instead of
/// running past `end`; the caller turns that into the error that fits its context.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `buf[start..]`, keeping `buf` as the origin of spans.
    pub(crate) fn new(buf: &'a [u8], start: usize) -> Self {
        Self {
            buf,
            pos: start.min(buf.len()),
            end: buf.len(),
        }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.end.saturating_sub(self.pos)
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.remaining() {
            return None;
        }
        let out = self.buf.get(self.pos..self.pos + n)?;
        self.pos += n;
        Some(out)
    }

    /// Everything left in the window.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let n = self.remaining();
        self.bytes(n).unwrap_or_default()
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.bytes(1).map(|b| b[0])
    }

    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.bytes(2)
            .and_then(|b| b.try_into().ok())
            .map(u16::from_be_bytes)
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.bytes(4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes)
    }

    /// The next TLV of this window, whatever its type; `None` once fewer than 4 bytes
    /// remain (RFC 5354 §2: those can only be padding).
    pub(crate) fn tlv(&mut self) -> Result<Option<Tlv<'a>>, DecodeError> {
        let remaining = self.remaining();
        if remaining < 4 {
            self.pos = self.end;
            return Ok(None);
        }
        let start = self.pos;
        let mut head = *self;
        let (Some(kind), Some(len16)) = (head.u16(), head.u16()) else {
            return Ok(None);
        };
        let len = usize::from(len16);
        if len < 4 || len > remaining {
            // Quote only what is there, so `&msg[span.range()]` can never fail.
            let span = Span {
                start: offset16(start),
                len: offset16(len.min(remaining)),
            };
            let e = DecodeErrorKind::BadParameterLength;
            return Err(DecodeError::new(e, Some(span)));
        }
        let span = Span {
            start: offset16(start),
            len: len16,
        };
        // RFC 5354 §2 puts padding after every TLV; a sender counting the parent's length
        // the RFC way may leave the last one unpadded, so never step past the window.
        self.pos = start + pad4(len).min(remaining);
        let value = Reader {
            buf: self.buf,
            pos: start + 4,
            end: start + len,
        };
        Ok(Some(Tlv { kind, span, value }))
    }
}

/// A message's common header (RFC 5354 §4) and a reader over its value.
#[derive(Debug)]
pub(crate) struct Header<'a> {
    pub(crate) kind: u8,
    pub(crate) flags: u8,
    pub(crate) body: Reader<'a>,
}

impl<'a> Header<'a> {
    /// RFC 5354 §4: Message Length counts the header and excludes the final padding. The
    /// buffer must hold exactly the message, padded (as RSPLIB requires) or not.
    pub(crate) fn decode(buf: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(buf, 0);
        let (Some(kind), Some(flags), Some(len)) = (r.u8(), r.u8(), r.u16()) else {
            return Err(DecodeError::new(DecodeErrorKind::Truncated, None));
        };
        let len = usize::from(len);
        if len < 4 || (buf.len() != len && buf.len() != pad4(len)) {
            return Err(DecodeError::new(DecodeErrorKind::BadMessageLength, None));
        }
        let msg = buf.get(..len).unwrap_or(buf);
        Ok(Self {
            kind,
            flags,
            body: Reader::new(msg, 4),
        })
    }
}

/// A fixed u32 field of a message (server IDs at offsets 4, 8, 12).
pub(crate) fn fixed_u32(r: &mut Reader<'_>) -> Result<u32, DecodeError> {
    r.u32()
        .ok_or(DecodeError::new(DecodeErrorKind::InvalidField, None))
}

/// One TLV: its raw 16-bit type, where it sits, and a reader over its value.
/// Parameters and error causes share this layout.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tlv<'a> {
    pub(crate) kind: u16,
    pub(crate) span: Span,
    pub(crate) value: Reader<'a>,
}

impl<'a> Tlv<'a> {
    pub(crate) fn param(&self) -> ParamType {
        ParamType(self.kind)
    }

    /// The value bytes (without header and padding).
    pub(crate) fn bytes(&self) -> &'a [u8] {
        let mut v = self.value;
        v.rest()
    }

    /// The value of a fixed-size parameter, which must be exactly `N` bytes long.
    pub(crate) fn fixed<const N: usize>(&self) -> Result<[u8; N], DecodeError> {
        self.bytes().try_into().map_err(|_| self.invalid())
    }

    /// "Invalid value in this parameter", pointing at it.
    pub(crate) fn invalid(&self) -> DecodeError {
        DecodeError::new(DecodeErrorKind::InvalidValue(self.param()), Some(self.span))
    }

    pub(crate) fn unexpected(&self) -> DecodeError {
        DecodeError::new(
            DecodeErrorKind::UnexpectedParameter(self.param()),
            Some(self.span),
        )
    }
}

/// Walks the parameters of one region (a message body or a parameter's value), applying
/// RFC 5354 §3's action bits to unknown types so callers only ever see known ones, and
/// lets the caller consume them by position.
#[derive(Debug)]
pub(crate) struct Params<'a, 'u> {
    r: Reader<'a>,
    /// The enclosing parameter, quoted when a mandatory child is missing; `None` at the
    /// top level of a message.
    parent: Option<Span>,
    peeked: Option<Tlv<'a>>,
    unrecognized: &'u mut Vec<Span>,
}

impl<'a, 'u> Params<'a, 'u> {
    pub(crate) fn new(r: Reader<'a>, parent: Option<Span>, unrec: &'u mut Vec<Span>) -> Self {
        Self {
            r,
            parent,
            peeked: None,
            unrecognized: unrec,
        }
    }

    /// Walks the children of `tlv` that start at `r` (a reader inside its value).
    pub(crate) fn nested(r: Reader<'a>, tlv: &Tlv<'a>, unrec: &'u mut Vec<Span>) -> Self {
        Self::new(r, Some(tlv.span), unrec)
    }

    /// The list skipped `11` parameters are reported into, for walking nested children.
    pub(crate) fn unrec(&mut self) -> &mut Vec<Span> {
        self.unrecognized
    }

    /// The next known parameter, or `None` at the end of the region.
    pub(crate) fn next(&mut self) -> Result<Option<Tlv<'a>>, DecodeError> {
        if let Some(t) = self.peeked.take() {
            return Ok(Some(t));
        }
        while let Some(t) = self.r.tlv()? {
            let kind = t.param();
            if kind.is_known() {
                return Ok(Some(t));
            }
            let action = kind.unknown_action();
            if !action.skips() {
                let e = DecodeErrorKind::UnrecognizedParameter(kind);
                return Err(DecodeError::new(e, Some(t.span)));
            }
            if action.reports() {
                self.unrecognized.push(t.span);
            }
        }
        Ok(None)
    }

    /// The type of the next known parameter, without consuming it.
    pub(crate) fn peek(&mut self) -> Result<Option<ParamType>, DecodeError> {
        if self.peeked.is_none() {
            self.peeked = self.next()?;
        }
        Ok(self.peeked.map(|t| t.param()))
    }

    /// Consumes the next parameter if its type satisfies `f`.
    pub(crate) fn take_where(
        &mut self,
        f: impl FnOnce(ParamType) -> bool,
    ) -> Result<Option<Tlv<'a>>, DecodeError> {
        match self.peek()? {
            Some(kind) if f(kind) => self.next(),
            _ => Ok(None),
        }
    }

    /// Consumes the next parameter if it has type `kind`.
    pub(crate) fn take_if(&mut self, kind: ParamType) -> Result<Option<Tlv<'a>>, DecodeError> {
        self.take_where(|k| k == kind)
    }

    /// The next parameter, which must be of type `kind`.
    pub(crate) fn expect(&mut self, kind: ParamType) -> Result<Tlv<'a>, DecodeError> {
        match self.next()? {
            Some(t) if t.param() == kind => Ok(t),
            Some(t) => Err(t.unexpected()),
            None => Err(self.missing(kind)),
        }
    }

    /// "Mandatory parameter missing", pointing at the enclosing parameter if any.
    pub(crate) fn missing(&self, kind: ParamType) -> DecodeError {
        DecodeError::new(DecodeErrorKind::MissingParameter(kind), self.parent)
    }

    /// Fails on any known parameter left in the region (unknown ones follow their bits).
    pub(crate) fn finish(&mut self) -> Result<(), DecodeError> {
        match self.next()? {
            Some(t) => Err(t.unexpected()),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The (type, value) pairs a walk yields.
    type Walked = Result<Vec<(u16, Vec<u8>)>, DecodeError>;

    fn walk(buf: &[u8]) -> (Walked, Vec<Span>) {
        let mut unrec = Vec::new();
        let mut p = Params::new(Reader::new(buf, 0), None, &mut unrec);
        let mut out = Vec::new();
        let res = loop {
            match p.next() {
                Ok(Some(t)) => out.push((t.kind, t.bytes().to_vec())),
                Ok(None) => break Ok(out),
                Err(e) => break Err(e),
            }
        };
        (res, unrec)
    }

    #[test]
    fn reader_reads_big_endian_and_stops_at_end() {
        let mut r = Reader::new(&[1, 2, 3, 4, 5, 6, 7], 0);
        assert_eq!(r.u8(), Some(1));
        assert_eq!(r.u16(), Some(0x0203));
        assert_eq!(r.u32(), Some(0x0405_0607));
        assert_eq!(r.u8(), None);
        assert_eq!(r.u16(), None);
        assert!(r.rest().is_empty());
        let mut r = Reader::new(&[1, 2, 3], 0);
        assert_eq!(r.u32(), None);
        assert_eq!(r.remaining(), 3, "a failed read consumes nothing");
        assert_eq!(Reader::new(&[1], 5).remaining(), 0);
    }

    #[test]
    fn pad4_rounds_up() {
        assert_eq!([0, 1, 4, 5, 6, 7, 8].map(pad4), [0, 4, 4, 8, 8, 8, 8]);
        assert_eq!(pad4(usize::MAX), usize::MAX & !3);
    }

    #[test]
    fn rfc5354_s2_tlvs_advance_by_padded_length() {
        let buf = [0, 0x0d, 0, 5, 0xaa, 0, 0, 0, 0, 0x0e, 0, 8, 1, 2, 3, 4];
        let (res, _) = walk(&buf);
        assert_eq!(
            res.unwrap(),
            vec![(0x0d, vec![0xaa]), (0x0e, vec![1, 2, 3, 4])]
        );
    }

    #[test]
    fn rfc5354_s2_missing_final_padding_and_trailing_pad_tolerated() {
        let (res, _) = walk(&[0, 0x0d, 0, 5, 0xaa]);
        assert_eq!(res.unwrap(), vec![(0x0d, vec![0xaa])]);
        let (res, _) = walk(&[0, 0x0d, 0, 4, 0, 0, 0]);
        assert_eq!(res.unwrap(), vec![(0x0d, vec![])]);
    }

    #[test]
    fn rfc5354_s2_length_below_4_or_past_parent_rejected() {
        let (res, _) = walk(&[0, 0x0e, 0, 8, 0, 0, 0, 1, 0, 0x0d, 0, 3, 0, 0, 0, 0]);
        let e = res.unwrap_err();
        assert_eq!(e.kind, DecodeErrorKind::BadParameterLength);
        assert_eq!(e.span, Some(Span { start: 8, len: 3 }));
        let (res, _) = walk(&[0, 0x0d, 0, 9, 1, 2, 3, 4]);
        let e = res.unwrap_err();
        assert_eq!(e.kind, DecodeErrorKind::BadParameterLength);
        // The span is clipped to the bytes present.
        assert_eq!(e.span, Some(Span { start: 0, len: 8 }));
    }

    #[test]
    fn rfc5354_s3_action_bits_drive_the_walk() {
        let skip = [0x80, 0x11, 0, 4];
        let skip_report = [0xc0, 0x11, 0, 5, 9, 0, 0, 0];
        let known = [0, 0x0e, 0, 8, 0, 0, 0, 1];
        let buf: Vec<u8> = [&skip[..], &skip_report, &known].concat();
        let (res, unrec) = walk(&buf);
        assert_eq!(res.unwrap(), vec![(0x0e, vec![0, 0, 0, 1])]);
        assert_eq!(unrec, vec![Span { start: 4, len: 5 }]);

        for (hi, kind) in [(0x00, 0x0011), (0x40, 0x4011)] {
            let (res, _) = walk(&[hi, 0x11, 0, 4]);
            let e = res.unwrap_err();
            assert_eq!(
                e.kind,
                DecodeErrorKind::UnrecognizedParameter(ParamType(kind))
            );
            assert_eq!(e.span, Some(Span { start: 0, len: 4 }));
        }
    }

    #[test]
    fn positional_helpers() {
        let buf = [0, 0x0e, 0, 8, 0, 0, 0, 1, 0, 0x0d, 0, 4];
        let mut unrec = Vec::new();
        let mut p = Params::new(Reader::new(&buf, 0), None, &mut unrec);
        assert_eq!(p.take_if(ParamType::COOKIE).unwrap().map(|t| t.kind), None);
        assert_eq!(p.expect(ParamType::PE_IDENTIFIER).unwrap().kind, 0x0e);
        let e = p.expect(ParamType::POOL_HANDLE).unwrap_err();
        assert_eq!(
            e.kind,
            DecodeErrorKind::UnexpectedParameter(ParamType::COOKIE)
        );
        let e = p.expect(ParamType::POOL_HANDLE).unwrap_err();
        assert_eq!(
            e,
            DecodeError::new(
                DecodeErrorKind::MissingParameter(ParamType::POOL_HANDLE),
                None
            )
        );
    }
}
