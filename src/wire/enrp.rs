//! ENRP messages (RFC 5353 §2), one enum variant per message type.

use super::codes::{EnrpType, UpdateAction};
use super::param::{OperationError, PoolElement, ServerInformation};
use crate::ids::{PoolHandle, RegistrarId};

/// The two IDs every ENRP message starts with (offsets 4 and 8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct EnrpIds {
    pub sender: RegistrarId,
    /// 0 when group-cast; RSPLIB sends the peer's ID (reference §10 D18).
    pub receiver: RegistrarId,
}

/// One pool's part of a handle table response: the handle and 1..n PEs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolEntry {
    pub handle: PoolHandle,
    pub elements: Vec<PoolElement>,
}

/// An ENRP message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnrpMessage {
    /// 0x01. `reply_required` is flag R. RSPLIB requires both the checksum and the
    /// server information and sends them always (reference §3.4).
    Presence {
        ids: EnrpIds,
        reply_required: bool,
        checksum: Option<u16>,
        info: Option<ServerInformation>,
    },
    /// 0x02. `owned_only` is flag W (only PEs owned by the receiver).
    HandleTableRequest { ids: EnrpIds, owned_only: bool },
    /// 0x03. `reject` is flag R, `more` flag M.
    HandleTableResponse {
        ids: EnrpIds,
        reject: bool,
        more: bool,
        entries: Vec<PoolEntry>,
    },
    /// 0x04. `takeover_suggested` is RSPLIB's flag T.
    HandleUpdate {
        ids: EnrpIds,
        takeover_suggested: bool,
        action: UpdateAction,
        handle: PoolHandle,
        element: PoolElement,
    },
    /// 0x05.
    ListRequest { ids: EnrpIds },
    /// 0x06. `reject` is flag R.
    ListResponse {
        ids: EnrpIds,
        reject: bool,
        servers: Vec<ServerInformation>,
    },
    /// 0x07.
    InitTakeover { ids: EnrpIds, target: RegistrarId },
    /// 0x08.
    InitTakeoverAck { ids: EnrpIds, target: RegistrarId },
    /// 0x09.
    TakeoverServer { ids: EnrpIds, target: RegistrarId },
    /// 0x0a.
    Error { ids: EnrpIds, error: OperationError },
}

impl EnrpMessage {
    pub fn kind(&self) -> EnrpType {
        match self {
            Self::Presence { .. } => EnrpType::PRESENCE,
            Self::HandleTableRequest { .. } => EnrpType::HANDLE_TABLE_REQUEST,
            Self::HandleTableResponse { .. } => EnrpType::HANDLE_TABLE_RESPONSE,
            Self::HandleUpdate { .. } => EnrpType::HANDLE_UPDATE,
            Self::ListRequest { .. } => EnrpType::LIST_REQUEST,
            Self::ListResponse { .. } => EnrpType::LIST_RESPONSE,
            Self::InitTakeover { .. } => EnrpType::INIT_TAKEOVER,
            Self::InitTakeoverAck { .. } => EnrpType::INIT_TAKEOVER_ACK,
            Self::TakeoverServer { .. } => EnrpType::TAKEOVER_SERVER,
            Self::Error { .. } => EnrpType::ERROR,
        }
    }

    pub fn ids(&self) -> EnrpIds {
        match self {
            Self::Presence { ids, .. }
            | Self::HandleTableRequest { ids, .. }
            | Self::HandleTableResponse { ids, .. }
            | Self::HandleUpdate { ids, .. }
            | Self::ListRequest { ids }
            | Self::ListResponse { ids, .. }
            | Self::InitTakeover { ids, .. }
            | Self::InitTakeoverAck { ids, .. }
            | Self::TakeoverServer { ids, .. }
            | Self::Error { ids, .. } => *ids,
        }
    }
}
