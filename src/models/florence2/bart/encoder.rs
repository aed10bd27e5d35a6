//! BART's encoder (transformers' `BartEncoder`): learned positions, `layernorm_embedding`,
//! then post-LN self-attention + feed-forward layers.

use burn::nn::{Dropout, DropoutConfig, Embedding, LayerNorm, LayerNormConfig};
use burn::prelude::*;

use super::attention::{BartAttention, Source, padding_mask};
use super::config::{Activation, BartConfig};
use super::feed_forward::FeedForward;
use super::init::Init;

/// BART's learned position offset: position `p` reads row `p + 2` of `embed_positions`.
pub const POSITION_OFFSET: usize = 2;

/// One encoder layer: `x = LN(x + attn(x))`, then `x = LN(x + fc2(act(fc1(x))))`.
#[derive(Module, Debug)]
pub struct BartEncoderLayer<B: Backend> {
    /// Self-attention.
    pub self_attn: BartAttention<B>,
    /// LayerNorm after the attention residual.
    pub self_attn_layer_norm: LayerNorm<B>,
    /// Feed-forward `d_model -> ffn_dim`.
    pub fc1: crate::lora::Dense<B>,
    /// Feed-forward `ffn_dim -> d_model`.
    pub fc2: crate::lora::Dense<B>,
    /// LayerNorm after the feed-forward residual.
    pub final_layer_norm: LayerNorm<B>,
    /// The feed-forward activation and dropouts.
    pub ffn: FeedForward,
}

impl<B: Backend> BartEncoderLayer<B> {
    fn new(
        config: &BartConfig,
        activation: Activation,
        init: &mut Init,
        device: &B::Device,
    ) -> Self {
        let d = config.d_model;
        Self {
            self_attn: BartAttention::new(
                d,
                config.encoder_attention_heads,
                config.attention_dropout,
                init,
                device,
            ),
            self_attn_layer_norm: LayerNormConfig::new(d).init(device),
            fc1: crate::lora::Dense::Plain(init.linear(d, config.encoder_ffn_dim, device)),
            fc2: crate::lora::Dense::Plain(init.linear(config.encoder_ffn_dim, d, device)),
            final_layer_norm: LayerNormConfig::new(d).init(device),
            ffn: FeedForward::new(activation, config.dropout, config.activation_dropout),
        }
    }

    /// Applies the layer; `mask` (`true` = padding key) broadcasts to `[N, heads, S, S]`.
    pub fn forward(&self, hidden: Tensor<B, 3>, mask: Option<Tensor<B, 4, Bool>>) -> Tensor<B, 3> {
        let attn = self
            .self_attn
            .forward(hidden.clone(), Source::SelfAttention(None), mask);
        let hidden = self
            .self_attn_layer_norm
            .forward(hidden + self.ffn.dropout.forward(attn));
        let out = self.ffn.apply(&self.fc1, &self.fc2, hidden.clone());
        self.final_layer_norm.forward(hidden + out)
    }
}

/// The encoder. Token embeddings live in the model's `shared` table, so the encoder takes
/// embeddings (Florence-2 feeds image features followed by token embeddings).
#[derive(Module, Debug)]
pub struct BartEncoder<B: Backend> {
    /// Learned positions, `[max_position_embeddings + 2, d_model]`.
    pub embed_positions: Embedding<B>,
    /// The layers.
    pub layers: Vec<BartEncoderLayer<B>>,
    /// LayerNorm of the embeddings plus positions.
    pub layernorm_embedding: LayerNorm<B>,
    /// Dropout after `layernorm_embedding` (training only).
    pub dropout: Dropout,
}

impl<B: Backend> BartEncoder<B> {
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
            layers: (0..config.encoder_layers)
                .map(|_| BartEncoderLayer::new(config, activation, init, device))
                .collect(),
            layernorm_embedding: LayerNormConfig::new(d).init(device),
            dropout: DropoutConfig::new(config.dropout).init(),
        }
    }

    /// Positions the tables hold (rows minus the offset).
    pub fn max_positions(&self) -> usize {
        self.embed_positions.weight.lazy_shape()[0].saturating_sub(POSITION_OFFSET)
    }

    /// Encodes `[N, S, d]` embeddings; `attention_mask` is `[N, S]` (1 = token, 0 = padding).
    /// Shapes are checked by [`super::BartModel::encode`].
    pub(crate) fn forward(
        &self,
        inputs_embeds: Tensor<B, 3>,
        attention_mask: Option<Tensor<B, 2, Int>>,
    ) -> Tensor<B, 3> {
        let positions = position_rows(&self.embed_positions, 0, inputs_embeds.dims()[1]);
        let mut hidden = self
            .dropout
            .forward(self.layernorm_embedding.forward(inputs_embeds + positions));
        let mask = attention_mask.map(padding_mask);
        for layer in &self.layers {
            hidden = layer.forward(hidden, mask.clone());
        }
        hidden
    }
}

/// Rows `start + 2 .. start + 2 + len` of a learned position table, as `[1, len, d]`.
pub(crate) fn position_rows<B: Backend>(
    table: &Embedding<B>,
    start: usize,
    len: usize,
) -> Tensor<B, 3> {
    let first = start + POSITION_OFFSET;
    table.weight.val().narrow(0, first, len).unsqueeze::<3>()
}
