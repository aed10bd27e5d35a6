//! The local optimiser of a client: AdamW or SGD on the parameters its sharing rule trains.

use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamW, AdamWConfig, GradientsParams, Optimizer, Sgd, SgdConfig};
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

/// The local optimiser every client uses.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerConfig {
    /// AdamW (PyTorch's defaults: betas 0.9/0.999, eps 1e-8, weight decay 0.01).
    AdamW {
        /// First-moment decay.
        beta_1: f32,
        /// Second-moment decay.
        beta_2: f32,
        /// Numerical stability term.
        epsilon: f32,
        /// Decoupled weight decay.
        weight_decay: f32,
    },
    /// Stochastic gradient descent with optional momentum.
    Sgd {
        /// Momentum factor (0 for none).
        momentum: f64,
        /// L2 penalty (0 for none).
        weight_decay: f32,
    },
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig::AdamW {
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-8,
            weight_decay: 0.01,
        }
    }
}

#[derive(Clone)]
pub(crate) enum LocalOptimizer<B: AutodiffBackend, M: AutodiffModule<B>> {
    AdamW(OptimizerAdaptor<AdamW, M, B>),
    Sgd(OptimizerAdaptor<Sgd<B::InnerBackend>, M, B>),
}

impl<B: AutodiffBackend, M: AutodiffModule<B>> LocalOptimizer<B, M> {
    pub(crate) fn new(config: &OptimizerConfig) -> Self {
        match *config {
            OptimizerConfig::AdamW {
                beta_1,
                beta_2,
                epsilon,
                weight_decay,
            } => Self::AdamW(
                AdamWConfig::new()
                    .with_beta_1(beta_1)
                    .with_beta_2(beta_2)
                    .with_epsilon(epsilon)
                    .with_weight_decay(weight_decay)
                    .init(),
            ),
            OptimizerConfig::Sgd {
                momentum,
                weight_decay,
            } => Self::Sgd(
                SgdConfig::new()
                    .with_momentum((momentum > 0.0).then(|| {
                        MomentumConfig::new()
                            .with_momentum(momentum)
                            .with_dampening(0.0)
                    }))
                    .with_weight_decay(
                        (weight_decay > 0.0).then(|| WeightDecayConfig::new(weight_decay)),
                    )
                    .init(),
            ),
        }
    }

    pub(crate) fn step(&mut self, lr: f64, model: M, grads: GradientsParams) -> M {
        match self {
            Self::AdamW(optim) => optim.step(lr, model, grads),
            Self::Sgd(optim) => optim.step(lr, model, grads),
        }
    }
}
