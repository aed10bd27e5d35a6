//! The VQA task on the tiny Florence-2 (`tests/fixtures/florence2/`): samples and label
//! shifting, the loss (hand-computed and against transformers), the frozen-prefix cache
//! (parity, budget, refusal) and federated runs end to end.
//!
//! * `loss`: label shifting, the loss by hand and against transformers, token scores.
//! * `cache`: the frozen-prefix cache: parity, half precision, threads and budget, refusal.
//! * `federated`: federated runs end to end, micro-batches.

#[path = "../common/mod.rs"]
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

mod cache;
mod federated;
mod loss;

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
    common::vqa_samples::synthetic_samples(n, seed, IMAGE, VOCAB)
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
