//! Server-side cost of federated averaging and of the payload wire format.
//!
//! Sizes follow Florence-2-base (`d_model = 768`) with pLoRA at rank 4: a client shares the `B`
//! matrices of `q_proj` and `v_proj` of the last decoder layer, two tensors of `[768, 4]`
//! (6,144 values, 24 KiB in `f32`). `x100` is the same payload with rank 400, two tensors of
//! `[768, 400]` (614,400 values, 2.4 MiB in `f32`), standing for a payload 100 times larger
//! (more layers, larger rank, or full LoRA).
//!
//! * `fedavg`: [`weighted_average`] over K = 4 and K = 40 clients; throughput is the bytes read,
//!   `K * values * 4`.
//! * `payload_encode` / `payload_decode`: [`Payload::to_bytes`] / [`Payload::from_bytes`] of one
//!   `x100` payload in `f32` and `f16`; throughput is the in-memory `f32` size, `values * 4`.
//!
//! Run with `cargo bench --bench aggregation`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main,
};
use fedvlm::federated::{Payload, TensorValues, WireDtype};
use fedvlm::strategy::weighted_average;
use rand::{RngExt, SeedableRng, rngs::ChaCha8Rng};

/// Florence-2-base's hidden size.
const D_MODEL: usize = 768;
/// The tensors a pLoRA client shares in this benchmark.
const NAMES: [&str; 2] = [
    "decoder.layers.5.self_attn.q_proj.lora_b",
    "decoder.layers.5.self_attn.v_proj.lora_b",
];

/// (label, rank): rank 4 is the paper's size; rank 400 is 100 times the values.
const SIZES: [(&str, usize); 2] = [("r4", 4), ("x100", 400)];
const CLIENTS: [usize; 2] = [4, 40];

fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
}

/// A payload of the shared tensors at `rank`, with values drawn from `seed`.
fn payload(rank: usize, seed: u64, num_examples: u64) -> Payload {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let tensors = NAMES
        .iter()
        .map(|name| {
            let values = (0..D_MODEL * rank)
                .map(|_| rng.random_range(-0.05f32..0.05))
                .collect();
            (
                name.to_string(),
                TensorValues {
                    shape: vec![D_MODEL, rank],
                    values,
                },
            )
        })
        .collect::<BTreeMap<_, _>>();
    Payload {
        round: 1,
        num_examples,
        tensors,
    }
}

fn bench_fedavg(c: &mut Criterion) {
    let mut group = c.benchmark_group("fedavg");
    configure(&mut group);
    for (label, rank) in SIZES {
        let template = payload(rank, 0, 0);
        for k in CLIENTS {
            let clients: Vec<Payload> = (0..k as u64)
                .map(|i| payload(rank, i + 1, 100 + i))
                .collect();
            let refs: Vec<&Payload> = clients.iter().collect();
            let total: u64 = clients.iter().map(|p| p.num_examples).sum();
            let weights: Vec<f64> = clients
                .iter()
                .map(|p| p.num_examples as f64 / total as f64)
                .collect();
            let bytes = (k * template.num_values() * 4) as u64;
            group.throughput(Throughput::Bytes(bytes));
            group.bench_with_input(BenchmarkId::new(label, format!("K={k}")), &(), |b, _| {
                b.iter(|| {
                    black_box(weighted_average(
                        black_box(&template),
                        black_box(&refs),
                        black_box(&weights),
                    ))
                })
            });
        }
    }
    group.finish();
}

fn bench_wire(c: &mut Criterion) {
    let (_, rank) = SIZES[1];
    let update = payload(rank, 1, 100);
    let bytes = (update.num_values() * 4) as u64;
    let dtypes = [("f32", WireDtype::F32), ("f16", WireDtype::F16)];

    let mut group = c.benchmark_group("payload_encode");
    configure(&mut group);
    group.throughput(Throughput::Bytes(bytes));
    for (label, dtype) in dtypes {
        group.bench_function(BenchmarkId::new("x100", label), |b| {
            b.iter(|| black_box(black_box(&update).to_bytes(dtype).expect("encodes")))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("payload_decode");
    configure(&mut group);
    group.throughput(Throughput::Bytes(bytes));
    for (label, dtype) in dtypes {
        let wire = update.to_bytes(dtype).expect("encodes");
        let decoded = Payload::from_bytes(&wire).expect("decodes");
        assert_eq!(decoded.num_values(), update.num_values());
        group.bench_function(BenchmarkId::new("x100", label), |b| {
            b.iter(|| black_box(Payload::from_bytes(black_box(&wire)).expect("decodes")))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_fedavg, bench_wire);
criterion_main!(benches);
