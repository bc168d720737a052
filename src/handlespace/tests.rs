//! Handlespace tests: pool rules, limits, checksums, expiry, a model-based property test
//! of random operation sequences, and per-policy selection behaviour.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::wire::{IpTransport, RegistrationLife, SctpTransport};

fn policy(kind: PolicyType, values: &[u32]) -> PolicyParam {
    PolicyParam::new(kind, values).unwrap()
}

fn sctp(port: u16, tuse: TransportUse) -> UserTransport {
    UserTransport::Sctp(SctpTransport {
        port,
        transport_use: tuse,
        addresses: vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10))],
    })
}

fn pe_with(id: u32, home: u32, p: PolicyParam, t: UserTransport) -> wire::PoolElement {
    wire::PoolElement {
        id: PoolElementId(id),
        home: RegistrarId(home),
        registration_life: RegistrationLife(90_000),
        user_transport: t,
        policy: p,
        asap_transport: None,
    }
}

fn pe(id: u32, p: PolicyParam) -> wire::PoolElement {
    pe_with(id, 1, p, sctp(9000, TransportUse::DATA_ONLY))
}

fn hs() -> Handlespace {
    Handlespace::new(Config::default(), 42)
}

fn ids(hs: &mut Handlespace, handle: &str, n: usize) -> Vec<u32> {
    hs.resolve(handle.as_bytes(), n)
        .unwrap()
        .elements()
        .map(|e| e.id().0)
        .collect()
}

