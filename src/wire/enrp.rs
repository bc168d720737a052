//! ENRP messages (RFC 5353 §2), one enum variant per message type.

use super::Decoded;
use super::codes::{EnrpType, ParamType, UpdateAction};
use super::element::{take_element, take_elements};
use super::error::{DecodeError, DecodeErrorKind, Span};
use super::param::{
    OperationError, PoolElement, ServerInformation, decode_checksum, decode_handle,
    encode_checksum, encode_handle, take_error, take_handle,
};
use super::reader::{Header, Params, Reader, fixed_u32};
use super::writer::{TooLong, Writer, try_message};
use crate::ids::{PoolHandle, RegistrarId};

/// Flag bits (RFC 5353 §2; T from draft-dreibholz-rserpool-enrp-takeover).
const FLAG_R: u8 = 0x01;
const FLAG_W: u8 = 0x01;
const FLAG_M: u8 = 0x02;
const FLAG_T: u8 = 0x01;

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

impl EnrpMessage {
    /// Decodes one whole ENRP message (RFC 5353 §2), padded or not.
    pub fn decode(buf: &[u8]) -> Result<Decoded<Self>, DecodeError> {
        let h = Header::decode(buf)?;
        let kind = EnrpType(h.kind);
        if kind.name().is_none() {
            let e = DecodeErrorKind::UnrecognizedMessage(h.kind);
            return Err(DecodeError::new(e, None));
        }
        let mut unrecognized = Vec::new();
        let message = Self::decode_body(kind, h.flags, h.body, &mut unrecognized)?;
        Ok(Decoded {
            message,
            unrecognized,
        })
    }

    fn decode_body(
        kind: EnrpType,
        flags: u8,
        mut r: Reader<'_>,
        unrec: &mut Vec<Span>,
    ) -> Result<Self, DecodeError> {
        // RFC 5353 §2: every message starts with the sending and receiving server IDs.
        let ids = EnrpIds {
            sender: RegistrarId(fixed_u32(&mut r)?),
            receiver: RegistrarId(fixed_u32(&mut r)?),
        };
        // RFC 5353 §2.4, §2.7-2.9: the fixed word at offset 12 of the types that have one
        // (HANDLE_UPDATE: action, then 16 reserved bits ignored on receipt).
        let word12 = match kind {
            EnrpType::HANDLE_UPDATE
            | EnrpType::INIT_TAKEOVER
            | EnrpType::INIT_TAKEOVER_ACK
            | EnrpType::TAKEOVER_SERVER => fixed_u32(&mut r)?,
            _ => 0,
        };
        let target = RegistrarId(word12);
        let mut p = Params::new(r, None, unrec);
        let p = &mut p;
        let m = match kind {
            EnrpType::PRESENCE => Self::Presence {
                ids,
                reply_required: flags & FLAG_R != 0,
                // RSPLIB requires both; the RFC makes them optional (reference §3.4).
                checksum: p
                    .take_if(ParamType::PE_CHECKSUM)?
                    .map(|t| decode_checksum(&t))
                    .transpose()?,
                info: match p.take_if(ParamType::SERVER_INFORMATION)? {
                    Some(t) => Some(ServerInformation::decode(&t, p.unrec())?),
                    None => None,
                },
            },
            EnrpType::HANDLE_TABLE_REQUEST => Self::HandleTableRequest {
                ids,
                owned_only: flags & FLAG_W != 0,
            },
            EnrpType::HANDLE_TABLE_RESPONSE => Self::HandleTableResponse {
                ids,
                reject: flags & FLAG_R != 0,
                more: flags & FLAG_M != 0,
                entries: take_entries(p)?,
            },
            EnrpType::HANDLE_UPDATE => Self::HandleUpdate {
                ids,
                takeover_suggested: flags & FLAG_T != 0,
                action: UpdateAction((word12 >> 16) as u16),
                handle: take_handle(p)?,
                element: take_element(p)?,
            },
            EnrpType::LIST_REQUEST => Self::ListRequest { ids },
            EnrpType::LIST_RESPONSE => {
                let mut servers = Vec::new();
                while let Some(t) = p.take_if(ParamType::SERVER_INFORMATION)? {
                    servers.push(ServerInformation::decode(&t, p.unrec())?);
                }
                Self::ListResponse {
                    ids,
                    reject: flags & FLAG_R != 0,
                    servers,
                }
            }
            EnrpType::INIT_TAKEOVER => Self::InitTakeover { ids, target },
            EnrpType::INIT_TAKEOVER_ACK => Self::InitTakeoverAck { ids, target },
            EnrpType::TAKEOVER_SERVER => Self::TakeoverServer { ids, target },
            EnrpType::ERROR => Self::Error {
                ids,
                error: take_error(p)?,
            },
            _ => {
                let e = DecodeErrorKind::UnrecognizedMessage(kind.0);
                return Err(DecodeError::new(e, None));
            }
        };
        p.finish()?;
        Ok(m)
    }

