//! Shared fixtures for the criterion benches: populated handlespaces for every policy.
//!
//! Benches link mimalloc, the registrar's allocator, so the figures are the product's.

use std::net::{IpAddr, Ipv4Addr};

use rserpool::handlespace::{Config, Handlespace};
use rserpool::rng::Rng;
use rserpool::wire::{
    PolicyParam, PolicyType, PoolElement, RegistrationLife, SctpTransport, TransportUse,
    UserTransport,
};
use rserpool::{PoolElementId, PoolHandle, RegistrarId};

/// Pool sizes the issue asks about: small, the product's 500, and 100× that.
pub const SIZES: [usize; 3] = [10, 500, 50_000];

/// The pool every bench uses.
pub fn handle() -> PoolHandle {
    PoolHandle::from("BenchPool")
}

/// Policy values as a varied pool would have them: loads spread over the range,
/// weights and priorities from a few levels.
pub fn policy_for(kind: PolicyType, rng: &mut Rng) -> PolicyParam {
    let load = rng.next_u64() as u32;
    let small = 1 + rng.below(100) as u32;
    let values: &[u32] = match kind {
        PolicyType::ROUND_ROBIN | PolicyType::RANDOM => &[],
        PolicyType::WEIGHTED_ROUND_ROBIN | PolicyType::WEIGHTED_RANDOM | PolicyType::PRIORITY => {
            &[small]
        }
        PolicyType::LEAST_USED | PolicyType::RANDOMIZED_LEAST_USED => &[load],
        PolicyType::WEIGHTED_RANDOM_DPF => &[small, 1000, small],
        PolicyType::LEAST_USED_DPF => &[load, 1000, small],
        PolicyType::LEAST_USED_DEGRADATION_DPF => &[load, 1 << 20, 1000, small],
        _ => &[load, 1 << 20],
    };
    PolicyParam::new(kind, values).expect("at most four values")
}

/// A PE parameter as a registration carries it (home PR filled in, as the registrar does).
pub fn element(id: u32, policy: PolicyParam) -> PoolElement {
    PoolElement {
        id: PoolElementId(id),
        home: RegistrarId(0x0a0b_0c0d),
        registration_life: RegistrationLife(90_000),
        user_transport: UserTransport::Sctp(SctpTransport {
            port: 9000,
            transport_use: TransportUse::DATA_ONLY,
            addresses: vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, (id % 250) as u8))],
        }),
        policy,
        asap_transport: None,
    }
}

/// A handlespace with one pool of `n` PEs (IDs 1..=n) of policy `kind`.
pub fn populated(kind: PolicyType, n: usize, seed: u64) -> (Handlespace, Rng) {
    let mut hs = Handlespace::new(Config::default(), seed);
    let mut rng = Rng::new(seed ^ 0x5eed);
    let h = handle();
    for id in 1..=n as u32 {
        let p = element(id, policy_for(kind, &mut rng));
        hs.register(&h, p, None).expect("bench registration");
    }
    (hs, rng)
}
