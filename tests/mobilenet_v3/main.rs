//! MobileNetV3 against torchvision: golden outputs, checkpoint errors, adapters and freezing.
//!
//! Fixtures come from `scripts/generate_reference.py` (torchvision 0.24.1, every parameter and
//! buffer randomised, eval mode).

#[path = "../common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, Flex};
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn_store::{BurnToPyTorchAdapter, ModuleSnapshot};
use common::{TensorFile, max_abs_diff};
use fedvlm::LoraConfig;
use fedvlm::federated::{ShareSpec, collect_shared};
use fedvlm::models::{AdapterTargets, MobileNetV3, MobileNetV3Config, WeightsError};
use fedvlm::params::PathTracker;
use fedvlm::{FedError, Sharing};
use safetensors::SafeTensors;
use safetensors::tensor::{Dtype, TensorView};

mod checkpoint_errors;

type B = Flex;
type AB = Autodiff<Flex>;

const TOLERANCE: f32 = 1e-4;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mobilenet_v3")
}

/// The fixture models: file stem and the configuration the script built.
fn cases() -> Vec<(&'static str, MobileNetV3Config)> {
    vec![
        (
            "small_w025",
            MobileNetV3Config::small(10).with_width_mult(0.25),
        ),
        (
            "large_w025",
            MobileNetV3Config::large(10).with_width_mult(0.25),
        ),
        (
            "small_w025_dilated",
            MobileNetV3Config::small(10)
                .with_width_mult(0.25)
                .with_dilated(true)
                .with_reduced_tail(true),
        ),
    ]
}

fn config_of(name: &str) -> MobileNetV3Config {
    cases()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, c)| c)
        .expect("known fixture")
}

/// Reads one f32 tensor of the committed `io.safetensors`.
fn reference<const D: usize>(name: &str) -> Tensor<B, D> {
    reference_in(&fixtures(), name)
}

/// Reads one f32 tensor of `dir/io.safetensors`.
fn reference_in<const D: usize>(dir: &Path, name: &str) -> Tensor<B, D> {
    TensorFile::open(dir.join("io.safetensors")).float(name, &Default::default())
}

fn check_golden(name: &str, model: &MobileNetV3<B>, source: &str) {
    check_golden_in(&fixtures(), name, model, source);
}

fn check_golden_in(dir: &Path, name: &str, model: &MobileNetV3<B>, source: &str) {
    let input = reference_in::<4>(dir, "input");
    let pooled = model.features_pooled(input.clone());
    let logits = model.forward(input);
    let d_pooled = max_abs_diff(pooled.clone(), reference_in(dir, &format!("{name}.pooled")));
    let d_logits = max_abs_diff(logits.clone(), reference_in(dir, &format!("{name}.logits")));
    println!(
        "{name} ({source}): max |pooled diff| {d_pooled:.3e}, max |logits diff| {d_logits:.3e}"
    );
    assert!(d_pooled < TOLERANCE, "{name} pooled differs by {d_pooled}");
    assert!(d_logits < TOLERANCE, "{name} logits differ by {d_logits}");
    let via_parts = model.classifier_forward(pooled);
    assert_eq!(via_parts.into_data(), logits.into_data());
}

#[test]
fn matches_torchvision_from_pth() {
    let device = Default::default();
    for (name, config) in cases() {
        let path = fixtures().join(format!("{name}.pth"));
        let model = MobileNetV3::<B>::load_torchvision(&path, &config, &device)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(model.num_classes(), 10);
        check_golden(name, &model, "pth");
    }
}

#[test]
fn matches_torchvision_from_safetensors() {
    let device = Default::default();
    for name in ["small_w025", "large_w025"] {
        let path = fixtures().join(format!("{name}.safetensors"));
        let model = MobileNetV3::<B>::load_safetensors(&path, &config_of(name), &device)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        check_golden(name, &model, "safetensors");
    }
}

