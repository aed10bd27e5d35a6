//! The experiment pipeline on OK-VQA (an OK-VQA parquet written here in the hub's schema, IID
//! clients, one federated round end to end, centralised training) and the client sweep (one
//! federation per client count and its Table 4-shaped table), with the wide tiny Florence-2
//! fixture the RLAIF-V pipeline tests use.

mod common;

use std::sync::Arc;

use burn::backend::{Autodiff, Flex};
use common::florence2_wide::{offline_options, wide_florence2_folder};
use common::okvqa_parquet::write_okvqa_dataset;
use common::rlaif_shards::write_dataset;
use fedvlm::data::{OkVqa, OkVqaOptions, RlaifV, RlaifVOptions};
use fedvlm::experiments::rlaif::sweep::{
    SWEEP_CSV_FILE, SWEEP_MARKDOWN_FILE, SweepInputs, run_clients_sweep, sweep_dir_name,
};
use fedvlm::experiments::rlaif::{
    ANSWERS_FILE, RlaifConfig, RlaifData, RunInputs, VqaRows, centralized, freeze_base, run_rule,
};
use fedvlm::experiments::vqa::{
    CacheConfig, DiskCacheOptions, EncodedBytes, FrozenPrefixCache, ImageStore,
};
use fedvlm::federated::JsonlWriter;
use fedvlm::models::florence2::processor::Florence2Processor;
use fedvlm::models::florence2::{Florence2, Florence2Pipeline, GenerationConfig};
use fedvlm::{FedError, Sharing};

type B = Autodiff<Flex>;

