//! The on-disk frozen-prefix cache with the RLAIF-V pipeline (library calls), on the tiny
//! RLAIF-V shard of `common::rlaif_shards` and `Florence2Pipeline::tiny_random`: a build
//! stopped midway resumes from its last shard, a finished cache is reused without a forward
//! pass, other weights, precision or dtype rebuild it, and training from it gives the
//! uncached losses. Also: a question holding a task token is skipped and counted, and the
//! build's batch size is derived from free memory without a user's.

mod common;

use std::path::Path;
use std::sync::Arc;

use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use common::rlaif_shards::write_dataset;
use fedvlm::data::{RlaifV, RlaifVOptions, RlaifVSummary};
use fedvlm::experiments::rlaif::{RlaifConfig, RlaifData, RunInputs, freeze_base, run_rule};
use fedvlm::experiments::vqa::cache::{CPU_MAX_BATCH, SampleShape, sample_peak_bytes};
use fedvlm::experiments::vqa::{
    CacheConfig, CacheDtype, DiskCacheOptions, FrozenPrefixCache, prefix_forward_passes,
};
use fedvlm::models::Precision;
use fedvlm::models::florence2::processor::Florence2Processor;
use fedvlm::models::florence2::{Florence2, Florence2Pipeline, GenerationConfig};
use fedvlm::{FedError, Sharing};

type B = Autodiff<Flex>;

/// Dropout and the forward-pass counter are process-wide: one test body at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn config() -> RlaifConfig {
    RlaifConfig {
        clients: 2,
        rounds: 2,
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

struct Fixture {
    config: RlaifConfig,
    base: Florence2<B>,
    processor: Florence2Processor,
    data: Arc<RlaifData>,
}

fn model(seed: u64) -> (Florence2<B>, Florence2Processor) {
    let (model, _, processor) = Florence2Pipeline::<B>::tiny_random(seed, &Default::default())
        .unwrap()
        .into_parts();
    (freeze_base(model), processor)
}

impl Fixture {
    fn new() -> Self {
        let (base, processor) = model(0);
        let dir = tempfile::tempdir().unwrap();
        write_dataset(dir.path());
        let rows = RlaifV::load(dir.path(), &RlaifVOptions::new()).unwrap();
        let data = RlaifData::prepare(&config(), &rows, &processor).unwrap();
        Self {
            config: config(),
            base,
            processor,
            data: Arc::new(data),
        }
    }

    fn build(
        &self,
        base: &Florence2<B>,
        cache: &CacheConfig,
        options: &DiskCacheOptions,
    ) -> fedvlm::Result<(FrozenPrefixCache, fedvlm::experiments::vqa::BuildStats)> {
        FrozenPrefixCache::build_on_disk(
            &base.valid(),
            &self.data.samples,
            cache,
            options,
            &Default::default(),
        )
    }

    fn inputs(&self, cache: Option<Arc<FrozenPrefixCache>>) -> RunInputs<'_, B> {
        RunInputs {
            config: &self.config,
            data: self.data.clone(),
            base: &self.base,
            processor: &self.processor,
            cache,
            generation: GenerationConfig::greedy(4),
            out_dir: None,
            resume: false,
            progress: false,
            device: Default::default(),
        }
    }
}

fn exact() -> CacheConfig {
    CacheConfig {
        dtype: CacheDtype::F32,
        batch_size: 2,
        ..CacheConfig::default()
    }
}

fn options(dir: &Path) -> DiskCacheOptions {
    DiskCacheOptions {
        shard_samples: 4,
        ..DiskCacheOptions::new(dir)
    }
}

fn shard_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            let name = name.to_string_lossy();
            name.starts_with("shard-") && name.ends_with(".safetensors")
        })
        .count()
}

