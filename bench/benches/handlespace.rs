//! Handlespace operation costs per policy and pool size (issue 2's speed figures):
//! register a new PE, re-register an existing one (a load/weight update), deregister,
//! and a 3-item handle resolution.
//!
//! Pool sizes stay put while measuring: new PEs are registered and removed in chunks,
//! with only the operation itself inside the timed region. Parameters are built
//! outside it. `RSERPOOL_BENCH_QUICK=1` shortens the run; `bench/handlespace-table.py`
//! turns criterion's results into the table quoted in the README.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use rserpool::PoolElementId;
use rserpool::wire::PolicyType;
use rserpool_bench::{SIZES, element, handle, policy_for, populated};

/// Runs `iters` operations in chunks of at most `chunk(n)` so the pool size stays near
/// `n`; `timed(k)` does k operations and returns the time of the part that counts.
fn chunked(iters: u64, n: usize, mut timed: impl FnMut(u64) -> Duration) -> Duration {
    let chunk = n.clamp(10, 1000) as u64;
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let k = left.min(chunk);
        total += timed(k);
        left -= k;
    }
    total
}

fn bench(c: &mut Criterion) {
    let quick = std::env::var_os("RSERPOOL_BENCH_QUICK").is_some();
    for &kind in PolicyType::ALL {
        let mut g = c.benchmark_group(format!("handlespace/{kind}"));
        g.warm_up_time(Duration::from_millis(if quick { 100 } else { 400 }));
        g.measurement_time(Duration::from_millis(if quick { 300 } else { 1500 }));
        g.sample_size(if quick { 10 } else { 30 });
        for &n in &SIZES {
            let (mut hs, mut rng) = populated(kind, n, n as u64);
            let h = handle();
            let life = Some(Instant::now() + Duration::from_secs(90));

            g.bench_function(BenchmarkId::new("resolve3", n), |b| {
                b.iter(|| {
                    let r = hs.resolve(black_box(h.as_bytes()), 3).expect("pool exists");
                    black_box(r.elements().map(|e| e.id().0).sum::<u32>())
                })
            });

            g.bench_function(BenchmarkId::new("reregister", n), |b| {
                b.iter_custom(|iters| {
                    chunked(iters, n, |k| {
                        let params: Vec<_> = (0..k)
                            .map(|_| {
                                let id = 1 + rng.below(n as u64) as u32;
                                element(id, policy_for(kind, &mut rng))
                            })
                            .collect();
                        let t = Instant::now();
                        for p in params {
                            black_box(hs.register(&h, p, life).is_ok());
                        }
                        t.elapsed()
                    })
                })
            });

            let mut next_id = n as u32 + 1;
            g.bench_function(BenchmarkId::new("register", n), |b| {
                b.iter_custom(|iters| {
                    chunked(iters, n, |k| {
                        let first = next_id;
                        let params: Vec<_> = (0..k as u32)
                            .map(|i| element(first + i, policy_for(kind, &mut rng)))
                            .collect();
                        let t = Instant::now();
                        for p in params {
                            black_box(hs.register(&h, p, life).is_ok());
                        }
                        let spent = t.elapsed();
                        for i in 0..k as u32 {
                            hs.deregister(h.as_bytes(), PoolElementId(first + i));
                        }
                        next_id = next_id.wrapping_add(k as u32).max(n as u32 + 1);
                        spent
                    })
                })
            });

            g.bench_function(BenchmarkId::new("deregister", n), |b| {
                b.iter_custom(|iters| {
                    chunked(iters, n, |k| {
                        let first = next_id;
                        for i in 0..k as u32 {
                            let p = element(first + i, policy_for(kind, &mut rng));
                            hs.register(&h, p, life).expect("bench registration");
                        }
                        let t = Instant::now();
                        for i in 0..k as u32 {
                            black_box(hs.deregister(h.as_bytes(), PoolElementId(first + i)));
                        }
                        let spent = t.elapsed();
                        next_id = next_id.wrapping_add(k as u32).max(n as u32 + 1);
                        spent
                    })
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
