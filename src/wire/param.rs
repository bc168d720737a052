//! Parameter types (RFC 5354 §3). Decoding and encoding live beside each type.

use std::net::IpAddr;

use super::codes::{CauseCode, ParamType, PolicyType, TransportUse};
use super::error::DecodeError;
use super::reader::{Params, Tlv};
use super::writer::Writer;
use crate::ids::{PoolElementId, PoolHandle, RegistrarId};

/// Most policy-specific u32 fields any known policy carries (LUD-DPF: 4). A policy
/// parameter with more is rejected as Invalid Values.
pub const MAX_POLICY_VALUES: usize = 4;

/// Member selection policy parameter (0x0008): type plus 0..=4 policy-specific u32s.
/// Unknown types are kept with their values.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PolicyParam {
    pub kind: PolicyType,
    values: [u32; MAX_POLICY_VALUES],
    len: u8,
}

impl PolicyParam {
    /// `None` if more than [`MAX_POLICY_VALUES`] values are given.
    pub fn new(kind: PolicyType, values: &[u32]) -> Option<Self> {
        if values.len() > MAX_POLICY_VALUES {
            return None;
        }
        let mut v = [0; MAX_POLICY_VALUES];
        v[..values.len()].copy_from_slice(values);
        Some(Self {
            kind,
            values: v,
            len: values.len() as u8,
        })
    }

    pub fn round_robin() -> Self {
        Self {
            kind: PolicyType::ROUND_ROBIN,
            values: [0; MAX_POLICY_VALUES],
            len: 0,
        }
    }

    pub fn values(&self) -> &[u32] {
        &self.values[..usize::from(self.len)]
    }
}

impl std::fmt::Debug for PolicyParam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PolicyParam({}, {:?})", self.kind, self.values())
    }
}

/// SCTP transport (0x0004): a port, a Transport Use, and 1..n addresses (multi-homing).
/// Used as user transport, as the ASAP transport of a PE, and inside Server Information.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SctpTransport {
    pub port: u16,
    pub transport_use: TransportUse,
    pub addresses: Vec<IpAddr>,
}

/// TCP (0x0005), UDP (0x0006) and UDP-Lite (0x0007) transports: one address.
/// The RFC's reserved field carries RSPLIB's Transport Use; we send 0 and keep what we get.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IpTransport {
    pub port: u16,
    pub reserved: u16,
    pub address: IpAddr,
}

/// DCCP transport (0x0003).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DccpTransport {
    pub port: u16,
    pub reserved: u16,
    pub service_code: u32,
    pub address: IpAddr,
}

/// A PE's user transport: exactly one per Pool Element parameter.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum UserTransport {
    Sctp(SctpTransport),
    Tcp(IpTransport),
    Udp(IpTransport),
    UdpLite(IpTransport),
    Dccp(DccpTransport),
    /// Opaque transport (0x0010): unknown to RSPLIB and Wireshark, kept for completeness.
    Opaque(Vec<u8>),
}

/// A transport a registrar announces for ASAP (SERVER_ANNOUNCE): SCTP or TCP only.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ServerTransport {
    Sctp(SctpTransport),
    Tcp(IpTransport),
}

/// Registration Life as it travels: a u32 whose unit is milliseconds for RSPLIB and
/// Wireshark, seconds for the RFC; `0xFFFFFFFF` (−1) is infinite. The unit is the
/// protocol layer's decision (reference §10 D1), so the codec keeps the raw number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegistrationLife(pub u32);

/// The unit of Registration Life on the wire (reference §10 D1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum LifeUnit {
    /// RSPLIB and Wireshark: milliseconds.
    #[default]
    Milliseconds,
    /// RFC 5354 §3.10 as written: seconds.
    Seconds,
}

impl RegistrationLife {
    pub const INFINITE: Self = Self(u32::MAX);

    /// The lifetime as a duration, `None` if infinite.
    pub fn to_duration(self, unit: LifeUnit) -> Option<std::time::Duration> {
        if self == Self::INFINITE {
            return None;
        }
        Some(match unit {
            LifeUnit::Milliseconds => std::time::Duration::from_millis(u64::from(self.0)),
            LifeUnit::Seconds => std::time::Duration::from_secs(u64::from(self.0)),
        })
    }

    /// When a lifetime that starts at `now` ends, never sooner than `floor` (a safety
    /// floor, reference §10 D1); `None` if infinite.
    pub fn deadline(
        self,
        now: std::time::Instant,
        unit: LifeUnit,
        floor: std::time::Duration,
    ) -> Option<std::time::Instant> {
        self.to_duration(unit).map(|d| now + d.max(floor))
    }

