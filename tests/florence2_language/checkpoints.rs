//! Checkpoints and configs: both key and config layouts, presets, missing or misshapen keys.

use super::*;

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
