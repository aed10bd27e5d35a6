//! Times Florence-2's training pieces at base size on random weights (nothing downloaded), on
//! the CPU (`Flex`) or, built with `--features cuda`, on an NVIDIA GPU: what
//! `scripts/gpu_check.sh` records.
//!
//! ```text
//! cargo run --release --example device_timings --features cuda -- --out target/gpu-check
//! cargo run --release --example device_timings -- --image 192 --batch 1 --cache-batch 2  # CPU
//! ```
//!
//! Timed (one warm-up, then the median of `--repeat` runs, the device synchronised around
//! each):
//! * `forward`: logits of a batch (`--batch` images of `--image` px, a 10-token prompt, 20
//!   decoder tokens), no autodiff;
//! * `plora_step_uncached`: the whole model on the autodiff backend with the paper's pLoRA
//!   adapters (last decoder layer's q/v projections), forward, cross-entropy, backward;
//! * `plora_step_cached`: the same step from the frozen-prefix cache (the last decoder layer
//!   and the head only);
//! * `cache_build`: the frozen prefix (vision tower, encoder, decoder layers but the last) of
//!   `--cache-batch` images, no graph: what building the cache costs per batch.
//!
//! Writes `timings.json` into `--out` and prints it.

use std::path::PathBuf;
use std::time::Instant;

use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::prelude::*;
use burn::tensor::{Distribution, TensorData};
use clap::Parser;
use fedvlm::experiments::vqa::cache::{SampleShape, sample_peak_bytes};
use fedvlm::lora::freeze_all;
use fedvlm::models::florence2::{Florence2, Florence2Config};
use fedvlm::{LoraConfig, Sharing};

#[cfg(not(feature = "cuda"))]
type Inner = burn::backend::Flex;
#[cfg(feature = "cuda")]
type Inner = burn::backend::Cuda;
type Train = Autodiff<Inner>;

const PROMPT_TOKENS: usize = 10;
const DECODER_TOKENS: usize = 20;

/// Flags.
#[derive(Parser, Debug)]
#[command(about = "Times Florence-2-base training pieces on random weights")]
struct Args {
    /// Images per training batch.
    #[arg(long, default_value_t = 2)]
    batch: usize,
    /// Image side in pixels (768 is Florence-2's).
    #[arg(long, default_value_t = 768)]
    image: usize,
    /// Images per cache-building batch.
    #[arg(long, default_value_t = 16)]
    cache_batch: usize,
    /// Timed runs per measurement (after one warm-up).
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// Only these measurements (comma-separated: forward, plora_step_uncached,
    /// plora_step_cached, cache_build); all by default. `--only cache_build` with two
    /// `--cache-batch` sizes isolates the cache build's activations in the peak memory.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Folder for `timings.json`.
    #[arg(long, default_value = "target/gpu-check")]
    out: PathBuf,
}

struct Batch<B: Backend> {
    pixels: Tensor<B, 4>,
    prompt: Tensor<B, 2, Int>,
    decoder: Tensor<B, 2, Int>,
    labels: Tensor<B, 1, Int>,
}

fn token(i: usize) -> i64 {
    3 + ((i as i64 * 7919 + 13) % 49_997)
}

fn batch<B: Backend>(n: usize, image: usize, device: &B::Device) -> Batch<B> {
    let ids = |len: usize, offset: usize| {
        let values: Vec<i64> = (0..n * len).map(|i| token(offset + i)).collect();
        Tensor::<B, 1, Int>::from_data(TensorData::new(values, [n * len]), device).reshape([n, len])
    };
    let labels: Vec<i64> = (0..n * DECODER_TOKENS).map(|i| token(5000 + i)).collect();
    Batch {
        pixels: Tensor::random([n, 3, image, image], Distribution::Normal(0.0, 1.0), device),
        prompt: ids(PROMPT_TOKENS, 0),
        decoder: ids(DECODER_TOKENS, 1000),
        labels: Tensor::from_data(TensorData::new(labels, [n * DECODER_TOKENS]), device),
    }
}

fn loss<B: Backend>(logits: Tensor<B, 3>, labels: Tensor<B, 1, Int>) -> Tensor<B, 1> {
    let [n, t, vocab] = logits.dims();
    CrossEntropyLossConfig::new()
        .init(&logits.device())
        .forward(logits.reshape([n * t, vocab]), labels)
}

