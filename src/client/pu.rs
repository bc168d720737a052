//! A pool user's handle resolution (RFC 5352 §3.3).

use crate::ids::PoolHandle;
use crate::wire::{AsapMessage, CauseCode, PolicyParam, PoolElement};

/// Encodes ASAP_HANDLE_RESOLUTION for `handle` into `out`; `items` adds RSPLIB's Handle
/// Resolution Option asking for that many PEs.
pub fn resolution_request(handle: &PoolHandle, items: Option<u32>, out: &mut Vec<u8>) {
    AsapMessage::HandleResolution {
        subscribe: false,
        handle: handle.clone(),
        items,
    }
    .encode(out);
}

/// A handle resolution's outcome, read from the registrar's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolved {
    /// The PEs, best first, and the pool's policy.
    Elements {
        handle: PoolHandle,
        policy: Option<PolicyParam>,
        elements: Vec<PoolElement>,
    },
    /// A negative answer (RFC 5352 §2.2.6) or an ASAP_ERROR instead (RSPLIB, §4.9).
    Failed {
        handle: Option<PoolHandle>,
        cause: Option<CauseCode>,
    },
}

impl Resolved {
    /// Interprets a message as a resolution answer; `None` if it is something else.
    pub fn from_message(msg: AsapMessage) -> Option<Self> {
        match msg {
            AsapMessage::HandleResolutionResponse {
                handle,
                error: Some(e),
                ..
            } => Some(Self::Failed {
                handle: Some(handle),
                cause: e.code(),
            }),
            AsapMessage::HandleResolutionResponse {
                handle,
                policy,
                elements,
                error: None,
                ..
            } => Some(Self::Elements {
                handle,
                policy,
                elements,
            }),
            AsapMessage::Error { error } => Some(Self::Failed {
                handle: None,
                cause: error.code(),
            }),
            _ => None,
        }
    }
}
