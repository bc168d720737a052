//! Decoding errors: small, `Copy`, and mapped to the RFC 5354 cause a peer gets back.

use super::codes::{CauseCode, ParamType};
use super::quote::{MAX_QUOTE, quote_message, quote_span};

/// A byte range inside the message being decoded (offsets from the message's first byte).
/// Lets the protocol layer quote the offending TLV in an error cause without the error
/// owning any bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Span {
    pub start: u16,
    pub len: u16,
}

impl Span {
    pub fn range(self) -> std::ops::Range<usize> {
        let s = usize::from(self.start);
        s..s + usize::from(self.len)
    }
}

/// What was wrong with a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeErrorKind {
    #[error("message shorter than its header")]
    Truncated,
    #[error("message length field disagrees with the bytes received")]
    BadMessageLength,
    #[error("unrecognized message type {0:#04x}")]
    UnrecognizedMessage(u8),
    #[error("parameter length out of bounds")]
    BadParameterLength,
    #[error("unrecognized parameter type {0}")]
    UnrecognizedParameter(ParamType),
    #[error("parameter {0} not allowed here")]
    UnexpectedParameter(ParamType),
    #[error("mandatory parameter {0} missing")]
    MissingParameter(ParamType),
    #[error("invalid value in parameter {0}")]
    InvalidValue(ParamType),
    #[error("invalid fixed field")]
    InvalidField,
}

/// A decoding failure: what, and where in the message (when it is a parameter).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct DecodeError {
    pub kind: DecodeErrorKind,
    pub span: Option<Span>,
}

impl DecodeError {
    pub fn new(kind: DecodeErrorKind, span: Option<Span>) -> Self {
        Self { kind, span }
    }

    /// The RFC 5354 cause to send back. The cause information is the offending TLV
    /// (`span`) for 0x0001 and 0x0003, the whole message for 0x0002.
    pub fn cause(&self) -> CauseCode {
        match self.kind {
            DecodeErrorKind::UnrecognizedMessage(_) => CauseCode::UNRECOGNIZED_MESSAGE,
            DecodeErrorKind::UnrecognizedParameter(_) => CauseCode::UNRECOGNIZED_PARAMETER,
            _ => CauseCode::INVALID_VALUES,
        }
    }

    /// Whether the RFC asks the receiver to report this error at all. Unknown message
    /// types with action bits `00` and unknown parameters with action bits `00` are
    /// dropped silently (RFC 5354 §3, §4).
    pub fn should_report(&self) -> bool {
        match self.kind {
            DecodeErrorKind::UnrecognizedMessage(t) => t >> 6 == 0b01,
            DecodeErrorKind::UnrecognizedParameter(p) => p.unknown_action().reports(),
            _ => true,
        }
    }

    /// The cause information to send back for `message` (the bytes that failed): the
    /// whole message for an unknown type, else the offending TLV (RFC 5354 §4, §3.12),
    /// each only if it is whole and consistent and fits [`MAX_QUOTE`] (see
    /// [`super::quote`]); else nothing.
    pub fn cause_info(&self, message: &[u8]) -> Vec<u8> {
        let quote = match (self.kind, self.span) {
            (DecodeErrorKind::UnrecognizedMessage(_), _) => quote_message(message, MAX_QUOTE),
            (_, Some(span)) => quote_span(message, span, MAX_QUOTE),
            (_, None) => &[],
        };
        quote.to_vec()
    }
}
