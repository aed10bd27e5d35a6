//! The decoder's key/value cache: each generation step feeds one token and appends its
//! self-attention keys and values; the cross-attention keys and values are computed once from
//! the encoder output.

use burn::prelude::*;
use burn::tensor::TensorData;

use crate::error::{FedError, Result};

/// Keys and values of one attention layer, `[N, heads, length, head_dim]` each.
#[derive(Debug, Clone)]
pub struct KeyValue<B: Backend> {
    /// Keys.
    pub key: Tensor<B, 4>,
    /// Values.
    pub value: Tensor<B, 4>,
}

impl<B: Backend> KeyValue<B> {
    /// Cached positions (the `length` dimension).
    pub fn len(&self) -> usize {
        self.key.dims()[2]
    }

    /// Whether no position is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The cache of one decoder layer.
#[derive(Debug, Clone)]
pub struct LayerCache<B: Backend> {
    /// Self-attention keys and values of every position fed so far.
    pub self_attn: Option<KeyValue<B>>,
    /// Cross-attention keys and values of the encoder output (computed on the first step).
    pub cross_attn: Option<KeyValue<B>>,
}

impl<B: Backend> Default for LayerCache<B> {
    fn default() -> Self {
        Self {
            self_attn: None,
            cross_attn: None,
        }
    }
}

/// Key/value cache of a BART decoder (transformers' `EncoderDecoderCache`).
///
/// Create it with [`super::BartModel::new_cache`], pass it to every
/// [`super::BartModel::decode`] call of one generation, feeding only the new tokens: the
/// positions continue from [`KvCache::seq_len`]. The cross-attention keys and values are
/// computed from the encoder output on the first call and reused afterwards, so later calls
/// must pass the same encoder output (and batch order, see [`KvCache::reorder`]).
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    layers: Vec<LayerCache<B>>,
}

impl<B: Backend> KvCache<B> {
    /// An empty cache for a decoder of `num_layers` layers.
    pub fn new(num_layers: usize) -> Self {
        Self {
            layers: (0..num_layers).map(|_| LayerCache::default()).collect(),
        }
    }

    /// Decoder layers covered.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Decoder positions cached so far (those of the first layer).
    pub fn seq_len(&self) -> usize {
        self.layers
            .first()
            .and_then(|layer| layer.self_attn.as_ref())
            .map_or(0, KeyValue::len)
    }

    /// Batch rows cached, if anything is cached.
    pub fn batch_size(&self) -> Option<usize> {
        self.layers
            .iter()
            .find_map(|layer| layer.self_attn.as_ref().or(layer.cross_attn.as_ref()))
            .map(|kv| kv.key.dims()[0])
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.batch_size().is_none()
    }

    /// The cache of decoder layer `index`.
    pub fn layer(&self, index: usize) -> Option<&LayerCache<B>> {
        self.layers.get(index)
    }

    /// The cache of decoder layer `index`, mutably.
    pub fn layer_mut(&mut self, index: usize) -> Option<&mut LayerCache<B>> {
        self.layers.get_mut(index)
    }

    /// Keeps, for each new row `i`, the self-attention history of old row `rows[i]` (beam
    /// search: the beam a continuation came from). Cross-attention entries are left as they
    /// are: beam search only moves rows between beams of the same input, whose encoder rows
    /// are identical.
    ///
    /// # Errors
    /// [`FedError::InvalidConfig`] if `rows` has another length than the cached batch or names
    /// a row outside it.
    pub fn reorder(&mut self, rows: &[usize]) -> Result<()> {
        let Some(batch) = self.batch_size() else {
            return Ok(());
        };
        if rows.len() != batch || rows.iter().any(|&r| r >= batch) {
            return Err(FedError::config(
                "rows",
                format!(
                    "must be {batch} row indices below {batch}, got {} ({rows:?})",
                    rows.len()
                ),
            ));
        }
        if rows.iter().enumerate().all(|(i, &r)| i == r) {
            return Ok(());
        }
        for layer in &mut self.layers {
            if let Some(kv) = layer.self_attn.take() {
                let device = kv.key.device();
                let ids: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
                let index =
                    Tensor::<B, 1, Int>::from_data(TensorData::new(ids, [rows.len()]), &device);
                layer.self_attn = Some(KeyValue {
                    key: kv.key.select(0, index.clone()),
                    value: kv.value.select(0, index),
                });
            }
        }
        Ok(())
    }
}