    /// The wire value for a lifetime, rounded down and capped just below infinite.
    pub fn from_duration(d: std::time::Duration, unit: LifeUnit) -> Self {
        let v = match unit {
            LifeUnit::Milliseconds => d.as_millis(),
            LifeUnit::Seconds => u128::from(d.as_secs()),
        };
        Self(u32::try_from(v).unwrap_or(u32::MAX).min(u32::MAX - 1))
    }
}

#[cfg(test)]
mod life_tests {
    use std::time::Duration;

    use super::{LifeUnit, RegistrationLife};

    #[test]
    fn rsplib_registration_life_is_milliseconds() {
        // Reference §9.1: 90000 from an RSPLIB PE is 90 s.
        let life = RegistrationLife(90_000);
        assert_eq!(
            life.to_duration(LifeUnit::Milliseconds),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            life.to_duration(LifeUnit::Seconds),
            Some(Duration::from_secs(90_000))
        );
        assert_eq!(
            RegistrationLife::INFINITE.to_duration(LifeUnit::Seconds),
            None
        );
        let d = Duration::from_secs(90);
        assert_eq!(
            RegistrationLife::from_duration(d, LifeUnit::Milliseconds),
            life
        );
        let huge = Duration::from_secs(u64::MAX);
        assert_eq!(
            RegistrationLife::from_duration(huge, LifeUnit::Seconds).0,
            u32::MAX - 1
        );
    }
}

/// Pool Element parameter (0x000a).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PoolElement {
    pub id: PoolElementId,
    /// Home ENRP server; 0 = unknown.
    pub home: RegistrarId,
    pub registration_life: RegistrationLife,
    pub user_transport: UserTransport,
    pub policy: PolicyParam,
    /// Filled by the home PR from the registration association; absent in registrations
    /// and (as RSPLIB does) in handle resolution responses; present in ENRP.
    pub asap_transport: Option<SctpTransport>,
}

/// Server Information parameter (0x000b): a PR's ID and its ENRP transport. RFC 5354
/// §3.11 names SCTP (and RSPLIB accepts nothing else); a TCP transport is our extension
/// for ENRP over TCP, which only our registrars speak.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ServerInformation {
    pub server_id: RegistrarId,
    pub transport: ServerTransport,
}

/// One error cause inside an Operation Error.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ErrorCause {
    pub code: CauseCode,
    /// Cause-specific information (e.g. the offending TLV), unpadded.
    pub info: Vec<u8>,
}

/// Operation Error parameter (0x000c): one or more causes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OperationError {
    pub causes: Vec<ErrorCause>,
}

impl OperationError {
    pub fn single(code: CauseCode, info: Vec<u8>) -> Self {
        Self {
            causes: vec![ErrorCause { code, info }],
        }
    }

    /// The first cause's code (the one a requester acts on).
    pub fn code(&self) -> Option<CauseCode> {
        self.causes.first().map(|c| c.code)
    }
}

// ---- Codec of the simple parameters (RFC 5354 §3). ----

/// Pool Handle (0x0009). RFC 5354 §3.9: an opaque non-empty byte string; the maximum
/// length is the registrar's business (RSPLIB: 32).
pub(crate) fn decode_handle(t: &Tlv<'_>) -> Result<PoolHandle, DecodeError> {
    match t.bytes() {
        [] => Err(t.invalid()),
        b => Ok(PoolHandle::new(b)),
    }
}

/// Appends a Pool Handle parameter (0x0009).
pub fn encode_handle(h: &PoolHandle, w: &mut Writer<'_>) {
    encode_handle_bytes(h.as_bytes(), w);
}

/// Appends a Pool Handle parameter (0x0009) holding `h`.
pub fn encode_handle_bytes(h: &[u8], w: &mut Writer<'_>) {
    w.tlv(ParamType::POOL_HANDLE.0, |w| w.put_bytes(h));
}

/// PE Identifier (0x000e), length 8 (RFC 5354 §3.14).
pub(crate) fn decode_pe_id(t: &Tlv<'_>) -> Result<PoolElementId, DecodeError> {
    t.fixed::<4>().map(|b| PoolElementId(u32::from_be_bytes(b)))
}

/// Appends a PE Identifier parameter (0x000e).
pub fn encode_pe_id(id: PoolElementId, w: &mut Writer<'_>) {
    w.tlv(ParamType::PE_IDENTIFIER.0, |w| w.put_u32(id.0));
}

/// PE Checksum (0x000f): length 6, the two pad bytes are not counted (RFC 5354 §3.15).
pub(crate) fn decode_checksum(t: &Tlv<'_>) -> Result<u16, DecodeError> {
    t.fixed::<2>().map(u16::from_be_bytes)
}

pub(crate) fn encode_checksum(sum: u16, w: &mut Writer<'_>) {
    w.tlv(ParamType::PE_CHECKSUM.0, |w| w.put_u16(sum));
}