/// Full-size models (width 1.0, 1000 classes), too large to commit: generate them with
/// `python scripts/generate_reference.py mobilenet_v3_full`, then run
/// `cargo test --test mobilenet_v3 -- --ignored`.
#[test]
#[ignore = "needs target/fixtures/mobilenet_v3_full from scripts/generate_reference.py"]
fn full_size_matches_torchvision() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fixtures/mobilenet_v3_full");
    assert!(
        dir.join("io.safetensors").exists(),
        "run `python scripts/generate_reference.py mobilenet_v3_full` first"
    );
    let device = Default::default();
    for (name, config) in [
        ("small", MobileNetV3Config::small(1000)),
        ("large", MobileNetV3Config::large(1000)),
    ] {
        let model =
            MobileNetV3::<B>::load_torchvision(dir.join(format!("{name}.pth")), &config, &device)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        check_golden_in(&dir, name, &model, "pth, full size");
        let model = MobileNetV3::<B>::load_safetensors(
            dir.join(format!("{name}.safetensors")),
            &config,
            &device,
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        check_golden_in(&dir, name, &model, "safetensors, full size");
    }
}

/// Every parameter of a module, by path.
#[derive(Default)]
struct Snapshot {
    path: PathTracker,
    values: BTreeMap<String, Vec<f32>>,
}

impl<BK: Backend> ModuleVisitor<BK> for Snapshot {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<BK, D>>) {
        let values = param
            .val()
            .into_data()
            .convert::<f32>()
            .to_vec()
            .expect("f32");
        self.values.insert(self.path.path(), values);
    }
}

fn snapshot<BK: Backend, M: Module<BK>>(module: &M) -> BTreeMap<String, Vec<f32>> {
    let mut visitor = Snapshot::default();
    module.visit(&mut visitor);
    visitor.values
}

#[test]
fn other_head_size_is_freshly_initialised() {
    let device = Default::default();
    let config = config_of("small_w025").with_num_classes(5).with_seed(42);
    let path = fixtures().join("small_w025.pth");
    let model = MobileNetV3::<B>::load_torchvision(&path, &config, &device).expect("loads");
    assert_eq!(model.num_classes(), 5);

    // The backbone and classifier.0 are the checkpoint's ...
    let input = reference::<4>("input");
    let pooled = model.features_pooled(input.clone());
    assert!(max_abs_diff(pooled, reference("small_w025.pooled")) < TOLERANCE);
    let full = MobileNetV3::<B>::load_torchvision(&path, &config_of("small_w025"), &device)
        .expect("loads");
    let loaded = snapshot(&model);
    let reference_params = snapshot(&full);
    assert_eq!(
        loaded["classifier.0.weight"],
        reference_params["classifier.0.weight"]
    );

    // ... and the head is the seeded initialisation, the same as a random model's.
    let random = MobileNetV3::<B>::new(&config, &device);
    let fresh = snapshot(&random);
    assert_eq!(loaded["classifier.3.weight"], fresh["classifier.3.weight"]);
    assert_eq!(loaded["classifier.3.bias"], vec![0.0; 5]);
    let std = {
        let w = &loaded["classifier.3.weight"];
        (w.iter().map(|x| x * x).sum::<f32>() / w.len() as f32).sqrt()
    };
    assert!((0.008..0.012).contains(&std), "head std {std}");
    let other_seed = MobileNetV3::<B>::new(&config.clone().with_seed(43), &device);
    assert_ne!(
        snapshot(&other_seed)["classifier.3.weight"],
        loaded["classifier.3.weight"]
    );
    assert_eq!(model.forward(input).dims(), [2, 5]);
}

