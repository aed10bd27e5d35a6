//! One training step of a CIFAR-10 cohort from the frozen-prefix cache, forward and backward
//! by hand on stacked tensors: for every member `c` (rows `i`),
//!
//! ```text
//! xd = x ⊙ m1                      (the adapter's dropout)
//! h  = base + s (xd Aᵀ) Bᵀ         (classifier.0 with its adapter, W0 x + b cached in `base`)
//! a  = hardswish(h) ⊙ m2           (the classifier's dropout)
//! z  = a W + bias                  (the head, classifier.3)
//! L  = Σ_c Σ_i w_ci CE(z_ci, y_ci) (w_ci = 1 / rows of c: each member's mean loss)
//! ```
//!
//! The gradients are the ones burn's autodiff computes for the sequential step, written out:
//! each member's depend only on its own rows, so the sum over members separates exactly.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

/// One step's inputs, stacked: `n` members, `w` rows each (short batches padded).
pub(super) struct StepInputs<B: Backend> {
    /// Pooled features `[n, w, in]`.
    pub x: Tensor<B, 3>,
    /// Frozen products `W0 x + b`, `[n, w, hidden]`.
    pub base: Tensor<B, 3>,
    /// One-hot targets `[n, w, classes]`.
    pub onehot: Tensor<B, 3>,
    /// Row weights `[n, w, 1]`: `1 / rows` of the member, 0 for padding.
    pub weights: Tensor<B, 3>,
    /// The adapter's dropout mask, scale included, `[n, w, in]` (`None`: no dropout).
    pub mask_in: Option<Tensor<B, 3>>,
    /// The classifier's dropout mask, scale included, `[n, w, hidden]` (`None`: no dropout).
    pub mask_hidden: Option<Tensor<B, 3>>,
}

/// The active members' tensors: `a` `[n, r, in]`, `b` `[n, hidden, r]`, `w` `[n, hidden,
/// classes]`, `bias` `[n, 1, classes]`.
pub(super) struct StepParams<B: Backend> {
    pub a: Tensor<B, 3>,
    pub b: Tensor<B, 3>,
    pub w: Tensor<B, 3>,
    pub bias: Tensor<B, 3>,
    /// `alpha / r`.
    pub scaling: f64,
}

/// Gradients of the summed mean losses, same shapes as [`StepParams`], and each member's mean
/// loss (`[n]`).
pub(super) struct StepGrads<B: Backend> {
    pub a: Tensor<B, 3>,
    pub b: Tensor<B, 3>,
    pub w: Tensor<B, 3>,
    pub bias: Tensor<B, 3>,
    pub losses: Tensor<B, 1>,
}

fn masked<B: Backend>(t: Tensor<B, 3>, mask: &Option<Tensor<B, 3>>) -> Tensor<B, 3> {
    match mask {
        Some(m) => t * m.clone(),
        None => t,
    }
}

/// Forward and backward of one step.
pub(super) fn step<B: Backend>(p: &StepParams<B>, inputs: &StepInputs<B>) -> StepGrads<B> {
    let [n, _, _] = inputs.x.dims();
    // Forward.
    let xd = masked(inputs.x.clone(), &inputs.mask_in);
    let down = xd.clone().matmul(p.a.clone().swap_dims(1, 2));
    let up = down.clone().matmul(p.b.clone().swap_dims(1, 2));
    let h = inputs.base.clone() + up.mul_scalar(p.scaling);
    let gate = h.clone().add_scalar(3.0).clamp(0.0, 6.0).div_scalar(6.0);
    let act = masked(h.clone() * gate.clone(), &inputs.mask_hidden);
    let logits = act.clone().matmul(p.w.clone()) + p.bias.clone();
    let log_p = log_softmax(logits, 2);
    let nll = (log_p.clone() * inputs.onehot.clone()).sum_dim(2).neg();
    let losses = (nll * inputs.weights.clone()).sum_dim(1).reshape([n]);

    // Backward.
    let g_logits = (log_p.exp() - inputs.onehot.clone()) * inputs.weights.clone();
    let g_w = act.swap_dims(1, 2).matmul(g_logits.clone());
    let g_bias = g_logits.clone().sum_dim(1);
    let g_act = masked(
        g_logits.matmul(p.w.clone().swap_dims(1, 2)),
        &inputs.mask_hidden,
    );
    // d hardswish / dh = gate + h / 6 on (-3, 3).
    let inside = h
        .clone()
        .greater_elem(-3.0)
        .float()
        .mul(h.clone().lower_elem(3.0).float());
    let slope = gate + (h * inside).div_scalar(6.0);
    let g_up = (g_act * slope).mul_scalar(p.scaling);
    // `g_B = g_upᵀ down` and `g_A = g_downᵀ xd`, the same sums autodiff forms as
    // `(downᵀ g_up)ᵀ` and `(xdᵀ g_down)ᵀ`, written so that the results are contiguous: the
    // optimiser's element-wise ops on a transposed view walk it element by element, several
    // times slower.
    let g_down = g_up.clone().matmul(p.b.clone());
    let g_b = g_up.swap_dims(1, 2).matmul(down);
    let g_a = g_down.swap_dims(1, 2).matmul(xd);
    StepGrads {
        a: g_a,
        b: g_b,
        w: g_w,
        bias: g_bias,
        losses,
    }
}
