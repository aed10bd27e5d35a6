//! Florence-2's BART against transformers 5.24: golden encoder/decoder/logits, generation ids,
//! key/value cache, the prefix + last-layer split, checkpoint loading in both layouts.
//!
//! Fixtures: `tests/fixtures/florence2/` from `scripts/generate_florence2_reference.py` (a tiny
//! random Florence-2: d_model 32, 4 heads, 2 + 2 layers, vocabulary 96; see its README).

#[path = "../common/mod.rs"]
mod common;

use burn::backend::Flex;
use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::DType;
use common::{TensorFile, florence2_fixtures as fixtures, max_abs_diff};
use fedvlm::models::WeightsError;
use fedvlm::models::florence2::bart::{BartConfig, BartModel, KeyLayout};
use fedvlm::models::florence2::generate::{EarlyStopping, GenerationConfig, generate};
use fedvlm::{FedError, LoraConfig};
use safetensors::SafeTensors;
use safetensors::tensor::TensorView;

mod checkpoints;
mod generation;

type B = Flex;

const TOLERANCE: f32 = 1e-4;
/// Image tokens at the start of `inputs_embeds` (1 + 2 * 2).
const IMAGE_TOKENS: usize = 5;

fn io() -> TensorFile {
    TensorFile::open(fixtures().join("tiny_io.safetensors"))
}

fn float<const D: usize>(name: &str) -> Tensor<B, D> {
    io().float(name, &Default::default())
}

fn int_tensor(name: &str) -> Tensor<B, 2, Int> {
    io().int(name, &Default::default())
}

fn id_rows(name: &str) -> Vec<Vec<u32>> {
    io().id_rows(name)
}

fn text_config(layout: &str) -> BartConfig {
    let json =
        std::fs::read_to_string(fixtures().join(layout).join("config.json")).expect("config");
    let value: serde_json::Value = serde_json::from_str(&json).expect("json");
    serde_json::from_value(value["text_config"].clone()).expect("BartConfig")
}

fn load(layout: KeyLayout) -> BartModel<B> {
    let (dir, file) = match layout {
        KeyLayout::Native => ("tiny_native", "model.safetensors"),
        KeyLayout::Original => ("tiny_original", "pytorch_model.bin"),
    };
    let path = fixtures().join(dir).join(file);
    BartModel::load_language_model(&path, layout, &text_config(dir), &Default::default())
        .unwrap_or_else(|e| panic!("{layout:?}: {e}"))
}

fn both() -> [(KeyLayout, BartModel<B>); 2] {
    [
        (KeyLayout::Native, load(KeyLayout::Native)),
        (KeyLayout::Original, load(KeyLayout::Original)),
    ]
}

fn check(what: &str, diff: f32) {
    println!("{what}: max |diff| {diff:.3e}");
    assert!(diff < TOLERANCE, "{what} differs by {diff}");
}

#[test]
fn embed_tokens_equals_the_text_part_of_inputs_embeds() {
    let model = load(KeyLayout::Native);
    let embeds = model.embed_tokens(int_tensor("input_ids"));
    let reference =
        float::<3>("inputs_embeds").slice([0..2, IMAGE_TOKENS..IMAGE_TOKENS + 8, 0..32]);
    check("embed_tokens", max_abs_diff(embeds, reference));
}

#[test]
fn encoder_matches_transformers() {
    for (layout, model) in both() {
        let ones = Tensor::<B, 2, Int>::ones([2, 13], &Default::default());
        let hidden = model.encode(float("inputs_embeds"), None).expect("encode");
        let masked = model
            .encode(float("inputs_embeds"), Some(ones))
            .expect("encode");
        check(
            &format!("{layout:?} encoder_hidden"),
            max_abs_diff(hidden.clone(), float("encoder_hidden")),
        );
        assert_eq!(max_abs_diff(hidden, masked), 0.0);
    }
}

