//! Florence-2 (Xiao et al., 2024) in burn: the DaViT vision encoder, the projector into the
//! language model, and the BART encoder-decoder, loadable from Microsoft's published checkpoints
//! and from transformers' converted ones.
//!
//! * [`Florence2`] (`model.rs`) composes the parts; [`Florence2Config`] (`config.rs`) reads
//!   `config.json` in either layout; `weights.rs` loads a checkpoint folder.
//! * [`davit`] and [`projector`]: the vision side; [`bart`]: the encoder-decoder with its
//!   key/value cache and the adapter placement; [`generate`](mod@generate): greedy and beam
//!   search.
//! * [`tokenizer`], [`processor`] and [`hub`]: text, images and files.
//! * [`Florence2Pipeline::tiny_random`]: a tiny random model with a bundled stand-in tokenizer
//!   (offline smoke runs).
//!
//! Every part is golden-tested against transformers 5.24 (`tests/florence2_*.rs`).
//!
//! ```no_run
//! use burn::backend::Flex;
//! use fedvlm::models::florence2::{Florence2, GenerationConfig};
//! use fedvlm::LoraConfig;
//!
//! let device = Default::default();
//! let model = Florence2::<Flex>::load("Florence-2-base", &device)?;
//! // pLoRA where the paper puts it: the last decoder layer's self-attention q and v.
//! let targets = model.default_adapter_targets();
//! let model = model.with_adapters(&LoraConfig::paper(), &targets, 42)?;
//! # let (pixel_values, input_ids) = todo!();
//! let answer = model.generate(pixel_values, input_ids, &GenerationConfig::default())?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod bart;
mod config;
pub mod davit;
pub mod generate;
pub mod hub;
mod model;
pub mod pretrained;
pub mod processor;
pub mod projector;
mod tiny;
pub mod tokenizer;
pub mod weights;

pub use bart::{BartConfig, BartModel};
pub use config::{CheckpointLayout, Florence2Config};
pub use davit::{Davit, DavitConfig};
pub use generate::{GenerationConfig, generate};
pub use model::{Encoded, Florence2, LANGUAGE_MODEL_PREFIX};
pub use pretrained::{Florence2Output, Florence2Pipeline, Florence2Query, PipelineError};
pub use projector::MultiModalProjector;
pub use tiny::{TINY_IMAGE_SIZE, TINY_RANDOM};
