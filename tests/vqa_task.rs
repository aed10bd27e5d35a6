//! The VQA task on the tiny Florence-2 (`tests/fixtures/florence2/`): samples and label
//! shifting, the loss (hand-computed and against transformers), the frozen-prefix cache
//! (parity, budget, refusal) and federated runs end to end.

mod common;

use std::sync::Arc;

use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::TensorData;
use common::{TensorFile, florence2_fixtures};
use fedvlm::experiments::vqa::{
    CacheConfig, CacheDtype, FrozenPrefixCache, IGNORE_INDEX, VqaBatch, VqaSample, VqaSplit,
    VqaTask, check_cacheable, masked_cross_entropy, score_tokens, shift_tokens_right, truncate_ids,
};
use fedvlm::federated::{CohortMode, OptimizerConfig};
use fedvlm::federated::{
    FederatedTask, Payload, RoundReport, ShareSpec, Split, TensorValues, apply_payload,
    collect_shared,
};
use fedvlm::lora::freeze_all;
use fedvlm::models::Precision;
use fedvlm::models::florence2::Florence2;
use fedvlm::{FedAvg, FedError, LoraConfig, Sharing, Simulation, SimulationConfig};
use rand::{RngExt, SeedableRng, rngs::ChaCha8Rng};

type B = Autodiff<Flex>;
type I = Flex;

const VOCAB: usize = 96;
const IMAGE: usize = 64;

/// Dropout draws from burn's backend-wide generator: one seeded computation at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn io() -> TensorFile {
    TensorFile::open(florence2_fixtures().join("tiny_io.safetensors"))
}

/// A 0-d f32 tensor of the fixture.
fn scalar(name: &str) -> f32 {
    let bytes = std::fs::read(florence2_fixtures().join("tiny_io.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let data = file.tensor(name).unwrap().data().to_vec();
    f32::from_le_bytes([data[0], data[1], data[2], data[3]])
}

fn generation_settings(name: &str) -> fedvlm::models::florence2::GenerationConfig {
    let path = florence2_fixtures().join("tiny_io_generation.json");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    serde_json::from_value(json[name].clone()).unwrap()
}

fn base_model<BB: Backend>() -> Florence2<BB> {
    Florence2::load(
        florence2_fixtures().join("tiny_native"),
        &Default::default(),
    )
    .unwrap()
}

/// The tiny model with the paper's adapters, everything else frozen, and a non-zero `B` so the
/// adapters change the outputs.
fn adapted(seed: u64) -> Florence2<B> {
    let model = base_model::<B>();
    let targets = model.default_adapter_targets();
    let model = model
        .with_adapters(&LoraConfig::paper(), &targets, seed)
        .unwrap();
    let model = freeze_all(model, Sharing::PLora);
    let shared = collect_shared(&model, &ShareSpec::new(Sharing::PLora));
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut payload = Payload {
        round: 0,
        num_examples: 0,
        tensors: Default::default(),
    };
    for (name, t) in shared.tensors {
        let values = t
            .values
            .iter()
            .map(|_| rng.random_range(-0.5f32..0.5))
            .collect();
        payload.tensors.insert(
            name,
            TensorValues {
                shape: t.shape,
                values,
            },
        );
    }
    apply_payload(&model, &payload, &ShareSpec::new(Sharing::PLora)).unwrap()
}

/// Random images and ids of varying lengths (prompts 3..9 tokens, answers 2..8).
fn synthetic(n: usize, seed: u64) -> Vec<VqaSample> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let pixels = (0..3 * IMAGE * IMAGE)
                .map(|_| rng.random_range(-2.0f32..2.0))
                .collect();
            let ids = |rng: &mut ChaCha8Rng, len: usize| {
                let mut v = vec![0u32];
                v.extend((0..len - 2).map(|_| rng.random_range(3..VOCAB as u32)));
                v.push(2);
                v
            };
            let len = rng.random_range(3..10);
            let prompt = ids(&mut rng, len);
            let len = rng.random_range(2..9);
            let answer = ids(&mut rng, len);
            VqaSample::new(pixels, IMAGE, &prompt, &answer, 16, 16).unwrap()
        })
        .collect()
}

