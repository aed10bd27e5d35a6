//! Times fedvlm's side of the CIFAR-10 frozen-prefix cache build on the CPU: what
//! `scripts/time_cifar_cache_build.py` times for PyTorch, on random weights (nothing
//! downloaded; timing does not depend on the weights).
//!
//! ```text
//! cargo run --release --example cifar_cache_timing -- [--threads 2] [--batch 256] [--size 64]
//! ```
//!
//! One cache batch (what `PrefixCache::build` computes per batch of preprocessed images):
//! the folded backbone's pooled features of `--batch` random images of `--size` px, and
//! `classifier.0`'s frozen product of them on the backend. Prints the median over `--repeat`
//! timed batches (after `--warmup`) as `fedvlm_ms_per_image=<value>` on the last line (read by
//! `scripts/bench_cache_build.sh`). `--unfused N` also times `N` batches of the unfused burn
//! model (the path before folding); `--per-layer` prints the time of each child of
//! `features`; `--end-to-end N` times `PrefixCache::build` on `N` synthetic CIFAR-10 images
//! (preprocessing included).

use std::time::{Duration, Instant};

use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::{Distribution, TensorData};
use clap::Parser;
use fedvlm::data::{Cifar10, Cifar10Split, ImageTransform};
use fedvlm::experiments::cifar10::PrefixCache;
use fedvlm::experiments::cifar10::cache::frozen_product;
use fedvlm::models::{MobileNetV3, MobileNetV3Config};

type B = Flex;

/// Flags.
#[derive(Parser, Debug)]
#[command(about = "Times the CIFAR-10 cache build (folded MobileNetV3) on random weights")]
struct Args {
    /// Worker threads (rayon's pool; 0: one per core).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Images per cache batch.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Image side in pixels.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Untimed batches first.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Timed batches (the median is reported).
    #[arg(long, default_value_t = 7)]
    repeat: usize,
    /// MobileNetV3-large instead of small.
    #[arg(long)]
    large: bool,
    /// Images per thread and step of the folded backbone (0: its default).
    #[arg(long, default_value_t = 0)]
    chunk: usize,
    /// Also time this many batches of the unfused model.
    #[arg(long, default_value_t = 0)]
    unfused: usize,
    /// Print each feature's time.
    #[arg(long)]
    per_layer: bool,
    /// Also time `PrefixCache::build` on this many synthetic images.
    #[arg(long, default_value_t = 0)]
    end_to_end: usize,
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

fn timed(warmup: usize, repeat: usize, mut f: impl FnMut()) -> Duration {
    for _ in 0..warmup {
        f();
    }
    median(
        (0..repeat.max(1))
            .map(|_| {
                let start = Instant::now();
                f();
                start.elapsed()
            })
            .collect(),
    )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build_global()?;
    let device = Default::default();
    let config = if args.large {
        MobileNetV3Config::large(10)
    } else {
        MobileNetV3Config::small(10)
    };
    let model = MobileNetV3::<B>::new(&config, &device);
    let mut folded = model.fold_for_inference()?;
    if args.chunk > 0 {
        folded = folded.with_chunk_size(args.chunk);
    }
    let (n, s) = (args.batch, args.size);
    <B as Backend>::seed(&device, 0);
    let images: Tensor<B, 4> =
        Tensor::random([n, 3, s, s], Distribution::Normal(0.0, 1.0), &device);
    let host: Vec<f32> = images.clone().into_data().into_vec::<f32>()?;
    println!(
        "fedvlm, MobileNetV3-{}, threads {}, batch {n} at {s} px",
        if args.large { "large" } else { "small" },
        rayon::current_num_threads()
    );

    if args.per_layer {
        for (name, t) in folded.profile_host(&host, n, s, s)? {
            println!("{name:<12} {:8.2} ms per batch", t.as_secs_f64() * 1e3);
        }
    }
    if args.unfused > 0 {
        let t = timed(0, args.unfused, || {
            let x = model.features_pooled(images.clone());
            let base = frozen_product(&model.classifier.0, x);
            let _ = base.into_data();
        });
        println!(
            "unfused burn: {:.1} ms per batch, {:.4} ms per image",
            t.as_secs_f64() * 1e3,
            t.as_secs_f64() * 1e3 / n as f64
        );
    }
    if args.end_to_end > 0 {
        let split = Cifar10Split {
            images: (0..args.end_to_end * 3072)
                .map(|i| (i * 7 % 251) as u8)
                .collect(),
            labels: (0..args.end_to_end).map(|i| (i % 10) as u8).collect(),
        };
        let data = Cifar10::from_splits(split.clone(), Cifar10Split::with_capacity(0))?;
        let transform = ImageTransform::imagenet(s);
        let start = Instant::now();
        let cache = PrefixCache::build(
            &model,
            &data,
            (args.end_to_end, 0),
            &transform,
            false,
            &device,
        )?;
        let t = start.elapsed();
        println!(
            "PrefixCache::build, {} images (preprocessing and folding included): {:.4} ms per image",
            cache.len(fedvlm::federated::Split::Train),
            t.as_secs_f64() * 1e3 / args.end_to_end as f64
        );
    }
    let mut failure = None;
    let t = timed(args.warmup, args.repeat, || {
        match folded.features_pooled_host(&host, n, s, s) {
            Ok(x) => {
                let dim = folded.feature_dim();
                let x = Tensor::<B, 2>::from_data(TensorData::new(x, [n, dim]), &device);
                let _ = frozen_product(&model.classifier.0, x).into_data();
            }
            Err(e) => failure = Some(e),
        }
    });
    if let Some(e) = failure {
        return Err(e.into());
    }
    println!(
        "cache batch {n} at {s} px: {:.1} ms per batch",
        t.as_secs_f64() * 1e3
    );
    println!(
        "fedvlm_ms_per_image={:.4}",
        t.as_secs_f64() * 1e3 / n as f64
    );
    Ok(())
}
