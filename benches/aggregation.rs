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
//! * `strategies`: every server strategy's `aggregate` (Flower 1.42's message API, see
//!   `src/strategy/`) for 10 clients x 1,179,648 values (two `[768, 768]` tensors, about
//!   Florence-2-base's default adapter targets) and 100 clients x 1,000,000 values (two
//!   `[1000, 500]` tensors); throughput is the bytes of client updates, `K * values * 4`.
//!   `scripts/time_strategy_aggregation.py` times Flower's own classes on the same cases. Krum,
//!   MultiKrum and Bulyan are `O(K^2 d)`; Bulyan's and Krum's `f` is `(K - 3) / 4`.
//!
//! * `checkpoint`: [`Checkpoint::save`] (temporary folder, fsync of every file, sha256 manifest,
//!   renames) and [`Checkpoint::load`] (every sha256 verified) of one round's checkpoint: the
//!   CIFAR-10 experiment's 40 clients (each: `classifier.0` A and B at rank 4 and the new head,
//!   24,586 values) and the RLAIF-V experiment's 4 clients (A and B of q/v at rank 4, 12,288
//!   values), plus FedAdam's moments.
//!
//! Run with `cargo bench --bench aggregation` (`-- strategies` for the strategies only).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main,
};
use fedvlm::Sharing;
use fedvlm::federated::checkpoint::Checkpoint;
use fedvlm::federated::{ClientUpdate, Payload, TensorValues, WireDtype};
use fedvlm::strategy::{
    Bulyan, DpConfig, DpFixedClipping, FedAdagrad, FedAdam, FedAvg, FedAvgM, FedMedian,
    FedTrimmedAvg, FedYogi, Krum, MultiKrum, ServerOptConfig, Strategy, weighted_average,
};
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

/// (label, clients, tensor shape; two tensors of it).
const STRATEGY_CASES: [(&str, usize, [usize; 2]); 2] =
    [("10x1.18M", 10, [768, 768]), ("100x1M", 100, [1000, 500])];

/// A payload of two tensors of `shape` with values `center + U(-spread, spread)`.
fn shaped_payload(shape: [usize; 2], seed: u64, center: &Payload, spread: f32) -> Payload {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = center.clone();
    for t in out.tensors.values_mut() {
        for v in t.values.iter_mut() {
            *v += rng.random_range(-spread..spread);
        }
        t.shape = shape.to_vec();
    }
    out
}

/// The strategies in the order `scripts/time_strategy_aggregation.py` times them.
fn strategies(k: usize) -> Vec<(&'static str, Box<dyn Strategy>)> {
    let f = if k >= 7 { ((k - 3) / 4).max(1) } else { 0 };
    let dp = DpConfig {
        noise_multiplier: 1.0,
        clipping_norm: 1.0,
        num_sampled_clients: k,
        seed: 0,
    };
    vec![
        ("fedavg", Box::new(FedAvg::new())),
        ("fedavgm", Box::new(FedAvgM::new(1.0, 0.9))),
        (
            "fedadagrad",
            Box::new(FedAdagrad::new(ServerOptConfig::fedadagrad())),
        ),
        (
            "fedadam",
            Box::new(FedAdam::new(ServerOptConfig::fedadam())),
        ),
        (
            "fedyogi",
            Box::new(FedYogi::new(ServerOptConfig::fedyogi())),
        ),
        ("fedmedian", Box::new(FedMedian::new())),
        ("fedtrimmedavg", Box::new(FedTrimmedAvg::new(0.2))),
        ("krum", Box::new(Krum::new(f))),
        ("multikrum", Box::new(MultiKrum::new(f, k / 2))),
        ("bulyan", Box::new(Bulyan::new(f))),
        (
            "dp_fixed_clipping",
            Box::new(DpFixedClipping::new(FedAvg::new(), dp)),
        ),
    ]
}

