//! The whole Florence-2: image -> DaViT -> projector -> BART encoder (with the prompt) -> BART
//! decoder -> logits, with pLoRA adapters where the paper puts them.

use burn::prelude::*;

use super::bart::BartModel;
use super::config::Florence2Config;
use super::davit::Davit;
use super::generate::{GenerationConfig, generate};
use super::projector::MultiModalProjector;
use crate::error::{FedError, Result};
use crate::lora::LoraConfig;
use crate::seed::mix_seed;

/// Path prefix of the language model inside [`Florence2`] (adapter targets are given with it:
/// `language_model.decoder.layers.5.self_attn.q_proj`).
pub const LANGUAGE_MODEL_PREFIX: &str = "language_model.";

/// Florence-2 in burn. Field names follow transformers' native `Florence2Model`, so parameter
/// paths are the native checkpoint keys without their leading `model.`
/// (`vision_tower.convs.0.conv.weight`, `language_model.decoder.layers.5.self_attn.q_proj.weight`).
///
/// Load a checkpoint folder with [`Florence2::load`] (see the `weights` module), build a
/// random model with [`Florence2::new`].
#[derive(Module, Debug)]
pub struct Florence2<B: Backend> {
    /// The DaViT image encoder.
    pub vision_tower: Davit<B>,
    /// Image features -> language-model embeddings (577 tokens for a 768x768 image).
    pub multi_modal_projector: MultiModalProjector<B>,
    /// The BART encoder-decoder with its tied `lm_head`.
    pub language_model: BartModel<B>,
}

/// The encoder's output and the mask the decoder's cross-attention uses.
#[derive(Debug, Clone)]
pub struct Encoded<B: Backend> {
    /// `[N, S, d_model]`: image tokens then prompt tokens.
    pub hidden: Tensor<B, 3>,
    /// `[N, S]` (1 keep, 0 padding), `None` when nothing is padded.
    pub mask: Option<Tensor<B, 2, Int>>,
}

