//! Loading BART's part of a Florence-2 checkpoint, in either layout:
//!
//! * transformers-native `model.safetensors`: keys `model.language_model.<burn path>` plus
//!   `lm_head.weight` ([`NATIVE_KEY_RULES`]);
//! * Microsoft's original `pytorch_model.bin` (fp16 pickle): keys
//!   `language_model.model.<burn path>`, `language_model.lm_head.weight` and
//!   `language_model.final_logits_bias` ([`ORIGINAL_KEY_RULES`]).
//!
//! Tied copies of the token embedding (`lm_head.weight`, `encoder.embed_tokens.weight`,
//! `decoder.embed_tokens.weight` after remapping) are skipped when `shared.weight` is present
//! and stand in for it when it is not. Float tensors are cast to the backend's float type as
//! they load (burn-store keeps a tensor's file dtype). `final_logits_bias` is not a parameter: a
//! non-zero one is set with [`BartModel::with_final_logits_bias`], an all-zero one (every
//! published checkpoint) is dropped, which is what transformers' native port computes.

use std::path::Path;

use burn::prelude::*;
use burn_store::{ModuleAdapter, PyTorchToBurnAdapter};

use super::config::BartConfig;
use super::model::BartModel;
use crate::models::WeightsError;
use crate::models::checkpoint::{ApplyCheck, CastFloatAdapter, Checkpoint};

/// Regex rules (`from`, `to`, applied in order) mapping Microsoft's original checkpoint keys
/// to BART's burn module paths. `language_model.lm_head.weight` and
/// `language_model.final_logits_bias` become `lm_head.weight` and `final_logits_bias`, which
/// are not module paths: see [`TIED_EMBEDDING_KEYS`] and [`FINAL_LOGITS_BIAS_KEY`].
pub const ORIGINAL_KEY_RULES: &[(&str, &str)] = &[
    (r"^language_model\.model\.", ""),
    (r"^language_model\.lm_head\.", "lm_head."),
    (
        r"^language_model\.final_logits_bias$",
        FINAL_LOGITS_BIAS_KEY,
    ),
];

/// Regex rules mapping transformers-native keys (`model.language_model.*`) to BART's burn
/// module paths; the native `lm_head.weight` keeps its name (see [`TIED_EMBEDDING_KEYS`]).
pub const NATIVE_KEY_RULES: &[(&str, &str)] = &[(r"^model\.language_model\.", "")];

/// Keys (after remapping) holding tied copies of `shared.weight`: skipped when the file has
/// `shared.weight`, otherwise the first one present is loaded into it. Each comes with the
/// anchored regex that renames it.
pub const TIED_EMBEDDING_KEYS: &[(&str, &str)] = &[
    ("lm_head.weight", r"^lm_head\.weight$"),
    (
        "encoder.embed_tokens.weight",
        r"^encoder\.embed_tokens\.weight$",
    ),
    (
        "decoder.embed_tokens.weight",
        r"^decoder\.embed_tokens\.weight$",
    ),
];

/// Where [`ORIGINAL_KEY_RULES`] put Microsoft's `final_logits_bias` (`[1, vocab_size]`).
pub const FINAL_LOGITS_BIAS_KEY: &str = "final_logits_bias";

/// The burn path of the token embedding.
const SHARED_KEY: &str = "shared.weight";

/// The key layout of a Florence-2 checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyLayout {
    /// transformers' `Florence2ForConditionalGeneration` (`model.language_model.*`).
    Native,
    /// Microsoft's remote-code model (`language_model.model.*`).
    Original,
}

impl KeyLayout {
    /// The remapping rules of BART's keys in this layout.
    pub fn rules(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Self::Native => NATIVE_KEY_RULES,
            Self::Original => ORIGINAL_KEY_RULES,
        }
    }
}