#[test]
fn a_stopped_build_resumes_and_a_finished_cache_is_reused_without_forward_passes() {
    let _serial = serial();
    let fixture = Fixture::new();
    assert_eq!(fixture.data.samples.len(), 16);
    let dir = tempfile::tempdir().unwrap();

    // Stopped after 2 of 4 shards (as a kill between shards leaves it).
    let stopped = DiskCacheOptions {
        stop_after_shards: Some(2),
        ..options(dir.path())
    };
    let err = fixture
        .build(&fixture.base, &exact(), &stopped)
        .unwrap_err();
    assert!(matches!(err, FedError::Task(_)), "{err}");
    assert_eq!(shard_files(dir.path()), 2);

    // Resumed: the 2 written shards are kept, the other 2 computed (2 batches of 2 each).
    let before = prefix_forward_passes();
    let (cache, stats) = fixture
        .build(&fixture.base, &exact(), &options(dir.path()))
        .unwrap();
    assert_eq!(
        (
            stats.shards_reused,
            stats.shards_built,
            stats.rebuilt.clone()
        ),
        (2, 2, None)
    );
    assert_eq!(stats.forward_passes, 4);
    assert_eq!(prefix_forward_passes() - before, 4);
    assert_eq!(shard_files(dir.path()), 4);

    // The same values as a cache built in memory in one go.
    let all: Vec<usize> = (0..16).collect();
    let memory = FrozenPrefixCache::build(
        &fixture.base.valid(),
        &fixture.data.samples,
        &all,
        &exact(),
        &Default::default(),
    )
    .unwrap();
    assert_eq!(memory.len(), 16);
    assert!(cache == memory, "disk and memory caches differ");
    assert_eq!(cache.bytes(), memory.bytes());

    // Finished: reused as it is, no forward pass.
    let before = prefix_forward_passes();
    let (again, stats) = fixture
        .build(&fixture.base, &exact(), &options(dir.path()))
        .unwrap();
    assert_eq!((stats.shards_reused, stats.shards_built), (4, 0));
    assert_eq!(stats.forward_passes, 0);
    assert_eq!(prefix_forward_passes(), before);
    assert!(again == memory);

    // A RAM budget of about half the entries: every entry is still served, each read once in
    // a pass in order, and what is held stays within the budget; a hot entry is not read
    // again.
    let small = CacheConfig {
        budget_bytes: memory.bytes() / 2,
        ..exact()
    };
    let (budgeted, _) = fixture
        .build(&fixture.base, &small, &options(dir.path()))
        .unwrap();
    for i in 0..16 {
        assert_eq!(budgeted.get(i), memory.get(i), "sample {i}");
        assert!(budgeted.resident_bytes() <= small.budget_bytes);
    }
    assert_eq!(budgeted.disk_reads(), 16);
    assert!(budgeted.resident_bytes() > 0);
    budgeted.get(15).unwrap();
    assert_eq!(budgeted.disk_reads(), 16);
    budgeted.get(0).unwrap();
    assert_eq!(
        budgeted.disk_reads(),
        17,
        "sample 0 was dropped for the later ones"
    );
}

#[test]
fn other_weights_precision_or_dtype_rebuild_the_cache() {
    let _serial = serial();
    let fixture = Fixture::new();
    let dir = tempfile::tempdir().unwrap();
    let (_, stats) = fixture
        .build(&fixture.base, &exact(), &options(dir.path()))
        .unwrap();
    assert_eq!((stats.shards_built, stats.rebuilt), (4, None));

    let (other, _) = model(1);
    let (_, stats) = fixture
        .build(&other, &exact(), &options(dir.path()))
        .unwrap();
    let reason = stats.rebuilt.unwrap();
    assert!(reason.contains("model weights"), "{reason}");
    assert_eq!((stats.shards_reused, stats.shards_built), (0, 4));

    let half = CacheConfig {
        precision: Precision::Bf16,
        ..exact()
    };
    let (_, stats) = fixture.build(&other, &half, &options(dir.path())).unwrap();
    let reason = stats.rebuilt.unwrap();
    assert!(reason.contains("prefix precision"), "{reason}");
    assert_eq!(stats.shards_built, 4);

    let f16 = CacheConfig {
        dtype: CacheDtype::F16,
        ..half
    };
    let (cache, stats) = fixture.build(&other, &f16, &options(dir.path())).unwrap();
    let reason = stats.rebuilt.unwrap();
    assert!(reason.contains("cache dtype"), "{reason}");
    assert_eq!(cache.dtype(), CacheDtype::F16);

    // A manifest that does not parse is not trusted either.
    std::fs::write(dir.path().join("manifest.json"), b"{not json").unwrap();
    let (_, stats) = fixture.build(&other, &f16, &options(dir.path())).unwrap();
    assert!(stats.rebuilt.is_some());
    assert_eq!(stats.shards_built, 4);

    // A damaged shard is an error when read, not a panic and not wrong values.
    let (cache, _) = fixture.build(&other, &f16, &options(dir.path())).unwrap();
    let shard = dir.path().join("shard-000000.safetensors");
    let bytes = std::fs::read(&shard).unwrap();
    std::fs::write(&shard, &bytes[..bytes.len() / 2]).unwrap();
    assert!(cache.entry(0).is_err());
    std::fs::write(&shard, b"\xff\xff\xff\xff\xff\xff\xff\x7f{}").unwrap();
    let (cache, _) = fixture.build(&other, &f16, &options(dir.path())).unwrap();
    assert!(cache.entry(1).is_err());
    assert!(
        cache.entry(4).unwrap().is_some(),
        "other shards still serve"
    );
}

