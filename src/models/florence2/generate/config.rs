//! Generation settings, with Florence-2's defaults and transformers' semantics.

use serde::{Deserialize, Serialize};

use crate::error::{FedError, Result};
use crate::models::florence2::bart::BartConfig;

/// When beam search stops (transformers' `early_stopping`: `True`, `False` or `"never"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "EarlyStoppingRepr", into = "EarlyStoppingRepr")]
pub enum EarlyStopping {
    /// `True`: stop as soon as every input has `num_beams` finished hypotheses
    /// (Florence-2's setting).
    Enabled,
    /// `False` (transformers' default): stop when no running beam can beat the worst finished
    /// hypothesis, judged at the current length.
    Heuristic,
    /// `"never"`: the same test at the best possible length (canonical beam search).
    Never,
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum EarlyStoppingRepr {
    Flag(bool),
    Word(String),
}

impl TryFrom<EarlyStoppingRepr> for EarlyStopping {
    type Error = String;

    fn try_from(repr: EarlyStoppingRepr) -> std::result::Result<Self, String> {
        match repr {
            EarlyStoppingRepr::Flag(true) => Ok(Self::Enabled),
            EarlyStoppingRepr::Flag(false) => Ok(Self::Heuristic),
            EarlyStoppingRepr::Word(w) if w == "never" => Ok(Self::Never),
            EarlyStoppingRepr::Word(w) => Err(format!(
                "early_stopping must be true, false or \"never\", got {w:?}"
            )),
        }
    }
}

impl From<EarlyStopping> for EarlyStoppingRepr {
    fn from(value: EarlyStopping) -> Self {
        match value {
            EarlyStopping::Enabled => Self::Flag(true),
            EarlyStopping::Heuristic => Self::Flag(false),
            EarlyStopping::Never => Self::Word("never".to_string()),
        }
    }
}

/// How [`super::generate`] decodes: greedy (`num_beams == 1`) or beam search, as transformers'
/// `generate` does for an encoder-decoder with these `GenerationConfig` fields.
///
/// [`GenerationConfig::default`] is Florence-2's: 3 beams, no repeated 3-grams, up to 1024 new
/// tokens, early stopping, length penalty 1, `<s>` forced first and `</s>` forced at the
/// maximum length, decoding from `</s>` and padding with `<pad>`.
///
/// ```
/// use fedvlm::models::florence2::generate::GenerationConfig;
/// let greedy = GenerationConfig { num_beams: 1, max_new_tokens: 20, ..Default::default() };
/// assert!(greedy.validate().is_ok());
/// assert!(GenerationConfig { num_beams: 0, ..Default::default() }.validate().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationConfig {
    /// Tokens generated at most after the decoder start token (the output has at most
    /// `max_new_tokens + 1` ids).
    #[serde(default = "defaults::max_new_tokens")]
    pub max_new_tokens: usize,
    /// Beams; 1 is greedy decoding.
    #[serde(default = "defaults::num_beams")]
    pub num_beams: usize,
    /// Every n-gram of this size occurs at most once in a sequence (0 disables).
    #[serde(default = "defaults::no_repeat_ngram_size")]
    pub no_repeat_ngram_size: usize,
    /// Finished hypotheses are ranked by `sum log p / generated_length^length_penalty`.
    #[serde(default = "defaults::length_penalty")]
    pub length_penalty: f64,
    /// When beam search stops.
    #[serde(default = "defaults::early_stopping")]
    pub early_stopping: EarlyStopping,
    /// The first decoder input.
    #[serde(default = "defaults::eos")]
    pub decoder_start_token_id: u32,
    /// A sequence ends at this token (`None`: only at the maximum length).
    #[serde(default = "defaults::some_eos")]
    pub eos_token_id: Option<u32>,
    /// Finished sequences are padded with it (`None`: the end-of-sequence token).
    #[serde(default = "defaults::pad")]
    pub pad_token_id: Option<u32>,
    /// Token forced as the first generated one.
    #[serde(default = "defaults::bos")]
    pub forced_bos_token_id: Option<u32>,
    /// Token forced as the last one when the maximum length is reached.
    #[serde(default = "defaults::some_eos")]
    pub forced_eos_token_id: Option<u32>,
    /// Feed one token per step with a key/value cache (false: the whole sequence every step;
    /// same result, for testing).
    #[serde(default = "defaults::use_cache")]
    pub use_cache: bool,
}

