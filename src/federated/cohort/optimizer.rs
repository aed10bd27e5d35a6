//! The local optimiser of a cohort: burn's AdamW and SGD, formula for formula, on tensors
//! stacked along a leading client axis, with one step count per client.
//!
//! Only the members still training at a step (a prefix of the cohort, see
//! [`super::CohortSchedule`]) are stepped: the others' values, moments and step counts are
//! left exactly as they are.

use burn::prelude::*;

use crate::federated::client::OptimizerConfig;

/// One trainable tensor of every member, stacked (`[C, rows, cols]`), with its optimiser
/// state.
#[derive(Debug, Clone)]
pub struct StackedParam<B: Backend> {
    /// The values, member `c` at index `c` of the first dimension.
    pub value: Tensor<B, 3>,
    /// Adam's first moment, or SGD's velocity.
    moment_1: Tensor<B, 3>,
    /// Adam's second moment (unused by SGD).
    moment_2: Option<Tensor<B, 3>>,
}

impl<B: Backend> StackedParam<B> {
    /// Stacked `value` with zero moments (burn's first step from zero moments is bit for bit
    /// its first step without state).
    pub fn new(value: Tensor<B, 3>, config: &OptimizerConfig) -> Self {
        let zeros = value.zeros_like();
        let moment_2 = matches!(config, OptimizerConfig::AdamW { .. }).then(|| zeros.clone());
        Self {
            value,
            moment_1: zeros,
            moment_2,
        }
    }

    /// The values of the first `n` members.
    pub fn active(&self, n: usize) -> Tensor<B, 3> {
        prefix(&self.value, n)
    }
}

fn prefix<B: Backend>(t: &Tensor<B, 3>, n: usize) -> Tensor<B, 3> {
    if t.dims()[0] == n {
        t.clone()
    } else {
        t.clone().narrow(0, 0, n)
    }
}

fn write_prefix<B: Backend>(t: Tensor<B, 3>, n: usize, values: Tensor<B, 3>) -> Tensor<B, 3> {
    if t.dims()[0] == n {
        values
    } else {
        let [_, rows, cols] = t.dims();
        t.slice_assign([0..n, 0..rows, 0..cols], values)
    }
}

/// AdamW or SGD over stacked tensors with a step count per member.
#[derive(Debug, Clone)]
pub struct CohortOptimizer {
    config: OptimizerConfig,
    lr: f64,
    times: Vec<i32>,
}

impl CohortOptimizer {
    /// A fresh optimiser for `members` members at learning rate `lr`.
    pub fn new(config: &OptimizerConfig, lr: f64, members: usize) -> Self {
        Self {
            config: *config,
            lr,
            times: vec![0; members],
        }
    }

    /// Each member's number of steps so far.
    pub fn times(&self) -> &[i32] {
        &self.times
    }

    /// Steps the first `active` members: `grads[i]` (`[active, ...]`) is the gradient of
    /// `params[i]`. Call once per training step, with every parameter at once.
    pub fn step<B: Backend>(
        &mut self,
        params: &mut [&mut StackedParam<B>],
        grads: Vec<Tensor<B, 3>>,
        active: usize,
    ) {
        let n = active.min(self.times.len());
        if n == 0 {
            return;
        }
        for time in &mut self.times[..n] {
            *time += 1;
        }
        let times = &self.times[..n];
        for (param, grad) in params.iter_mut().zip(grads) {
            match self.config {
                OptimizerConfig::AdamW {
                    beta_1,
                    beta_2,
                    epsilon,
                    weight_decay,
                } => {
                    let device = grad.device();
                    let correction = |beta: f32| Correction::new(beta, times, &device);
                    let (c1, c2) = (correction(beta_1), correction(beta_2));
                    adamw_step(
                        param,
                        grad,
                        n,
                        (beta_1, beta_2, epsilon, weight_decay),
                        (c1, c2),
                        self.lr,
                    );
                }
                OptimizerConfig::Sgd {
                    momentum,
                    weight_decay,
                } => sgd_step(param, grad, n, momentum, weight_decay, self.lr),
            }
        }
    }
}