fn split(n_clients: usize, train: usize, test: usize) -> VqaSplit {
    let per = train + test;
    VqaSplit {
        train: (0..n_clients)
            .map(|k| (k * per..k * per + train).collect())
            .collect(),
        test: (0..n_clients)
            .map(|k| (k * per + train..(k + 1) * per).collect())
            .collect(),
        global_test: Vec::new(),
    }
}

fn loss_of(task: &VqaTask<B>, model: &Florence2<B>, rows: &[usize]) -> f32 {
    B::seed(&Default::default(), 7);
    task.loss(model, 0, rows).unwrap().into_scalar()
}

#[test]
fn labels_shift_right_behind_the_decoder_start_token() {
    // transformers' shift_tokens_right: [start, labels[..-1]], -100 -> pad.
    assert_eq!(
        shift_tokens_right(&[0, 11, 30, 79, IGNORE_INDEX, IGNORE_INDEX], 1, 2),
        [2, 0, 11, 30, 79, 1]
    );
    // The fixture's decoder inputs are its labels shifted.
    let io = io();
    let labels = io.ints("labels").0;
    let decoder = io.id_rows("decoder_input_ids");
    for (row, expected) in labels.chunks(6).zip(decoder) {
        assert_eq!(shift_tokens_right(row, 1, 2), expected);
    }
    // Truncation keeps </s>.
    assert_eq!(truncate_ids(&[0, 5, 6, 7, 2], 4).unwrap(), [0, 5, 6, 2]);
    assert_eq!(truncate_ids(&[0, 5, 2], 4).unwrap(), [0, 5, 2]);
    assert!(truncate_ids(&[0, 2], 1).is_err());
    // A batch pads prompts with <pad> (and masks them) and labels with -100.
    let a = VqaSample::new(vec![0.0; 12], 2, &[0, 9, 9, 2], &[0, 5, 6, 2], 8, 8).unwrap();
    let b = VqaSample::new(vec![0.0; 12], 2, &[0, 9, 2], &[0, 7, 2], 8, 8).unwrap();
    let batch = VqaBatch::<I>::new(&[&a, &b], &Default::default()).unwrap();
    let ints = |t: Tensor<I, 2, Int>| t.into_data().convert::<i64>().into_vec::<i64>().unwrap();
    assert_eq!(ints(batch.input_ids), [0, 9, 9, 2, 0, 9, 2, 1]);
    assert_eq!(
        ints(batch.attention_mask.unwrap()),
        [1, 1, 1, 1, 1, 1, 1, 0]
    );
    assert_eq!(ints(batch.labels), [0, 5, 6, 2, 0, 7, 2, -100]);
    assert_eq!(ints(batch.decoder_input_ids), [2, 0, 5, 6, 2, 0, 7, 2]);
    assert!(VqaSample::new(vec![0.0; 11], 2, &[0, 2], &[0, 2], 8, 8).is_err());
}