fn first_counts(
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

// ---- RFC 5352 §3.1: pool rules -------------------------------------------------------

#[test]
fn rfc5352_s3_1_first_registration_creates_pool_and_fixes_its_attributes() {
    let mut hs = hs();
    let h = PoolHandle::from("EchoPool");
    let r = hs
        .register(&h, pe(1, PolicyParam::round_robin()), None)
        .unwrap();
    assert_eq!(r, Registered::New { new_pool: true });
    let pool = hs.pool(b"EchoPool").unwrap();
    assert_eq!(pool.policy_type(), PolicyType::ROUND_ROBIN);
    assert_eq!(pool.transport(), TransportKind::Sctp);
    assert_eq!(pool.transport_use(), TransportUse::DATA_ONLY);
    let r = hs
        .register(&h, pe(2, PolicyParam::round_robin()), None)
        .unwrap();
    assert_eq!(r, Registered::New { new_pool: false });
    assert_eq!(hs.element_count(), 2);
}

#[test]
fn rfc5352_s3_1_inconsistent_policy_rejected_with_pool_policy() {
    let mut hs = hs();
    let h = PoolHandle::from("p");
    hs.register(&h, pe(1, policy(PolicyType::LEAST_USED, &[0])), None)
        .unwrap();
    let err = hs
        .register(&h, pe(2, PolicyParam::round_robin()), None)
        .unwrap_err();
    assert_eq!(err.cause(), wire::CauseCode::INCONSISTENT_POOLING_POLICY);
    assert!(
        matches!(err, RegistrationError::InconsistentPolicy { pool, .. } if pool.kind == PolicyType::LEAST_USED)
    );
    // Reference §9.2: the rejection as it goes on the wire, 44 bytes.
    let response = wire::AsapMessage::RegistrationResponse {
        rejected: true,
        handle: PoolHandle::from("EchoPool"),
        id: PoolElementId(0x1a2b_3c4d),
        error: Some(err.to_operation_error()),
    };
    let mut bytes = Vec::new();
    response.encode(&mut bytes);
    let expect: [u8; 44] = [
        0x03, 0x01, 0x00, 0x2c, 0x00, 0x09, 0x00, 0x0c, 0x45, 0x63, 0x68, 0x6f, 0x50, 0x6f, 0x6f,
        0x6c, 0x00, 0x0e, 0x00, 0x08, 0x1a, 0x2b, 0x3c, 0x4d, 0x00, 0x0c, 0x00, 0x14, 0x00, 0x05,
        0x00, 0x10, 0x00, 0x08, 0x00, 0x0c, 0x40, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
    ];
    assert_eq!(bytes, expect);
    // Same type, other values: fine (RSPLIB: compatibility is type equality).
    hs.register(&h, pe(2, policy(PolicyType::LEAST_USED, &[77])), None)
        .unwrap();
}

#[test]
fn rfc5352_s3_1_inconsistent_transport_and_data_control_rejected() {
    let mut hs = hs();
    let h = PoolHandle::from("p");
    hs.register(&h, pe(1, PolicyParam::round_robin()), None)
        .unwrap();
    let tcp = UserTransport::Tcp(IpTransport {
        port: 80,
        reserved: 0,
        address: IpAddr::V4(Ipv4Addr::LOCALHOST),
    });
    let err = hs
        .register(&h, pe_with(2, 1, PolicyParam::round_robin(), tcp), None)
        .unwrap_err();
    assert_eq!(err.cause(), wire::CauseCode::INCONSISTENT_TRANSPORT_TYPE);
    let ctl = sctp(9000, TransportUse::DATA_PLUS_CONTROL);
    let err = hs
        .register(&h, pe_with(2, 1, PolicyParam::round_robin(), ctl), None)
        .unwrap_err();
    assert_eq!(err.cause(), wire::CauseCode::INCONSISTENT_DATA_CONTROL);
    assert_eq!(
        hs.element_count(),
        1,
        "a rejected registration changes nothing"
    );
}

#[test]
fn invalid_values_rejected() {
    let mut hs = hs();
    let rr = PolicyParam::round_robin();
    let long = PoolHandle::new(&[b'x'; MAX_POOL_HANDLE_LEN + 1]);
    let cases = [
        (PoolHandle::new(b""), pe(1, rr)),
        (long, pe(1, rr)),
        (PoolHandle::from("p"), pe(0, rr)),
        (
            PoolHandle::from("p"),
            pe(1, policy(PolicyType(0x4000_0009), &[])),
        ),
        (
            PoolHandle::from("p"),
            pe(1, policy(PolicyType::WEIGHTED_RANDOM, &[])),
        ),
        (
            PoolHandle::from("p"),
            pe_with(1, 1, rr, sctp(0, TransportUse::DATA_ONLY)),
        ),
    ];
    for (h, p) in cases {
        let err = hs.register(&h, p, None).unwrap_err();
        assert_eq!(err.cause(), wire::CauseCode::INVALID_VALUES, "{err}");
        // The offending TLV is quoted and is itself a well-formed parameter.
        let info = &err.to_operation_error().causes[0].info;
        assert!(info.len() >= 4, "{err}: {info:?}");
        assert_eq!(
            usize::from(u16::from_be_bytes([info[2], info[3]])),
            info.len(),
            "{err}"
        );
    }
    let mut many = pe(1, rr);
    if let UserTransport::Sctp(s) = &mut many.user_transport {
        s.addresses = vec![IpAddr::V4(Ipv4Addr::LOCALHOST); MAX_TRANSPORT_ADDRESSES + 1];
    }
    assert!(hs.register(&PoolHandle::from("p"), many, None).is_err());
    assert_eq!(hs.pool_count(), 0);
    // The limit itself is allowed.
    let h = PoolHandle::new(&[b'x'; MAX_POOL_HANDLE_LEN]);
    hs.register(&h, pe(1, rr), None).unwrap();
}

#[test]
fn resource_limits_answer_lack_of_resources() {
    let config = Config {
        max_pools: 2,
        max_pool_elements: 3,
        max_elements: 4,
        ..Config::default()
    };
    let mut hs = Handlespace::new(config, 1);
    let rr = PolicyParam::round_robin();
    for id in 1..=3 {
        hs.register(&PoolHandle::from("a"), pe(id, rr), None)
            .unwrap();
    }
    let err = hs
        .register(&PoolHandle::from("a"), pe(4, rr), None)
        .unwrap_err();
    assert_eq!(err, RegistrationError::LackOfResources("PEs in this pool"));
    // Re-registration at the limit is still fine.
    hs.register(&PoolHandle::from("a"), pe(3, rr), None)
        .unwrap();
    hs.register(&PoolHandle::from("b"), pe(1, rr), None)
        .unwrap();
    let err = hs
        .register(&PoolHandle::from("c"), pe(1, rr), None)
        .unwrap_err();
    assert_eq!(err.cause(), wire::CauseCode::LACK_OF_RESOURCES);
    let err = hs
        .register(&PoolHandle::from("b"), pe(2, rr), None)
        .unwrap_err();
    assert_eq!(err, RegistrationError::LackOfResources("PEs"));
    assert_eq!(hs.element_count(), 4);
}

#[test]
fn deregistration_removes_and_deletes_empty_pool() {
    let mut hs = hs();
    let h = PoolHandle::from("p");
    hs.register(&h, pe(1, PolicyParam::round_robin()), None)
        .unwrap();
    hs.register(&h, pe(2, PolicyParam::round_robin()), None)
        .unwrap();
    assert_eq!(
        hs.deregister(b"p", PoolElementId(1)).unwrap().id(),
        PoolElementId(1)
    );
    assert!(hs.deregister(b"p", PoolElementId(1)).is_none());
    assert_eq!(ids(&mut hs, "p", 3), vec![2]);
    hs.deregister(b"p", PoolElementId(2)).unwrap();
    assert!(hs.pool(b"p").is_none());
    assert!(hs.resolve(b"p", 3).is_none());
    assert_eq!(hs.element_count(), 0);
}

// ---- Lifetime ------------------------------------------------------------------------

#[test]
fn registration_life_expires_and_reregistration_extends_it() {
    let mut hs = hs();
    let t0 = Instant::now();
    let h = PoolHandle::from("p");
    let rr = PolicyParam::round_robin();
    hs.register(&h, pe(1, rr), Some(t0 + Duration::from_secs(10)))
        .unwrap();
    hs.register(&h, pe(2, rr), Some(t0 + Duration::from_secs(20)))
        .unwrap();
    hs.register(&h, pe(3, rr), None).unwrap();
    assert_eq!(hs.next_expiry(), Some(t0 + Duration::from_secs(10)));
    // PE 1 re-registers before its deadline: pushed to 30 s.
    hs.register(&h, pe(1, rr), Some(t0 + Duration::from_secs(30)))
        .unwrap();
    let mut out = Vec::new();
    hs.expire(t0 + Duration::from_secs(25), &mut out);
    assert_eq!(
        out.iter().map(|(_, e)| e.id().0).collect::<Vec<_>>(),
        vec![2]
    );
    out.clear();
    hs.expire(t0 + Duration::from_secs(3600), &mut out);
    assert_eq!(
        out.iter().map(|(_, e)| e.id().0).collect::<Vec<_>>(),
        vec![1]
    );
    assert_eq!(hs.next_expiry(), None);
    assert_eq!(ids(&mut hs, "p", 3), vec![3], "infinite life stays");
}

#[test]
fn stale_deadlines_are_compacted() {
    let mut hs = hs();
    let t0 = Instant::now();
    let h = PoolHandle::from("p");
    for i in 0..10_000u64 {
        let p = pe(1 + (i % 3) as u32, PolicyParam::round_robin());
        hs.register(&h, p, Some(t0 + Duration::from_millis(i)))
            .unwrap();
    }
    assert!(
        hs.expiry.entries() <= 2 * 3 + 1024,
        "{}",
        hs.expiry.entries()
    );
    let mut out = Vec::new();
    hs.expire(t0 + Duration::from_millis(9_996), &mut out);
    assert!(out.is_empty(), "all three re-registered later");
    hs.expire(t0 + Duration::from_millis(9_999), &mut out);
    assert_eq!(out.len(), 3);
}

// ---- RFC 5353 §3.6: checksums --------------------------------------------------------

#[test]
fn rfc5353_s3_6_checksum_per_owner_follows_ownership() {
    let mut hs = hs();
    let h = PoolHandle::from("EchoPool");
    assert_eq!(hs.owner_checksum(RegistrarId(0x0a0b_0c0d)), 0xffff);
    hs.register(
        &h,
        pe_with(
            0x1a2b_3c4d,
            0x0a0b_0c0d,
            PolicyParam::round_robin(),
            sctp(9000, TransportUse::DATA_ONLY),
        ),
        None,
    )
    .unwrap();
    assert_eq!(hs.owner_checksum(RegistrarId(0x0a0b_0c0d)), 0x3bd9);
    // Re-registration at another PR moves the PE's part of the sum.
    let r = hs
        .register(
            &h,
            pe_with(
                0x1a2b_3c4d,
                7,
                PolicyParam::round_robin(),
                sctp(9000, TransportUse::DATA_ONLY),
            ),
            None,
        )
        .unwrap();
    assert_eq!(
        r,
        Registered::Updated {
            previous_home: RegistrarId(0x0a0b_0c0d)
        }
    );
    assert_eq!(hs.owner_checksum(RegistrarId(0x0a0b_0c0d)), 0xffff);
    assert_eq!(hs.owner_checksum(RegistrarId(7)), 0x3bd9);
    assert_eq!(hs.transfer_ownership(RegistrarId(7), RegistrarId(9)), 1);
    assert_eq!(hs.owner_checksum(RegistrarId(9)), 0x3bd9);
    assert_eq!(
        hs.element(b"EchoPool", PoolElementId(0x1a2b_3c4d))
            .unwrap()
            .home(),
        RegistrarId(9)
    );
    hs.deregister(b"EchoPool", PoolElementId(0x1a2b_3c4d));
    assert_eq!(hs.owner_checksum(RegistrarId(9)), 0xffff);
    assert_eq!(hs.owner_count(RegistrarId(9)), 0);
}

#[test]
fn checksum_parts_of_shards_add_up_to_the_whole() {
    let mut whole = hs();
    let mut shards = [
        Handlespace::new(Config::default(), 1),
        Handlespace::new(Config::default(), 2),
    ];
    let mut rng = crate::rng::Rng::new(5);
    for i in 0..2000u32 {
        let handle = PoolHandle::new(format!("pool-{}", rng.below(37)).as_bytes());
        let id = 1 + rng.below(u64::from(u32::MAX - 1)) as u32;
        let p = pe_with(
            id,
            1 + (i % 3),
            PolicyParam::round_robin(),
            sctp(9000, TransportUse::DATA_ONLY),
        );
        whole.register(&handle, p.clone(), None).unwrap();
        // Partitioned by pool handle, as the runtime's shards are.
        let shard = handle
            .as_bytes()
            .iter()
            .map(|&b| usize::from(b))
            .sum::<usize>()
            % 2;
        shards[shard].register(&handle, p, None).unwrap();
    }
    for owner in 1..=3 {
        let owner = RegistrarId(owner);
        let sum = shards[0].owner_sum(owner) + shards[1].owner_sum(owner);
        assert_eq!(sum.finish(), whole.owner_checksum(owner));
        assert_ne!(whole.owner_checksum(owner), 0xffff);
    }
}

// ---- RFC 5356 policies ---------------------------------------------------------------

fn pool_of(kind: PolicyType, values: &[&[u32]]) -> Handlespace {
    let mut hs = hs();
    for (i, v) in values.iter().enumerate() {
        hs.register(
            &PoolHandle::from("p"),
            pe(i as u32 + 1, policy(kind, v)),
            None,
        )
        .unwrap();
    }
    hs
}

#[test]
fn rfc5356_round_robin_rotates_by_one_per_request() {
    let mut hs = pool_of(PolicyType::ROUND_ROBIN, &[&[] as &[u32]; 5]);
    assert_eq!(ids(&mut hs, "p", 3), vec![1, 2, 3]);
    assert_eq!(ids(&mut hs, "p", 3), vec![2, 3, 4]);
    assert_eq!(ids(&mut hs, "p", 3), vec![3, 4, 5]);
    assert_eq!(ids(&mut hs, "p", 3), vec![4, 5, 1]);
    // A newcomer joins at the tail.
    hs.register(
        &PoolHandle::from("p"),
        pe(6, PolicyParam::round_robin()),
        None,
    )
    .unwrap();
    assert_eq!(ids(&mut hs, "p", 10), vec![5, 1, 2, 3, 4, 6]);
}

#[test]
fn rfc5356_round_robin_is_fair_over_many_rounds() {
    let mut hs = pool_of(PolicyType::ROUND_ROBIN, &[&[] as &[u32]; 7]);
    let counts = first_counts(&mut hs, "p", 7 * 1000, 3);
    assert!(counts.values().all(|&c| c == 1000), "{counts:?}");
}

#[test]
fn rfc5356_round_robin_reregistration_keeps_position() {
    let mut hs = pool_of(PolicyType::ROUND_ROBIN, &[&[] as &[u32]; 4]);
    assert_eq!(ids(&mut hs, "p", 1), vec![1]);
    hs.register(
        &PoolHandle::from("p"),
        pe(3, PolicyParam::round_robin()),
        None,
    )
    .unwrap();
    assert_eq!(ids(&mut hs, "p", 4), vec![2, 3, 4, 1]);
}

#[test]
fn rfc5356_weighted_round_robin_honours_weights_exactly_and_interleaves() {
    let mut hs = pool_of(
        PolicyType::WEIGHTED_ROUND_ROBIN,
        &[&[1], &[2], &[3], &[4], &[0]],
    );
    let counts = first_counts(&mut hs, "p", 10 * 1000, 1);
    for (id, w) in [(1, 1), (2, 2), (3, 3), (4, 4)] {
        let c = counts[&id] as i64;
        assert!(
            (c - 1000 * w).abs() <= 1,
            "PE {id}: {c} of 10000 for weight {w}"
        );
    }
    assert!(!counts.contains_key(&5), "weight 0 never serves");
    // Interleaved, not in bursts: every 10 consecutive picks hold each PE weight times.
    let seq: Vec<u32> = (0..100).map(|_| ids(&mut hs, "p", 1)[0]).collect();
    for window in seq.windows(10) {
        for (id, w) in [(1, 1), (2, 2), (3, 3), (4, 4)] {
            assert_eq!(window.iter().filter(|&&x| x == id).count(), w, "{seq:?}");
        }
    }
}

#[test]
fn weighted_round_robin_survives_pass_rebase() {
    let mut hs = pool_of(PolicyType::WEIGHTED_ROUND_ROBIN, &[&[1], &[3]]);
    if let select::Selector::Ordered(o) = &mut hs.pools.get_mut(&b"p"[..]).unwrap().selector {
        o.force_vtime((1 << 62) - 1);
    }
    let counts = first_counts(&mut hs, "p", 4000, 1);
    assert!(
        (counts[&1] as i64 - 1000).abs() <= 2 && (counts[&2] as i64 - 3000).abs() <= 2,
        "{counts:?}"
    );
}

#[test]
fn rfc5356_random_is_uniform_and_distinct() {
    let mut hs = pool_of(PolicyType::RANDOM, &[&[] as &[u32]; 10]);
    let mut counts = [0usize; 11];
    for _ in 0..100_000 {
        let got = ids(&mut hs, "p", 3);
        let mut d = got.clone();
        d.sort_unstable();
        d.dedup();
        assert_eq!(d.len(), 3, "distinct: {got:?}");
        for id in got {
            counts[id as usize] += 1;
        }
    }
    // Each PE is in 30 % of the answers: 30,000 ± 1 % (σ ≈ 145).
    for (id, &c) in counts.iter().enumerate().skip(1) {
        assert!((c as i64 - 30_000).abs() < 1_000, "PE {id}: {c}");
    }
    assert_eq!(
        ids(&mut hs, "p", 50).len(),
        10,
        "asking for more returns all"
    );
}

#[test]
fn rfc5356_weighted_random_follows_weights() {
    let mut hs = pool_of(PolicyType::WEIGHTED_RANDOM, &[&[1], &[2], &[3], &[4], &[0]]);
    let counts = first_counts(&mut hs, "p", 100_000, 1);
    for (id, w) in [(1, 1), (2, 2), (3, 3), (4, 4)] {
        let share = counts[&id] as f64 / 100_000.0;
        assert!((share - w as f64 / 10.0).abs() < 0.01, "PE {id}: {share}");
    }
    assert!(!counts.contains_key(&5));
    // Without repetition, and a weight-0 PE is never a filler.
    let got = ids(&mut hs, "p", 10);
    assert_eq!(got.len(), 4);
}

#[test]
fn rfc5356_priority_prefers_highest_then_rotates_ties() {
    let mut hs = pool_of(PolicyType::PRIORITY, &[&[1], &[9], &[5], &[9]]);
    assert_eq!(ids(&mut hs, "p", 4), vec![2, 4, 3, 1]);
    assert_eq!(ids(&mut hs, "p", 2), vec![4, 2]);
    assert_eq!(ids(&mut hs, "p", 2), vec![2, 4]);
}

#[test]
fn rfc5356_least_used_picks_least_loaded_and_rotates_ties() {
    let mut hs = pool_of(PolicyType::LEAST_USED, &[&[50], &[10], &[30], &[10], &[99]]);
    assert_eq!(ids(&mut hs, "p", 3), vec![2, 4, 3]);
    assert_eq!(ids(&mut hs, "p", 3), vec![4, 2, 3]);
    // A load update (re-registration) re-ranks the PE.
    hs.register(
        &PoolHandle::from("p"),
        pe(5, policy(PolicyType::LEAST_USED, &[0])),
        None,
    )
    .unwrap();
    assert_eq!(ids(&mut hs, "p", 2), vec![5, 2]);
}

#[test]
fn rfc5356_least_used_with_degradation_degrades_and_resets() {
    let lud = PolicyType::LEAST_USED_DEGRADATION;
    let mut hs = pool_of(lud, &[&[10, 15], &[20, 15], &[30, 15]]);
    // Keys: 10, 20, 30 → pick 1 (→25), then 2 (20 → 35), then 1 (25 → 40), then 3 ...
    let seq: Vec<u32> = (0..4).map(|_| ids(&mut hs, "p", 1)[0]).collect();
    assert_eq!(seq, vec![1, 2, 1, 3]);
    assert_eq!(
        hs.pool(b"p").unwrap().degradation(PoolElementId(1)),
        Some(30)
    );
    // Re-registration resets the degradation (RFC 5356 §4.2.2).
    hs.register(&PoolHandle::from("p"), pe(1, policy(lud, &[10, 15])), None)
        .unwrap();
    assert_eq!(
        hs.pool(b"p").unwrap().degradation(PoolElementId(1)),
        Some(0)
    );
    assert_eq!(ids(&mut hs, "p", 1), vec![1]);
}

#[test]
fn rfc5356_priority_least_used_ranks_by_load_plus_degradation() {
    let mut hs = pool_of(
        PolicyType::PRIORITY_LEAST_USED,
        &[&[10, 50], &[30, 0], &[20, 5]],
    );
    assert_eq!(ids(&mut hs, "p", 3), vec![3, 2, 1]);
}

#[test]
fn rfc5356_randomized_least_used_weights_by_unload() {
    let q = u32::MAX / 4;
    // Unloads: 3q, 2q, q (+ rounding) → shares 1/2, 1/3, 1/6.
    let mut hs = pool_of(
        PolicyType::RANDOMIZED_LEAST_USED,
        &[&[q], &[2 * q], &[3 * q]],
    );
    let counts = first_counts(&mut hs, "p", 60_000, 1);
    for (id, share) in [(1, 0.5), (2, 1.0 / 3.0), (3, 1.0 / 6.0)] {
        let got = counts[&id] as f64 / 60_000.0;
        assert!((got - share).abs() < 0.01, "PE {id}: {got}");
    }
}

#[test]
fn rsplib_randomized_least_used_degradation_degrades_the_winner() {
    let mut hs = pool_of(
        PolicyType::RANDOMIZED_LEAST_USED_DEGRADATION,
        &[&[0, u32::MAX / 2] as &[u32]; 2],
    );
    let first = ids(&mut hs, "p", 1)[0];
    let pool = hs.pool(b"p").unwrap();
    assert_eq!(pool.degradation(PoolElementId(first)), Some(u32::MAX / 2));
    // The other PE now weighs about twice as much.
    let counts = first_counts(&mut hs, "p", 1, 1);
    assert_eq!(counts.len(), 1);
}

#[test]
fn rsplib_priority_least_used_degradation_and_dpf_orders() {
    let mut hs = pool_of(
        PolicyType::PRIORITY_LEAST_USED_DEGRADATION,
        &[&[10, 10], &[15, 0]],
    );
    assert_eq!(ids(&mut hs, "p", 1), vec![2]);
    let mut hs = pool_of(PolicyType::LEAST_USED_DPF, &[&[10, 2, 50], &[100, 0, 0]]);
    assert_eq!(ids(&mut hs, "p", 2), vec![2, 1], "10 + 2 × 50 > 100");
    let mut hs = pool_of(
        PolicyType::LEAST_USED_DEGRADATION_DPF,
        &[&[0, 5, 1, 10], &[12, 0, 0, 0]],
    );
    assert_eq!(ids(&mut hs, "p", 1), vec![1]);
    assert_eq!(
        ids(&mut hs, "p", 1),
        vec![2],
        "0 + 5 + 10 > 12 after one pick"
    );
}

#[test]
fn rsplib_weighted_random_dpf_discounts_distance() {
    // Same weight, PE 2 is far away: its weight drops to a tenth.
    let far = u32::MAX / 100;
    let mut hs = pool_of(
        PolicyType::WEIGHTED_RANDOM_DPF,
        &[&[1000, far, 0], &[1000, far, 90]],
    );
    let counts = first_counts(&mut hs, "p", 20_000, 1);
    let share = counts[&2] as f64 / 20_000.0;
    assert!((share - 100.0 / 1100.0).abs() < 0.01, "{share}");
}

#[test]
fn selection_replays_from_the_seed() {
    let run = |seed| {
        let mut hs = Handlespace::new(Config::default(), seed);
        for i in 1..=50 {
            hs.register(
                &PoolHandle::from("p"),
                pe(i, policy(PolicyType::WEIGHTED_RANDOM, &[i])),
                None,
            )
            .unwrap();
        }
        (0..100)
            .flat_map(|_| ids(&mut hs, "p", 3))
            .collect::<Vec<_>>()
    };
    assert_eq!(run(9), run(9));
    assert_ne!(run(9), run(10));
}

#[test]
fn max_increment_setting_advances_every_returned_pe() {
    let config = Config {
        max_increment: Some(usize::MAX),
        ..Config::default()
    };
    let mut hs = Handlespace::new(config, 1);
    for i in 1..=5 {
        hs.register(
            &PoolHandle::from("p"),
            pe(i, PolicyParam::round_robin()),
            None,
        )
        .unwrap();
    }
    assert_eq!(ids(&mut hs, "p", 2), vec![1, 2]);
    assert_eq!(ids(&mut hs, "p", 2), vec![3, 4]);
}

#[test]
fn unreachable_reports_are_counted_per_pe() {
    let mut hs = pool_of(PolicyType::ROUND_ROBIN, &[&[] as &[u32]; 2]);
    assert_eq!(hs.report_unreachable(b"p", PoolElementId(1)), Some(1));
    assert_eq!(hs.report_unreachable(b"p", PoolElementId(1)), Some(2));
    assert_eq!(hs.report_unreachable(b"p", PoolElementId(3)), None);
    assert_eq!(
        hs.element(b"p", PoolElementId(1))
            .unwrap()
            .unreachable_reports(),
        2
    );
}

// ---- Model-based property test -------------------------------------------------------

#[derive(Clone, Debug)]
enum Op {
    Register {
        pool: u8,
        id: u8,
        home: u8,
        kind: u8,
        value: u32,
        tcp: bool,
    },
    Deregister {
        pool: u8,
        id: u8,
    },
    Resolve {
        pool: u8,
        n: u8,
    },
    Expire {
        at: u8,
    },
}

const KINDS: [PolicyType; 6] = [
    PolicyType::ROUND_ROBIN,
    PolicyType::LEAST_USED,
    PolicyType::PRIORITY,
    PolicyType::WEIGHTED_RANDOM,
    PolicyType::RANDOM,
    PolicyType::LEAST_USED_DEGRADATION,
];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..4u8, 1..12u8, 1..4u8, 0..KINDS.len() as u8, 0..4u32, proptest::bool::weighted(0.1))
            .prop_map(|(pool, id, home, kind, value, tcp)| Op::Register { pool, id, home, kind, value, tcp }),
        2 => (0..4u8, 1..12u8).prop_map(|(pool, id)| Op::Deregister { pool, id }),
        3 => (0..4u8, 1..8u8).prop_map(|(pool, n)| Op::Resolve { pool, n }),
        1 => (0..40u8).prop_map(|at| Op::Expire { at }),
    ]
}

