//! Florence-2's DaViT vision tower and projector against transformers 5.24's native
//! implementation: golden stage outputs and image features from both checkpoint layouts,
//! half-precision loading, configuration and checkpoint errors, the window padding path.
//!
//! Fixtures: `tests/fixtures/florence2/` (see its README), made by
//! `scripts/generate_florence2_reference.py`.

#[path = "../common/mod.rs"]
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

mod drop_path;
mod errors;

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