#[test]
fn adapters_at_init_leave_logits_unchanged() {
    let device = Default::default();
    let config = config_of("small_w025");
    let model =
        MobileNetV3::<B>::load_torchvision(fixtures().join("small_w025.pth"), &config, &device)
            .expect("loads");
    let input = reference::<4>("input");
    let before = model.forward(input.clone());
    let lora = LoraConfig::paper();

    let adapted = model
        .clone()
        .with_adapters(&lora, AdapterTargets::Classifier, 7)
        .expect("adapts");
    assert_eq!(adapted.adapter_paths(), ["classifier.0"]);
    assert_eq!(
        adapted.forward(input.clone()).into_data(),
        before.clone().into_data(),
        "classifier adapter with B = 0 must be exact"
    );
    let names: Vec<String> = collect_shared(&adapted, &ShareSpec::new(Sharing::PLora))
        .names()
        .map(String::from)
        .collect();
    assert_eq!(names, ["classifier.0.lora_b"]);
    let spec = ShareSpec::new(Sharing::PLora).also_share("classifier.3");
    let mut names: Vec<String> = collect_shared(&adapted, &spec)
        .names()
        .map(String::from)
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "classifier.0.lora_b",
            "classifier.3.bias",
            "classifier.3.weight"
        ]
    );

    let all = model
        .with_adapters(&lora, AdapterTargets::ClassifierAndPointwise, 7)
        .expect("adapts");
    let paths = all.adapter_paths();
    // classifier.0, the last conv, and per block: projection plus expansion where present.
    let blocks = config.blocks();
    let expansions = blocks
        .iter()
        .filter(|b| b.expanded_channels != b.input_channels)
        .count();
    assert_eq!(paths.len(), 1 + 1 + blocks.len() + expansions);
    assert!(paths.contains(&"features.12.0".to_string()), "{paths:?}");
    assert!(
        paths.contains(&"features.1.block.2.0".to_string()),
        "{paths:?}"
    );
    let after = all.forward(input);
    let diff = max_abs_diff(after.clone(), before.clone());
    println!("pointwise adapters at init: max |logits diff| {diff:.3e}");
    assert!(
        diff < 1e-5,
        "pointwise adapters changed the logits by {diff}"
    );

    // Adapting twice is an error; distinct layers and seeds draw distinct A's.
    let again = all
        .clone()
        .with_adapters(&lora, AdapterTargets::Classifier, 8);
    assert!(matches!(again, Err(FedError::UnsupportedLayer(_))));
    let params = snapshot(&all);
    let a0 = &params["classifier.0.lora_a"];
    let reseeded =
        MobileNetV3::<B>::load_torchvision(fixtures().join("small_w025.pth"), &config, &device)
            .expect("loads")
            .with_adapters(&lora, AdapterTargets::Classifier, 8)
            .expect("adapts");
    assert_ne!(&snapshot(&reseeded)["classifier.0.lora_a"], a0);
    let a_first = &params["features.1.block.2.0.lora_a"];
    let a_second = &params["features.2.block.2.0.lora_a"];
    assert_ne!(a_first, a_second);
}

#[test]
fn freeze_backbone_trains_only_adapters_and_head() {
    let device = Default::default();
    let config = config_of("small_w025").with_num_classes(3);
    let model =
        MobileNetV3::<AB>::load_torchvision(fixtures().join("small_w025.pth"), &config, &device)
            .expect("loads")
            .with_adapters(
                &LoraConfig::paper(),
                AdapterTargets::ClassifierAndPointwise,
                3,
            )
            .expect("adapts")
            .freeze_backbone();
    let before = snapshot(&model);

    let input = Tensor::<AB, 4>::from_data(reference::<4>("input").into_data(), &device);
    let targets = Tensor::<AB, 1, Int>::from_data([0, 2], &device);
    let logits = model.forward(input);
    let loss = burn::nn::loss::CrossEntropyLossConfig::new()
        .init(&device)
        .forward(logits, targets);
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let mut optim = AdamWConfig::new().init::<AB, MobileNetV3<AB>>();
    let model = optim.step(1e-2, model, grads);
    let after = snapshot(&model);

    assert_eq!(before.len(), after.len());
    let mut changed = Vec::new();
    for (path, values) in &before {
        if after[path] != *values {
            changed.push(path.clone());
        }
    }
    let trainable = |p: &str| {
        p.ends_with(".lora_a") || p.ends_with(".lora_b") || p.starts_with("classifier.3.")
    };
    let frozen_changed: Vec<&String> = changed.iter().filter(|p| !trainable(p)).collect();
    assert!(
        frozen_changed.is_empty(),
        "frozen parameters changed: {frozen_changed:?}"
    );
    for path in [
        "classifier.3.weight",
        "classifier.3.bias",
        "classifier.0.lora_b",
    ] {
        assert!(changed.contains(&path.to_string()), "{path} did not train");
    }
    let lora_b_total = before.keys().filter(|p| p.ends_with(".lora_b")).count();
    let lora_b_changed = changed.iter().filter(|p| p.ends_with(".lora_b")).count();
    assert_eq!(lora_b_changed, lora_b_total, "every B trains");
}

