//! Folding a [`MobileNetV3`]'s batch norms into its convolutions, on the host.
//!
//! A convolution `y = W * x + b` followed by an eval-mode batch norm
//! `z = (y - mean) / sqrt(var + eps) * gamma + beta` is one convolution with
//! `W' = W * a` (per output channel) and `b' = (b - mean) * a + beta`, `a = gamma / sqrt(var +
//! eps)`. The factors are computed in `f64` and rounded once.

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::prelude::*;

use super::kernels::{Act, Window};
use super::{FoldedLayer, FoldedMobileNetV3, Stage};
use crate::error::{FedError, Result};
use crate::lora::Pointwise;
use crate::models::MobileNetV3;
use crate::models::mobilenet_v3::FrozenBatchNorm2d;
use crate::models::mobilenet_v3::blocks::{
    Activation, BlockLayer, ConvNormAct, Feature, PointwiseNorm, PointwiseNormAct,
    SqueezeExcitation,
};

/// Default number of images one thread runs through the whole network at a time.
pub(crate) const DEFAULT_CHUNK: usize = 8;

fn host<B: Backend, const D: usize>(t: Tensor<B, D>, what: &str) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .map_err(|e| FedError::Task(format!("reading {what} to the host: {e:?}")))
}

fn unsupported(path: &str, why: impl std::fmt::Display) -> FedError {
    FedError::UnsupportedLayer(format!("{path}: {why}"))
}

/// Per-channel `(a, beta - mean * a)` of a batch norm, in f64.
fn norm_factors<B: Backend>(bn: &FrozenBatchNorm2d<B>, path: &str) -> Result<Vec<(f64, f64)>> {
    let gamma = host(bn.weight.val(), path)?;
    let beta = host(bn.bias.val(), path)?;
    let mean = host(bn.running_mean.val(), path)?;
    let var = host(bn.running_var.val(), path)?;
    Ok(gamma
        .iter()
        .zip(&beta)
        .zip(mean.iter().zip(&var))
        .map(|((&g, &b), (&m, &v))| {
            let a = f64::from(g) / (f64::from(v) + bn.eps).sqrt();
            (a, f64::from(b) - f64::from(m) * a)
        })
        .collect())
}

/// Folds the norm into a conv bias (`None`: zero).
fn fold_bias(bias: Option<Vec<f32>>, factors: &[(f64, f64)]) -> Vec<f32> {
    factors
        .iter()
        .enumerate()
        .map(|(o, &(a, shift))| {
            let b = bias.as_ref().map_or(0.0, |b| f64::from(b[o]));
            (b * a + shift) as f32
        })
        .collect()
}

fn act_of(activation: Option<&Activation>) -> Act {
    match activation {
        None => Act::Identity,
        Some(Activation::Relu(_)) => Act::Relu,
        Some(Activation::Hardswish(_)) => Act::Hardswish,
    }
}

fn symmetric_padding(conv: &Conv2d<impl Backend>, path: &str) -> Result<usize> {
    match conv.padding {
        PaddingConfig2d::Valid => Ok(0),
        PaddingConfig2d::Explicit(t, l, b, r) if t == l && l == b && b == r => Ok(t),
        ref other => Err(unsupported(path, format!("padding {other:?}"))),
    }
}

