//! Florence-2's DaViT vision tower and projector against transformers 5.24's native
//! implementation: golden stage outputs and image features from both checkpoint layouts,
//! half-precision loading, configuration and checkpoint errors, the window padding path.
//!
//! Fixtures: `tests/fixtures/florence2/` (see its README), made by
//! `scripts/generate_florence2_reference.py`.

mod common;

use std::path::PathBuf;

use burn::backend::{Autodiff, Flex};
use burn::module::{Module, Param};
use burn::prelude::*;
use burn::tensor::{DType, Distribution};
use burn_store::{ModuleSnapshot, ModuleStore, PytorchStore};
use common::{TensorFile, florence2_fixtures as fixtures, max_abs_diff};
use fedvlm::FedError;
use fedvlm::models::WeightsError;
use fedvlm::models::florence2::davit::weights::{
    self, PROJECTOR_PREFIX, VISION_TOWER_PREFIX, checkpoint_shapes,
};
use fedvlm::models::florence2::davit::window::{
    WindowAttention, pad_to_multiple, window_merge, window_partition,
};
use fedvlm::models::florence2::davit::{self, Davit, DavitConfig};
use fedvlm::models::florence2::projector::{self, MultiModalProjector, cosine_table};
use safetensors::SafeTensors;

type B = Flex;
type AB = Autodiff<Flex>;

const TOLERANCE: f32 = 1e-4;

fn native_file() -> PathBuf {
    fixtures().join("tiny_native/model.safetensors")
}

fn original_file() -> PathBuf {
    fixtures().join("tiny_original/pytorch_model.bin")
}

/// The tiny tower of the fixture README, read from the native `config.json`'s `vision_config`.
fn tiny_config() -> DavitConfig {
    let text = std::fs::read_to_string(fixtures().join("tiny_native/config.json")).expect("config");
    let json: serde_json::Value = serde_json::from_str(&text).expect("json");
    serde_json::from_value(json["vision_config"].clone()).expect("vision_config")
}

/// One f32 tensor of `tiny_io.safetensors`.
fn reference<Bk: Backend, const D: usize>(name: &str) -> Tensor<Bk, D> {
    TensorFile::open(fixtures().join("tiny_io.safetensors")).float(name, &Default::default())
}

/// Runs tower and projector on the fixture's images and compares every stage and the image
/// features; returns the largest difference.
fn compare_with_reference<Bk: Backend>(
    tower: &Davit<Bk>,
    projector: &MultiModalProjector<Bk>,
    label: &str,
) -> f32 {
    let pixel_values = reference::<Bk, 4>("pixel_values");
    let stages = tower.forward_stages(pixel_values.clone()).expect("forward");
    assert_eq!(stages.len(), 4);
    let grids = [(16, 16), (8, 8), (4, 4), (2, 2)];
    let mut worst = 0.0f32;
    for (i, stage) in stages.iter().enumerate() {
        assert_eq!(stage.grid, grids[i], "stage {i} grid");
        let diff = max_abs_diff(
            stage.tokens.clone(),
            reference::<Bk, 3>(&format!("vision_stage_{i}")),
        );
        println!("{label}: vision_stage_{i} max abs diff {diff:e}");
        assert!(
            diff <= TOLERANCE,
            "{label}: vision_stage_{i} differs by {diff}"
        );
        worst = worst.max(diff);
    }
    let (tokens, grid) = tower.forward(pixel_values).expect("forward");
    assert_eq!(grid, (2, 2));
    let features = projector.forward(tokens, grid).expect("projector");
    let diff = max_abs_diff(features, reference::<Bk, 3>("image_features"));
    println!("{label}: image_features max abs diff {diff:e}");
    assert!(
        diff <= TOLERANCE,
        "{label}: image_features differ by {diff}"
    );
    worst.max(diff)
}

#[test]
fn native_checkpoint_matches_transformers() {
    let (tower, projector) =
        weights::load_native::<B>(native_file(), &tiny_config(), &Default::default())
            .expect("load native");
    compare_with_reference(&tower, &projector, "native");
}

#[test]
fn original_fp16_checkpoint_matches_transformers() {
    let (tower, projector) =
        weights::load_original::<B>(original_file(), &tiny_config(), &Default::default())
            .expect("load original");
    // Every parameter was upcast to the backend's f32.
    let dtypes = parameter_dtypes(&tower)
        .into_iter()
        .chain(parameter_dtypes(&projector));
    assert!(dtypes.into_iter().all(|d| d == DType::F32));
    compare_with_reference(&tower, &projector, "original");
}