/// Dropout draws from burn's backend-wide generator: one simulation at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn config() -> RlaifConfig {
    RlaifConfig {
        clients: 2,
        iid: true,
        rounds: 1,
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

fn model() -> (Florence2<B>, Florence2Processor) {
    let model_dir = wide_florence2_folder();
    let hub_cache = tempfile::tempdir().expect("cache");
    let pipeline = Florence2Pipeline::<B>::from_pretrained_with(
        model_dir.path().to_str().expect("utf-8"),
        &offline_options(hub_cache.path()),
        &Default::default(),
    )
    .expect("the fixture model");
    let (model, _, processor) = pipeline.into_parts();
    (freeze_base(model), processor)
}

fn okvqa_rows(good: usize) -> OkVqa {
    let dir = tempfile::tempdir().expect("tempdir");
    write_okvqa_dataset(dir.path(), good);
    let rows = OkVqa::load(dir.path(), &OkVqaOptions::new()).expect("load");
    assert_eq!(rows.len(), good);
    assert_eq!(rows.summary().skipped_total(), 7);
    rows
}

#[test]
fn okvqa_runs_one_federated_round_end_to_end() {
    let _serial = serial();
    let (base, processor) = model();
    let rows = okvqa_rows(16);
    let config = config();
    let data = RlaifData::prepare(&config, &rows, &processor).expect("prepared");
    assert_eq!(data.num_trainers(), 2);
    assert_eq!(data.sources, vec![vec!["ok-vqa".to_string()]; 2]);
    assert_eq!(data.samples.len(), 16);
    for k in 0..2 {
        assert_eq!(data.split.train[k].len() + data.split.test[k].len(), 8);
    }
    // Test samples (the ones scored) keep their ten human answers; training samples none.
    let test: Vec<usize> = data.split.test.concat();
    assert!(!test.is_empty());
    for (i, text) in data.texts.iter().enumerate() {
        let text = text.unwrap();
        assert_eq!(text.source, "ok-vqa");
        if !test.contains(&i) {
            assert!(
                text.human_answers.is_empty() && text.answer.is_empty(),
                "{text:?}"
            );
            continue;
        }
        assert_eq!(text.human_answers.len(), 10);
        let wins = text
            .human_answers
            .iter()
            .filter(|a| **a == text.answer)
            .count();
        assert_eq!(wins, 6, "the target is the majority answer: {text:?}");
    }

    // The on-disk frozen-prefix cache, as the example builds it.
    let dir = tempfile::tempdir().expect("out");
    let (cache, stats) = FrozenPrefixCache::build_on_disk(
        &base,
        &data.samples,
        &CacheConfig::default(),
        &DiskCacheOptions::new(dir.path().join("prefix-cache")),
        &Default::default(),
    )
    .expect("the cache");
    assert_eq!((cache.num_samples(), stats.shards_reused), (16, 0));
    let inputs = RunInputs {
        config: &config,
        data: Arc::new(data),
        base: &base,
        processor: &processor,
        cache: Some(Arc::new(cache)),
        generation: GenerationConfig::greedy(4),
        out_dir: Some(dir.path()),
        resume: false,
        progress: false,
        device: Default::default(),
    };
    let run = run_rule(&inputs, Sharing::PLora).expect("one round");
    assert_eq!(run.reports.len(), 2, "round 0 (w/o ft) + 1 round");
    let trained = &run.reports[1];
    assert_eq!(trained.clients.len(), 2);
    assert!(
        trained
            .clients
            .iter()
            .all(|c| c.bytes_up > 0 && c.train_loss.is_some() && c.train_examples == 6)
    );
    assert!(trained.mean_test.expect("scores").loss.is_finite());
    assert_eq!(run.answers.len(), 2);
    assert_eq!(run.answers[0].source, "ok-vqa");
    let plora = dir.path().join("plora");
    assert_eq!(
        JsonlWriter::read_all(plora.join("metrics.jsonl"))
            .expect("metrics")
            .len(),
        2
    );
    assert!(plora.join(ANSWERS_FILE).is_file());
    // Generated answers scored before and after the round, with OK-VQA's VQA accuracy.
    assert_eq!(
        run.answer_metrics
            .iter()
            .map(|r| r.round)
            .collect::<Vec<_>>(),
        [0, 1]
    );
    for report in &run.answer_metrics {
        let mean = report.mean.as_ref().expect("a mean");
        assert_eq!(mean.count, 4, "every test sample scored");
        let vqa = mean
            .vqa_accuracy
            .expect("VQA accuracy from the human answers");
        assert!((0.0..=1.0).contains(&vqa), "{vqa}");
    }

    // Non-IID clients of OK-VQA's single source are refused; centralised training merges.
    let non_iid = RlaifConfig {
        iid: false,
        ..config.clone()
    };
    let err = RlaifData::prepare(&non_iid, &rows, &processor).expect_err("non-IID");
    assert!(matches!(err, FedError::InvalidConfig { .. }), "{err}");
    let central = RlaifConfig {
        centralized: true,
        ..config.clone()
    };
    let merged = RlaifData::prepare(&central, VqaRows::from(&rows), &processor).expect("central");
    assert_eq!(merged.num_trainers(), 1);
    assert_eq!(merged.split.train[0].len() + merged.split.test[0].len(), 16);
    // The federation's samples under one trainer are the same split (`--vs-centralized`).
    let federated = &inputs.data;
    let view = centralized(federated);
    assert_eq!(view.split, merged.split);
    assert_eq!(view.sources, merged.sources);
    assert_eq!(view.texts, merged.texts);
    assert!(
        Arc::ptr_eq(&view.samples, &federated.samples),
        "the samples are shared"
    );
}

#[test]
fn the_clients_sweep_runs_one_federation_per_count_and_writes_the_table() {
    let _serial = serial();
    let (base, processor) = model();
    let rows = okvqa_rows(18);
    let config = config();
    let dir = tempfile::tempdir().expect("out");
    let counts = [2, 3];
    // Images spilled to a store file, as the example reads them; one on-disk cache per count.
    let cache_root = tempfile::tempdir().expect("cache folder");
    let store = Arc::new(ImageStore::temporary(cache_root.path()).expect("image store"));
    let images: Vec<EncodedBytes> = rows
        .samples()
        .iter()
        .map(|s| store.append(&s.image_bytes))
        .collect::<Result<_, _>>()
        .expect("images stored");
    let inputs = SweepInputs::<B> {
        config: &config,
        counts: &counts,
        rows: VqaRows::from(&rows),
        images: &images,
        base: &base,
        processor: &processor,
        generation: GenerationConfig::greedy(4),
        sharing: Sharing::PLora,
        out_dir: Some(dir.path()),
        resume: false,
        progress: false,
        device: Default::default(),
    };
    let built = std::cell::RefCell::new(Vec::new());
    let mut disk_cache = |config: &RlaifConfig, data: &RlaifData| {
        let options = DiskCacheOptions::new(cache_root.path().join(sweep_dir_name(config.clients)));
        let (cache, stats) = FrozenPrefixCache::build_on_disk(
            &base,
            &data.samples,
            &CacheConfig::default(),
            &options,
            &Default::default(),
        )?;
        built
            .borrow_mut()
            .push((config.clients, data.num_trainers(), stats.forward_passes));
        Ok(Some(Arc::new(cache)))
    };
    let (table, runs) = run_clients_sweep(&inputs, &mut disk_cache).expect("the sweep");
    let counted = built.borrow().clone();
    assert!(
        counted.len() == 2 && counted.iter().all(|b| b.2 > 0),
        "one cache per count, over its split, computed: {counted:?}"
    );
    assert_eq!(
        (counted[0].0, counted[0].1, counted[1].0, counted[1].1),
        (2, 2, 3, 3)
    );
    // A second sweep (a later run, or --resume) reuses both counts' caches from disk.
    let again = tempfile::tempdir().expect("out");
    let (table_again, _) = run_clients_sweep(
        &SweepInputs {
            out_dir: Some(again.path()),
            generation: inputs.generation.clone(),
            device: Default::default(),
            ..inputs
        },
        &mut disk_cache,
    )
    .expect("the sweep again");
    let counted = built.borrow().clone();
    assert_eq!(
        counted[2..].iter().map(|b| b.2).collect::<Vec<_>>(),
        [0, 0],
        "both counts' caches reused from disk"
    );
    assert_eq!(table_again.entries.len(), 2);
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[1].1.reports[1].clients.len(), 3);
    assert_eq!(table.entries.len(), 2);
    for (entry, (n, run)) in table.entries.iter().zip(&runs) {
        assert_eq!(entry.clients, *n);
        assert_eq!(entry.rounds, 1);
        assert_eq!(Some(entry.before), run.reports[0].mean_test);
        assert_eq!(Some(entry.after), run.reports[1].mean_test);
        let metrics = dir
            .path()
            .join(sweep_dir_name(*n))
            .join("plora")
            .join("metrics.jsonl");
        assert_eq!(JsonlWriter::read_all(metrics).expect("metrics").len(), 2);
    }
    let md = std::fs::read_to_string(dir.path().join(SWEEP_MARKDOWN_FILE)).expect("markdown");
    assert_eq!(md, table.markdown());
    assert!(
        md.contains("| 2 w/o ft |") && md.contains("| 3 w/o ft |"),
        "{md}"
    );
    let csv = std::fs::read_to_string(dir.path().join(SWEEP_CSV_FILE)).expect("csv");
    assert_eq!(csv.lines().count(), 1 + 4);

    // RLAIF-V: non-IID by source (the fixture has two sources), no output folder.
    let shards = tempfile::tempdir().expect("shards");
    write_dataset(shards.path());
    let rlaif = RlaifV::load(shards.path(), &RlaifVOptions::new()).expect("RLAIF-V");
    let non_iid = RlaifConfig {
        iid: false,
        ..config.clone()
    };
    let counts = [1, 2];
    let inputs = SweepInputs {
        config: &non_iid,
        counts: &counts,
        rows: VqaRows::from(&rlaif),
        images: &[],
        out_dir: None,
        ..inputs
    };
    let (table, runs) = run_clients_sweep(&inputs, |_, _| Ok(None)).expect("RLAIF-V sweep");
    assert_eq!(table.entries.len(), 2);
    assert_eq!(runs[0].1.reports[1].clients.len(), 1);
    assert_eq!(runs[1].1.reports[1].clients.len(), 2);

    // More non-IID clients than sources, or a centralised sweep, are refused.
    let too_many = [3];
    let err = run_clients_sweep(
        &SweepInputs {
            counts: &too_many,
            ..inputs
        },
        |_, _| Ok(None),
    )
    .expect_err("three clients of two sources");
    assert!(matches!(err, FedError::Data(_)), "{err}");
}
