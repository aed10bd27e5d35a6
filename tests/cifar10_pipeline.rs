//! The CIFAR-10 experiment's pipeline end to end on synthetic data (library calls, not the
//! binary): both sharing rules, metrics, checkpoints, resume, and cache parity.

use std::sync::Arc;

use burn::backend::{Autodiff, Flex};
use fedvlm::data::{Cifar10, Cifar10Split};
use fedvlm::experiments::cifar10::{
    Cifar10Config, ClientSplit, RunInputs, build_cache, load_backbone, run_rule,
};
use fedvlm::federated::{JsonlWriter, RoundReport, ShareSpec, collect_shared};
use fedvlm::{FedError, Sharing};
use rand::{RngExt, SeedableRng, rngs::ChaCha8Rng};

type B = Autodiff<Flex>;

/// Dropout draws from burn's backend-wide generator: one simulation at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Images whose mean colour depends on the label, plus noise.
fn split(n: usize, seed: u64) -> Cifar10Split {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut images = Vec::with_capacity(n * 3072);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let label = (i % 10) as u8;
        labels.push(label);
        for c in 0..3 {
            let base = 20 + 20 * ((label as usize + 3 * c) % 10);
            for _ in 0..1024 {
                images.push((base + rng.random_range(0..40)) as u8);
            }
        }
    }
    Cifar10Split { images, labels }
}

fn data() -> Arc<Cifar10> {
    Arc::new(Cifar10::from_splits(split(200, 1), split(60, 2)).unwrap())
}

fn config(rounds: u64) -> Cifar10Config {
    Cifar10Config {
        width_mult: 0.25,
        clients: 5,
        shards: 10,
        rounds,
        local_epochs: 1,
        batch_size: 16,
        image_size: 32,
        global_eval_every: 1,
        ..Cifar10Config::default()
    }
}

fn without_timings(reports: &[RoundReport]) -> Vec<RoundReport> {
    reports.iter().map(RoundReport::without_timings).collect()
}

struct Fixture {
    config: Cifar10Config,
    data: Arc<Cifar10>,
    split: ClientSplit,
    backbone: fedvlm::models::MobileNetV3<B>,
}

impl Fixture {
    fn new(config: Cifar10Config) -> Self {
        let data = data();
        let split = ClientSplit::new(
            &data,
            config.shards,
            config.clients,
            None,
            None,
            config.seed,
        )
        .unwrap();
        let backbone = load_backbone::<B>(&config, None, &Default::default()).unwrap();
        Self {
            config,
            data,
            split,
            backbone,
        }
    }

    fn inputs<'a>(
        &'a self,
        cached: bool,
        out: Option<&'a std::path::Path>,
        resume: bool,
    ) -> RunInputs<'a, B> {
        let device = Default::default();
        let cache = cached.then(|| {
            Arc::new(build_cache(&self.config, &self.data, &self.backbone, false, &device).unwrap())
        });
        RunInputs {
            config: &self.config,
            data: self.data.clone(),
            split: &self.split,
            backbone: &self.backbone,
            cache,
            out_dir: out,
            resume,
            progress: false,
            device,
        }
    }
}

#[test]
fn clients_get_two_single_label_shards_and_the_test_images_of_their_classes() {
    let data = data();
    let split = ClientSplit::new(&data, 10, 5, None, None, 0).unwrap();
    let train_labels = data.train().labels_usize();
    let test_labels = data.test().labels_usize();
    for k in 0..5 {
        assert_eq!(
            split.train[k].len(),
            40,
            "two shards of 20 (one class each)"
        );
        assert!(split.classes[k].len() <= 2 && !split.classes[k].is_empty());
        for &i in &split.test[k] {
            assert!(split.classes[k].contains(&test_labels[i]));
        }
        let expected = test_labels
            .iter()
            .filter(|l| split.classes[k].contains(l))
            .count();
        assert_eq!(split.test[k].len(), expected);
        for &i in &split.train[k] {
            assert!(split.classes[k].contains(&train_labels[i]));
        }
    }
    assert_eq!(split.global_test.len(), 60);
}

