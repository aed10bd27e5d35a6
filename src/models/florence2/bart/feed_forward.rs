//! The feed-forward half of a BART layer: `fc2(dropout(act(fc1(x))))`, then dropout. The two
//! linear layers live in the layer itself (transformers' names `fc1`, `fc2`); this holds what
//! goes between them.

use burn::nn::{Dropout, DropoutConfig};
use burn::prelude::*;
use burn::tensor::activation::{gelu, gelu_approximate, relu};

use super::config::Activation;
use crate::lora::Dense;

/// Activation and dropouts of a feed-forward block (no parameters).
#[derive(Debug, Clone)]
pub struct FeedForward {
    /// The activation between `fc1` and `fc2`.
    pub activation: Activation,
    /// Dropout after the activation (`activation_dropout`, training only).
    pub activation_dropout: Dropout,
    /// Dropout on each sub-layer output before its residual (`dropout`, training only).
    pub dropout: Dropout,
}

impl FeedForward {
    pub(crate) fn new(activation: Activation, dropout: f64, activation_dropout: f64) -> Self {
        Self {
            activation,
            activation_dropout: DropoutConfig::new(activation_dropout).init(),
            dropout: DropoutConfig::new(dropout).init(),
        }
    }

    /// `dropout(fc2(activation_dropout(act(fc1(x)))))`.
    pub(crate) fn apply<B: Backend>(
        &self,
        fc1: &Dense<B>,
        fc2: &Dense<B>,
        x: Tensor<B, 3>,
    ) -> Tensor<B, 3> {
        let h = fc1.forward(x);
        let h = match self.activation {
            Activation::Gelu => gelu(h),
            Activation::GeluTanh => gelu_approximate(h),
            Activation::Relu => relu(h),
        };
        let h = fc2.forward(self.activation_dropout.forward(h));
        self.dropout.forward(h)
    }
}
