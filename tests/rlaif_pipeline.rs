//! The RLAIF-V experiment's pipeline end to end (library calls, not the binary), on a tiny
//! RLAIF-V parquet written here (two source datasets, JPEG and PNG images) and a wide copy of
//! the tiny Florence-2 fixture whose vocabulary holds the text fixtures' tokenizer: both
//! sharing rules, metrics, checkpoints, resume, generated answers, cache parity. The
//! answer-level metrics are tested in `rlaif_answers.rs`.

mod common;
#[path = "common/rlaif_fixture.rs"]
mod rlaif_fixture;

use std::sync::Arc;

use common::florence2_wide::WIDE_IMAGE_SIZE;
use common::rlaif_shards::write_dataset;
use fedvlm::data::{RlaifV, RlaifVOptions};
use fedvlm::experiments::rlaif::{
    ANSWER_METRICS_FILE, ANSWERS_FILE, AnswerEvalConfig, AnswerRoundReport, RlaifConfig, RlaifData,
    RunInputs, build_client_models, run_rule,
};
use fedvlm::experiments::vqa::CacheDtype;
use fedvlm::federated::{JsonlWriter, ShareSpec, collect_shared};
use fedvlm::{FedError, LoraConfig, Sharing};
use rlaif_fixture::{Fixture, config, serial, without_timings};

#[test]
fn defaults_are_the_papers_settings_and_bad_ones_are_refused() {
    let c = RlaifConfig::default();
    assert_eq!(
        (c.clients, c.rounds, c.local_epochs, c.batch_size),
        (4, 5, 3, 16)
    );
    assert_eq!(c.lr, 1e-6);
    assert_eq!(c.lora, LoraConfig::paper());
    assert_eq!((c.ffa_lora.rank, c.ffa_lora.alpha), (8, 8.0));
    assert_eq!(c.lora_for(Sharing::FfaLora), c.ffa_lora);
    assert_eq!(c.lora_for(Sharing::PLora), c.lora);
    assert!(!c.iid && !c.centralized && c.cache);
    assert_eq!(c.micro_batch_size, None);
    assert_eq!(c.prefix_precision, fedvlm::models::Precision::F32);
    c.validate().unwrap();
    RlaifConfig::quick().validate().unwrap();
    for bad in [
        RlaifConfig {
            clients: 0,
            ..c.clone()
        },
        RlaifConfig {
            test_fraction: 1.0,
            ..c.clone()
        },
        RlaifConfig {
            max_answer_len: 1,
            ..c.clone()
        },
        RlaifConfig {
            lr: 0.0,
            ..c.clone()
        },
        RlaifConfig {
            max_samples_per_client: Some(0),
            ..c.clone()
        },
        RlaifConfig {
            micro_batch_size: Some(0),
            ..c.clone()
        },
        RlaifConfig {
            cache: false,
            prefix_precision: fedvlm::models::Precision::F16,
            ..c.clone()
        },
    ] {
        assert!(matches!(
            bad.validate(),
            Err(FedError::InvalidConfig { .. })
        ));
    }
}

#[test]
fn data_is_split_by_source_or_centrally_and_preprocessed_at_the_processors_size() {
    let fixture = Fixture::new(config(1));
    let data = &fixture.data;
    assert_eq!(data.num_trainers(), 2);
    assert_eq!(
        data.sources,
        vec![vec!["alpha_vqa".to_string()], vec!["beta-caps".to_string()]]
    );
    for k in 0..2 {
        assert_eq!(data.split.train[k].len() + data.split.test[k].len(), 8);
        assert!(!data.split.test[k].is_empty());
        for &i in data.split.train[k].iter().chain(&data.split.test[k]) {
            assert_eq!(data.texts.get(i).unwrap().source, data.sources[k][0]);
        }
    }
    assert_eq!(data.samples.len(), 16);
    assert!(data.samples.iter().all(|s| s.image_size == WIDE_IMAGE_SIZE));
    assert!(data.samples.iter().all(|s| s.answer_len() <= 16));

    let data_dir = tempfile::tempdir().unwrap();
    write_dataset(data_dir.path());
    let rows = RlaifV::load(data_dir.path(), &RlaifVOptions::new()).unwrap();
    let central = RlaifConfig {
        centralized: true,
        max_samples_per_client: Some(4),
        ..config(1)
    };
    let merged = RlaifData::prepare(&central, &rows, &fixture.processor).unwrap();
    assert_eq!(merged.num_trainers(), 1);
    assert_eq!(merged.split.train[0].len() + merged.split.test[0].len(), 8);
    assert_eq!(merged.sources[0].len(), 2);
    assert_eq!(central.run_name(Sharing::PLora), "centralized-plora");
}

