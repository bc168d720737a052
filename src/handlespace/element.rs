//! One registered pool element.

use std::time::Instant;

use super::checksum::ChecksumSum;
use super::policy::Policy;
use crate::ids::{PoolElementId, RegistrarId};
use crate::wire::{self, Writer};

/// A pool element as the handlespace keeps it: the wire parameter as registered (with
/// its home PR and ASAP transport), the parsed policy, and the parameter pre-encoded the
/// way a handle resolution response carries it, so answering copies bytes.
#[derive(Clone, Debug)]
pub struct Element {
    pub(crate) param: wire::PoolElement,
    pub(crate) policy: Policy,
    pub(crate) encoded: Box<[u8]>,
    pub(crate) expires: Option<Instant>,
    pub(crate) unreachable_reports: u32,
    pub(crate) checksum: ChecksumSum,
}

impl Element {
    pub fn id(&self) -> PoolElementId {
        self.param.id
    }

    /// The registrar that owns (supervises) this PE.
    pub fn home(&self) -> RegistrarId {
        self.param.home
    }

    pub fn param(&self) -> &wire::PoolElement {
        &self.param
    }

    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Pool Element parameter without the ASAP transport, as RSPLIB puts it in a handle
    /// resolution response (reference §4.7).
    pub fn encoded(&self) -> &[u8] {
        &self.encoded
    }

    pub fn expires(&self) -> Option<Instant> {
        self.expires
    }

    pub fn unreachable_reports(&self) -> u32 {
        self.unreachable_reports
    }
}

/// Encodes the parameter as it goes into a handle resolution response.
pub(crate) fn encode_for_resolution(param: &wire::PoolElement) -> Box<[u8]> {
    let mut buf = Vec::with_capacity(64);
    let mut w = Writer::new(&mut buf);
    param.encode_without_asap_transport(&mut w);
    w.finish();
    buf.into_boxed_slice()
}