#[test]
fn both_layouts_load_the_same_values() {
    let device = Default::default();
    let (tower_n, proj_n) =
        weights::load_native::<B>(native_file(), &tiny_config(), &device).expect("native");
    let (tower_o, proj_o) =
        weights::load_original::<B>(original_file(), &tiny_config(), &device).expect("original");
    let same = |a: Vec<burn_store::TensorSnapshot>, b: Vec<burn_store::TensorSnapshot>| {
        assert_eq!(a.len(), b.len());
        for (a, b) in a.iter().zip(&b) {
            assert_eq!(a.full_path(), b.full_path());
            let (da, db) = (a.to_data().expect("data"), b.to_data().expect("data"));
            assert_eq!(da, db, "{}", a.full_path());
        }
    };
    same(
        tower_n.collect(None, None, false),
        tower_o.collect(None, None, false),
    );
    // In particular `image_projection.weight`: transposed from the native (out, in), kept from
    // the original raw (in, out).
    same(
        proj_n.collect(None, None, false),
        proj_o.collect(None, None, false),
    );
    assert_eq!(proj_n.image_projection.weight.dims(), [40, 32]);
}

fn parameter_dtypes<Bk: Backend, M: ModuleSnapshot<Bk>>(module: &M) -> Vec<DType> {
    module
        .collect(None, None, false)
        .iter()
        .map(|s| s.dtype)
        .collect()
}

/// The finding behind `CastFloatAdapter`: burn-store's `PytorchStore` loads fp16 tensors as fp16
/// parameters into an f32 model (it neither upcasts nor reports a dtype mismatch).
#[test]
fn pytorch_store_alone_keeps_fp16() {
    let config = tiny_config();
    let mut tower: Davit<B> = config.init(&Default::default()).expect("init");
    let mut store = PytorchStore::from_file(original_file())
        .map_indices_contiguous(false)
        .allow_partial(true)
        .validate(false)
        .with_key_remapping(r"^vision_tower\.convs\.(\d+)\.proj\.", "convs.${1}.conv.");
    let keys = store.keys().expect("keys");
    assert!(keys.iter().any(|k| k == "convs.0.conv.weight"));
    let result = tower.load_from(&mut store).expect("apply");
    assert!(result.applied.iter().any(|k| k == "convs.0.conv.weight"));
    assert!(result.errors.is_empty(), "{result}");
    assert_eq!(tower.convs[0].conv.weight.val().dtype(), DType::F16);
}

#[test]
fn forward_runs_under_autodiff() {
    let device = Default::default();
    let (tower, projector) =
        weights::load_native::<AB>(native_file(), &tiny_config(), &device).expect("load");
    compare_with_reference(&tower, &projector, "autodiff");
    let (tokens, grid) = tower
        .forward(reference::<AB, 4>("pixel_values"))
        .expect("forward");
    let loss = projector
        .forward(tokens, grid)
        .expect("projector")
        .powi_scalar(2)
        .sum();
    let grads = loss.backward();
    let qkv = &tower.blocks[0][0].spatial_block.window_attn.qkv.weight;
    let grad = qkv.grad(&grads).expect("gradient reaches stage 0");
    assert!(grad.abs().sum().into_scalar() > 0.0);
}

#[test]
fn cosine_table_equals_the_saved_buffer() {
    let shapes = checkpoint_shapes(native_file(), &[]).expect("shapes");
    let key = "model.multi_modal_projector.visual_temporal_embed.pos_idx_to_embed";
    assert_eq!(shapes[key], [8, 40]);
    let bytes = std::fs::read(native_file()).expect("native");
    let tensors = SafeTensors::deserialize(&bytes).expect("safetensors");
    let saved: Vec<f32> = tensors
        .tensor(key)
        .expect("buffer")
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let table = cosine_table(8, 40);
    // The fixture's buffer is rounded to fp16; row 0 ([0, 1, 0, 1, ...]) is exact.
    assert_eq!(&table[..40], &saved[..40]);
    for (i, (a, b)) in table.iter().zip(&saved).enumerate() {
        assert!((a - b).abs() <= 1e-3, "entry {i}: {a} vs {b}");
    }
}

