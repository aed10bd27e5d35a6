//! Florence-2 (Xiao et al., 2024) in burn: the DaViT vision encoder, the projector into the
//! language model, and the BART encoder-decoder, loadable from Microsoft's published checkpoints
//! and from transformers' converted ones.

pub mod bart;
mod config;
pub mod davit;
pub mod generate;
pub mod hub;
mod model;
pub mod pretrained;
pub mod processor;
pub mod projector;
pub mod tokenizer;
pub mod weights;

pub use bart::{BartConfig, BartModel};
pub use config::{CheckpointLayout, Florence2Config};
pub use davit::{Davit, DavitConfig};
pub use generate::{GenerationConfig, generate};
pub use model::{Encoded, Florence2, LANGUAGE_MODEL_PREFIX};
pub use pretrained::{Florence2Output, Florence2Pipeline, Florence2Query, PipelineError};
pub use projector::MultiModalProjector;
