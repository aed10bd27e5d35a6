//! A fast frozen MobileNetV3 backbone for inference on the CPU: batch norms folded into the
//! convolutions, activations fused, channels-last host kernels.
//!
//! [`MobileNetV3::fold_for_inference`](crate::models::MobileNetV3::fold_for_inference) builds
//! a [`FoldedMobileNetV3`]; its [`FoldedMobileNetV3::features_pooled`] computes what
//! [`MobileNetV3::features_pooled`](crate::models::MobileNetV3::features_pooled) computes in
//! eval mode (within 1e-5 of the largest value in `tests/mobilenet_v3_folded.rs`). The
//! CIFAR-10 frozen-prefix cache
//! ([`crate::experiments::cifar10::PrefixCache`]) runs on it.
//!
//! Why not burn's `conv2d`: at MobileNetV3's CIFAR sizes (64 px input, 2x2 to 32x32 feature
//! maps) the 1x1 convolutions are per-image matrix products with as few as 4 columns, and
//! every batch norm and activation is one more pass over the whole batch's activations. Here:
//!
//! * the network runs channels-last (`NHWC`), so a 1x1 convolution is one matrix product
//!   `[images * H * W, C_in] x [C_in, C_out]` ([`gemm`], the kernel burn's `Flex` uses);
//! * a depthwise convolution keeps blocks of 64, 16 or 8 channels of an output pixel in
//!   registers while it accumulates the window's taps (`conv`);
//! * the stem (3 input channels) gathers its 3x3 windows into a patch matrix and runs one
//!   matrix product;
//! * bias (the folded batch norm) and activation are applied to each output block or row while
//!   it is in cache;
//! * the depthwise kernel and the epilogues are compiled for AVX-512 and AVX2 with FMA as well
//!   as the baseline, and the widest the CPU has is chosen at run time (`simd`);
//! * each rayon thread runs a few images (see [`FoldedMobileNetV3::with_chunk_size`]) through
//!   the whole network, with no synchronisation between layers.
//!
//! Measured on a 2-core AMD EPYC (AVX-512), MobileNetV3-small at 64 px, batch 256, one thread:
//! about 0.2-0.4 ms per image (load-dependent) against 4.8-7 ms for the unfused burn model and
//! 0.45-0.7 ms for PyTorch 2.15 in eval mode under `inference_mode` (`examples/cifar_cache_timing.rs`,
//! `scripts/bench_cache_build.sh`).

#[macro_use]
mod simd;
mod conv;
mod fold;
mod kernels;

use std::borrow::Cow;
use std::time::{Duration, Instant};

use burn::prelude::*;
use burn::tensor::TensorData;
use rayon::prelude::*;

use crate::error::{FedError, Result};
use kernels::{Act, Nhwc, Window};

/// One folded layer, weights in the layout its kernel reads.
#[derive(Debug, Clone)]
enum FoldedLayer {
    /// `k x k` convolution with `groups = 1`: weight `[kh, kw, c_in, c_out]`.
    Dense {
        weight: Vec<f32>,
        bias: Vec<f32>,
        window: Window,
        act: Act,
    },
    /// Depthwise `k x k` convolution: weight `[kh, kw, c]`.
    Depthwise {
        weight: Vec<f32>,
        bias: Vec<f32>,
        window: Window,
        act: Act,
    },
    /// 1x1 convolution: weight `[c_in, c_out]`.
    Pointwise {
        weight: Vec<f32>,
        bias: Vec<f32>,
        act: Act,
    },
    /// Squeeze-excitation: `w1 [c, s]`, `w2 [s, c]`.
    SqueezeExcite {
        w1: Vec<f32>,
        b1: Vec<f32>,
        w2: Vec<f32>,
        b2: Vec<f32>,
    },
}

impl FoldedLayer {
    /// Input channels the layer expects.
    fn in_channels(&self) -> usize {
        match self {
            Self::Dense {
                weight,
                bias,
                window,
                ..
            } => weight.len() / (window.kernel * window.kernel * bias.len()).max(1),
            Self::Depthwise { bias, .. } | Self::SqueezeExcite { b2: bias, .. } => bias.len(),
            Self::Pointwise { weight, bias, .. } => weight.len() / bias.len().max(1),
        }
    }

