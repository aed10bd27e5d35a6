//! Loading a whole Florence-2 from a checkpoint folder in either published layout.
//!
//! The parts load themselves ([`super::davit::weights`] for the vision tower and projector,
//! [`BartModel::load_language_model`] for BART, each with its own key rules and fp16
//! upcasting); this file picks the files, checks that no tensor of the checkpoint belongs to
//! none of the parts, and assembles the model.

use std::path::{Path, PathBuf};

use burn::prelude::*;

use super::bart::{BartModel, KeyLayout};
use super::config::{CheckpointLayout, Florence2Config};
use super::davit::weights::{load_native, load_original};
use super::model::Florence2;
use crate::models::WeightsError;
use crate::models::checkpoint::{Checkpoint, first_sorted};

/// The checkpoint keys each layout may hold, by prefix; anything else is unexpected.
fn known_prefixes(layout: CheckpointLayout) -> &'static [&'static str] {
    match layout {
        CheckpointLayout::Native => &[
            "model.vision_tower.",
            "model.multi_modal_projector.",
            "model.language_model.",
            "lm_head.weight",
        ],
        CheckpointLayout::Original => &[
            "vision_tower.",
            "image_projection",
            "image_proj_norm.",
            "image_pos_embed.",
            "visual_temporal_embed.",
            "language_model.",
        ],
    }
}

/// The weights file of a folder: `model.safetensors` for the native layout,
/// `pytorch_model.bin` (or `model.safetensors` with the original keys) for the original one.
pub fn weights_file(dir: &Path, layout: CheckpointLayout) -> Result<PathBuf, WeightsError> {
    let candidates: &[&str] = match layout {
        CheckpointLayout::Native => &["model.safetensors", "pytorch_model.bin"],
        CheckpointLayout::Original => &["pytorch_model.bin", "model.safetensors"],
    };
    candidates
        .iter()
        .map(|name| dir.join(name))
        .find(|path| path.is_file())
        .ok_or_else(|| WeightsError::Read {
            path: dir.display().to_string(),
            reason: format!("no weights file: expected one of {candidates:?}"),
        })
}

impl<B: Backend> Florence2<B> {
    /// Loads a local checkpoint folder in either layout: `config.json` (Microsoft's or
    /// transformers') and `pytorch_model.bin` or `model.safetensors`. Weights are cast to the
    /// backend's float type (f32 on `Flex`), every part alike; tied embeddings absent from the
    /// file are taken from `shared`.
    ///
    /// ```no_run
    /// use burn::backend::Flex;
    /// use fedvlm::models::florence2::Florence2;
    /// let model = Florence2::<Flex>::load("Florence-2-base", &Default::default())?;
    /// # Ok::<(), fedvlm::models::WeightsError>(())
    /// ```
    ///
    /// # Errors
    /// [`WeightsError::InvalidConfig`] for an unreadable or invalid `config.json`,
    /// [`WeightsError::Read`] for a missing or unreadable weights file, and
    /// [`WeightsError::MissingKey`], [`WeightsError::UnexpectedKey`],
    /// [`WeightsError::ShapeMismatch`] and [`WeightsError::BadTensor`] naming the first
    /// offending key.
    pub fn load(dir: impl AsRef<Path>, device: &B::Device) -> Result<Self, WeightsError> {
        let dir = dir.as_ref();
        let config_path = dir.join("config.json");
        let (config, layout) = Florence2Config::from_file(&config_path)
            .map_err(|e| WeightsError::InvalidConfig(e.to_string()))?;
        check_sizes(&config).map_err(|reason| {
            WeightsError::InvalidConfig(format!("{reason} (in {})", config_path.display()))
        })?;
        let weights = weights_file(dir, layout)?;
        Self::load_file(&weights, &config, layout, device)
    }

    /// Loads one weights file (`.safetensors`, or a `torch.save` pickle) with the keys of
    /// `layout` into a model of `config`.
    ///
    /// # Errors
    /// As [`Florence2::load`].
    pub fn load_file(
        path: &Path,
        config: &Florence2Config,
        layout: CheckpointLayout,
        device: &B::Device,
    ) -> Result<Self, WeightsError> {
        config
            .validate()
            .map_err(|e| WeightsError::InvalidConfig(e.to_string()))?;
        check_sizes(config).map_err(WeightsError::InvalidConfig)?;
        check_no_stray_keys(path, layout)?;
        let (vision_tower, multi_modal_projector) = match layout {
            CheckpointLayout::Native => load_native(path, &config.vision, device)?,
            CheckpointLayout::Original => load_original(path, &config.vision, device)?,
        };
        let keys = match layout {
            CheckpointLayout::Native => KeyLayout::Native,
            CheckpointLayout::Original => KeyLayout::Original,
        };
        let language_model = BartModel::load_language_model(path, keys, &config.text, device)?;
        Ok(Self {
            vision_tower,
            multi_modal_projector,
            language_model,
        })
    }
}

