//! Small pieces the DaViT blocks share: the MLP, the depthwise position convolution, LayerNorm
//! with PyTorch's epsilon, the `[N, C, H, W]` <-> `[N, H*W, C]` reshapes and drop-path.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::activation::gelu;

/// Epsilon of every LayerNorm of the tower and the projector (PyTorch's default).
pub const LAYER_NORM_EPS: f64 = 1e-5;

/// `nn.LayerNorm(dim)`.
pub fn layer_norm<B: Backend>(dim: usize, device: &B::Device) -> LayerNorm<B> {
    LayerNormConfig::new(dim)
        .with_epsilon(LAYER_NORM_EPS)
        .init(device)
}

/// The blocks' position convolution: `nn.Conv2d(dim, dim, 3, padding=1, groups=dim)` (with bias).
pub fn depthwise_conv<B: Backend>(dim: usize, device: &B::Device) -> Conv2d<B> {
    Conv2dConfig::new([dim, dim], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_groups(dim)
        .with_bias(true)
        .init(device)
}

/// transformers' `Florence2VisionMLP`: `fc2(gelu(fc1(x)))` with the exact (erf) GELU.
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    /// `dim -> hidden`.
    pub fc1: Linear<B>,
    /// `hidden -> dim`.
    pub fc2: Linear<B>,
}

impl<B: Backend> Mlp<B> {
    /// An MLP `dim -> hidden -> dim` with biases.
    pub fn new(dim: usize, hidden: usize, device: &B::Device) -> Self {
        Self {
            fc1: LinearConfig::new(dim, hidden).init(device),
            fc2: LinearConfig::new(hidden, dim).init(device),
        }
    }

    /// `[..., dim] -> [..., dim]`.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        self.fc2.forward(gelu(self.fc1.forward(x)))
    }
}

/// `[N, C, H, W] -> [N, H*W, C]`, tokens in row-major order (`x.flatten(2).transpose(1, 2)`).
pub fn to_tokens<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 3> {
    x.flatten::<3>(2, 3).swap_dims(1, 2)
}

/// `[N, H*W, C] -> [N, C, H, W]`, the inverse of [`to_tokens`].
pub fn to_spatial<B: Backend>(tokens: Tensor<B, 3>, height: usize, width: usize) -> Tensor<B, 4> {
    let [batch, _, channels] = tokens.dims();
    tokens
        .swap_dims(1, 2)
        .reshape([batch, channels, height, width])
}

/// Applies a LayerNorm over the channels of `[N, C, H, W]`.
pub fn channel_norm<B: Backend>(norm: &LayerNorm<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    norm.forward(x.permute([0, 2, 3, 1])).permute([0, 3, 1, 2])
}

/// Stochastic depth on a residual branch (transformers' `Florence2DropPath`): while training (an
/// autodiff backend), each sample's `x` is zeroed with probability `prob` and scaled by
/// `1 / (1 - prob)` otherwise; the identity at inference or when `prob` is 0.
pub fn drop_path<B: Backend, const D: usize>(x: Tensor<B, D>, prob: f64) -> Tensor<B, D> {
    if prob <= 0.0 || !B::ad_enabled(&x.device()) {
        return x;
    }
    let keep = 1.0 - prob;
    let mut shape = [1usize; D];
    shape[0] = x.dims()[0];
    let mask = Tensor::<B, D>::random(shape, Distribution::Bernoulli(keep), &x.device())
        .cast(x.dtype())
        .div_scalar(keep);
    x * mask
}
