//! ASAP messages (RFC 5352 §2.2), one enum variant per message type.

use super::codes::AsapType;
use super::param::{OperationError, PolicyParam, PoolElement, ServerInformation, ServerTransport};
use crate::ids::{PoolElementId, PoolHandle, RegistrarId};

/// An ASAP message. Flags are named booleans; unused flag bits are dropped on decode
/// and sent as zero.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AsapMessage {
    /// 0x01, PE → PR: Pool Handle, Pool Element (no ASAP transport).
    Registration {
        handle: PoolHandle,
        element: PoolElement,
    },
    /// 0x02, PE → PR.
    Deregistration {
        handle: PoolHandle,
        id: PoolElementId,
    },
    /// 0x03, PR → PE. `rejected` is flag R; `error` is the cause (R=1) or a warning (R=0).
    RegistrationResponse {
        rejected: bool,
        handle: PoolHandle,
        id: PoolElementId,
        error: Option<OperationError>,
    },
    /// 0x04, PR → PE.
    DeregistrationResponse {
        handle: PoolHandle,
        id: PoolElementId,
        error: Option<OperationError>,
    },
    /// 0x05, PU/PE → PR. `subscribe` is flag S; `items` is RSPLIB's Handle Resolution
    /// Option (0x803f) when present.
    HandleResolution {
        subscribe: bool,
        handle: PoolHandle,
        items: Option<u32>,
    },
    /// 0x06, PR → PU/PE. `accepted` is flag A. Positive: `error` is `None` and
    /// `elements` non-empty; negative: `error` set, no policy, no elements.
    HandleResolutionResponse {
        accepted: bool,
        handle: PoolHandle,
        policy: Option<PolicyParam>,
        elements: Vec<PoolElement>,
        error: Option<OperationError>,
    },
    /// 0x07, PR → PE. `home` is flag H; `id` is RSPLIB's extra PE Identifier.
    EndpointKeepAlive {
        home: bool,
        server_id: RegistrarId,
        handle: PoolHandle,
        id: Option<PoolElementId>,
    },
    /// 0x08, PE → PR.
    EndpointKeepAliveAck {
        handle: PoolHandle,
        id: PoolElementId,
    },
    /// 0x09, PU/PE → PR.
    EndpointUnreachable {
        handle: PoolHandle,
        id: PoolElementId,
    },
    /// 0x0a, PR → multicast: Server ID, then SCTP/TCP transports (RSPLIB: none, plus an
    /// optional Server Information).
    ServerAnnounce {
        server_id: RegistrarId,
        transports: Vec<ServerTransport>,
        info: Option<ServerInformation>,
    },
    /// 0x0b, PE → PU (control channel).
    Cookie { cookie: Vec<u8> },
    /// 0x0c, PU → PE (control channel).
    CookieEcho { cookie: Vec<u8> },
    /// 0x0d: Pool Handle, [Policy — RSPLIB inserts one], PE 1..n.
    BusinessCard {
        handle: PoolHandle,
        policy: Option<PolicyParam>,
        elements: Vec<PoolElement>,
    },
    /// 0x0e.
    Error { error: OperationError },
}

impl AsapMessage {
    pub fn kind(&self) -> AsapType {
        match self {
            Self::Registration { .. } => AsapType::REGISTRATION,
            Self::Deregistration { .. } => AsapType::DEREGISTRATION,
            Self::RegistrationResponse { .. } => AsapType::REGISTRATION_RESPONSE,
            Self::DeregistrationResponse { .. } => AsapType::DEREGISTRATION_RESPONSE,
            Self::HandleResolution { .. } => AsapType::HANDLE_RESOLUTION,
            Self::HandleResolutionResponse { .. } => AsapType::HANDLE_RESOLUTION_RESPONSE,
            Self::EndpointKeepAlive { .. } => AsapType::ENDPOINT_KEEP_ALIVE,
            Self::EndpointKeepAliveAck { .. } => AsapType::ENDPOINT_KEEP_ALIVE_ACK,
            Self::EndpointUnreachable { .. } => AsapType::ENDPOINT_UNREACHABLE,
            Self::ServerAnnounce { .. } => AsapType::SERVER_ANNOUNCE,
            Self::Cookie { .. } => AsapType::COOKIE,
            Self::CookieEcho { .. } => AsapType::COOKIE_ECHO,
            Self::BusinessCard { .. } => AsapType::BUSINESS_CARD,
            Self::Error { .. } => AsapType::ERROR,
        }
    }
}