mod defaults {
    use super::EarlyStopping;
    pub fn max_new_tokens() -> usize {
        1024
    }
    pub fn num_beams() -> usize {
        3
    }
    pub fn no_repeat_ngram_size() -> usize {
        3
    }
    pub fn length_penalty() -> f64 {
        1.0
    }
    pub fn early_stopping() -> EarlyStopping {
        EarlyStopping::Enabled
    }
    pub fn eos() -> u32 {
        2
    }
    pub fn some_eos() -> Option<u32> {
        Some(2)
    }
    pub fn pad() -> Option<u32> {
        Some(1)
    }
    pub fn bos() -> Option<u32> {
        Some(0)
    }
    pub fn use_cache() -> bool {
        true
    }
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self::florence2()
    }
}

impl GenerationConfig {
    /// Florence-2's settings (see the type's documentation).
    pub fn florence2() -> Self {
        Self {
            max_new_tokens: defaults::max_new_tokens(),
            num_beams: defaults::num_beams(),
            no_repeat_ngram_size: defaults::no_repeat_ngram_size(),
            length_penalty: defaults::length_penalty(),
            early_stopping: defaults::early_stopping(),
            decoder_start_token_id: defaults::eos(),
            eos_token_id: defaults::some_eos(),
            pad_token_id: defaults::pad(),
            forced_bos_token_id: defaults::bos(),
            forced_eos_token_id: defaults::some_eos(),
            use_cache: defaults::use_cache(),
        }
    }

    /// Greedy decoding with Florence-2's other settings.
    pub fn greedy(max_new_tokens: usize) -> Self {
        Self {
            max_new_tokens,
            num_beams: 1,
            ..Self::florence2()
        }
    }

    /// Takes the token ids (start, end, padding, forced) from a model configuration, and the
    /// generation settings a Florence-2 `text_config` stores (`num_beams`,
    /// `no_repeat_ngram_size`, `early_stopping`) where it has them.
    pub fn with_model_config(mut self, config: &BartConfig) -> Self {
        self.decoder_start_token_id = config.decoder_start_token_id;
        self.eos_token_id = Some(config.eos_token_id);
        self.pad_token_id = Some(config.pad_token_id);
        self.forced_bos_token_id = config.forced_bos_token_id;
        self.forced_eos_token_id = config.forced_eos_token_id;
        if let Some(beams) = config.num_beams {
            self.num_beams = beams;
        }
        if let Some(n) = config.no_repeat_ngram_size {
            self.no_repeat_ngram_size = n;
        }
        if let Some(early) = config.early_stopping {
            self.early_stopping = if early {
                EarlyStopping::Enabled
            } else {
                EarlyStopping::Heuristic
            };
        }
        self
    }

    /// The padding token transformers uses: `pad_token_id`, else `eos_token_id`.
    pub fn effective_pad_token_id(&self) -> Option<u32> {
        self.pad_token_id.or(self.eos_token_id)
    }

    /// Checks the settings on their own.
    ///
    /// # Errors
    /// [`FedError::InvalidConfig`] for `num_beams == 0`, `max_new_tokens == 0` or a
    /// non-finite length penalty.
    pub fn validate(&self) -> Result<()> {
        if self.num_beams == 0 {
            return Err(FedError::config("num_beams", "must be at least 1"));
        }
        if self.max_new_tokens == 0 {
            return Err(FedError::config("max_new_tokens", "must be at least 1"));
        }
        if !self.length_penalty.is_finite() {
            return Err(FedError::config(
                "length_penalty",
                format!("must be finite, got {}", self.length_penalty),
            ));
        }
        Ok(())
    }

    /// Checks the settings against a vocabulary of `vocab_size` tokens.
    ///
    /// # Errors
    /// As [`GenerationConfig::validate`], and [`FedError::InvalidConfig`] for a token id
    /// outside the vocabulary.
    pub fn validate_for(&self, vocab_size: usize) -> Result<()> {
        self.validate()?;
        let ids = [
            ("decoder_start_token_id", Some(self.decoder_start_token_id)),
            ("eos_token_id", self.eos_token_id),
            ("pad_token_id", self.pad_token_id),
            ("forced_bos_token_id", self.forced_bos_token_id),
            ("forced_eos_token_id", self.forced_eos_token_id),
        ];
        for (field, id) in ids {
            if let Some(id) = id
                && id as usize >= vocab_size
            {
                return Err(FedError::config(
                    field,
                    format!("{id} is outside the vocabulary of {vocab_size} tokens"),
                ));
            }
        }
        Ok(())
    }
}
