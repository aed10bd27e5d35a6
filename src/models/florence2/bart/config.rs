//! BART's hyper-parameters, read from transformers' `BartConfig` JSON (Florence-2's
//! `text_config`), with transformers 5.24's defaults for absent fields.

use serde::{Deserialize, Serialize};

use crate::error::{FedError, Result};

/// BART's hyper-parameters, with the field names and defaults of transformers' `BartConfig`
/// (fields it does not use, such as `num_labels` or `init_std`, are ignored when reading JSON).
///
/// ```
/// use fedvlm::models::florence2::bart::BartConfig;
/// let config: BartConfig = serde_json::from_str(r#"{"d_model": 768, "vocab_size": 51289}"#)?;
/// assert_eq!(config.encoder_layers, 12); // transformers' default
/// assert_eq!(BartConfig::florence2_base().d_model, 768);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BartConfig {
    /// Rows of the token embedding `shared` (and outputs of the tied `lm_head`).
    #[serde(default = "defaults::vocab_size")]
    pub vocab_size: usize,
    /// Learned positions per sequence; the tables have 2 more rows (BART's offset).
    #[serde(default = "defaults::max_position_embeddings")]
    pub max_position_embeddings: usize,
    /// Width of the hidden states.
    #[serde(default = "defaults::d_model")]
    pub d_model: usize,
    /// Encoder layers.
    #[serde(default = "defaults::layers")]
    pub encoder_layers: usize,
    /// Decoder layers.
    #[serde(default = "defaults::layers")]
    pub decoder_layers: usize,
    /// Attention heads of the encoder.
    #[serde(default = "defaults::heads")]
    pub encoder_attention_heads: usize,
    /// Attention heads of the decoder (self- and cross-attention).
    #[serde(default = "defaults::heads")]
    pub decoder_attention_heads: usize,
    /// Hidden width of the encoder's feed-forward layers.
    #[serde(default = "defaults::ffn_dim")]
    pub encoder_ffn_dim: usize,
    /// Hidden width of the decoder's feed-forward layers.
    #[serde(default = "defaults::ffn_dim")]
    pub decoder_ffn_dim: usize,
    /// Feed-forward activation: `gelu` (exact, erf), `gelu_new` / `gelu_pytorch_tanh`
    /// (tanh approximation) or `relu`.
    #[serde(default = "defaults::activation_function")]
    pub activation_function: String,
    /// Dropout on the embeddings and on each sub-layer's output (training only).
    #[serde(default = "defaults::dropout")]
    pub dropout: f64,
    /// Dropout on the attention probabilities (training only).
    #[serde(default)]
    pub attention_dropout: f64,
    /// Dropout after the feed-forward activation (training only).
    #[serde(default)]
    pub activation_dropout: f64,
    /// Multiply token embeddings by `sqrt(d_model)` (false for BART and Florence-2).
    #[serde(default)]
    pub scale_embedding: bool,
    /// Whether `lm_head` is `shared` (the only layout supported).
    #[serde(default = "defaults::yes")]
    pub tie_word_embeddings: bool,
    /// `<pad>`: the id finished sequences are padded with.
    #[serde(default = "defaults::pad_token_id")]
    pub pad_token_id: u32,
    /// `<s>`.
    #[serde(default)]
    pub bos_token_id: u32,
    /// `</s>`: generation stops at it.
    #[serde(default = "defaults::eos_token_id")]
    pub eos_token_id: u32,
    /// The first decoder input (`</s>` for BART).
    #[serde(default = "defaults::eos_token_id")]
    pub decoder_start_token_id: u32,
    /// Token forced as the first generated one (`<s>` in Florence-2's configs; transformers 5's
    /// `BartConfig` has no default, so absent means none).
    #[serde(default)]
    pub forced_bos_token_id: Option<u32>,
    /// Token forced when the maximum length is reached.
    #[serde(default = "defaults::forced_eos_token_id")]
    pub forced_eos_token_id: Option<u32>,
    /// Generation default stored in Florence-2's `text_config` (beams).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_beams: Option<usize>,
    /// Generation default stored in Florence-2's `text_config` (n-gram blocking).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_repeat_ngram_size: Option<usize>,
    /// Generation default stored in Florence-2's `text_config`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stopping: Option<bool>,
}

