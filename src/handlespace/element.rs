//! One registered pool element.

use std::time::Instant;

use super::checksum::ChecksumSum;
use super::policy::Policy;
use crate::ids::{PoolElementId, PoolHandle, RegistrarId};
use crate::wire::{self, Writer};

/// A pool element as the handlespace keeps it: the wire parameter as registered (with
/// its home PR and ASAP transport), the parsed policy, and the parameter pre-encoded the
/// way a handle resolution response carries it, so answering copies bytes.
///
/// The parameter and its encoding change together: the only way to change the home
/// after construction is `Element::set_home`, which encodes again.
#[derive(Clone, Debug)]
pub struct Element {
    param: wire::PoolElement,
    encoded: Box<[u8]>,
    pub(crate) policy: Policy,
    pub(crate) expires: Option<Instant>,
    pub(crate) unreachable_reports: u32,
    pub(crate) checksum: ChecksumSum,
}

impl Element {
    pub(crate) fn new(
        handle: &PoolHandle,
        param: wire::PoolElement,
        policy: Policy,
        expires: Option<Instant>,
    ) -> Self {
        Self {
            encoded: encode_for_resolution(&param),
            checksum: ChecksumSum::of_element(handle, param.id),
            param,
            policy,
            expires,
            unreachable_reports: 0,
        }
    }

    pub fn id(&self) -> PoolElementId {
        self.param.id
    }

    /// The registrar responsible for this PE (RFC 5353 §1.1 "home ENRP server").
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

    /// Moves the PE to another home and encodes it again (answers name the home PR).
    pub(crate) fn set_home(&mut self, home: RegistrarId) {
        if self.param.home != home {
            self.param.home = home;
            self.encoded = encode_for_resolution(&self.param);
        }
    }
}

/// Encodes the parameter as it goes into a handle resolution response.
fn encode_for_resolution(param: &wire::PoolElement) -> Box<[u8]> {
    let mut buf = Vec::with_capacity(64);
    let mut w = Writer::new(&mut buf);
    param.encode_without_asap_transport(&mut w);
    w.finish();
    buf.into_boxed_slice()
}