/// A 1x1 convolution (plain or with an adapter, merged) and its norm: weight `[c_in, c_out]`.
fn fold_pointwise<B: Backend>(
    conv: &Pointwise<B>,
    bn: &FrozenBatchNorm2d<B>,
    act: Option<&Activation>,
    path: &str,
) -> Result<FoldedLayer> {
    let factors = norm_factors(bn, path)?;
    let c_out = factors.len();
    // `[c_in, c_out]` row-major, and the bias.
    let (weight, bias) = match conv {
        Pointwise::Plain(conv) => {
            let [o, i, kh, kw] = conv.weight.dims();
            if [kh, kw] != [1, 1] || conv.stride != [1, 1] || conv.groups != 1 {
                return Err(unsupported(path, "not a plain 1x1 convolution"));
            }
            if symmetric_padding(conv, path)? != 0 || o != c_out {
                return Err(unsupported(
                    path,
                    "padded, or channels differ from its norm",
                ));
            }
            let w = conv.weight.val().reshape([o, i]).transpose();
            let bias = conv
                .bias
                .as_ref()
                .map(|b| host(b.val(), path))
                .transpose()?;
            (host(w, path)?, bias)
        }
        Pointwise::Lora(lora) => {
            let w = if lora.merged {
                lora.weight.val()
            } else {
                lora.merged_weight()
            };
            if w.dims()[1] != c_out {
                return Err(unsupported(path, "channels differ from its norm"));
            }
            let bias = lora
                .bias
                .as_ref()
                .map(|b| host(b.val(), path))
                .transpose()?;
            (host(w, path)?, bias)
        }
    };
    let weight = weight
        .chunks_exact(c_out)
        .flat_map(|row| {
            row.iter()
                .zip(&factors)
                .map(|(&w, &(a, _))| (f64::from(w) * a) as f32)
        })
        .collect();
    Ok(FoldedLayer::Pointwise {
        weight,
        bias: fold_bias(bias, &factors),
        act: act_of(act),
    })
}

/// A `k x k` convolution and its norm: the stem (`groups = 1`, weight `[kh, kw, c_in, c_out]`)
/// or a depthwise convolution (`groups = channels`, weight `[kh, kw, c]`).
fn fold_spatial<B: Backend>(layers: &ConvNormAct<B>, path: &str) -> Result<FoldedLayer> {
    let (conv, bn, activation) = layers;
    let factors = norm_factors(bn, path)?;
    let [c_out, c_in_group, kh, kw] = conv.weight.dims();
    if kh != kw || conv.stride[0] != conv.stride[1] || conv.dilation[0] != conv.dilation[1] {
        return Err(unsupported(path, "non-square kernel, stride or dilation"));
    }
    if c_out != factors.len() {
        return Err(unsupported(path, "channels differ from its norm"));
    }
    let window = Window {
        kernel: kh,
        stride: conv.stride[0],
        dilation: conv.dilation[0],
        padding: symmetric_padding(conv, path)?,
    };
    let w = host(conv.weight.val(), path)?; // [o, i, kh, kw]
    let bias = conv
        .bias
        .as_ref()
        .map(|b| host(b.val(), path))
        .transpose()?;
    let taps = kh * kw;
    let act = act_of(Some(activation));
    if conv.groups == 1 {
        let c_in = c_in_group;
        let mut weight = vec![0f32; taps * c_in * c_out];
        for o in 0..c_out {
            for i in 0..c_in {
                for t in 0..taps {
                    let v = f64::from(w[(o * c_in + i) * taps + t]) * factors[o].0;
                    weight[(t * c_in + i) * c_out + o] = v as f32;
                }
            }
        }
        Ok(FoldedLayer::Dense {
            weight,
            bias: fold_bias(bias, &factors),
            window,
            act,
        })
    } else if conv.groups == c_out && c_in_group == 1 {
        let mut weight = vec![0f32; taps * c_out];
        for o in 0..c_out {
            for t in 0..taps {
                weight[t * c_out + o] = (f64::from(w[o * taps + t]) * factors[o].0) as f32;
            }
        }
        Ok(FoldedLayer::Depthwise {
            weight,
            bias: fold_bias(bias, &factors),
            window,
            act,
        })
    } else {
        Err(unsupported(
            path,
            format!("groups {} is neither 1 nor the channels", conv.groups),
        ))
    }
}