/// The obviously correct model: plain maps and a list per pool for round robin order.
#[derive(Default, Debug)]
struct ModelPool {
    kind: Option<PolicyType>,
    tcp: bool,
    elements: BTreeMap<u8, (u8, u32, u8)>, // id → (home, value, expiry second)
    rr: VecDeque<u8>,
}

fn model_params(kind: PolicyType, value: u32) -> PolicyParam {
    match kind {
        PolicyType::ROUND_ROBIN | PolicyType::RANDOM => policy(kind, &[]),
        PolicyType::LEAST_USED_DEGRADATION => policy(kind, &[value, 1]),
        _ => policy(kind, &[value]),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn random_operations_agree_with_a_naive_model(ops in proptest::collection::vec(op(), 1..120)) {
        let t0 = Instant::now();
        let mut hs = Handlespace::new(Config::default(), 3);
        let mut model: BTreeMap<u8, ModelPool> = BTreeMap::new();
        let mut clock = 0u8;
        for op in ops {
            match op {
                Op::Register { pool, id, home, kind, value, tcp } => {
                    let kind = KINDS[kind as usize];
                    let handle = PoolHandle::new(&[b'p', pool]);
                    let t = if tcp {
                        UserTransport::Tcp(IpTransport { port: 1, reserved: 0, address: IpAddr::V4(Ipv4Addr::LOCALHOST) })
                    } else {
                        sctp(1, TransportUse::DATA_ONLY)
                    };
                    let expiry = clock.saturating_add(10 + id % 7);
                    let p = pe_with(u32::from(id), u32::from(home), model_params(kind, value), t);
                    let got = hs.register(&handle, p, Some(t0 + Duration::from_secs(u64::from(expiry))));
                    let m = model.entry(pool).or_default();
                    let compatible = m.kind.is_none() || (m.kind == Some(kind) && m.tcp == tcp);
                    prop_assert_eq!(got.is_ok(), compatible, "{:?}", got);
                    if compatible {
                        m.kind = Some(kind);
                        m.tcp = tcp;
                        if m.elements.insert(id, (home, value, expiry)).is_none() {
                            m.rr.push_back(id);
                        }
                    } else if m.elements.is_empty() {
                        model.remove(&pool);
                    }
                }
                Op::Deregister { pool, id } => {
                    let got = hs.deregister(&[b'p', pool], PoolElementId(u32::from(id)));
                    let m = model.get_mut(&pool);
                    let expect = m.as_ref().is_some_and(|m| m.elements.contains_key(&id));
                    prop_assert_eq!(got.is_some(), expect);
                    if let Some(m) = m {
                        m.elements.remove(&id);
                        m.rr.retain(|&x| x != id);
                        if m.elements.is_empty() {
                            model.remove(&pool);
                        }
                    }
                }
                Op::Resolve { pool, n } => {
                    let got = hs.resolve(&[b'p', pool], usize::from(n)).map(|r| {
                        r.elements().map(|e| (e.id().0 as u8, e.policy())).collect::<Vec<_>>()
                    });
                    let Some(m) = model.get_mut(&pool) else {
                        prop_assert!(got.is_none());
                        continue;
                    };
                    let got = got.unwrap();
                    let mut distinct: Vec<u8> = got.iter().map(|g| g.0).collect();
                    distinct.sort_unstable();
                    distinct.dedup();
                    prop_assert_eq!(distinct.len(), got.len(), "distinct");
                    prop_assert!(got.iter().all(|g| m.elements.contains_key(&g.0)));
                    let kind = m.kind.unwrap();
                    let selectable = m.elements.values()
                        .filter(|(_, v, _)| kind != PolicyType::WEIGHTED_RANDOM || *v > 0)
                        .count();
                    prop_assert_eq!(got.len(), selectable.min(usize::from(n)));
                    match kind {
                        PolicyType::ROUND_ROBIN => {
                            let expect: Vec<u8> = m.rr.iter().take(usize::from(n)).copied().collect();
                            prop_assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), expect);
                            m.rr.rotate_left(1.min(m.rr.len()));
                        }
                        PolicyType::LEAST_USED | PolicyType::PRIORITY => {
                            // The answer holds the best values, best first.
                            let mut values: Vec<u32> = m.elements.values().map(|e| e.1).collect();
                            if kind == PolicyType::LEAST_USED {
                                values.sort_unstable();
                            } else {
                                values.sort_unstable_by(|a, b| b.cmp(a));
                            }
                            let got_values: Vec<u32> = got.iter().map(|g| m.elements[&g.0].1).collect();
                            prop_assert_eq!(&got_values[..], &values[..got.len()]);
                        }
                        _ => {}
                    }
                }
                Op::Expire { at } => {
                    clock = clock.max(at);
                    let mut out = Vec::new();
                    hs.expire(t0 + Duration::from_secs(u64::from(clock)), &mut out);
                    let mut expect = Vec::new();
                    for (&pool, m) in model.iter_mut() {
                        let due: Vec<u8> = m.elements.iter().filter(|e| e.1 .2 <= clock).map(|e| *e.0).collect();
                        for id in due {
                            m.elements.remove(&id);
                            m.rr.retain(|&x| x != id);
                            expect.push((pool, id));
                        }
                    }
                    model.retain(|_, m| !m.elements.is_empty());
                    let mut got: Vec<(u8, u8)> = out.iter().map(|(h, e)| (h.as_bytes()[1], e.id().0 as u8)).collect();
                    got.sort_unstable();
                    expect.sort_unstable();
                    prop_assert_eq!(got, expect);
                }
            }
            // Invariants after every step.
            prop_assert_eq!(hs.pool_count(), model.len());
            prop_assert_eq!(hs.element_count(), model.values().map(|m| m.elements.len()).sum::<usize>());
            for home in 1..4u8 {
                let mut sum = ChecksumSum::default();
                for (&pool, m) in &model {
                    for (&id, e) in &m.elements {
                        if e.0 == home {
                            sum += ChecksumSum::of_element(&PoolHandle::new(&[b'p', pool]), PoolElementId(u32::from(id)));
                        }
                    }
                }
                prop_assert_eq!(hs.owner_checksum(RegistrarId(u32::from(home))), sum.finish());
            }
        }
    }
}