    /// Applies the layer; `residual` is added to the output (the last layer of a block).
    fn forward(
        &self,
        x: Cow<'_, [f32]>,
        shape: Nhwc,
        residual: Option<&[f32]>,
    ) -> (Vec<f32>, Nhwc) {
        let (out, out_shape) = match self {
            Self::Dense {
                weight,
                bias,
                window,
                act,
            } => conv::dense(
                &x,
                shape,
                weight,
                bias,
                *window,
                *act,
                out_hw(shape, window),
            ),
            Self::Depthwise {
                weight,
                bias,
                window,
                act,
            } => conv::depthwise(
                &x,
                shape,
                weight,
                bias,
                *window,
                *act,
                out_hw(shape, window),
            ),
            Self::Pointwise { weight, bias, act } => {
                let out = kernels::pointwise(&x, shape.pixels(), weight, bias, *act, residual);
                return (
                    out,
                    Nhwc {
                        c: bias.len(),
                        ..shape
                    },
                );
            }
            Self::SqueezeExcite { w1, b1, w2, b2 } => {
                let mut x = x.into_owned();
                kernels::squeeze_excite(&mut x, shape, (w1, b1), (w2, b2));
                (x, shape)
            }
        };
        match residual {
            // Only projections end a residual block in MobileNetV3; kept general.
            Some(res) => (out.iter().zip(res).map(|(o, r)| o + r).collect(), out_shape),
            None => (out, out_shape),
        }
    }
}

/// Output size of a window on a shape whose sizes [`FoldedMobileNetV3::check_input`] checked.
fn out_hw(shape: Nhwc, window: &Window) -> (usize, usize) {
    (
        window.out_size(shape.h).unwrap_or(0),
        window.out_size(shape.w).unwrap_or(0),
    )
}

/// One child of `features`: its layers and whether its input is added to its output.
#[derive(Debug, Clone)]
struct Stage {
    layers: Vec<FoldedLayer>,
    residual: bool,
}

impl Stage {
    fn forward(&self, x: Vec<f32>, shape: Nhwc) -> (Vec<f32>, Nhwc) {
        let last = self.layers.len().saturating_sub(1);
        let mut h: Option<(Vec<f32>, Nhwc)> = None;
        for (i, layer) in self.layers.iter().enumerate() {
            let residual = (self.residual && i == last).then_some(&x[..]);
            let (input, s) = match h.take() {
                Some((h, s)) => (Cow::Owned(h), s),
                None => (Cow::Borrowed(&x[..]), shape),
            };
            h = Some(layer.forward(input, s, residual));
        }
        h.unwrap_or((x, shape))
    }
}

/// MobileNetV3's frozen backbone (`features`, average pooling), batch norms folded, on the
/// host. Built by [`MobileNetV3::fold_for_inference`](crate::models::MobileNetV3::fold_for_inference);
/// see the [module docs](self).
#[derive(Debug, Clone)]
pub struct FoldedMobileNetV3 {
    stages: Vec<Stage>,
    in_channels: usize,
    chunk: usize,
}

impl FoldedMobileNetV3 {
    /// Sets how many images one thread runs through the whole network at a time (default 8;
    /// at least 1). Larger chunks make longer matrix products, smaller ones keep the
    /// activations in cache and spread a small batch over more threads.
    #[must_use]
    pub fn with_chunk_size(mut self, images: usize) -> Self {
        self.chunk = images.max(1);
        self
    }

    /// Width of the pooled features (576 for small at width 1.0).
    pub fn feature_dim(&self) -> usize {
        self.stages
            .last()
            .and_then(|s| s.layers.last())
            .map_or(0, |layer| match layer {
                FoldedLayer::Dense { bias, .. }
                | FoldedLayer::Depthwise { bias, .. }
                | FoldedLayer::Pointwise { bias, .. }
                | FoldedLayer::SqueezeExcite { b2: bias, .. } => bias.len(),
            })
    }

    /// Checks an input `[batch, C, height, width]` (NCHW, `batch * C * height * width`
    /// values) and returns its shape channels-last.
    fn check_input(&self, len: usize, batch: usize, height: usize, width: usize) -> Result<Nhwc> {
        let shape = Nhwc {
            n: batch,
            h: height,
            w: width,
            c: self.in_channels,
        };
        let values = batch
            .checked_mul(height)
            .and_then(|v| v.checked_mul(width))
            .and_then(|v| v.checked_mul(shape.c));
        if values != Some(len) {
            return Err(FedError::config(
                "images",
                format!(
                    "holds {len} values, not [{batch}, {}, {height}, {width}]",
                    self.in_channels
                ),
            ));
        }
        // Walk the spatial sizes: every window must fit.
        let (mut h, mut w) = (height, width);
        for layer in self.stages.iter().flat_map(|s| &s.layers) {
            if let FoldedLayer::Dense { window, .. } | FoldedLayer::Depthwise { window, .. } = layer
            {
                match (window.out_size(h), window.out_size(w)) {
                    (Some(oh), Some(ow)) if oh > 0 && ow > 0 => (h, w) = (oh, ow),
                    _ => {
                        return Err(FedError::config(
                            "images",
                            format!("{height}x{width} is too small for the network"),
                        ));
                    }
                }
            }
        }
        Ok(shape)
    }

