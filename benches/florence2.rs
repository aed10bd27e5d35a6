//! Cost of one training batch of Florence-2 at base size on the CPU (`Flex`).
//!
//! The model is built from random weights ([`Florence2::new`], `Florence2Config::base()`);
//! nothing is downloaded. Inputs follow `scripts/time_florence2_reference.py`: a batch of
//! images, a 10-token prompt (`<s> 8 tokens </s>`, after the image tokens) and 20 decoder
//! tokens with 20 labels.
//!
//! * The reference batch `b2_768` (batch 2, 768x768, 577 image tokens) takes tens of seconds
//!   per forward here, too slow for criterion's minimum of 10 samples. The binary times it
//!   itself, as the reference script does (one warm-up, then the median of 3 runs), for
//!   `image_features` (vision tower + projector, the script's first line), `forward` and
//!   `forward_backward_plora` (below), and prints the figures before criterion starts. Set
//!   `FLORENCE2_BENCH_SKIP_REFERENCE=1` to skip it (about 3.5 minutes).
//! * The smaller configuration `b1_384` (batch 1, 384x384, 145 image tokens) goes through
//!   criterion.
//!
//! What is timed:
//!
//! * `forward`: `Florence2::forward` (logits) on `Flex`, no autodiff.
//! * `forward_backward_plora`: on `Autodiff<Flex>`, the paper's pLoRA adapters
//!   (`LoraConfig::paper()`: rank 4, alpha 8, dropout 0.1) on the default targets (the last
//!   decoder layer's self-attention `q_proj` and `v_proj`), everything else frozen
//!   (`fedvlm::lora::freeze_all`); forward, mean token cross-entropy over the 20 labels,
//!   backward. Dropout is active (autodiff backend), as in training. Checked once: exactly
//!   the four adapter matrices get gradients.
//! * `last_layer_plora` (criterion, both sizes): the "frozen prefix" split FedVLM training
//!   uses. The encoder output and the hidden states of decoder layers 0..4
//!   (`BartModel::decode_prefix`) are computed once on the inner backend (no dropout, no
//!   graph; the time this takes is printed) and cached; each iteration runs only
//!   `BartModel::decode_last_layer` (the last decoder layer with its adapters, then the tied
//!   head over the 51,289-token vocabulary), the cross-entropy and the backward pass.
//!
//! * `cache_prefix` (criterion, `b1_384`): the cache's one-time cost, `encode` +
//!   `decode_prefix` without a graph, with the weights cast to f32, f16 and bf16
//!   (`fedvlm::models::cast_floats`, `fedvlm_rlaif --prefix-precision`).
//!
//! Before all that, the binary prints the parameter counts of base and large, from shapes (no
//! weights drawn) and with `Module::num_params` on the built model (which draws every weight;
//! set `FLORENCE2_BENCH_SKIP_LARGE=1` to skip drawing large's 770M weights, 3 GiB of f32).
//!
//! Run with `cargo bench --bench florence2` (about 5 minutes once built on a quiet 2-core
//! machine). A criterion filter selects among the criterion benchmarks (only those that run
//! build their model and inputs); the counts and the reference batch are printed regardless:
//! `FLORENCE2_BENCH_SKIP_REFERENCE=1 cargo bench --bench florence2 -- last_layer`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use burn::backend::{Autodiff, Flex};
use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::backend::AutodiffBackend;
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode};
use fedvlm::lora::freeze_all;
use fedvlm::models::florence2::{Florence2, Florence2Config};
use fedvlm::models::{Precision, cast_floats};
use fedvlm::{LoraConfig, Sharing};

type Fwd = Flex;
type Train = Autodiff<Flex>;

const PROMPT_TOKENS: usize = 10;
const DECODER_TOKENS: usize = 20;
const SEED: u64 = 0;
const ADAPTER_SEED: u64 = 1;

/// One input size.
#[derive(Clone, Copy)]
struct Case {
    name: &'static str,
    batch: usize,
    image: usize,
}

/// The reference script's batch.
const REFERENCE: Case = Case {
    name: "b2_768",
    batch: 2,
    image: 768,
};

/// The smaller configuration for criterion.
const SMALL: Case = Case {
    name: "b1_384",
    batch: 1,
    image: 384,
};

/// Timed runs of the reference batch (after one warm-up), as in the reference script.
const REFERENCE_REPEAT: usize = 3;

fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5));
}

/// The batch: normal pixels, `<s> 8 tokens </s>` prompts, decoder ids starting with `</s>` and
/// the labels (the decoder ids shifted left, ending with `</s>`).
struct Batch<B: Backend> {
    pixel_values: Tensor<B, 4>,
    input_ids: Tensor<B, 2, Int>,
    decoder_input_ids: Tensor<B, 2, Int>,
    labels: Tensor<B, 1, Int>,
}

/// Token ids in `3..50000`, deterministic.
fn token(i: usize) -> i64 {
    3 + ((i as i64 * 7919 + 13) % 49_997)
}

impl<B: Backend> Batch<B> {
    fn new(case: Case, device: &B::Device) -> Self {
        let n = case.batch;
        let prompt: Vec<i64> = (0..n * PROMPT_TOKENS)
            .map(|i| match i % PROMPT_TOKENS {
                0 => 0,
                j if j == PROMPT_TOKENS - 1 => 2,
                _ => token(i),
            })
            .collect();
        let labels: Vec<i64> = (0..n * DECODER_TOKENS)
            .map(|i| {
                if i % DECODER_TOKENS == DECODER_TOKENS - 1 {
                    2
                } else {
                    token(1000 + i)
                }
            })
            .collect();
        let decoder: Vec<i64> = (0..n * DECODER_TOKENS)
            .map(|i| {
                if i % DECODER_TOKENS == 0 {
                    2
                } else {
                    labels[i - 1]
                }
            })
            .collect();
        let ids = |values: Vec<i64>, len: usize| {
            Tensor::<B, 1, Int>::from_data(TensorData::new(values, [n * len]), device)
                .reshape([n, len])
        };
        Self {
            pixel_values: Tensor::random(
                [n, 3, case.image, case.image],
                Distribution::Normal(0.0, 1.0),
                device,
            ),
            input_ids: ids(prompt, PROMPT_TOKENS),
            decoder_input_ids: ids(decoder, DECODER_TOKENS),
            labels: Tensor::from_data(TensorData::new(labels, [n * DECODER_TOKENS]), device),
        }
    }
}

/// Mean token cross-entropy of `logits` `[N, T, vocab]` against `labels` `[N*T]`.
fn loss<B: Backend>(logits: Tensor<B, 3>, labels: Tensor<B, 1, Int>) -> Tensor<B, 1> {
    let [n, t, vocab] = logits.dims();
    CrossEntropyLossConfig::new()
        .init(&logits.device())
        .forward(logits.reshape([n * t, vocab]), labels)
}

/// The base model with the paper's pLoRA adapters on the default targets, the rest frozen.
fn adapted_base<B: AutodiffBackend>(device: &B::Device) -> Florence2<B> {
    let model = Florence2::<B>::new(&Florence2Config::base(), SEED, device).expect("base config");
    let targets = model.default_adapter_targets();
    let model = model
        .with_adapters(&LoraConfig::paper(), &targets, ADAPTER_SEED)
        .expect("default targets");
    freeze_all(model, Sharing::PLora)
}

/// Number of parameters, from the shapes alone (draws no lazily initialised weight).
fn count_from_shapes<B: Backend, M: Module<B>>(module: &M) -> usize {
    struct Counter(usize);
    impl<B: Backend> ModuleVisitor<B> for Counter {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.0 += param.lazy_shape().num_elements();
        }
    }
    let mut counter = Counter(0);
    module.visit(&mut counter);
    counter.0
}

fn print_counts() {
    let device = Default::default();
    let skip_large = std::env::var_os("FLORENCE2_BENCH_SKIP_LARGE").is_some();
    for (name, config) in [
        ("base", Florence2Config::base()),
        ("large", Florence2Config::large()),
    ] {
        let model = Florence2::<Fwd>::new(&config, SEED, &device).expect("preset config");
        let shapes = count_from_shapes(&model);
        let parts = [
            count_from_shapes(&model.vision_tower),
            count_from_shapes(&model.multi_modal_projector),
            count_from_shapes(&model.language_model),
        ];
        let built = if name == "large" && skip_large {
            "skipped".to_string()
        } else {
            let start = Instant::now();
            let n = model.num_params();
            format!("{n} (drawn in {:.1} s)", start.elapsed().as_secs_f64())
        };
        println!(
            "florence2 {name}: {shapes} parameters from shapes (vision_tower {}, \
             multi_modal_projector {}, language_model {}); num_params: {built}",
            parts[0], parts[1], parts[2]
        );
    }
}

