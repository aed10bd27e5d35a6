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
            .generate_masked(
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

/// The federated state of the core crate works on Florence-2 unchanged: under each rule exactly
/// the rule's adapter matrices of the two targets travel, and only the adapters train.
#[test]
fn federated_state_on_florence2_follows_the_sharing_rule() {
    use burn::backend::Autodiff;
    use fedvlm::Sharing;
    use fedvlm::federated::{ShareSpec, collect_shared};
    use fedvlm::lora::freeze_all;
    use fedvlm::params::parameter_shapes;

    type AB = Autodiff<Flex>;
    let model = Florence2::<AB>::load(
        florence2_fixtures().join("tiny_native"),
        &Default::default(),
    )
    .expect("load");
    let targets = model.default_adapter_targets();
    let model = model
        .with_adapters(&LoraConfig::paper(), &targets, 11)
        .expect("adapters");
    let total = parameter_shapes::<AB, _>(&model).len();
    for sharing in Sharing::ALL {
        let model = freeze_all(model.clone(), sharing);
        let payload = collect_shared(&model, &ShareSpec::new(sharing));
        let mut expected = Vec::new();
        for target in &targets {
            for (matrix, name) in [(AdapterMatrix::A, "lora_a"), (AdapterMatrix::B, "lora_b")] {
                if sharing.shares(matrix) {
                    expected.push(format!("{target}.{name}"));
                }
            }
        }
        expected.sort();
        let names: Vec<&str> = payload.names().collect();
        assert_eq!(names, expected, "{sharing:?}");
        // Trainable tensors: the adapters the rule trains, nothing else of the ~300.
        let trainable = count_trainable(&model);
        let per_target = usize::from(sharing.trains(AdapterMatrix::A)) + 1;
        assert_eq!(
            trainable,
            per_target * targets.len(),
            "{sharing:?} of {total}"
        );
    }
    let plora = collect_shared(
        &freeze_all(model, Sharing::PLora),
        &ShareSpec::new(Sharing::PLora),
    );
    // B of q_proj and v_proj: [d_model, rank] each.
    assert!(plora.tensors.values().all(|t| t.shape == [32, 4]));
}

fn count_trainable<M: burn::module::Module<burn::backend::Autodiff<Flex>>>(model: &M) -> usize {
    use burn::module::{ModuleVisitor, Param};
    struct Count(usize);
    impl<B: Backend> ModuleVisitor<B> for Count {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if param.is_require_grad() {
                self.0 += 1;
            }
        }
    }
    let mut count = Count(0);
    model.visit(&mut count);
    count.0
}

/// Microsoft's keys of the real Florence-2-base (`base_shapes.json`, listed by
/// `scripts/generate_florence2_reference.py` from transformers' conversion) map through the
/// crate's `ORIGINAL_KEY_RULES` onto exactly the native keys, with the same shapes (the raw
/// `image_projection` transposed).
#[test]
fn base_original_keys_map_onto_the_native_ones() {
    use fedvlm::models::florence2::{bart, davit, projector};
    use std::collections::BTreeMap;

    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(florence2_fixtures().join("base_shapes.json")).expect("shapes"),
    )
    .expect("json");
    let shapes = |layout: &str| -> BTreeMap<String, Vec<usize>> {
        serde_json::from_value(json[layout].clone()).expect("key -> shape")
    };
    let rename = |key: &str, rules: &[(&str, &str)]| -> Option<String> {
        rules.iter().find_map(|(from, to)| {
            let re = fancy_regex::Regex::new(from).expect("rule");
            re.is_match(key)
                .expect("match")
                .then(|| re.replace(key, *to).into_owned())
        })
    };
    let mut mapped = BTreeMap::new();
    for (key, mut shape) in shapes("original") {
        let native = if let Some(k) = rename(&key, davit::ORIGINAL_KEY_RULES)
            .or_else(|| rename(&key, projector::ORIGINAL_KEY_RULES))
        {
            format!("model.{k}")
        } else if key.starts_with("vision_tower.") {
            format!("model.{key}") // the same name in both layouts
        } else if key == "language_model.final_logits_bias" {
            continue; // zero in Microsoft's checkpoints, absent from the native model
        } else {
            let k = rename(&key, bart::ORIGINAL_KEY_RULES).expect("a rule for every key");
            if k.starts_with("lm_head.") {
                k
            } else {
                format!("model.language_model.{k}")
            }
        };
        if key == "image_projection" {
            shape.reverse();
        }
        mapped.insert(native, shape);
    }
    let native = shapes("native");
    // Tied copies of `shared` may be listed by one layout and not the other.
    let tied = |k: &String| k.ends_with("embed_tokens.weight") || k == "lm_head.weight";
    let strip = |m: &BTreeMap<String, Vec<usize>>| -> BTreeMap<String, Vec<usize>> {
        m.iter()
            .filter(|(k, _)| !tied(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    assert_eq!(strip(&mapped), strip(&native));
}