impl<B: Backend> Florence2<B> {
    /// A randomly initialised model (weights drawn from `seed`); for tests and from-scratch
    /// experiments. Use [`Florence2::load`] for the published checkpoints.
    ///
    /// # Errors
    /// [`FedError::InvalidConfig`] for an invalid `config`.
    pub fn new(config: &Florence2Config, seed: u64, device: &B::Device) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            vision_tower: config.vision.init(device)?,
            multi_modal_projector: config.vision.init_projector(device)?,
            language_model: BartModel::new(&config.text, seed, device)?,
        })
    }

    /// Image embeddings `[N, 1 + h*w, d_model]` of `pixel_values` `[N, 3, H, W]` (normalised
    /// as the processor does).
    ///
    /// # Errors
    /// [`FedError::InvalidConfig`] for images of the wrong shape or too large for the
    /// projector's position tables.
    pub fn image_features(&self, pixel_values: Tensor<B, 4>) -> Result<Tensor<B, 3>> {
        let (tokens, grid) = self.vision_tower.forward(pixel_values)?;
        self.multi_modal_projector.forward(tokens, grid)
    }

    /// Runs the encoder over the image embeddings followed by the prompt's token embeddings
    /// (`input_ids` `[N, L]`: `<s> prompt </s>` without image placeholders, as
    /// [`super::processor::Florence2Processor`] makes them). `attention_mask` `[N, L]` marks the
    /// prompt's padding (1 keep, 0 pad); the image tokens are always attended to.
    ///
    /// # Errors
    /// [`FedError::InvalidConfig`] for mismatched batch sizes or shapes, or a sequence longer
    /// than the learned positions.
    pub fn encode(
        &self,
        pixel_values: Tensor<B, 4>,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Option<Tensor<B, 2, Int>>,
    ) -> Result<Encoded<B>> {
        let image = self.image_features(pixel_values)?;
        let [n, image_tokens, _] = image.dims();
        let [n_text, l] = input_ids.dims();
        if n_text != n {
            return Err(FedError::config(
                "input_ids",
                format!("batch of {n_text} prompts for {n} images"),
            ));
        }
        let text = self.language_model.embed_tokens(input_ids);
        let embeds = Tensor::cat(vec![image, text], 1);
        let mask = match attention_mask {
            Some(mask) => {
                if mask.dims() != [n, l] {
                    return Err(FedError::config(
                        "attention_mask",
                        format!("has shape {:?}, the prompts {:?}", mask.dims(), [n, l]),
                    ));
                }
                let device = mask.device();
                let ones = Tensor::<B, 2, Int>::ones([n, image_tokens], &device);
                Some(Tensor::cat(vec![ones, mask], 1))
            }
            None => None,
        };
        let hidden = self.language_model.encode(embeds, mask.clone())?;
        Ok(Encoded { hidden, mask })
    }

    /// Teacher-forced logits `[N, T, vocab]` for `decoder_input_ids` `[N, T]` (starting with
    /// the decoder start token `</s>`).
    ///
    /// # Errors
    /// As [`Florence2::encode`], and for decoder inputs longer than the learned positions.
    pub fn forward(
        &self,
        pixel_values: Tensor<B, 4>,
        input_ids: Tensor<B, 2, Int>,
        decoder_input_ids: Tensor<B, 2, Int>,
    ) -> Result<Tensor<B, 3>> {
        self.forward_masked(pixel_values, input_ids, None, decoder_input_ids)
    }

    /// [`Florence2::forward`] with a prompt padding mask (see [`Florence2::encode`]).
    ///
    /// # Errors
    /// As [`Florence2::forward`].
    pub fn forward_masked(
        &self,
        pixel_values: Tensor<B, 4>,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Option<Tensor<B, 2, Int>>,
        decoder_input_ids: Tensor<B, 2, Int>,
    ) -> Result<Tensor<B, 3>> {
        let encoded = self.encode(pixel_values, input_ids, attention_mask)?;
        let hidden =
            self.language_model
                .decode(decoder_input_ids, encoded.hidden, encoded.mask, None)?;
        Ok(self.language_model.logits(hidden))
    }

    /// Generates answers (greedy or beam search, see [`GenerationConfig`]); each row starts with
    /// the decoder start token and finished rows are padded, as transformers returns them.
    ///
    /// # Errors
    /// As [`Florence2::encode`], and [`FedError::InvalidConfig`] for invalid settings.
    pub fn generate(
        &self,
        pixel_values: Tensor<B, 4>,
        input_ids: Tensor<B, 2, Int>,
        config: &GenerationConfig,
    ) -> Result<Vec<Vec<u32>>> {
        self.generate_masked(pixel_values, input_ids, None, config)
    }

    /// [`Florence2::generate`] with a prompt padding mask (see [`Florence2::encode`]).
    ///
    /// # Errors
    /// As [`Florence2::generate`].
    pub fn generate_masked(
        &self,
        pixel_values: Tensor<B, 4>,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Option<Tensor<B, 2, Int>>,
        config: &GenerationConfig,
    ) -> Result<Vec<Vec<u32>>> {
        let encoded = self.encode(pixel_values, input_ids, attention_mask)?;
        generate(&self.language_model, encoded.hidden, encoded.mask, config)
    }

    /// The paper's pLoRA placement, as adapter targets: the last decoder layer's
    /// self-attention `q_proj` and `v_proj`.
    pub fn default_adapter_targets(&self) -> Vec<String> {
        self.language_model
            .default_adapter_targets()
            .into_iter()
            .map(|path| format!("{LANGUAGE_MODEL_PREFIX}{path}"))
            .collect()
    }

    /// Every linear layer an adapter can go on (`language_model.encoder.layers.0.fc1`, ...).
    pub fn adapter_candidates(&self) -> Vec<String> {
        self.language_model
            .dense_paths()
            .into_iter()
            .map(|path| format!("{LANGUAGE_MODEL_PREFIX}{path}"))
            .collect()
    }

    /// Puts a [`crate::PersonalizedLora`] on each of `targets` (paths from
    /// [`Florence2::adapter_candidates`]; [`Florence2::default_adapter_targets`] for the
    /// paper's). Target `i` draws its `A` from a seed derived from `seed` and `i`; give each
    /// client its own `seed` for distinct private `A`s. `B = 0`, so the model computes exactly
    /// what it computed before. Freeze the rest with [`crate::lora::freeze_all`].
    ///
    /// # Errors
    /// [`FedError::InvalidConfig`] for an invalid `lora`, [`FedError::UnsupportedLayer`] for an
    /// unknown target or one that already carries an adapter.
    pub fn with_adapters(
        mut self,
        lora: &LoraConfig,
        targets: &[impl AsRef<str>],
        seed: u64,
    ) -> Result<Self> {
        lora.validate()?;
        for (i, target) in targets.iter().enumerate() {
            let target = target.as_ref();
            let path = target.strip_prefix(LANGUAGE_MODEL_PREFIX).ok_or_else(|| {
                FedError::UnsupportedLayer(format!(
                    "`{target}`: adapters go on the language model's linear layers \
                     (paths starting with `{LANGUAGE_MODEL_PREFIX}`)"
                ))
            })?;
            let layer_seed = mix_seed(&[seed, i as u64]);
            self.language_model = self
                .language_model
                .map_dense(path, |dense| dense.adapt(lora, layer_seed, target))?;
        }
        Ok(self)
    }
}
