//! MobileNetV3's building blocks, laid out like torchvision's modules so that burn's module
//! paths are torchvision's `state_dict` keys.
//!
//! torchvision builds the network from `nn.Sequential`s, whose children are named `0`, `1`,
//! ...; burn names the elements of tuples and `Vec`s the same way. Fixed sequentials are
//! tuples (a `Conv2dNormActivation` is `(conv, norm, activation)`, the classifier
//! `(Linear, Hardswish, Dropout, Linear)`) and variable ones (`features`, a block's `block`) are
//! `Vec`s of an enum of the layers they may hold; burn-store and fedvlm leave enum variant
//! names out of paths. So `features.3.block.1.0.weight` is the depthwise convolution of block
//! 3 and `classifier.3.bias` the head's bias, exactly as in PyTorch.

use burn::module::Param;
use burn::nn::conv::Conv2d;
use burn::nn::{Dropout, Linear, Relu};
use burn::prelude::*;

use super::config::{ActivationKind, BlockConfig};
use super::init::{LayerInit, constant, trainable};
use crate::lora::{Dense, Pointwise};

/// Epsilon of MobileNetV3's batch norms (torchvision: `BatchNorm2d(eps=0.001)`).
pub const BATCH_NORM_EPS: f64 = 1e-3;

/// A batch norm that always normalises with its running statistics, under every backend.
///
/// burn's `BatchNorm` uses batch statistics whenever the backend has autodiff enabled; a frozen
/// pre-trained backbone must keep its ImageNet statistics, so this layer computes
/// `(x - running_mean) / sqrt(running_var + eps) * weight + bias` always (like torchvision's
/// `FrozenBatchNorm2d`, and like `BatchNorm2d` in eval mode). Its parameter names are
/// `BatchNorm2d`'s, so torchvision checkpoints load directly; their `num_batches_tracked`
/// counter has no use here and is skipped by the loaders. The running statistics never train
/// (they are created non-trainable and detached in [`FrozenBatchNorm2d::forward`]).
#[derive(Module, Debug)]
pub struct FrozenBatchNorm2d<B: Backend> {
    /// Scale `gamma`, `[C]`.
    pub weight: Param<Tensor<B, 1>>,
    /// Shift `beta`, `[C]`.
    pub bias: Param<Tensor<B, 1>>,
    /// Running mean, `[C]`.
    pub running_mean: Param<Tensor<B, 1>>,
    /// Running variance, `[C]`.
    pub running_var: Param<Tensor<B, 1>>,
    /// Added to the variance before the square root.
    pub eps: f64,
}

impl<B: Backend> FrozenBatchNorm2d<B> {
    /// The identity normalisation over `channels` (weight 1, bias 0, mean 0, variance 1).
    pub fn new(channels: usize, device: &B::Device) -> Self {
        Self {
            weight: trainable(Tensor::ones([channels], device)),
            bias: trainable(Tensor::zeros([channels], device)),
            running_mean: constant(Tensor::zeros([channels], device)),
            running_var: constant(Tensor::ones([channels], device)),
            eps: BATCH_NORM_EPS,
        }
    }

    /// Normalises `[N, C, H, W]` per channel.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let channels = self.weight.dims()[0];
        // PyTorch's inference kernel: y = x * alpha + beta with alpha = w / sqrt(var + eps)
        // and beta = b - mean * alpha.
        let inv_std = self
            .running_var
            .val()
            .detach()
            .add_scalar(self.eps)
            .sqrt()
            .recip();
        let alpha = self.weight.val() * inv_std;
        let beta = self.bias.val() - self.running_mean.val().detach() * alpha.clone();
        x * alpha.reshape([1, channels, 1, 1]) + beta.reshape([1, channels, 1, 1])
    }
}

/// `x * relu6(x + 3) / 6` (PyTorch's `nn.Hardswish`).
#[derive(Module, Clone, Debug, Default)]
pub struct Hardswish;

impl Hardswish {
    /// Applies the activation element-wise.
    pub fn forward<B: Backend, const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        hardswish(x)
    }
}

/// `x * relu6(x + 3) / 6`.
pub fn hardswish<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    x.clone() * hardsigmoid(x)
}

/// `relu6(x + 3) / 6` (PyTorch's `nn.Hardsigmoid`; burn's `HardSigmoid` defaults to a slope of
/// 0.2, not 1/6).
pub fn hardsigmoid<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    x.add_scalar(3.0).clamp(0.0, 6.0).div_scalar(6.0)
}

