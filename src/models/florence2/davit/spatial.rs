//! The spatial block (transformers' `Florence2VisionSpatialBlock`).

use burn::nn::LayerNorm;
use burn::nn::conv::Conv2d;
use burn::prelude::*;

use super::config::DavitConfig;
use super::layers::{Mlp, depthwise_conv, drop_path, layer_norm, to_spatial, to_tokens};
use super::window::WindowAttention;

/// `x += dw(x); x += window_attn(norm1(x)); x += dw2(x); x += ffn(norm2(x))`, on `[N, C, H, W]`.
/// Drop-path ([`super::layers::drop_path`]) on both
/// attention and MLP branches while training.
#[derive(Module, Debug)]
pub struct SpatialBlock<B: Backend> {
    /// Depthwise 3x3 position convolution before the attention.
    pub conv1: Conv2d<B>,
    /// LayerNorm before the attention.
    pub norm1: LayerNorm<B>,
    /// Window attention.
    pub window_attn: WindowAttention<B>,
    /// Depthwise 3x3 position convolution before the MLP.
    pub conv2: Conv2d<B>,
    /// LayerNorm before the MLP.
    pub norm2: LayerNorm<B>,
    /// The MLP.
    pub ffn: Mlp<B>,
    /// Drop-path probability of the attention and MLP branches while training.
    pub drop_path: f64,
}

impl<B: Backend> SpatialBlock<B> {
    /// A spatial block of stage `stage` (the configuration must be valid).
    pub fn new(config: &DavitConfig, stage: usize, drop_path: f64, device: &B::Device) -> Self {
        let dim = config.embed_dim[stage];
        Self {
            conv1: depthwise_conv(dim, device),
            norm1: layer_norm(dim, device),
            window_attn: WindowAttention::new(
                dim,
                config.num_heads[stage],
                config.window_size,
                config.qkv_bias,
                device,
            ),
            conv2: depthwise_conv(dim, device),
            norm2: layer_norm(dim, device),
            ffn: Mlp::new(dim, config.mlp_hidden(stage), device),
            drop_path,
        }
    }

    /// `[N, C, H, W] -> [N, C, H, W]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [_, _, height, width] = x.dims();
        let x = self.conv1.forward(x.clone()) + x;
        let tokens = to_tokens(x);
        let attention = self
            .window_attn
            .forward(self.norm1.forward(tokens.clone()), height, width);
        let tokens = tokens + drop_path(attention, self.drop_path);
        let x = to_spatial(tokens, height, width);

        let x = self.conv2.forward(x.clone()) + x;
        let tokens = to_tokens(x);
        let tokens = tokens.clone()
            + drop_path(self.ffn.forward(self.norm2.forward(tokens)), self.drop_path);
        to_spatial(tokens, height, width)
    }
}