#[test]
fn rfc5356_weighted_random_second_pick_is_exact_without_replacement() {
    let w = [1.0, 2.0, 3.0, 4.0];
    let total: f64 = w.iter().sum();
    let mut hs = pool_of(PolicyType::WEIGHTED_RANDOM, &[&[1], &[2], &[3], &[4]]);
    let rounds = 100_000;
    let mut second = [0usize; 4];
    for _ in 0..rounds {
        second[ids(&mut hs, "p", 2)[1] as usize - 1] += 1;
    }
    for j in 0..4 {
        // P(second = j) = Σ_{i≠j} w_i/W · w_j/(W − w_i)
        let p: f64 = (0..4)
            .filter(|&i| i != j)
            .map(|i| w[i] / total * w[j] / (total - w[i]))
            .sum();
        let got = second[j] as f64 / rounds as f64;
        assert!((got - p).abs() < 0.01, "PE {}: {got} vs {p}", j + 1);
    }
}

#[test]
fn weighted_random_with_one_heavy_pe_still_returns_distinct_pes() {
    let mut hs = pool_of(
        PolicyType::WEIGHTED_RANDOM,
        &[&[u32::MAX], &[1], &[1], &[1]],
    );
    for _ in 0..100 {
        let mut got = ids(&mut hs, "p", 4);
        assert_eq!(got[0], 1);
        got.sort_unstable();
        assert_eq!(got, vec![1, 2, 3, 4]);
    }
}

