//! The dropout masks of one cohort step: each member's masks drawn from its own
//! [`DropoutStream`] in the order the sequential layer draws them, in the member's own batch
//! shape, then laid out in the cohort's padded shape.
//!
//! In training, burn's `Dropout` draws one Bernoulli sample per element of its input, in the
//! order the layer runs: the sequential last decoder layer (see
//! [`crate::models::florence2::bart::BartDecoderLayer::forward`]) draws at the sixteen
//! [`Site`]s below, each only where its probability is positive (an adapter's input dropout
//! only where the projection carries an adapter).

use burn::prelude::*;
use burn::tensor::TensorData;
use rayon::prelude::*;

use super::layout::Layout;
use crate::federated::cohort::DropoutStream;

/// Where the last decoder layer draws a dropout mask, in drawing order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Site {
    /// An adapter's input dropout at projection `0..10` of
    /// [`super::layout::PROJECTIONS`].
    Adapter(usize),
    /// The self-attention probabilities.
    SelfProbs,
    /// The cross-attention probabilities.
    CrossProbs,
    /// A sub-layer's output before its residual (self-attention, cross-attention,
    /// feed-forward).
    Residual(usize),
    /// After the feed-forward activation.
    Activation,
}

/// Every site in the order the sequential layer draws: self-attention `q`, `k`, `v`, the
/// probabilities, `out`, the residual; the same for cross-attention; `fc1`, the activation,
/// `fc2`, the residual.
pub(super) const SITES: [Site; 16] = [
    Site::Adapter(0),
    Site::Adapter(1),
    Site::Adapter(2),
    Site::SelfProbs,
    Site::Adapter(3),
    Site::Residual(0),
    Site::Adapter(4),
    Site::Adapter(5),
    Site::Adapter(6),
    Site::CrossProbs,
    Site::Adapter(7),
    Site::Residual(1),
    Site::Adapter(8),
    Site::Activation,
    Site::Adapter(9),
    Site::Residual(2),
];

/// A batch's shape: samples, decoder positions, encoder positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Dims {
    pub rows: usize,
    pub t: usize,
    pub s: usize,
}

impl Site {
    /// The site's dropout probability (0: nothing is drawn).
    fn prob(self, layout: &Layout) -> f64 {
        match self {
            Self::Adapter(i) => layout.adapters[i].as_ref().map_or(0.0, |a| a.dropout),
            Self::SelfProbs => layout.attention_dropout.0,
            Self::CrossProbs => layout.attention_dropout.1,
            Self::Residual(_) => layout.dropout,
            Self::Activation => layout.activation_dropout,
        }
    }

    /// The masked input's shape as `[rows, a, b, c]` for a batch of `dims`.
    fn shape(self, layout: &Layout, dims: Dims) -> [usize; 4] {
        let Dims { rows, t, s } = dims;
        let (d, f, h) = (layout.d_model, layout.ffn_dim, layout.heads);
        match self {
            // Cross-attention keys and values project the encoder output.
            Self::Adapter(5 | 6) => [rows, 1, s, d],
            // `fc2` takes the activation.
            Self::Adapter(9) | Self::Activation => [rows, 1, t, f],
            Self::Adapter(_) | Self::Residual(_) => [rows, 1, t, d],
            Self::SelfProbs => [rows, h, t, t],
            Self::CrossProbs => [rows, h, t, s],
        }
    }
}