#[test]
fn training_from_the_disk_cache_gives_the_uncached_losses() {
    let _serial = serial();
    let fixture = Fixture::new();
    let dir = tempfile::tempdir().unwrap();
    let (cache, _) = fixture
        .build(&fixture.base, &exact(), &options(dir.path()))
        .unwrap();
    let cached = run_rule(&fixture.inputs(Some(Arc::new(cache))), Sharing::PLora).unwrap();
    let uncached = run_rule(&fixture.inputs(None), Sharing::PLora).unwrap();
    let (first, last) = (&uncached.reports[0], &uncached.reports[2]);
    assert!(
        (first.mean_test.unwrap().loss - last.mean_test.unwrap().loss).abs() > 1e-3,
        "training did not move the loss: {:?} vs {:?}",
        first.mean_test,
        last.mean_test
    );
    let mut compared = 0;
    for (a, b) in cached.reports.iter().zip(&uncached.reports) {
        for (ca, cb) in a.clients.iter().zip(&b.clients) {
            if let (Some(la), Some(lb)) = (ca.train_loss, cb.train_loss) {
                assert!((la - lb).abs() < 1e-4, "round {}: {la} vs {lb}", a.round);
                compared += 1;
            }
            let (ta, tb) = (ca.test.unwrap().loss, cb.test.unwrap().loss);
            assert!((ta - tb).abs() < 1e-4, "round {}: {ta} vs {tb}", a.round);
        }
    }
    assert_eq!(compared, 4);
    assert_eq!(cached.answers, uncached.answers);
}

#[test]
fn a_question_with_a_task_token_is_skipped_and_counted() {
    let (_, processor) = model(0);
    let dir = tempfile::tempdir().unwrap();
    write_dataset(dir.path());
    let rows = RlaifV::load(dir.path(), &RlaifVOptions::new()).unwrap();
    let summary: RlaifVSummary = rows.summary().clone();
    let mut samples = rows.into_samples();
    samples[0].question = "<OCR> what does it say?".into();
    samples[5].question = "Read this: <CAPTION>".into();
    let rows = RlaifV::from_parts(samples, summary);
    let data = RlaifData::prepare(&config(), &rows, &processor).unwrap();
    assert_eq!(data.skipped_task_token, 2);
    assert_eq!(data.samples.len(), 14);
    let used: usize = (0..2)
        .map(|k| data.split.train[k].len() + data.split.test[k].len())
        .sum();
    assert_eq!(used, 14);
    // Test samples keep their (task-token-free) question; training samples keep no text.
    let test: Vec<usize> = data.split.test.concat();
    assert!(!test.is_empty());
    for (i, text) in data.texts.iter().enumerate() {
        let text = text.unwrap();
        if test.contains(&i) {
            assert!(!text.question.is_empty() && !text.question.contains('<'));
            assert!(!text.answer.is_empty());
        } else {
            assert_eq!((text.question.as_str(), text.answer.as_str()), ("", ""));
        }
    }
}

#[test]
fn without_a_user_batch_the_cpu_build_sizes_its_batch_from_free_memory() {
    let fixture = Fixture::new();
    let device = Default::default();
    let defaults = CacheConfig::for_backend::<B>(&device);
    let (chosen, why) = defaults
        .with_memory_batch(&fixture.base, &fixture.data.samples, &device)
        .unwrap();
    // The tiny model's sample is a few hundred KiB: memory allows far more than the CPU's
    // fastest batch, so batch 1 with batches in parallel, and the log says why.
    let shape = SampleShape::of(&fixture.base, &fixture.data.samples, 4);
    assert_eq!(shape.d_model, fixture.base.language_model.d_model());
    assert!(
        shape.image_side > 0 && shape.encoder_len > shape.image_side / 32,
        "{shape:?}"
    );
    let per_sample = sample_peak_bytes(&shape);
    assert!(per_sample > 0 && per_sample < 64 << 20, "{per_sample}");
    assert_eq!(chosen.batch_size, CPU_MAX_BATCH);
    if cfg!(target_os = "linux") {
        assert!(chosen.parallel);
        assert!(why.contains("MiB free"), "{why}");
    } else {
        assert!(why.contains("unknown"), "{why}");
    }
    assert_eq!(
        (chosen.dtype, chosen.budget_bytes),
        (defaults.dtype, defaults.budget_bytes)
    );
}