mod defaults {
    pub fn vocab_size() -> usize {
        50265
    }
    pub fn max_position_embeddings() -> usize {
        1024
    }
    pub fn d_model() -> usize {
        1024
    }
    pub fn layers() -> usize {
        12
    }
    pub fn heads() -> usize {
        16
    }
    pub fn ffn_dim() -> usize {
        4096
    }
    pub fn activation_function() -> String {
        "gelu".to_string()
    }
    pub fn dropout() -> f64 {
        0.1
    }
    pub fn yes() -> bool {
        true
    }
    pub fn pad_token_id() -> u32 {
        1
    }
    pub fn eos_token_id() -> u32 {
        2
    }
    pub fn forced_eos_token_id() -> Option<u32> {
        Some(2)
    }
}

impl Default for BartConfig {
    /// transformers' `BartConfig()` (facebook/bart-large).
    fn default() -> Self {
        Self {
            vocab_size: defaults::vocab_size(),
            max_position_embeddings: defaults::max_position_embeddings(),
            d_model: defaults::d_model(),
            encoder_layers: defaults::layers(),
            decoder_layers: defaults::layers(),
            encoder_attention_heads: defaults::heads(),
            decoder_attention_heads: defaults::heads(),
            encoder_ffn_dim: defaults::ffn_dim(),
            decoder_ffn_dim: defaults::ffn_dim(),
            activation_function: defaults::activation_function(),
            dropout: defaults::dropout(),
            attention_dropout: 0.0,
            activation_dropout: 0.0,
            scale_embedding: false,
            tie_word_embeddings: true,
            pad_token_id: defaults::pad_token_id(),
            bos_token_id: 0,
            eos_token_id: defaults::eos_token_id(),
            decoder_start_token_id: defaults::eos_token_id(),
            forced_bos_token_id: None,
            forced_eos_token_id: defaults::forced_eos_token_id(),
            num_beams: None,
            no_repeat_ngram_size: None,
            early_stopping: None,
        }
    }
}

/// The feed-forward activation named by [`BartConfig::activation_function`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Activation {
    /// Exact GELU, `x * Phi(x)` (transformers' `gelu`).
    Gelu,
    /// GELU's tanh approximation (`gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
    /// ReLU.
    Relu,
}

impl Activation {
    /// Parses transformers' activation name.
    ///
    /// # Errors
    /// [`FedError::InvalidConfig`] for a name this crate does not implement.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "gelu" => Ok(Self::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(Self::GeluTanh),
            "relu" => Ok(Self::Relu),
            other => Err(FedError::config(
                "activation_function",
                format!("`{other}` is not supported (gelu, gelu_new, gelu_pytorch_tanh, relu)"),
            )),
        }
    }
}

impl BartConfig {
    /// Florence-2-base's language model (REFERENCE.md and Microsoft's `text_config`):
    /// 768 wide, 6 + 6 layers, 12 heads, FFN 3072, 1024 positions, vocabulary 51289,
    /// dropouts 0.1, forced `<s>` first and `</s>` last, 3 beams, no repeated 3-grams.
    pub fn florence2_base() -> Self {
        Self {
            vocab_size: 51289,
            max_position_embeddings: 1024,
            d_model: 768,
            encoder_layers: 6,
            decoder_layers: 6,
            encoder_attention_heads: 12,
            decoder_attention_heads: 12,
            encoder_ffn_dim: 3072,
            decoder_ffn_dim: 3072,
            activation_function: "gelu".to_string(),
            dropout: 0.1,
            attention_dropout: 0.1,
            activation_dropout: 0.1,
            scale_embedding: false,
            tie_word_embeddings: true,
            pad_token_id: 1,
            bos_token_id: 0,
            eos_token_id: 2,
            decoder_start_token_id: 2,
            forced_bos_token_id: Some(0),
            forced_eos_token_id: Some(2),
            num_beams: Some(3),
            no_repeat_ngram_size: Some(3),
            early_stopping: Some(true),
        }
    }

