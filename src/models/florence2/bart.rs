//! BART, Florence-2's language model, numerically equal to transformers 5.24's `BartModel` as
//! `Florence2ForConditionalGeneration` uses it: post-LN encoder and decoder layers, learned
//! positions with BART's offset of 2, `layernorm_embedding` on both sides, exact GELU, no
//! embedding scale, and the language-model head tied to the token embedding `shared`.
//!
//! * [`BartConfig`]: transformers' `BartConfig` fields and defaults, Florence-2 presets.
//! * [`BartModel`]: encoder (from embeddings), decoder (whole, or prefix + last layer, with an
//!   optional [`KvCache`]), logits; adapters by path ([`BartModel::map_dense`]).
//! * Checkpoints: [`BartModel::load_language_model`] with [`KeyLayout::Native`] or
//!   [`KeyLayout::Original`] keys ([`NATIVE_KEY_RULES`], [`ORIGINAL_KEY_RULES`]).

mod adapt;
mod attention;
mod config;
mod decoder;
mod encoder;
mod feed_forward;
mod init;
mod kv_cache;
mod model;
mod weights;

pub use attention::BartAttention;
pub(crate) use attention::{causal_mask, padding_mask};
pub use config::{Activation, BartConfig};
pub use decoder::{BartDecoder, BartDecoderLayer};
pub use encoder::{BartEncoder, BartEncoderLayer, POSITION_OFFSET};
pub use feed_forward::FeedForward;
pub use kv_cache::{KeyValue, KvCache, LayerCache};
pub use model::BartModel;
pub use weights::{
    FINAL_LOGITS_BIAS_KEY, KeyLayout, NATIVE_KEY_RULES, ORIGINAL_KEY_RULES, TIED_EMBEDDING_KEYS,
};
