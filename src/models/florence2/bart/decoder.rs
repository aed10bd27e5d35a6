//! BART's decoder (transformers' `BartDecoder`): learned positions continuing after the
//! cached ones, `layernorm_embedding`, then post-LN layers of causal self-attention,
//! cross-attention to the encoder output and feed-forward.

use burn::nn::{Dropout, DropoutConfig, Embedding, LayerNorm, LayerNormConfig};
use burn::prelude::*;

use super::attention::{BartAttention, Source, causal_mask};
use super::config::{Activation, BartConfig};
use super::encoder::{POSITION_OFFSET, position_rows};
use super::feed_forward::FeedForward;
use super::init::Init;
use super::kv_cache::LayerCache;
use crate::lora::Dense;

/// One decoder layer: `x = LN(x + self_attn(x))`, `x = LN(x + encoder_attn(x, enc))`,
/// `x = LN(x + fc2(act(fc1(x))))`.
#[derive(Module, Debug)]
pub struct BartDecoderLayer<B: Backend> {
    /// Causal self-attention (default pLoRA targets: its `q_proj` and `v_proj` in the last
    /// layer).
    pub self_attn: BartAttention<B>,
    /// LayerNorm after the self-attention residual.
    pub self_attn_layer_norm: LayerNorm<B>,
    /// Cross-attention to the encoder output.
    pub encoder_attn: BartAttention<B>,
    /// LayerNorm after the cross-attention residual.
    pub encoder_attn_layer_norm: LayerNorm<B>,
    /// Feed-forward `d_model -> ffn_dim`.
    pub fc1: Dense<B>,
    /// Feed-forward `ffn_dim -> d_model`.
    pub fc2: Dense<B>,
    /// LayerNorm after the feed-forward residual.
    pub final_layer_norm: LayerNorm<B>,
    /// The feed-forward activation and dropouts.
    pub ffn: FeedForward,
}

impl<B: Backend> BartDecoderLayer<B> {
    fn new(
        config: &BartConfig,
        activation: Activation,
        init: &mut Init,
        device: &B::Device,
    ) -> Self {
        let d = config.d_model;
        let heads = config.decoder_attention_heads;
        Self {
            self_attn: BartAttention::new(d, heads, config.attention_dropout, init, device),
            self_attn_layer_norm: LayerNormConfig::new(d).init(device),
            encoder_attn: BartAttention::new(d, heads, config.attention_dropout, init, device),
            encoder_attn_layer_norm: LayerNormConfig::new(d).init(device),
            fc1: Dense::Plain(init.linear(d, config.decoder_ffn_dim, device)),
            fc2: Dense::Plain(init.linear(config.decoder_ffn_dim, d, device)),
            final_layer_norm: LayerNormConfig::new(d).init(device),
            ffn: FeedForward::new(activation, config.dropout, config.activation_dropout),
        }
    }

    /// Applies the layer to `t` new positions `[N, t, d]`. With a cache, earlier positions'
    /// keys and values come from it and the new ones are appended; the cross-attention keys
    /// and values are computed from `encoder_hidden` once. `encoder_mask` (`true` = padding)
    /// broadcasts to `[N, heads, t, S]`.
    pub fn forward(
        &self,
        hidden: Tensor<B, 3>,
        encoder_hidden: Tensor<B, 3>,
        encoder_mask: Option<Tensor<B, 4, Bool>>,
        cache: Option<&mut LayerCache<B>>,
    ) -> Tensor<B, 3> {
        let t = hidden.dims()[1];
        let (self_slot, cross_slot) = match cache {
            Some(cache) => (Some(&mut cache.self_attn), Some(&mut cache.cross_attn)),
            None => (None, None),
        };
        let past = self_slot
            .as_ref()
            .and_then(|slot| slot.as_ref())
            .map_or(0, |kv| kv.len());
        let mask = causal_mask::<B>(t, past, &hidden.device());
        let attn = self
            .self_attn
            .forward(hidden.clone(), Source::SelfAttention(self_slot), mask);
        let hidden = self
            .self_attn_layer_norm
            .forward(hidden + self.ffn.dropout.forward(attn));

        let attn = self.encoder_attn.forward(
            hidden.clone(),
            Source::Cross(encoder_hidden, cross_slot),
            encoder_mask,
        );
        let hidden = self
            .encoder_attn_layer_norm
            .forward(hidden + self.ffn.dropout.forward(attn));

        let out = self.ffn.apply(&self.fc1, &self.fc2, hidden.clone());
        self.final_layer_norm.forward(hidden + out)
    }
}

/// The decoder. Token embeddings come from the model's `shared` table.
#[derive(Module, Debug)]
pub struct BartDecoder<B: Backend> {
    /// Learned positions, `[max_position_embeddings + 2, d_model]`.
    pub embed_positions: Embedding<B>,
    /// The layers.
    pub layers: Vec<BartDecoderLayer<B>>,
    /// LayerNorm of the embeddings plus positions.
    pub layernorm_embedding: LayerNorm<B>,
    /// Dropout after `layernorm_embedding` (training only).
    pub dropout: Dropout,
}

impl<B: Backend> BartDecoder<B> {
    pub(crate) fn new(
        config: &BartConfig,
        activation: Activation,
        init: &mut Init,
        device: &B::Device,
    ) -> Self {
        let d = config.d_model;
        let embed_positions =
            init.embedding(config.max_position_embeddings + POSITION_OFFSET, d, device);
        Self {
            embed_positions,
            layers: (0..config.decoder_layers)
                .map(|_| BartDecoderLayer::new(config, activation, init, device))
                .collect(),
            layernorm_embedding: LayerNormConfig::new(d).init(device),
            dropout: DropoutConfig::new(config.dropout).init(),
        }
    }

    /// Positions the tables hold (rows minus the offset).
    pub fn max_positions(&self) -> usize {
        self.embed_positions.weight.lazy_shape()[0].saturating_sub(POSITION_OFFSET)
    }

    /// Token embeddings `[N, t, d]` (already scaled) plus the positions `past .. past + t`,
    /// through `layernorm_embedding` and dropout.
    pub(crate) fn embed(&self, token_embeds: Tensor<B, 3>, past: usize) -> Tensor<B, 3> {
        let positions = position_rows(&self.embed_positions, past, token_embeds.dims()[1]);
        self.dropout
            .forward(self.layernorm_embedding.forward(token_embeds + positions))
    }
}