    /// Florence-2-large's language model: 1024 wide, 12 + 12 layers, 16 heads, FFN 4096, with
    /// 1024 positions as counted in REFERENCE.md's 770.2M. The re-released large checkpoint's
    /// `config.json` says 4096 positions: read the configuration from the checkpoint (or set
    /// [`BartConfig::max_position_embeddings`]) to load it.
    pub fn florence2_large() -> Self {
        Self {
            d_model: 1024,
            encoder_layers: 12,
            decoder_layers: 12,
            encoder_attention_heads: 16,
            decoder_attention_heads: 16,
            encoder_ffn_dim: 4096,
            decoder_ffn_dim: 4096,
            ..Self::florence2_base()
        }
    }

    /// The feed-forward activation.
    ///
    /// # Errors
    /// As [`Activation::parse`].
    pub fn activation(&self) -> Result<Activation> {
        Activation::parse(&self.activation_function)
    }

    /// `sqrt(d_model)` when [`BartConfig::scale_embedding`] is set, else 1.
    pub fn embed_scale(&self) -> f64 {
        if self.scale_embedding {
            (self.d_model as f64).sqrt()
        } else {
            1.0
        }
    }

    /// Checks sizes, head divisibility, token ids, dropouts and the activation name.
    ///
    /// # Errors
    /// [`FedError::InvalidConfig`] naming the first offending field.
    pub fn validate(&self) -> Result<()> {
        positive("vocab_size", self.vocab_size)?;
        positive("max_position_embeddings", self.max_position_embeddings)?;
        positive("d_model", self.d_model)?;
        positive("encoder_layers", self.encoder_layers)?;
        positive("decoder_layers", self.decoder_layers)?;
        positive("encoder_ffn_dim", self.encoder_ffn_dim)?;
        positive("decoder_ffn_dim", self.decoder_ffn_dim)?;
        heads(
            "encoder_attention_heads",
            self.encoder_attention_heads,
            self.d_model,
        )?;
        heads(
            "decoder_attention_heads",
            self.decoder_attention_heads,
            self.d_model,
        )?;
        self.activation()?;
        probability("dropout", self.dropout)?;
        probability("attention_dropout", self.attention_dropout)?;
        probability("activation_dropout", self.activation_dropout)?;
        if !self.tie_word_embeddings {
            return Err(FedError::config(
                "tie_word_embeddings",
                "must be true: lm_head is always the shared embedding",
            ));
        }
        let vocab = self.vocab_size;
        token("pad_token_id", Some(self.pad_token_id), vocab)?;
        token("bos_token_id", Some(self.bos_token_id), vocab)?;
        token("eos_token_id", Some(self.eos_token_id), vocab)?;
        token(
            "decoder_start_token_id",
            Some(self.decoder_start_token_id),
            vocab,
        )?;
        token("forced_bos_token_id", self.forced_bos_token_id, vocab)?;
        token("forced_eos_token_id", self.forced_eos_token_id, vocab)?;
        Ok(())
    }
}

fn positive(field: &'static str, value: usize) -> Result<()> {
    if value == 0 {
        return Err(FedError::config(field, "must be at least 1"));
    }
    Ok(())
}

fn heads(field: &'static str, heads: usize, d_model: usize) -> Result<()> {
    positive(field, heads)?;
    if !d_model.is_multiple_of(heads) {
        return Err(FedError::config(
            field,
            format!("must divide d_model ({d_model}), got {heads}"),
        ));
    }
    Ok(())
}

fn probability(field: &'static str, p: f64) -> Result<()> {
    if !(0.0..1.0).contains(&p) {
        return Err(FedError::config(
            field,
            format!("must be in [0, 1), got {p}"),
        ));
    }
    Ok(())
}

fn token(field: &'static str, id: Option<u32>, vocab: usize) -> Result<()> {
    match id {
        Some(id) if id as usize >= vocab => Err(FedError::config(
            field,
            format!("{id} is outside the vocabulary of {vocab} tokens"),
        )),
        _ => Ok(()),
    }
}
