//! Random schedules: after the faults stop and the scope is quiet, it has converged.

use proptest::prelude::*;

use super::net::{Scope, config};
use super::secs;

#[derive(Clone, Debug)]
enum Op {
    Register { node: usize, pool: u8 },
    KillPe { pe: usize },
    Crash { node: usize },
    Restart { node: usize, same_id: bool },
    Partition { alone: usize },
    Heal,
    Loss { per_mille: u64 },
    Wait { ms: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..4usize, 0..3u8).prop_map(|(node, pool)| Op::Register { node, pool }),
        2 => (0..40usize).prop_map(|pe| Op::KillPe { pe }),
        1 => (0..4usize).prop_map(|node| Op::Crash { node }),
        1 => (0..4usize, any::<bool>()).prop_map(|(node, same_id)| Op::Restart { node, same_id }),
        1 => (0..4usize).prop_map(|alone| Op::Partition { alone }),
        1 => Just(Op::Heal),
        1 => (0..300u64).prop_map(|per_mille| Op::Loss { per_mille }),
        4 => (1..8000u64).prop_map(|ms| Op::Wait { ms }),
    ]
}

proptest! {
    // 24 schedules in the test suite; PROPTEST_CASES=N runs more.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(24),
        ..ProptestConfig::default()
    })]

    #[test]
    fn after_any_faults_the_scope_converges_and_keeps_every_live_pe(
        seed in any::<u64>(),
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        let mut s = Scope::new(&[0x11, 0x22, 0x33, 0x44], 2, config(), seed);
        // A PE whose registrar died before its registration was known anywhere is
        // nobody's to adopt; like RSPLIB's PEs, it looks for another registrar, but only
        // long after any takeover would have reached it.
        s.hunt_after = Some(secs(60));
        s.run(secs(1));
        let mut next_id = 1000u32;
        let mut next_reg = 0x50u32;
        for op in ops {
            match op {
                Op::Register { node, pool } => {
                    if s.nodes[node].alive {
                        next_id += 1;
                        s.add_pe(&format!("pool{pool}"), next_id, node);
                    }
                }
                Op::KillPe { pe } => {
                    if pe < s.pes.len() {
                        s.kill_pe(pe);
                    }
                }
                Op::Crash { node } => {
                    // Keep at least one registrar.
                    if s.nodes.iter().filter(|n| n.alive).count() > 1 && s.nodes[node].alive {
                        s.kill(node);
                    }
                }
                Op::Restart { node, same_id } => {
                    if !s.nodes[node].alive {
                        // A fixed ID (an appliance's configuration) or a fresh one (as
                        // RSPLIB picks at each start).
                        let id = if same_id {
                            s.nodes[node].id.0
                        } else {
                            next_reg += 1;
                            next_reg
                        };
                        s.restart(node, id);
                    }
                }
                Op::Partition { alone } => {
                    let rest: Vec<usize> = (0..4).filter(|&n| n != alone).collect();
                    s.partition(&[alone], &rest);
                }
                Op::Heal => s.heal(),
                Op::Loss { per_mille } => s.loss_per_mille = per_mille,
                Op::Wait { ms } => s.run(std::time::Duration::from_millis(ms)),
            }
        }
        s.heal();
        s.loss_per_mille = 0;
        s.run(secs(120));
        if let Err(e) = s.check_converged() {
            prop_assert!(false, "{}", e);
        }
    }
}