#[test]
fn original_rules_cover_every_vision_and_projector_key() {
    let rules: Vec<(&str, &str)> = davit::ORIGINAL_KEY_RULES
        .iter()
        .chain(projector::ORIGINAL_KEY_RULES)
        .copied()
        .collect();
    let original = checkpoint_shapes(original_file(), &rules).expect("original");
    let native = checkpoint_shapes(native_file(), &[(r"^model\.", "")]).expect("native");
    let ours = |shapes: &std::collections::BTreeMap<String, Vec<usize>>| -> Vec<String> {
        shapes
            .keys()
            .filter(|k| k.starts_with(VISION_TOWER_PREFIX) || k.starts_with(PROJECTOR_PREFIX))
            .cloned()
            .collect()
    };
    assert_eq!(ours(&original), ours(&native));
    assert_eq!(ours(&native).len(), 4 * 4 + 6 * 32 + 6);
    // Only `image_projection` changes layout.
    let key = "multi_modal_projector.image_projection.weight";
    assert_eq!(original[key], [40, 32]);
    assert_eq!(native[key], [32, 40]);
}

#[test]
fn wrong_shaped_config_is_a_typed_error() {
    let device = Default::default();
    let mut config = tiny_config();
    config.num_heads.pop();
    match config.init::<B>(&device) {
        Err(FedError::InvalidConfig { field, .. }) => assert_eq!(field, "num_heads"),
        other => panic!("expected InvalidConfig, got {other:?}"),
    }

    let mut config = tiny_config();
    config.num_groups[2] = 5;
    match config.validate() {
        Err(FedError::InvalidConfig { field, reason }) => {
            assert_eq!(field, "num_groups");
            assert!(reason.contains("24"), "{reason}");
        }
        other => panic!("expected InvalidConfig, got {other:?}"),
    }

    let mut config = tiny_config();
    config.activation_function = "gelu_new".into();
    assert!(matches!(
        config.init_projector::<B>(&device),
        Err(FedError::InvalidConfig {
            field: "activation_function",
            ..
        })
    ));

    let mut config = tiny_config();
    config.embed_dim[3] = 41;
    config.num_heads[3] = 1;
    config.num_groups[3] = 1;
    assert!(matches!(
        config.validate(),
        Err(FedError::InvalidConfig {
            field: "embed_dim",
            ..
        })
    ));

    let mut config = tiny_config();
    config.depths = vec![];
    assert!(matches!(
        weights::load_native::<B>(native_file(), &config, &device),
        Err(WeightsError::InvalidConfig(_))
    ));
}