/// Median of `times`.
fn median(times: &mut [f64]) -> f64 {
    times.sort_by(f64::total_cmp);
    let mid = times.len() / 2;
    if times.len() % 2 == 1 {
        times[mid]
    } else {
        (times[mid - 1] + times[mid]) / 2.0
    }
}

/// Times `f` as the reference script does: one warm-up, then `REFERENCE_REPEAT` runs.
fn time_reference<T>(label: &str, mut f: impl FnMut() -> T) {
    black_box(f());
    let mut times: Vec<f64> = (0..REFERENCE_REPEAT)
        .map(|_| {
            let start = Instant::now();
            black_box(f());
            start.elapsed().as_secs_f64()
        })
        .collect();
    let runs: Vec<String> = times.iter().map(|t| format!("{t:.2}")).collect();
    println!(
        "florence2 {}/{label}: median {:.2} s of [{}] s",
        REFERENCE.name,
        median(&mut times),
        runs.join(", ")
    );
}

/// The reference batch (too slow for criterion's 10 samples): forward, and forward + backward
/// with pLoRA, timed like `scripts/time_florence2_reference.py`.
fn reference_batch() {
    let device = Default::default();
    {
        let model = Florence2::<Fwd>::new(&Florence2Config::base(), SEED, &device).expect("base");
        let batch = Batch::<Fwd>::new(REFERENCE, &device);
        time_reference("image_features", || {
            model
                .image_features(batch.pixel_values.clone())
                .expect("image features")
        });
        time_reference("forward", || {
            model
                .forward(
                    batch.pixel_values.clone(),
                    batch.input_ids.clone(),
                    batch.decoder_input_ids.clone(),
                )
                .expect("forward")
        });
    }
    let model = adapted_base::<Train>(&device);
    let batch = Batch::<Train>::new(REFERENCE, &device);
    let mut step = plora_step(&model, &batch);
    check_grads(&model, step());
    time_reference("forward_backward_plora", step);
}

/// One pLoRA training step on the whole model: forward, cross-entropy, backward.
fn plora_step<'a>(
    model: &'a Florence2<Train>,
    batch: &'a Batch<Train>,
) -> impl FnMut() -> <Train as AutodiffBackend>::Gradients + 'a {
    move || {
        let logits = model
            .forward(
                batch.pixel_values.clone(),
                batch.input_ids.clone(),
                batch.decoder_input_ids.clone(),
            )
            .expect("forward");
        loss(logits, batch.labels.clone()).backward()
    }
}

// Each benchmark builds what it needs inside its closure (once, kept in an `Option`), which
// criterion only calls when the benchmark passes the command line's filter.

fn bench_forward(c: &mut Criterion) {
    let mut state = None;
    let mut group = c.benchmark_group("florence2_forward");
    configure(&mut group);
    group.bench_function(SMALL.name, |b| {
        let (model, batch) = state.get_or_insert_with(|| {
            let device = Default::default();
            let model =
                Florence2::<Fwd>::new(&Florence2Config::base(), SEED, &device).expect("base");
            (model, Batch::<Fwd>::new(SMALL, &device))
        });
        b.iter(|| {
            black_box(
                model
                    .forward(
                        batch.pixel_values.clone(),
                        batch.input_ids.clone(),
                        batch.decoder_input_ids.clone(),
                    )
                    .expect("forward"),
            )
        })
    });
    group.finish();
}

/// Checks once that `grads` hold gradients for the adapter matrices and nothing else.
fn check_grads(model: &Florence2<Train>, grads: <Train as AutodiffBackend>::Gradients) {
    let params = GradientsParams::from_grads(grads, model);
    // pLoRA trains A and B of q_proj and v_proj.
    assert_eq!(
        params.len(),
        4,
        "gradients for the four adapter matrices only"
    );
}

