//! The patch embedding that opens each stage (transformers' `Florence2VisionConvEmbed`).

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{LayerNorm, PaddingConfig2d};
use burn::prelude::*;

use super::config::DavitConfig;
use super::layers::{channel_norm, layer_norm};

/// A strided convolution with a LayerNorm over channels, either before it (`pre_norm`, on the
/// input channels: stages 1-3 of Florence-2) or after it (on the output channels: stage 0).
#[derive(Module, Debug)]
pub struct ConvEmbed<B: Backend> {
    /// `nn.Conv2d(in, out, patch_size, patch_stride, patch_padding)` with bias.
    pub conv: Conv2d<B>,
    /// LayerNorm over the input channels (pre-norm) or the output channels (post-norm).
    pub norm: LayerNorm<B>,
    /// Whether [`ConvEmbed::norm`] comes before the convolution.
    pub pre_norm: bool,
}

impl<B: Backend> ConvEmbed<B> {
    /// Stage `stage`'s patch embedding (the configuration must be valid).
    pub fn new(config: &DavitConfig, stage: usize, device: &B::Device) -> Self {
        let in_channels = match stage {
            0 => config.in_channels,
            _ => config.embed_dim[stage - 1],
        };
        let out_channels = config.embed_dim[stage];
        let kernel = config.patch_size[stage];
        let stride = config.patch_stride[stage];
        let pad = config.patch_padding[stage];
        let pre_norm = config.patch_prenorm[stage];
        let conv = Conv2dConfig::new([in_channels, out_channels], [kernel, kernel])
            .with_stride([stride, stride])
            .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
            .with_bias(true)
            .init(device);
        let norm_dim = if pre_norm { in_channels } else { out_channels };
        Self {
            conv,
            norm: layer_norm(norm_dim, device),
            pre_norm,
        }
    }

    /// `[N, C_in, H, W] -> [N, C_out, H', W']`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        if self.pre_norm {
            self.conv.forward(channel_norm(&self.norm, x))
        } else {
            channel_norm(&self.norm, self.conv.forward(x))
        }
    }
}
