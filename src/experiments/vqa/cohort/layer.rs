//! The last BART decoder layer and the language-model head for a whole cohort at once.
//!
//! The members' batches are stacked into `C` blocks of equal height (`[C * rows, T, d]`,
//! padded). Frozen weights apply to every row at once; an adapted projection adds each
//! member's low-rank term as batched products over the stacked adapters,
//! `bmm(bmm(x_c, A_cᵀ), B_cᵀ)` on `[C, rows * T, d]`. Attention runs per sample as in the
//! sequential layer, so the members' rows never mix and the loss `Σ_c loss_c` gives each
//! member's adapters exactly its own gradient. Padded rows and positions carry ignored labels
//! and masked keys: they add nothing.

use burn::prelude::*;
use burn::tensor::activation::{gelu, gelu_approximate, log_softmax, relu, softmax};
use burn::tensor::module::linear;

use super::layout::dense;
use super::masks::{SITES, Site};
use crate::lora::Dense;
use crate::models::florence2::bart::{Activation, BartAttention, BartDecoderLayer, causal_mask};

/// One adapted projection's stacked matrices for the active members: `a` `[C, r, in]`,
/// `b` `[C, out, r]`.
pub(super) struct Adapter<B: Backend> {
    pub a: Tensor<B, 3>,
    pub b: Tensor<B, 3>,
    pub scaling: f64,
}

/// A cohort step's inputs, `C` blocks of `rows` samples each.
pub(super) struct StepInputs<B: Backend> {
    /// The last layer's input `[C * rows, T, d]`.
    pub prefix: Tensor<B, 3>,
    /// The encoder output `[C * rows, S, d]`.
    pub encoder: Tensor<B, 3>,
    /// `[C * rows, 1, 1, S]`, `true` at padding.
    pub encoder_mask: Tensor<B, 4, Bool>,
    /// The flat positions (`row * T + t`) of every kept label, `[K]`: the head runs only there.
    pub kept_positions: Tensor<B, 1, Int>,
    /// The kept labels, `[K, 1]`.
    pub kept_labels: Tensor<B, 2, Int>,
    /// `[C, K]`: 1 where kept label `k` is member `c`'s.
    pub membership: Tensor<B, 2>,
    /// Each member's number of kept labels, `[C, 1]`.
    pub kept: Tensor<B, 2>,
    /// Per site of [`SITES`], its dropout mask (see [`super::masks::step_masks`]).
    pub masks: Vec<Option<Tensor<B, 4>>>,
    /// `C`.
    pub members: usize,
}

/// The frozen language-model head: `hidden shared^T (+ final_logits_bias)`.
pub(super) struct Head<B: Backend> {
    pub weight: Tensor<B, 2>,
    pub bias: Option<Tensor<B, 1>>,
}

struct Step<'a, B: Backend> {
    adapters: &'a [Option<Adapter<B>>],
    masks: &'a [Option<Tensor<B, 4>>],
    members: usize,
}

