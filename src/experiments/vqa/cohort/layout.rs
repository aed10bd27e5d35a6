//! What the members of a Florence-2 cohort have in common (the last decoder layer's adapters,
//! which of their matrices train, the layer's dropouts), and moving the adapters between the
//! members' models and the stacked tensors.

use std::collections::HashSet;

use burn::module::{Param, ParamId};
use burn::prelude::*;

use crate::error::{FedError, Result};
use crate::federated::client::OptimizerConfig;
use crate::federated::cohort::{CohortMember, StackedParam, stack_params, unstack_param};
use crate::lora::{Dense, PersonalizedLora};
use crate::models::florence2::bart::BartDecoderLayer;
use crate::models::florence2::{Florence2, LANGUAGE_MODEL_PREFIX};

/// The linear layers of a decoder layer, in the order the layer runs them.
pub(super) const PROJECTIONS: [&str; 10] = [
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.out_proj",
    "encoder_attn.q_proj",
    "encoder_attn.k_proj",
    "encoder_attn.v_proj",
    "encoder_attn.out_proj",
    "fc1",
    "fc2",
];

/// Projection `i` of [`PROJECTIONS`] in `layer`.
pub(super) fn dense<B: Backend>(layer: &BartDecoderLayer<B>, i: usize) -> &Dense<B> {
    match i {
        0 => &layer.self_attn.q_proj,
        1 => &layer.self_attn.k_proj,
        2 => &layer.self_attn.v_proj,
        3 => &layer.self_attn.out_proj,
        4 => &layer.encoder_attn.q_proj,
        5 => &layer.encoder_attn.k_proj,
        6 => &layer.encoder_attn.v_proj,
        7 => &layer.encoder_attn.out_proj,
        8 => &layer.fc1,
        _ => &layer.fc2,
    }
}

fn dense_mut<B: Backend>(layer: &mut BartDecoderLayer<B>, i: usize) -> &mut Dense<B> {
    match i {
        0 => &mut layer.self_attn.q_proj,
        1 => &mut layer.self_attn.k_proj,
        2 => &mut layer.self_attn.v_proj,
        3 => &mut layer.self_attn.out_proj,
        4 => &mut layer.encoder_attn.q_proj,
        5 => &mut layer.encoder_attn.k_proj,
        6 => &mut layer.encoder_attn.v_proj,
        7 => &mut layer.encoder_attn.out_proj,
        8 => &mut layer.fc1,
        _ => &mut layer.fc2,
    }
}

/// One adapted projection's shape and settings.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct AdapterShape {
    pub rank: usize,
    pub d_in: usize,
    pub d_out: usize,
    pub scaling: f64,
    /// Dropout on the adapter's input.
    pub dropout: f64,
    /// Whether `A` and `B` train.
    pub trains: (bool, bool),
}

/// What members of one cohort share.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Layout {
    /// Index of the last decoder layer.
    pub last: usize,
    pub d_model: usize,
    pub ffn_dim: usize,
    pub heads: usize,
    /// Per projection of [`PROJECTIONS`], its adapter.
    pub adapters: Vec<Option<AdapterShape>>,
    /// Dropout of the self- and cross-attention probabilities.
    pub attention_dropout: (f64, f64),
    /// Dropout of each sub-layer's output.
    pub dropout: f64,
    /// Dropout after the feed-forward activation.
    pub activation_dropout: f64,
}

/// The last decoder layer of `model`.
pub(super) fn last_layer<B: Backend>(model: &Florence2<B>) -> Option<&BartDecoderLayer<B>> {
    model.language_model.decoder.layers.last()
}

fn adapter<B: Backend>(dense: &Dense<B>) -> Option<&PersonalizedLora<B>> {
    match dense {
        Dense::Lora(layer) => Some(layer),
        Dense::Plain(_) => None,
    }
}

/// The member's layout, or `None` when the cohort code does not cover it: a merged adapter,
/// or a trainable parameter other than the last decoder layer's adapters.
pub(super) fn layout<B: Backend>(member: &CohortMember<'_, Florence2<B>>) -> Option<Layout> {
    let model = member.model;
    let layer = last_layer(model)?;
    let mut adapters = Vec::with_capacity(PROJECTIONS.len());
    let mut covered: HashSet<ParamId> = HashSet::new();
    for i in 0..PROJECTIONS.len() {
        let Some(lora) = adapter(dense(layer, i)) else {
            adapters.push(None);
            continue;
        };
        if lora.merged {
            return None;
        }
        let trains = (
            member.trainable.contains(&lora.lora_a.id),
            member.trainable.contains(&lora.lora_b.id),
        );
        covered.insert(lora.lora_a.id);
        covered.insert(lora.lora_b.id);
        adapters.push(Some(AdapterShape {
            rank: lora.rank(),
            d_in: lora.d_input(),
            d_out: lora.d_output(),
            scaling: lora.scaling,
            dropout: lora.dropout.prob,
            trains,
        }));
    }
    if !member.trainable.iter().all(|id| covered.contains(id)) {
        return None;
    }
    let fc1 = dense(layer, 8);
    let ffn_dim = match fc1 {
        Dense::Plain(linear) => linear.weight.dims()[1],
        Dense::Lora(lora) => lora.d_output(),
    };
    Some(Layout {
        last: model.language_model.num_decoder_layers().checked_sub(1)?,
        d_model: model.language_model.d_model(),
        ffn_dim,
        heads: layer.self_attn.num_heads,
        adapters,
        attention_dropout: (
            layer.self_attn.dropout.prob,
            layer.encoder_attn.dropout.prob,
        ),
        dropout: layer.ffn.dropout.prob,
        activation_dropout: layer.ffn.activation_dropout.prob,
    })
}

