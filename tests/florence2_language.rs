//! Florence-2's BART against transformers 5.24: golden encoder/decoder/logits, generation ids,
//! key/value cache, the prefix + last-layer split, checkpoint loading in both layouts.
//!
//! Fixtures: `tests/fixtures/florence2/` from `scripts/generate_florence2_reference.py` (a tiny
//! random Florence-2: d_model 32, 4 heads, 2 + 2 layers, vocabulary 96; see its README).

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
fn reads_both_config_layouts() {
    let native = text_config("tiny_native");
    let original = text_config("tiny_original");
    for config in [&native, &original] {
        config.validate().expect("valid");
        assert_eq!(
            (
                config.vocab_size,
                config.d_model,
                config.encoder_layers,
                config.decoder_layers
            ),
            (96, 32, 2, 2)
        );
        assert_eq!(config.max_position_embeddings, 64);
        assert_eq!(config.forced_eos_token_id, Some(2));
    }
    // transformers 5 drops forced_bos_token_id and the generation fields from BartConfig;
    // Microsoft's text_config has them.
    assert_eq!(native.forced_bos_token_id, None);
    assert_eq!(original.forced_bos_token_id, Some(0));
    let from_original = GenerationConfig::greedy(8).with_model_config(&original);
    assert_eq!(from_original.num_beams, 3);
    assert_eq!(from_original.no_repeat_ngram_size, 3);
    assert_eq!(from_original.early_stopping, EarlyStopping::Enabled);
    assert_eq!(from_original.forced_bos_token_id, Some(0));
}