#[test]
fn the_loss_is_the_mean_over_kept_answer_tokens_computed_by_hand() {
    let device = Default::default();
    let ln2 = 2f32.ln();
    // Softmaxes: [1/3, 1/3, 1/3] and [1/4, 1/2, 1/4]; the last position is padding.
    let logits = Tensor::<I, 3>::from_data(
        TensorData::new(
            vec![0.0, 0.0, 0.0, 0.0, ln2, 0.0, 0.0, ln2, 0.0, 5.0, -3.0, 7.0],
            [2, 2, 3],
        ),
        &device,
    );
    let labels = Tensor::<I, 2, Int>::from_data(
        TensorData::new(vec![0i64, 1, 0, IGNORE_INDEX], [2, 2]),
        &device,
    );
    // (-ln 1/3 - ln 1/2 - ln 1/4) / 3 = ln(24) / 3.
    let expected = 24f64.ln() / 3.0;
    let loss: f32 = masked_cross_entropy(logits.clone(), labels.clone())
        .unwrap()
        .into_scalar();
    assert!(
        (loss as f64 - expected).abs() < 1e-6,
        "{loss} vs {expected}"
    );
    let scored = score_tokens(logits, labels).unwrap();
    assert_eq!(scored.loss_count, 3);
    assert!((scored.loss_sum - 24f64.ln()).abs() < 1e-5);
    // Arg-max tokens of the kept positions (ties go to the first), without the leading `<s>`
    // (id 0 as the first label of both rows): only row 0's second position is scored.
    assert_eq!(scored.targets, [1]);
    assert_eq!(scored.predictions, [1]);
    // Every label ignored: a typed error, not NaN.
    let all_ignored =
        Tensor::<I, 2, Int>::from_data(TensorData::new(vec![IGNORE_INDEX; 4], [2, 2]), &device);
    let logits = Tensor::<I, 3>::zeros([2, 2, 3], &device);
    assert!(matches!(
        masked_cross_entropy(logits, all_ignored),
        Err(FedError::InvalidConfig { .. })
    ));
}

#[test]
fn token_scores_leave_out_the_always_right_leading_bos() {
    let device = Default::default();
    // Labels `<s> 5 6 </s>` and `<s> 7 </s> pad`; the model predicts `<s>` (id 0) everywhere,
    // so the only tokens it gets right are the leading `<s>`.
    let labels = Tensor::<I, 2, Int>::from_data(
        TensorData::new(vec![0i64, 5, 6, 2, 0, 7, 2, IGNORE_INDEX], [2, 4]),
        &device,
    );
    let mut values = vec![0.0f32; 2 * 4 * 8];
    for position in 0..8 {
        values[position * 8] = 5.0;
    }
    let logits = Tensor::<I, 3>::from_data(TensorData::new(values, [2, 4, 8]), &device);
    let scored = score_tokens(logits, labels).unwrap();
    assert_eq!(scored.targets, [5, 6, 2, 7, 2]);
    assert_eq!(scored.predictions, [0; 5]);
    assert_eq!(
        scored.loss_count, 7,
        "the loss still covers every label, <s> included"
    );
    let mut confusion = fedvlm::metrics::ConfusionMatrix::new(8);
    confusion
        .add_batch(&scored.predictions, &scored.targets)
        .unwrap();
    let metrics = confusion
        .metrics(scored.loss_sum, scored.loss_count)
        .unwrap();
    assert_eq!(metrics.accuracy, 0.0);
    assert_eq!(metrics.f1, 0.0);
    // A `<s>` that is not the first label is an ordinary token.
    let labels = Tensor::<I, 2, Int>::from_data(TensorData::new(vec![5i64, 0], [1, 2]), &device);
    let logits = Tensor::<I, 3>::zeros([1, 2, 8], &device);
    assert_eq!(score_tokens(logits, labels).unwrap().targets, [5, 0]);
}

#[test]
fn the_loss_matches_transformers_on_the_fixture() {
    let io = io();
    let device = Default::default();
    for (logits, labels, loss) in [
        ("logits", "labels", "loss"),
        ("padded_logits", "padded_labels", "padded_loss"),
    ] {
        let ours: f32 =
            masked_cross_entropy::<I>(io.float(logits, &device), io.int(labels, &device))
                .unwrap()
                .into_scalar();
        let expected = scalar(loss);
        assert!(
            (ours - expected).abs() < 1e-5,
            "{loss}: {ours} vs {expected}"
        );
    }
}

