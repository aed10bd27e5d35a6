//! The channel block and its grouped channel attention (transformers'
//! `Florence2VisionChannelBlock` and `Florence2VisionChannelAttention`).

use burn::nn::conv::Conv2d;
use burn::nn::{LayerNorm, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;

use super::config::DavitConfig;
use super::layers::{Mlp, depthwise_conv, drop_path, layer_norm, to_spatial, to_tokens};

/// Channel attention: the channels are split into `groups` groups of `C/G`; within a group,
/// each channel attends to the others, comparing them over all `N` tokens.
///
/// With `q, k, v` of shape `[B, G, C/G, N]`: `out = softmax(q k^T * N^-0.5) v`, a
/// `(C/G) x (C/G)` attention per group. The scale uses the token count `N` (transformers passes
/// `scaling = num_tokens**-0.5`), which is the default scale of a dot-product attention whose
/// "head dimension" is `N`. Then `proj`.
#[derive(Module, Debug)]
pub struct ChannelAttention<B: Backend> {
    /// `dim -> 3 * dim` (queries, keys, values; groups contiguous within each).
    pub qkv: Linear<B>,
    /// `dim -> dim`.
    pub proj: Linear<B>,
    /// Number of channel groups.
    pub groups: usize,
}

impl<B: Backend> ChannelAttention<B> {
    /// Attention over `dim` channels in `groups` groups (which must divide `dim`).
    pub fn new(dim: usize, groups: usize, qkv_bias: bool, device: &B::Device) -> Self {
        Self {
            qkv: LinearConfig::new(dim, 3 * dim)
                .with_bias(qkv_bias)
                .init(device),
            proj: LinearConfig::new(dim, dim).init(device),
            groups,
        }
    }

    /// `[B, N, C] -> [B, N, C]`; all groups of all images in one batched attention call.
    pub fn forward(&self, tokens: Tensor<B, 3>) -> Tensor<B, 3> {
        let [batch, num_tokens, dim] = tokens.dims();
        let groups = self.groups;
        let group_dim = dim / groups;

        // [B, N, 3C] -> [3, B, G, C/G, N]
        let qkv = self
            .qkv
            .forward(tokens)
            .reshape([batch, num_tokens, 3, groups, group_dim])
            .permute([2, 0, 3, 4, 1]);
        let part = |i: usize| {
            qkv.clone()
                .narrow(0, i, 1)
                .reshape([batch, groups, group_dim, num_tokens])
        };
        let options = AttentionModuleOptions {
            scale: Some((num_tokens as f64).powf(-0.5)),
            ..Default::default()
        };
        // [B, G, C/G, N] -> [B, N, G, C/G] -> [B, N, C]
        let out = attention(part(0), part(1), part(2), None, None, options)
            .permute([0, 3, 1, 2])
            .reshape([batch, num_tokens, dim]);
        self.proj.forward(out)
    }
}

/// `x += dw(x); x += channel_attn(norm1(x)); x += dw2(x); x += ffn(norm2(x))`, on
/// `[N, C, H, W]`. Drop-path ([`super::layers::drop_path`]) on both
/// attention and MLP branches while training.
#[derive(Module, Debug)]
pub struct ChannelBlock<B: Backend> {
    /// Depthwise 3x3 position convolution before the attention.
    pub conv1: Conv2d<B>,
    /// LayerNorm before the attention.
    pub norm1: LayerNorm<B>,
    /// Channel attention.
    pub channel_attn: ChannelAttention<B>,
    /// Depthwise 3x3 position convolution before the MLP.
    pub conv2: Conv2d<B>,
    /// LayerNorm before the MLP.
    pub norm2: LayerNorm<B>,
    /// The MLP.
    pub ffn: Mlp<B>,
    /// Drop-path probability of the attention and MLP branches while training.
    pub drop_path: f64,
}

impl<B: Backend> ChannelBlock<B> {
    /// A channel block of stage `stage` (the configuration must be valid).
    pub fn new(config: &DavitConfig, stage: usize, drop_path: f64, device: &B::Device) -> Self {
        let dim = config.embed_dim[stage];
        Self {
            conv1: depthwise_conv(dim, device),
            norm1: layer_norm(dim, device),
            channel_attn: ChannelAttention::new(
                dim,
                config.num_groups[stage],
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
            .channel_attn
            .forward(self.norm1.forward(tokens.clone()));
        let tokens = tokens + drop_path(attention, self.drop_path);
        let x = to_spatial(tokens, height, width);

        let x = self.conv2.forward(x.clone()) + x;
        let tokens = to_tokens(x);
        let tokens = tokens.clone()
            + drop_path(self.ffn.forward(self.norm2.forward(tokens)), self.drop_path);
        to_spatial(tokens, height, width)
    }
}
