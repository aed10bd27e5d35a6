//! The adapter layer: a frozen linear map plus a trainable low-rank update.

use burn::module::Param;
use burn::nn::conv::Conv2d;
use burn::nn::{Dropout, DropoutConfig, Linear, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::TensorData;
use burn::tensor::module::linear;
use rand::{RngExt, SeedableRng, rngs::ChaCha8Rng};

use super::LoraConfig;
use crate::error::{FedError, Result};

/// A linear (or 1x1 convolution) layer with a low-rank adapter:
/// `h = W0 x + b + (alpha / r) * B A dropout(x)`.
///
/// * `weight` (`[in, out]`, burn's [`Linear`] layout) and `bias` are the frozen base layer.
/// * `lora_a` is `[rank, in]` and `lora_b` is `[out, rank]`: PEFT's layout, so adapters can be
///   exchanged with Python. `A` is drawn as PEFT draws it (Kaiming-uniform with `a = sqrt(5)`,
///   i.e. `U(-1/sqrt(in), 1/sqrt(in))`) from a seeded generator on the host, so the same seed
///   gives the same `A` on every backend; `B` starts at zero, so `BA = 0` and the adapted layer
///   initially computes exactly what the base layer computes.
///
/// Which of `A` and `B` train and travel is decided by [`crate::Sharing`], applied to a whole
/// model with [`crate::lora::apply_sharing`].
#[derive(Module, Debug)]
pub struct PersonalizedLora<B: Backend> {
    /// Frozen base weight, `[in, out]`.
    pub weight: Param<Tensor<B, 2>>,
    /// Frozen base bias, `[out]`.
    pub bias: Option<Param<Tensor<B, 1>>>,
    /// Down-projection `A`, `[rank, in]`.
    pub lora_a: Param<Tensor<B, 2>>,
    /// Up-projection `B`, `[out, rank]`.
    pub lora_b: Param<Tensor<B, 2>>,
    /// Dropout on the adapter's input.
    pub dropout: Dropout,
    /// `alpha / rank`.
    pub scaling: f64,
    /// Whether the update has been folded into `weight` by [`PersonalizedLora::merge`].
    pub merged: bool,
}

/// Sets `require_grad` of a parameter, initialising it first.
///
/// burn 0.21's `Param::set_require_grad` on a lazily initialised parameter (what
/// `LinearConfig::init` returns) records the flag for the initialiser but leaves the flag that
/// autodiff reads unchanged, so a "frozen" lazy bias still trains; going through `map`
/// initialises the value and sets the flag on the tensor itself.
pub fn set_trainable<B: Backend, const D: usize>(
    param: Param<Tensor<B, D>>,
    trainable: bool,
) -> Param<Tensor<B, D>> {
    param.map(|tensor| tensor.set_require_grad(trainable))
}

impl<B: Backend> PersonalizedLora<B> {
    /// Wraps an existing burn [`Linear`]; its weight and bias are kept (same parameter ids) and
    /// frozen. `seed` draws `A`; give each client its own seed for distinct private `A`s.
    pub fn from_linear(base: Linear<B>, config: &LoraConfig, seed: u64) -> Result<Self> {
        Self::from_parts(base.weight, base.bias, config, seed)
    }

    /// Wraps a pointwise (1x1, stride 1, ungrouped, unpadded) [`Conv2d`], such as MobileNetV3's
    /// expansion and projection layers. Use [`PersonalizedLora::forward_conv`] on `[N, C, H, W]`.
    pub fn from_conv1x1(conv: Conv2d<B>, config: &LoraConfig, seed: u64) -> Result<Self> {
        let padded = match conv.padding {
            PaddingConfig2d::Valid => false,
            PaddingConfig2d::Explicit(t, l, b, r) => t + l + b + r > 0,
            PaddingConfig2d::Same => false,
        };
        if conv.kernel_size != [1, 1] || conv.stride != [1, 1] || conv.groups != 1 || padded {
            return Err(FedError::UnsupportedLayer(format!(
                "only 1x1 convolutions with stride 1, groups 1 and no padding can be adapted \
                 (got kernel {:?}, stride {:?}, groups {})",
                conv.kernel_size, conv.stride, conv.groups
            )));
        }
        let [out, inp, _, _] = conv.weight.dims();
        let (id, weight, _) = conv.weight.consume();
        let weight = Param::initialized(id, weight.reshape([out, inp]).transpose());
        Self::from_parts(weight, conv.bias, config, seed)
    }

    fn from_parts(
        weight: Param<Tensor<B, 2>>,
        bias: Option<Param<Tensor<B, 1>>>,
        config: &LoraConfig,
        seed: u64,
    ) -> Result<Self> {
        config.validate()?;
        let [d_in, d_out] = weight.dims();
        let device = weight.device();
        let bound = 1.0 / (d_in as f64).sqrt();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let a: Vec<f32> = (0..config.rank * d_in)
            .map(|_| rng.random_range(-bound..bound) as f32)
            .collect();
        let lora_a = Tensor::<B, 2>::from_data(TensorData::new(a, [config.rank, d_in]), &device);
        let lora_b = Tensor::<B, 2>::zeros([d_out, config.rank], &device);
        Ok(Self {
            weight: set_trainable(weight, false),
            bias: bias.map(|b| set_trainable(b, false)),
            lora_a: Param::from_tensor(lora_a),
            lora_b: Param::from_tensor(lora_b),
            dropout: DropoutConfig::new(config.dropout).init(),
            scaling: config.scaling(),
            merged: false,
        })
    }

    /// Input features.
    pub fn d_input(&self) -> usize {
        self.weight.dims()[0]
    }

    /// Output features.
    pub fn d_output(&self) -> usize {
        self.weight.dims()[1]
    }

    /// Adapter rank.
    pub fn rank(&self) -> usize {
        self.lora_a.dims()[0]
    }

    /// Applies the layer to the last dimension of `x` (`[..., in]` to `[..., out]`).
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let base = linear(
            x.clone(),
            self.weight.val(),
            self.bias.as_ref().map(|b| b.val()),
        );
        if self.merged {
            return base;
        }
        base + self.adapter_delta(x)
    }

    /// Only the low-rank path, `(alpha / r) * B A dropout(x)`, for callers that cache the frozen
    /// product `W0 x + b` and add the update themselves (see the frozen-prefix caches).
    pub fn adapter_delta<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let x = self.dropout.forward(x);
        let down = linear(x, self.lora_a.val().transpose(), None);
        linear(down, self.lora_b.val().transpose(), None).mul_scalar(self.scaling)
    }

    /// Applies the layer as a 1x1 convolution to `[N, C_in, H, W]`, giving `[N, C_out, H, W]`.
    pub fn forward_conv(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        self.forward(x.swap_dims(1, 3)).swap_dims(1, 3)
    }

    /// `W0 + (alpha / r) (B A)^T` in burn's `[in, out]` layout: the weight a merged layer uses.
    pub fn merged_weight(&self) -> Tensor<B, 2> {
        let delta = self
            .lora_a
            .val()
            .transpose()
            .matmul(self.lora_b.val().transpose())
            .mul_scalar(self.scaling);
        self.weight.val() + delta
    }

    /// Folds the update into the base weight for inference: the returned layer computes the same
    /// outputs (up to rounding) with one matrix product. Merging twice is a no-op.
    pub fn merge(self) -> Self {
        if self.merged {
            return self;
        }
        let merged = self.merged_weight();
        Self {
            weight: self.weight.map(|_| merged.detach().set_require_grad(false)),
            merged: true,
            ..self
        }
    }
}
