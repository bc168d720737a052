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
mod reader;
#[doc(hidden)]
pub mod samples;
#[cfg(test)]
mod tests;
mod transport;
mod writer;

pub use asap::{AsapMessage, plain_resolution};
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
pub use writer::{Writer, message, to_vec};

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