/// A squeeze-excitation layer: weights `[c, s]` and `[s, c]`, biases.
fn fold_se<B: Backend>(se: &SqueezeExcitation<B>, path: &str) -> Result<FoldedLayer> {
    let matrix = |conv: &Conv2d<B>| -> Result<(Vec<f32>, Vec<f32>)> {
        let [o, i, kh, kw] = conv.weight.dims();
        if [kh, kw] != [1, 1] || conv.groups != 1 {
            return Err(unsupported(path, "squeeze-excitation conv is not 1x1"));
        }
        let w = host(conv.weight.val().reshape([o, i]).transpose(), path)?;
        let b = match &conv.bias {
            Some(b) => host(b.val(), path)?,
            None => vec![0.0; o],
        };
        Ok((w, b))
    };
    let (w1, b1) = matrix(&se.fc1)?;
    let (w2, b2) = matrix(&se.fc2)?;
    Ok(FoldedLayer::SqueezeExcite { w1, b1, w2, b2 })
}

fn fold_pna<B: Backend>(layers: &PointwiseNormAct<B>, path: &str) -> Result<FoldedLayer> {
    fold_pointwise(&layers.0, &layers.1, Some(&layers.2), path)
}

fn fold_pn<B: Backend>(layers: &PointwiseNorm<B>, path: &str) -> Result<FoldedLayer> {
    fold_pointwise(&layers.0, &layers.1, None, path)
}

impl<B: Backend> MobileNetV3<B> {
    /// The frozen-inference form of the backbone (everything before the classifier), with
    /// every batch norm folded into the convolution before it, activations fused, adapters on
    /// pointwise convolutions merged, and the weights copied to the host in the layouts the
    /// [`FoldedMobileNetV3`] kernels read. It computes what
    /// [`MobileNetV3::features_pooled`] computes (up to float rounding), much faster on the
    /// CPU.
    ///
    /// # Errors
    /// [`FedError::UnsupportedLayer`] for a layer the kernels do not cover (a grouped
    /// convolution other than depthwise, asymmetric padding: none occurs in torchvision's
    /// MobileNetV3), [`FedError::Task`] if a weight cannot be read to the host.
    pub fn fold_for_inference(&self) -> Result<FoldedMobileNetV3> {
        let mut stages = Vec::with_capacity(self.features.len());
        let mut in_channels = None;
        for (i, feature) in self.features.iter().enumerate() {
            let path = format!("features.{i}");
            let stage = match feature {
                Feature::Stem(layers) => {
                    in_channels.get_or_insert(layers.0.weight.dims()[1] * layers.0.groups);
                    Stage {
                        layers: vec![fold_spatial(layers, &path)?],
                        residual: false,
                    }
                }
                Feature::LastConv(layers) => Stage {
                    layers: vec![fold_pna(layers, &path)?],
                    residual: false,
                },
                Feature::InvertedResidual(block) => {
                    let layers = block
                        .block
                        .iter()
                        .enumerate()
                        .map(|(j, layer)| {
                            let path = format!("{path}.block.{j}");
                            match layer {
                                BlockLayer::Expand(l) => fold_pna(l, &path),
                                BlockLayer::Depthwise(l) => fold_spatial(l, &path),
                                BlockLayer::SqueezeExcitation(se) => fold_se(se, &path),
                                BlockLayer::Project(l) => fold_pn(l, &path),
                            }
                        })
                        .collect::<Result<Vec<_>>>()?;
                    Stage {
                        layers,
                        residual: block.use_res_connect,
                    }
                }
            };
            stages.push(stage);
        }
        if !matches!(
            stages.first().and_then(|s| s.layers.first()),
            Some(FoldedLayer::Dense { .. })
        ) {
            return Err(unsupported(
                "features.0",
                "the first feature is not the stem",
            ));
        }
        let folded = FoldedMobileNetV3 {
            stages,
            in_channels: in_channels.unwrap_or(3),
            chunk: DEFAULT_CHUNK,
        };
        folded.check_channels()?;
        Ok(folded)
    }
}