impl<B: Backend> Step<'_, B> {
    fn mask(&self, site: Site) -> Option<Tensor<B, 4>> {
        let i = SITES.iter().position(|&s| s == site)?;
        self.masks.get(i).cloned().flatten()
    }

    /// `x * mask` where the site draws a mask.
    fn dropout<const D: usize>(&self, x: Tensor<B, D>, site: Site) -> Tensor<B, D> {
        match self.mask(site) {
            Some(mask) => {
                let shape = x.shape();
                x * mask.reshape(shape)
            }
            None => x,
        }
    }

    /// Projection `i` applied to `x` `[C * rows, L, in]`: the frozen layer for every row, plus
    /// each member's adapter term on its own rows.
    fn project(&self, layer: &BartDecoderLayer<B>, i: usize, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let base = match dense(layer, i) {
            Dense::Plain(l) => l.forward(x.clone()),
            Dense::Lora(l) => linear(x.clone(), l.weight.val(), l.bias.as_ref().map(|b| b.val())),
        };
        let Some(Some(adapter)) = self.adapters.get(i) else {
            return base;
        };
        let [rows, len, d_in] = x.dims();
        let d_out = base.dims()[2];
        let x = self.dropout(x, Site::Adapter(i));
        let c = self.members.max(1);
        let down = x
            .reshape([c, rows / c * len, d_in])
            .matmul(adapter.a.clone().swap_dims(1, 2));
        let up = down
            .matmul(adapter.b.clone().swap_dims(1, 2))
            .mul_scalar(adapter.scaling);
        base + up.reshape([rows, len, d_out])
    }

    /// The attention of `attn` (projections `first .. first + 4`) from `hidden` to `states`.
    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        layer: &BartDecoderLayer<B>,
        attn: &BartAttention<B>,
        first: usize,
        hidden: Tensor<B, 3>,
        states: Tensor<B, 3>,
        mask: Option<Tensor<B, 4, Bool>>,
        probs_site: Site,
    ) -> Tensor<B, 3> {
        let [n, t, d] = hidden.dims();
        let heads = attn.num_heads;
        let split = |x: Tensor<B, 3>| {
            let [n, len, d] = x.dims();
            x.reshape([n, len, heads, d / heads]).swap_dims(1, 2)
        };
        let query = split(self.project(layer, first, hidden));
        let key = split(self.project(layer, first + 1, states.clone()));
        let value = split(self.project(layer, first + 2, states));
        let scaling = ((d / heads) as f64).powf(-0.5);
        let mut scores = query.matmul(key.swap_dims(2, 3)).mul_scalar(scaling);
        if let Some(mask) = mask {
            let shape = scores.shape();
            scores = scores.mask_fill(mask.expand(shape), f32::MIN);
        }
        let probs = self.dropout(softmax(scores, 3), probs_site);
        let out = probs.matmul(value).swap_dims(1, 2).reshape([n, t, d]);
        self.project(layer, first + 3, out)
    }
}

/// Each member's mean token loss over its kept labels, `[C]`: the sequential layer's
/// [`crate::experiments::vqa::masked_cross_entropy`] per member, for one cohort step.
///
/// `layer` is the frozen last decoder layer (its adapters, if any, are not used: `adapters`,
/// one entry per projection, replaces them).
///
pub(super) fn member_losses<B: Backend>(
    layer: &BartDecoderLayer<B>,
    head: &Head<B>,
    adapters: &[Option<Adapter<B>>],
    inputs: StepInputs<B>,
) -> Tensor<B, 1> {
    let step = Step {
        adapters,
        masks: &inputs.masks,
        members: inputs.members,
    };
    let hidden = inputs.prefix;
    let [rows, t, _] = hidden.dims();
    let causal = causal_mask::<B>(t, 0, &hidden.device());
    let attn = step.attention(
        layer,
        &layer.self_attn,
        0,
        hidden.clone(),
        hidden.clone(),
        causal,
        Site::SelfProbs,
    );
    let hidden = layer
        .self_attn_layer_norm
        .forward(hidden + step.dropout(attn, Site::Residual(0)));
    let attn = step.attention(
        layer,
        &layer.encoder_attn,
        4,
        hidden.clone(),
        inputs.encoder,
        Some(inputs.encoder_mask),
        Site::CrossProbs,
    );
    let hidden = layer
        .encoder_attn_layer_norm
        .forward(hidden + step.dropout(attn, Site::Residual(1)));
    let h = step.project(layer, 8, hidden.clone());
    let h = match layer.ffn.activation {
        Activation::Gelu => gelu(h),
        Activation::GeluTanh => gelu_approximate(h),
        Activation::Relu => relu(h),
    };
    let h = step.dropout(h, Site::Activation);
    let h = step.project(layer, 9, h);
    let h = step.dropout(h, Site::Residual(2));
    let hidden = layer.final_layer_norm.forward(hidden + h);
    // The head as `BartModel::logits` computes it, on the answer tokens only: padding and
    // ignored positions (a good part of a padded batch) never reach the vocabulary product.
    let d = hidden.dims()[2];
    let hidden = hidden
        .reshape([rows * t, d])
        .select(0, inputs.kept_positions);
    let logits = hidden.matmul(head.weight.clone().transpose());
    let logits = match &head.bias {
        Some(bias) => logits + bias.clone().unsqueeze::<2>(),
        None => logits,
    };
    let nll = log_softmax(logits, 1).gather(1, inputs.kept_labels).neg();
    let sums = inputs.membership.matmul(nll);
    (sums / inputs.kept).reshape([inputs.members.max(1)])
}