#[test]
fn both_rules_run_write_metrics_and_checkpoints_and_resume_to_the_same_result() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let full = Fixture::new(config(2));
    let mut uninterrupted = Vec::new();
    for sharing in [Sharing::PLora, Sharing::FedAvgLora] {
        let run = run_rule(&full.inputs(true, Some(dir.path()), false), sharing).unwrap();
        assert_eq!(run.reports.len(), 3, "round 0 + 2 rounds");
        let last = run.reports.last().unwrap();
        assert!(last.mean_test.unwrap().accuracy.is_finite());
        assert!(last.mean_global_test.is_some());
        let rule_dir = dir.path().join(sharing.name());
        assert_eq!(
            JsonlWriter::read_all(rule_dir.join("metrics.jsonl"))
                .unwrap()
                .len(),
            3
        );
        assert!(rule_dir.join("checkpoint/checkpoint.json").is_file());
        // The payload holds the shared adapter matrices and the head, nothing else.
        let payload = collect_shared(
            &fedvlm::experiments::cifar10::build_client_models(&full.backbone, &full.config)
                .unwrap()[0],
            &ShareSpec::new(sharing).also_share("classifier.3"),
        );
        let mut names: Vec<&str> = payload.names().collect();
        names.sort();
        let expected: &[&str] = match sharing {
            Sharing::PLora => &[
                "classifier.0.lora_b",
                "classifier.3.bias",
                "classifier.3.weight",
            ],
            _ => &[
                "classifier.0.lora_a",
                "classifier.0.lora_b",
                "classifier.3.bias",
                "classifier.3.weight",
            ],
        };
        assert_eq!(names, expected);
        uninterrupted.push(without_timings(&run.reports));
    }

    // Interrupted after round 1, then resumed.
    let resumed_dir = tempfile::tempdir().unwrap();
    let first = Fixture::new(config(1));
    run_rule(
        &first.inputs(true, Some(resumed_dir.path()), false),
        Sharing::PLora,
    )
    .unwrap();
    let second = Fixture::new(config(2));
    let run = run_rule(
        &second.inputs(true, Some(resumed_dir.path()), true),
        Sharing::PLora,
    )
    .unwrap();
    assert_eq!(without_timings(&run.reports), uninterrupted[0]);
    let logged = JsonlWriter::read_all(resumed_dir.path().join("plora/metrics.jsonl")).unwrap();
    assert_eq!(without_timings(&logged), uninterrupted[0]);

    // Resuming with other settings is refused.
    let other = Fixture::new(Cifar10Config {
        lr: 0.5,
        ..config(2)
    });
    let err = run_rule(
        &other.inputs(true, Some(resumed_dir.path()), true),
        Sharing::PLora,
    )
    .err()
    .unwrap();
    assert!(matches!(err, FedError::InvalidConfig { .. }), "{err}");
}

#[test]
fn cached_and_uncached_training_give_the_same_losses() {
    let _serial = serial();
    // A large learning rate so that the adapters move the losses well beyond the tolerance.
    let fixture = Fixture::new(Cifar10Config {
        lr: 0.05,
        local_epochs: 2,
        ..config(2)
    });
    let cached = run_rule(&fixture.inputs(true, None, false), Sharing::PLora).unwrap();
    let uncached = run_rule(&fixture.inputs(false, None, false), Sharing::PLora).unwrap();
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
            let (ta, tb) = (ca.test.unwrap(), cb.test.unwrap());
            assert!((ta.loss - tb.loss).abs() < 1e-5);
            assert_eq!(ta.accuracy, tb.accuracy);
        }
    }
    assert_eq!(compared, 2 * 5);
    // The adapters did change the losses (so the comparison above is not vacuous).
    let first = cached.reports[0].mean_test.unwrap().loss;
    let last = cached.reports[2].mean_test.unwrap().loss;
    assert!((first - last).abs() > 1e-3, "{first} vs {last}");
}
