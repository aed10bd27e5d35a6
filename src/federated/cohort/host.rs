//! One member's local optimiser on host vectors: burn's AdamW and SGD, formula for formula (as
//! [`super::CohortOptimizer`] on stacked tensors), and FedProx's pull, for kernels that train
//! each member in plain Rust on the CPU.
//!
//! The values and moments stay host vectors for the whole round: a step allocates nothing.

use crate::federated::client::OptimizerConfig;

/// One trainable tensor of one member, flattened, with its optimiser state.
#[derive(Debug, Clone, PartialEq)]
pub struct HostParam {
    /// The values, in whatever layout the kernel keeps them (the optimiser is element-wise).
    pub value: Vec<f32>,
    /// Adam's first moment, or SGD's velocity.
    moment_1: Vec<f32>,
    /// Adam's second moment (empty for SGD).
    moment_2: Vec<f32>,
}

impl HostParam {
    /// `value` with zero moments (burn's first step from zero moments is its first step
    /// without state).
    pub fn new(value: Vec<f32>, config: &OptimizerConfig) -> Self {
        let moment_2 = match config {
            OptimizerConfig::AdamW { .. } => vec![0.0; value.len()],
            OptimizerConfig::Sgd { .. } => Vec::new(),
        };
        Self {
            moment_1: vec![0.0; value.len()],
            moment_2,
            value,
        }
    }
}

/// AdamW or SGD for one member's tensors, with its step count.
#[derive(Debug, Clone)]
pub struct HostOptimizer {
    config: OptimizerConfig,
    lr: f64,
    time: i32,
}

impl HostOptimizer {
    /// A fresh optimiser at learning rate `lr`.
    pub fn new(config: &OptimizerConfig, lr: f64) -> Self {
        Self {
            config: *config,
            lr,
            time: 0,
        }
    }

    /// Steps taken so far.
    pub fn time(&self) -> i32 {
        self.time
    }

    /// One step: `grads[i]` is the gradient of `params[i]` (same length). Call once per
    /// training step with every trained tensor.
    pub fn step(&mut self, params: &mut [&mut HostParam], grads: &[&[f32]]) {
        self.time += 1;
        for (param, grad) in params.iter_mut().zip(grads) {
            match self.config {
                OptimizerConfig::AdamW {
                    beta_1,
                    beta_2,
                    epsilon,
                    weight_decay,
                } => adamw(
                    param,
                    grad,
                    (beta_1, beta_2, epsilon, weight_decay),
                    self.time,
                    self.lr,
                ),
                OptimizerConfig::Sgd {
                    momentum,
                    weight_decay,
                } => sgd(param, grad, momentum, weight_decay, self.lr),
            }
        }
    }
}

/// burn 0.21's `AdamW::step`: `m = b1 m + (1 - b1) g`, `v = b2 v + (1 - b2) g^2`,
/// `w = w (1 - lr wd) - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)`, in f32 with the
/// scalars rounded as burn rounds them.
fn adamw(
    param: &mut HostParam,
    grad: &[f32],
    (beta_1, beta_2, epsilon, weight_decay): (f32, f32, f32, f32),
    time: i32,
    lr: f64,
) {
    let (c1, c2) = (1f32 - beta_1.powi(time), 1f32 - beta_2.powi(time));
    let (factor_1, factor_2) = (1.0 - beta_1, 1.0 - beta_2);
    let decay = lr * weight_decay as f64;
    let keep = (1.0 - decay) as f32;
    let lr = lr as f32;
    let HostParam {
        value,
        moment_1,
        moment_2,
    } = param;
    for (((w, m1), m2), &g) in value
        .iter_mut()
        .zip(moment_1.iter_mut())
        .zip(moment_2.iter_mut())
        .zip(grad)
    {
        *m1 = *m1 * beta_1 + g * factor_1;
        *m2 = *m2 * beta_2 + (g * g) * factor_2;
        let delta = (*m1 / c1) / ((*m2 / c2).sqrt() + epsilon);
        let decayed = if decay == 0.0 { *w } else { *w * keep };
        *w = decayed - delta * lr;
    }
}

/// burn 0.21's `Sgd::step` with momentum (dampening 0) and L2 weight decay:
/// `g = g + wd w`, `v = g + momentum v`, `w = w - lr v`.
fn sgd(param: &mut HostParam, grad: &[f32], momentum: f64, weight_decay: f32, lr: f64) {
    let (momentum, lr) = (momentum as f32, lr as f32);
    for ((w, v), &g) in param
        .value
        .iter_mut()
        .zip(param.moment_1.iter_mut())
        .zip(grad)
    {
        let mut g = if weight_decay > 0.0 {
            *w * weight_decay + g
        } else {
            g
        };
        if momentum > 0.0 {
            *v = g + *v * momentum;
            g = *v;
        }
        *w -= g * lr;
    }
}

/// Adds FedProx's pull `mu (w - w_global)` to `grad` (the gradient of `mu/2 ||w - w_global||^2`).
pub fn prox_pull(grad: &mut [f32], value: &[f32], global: &[f32], mu: f64) {
    let mu = mu as f32;
    for ((g, &w), &w0) in grad.iter_mut().zip(value).zip(global) {
        *g += (w - w0) * mu;
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::prelude::*;
    use burn::tensor::TensorData;

    use super::*;
    use crate::federated::cohort::{CohortOptimizer, StackedParam};

    fn tensor(values: &[f32]) -> Tensor<Flex, 3> {
        Tensor::from_data(
            TensorData::new(values.to_vec(), [1, 1, values.len()]),
            &Default::default(),
        )
    }

    /// The host optimiser follows the stacked-tensor one (burn's formulas) step for step.
    #[test]
    fn host_steps_equal_the_stacked_optimizer() {
        let configs = [
            OptimizerConfig::AdamW {
                beta_1: 0.9,
                beta_2: 0.999,
                epsilon: 1e-8,
                weight_decay: 0.01,
            },
            OptimizerConfig::Sgd {
                momentum: 0.9,
                weight_decay: 0.01,
            },
        ];
        let start: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin()).collect();
        for config in configs {
            let mut host = HostParam::new(start.clone(), &config);
            let mut host_opt = HostOptimizer::new(&config, 0.05);
            let mut stacked = StackedParam::new(tensor(&start), &config);
            let mut stacked_opt = CohortOptimizer::new(&config, 0.05, 1);
            for step in 0..5 {
                let grad: Vec<f32> = (0..37)
                    .map(|i| ((i * (step + 3)) as f32 * 0.11).cos() * 0.3)
                    .collect();
                host_opt.step(&mut [&mut host], &[&grad]);
                stacked_opt.step(&mut [&mut stacked], vec![tensor(&grad)], 1);
            }
            assert_eq!(host_opt.time(), 5);
            let expected: Vec<f32> = stacked.value.into_data().into_vec().unwrap();
            assert!(
                host.value != start,
                "{config:?}: the steps moved the values"
            );
            for (a, b) in host.value.iter().zip(&expected) {
                assert!((a - b).abs() <= 1e-6, "{config:?}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn prox_pulls_towards_the_global_values() {
        let mut grad = vec![1.0, 0.0];
        prox_pull(&mut grad, &[2.0, -1.0], &[1.0, 1.0], 0.5);
        assert_eq!(grad, vec![1.5, -1.0]);
    }
}