/// The fixture's prompts, images and labels as samples: the task's own batching, shifting and
/// loss on the model give transformers' losses.
#[test]
fn the_task_loss_on_fixture_samples_matches_transformers() {
    let io = io();
    let pixels = io.float::<I, 4>("pixel_values", &Default::default());
    let pixels = pixels.into_data().into_vec::<f32>().unwrap();
    let per_image = 3 * IMAGE * IMAGE;
    for (prompts, labels, loss) in [
        ("input_ids", "labels", "loss"),
        ("padded_input_ids", "padded_labels", "padded_loss"),
    ] {
        let prompts = io.id_rows(prompts);
        let (labels, _) = io.ints(labels);
        let samples: Vec<VqaSample> = (0..2)
            .map(|i| {
                let prompt: Vec<u32> = prompts[i].iter().copied().filter(|&t| t != 1).collect();
                let answer: Vec<u32> = labels[i * 6..(i + 1) * 6]
                    .iter()
                    .filter(|&&t| t != IGNORE_INDEX)
                    .map(|&t| t as u32)
                    .collect();
                let image = pixels[i * per_image..(i + 1) * per_image].to_vec();
                VqaSample::new(image, IMAGE, &prompt, &answer, 64, 64).unwrap()
            })
            .collect();
        let split = VqaSplit {
            train: vec![vec![0, 1]],
            test: vec![vec![0, 1]],
            global_test: vec![],
        };
        let task = VqaTask::<B>::new(Arc::new(samples), split, VOCAB, &Default::default()).unwrap();
        let model = freeze_all(base_model::<B>(), Sharing::PLora);
        let ours: f32 = task.loss(&model, 0, &[0, 1]).unwrap().into_scalar();
        let expected = scalar(loss);
        assert!(
            (ours - expected).abs() < 1e-4,
            "{loss}: {ours} vs {expected}"
        );
        let scored = task
            .evaluate(&model.valid(), 0, Split::Test, &[0, 1])
            .unwrap();
        // Generation from the same samples (padded prompts masked) gives transformers' ids.
        let expected_ids = if loss == "loss" {
            "greedy_ids"
        } else {
            "padded_greedy_ids"
        };
        let generated = task
            .generate(
                &model.valid(),
                0,
                Split::Test,
                &[0, 1],
                &generation_settings("greedy_ids"),
            )
            .unwrap();
        assert_eq!(generated, io.id_rows(expected_ids), "{expected_ids}");
        let mean = scored.loss_sum / scored.loss_count as f64;
        assert!((mean - expected as f64).abs() < 1e-4, "{loss}: {mean}");
        assert_eq!(scored.loss_count, if loss == "loss" { 12 } else { 10 });
    }
}

fn tasks(samples: &Arc<Vec<VqaSample>>, split: &VqaSplit) -> VqaTask<B> {
    VqaTask::<B>::new(samples.clone(), split.clone(), VOCAB, &Default::default()).unwrap()
}

fn cache_of(
    model: &Florence2<B>,
    samples: &[VqaSample],
    dtype: CacheDtype,
    budget_bytes: usize,
) -> Arc<FrozenPrefixCache> {
    cache_in(model, samples, dtype, budget_bytes, Precision::F32)
}

fn cache_in(
    model: &Florence2<B>,
    samples: &[VqaSample],
    dtype: CacheDtype,
    budget_bytes: usize,
    precision: Precision,
) -> Arc<FrozenPrefixCache> {
    let all: Vec<usize> = (0..samples.len()).collect();
    let config = CacheConfig {
        dtype,
        precision,
        budget_bytes,
        batch_size: 3,
        parallel: true,
    };
    Arc::new(
        FrozenPrefixCache::build_from(model, samples, &all, &config, &Default::default()).unwrap(),
    )
}

