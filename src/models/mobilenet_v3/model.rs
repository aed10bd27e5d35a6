//! The MobileNetV3 network: construction and forward passes.

use burn::nn::DropoutConfig;
use burn::prelude::*;

use super::blocks::{
    Classifier, Feature, Hardswish, InvertedResidual, build_conv_norm_act,
    build_pointwise_norm_act, global_average_pool,
};
use super::config::{ActivationKind, MobileNetV3Config};
use super::init::{LayerInit, derive_seed};
use crate::lora::Dense;

/// Stream index of the head's initialisation, apart from the backbone's streams so that the
/// head depends on the seed only.
const HEAD_STREAM: u64 = u64::MAX;

/// torchvision's MobileNetV3 (small or large) in burn, with torchvision's module paths.
///
/// * `features.0`: stem, 3x3 stride-2 convolution, batch norm, Hardswish.
/// * `features.1..=n`: the inverted-residual blocks of the configuration's table.
/// * `features.{n+1}`: 1x1 convolution to six times the last block's width, batch norm,
///   Hardswish (`features.12` for small, `features.16` for large).
/// * average pooling over `H x W`, then `classifier`: `Linear(C_last, last_channel)`,
///   Hardswish, dropout, `Linear(last_channel, num_classes)`.
///
/// Batch norms always use their running statistics ([`super::FrozenBatchNorm2d`]): the model
/// computes what torchvision's computes in `eval()` mode, under every backend. The classifier's
/// dropout is active only on autodiff backends, as burn's [`burn::nn::Dropout`] is.
///
/// ```
/// use burn::backend::Flex;
/// use burn::prelude::*;
/// use fedvlm::models::{MobileNetV3, MobileNetV3Config};
///
/// let device = Default::default();
/// let config = MobileNetV3Config::small(10).with_width_mult(0.25);
/// let model = MobileNetV3::<Flex>::new(&config, &device);
/// let logits = model.forward(Tensor::zeros([2, 3, 32, 32], &device));
/// assert_eq!(logits.dims(), [2, 10]);
/// ```
#[derive(Module, Debug)]
pub struct MobileNetV3<B: Backend> {
    /// Stem, inverted-residual blocks and last convolution (torchvision's `features`).
    pub features: Vec<Feature<B>>,
    /// `(Linear, Hardswish, Dropout, Linear)` (torchvision's `classifier`).
    pub classifier: Classifier<B>,
}

impl<B: Backend> MobileNetV3<B> {
    /// A randomly initialised model, as torchvision initialises one (Kaiming-normal
    /// convolutions, `N(0, 0.01^2)` linear layers, identity batch norms), drawn from
    /// `config.seed` on the host: the same seed gives the same model on every backend.
    ///
    /// # Panics
    /// If the configuration is invalid (see [`MobileNetV3Config::validate`]), like burn's
    /// `*Config::init`; the loaders return an error instead.
    pub fn new(config: &MobileNetV3Config, device: &B::Device) -> Self {
        if let Err(err) = config.validate() {
            panic!("{err}");
        }
        let mut init = LayerInit::new(config.seed);
        let blocks = config.blocks();
        let mut features = Vec::with_capacity(blocks.len() + 2);
        features.push(Feature::Stem(build_conv_norm_act(
            &mut init,
            [3, config.stem_channels()],
            3,
            2,
            1,
            1,
            ActivationKind::Hardswish,
            device,
        )));
        for block in &blocks {
            features.push(Feature::InvertedResidual(InvertedResidual::build(
                &mut init, block, device,
            )));
        }
        let last_in = blocks.last().map_or(0, |b| b.out_channels);
        features.push(Feature::LastConv(build_pointwise_norm_act(
            &mut init,
            [last_in, config.last_conv_channels()],
            ActivationKind::Hardswish,
            device,
        )));

        let hidden = config.last_channel();
        let dense = init.linear(config.last_conv_channels(), hidden, device);
        let head = Self::new_head(config, device);
        Self {
            features,
            classifier: (
                Dense::Plain(dense),
                Hardswish,
                DropoutConfig::new(config.dropout).init(),
                head,
            ),
        }
    }

    /// A freshly initialised head `classifier.3` (`last_channel -> num_classes`), drawn from a
    /// stream of `config.seed` of its own: the same for a random model and a loaded one.
    pub(crate) fn new_head(config: &MobileNetV3Config, device: &B::Device) -> burn::nn::Linear<B> {
        LayerInit::new(derive_seed(config.seed, HEAD_STREAM)).linear(
            config.last_channel(),
            config.num_classes,
            device,
        )
    }

    /// Logits `[N, num_classes]` of images `[N, 3, H, W]` (normalised as for ImageNet: mean
    /// `[0.485, 0.456, 0.406]`, std `[0.229, 0.224, 0.225]`).
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        self.classifier_forward(self.features_pooled(images))
    }

    /// Everything before the classifier: features, average pooling, flattening;
    /// `[N, 3, H, W]` to `[N, C_last]` (576 for small, 960 for large at width 1.0).
    ///
    /// When only the classifier trains (adapters on `classifier.0`), this part is frozen and
    /// its outputs can be computed once per image and cached.
    pub fn features_pooled(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        let x = self
            .features
            .iter()
            .fold(images, |x, feature| feature.forward(x));
        let [n, c, _, _] = x.dims();
        global_average_pool(x).reshape([n, c])
    }

    /// The classifier on pooled features: `[N, C_last]` to logits `[N, num_classes]`.
    pub fn classifier_forward(&self, pooled: Tensor<B, 2>) -> Tensor<B, 2> {
        let (dense, act, dropout, head) = &self.classifier;
        let x = act.forward(dense.forward(pooled));
        head.forward(dropout.forward(x))
    }

    /// Outputs of the head.
    pub fn num_classes(&self) -> usize {
        self.classifier.3.weight.dims()[1]
    }

    /// Number of parameters as PyTorch counts them (`sum(p.numel() for p in
    /// model.parameters())`): every parameter except the batch norms' running statistics, which
    /// are buffers in PyTorch. Adapter matrices, if any, are counted.
    pub fn num_parameters(&self) -> usize {
        crate::params::parameter_shapes::<B, _>(self)
            .iter()
            .filter(|(path, _)| {
                !(path.ends_with(".running_mean") || path.ends_with(".running_var"))
            })
            .map(|(_, shape)| shape.iter().product::<usize>())
            .sum()
    }
}