#[test]
fn decoder_and_logits_match_transformers() {
    for (layout, model) in both() {
        let hidden = model
            .decode(
                int_tensor("decoder_input_ids"),
                float("encoder_hidden"),
                None,
                None,
            )
            .expect("decode");
        check(
            &format!("{layout:?} decoder_hidden"),
            max_abs_diff(hidden.clone(), float("decoder_hidden")),
        );
        check(
            &format!("{layout:?} logits"),
            max_abs_diff(model.logits(hidden), float("logits")),
        );
        let end_to_end = model
            .forward(
                float("inputs_embeds"),
                None,
                int_tensor("decoder_input_ids"),
            )
            .expect("forward");
        check(
            &format!("{layout:?} logits end to end"),
            max_abs_diff(end_to_end, float("logits")),
        );
    }
}

/// Feeding one token at a time through the cache gives the hidden states of the full decode.
#[test]
fn cached_decoding_equals_uncached() {
    let model = load(KeyLayout::Native);
    let ids = int_tensor("decoder_input_ids");
    let encoder = float::<3>("encoder_hidden");
    let full = model
        .decode(ids.clone(), encoder.clone(), None, None)
        .expect("decode");
    let mut cache = model.new_cache();
    let mut worst = 0.0f32;
    for t in 0..6 {
        let step = model
            .decode(
                ids.clone().slice([0..2, t..t + 1]),
                encoder.clone(),
                None,
                Some(&mut cache),
            )
            .expect("cached step");
        worst = worst.max(max_abs_diff(
            step,
            full.clone().slice([0..2, t..t + 1, 0..32]),
        ));
    }
    assert_eq!(cache.seq_len(), 6);
    println!("cached vs uncached decode: max |diff| {worst:.3e}");
    assert!(worst < 1e-5, "{worst}");
    // Two tokens, then four at once.
    let mut cache = model.new_cache();
    model
        .decode(
            ids.clone().slice([0..2, 0..2]),
            encoder.clone(),
            None,
            Some(&mut cache),
        )
        .expect("prefill");
    let rest = model
        .decode(ids.slice([0..2, 2..6]), encoder, None, Some(&mut cache))
        .expect("rest");
    assert!(max_abs_diff(rest, full.slice([0..2, 2..6, 0..32])) < 1e-5);
}

/// The frozen-prefix split: `decode_prefix` then `decode_last_layer` is `logits(decode(..))`,
/// with and without the cache.
#[test]
fn prefix_and_last_layer_compose_to_decode() {
    let model = load(KeyLayout::Native);
    let ids = int_tensor("decoder_input_ids");
    let encoder = float::<3>("encoder_hidden");
    let logits = model.logits(
        model
            .decode(ids.clone(), encoder.clone(), None, None)
            .expect("decode"),
    );
    let prefix = model
        .decode_prefix(ids.clone(), encoder.clone(), None, None)
        .expect("prefix");
    let split = model
        .decode_last_layer(prefix, encoder.clone(), None, None)
        .expect("last layer");
    let diff = max_abs_diff(split, logits.clone());
    println!("decode_prefix + decode_last_layer vs decode: max |diff| {diff:.3e}");
    assert_eq!(diff, 0.0);
    check(
        "split logits vs transformers",
        max_abs_diff(logits.clone(), float("logits")),
    );

    let mut cache = model.new_cache();
    for t in 0..6 {
        let step_ids = ids.clone().slice([0..2, t..t + 1]);
        let prefix = model
            .decode_prefix(step_ids, encoder.clone(), None, Some(&mut cache))
            .expect("prefix step");
        let step = model
            .decode_last_layer(prefix, encoder.clone(), None, Some(&mut cache))
            .expect("last layer step");
        assert!(max_abs_diff(step, logits.clone().slice([0..2, t..t + 1, 0..96])) < 1e-5);
    }
}