#[test]
fn presets_and_validation() {
    let base = BartConfig::florence2_base();
    let large = BartConfig::florence2_large();
    base.validate().expect("base");
    large.validate().expect("large");
    assert_eq!(
        (base.d_model, base.encoder_layers, base.encoder_ffn_dim),
        (768, 6, 3072)
    );
    assert_eq!(
        (
            large.d_model,
            large.decoder_layers,
            large.decoder_attention_heads
        ),
        (1024, 12, 16)
    );
    let bad = [
        BartConfig {
            encoder_attention_heads: 5,
            ..base.clone()
        },
        BartConfig {
            decoder_layers: 0,
            ..base.clone()
        },
        BartConfig {
            activation_function: "swish".into(),
            ..base.clone()
        },
        BartConfig {
            eos_token_id: 60000,
            ..base.clone()
        },
        BartConfig {
            dropout: 1.0,
            ..base.clone()
        },
        BartConfig {
            tie_word_embeddings: false,
            ..base.clone()
        },
    ];
    for config in bad {
        assert!(
            matches!(config.validate(), Err(FedError::InvalidConfig { .. })),
            "{config:?}"
        );
    }
    // transformers' defaults for absent fields, unknown fields ignored.
    let parsed: BartConfig =
        serde_json::from_str(r#"{"d_model": 64, "whatever": 1}"#).expect("json");
    assert_eq!(
        parsed,
        BartConfig {
            d_model: 64,
            ..BartConfig::default()
        }
    );
    assert_eq!(parsed.encoder_layers, 12);
    assert_eq!(parsed.forced_eos_token_id, Some(2));
}

/// Every parameter of both loads, by path: equal (the fixture's weights are fp16 values) and
/// f32 (the original file is fp16: burn-store keeps the file dtype, the loader upcasts).
#[test]
fn native_and_original_files_load_the_same_f32_weights() {
    struct Collect(Vec<(String, Tensor<B, 1>, DType)>, Vec<String>);
    impl ModuleVisitor<B> for Collect {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.1.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.1.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let value = param.val();
            let dtype = value.dtype();
            let n = value.shape().num_elements();
            self.0.push((self.1.join("."), value.reshape([n]), dtype));
        }
    }
    let collect = |model: &BartModel<B>| {
        let mut c = Collect(Vec::new(), Vec::new());
        model.visit(&mut c);
        c.0
    };
    let [(_, native), (_, original)] = both();
    let (a, b) = (collect(&native), collect(&original));
    assert_eq!(a.len(), b.len());
    // shared, 2 x (positions + layernorm_embedding), 2 encoder layers x 16, 2 decoder x 26.
    assert_eq!(a.len(), 1 + 2 * 3 + 2 * 16 + 2 * 26);
    for ((pa, ta, da), (pb, tb, db)) in a.into_iter().zip(b) {
        assert_eq!(pa, pb);
        assert_eq!((da, db), (DType::F32, DType::F32), "{pa}");
        assert_eq!(max_abs_diff(ta, tb), 0.0, "{pa}");
    }
    // The original's final_logits_bias is all zero: dropped, as in the native port.
    assert!(original.final_logits_bias.is_none());
    assert_eq!(
        native.num_params(),
        96 * 32 + 2 * 66 * 32 + 2 * 64 + 2 * 8544 + 2 * 12832
    );
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

fn settings(name: &str) -> GenerationConfig {
    let json = std::fs::read_to_string(fixtures().join("tiny_io_generation.json")).expect("json");
    let value: serde_json::Value = serde_json::from_str(&json).expect("json");
    serde_json::from_value(value[name].clone()).expect("GenerationConfig")
}

#[test]
fn generation_matches_transformers_ids() {
    let encoder = float::<3>("encoder_hidden");
    for (layout, model) in both() {
        for name in ["greedy_ids", "beam_ids", "greedy_eos_ids", "beam_eos_ids"] {
            let config = settings(name);
            let expected = id_rows(name);
            for use_cache in [true, false] {
                let config = GenerationConfig {
                    use_cache,
                    ..config.clone()
                };
                let got = generate(&model, encoder.clone(), None, &config).expect("generate");
                assert_eq!(got, expected, "{layout:?} {name} (cache {use_cache})");
            }
            println!("{layout:?} {name}: identical {expected:?}");
        }
    }
}

#[test]
fn generation_settings_match_the_fixture_json() {
    let beam = settings("beam_ids");
    assert_eq!(
        beam,
        GenerationConfig {
            max_new_tokens: 8,
            ..GenerationConfig::florence2()
        },
        "Florence-2's defaults with 8 new tokens"
    );
    assert_eq!(settings("greedy_ids").num_beams, 1);
}

#[test]
fn bad_generation_settings_are_typed_errors() {
    let model = load(KeyLayout::Native);
    let encoder = float::<3>("encoder_hidden");
    let bad = [
        GenerationConfig {
            num_beams: 0,
            ..GenerationConfig::default()
        },
        GenerationConfig {
            max_new_tokens: 0,
            ..GenerationConfig::default()
        },
        GenerationConfig {
            length_penalty: f64::NAN,
            ..GenerationConfig::default()
        },
        GenerationConfig {
            eos_token_id: Some(96),
            ..GenerationConfig::default()
        },
        GenerationConfig {
            decoder_start_token_id: 500,
            ..GenerationConfig::default()
        },
    ];
    for config in bad {
        let result = generate(&model, encoder.clone(), None, &config);
        assert!(
            matches!(result, Err(FedError::InvalidConfig { .. })),
            "{config:?}"
        );
    }
    // More new tokens than the 64 decoder positions hold.
    let long = GenerationConfig {
        max_new_tokens: 100,
        num_beams: 1,
        forced_eos_token_id: None,
        eos_token_id: None,
        ..GenerationConfig::default()
    };
    assert!(matches!(
        generate(&model, encoder.clone(), None, &long),
        Err(FedError::InvalidConfig { .. })
    ));
    let wide = Tensor::<B, 3>::zeros([2, 13, 16], &Default::default());
    assert!(generate(&model, wide, None, &GenerationConfig::default()).is_err());
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

/// Rewrites the native file without one key / with one key reshaped, and checks the typed
/// error names it (as a burn path).
#[test]
fn missing_and_misshapen_keys_are_named() {
    let bytes = std::fs::read(fixtures().join("tiny_native/model.safetensors")).expect("file");
    let tensors = SafeTensors::deserialize(&bytes).expect("valid");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = text_config("tiny_native");
    let write = |skip: &str, reshape: &str| {
        let mut views: Vec<(String, TensorView<'_>)> = Vec::new();
        for (name, view) in tensors.tensors() {
            if name == skip {
                continue;
            }
            let view = if name == reshape {
                let n = view.shape().iter().product::<usize>();
                TensorView::new(view.dtype(), vec![n], view.data()).expect("view")
            } else {
                view
            };
            views.push((name, view));
        }
        let path = dir.path().join(format!("{skip}{reshape}.safetensors"));
        safetensors::serialize_to_file(views, None, &path).expect("write");
        path
    };
    let missing = write("model.language_model.encoder.layers.0.fc1.bias", "");
    match BartModel::<B>::load_language_model(
        &missing,
        KeyLayout::Native,
        &config,
        &Default::default(),
    ) {
        Err(WeightsError::MissingKey { key, others, .. }) => {
            assert_eq!((key.as_str(), others), ("encoder.layers.0.fc1.bias", 0));
        }
        other => panic!("expected MissingKey, got {other:?}"),
    }
    let misshapen = write(
        "",
        "model.language_model.decoder.layers.1.self_attn.v_proj.weight",
    );
    match BartModel::<B>::load_language_model(
        &misshapen,
        KeyLayout::Native,
        &config,
        &Default::default(),
    ) {
        Err(WeightsError::ShapeMismatch { key, .. }) => {
            assert_eq!(key, "decoder.layers.1.self_attn.v_proj.weight");
        }
        other => panic!("expected ShapeMismatch, got {other:?}"),
    }
    // Only a tied copy of the embedding: it stands in for shared.weight.
    let bytes_shared = tensors
        .tensor("model.language_model.shared.weight")
        .expect("shared");
    let mut views: Vec<(String, TensorView<'_>)> = tensors
        .tensors()
        .into_iter()
        .filter(|(name, _)| name != "model.language_model.shared.weight")
        .collect();
    views.push(("lm_head.weight".to_string(), bytes_shared));
    let tied = dir.path().join("tied.safetensors");
    safetensors::serialize_to_file(views, None, &tied).expect("write");
    let model =
        BartModel::<B>::load_language_model(&tied, KeyLayout::Native, &config, &Default::default())
            .expect("tied copy loads");
    let logits = model.logits(float("decoder_hidden"));
    check(
        "logits with lm_head.weight as shared",
        max_abs_diff(logits, float("logits")),
    );
}

/// Florence-2-base as built from the preset: every parameter path and shape equals the native
/// checkpoint's (`base_shapes.json`, PyTorch layout: linear weights transposed), 140,206,848
/// parameters (REFERENCE.md: 140.2M).
#[test]
fn base_preset_has_the_checkpoint_shapes() {
    struct Shapes(Vec<(String, Vec<usize>)>, Vec<String>, Vec<String>);
    impl ModuleVisitor<B> for Shapes {
        fn enter_module(&mut self, name: &str, container: &str) {
            if !container.starts_with("Enum:") || name != "Plain" {
                self.1.push(name.to_string());
            }
            self.2.push(container.to_string());
        }
        fn exit_module(&mut self, name: &str, container: &str) {
            if !container.starts_with("Enum:") || name != "Plain" {
                self.1.pop();
            }
            self.2.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let mut path = self.1.join(".");
            let mut shape = param.lazy_shape().to_vec();
            if self.2.last().is_some_and(|c| c == "Struct:Linear") && path.ends_with(".weight") {
                shape.reverse();
            }
            for (burn, torch) in [(".gamma", ".weight"), (".beta", ".bias")] {
                if let Some(stem) = path.strip_suffix(burn) {
                    path = format!("{stem}{torch}");
                }
            }
            self.0.push((path, shape));
        }
    }
    let model =
        BartModel::<B>::new(&BartConfig::florence2_base(), 0, &Default::default()).expect("base");
    // Visiting with `lazy_shape` draws no value (`num_params` would draw all 140M).
    let mut shapes = Shapes(Vec::new(), Vec::new(), Vec::new());
    model.visit(&mut shapes);
    let count: usize = shapes
        .0
        .iter()
        .map(|(_, s)| s.iter().product::<usize>())
        .sum();
    assert_eq!(count, 140_206_848);
    let json =
        std::fs::read_to_string(fixtures().join("base_shapes.json")).expect("base_shapes.json");
    let value: serde_json::Value = serde_json::from_str(&json).expect("json");
    let native = value["native"].as_object().expect("native");
    let mut expected: Vec<(String, Vec<usize>)> = native
        .iter()
        .filter_map(|(key, shape)| {
            let path = key.strip_prefix("model.language_model.")?;
            (!path.ends_with("embed_tokens.weight")).then(|| {
                let shape = serde_json::from_value(shape.clone()).expect("shape");
                (path.to_string(), shape)
            })
        })
        .collect();
    let mut got = shapes.0;
    expected.sort();
    got.sort();
    assert_eq!(got, expected);
}

/// A wider generation check than the four fixture cases (which neither block an n-gram nor
/// stop a beam search early): a grid of 1008 settings (greedy and 2, 3, 4 beams; n-gram 0, 2,
/// 3; early stopping true, false, "never"; length penalty 1, 0.6, 2; 12 or 40 new tokens; eos
/// 2, 34 or 74; forced `<s>` or not) generated by transformers from the fixture's
/// `encoder_hidden`:
///
/// `tests/fixtures/florence2/generation_grid.json`, made by
/// `scripts/generate_florence2_generation_grid.py` (transformers 5.24.0).
#[test]
fn generation_grid_matches_transformers() {
    let model = load(KeyLayout::Native);
    let encoder = float::<3>("encoder_hidden");
    let path = fixtures().join("generation_grid.json");
    let json = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let cases: Vec<serde_json::Value> = serde_json::from_str(&json).expect("json");
    let mut mismatches = 0;
    for case in &cases {
        let config: GenerationConfig =
            serde_json::from_value(case["settings"].clone()).expect("settings");
        let expected: Vec<Vec<u32>> = serde_json::from_value(case["ids"].clone()).expect("ids");
        let got = generate(&model, encoder.clone(), None, &config).expect("generate");
        if got != expected {
            mismatches += 1;
            println!("{}: expected {expected:?}, got {got:?}", case["settings"]);
        }
    }
    println!("{} cases, {mismatches} mismatches", cases.len());
    assert_eq!(mismatches, 0);
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