#[test]
fn full_size_parameter_counts_and_shapes_match_torchvision() {
    let shapes: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("shapes.json")).expect("shapes.json"),
    )
    .expect("json");
    let device = Default::default();
    for (name, config, expected) in [
        ("small", MobileNetV3Config::small(1000), 2_542_856),
        ("large", MobileNetV3Config::large(1000), 5_483_032),
    ] {
        let model = MobileNetV3::<B>::new(&config, &device);
        assert_eq!(model.num_parameters(), expected, "{name}");
        assert_eq!(shapes[name]["parameters"], expected, "{name}");

        let ours: BTreeMap<String, Vec<usize>> = model
            .collect(None, Some(Box::new(BurnToPyTorchAdapter)), true)
            .into_iter()
            .map(|s| (s.full_path(), s.shape.to_vec()))
            .collect();
        let theirs: BTreeMap<String, Vec<usize>> = shapes[name]["state_dict"]
            .as_object()
            .expect("object")
            .iter()
            .filter(|(k, _)| !k.ends_with(".num_batches_tracked"))
            .map(|(k, v)| {
                let shape = v
                    .as_array()
                    .expect("array")
                    .iter()
                    .map(|d| d.as_u64().expect("dim") as usize)
                    .collect();
                (k.clone(), shape)
            })
            .collect();
        assert_eq!(ours, theirs, "{name}: state_dict keys and shapes");
    }
}

#[test]
fn random_init_is_seeded_and_torchvision_like() {
    let device = Default::default();
    let config = MobileNetV3Config::small(10)
        .with_width_mult(0.25)
        .with_seed(5);
    let a = snapshot(&MobileNetV3::<B>::new(&config, &device));
    let b = snapshot(&MobileNetV3::<B>::new(&config, &device));
    assert_eq!(a, b);
    let c = snapshot(&MobileNetV3::<B>::new(
        &config.clone().with_seed(6),
        &device,
    ));
    assert_ne!(a["features.0.0.weight"], c["features.0.0.weight"]);
    assert!(a["features.0.1.weight"].iter().all(|&w| w == 1.0));
    assert!(a["features.0.1.running_var"].iter().all(|&v| v == 1.0));
    assert!(a["classifier.0.bias"].iter().all(|&v| v == 0.0));
    // Kaiming-normal, fan_out: std sqrt(2 / (16 * 3 * 3)) ~ 0.118 for the stem at width 0.25
    // (8 channels: sqrt(2 / 72) ~ 0.167).
    let stem = &a["features.0.0.weight"];
    let std = (stem.iter().map(|x| x * x).sum::<f32>() / stem.len() as f32).sqrt();
    assert!((0.12..0.22).contains(&std), "stem std {std}");
}

#[test]
fn config_round_trips_through_json() {
    let config = MobileNetV3Config::large(7)
        .with_width_mult(0.75)
        .with_dilated(true)
        .with_seed(9);
    let json = serde_json::to_string(&config).expect("serialises");
    let back: MobileNetV3Config = serde_json::from_str(&json).expect("deserialises");
    assert_eq!(back, config);
    let minimal: MobileNetV3Config =
        serde_json::from_str(r#"{"arch": "small", "num_classes": 10}"#).expect("defaults");
    assert_eq!(minimal, MobileNetV3Config::small(10));
    assert!(MobileNetV3Config::small(0).validate().is_err());
    assert!(
        MobileNetV3Config::small(2)
            .with_width_mult(0.0)
            .validate()
            .is_err()
    );
}