#[test]
fn adapters_by_path_leave_the_outputs_unchanged() {
    let model = load(KeyLayout::Native);
    let encoder = float::<3>("encoder_hidden");
    let ids = int_tensor("decoder_input_ids");
    let before = model.logits(
        model
            .decode(ids.clone(), encoder.clone(), None, None)
            .expect("decode"),
    );
    let paths = model.dense_paths();
    assert_eq!(paths.len(), 2 * 6 + 2 * 10);
    let targets = model.default_adapter_targets();
    assert_eq!(
        targets,
        [
            "decoder.layers.1.self_attn.q_proj",
            "decoder.layers.1.self_attn.v_proj"
        ]
    );
    let lora = LoraConfig::paper();
    let mut adapted = model;
    for (i, path) in targets.iter().enumerate() {
        adapted = adapted
            .map_dense(path, |dense| dense.adapt(&lora, i as u64, path))
            .expect("adapt");
    }
    for path in &paths {
        let dense = adapted.dense(path).expect("path");
        assert_eq!(dense.is_adapted(), targets.contains(path), "{path}");
    }
    let after = adapted.logits(adapted.decode(ids, encoder, None, None).expect("decode"));
    assert_eq!(max_abs_diff(before, after), 0.0);
    let unknown = adapted.map_dense("decoder.layers.7.fc1", Ok);
    assert!(matches!(unknown, Err(FedError::UnsupportedLayer(_))));
}

#[test]
fn final_logits_bias_is_added() {
    let model = load(KeyLayout::Native);
    let hidden = float::<3>("decoder_hidden");
    let plain = model.logits(hidden.clone());
    let bias = Tensor::<B, 1, Int>::arange(0..96, &Default::default()).float();
    let model = model
        .with_final_logits_bias(Some(bias.clone()))
        .expect("bias");
    let biased = model.logits(hidden);
    assert!(max_abs_diff(biased, plain + bias.unsqueeze::<3>()) < 1e-5);
    let wrong = Tensor::<B, 1>::zeros([5], &Default::default());
    assert!(model.with_final_logits_bias(Some(wrong)).is_err());
}

/// Training through the model: with pLoRA on the default targets and everything else frozen,
/// a backward pass reaches the adapters' `B` (and `A` under pLoRA) and no frozen weight.
#[test]
fn gradients_reach_only_the_adapters() {
    type AB = burn::backend::Autodiff<Flex>;
    let config = text_config("tiny_native");
    let path = fixtures().join("tiny_native/model.safetensors");
    let device = Default::default();
    let mut model =
        BartModel::<AB>::load_language_model(&path, KeyLayout::Native, &config, &device)
            .expect("load");
    let lora = LoraConfig::new(4, 8.0);
    for (i, target) in model.default_adapter_targets().iter().enumerate() {
        model = model
            .map_dense(target, |dense| dense.adapt(&lora, i as u64, target))
            .expect("adapt");
    }
    let model = fedvlm::lora::freeze_all(model, fedvlm::Sharing::PLora);
    let embeds = Tensor::<AB, 3>::from_inner(float::<3>("inputs_embeds"));
    let ids = Tensor::<AB, 2, Int>::from_inner(int_tensor("decoder_input_ids"));
    let logits = model.forward(embeds, None, ids).expect("forward");
    let grads = logits.powi_scalar(2).mean().backward();
    let last = model.decoder.layers.last().expect("layer");
    let adapted = |dense: &fedvlm::lora::Dense<AB>| match dense {
        fedvlm::lora::Dense::Lora(lora) => lora
            .lora_b
            .grad(&grads)
            .map(|g| g.abs().sum().into_scalar()),
        fedvlm::lora::Dense::Plain(_) => panic!("not adapted"),
    };
    for dense in [&last.self_attn.q_proj, &last.self_attn.v_proj] {
        let g = adapted(dense).expect("lora_b has a gradient");
        assert!(g > 0.0);
    }
    assert!(model.shared.weight.grad(&grads).is_none());
    match &last.fc1 {
        fedvlm::lora::Dense::Plain(linear) => assert!(linear.weight.grad(&grads).is_none()),
        fedvlm::lora::Dense::Lora(_) => panic!("fc1 is not a target"),
    }
}
