//! BART's multi-head attention (transformers' `BartAttention`, eager path), used as encoder
//! self-attention, causal decoder self-attention and decoder cross-attention.

use burn::nn::{Dropout, DropoutConfig};
use burn::prelude::*;
use burn::tensor::activation::softmax;

use super::init::Init;
use super::kv_cache::KeyValue;
use crate::lora::Dense;

/// Multi-head attention with four projections, each a [`Dense`] layer so an adapter can be
/// inserted at any of them: `softmax(q k^T / sqrt(head_dim) + mask) v`, then `out_proj`.
#[derive(Module, Debug)]
pub struct BartAttention<B: Backend> {
    /// Query projection.
    pub q_proj: Dense<B>,
    /// Key projection.
    pub k_proj: Dense<B>,
    /// Value projection.
    pub v_proj: Dense<B>,
    /// Output projection.
    pub out_proj: Dense<B>,
    /// Dropout on the attention probabilities (training only).
    pub dropout: Dropout,
    /// Heads.
    pub num_heads: usize,
}

/// Which key/value states an attention call uses.
pub(crate) enum Source<'a, B: Backend> {
    /// Keys and values from the queries' own sequence; with a cache slot, the new keys and
    /// values are appended to the cached ones.
    SelfAttention(Option<&'a mut Option<KeyValue<B>>>),
    /// Keys and values from the encoder output; with a cache slot, computed on the first call
    /// and reused afterwards.
    Cross(Tensor<B, 3>, Option<&'a mut Option<KeyValue<B>>>),
}

impl<B: Backend> BartAttention<B> {
    pub(crate) fn new(
        d_model: usize,
        num_heads: usize,
        dropout: f64,
        init: &mut Init,
        device: &B::Device,
    ) -> Self {
        Self {
            k_proj: Dense::Plain(init.linear(d_model, d_model, device)),
            v_proj: Dense::Plain(init.linear(d_model, d_model, device)),
            q_proj: Dense::Plain(init.linear(d_model, d_model, device)),
            out_proj: Dense::Plain(init.linear(d_model, d_model, device)),
            dropout: DropoutConfig::new(dropout).init(),
            num_heads,
        }
    }

    /// `[N, T, d]` to `[N, heads, T, d / heads]`.
    fn split_heads(&self, x: Tensor<B, 3>) -> Tensor<B, 4> {
        let [n, t, d] = x.dims();
        x.reshape([n, t, self.num_heads, d / self.num_heads])
            .swap_dims(1, 2)
    }

    fn project_kv(&self, states: Tensor<B, 3>) -> KeyValue<B> {
        KeyValue {
            key: self.split_heads(self.k_proj.forward(states.clone())),
            value: self.split_heads(self.v_proj.forward(states)),
        }
    }

    /// Attends from `hidden` (`[N, T, d]`) to the keys and values of `source`. `mask`
    /// (`true` = blocked) must broadcast to `[N, heads, T, keys]`.
    pub(crate) fn forward(
        &self,
        hidden: Tensor<B, 3>,
        source: Source<'_, B>,
        mask: Option<Tensor<B, 4, Bool>>,
    ) -> Tensor<B, 3> {
        let [n, t, d] = hidden.dims();
        let head_dim = d / self.num_heads;
        let query = self.split_heads(self.q_proj.forward(hidden.clone()));
        let kv = match source {
            Source::SelfAttention(slot) => {
                let new = self.project_kv(hidden);
                match slot {
                    None => new,
                    Some(slot) => {
                        let kv = match slot.take() {
                            Some(old) => KeyValue {
                                key: Tensor::cat(vec![old.key, new.key], 2),
                                value: Tensor::cat(vec![old.value, new.value], 2),
                            },
                            None => new,
                        };
                        *slot = Some(kv.clone());
                        kv
                    }
                }
            }
            Source::Cross(states, slot) => match slot {
                None => self.project_kv(states),
                Some(slot) => match slot {
                    Some(kv) => kv.clone(),
                    None => {
                        let kv = self.project_kv(states);
                        *slot = Some(kv.clone());
                        kv
                    }
                },
            },
        };
        let scaling = (head_dim as f64).powf(-0.5);
        let mut scores = query.matmul(kv.key.swap_dims(2, 3)).mul_scalar(scaling);
        if let Some(mask) = mask {
            let shape = scores.shape();
            scores = scores.mask_fill(mask.expand(shape), f32::MIN);
        }
        let probs = self.dropout.forward(softmax(scores, 3));
        let out = probs.matmul(kv.value).swap_dims(1, 2).reshape([n, t, d]);
        self.out_proj.forward(out)
    }
}

/// The causal mask of `t` new queries after `past` cached positions: `[1, 1, t, past + t]`,
/// `true` where key `j` lies after query `i` (`j > past + i`). `None` for a single query,
/// which may see every key.
pub(crate) fn causal_mask<B: Backend>(
    t: usize,
    past: usize,
    device: &B::Device,
) -> Option<Tensor<B, 4, Bool>> {
    if t <= 1 {
        return None;
    }
    let rows = Tensor::<B, 1, Int>::arange(past as i64..(past + t) as i64, device).reshape([t, 1]);
    let cols = Tensor::<B, 1, Int>::arange(0..(past + t) as i64, device).reshape([1, past + t]);
    let blocked = cols
        .expand([t, past + t])
        .greater(rows.expand([t, past + t]));
    Some(blocked.reshape([1, 1, t, past + t]))
}

/// The key mask of an attention mask (`[N, S]`, 1 = attend, 0 = padding): `[N, 1, 1, S]`,
/// `true` at padding.
pub(crate) fn padding_mask<B: Backend>(mask: Tensor<B, 2, Int>) -> Tensor<B, 4, Bool> {
    let [n, s] = mask.dims();
    mask.equal_elem(0).reshape([n, 1, 1, s])
}
