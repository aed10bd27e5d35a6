//! The whole Florence-2 against transformers 5.24 (tiny random model, `tests/fixtures/florence2/`):
//! logits and generated ids from both checkpoint layouts, padded prompts, adapters at
//! initialisation, a peft adapter, and typed errors for broken checkpoints.

mod common;

use std::collections::HashMap;
use std::path::Path;

use burn::backend::Flex;
use burn::prelude::*;
use common::{TensorFile, florence2_fixtures, max_abs_diff};
use fedvlm::lora::{AdapterMatrix, load_peft_adapter, peft_key};
use fedvlm::models::WeightsError;
use fedvlm::models::florence2::{CheckpointLayout, Florence2, Florence2Config, GenerationConfig};
use fedvlm::{FedError, LoraConfig};

type B = Flex;

const TOLERANCE: f32 = 1e-4;
/// Image tokens at the start of the encoder input (1 + 2 * 2).
const IMAGE_TOKENS: usize = 5;

fn io() -> TensorFile {
    TensorFile::open(florence2_fixtures().join("tiny_io.safetensors"))
}

fn load(dir: &str) -> Florence2<B> {
    Florence2::load(florence2_fixtures().join(dir), &Default::default())
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
}

fn logits_of(model: &Florence2<B>) -> Tensor<B, 3> {
    let io = io();
    let device = Default::default();
    model
        .forward(
            io.float("pixel_values", &device),
            io.int("input_ids", &device),
            io.int("decoder_input_ids", &device),
        )
        .expect("forward")
}

fn generation_settings(name: &str) -> GenerationConfig {
    let path = florence2_fixtures().join("tiny_io_generation.json");
    let json: HashMap<String, serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(path).expect("settings")).expect("json");
    serde_json::from_value(json[name].clone()).expect("generation settings")
}

#[test]
fn both_layouts_parse_to_the_same_architecture() {
    let dir = florence2_fixtures();
    let (native, native_layout) =
        Florence2Config::from_file(dir.join("tiny_native/config.json")).expect("native");
    let (original, original_layout) =
        Florence2Config::from_file(dir.join("tiny_original/config.json")).expect("original");
    assert_eq!(native_layout, CheckpointLayout::Native);
    assert_eq!(original_layout, CheckpointLayout::Original);
    assert_eq!(native.vision.embed_dim, original.vision.embed_dim);
    assert_eq!(native.vision.depths, original.vision.depths);
    assert_eq!(
        native.vision.max_position_embeddings,
        original.vision.max_position_embeddings
    );
    assert_eq!(
        native.vision.max_temporal_embeddings,
        original.vision.max_temporal_embeddings
    );
    assert_eq!(native.vision.projection_dim, original.vision.projection_dim);
    assert_eq!(native.text.d_model, original.text.d_model);
    assert_eq!(native.text.decoder_layers, original.text.decoder_layers);
    Florence2Config::base().validate().expect("base");
    Florence2Config::large().validate().expect("large");
}

#[test]
fn logits_match_transformers_from_both_layouts() {
    let expected = io().float::<B, 3>("logits", &Default::default());
    for dir in ["tiny_native", "tiny_original"] {
        let diff = max_abs_diff(logits_of(&load(dir)), expected.clone());
        assert!(diff < TOLERANCE, "{dir}: logits differ by {diff}");
    }
}

#[test]
fn generated_ids_match_transformers() {
    let io = io();
    let device = Default::default();
    let model = load("tiny_original");
    for name in ["greedy_ids", "beam_ids", "greedy_eos_ids", "beam_eos_ids"] {
        let got = model
            .generate(
                io.float("pixel_values", &device),
                io.int("input_ids", &device),
                None,
                &generation_settings(name),
            )
            .expect("generate");
        assert_eq!(got, io.id_rows(name), "{name}");
    }
}

#[test]
fn padded_prompts_match_transformers() {
    let io = io();
    let device = Default::default();
    let model = load("tiny_native");
    let mask: Tensor<B, 2, Int> = io.int("padded_attention_mask", &device);
    let [n, s] = mask.dims();
    let text_mask = mask.slice([0..n, IMAGE_TOKENS..s]);
    let logits = model
        .forward_masked(
            io.float("pixel_values", &device),
            io.int("padded_input_ids", &device),
            Some(text_mask.clone()),
            io.int("decoder_input_ids", &device),
        )
        .expect("forward");
    let diff = max_abs_diff(logits, io.float("padded_logits", &device));
    assert!(diff < TOLERANCE, "padded logits differ by {diff}");
    for (name, settings) in [
        ("padded_greedy_ids", "greedy_ids"),
        ("padded_beam_ids", "beam_ids"),
    ] {
        let got = model
            .generate(
                io.float("pixel_values", &device),
                io.int("padded_input_ids", &device),
                Some(text_mask.clone()),
                &generation_settings(settings),
            )
            .expect("generate");
        assert_eq!(got, io.id_rows(name), "{name}");
    }
}