/// Draws one step's masks: per site of [`SITES`], `None` where nothing is drawn, else
/// `[C * width.rows, a, b, c]` (see [`Site`]'s shapes) holding member `c`'s mask (scale
/// included) in its own batch's corner of its block and 1 in the padding. `members[c]` is
/// member `c`'s own batch (0 rows: it draws nothing), `streams[c]` its generator.
pub(super) fn step_masks<B: Backend>(
    layout: &Layout,
    streams: &mut [DropoutStream],
    members: &[Dims],
    width: Dims,
    device: &B::Device,
) -> Vec<Option<Tensor<B, 4>>> {
    let active: Vec<(Site, f64)> = SITES
        .iter()
        .map(|&site| (site, site.prob(layout)))
        .filter(|&(_, p)| p > 0.0)
        .collect();
    if active.is_empty() {
        return vec![None; SITES.len()];
    }
    // Each member draws its sites in order from its own stream, so members draw in parallel.
    let drawn: Vec<Vec<Vec<f32>>> = streams
        .par_iter_mut()
        .zip(members.par_iter())
        .map(|(stream, &dims)| {
            if dims.rows == 0 {
                return Vec::new();
            }
            active
                .iter()
                .map(|&(site, p)| {
                    let mut mask = vec![0f32; site.shape(layout, dims).iter().product()];
                    stream.fill(&mut mask, p);
                    mask
                })
                .collect()
        })
        .collect();
    let n = members.len();
    let mut out = vec![None; SITES.len()];
    for (k, &(site, _)) in active.iter().enumerate() {
        let [rows, a, b, c] = site.shape(layout, width);
        let block = rows * a * b * c;
        let mut padded = vec![1f32; n * block];
        for (m, (&dims, masks)) in members.iter().zip(&drawn).enumerate() {
            let Some(mask) = masks.get(k) else {
                continue;
            };
            let [own_rows, _, own_b, own_c] = site.shape(layout, dims);
            let dst = &mut padded[m * block..(m + 1) * block];
            for (i, src) in mask.chunks(own_c.max(1)).enumerate() {
                // `i` runs over (row, a, b) of the member's own shape.
                let (row_a, y) = (i / own_b.max(1), i % own_b.max(1));
                let (row, x) = (row_a / a, row_a % a);
                if row >= own_rows {
                    break;
                }
                let at = ((row * a + x) * b + y) * c;
                dst[at..at + own_c].copy_from_slice(src);
            }
        }
        let index = SITES.iter().position(|&s| s == site).unwrap_or(0);
        out[index] = Some(Tensor::from_data(
            TensorData::new(padded, [n * rows, a, b, c]),
            device,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiments::vqa::cohort::layout::AdapterShape;
    use burn::backend::Flex;

    fn layout() -> Layout {
        let adapter = AdapterShape {
            rank: 2,
            d_in: 4,
            d_out: 4,
            scaling: 1.0,
            dropout: 0.5,
            trains: (true, true),
        };
        let mut adapters = vec![None; 10];
        adapters[0] = Some(adapter);
        Layout {
            last: 1,
            d_model: 4,
            ffn_dim: 6,
            heads: 2,
            adapters,
            attention_dropout: (0.5, 0.0),
            dropout: 0.0,
            activation_dropout: 0.0,
        }
    }

    #[test]
    fn each_member_draws_its_own_shape_in_order_into_its_padded_block() {
        let layout = layout();
        let members = [
            Dims {
                rows: 2,
                t: 3,
                s: 5,
            },
            Dims {
                rows: 1,
                t: 2,
                s: 4,
            },
        ];
        let width = Dims {
            rows: 2,
            t: 3,
            s: 5,
        };
        let mut streams = vec![DropoutStream::new(1), DropoutStream::new(2)];
        let masks = step_masks::<Flex>(&layout, &mut streams, &members, width, &Default::default());
        assert!(masks[0].is_some() && masks[3].is_some());
        assert_eq!(masks.iter().filter(|m| m.is_some()).count(), 2);
        let q: Vec<f32> = masks[0].clone().unwrap().into_data().into_vec().unwrap();
        let probs: Vec<f32> = masks[3].clone().unwrap().into_data().into_vec().unwrap();
        // Member 1 drew its q mask ([1, 2, 4]) then its probabilities ([1, 2, 2, 2]).
        let mut own = DropoutStream::new(2);
        let mut q_own = vec![0f32; 8];
        own.fill(&mut q_own, 0.5);
        let mut p_own = vec![0f32; 8];
        own.fill(&mut p_own, 0.5);
        // Member 1's block starts at row 2: q is [4, 1, 3, 4], positions 0..2 of row 2.
        assert_eq!(&q[2 * 12..2 * 12 + 8], q_own.as_slice());
        assert!(q[2 * 12 + 8..].iter().all(|&v| v == 1.0), "padding keeps");
        // Probabilities [4, 2, 3, 3]: row 2, head h, query y, keys 0..2.
        for h in 0..2 {
            for y in 0..2 {
                let at = ((2 * 2 + h) * 3 + y) * 3;
                assert_eq!(
                    &probs[at..at + 2],
                    &p_own[(h * 2 + y) * 2..(h * 2 + y) * 2 + 2]
                );
                assert_eq!(probs[at + 2], 1.0);
            }
        }
    }
}