#[test]
fn element_is_pre_encoded_as_a_resolution_response_carries_it() {
    let mut hs = hs();
    let mut p = pe_with(
        0x1a2b_3c4d,
        0x0a0b_0c0d,
        PolicyParam::round_robin(),
        sctp(9000, TransportUse::DATA_ONLY),
    );
    p.asap_transport = Some(SctpTransport {
        port: 4711,
        transport_use: TransportUse::DATA_ONLY,
        addresses: vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10))],
    });
    hs.register(&PoolHandle::from("EchoPool"), p, None).unwrap();
    let e = hs.element(b"EchoPool", PoolElementId(0x1a2b_3c4d)).unwrap();
    // Reference §9.4: the PE parameter of the response, without the ASAP transport.
    let expect: [u8; 40] = [
        0x00, 0x0a, 0x00, 0x28, 0x1a, 0x2b, 0x3c, 0x4d, 0x0a, 0x0b, 0x0c, 0x0d, 0x00, 0x01, 0x5f,
        0x90, 0x00, 0x04, 0x00, 0x10, 0x23, 0x28, 0x00, 0x00, 0x00, 0x01, 0x00, 0x08, 0xc0, 0x00,
        0x02, 0x0a, 0x00, 0x08, 0x00, 0x08, 0x00, 0x00, 0x00, 0x01,
    ];
    assert_eq!(e.encoded(), &expect[..]);
    assert!(e.param().asap_transport.is_some(), "kept for ENRP");
}