/// Adam's bias correction `1 - beta^t`: one scalar when every active member has taken the
/// same number of steps, one value per member otherwise.
enum Correction<B: Backend> {
    Scalar(f32),
    PerMember(Tensor<B, 3>),
}

impl<B: Backend> Correction<B> {
    fn new(beta: f32, times: &[i32], device: &B::Device) -> Self {
        let value = |t: i32| 1f32 - beta.powi(t);
        match times {
            [first, rest @ ..] if rest.iter().all(|t| t == first) => Self::Scalar(value(*first)),
            _ => {
                let values: Vec<f32> = times.iter().map(|&t| value(t)).collect();
                let data = burn::tensor::TensorData::new(values, [times.len(), 1, 1]);
                Self::PerMember(Tensor::from_data(data, device))
            }
        }
    }

    fn divide(&self, t: Tensor<B, 3>) -> Tensor<B, 3> {
        match self {
            Self::Scalar(c) => t.div_scalar(*c),
            Self::PerMember(c) => t.div(c.clone()),
        }
    }
}

/// burn 0.21's `AdamW::step`: `m = b1 m + (1 - b1) g`, `v = b2 v + (1 - b2) g^2`,
/// `w = w (1 - lr wd) - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)`.
fn adamw_step<B: Backend>(
    param: &mut StackedParam<B>,
    grad: Tensor<B, 3>,
    n: usize,
    (beta_1, beta_2, epsilon, weight_decay): (f32, f32, f32, f32),
    (c1, c2): (Correction<B>, Correction<B>),
    lr: f64,
) {
    let (factor_1, factor_2) = (1.0 - beta_1, 1.0 - beta_2);
    let m1 = prefix(&param.moment_1, n)
        .mul_scalar(beta_1)
        .add(grad.clone().mul_scalar(factor_1));
    let m2_old = param
        .moment_2
        .as_ref()
        .map_or_else(|| grad.zeros_like(), |m| prefix(m, n));
    let m2 = m2_old
        .mul_scalar(beta_2)
        .add(grad.square().mul_scalar(factor_2));
    let delta = c1
        .divide(m1.clone())
        .div(c2.divide(m2.clone()).sqrt().add_scalar(epsilon));
    let decay = lr * weight_decay as f64;
    let w = param.active(n);
    let w = if decay == 0.0 {
        w
    } else {
        w.mul_scalar(1.0 - decay)
    };
    let w = w - delta.mul_scalar(lr);
    param.value = write_prefix(param.value.clone(), n, w);
    param.moment_1 = write_prefix(param.moment_1.clone(), n, m1);
    if let Some(old) = param.moment_2.take() {
        param.moment_2 = Some(write_prefix(old, n, m2));
    }
}

/// burn 0.21's `Sgd::step` with momentum (dampening 0) and L2 weight decay:
/// `g = g + wd w`, `v = g + momentum v`, `w = w - lr v`.
fn sgd_step<B: Backend>(
    param: &mut StackedParam<B>,
    grad: Tensor<B, 3>,
    n: usize,
    momentum: f64,
    weight_decay: f32,
    lr: f64,
) {
    let w = param.active(n);
    let mut grad = if weight_decay > 0.0 {
        w.clone().mul_scalar(weight_decay).add(grad)
    } else {
        grad
    };
    if momentum > 0.0 {
        let velocity = grad
            .mul_scalar(1.0)
            .add(prefix(&param.moment_1, n).mul_scalar(momentum));
        param.moment_1 = write_prefix(param.moment_1.clone(), n, velocity.clone());
        grad = velocity;
    }
    param.value = write_prefix(param.value.clone(), n, w - grad.mul_scalar(lr));
}
