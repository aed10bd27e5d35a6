//! The RLAIF-V pipeline tests' fixture: the wide tiny Florence-2 (its vocabulary holds the
//! text fixtures' tokenizer) and a tiny RLAIF-V parquet (two sources, 16 rows), loaded once
//! per test, with the settings those tests share. Included with `#[path]` by the tests that
//! use it (next to `mod common;`).
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use burn::backend::{Autodiff, Flex};
use fedvlm::data::{RlaifV, RlaifVOptions};
use fedvlm::experiments::rlaif::{RlaifConfig, RlaifData, RunInputs, build_cache, freeze_base};
use fedvlm::experiments::vqa::{CacheConfig, CacheDtype, FrozenPrefixCache};
use fedvlm::federated::RoundReport;
use fedvlm::models::florence2::processor::Florence2Processor;
use fedvlm::models::florence2::{Florence2, Florence2Pipeline, GenerationConfig};

use crate::common::florence2_wide::{offline_options, wide_florence2_folder};
use crate::common::rlaif_shards::write_dataset;

/// The backend.
pub type B = Autodiff<Flex>;

/// Dropout draws from burn's backend-wide generator: one simulation at a time.
pub static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Holds [`SERIAL`].
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// The tests' settings: 2 clients, `rounds` rounds of one epoch, small lengths.
pub fn config(rounds: u64) -> RlaifConfig {
    RlaifConfig {
        clients: 2,
        rounds,
        local_epochs: 1,
        batch_size: 3,
        eval_batch_size: 4,
        lr: 1e-2,
        test_fraction: 0.25,
        max_prompt_len: 24,
        max_answer_len: 16,
        answers_per_client: 1,
        answer_max_new_tokens: 4,
        seed: 3,
        ..RlaifConfig::default()
    }
}

/// The reports without their timings (for equality).
pub fn without_timings(reports: &[RoundReport]) -> Vec<RoundReport> {
    reports.iter().map(RoundReport::without_timings).collect()
}

/// The model, processor and data, loaded once per test.
pub struct Fixture {
    /// The settings.
    pub config: RlaifConfig,
    /// The frozen model.
    pub base: Florence2<B>,
    /// The processor.
    pub processor: Florence2Processor,
    /// The prepared data.
    pub data: Arc<RlaifData>,
    /// Greedy, 4 new tokens.
    pub generation: GenerationConfig,
}

impl Fixture {
    /// Loads the model and the data under `config`.
    pub fn new(config: RlaifConfig) -> Self {
        let model_dir = wide_florence2_folder();
        let hub_cache = tempfile::tempdir().unwrap();
        let pipeline = Florence2Pipeline::<B>::from_pretrained_with(
            model_dir.path().to_str().unwrap(),
            &offline_options(hub_cache.path()),
            &Default::default(),
        )
        .unwrap();
        let generation = GenerationConfig::greedy(4);
        let (model, _, processor) = pipeline.into_parts();
        let data_dir = tempfile::tempdir().unwrap();
        write_dataset(data_dir.path());
        let rows = RlaifV::load(data_dir.path(), &RlaifVOptions::new()).unwrap();
        assert_eq!(rows.len(), 16);
        let data = RlaifData::prepare(&config, &rows, &processor).unwrap();
        Self {
            config,
            base: freeze_base(model),
            processor,
            data: Arc::new(data),
            generation,
        }
    }

    /// The in-memory cache of every sample.
    pub fn cache(&self, dtype: CacheDtype) -> Arc<FrozenPrefixCache> {
        let cache = CacheConfig {
            dtype,
            ..CacheConfig::default()
        };
        Arc::new(build_cache(&self.base, &self.data, &cache, &Default::default()).unwrap())
    }

    /// The run's inputs.
    pub fn inputs<'a>(
        &'a self,
        cache: Option<Arc<FrozenPrefixCache>>,
        out: Option<&'a Path>,
        resume: bool,
    ) -> RunInputs<'a, B> {
        RunInputs {
            config: &self.config,
            data: self.data.clone(),
            base: &self.base,
            processor: &self.processor,
            cache,
            generation: self.generation.clone(),
            out_dir: out,
            resume,
            progress: false,
            device: Default::default(),
        }
    }
}
