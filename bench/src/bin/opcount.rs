//! Runs one handlespace operation K times on a pool of N PEs inside a single function,
//! `measured`, so that valgrind can count what that function executes:
//!
//! ```text
//! valgrind --tool=callgrind --cache-sim=yes --toggle-collect='*measured*' \
//!     target/release/opcount reregister ROUND_ROBIN 50000 20000
//! ```
//!
//! `bench/opcount.sh` does this for 500 and 50,000 PEs and prints instructions and
//! simulated cache misses per operation: it tells growth in work from growth in memory
//! traffic.

use std::hint::black_box;
use std::time::{Duration, Instant};

use rserpool::PoolElementId;
use rserpool::handlespace::Handlespace;
use rserpool::wire::{PolicyType, PoolElement};
use rserpool_bench::{element, handle, policy_for, populated};

#[derive(Clone, Copy)]
enum Op {
    Resolve,
    Register,
    Reregister,
    Deregister,
}

#[inline(never)]
fn measured(hs: &mut Handlespace, op: Op, params: Vec<PoolElement>, ids: &[u32]) {
    let h = handle();
    let life = Some(Instant::now() + Duration::from_secs(90));
    match op {
        Op::Resolve => {
            for _ in ids {
                let r = hs.resolve(h.as_bytes(), 3).expect("pool exists");
                black_box(r.elements().map(|e| e.id().0).sum::<u32>());
            }
        }
        Op::Register | Op::Reregister => {
            for p in params {
                black_box(hs.register(&h, p, life).is_ok());
            }
        }
        Op::Deregister => {
            for &id in ids {
                black_box(hs.deregister(h.as_bytes(), PoolElementId(id)));
            }
        }
    }
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: opcount resolve|register|reregister|deregister POLICY N K";
    let (Some(op), Some(kind), Some(n), Some(k)) =
        (args.get(1), args.get(2), args.get(3), args.get(4))
    else {
        eprintln!("{usage}");
        return std::process::ExitCode::from(2);
    };
    let op = match op.as_str() {
        "resolve" => Op::Resolve,
        "register" => Op::Register,
        "reregister" => Op::Reregister,
        "deregister" => Op::Deregister,
        other => {
            eprintln!("unknown operation {other:?}; {usage}");
            return std::process::ExitCode::from(2);
        }
    };
    let Some(&kind) = PolicyType::ALL.iter().find(|p| p.to_string() == *kind) else {
        eprintln!("unknown policy {kind:?}; one of: {:?}", PolicyType::ALL);
        return std::process::ExitCode::from(2);
    };
    let (Ok(n), Ok(k)) = (n.parse::<u32>(), k.parse::<u32>()) else {
        eprintln!("N and K are numbers; {usage}");
        return std::process::ExitCode::from(2);
    };
    let (mut hs, mut rng) = populated(kind, n as usize, u64::from(n));
    let mut ids: Vec<u32> = Vec::with_capacity(k as usize);
    let mut params = Vec::with_capacity(k as usize);
    match op {
        Op::Resolve => ids.resize(k as usize, 0),
        Op::Reregister => {
            for _ in 0..k {
                let id = 1 + rng.below(u64::from(n)) as u32;
                params.push(element(id, policy_for(kind, &mut rng)));
            }
        }
        Op::Register => {
            for id in n + 1..=n + k {
                params.push(element(id, policy_for(kind, &mut rng)));
            }
        }
        Op::Deregister => {
            // Remove K random PEs that exist (each once).
            let mut all: Vec<u32> = (1..=n).collect();
            for i in 0..k.min(n) as usize {
                let j = i + rng.below((all.len() - i) as u64) as usize;
                all.swap(i, j);
            }
            ids.extend_from_slice(&all[..k.min(n) as usize]);
        }
    }
    let count = match op {
        Op::Register | Op::Reregister => params.len(),
        Op::Resolve | Op::Deregister => ids.len(),
    };
    let t = Instant::now();
    measured(&mut hs, op, params, &ids);
    let ns = t.elapsed().as_nanos() as f64 / count.max(1) as f64;
    // stdout: the operation count, for per-operation figures; stderr: wall time (not
    // meaningful under valgrind).
    println!("{count}");
    eprintln!("{ns:.0} ns/op over {count} operations");
    std::process::ExitCode::SUCCESS
}

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
