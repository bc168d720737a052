//! RFC 5356 policies and RSPLIB's extensions: what each selects, in what order.

use super::*;

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