/// A parameter-free activation layer.
#[derive(Module, Clone, Debug)]
pub enum Activation {
    /// `max(x, 0)`.
    Relu(Relu),
    /// `x * relu6(x + 3) / 6`.
    Hardswish(Hardswish),
}

impl Activation {
    /// The layer for a block's activation.
    pub fn new(kind: ActivationKind) -> Self {
        match kind {
            ActivationKind::Relu => Self::Relu(Relu),
            ActivationKind::Hardswish => Self::Hardswish(Hardswish),
        }
    }

    /// Applies the activation element-wise.
    pub fn forward<B: Backend, const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Self::Relu(relu) => relu.forward(x),
            Self::Hardswish(hs) => hs.forward(x),
        }
    }
}

/// torchvision's `Conv2dNormActivation` with a `k x k` convolution (the stem, the depthwise
/// convolutions): children `0` (conv, no bias), `1` (norm), `2` (activation).
pub type ConvNormAct<B> = (Conv2d<B>, FrozenBatchNorm2d<B>, Activation);

/// torchvision's `Conv2dNormActivation` with a 1x1 convolution (the expansions, the last
/// conv): the convolution may carry an adapter.
pub type PointwiseNormAct<B> = (Pointwise<B>, FrozenBatchNorm2d<B>, Activation);

/// torchvision's `Conv2dNormActivation` without activation (the projections).
pub type PointwiseNorm<B> = (Pointwise<B>, FrozenBatchNorm2d<B>);

/// The classifier sequential: `classifier.0` (`C_last -> last_channel`, may carry an adapter),
/// Hardswish, dropout, `classifier.3` (the head, `last_channel -> num_classes`, always plain).
pub type Classifier<B> = (Dense<B>, Hardswish, Dropout, Linear<B>);

fn conv_norm_act<B: Backend>(layers: &ConvNormAct<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    layers.2.forward(layers.1.forward(layers.0.forward(x)))
}

fn pointwise_norm_act<B: Backend>(layers: &PointwiseNormAct<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    layers.2.forward(layers.1.forward(layers.0.forward(x)))
}

fn pointwise_norm<B: Backend>(layers: &PointwiseNorm<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    layers.1.forward(layers.0.forward(x))
}

/// Builds a `k x k` convolution (no bias) with its norm and activation.
#[allow(clippy::too_many_arguments)]
pub(crate) fn build_conv_norm_act<B: Backend>(
    init: &mut LayerInit,
    channels: [usize; 2],
    kernel: usize,
    stride: usize,
    dilation: usize,
    groups: usize,
    activation: ActivationKind,
    device: &B::Device,
) -> ConvNormAct<B> {
    (
        init.conv2d(channels, kernel, stride, dilation, groups, false, device),
        FrozenBatchNorm2d::new(channels[1], device),
        Activation::new(activation),
    )
}

/// Builds a 1x1 convolution (no bias) with its norm.
pub(crate) fn build_pointwise_norm<B: Backend>(
    init: &mut LayerInit,
    channels: [usize; 2],
    device: &B::Device,
) -> PointwiseNorm<B> {
    (
        Pointwise::Plain(init.conv2d(channels, 1, 1, 1, 1, false, device)),
        FrozenBatchNorm2d::new(channels[1], device),
    )
}

/// Builds a 1x1 convolution (no bias) with its norm and activation.
pub(crate) fn build_pointwise_norm_act<B: Backend>(
    init: &mut LayerInit,
    channels: [usize; 2],
    activation: ActivationKind,
    device: &B::Device,
) -> PointwiseNormAct<B> {
    let (conv, norm) = build_pointwise_norm(init, channels, device);
    (conv, norm, Activation::new(activation))
}

/// Squeeze-and-excitation: `x * hardsigmoid(fc2(relu(fc1(mean_hw(x)))))`, with `fc1` and `fc2`
/// 1x1 convolutions with bias (torchvision's `SqueezeExcitation` with a Hardsigmoid gate).
#[derive(Module, Debug)]
pub struct SqueezeExcitation<B: Backend> {
    /// Squeeze: `C -> make_divisible(C / 4, 8)`.
    pub fc1: Conv2d<B>,
    /// Excite: back to `C`.
    pub fc2: Conv2d<B>,
}

impl<B: Backend> SqueezeExcitation<B> {
    pub(crate) fn build(
        init: &mut LayerInit,
        channels: usize,
        squeeze: usize,
        device: &B::Device,
    ) -> Self {
        Self {
            fc1: init.conv2d([channels, squeeze], 1, 1, 1, 1, true, device),
            fc2: init.conv2d([squeeze, channels], 1, 1, 1, 1, true, device),
        }
    }