#[test]
fn cached_and_uncached_losses_agree() {
    let _guard = serial();
    let samples = Arc::new(synthetic(8, 3));
    let split = split(1, 6, 2);
    let model = adapted(5);
    let plain = tasks(&samples, &split);
    let rows = [0usize, 1, 2, 3, 4, 5];
    let reference = loss_of(&plain, &model, &rows);
    // Different lengths in the batch: prompts and answers are padded.
    assert!(
        samples.iter().map(|s| s.prompt_len()).min() < samples.iter().map(|s| s.prompt_len()).max()
    );

    let exact = cache_of(&model, &samples, CacheDtype::F32, usize::MAX);
    assert_eq!(exact.len(), 8);
    let f32_task = tasks(&samples, &split).with_cache(exact.clone()).unwrap();
    let cached = loss_of(&f32_task, &model, &rows);
    assert!((cached - reference).abs() < 1e-5, "{cached} vs {reference}");

    let half = cache_of(&model, &samples, CacheDtype::F16, usize::MAX);
    assert_eq!(half.bytes() * 2, exact.bytes());
    let f16_task = tasks(&samples, &split).with_cache(half).unwrap();
    let cached = loss_of(&f16_task, &model, &rows);
    assert!(
        (cached - reference).abs() < 2e-3 * reference.abs(),
        "{cached} vs {reference}"
    );

    // A budget for about half the samples: the rest are recomputed, same loss.
    let small = cache_of(&model, &samples, CacheDtype::F32, exact.bytes() / 2);
    assert!(!small.is_empty() && small.len() < 8, "{}", small.len());
    let partial = tasks(&samples, &split).with_cache(small).unwrap();
    let cached = loss_of(&partial, &model, &rows);
    assert!((cached - reference).abs() < 1e-5, "{cached} vs {reference}");

    // A cache of another sample list is refused.
    let other = cache_of(&model, &samples[..3], CacheDtype::F32, usize::MAX);
    assert!(matches!(
        tasks(&samples, &split).with_cache(other),
        Err(FedError::InvalidConfig { .. })
    ));

    // Evaluation (no dropout) agrees too, token by token.
    let inner = model.valid();
    let a = plain.evaluate(&inner, 0, Split::Test, &[0, 1]).unwrap();
    let b = f32_task.evaluate(&inner, 0, Split::Test, &[0, 1]).unwrap();
    assert_eq!(a.predictions, b.predictions);
    assert_eq!(a.targets, b.targets);
    assert!((a.loss_sum - b.loss_sum).abs() < 1e-4);

    // Gradients of the adapters agree.
    let grads = |task: &VqaTask<B>| {
        B::seed(&Default::default(), 7);
        let loss = task.loss(&model, 0, &rows).unwrap();
        let grads = loss.backward();
        let layer = &model.language_model.decoder.layers[1].self_attn.q_proj;
        let fedvlm::lora::Dense::Lora(lora) = layer else {
            panic!("q_proj carries no adapter")
        };
        lora.lora_b
            .grad(&grads)
            .unwrap()
            .into_data()
            .into_vec::<f32>()
            .unwrap()
    };
    let (g_plain, g_cached) = (grads(&plain), grads(&f32_task));
    let diff = g_plain
        .iter()
        .zip(&g_cached)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(g_plain.iter().any(|g| g.abs() > 1e-6));
    assert!(diff < 1e-5, "gradient difference {diff}");
}

#[test]
fn a_half_precision_prefix_stays_near_f32_and_recomputes_in_its_own_precision() {
    let _guard = serial();
    let samples = Arc::new(synthetic(8, 3));
    let split = split(1, 6, 2);
    let model = adapted(5);
    let rows = [0usize, 1, 2, 3, 4, 5];
    let reference = loss_of(&tasks(&samples, &split), &model, &rows);
    for (precision, tolerance) in [(Precision::F16, 1e-2), (Precision::Bf16, 5e-2)] {
        let full = cache_in(&model, &samples, CacheDtype::F32, usize::MAX, precision);
        assert_eq!(full.precision(), precision);
        let task = tasks(&samples, &split).with_cache(full.clone()).unwrap();
        let half = loss_of(&task, &model, &rows);
        let gap = (half - reference).abs();
        assert!(
            gap > 0.0 && gap < tolerance * reference.abs(),
            "{precision}: {half} vs {reference}"
        );
        // Over budget, the missing samples are recomputed in the cache's precision: the loss
        // stays the half-precision one (recomputing in f32 would move it towards `reference`).
        let small = cache_in(
            &model,
            &samples,
            CacheDtype::F32,
            full.bytes() / 2,
            precision,
        );
        assert!(!small.is_empty() && small.len() < 8, "{}", small.len());
        let partial = tasks(&samples, &split).with_cache(small).unwrap();
        let mixed = loss_of(&partial, &model, &rows);
        assert!(
            (mixed - half).abs() < 0.1 * gap,
            "{precision}: recomputed {mixed}, cached {half}, f32 {reference}"
        );
    }
}