/// Median seconds of `repeat` runs of `f` after one warm-up, the device synchronised.
fn time<T>(device: &burn::tensor::Device<Train>, repeat: usize, mut f: impl FnMut() -> T) -> f64 {
    let sync = || {
        let _ = <Train as Backend>::sync(device);
    };
    drop(f());
    sync();
    let mut times: Vec<f64> = (0..repeat.max(1))
        .map(|_| {
            let start = Instant::now();
            drop(f());
            sync();
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let device = Default::default();
    let started = Instant::now();
    let model = Florence2::<Train>::new(&Florence2Config::base(), 0, &device)?;
    let targets = model.default_adapter_targets();
    let model = freeze_all(
        model.with_adapters(&LoraConfig::paper(), &targets, 1)?,
        Sharing::PLora,
    );
    let frozen = model.valid();
    println!(
        "built Florence-2-base with pLoRA in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let train: Batch<Train> = batch(args.batch, args.image, &device);
    let infer: Batch<Inner> = batch(args.batch, args.image, &device);
    let wanted = |step: &str| args.only.is_empty() || args.only.iter().any(|s| s == step);
    let mut seconds = serde_json::Map::new();
    let mut record = |name: &str, value: f64| {
        println!("{name}: {value:.4} s");
        seconds.insert(name.to_string(), value.into());
    };
    if wanted("forward") {
        let forward = time(&device, args.repeat, || {
            frozen
                .forward(
                    infer.pixels.clone(),
                    infer.prompt.clone(),
                    infer.decoder.clone(),
                )
                .map(|l| l.into_data())
        });
        record("forward", forward);
    }
    if wanted("plora_step_uncached") {
        let uncached = time(&device, args.repeat, || {
            let logits = model
                .forward(
                    train.pixels.clone(),
                    train.prompt.clone(),
                    train.decoder.clone(),
                )
                .expect("forward");
            loss(logits, train.labels.clone()).backward()
        });
        record("plora_step_uncached", uncached);
    }
    if wanted("plora_step_cached") {
        let encoded = frozen.encode(infer.pixels.clone(), infer.prompt.clone(), None)?;
        let prefix = frozen.language_model.decode_prefix(
            infer.decoder.clone(),
            encoded.hidden.clone(),
            None,
            None,
        )?;
        let (hidden, prefix) = (
            Tensor::<Train, 3>::from_inner(encoded.hidden),
            Tensor::<Train, 3>::from_inner(prefix),
        );
        let cached = time(&device, args.repeat, || {
            let logits = model
                .language_model
                .decode_last_layer(prefix.clone(), hidden.clone(), None, None)
                .expect("last layer");
            loss(logits, train.labels.clone()).backward()
        });
        record("plora_step_cached", cached);
    }
    if wanted("cache_build") {
        let build: Batch<Inner> = batch(args.cache_batch, args.image, &device);
        let cache_build = time(&device, args.repeat.min(3), || {
            let encoded = frozen
                .encode(build.pixels.clone(), build.prompt.clone(), None)
                .expect("encode");
            frozen
                .language_model
                .decode_prefix(build.decoder.clone(), encoded.hidden, None, None)
                .map(|p| p.into_data())
        });
        record("cache_build_per_batch", cache_build);
        record(
            "cache_build_per_image",
            cache_build / args.cache_batch as f64,
        );
    }
    // What the cache build's batch choice assumes one sample's activations take (the
    // frozen prefix of the longest sample: the image tokens plus the prompt, the answer).
    let estimate = sample_peak_bytes(&SampleShape {
        image_side: args.image,
        vision_dim: 128,
        vision_stride: 4,
        d_model: 768,
        encoder_len: (args.image / 32).pow(2) + 1 + PROMPT_TOKENS,
        decoder_len: DECODER_TOKENS,
        float_bytes: 4,
    });

    let report = serde_json::json!({
        "backend": if cfg!(feature = "cuda") { "cuda" } else { "flex" },
        "model": "florence2-base (random weights), pLoRA on the last decoder layer's q/v",
        "batch": args.batch,
        "image": args.image,
        "cache_batch": args.cache_batch,
        "repeat": args.repeat,
        "seconds": seconds,
        "estimated_sample_peak_mib": estimate as f64 / (1 << 20) as f64,
        "peak_rss_mib": peak_rss_kib().map(|k| k as f64 / 1024.0),
    });
    std::fs::create_dir_all(&args.out)?;
    let path = args.out.join("timings.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&report)?)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    println!("wrote {}", path.display());
    Ok(())
}

/// This process's peak resident memory (`VmHWM`, Linux), in KiB; host memory only, so on CUDA
/// it leaves out the device.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