/// Upper bounds on a loaded configuration's sizes, far above every published Florence-2
/// (large: `d_model` 1024, vocabulary 51,289, 12 layers, stage widths up to 2048, depths up to
/// 9). A `config.json` past them is refused before the model is built: some parts are built
/// eagerly (layer lists, the temporal embedding table), so a hostile size would exhaust memory
/// or run for hours instead of failing on the first shape.
const MAX_WIDTH: usize = 1 << 14;
/// Most layers per encoder, decoder or vision stage.
const MAX_LAYERS: usize = 128;
/// Largest vocabulary.
const MAX_VOCAB: usize = 1 << 20;
/// Most text positions.
const MAX_TEXT_POSITIONS: usize = 1 << 16;
/// Most image positions or frames.
const MAX_VISION_POSITIONS: usize = 1 << 12;
/// Largest vision MLP ratio.
const MAX_MLP_RATIO: f64 = 64.0;

/// Refuses a configuration with a size past the bounds above, naming the field.
fn check_sizes(config: &Florence2Config) -> Result<(), String> {
    let (text, vision) = (&config.text, &config.vision);
    let scalars = [
        ("text_config.vocab_size", text.vocab_size, MAX_VOCAB),
        (
            "text_config.max_position_embeddings",
            text.max_position_embeddings,
            MAX_TEXT_POSITIONS,
        ),
        ("text_config.d_model", text.d_model, MAX_WIDTH),
        (
            "text_config.encoder_layers",
            text.encoder_layers,
            MAX_LAYERS,
        ),
        (
            "text_config.decoder_layers",
            text.decoder_layers,
            MAX_LAYERS,
        ),
        (
            "text_config.encoder_ffn_dim",
            text.encoder_ffn_dim,
            4 * MAX_WIDTH,
        ),
        (
            "text_config.decoder_ffn_dim",
            text.decoder_ffn_dim,
            4 * MAX_WIDTH,
        ),
        ("vision_config.in_channels", vision.in_channels, MAX_WIDTH),
        ("vision_config.window_size", vision.window_size, MAX_WIDTH),
        (
            "vision_config.projection_dim",
            vision.projection_dim,
            MAX_WIDTH,
        ),
        (
            "vision_config.max_position_embeddings",
            vision.max_position_embeddings,
            MAX_VISION_POSITIONS,
        ),
        (
            "vision_config.max_temporal_embeddings",
            vision.max_temporal_embeddings,
            MAX_VISION_POSITIONS,
        ),
    ];
    let lists = [
        ("vision_config.depths", &vision.depths, MAX_LAYERS),
        ("vision_config.embed_dim", &vision.embed_dim, MAX_WIDTH),
        ("vision_config.patch_size", &vision.patch_size, MAX_WIDTH),
        (
            "vision_config.patch_stride",
            &vision.patch_stride,
            MAX_WIDTH,
        ),
        (
            "vision_config.patch_padding",
            &vision.patch_padding,
            MAX_WIDTH,
        ),
        ("vision_config.num_heads", &vision.num_heads, MAX_WIDTH),
        ("vision_config.num_groups", &vision.num_groups, MAX_WIDTH),
    ];
    let too_large = |field: &str, value: String, max: String| {
        Err(format!(
            "`{field}` is {value}, more than this loader accepts ({max})"
        ))
    };
    for (field, value, max) in scalars {
        if value > max {
            return too_large(field, value.to_string(), max.to_string());
        }
    }
    for (field, values, max) in lists {
        if let Some(&value) = values.iter().find(|&&v| v > max) {
            return too_large(field, value.to_string(), max.to_string());
        }
    }
    if !(vision.mlp_ratio.is_finite() && vision.mlp_ratio <= MAX_MLP_RATIO) {
        return too_large(
            "vision_config.mlp_ratio",
            vision.mlp_ratio.to_string(),
            MAX_MLP_RATIO.to_string(),
        );
    }
    Ok(())
}

/// Every key must belong to one of the parts (each part's loader checks its own keys).
fn check_no_stray_keys(path: &Path, layout: CheckpointLayout) -> Result<(), WeightsError> {
    let checkpoint = Checkpoint::open(path)?;
    let prefixes = known_prefixes(layout);
    let stray: Vec<String> = checkpoint
        .keys()
        .filter(|key| !prefixes.iter().any(|p| key.starts_with(p)))
        .collect();
    match first_sorted(stray) {
        Some((key, others)) => Err(WeightsError::UnexpectedKey {
            path: checkpoint.file().to_string(),
            key,
            others,
        }),
        None => Ok(()),
    }
}