#[test]
fn the_cache_is_the_same_whatever_the_thread_count_and_budget() {
    let samples = synthetic(9, 4);
    let model = adapted(2);
    let build = |threads: usize, budget: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let all: Vec<usize> = (0..samples.len()).collect();
            let config = CacheConfig {
                batch_size: 2,
                budget_bytes: budget,
                ..CacheConfig::default()
            };
            FrozenPrefixCache::build_from(&model, &samples, &all, &config, &Default::default())
                .unwrap()
        })
    };
    let serial = build(1, usize::MAX);
    assert_eq!(serial.len(), 9);
    assert_eq!(build(3, usize::MAX), serial);
    // Over budget, the same first samples are kept whichever thread computed them.
    let half = build(1, serial.bytes() / 2);
    assert!(!half.is_empty() && half.len() < 9);
    assert_eq!(build(4, serial.bytes() / 2), half);
    for i in 0..9 {
        if let Some(entry) = half.get(i) {
            assert_eq!(Some(entry), serial.get(i));
        }
    }
}

#[test]
fn the_cache_refuses_adapters_outside_the_last_decoder_layer() {
    let model = base_model::<I>();
    let targets = [
        "language_model.decoder.layers.1.self_attn.q_proj",
        "language_model.decoder.layers.0.fc1",
    ];
    let model = model
        .with_adapters(&LoraConfig::paper(), &targets, 1)
        .unwrap();
    let err = check_cacheable(&model).unwrap_err();
    assert!(
        matches!(&err, FedError::UnsupportedLayer(m) if m.contains("decoder.layers.0.fc1")),
        "{err}"
    );
    let samples = synthetic(1, 1);
    assert!(
        FrozenPrefixCache::build(
            &model,
            &samples,
            &[0],
            &CacheConfig::default(),
            &Default::default()
        )
        .is_err()
    );
    // The paper's placement is accepted.
    let paper = base_model::<I>();
    let targets = paper.default_adapter_targets();
    let paper = paper
        .with_adapters(&LoraConfig::paper(), &targets, 1)
        .unwrap();
    check_cacheable(&paper).unwrap();
}

/// Two clients of 4 train / 2 test synthetic samples: their models (`lora` on the default
/// targets, trainability by `sharing`) and the task, with an f32 cache when `cached`.
fn two_clients(
    lora: &LoraConfig,
    sharing: Sharing,
    cached: bool,
) -> (Vec<Florence2<B>>, VqaTask<B>) {
    let samples = Arc::new(synthetic(12, 9));
    let split = split(2, 4, 2);
    let models: Vec<Florence2<B>> = (0..2)
        .map(|k| {
            let model = base_model::<B>();
            let targets = model.default_adapter_targets();
            let model = model.with_adapters(lora, &targets, 100 + k).unwrap();
            freeze_all(model, sharing)
        })
        .collect();
    let mut task = tasks(&samples, &split);
    if cached {
        task = task
            .with_cache(cache_of(&models[0], &samples, CacheDtype::F32, usize::MAX))
            .unwrap();
    }
    (models, task)
}