#[test]
fn adapters_at_initialisation_change_nothing() {
    let model = load("tiny_native");
    let before = logits_of(&model);
    let targets = model.default_adapter_targets();
    assert_eq!(
        targets,
        [
            "language_model.decoder.layers.1.self_attn.q_proj",
            "language_model.decoder.layers.1.self_attn.v_proj"
        ]
    );
    let adapted = model
        .with_adapters(&LoraConfig::paper(), &targets, 7)
        .expect("adapters");
    let after = logits_of(&adapted);
    assert_eq!(
        before.into_data().to_vec::<f32>().expect("f32"),
        after.into_data().to_vec::<f32>().expect("f32"),
        "B = 0 must leave the logits bit-identical"
    );
}

#[test]
fn unknown_adapter_targets_are_typed_errors() {
    let model = load("tiny_native");
    for target in [
        "vision_tower.convs.0.conv",
        "language_model.decoder.layers.9.self_attn.q_proj",
    ] {
        let err = model
            .clone()
            .with_adapters(&LoraConfig::paper(), &[target], 1)
            .expect_err(target);
        assert!(
            matches!(err, FedError::UnsupportedLayer(_)),
            "{target}: {err}"
        );
    }
}

/// An adapter written by Python peft (`scripts/generate_peft_fixture.py`) gives peft's logits.
#[test]
fn a_peft_adapter_gives_peft_logits() {
    let lora = LoraConfig::new(4, 8.0);
    let model = load("tiny_native");
    let targets = model.default_adapter_targets();
    let model = model.with_adapters(&lora, &targets, 3).expect("adapters");
    let dir = florence2_fixtures().join("peft");
    assert_eq!(
        peft_key("model.", &targets[0], AdapterMatrix::A),
        "base_model.model.model.language_model.decoder.layers.1.self_attn.q_proj.lora_A.weight"
    );
    let model = load_peft_adapter(&model, dir.join("adapter"), "model.", &lora).expect("peft");
    let expected =
        TensorFile::open(dir.join("io.safetensors")).float::<B, 3>("logits", &Default::default());
    let diff = max_abs_diff(logits_of(&model), expected);
    assert!(diff < TOLERANCE, "adapted logits differ by {diff}");
}

/// Rewrites the native fixture with `edit` applied to its tensors, into a temporary folder.
fn edited_checkpoint(
    edit: impl FnOnce(&mut Vec<(String, Vec<usize>, Vec<u8>)>),
) -> tempfile::TempDir {
    let source = florence2_fixtures().join("tiny_native");
    let bytes = std::fs::read(source.join("model.safetensors")).expect("fixture");
    let file = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = file
        .tensors()
        .into_iter()
        .map(|(name, view)| (name, view.shape().to_vec(), view.data().to_vec()))
        .collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    edit(&mut tensors);
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(name, shape, data)| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                    .expect("view");
            (name.clone(), view)
        })
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    safetensors::serialize_to_file(views, None, &dir.path().join("model.safetensors"))
        .expect("write");
    std::fs::copy(source.join("config.json"), dir.path().join("config.json")).expect("config");
    dir
}

fn load_err(dir: &Path) -> WeightsError {
    Florence2::<B>::load(dir, &Default::default()).expect_err("broken checkpoint must not load")
}

#[test]
fn a_missing_key_is_named() {
    let key = "model.language_model.decoder.layers.1.fc2.bias";
    let dir = edited_checkpoint(|tensors| tensors.retain(|t| t.0 != key));
    match load_err(dir.path()) {
        WeightsError::MissingKey { key, .. } => {
            assert!(key.contains("decoder.layers.1.fc2.bias"), "{key}")
        }
        other => panic!("expected MissingKey, got {other}"),
    }
}

#[test]
fn a_misshapen_key_is_named() {
    let key = "model.vision_tower.convs.1.norm.weight";
    let dir = edited_checkpoint(|tensors| {
        let entry = tensors.iter_mut().find(|t| t.0 == key).expect("key");
        entry.1 = vec![entry.1[0] + 1];
        entry.2.extend_from_slice(&1f32.to_le_bytes());
    });
    match load_err(dir.path()) {
        WeightsError::ShapeMismatch { key, .. } => assert!(key.contains("convs.1.norm"), "{key}"),
        other => panic!("expected ShapeMismatch, got {other}"),
    }
}

#[test]
fn a_stray_key_is_named() {
    let dir = edited_checkpoint(|tensors| {
        tensors.push((
            "model.extra_head.weight".into(),
            vec![1],
            1f32.to_le_bytes().to_vec(),
        ));
    });
    match load_err(dir.path()) {
        WeightsError::UnexpectedKey { key, .. } => assert_eq!(key, "model.extra_head.weight"),
        other => panic!("expected UnexpectedKey, got {other}"),
    }
}

#[test]
fn a_folder_without_weights_is_a_read_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        florence2_fixtures().join("tiny_native/config.json"),
        dir.path().join("config.json"),
    )
    .expect("config");
    assert!(matches!(load_err(dir.path()), WeightsError::Read { .. }));
}
