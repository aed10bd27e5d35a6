//! Hostile bytes for the weight loaders: MobileNetV3 from `.pth` and `.safetensors`, Florence-2
//! from a checkpoint folder (native safetensors, original `pytorch_model.bin`), and PEFT
//! adapters (`adapter_config.json` + `adapter_model.safetensors`). Seeded mutations of the
//! committed fixtures never panic and come back as typed errors naming the file.

mod common;
use common::mutate::{
    Mutation, Report, random_set, safetensors_edits, truncations, zip_entry_edits,
};

use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, Flex};
use burn::module::Module;
use burn::nn::LinearConfig;
use burn::prelude::Backend;
use fedvlm::lora::{Dense, freeze_all, load_peft_adapter};
use fedvlm::models::florence2::Florence2;
use fedvlm::models::mobilenet_v3::{MobileNetV3, MobileNetV3Config};
use fedvlm::{LoraConfig, Sharing};

const SEED: u64 = 0x5EED_0003;

fn fixtures(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir)
}

/// Offsets worth hitting in a `torch.save` zip: its start, the pickle, the central directory
/// and the end-of-central-directory record.
fn zip_hot(bytes: &[u8]) -> Vec<usize> {
    let find = |needle: &[u8]| bytes.windows(needle.len()).position(|w| w == needle);
    let mut hot = vec![0, 26, 30, bytes.len().saturating_sub(22)];
    hot.extend(find(b"data.pkl").map(|at| at + 8));
    hot.extend(find(b"PK\x01\x02"));
    hot.extend(find(b"PK\x05\x06").map(|at| at + 12));
    hot
}

/// Offsets worth hitting in a safetensors file: the length field, the header, the data start.
fn safetensors_hot(bytes: &[u8]) -> Vec<usize> {
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8")) as usize;
    vec![0, 8, 8 + n / 2, 8 + n]
}

/// The mutations of one weights file: truncations, random changes, and for safetensors the
/// structured header edits.
fn cases(bytes: &[u8], safetensors: bool, seed: u64, random: usize, edits: usize) -> Vec<Mutation> {
    let hot = if safetensors {
        safetensors_hot(bytes)
    } else {
        zip_hot(bytes)
    };
    let mut cases = truncations(bytes.len(), 12, 24);
    cases.extend(random_set(seed, bytes.len(), &hot, random));
    if safetensors {
        let mut structured = safetensors_edits(bytes, 1);
        structured.truncate(edits);
        cases.extend(structured);
    } else {
        // The zip layer checks CRCs: these reach the pickle parser.
        cases.extend(zip_entry_edits(bytes, "data.pkl", seed, edits));
    }
    cases
}

// ---------------------------------------------------------------------------------------------
// MobileNetV3

fn check_mobilenet(file: &str, seed: u64) {
    let valid = std::fs::read(fixtures("mobilenet_v3").join(file)).expect("fixture");
    let config = MobileNetV3Config::small(10).with_width_mult(0.25);
    let device = Default::default();
    let safetensors = file.ends_with(".safetensors");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(file);
    let shown = path.display().to_string();
    let load = |path: &Path| {
        if safetensors {
            MobileNetV3::<Flex>::load_safetensors(path, &config, &device)
        } else {
            MobileNetV3::<Flex>::load_torchvision(path, &config, &device)
        }
    };
    std::fs::write(&path, &valid).expect("write");
    load(&path).expect("the fixture loads");
    let mut report = Report::new(&format!("MobileNetV3 ({file})"), seed);
    for mutation in cases(&valid, safetensors, seed, 40, 50) {
        std::fs::write(&path, mutation.apply(&valid)).expect("write");
        report.run(&mutation, Some(&shown), || load(&path));
    }
    report.finish();
}

#[test]
fn hostile_mobilenet_pth_is_typed_errors() {
    check_mobilenet("small_w025.pth", SEED);
}

#[test]
fn hostile_mobilenet_safetensors_is_typed_errors() {
    check_mobilenet("small_w025.safetensors", SEED + 1);
}

// ---------------------------------------------------------------------------------------------
// Florence-2