/// Cookie (0x000d): opaque bytes of any length (RFC 5354 §3.13).
pub(crate) fn decode_cookie(t: &Tlv<'_>) -> Vec<u8> {
    t.bytes().to_vec()
}

pub(crate) fn encode_cookie(cookie: &[u8], w: &mut Writer<'_>) {
    w.tlv(ParamType::COOKIE.0, |w| w.put_bytes(cookie));
}

/// Handle Resolution Option (0x803f), length 8: the number of PEs wanted
/// (draft-dreibholz-rserpool-asap-hropt).
pub(crate) fn decode_items(t: &Tlv<'_>) -> Result<u32, DecodeError> {
    t.fixed::<4>().map(u32::from_be_bytes)
}

pub(crate) fn encode_items(items: u32, w: &mut Writer<'_>) {
    w.tlv(ParamType::HANDLE_RESOLUTION_OPTION.0, |w| w.put_u32(items));
}

impl PolicyParam {
    /// RFC 5354 §3.8, RFC 5356 §7: a u32 type and whole u32 policy fields; more than any known
    /// policy carries is an Invalid Values error.
    pub(crate) fn decode(t: &Tlv<'_>) -> Result<Self, DecodeError> {
        let mut r = t.value;
        let kind = r.u32().ok_or_else(|| t.invalid())?;
        let rest = r.rest();
        if !rest.len().is_multiple_of(4) || rest.len() / 4 > MAX_POLICY_VALUES {
            return Err(t.invalid());
        }
        let mut values = [0; MAX_POLICY_VALUES];
        for (v, c) in values.iter_mut().zip(rest.chunks_exact(4)) {
            *v = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
        }
        Self::new(PolicyType(kind), &values[..rest.len() / 4]).ok_or_else(|| t.invalid())
    }

    /// Appends the Policy TLV (0x0008).
    pub fn encode(&self, w: &mut Writer<'_>) {
        w.tlv(ParamType::POLICY.0, |w| {
            w.put_u32(self.kind.0);
            self.values().iter().for_each(|&v| w.put_u32(v));
        });
    }

    /// The Policy TLV alone, e.g. as the information of an "Inconsistent Pooling Policy"
    /// cause (RFC 5354 §3.12).
    pub fn to_tlv(&self) -> Vec<u8> {
        super::writer::to_vec(|w| self.encode(w))
    }
}

impl OperationError {
    /// RFC 5354 §3.12: one or more causes, each laid out and padded like a TLV. Cause
    /// codes have no action bits, so every cause is kept.
    pub(crate) fn decode(t: &Tlv<'_>) -> Result<Self, DecodeError> {
        let mut r = t.value;
        let mut causes = Vec::new();
        while let Some(c) = r.tlv()? {
            causes.push(ErrorCause {
                code: CauseCode(c.kind),
                info: c.bytes().to_vec(),
            });
        }
        if causes.is_empty() {
            return Err(t.invalid());
        }
        Ok(Self { causes })
    }

    /// Appends the Operation Error TLV (0x000c).
    pub fn encode(&self, w: &mut Writer<'_>) {
        w.tlv(ParamType::OPERATION_ERROR.0, |w| {
            for c in &self.causes {
                w.tlv(c.code.0, |w| w.put_bytes(&c.info));
            }
        });
    }
}

// ---- Positional helpers for message bodies. ----

pub(crate) fn take_handle(p: &mut Params<'_, '_>) -> Result<PoolHandle, DecodeError> {
    decode_handle(&p.expect(ParamType::POOL_HANDLE)?)
}

pub(crate) fn take_pe_id(p: &mut Params<'_, '_>) -> Result<PoolElementId, DecodeError> {
    decode_pe_id(&p.expect(ParamType::PE_IDENTIFIER)?)
}

pub(crate) fn take_error(p: &mut Params<'_, '_>) -> Result<OperationError, DecodeError> {
    OperationError::decode(&p.expect(ParamType::OPERATION_ERROR)?)
}

pub(crate) fn take_opt_error(
    p: &mut Params<'_, '_>,
) -> Result<Option<OperationError>, DecodeError> {
    p.take_if(ParamType::OPERATION_ERROR)?
        .map(|t| OperationError::decode(&t))
        .transpose()
}

pub(crate) fn take_opt_policy(p: &mut Params<'_, '_>) -> Result<Option<PolicyParam>, DecodeError> {
    p.take_if(ParamType::POLICY)?
        .map(|t| PolicyParam::decode(&t))
        .transpose()
}

pub(crate) fn take_opt_pe_id(p: &mut Params<'_, '_>) -> Result<Option<PoolElementId>, DecodeError> {
    p.take_if(ParamType::PE_IDENTIFIER)?
        .map(|t| decode_pe_id(&t))
        .transpose()
}
