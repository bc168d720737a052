//! Parameter types (RFC 5354 §3). Decoding and encoding live beside each type.

use std::net::IpAddr;

use super::codes::{CauseCode, PolicyType, TransportUse};
use crate::ids::{PoolElementId, RegistrarId};

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

impl RegistrationLife {
    pub const INFINITE: Self = Self(u32::MAX);
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

/// Server Information parameter (0x000b): a PR's ID and its ENRP SCTP transport.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ServerInformation {
    pub server_id: RegistrarId,
    pub transport: SctpTransport,
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