    /// Rescales the channels of `[N, C, H, W]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let scale = global_average_pool(x.clone());
        let scale = burn::tensor::activation::relu(self.fc1.forward(scale));
        let scale = hardsigmoid(self.fc2.forward(scale));
        x * scale
    }
}

/// Adaptive average pooling to 1x1: `[N, C, H, W]` to `[N, C, 1, 1]` (one mean over `H * W`).
pub fn global_average_pool<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [n, c, h, w] = x.dims();
    x.reshape([n, c, h * w]).mean_dim(2).reshape([n, c, 1, 1])
}

/// One child of an inverted-residual block's `block` sequential.
#[derive(Module, Debug)]
pub enum BlockLayer<B: Backend> {
    /// 1x1 expansion to the expanded width (absent when it equals the input width).
    Expand(PointwiseNormAct<B>),
    /// Depthwise `k x k` convolution (`groups = channels`).
    Depthwise(ConvNormAct<B>),
    /// Squeeze-and-excitation.
    SqueezeExcitation(SqueezeExcitation<B>),
    /// 1x1 projection to the output width, without activation.
    Project(PointwiseNorm<B>),
}

impl<B: Backend> BlockLayer<B> {
    /// Applies the layer to `[N, C, H, W]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        match self {
            Self::Expand(layers) => pointwise_norm_act(layers, x),
            Self::Depthwise(layers) => conv_norm_act(layers, x),
            Self::SqueezeExcitation(se) => se.forward(x),
            Self::Project(layers) => pointwise_norm(layers, x),
        }
    }
}

/// torchvision's `InvertedResidual`: `[expand 1x1]`, depthwise `k x k`, `[SE]`, project 1x1
/// (no activation), plus the input when the stride is 1 and the channels match.
#[derive(Module, Debug)]
pub struct InvertedResidual<B: Backend> {
    /// The layers, torchvision's `block` sequential.
    pub block: Vec<BlockLayer<B>>,
    /// Whether the input is added to the output.
    pub use_res_connect: bool,
}

impl<B: Backend> InvertedResidual<B> {
    pub(crate) fn build(init: &mut LayerInit, cnf: &BlockConfig, device: &B::Device) -> Self {
        let mut block = Vec::with_capacity(4);
        if cnf.expanded_channels != cnf.input_channels {
            block.push(BlockLayer::Expand(build_pointwise_norm_act(
                init,
                [cnf.input_channels, cnf.expanded_channels],
                cnf.activation,
                device,
            )));
        }
        block.push(BlockLayer::Depthwise(build_conv_norm_act(
            init,
            [cnf.expanded_channels, cnf.expanded_channels],
            cnf.kernel,
            cnf.depthwise_stride(),
            cnf.dilation,
            cnf.expanded_channels,
            cnf.activation,
            device,
        )));
        if cnf.use_se {
            block.push(BlockLayer::SqueezeExcitation(SqueezeExcitation::build(
                init,
                cnf.expanded_channels,
                cnf.squeeze_channels(),
                device,
            )));
        }
        block.push(BlockLayer::Project(build_pointwise_norm(
            init,
            [cnf.expanded_channels, cnf.out_channels],
            device,
        )));
        Self {
            block,
            use_res_connect: cnf.use_res_connect(),
        }
    }

    /// Applies the block to `[N, C_in, H, W]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let out = self
            .block
            .iter()
            .fold(x.clone(), |h, layer| layer.forward(h));
        if self.use_res_connect { out + x } else { out }
    }
}

/// One child of the `features` sequential.
#[derive(Module, Debug)]
pub enum Feature<B: Backend> {
    /// `features.0`: 3x3 stride-2 convolution to the first block's width, Hardswish.
    Stem(ConvNormAct<B>),
    /// `features.1` to `features.{blocks}`: an inverted-residual block.
    InvertedResidual(InvertedResidual<B>),
    /// The last feature: 1x1 convolution to six times the last block's width, Hardswish.
    LastConv(PointwiseNormAct<B>),
}

impl<B: Backend> Feature<B> {
    /// Applies the layer to `[N, C, H, W]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        match self {
            Self::Stem(layers) => conv_norm_act(layers, x),
            Self::InvertedResidual(block) => block.forward(x),
            Self::LastConv(layers) => pointwise_norm_act(layers, x),
        }
    }
}
