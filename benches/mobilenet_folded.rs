//! The CIFAR-10 cache build's backbone: MobileNetV3-small's pooled features of a batch of 64
//! random images at 64 px (random weights; timing does not depend on them), on the CPU.
//!
//! * `folded`: [`MobileNetV3::fold_for_inference`]'s backbone (batch norms folded,
//!   channels-last kernels), what `PrefixCache::build` runs;
//! * `unfused`: the model's own burn layers on `Flex` ([`MobileNetV3::features_pooled`]),
//!   the path before folding.
//!
//! Run with `cargo bench --bench mobilenet_folded` (about a minute on 2 cores). For the
//! comparison with PyTorch see `scripts/bench_cache_build.sh`.

use std::hint::black_box;
use std::time::Duration;

use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::Distribution;
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use fedvlm::models::{MobileNetV3, MobileNetV3Config};

const BATCH: usize = 64;
const SIDE: usize = 64;

fn backbone(c: &mut Criterion) {
    let device = Default::default();
    let model = MobileNetV3::<Flex>::new(&MobileNetV3Config::small(10), &device);
    let folded = model.fold_for_inference().expect("fold");
    let images: Tensor<Flex, 4> = Tensor::random(
        [BATCH, 3, SIDE, SIDE],
        Distribution::Normal(0.0, 1.0),
        &device,
    );
    let host: Vec<f32> = images
        .clone()
        .into_data()
        .into_vec::<f32>()
        .expect("f32 images");
    let mut group = c.benchmark_group("mobilenet_v3_small_64px_backbone");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sampling_mode(SamplingMode::Flat)
        .throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("folded", |b| {
        b.iter(|| {
            black_box(
                folded
                    .features_pooled_host(black_box(&host), BATCH, SIDE, SIDE)
                    .expect("forward"),
            )
        })
    });
    group.bench_function("unfused", |b| {
        b.iter(|| black_box(model.features_pooled(images.clone()).into_data()))
    });
    group.finish();
}

criterion_group!(benches, backbone);
criterion_main!(benches);
