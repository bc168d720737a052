//! RFC 5352 §3.1 pool rules, limits, lifetime and RFC 5353 §3.6 checksums.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use super::*;
use crate::wire::{IpTransport, SctpTransport};

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
fn a_reregistering_pe_keeps_one_deadline_entry_and_stale_ones_are_compacted() {
    let mut hs = hs();
    let t0 = Instant::now();
    let h = PoolHandle::from("p");
    // Later deadlines: the first entry of each PE covers them all.
    for i in 0..10_000u64 {
        let p = pe(1 + (i % 3) as u32, PolicyParam::round_robin());
        hs.register(
            &h,
            p,
            Some(t0 + Duration::from_secs(20) + Duration::from_millis(i)),
        )
        .unwrap();
    }
    assert_eq!(hs.expiry.entries(), 3);
    // Earlier deadlines each need an entry; compaction bounds the stale ones.
    for i in 0..10_000u64 {
        let p = pe(1 + (i % 3) as u32, PolicyParam::round_robin());
        hs.register(&h, p, Some(t0 + Duration::from_millis(20_000 - i)))
            .unwrap();
    }
    assert!(
        hs.expiry.entries() <= 2 * 3 + 1024,
        "{}",
        hs.expiry.entries()
    );
    let mut out = Vec::new();
    hs.expire(t0 + Duration::from_millis(10_000), &mut out);
    assert!(out.is_empty(), "all three re-registered later");
    hs.expire(t0 + Duration::from_millis(10_003), &mut out);
    assert_eq!(out.len(), 3);
    // The stale entries come due too, and go.
    hs.expire(t0 + Duration::from_secs(3600), &mut out);
    assert_eq!((out.len(), hs.next_expiry()), (3, None));
}

#[test]
fn rfc5353_s3_6_checksum_per_home_follows_the_home() {
    let mut hs = hs();
    let h = PoolHandle::from("EchoPool");
    assert_eq!(hs.home_checksum(RegistrarId(0x0a0b_0c0d)), 0xffff);
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
    assert_eq!(hs.home_checksum(RegistrarId(0x0a0b_0c0d)), 0x3bd9);
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
    assert_eq!(hs.home_checksum(RegistrarId(0x0a0b_0c0d)), 0xffff);
    assert_eq!(hs.home_checksum(RegistrarId(7)), 0x3bd9);
    assert_eq!(hs.transfer_home(RegistrarId(7), RegistrarId(9)), 1);
    assert_eq!(hs.home_checksum(RegistrarId(9)), 0x3bd9);
    assert_eq!(
        hs.element(b"EchoPool", PoolElementId(0x1a2b_3c4d))
            .unwrap()
            .home(),
        RegistrarId(9)
    );
    hs.deregister(b"EchoPool", PoolElementId(0x1a2b_3c4d));
    assert_eq!(hs.home_checksum(RegistrarId(9)), 0xffff);
    assert_eq!(hs.home_count(RegistrarId(9)), 0);
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
    for home in 1..=3 {
        let home = RegistrarId(home);
        let sum = shards[0].home_sum(home) + shards[1].home_sum(home);
        assert_eq!(sum.finish(), whole.home_checksum(home));
        assert_ne!(whole.home_checksum(home), 0xffff);
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
