//! The fixed-order shortcut ([`Policy::fixed_order`]): a pool whose policy never changes
//! a PE's order key when handing it out selects by moving ring heads on, without
//! stepping each PE through its policy. It must select exactly what stepping does, in
//! the same order, leaving the same state behind, whatever the policy, its values (ties
//! and several keys), the item count and the increment.

use proptest::prelude::*;

use super::*;

/// Every ordered policy type: the fixed-order ones and, as a control, those that step.
const KINDS: [PolicyType; 9] = [
    PolicyType::ROUND_ROBIN,
    PolicyType::PRIORITY,
    PolicyType::LEAST_USED,
    PolicyType::PRIORITY_LEAST_USED,
    PolicyType::LEAST_USED_DPF,
    PolicyType::WEIGHTED_ROUND_ROBIN,
    PolicyType::LEAST_USED_DEGRADATION,
    PolicyType::PRIORITY_LEAST_USED_DEGRADATION,
    PolicyType::LEAST_USED_DEGRADATION_DPF,
];

/// A policy of `kind` with values from `v` (few distinct ones, so keys tie).
fn param(kind: PolicyType, v: [u32; 4]) -> PolicyParam {
    (0..=4)
        .map(|n| policy(kind, &v[..n]))
        .find(|p| Policy::from_param(p).is_ok())
        .unwrap()
}

#[derive(Clone, Debug)]
enum Op {
    /// A new PE, or a re-registration with new values.
    Register {
        id: u32,
        values: [u32; 4],
    },
    Deregister {
        id: u32,
    },
    Resolve {
        n: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1..16u32, prop::array::uniform4(0..3u32))
            .prop_map(|(id, values)| Op::Register { id, values }),
        1 => (1..16u32).prop_map(|id| Op::Deregister { id }),
        4 => (0..20usize).prop_map(|n| Op::Resolve { n }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Three replicas take the same operations: one resolves with the shortcut and
    /// collects the PEs ([`Handlespace::resolve`]), one with the shortcut straight
    /// from the rings ([`Handlespace::resolve_each`]), one stepping every PE
    /// ([`Handlespace::resolve_stepwise`]). Their answers agree at every step.
    #[test]
    fn the_fixed_order_shortcut_selects_what_stepping_does(
        kind in prop::sample::select(KINDS.to_vec()),
        increment in prop::option::of(0..6usize),
        ops in prop::collection::vec(op(), 1..80),
    ) {
        let config = Config { max_increment: increment, ..Config::default() };
        let mut fast = Handlespace::new(config.clone(), 9);
        let mut each = Handlespace::new(config.clone(), 9);
        let mut stepwise = Handlespace::new(config, 9);
        let handle = PoolHandle::from("p");
        for op in ops {
            match op {
                Op::Register { id, values } => {
                    let p = param(kind, values);
                    for hs in [&mut fast, &mut each, &mut stepwise] {
                        prop_assert!(hs.register(&handle, pe(id, p), None).is_ok());
                    }
                }
                Op::Deregister { id } => {
                    for hs in [&mut fast, &mut each, &mut stepwise] {
                        hs.deregister(b"p", PoolElementId(id));
                    }
                }
                Op::Resolve { n } => {
                    let want = stepwise.resolve_stepwise(b"p", n);
                    let got = fast
                        .resolve(b"p", n)
                        .map(|r| r.elements().map(Element::id).collect::<Vec<_>>());
                    prop_assert_eq!(&got, &want);
                    let mut visited = Vec::new();
                    let found = each.resolve_each(b"p", n, |handle_param, e| {
                        visited.push(e.id());
                        assert_eq!(handle_param, fast.pool(b"p").unwrap().headed_handle_param());
                    });
                    prop_assert_eq!(found.then_some(visited), want);
                }
            }
        }
        // The state left behind: the order of a full round.
        let all = stepwise.resolve_stepwise(b"p", 100);
        prop_assert_eq!(fast.resolve(b"p", 100).map(|r| r.elements().map(Element::id).collect()), all.clone());
        prop_assert_eq!(ids_each(&mut each, 100), all);
    }
}

/// The PE IDs [`Handlespace::resolve_each`] hands out from pool "p".
fn ids_each(hs: &mut Handlespace, n: usize) -> Option<Vec<PoolElementId>> {
    let mut ids = Vec::new();
    hs.resolve_each(b"p", n, |_, e| ids.push(e.id()))
        .then_some(ids)
}

#[test]
fn fixed_order_is_the_ordered_policies_without_selection_state() {
    let fixed: Vec<PolicyType> = KINDS
        .iter()
        .copied()
        .filter(|&k| {
            Policy::from_param(&param(k, [1, 1, 1, 1]))
                .unwrap()
                .fixed_order()
        })
        .collect();
    assert_eq!(
        fixed,
        [
            PolicyType::ROUND_ROBIN,
            PolicyType::PRIORITY,
            PolicyType::LEAST_USED,
            PolicyType::PRIORITY_LEAST_USED,
            PolicyType::LEAST_USED_DPF,
        ]
    );
    for &kind in PolicyType::ALL {
        if let Ok(p) = Policy::from_param(&param(kind, [1, 1, 1, 1])) {
            let fixed = p.fixed_order();
            assert!(!fixed || p.class() == policy::Class::Ordered, "{kind}");
        }
    }
}