fn run(sharing: Sharing, cached: bool) -> (Vec<RoundReport>, Vec<Payload>) {
    let (models, task) = two_clients(&LoraConfig::paper(), sharing, cached);
    let config = SimulationConfig {
        rounds: 2,
        local_epochs: 2,
        batch_size: 2,
        eval_batch_size: 4,
        lr: 0.05,
        seed: 3,
        progress: false,
        ..SimulationConfig::default()
    };
    let spec = ShareSpec::new(sharing);
    let mut sim = Simulation::new(config, spec.clone(), task, FedAvg::new(), models).unwrap();
    let reports = sim.run(|_, _| Ok(())).unwrap();
    let payloads = (0..2)
        .map(|k| collect_shared(sim.client_model(k).unwrap(), &spec))
        .collect();
    (reports, payloads)
}

#[test]
fn federated_runs_share_only_the_rule_s_tensors_and_match_with_the_cache() {
    let _guard = serial();
    for sharing in [Sharing::PLora, Sharing::FedAvgLora] {
        let (reports, payloads) = run(sharing, false);
        // Round 0 (before fine-tuning) and two rounds, every client scored every time.
        assert_eq!(reports.len(), 3);
        for report in &reports {
            assert_eq!(report.clients.len(), 2);
            for client in &report.clients {
                let test = client.test.expect("test metrics");
                assert!(test.count > 0 && test.loss.is_finite());
                assert!((0.0..=1.0).contains(&test.accuracy));
            }
        }
        let trained = &reports[2].clients[0];
        assert!(trained.participated && trained.train_loss.is_some() && trained.bytes_up > 0);
        // Training moved the test loss.
        let before = reports[0].clients[0].test.unwrap().loss;
        let after = reports[2].clients[0].test.unwrap().loss;
        assert!((before - after).abs() > 1e-4, "{before} -> {after}");
        // What travels: pLoRA exactly the two lora_b, FedAvg-LoRA both matrices.
        let mut expected: Vec<String> = ["q_proj", "v_proj"]
            .iter()
            .flat_map(|p| {
                let path = format!("language_model.decoder.layers.1.self_attn.{p}");
                match sharing {
                    Sharing::PLora => vec![format!("{path}.lora_b")],
                    _ => vec![format!("{path}.lora_a"), format!("{path}.lora_b")],
                }
            })
            .collect();
        expected.sort();
        let names: Vec<&str> = payloads[0].names().collect();
        assert_eq!(names, expected, "{sharing:?}");
        // After aggregation both clients hold the same shared tensors.
        assert_eq!(payloads[0].tensors, payloads[1].tensors);

        let (cached, _) = run(sharing, true);
        for (a, b) in reports.iter().zip(&cached) {
            for (ca, cb) in a.clients.iter().zip(&b.clients) {
                let (ta, tb) = (ca.test.unwrap(), cb.test.unwrap());
                assert!(
                    (ta.loss - tb.loss).abs() < 1e-4,
                    "{sharing:?} round {}",
                    a.round
                );
                assert!((ta.accuracy - tb.accuracy).abs() < 1e-9);
                let (la, lb) = (ca.train_loss.unwrap_or(0.0), cb.train_loss.unwrap_or(0.0));
                assert!((la - lb).abs() < 1e-4, "{sharing:?} round {}", a.round);
            }
        }
    }
}

/// [`VqaTask`] with the default [`FederatedTask::loss_weight`] (examples, not answer tokens):
/// what the accumulated step would be if micro-batches counted by their example counts.
struct ExampleWeighted(VqaTask<B>);

impl FederatedTask<B> for ExampleWeighted {
    type Model = Florence2<B>;

    fn num_clients(&self) -> usize {
        self.0.num_clients()
    }
    fn num_classes(&self) -> usize {
        self.0.num_classes()
    }
    fn num_examples(&self, client: usize, split: Split) -> usize {
        self.0.num_examples(client, split)
    }
    fn device(&self) -> burn::tensor::Device<B> {
        self.0.device()
    }
    fn loss(
        &self,
        model: &Florence2<B>,
        client: usize,
        batch: &[usize],
    ) -> fedvlm::Result<Tensor<B, 1>> {
        self.0.loss(model, client, batch)
    }
    fn evaluate(
        &self,
        model: &Florence2<I>,
        client: usize,
        split: Split,
        batch: &[usize],
    ) -> fedvlm::Result<fedvlm::federated::EvalBatch> {
        self.0.evaluate(model, client, split, batch)
    }
}

