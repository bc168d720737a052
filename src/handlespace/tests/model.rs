//! Random operation sequences against an obviously correct model.

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::wire::IpTransport;

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
    /// A takeover: every PE of one home moves to another.
    TransferHome {
        from: u8,
        to: u8,
    },
    /// One PE moves to another home (a peer's update, or adoption).
    SetHome {
        pool: u8,
        id: u8,
        home: u8,
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
        1 => (1..4u8, 1..4u8).prop_map(|(from, to)| Op::TransferHome { from, to }),
        1 => (0..4u8, 1..12u8, 1..4u8).prop_map(|(pool, id, home)| Op::SetHome { pool, id, home }),
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
                Op::TransferHome { from, to } => {
                    let moved = hs.transfer_home(RegistrarId(u32::from(from)), RegistrarId(u32::from(to)));
                    let mut expect = 0;
                    for m in model.values_mut() {
                        for e in m.elements.values_mut() {
                            if e.0 == from && from != to {
                                e.0 = to;
                                expect += 1;
                            }
                        }
                    }
                    prop_assert_eq!(moved, expect);
                }
                Op::SetHome { pool, id, home } => {
                    let handle = PoolHandle::new(&[b'p', pool]);
                    let e = model.get_mut(&pool).and_then(|m| m.elements.get_mut(&id));
                    let expiry = e.as_ref().map(|e| t0 + Duration::from_secs(u64::from(e.2)));
                    let got = hs.set_home(&handle, PoolElementId(u32::from(id)), RegistrarId(u32::from(home)), expiry);
                    prop_assert_eq!(got, e.as_ref().map(|e| RegistrarId(u32::from(e.0))));
                    if let Some(e) = e {
                        e.0 = home;
                    }
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
                prop_assert_eq!(hs.home_checksum(RegistrarId(u32::from(home))), sum.finish());
            }
            // Every PE names its home, in its parameter and in the bytes answers carry
            // (Pool Element TLV: header, PE ID, then the home at offset 8).
            for (&pool, m) in &model {
                for (&id, e) in &m.elements {
                    let got = hs.element(&[b'p', pool], PoolElementId(u32::from(id))).unwrap();
                    prop_assert_eq!(got.home(), RegistrarId(u32::from(e.0)));
                    let encoded = got.encoded();
                    prop_assert_eq!(&encoded[8..12], &u32::from(e.0).to_be_bytes()[..]);
                }
            }
        }
    }
}
