//! Cost of the low-rank adapter on one Florence-2-base-sized projection.
//!
//! A bare `Linear` 768 -> 768 (the size of Florence-2-base's `q_proj`) against the same layer
//! wrapped in [`PersonalizedLora`] (rank 4, alpha 8, no dropout), on an input of
//! `[16, 64, 768]` (batch 16, 64 tokens), on burn's pure-Rust CPU backend `Flex`:
//!
//! * `adapter_forward`: forward only on `Flex` (no autodiff), plus the merged adapter
//!   (`PersonalizedLora::merge`, one matrix product) for inference.
//! * `adapter_forward_backward`: forward, `sum`, backward on `Autodiff<Flex>`. The bare layer
//!   trains its weight (bias frozen); the adapter trains `A` and `B` with the base frozen
//!   (the default of `from_linear`). The input does not require a gradient: the layer is the
//!   first trainable one.
//! * `adapter_forward_backward_input_grad`: the same with an input that requires a gradient,
//!   as for a layer in the middle of a stack whose earlier layers also train.
//!
//! Run with `cargo bench --bench adapter`. Sample sizes and measurement times are kept small so
//! the run takes about a minute on a 2-core machine.

use std::hint::black_box;
use std::time::Duration;

use burn::backend::{Autodiff, Flex};
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::Distribution;
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode, criterion_group, criterion_main};
use fedvlm::{LoraConfig, PersonalizedLora};

type Fwd = Flex;
type Train = Autodiff<Flex>;

/// Florence-2-base's hidden size (`d_model`): its attention projections are 768 -> 768.
const D_MODEL: usize = 768;
const BATCH: usize = 16;
const TOKENS: usize = 64;
const RANK: usize = 4;
const ALPHA: f64 = 8.0;

fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sampling_mode(SamplingMode::Flat);
}

fn base_linear<B: Backend>(device: &B::Device) -> Linear<B> {
    LinearConfig::new(D_MODEL, D_MODEL).init(device)
}

/// The adapter around a fresh base layer, with `B` drawn at random instead of zero so the
/// update is not trivially zero (the cost of a dense product does not depend on the values, but
/// this rules out any shortcut).
fn adapter<B: Backend>(device: &B::Device) -> PersonalizedLora<B> {
    let config = LoraConfig::new(RANK, ALPHA);
    let mut layer =
        PersonalizedLora::from_linear(base_linear(device), &config, 7).expect("valid LoRA config");
    layer.lora_b = layer.lora_b.map(|b| {
        let trainable = b.is_require_grad();
        Tensor::random(b.shape(), Distribution::Normal(0.0, 0.02), &b.device())
            .set_require_grad(trainable)
    });
    layer
}

fn input<B: Backend>(device: &B::Device) -> Tensor<B, 3> {
    Tensor::random(
        [BATCH, TOKENS, D_MODEL],
        Distribution::Normal(0.0, 1.0),
        device,
    )
}

fn bench_forward(c: &mut Criterion) {
    let device = Default::default();
    let linear = base_linear::<Fwd>(&device);
    let lora = adapter::<Fwd>(&device);
    let merged = adapter::<Fwd>(&device).merge();
    let x = input::<Fwd>(&device);

    let mut group = c.benchmark_group("adapter_forward");
    configure(&mut group);
    group.bench_function("linear", |b| {
        b.iter(|| black_box(linear.forward(black_box(x.clone()))))
    });
    group.bench_function("plora_r4", |b| {
        b.iter(|| black_box(lora.forward(black_box(x.clone()))))
    });
    group.bench_function("plora_r4_merged", |b| {
        b.iter(|| black_box(merged.forward(black_box(x.clone()))))
    });
    group.finish();
}

/// The bare layer with its bias frozen, so only the weight's gradient is computed.
fn trainable_linear() -> Linear<Train> {
    let mut linear = base_linear::<Train>(&Default::default());
    linear.bias = linear.bias.map(|b| b.set_require_grad(false));
    linear
}

fn bench_backward(c: &mut Criterion, name: &str, input_grad: bool) {
    let device = Default::default();
    let linear = trainable_linear();
    let lora = adapter::<Train>(&device);
    let x = input::<Train>(&device).set_require_grad(input_grad);

    // What each backward pass computes, checked once.
    let grads = linear.forward(x.clone()).sum().backward();
    assert!(linear.weight.grad(&grads).is_some());
    assert!(linear.bias.as_ref().and_then(|b| b.grad(&grads)).is_none());
    assert_eq!(x.grad(&grads).is_some(), input_grad);
    let grads = lora.forward(x.clone()).sum().backward();
    assert!(lora.weight.grad(&grads).is_none());
    assert!(lora.lora_a.grad(&grads).is_some());
    assert!(lora.lora_b.grad(&grads).is_some());
    assert_eq!(x.grad(&grads).is_some(), input_grad);

    let mut group = c.benchmark_group(name);
    configure(&mut group);
    group.bench_function("linear", |b| {
        b.iter(|| black_box(linear.forward(black_box(x.clone())).sum().backward()))
    });
    group.bench_function("plora_r4", |b| {
        b.iter(|| black_box(lora.forward(black_box(x.clone())).sum().backward()))
    });
    group.finish();
}

fn bench_forward_backward(c: &mut Criterion) {
    bench_backward(c, "adapter_forward_backward", false);
}

fn bench_forward_backward_input_grad(c: &mut Criterion) {
    bench_backward(c, "adapter_forward_backward_input_grad", true);
}

criterion_group!(
    benches,
    bench_forward,
    bench_forward_backward,
    bench_forward_backward_input_grad
);
criterion_main!(benches);
