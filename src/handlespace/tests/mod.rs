//! Handlespace tests: pool rules, limits, checksums and expiry (`rules`), per-policy
//! selection behaviour (`policies`), the shared record (`record`), and a model-based
//! property test of random operation sequences (`model`).

mod fixed_order;
mod model;
mod policies;
mod record;
mod rules;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use super::*;
use crate::wire::{RegistrationLife, SctpTransport};

pub(super) fn policy(kind: PolicyType, values: &[u32]) -> PolicyParam {
    PolicyParam::new(kind, values).unwrap()
}

pub(super) fn sctp(port: u16, tuse: TransportUse) -> UserTransport {
    UserTransport::Sctp(SctpTransport {
        port,
        transport_use: tuse,
        addresses: vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10))],
    })
}

pub(super) fn pe_with(id: u32, home: u32, p: PolicyParam, t: UserTransport) -> wire::PoolElement {
    wire::PoolElement {
        id: PoolElementId(id),
        home: RegistrarId(home),
        registration_life: RegistrationLife(90_000),
        user_transport: t,
        policy: p,
        asap_transport: None,
    }
}

pub(super) fn pe(id: u32, p: PolicyParam) -> wire::PoolElement {
    pe_with(id, 1, p, sctp(9000, TransportUse::DATA_ONLY))
}

pub(super) fn hs() -> Handlespace {
    Handlespace::new(Config::default(), 42)
}

pub(super) fn ids(hs: &mut Handlespace, handle: &str, n: usize) -> Vec<u32> {
    hs.resolve(handle.as_bytes(), n)
        .unwrap()
        .elements()
        .map(|e| e.id().0)
        .collect()
}

pub(super) fn first_counts(
    hs: &mut Handlespace,
    handle: &str,
    rounds: usize,
    n: usize,
) -> HashMap<u32, usize> {
    let mut counts = HashMap::new();
    for _ in 0..rounds {
        let got = ids(hs, handle, n);
        *counts.entry(got[0]).or_default() += 1;
    }
    counts
}