#[test]
fn both_rules_write_metrics_checkpoints_answers_and_resume_to_the_same_result() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let full = Fixture::new(config(2));
    let cache = full.cache(CacheDtype::F16);
    let mut uninterrupted = Vec::new();
    for sharing in [Sharing::PLora, Sharing::FedAvgLora] {
        let run = run_rule(
            &full.inputs(Some(cache.clone()), Some(dir.path()), false),
            sharing,
        )
        .unwrap();
        assert_eq!(run.reports.len(), 3, "round 0 (w/o ft) + 2 rounds");
        assert_eq!(run.reports[0].round, 0);
        for report in &run.reports {
            assert_eq!(report.clients.len(), 2);
            let mean = report.mean_test.unwrap();
            assert!(mean.accuracy.is_finite() && mean.loss.is_finite() && mean.loss > 0.0);
        }
        assert!(
            run.reports[1]
                .clients
                .iter()
                .all(|c| c.bytes_up > 0 && c.train_loss.is_some())
        );
        let rule_dir = dir.path().join(sharing.name());
        assert_eq!(
            JsonlWriter::read_all(rule_dir.join("metrics.jsonl"))
                .unwrap()
                .len(),
            3
        );
        assert!(rule_dir.join("checkpoint/checkpoint.json").is_file());
        assert!(rule_dir.join("config.json").is_file());
        let answers = std::fs::read_to_string(rule_dir.join(ANSWERS_FILE)).unwrap();
        assert_eq!(answers.lines().count(), 2, "one answer per client");
        assert_eq!(run.answers.len(), 2);
        assert_eq!(run.answers[1].source, "beta-caps");

        // The payload holds the rule's shared adapter matrices, nothing else.
        let models = build_client_models(&full.base, &full.config, sharing, 2).unwrap();
        let payload = collect_shared(&models[0], &ShareSpec::new(sharing));
        let mut names: Vec<&str> = payload.names().collect();
        names.sort();
        let last = "language_model.decoder.layers.1.self_attn";
        let expected: Vec<String> = match sharing {
            Sharing::PLora => vec![
                format!("{last}.q_proj.lora_b"),
                format!("{last}.v_proj.lora_b"),
            ],
            _ => vec![
                format!("{last}.q_proj.lora_a"),
                format!("{last}.q_proj.lora_b"),
                format!("{last}.v_proj.lora_a"),
                format!("{last}.v_proj.lora_b"),
            ],
        };
        assert_eq!(names, expected);
        let scored: Vec<u64> = run.answer_metrics.iter().map(|r| r.round).collect();
        assert_eq!(
            scored,
            [0, 1, 2],
            "answers scored before fine-tuning and every round"
        );
        let lines = std::fs::read_to_string(rule_dir.join(ANSWER_METRICS_FILE)).unwrap();
        assert_eq!(lines.lines().count(), 3);
        uninterrupted.push((
            without_timings(&run.reports),
            run.answers,
            run.answer_metrics,
        ));
    }
    // Round 0 is the same model for both rules (B = 0).
    assert_eq!(
        uninterrupted[0].0[0].mean_test,
        uninterrupted[1].0[0].mean_test
    );

    // Interrupted after round 1, then resumed.
    let resumed_dir = tempfile::tempdir().unwrap();
    let first = Fixture::new(config(1));
    run_rule(
        &first.inputs(Some(cache.clone()), Some(resumed_dir.path()), false),
        Sharing::PLora,
    )
    .unwrap();
    let run = run_rule(
        &full.inputs(Some(cache.clone()), Some(resumed_dir.path()), true),
        Sharing::PLora,
    )
    .unwrap();
    assert_eq!(without_timings(&run.reports), uninterrupted[0].0);
    assert_eq!(run.answers, uninterrupted[0].1);
    assert_eq!(run.answer_metrics, uninterrupted[0].2);
    let logged =
        std::fs::read_to_string(resumed_dir.path().join("plora").join(ANSWER_METRICS_FILE))
            .unwrap();
    let logged: Vec<AnswerRoundReport> = logged
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(logged, uninterrupted[0].2);
    let logged = JsonlWriter::read_all(resumed_dir.path().join("plora/metrics.jsonl")).unwrap();
    assert_eq!(without_timings(&logged), uninterrupted[0].0);

    // Resuming with other settings is refused.
    let other = Fixture::new(RlaifConfig {
        lr: 0.5,
        ..config(2)
    });
    let err = run_rule(
        &other.inputs(Some(cache), Some(resumed_dir.path()), true),
        Sharing::PLora,
    )
    .err()
    .unwrap();
    assert!(matches!(err, FedError::InvalidConfig { .. }), "{err}");
}

