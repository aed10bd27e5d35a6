//! One decoding step: the next-token logits of every running sequence, with or without the
//! key/value cache.

use burn::prelude::*;
use burn::tensor::TensorData;

use crate::error::Result;
use crate::models::florence2::bart::{BartModel, KvCache};

/// Runs the decoder for a fixed set of rows (batch x beams) against their encoder output.
pub(crate) struct Stepper<'a, B: Backend> {
    model: &'a BartModel<B>,
    encoder_hidden: Tensor<B, 3>,
    encoder_mask: Option<Tensor<B, 2, Int>>,
    cache: Option<KvCache<B>>,
}

impl<'a, B: Backend> Stepper<'a, B> {
    /// `encoder_hidden` (and its mask) has one row per decoded sequence.
    pub(crate) fn new(
        model: &'a BartModel<B>,
        encoder_hidden: Tensor<B, 3>,
        encoder_mask: Option<Tensor<B, 2, Int>>,
        use_cache: bool,
    ) -> Self {
        Self {
            model,
            encoder_hidden,
            encoder_mask,
            cache: use_cache.then(|| model.new_cache()),
        }
    }

    /// Logits of the token after each sequence (`[rows][vocab]`). With the cache, only the
    /// tokens not fed yet are fed (all of them on the first step, the last one afterwards).
    pub(crate) fn next_logits(&mut self, sequences: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        let rows = sequences.len();
        let len = sequences.first().map_or(0, Vec::len);
        let fed = self.cache.as_ref().map_or(0, KvCache::seq_len);
        let ids: Vec<i64> = sequences
            .iter()
            .flat_map(|seq| seq[fed..].iter().map(|&id| i64::from(id)))
            .collect();
        let t = len - fed;
        let device = self.encoder_hidden.device();
        let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [rows, t]), &device);
        let hidden = self.model.decode(
            ids,
            self.encoder_hidden.clone(),
            self.encoder_mask.clone(),
            self.cache.as_mut(),
        )?;
        let d = hidden.dims()[2];
        let last = hidden.slice([0..rows, t - 1..t, 0..d]);
        let logits = self.model.logits(last);
        let vocab = logits.dims()[2];
        let data = logits.into_data();
        let flat: Vec<f32> = data.iter::<f32>().collect();
        Ok(flat.chunks(vocab).map(<[f32]>::to_vec).collect())
    }

    /// Beam search moved rows: row `i` continues old row `rows[i]`.
    pub(crate) fn reorder(&mut self, rows: &[usize]) -> Result<()> {
        match &mut self.cache {
            Some(cache) => cache.reorder(rows),
            None => Ok(()),
        }
    }
}

/// Repeats each row of `x` `times` times in place (`repeat_interleave` on dim 0).
pub(crate) fn repeat_rows<B: Backend, const D: usize, K>(
    x: Tensor<B, D, K>,
    times: usize,
) -> Tensor<B, D, K>
where
    K: burn::tensor::BasicOps<B>,
{
    if times == 1 {
        return x;
    }
    let n = x.dims()[0];
    let index: Vec<i64> = (0..n as i64)
        .flat_map(|i| std::iter::repeat_n(i, times))
        .collect();
    let index = Tensor::<B, 1, Int>::from_data(TensorData::new(index, [n * times]), &x.device());
    x.select(0, index)
}