impl<B: Backend> BartModel<B> {
    /// Loads the language model of a Florence-2 checkpoint file: `.safetensors` or a
    /// `torch.save` pickle (`.bin`, `.pth`, `.pt`), with the keys of `layout`. Keys of the
    /// other parts (vision tower, projector) are ignored; every BART parameter must be present
    /// (through a tied copy for `shared.weight`) and every BART key of the file must load.
    ///
    /// # Errors
    /// [`WeightsError::InvalidConfig`] for an invalid `config`, [`WeightsError::Read`] if the
    /// file cannot be read, [`WeightsError::ShapeMismatch`], [`WeightsError::BadTensor`],
    /// [`WeightsError::MissingKey`] and [`WeightsError::UnexpectedKey`] naming the first
    /// offending key (as a burn path, after remapping).
    pub fn load_language_model(
        path: impl AsRef<Path>,
        layout: KeyLayout,
        config: &BartConfig,
        device: &B::Device,
    ) -> Result<Self, WeightsError> {
        let path = path.as_ref();
        config
            .validate()
            .map_err(|e| WeightsError::InvalidConfig(e.to_string()))?;
        let model =
            Self::new(config, 0, device).map_err(|e| WeightsError::InvalidConfig(e.to_string()))?;
        let checkpoint = Checkpoint::open(path)?.remap(layout.rules())?;
        load(model, checkpoint)
    }
}

fn load<B: Backend>(
    mut model: BartModel<B>,
    checkpoint: Checkpoint,
) -> Result<BartModel<B>, WeightsError> {
    // Without `shared.weight`, the first tied copy present stands in for it.
    let fallback: Vec<(&str, &str)> = if checkpoint.contains(SHARED_KEY) {
        Vec::new()
    } else {
        TIED_EMBEDDING_KEYS
            .iter()
            .find(|(key, _)| checkpoint.contains(key))
            .map(|(_, pattern)| vec![(*pattern, SHARED_KEY)])
            .unwrap_or_default()
    };
    let checkpoint = checkpoint.remap(&fallback)?;
    // Every float tensor loads in the backend's float type (as the vision side does), so a
    // half-precision backend does not mix f32 text weights with f16 vision weights.
    let adapter = PyTorchToBurnAdapter.chain(CastFloatAdapter::for_backend::<B>());
    let result = checkpoint.apply(&mut model, None, Box::new(adapter));
    ApplyCheck::new(checkpoint.file())
        .ignore_unused(|key| !is_unexpected(key))
        .check(result)?;

    let device = model.shared.weight.device();
    let bias = checkpoint
        .get(FINAL_LOGITS_BIAS_KEY)
        .map(|snapshot| snapshot.to_data())
        .transpose()
        .map_err(|e| WeightsError::BadTensor {
            path: checkpoint.file().to_string(),
            key: FINAL_LOGITS_BIAS_KEY.to_string(),
            reason: format!("{e:?}"),
        })?;
    if let Some(data) = bias {
        let values: Vec<f32> = data.iter::<f32>().collect();
        if values.len() != model.vocab_size() {
            return Err(WeightsError::ShapeMismatch {
                path: checkpoint.file().to_string(),
                key: FINAL_LOGITS_BIAS_KEY.to_string(),
                expected: vec![1, model.vocab_size()],
                found: data.shape.to_vec(),
            });
        }
        if values.iter().any(|&v| v != 0.0) {
            let len = values.len();
            let bias =
                Tensor::<B, 1>::from_data(burn::tensor::TensorData::new(values, [len]), &device);
            model.final_logits_bias = Some(bias);
        }
    }
    Ok(model)
}

/// Whether an unused key (after remapping) belongs to BART and is not a deliberately skipped
/// tied copy or the bias.
fn is_unexpected(key: &str) -> bool {
    let bart =
        key.starts_with("shared.") || key.starts_with("encoder.") || key.starts_with("decoder.");
    bart && !TIED_EMBEDDING_KEYS.iter().any(|(tied, _)| *tied == key)
}