fn check_florence2(layout: &str, weights: &str, seed: u64) {
    let source = fixtures("florence2").join(layout);
    let valid = std::fs::read(source.join(weights)).expect("fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(source.join("config.json"), dir.path().join("config.json")).expect("config");
    let path = dir.path().join(weights);
    let shown = path.display().to_string();
    let device = Default::default();
    let load = || Florence2::<Flex>::load(dir.path(), &device);
    std::fs::write(&path, &valid).expect("write");
    load().expect("the fixture loads");
    let safetensors = weights.ends_with(".safetensors");
    let mut report = Report::new(&format!("Florence2::load ({layout})"), seed);
    for mutation in cases(&valid, safetensors, seed, 16, 30) {
        std::fs::write(&path, mutation.apply(&valid)).expect("write");
        report.run(&mutation, Some(&shown), load);
    }
    report.finish();
}

/// `config.json` sizes a hostile file could set: each must be refused (or fail on the first
/// tensor shape) without building a model of that size.
#[test]
fn hostile_florence2_config_is_typed_errors() {
    let source = fixtures("florence2").join("tiny_native");
    let text = std::fs::read(source.join("config.json")).expect("config");
    let json: serde_json::Value = serde_json::from_slice(&text).expect("JSON");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        source.join("model.safetensors"),
        dir.path().join("model.safetensors"),
    )
    .expect("weights");
    let shown = dir.path().display().to_string();
    let huge = |bits: u32| serde_json::json!(1u64 << bits);
    let edits: [(&str, &str, serde_json::Value); 14] = [
        ("text_config", "vocab_size", huge(40)),
        ("text_config", "d_model", huge(40)),
        ("text_config", "encoder_layers", huge(30)),
        ("text_config", "decoder_layers", serde_json::json!(u64::MAX)),
        ("text_config", "max_position_embeddings", huge(40)),
        ("text_config", "encoder_ffn_dim", huge(40)),
        (
            "text_config",
            "encoder_attention_heads",
            serde_json::json!(-4),
        ),
        (
            "vision_config",
            "depths",
            serde_json::json!([1, 2, 2, 1u64 << 30]),
        ),
        ("vision_config", "window_size", huge(30)),
        ("vision_config", "mlp_ratio", serde_json::json!(1e30)),
        ("vision_config", "max_temporal_embeddings", huge(40)),
        (
            "vision_config",
            "embed_dim",
            serde_json::json!([8, 16, 24, 1u64 << 40]),
        ),
        ("vision_config", "num_heads", serde_json::json!("four")),
        ("vision_config", "patch_size", serde_json::json!([7, 3, 3])),
    ];
    let mut report = Report::new("Florence2::load (config.json)", 0);
    let device = Default::default();
    for (part, field, value) in edits {
        let mut edited = json.clone();
        edited[part][field] = value.clone();
        std::fs::write(dir.path().join("config.json"), edited.to_string()).expect("write");
        let label = format!("config.json {part}.{field} = {value}");
        report.run_labelled("config.json size", &label, Some(&shown), || {
            Florence2::<Flex>::load(dir.path(), &device)
        });
    }
    report.finish();
}

#[test]
fn hostile_florence2_native_is_typed_errors() {
    check_florence2("tiny_native", "model.safetensors", SEED + 2);
}

#[test]
fn hostile_florence2_original_is_typed_errors() {
    check_florence2("tiny_original", "pytorch_model.bin", SEED + 3);
}

// ---------------------------------------------------------------------------------------------
// PEFT (the toy module of `tests/peft_format/main.rs`, whose adapters match the fixture)

type AB = Autodiff<Flex>;

#[derive(Module, Debug)]
struct SelfAttn<B: Backend> {
    q_proj: Dense<B>,
    k_proj: burn::nn::Linear<B>,
    v_proj: Dense<B>,
}

#[derive(Module, Debug)]
struct DecoderLayer<B: Backend> {
    self_attn: SelfAttn<B>,
}

#[derive(Module, Debug)]
struct Decoder<B: Backend> {
    layers: Vec<DecoderLayer<B>>,
}

#[derive(Module, Debug)]
struct Bart<B: Backend> {
    decoder: Decoder<B>,
}

