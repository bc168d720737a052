//! Codec costs of the messages on the resolution and registration paths.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use rserpool::wire::{AsapMessage, PolicyParam, PolicyType};
use rserpool_bench::{element, handle};

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec");
    g.warm_up_time(Duration::from_millis(300));
    g.measurement_time(Duration::from_secs(1));

    let resolution = AsapMessage::HandleResolution {
        subscribe: false,
        handle: handle(),
        items: Some(3),
    };
    let registration = AsapMessage::Registration {
        handle: handle(),
        element: element(
            0x1a2b_3c4d,
            PolicyParam::new(PolicyType::LEAST_USED, &[7]).unwrap(),
        ),
    };
    let response = AsapMessage::HandleResolutionResponse {
        accepted: false,
        handle: handle(),
        policy: Some(PolicyParam::round_robin()),
        elements: (1..=3)
            .map(|i| element(i, PolicyParam::round_robin()))
            .collect(),
        error: None,
    };
    for (name, msg) in [
        ("resolution", &resolution),
        ("registration", &registration),
        ("response3", &response),
    ] {
        let mut bytes = Vec::new();
        msg.encode(&mut bytes);
        g.bench_function(format!("decode/{name}"), |b| {
            b.iter(|| black_box(AsapMessage::decode(black_box(&bytes)).is_ok()))
        });
        let mut out = Vec::with_capacity(256);
        g.bench_function(format!("encode/{name}"), |b| {
            b.iter(|| {
                out.clear();
                black_box(msg).encode(&mut out);
                black_box(out.len())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
