//! Florence-2's configuration: the vision tower ([`DavitConfig`]) and the language model
//! ([`BartConfig`]), read from a `config.json` in either published layout.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::bart::BartConfig;
use super::davit::DavitConfig;
use crate::error::{FedError, Result};

/// Which of the two published layouts a checkpoint folder uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointLayout {
    /// Microsoft's remote-code release (`microsoft/Florence-2-base`): `vision_config` with
    /// `dim_embed`, weights in `pytorch_model.bin` with keys such as
    /// `language_model.model.encoder.*`.
    Original,
    /// transformers' native port (`Florence2ForConditionalGeneration`): `vision_config` with
    /// `embed_dim`, weights in `model.safetensors` with keys such as
    /// `model.language_model.encoder.*`.
    Native,
}

/// The whole model's hyper-parameters.
///
/// ```
/// use fedvlm::models::florence2::Florence2Config;
/// let base = Florence2Config::base();
/// assert_eq!(base.vision.projection_dim, base.text.d_model);
/// base.validate()?;
/// # Ok::<(), fedvlm::FedError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Florence2Config {
    /// The DaViT tower and the projector.
    pub vision: DavitConfig,
    /// The BART encoder-decoder.
    pub text: BartConfig,
}

impl Florence2Config {
    /// Florence-2-base: 231.4M parameters.
    pub fn base() -> Self {
        Self {
            vision: DavitConfig::base(),
            text: BartConfig::florence2_base(),
        }
    }

    /// Florence-2-large: 770.2M parameters (with 1024 text positions).
    pub fn large() -> Self {
        Self {
            vision: DavitConfig::large(),
            text: BartConfig::florence2_large(),
        }
    }

    /// Checks both parts and that the projector's output width is the language model's.
    ///
    /// # Errors
    /// [`FedError::InvalidConfig`] naming the first offending field.
    pub fn validate(&self) -> Result<()> {
        self.vision.validate()?;
        self.text.validate()?;
        if self.vision.projection_dim != self.text.d_model {
            return Err(FedError::config(
                "vision_config.projection_dim",
                format!(
                    "is {} but the language model is {} wide",
                    self.vision.projection_dim, self.text.d_model
                ),
            ));
        }
        Ok(())
    }

    /// Reads a `config.json` in either layout (see [`Florence2Config::from_json`]).
    ///
    /// # Errors
    /// [`FedError::Io`] if the file cannot be read, otherwise as
    /// [`Florence2Config::from_json`].
    pub fn from_file(path: impl AsRef<Path>) -> Result<(Self, CheckpointLayout)> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| FedError::io(path, e))?;
        Self::from_json(&text).map_err(|e| match e {
            FedError::InvalidConfig { field, reason } => FedError::InvalidConfig {
                field,
                reason: format!("{reason} (in {})", path.display()),
            },
            other => other,
        })
    }

    /// Parses a `config.json` of Microsoft's layout (`vision_config.dim_embed`,
    /// `image_pos_embed`, `visual_temporal_embedding`) or of transformers' native one
    /// (`vision_config.embed_dim`, ...), and says which it was. Fields a layout leaves out take
    /// transformers' defaults; the result is validated.
    ///
    /// # Errors
    /// [`FedError::InvalidConfig`] for malformed JSON, a missing `vision_config` or
    /// `text_config`, a field of the wrong type, or an invalid configuration.
    pub fn from_json(text: &str) -> Result<(Self, CheckpointLayout)> {
        let root: Value = serde_json::from_str(text)
            .map_err(|e| FedError::config("config.json", e.to_string()))?;
        let section = |name: &'static str| {
            root.get(name)
                .filter(|v| v.is_object())
                .cloned()
                .ok_or_else(|| FedError::config(name, "missing from config.json"))
        };
        let mut vision = section("vision_config")?;
        let text_config = section("text_config")?;
        let layout = if vision.get("dim_embed").is_some() {
            original_vision_to_native(&mut vision, &root);
            CheckpointLayout::Original
        } else {
            CheckpointLayout::Native
        };
        let vision: DavitConfig = serde_json::from_value(vision)
            .map_err(|e| FedError::config("vision_config", e.to_string()))?;
        let text: BartConfig = serde_json::from_value(text_config)
            .map_err(|e| FedError::config("text_config", e.to_string()))?;
        let config = Self { vision, text };
        config.validate()?;
        Ok((config, layout))
    }
}

/// Renames Microsoft's vision fields to transformers' (what its conversion script does):
/// `dim_embed` -> `embed_dim`, `image_pos_embed.max_pos_embeddings` ->
/// `max_position_embeddings`, `visual_temporal_embedding.max_temporal_embeddings` ->
/// `max_temporal_embeddings`, and `projection_dim` from the top level when the vision section
/// lacks it.
fn original_vision_to_native(vision: &mut Value, root: &Value) {
    let Some(map) = vision.as_object_mut() else {
        return;
    };
    if let Some(dims) = map.remove("dim_embed") {
        map.insert("embed_dim".into(), dims);
    }
    let nested = |map: &serde_json::Map<String, Value>, outer: &str, inner: &str| {
        map.get(outer).and_then(|o| o.get(inner)).cloned()
    };
    if let Some(rows) = nested(map, "image_pos_embed", "max_pos_embeddings") {
        map.insert("max_position_embeddings".into(), rows);
    }
    if let Some(rows) = nested(map, "visual_temporal_embedding", "max_temporal_embeddings") {
        map.insert("max_temporal_embeddings".into(), rows);
    }
    if !map.contains_key("projection_dim")
        && let Some(dim) = root.get("projection_dim")
    {
        map.insert("projection_dim".into(), dim.clone());
    }
}