    /// The flags byte: named flags at their masks, every other bit 0.
    fn flags(&self) -> u8 {
        let bit = |set: bool, mask: u8| if set { mask } else { 0 };
        match self {
            Self::Presence { reply_required, .. } => bit(*reply_required, FLAG_R),
            Self::HandleTableRequest { owned_only, .. } => bit(*owned_only, FLAG_W),
            Self::HandleTableResponse { reject, more, .. } => {
                bit(*reject, FLAG_R) | bit(*more, FLAG_M)
            }
            Self::HandleUpdate {
                takeover_suggested, ..
            } => bit(*takeover_suggested, FLAG_T),
            Self::ListResponse { reject, .. } => bit(*reject, FLAG_R),
            _ => 0,
        }
    }

    /// Appends the whole message, padded to a multiple of 4, to `out`. A message longer
    /// than its length field is not written (and fails a debug assertion); use
    /// [`EnrpMessage::try_encode`] when its size depends on what was received.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let written = self.try_encode(out);
        debug_assert!(written.is_ok(), "{written:?}");
    }

    /// Appends the whole message, padded to a multiple of 4, to `out`, unless it would
    /// be longer than its 16-bit Message Length (RFC 5354 §4): then `out` is unchanged.
    pub fn try_encode(&self, out: &mut Vec<u8>) -> Result<(), TooLong> {
        try_message(out, self.kind().0, self.flags(), |w| {
            let ids = self.ids();
            w.put_u32(ids.sender.0);
            w.put_u32(ids.receiver.0);
            self.encode_body(w);
        })
    }

    fn encode_body(&self, w: &mut Writer<'_>) {
        match self {
            Self::Presence { checksum, info, .. } => {
                if let Some(c) = checksum {
                    encode_checksum(*c, w);
                }
                if let Some(i) = info {
                    i.encode(w);
                }
            }
            Self::HandleTableRequest { .. } | Self::ListRequest { .. } => {}
            Self::HandleTableResponse { entries, .. } => {
                for e in entries {
                    encode_handle(&e.handle, w);
                    e.elements.iter().for_each(|pe| pe.encode(w));
                }
            }
            Self::HandleUpdate {
                action,
                handle,
                element,
                ..
            } => {
                w.put_u16(action.0);
                // RFC 5353 §2.4: reserved, sent as 0.
                w.put_u16(0);
                encode_handle(handle, w);
                element.encode(w);
            }
            Self::ListResponse { servers, .. } => servers.iter().for_each(|s| s.encode(w)),
            Self::InitTakeover { target, .. }
            | Self::InitTakeoverAck { target, .. }
            | Self::TakeoverServer { target, .. } => w.put_u32(target.0),
            Self::Error { error, .. } => error.encode(w),
        }
    }
}

/// RFC 5353 §2.3: (Pool Handle, PE 1..n) repeated; a handle without any PE is malformed.
fn take_entries(p: &mut Params<'_, '_>) -> Result<Vec<PoolEntry>, DecodeError> {
    let mut entries = Vec::new();
    while let Some(t) = p.take_if(ParamType::POOL_HANDLE)? {
        let handle = decode_handle(&t)?;
        entries.push(PoolEntry {
            handle,
            elements: take_elements(p)?,
        });
    }
    Ok(entries)
}
