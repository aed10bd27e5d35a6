//! Adapters in Hugging Face PEFT's on-disk format: `adapter_config.json` +
//! `adapter_model.safetensors`, so an adapter fine-tuned here loads in Python with
//! `PeftModel.from_pretrained(base, dir)`, and an adapter saved by `peft` loads here.
//!
//! # The format (peft 0.21)
//!
//! `adapter_model.safetensors` holds, for every adapted layer, two tensors named
//!
//! ```text
//! base_model.model.{module}.lora_A.weight   [r, in]
//! base_model.model.{module}.lora_B.weight   [out, r]
//! ```
//!
//! where `{module}` is the layer's PyTorch module name (for Florence-2's last decoder layer:
//! `model.language_model.decoder.layers.1.self_attn.q_proj`). peft leaves the adapter name
//! (`default`) out of the saved keys, and writes the metadata `format = "pt"`. The layouts are
//! those of [`PersonalizedLora::lora_a`](crate::PersonalizedLora::lora_a) and
//! [`PersonalizedLora::lora_b`](crate::PersonalizedLora::lora_b): nothing is transposed. Here
//! `{module}` is `key_prefix` followed by the burn module path of the
//! [`PersonalizedLora`](crate::PersonalizedLora) (enum variant names left out, see
//! [`crate::params::path`]); with the crate's naming rule (burn fields named after the
//! PyTorch attributes) the prefix is all that differs, e.g. `"model.language_model."` for a
//! BART module whose paths start at `decoder`.
//!
//! `adapter_config.json` is peft's `LoraConfig`, sorted keys, every field peft 0.21.2 writes
//! ([`save_peft_adapter`] writes them all, with peft's defaults): `peft_type: "LORA"`, `r`,
//! `lora_alpha`, `lora_dropout`, `target_modules` (the full module names), `bias: "none"`,
//! `fan_in_fan_out: false`, `use_rslora: false`, `use_dora: false`, `inference_mode: true`, ...
//!
//! # Scaling
//!
//! A [`PersonalizedLora`](crate::PersonalizedLora) multiplies its update by `alpha / r`, fixed
//! when it is built; burn's module visitors see its tensors but not that number. So both
//! directions take the [`LoraConfig`](crate::LoraConfig) the module's adapters were built with:
//! [`save_peft_adapter`] writes its `r`, `lora_alpha` and `lora_dropout`, and
//! [`load_peft_adapter`] refuses a file whose `r` or scaling (`lora_alpha / r`, or
//! `lora_alpha / sqrt(r)` with `use_rslora`) differs from it, rather than silently changing
//! what the module computes. To load a peft adapter trained with other settings, read them
//! first with [`PeftAdapterConfig::read`] and build the adapters with
//! [`PeftAdapterConfig::lora_config`]. Both directions also check every adapter's rank (the
//! first dimension of its `lora_a`) against the config's.
//!
//! # Limits
//!
//! Only plain LoRA on linear layers: no DoRA, no LoRA bias, no per-module `rank_pattern` /
//! `alpha_pattern`, no `modules_to_save` (such files are refused with a typed error). An
//! adapter on a 1x1 convolution ([`crate::lora::Pointwise`]) is written 2-D (`[r, in]`,
//! `[out, r]`), whereas peft's `Conv2d` adapters are `[r, in, 1, 1]` and `[out, r, 1, 1]`.
//!
//! # Example
//!
//! ```
//! use burn::backend::Flex;
//! use burn::nn::{Linear, LinearConfig};
//! use burn::prelude::*;
//! use fedvlm::lora::{PeftExport, load_peft_adapter, save_peft_adapter};
//! use fedvlm::{LoraConfig, PersonalizedLora};
//!
//! #[derive(Module, Debug)]
//! struct Attention<B: Backend> {
//!     q_proj: PersonalizedLora<B>,
//!     k_proj: Linear<B>,
//! }
//!
//! let device = Default::default();
//! let lora = LoraConfig::new(4, 8.0);
//! let build = |seed| -> fedvlm::Result<Attention<Flex>> {
//!     Ok(Attention {
//!         q_proj: PersonalizedLora::from_linear(
//!             LinearConfig::new(16, 16).init(&device),
//!             &lora,
//!             seed,
//!         )?,
//!         k_proj: LinearConfig::new(16, 16).init(&device),
//!     })
//! };
//!
//! let dir = tempfile::tempdir().map_err(|e| fedvlm::FedError::io("tempdir", e))?;
//! let trained = build(1)?;
//! // writes `base_model.model.model.self_attn.q_proj.lora_A.weight` ([4, 16]) and `..lora_B..`
//! save_peft_adapter(&trained, dir.path(), &PeftExport::new("model.self_attn.", lora))?;
//!
//! let other = load_peft_adapter(&build(2)?, dir.path(), "model.self_attn.", &lora)?;
//! assert_eq!(other.q_proj.lora_a.val().to_data(), trained.q_proj.lora_a.val().to_data());
//! # Ok::<(), fedvlm::FedError>(())
//! ```

mod config;
mod entries;
mod load;
mod save;

pub use config::{PeftAdapterConfig, PeftAutoMapping, PeftExport};
pub use entries::peft_key;
pub use load::load_peft_adapter;
pub use save::save_peft_adapter;

/// File name of peft's adapter configuration.
pub const PEFT_CONFIG_FILE: &str = "adapter_config.json";
/// File name of peft's adapter weights.
pub const PEFT_WEIGHTS_FILE: &str = "adapter_model.safetensors";
/// The prefix peft puts before every saved key (`PeftModel.base_model.model`).
pub const PEFT_KEY_ROOT: &str = "base_model.model.";
/// The peft version whose `adapter_config.json` field set [`save_peft_adapter`] writes.
pub const PEFT_FORMAT_VERSION: &str = "0.21.2";