/// Every client's adapters after one round of batch-4 SGD (plain SGD: the step is
/// proportional to the gradient, unlike Adam's), run whole or as micro-batches (`micro`),
/// with adapter dropout off so that nothing draws random numbers.
fn adapters_after_round<T: FederatedTask<B, Model = Florence2<B>>>(
    micro: Option<usize>,
    cached: bool,
    wrap: impl Fn(VqaTask<B>) -> T,
) -> Vec<Vec<f32>> {
    let lora = LoraConfig::paper().with_dropout(0.0);
    let (models, task) = two_clients(&lora, Sharing::FedSaLora, cached);
    let config = SimulationConfig {
        rounds: 1,
        local_epochs: 2,
        batch_size: 4,
        micro_batch_size: micro,
        eval_batch_size: 4,
        lr: 0.5,
        optimizer: OptimizerConfig::Sgd {
            momentum: 0.0,
            weight_decay: 0.0,
        },
        seed: 3,
        progress: false,
        evaluate_initial: false,
        // Micro-batches train sequentially; the whole batches must too, for the bit-for-bit
        // comparison (cohorts are compared with sequential training in tests/vqa_cohort.rs).
        cohort: CohortMode::Off,
        ..SimulationConfig::default()
    };
    // FedSA-LoRA keeps B private: each client's own trained B is compared.
    let spec = ShareSpec::new(Sharing::FedSaLora);
    let mut sim = Simulation::new(config, spec, wrap(task), FedAvg::new(), models).unwrap();
    sim.run(|_, _| Ok(())).unwrap();
    (0..2)
        .map(|k| {
            let everything = collect_shared(
                sim.client_model(k).unwrap(),
                &ShareSpec::new(Sharing::FedAvgLora),
            );
            everything
                .tensors
                .values()
                .flat_map(|t| t.values.clone())
                .collect()
        })
        .collect()
}

/// Largest difference between `a` and `b` relative to `a`'s largest value.
fn relative_gap(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(a, b)| {
            let diff = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            diff / a.iter().map(|x| x.abs()).fold(0f32, f32::max).max(1e-12)
        })
        .fold(0f32, f32::max)
}

#[test]
fn micro_batches_take_the_whole_batch_s_step_weighted_by_answer_tokens() {
    let _guard = serial();
    // The answers of a batch differ in length, so counting every micro-batch's mean loss by
    // its examples instead of its answer tokens is a different step.
    let lengths: Vec<usize> = synthetic(12, 9).iter().map(|s| s.answer_len()).collect();
    assert!(lengths[..4].iter().any(|&l| l != lengths[0]), "{lengths:?}");
    let same = |t: VqaTask<B>| t;
    for cached in [false, true] {
        let whole = adapters_after_round(None, cached, same);
        assert_eq!(
            whole,
            adapters_after_round(Some(4), cached, same),
            "a micro-batch as large as the batch is the batch"
        );
        for micro in [1, 3] {
            let gap = relative_gap(&whole, &adapters_after_round(Some(micro), cached, same));
            assert!(gap < 1e-5, "micro {micro} cached {cached}: {gap}");
        }
    }
    let wrong = relative_gap(
        &adapters_after_round(None, true, same),
        &adapters_after_round(Some(1), true, ExampleWeighted),
    );
    assert!(wrong > 1e-3, "weighting by examples should differ: {wrong}");
}
#[test]
fn micro_batches_of_zero_are_refused() {
    let config = SimulationConfig {
        micro_batch_size: Some(0),
        ..SimulationConfig::default()
    };
    let err = config.validate().unwrap_err();
    assert!(err.to_string().contains("micro_batch_size"), "{err}");
}
