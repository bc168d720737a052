//! The ASAP (RFC 5352) and ENRP (RFC 5353) codec with the parameters of RFC 5354.
//!
//! Decoding borrows the received bytes, checks every length before use, never panics and
//! never reads past a parent's length. Unknown parameter types follow the RFC's action
//! bits ([`ParamType::unknown_action`]): skipped ones are reported in
//! [`Decoded::unrecognized`], the others fail the message with a [`DecodeError`] whose
//! [`DecodeError::cause`] is the RFC 5354 cause to send back. Encoding appends to a
//! caller's buffer through [`Writer`], the one place that computes padding.

mod asap;
mod codes;
mod element;
mod enrp;
mod error;
pub mod framing;
pub mod fuzz;
mod param;
pub mod quote;
mod reader;
#[doc(hidden)]
pub mod samples;
#[cfg(test)]
mod tests;
mod transport;
mod writer;

pub use asap::{AsapMessage, Fit, plain_resolution};
pub use codes::{
    AsapType, CauseCode, EnrpType, ParamType, PolicyType, TransportUse, UnknownMessageAction,
    UnknownParamAction, UpdateAction,
};
pub use enrp::{EnrpIds, EnrpMessage, PoolEntry};
pub use error::{DecodeError, DecodeErrorKind, Span};
pub use param::{
    DccpTransport, ErrorCause, IpTransport, LifeUnit, MAX_POLICY_VALUES, OperationError,
    PolicyParam, PoolElement, RegistrationLife, SctpTransport, ServerInformation, ServerTransport,
    UserTransport, encode_handle, encode_handle_bytes, encode_pe_id,
};
pub use quote::{MAX_CAUSES, MAX_MESSAGE_LEN, MAX_QUOTE};
pub use writer::{TooLong, Writer, message, to_vec, try_message};

/// SCTP payload protocol identifier of ASAP (RFC 5352 §8.3).
pub const PPID_ASAP: u32 = 11;
/// SCTP payload protocol identifier of ENRP (RFC 5353 §5.4).
pub const PPID_ENRP: u32 = 12;
/// IANA port of ASAP over SCTP, TCP and UDP (RFC 5352 §8.2).
pub const PORT_ASAP: u16 = 3863;
/// IANA port of ENRP over SCTP and UDP (RFC 5353 §5.3).
pub const PORT_ENRP: u16 = 9901;

/// A decoded message plus the parameters that were skipped by their action bits and
/// must be reported (bits `11`) in an "Unrecognized Parameter" cause.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded<M> {
    pub message: M,
    pub unrecognized: Vec<Span>,
}

impl<M> Decoded<M> {
    /// RFC 5354 §3: the "Unrecognized Parameter" causes for the parameters skipped with
    /// action bits `11`, one per parameter, each quoting the parameter whole (see
    /// [`quote`]); at most [`MAX_CAUSES`] of them and [`MAX_QUOTE`] bytes of quotes, so
    /// the ERROR carrying them fits its length field. `None` if there is none to report.
    pub fn unrecognized_error(&self, message: &[u8]) -> Option<OperationError> {
        // Room for the causes (headers, quotes, padding) when one quote may take MAX_QUOTE.
        let mut room = MAX_QUOTE + 4;
        let mut causes = Vec::new();
        for &span in self.unrecognized.iter().take(MAX_CAUSES) {
            let info = quote::quote_span(message, span, room.saturating_sub(4));
            let Some(left) = room.checked_sub(quote::cause_bytes(info)) else {
                break;
            };
            room = left;
            causes.push(ErrorCause {
                code: CauseCode::UNRECOGNIZED_PARAMETER,
                info: info.to_vec(),
            });
        }
        (!causes.is_empty()).then_some(OperationError { causes })
    }
}