    /// Runs `images` (one chunk, NCHW) through every stage.
    fn run_chunk(&self, images: &[f32], shape: Nhwc) -> Vec<f32> {
        let x = kernels::nchw_to_nhwc(images, shape);
        let (x, shape) = self
            .stages
            .iter()
            .fold((x, shape), |(x, s), stage| stage.forward(x, s));
        kernels::mean_hw(&x, shape)
    }

    /// Pooled features `[batch, feature_dim]` (row-major) of images `[batch, C, height,
    /// width]` (NCHW, row-major, normalised as for [`crate::models::MobileNetV3::forward`]).
    ///
    /// # Errors
    /// [`FedError::InvalidConfig`] if `images` does not hold `batch * C * height * width`
    /// values or the images are too small for the network's strides and kernels.
    pub fn features_pooled_host(
        &self,
        images: &[f32],
        batch: usize,
        height: usize,
        width: usize,
    ) -> Result<Vec<f32>> {
        let shape = self.check_input(images.len(), batch, height, width)?;
        let per_image = self.in_channels * height * width;
        let dim = self.feature_dim();
        let mut out = vec![0f32; batch * dim];
        if batch == 0 || dim == 0 {
            return Ok(out);
        }
        images
            .par_chunks(self.chunk.saturating_mul(per_image))
            .zip(out.par_chunks_mut(self.chunk.saturating_mul(dim)))
            .for_each(|(chunk, dst)| {
                let n = chunk.len() / per_image;
                dst.copy_from_slice(&self.run_chunk(chunk, Nhwc { n, ..shape }));
            });
        Ok(out)
    }

    /// [`FoldedMobileNetV3::features_pooled_host`] on a tensor: `[N, C, H, W]` to `[N,
    /// feature_dim]` on the same device (the computation runs on the host).
    ///
    /// # Errors
    /// As [`FoldedMobileNetV3::features_pooled_host`], and [`FedError::Task`] if the images
    /// cannot be read as `f32`.
    pub fn features_pooled<B: Backend>(&self, images: Tensor<B, 4>) -> Result<Tensor<B, 2>> {
        let [n, _, h, w] = images.dims();
        let device = images.device();
        let values = images
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .map_err(|e| FedError::Task(format!("reading images to the host: {e:?}")))?;
        let pooled = self.features_pooled_host(&values, n, h, w)?;
        let dim = self.feature_dim();
        Ok(Tensor::from_data(
            TensorData::new(pooled, [n, dim]),
            &device,
        ))
    }

    /// Wall-clock time of each stage (`features.0`, `features.1`, ...; the last entry is the
    /// average pooling) over `images`, running one stage at a time over all chunks in
    /// parallel: a profile, slower overall than [`FoldedMobileNetV3::features_pooled_host`].
    ///
    /// # Errors
    /// As [`FoldedMobileNetV3::features_pooled_host`].
    pub fn profile_host(
        &self,
        images: &[f32],
        batch: usize,
        height: usize,
        width: usize,
    ) -> Result<Vec<(String, Duration)>> {
        let shape = self.check_input(images.len(), batch, height, width)?;
        let per_image = self.in_channels * height * width;
        let mut chunks: Vec<(Vec<f32>, Nhwc)> = images
            .par_chunks(self.chunk.saturating_mul(per_image))
            .map(|chunk| {
                let s = Nhwc {
                    n: chunk.len() / per_image,
                    ..shape
                };
                (kernels::nchw_to_nhwc(chunk, s), s)
            })
            .collect();
        let mut times = Vec::with_capacity(self.stages.len() + 1);
        for (i, stage) in self.stages.iter().enumerate() {
            let start = Instant::now();
            chunks = chunks
                .into_par_iter()
                .map(|(x, s)| stage.forward(x, s))
                .collect();
            times.push((format!("features.{i}"), start.elapsed()));
        }
        let start = Instant::now();
        let _pooled: Vec<Vec<f32>> = chunks
            .par_iter()
            .map(|(x, s)| kernels::mean_hw(x, *s))
            .collect();
        times.push(("avgpool".to_string(), start.elapsed()));
        Ok(times)
    }

    /// Input channels (3).
    pub fn in_channels(&self) -> usize {
        self.in_channels
    }

    /// Checks that consecutive layers agree on their channels (folding a consistent model
    /// always passes).
    pub(crate) fn check_channels(&self) -> Result<()> {
        let mut c = self.in_channels;
        for layer in self.stages.iter().flat_map(|s| &s.layers) {
            if layer.in_channels() != c {
                return Err(FedError::UnsupportedLayer(format!(
                    "a folded layer expects {} channels, gets {c}",
                    layer.in_channels()
                )));
            }
            c = match layer {
                FoldedLayer::Dense { bias, .. }
                | FoldedLayer::Depthwise { bias, .. }
                | FoldedLayer::Pointwise { bias, .. }
                | FoldedLayer::SqueezeExcite { b2: bias, .. } => bias.len(),
            };
        }
        Ok(())
    }
}