#[test]
fn checkpoint_of_another_shape_names_the_key() {
    let device = Default::default();
    // A wider last stage: the native file's stage-3 tensors no longer fit.
    let mut config = tiny_config();
    config.embed_dim[3] = 48;
    match weights::load_native::<B>(native_file(), &config, &device) {
        Err(WeightsError::ShapeMismatch {
            key,
            expected,
            found,
            ..
        }) => {
            assert_eq!(key, "vision_tower.convs.3.conv.weight");
            assert_eq!((expected, found), (vec![48, 24, 3, 3], vec![40, 24, 3, 3]));
        }
        other => panic!("expected ShapeMismatch, got {:?}", other.map(|_| ())),
    }
    // One block more in stage 0: its tensors are missing from the file.
    let mut config = tiny_config();
    config.depths[0] = 2;
    match weights::load_original::<B>(original_file(), &config, &device) {
        Err(WeightsError::MissingKey { key, others, .. }) => {
            assert!(key.starts_with("vision_tower.blocks.0.1."), "{key}");
            assert_eq!(others, 31);
        }
        other => panic!("expected MissingKey, got {:?}", other.map(|_| ())),
    }
    // One block fewer in stage 1: the file's extra block is unexpected.
    let mut config = tiny_config();
    config.depths[1] = 1;
    match weights::load_native::<B>(native_file(), &config, &device) {
        Err(WeightsError::UnexpectedKey { key, .. }) => {
            assert!(key.starts_with("vision_tower.blocks.1.1."), "{key}")
        }
        other => panic!("expected UnexpectedKey, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn bad_inputs_are_typed_errors() {
    let device = Default::default();
    let (tower, projector) =
        weights::load_native::<B>(native_file(), &tiny_config(), &device).expect("load");
    let gray = Tensor::<B, 4>::zeros([1, 1, 64, 64], &device);
    assert!(matches!(
        tower.forward(gray),
        Err(FedError::InvalidConfig {
            field: "pixel_values",
            ..
        })
    ));
    // An empty image has no output after stage 0's 7x7 convolution (padding 3).
    let empty = Tensor::<B, 4>::zeros([1, 3, 0, 0], &device);
    assert!(matches!(
        tower.forward(empty),
        Err(FedError::InvalidConfig {
            field: "pixel_values",
            ..
        })
    ));
    // 16x16 -> grids 4, 2, 1, 1.
    let tiny = Tensor::<B, 4>::zeros([1, 3, 16, 16], &device);
    let (tokens, grid) = tower.forward(tiny).expect("small image");
    assert_eq!(grid, (1, 1));
    assert!(projector.forward(tokens.clone(), grid).is_ok());
    assert!(matches!(
        projector.forward(tokens, (2, 1)),
        Err(FedError::InvalidConfig {
            field: "image_tokens",
            ..
        })
    ));
    // 192x192 -> a 6x6 grid, more than the 5-row position tables.
    let big = Tensor::<B, 4>::zeros([1, 3, 192, 192], &device);
    let (tokens, grid) = tower.forward(big).expect("forward");
    assert_eq!(grid, (6, 6));
    assert!(projector.forward(tokens, grid).is_err());
}

#[test]
fn padding_only_when_needed_and_partition_round_trips() {
    let device = Default::default();
    let x = Tensor::<B, 4>::random([2, 6, 9, 4], Distribution::Default, &device);
    let same = pad_to_multiple(x.clone(), 3);
    assert_eq!(max_abs_diff(same, x.clone()), 0.0);

    let padded = pad_to_multiple(x.clone(), 4);
    assert_eq!(padded.dims(), [2, 8, 12, 4]);
    assert_eq!(
        max_abs_diff(padded.clone().slice([0..2, 0..6, 0..9, 0..4]), x),
        0.0
    );
    let bottom = padded.clone().slice([0..2, 6..8, 0..12, 0..4]);
    let right = padded.clone().slice([0..2, 0..8, 9..12, 0..4]);
    assert_eq!(bottom.abs().sum().into_scalar(), 0.0);
    assert_eq!(right.abs().sum().into_scalar(), 0.0);

    let windows = window_partition(padded.clone(), 4);
    assert_eq!(windows.dims(), [2 * 2 * 3, 16, 4]);
    // Window 1 of image 0 is rows 0..4, columns 4..8, row-major.
    let expected = padded
        .clone()
        .slice([0..1, 0..4, 4..8, 0..4])
        .reshape([1, 16, 4]);
    assert_eq!(
        max_abs_diff(windows.clone().slice([1..2, 0..16, 0..4]), expected),
        0.0
    );
    assert_eq!(
        max_abs_diff(window_merge(windows, 2, 8, 12, 4), padded),
        0.0
    );
}

/// The batched window attention equals a plain per-window loop, padding included: padded
/// tokens are zeros (after the norm) whose keys and values are the qkv bias, unmasked.
#[test]
fn window_attention_matches_a_per_window_loop() {
    let device = Default::default();
    let (height, width, dim, heads, window) = (5, 7, 6, 2, 3);
    let mut attn = WindowAttention::<B>::new(dim, heads, window, true, &device);
    // A large bias, so that the padded (zero) tokens matter.
    attn.qkv.bias = Some(Param::from_tensor(Tensor::random(
        [3 * dim],
        Distribution::Normal(0.0, 1.0),
        &device,
    )));
    let x = Tensor::<B, 3>::random(
        [2, height * width, dim],
        Distribution::Normal(0.0, 1.0),
        &device,
    );
    let got = attn.forward(x.clone(), height, width);

    let grid = pad_to_multiple(x.reshape([2, height, width, dim]), window);
    let [_, ph, pw, _] = grid.dims();
    let head_dim = dim / heads;
    let mut out = Tensor::<B, 4>::zeros([2, ph, pw, dim], &device);
    for n in 0..2 {
        for wy in (0..ph).step_by(window) {
            for wx in (0..pw).step_by(window) {
                let tokens = grid
                    .clone()
                    .slice([n..n + 1, wy..wy + window, wx..wx + window, 0..dim])
                    .reshape([window * window, dim]);
                let qkv = attn.qkv.forward(tokens);
                let mut per_head = Vec::new();
                for h in 0..heads {
                    let take = |part: usize| {
                        let start = part * dim + h * head_dim;
                        qkv.clone()
                            .slice([0..window * window, start..start + head_dim])
                    };
                    let scores = take(0).matmul(take(1).transpose()) / (head_dim as f32).sqrt();
                    let probs = burn::tensor::activation::softmax(scores, 1);
                    per_head.push(probs.matmul(take(2)));
                }
                let merged = attn.proj.forward(Tensor::cat(per_head, 1));
                out = out.slice_assign(
                    [n..n + 1, wy..wy + window, wx..wx + window, 0..dim],
                    merged.reshape([1, window, window, dim]),
                );
            }
        }
    }
    let expected = out
        .slice([0..2, 0..height, 0..width, 0..dim])
        .reshape([2, height * width, dim]);
    let diff = max_abs_diff(got, expected);
    assert!(diff < 1e-5, "batched vs loop: {diff}");
}

#[test]
fn base_preset_has_florence2_base_vision_parameter_count() {
    let device = Default::default();
    let config = DavitConfig::base();
    let tower = config.init::<B>(&device).expect("base tower");
    let projector = config.init_projector::<B>(&device).expect("base projector");
    // base_shapes.json: vision_tower + multi_modal_projector of Florence-2-base, temporal buffer
    // not counted.
    assert_eq!(tower.num_params() + projector.num_params(), 91_207_168);
    assert_eq!(projector.num_params(), 839_168);

    let large = DavitConfig::large();
    large.validate().expect("large preset");
    assert_eq!(large.embed_dim, [256, 512, 1024, 2048]);
    assert_eq!(large.projection_dim, 1024);
}

#[test]
fn drop_path_rates_follow_transformers_linear_schedule() {
    let base = DavitConfig::base();
    assert_eq!(base.drop_path_rate, 0.1);
    let rates = base.drop_path_rates();
    // torch.linspace(0, 0.1, 24) (float32): 2 blocks per depth, depths 1/1/9/1.
    assert_eq!(rates.len(), 24);
    for (i, expected) in [
        (0, 0.0),
        (1, 0.004347826354205608),
        (11, 0.04782608896493912),
        (23, 0.1),
    ] {
        assert!((rates[i] - expected).abs() < 1e-8, "rate {i}: {}", rates[i]);
    }
    // Read from config.json; out of range refused.
    assert_eq!(tiny_config().drop_path_rate, 0.0);
    let bad = DavitConfig {
        drop_path_rate: 1.0,
        ..DavitConfig::base()
    };
    assert!(matches!(
        bad.validate(),
        Err(FedError::InvalidConfig { .. })
    ));
}

#[test]
fn drop_path_drops_whole_samples_while_training_only() {
    use fedvlm::models::florence2::davit::layers::drop_path;
    let device = Default::default();
    let n = 2000;
    let x = Tensor::<B, 3>::random([n, 3, 4], Distribution::Uniform(1.0, 2.0), &device);
    // Inference (no autodiff): the identity, whatever the probability.
    let same = drop_path(x.clone(), 0.5);
    same.into_data().assert_eq(&x.clone().into_data(), true);
    // Training: each sample is all zeros or x / keep.
    AB::seed(&device, 5);
    let trained = drop_path(Tensor::<AB, 3>::from_inner(x.clone()), 0.25).inner();
    let ratio = (trained / x.clone()).into_data().into_vec::<f32>().unwrap();
    let mut dropped = 0;
    for sample in ratio.chunks(12) {
        let first = sample[0];
        assert!(
            sample.iter().all(|&r| (r - first).abs() < 1e-6),
            "{sample:?}"
        );
        assert!(first == 0.0 || (first - 1.0 / 0.75).abs() < 1e-6, "{first}");
        dropped += usize::from(first == 0.0);
    }
    let fraction = dropped as f64 / n as f64;
    assert!((fraction - 0.25).abs() < 0.04, "dropped {fraction}");
    // Probability 0 on the autodiff backend: the identity.
    let kept = drop_path(Tensor::<AB, 3>::from_inner(x.clone()), 0.0).inner();
    kept.into_data().assert_eq(&x.into_data(), true);
}

#[test]
fn the_tower_applies_drop_path_when_training_and_not_at_inference() {
    use burn::module::AutodiffModule;
    let device = Default::default();
    let config = DavitConfig {
        drop_path_rate: 0.5,
        ..tiny_config()
    };
    AB::seed(&device, 9);
    let tower: Davit<AB> = config.init(&device).expect("tower");
    let pixels = Tensor::<B, 4>::random([4, 3, 64, 64], Distribution::Normal(0.0, 1.0), &device);
    let (inference, _) = tower.valid().forward(pixels.clone()).expect("forward");
    AB::seed(&device, 1);
    let (training, _) = tower
        .forward(Tensor::from_inner(pixels.clone()))
        .expect("forward");
    let diff = max_abs_diff(inference.clone(), training.inner());
    assert!(diff > 0.1, "drop-path changed nothing: {diff}");
    // The same weights with every block's rate at 0 train like they infer.
    let mut tower = tower;
    for block in tower.blocks.iter_mut().flatten() {
        block.spatial_block.drop_path = 0.0;
        block.channel_block.drop_path = 0.0;
    }
    let (training, _) = tower.forward(Tensor::from_inner(pixels)).expect("forward");
    let gap = max_abs_diff(inference, training.inner());
    assert!(gap < TOLERANCE, "{gap}");
}
