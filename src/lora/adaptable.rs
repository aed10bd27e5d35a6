//! Layers that may carry an adapter: enums whose plain variant is the layer as loaded and whose
//! other variant is the same frozen layer plus a [`PersonalizedLora`]. Inserting an adapter
//! does not change a model's type, and burn-store and fedvlm leave enum variant names out of
//! module paths, so an adapted `fc` travels as `fc.lora_b`.

use burn::nn::Linear;
use burn::nn::conv::Conv2d;
use burn::prelude::*;

use super::{LoraConfig, PersonalizedLora};
use crate::error::{FedError, Result};

/// A linear layer that may carry a low-rank adapter.
// One instance per adapted layer: the size of the variants does not matter, and burn's module
// derive does not see through a `Box`.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Dense<B: Backend> {
    /// The layer as loaded.
    Plain(Linear<B>),
    /// The frozen layer plus an adapter.
    Lora(PersonalizedLora<B>),
}

impl<B: Backend> Dense<B> {
    /// Applies the layer to the last dimension of `x`.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Self::Plain(linear) => linear.forward(x),
            Self::Lora(lora) => lora.forward(x),
        }
    }

    /// Whether the layer carries an adapter.
    pub fn is_adapted(&self) -> bool {
        matches!(self, Self::Lora(_))
    }

    /// Replaces the plain layer by the same frozen layer plus an adapter; `path` names the
    /// layer in the error when it already carries one.
    ///
    /// # Errors
    /// [`FedError::UnsupportedLayer`] if the layer already carries an adapter, or (for
    /// [`Pointwise`]) is not a plain 1x1 convolution; [`FedError::InvalidConfig`] for an
    /// invalid `config`.
    pub fn adapt(self, config: &LoraConfig, seed: u64, path: &str) -> Result<Self> {
        match self {
            Self::Plain(linear) => Ok(Self::Lora(PersonalizedLora::from_linear(
                linear, config, seed,
            )?)),
            Self::Lora(_) => Err(already_adapted(path)),
        }
    }
}

/// A 1x1 convolution that may carry a low-rank adapter.
#[derive(Module, Debug)]
pub enum Pointwise<B: Backend> {
    /// The convolution as loaded.
    Plain(Conv2d<B>),
    /// The frozen convolution (as a `[in, out]` matrix) plus an adapter.
    Lora(PersonalizedLora<B>),
}

impl<B: Backend> Pointwise<B> {
    /// Applies the layer to `[N, C_in, H, W]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        match self {
            Self::Plain(conv) => conv.forward(x),
            Self::Lora(lora) => lora.forward_conv(x),
        }
    }

    /// Whether the layer carries an adapter.
    pub fn is_adapted(&self) -> bool {
        matches!(self, Self::Lora(_))
    }

    /// Replaces the plain layer by the same frozen layer plus an adapter; `path` names the
    /// layer in the error when it already carries one.
    ///
    /// # Errors
    /// [`FedError::UnsupportedLayer`] if the layer already carries an adapter, or (for
    /// [`Pointwise`]) is not a plain 1x1 convolution; [`FedError::InvalidConfig`] for an
    /// invalid `config`.
    pub fn adapt(self, config: &LoraConfig, seed: u64, path: &str) -> Result<Self> {
        match self {
            Self::Plain(conv) => Ok(Self::Lora(PersonalizedLora::from_conv1x1(
                conv, config, seed,
            )?)),
            Self::Lora(_) => Err(already_adapted(path)),
        }
    }
}

fn already_adapted(path: &str) -> FedError {
    FedError::UnsupportedLayer(format!("{path} already carries an adapter"))
}
