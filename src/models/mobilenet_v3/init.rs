//! Seeded initialisation of MobileNetV3's layers, as torchvision initialises them.
//!
//! Values are drawn on the host from a ChaCha8 generator per layer, so a given seed gives the
//! same model on every backend, independently of burn's global RNG: convolutions are
//! Kaiming-normal with `mode="fan_out"` (`std = sqrt(2 / (out * k * k))`) and zero bias,
//! linear layers `N(0, 0.01^2)` with zero bias, batch norms identity (weight 1, bias 0,
//! running mean 0, running variance 1).

use burn::module::{Param, ParamId};
use burn::nn::conv::Conv2d;
use burn::nn::{Linear, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::TensorData;
use rand::{SeedableRng, rngs::ChaCha8Rng};
use rand_distr::{Distribution, StandardNormal};

/// SplitMix64 of `seed + index * golden`: independent, reproducible streams per layer.
pub(crate) fn derive_seed(seed: u64, index: u64) -> u64 {
    let mut z = seed.wrapping_add(index.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hands out one seeded stream per layer, in construction order.
pub(crate) struct LayerInit {
    seed: u64,
    next: u64,
}

impl LayerInit {
    pub(crate) fn new(seed: u64) -> Self {
        Self { seed, next: 0 }
    }

    /// `n` values of `N(0, std^2)` from the next layer's stream.
    fn normal(&mut self, n: usize, std: f64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(self.seed, self.next));
        self.next += 1;
        (0..n)
            .map(|_| {
                let z: f64 = StandardNormal.sample(&mut rng);
                (z * std) as f32
            })
            .collect()
    }

    /// A convolution with torchvision's padding `(k - 1) / 2 * dilation`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn conv2d<B: Backend>(
        &mut self,
        channels: [usize; 2],
        kernel: usize,
        stride: usize,
        dilation: usize,
        groups: usize,
        bias: bool,
        device: &B::Device,
    ) -> Conv2d<B> {
        let [c_in, c_out] = channels;
        let shape = [c_out, c_in / groups, kernel, kernel];
        let std = (2.0 / (c_out * kernel * kernel) as f64).sqrt();
        let weight = self.normal(shape.iter().product(), std);
        let pad = (kernel - 1) / 2 * dilation;
        Conv2d {
            weight: trainable(Tensor::from_data(TensorData::new(weight, shape), device)),
            bias: bias.then(|| trainable(Tensor::zeros([c_out], device))),
            stride: [stride, stride],
            kernel_size: [kernel, kernel],
            dilation: [dilation, dilation],
            groups,
            padding: PaddingConfig2d::Explicit(pad, pad, pad, pad),
        }
    }

    /// A linear layer `d_in -> d_out` (burn's `[in, out]` weight layout).
    pub(crate) fn linear<B: Backend>(
        &mut self,
        d_in: usize,
        d_out: usize,
        device: &B::Device,
    ) -> Linear<B> {
        let weight = self.normal(d_in * d_out, 0.01);
        Linear {
            weight: trainable(Tensor::from_data(
                TensorData::new(weight, [d_in, d_out]),
                device,
            )),
            bias: Some(trainable(Tensor::zeros([d_out], device))),
        }
    }
}

/// A parameter that trains (until frozen).
pub(crate) fn trainable<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Param<Tensor<B, D>> {
    Param::from_tensor(tensor)
}

/// A parameter that never trains (running statistics).
pub(crate) fn constant<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Param<Tensor<B, D>> {
    Param::initialized(ParamId::new(), tensor.set_require_grad(false))
}