/// The payload name of projection `i`'s `lora_a` (`b = false`) or `lora_b`.
pub(super) fn tensor_name(layout: &Layout, i: usize, b: bool) -> String {
    let matrix = if b { "lora_b" } else { "lora_a" };
    format!(
        "{LANGUAGE_MODEL_PREFIX}decoder.layers.{}.{}.{matrix}",
        layout.last, PROJECTIONS[i]
    )
}

/// One adapted projection's `A` and `B`, stacked over the members.
pub(super) struct StackedAdapter<B: Backend> {
    /// Index into [`PROJECTIONS`].
    pub projection: usize,
    pub a: StackedParam<B>,
    pub b: StackedParam<B>,
}

/// Every adapted projection's matrices, stacked in the order of `models`.
pub(super) fn stack_adapters<B: Backend>(
    models: &[&Florence2<B>],
    layout: &Layout,
    optimizer: &OptimizerConfig,
) -> Result<Vec<StackedAdapter<B>>> {
    let mut stacked = Vec::new();
    for (i, shape) in layout.adapters.iter().enumerate() {
        if shape.is_none() {
            continue;
        }
        let mut a = Vec::with_capacity(models.len());
        let mut b = Vec::with_capacity(models.len());
        for model in models {
            let lora = last_layer(model)
                .and_then(|layer| adapter(dense(layer, i)))
                .ok_or_else(|| FedError::Task(format!("no adapter at `{}`", PROJECTIONS[i])))?;
            a.push(lora.lora_a.val());
            b.push(lora.lora_b.val());
        }
        stacked.push(StackedAdapter {
            projection: i,
            a: StackedParam::new(stack_params(a)?, optimizer),
            b: StackedParam::new(stack_params(b)?, optimizer),
        });
    }
    Ok(stacked)
}

/// `model` with member `j`'s trained adapters (parameter ids kept).
pub(super) fn write_back<B: Backend>(
    model: &Florence2<B>,
    stacked: &[StackedAdapter<B>],
    j: usize,
) -> Florence2<B> {
    let mut model = model.clone();
    if let Some(layer) = model.language_model.decoder.layers.last_mut() {
        for s in stacked {
            if let Dense::Lora(lora) = dense_mut(layer, s.projection) {
                let (a_dims, b_dims) = (lora.lora_a.dims(), lora.lora_b.dims());
                replace(&mut lora.lora_a, unstack_param(&s.a.value, j, a_dims));
                replace(&mut lora.lora_b, unstack_param(&s.b.value, j, b_dims));
            }
        }
    }
    model
}

fn replace<B: Backend, const D: usize>(param: &mut Param<Tensor<B, D>>, value: Tensor<B, D>) {
    let old = std::mem::replace(param, Param::from_tensor(value.clone()));
    *param = old.map(|_| value);
}

/// The frozen tensors the cohort step applies once for every member: the last layer's base
/// weights and biases, its LayerNorms and the language-model head.
fn frozen<B: Backend>(model: &Florence2<B>) -> Vec<(ParamId, Tensor<B, 1>)> {
    let mut out = Vec::new();
    let mut push2 = |p: &Param<Tensor<B, 2>>| out.push((p.id, p.val().flatten::<1>(0, 1)));
    push2(&model.language_model.shared.weight);
    let Some(layer) = last_layer(model) else {
        return out;
    };
    let mut ones: Vec<&Param<Tensor<B, 1>>> = Vec::new();
    for i in 0..PROJECTIONS.len() {
        match dense(layer, i) {
            Dense::Plain(linear) => {
                push2(&linear.weight);
                ones.extend(linear.bias.as_ref());
            }
            Dense::Lora(lora) => {
                push2(&lora.weight);
                ones.extend(lora.bias.as_ref());
            }
        }
    }
    for norm in [
        &layer.self_attn_layer_norm,
        &layer.encoder_attn_layer_norm,
        &layer.final_layer_norm,
    ] {
        ones.push(&norm.gamma);
        ones.extend(norm.beta.as_ref());
    }
    out.extend(ones.into_iter().map(|p| (p.id, p.val())));
    out
}

/// Whether `a` and `b` hold the same frozen last layer and head (the same parameters, or
/// equal values), so that one copy serves both.
pub(super) fn same_frozen<B: Backend>(a: &Florence2<B>, b: &Florence2<B>) -> bool {
    let (fa, fb) = (frozen(a), frozen(b));
    fa.len() == fb.len()
        && fa.iter().zip(&fb).all(|((ia, ta), (ib, tb))| {
            ia == ib
                || (ta.dims() == tb.dims()
                    && ta.clone().equal(tb.clone()).all().into_scalar().to_bool())
        })
        && match (
            &a.language_model.final_logits_bias,
            &b.language_model.final_logits_bias,
        ) {
            (None, None) => true,
            (Some(x), Some(y)) => {
                x.dims() == y.dims() && x.clone().equal(y.clone()).all().into_scalar().to_bool()
            }
            _ => false,
        }
}