const PREFIX: &str = "model.language_model.";

fn lora() -> LoraConfig {
    LoraConfig::new(4, 8.0)
}

fn bart() -> Bart<AB> {
    let device = Default::default();
    let dense = || Dense::Plain(LinearConfig::new(32, 32).init::<AB>(&device));
    let layers = (0..2)
        .map(|n| {
            let mut attn = SelfAttn {
                q_proj: dense(),
                k_proj: LinearConfig::new(32, 32).init(&device),
                v_proj: dense(),
            };
            if n == 1 {
                attn.q_proj = attn.q_proj.adapt(&lora(), 3, "q_proj").expect("adapt");
                attn.v_proj = attn.v_proj.adapt(&lora(), 4, "v_proj").expect("adapt");
            }
            DecoderLayer { self_attn: attn }
        })
        .collect();
    freeze_all(
        Bart {
            decoder: Decoder { layers },
        },
        Sharing::PLora,
    )
}

/// `adapter_config.json` edits: values fedvlm must refuse, types serde must refuse.
fn config_edits(config: &serde_json::Value) -> Vec<Mutation> {
    let edits: [(&str, serde_json::Value); 14] = [
        ("r", 0.into()),
        ("r", serde_json::json!(u64::MAX)),
        ("r", serde_json::json!(-4)),
        ("r", serde_json::json!("4")),
        ("lora_alpha", serde_json::json!(1e308)),
        ("lora_alpha", serde_json::json!(-8.0)),
        ("lora_alpha", serde_json::Value::Null),
        ("lora_dropout", serde_json::json!(7.5)),
        ("use_rslora", serde_json::json!(true)),
        ("target_modules", serde_json::json!(42)),
        ("target_modules", serde_json::json!(".*")),
        ("peft_type", serde_json::json!("IA3")),
        ("rank_pattern", serde_json::json!({"q_proj": 8})),
        ("modules_to_save", serde_json::json!(["lm_head"])),
    ];
    edits
        .into_iter()
        .map(|(field, value)| {
            let mut edited = config.clone();
            edited[field] = value.clone();
            Mutation::Whole {
                label: format!("config {field} = {value}"),
                bytes: edited.to_string().into_bytes(),
            }
        })
        .collect()
}

#[test]
fn hostile_peft_adapters_are_typed_errors() {
    let source = fixtures("florence2/peft/adapter");
    let config = std::fs::read(source.join("adapter_config.json")).expect("config");
    let weights = std::fs::read(source.join("adapter_model.safetensors")).expect("weights");
    let dir = tempfile::tempdir().expect("tempdir");
    let config_path = dir.path().join("adapter_config.json");
    let weights_path = dir.path().join("adapter_model.safetensors");
    let module = bart();
    let load = || load_peft_adapter(&module, dir.path(), PREFIX, &lora());
    std::fs::write(&config_path, &config).expect("write");
    std::fs::write(&weights_path, &weights).expect("write");
    load().expect("the fixture loads");

    let mut report = Report::new("load_peft_adapter", SEED + 4);
    // The weights file: every structured edit, truncations, random changes.
    let mut weight_cases = truncations(weights.len(), 16, 60);
    weight_cases.extend(safetensors_edits(&weights, 4));
    weight_cases.extend(random_set(
        SEED + 4,
        weights.len(),
        &safetensors_hot(&weights),
        300,
    ));
    for mutation in &weight_cases {
        std::fs::write(&weights_path, mutation.apply(&weights)).expect("write");
        // Typed errors: an unknown or missing tensor is named by its key, not the file.
        report.run(mutation, None, load);
    }
    std::fs::write(&weights_path, &weights).expect("write");

    // The config file: field edits, truncations, random changes.
    let json: serde_json::Value = serde_json::from_slice(&config).expect("config JSON");
    let mut config_cases = config_edits(&json);
    config_cases.extend(truncations(config.len(), 8, 40));
    config_cases.extend(random_set(SEED + 5, config.len(), &[], 200));
    for mutation in &config_cases {
        std::fs::write(&config_path, mutation.apply(&config)).expect("write");
        report.run(mutation, Some("adapter_config.json"), load);
    }
    report.finish();
}