fn bench_strategies(c: &mut Criterion) {
    let mut group = c.benchmark_group("strategies");
    configure(&mut group);
    for (label, k, shape) in STRATEGY_CASES {
        let zeros = Payload {
            round: 0,
            num_examples: 0,
            tensors: ["q_proj.lora", "v_proj.lora"]
                .iter()
                .map(|name| {
                    let values = vec![0f32; shape[0] * shape[1]];
                    let tensor = TensorValues {
                        shape: shape.to_vec(),
                        values,
                    };
                    (name.to_string(), tensor)
                })
                .collect(),
        };
        let global = shaped_payload(shape, 0, &zeros, 0.05);
        let updates: Vec<ClientUpdate> = (0..k)
            .map(|client| {
                let mut payload = shaped_payload(shape, client as u64 + 1, &global, 0.01);
                payload.num_examples = 10 + client as u64;
                ClientUpdate { client, payload }
            })
            .collect();
        group.throughput(Throughput::Bytes((k * global.num_values() * 4) as u64));
        for (name, mut strategy) in strategies(k) {
            group.bench_function(BenchmarkId::new(name, label), |b| {
                b.iter(|| {
                    black_box(
                        strategy
                            .aggregate(1, black_box(&global), black_box(&updates))
                            .expect("aggregates"),
                    )
                })
            });
        }
    }
    group.finish();
}

/// A client state of the given tensors, filled with a seeded pattern.
fn client_state(shapes: &[(&str, [usize; 2])], seed: u64) -> Payload {
    let tensors = shapes
        .iter()
        .map(|(name, shape)| {
            let n = shape[0] * shape[1];
            let values = (0..n)
                .map(|i| ((i as u64 * 31 + seed * 7) % 97) as f32 * 0.01)
                .collect();
            let tensor = TensorValues::new(name, shape.to_vec(), values).expect("shape");
            (name.to_string(), tensor)
        })
        .collect();
    Payload {
        round: 1,
        num_examples: 0,
        tensors,
    }
}

fn bench_checkpoint(c: &mut Criterion) {
    let cifar: &[(&str, [usize; 2])] = &[
        ("classifier.0.lora_a", [4, 576]),
        ("classifier.0.lora_b", [1024, 4]),
        ("classifier.3.weight", [1024, 10]),
        ("classifier.3.bias", [1, 10]),
    ];
    let rlaif: &[(&str, [usize; 2])] = &[
        ("q_proj.lora_a", [4, 768]),
        ("q_proj.lora_b", [768, 4]),
        ("v_proj.lora_a", [4, 768]),
        ("v_proj.lora_b", [768, 4]),
    ];
    let mut group = c.benchmark_group("checkpoint");
    configure(&mut group);
    for (name, shapes, clients) in [
        ("cifar10_40_clients", cifar, 40),
        ("rlaif_4_clients", rlaif, 4),
    ] {
        let global = client_state(shapes, 0);
        let mut strategy = FedAdam::new(ServerOptConfig::fedadam());
        let update = ClientUpdate {
            client: 0,
            payload: Payload {
                num_examples: 10,
                ..client_state(shapes, 1)
            },
        };
        strategy
            .aggregate(1, &global, &[update])
            .expect("aggregate");
        let checkpoint = Checkpoint {
            completed_rounds: 1,
            seed: 0,
            sharing: Sharing::PLora,
            global: global.clone(),
            clients: (0..clients)
                .map(|k| client_state(shapes, k as u64))
                .collect(),
            synced: vec![Some(1); clients],
            strategy: Some(strategy.save_state().expect("state")),
            optimizers: Vec::new(),
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("checkpoint");
        group.bench_function(BenchmarkId::new("save", name), |b| {
            b.iter(|| checkpoint.save(black_box(&path)).expect("save"))
        });
        group.bench_function(BenchmarkId::new("load", name), |b| {
            b.iter(|| black_box(Checkpoint::load(&path).expect("load")))
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    bench_fedavg,
    bench_wire,
    bench_strategies,
    bench_checkpoint
);
criterion_main!(benches);