fn bench_forward_backward(c: &mut Criterion) {
    let mut state = None;
    let mut group = c.benchmark_group("florence2_forward_backward_plora");
    configure(&mut group);
    group.bench_function(SMALL.name, |b| {
        let (model, batch) = state.get_or_insert_with(|| {
            let device = Default::default();
            let model = adapted_base::<Train>(&device);
            let batch = Batch::<Train>::new(SMALL, &device);
            check_grads(&model, plora_step(&model, &batch)());
            (model, batch)
        });
        let mut step = plora_step(model, batch);
        b.iter(|| black_box(step()))
    });
    group.finish();
}

/// The cached inputs of the last decoder layer: encoder output, frozen-prefix output, labels.
struct Cache {
    encoder_hidden: Tensor<Train, 3>,
    prefix: Tensor<Train, 3>,
    labels: Tensor<Train, 1, Int>,
}

impl Cache {
    /// Runs the encoder and the decoder prefix on the inner backend (no dropout, no graph).
    fn new(model: &Florence2<Train>, case: Case) -> Self {
        let frozen = model.valid();
        let batch = Batch::<Fwd>::new(case, &Default::default());
        let start = Instant::now();
        let encoded = frozen
            .encode(batch.pixel_values, batch.input_ids, None)
            .expect("encode");
        let prefix = frozen
            .language_model
            .decode_prefix(batch.decoder_input_ids, encoded.hidden.clone(), None, None)
            .expect("decode_prefix");
        println!(
            "florence2 {}: encoder + decoder prefix for the cache: {:.2} s",
            case.name,
            start.elapsed().as_secs_f64()
        );
        Self {
            encoder_hidden: Tensor::from_inner(encoded.hidden),
            prefix: Tensor::from_inner(prefix),
            labels: Tensor::from_inner(batch.labels),
        }
    }

    /// One training step of the last layer: forward from the cache, cross-entropy, backward.
    fn step(&self, model: &Florence2<Train>) -> <Train as AutodiffBackend>::Gradients {
        let logits = model
            .language_model
            .decode_last_layer(self.prefix.clone(), self.encoder_hidden.clone(), None, None)
            .expect("last layer");
        loss(logits, self.labels.clone()).backward()
    }
}

fn bench_last_layer(c: &mut Criterion) {
    let mut model = None;
    let mut group = c.benchmark_group("florence2_last_layer_plora");
    configure(&mut group);
    for case in [REFERENCE, SMALL] {
        let mut cache = None;
        group.bench_function(case.name, |b| {
            let model: &Florence2<Train> =
                model.get_or_insert_with(|| adapted_base(&Default::default()));
            let cache = cache.get_or_insert_with(|| {
                let cache = Cache::new(model, case);
                check_grads(model, cache.step(model));
                cache
            });
            b.iter(|| black_box(cache.step(model)))
        });
    }
    group.finish();
}

/// The cache's one-time cost (`encode` + `decode_prefix`, no graph) with the frozen weights
/// in each [`Precision`] (`fedvlm_rlaif --prefix-precision`).
fn bench_cache_precision(c: &mut Criterion) {
    let mut state = None;
    let mut group = c.benchmark_group("florence2_cache_prefix");
    configure(&mut group);
    for precision in [Precision::F32, Precision::F16, Precision::Bf16] {
        let mut cast = None;
        group.bench_function(format!("{}/{precision}", SMALL.name), |b| {
            let (model, batch) = state.get_or_insert_with(|| {
                let device = Default::default();
                let model =
                    Florence2::<Fwd>::new(&Florence2Config::base(), SEED, &device).expect("base");
                (model, Batch::<Fwd>::new(SMALL, &device))
            });
            let model: &Florence2<Fwd> =
                cast.get_or_insert_with(|| cast_floats(model.clone(), precision));
            b.iter(|| {
                let encoded = model
                    .encode(batch.pixel_values.clone(), batch.input_ids.clone(), None)
                    .expect("encode");
                black_box(
                    model
                        .language_model
                        .decode_prefix(batch.decoder_input_ids.clone(), encoded.hidden, None, None)
                        .expect("decode_prefix"),
                )
            })
        });
    }
    group.finish();
}

fn main() {
    print_counts();
    if std::env::var_os("FLORENCE2_BENCH_SKIP_REFERENCE").is_none() {
        reference_batch();
    }
    let mut criterion = Criterion::default().configure_from_args();
    bench_forward(&mut criterion);
    bench_forward_backward(&mut criterion);
    bench_last_layer(&mut criterion);
    bench_cache_precision(&mut criterion);
    criterion.final_summary();
}