#[test]
fn cached_and_uncached_training_give_the_same_losses() {
    let _serial = serial();
    let fixture = Fixture::new(config(2));
    let cached = run_rule(
        &fixture.inputs(Some(fixture.cache(CacheDtype::F32)), None, false),
        Sharing::PLora,
    )
    .unwrap();
    let uncached = run_rule(&fixture.inputs(None, None, false), Sharing::PLora).unwrap();
    // Training moved the losses: the comparison is not between two untrained models.
    let (first, last) = (&uncached.reports[0], &uncached.reports[2]);
    assert!(
        (first.mean_test.unwrap().loss - last.mean_test.unwrap().loss).abs() > 1e-3,
        "{:?} vs {:?}",
        first.mean_test,
        last.mean_test
    );
    let mut compared = 0;
    for (a, b) in cached.reports.iter().zip(&uncached.reports) {
        for (ca, cb) in a.clients.iter().zip(&b.clients) {
            if let (Some(la), Some(lb)) = (ca.train_loss, cb.train_loss) {
                assert!(
                    (la - lb).abs() < 1e-4,
                    "round {} client {}: {la} vs {lb}",
                    a.round,
                    ca.client
                );
                compared += 1;
            }
            let (ta, tb) = (ca.test.unwrap().loss, cb.test.unwrap().loss);
            assert!(
                (ta - tb).abs() < 1e-4,
                "round {} client {}: {ta} vs {tb}",
                a.round,
                ca.client
            );
        }
    }
    assert_eq!(compared, 4);
}

#[test]
fn dropping_cached_pixels_changes_nothing_but_needs_the_cache() {
    let _serial = serial();
    // The answer-level metrics generate from the one test sample per client that keeps its
    // pixels.
    let fixture = Fixture::new(RlaifConfig {
        answer_eval: AnswerEvalConfig {
            limit: Some(1),
            ..AnswerEvalConfig::default()
        },
        ..config(1)
    });
    let cache = fixture.cache(CacheDtype::F16);
    let kept = run_rule(
        &fixture.inputs(Some(cache.clone()), None, false),
        Sharing::PLora,
    )
    .unwrap();

    let mut data = (*fixture.data).clone();
    let freed = data.drop_cached_pixels(&cache, 1).unwrap();
    assert_eq!(freed, 16 - 2, "all but one test sample per client");
    for (k, test) in data.split.test.iter().enumerate() {
        assert!(data.samples[test[0]].image.is_present(), "client {k}");
    }
    let data = Arc::new(data);
    let inputs = RunInputs {
        data: data.clone(),
        ..fixture.inputs(Some(cache), None, false)
    };
    let dropped = run_rule(&inputs, Sharing::PLora).unwrap();
    assert_eq!(
        without_timings(&dropped.reports),
        without_timings(&kept.reports)
    );
    assert_eq!(dropped.answers, kept.answers);
    assert_eq!(dropped.answer_metrics, kept.answer_metrics);
    // Scoring every test sample needs pixels that were freed: a typed error, not a panic.
    let every_sample = RlaifConfig {
        answer_eval: AnswerEvalConfig::default(),
        ..fixture.config.clone()
    };
    let err = run_rule(
        &RunInputs {
            config: &every_sample,
            ..inputs
        },
        Sharing::PLora,
    )
    .err()
    .unwrap();
    assert!(matches!(err, FedError::InvalidConfig { .. }), "{err}");

    let uncached = RunInputs {
        data,
        ..fixture.inputs(None, None, false)
    };
    let err = run_rule(&uncached, Sharing::PLora).err().unwrap();
    assert!(matches!(err, FedError::InvalidConfig { .. }), "{err}");
}

#[test]
fn centralized_training_runs_one_trainer_over_all_data() {
    let _serial = serial();
    let fixture = Fixture::new(RlaifConfig {
        centralized: true,
        ..config(1)
    });
    let dir = tempfile::tempdir().unwrap();
    let run = run_rule(
        &fixture.inputs(None, Some(dir.path()), false),
        Sharing::PLora,
    )
    .unwrap();
    assert_eq!(run.name, "centralized-plora");
    assert_eq!(run.reports.len(), 2);
    assert_eq!(run.reports[1].clients.len(), 1);
    assert_eq!(run.reports[1].clients[0].train_examples, 12);
    assert!(dir.path().join("centralized-plora/metrics.jsonl").is_file());
}
